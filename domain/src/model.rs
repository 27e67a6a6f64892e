//! The records the server sends to the dashboard (and later the API and CLI).

use crate::{RetentionPolicy, StageStatus, StageType};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Project {
    pub id: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

/// A stage, live or archived. `archived_at`/`purge_due_at` are set together when it is deleted;
/// `status` keeps the status it had, so a restore brings that back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Stage {
    pub project_id: String,
    pub id: String,
    pub name: String,
    pub stage_type: StageType,
    pub status: StageStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub archived_at: Option<DateTime<Utc>>,
    pub purge_due_at: Option<DateTime<Utc>>,
}

impl Stage {
    pub fn is_archived(&self) -> bool {
        self.archived_at.is_some()
    }

    /// Whether an archived stage can still be restored at `now`.
    pub fn restorable_at(&self, now: DateTime<Utc>) -> bool {
        matches!(self.purge_due_at, Some(due) if now < due)
    }

    /// The "name (id)" form the CLI and lists use when name and id differ.
    pub fn display_label(&self) -> String {
        if self.name == self.id { self.id.clone() } else { format!("{} ({})", self.name, self.id) }
    }
}

/// Everything the project page shows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProjectOverview {
    pub project: Project,
    pub stages: Vec<Stage>,
    pub archived: Vec<Stage>,
    pub retention: RetentionPolicy,
}

/// The answer of the live Stage ID check in the "+ NEW STAGE" popup.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct IdCheck {
    pub id: String,
    pub available: bool,
    /// Why it is not available (invalid or taken).
    pub message: Option<String>,
    /// A free alternative when it is taken.
    pub suggestion: Option<String>,
}
