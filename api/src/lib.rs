//! The REST API: `/api/v1/…` JSON over the same [`Services`] as the dashboard — no rule is
//! written twice. Errors are `application/problem+json` ([`problem`]); the OpenAPI 3.1
//! document is generated from the handlers below and served at `/api/v1/openapi.json`.

pub mod problem;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{any, get};
use axum::{Json, Router};
use pergola_core::Services;
use pergola_domain::runtime::{ComponentStatus, LogLine};
use pergola_domain::{Build, ConfigEntry, Error, IdCheck, Project, Release, RetentionPolicy, Stage, StageEvent};
use problem::{ApiResult, Problem};
use serde::Deserialize;
use std::sync::Arc;
use utoipa::{IntoParams, OpenApi, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

/// JSON request bodies whose rejections (bad JSON, wrong shape) are problems too.
pub struct Body<T>(pub T);

impl<S, T> axum::extract::FromRequest<S> for Body<T>
where
    Json<T>: axum::extract::FromRequest<S, Rejection = axum::extract::rejection::JsonRejection>,
    S: Send + Sync,
{
    type Rejection = problem::ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        let Json(value) = Json::<T>::from_request(req, state).await?;
        Ok(Body(value))
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Pergola Stages API",
        version = "1",
        description = "Projects and their Stages: create, list, rename, suspend, resume, delete (archive) and restore."
    ),
    tags(
        (name = "projects", description = "Projects"),
        (name = "stages", description = "Stages of a project"),
        (name = "configuration", description = "Environment settings of a stage"),
        (name = "releases", description = "Builds, releases and what runs"),
        (name = "admin", description = "Administration")
    ),
    components(schemas(Problem))
)]
struct ApiDoc;

/// The API's routes, to merge into the server's router.
pub fn router<S>(services: Services) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let (router, doc) = openapi_router().split_for_parts();
    let doc = Arc::new(doc);
    router
        .route("/api/v1/openapi.json", get(move || async move { Json(doc.as_ref().clone()) }))
        .route("/api/v1", any(unknown_route))
        .route("/api/v1/{*rest}", any(unknown_route))
        .with_state(services)
}

/// The OpenAPI document, as served.
pub fn openapi() -> utoipa::openapi::OpenApi {
    openapi_router().split_for_parts().1
}

fn openapi_router() -> OpenApiRouter<Services> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(list_projects, create_project))
        .routes(routes!(get_project))
        .routes(routes!(list_stages, create_stage))
        .routes(routes!(get_stage, update_stage, delete_stage))
        .routes(routes!(check_stage_id))
        .routes(routes!(suspend_stage))
        .routes(routes!(resume_stage))
        .routes(routes!(restore_stage))
        .routes(routes!(list_builds, register_build))
        .routes(routes!(list_releases, deploy))
        .routes(routes!(redeploy))
        .routes(routes!(list_components))
        .routes(routes!(component_logs))
        .routes(routes!(list_events))
        .routes(routes!(list_config))
        .routes(routes!(set_config, unset_config))
        .routes(routes!(get_retention, set_retention))
}

async fn unknown_route() -> problem::ApiError {
    problem::ApiError(Error::not_found("There is no such API route. See /api/v1/openapi.json."))
}

fn created<T: serde::Serialize>(location: String, body: T) -> impl IntoResponse {
    (StatusCode::CREATED, [(header::LOCATION, location)], Json(body))
}

// ----- projects -------------------------------------------------------------------------------

/// A new project. Without `id`, the ID is derived from the name.
#[derive(Deserialize, ToSchema)]
pub struct NewProject {
    pub name: String,
    #[serde(default)]
    pub id: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/projects", tag = "projects",
    responses((status = 200, description = "All projects", body = [Project])))]
async fn list_projects(State(s): State<Services>) -> ApiResult<Json<Vec<Project>>> {
    Ok(Json(s.list_projects().await?))
}

#[utoipa::path(post, path = "/api/v1/projects", tag = "projects", request_body = NewProject,
    responses(
        (status = 201, description = "Created", body = Project),
        (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid name or ID", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Project ID taken (with a suggestion)", body = Problem, content_type = "application/problem+json"),
    ))]
async fn create_project(State(s): State<Services>, Body(p): Body<NewProject>) -> ApiResult<impl IntoResponse> {
    let project = s.create_project(&p.name, p.id.as_deref()).await?;
    Ok(created(format!("/api/v1/projects/{}", project.id), project))
}

