//! Projects: the list, creating one, and one project's overview.

#[cfg(feature = "ssr")]
use super::{answer, services};
use crate::error::AppError;
use leptos::prelude::*;
use pergola_domain::{Project, ProjectOverview, Stage, StageQueryParams};

#[server]
pub async fn list_projects() -> Result<Vec<Project>, AppError> {
    answer(services()?.list_projects().await)
}

/// `project_id` may be empty: the ID is then derived from the name.
#[server]
pub async fn create_project(name: String, project_id: String) -> Result<Project, AppError> {
    answer(services()?.create_project(&name, pergola_domain::typed_id(&project_id)).await)
}

/// The project page: one page of the live stages matching the search form's `params`.
#[server]
pub async fn get_overview(
    project: String,
    // Every field may be absent (no search): then nothing of it is in the request.
    #[server(default)] params: StageQueryParams,
) -> Result<ProjectOverview, AppError> {
    let query = pergola_domain::StageQuery::parse(&params).map_err(AppError)?;
    answer(services()?.project_overview(&project, &query).await)
}

/// Every live stage of a project, oldest first (the Compare page's choices).
#[server]
pub async fn list_live_stages(project: String) -> Result<Vec<Stage>, AppError> {
    answer(services()?.list_stages(&project, false).await)
}
