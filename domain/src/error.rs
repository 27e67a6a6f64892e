//! The one error type that crosses the wire: server functions, the REST API and the CLI.
//!
//! It carries a machine-readable [`ErrorKind`], a message written for the user, and for
//! validation and conflicts the field concerned and a suggested alternative. Server-only detail
//! (SQL errors, paths) never goes in here: the services log it and return [`Error::internal`].
//!
//! [`ErrorKind::ALL`] with [`ErrorKind::status`], [`ErrorKind::code`] and [`ErrorKind::title`]
//! is the one table of failures: the dashboard's server functions answer with its status, the
//! REST API's problem+json `type` is `urn:pergola:problem:{code}`, and the CLI reads the kind
//! back from that `type`.

use crate::IdKind;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The request itself could not be read (not JSON of the expected shape, a bad query).
    MalformedRequest,
    /// The input breaks a rule; `field` names the input.
    Validation,
    /// The project or stage does not exist (or is archived where a live one is needed).
    NotFound,
    /// The Project ID is already taken; `suggestion` names a free one.
    ProjectIdTaken,
    /// The Stage ID is already taken (by a live or an archived stage); `suggestion` names a
    /// free one.
    StageIdTaken,
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

impl ErrorKind {
    pub const ALL: [ErrorKind; 9] = [
        ErrorKind::MalformedRequest,
        ErrorKind::Validation,
        ErrorKind::NotFound,
        ErrorKind::ProjectIdTaken,
        ErrorKind::StageIdTaken,
        ErrorKind::InvalidState,
        ErrorKind::Expired,
        ErrorKind::Transport,
        ErrorKind::Internal,
    ];

    /// The HTTP status a failure of this kind answers with, everywhere.
    pub fn status(self) -> u16 {
        match self {
            ErrorKind::MalformedRequest => 400,
            ErrorKind::Validation => 422,
            ErrorKind::NotFound => 404,
            ErrorKind::ProjectIdTaken | ErrorKind::StageIdTaken | ErrorKind::InvalidState | ErrorKind::Expired => 409,
            ErrorKind::Transport => 502,
            ErrorKind::Internal => 500,
        }
    }

    /// The stable code: the REST API's problem `type` is `urn:pergola:problem:{code}`.
    pub fn code(self) -> &'static str {
        match self {
            ErrorKind::MalformedRequest => "malformed-request",
            ErrorKind::Validation => "validation",
            ErrorKind::NotFound => "not-found",
            ErrorKind::ProjectIdTaken => "project-id-taken",
            ErrorKind::StageIdTaken => "stage-id-taken",
            ErrorKind::InvalidState => "invalid-state",
            ErrorKind::Expired => "restore-expired",
            ErrorKind::Transport => "bad-gateway",
            ErrorKind::Internal => "internal",
        }
    }

    /// A short summary of the kind of failure (the problem's `title`).
    pub fn title(self) -> &'static str {
        match self {
            ErrorKind::MalformedRequest => "The request is not valid JSON of the expected shape",
            ErrorKind::Validation => "The input breaks a rule",
            ErrorKind::NotFound => "No such resource",
            ErrorKind::ProjectIdTaken => "The Project ID is already taken",
            ErrorKind::StageIdTaken => "The Stage ID is already taken",
            ErrorKind::InvalidState => "Not possible in the current state",
            ErrorKind::Expired => "The stage's deletion date has passed",
            ErrorKind::Transport => "An upstream service failed",
            ErrorKind::Internal => "Internal server error",
        }
    }

    /// The kind whose [`code`](Self::code) this is.
    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.code() == code)
    }

    /// Whether an ID is taken (a free one is suggested).
    pub fn is_id_taken(self) -> bool {
        matches!(self, ErrorKind::ProjectIdTaken | ErrorKind::StageIdTaken)
    }
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
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into(), field: None, suggestion: None }
    }

    /// A request that could not be read at all (`what` says why).
    pub fn malformed(what: impl Into<String>) -> Self {
        Self::new(ErrorKind::MalformedRequest, what)
    }

    pub fn validation(field: &str, message: impl Into<String>) -> Self {
        Self { field: Some(field.to_owned()), ..Self::new(ErrorKind::Validation, message) }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    /// The Project or Stage ID `id` is taken; `suggestion` is free at the time of the check.
    pub fn id_taken(kind: IdKind, id: &str, suggestion: String) -> Self {
        let (error_kind, field, label) = match kind {
            IdKind::Project => (ErrorKind::ProjectIdTaken, "project_id", "Project ID"),
            _ => (ErrorKind::StageIdTaken, "stage_id", "Stage ID"),
        };
        Self {
            field: Some(field.to_owned()),
            message: format!("{label} '{id}' is already taken. Try '{suggestion}'."),
            suggestion: Some(suggestion),
            kind: error_kind,
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
    /// It does not claim that nothing changed: a failure part-way may have changed something.
    pub fn internal() -> Self {
        Self::new(
            ErrorKind::Internal,
            "Something went wrong on the server; the details are in its log. Reload and try again.",
        )
    }

    /// Whether this error concerns the named input field.
    pub fn is_for(&self, field: &str) -> bool {
        self.field.as_deref() == Some(field)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_own_code_and_reads_back() {
        let mut codes = std::collections::HashSet::new();
        for kind in ErrorKind::ALL {
            assert!(codes.insert(kind.code()), "{kind:?} shares its code");
            assert_eq!(ErrorKind::from_code(kind.code()), Some(kind));
            assert!((400..600).contains(&kind.status()), "{kind:?}");
        }
        assert_eq!(ErrorKind::from_code("nope"), None);
    }

    #[test]
    fn statuses_are_the_documented_ones() {
        assert_eq!(ErrorKind::MalformedRequest.status(), 400);
        assert_eq!(ErrorKind::Validation.status(), 422);
        assert_eq!(ErrorKind::NotFound.status(), 404);
        assert_eq!(ErrorKind::StageIdTaken.status(), 409);
        assert_eq!(ErrorKind::Expired.status(), 409);
        assert_eq!(ErrorKind::Internal.status(), 500);
    }

    #[test]
    fn taken_ids_name_their_kind_field_and_suggestion() {
        let e = Error::id_taken(IdKind::Project, "web", "web-2".into());
        assert_eq!((e.kind, e.field.as_deref()), (ErrorKind::ProjectIdTaken, Some("project_id")));
        assert_eq!(e.message, "Project ID 'web' is already taken. Try 'web-2'.");
        let e = Error::id_taken(IdKind::Stage, "qa", "qa-2".into());
        assert_eq!(
            (e.kind, e.field.as_deref(), e.suggestion.as_deref()),
            (ErrorKind::StageIdTaken, Some("stage_id"), Some("qa-2"))
        );
    }
}
