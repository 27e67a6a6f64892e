//! The request bodies of the REST API (`/api/v1`), in one place: the server deserializes them,
//! the `pergola` CLI serializes them, and the OpenAPI document describes them (feature
//! `openapi`). The answers are the records of [`crate::model`] and friends.
//!
//! Values that need parsing (stage types, grace periods, retention days) are carried as the
//! client typed them and parsed by the server's handlers into the typed values the services
//! take (`StageType::parse`, [`StagePatch::parse`], [`RetentionInput::parse`]), so a bad value
//! is answered with a validation problem naming the field (422) rather than a malformed-request
//! one (400).

use crate::limits::{Limit, LimitsPolicy};
use crate::{check_grace, Error, RetentionPolicy, StageType};
use serde::{Deserialize, Deserializer, Serialize};

/// What a display name may be, as the OpenAPI document declares it (ECMA-262 syntax; the API
/// crate sets it on every `name` of a request body): after
/// trimming white space, 1 to 100 characters, none of them a control character or an invisible
/// direction override — exactly what [`crate::validate_name`] accepts.
pub const NAME_PATTERN: &str = concat!(
    "^[ \\t\\n\\u000B\\f\\r\\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]*",
    "[^\\u0000-\\u0020\\u007F-\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202A-\\u202F\\u205F\\u2066-\\u2069\\u3000]",
    "(?:[^\\u0000-\\u001F\\u007F-\\u009F\\u202A-\\u202E\\u2066-\\u2069]{0,98}",
    "[^\\u0000-\\u0020\\u007F-\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202A-\\u202F\\u205F\\u2066-\\u2069\\u3000])?",
    "[ \\t\\n\\u000B\\f\\r\\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]*$"
);

/// A configuration value as the OpenAPI document declares it (set by the API crate): no NUL character (the size limit
/// is in bytes, [`crate::MAX_CONFIG_VALUE_BYTES`], which a JSON schema cannot state).
pub const CONFIG_VALUE_PATTERN: &str = "^[^\\u0000]*$";

/// A whole number as JSON Schema counts them: `300` and `300.0` alike (serde alone refuses the
/// second); `300.5` is refused.
struct Whole(i64);

impl<'de> Deserialize<'de> for Whole {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Whole;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a whole number")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Whole, E> {
                Ok(Whole(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Whole, E> {
                i64::try_from(v).map(Whole).map_err(|_| E::custom("number out of range"))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Whole, E> {
                if v.fract() == 0.0 && v >= i64::MIN as f64 && v < i64::MAX as f64 {
                    Ok(Whole(v as i64))
                } else {
                    Err(E::custom(format!("expected a whole number, not {v}")))
                }
            }
        }
        d.deserialize_any(Visitor)
    }
}

fn whole<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    Whole::deserialize(d).map(|w| w.0)
}

fn whole_u32<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    match Option::<Whole>::deserialize(d)? {
        None => Ok(None),
        Some(Whole(n)) => u32::try_from(n).map(Some).map_err(|_| serde::de::Error::custom("number out of range")),
    }
}

/// A new project. Without `id`, the ID is derived from the name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewProject {
    pub name: String,
    /// Project ID: 1 to 63 lowercase letters, digits and single hyphens, starting with a letter
    /// and not ending with a hyphen (a DNS label); not a reserved word such as `new` or `admin`.
    #[cfg_attr(feature = "openapi", schema(pattern = "^[a-z](-?[a-z0-9])*$", min_length = 1, max_length = 63))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// A new stage. Without `id`, the Stage ID is derived from the name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewStage {
    pub name: String,
    /// `dev`, `qa` or `prod`.
    #[cfg_attr(feature = "openapi", schema(value_type = StageType))]
    #[serde(rename = "type")]
    pub stage_type: String,
    /// Stage ID: 1 to 63 lowercase letters, digits and single hyphens, starting with a letter
    /// and not ending with a hyphen (a DNS label); not a reserved word such as `new` or `admin`.
    #[cfg_attr(feature = "openapi", schema(pattern = "^[a-z](-?[a-z0-9])*$", min_length = 1, max_length = 63))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

