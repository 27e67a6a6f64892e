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
    /// No one is signed in (no session, or an expired one; no valid API token).
    Unauthenticated,
    /// The signed-in user may see the project but lacks the role for this action; the
    /// message names the role needed. (A project the user is not a member of is
    /// [`NotFound`](Self::NotFound) instead, so its existence is not revealed.)
    Forbidden,
    /// Too many attempts (failed sign-ins); `retry_after` says how many seconds to wait.
    TooManyRequests,
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
    /// The request's body is larger than the server accepts (an uploaded build over the
    /// artifact size limit); the message names the limit.
    TooLarge,
    /// The request's body is of a type the route does not take (an upload that is neither
    /// `application/gzip` nor `application/zstd`).
    UnsupportedMediaType,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 14] = [
        ErrorKind::MalformedRequest,
        ErrorKind::Unauthenticated,
        ErrorKind::Forbidden,
        ErrorKind::TooManyRequests,
        ErrorKind::Validation,
        ErrorKind::NotFound,
        ErrorKind::ProjectIdTaken,
        ErrorKind::StageIdTaken,
        ErrorKind::InvalidState,
        ErrorKind::Expired,
        ErrorKind::Transport,
        ErrorKind::Internal,
        ErrorKind::TooLarge,
        ErrorKind::UnsupportedMediaType,
    ];

    /// The HTTP status a failure of this kind answers with, everywhere.
    pub fn status(self) -> u16 {
        match self {
            ErrorKind::MalformedRequest => 400,
            ErrorKind::Unauthenticated => 401,
            ErrorKind::Forbidden => 403,
            ErrorKind::TooManyRequests => 429,
            ErrorKind::Validation => 422,
            ErrorKind::NotFound => 404,
            ErrorKind::ProjectIdTaken | ErrorKind::StageIdTaken | ErrorKind::InvalidState | ErrorKind::Expired => 409,
            ErrorKind::Transport => 502,
            ErrorKind::Internal => 500,
            ErrorKind::TooLarge => 413,
            ErrorKind::UnsupportedMediaType => 415,
        }
    }

    /// The stable code: the REST API's problem `type` is `urn:pergola:problem:{code}`.
    pub fn code(self) -> &'static str {
        match self {
            ErrorKind::MalformedRequest => "malformed-request",
            ErrorKind::Unauthenticated => "unauthenticated",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::TooManyRequests => "too-many-requests",
            ErrorKind::Validation => "validation",
            ErrorKind::NotFound => "not-found",
            ErrorKind::ProjectIdTaken => "project-id-taken",
            ErrorKind::StageIdTaken => "stage-id-taken",
            ErrorKind::InvalidState => "invalid-state",
            ErrorKind::Expired => "restore-expired",
            ErrorKind::Transport => "bad-gateway",
            ErrorKind::Internal => "internal",
            ErrorKind::TooLarge => "too-large",
            ErrorKind::UnsupportedMediaType => "unsupported-media-type",
        }
    }

    /// A short summary of the kind of failure (the problem's `title`).
    pub fn title(self) -> &'static str {
        match self {
            ErrorKind::MalformedRequest => "The request is not valid JSON of the expected shape",
            ErrorKind::Unauthenticated => "Sign-in required",
            ErrorKind::Forbidden => "Not allowed",
            ErrorKind::TooManyRequests => "Too many attempts; wait and try again",
            ErrorKind::Validation => "The input breaks a rule",
            ErrorKind::NotFound => "No such resource",
            ErrorKind::ProjectIdTaken => "The Project ID is already taken",
            ErrorKind::StageIdTaken => "The Stage ID is already taken",
            ErrorKind::InvalidState => "Not possible in the current state",
            ErrorKind::Expired => "The stage's deletion date has passed",
            ErrorKind::Transport => "An upstream service failed",
            ErrorKind::Internal => "Internal server error",
            ErrorKind::TooLarge => "The request body is too large",
            ErrorKind::UnsupportedMediaType => "The request body's type is not accepted here",
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
    /// For [`ErrorKind::TooManyRequests`]: whole seconds to wait before trying again (the
    /// HTTP layer sends it as `Retry-After`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into(), field: None, suggestion: None, retry_after: None }
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
            retry_after: None,
        }
    }

    /// No one is signed in, or the session or API token is no longer valid.
    pub fn unauthenticated() -> Self {
        Self::new(ErrorKind::Unauthenticated, "Sign in to continue (or send a valid API token).")
    }

    /// The user's role does not allow the action; `message` names the role needed (see
    /// [`crate::access::decide`]).
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Forbidden, message)
    }

    /// Too many attempts: try again in `retry_after_secs` seconds (at least 1).
    pub fn too_many_requests(retry_after_secs: u64) -> Self {
        let secs = retry_after_secs.max(1);
        Self {
            retry_after: Some(secs),
            ..Self::new(ErrorKind::TooManyRequests, format!("Too many attempts. Try again in {}.", wait_text(secs)))
        }
    }

    pub fn invalid_state(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidState, message)
    }

    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Expired, message)
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::TooLarge, message)
    }

    pub fn unsupported_media_type(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::UnsupportedMediaType, message)
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

