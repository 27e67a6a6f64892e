//! What runs on a stage: its components and their logs.

use super::{ComponentPath, StagePath};
use crate::auth::User;
use crate::problem::{ApiResult, Problem};
use axum::extract::Path;
use axum::Json;
use pergola_core::Services;
use pergola_domain::runtime::{ComponentStatus, LogLine};
use utoipa_axum::{router::OpenApiRouter, routes};

pub fn router() -> OpenApiRouter<Services> {
    OpenApiRouter::new().routes(routes!(list_components)).routes(routes!(component_logs))
}

#[utoipa::path(get, path = "/api/v1/projects/{project}/stages/{stage}/components", tag = "releases",
    params(StagePath),
    responses(
        (status = 200, description = "Each component's state, health and restarts", body = [ComponentStatus]),
        (status = 404, description = "No such live stage", body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_components(User(s): User, Path(p): Path<StagePath>) -> ApiResult<Json<Vec<ComponentStatus>>> {
    Ok(Json(s.components(&p.project, &p.stage).await?))
}

#[utoipa::path(get, path = "/api/v1/projects/{project}/stages/{stage}/components/{component}/logs", tag = "releases",
    params(ComponentPath),
    responses(
        (status = 200, description = "The component's last output lines", body = [LogLine]),
        (status = 404, description = "No such live stage", body = Problem, content_type = "application/problem+json"),
    ))]
async fn component_logs(User(s): User, Path(p): Path<ComponentPath>) -> ApiResult<Json<Vec<LogLine>>> {
    Ok(Json(s.logs(&p.project, &p.stage, &p.component).await?))
}