#[utoipa::path(get, path = "/api/v1/projects/{project}", tag = "projects",
    params(("project" = String, Path, description = "Project ID")),
    responses(
        (status = 200, description = "The project", body = Project),
        (status = 404, description = "No such project", body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_project(State(s): State<Services>, Path(project): Path<String>) -> ApiResult<Json<Project>> {
    Ok(Json(s.get_project(&project).await?))
}

// ----- stages ---------------------------------------------------------------------------------

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StageFilter {
    /// `true`: the archived (deleted, still restorable) stages, with their deletion dates.
    #[serde(default)]
    pub archived: bool,
}

/// A new stage. Without `id`, the Stage ID is derived from the name.
#[derive(Deserialize, ToSchema)]
pub struct NewStage {
    pub name: String,
    /// `dev`, `qa` or `prod`.
    #[serde(rename = "type")]
    pub stage_type: String,
    #[serde(default)]
    pub id: Option<String>,
}

/// Changes to a stage; absent fields keep their value. The Stage ID never changes.
#[derive(Deserialize, ToSchema)]
pub struct StagePatch {
    #[serde(default)]
    pub name: Option<String>,
    /// `dev`, `qa` or `prod`.
    #[serde(default, rename = "type")]
    pub stage_type: Option<String>,
    /// Seconds between SIGTERM and SIGKILL when the stage stops (1 to 3600).
    #[serde(default)]
    pub grace_secs: Option<u32>,
}

#[utoipa::path(get, path = "/api/v1/projects/{project}/stages", tag = "stages",
    params(("project" = String, Path, description = "Project ID"), StageFilter),
    responses(
        (status = 200, description = "Live stages (or archived ones with ?archived=true), oldest first", body = [Stage]),
        (status = 404, description = "No such project", body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_stages(
    State(s): State<Services>,
    Path(project): Path<String>,
    Query(filter): Query<StageFilter>,
) -> ApiResult<Json<Vec<Stage>>> {
    let overview = s.project_overview(&project).await?;
    Ok(Json(if filter.archived { overview.archived } else { overview.stages }))
}

#[utoipa::path(post, path = "/api/v1/projects/{project}/stages", tag = "stages", request_body = NewStage,
    params(("project" = String, Path, description = "Project ID")),
    responses(
        (status = 201, description = "Created, running", body = Stage),
        (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such project", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Stage ID taken by a live or archived stage (with a suggestion)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid name, type or ID", body = Problem, content_type = "application/problem+json"),
    ))]
async fn create_stage(
    State(s): State<Services>,
    Path(project): Path<String>,
    Body(n): Body<NewStage>,
) -> ApiResult<impl IntoResponse> {
    let stage = s.create_stage(&project, &n.name, &n.stage_type, n.id.as_deref()).await?;
    Ok(created(format!("/api/v1/projects/{project}/stages/{}", stage.id), stage))
}

#[utoipa::path(get, path = "/api/v1/projects/{project}/stages/{stage}", tag = "stages",
    params(("project" = String, Path, description = "Project ID"), ("stage" = String, Path, description = "Stage ID")),
    responses(
        (status = 200, description = "The live stage", body = Stage),
        (status = 404, description = "No such live stage (an archived one says so)", body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_stage(
    State(s): State<Services>,
    Path((project, stage)): Path<(String, String)>,
) -> ApiResult<Json<Stage>> {
    Ok(Json(s.get_stage(&project, &stage).await?))
}

#[utoipa::path(patch, path = "/api/v1/projects/{project}/stages/{stage}", tag = "stages", request_body = StagePatch,
    params(("project" = String, Path, description = "Project ID"), ("stage" = String, Path, description = "Stage ID")),
    responses(
        (status = 200, description = "Updated", body = Stage),
        (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such live stage", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid name, type or grace period", body = Problem, content_type = "application/problem+json"),
    ))]
async fn update_stage(
    State(s): State<Services>,
    Path((project, stage)): Path<(String, String)>,
    Body(patch): Body<StagePatch>,
) -> ApiResult<Json<Stage>> {
    let current = s.get_stage(&project, &stage).await?;
    let name = patch.name.unwrap_or(current.name);
    let stage_type = patch.stage_type.unwrap_or_else(|| current.stage_type.as_str().to_owned());
    let grace = patch.grace_secs.map(|g| g.to_string());
    Ok(Json(s.update_stage(&project, &stage, &name, &stage_type, grace.as_deref()).await?))
}

#[utoipa::path(delete, path = "/api/v1/projects/{project}/stages/{stage}", tag = "stages",
    params(("project" = String, Path, description = "Project ID"), ("stage" = String, Path, description = "Stage ID")),
    responses(
        (status = 200, description = "Archived; restorable until purge_due_at", body = Stage),
        (status = 404, description = "No such live stage", body = Problem, content_type = "application/problem+json"),
    ))]
