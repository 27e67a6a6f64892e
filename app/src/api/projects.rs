//! Projects: the list, creating one, and one project's overview.

#[cfg(feature = "ssr")]
use super::{answer, services};
use crate::error::AppError;
use leptos::prelude::*;
use pergola_domain::{Project, ProjectOverview};

#[server]
pub async fn list_projects() -> Result<Vec<Project>, AppError> {
    answer(services()?.list_projects().await)
}

/// `project_id` may be empty: the ID is then derived from the name.
#[server]
pub async fn create_project(name: String, project_id: String) -> Result<Project, AppError> {
    answer(services()?.create_project(&name, pergola_domain::typed_id(&project_id)).await)
}

#[server]
pub async fn get_overview(project: String) -> Result<ProjectOverview, AppError> {
    answer(services()?.project_overview(&project).await)
}
