//! A stage's timeline.

use super::{internal, record, Acting, Services, EVENTS_SHOWN};
use pergola_domain::access::Action;
use pergola_domain::{Error, StageEvent};

impl Services {
    /// Adds an event to a stage's timeline; a failure is logged, never the caller's problem.
    pub(super) async fn record(&self, project_id: &str, stage_id: &str, event: StageEvent) {
        self.observed.flush().await;
        record(&*self.store, &self.changes, project_id, stage_id, event).await;
    }

    /// Records what the runtime observed of a stage's components (crashes, restarts, kills,
    /// health changes) in its timeline.
    pub async fn record_observed(&self, project_id: &str, stage_id: &str, event: StageEvent) {
        self.record(project_id, stage_id, event).await;
    }

    /// Bounds the events timelines (see [`super::EventsKept`]): deletes the events older than
    /// the maximum age, and all but the newest of each stage. Returns how many went. The purge
    /// task calls it (at start-up, then at most hourly).
    pub async fn prune_events(&self) -> Result<u64, Error> {
        let before = self.clock.now() - self.events_kept.max_age;
        let pruned = self.store.prune_events(before, self.events_kept.per_stage).await;
        let pruned = pruned.map_err(internal("prune the events timelines"))?;
        if pruned > 0 {
            tracing::info!(pruned, "old events pruned from the stage timelines");
        }
        Ok(pruned)
    }

    /// The store itself, for tests that arrange what the services cannot.
    #[cfg(feature = "testing")]
    pub fn store(&self) -> &dyn crate::Store {
        &*self.store
    }
}

impl Acting {
    /// A stage's events timeline, newest first (live or archived stage).
    pub async fn events(&self, project_id: &str, stage_id: &str) -> Result<Vec<StageEvent>, Error> {
        self.allow_stage(Action::ReadStage, project_id, stage_id).await?;
        self.store.list_events(project_id, stage_id, EVENTS_SHOWN).await.map_err(internal("list the stage events"))
    }
}
