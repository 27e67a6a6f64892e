//! Projects.

use super::stages::{chosen_id, first_free};
use super::{internal, Services};
use crate::{StageKey, StoreError};
use pergola_domain::{suggestion_stem, validate_name, Error, IdKind, Project, ProjectOverview, StageSummary};
use std::collections::BTreeMap;

impl Services {
    pub async fn list_projects(&self) -> Result<Vec<Project>, Error> {
        self.store.list_projects().await.map_err(internal("list the projects"))
    }

    pub async fn get_project(&self, project_id: &str) -> Result<Project, Error> {
        self.store
            .get_project(project_id)
            .await
            .map_err(internal("read a project"))?
            .ok_or_else(|| Error::not_found(format!("There is no project '{project_id}'.")))
    }

    /// Creates a project; its ID is derived from the name unless `id` is given.
    pub async fn create_project(&self, name: &str, id: Option<&str>) -> Result<Project, Error> {
        let name = validate_name("Project", name)?;
        let id = chosen_id(IdKind::Project, &name, id)?;
        let project = Project { id, name, created_at: self.clock.now() };
        match self.store.insert_project(&project).await {
            Ok(()) => Ok(project),
            Err(StoreError::Conflict) => {
                let (stem, _) = suggestion_stem(&project.id);
                let taken = self.store.project_ids_like(stem).await.map_err(internal("list the taken project IDs"))?;
                let suggestion = first_free(&project.id, taken);
                Err(Error::id_taken(IdKind::Project, &project.id, suggestion))
            }
            Err(e) => Err(internal("insert a project")(e)),
        }
    }

    /// Everything the project page shows: live stages, archived stages, the retention policy.
    pub async fn project_overview(&self, project_id: &str) -> Result<ProjectOverview, Error> {
        let project = self.get_project(project_id).await?;
        let (stages, archived) = self.live_and_archived(project_id).await?;
        let mut summaries = BTreeMap::new();
        for stage in &stages {
            let release = self.releases(project_id, &stage.id).await?.into_iter().next();
            let components = self.runtime.status(&StageKey::new(project_id, &stage.id));
            let links = self.share_links(project_id, &stage.id).await?;
            summaries.insert(stage.id.clone(), StageSummary { release, components, links });
        }
        Ok(ProjectOverview { project, stages, archived, retention: self.retention().await?, summaries })
    }
}
