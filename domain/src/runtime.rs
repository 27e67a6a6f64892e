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
    /// The line's number: it grows with each line of the component, across its restarts, its
    /// releases and the server's own restarts (see [`line_number`]) — a follower asks for the
    /// lines after the last number it saw.
    #[serde(default)]
    pub seq: u64,
}

/// The number of a line printed at `at`, after a line numbered `last`: its time in microseconds
/// since 1970, or one more than `last` when that is later. Numbers so grow across the server's
/// restarts (a follower that reconnects to a restarted server is not left waiting for numbers
/// the new one has yet to reach), and two servers reading one pod's timestamped log number its
/// lines alike (a follower may reconnect to another replica) — but for lines sharing a
/// microsecond where one of them began reading.
pub fn line_number(last: u64, at: DateTime<Utc>) -> u64 {
    u64::try_from(at.timestamp_micros()).unwrap_or(0).max(last + 1)
}

impl ComponentStatus {
    /// A component in `state` with nothing observed yet: health unknown, no restarts, no
    /// process, no exit code, no probes.
    pub fn new(name: &str, kind: crate::ComponentKind, port: Option<u16>, state: ComponentState) -> Self {
        Self {
            name: name.to_owned(),
            kind,
            port,
            state,
            health: Health::Unknown,
            restarts: 0,
            pid: None,
            started_at: None,
            exit_code: None,
            uptime_secs: None,
            kill_in_secs: None,
            probes: Vec::new(),
        }
    }

    /// The health to show: only services have a health check.
    pub fn health_label(&self) -> &'static str {
        if self.kind == crate::ComponentKind::Service {
            self.health.as_str()
        } else {
            "—"
        }
    }
}

/// One health probe of a service: when, and whether it answered 2xx/3xx in time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Probe {
    pub at: DateTime<Utc>,
    pub healthy: bool,
}

/// How many probes a component keeps for its health history.
pub const PROBE_HISTORY: usize = 20;

/// What happened to a stage, for its events timeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Created,
    Updated,
    Deployed,
    Suspending,
    Suspended,
    Resumed,
    Archived,
    Restored,
    ConfigChanged,
    Started,
    Crashed,
    Restarted,
    Killed,
    Completed,
    Healthy,
    Unhealthy,
    /// Who may open the share links changed, or a guest link was created or revoked.
    SharingChanged,
    /// The runtime could not ask the components to stop (a cluster that did not take the
    /// request): the server asks again until it does.
    StopFailed,
}

impl EventKind {
    pub const ALL: [EventKind; 18] = [
        EventKind::Created,
        EventKind::Updated,
        EventKind::Deployed,
        EventKind::Suspending,
        EventKind::Suspended,
        EventKind::Resumed,
        EventKind::Archived,
        EventKind::Restored,
        EventKind::ConfigChanged,
        EventKind::Started,
        EventKind::Crashed,
        EventKind::Restarted,
        EventKind::Killed,
        EventKind::Completed,
        EventKind::Healthy,
        EventKind::Unhealthy,
        EventKind::SharingChanged,
        EventKind::StopFailed,
    ];

    /// The stored and wire form, e.g. `config_changed`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Created => "created",
            EventKind::Updated => "updated",
            EventKind::Deployed => "deployed",
            EventKind::Suspending => "suspending",
            EventKind::Suspended => "suspended",
            EventKind::Resumed => "resumed",
            EventKind::Archived => "archived",
            EventKind::Restored => "restored",
            EventKind::ConfigChanged => "config_changed",
            EventKind::Started => "started",
            EventKind::Crashed => "crashed",
            EventKind::Restarted => "restarted",
            EventKind::Killed => "killed",
            EventKind::Completed => "completed",
            EventKind::Healthy => "healthy",
            EventKind::Unhealthy => "unhealthy",
            EventKind::SharingChanged => "sharing_changed",
            EventKind::StopFailed => "stop_failed",
        }
    }

    /// How the timeline labels it: `config changed`.
    pub fn label(self) -> &'static str {
        match self {
            EventKind::ConfigChanged => "config changed",
            EventKind::SharingChanged => "sharing changed",
            EventKind::StopFailed => "stop failed",
            other => other.as_str(),
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Whether it reports trouble (shown in red).
    pub fn is_trouble(self) -> bool {
        matches!(self, EventKind::Crashed | EventKind::Killed | EventKind::Unhealthy | EventKind::StopFailed)
    }
}

/// One entry of a stage's events timeline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StageEvent {
    pub at: DateTime<Utc>,
    pub kind: EventKind,
    /// The component it is about, for what the runtime observed.
    pub component: Option<String>,
    pub message: String,
    /// Who caused it (a username, `NAME (token T)`); `None` for what the system did or observed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
}

impl StageEvent {
    pub fn new(at: DateTime<Utc>, kind: EventKind, message: impl Into<String>) -> Self {
        Self { at, kind, component: None, message: message.into(), actor: None }
    }

    pub fn of_component(at: DateTime<Utc>, kind: EventKind, component: &str, message: impl Into<String>) -> Self {
        Self { at, kind, component: Some(component.to_owned()), message: message.into(), actor: None }
    }
}

/// What the runtime observes of one component.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ComponentStatus {
    pub name: String,
    pub kind: crate::ComponentKind,
    /// The port a service listens on (its share link forwards there): the runtime assigns it,
    /// preferring the manifest's `port` when that one is free.
    pub port: Option<u16>,
    pub state: ComponentState,
    pub health: Health,
    pub restarts: u32,
    pub pid: Option<u32>,
    pub started_at: Option<DateTime<Utc>>,
    pub exit_code: Option<i32>,
    /// Seconds since the current process started, while it runs.
    pub uptime_secs: Option<u64>,
    /// While stopping: seconds left of the grace period before SIGKILL.
    pub kill_in_secs: Option<u64>,
    /// The last health probes, oldest first (services with a health check).
    pub probes: Vec<Probe>,
}

/// "3 s", "4 min 12 s", "2 h 5 min", "3 d 4 h": how long something has been up.
pub fn format_duration(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s} s"),
        s if s < 3600 => format!("{} min {} s", s / 60, s % 60),
        s if s < 86_400 => format!("{} h {} min", s / 3600, (s % 3600) / 60),
        s => format!("{} d {} h", s / 86_400, (s % 86_400) / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(format_duration(0), "0 s");
        assert_eq!(format_duration(59), "59 s");
        assert_eq!(format_duration(252), "4 min 12 s");
        assert_eq!(format_duration(7500), "2 h 5 min");
        assert_eq!(format_duration(273_600), "3 d 4 h");
    }

    #[test]
    fn event_kinds_round_trip() {
        for k in EventKind::ALL {
            assert_eq!(EventKind::parse(k.as_str()), Some(k));
            assert_eq!(serde_json::to_value(k).unwrap(), serde_json::json!(k.as_str()));
        }
        assert_eq!(EventKind::parse("nope"), None);
        assert_eq!(EventKind::ConfigChanged.label(), "config changed");
    }
}
