//! A stage's configuration (environment settings): list, set, unset.

use super::{ConfigKeyPath, StagePath};
use crate::auth::User;
use crate::problem::{ApiResult, Problem};
use crate::Body;
use axum::extract::Path;
use axum::Json;
use pergola_core::Services;
use pergola_domain::wire::ConfigInput;
use pergola_domain::ConfigEntry;
use utoipa_axum::{router::OpenApiRouter, routes};

pub fn router() -> OpenApiRouter<Services> {
    OpenApiRouter::new().routes(routes!(list_config)).routes(routes!(set_config, unset_config))
}

#[utoipa::path(get, path = "/api/v1/projects/{project}/stages/{stage}/config", tag = "configuration",
    params(StagePath),
    responses(
        (status = 200, description = "The stage's settings by key; secret values are null", body = [ConfigEntry]),
        (status = 404, description = "No such live stage", body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_config(User(s): User, Path(p): Path<StagePath>) -> ApiResult<Json<Vec<ConfigEntry>>> {
    Ok(Json(s.config(&p.project, &p.stage).await?))
}

#[utoipa::path(put, path = "/api/v1/projects/{project}/stages/{stage}/config/{key}", tag = "configuration", request_body = ConfigInput,
    params(ConfigKeyPath),
    responses(
        (status = 200, description = "Saved; applies with the stage's next release", body = ConfigEntry),
        (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such live stage", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid key or value", body = Problem, content_type = "application/problem+json"),
    ))]
async fn set_config(
    User(s): User,
    Path(p): Path<ConfigKeyPath>,
    Body(input): Body<ConfigInput>,
) -> ApiResult<Json<ConfigEntry>> {
    Ok(Json(s.set_config(&p.project, &p.stage, &p.key, &input.value, input.secret).await?))
}

#[utoipa::path(delete, path = "/api/v1/projects/{project}/stages/{stage}/config/{key}", tag = "configuration",
    params(ConfigKeyPath),
    responses(
        (status = 200, description = "Removed; the remaining settings", body = [ConfigEntry]),
        (status = 404, description = "No such live stage or setting", body = Problem, content_type = "application/problem+json"),
    ))]
async fn unset_config(User(s): User, Path(p): Path<ConfigKeyPath>) -> ApiResult<Json<Vec<ConfigEntry>>> {
    s.unset_config(&p.project, &p.stage, &p.key).await?;
    Ok(Json(s.config(&p.project, &p.stage).await?))
}