async fn delete_stage(
    State(s): State<Services>,
    Path((project, stage)): Path<(String, String)>,
) -> ApiResult<Json<Stage>> {
    // The dashboard asks the user to type the Stage ID; an API call naming it is that confirmation.
    Ok(Json(s.delete_stage(&project, &stage, &stage).await?))
}

#[utoipa::path(get, path = "/api/v1/projects/{project}/stage-ids/{id}", tag = "stages",
    params(("project" = String, Path, description = "Project ID"), ("id" = String, Path, description = "Stage ID to check")),
    responses(
        (status = 200, description = "Whether the ID is valid and free, else why not and a free suggestion", body = IdCheck),
        (status = 404, description = "No such project", body = Problem, content_type = "application/problem+json"),
    ))]
async fn check_stage_id(
    State(s): State<Services>,
    Path((project, id)): Path<(String, String)>,
) -> ApiResult<Json<IdCheck>> {
    Ok(Json(s.check_stage_id(&project, &id).await?))
}

#[utoipa::path(post, path = "/api/v1/projects/{project}/stages/{stage}/suspend", tag = "stages",
    params(("project" = String, Path, description = "Project ID"), ("stage" = String, Path, description = "Stage ID")),
    responses(
        (status = 200, description = "Suspended, or `suspending` while its components still have their grace period to stop (poll the stage)", body = Stage),
        (status = 404, description = "No such live stage", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already suspended or being suspended", body = Problem, content_type = "application/problem+json"),
    ))]
async fn suspend_stage(
    State(s): State<Services>,
    Path((project, stage)): Path<(String, String)>,
) -> ApiResult<Json<Stage>> {
    Ok(Json(s.suspend_stage(&project, &stage).await?))
}

#[utoipa::path(post, path = "/api/v1/projects/{project}/stages/{stage}/resume", tag = "stages",
    params(("project" = String, Path, description = "Project ID"), ("stage" = String, Path, description = "Stage ID")),
    responses(
        (status = 200, description = "Running again", body = Stage),
        (status = 404, description = "No such live stage", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already running, or still being suspended", body = Problem, content_type = "application/problem+json"),
    ))]
async fn resume_stage(
    State(s): State<Services>,
    Path((project, stage)): Path<(String, String)>,
) -> ApiResult<Json<Stage>> {
    Ok(Json(s.resume_stage(&project, &stage).await?))
}

#[utoipa::path(post, path = "/api/v1/projects/{project}/stages/{stage}/restore", tag = "stages",
    params(("project" = String, Path, description = "Project ID"), ("stage" = String, Path, description = "Stage ID")),
    responses(
        (status = 200, description = "Restored with its previous status", body = Stage),
        (status = 404, description = "No such stage", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not archived (invalid-state) or past its deletion date (restore-expired)", body = Problem, content_type = "application/problem+json"),
    ))]
async fn restore_stage(
    State(s): State<Services>,
    Path((project, stage)): Path<(String, String)>,
) -> ApiResult<Json<Stage>> {
    Ok(Json(s.restore_stage(&project, &stage).await?))
}

// ----- builds, releases, components -----------------------------------------------------------

/// A build to register: its manifest (TOML) and where its files are on the server.
#[derive(Deserialize, ToSchema)]
pub struct NewBuild {
    pub manifest: String,
    pub workdir: String,
}

/// Which build to deploy.
#[derive(Deserialize, ToSchema)]
pub struct NewRelease {
    pub build: i64,
}

