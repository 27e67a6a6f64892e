//! The one error type that crosses the wire (server functions, later the REST API and CLI).
//!
//! It carries a machine-readable [`ErrorKind`], a message written for the user, and for
//! validation and conflicts the field concerned and a suggested alternative. Server-only detail
//! (SQL errors, paths) never goes in here: the services log it and return [`Error::internal`].

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The input breaks a rule; `field` names the input.
    Validation,
    /// The project or stage does not exist (or is archived where a live one is needed).
    NotFound,
    /// The ID is already taken; `suggestion` names a free one.
    Conflict,
    /// The action is not possible in the current state (suspend a suspended stage, restore a
    /// stage that is not archived, ...).
    InvalidState,
    /// An archived stage's deletion date has passed: it can no longer be restored.
    Expired,
    /// The request never reached the server or its answer could not be read.
    Transport,
    /// Something failed on the server; details are in the server log only.
    Internal,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suggestion: Option<String>,
}

impl Error {
    fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into(), field: None, suggestion: None }
    }

    pub fn validation(field: &str, message: impl Into<String>) -> Self {
        Self { field: Some(field.to_owned()), ..Self::new(ErrorKind::Validation, message) }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    /// `id` is taken; `suggestion` is free at the time of the check.
    pub fn id_taken(field: &str, label: &str, id: &str, suggestion: String) -> Self {
        Self {
            field: Some(field.to_owned()),
            suggestion: Some(suggestion.clone()),
            ..Self::new(ErrorKind::Conflict, format!("{label} '{id}' is already taken. Try '{suggestion}'."))
        }
    }

    pub fn invalid_state(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidState, message)
    }

    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Expired, message)
    }

    pub fn transport(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Transport, message)
    }

    /// The generic message users see when the server failed; the cause is logged server-side.
    pub fn internal() -> Self {
        Self::new(ErrorKind::Internal, "Something went wrong on the server. Nothing was changed; please try again.")
    }

    /// Whether this error concerns the named input field.
    pub fn is_for(&self, field: &str) -> bool {
        self.field.as_deref() == Some(field)
    }
}
