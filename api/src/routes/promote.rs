//! Promotion (a stage's current build deployed to another stage with that stage's own
//! configuration), comparison of two stages, and duplication of a stage.

use super::{ComparePath, StagePath};
use crate::auth::User;
use crate::problem::{ApiResult, Problem};
use crate::{created, Body};
use axum::extract::Path;
use axum::response::IntoResponse;
use axum::Json;
use pergola_core::services::Duplicate;
use pergola_core::Services;
use pergola_domain::wire::{Duplication, Promotion};
use pergola_domain::{Release, Stage, StageComparison};
use utoipa_axum::{router::OpenApiRouter, routes};

pub fn router() -> OpenApiRouter<Services> {
    OpenApiRouter::new()
        .routes(routes!(compare))
        .routes(routes!(promotion_options))
        .routes(routes!(promote))
        .routes(routes!(duplicate))
}

#[utoipa::path(get, path = "/api/v1/projects/{project}/stages/{stage}/compare/{other}", tag = "releases",
    params(ComparePath),
    responses(
        (status = 200, description = "How the stage differs from the other one (secret values never shown)", body = StageComparison),
        (status = 404, description = "No such live stage", body = Problem, content_type = "application/problem+json"),
    ))]
async fn compare(User(s): User, Path(p): Path<ComparePath>) -> ApiResult<Json<StageComparison>> {
    Ok(Json(s.compare_stages(&p.project, &p.stage, &p.other).await?))
}

#[utoipa::path(get, path = "/api/v1/projects/{project}/stages/{stage}/promote", tag = "releases",
    params(StagePath),
    responses(
        (status = 200, description = "The stages it may be promoted to, the next type first, each with what would change", body = [StageComparison]),
        (status = 404, description = "No such live stage", body = Problem, content_type = "application/problem+json"),
    ))]
async fn promotion_options(User(s): User, Path(p): Path<StagePath>) -> ApiResult<Json<Vec<StageComparison>>> {
    Ok(Json(s.promotion_options(&p.project, &p.stage).await?))
}

#[utoipa::path(post, path = "/api/v1/projects/{project}/stages/{stage}/promote", tag = "releases", request_body = Promotion,
    params(StagePath),
    responses(
        (status = 201, description = "The stage's current build deployed to `to` as its new release, with `to`'s configuration", body = Release),
        (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such live stage", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The stage has no release to promote, or the release could not be started", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`to` is the stage itself", body = Problem, content_type = "application/problem+json"),
    ))]
async fn promote(User(s): User, Path(p): Path<StagePath>, Body(r): Body<Promotion>) -> ApiResult<impl IntoResponse> {
    let release = s.promote(&p.project, &p.stage, &r.to).await?;
    let location = format!("/api/v1/projects/{}/stages/{}/releases/{}", p.project, r.to, release.number);
    Ok(created(location, release))
}

#[utoipa::path(post, path = "/api/v1/projects/{project}/stages/{stage}/duplicate", tag = "stages", request_body = Duplication,
    params(StagePath),
    responses(
        (status = 201, description = "A new running stage with the source's type, configuration and grace period", body = Stage),
        (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such live stage", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The Stage ID is taken (with a free suggestion), or the storage is to be copied from a stage that is not suspended", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid name or Stage ID", body = Problem, content_type = "application/problem+json"),
    ))]
async fn duplicate(
    User(s): User,
    Path(p): Path<StagePath>,
    Body(d): Body<Duplication>,
) -> ApiResult<impl IntoResponse> {
    let copy = Duplicate { deploy: d.deploy, storage: d.with_storage };
    let stage = s.duplicate_stage(&p.project, &p.stage, &d.name, d.id.as_deref(), copy).await?;
    let location = format!("/api/v1/projects/{}/stages/{}", p.project, stage.id);
    Ok(created(location, stage))
}