#[utoipa::path(get, path = "/api/v1/projects/{project}/builds", tag = "releases",
    params(("project" = String, Path, description = "Project ID")),
    responses(
        (status = 200, description = "The project's builds, newest first", body = [Build]),
        (status = 404, description = "No such project", body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_builds(State(s): State<Services>, Path(project): Path<String>) -> ApiResult<Json<Vec<Build>>> {
    Ok(Json(s.builds(&project).await?))
}

#[utoipa::path(post, path = "/api/v1/projects/{project}/builds", tag = "releases", request_body = NewBuild,
    params(("project" = String, Path, description = "Project ID")),
    responses(
        (status = 201, description = "Registered under the project's next build number", body = Build),
        (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such project", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Malformed manifest (with line and reason) or bad directory", body = Problem, content_type = "application/problem+json"),
    ))]
async fn register_build(
    State(s): State<Services>,
    Path(project): Path<String>,
    Body(b): Body<NewBuild>,
) -> ApiResult<impl IntoResponse> {
    let build = s.register_build(&project, &b.manifest, &b.workdir).await?;
    Ok(created(format!("/api/v1/projects/{project}/builds/{}", build.number), build))
}

#[utoipa::path(get, path = "/api/v1/projects/{project}/stages/{stage}/releases", tag = "releases",
    params(("project" = String, Path, description = "Project ID"), ("stage" = String, Path, description = "Stage ID")),
    responses(
        (status = 200, description = "The stage's releases, newest (running) first", body = [Release]),
        (status = 404, description = "No such stage", body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_releases(
    State(s): State<Services>,
    Path((project, stage)): Path<(String, String)>,
) -> ApiResult<Json<Vec<Release>>> {
    Ok(Json(s.releases(&project, &stage).await?))
}

#[utoipa::path(post, path = "/api/v1/projects/{project}/stages/{stage}/releases", tag = "releases", request_body = NewRelease,
    params(("project" = String, Path, description = "Project ID"), ("stage" = String, Path, description = "Stage ID")),
    responses(
        (status = 201, description = "Deployed: the new release replaces the running one", body = Release),
        (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such live stage or build", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The release could not be started", body = Problem, content_type = "application/problem+json"),
    ))]
async fn deploy(
    State(s): State<Services>,
    Path((project, stage)): Path<(String, String)>,
    Body(r): Body<NewRelease>,
) -> ApiResult<impl IntoResponse> {
    let release = s.deploy(&project, &stage, r.build).await?;
    Ok(created(format!("/api/v1/projects/{project}/stages/{stage}/releases/{}", release.number), release))
}

#[utoipa::path(post, path = "/api/v1/projects/{project}/stages/{stage}/releases/{number}/redeploy", tag = "releases",
    params(("project" = String, Path, description = "Project ID"), ("stage" = String, Path, description = "Stage ID"), ("number" = i64, Path, description = "An earlier release")),
    responses(
        (status = 201, description = "The earlier release's build deployed again (a rollback)", body = Release),
        (status = 404, description = "No such live stage or release", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The release could not be started", body = Problem, content_type = "application/problem+json"),
    ))]
async fn redeploy(
    State(s): State<Services>,
    Path((project, stage, number)): Path<(String, String, i64)>,
) -> ApiResult<impl IntoResponse> {
    let release = s.redeploy(&project, &stage, number).await?;
    Ok(created(format!("/api/v1/projects/{project}/stages/{stage}/releases/{}", release.number), release))
}

#[utoipa::path(get, path = "/api/v1/projects/{project}/stages/{stage}/components", tag = "releases",
    params(("project" = String, Path, description = "Project ID"), ("stage" = String, Path, description = "Stage ID")),
    responses(
        (status = 200, description = "Each component's state, health and restarts", body = [ComponentStatus]),
        (status = 404, description = "No such live stage", body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_components(
    State(s): State<Services>,
    Path((project, stage)): Path<(String, String)>,
) -> ApiResult<Json<Vec<ComponentStatus>>> {
    Ok(Json(s.components(&project, &stage).await?))
}

#[utoipa::path(get, path = "/api/v1/projects/{project}/stages/{stage}/components/{component}/logs", tag = "releases",
    params(("project" = String, Path, description = "Project ID"), ("stage" = String, Path, description = "Stage ID"), ("component" = String, Path, description = "Component name")),
    responses(
        (status = 200, description = "The component's last output lines", body = [LogLine]),
        (status = 404, description = "No such live stage", body = Problem, content_type = "application/problem+json"),
    ))]
async fn component_logs(
    State(s): State<Services>,
    Path((project, stage, component)): Path<(String, String, String)>,
) -> ApiResult<Json<Vec<LogLine>>> {
    Ok(Json(s.logs(&project, &stage, &component).await?))
}

