//! Stage types and the lifecycle of a live stage.

use crate::Error;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The classification of a stage (see the seed: DEV, QA, PROD).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum StageType {
    Dev,
    Qa,
    Prod,
}

impl StageType {
    pub const ALL: [StageType; 3] = [StageType::Dev, StageType::Qa, StageType::Prod];

    /// The stored and wire form: `dev`, `qa`, `prod`.
    pub fn as_str(self) -> &'static str {
        match self {
            StageType::Dev => "dev",
            StageType::Qa => "qa",
            StageType::Prod => "prod",
        }
    }

    /// How the UI shows it: `DEV`, `QA`, `PROD`.
    pub fn label(self) -> &'static str {
        match self {
            StageType::Dev => "DEV",
            StageType::Qa => "QA",
            StageType::Prod => "PROD",
        }
    }

    /// Parses `dev`/`DEV`/`qa`/`prod` (case-insensitive, trimmed).
    pub fn parse(s: &str) -> Result<Self, Error> {
        let s = s.trim();
        StageType::ALL.into_iter().find(|t| t.as_str().eq_ignore_ascii_case(s)).ok_or_else(|| {
            Error::validation("stage_type", format!("Unknown stage type '{s}'. Choose one of DEV, QA or PROD."))
        })
    }
}

impl fmt::Display for StageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// Whether a live stage serves its application.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum StageStatus {
    Running,
    /// Being suspended: its components got SIGTERM and have up to the grace period to exit.
    Suspending,
    Suspended,
}

impl StageStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            StageStatus::Running => "running",
            StageStatus::Suspending => "suspending",
            StageStatus::Suspended => "suspended",
        }
    }

    pub fn parse(s: &str) -> Result<Self, Error> {
        match s {
            "running" => Ok(StageStatus::Running),
            "suspending" => Ok(StageStatus::Suspending),
            "suspended" => Ok(StageStatus::Suspended),
            other => Err(Error::validation("status", format!("Unknown stage status '{other}'."))),
        }
    }

    /// The status a suspend starts with (`suspending`: components are being stopped), or why
    /// a stage in this status cannot be suspended.
    pub fn suspend(self, stage_id: &str) -> Result<StageStatus, Error> {
        match self {
            StageStatus::Running => Ok(StageStatus::Suspending),
            StageStatus::Suspending => {
                Err(Error::invalid_state(format!("Stage '{stage_id}' is already being suspended.")))
            }
            StageStatus::Suspended => Err(Error::invalid_state(format!("Stage '{stage_id}' is already suspended."))),
        }
    }

    /// The status once every component of a suspending stage has stopped.
    pub fn settle(self) -> StageStatus {
        match self {
            StageStatus::Suspending => StageStatus::Suspended,
            other => other,
        }
    }

    /// The status after resuming, or why a stage in this status cannot be resumed. A resume
    /// is accepted "anytime": a suspending stage is marked to resume and becomes `running` as
    /// soon as its components have stopped (it shows `suspending` until then).
    pub fn resume(self, stage_id: &str) -> Result<StageStatus, Error> {
        match self {
            StageStatus::Suspended | StageStatus::Suspending => Ok(StageStatus::Running),
            StageStatus::Running => Err(Error::invalid_state(format!("Stage '{stage_id}' is already running."))),
        }
    }

    /// Whether the stage serves traffic and runs its schedules.
    pub fn is_running(self) -> bool {
        self == StageStatus::Running
    }
}

/// The seed's "usually 60 secs" between SIGTERM and SIGKILL.
pub const DEFAULT_GRACE_SECS: u32 = 60;
/// The longest grace period a stage may have (one hour).
pub const MAX_GRACE_SECS: u32 = 3600;

/// Parses a grace period typed by a user: whole seconds, 1 to [`MAX_GRACE_SECS`].
pub fn parse_grace(input: &str) -> Result<u32, Error> {
    let input = input.trim().trim_end_matches('s').trim_end();
    check_grace(input.parse().map_err(|_| bad_grace())?)
}

/// Checks a grace period given as a number (an API body, a CLI flag): 1 to [`MAX_GRACE_SECS`].
pub fn check_grace(secs: u32) -> Result<u32, Error> {
    if !(1..=MAX_GRACE_SECS).contains(&secs) {
        return Err(bad_grace());
    }
    Ok(secs)
}

fn bad_grace() -> Error {
    Error::validation(
        "grace_secs",
        format!("The grace period must be a whole number of seconds from 1 to {MAX_GRACE_SECS}."),
    )
}

/// The dashboard's DELETE STAGE confirmation: the user must type the Stage ID.
pub fn confirm_deletion(stage_id: &str, typed: &str) -> Result<(), Error> {
    if typed.trim() != stage_id {
        return Err(Error::validation("confirm", format!("Type the Stage ID '{stage_id}' to confirm the deletion.")));
    }
    Ok(())
}

impl fmt::Display for StageStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_parse_case_insensitively_and_reject_others() {
        assert_eq!(StageType::parse("DEV").unwrap(), StageType::Dev);
        assert_eq!(StageType::parse(" qa ").unwrap(), StageType::Qa);
        assert_eq!(StageType::parse("prod").unwrap(), StageType::Prod);
        let e = StageType::parse("staging").unwrap_err();
        assert!(e.is_for("stage_type"));
        assert!(e.message.contains("DEV, QA or PROD"));
    }

    #[test]
    fn lifecycle_transitions() {
        assert_eq!(StageStatus::Running.suspend("a").unwrap(), StageStatus::Suspending);
        assert_eq!(StageStatus::Suspending.settle(), StageStatus::Suspended);
        assert_eq!(StageStatus::Running.settle(), StageStatus::Running);
        assert_eq!(StageStatus::Suspended.resume("a").unwrap(), StageStatus::Running);
        assert!(StageStatus::Suspended.suspend("a").unwrap_err().message.contains("already suspended"));
        assert!(StageStatus::Suspending.suspend("a").unwrap_err().message.contains("already being suspended"));
        assert_eq!(StageStatus::Suspending.resume("a").unwrap(), StageStatus::Running, "once stopped");
        assert!(StageStatus::Running.resume("a").unwrap_err().message.contains("already running"));
        for s in [StageStatus::Running, StageStatus::Suspending, StageStatus::Suspended] {
            assert_eq!(StageStatus::parse(s.as_str()).unwrap(), s);
        }
    }

    #[test]
    fn grace_periods_are_whole_seconds_within_an_hour() {
        assert_eq!(parse_grace("60").unwrap(), 60);
        assert_eq!(parse_grace(" 5s ").unwrap(), 5);
        assert_eq!(parse_grace("3600").unwrap(), 3600);
        for bad in ["0", "3601", "-1", "1.5", "", "soon"] {
            let e = parse_grace(bad).unwrap_err();
            assert!(e.is_for("grace_secs") && e.message.contains("1 to 3600"), "{bad:?}");
        }
        assert_eq!(check_grace(30).unwrap(), 30);
        assert_eq!(check_grace(0).unwrap_err(), parse_grace("0").unwrap_err());
    }

    #[test]
    fn a_deletion_is_confirmed_by_typing_the_stage_id() {
        assert!(confirm_deletion("test", " test ").is_ok());
        let e = confirm_deletion("test", "tset").unwrap_err();
        assert!(e.is_for("confirm") && e.message == "Type the Stage ID 'test' to confirm the deletion.");
    }
}
