//! The request bodies of the REST API (`/api/v1`), in one place: the server deserializes them,
//! the `pergola` CLI serializes them, and the OpenAPI document describes them (feature
//! `openapi`). The answers are the records of [`crate::model`] and friends.
//!
//! Values that the services check themselves (stage types, grace periods, retention days) are
//! carried as the client typed them, so a bad value is answered with a validation problem
//! naming the field (422) rather than a malformed-request one (400).

use crate::StageType;
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
}