impl NewStage {
    pub fn new(name: String, stage_type: StageType, id: Option<String>) -> Self {
        Self { name, stage_type: stage_type.as_str().to_owned(), id }
    }
}

/// Changes to a stage; absent fields keep their value. The Stage ID never changes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StagePatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `dev`, `qa` or `prod`.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<StageType>))]
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub stage_type: Option<String>,
    /// Seconds between SIGTERM and SIGKILL when the stage stops (1 to 3600).
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 3600))]
    #[serde(default, deserialize_with = "whole_u32", skip_serializing_if = "Option::is_none")]
    pub grace_secs: Option<u32>,
    /// Who may open the stage's share links: `members` (signed-in users who may see the
    /// project) or `public` (anyone with the link).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<crate::Visibility>))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visibility: Option<String>,
}

impl StagePatch {
    pub fn new(name: Option<String>, stage_type: Option<StageType>, grace_secs: Option<u32>) -> Self {
        Self { name, stage_type: stage_type.map(|t| t.as_str().to_owned()), grace_secs, visibility: None }
    }

    /// The same patch, also setting the visibility.
    pub fn with_visibility(self, visibility: Option<crate::Visibility>) -> Self {
        Self { visibility: visibility.map(|v| v.as_str().to_owned()), ..self }
    }

    /// Whether the patch changes nothing.
    pub fn is_empty(&self) -> bool {
        self.name.is_none() && self.stage_type.is_none() && self.grace_secs.is_none() && self.visibility.is_none()
    }

    /// Whether it changes the name, type or grace period (what [`Self::parse`] returns).
    pub fn changes_settings(&self) -> bool {
        self.name.is_some() || self.stage_type.is_some() || self.grace_secs.is_some()
    }

    /// The visibility asked for, checked (a validation error naming `visibility`).
    pub fn visibility(&self) -> Result<Option<crate::Visibility>, Error> {
        self.visibility.as_deref().map(crate::Visibility::parse).transpose()
    }

    /// The typed changes, or why the type or the grace period is not acceptable (a validation
    /// error naming `stage_type` or `grace_secs`).
    pub fn parse(self) -> Result<StageUpdate, Error> {
        Ok(StageUpdate {
            stage_type: self.stage_type.as_deref().map(StageType::parse).transpose()?,
            grace_secs: self.grace_secs.map(check_grace).transpose()?,
            name: self.name,
        })
    }
}

/// Changes to a stage as the services apply them (a [`StagePatch`] or the dashboard's settings
/// form, parsed); absent fields keep their value. The name is checked by the services.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StageUpdate {
    pub name: Option<String>,
    pub stage_type: Option<StageType>,
    pub grace_secs: Option<u32>,
}

/// A build to register: its manifest (TOML) and where its files are on the server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewBuild {
    pub manifest: String,
    pub workdir: String,
}

/// Which build to deploy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewRelease {
    #[serde(deserialize_with = "whole")]
    pub build: i64,
}

/// Where to promote a stage's current build.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Promotion {
    /// The target stage's ID (another live stage of the project).
    #[cfg_attr(feature = "openapi", schema(pattern = "^[a-z](-?[a-z0-9])*$", min_length = 1, max_length = 63))]
    pub to: String,
}

/// A new stage like an existing one: its type, configuration and grace period. Without `id`,
/// the Stage ID is derived from the name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Duplication {
    pub name: String,
    /// Stage ID, by the same rules as a new stage's.
    #[cfg_attr(feature = "openapi", schema(pattern = "^[a-z](-?[a-z0-9])*$", min_length = 1, max_length = 63))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Deploy the source's current build to the new stage too.
    #[serde(default)]
    pub deploy: bool,
    /// Copy the source's persistent storage too (the source must be suspended).
    #[serde(default)]
    pub with_storage: bool,
}

