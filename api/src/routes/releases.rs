//! Releases of a stage: list, deploy a build, redeploy an earlier release (a rollback).

use super::{ReleasePath, StagePath};
use crate::auth::User;
use crate::problem::{ApiResult, Problem};
use crate::{created, Body};
use axum::extract::Path;
use axum::response::IntoResponse;
use axum::Json;
use pergola_core::Services;
use pergola_domain::wire::NewRelease;
use pergola_domain::Release;
use utoipa_axum::{router::OpenApiRouter, routes};

pub fn router() -> OpenApiRouter<Services> {
    OpenApiRouter::new().routes(routes!(list_releases, deploy)).routes(routes!(redeploy))
}

fn location(project: &str, stage: &str, release: &Release) -> String {
    format!("/api/v1/projects/{project}/stages/{stage}/releases/{}", release.number)
}

#[utoipa::path(get, path = "/api/v1/projects/{project}/stages/{stage}/releases", tag = "releases",
    params(StagePath),
    responses(
        (status = 200, description = "The stage's releases, newest (running) first", body = [Release]),
        (status = 404, description = "No such stage", body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_releases(User(s): User, Path(p): Path<StagePath>) -> ApiResult<Json<Vec<Release>>> {
    Ok(Json(s.releases(&p.project, &p.stage).await?))
}

#[utoipa::path(post, path = "/api/v1/projects/{project}/stages/{stage}/releases", tag = "releases", request_body = NewRelease,
    params(StagePath),
    responses(
        (status = 201, description = "Deployed: the new release replaces the running one", body = Release),
        (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such live stage", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The project has no such build (field `build`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The release could not be started", body = Problem, content_type = "application/problem+json"),
    ))]
async fn deploy(User(s): User, Path(p): Path<StagePath>, Body(r): Body<NewRelease>) -> ApiResult<impl IntoResponse> {
    let release = s.deploy(&p.project, &p.stage, r.build).await?;
    Ok(created(location(&p.project, &p.stage, &release), release))
}

#[utoipa::path(post, path = "/api/v1/projects/{project}/stages/{stage}/releases/{number}/redeploy", tag = "releases",
    params(ReleasePath),
    responses(
        (status = 201, description = "The earlier release's build deployed again (a rollback)", body = Release),
        (status = 400, description = "The release number is not an integer (a plain-text message)", body = String, content_type = "text/plain"),
        (status = 404, description = "No such live stage or release", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The release could not be started", body = Problem, content_type = "application/problem+json"),
    ))]
async fn redeploy(User(s): User, Path(p): Path<ReleasePath>) -> ApiResult<impl IntoResponse> {
    let release = s.redeploy(&p.project, &p.stage, p.number).await?;
    Ok(created(location(&p.project, &p.stage, &release), release))
}