#[utoipa::path(get, path = "/api/v1/projects/{project}/stages/{stage}/events", tag = "releases",
    params(("project" = String, Path, description = "Project ID"), ("stage" = String, Path, description = "Stage ID")),
    responses(
        (status = 200, description = "The stage's events timeline, newest first (the last 100)", body = [StageEvent]),
        (status = 404, description = "No such stage (live or archived)", body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_events(
    State(s): State<Services>,
    Path((project, stage)): Path<(String, String)>,
) -> ApiResult<Json<Vec<StageEvent>>> {
    Ok(Json(s.events(&project, &stage).await?))
}

// ----- configuration --------------------------------------------------------------------------

/// A configuration value; `secret` values are never returned after saving.
#[derive(Deserialize, ToSchema)]
pub struct ConfigInput {
    pub value: String,
    #[serde(default)]
    pub secret: bool,
}

#[utoipa::path(get, path = "/api/v1/projects/{project}/stages/{stage}/config", tag = "configuration",
    params(("project" = String, Path, description = "Project ID"), ("stage" = String, Path, description = "Stage ID")),
    responses(
        (status = 200, description = "The stage's settings by key; secret values are null", body = [ConfigEntry]),
        (status = 404, description = "No such live stage", body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_config(
    State(s): State<Services>,
    Path((project, stage)): Path<(String, String)>,
) -> ApiResult<Json<Vec<ConfigEntry>>> {
    Ok(Json(s.config(&project, &stage).await?))
}

#[utoipa::path(put, path = "/api/v1/projects/{project}/stages/{stage}/config/{key}", tag = "configuration", request_body = ConfigInput,
    params(("project" = String, Path, description = "Project ID"), ("stage" = String, Path, description = "Stage ID"), ("key" = String, Path, description = "Variable name")),
    responses(
        (status = 200, description = "Saved; applies with the stage's next release", body = ConfigEntry),
        (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such live stage", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid key or value", body = Problem, content_type = "application/problem+json"),
    ))]
async fn set_config(
    State(s): State<Services>,
    Path((project, stage, key)): Path<(String, String, String)>,
    Body(input): Body<ConfigInput>,
) -> ApiResult<Json<ConfigEntry>> {
    Ok(Json(s.set_config(&project, &stage, &key, &input.value, input.secret).await?))
}

#[utoipa::path(delete, path = "/api/v1/projects/{project}/stages/{stage}/config/{key}", tag = "configuration",
    params(("project" = String, Path, description = "Project ID"), ("stage" = String, Path, description = "Stage ID"), ("key" = String, Path, description = "Variable name")),
    responses(
        (status = 200, description = "Removed; the remaining settings", body = [ConfigEntry]),
        (status = 404, description = "No such live stage or setting", body = Problem, content_type = "application/problem+json"),
    ))]
async fn unset_config(
    State(s): State<Services>,
    Path((project, stage, key)): Path<(String, String, String)>,
) -> ApiResult<Json<Vec<ConfigEntry>>> {
    s.unset_config(&project, &stage, &key).await?;
    Ok(Json(s.config(&project, &stage).await?))
}

// ----- administration -------------------------------------------------------------------------

/// Retention of archived stages in whole days per type (1 to 3650).
#[derive(Deserialize, ToSchema)]
pub struct RetentionInput {
    pub dev_days: i64,
    pub qa_days: i64,
    pub prod_days: i64,
}

#[utoipa::path(get, path = "/api/v1/settings/retention", tag = "admin",
    responses((status = 200, description = "The retention policy in force", body = RetentionPolicy)))]
async fn get_retention(State(s): State<Services>) -> ApiResult<Json<RetentionPolicy>> {
    Ok(Json(s.retention().await?))
}

#[utoipa::path(put, path = "/api/v1/settings/retention", tag = "admin", request_body = RetentionInput,
    responses(
        (status = 200, description = "Saved; applies to stages deleted from now on", body = RetentionPolicy),
        (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A value out of range", body = Problem, content_type = "application/problem+json"),
    ))]
async fn set_retention(State(s): State<Services>, Body(r): Body<RetentionInput>) -> ApiResult<Json<RetentionPolicy>> {
    let days = [r.dev_days, r.qa_days, r.prod_days].map(|d| d.to_string());
    Ok(Json(s.set_retention(&days[0], &days[1], &days[2]).await?))
}
