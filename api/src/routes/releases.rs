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
    OpenApiRouter::new()
        .routes(routes!(list_releases, deploy))
        .routes(routes!(redeploy))
        .routes(routes!(download_build))
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

/// A release's build as a tar + gzip archive (its files and its `pergola.toml`), streamed as it
/// is packed: for a member who may deploy to the stage, or with `Authorization: Bearer pgf_…`, a
/// short-lived build-fetch token for exactly this release (what a pod downloads its build with).
/// Only uploaded builds; not one registered by a server directory.
#[utoipa::path(get, path = "/api/v1/projects/{project}/stages/{stage}/releases/{number}/build", tag = "releases",
    params(ReleasePath),
    responses(
        (status = 200, description = "The build, packed", body = Vec<u8>, content_type = "application/gzip"),
        (status = 400, description = "The release number is not an integer (a plain-text message)", body = String, content_type = "text/plain"),
        (status = 401, description = "Not signed in, or a build-fetch token that has ended", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The role may not deploy to the stage, or the token is for another release", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such project, live stage or release", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A build registered by a server directory, or one whose files were deleted", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "As many builds as the server packs at once are being downloaded; `Retry-After` says when to try again", body = Problem, content_type = "application/problem+json"),
    ))]
async fn download_build(
    axum::extract::State(services): axum::extract::State<Services>,
    crate::auth::Auth(auth): crate::auth::Auth,
    Path(p): Path<ReleasePath>,
) -> ApiResult<axum::response::Response> {
    use pergola_core::services::Authenticated;
    let files = match &auth {
        Authenticated::BuildFetch(grant) => services.granted_build(grant, &p.project, &p.stage, p.number).await?,
        other => match other.caller() {
            Some(caller) => services.acting(caller.clone()).release_build(&p.project, &p.stage, p.number).await?,
            None => return Err(pergola_domain::Error::unauthenticated().into()),
        },
    };
    Ok(crate::download::packed(&services, files)?)
}