/// "45 seconds", "1 minute", "15 minutes" (rounded up to whole minutes from a minute on).
fn wait_text(secs: u64) -> String {
    match secs {
        1 => "1 second".to_owned(),
        s if s < 60 => format!("{s} seconds"),
        s => match s.div_ceil(60) {
            1 => "1 minute".to_owned(),
            m => format!("{m} minutes"),
        },
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
        assert_eq!(ErrorKind::Unauthenticated.status(), 401);
        assert_eq!(ErrorKind::Forbidden.status(), 403);
        assert_eq!(ErrorKind::TooManyRequests.status(), 429);
        assert_eq!(ErrorKind::Validation.status(), 422);
        assert_eq!(ErrorKind::NotFound.status(), 404);
        assert_eq!(ErrorKind::StageIdTaken.status(), 409);
        assert_eq!(ErrorKind::Expired.status(), 409);
        assert_eq!(ErrorKind::Internal.status(), 500);
        assert_eq!(ErrorKind::TooLarge.status(), 413);
        assert_eq!(ErrorKind::UnsupportedMediaType.status(), 415);
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

    #[test]
    fn access_errors_have_their_codes_and_carry_retry_after() {
        assert_eq!(ErrorKind::from_code("unauthenticated"), Some(ErrorKind::Unauthenticated));
        assert_eq!(ErrorKind::from_code("forbidden"), Some(ErrorKind::Forbidden));
        assert_eq!(ErrorKind::from_code("too-many-requests"), Some(ErrorKind::TooManyRequests));
        let e = Error::unauthenticated();
        assert_eq!((e.kind, e.retry_after), (ErrorKind::Unauthenticated, None));
        let e = Error::forbidden("Deleting a stage needs the maintainer role.");
        assert_eq!((e.kind, e.message.as_str()), (ErrorKind::Forbidden, "Deleting a stage needs the maintainer role."));
        let e = Error::too_many_requests(840);
        assert_eq!((e.kind, e.retry_after), (ErrorKind::TooManyRequests, Some(840)));
        assert_eq!(e.message, "Too many attempts. Try again in 14 minutes.");
        assert_eq!(Error::too_many_requests(0).retry_after, Some(1));
        assert_eq!(Error::too_many_requests(1).message, "Too many attempts. Try again in 1 second.");
        assert_eq!(Error::too_many_requests(59).message, "Too many attempts. Try again in 59 seconds.");
        assert_eq!(Error::too_many_requests(60).message, "Too many attempts. Try again in 1 minute.");
        assert_eq!(Error::too_many_requests(61).message, "Too many attempts. Try again in 2 minutes.");
    }

    #[test]
    fn retry_after_is_on_the_wire_only_when_set() {
        let json = serde_json::to_value(Error::too_many_requests(30)).unwrap();
        assert_eq!(json["retry_after"], 30);
        let json = serde_json::to_value(Error::not_found("x")).unwrap();
        assert!(json.get("retry_after").is_none(), "{json}");
        // Errors written before the field existed still read.
        let old: Error = serde_json::from_str(r#"{"kind":"not_found","message":"x"}"#).unwrap();
        assert_eq!(old, Error::not_found("x"));
        let back: Error = serde_json::from_value(serde_json::to_value(Error::too_many_requests(7)).unwrap()).unwrap();
        assert_eq!(back, Error::too_many_requests(7));
    }
}
