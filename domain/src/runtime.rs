//! What a runtime observes of a stage's components, as shown by the dashboard, API and CLI.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum ComponentState {
    Starting,
    Running,
    Crashed,
    Stopping,
    Stopped,
    /// A job that ran to completion (successfully or not: see `exit_code`).
    Completed,
    /// A cron component waiting for its schedule.
    Scheduled,
}

impl ComponentState {
    pub fn as_str(self) -> &'static str {
        match self {
            ComponentState::Starting => "starting",
            ComponentState::Running => "running",
            ComponentState::Crashed => "crashed",
            ComponentState::Stopping => "stopping",
            ComponentState::Stopped => "stopped",
            ComponentState::Completed => "completed",
            ComponentState::Scheduled => "scheduled",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Health {
    Healthy,
    Unhealthy,
    Unknown,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Healthy => "healthy",
            Health::Unhealthy => "unhealthy",
            Health::Unknown => "unknown",
        }
    }
}

/// One line a component printed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LogLine {
    pub at: DateTime<Utc>,
    /// `stdout`, `stderr`, or `pergola` for what the platform says about the component.
    pub stream: String,
    pub line: String,
}

impl ComponentStatus {
    /// The health to show: only services have a health check.
    pub fn health_label(&self) -> &'static str {
        if self.kind == crate::ComponentKind::Service { self.health.as_str() } else { "—" }
    }
}

/// What the runtime observes of one component.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ComponentStatus {
    pub name: String,
    pub kind: crate::ComponentKind,
    /// The port a service listens on (its share link forwards there).
    pub port: Option<u16>,
    pub state: ComponentState,
    pub health: Health,
    pub restarts: u32,
    pub pid: Option<u32>,
    pub started_at: Option<DateTime<Utc>>,
    pub exit_code: Option<i32>,
}
