//! The pure rules of Pergola Stages.
//!
//! This crate has no I/O: it compiles for the server and for the browser (wasm), so the
//! "+ NEW STAGE" popup derives and checks a Stage ID with exactly the functions the server
//! enforces. Everything that decides *what is allowed* lives here; the store and the services
//! in `pergola-core` only decide *how it is persisted*.

pub mod access;
pub mod archive;
pub mod compare;
pub mod error;
pub mod ids;
pub mod limits;
pub mod listing;
pub mod logs;
pub mod manifest;
pub mod metrics;
pub mod model;
pub mod name;
pub mod retention;
pub mod runtime;
pub mod share;
pub mod stage;
pub mod wire;

pub use access::{
    authorize, decide, invitation_expires_at, invitation_is_open, is_unexpired, normalize_username,
    permission_table_markdown, permits, project_not_found, requirement, validate_expiry, validate_expiry_days,
    validate_password, validate_token_name, validate_username, Action, Actor, AuditEntry, CreatedInvitation,
    CreatedToken, Decision, InvitationInfo, Me, Member, Requirement, RetryAfter, Role, SessionPolicy, Throttle,
    TokenInfo, UserInfo, Visibility, INVITATION_VALID_DAYS, MAX_EXPIRY_DAYS, MAX_PASSWORD_BYTES, MAX_TOKEN_NAME_CHARS,
    MAX_USERNAME_CHARS, MIN_PASSWORD_CHARS,
};
pub use compare::{
    compare, promotion_targets, shown, ComponentSide, ConfigDifference, ConfigSide, StageComparison, StageSide,
};
pub use error::{Error, ErrorKind};
pub use ids::{derive_id, numbered_id, suggestion_stem, typed_id, validate_id, IdKind, MAX_ID_LEN, RESERVED_IDS};
pub use limits::{Isolation, Limit, LimitsPolicy, ResourceLimits};
pub use listing::{
    name_key, Cursor, StagePage, StageQuery, StageQueryParams, StageSort, MAX_PAGE_SIZE, PROJECT_PAGE_SIZE,
};
#[cfg(feature = "manifest")]
pub use manifest::parse_manifest;
pub use manifest::{ComponentKind, ComponentSpec, Manifest, ManifestError, Schedule};
pub use model::{
    human_size, validate_config, Build, BuildListing, BuildStage, ConfigEntry, IdCheck, Project, ProjectOverview,
    Release, Stage, StageActivity, StageSummary, MAX_CONFIG_VALUE_BYTES,
};
pub use name::{validate_name, MAX_NAME_CHARS};
pub use retention::RetentionPolicy;
pub use runtime::{EventKind, StageEvent};
pub use stage::{
    check_grace, confirm_deletion, parse_grace, StageStatus, StageType, DEFAULT_GRACE_SECS, MAX_GRACE_SECS,
};

/// How every timestamp is shown in the UI and the CLI: UTC, minute precision. The same
/// string is rendered on the server and on hydration, so it never causes a mismatch.
pub fn format_time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}
