//! A stage's lifecycle: suspend, resume, restore (after a delete).

use super::StagePath;
use crate::auth::User;
use crate::problem::{ApiResult, Problem};
use axum::extract::Path;
use axum::Json;
use pergola_core::Services;
use pergola_domain::Stage;
use utoipa_axum::{router::OpenApiRouter, routes};

pub fn router() -> OpenApiRouter<Services> {
    OpenApiRouter::new().routes(routes!(suspend_stage)).routes(routes!(resume_stage)).routes(routes!(restore_stage))
}

#[utoipa::path(post, path = "/api/v1/projects/{project}/stages/{stage}/suspend", tag = "stages",
    params(StagePath),
    responses(
        (status = 200, description = "Suspended, or `suspending` while its components still have their grace period to stop (poll the stage)", body = Stage),
        (status = 404, description = "No such live stage", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already suspended or being suspended", body = Problem, content_type = "application/problem+json"),
    ))]
async fn suspend_stage(User(s): User, Path(p): Path<StagePath>) -> ApiResult<Json<Stage>> {
    Ok(Json(s.suspend_stage(&p.project, &p.stage).await?))
}

#[utoipa::path(post, path = "/api/v1/projects/{project}/stages/{stage}/resume", tag = "stages",
    params(StagePath),
    responses(
        (status = 200, description = "Running again, or still suspending and marked to resume: it starts its last release as soon as its components have stopped", body = Stage),
        (status = 404, description = "No such live stage", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already running", body = Problem, content_type = "application/problem+json"),
    ))]
async fn resume_stage(User(s): User, Path(p): Path<StagePath>) -> ApiResult<Json<Stage>> {
    Ok(Json(s.resume_stage(&p.project, &p.stage).await?))
}

#[utoipa::path(post, path = "/api/v1/projects/{project}/stages/{stage}/restore", tag = "stages",
    params(StagePath),
    responses(
        (status = 200, description = "Restored with its previous status", body = Stage),
        (status = 404, description = "No such stage", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not archived (invalid-state) or past its deletion date (restore-expired)", body = Problem, content_type = "application/problem+json"),
    ))]
async fn restore_stage(User(s): User, Path(p): Path<StagePath>) -> ApiResult<Json<Stage>> {
    Ok(Json(s.restore_stage(&p.project, &p.stage).await?))
}
