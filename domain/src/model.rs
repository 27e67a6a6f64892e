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
    /// Seconds its components get between SIGTERM and SIGKILL when it stops.
    pub grace_secs: u32,
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
        if self.name == self.id {
            self.id.clone()
        } else {
            format!("{} ({})", self.name, self.id)
        }
    }
}

/// A versioned artifact of a project, described by its manifest: an uploaded archive
/// (content-addressed, immutable) or — administrators only, behind `PERGOLA_PATH_BUILDS` — a
/// directory on the server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Build {
    pub project_id: String,
    /// 1, 2, 3, … per project.
    pub number: i64,
    /// The manifest's `version`, if it has one.
    pub version: Option<String>,
    /// The manifest text (TOML): the archive's `pergola.toml`.
    pub manifest: String,
    /// Where the build's files are on the machine that runs it (an uploaded build: its
    /// artifact's unpacked, read-only directory).
    pub workdir: String,
    pub created_at: DateTime<Utc>,
    /// `sha256:<64 hex>` of the archive as it was uploaded; `None` for a build registered by a
    /// server path.
    #[serde(default)]
    pub digest: Option<String>,
    /// The archive's size in bytes (as uploaded, compressed).
    #[serde(default)]
    pub size: Option<u64>,
    /// The bytes of the archive's files once unpacked.
    #[serde(default)]
    pub unpacked_size: Option<u64>,
    /// Who uploaded (or registered) it.
    #[serde(default)]
    pub uploaded_by: Option<String>,
    /// The artifact was deleted by the retention of unused artifacts: the build is listed but
    /// can no longer be deployed.
    #[serde(default)]
    pub expired: bool,
}

/// A build as the dashboard's Builds page lists it: the build and where it runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildListing {
    pub build: Build,
    /// The live stages whose current (newest) release is of this build, oldest stage first; a
    /// suspended stage runs it again when it is resumed.
    pub running_on: Vec<BuildStage>,
    /// Its manifest's components, as `name (kind)` (read on the server: the browser has no
    /// manifest parser).
    #[serde(default)]
    pub components: Vec<String>,
}

/// A live stage whose current release is of a build.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildStage {
    pub stage_id: String,
    pub stage_name: String,
    pub stage_type: StageType,
    pub status: StageStatus,
    /// The stage's release of the build.
    pub release: i64,
}

impl Build {
    /// The digest's short form, `sha256:` and the first 12 hex digits (`None` for a build
    /// registered by a server path).
    pub fn short_digest(&self) -> Option<String> {
        let digest = self.digest.as_deref()?;
        let (algorithm, hex) = digest.split_once(':').unwrap_or(("", digest));
        let short: String = hex.chars().take(12).collect();
        Some(if algorithm.is_empty() { short } else { format!("{algorithm}:{short}") })
    }
}

/// A size in bytes as people read it: `512 bytes`, `1.5 KiB`, `12.0 MiB`, `1.2 GiB`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 3] = ["KiB", "MiB", "GiB"];
    if bytes < 1024 {
        return format!("{bytes} bytes");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// A build deployed to a stage. The newest release of a stage is the one that runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Release {
    pub project_id: String,
    pub stage_id: String,
    /// 1, 2, 3, … per stage.
    pub number: i64,
    pub build_number: i64,
    pub build_version: Option<String>,
    /// The configuration keys the release was deployed with (values stay on the server).
    pub config_keys: Vec<String>,
    pub created_at: DateTime<Utc>,
    /// The stage of the project its build was promoted from, if it was.
    #[serde(default)]
    pub promoted_from: Option<String>,
}

/// What the stage page shows of what runs: releases (newest first), components, share links
/// (their output comes on its own: [`crate::logs::Output`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StageActivity {
    /// The stage as it is now (its status changes while it is suspending).
    pub stage: Stage,
    pub events: Vec<crate::StageEvent>,
    pub releases: Vec<Release>,
    pub components: Vec<crate::runtime::ComponentStatus>,
    pub links: Vec<crate::share::ShareLink>,
    /// Who is looking: the page shows only the buttons [`crate::permits`] allows.
    #[serde(default)]
    pub actor: crate::Actor,
}

/// What a stage card shows besides the stage: its running release and its components.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StageSummary {
    pub release: Option<Release>,
    pub components: Vec<crate::runtime::ComponentStatus>,
    /// Share links of the running release's service components.
    pub links: Vec<crate::share::ShareLink>,
    /// Each component's CPU over the last hour.
    #[serde(default)]
    pub sparklines: Vec<crate::metrics::Sparkline>,
}