/// A configuration value; `secret` values are never returned after saving.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConfigInput {
    /// At most 32768 bytes, without NUL characters.
    pub value: String,
    #[serde(default)]
    pub secret: bool,
}

/// Retention of archived stages in whole days per type (1 to 3650).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RetentionInput {
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 3650))]
    #[serde(deserialize_with = "whole")]
    pub dev_days: i64,
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 3650))]
    #[serde(deserialize_with = "whole")]
    pub qa_days: i64,
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 3650))]
    #[serde(deserialize_with = "whole")]
    pub prod_days: i64,
}

impl RetentionInput {
    /// The policy, or which value is out of range (`retention_dev`, `retention_qa` or
    /// `retention_prod`), with the dashboard's messages.
    pub fn parse(self) -> Result<RetentionPolicy, Error> {
        let [dev, qa, prod] = [self.dev_days, self.qa_days, self.prod_days].map(|d| d.to_string());
        RetentionPolicy::parse(&dev, &qa, &prod)
    }
}

/// The limits of one stage type's components (bounds as on the admin page).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LimitsInputRow {
    /// Memory per component, in MiB.
    #[cfg_attr(feature = "openapi", schema(minimum = 16, maximum = 1048576))]
    #[serde(deserialize_with = "whole")]
    pub memory_mib: i64,
    /// Processes (and threads) per component.
    #[cfg_attr(feature = "openapi", schema(minimum = 8, maximum = 1048576))]
    #[serde(deserialize_with = "whole")]
    pub processes: i64,
    /// Open files per process.
    #[cfg_attr(feature = "openapi", schema(minimum = 32, maximum = 1048576))]
    #[serde(deserialize_with = "whole")]
    pub open_files: i64,
    /// Nice value: 0 (the server's priority) to 19 (lowest).
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 19))]
    #[serde(deserialize_with = "whole")]
    pub cpu_nice: i64,
    /// Out-of-memory preference: 0 to 1000 (ended first).
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 1000))]
    #[serde(deserialize_with = "whole")]
    pub oom_score_adj: i64,
}

/// The resource limits of every stage type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LimitsInput {
    pub dev: LimitsInputRow,
    pub qa: LimitsInputRow,
    pub prod: LimitsInputRow,
}

