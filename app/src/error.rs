//! The error every server function returns: the domain's [`Error`] (kind + user message +
//! field + suggestion), encoded as JSON across the wire.

use leptos::server_fn::codec::JsonEncoding;
use leptos::server_fn::error::{FromServerFnError, ServerFnErrorErr};
use pergola_domain::{Error, ErrorKind};
use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AppError(pub Error);

impl AppError {
    pub fn kind(&self) -> ErrorKind {
        self.0.kind
    }

    pub fn is_not_found(&self) -> bool {
        self.0.kind == ErrorKind::NotFound
    }

    /// The message when the error concerns `field`.
    pub fn message_for(&self, field: &str) -> Option<String> {
        self.0.is_for(field).then(|| self.0.message.clone())
    }
}

/// The HTTP status a refused request answers with (the domain's one table), so the browser,
/// proxies and logs see a refusal for what it is (and a missing project or stage page is a
/// real 404).
#[cfg(feature = "ssr")]
pub fn http_status(kind: ErrorKind) -> http::StatusCode {
    http::StatusCode::from_u16(kind.status()).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR)
}

impl fmt::Display for AppError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.message)
    }
}

impl std::error::Error for AppError {}

impl From<Error> for AppError {
    fn from(e: Error) -> Self {
        AppError(e)
    }
}

impl FromServerFnError for AppError {
    type Encoder = JsonEncoding;

    fn from_server_fn_error(value: ServerFnErrorErr) -> Self {
        match value {
            ServerFnErrorErr::Request(detail) => AppError(Error::transport(format!(
                "Could not reach the Pergola server ({detail}). Check your connection and try again."
            ))),
            ServerFnErrorErr::Args(detail) | ServerFnErrorErr::MissingArg(detail) => {
                AppError(Error::malformed(format!("The request was incomplete: {detail}")))
            }
            other => {
                #[cfg(feature = "ssr")]
                tracing::error!(error = %other, "server function failed");
                #[cfg(not(feature = "ssr"))]
                let _ = other;
                AppError(Error::internal())
            }
        }
    }
}