/// Everything the project page shows: one page of its live stages (see [`crate::StageQuery`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProjectOverview {
    pub project: Project,
    pub stages: Vec<Stage>,
    pub archived: Vec<Stage>,
    pub retention: RetentionPolicy,
    /// How many live stages match the page's search and filters; `stages` is one page of them.
    #[serde(default)]
    pub matching: u64,
    /// How many live stages the project has.
    #[serde(default)]
    pub total: u64,
    /// The cursor of the next page of matching stages, if there are more.
    #[serde(default)]
    pub next: Option<String>,
    /// Per live stage ID.
    #[cfg_attr(feature = "openapi", schema(ignore))]
    #[serde(default)]
    pub summaries: std::collections::BTreeMap<String, StageSummary>,
    /// Who is looking: the page shows only the buttons [`crate::permits`] allows.
    #[cfg_attr(feature = "openapi", schema(ignore))]
    #[serde(default)]
    pub actor: crate::Actor,
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

/// One configuration setting of a stage, as the dashboard, API and CLI see it: a secret's
/// value is never sent back once saved (`value` is `None`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConfigEntry {
    pub key: String,
    pub value: Option<String>,
    pub secret: bool,
    pub updated_at: DateTime<Utc>,
}

/// The largest configuration value, in bytes.
pub const MAX_CONFIG_VALUE_BYTES: usize = 32 * 1024;

/// Checks a configuration setting: the key is an environment variable name Pergola does not
/// set itself; the value has at most [`MAX_CONFIG_VALUE_BYTES`] and no NUL character.
pub fn validate_config(key: &str, value: &str) -> Result<(), crate::Error> {
    crate::manifest::check_env_key(key).map_err(|reason| crate::Error::validation("key", capitalize(&reason)))?;
    if value.len() > MAX_CONFIG_VALUE_BYTES {
        return Err(crate::Error::validation(
            "value",
            format!("The value must be at most {MAX_CONFIG_VALUE_BYTES} bytes (it has {}).", value.len()),
        ));
    }
    if value.contains('\0') {
        return Err(crate::Error::validation("value", "The value must not contain NUL characters."));
    }
    Ok(())
}

fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    chars.next().map(|c| c.to_uppercase().chain(chars).collect::<String>() + ".").unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_digests_read_shortly() {
        assert_eq!(human_size(0), "0 bytes");
        assert_eq!(human_size(1023), "1023 bytes");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(12 << 20), "12.0 MiB");
        assert_eq!(human_size(3 << 30), "3.0 GiB");
        assert_eq!(human_size(5 << 40), "5120.0 GiB");
        let build = Build {
            project_id: "p".into(),
            number: 1,
            version: None,
            manifest: String::new(),
            workdir: String::new(),
            created_at: chrono::DateTime::UNIX_EPOCH,
            digest: Some(format!("sha256:{}", "ab".repeat(32))),
            size: None,
            unpacked_size: None,
            uploaded_by: None,
            expired: false,
        };
        assert_eq!(build.short_digest().as_deref(), Some("sha256:abababababab"));
        assert_eq!(Build { digest: None, ..build }.short_digest(), None);
    }

    #[test]
    fn config_keys_and_values_are_checked() {
        assert!(validate_config("LOG_LEVEL", "debug").is_ok());
        assert!(validate_config("_X1", "").is_ok());
        for (key, value, field, why) in [
            ("log_level", "x", "key", "not a valid variable name"),
            ("1ABC", "x", "key", "not a valid variable name"),
            ("", "x", "key", "not a valid variable name"),
            ("PORT", "x", "key", "set by Pergola"),
            ("PERGOLA_STAGE", "x", "key", "set by Pergola"),
            ("OK", "a\0b", "value", "NUL"),
            ("LD_PRELOAD", "x", "key", "changes which programs or libraries run"),
            ("LD_LIBRARY_PATH", "x", "key", "changes which programs or libraries run"),
            ("MALLOC_CHECK_", "x", "key", "changes which programs or libraries run"),
            ("PATH", "x", "key", "changes which programs or libraries run"),
            ("BASH_ENV", "x", "key", "changes which programs or libraries run"),
            ("NODE_OPTIONS", "x", "key", "changes which programs or libraries run"),
            ("GLIBC_TUNABLES", "x", "key", "changes which programs or libraries run"),
        ] {
            let e = validate_config(key, value).unwrap_err();
            assert!(e.is_for(field) && e.message.contains(why), "{key:?}: {e:?}");
        }
        for key in ["PATHS", "MY_PATH", "HOMEPAGE", "OLD_PRELOAD", "ENVIRONMENT", "LOG_LEVEL"] {
            assert!(validate_config(key, "x").is_ok(), "{key}");
        }
        let longest = "K".repeat(crate::manifest::MAX_ENV_KEY_LEN);
        assert!(validate_config(&longest, "x").is_ok());
        let e = validate_config(&format!("{longest}K"), "x").unwrap_err();
        assert!(e.is_for("key") && e.message.contains("at most 128 characters"), "{e:?}");
        let big = "x".repeat(MAX_CONFIG_VALUE_BYTES + 1);
        assert!(validate_config("BIG", &big).unwrap_err().message.contains("at most 32768 bytes"));
    }
}
