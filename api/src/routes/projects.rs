//! Projects: list, create, get.

use super::ProjectPath;
use crate::auth::User;
use crate::problem::{ApiResult, Problem};
use crate::{created, Body};
use axum::extract::Path;
use axum::response::IntoResponse;
use axum::Json;
use pergola_core::Services;
use pergola_domain::wire::NewProject;
use pergola_domain::Project;
use utoipa_axum::{router::OpenApiRouter, routes};

pub fn router() -> OpenApiRouter<Services> {
    OpenApiRouter::new().routes(routes!(list_projects, create_project)).routes(routes!(get_project))
}

#[utoipa::path(get, path = "/api/v1/projects", tag = "projects",
    responses((status = 200, description = "All projects", body = [Project])))]
async fn list_projects(User(s): User) -> ApiResult<Json<Vec<Project>>> {
    Ok(Json(s.list_projects().await?))
}

#[utoipa::path(post, path = "/api/v1/projects", tag = "projects", request_body = NewProject,
    responses(
        (status = 201, description = "Created", body = Project),
        (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid name or ID", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Project ID taken (with a suggestion)", body = Problem, content_type = "application/problem+json"),
    ))]
async fn create_project(User(s): User, Body(p): Body<NewProject>) -> ApiResult<impl IntoResponse> {
    let project = s.create_project(&p.name, p.id.as_deref()).await?;
    Ok(created(format!("/api/v1/projects/{}", project.id), project))
}

#[utoipa::path(get, path = "/api/v1/projects/{project}", tag = "projects",
    params(ProjectPath),
    responses(
        (status = 200, description = "The project", body = Project),
        (status = 404, description = "No such project", body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_project(User(s): User, Path(p): Path<ProjectPath>) -> ApiResult<Json<Project>> {
    Ok(Json(s.get_project(&p.project).await?))
}