impl LimitsInput {
    /// The policy, or which value is out of range (`limits_<type>_<limit>`), with the
    /// dashboard's messages.
    pub fn parse(self) -> Result<LimitsPolicy, Error> {
        LimitsPolicy::parse(|t, limit| {
            let row = match t {
                StageType::Dev => self.dev,
                StageType::Qa => self.qa,
                StageType::Prod => self.prod,
            };
            let value = match limit {
                Limit::Memory => row.memory_mib,
                Limit::Processes => row.processes,
                Limit::OpenFiles => row.open_files,
                Limit::CpuNice => row.cpu_nice,
                Limit::OomScoreAdj => row.oom_score_adj,
            };
            value.to_string()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn name_regex() -> regex::Regex {
        regex::Regex::new(NAME_PATTERN).unwrap()
    }

    /// Characters near every edge of the rule: letters, spaces of every kind, controls,
    /// direction overrides, other scripts.
    fn name_char() -> impl Strategy<Value = char> {
        prop::sample::select(vec![
            'a', 'Z', '7', '-', '<', '日', '🤔', ' ', '\t', '\n', '\r', '\u{0B}', '\u{0C}', '\u{85}', '\u{A0}',
            '\u{1680}', '\u{2003}', '\u{2028}', '\u{202F}', '\u{3000}', '\u{0}', '\u{1C}', '\u{7F}', '\u{9F}',
            '\u{202A}', '\u{202E}', '\u{2066}', '\u{2069}', '\u{FEFF}', '\u{200B}',
        ])
    }

    proptest! {
        #[test]
        fn the_declared_name_pattern_accepts_exactly_what_the_server_accepts(
            chars in prop::collection::vec(name_char(), 0..8),
            padding in 0usize..3,
        ) {
            let name: String = chars.into_iter().collect();
            for candidate in [name.clone(), format!("{}{name}", "x".repeat(95 + padding))] {
                prop_assert_eq!(
                    name_regex().is_match(&candidate),
                    crate::validate_name("Stage", &candidate).is_ok(),
                    "{:?}", candidate
                );
            }
        }
    }

    #[test]
    fn the_name_pattern_counts_to_one_hundred_after_trimming() {
        let re = name_regex();
        assert!(re.is_match(&format!("  {}  ", "é".repeat(100))));
        assert!(!re.is_match(&"é".repeat(101)));
        assert!(!re.is_match("   ") && !re.is_match(""));
        let value = regex::Regex::new(CONFIG_VALUE_PATTERN).unwrap();
        assert!(value.is_match("debug\n日本") && !value.is_match("a\u{0}b"));
    }

    #[test]
    fn whole_numbers_may_be_written_as_json_schema_counts_them() {
        let r: RetentionInput =
            serde_json::from_value(json!({"dev_days": 300.0, "qa_days": 7, "prod_days": 30})).unwrap();
        assert_eq!(r.dev_days, 300);
        assert!(
            serde_json::from_value::<RetentionInput>(json!({"dev_days": 1.5, "qa_days": 7, "prod_days": 30})).is_err()
        );
        let d: NewRelease = serde_json::from_value(json!({"build": 2.0})).unwrap();
        assert_eq!(d.build, 2);
        let p: StagePatch = serde_json::from_value(json!({"grace_secs": 30.0})).unwrap();
        assert_eq!(p.grace_secs, Some(30));
        let p: StagePatch = serde_json::from_value(json!({"grace_secs": null})).unwrap();
        assert_eq!(p.grace_secs, None);
        assert!(serde_json::from_value::<StagePatch>(json!({"grace_secs": -1})).is_err());
    }
    use serde_json::json;

    #[test]
    fn bodies_serialize_as_the_api_reads_them() {
        let stage = NewStage::new("Integration tests".into(), StageType::Qa, Some("test".into()));
        assert_eq!(
            serde_json::to_value(&stage).unwrap(),
            json!({"name": "Integration tests", "type": "qa", "id": "test"})
        );
        let patch = StagePatch::new(None, Some(StageType::Prod), Some(30));
        assert_eq!(serde_json::to_value(&patch).unwrap(), json!({"type": "prod", "grace_secs": 30}));
        assert!(StagePatch::default().is_empty() && !patch.is_empty());
        let project: NewProject = serde_json::from_value(json!({"name": "x", "id": null})).unwrap();
        assert_eq!(project, NewProject { name: "x".into(), id: None });
        let config: ConfigInput = serde_json::from_value(json!({"value": "debug"})).unwrap();
        assert!(!config.secret);
    }

    #[test]
    fn bodies_parse_into_typed_values_with_the_field_named() {
        let patch = StagePatch { name: None, stage_type: Some("QA".into()), grace_secs: Some(5), visibility: None };
        assert_eq!(
            patch.parse().unwrap(),
            StageUpdate { name: None, stage_type: Some(StageType::Qa), grace_secs: Some(5) }
        );
        let bad = StagePatch { stage_type: Some("uat".into()), ..Default::default() };
        assert!(bad.parse().unwrap_err().is_for("stage_type"));
        let bad = StagePatch { grace_secs: Some(0), ..Default::default() };
        assert!(bad.parse().unwrap_err().is_for("grace_secs"));
        let policy = RetentionInput { dev_days: 2, qa_days: 14, prod_days: 90 }.parse().unwrap();
        assert_eq!((policy.dev_days, policy.qa_days, policy.prod_days), (2, 14, 90));
        let e = RetentionInput { dev_days: 2, qa_days: -1, prod_days: 90 }.parse().unwrap_err();
        assert!(e.is_for("retention_qa"));
    }
}

// ---------------------------------------------------------------------------------------------
// Access: sign-in, tokens, users, members (issue 9)
// ---------------------------------------------------------------------------------------------

/// Signs in with a username and password and creates a personal API token (what
/// `pergola login` does). A wrong username or password answers 401 without saying which.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Login {
    pub username: String,
    pub password: String,
    /// The new token's name (default `cli`); a token of that name is replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_name: Option<String>,
    /// Days until the token expires (1 to 3650); without it, it does not expire.
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 3650))]
    #[serde(default, deserialize_with = "whole_u32", skip_serializing_if = "Option::is_none")]
    pub expires_in_days: Option<u32>,
}

