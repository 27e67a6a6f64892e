//! Stages of a project: list, create, get, update, delete (archive), and the Stage ID check.

use super::{ProjectPath, StageIdPath, StagePath};
use crate::auth::User;
use crate::problem::{ApiResult, Problem};
use crate::{created, Body};
use axum::extract::{Path, Query};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use pergola_core::Services;
use pergola_domain::wire::{NewStage, StagePatch};
use pergola_domain::{Error, IdCheck, Stage, StageQuery, StageQueryParams, StageType};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::{router::OpenApiRouter, routes};

pub fn router() -> OpenApiRouter<Services> {
    OpenApiRouter::new()
        .routes(routes!(list_stages, create_stage))
        .routes(routes!(get_stage, update_stage, delete_stage))
        .routes(routes!(check_stage_id))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StageFilter {
    /// `true`: the archived (deleted, still restorable) stages, with their deletion dates.
    #[serde(default)]
    pub archived: bool,
}

/// The live stages of a project (or, with `?archived=true`, its archived ones). Search,
/// filter, sort and page them with `q`, `type`, `status`, `sort`, `limit` and `cursor`: with a
/// limit, the `Link` header names the next page (`rel="next"`) while there is one, and
/// `X-Total-Count` says how many stages match in all.
#[utoipa::path(get, path = "/api/v1/projects/{project}/stages", tag = "stages",
    params(ProjectPath, StageFilter, StageQueryParams),
    responses(
        (status = 200, description = "Live stages matching the search and filters, in the asked order (oldest first by default); or archived stages, the latest deleted first", body = [Stage],
            headers(
                ("X-Total-Count" = u64, description = "How many live stages match the search and filters (live listings only)"),
                ("Link" = String, description = "`</api/v1/projects/{project}/stages?…&cursor=…>; rel=\"next\"` while a limit left stages for a further page"),
            )),
        (status = 400, description = "A bad parameter: `archived` not `true` or `false` (a plain-text message); an unknown type, status or sort, a limit outside 1 to 500, a search over 100 characters, a cursor this server did not hand out or from another sort, or filters with `archived=true` (a problem)",
            content((String = "text/plain"), (Problem = "application/problem+json"))),
        (status = 404, description = "No such project", body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_stages(
    User(s): User,
    Path(p): Path<ProjectPath>,
    Query(filter): Query<StageFilter>,
    Query(params): Query<StageQueryParams>,
) -> ApiResult<Response> {
    if filter.archived {
        if !params.is_empty() {
            return Err(Error::malformed(
                "Search, filters, sort and paging apply to live stages; list archived stages without them.",
            )
            .into());
        }
        return Ok(Json(s.list_stages(&p.project, true).await?).into_response());
    }
    let query = StageQuery::parse(&params)?;
    let page = s.stage_page(&p.project, &query).await?;
    let mut headers = HeaderMap::new();
    headers.insert("x-total-count", HeaderValue::from(page.matching));
    if let Some(next) = &page.next {
        // The project exists (the page was read), so its ID is a valid one: plain ASCII.
        let link = format!("</api/v1/projects/{}/stages?{}>; rel=\"next\"", p.project, params.with_cursor(next));
        if let Ok(value) = HeaderValue::from_str(&link) {
            headers.insert(header::LINK, value);
        }
    }
    Ok((headers, Json(page.stages)).into_response())
}

#[utoipa::path(post, path = "/api/v1/projects/{project}/stages", tag = "stages", request_body = NewStage,
    params(ProjectPath),
    responses(
        (status = 201, description = "Created, running", body = Stage),
        (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such project", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Stage ID taken by a live or archived stage (with a suggestion)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid name, type or ID", body = Problem, content_type = "application/problem+json"),
    ))]
async fn create_stage(
    User(s): User,
    Path(p): Path<ProjectPath>,
    Body(n): Body<NewStage>,
) -> ApiResult<impl IntoResponse> {
    let stage_type = StageType::parse(&n.stage_type)?;
    let stage = s.create_stage(&p.project, &n.name, stage_type, n.id.as_deref()).await?;
    Ok(created(format!("/api/v1/projects/{}/stages/{}", p.project, stage.id), stage))
}

#[utoipa::path(get, path = "/api/v1/projects/{project}/stages/{stage}", tag = "stages",
    params(StagePath),
    responses(
        (status = 200, description = "The live stage", body = Stage),
        (status = 404, description = "No such live stage (an archived one says so)", body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_stage(User(s): User, Path(p): Path<StagePath>) -> ApiResult<Json<Stage>> {
    Ok(Json(s.get_stage(&p.project, &p.stage).await?))
}

#[utoipa::path(patch, path = "/api/v1/projects/{project}/stages/{stage}", tag = "stages", request_body = StagePatch,
    params(StagePath),
    responses(
        (status = 200, description = "Updated", body = Stage),
        (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such live stage", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid name, type, grace period or visibility", body = Problem, content_type = "application/problem+json"),
    ))]
async fn update_stage(
    User(s): User,
    Path(p): Path<StagePath>,
    Body(patch): Body<StagePatch>,
) -> ApiResult<Json<Stage>> {
    // Everything is checked before anything changes.
    let visibility = patch.visibility()?;
    let settings = patch.changes_settings().then(|| patch.clone().parse()).transpose()?;
    if let Some(visibility) = visibility {
        s.set_visibility(&p.project, &p.stage, visibility).await?;
    }
    match settings {
        Some(update) => Ok(Json(s.update_stage(&p.project, &p.stage, update).await?)),
        None if visibility.is_some() => Ok(Json(s.get_stage(&p.project, &p.stage).await?)),
        None => Ok(Json(s.update_stage(&p.project, &p.stage, patch.parse()?).await?)),
    }
}

#[utoipa::path(delete, path = "/api/v1/projects/{project}/stages/{stage}", tag = "stages",
    params(StagePath),
    responses(
        (status = 200, description = "Archived; restorable until purge_due_at", body = Stage),
        (status = 404, description = "No such live stage", body = Problem, content_type = "application/problem+json"),
    ))]
async fn delete_stage(User(s): User, Path(p): Path<StagePath>) -> ApiResult<Json<Stage>> {
    // The dashboard has the user type the Stage ID first; the API deletes the stage its path names.
    Ok(Json(s.delete_stage(&p.project, &p.stage).await?))
}

#[utoipa::path(get, path = "/api/v1/projects/{project}/stage-ids/{id}", tag = "stages",
    params(StageIdPath),
    responses(
        (status = 200, description = "Whether the ID is valid and free, else why not and a free suggestion", body = IdCheck),
        (status = 404, description = "No such project", body = Problem, content_type = "application/problem+json"),
    ))]
async fn check_stage_id(User(s): User, Path(p): Path<StageIdPath>) -> ApiResult<Json<IdCheck>> {
    Ok(Json(s.check_stage_id(&p.project, &p.id).await?))
}
