//! The lifecycle of a stage: suspend, resume, delete (archive), restore and purge.

use super::{internal, Acting, Services};
use crate::StageKey;
use pergola_domain::access::Action;
use pergola_domain::{format_time, Error, EventKind, Stage, StageEvent, StageStatus};

impl Acting {
    /// Suspends a running stage: it is "suspending" while its services get SIGTERM and up to
    /// its grace period to exit (then SIGKILL), and "suspended" once all have stopped; traffic
    /// and scheduled jobs stop at once; storage is kept. Answers as soon as the stage is
    /// suspended, or still suspending after a moment (the stop goes on in the background).
    pub async fn suspend_stage(&self, project_id: &str, stage_id: &str) -> Result<Stage, Error> {
        self.allow_stage(Action::SuspendStage, project_id, stage_id).await?;
        let stage = self.transition(project_id, stage_id, StageStatus::suspend).await?;
        let message = format!("Suspending: SIGTERM to every component, SIGKILL after {} s.", stage.grace_secs);
        self.record(project_id, stage_id, StageEvent::new(self.clock.now(), EventKind::Suspending, message)).await;
        let (project, id) = (project_id.to_owned(), stage_id.to_owned());
        self.stop_then(stage, move |services, stopped| async move {
            services.settle_suspend(&project, &id, &stopped).await;
        })
        .await;
        self.any_stage(project_id, stage_id).await
    }

    /// Resumes a suspended stage with its last release, configuration and storage. A stage
    /// still suspending is marked to resume: it answers `suspending`, and starts its last
    /// release as soon as its components have stopped (instead of settling as suspended).
    pub async fn resume_stage(&self, project_id: &str, stage_id: &str) -> Result<Stage, Error> {
        let stage = self.live(self.allow_stage(Action::ResumeStage, project_id, stage_id).await?)?;
        if stage.status == StageStatus::Suspending {
            let marked = self.store.request_resume(project_id, stage_id, self.clock.now()).await;
            self.proxy_cache.forget_all();
            if marked.map_err(internal("mark a stage to resume"))? {
                let message =
                    "Resume requested while suspending: its last release starts once every component has stopped.";
                self.record(project_id, stage_id, StageEvent::new(self.clock.now(), EventKind::Resumed, message)).await;
                return self.live_stage(project_id, stage_id).await;
            }
            // The stop settled meanwhile: resume from the status it is in now.
        }
        let stage = self.transition(project_id, stage_id, StageStatus::resume).await?;
        self.record(
            project_id,
            stage_id,
            StageEvent::new(self.clock.now(), EventKind::Resumed, "Resumed with its last release."),
        )
        .await;
        self.start_current(&stage).await?;
        Ok(stage)
    }
}

impl Services {
    pub(super) async fn transition(
        &self,
        project_id: &str,
        stage_id: &str,
        step: fn(StageStatus, &str) -> Result<StageStatus, Error>,
    ) -> Result<Stage, Error> {
        let stage = self.live_stage(project_id, stage_id).await?;
        let to = step(stage.status, stage_id)?;
        let now = self.clock.now();
        let moved = self.store.transition_status(project_id, stage_id, stage.status, to, now).await;
        self.proxy_cache.forget_all();
        let moved = moved.map_err(internal("move a stage to its next status"))?;
        let current = self.live_stage(project_id, stage_id).await?;
        if !moved {
            // Someone else changed it first: explain from the state it is in now.
            step(current.status, stage_id)?;
            return Err(Error::invalid_state(format!(
                "Stage '{stage_id}' changed while you were acting on it; please try again."
            )));
        }
        Ok(current)
    }
}

impl Acting {
    /// DELETE STAGE: archives a live stage (the dashboard has the user confirm it first). The
    /// stage is restorable until its retention (by type, as configured now) runs out.
    pub async fn delete_stage(&self, project_id: &str, stage_id: &str) -> Result<Stage, Error> {
        let stage = self.live(self.allow_stage(Action::DeleteStage, project_id, stage_id).await?)?;
        let now = self.clock.now();
        let due = self.retention().await?.due_at(stage.stage_type, now);
        let archived = self.store.archive_stage(project_id, stage_id, now, due).await;
        self.proxy_cache.forget_all();
        if !archived.map_err(internal("archive a stage"))? {
            return Err(self.live_stage(project_id, stage_id).await.err().unwrap_or_else(Error::internal));
        }
        let message = format!("Deleted: archived, restorable until {}.", format_time(due));
        self.record(project_id, stage_id, StageEvent::new(now, EventKind::Archived, message)).await;
        // Archived first, so its share links answer 404 at once; then its components stop
        // the same way as for a suspend, and its jobs and cron runs already started too.
        self.stop_then(stage, |_, _| async {}).await;
        self.any_stage(project_id, stage_id).await
    }

    /// Brings an archived stage back, as it was, unless its deletion is already due.
    pub async fn restore_stage(&self, project_id: &str, stage_id: &str) -> Result<Stage, Error> {
        let stage = self.allow_stage(Action::RestoreStage, project_id, stage_id).await?;
        let Some(due) = stage.purge_due_at else {
            return Err(Error::invalid_state(format!("Stage '{stage_id}' is not archived.")));
        };
        let now = self.clock.now();
        let expired = || {
            Error::expired(format!(
                "Stage '{stage_id}' was due for deletion on {} and can no longer be restored.",
                format_time(due)
            ))
        };
        if !stage.restorable_at(now) {
            return Err(expired());
        }
        let restored = self.store.restore_stage(project_id, stage_id, now).await;
        self.proxy_cache.forget_all();
        if !restored.map_err(internal("restore a stage"))? {
            return Err(expired());
        }
        let stage = self.live_stage(project_id, stage_id).await?;
        let message = format!("Restored from the archive ({}).", stage.status);
        self.record(project_id, stage_id, StageEvent::new(now, EventKind::Restored, message)).await;
        if stage.status == StageStatus::Running {
            self.start_current(&stage).await?;
        }
        Ok(stage)
    }
}

impl Services {
    /// Deletes, for good, every archived stage whose retention has run out; their IDs become
    /// free again. The runtime forgets each first (what it ran, its files, its storage); a
    /// stage it could not forget entirely stays archived (due, no longer restorable) and is
    /// tried again at the next purge. Returns the (project, stage) IDs purged.
    pub async fn purge_due(&self) -> Result<Vec<(String, String)>, Error> {
        let now = self.clock.now();
        let due = self.store.due_for_purge(now).await.map_err(internal("list the stages due for purge"))?;
        let mut purged = Vec::new();
        for (project, stage) in due {
            if let Err(e) = self.runtime.forget(&StageKey::new(&project, &stage)).await {
                tracing::warn!(
                    project,
                    stage,
                    error = %e,
                    "could not delete the purged stage's files; it stays archived and is tried again at the next purge"
                );
                continue;
            }
            self.metrics.forget(&StageKey::new(&project, &stage));
            let deleted = self.store.purge_stage(&project, &stage, now).await;
            self.proxy_cache.forget_all();
            if deleted.map_err(internal("purge a due stage"))? {
                tracing::info!(project, stage, "archived stage purged for good");
                purged.push((project, stage));
            }
        }
        Ok(purged)
    }
}