/// A new personal API token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewToken {
    /// 1 to 64 characters: letters, digits, `-`, `_` and `.`.
    #[cfg_attr(feature = "openapi", schema(pattern = "^[A-Za-z0-9._-]{1,64}$"))]
    pub name: String,
    /// Days until it expires (1 to 3650); without it, it does not expire.
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 3650))]
    #[serde(default, deserialize_with = "whole_u32", skip_serializing_if = "Option::is_none")]
    pub expires_in_days: Option<u32>,
    /// Your own password. Needed when the request is made with an API token: a token alone
    /// makes no token that outlives it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub your_password: Option<String>,
}

/// A new guest link to a stage's share links.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewGuestLink {
    /// Hours until it stops working: 1 to 8760 (365 days).
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 8760))]
    #[serde(deserialize_with = "whole")]
    pub expires_in_hours: i64,
}

impl NewGuestLink {
    /// The life asked for, checked (a validation error naming `expires_in_hours`).
    pub fn expires_in(&self) -> Result<chrono::Duration, Error> {
        let hours = chrono::Duration::try_hours(self.expires_in_hours).unwrap_or(chrono::Duration::MAX);
        crate::share::validate_guest_expiry(hours).map_err(|mut e| {
            e.field = Some("expires_in_hours".into());
            e
        })
    }
}

/// A new user (administrators only).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewUser {
    /// 1 to 64 characters: lowercase letters, digits, `.`, `_` and `-`, starting with a letter or digit.
    pub username: String,
    /// At least 10 characters, at most 1024 bytes, not only spaces.
    #[cfg_attr(feature = "openapi", schema(min_length = 10))]
    pub password: String,
    /// Grants the administrator role.
    #[serde(default)]
    pub admin: bool,
    /// Your own password. Needed when the request is made with an API token: a token alone
    /// makes no account, password or administrator that outlives it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub your_password: Option<String>,
}

/// Changes to a user (administrators only); absent fields keep their value. Disabling a user
/// ends their sessions and stops their tokens at once. Through an API token, a change that lets
/// someone in (a password, the administrator role, enabling) needs `your_password`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserPatch {
    /// A new password: at least 10 characters, at most 1024 bytes, not only spaces.
    #[cfg_attr(feature = "openapi", schema(min_length = 10))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<bool>,
    /// Your own password. Needed when the request is made with an API token: a token alone
    /// makes no account, password or administrator that outlives it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub your_password: Option<String>,
}

/// A user's own new password; `current` must be right.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PasswordChange {
    pub current: String,
    pub new: String,
}

/// Makes a user a member of a project, or changes their role.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MemberInput {
    pub username: String,
    pub role: crate::access::Role,
    /// Through an API token, adding a member or raising their role needs the caller's own
    /// password too ([`crate::access::role_change_needs_password`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub your_password: Option<String>,
}

/// An invitation to create an account (administrators only): optionally an administrator's,
/// optionally joining a project with a role. It works once, for 7 days.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewInvitation {
    #[serde(default)]
    pub admin: bool,
    /// A project the new user joins (with `role`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<crate::access::Role>,
    /// Your own password. Needed when the request is made with an API token: a token alone
    /// makes no account, password or administrator that outlives it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub your_password: Option<String>,
}
