//! The handlers, one module per family of routes, and the path parameters they share (one
//! struct per path shape, so each parameter is described once, with the rules the server
//! enforces: a Project or Stage ID that breaks them cannot exist).

pub mod access;
pub mod builds;
pub mod components;
pub mod config;
pub mod events;
pub mod kubernetes;
pub mod lifecycle;
pub mod live;
pub mod metrics;
pub mod projects;
pub mod promote;
pub mod releases;
pub mod settings;
pub mod sharing;
pub mod stages;

use serde::Deserialize;
use utoipa::IntoParams;

/// `/projects/{project}`
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ProjectPath {
    /// Project ID
    #[param(pattern = "^[a-z](-?[a-z0-9])*$", min_length = 1, max_length = 63)]
    pub project: String,
}

/// `/projects/{project}/stages/{stage}/compare/{other}`
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ComparePath {
    /// Project ID
    #[param(pattern = "^[a-z](-?[a-z0-9])*$", min_length = 1, max_length = 63)]
    pub project: String,
    /// Stage ID of the stage compared (the one a promotion would take the build from)
    #[param(pattern = "^[a-z](-?[a-z0-9])*$", min_length = 1, max_length = 63)]
    pub stage: String,
    /// Stage ID of the stage it is compared with
    #[param(pattern = "^[a-z](-?[a-z0-9])*$", min_length = 1, max_length = 63)]
    pub other: String,
}

/// `/projects/{project}/stages/{stage}`
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct StagePath {
    /// Project ID
    #[param(pattern = "^[a-z](-?[a-z0-9])*$", min_length = 1, max_length = 63)]
    pub project: String,
    /// Stage ID
    #[param(pattern = "^[a-z](-?[a-z0-9])*$", min_length = 1, max_length = 63)]
    pub stage: String,
}

/// `/projects/{project}/stage-ids/{id}`
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct StageIdPath {
    /// Project ID
    #[param(pattern = "^[a-z](-?[a-z0-9])*$", min_length = 1, max_length = 63)]
    pub project: String,
    /// Stage ID to check
    pub id: String,
}

/// `/projects/{project}/stages/{stage}/releases/{number}`
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ReleasePath {
    /// Project ID
    #[param(pattern = "^[a-z](-?[a-z0-9])*$", min_length = 1, max_length = 63)]
    pub project: String,
    /// Stage ID
    #[param(pattern = "^[a-z](-?[a-z0-9])*$", min_length = 1, max_length = 63)]
    pub stage: String,
    /// An earlier release
    pub number: i64,
}

/// `/projects/{project}/stages/{stage}/components/{component}`
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ComponentPath {
    /// Project ID
    #[param(pattern = "^[a-z](-?[a-z0-9])*$", min_length = 1, max_length = 63)]
    pub project: String,
    /// Stage ID
    #[param(pattern = "^[a-z](-?[a-z0-9])*$", min_length = 1, max_length = 63)]
    pub stage: String,
    /// Component name
    pub component: String,
}

/// `/projects/{project}/stages/{stage}/config/{key}`
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ConfigKeyPath {
    /// Project ID
    #[param(pattern = "^[a-z](-?[a-z0-9])*$", min_length = 1, max_length = 63)]
    pub project: String,
    /// Stage ID
    #[param(pattern = "^[a-z](-?[a-z0-9])*$", min_length = 1, max_length = 63)]
    pub stage: String,
    /// Variable name: A-Z, 0-9 and `_`, not starting with a digit, at most 128 characters; not
    /// one Pergola sets itself (`PORT`, `TMPDIR`, `PERGOLA_…`) nor one that changes which
    /// programs or libraries run (`LD_…`, `MALLOC_…`, `PATH`, `HOME`, `SHELL`, `IFS`, `ENV`,
    /// `BASH_ENV`, `GCONV_PATH`, `GLIBC_TUNABLES`, `PYTHONPATH`, `PYTHONHOME`, `PYTHONSTARTUP`,
    /// `NODE_OPTIONS`, `NODE_PATH`, `PERL5LIB`, `PERL5OPT`, `PERLLIB`, `RUBYOPT`, `RUBYLIB`,
    /// `JAVA_TOOL_OPTIONS`, `JDK_JAVA_OPTIONS`, `_JAVA_OPTIONS`).
    #[param(pattern = "^[A-Z_][A-Z0-9_]*$", min_length = 1, max_length = 128)]
    pub key: String,
}
