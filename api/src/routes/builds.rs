//! Builds of a project: list, register.

use super::ProjectPath;
use crate::auth::User;
use crate::problem::{ApiResult, Problem};
use crate::{created, Body};
use axum::extract::Path;
use axum::response::IntoResponse;
use axum::Json;
use pergola_core::Services;
use pergola_domain::wire::NewBuild;
use pergola_domain::Build;
use utoipa_axum::{router::OpenApiRouter, routes};

pub fn router() -> OpenApiRouter<Services> {
    OpenApiRouter::new().routes(routes!(list_builds, register_build))
}

#[utoipa::path(get, path = "/api/v1/projects/{project}/builds", tag = "releases",
    params(ProjectPath),
    responses(
        (status = 200, description = "The project's builds, newest first", body = [Build]),
        (status = 404, description = "No such project", body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_builds(User(s): User, Path(p): Path<ProjectPath>) -> ApiResult<Json<Vec<Build>>> {
    Ok(Json(s.builds(&p.project).await?))
}

#[utoipa::path(post, path = "/api/v1/projects/{project}/builds", tag = "releases", request_body = NewBuild,
    params(ProjectPath),
    responses(
        (status = 201, description = "Registered under the project's next build number", body = Build),
        (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such project", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Malformed manifest (with line and reason) or bad directory", body = Problem, content_type = "application/problem+json"),
    ))]
async fn register_build(
    User(s): User,
    Path(p): Path<ProjectPath>,
    Body(b): Body<NewBuild>,
) -> ApiResult<impl IntoResponse> {
    let build = s.register_build(&p.project, &b.manifest, &b.workdir).await?;
    Ok(created(format!("/api/v1/projects/{}/builds/{}", p.project, build.number), build))
}
