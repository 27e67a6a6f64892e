//! Stages: ID check, create, read, update.

use super::{capitalized, internal, Acting, Services};
use crate::StoreError;
use pergola_domain::access::Action;
use pergola_domain::wire::StageUpdate;
use pergola_domain::{
    check_grace, derive_id, format_time, numbered_id, suggestion_stem, validate_id, validate_name, Cursor, Error,
    EventKind, IdCheck, IdKind, Stage, StageEvent, StagePage, StageQuery, StageStatus, StageType,
};
use std::collections::HashSet;

impl Acting {
    /// The live check of the "+ NEW STAGE" popup: is `id` valid and free in the project?
    pub async fn check_stage_id(&self, project_id: &str, id: &str) -> Result<IdCheck, Error> {
        self.get_project(project_id).await?;
        let id = id.trim();
        let verdict = match validate_id(IdKind::Stage, id) {
            Err(e) => Err(e),
            Ok(()) => match self.store.get_stage(project_id, id).await.map_err(internal("check a stage ID"))? {
                None => Ok(()),
                Some(_) => Err(self.stage_id_taken(project_id, id).await?),
            },
        };
        Ok(match verdict {
            Ok(()) => IdCheck { id: id.to_owned(), available: true, message: None, suggestion: None },
            Err(e) => {
                IdCheck { id: id.to_owned(), available: false, message: Some(e.message), suggestion: e.suggestion }
            }
        })
    }

    /// Creates a running stage. The ID is derived from the name unless `id` is given; a taken
    /// ID (by a live or an archived stage) is refused with a free suggestion.
    pub async fn create_stage(
        &self,
        project_id: &str,
        name: &str,
        stage_type: StageType,
        id: Option<&str>,
    ) -> Result<Stage, Error> {
        self.get_project(project_id).await?;
        self.allow(Action::CreateStage, Some(stage_type), project_id).await?;
        let name = validate_name("Stage", name)?;
        let id = chosen_id(IdKind::Stage, &name, id)?;
        let now = self.clock.now();
        let stage = Stage {
            project_id: project_id.to_owned(),
            id,
            name,
            stage_type,
            status: StageStatus::Running,
            grace_secs: u32::try_from(self.grace.as_secs())
                .unwrap_or(pergola_domain::MAX_GRACE_SECS)
                .clamp(1, pergola_domain::MAX_GRACE_SECS),
            created_at: now,
            updated_at: now,
            archived_at: None,
            purge_due_at: None,
        };
        let inserted = self.store.insert_stage(&stage).await;
        self.proxy_cache.forget_all();
        match inserted {
            Ok(()) => {
                let message = format!("Stage '{}' created as {}.", stage.name, stage.stage_type);
                self.record(project_id, &stage.id, StageEvent::new(now, EventKind::Created, message)).await;
                Ok(stage)
            }
            Err(StoreError::Conflict) => Err(self.stage_id_taken(project_id, &stage.id).await?),
            Err(e) => Err(internal("insert a stage")(e)),
        }
    }

    /// A live stage. An archived one is reported as not found, with a hint to restore it.
    pub async fn get_stage(&self, project_id: &str, stage_id: &str) -> Result<Stage, Error> {
        self.allow(Action::ReadStage, None, project_id).await?;
        self.live_stage(project_id, stage_id).await
    }

    /// The live stages of a project, oldest first; with `archived`, its archived stages
    /// instead, the latest deleted first.
    pub async fn list_stages(&self, project_id: &str, archived: bool) -> Result<Vec<Stage>, Error> {
        self.get_project(project_id).await?;
        let (live, archived_stages) = self.live_and_archived(project_id).await?;
        Ok(if archived { archived_stages } else { live })
    }

    /// One page of the project's live stages matching `query` (search, types, statuses), in its
    /// sort, after its cursor, with how many match in all and the cursor of the next page.
    pub async fn stage_page(&self, project_id: &str, query: &StageQuery) -> Result<StagePage, Error> {
        self.get_project(project_id).await?;
        self.page_of_stages(project_id, query).await
    }

    /// Changes the display name, type and grace period of a live stage, each when given; its
    /// ID never changes. The changes apply to the stage as it is read, and are written only if
    /// it is still so (compare-and-set): a concurrent change is read again, never overwritten.
    /// Changing the type needs the right to change a stage of both types.
    pub async fn update_stage(&self, project_id: &str, stage_id: &str, update: StageUpdate) -> Result<Stage, Error> {
        let name = update.name.as_deref().map(|n| validate_name("Stage", n)).transpose()?;
        let grace = update.grace_secs.map(check_grace).transpose()?;
        for _ in 0..20 {
            let before = self.allow_stage(Action::UpdateStage, project_id, stage_id).await?;
            let before = self.live(before)?;
            let name = name.clone().unwrap_or_else(|| before.name.clone());
            let stage_type = update.stage_type.unwrap_or(before.stage_type);
            self.allow(Action::UpdateStage, Some(stage_type), project_id).await?;
            let grace = grace.unwrap_or(before.grace_secs);
            let now = self.clock.now();
            let updated = self.store.update_stage(&before, &name, stage_type, grace, now).await;
            self.proxy_cache.forget_all();
            if !updated.map_err(internal("update a stage"))? {
                // Archived (the next read says so) or changed since the read: read it again.
                continue;
            }
            let mut changes = Vec::new();
            if before.name != name {
                changes.push(format!("renamed to '{name}'"));
            }
            if before.stage_type != stage_type {
                changes.push(format!("type set to {stage_type}"));
            }
            if before.grace_secs != grace {
                changes.push(format!("grace period set to {grace} s"));
            }
            if !changes.is_empty() {
                let message = capitalized(&changes.join(", ")) + ".";
                self.record(project_id, stage_id, StageEvent::new(now, EventKind::Updated, message)).await;
            }
            return self.live_stage(project_id, stage_id).await;
        }
        Err(Error::invalid_state(format!("Stage '{stage_id}' changed while you were acting on it; please try again.")))
    }
}

