//! A stage's events timeline.

use super::StagePath;
use crate::auth::User;
use crate::problem::{ApiResult, Problem};
use axum::extract::Path;
use axum::Json;
use pergola_core::Services;
use pergola_domain::StageEvent;
use utoipa_axum::{router::OpenApiRouter, routes};

pub fn router() -> OpenApiRouter<Services> {
    OpenApiRouter::new().routes(routes!(list_events))
}

#[utoipa::path(get, path = "/api/v1/projects/{project}/stages/{stage}/events", tag = "releases",
    params(StagePath),
    responses(
        (status = 200, description = "The stage's events timeline, newest first (the last 100)", body = [StageEvent]),
        (status = 404, description = "No such stage (live or archived)", body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_events(User(s): User, Path(p): Path<StagePath>) -> ApiResult<Json<Vec<StageEvent>>> {
    Ok(Json(s.events(&p.project, &p.stage).await?))
}
