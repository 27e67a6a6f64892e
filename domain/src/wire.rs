//! The request bodies of the REST API (`/api/v1`), in one place: the server deserializes them,
//! the `pergola` CLI serializes them, and the OpenAPI document describes them (feature
//! `openapi`). The answers are the records of [`crate::model`] and friends.
//!
//! Values that need parsing (stage types, grace periods, retention days) are carried as the
//! client typed them and parsed by the server's handlers into the typed values the services
//! take (`StageType::parse`, [`StagePatch::parse`], [`RetentionInput::parse`]), so a bad value
//! is answered with a validation problem naming the field (422) rather than a malformed-request
//! one (400).

use crate::{check_grace, Error, RetentionPolicy, StageType};
use serde::{Deserialize, Serialize};

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
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub stage_type: Option<String>,
    /// Seconds between SIGTERM and SIGKILL when the stage stops (1 to 3600).
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 3600))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_secs: Option<u32>,
}

impl StagePatch {
    pub fn new(name: Option<String>, stage_type: Option<StageType>, grace_secs: Option<u32>) -> Self {
        Self { name, stage_type: stage_type.map(|t| t.as_str().to_owned()), grace_secs }
    }

    /// Whether the patch changes nothing.
    pub fn is_empty(&self) -> bool {
        self.name.is_none() && self.stage_type.is_none() && self.grace_secs.is_none()
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
    pub build: i64,
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
    pub dev_days: i64,
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 3650))]
    pub qa_days: i64,
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 3650))]
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

#[cfg(test)]
mod tests {
    use super::*;
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
        let patch = StagePatch { name: None, stage_type: Some("QA".into()), grace_secs: Some(5) };
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