impl Services {
    /// Gives the stages an older server made or renamed during a rolling update (no search key,
    /// or a stale one) their key, so a search finds them and a sort by name places them; how
    /// many. A task of the purge sweep.
    pub async fn fill_name_keys(&self) -> Result<u64, Error> {
        self.store.fill_name_keys().await.map_err(internal("fill the stages' search keys"))
    }

    /// A live stage, whoever asks. An archived one is reported as not found, with a hint to
    /// restore it.
    pub(super) async fn live_stage(&self, project_id: &str, stage_id: &str) -> Result<Stage, Error> {
        let stage = self.any_stage(project_id, stage_id).await?;
        self.live(stage)
    }

    /// `stage` if it is live, else the not-found error with the hint to restore it.
    pub(super) fn live(&self, stage: Stage) -> Result<Stage, Error> {
        let (project_id, stage_id) = (&stage.project_id, &stage.id);
        match stage.purge_due_at {
            None => Ok(stage),
            Some(due) => Err(Error::not_found(format!(
                "Stage '{stage_id}' was deleted and is archived until {}. Restore it from the \
                 archived stages of project '{project_id}'.",
                format_time(due)
            ))),
        }
    }

    /// [`Acting::stage_page`] once the caller may read the project.
    pub(super) async fn page_of_stages(&self, project_id: &str, query: &StageQuery) -> Result<StagePage, Error> {
        // One more than asked for tells whether another page follows.
        let fetch = query.limit.map(|n| n.saturating_add(1));
        let (mut stages, matching) =
            self.store.stage_page(project_id, query, fetch).await.map_err(internal("list a page of stages"))?;
        let mut next = None;
        if let Some(limit) = query.limit.and_then(|n| usize::try_from(n).ok()) {
            if stages.len() > limit {
                stages.truncate(limit);
                next = stages.last().map(|last| Cursor::after(query.sort, last).encode());
            }
        }
        Ok(StagePage { stages, matching, next })
    }

    pub(super) async fn live_and_archived(&self, project_id: &str) -> Result<(Vec<Stage>, Vec<Stage>), Error> {
        let all = self.store.list_stages(project_id).await.map_err(internal("list the stages of a project"))?;
        let (mut archived, live): (Vec<_>, Vec<_>) = all.into_iter().partition(Stage::is_archived);
        archived.sort_by_key(|s| std::cmp::Reverse(s.archived_at));
        Ok((live, archived))
    }

    pub(super) async fn any_stage(&self, project_id: &str, stage_id: &str) -> Result<Stage, Error> {
        match self.store.get_stage(project_id, stage_id).await.map_err(internal("read a stage"))? {
            Some(stage) => Ok(stage),
            None => {
                self.project(project_id).await?;
                Err(Error::not_found(format!("Project '{project_id}' has no stage '{stage_id}'.")))
            }
        }
    }

    /// The "taken" error for `id`, saying whether an archived stage holds it, with a free
    /// suggestion.
    pub(super) async fn stage_id_taken(&self, project_id: &str, id: &str) -> Result<Error, Error> {
        let taken = self
            .store
            .stage_ids_like(project_id, suggestion_stem(id).0)
            .await
            .map_err(internal("list the taken stage IDs"))?;
        let mut err = Error::id_taken(IdKind::Stage, id, first_free(id, taken));
        if let Some(Stage { purge_due_at: Some(due), .. }) =
            self.store.get_stage(project_id, id).await.map_err(internal("read the stage holding an ID"))?
        {
            err.message = format!(
                "Stage ID '{id}' is already taken by an archived stage (restorable until {}). \
                 Try '{}'.",
                format_time(due),
                err.suggestion.as_deref().unwrap_or_default()
            );
        }
        Ok(err)
    }
}

/// The ID the user gave (validated exactly as given: the dashboard turns a blank override into
/// `None` and trims a typed one) or, without one, the one derived from `name`.
pub(super) fn chosen_id(kind: IdKind, name: &str, id: Option<&str>) -> Result<String, Error> {
    let id = match id {
        Some(typed) => typed.to_owned(),
        None => derive_id(kind, name),
    };
    validate_id(kind, &id)?;
    Ok(id)
}

/// The first free numbered alternative to the taken `id` (`id-2`, `id-3`, …; for a numbered
/// `id` the numbering continues), given every taken ID that shares its stem.
pub(super) fn first_free(id: &str, taken: Vec<String>) -> String {
    let taken: HashSet<String> = taken.into_iter().collect();
    let (stem, start) = suggestion_stem(id);
    (start..)
        .map(|n| numbered_id(stem, n))
        .find(|candidate| !taken.contains(candidate))
        .expect("an unbounded range always has a free number")
}
