//! Errors as `application/problem+json` (RFC 9457), one stable `type` per kind of failure.

use axum::extract::rejection::JsonRejection;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use pergola_domain::Error;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A refused or failed request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    /// Stable identifier of the kind of failure, e.g. `urn:pergola:problem:stage-id-taken`.
    #[serde(rename = "type")]
    pub problem_type: String,
    /// Short summary of the kind of failure.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong, for the user.
    pub detail: String,
    /// The request field concerned (validation errors, taken IDs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// A free alternative when an ID is taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suggestion: Option<String>,
}

pub const PROBLEM_JSON: &str = "application/problem+json";

impl From<Error> for Problem {
    fn from(e: Error) -> Self {
        Problem {
            problem_type: format!("urn:pergola:problem:{}", e.kind.code()),
            title: e.kind.title().to_owned(),
            status: e.kind.status(),
            detail: e.message,
            field: e.field,
            suggestion: e.suggestion,
        }
    }
}

/// The error side of every handler.
#[derive(Debug)]
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError(e)
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        ApiError(Error::malformed(rejection.body_text()))
    }
}

impl IntoResponse for ApiError {
    /// The problem, with `WWW-Authenticate: Bearer` on a 401 and `Retry-After` on a 429.
    fn into_response(self) -> Response {
        let retry_after = self.0.retry_after;
        let problem = Problem::from(self.0);
        let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_string(&problem).unwrap_or_default();
        let mut response = (status, [(header::CONTENT_TYPE, PROBLEM_JSON)], body).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
        }
        if let Some(secs) = retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
