//! The handlers, one module per family of routes, and the path parameters they share (one
//! struct per path shape, so each parameter is described once).

pub mod builds;
pub mod components;
pub mod config;
pub mod events;
pub mod lifecycle;
pub mod projects;
pub mod releases;
pub mod settings;
pub mod stages;

use serde::Deserialize;
use utoipa::IntoParams;

/// `/projects/{project}`
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ProjectPath {
    /// Project ID
    pub project: String,
}

/// `/projects/{project}/stages/{stage}`
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct StagePath {
    /// Project ID
    pub project: String,
    /// Stage ID
    pub stage: String,
}

/// `/projects/{project}/stage-ids/{id}`
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct StageIdPath {
    /// Project ID
    pub project: String,
    /// Stage ID to check
    pub id: String,
}

/// `/projects/{project}/stages/{stage}/releases/{number}`
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ReleasePath {
    /// Project ID
    pub project: String,
    /// Stage ID
    pub stage: String,
    /// An earlier release
    pub number: i64,
}

/// `/projects/{project}/stages/{stage}/components/{component}`
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ComponentPath {
    /// Project ID
    pub project: String,
    /// Stage ID
    pub stage: String,
    /// Component name
    pub component: String,
}

/// `/projects/{project}/stages/{stage}/config/{key}`
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ConfigKeyPath {
    /// Project ID
    pub project: String,
    /// Stage ID
    pub stage: String,
    /// Variable name
    pub key: String,
}
