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
        StageType::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                Error::validation(
                    "stage_type",
                    format!("Unknown stage type '{s}'. Choose one of DEV, QA or PROD."),
                )
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
    Suspended,
}

impl StageStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            StageStatus::Running => "running",
            StageStatus::Suspended => "suspended",
        }
    }

    pub fn parse(s: &str) -> Result<Self, Error> {
        match s {
            "running" => Ok(StageStatus::Running),
            "suspended" => Ok(StageStatus::Suspended),
            other => Err(Error::validation("status", format!("Unknown stage status '{other}'."))),
        }
    }

    /// The status after suspending, or why a stage in this status cannot be suspended.
    pub fn suspend(self, stage_id: &str) -> Result<StageStatus, Error> {
        match self {
            StageStatus::Running => Ok(StageStatus::Suspended),
            StageStatus::Suspended => {
                Err(Error::invalid_state(format!("Stage '{stage_id}' is already suspended.")))
            }
        }
    }

    /// The status after resuming, or why a stage in this status cannot be resumed.
    pub fn resume(self, stage_id: &str) -> Result<StageStatus, Error> {
        match self {
            StageStatus::Suspended => Ok(StageStatus::Running),
            StageStatus::Running => {
                Err(Error::invalid_state(format!("Stage '{stage_id}' is already running.")))
            }
        }
    }
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
        assert_eq!(StageStatus::Running.suspend("a").unwrap(), StageStatus::Suspended);
        assert_eq!(StageStatus::Suspended.resume("a").unwrap(), StageStatus::Running);
        assert!(StageStatus::Suspended.suspend("a").unwrap_err().message.contains("already suspended"));
        assert!(StageStatus::Running.resume("a").unwrap_err().message.contains("already running"));
    }
}
