//! Projects.

use super::stages::{chosen_id, first_free};
use super::{internal, Acting, Services};
use crate::{StageKey, StoreError};
use pergola_domain::access::Action;
use pergola_domain::{
    suggestion_stem, validate_name, Error, IdKind, Project, ProjectOverview, Release, StagePage, StageQuery,
    StageSummary, PROJECT_PAGE_SIZE,
};
use std::collections::{BTreeMap, HashSet};

impl Services {
    /// A project, whoever asks (callers check the permission first).
    pub(super) async fn project(&self, project_id: &str) -> Result<Project, Error> {
        self.store
            .get_project(project_id)
            .await
            .map_err(internal("read a project"))?
            .ok_or_else(|| pergola_domain::project_not_found(project_id))
    }
}

impl Acting {
    /// The projects the caller may see: all of them for an administrator, else those they are
    /// a member of.
    pub async fn list_projects(&self) -> Result<Vec<Project>, Error> {
        let all = self.store.list_projects().await.map_err(internal("list the projects"))?;
        if self.caller().is_admin {
            return Ok(all);
        }
        let mine: HashSet<String> = self
            .store
            .projects_of(&self.caller().user_id)
            .await
            .map_err(internal("list the projects of a user"))?
            .into_iter()
            .map(|(project, _)| project)
            .collect();
        Ok(all.into_iter().filter(|p| mine.contains(&p.id)).collect())
    }

    pub async fn get_project(&self, project_id: &str) -> Result<Project, Error> {
        self.allow(Action::ReadProject, None, project_id).await?;
        self.project(project_id).await
    }

    /// Creates a project; its ID is derived from the name unless `id` is given. Its creator
    /// becomes its owner.
    pub async fn create_project(&self, name: &str, id: Option<&str>) -> Result<Project, Error> {
        self.allow(Action::CreateProject, None, "").await?;
        let name = validate_name("Project", name)?;
        let id = chosen_id(IdKind::Project, &name, id)?;
        let project = Project { id, name, created_at: self.clock.now() };
        match self.store.insert_project(&project).await {
            Ok(()) => {
                let owner = self
                    .store
                    .upsert_membership(
                        &project.id,
                        &self.caller().user_id,
                        pergola_domain::Role::Owner,
                        project.created_at,
                    )
                    .await;
                owner.map_err(internal("make the creator of a project its owner"))?;
                self.forget_roles();
                let message = format!("Project '{}' created with ID '{}'.", project.name, project.id);
                self.audit(Some(&project.id), None, "project.created", &project.id, message).await;
                Ok(project)
            }
            Err(StoreError::Conflict) => {
                let (stem, _) = suggestion_stem(&project.id);
                let taken = self.store.project_ids_like(stem).await.map_err(internal("list the taken project IDs"))?;
                let suggestion = first_free(&project.id, taken);
                Err(Error::id_taken(IdKind::Project, &project.id, suggestion))
            }
            Err(e) => Err(internal("insert a project")(e)),
        }
    }

    /// Everything the project page shows: one page of the live stages matching `query` (at
    /// most [`PROJECT_PAGE_SIZE`]) with their current releases, components and share links,
    /// the archived stages, the retention policy, and who is looking (for the buttons).
    pub async fn project_overview(&self, project_id: &str, query: &StageQuery) -> Result<ProjectOverview, Error> {
        let project = self.get_project(project_id).await?;
        let actor = self.actor(project_id).await?;
        let mut query = query.clone();
        query.limit = Some(query.limit.unwrap_or(PROJECT_PAGE_SIZE).min(PROJECT_PAGE_SIZE));
        let StagePage { stages, matching, next } = self.page_of_stages(project_id, &query).await?;
        let total = if query.is_filtered() || query.cursor.is_some() {
            let everything = StageQuery { limit: Some(1), ..StageQuery::default() };
            self.page_of_stages(project_id, &everything).await?.matching
        } else {
            matching
        };
        let archived = self
            .store
            .list_archived_stages(project_id)
            .await
            .map_err(internal("list the archived stages of a project"))?;
        let ids: Vec<String> = stages.iter().map(|s| s.id.clone()).collect();
        let mut releases: BTreeMap<String, Release> = self
            .store
            .current_releases(project_id, &ids)
            .await
            .map_err(internal("read the current releases of a page of stages"))?
            .into_iter()
            .collect();
        let mut summaries = BTreeMap::new();
        for stage in &stages {
            let release = releases.remove(&stage.id);
            let components = self.runtime.status(&StageKey::new(project_id, &stage.id));
            let links = self.links_of(project_id, &stage.id, &components);
            let sparklines = self.metrics.sparklines(&StageKey::new(project_id, &stage.id), self.clock.now());
            summaries.insert(stage.id.clone(), StageSummary { release, components, links, sparklines });
        }
        let retention = self.retention().await?;
        Ok(ProjectOverview { project, stages, archived, retention, summaries, actor, matching, total, next })
    }
}
