//! The operations behind every dashboard action (and, later, every API route and CLI command).
//!
//! Each one re-validates its input with `pergola-domain`, so no caller can skip a rule, and maps
//! store failures to [`Error`]: users see a clear message, the server log keeps the detail.

use crate::runtime::{EventSink, EventStream};
use crate::store::ConfigValue;
use crate::{Clock, NoRuntime, Runtime, SecretBox, StageKey, StageSpec, StopReport, Store, StoreError};
use pergola_domain::runtime::{ComponentStatus, LogLine};
use pergola_domain::share::{ShareBase, ShareLink};
use pergola_domain::ComponentKind;
use pergola_domain::{
    derive_id, format_time, numbered_id, parse_grace, parse_manifest, suggestion_stem, validate_config, validate_id,
    validate_name, Build, ConfigEntry, Error, EventKind, IdCheck, IdKind, Project, ProjectOverview, Release,
    RetentionPolicy, Stage, StageEvent, StageStatus, StageSummary, StageType,
};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone)]
pub struct Services {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    /// What runs the stages ([`NoRuntime`] by default: releases are recorded, nothing runs).
    runtime: Arc<dyn Runtime>,
    /// The sink the runtime reports to: flushed before an event of the services is recorded,
    /// so the timeline keeps the order in which things happened.
    observed: EventSink,
    /// The grace period new stages get (between SIGTERM and SIGKILL).
    grace: Duration,
    /// Where share links point.
    share: ShareBase,
    /// Seals secret configuration values at rest; without one they are stored as they are.
    secrets: Option<SecretBox>,
    /// Live stages as the share-link proxy last read them (see [`Services::stage_with_components`]).
    proxy_cache: Arc<ProxyCache>,
    /// One lock per stage: what runs on a stage changes one operation at a time.
    locks: Arc<std::sync::Mutex<std::collections::HashMap<(String, String), Arc<tokio::sync::Mutex<()>>>>>,
}

/// The seed's "usually 60 secs" between SIGTERM and SIGKILL.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(pergola_domain::DEFAULT_GRACE_SECS as u64);

/// How long a suspend or delete waits for the components to stop before it answers; a stop
/// that takes longer goes on in the background while the stage shows "suspending".
const ANSWER_WITHIN: Duration = Duration::from_millis(500);

/// How many events a timeline shows.
pub const EVENTS_SHOWN: i64 = 100;

/// Logs the server-side detail and hands the caller the generic internal error.
fn internal(e: StoreError) -> Error {
    tracing::error!(error = %e, "store operation failed");
    Error::internal()
}

/// Adds an event to a stage's timeline; a failure is logged, never the caller's problem.
async fn record(store: &dyn Store, project_id: &str, stage_id: &str, event: StageEvent) {
    if let Err(e) = store.add_event(project_id, stage_id, &event).await {
        tracing::warn!(project_id, stage_id, error = %e, "could not record a stage event");
    }
}

/// Records what a runtime observes in the stages' timelines, until it stops sending. (It holds
/// the store only: the runtime holding the sink is not kept alive by this task.)
async fn record_observed_events(store: Arc<dyn Store>, mut observed: EventStream) {
    while let Some((key, event)) = observed.recv().await {
        record(&*store, &key.project, &key.stage, event).await;
    }
}

const RETENTION_KEYS: [(StageType, &str); 3] = [
    (StageType::Dev, "retention.dev_days"),
    (StageType::Qa, "retention.qa_days"),
    (StageType::Prod, "retention.prod_days"),
];

impl Services {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            clock,
            runtime: Arc::new(NoRuntime),
            observed: EventSink::channel().0,
            grace: DEFAULT_GRACE,
            share: ShareBase { domain: "localhost".into(), port: 3000 },
            secrets: None,
            locks: Arc::default(),
            proxy_cache: Arc::default(),
        }
    }

    /// The lock that serializes the runtime operations of one stage.
    fn stage_lock(&self, project_id: &str, stage_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().expect("stage locks");
        locks.entry((project_id.to_owned(), stage_id.to_owned())).or_default().clone()
    }

    /// The same services, sealing secret configuration values at rest with `secrets`.
    pub fn with_secrets(&self, secrets: SecretBox) -> Self {
        Self { secrets: Some(secrets), ..self.clone() }
    }

    fn seal(&self, value: &str) -> String {
        self.secrets.as_ref().map_or_else(|| value.to_owned(), |s| s.seal(value))
    }

    fn open(&self, stored: &str) -> Result<String, Error> {
        match &self.secrets {
            Some(s) => s.open(stored).map_err(|e| {
                tracing::error!(error = %e, "a secret configuration value could not be opened");
                Error::internal()
            }),
            None if crate::secrets::is_sealed(stored) => {
                tracing::error!("a sealed configuration value, but the server has no secret key");
                Err(Error::internal())
            }
            None => Ok(stored.to_owned()),
        }
    }

    /// The same store, seen through another clock.
    pub fn with_clock(&self, clock: Arc<dyn Clock>) -> Self {
        Self { clock, ..self.clone() }
    }

    /// The same services, running stages with `runtime`; new stages get this grace period.
    /// What the runtime observes from now on goes to the stages' timelines (a task forwards
    /// it, so this must be called within a Tokio runtime).
    pub fn with_runtime(&self, runtime: Arc<dyn Runtime>, grace: Duration) -> Self {
        let (sink, stream) = EventSink::channel();
        runtime.observe(sink.clone());
        tokio::spawn(record_observed_events(self.store.clone(), stream));
        Self { runtime, observed: sink, grace, ..self.clone() }
    }

    /// The same services, with share links pointing at `share`.
    pub fn with_share_base(&self, share: ShareBase) -> Self {
        Self { share, ..self.clone() }
    }

    /// The share links of a stage's running service components.
    pub async fn share_links(&self, project_id: &str, stage_id: &str) -> Result<Vec<ShareLink>, Error> {
        let components = self.components(project_id, stage_id).await?;
        Ok(components
            .into_iter()
            .filter(|c| c.kind == ComponentKind::Service)
            .map(|c| ShareLink { url: self.share.url(&c.name, stage_id, project_id), component: c.name })
            .collect())
    }

    /// The components of a stage as its runtime observes them (none without a runtime).
    pub async fn components(&self, project_id: &str, stage_id: &str) -> Result<Vec<ComponentStatus>, Error> {
        self.get_stage(project_id, stage_id).await?;
        Ok(self.runtime.status(&StageKey::new(project_id, stage_id)))
    }

    /// A live stage and its components as observed now, with one look-up in the store (the
    /// share-link proxy asks this on every request).
    /// The stage is remembered for [`PROXY_CACHE_TTL`]; any change to a stage made through
    /// these services forgets everything remembered, so a suspend is seen at once here (other
    /// servers on the same database see it within the TTL).
    pub async fn stage_with_components(
        &self,
        project_id: &str,
        stage_id: &str,
    ) -> Result<(Stage, Vec<ComponentStatus>), Error> {
        let key = (project_id.to_owned(), stage_id.to_owned());
        let stage = match self.proxy_cache.get(&key) {
            Some(stage) => stage,
            None => {
                let generation = self.proxy_cache.generation();
                let stage = self.get_stage(project_id, stage_id).await?;
                self.proxy_cache.put(key, stage.clone(), generation);
                stage
            }
        };
        let components = self.runtime.status(&StageKey::new(project_id, stage_id));
        Ok((stage, components))
    }

    /// The last output lines of a component.
    pub async fn logs(&self, project_id: &str, stage_id: &str, component: &str) -> Result<Vec<LogLine>, Error> {
        self.get_stage(project_id, stage_id).await?;
        Ok(self.runtime.logs(&StageKey::new(project_id, stage_id), component))
    }

    /// Starts the current release of every running live stage (the server calls this at
    /// start-up: what should run, runs again).
    pub async fn reconcile(&self) -> Result<usize, Error> {
        let mut started = 0;
        for project in self.list_projects().await? {
            for stage in self.store.list_stages(&project.id).await.map_err(internal)? {
                if stage.status == StageStatus::Suspending {
                    // The server stopped while the stage was being suspended: nothing of it
                    // runs any more.
                    self.settle_suspend(&stage.project_id, &stage.id, &Default::default()).await;
                } else if !stage.is_archived()
                    && stage.status == StageStatus::Running
                    && self.start_current(&stage).await?
                {
                    started += 1;
                    let message = "Started again: the server restarted.";
                    self.record(
                        &stage.project_id,
                        &stage.id,
                        StageEvent::new(self.clock.now(), EventKind::Started, message),
                    )
                    .await;
                }
            }
        }
        Ok(started)
    }

    /// Starts the stage's current release, if it has one and there is a runtime.
    async fn start_current(&self, stage: &Stage) -> Result<bool, Error> {
        if !self.runtime.runs_stages() {
            return Ok(false);
        }
        // One at a time per stage, and with what is current once it is this one's turn: of
        // two deploys racing, the newest release is the one left running.
        let lock = self.stage_lock(&stage.project_id, &stage.id);
        let _turn = lock.lock().await;
        match self.store.get_stage(&stage.project_id, &stage.id).await.map_err(internal)? {
            Some(now) if !now.is_archived() && now.status == StageStatus::Running => {}
            _ => return Ok(false),
        }
        let rows = self.store.list_releases(&stage.project_id, &stage.id).await.map_err(internal)?;
        let Some(current) = rows.into_iter().next() else { return Ok(false) };
        let manifest = parse_manifest(&current.build.manifest)?;
        let spec = StageSpec {
            key: StageKey::new(&stage.project_id, &stage.id),
            release: current.number,
            components: manifest.components,
            config: current.config.iter().map(|(k, v)| Ok((k.clone(), self.open(v)?))).collect::<Result<_, Error>>()?,
            workdir: current.build.workdir.into(),
        };
        self.runtime.start(spec, grace(stage)).await.map_err(|e| {
            tracing::error!(project = stage.project_id, stage = stage.id, error = %e, "could not start the release");
            Error::invalid_state(format!("The release could not be started: {e}"))
        })?;
        Ok(true)
    }

    async fn stop(&self, stage: &Stage) -> StopReport {
        let lock = self.stage_lock(&stage.project_id, &stage.id);
        let _turn = lock.lock().await;
        self.runtime.stop(&StageKey::new(&stage.project_id, &stage.id), grace(stage)).await
    }

    /// Stops a stage's components in the background; answers once they stopped or after
    /// [`ANSWER_WITHIN`], whichever comes first. `then` runs when they have stopped.
    async fn stop_then<F, Fut>(&self, stage: Stage, then: F)
    where
        F: FnOnce(Services, StopReport) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let services = self.clone();
        let task = tokio::spawn(async move {
            let report = services.stop(&stage).await;
            then(services, report).await;
        });
        let _ = tokio::time::timeout(ANSWER_WITHIN, task).await;
    }

    /// A suspending stage whose components have stopped becomes suspended.
    async fn settle_suspend(&self, project_id: &str, stage_id: &str, stopped: &StopReport) {
        let now = self.clock.now();
        let settled =
            self.store.settle_status(project_id, stage_id, StageStatus::Suspending, StageStatus::Suspended, now).await;
        self.proxy_cache.forget_all();
        match settled {
            Ok(true) => {
                let mut message = "Suspended: every component has stopped".to_owned();
                if !stopped.terminated.is_empty() {
                    message += &format!("; exited after SIGTERM: {}", stopped.terminated.join(", "));
                }
                if !stopped.killed.is_empty() {
                    message += &format!("; killed after the grace period: {}", stopped.killed.join(", "));
                }
                message.push('.');
                self.record(project_id, stage_id, StageEvent::new(now, EventKind::Suspended, message)).await;
            }
            Ok(false) => {}
            Err(e) => {
                internal(e);
            }
        }
    }

    /// Adds an event to a stage's timeline; a failure is logged, never the caller's problem.
    async fn record(&self, project_id: &str, stage_id: &str, event: StageEvent) {
        self.observed.flush().await;
        record(&*self.store, project_id, stage_id, event).await;
    }

    /// Records what the runtime observed of a stage's components (crashes, restarts, kills,
    /// health changes) in its timeline.
    pub async fn record_observed(&self, project_id: &str, stage_id: &str, event: StageEvent) {
        self.record(project_id, stage_id, event).await;
    }

    /// A stage's events timeline, newest first (live or archived stage).
    pub async fn events(&self, project_id: &str, stage_id: &str) -> Result<Vec<StageEvent>, Error> {
        self.any_stage(project_id, stage_id).await?;
        self.store.list_events(project_id, stage_id, EVENTS_SHOWN).await.map_err(internal)
    }

    pub fn store(&self) -> &dyn Store {
        &*self.store
    }

    // ----- projects -------------------------------------------------------------------------

    pub async fn list_projects(&self) -> Result<Vec<Project>, Error> {
        self.store.list_projects().await.map_err(internal)
    }

    pub async fn get_project(&self, project_id: &str) -> Result<Project, Error> {
        self.store
            .get_project(project_id)
            .await
            .map_err(internal)?
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
                let taken = self.store.project_ids_like(stem).await.map_err(internal)?;
                let suggestion = first_free(&project.id, taken);
                Err(Error::id_taken(IdKind::Project, &project.id, suggestion))
            }
            Err(e) => Err(internal(e)),
        }
    }

    /// Everything the project page shows: live stages, archived stages, the retention policy.
    pub async fn project_overview(&self, project_id: &str) -> Result<ProjectOverview, Error> {
        let project = self.get_project(project_id).await?;
        let all = self.store.list_stages(project_id).await.map_err(internal)?;
        let (mut archived, stages): (Vec<_>, Vec<_>) = all.into_iter().partition(Stage::is_archived);
        archived.sort_by(|a, b| b.archived_at.cmp(&a.archived_at));
        let mut summaries = BTreeMap::new();
        for stage in &stages {
            let release = self.releases(project_id, &stage.id).await?.into_iter().next();
            let components = self.runtime.status(&StageKey::new(project_id, &stage.id));
            let links = self.share_links(project_id, &stage.id).await?;
            summaries.insert(stage.id.clone(), StageSummary { release, components, links });
        }
        Ok(ProjectOverview { project, stages, archived, retention: self.retention().await?, summaries })
    }

    // ----- stages ---------------------------------------------------------------------------

    /// The live check of the "+ NEW STAGE" popup: is `id` valid and free in the project?
    pub async fn check_stage_id(&self, project_id: &str, id: &str) -> Result<IdCheck, Error> {
        self.get_project(project_id).await?;
        let id = id.trim();
        let verdict = match validate_id(IdKind::Stage, id) {
            Err(e) => Err(e),
            Ok(()) => match self.store.get_stage(project_id, id).await.map_err(internal)? {
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
        stage_type: &str,
        id: Option<&str>,
    ) -> Result<Stage, Error> {
        self.get_project(project_id).await?;
        let name = validate_name("Stage", name)?;
        let stage_type = StageType::parse(stage_type)?;
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
            Err(e) => Err(internal(e)),
        }
    }

    /// A live stage. An archived one is reported as not found, with a hint to restore it.
    pub async fn get_stage(&self, project_id: &str, stage_id: &str) -> Result<Stage, Error> {
        let stage = self.any_stage(project_id, stage_id).await?;
        match stage.purge_due_at {
            None => Ok(stage),
            Some(due) => Err(Error::not_found(format!(
                "Stage '{stage_id}' was deleted and is archived until {}. Restore it from the \
                 archived stages of project '{project_id}'.",
                format_time(due)
            ))),
        }
    }

    /// Changes the display name, type and (when given) the grace period of a live stage; its
    /// ID never changes.
    pub async fn update_stage(
        &self,
        project_id: &str,
        stage_id: &str,
        name: &str,
        stage_type: &str,
        grace_secs: Option<&str>,
    ) -> Result<Stage, Error> {
        let name = validate_name("Stage", name)?;
        let stage_type = StageType::parse(stage_type)?;
        let grace = grace_secs.map(parse_grace).transpose()?;
        let before = self.get_stage(project_id, stage_id).await?;
        let grace = grace.unwrap_or(before.grace_secs);
        let now = self.clock.now();
        let updated = self.store.update_stage(project_id, stage_id, &name, stage_type, grace, now).await;
        self.proxy_cache.forget_all();
        let updated = updated.map_err(internal)?;
        if !updated {
            // Archived between the read and the write.
            return Err(self.get_stage(project_id, stage_id).await.err().unwrap_or_else(Error::internal));
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
        self.get_stage(project_id, stage_id).await
    }

    /// Suspends a running stage: it is "suspending" while its services get SIGTERM and up to
    /// its grace period to exit (then SIGKILL), and "suspended" once all have stopped; traffic
    /// and scheduled jobs stop at once; storage is kept. Answers as soon as the stage is
    /// suspended, or still suspending after a moment (the stop goes on in the background).
    pub async fn suspend_stage(&self, project_id: &str, stage_id: &str) -> Result<Stage, Error> {
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

    /// Resumes a suspended stage with its last release, configuration and storage.
    pub async fn resume_stage(&self, project_id: &str, stage_id: &str) -> Result<Stage, Error> {
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

    async fn transition(
        &self,
        project_id: &str,
        stage_id: &str,
        step: fn(StageStatus, &str) -> Result<StageStatus, Error>,
    ) -> Result<Stage, Error> {
        let stage = self.get_stage(project_id, stage_id).await?;
        let to = step(stage.status, stage_id)?;
        let now = self.clock.now();
        let moved = self.store.transition_status(project_id, stage_id, stage.status, to, now).await;
        self.proxy_cache.forget_all();
        let moved = moved.map_err(internal)?;
        let current = self.get_stage(project_id, stage_id).await?;
        if !moved {
            // Someone else changed it first: explain from the state it is in now.
            step(current.status, stage_id)?;
            return Err(Error::invalid_state(format!(
                "Stage '{stage_id}' changed while you were acting on it; please try again."
            )));
        }
        Ok(current)
    }

    /// DELETE STAGE: archives a live stage. `confirm` must repeat the Stage ID. The stage is
    /// restorable until its retention (by type, as configured now) runs out.
    pub async fn delete_stage(&self, project_id: &str, stage_id: &str, confirm: &str) -> Result<Stage, Error> {
        let stage = self.get_stage(project_id, stage_id).await?;
        if confirm.trim() != stage.id {
            return Err(Error::validation(
                "confirm",
                format!("Type the Stage ID '{}' to confirm the deletion.", stage.id),
            ));
        }
        let now = self.clock.now();
        let due = self.retention().await?.due_at(stage.stage_type, now);
        let archived = self.store.archive_stage(project_id, stage_id, now, due).await;
        self.proxy_cache.forget_all();
        if !archived.map_err(internal)? {
            return Err(self.get_stage(project_id, stage_id).await.err().unwrap_or_else(Error::internal));
        }
        let message = format!("Deleted: archived, restorable until {}.", format_time(due));
        self.record(project_id, stage_id, StageEvent::new(now, EventKind::Archived, message)).await;
        // Archived first, so its share links answer 404 at once; then its components stop
        // the same way as for a suspend.
        self.stop_then(stage, |_, _| async {}).await;
        self.any_stage(project_id, stage_id).await
    }

    /// Brings an archived stage back, as it was, unless its deletion is already due.
    pub async fn restore_stage(&self, project_id: &str, stage_id: &str) -> Result<Stage, Error> {
        self.get_project(project_id).await?;
        let stage = self.any_stage(project_id, stage_id).await?;
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
        if !restored.map_err(internal)? {
            return Err(expired());
        }
        let stage = self.get_stage(project_id, stage_id).await?;
        let message = format!("Restored from the archive ({}).", stage.status);
        self.record(project_id, stage_id, StageEvent::new(now, EventKind::Restored, message)).await;
        if stage.status == StageStatus::Running {
            self.start_current(&stage).await?;
        }
        Ok(stage)
    }

    /// Deletes, for good, every archived stage whose retention has run out; their IDs become
    /// free again. Returns the (project, stage) IDs purged.
    pub async fn purge_due(&self) -> Result<Vec<(String, String)>, Error> {
        let purged = self.store.purge_due(self.clock.now()).await;
        self.proxy_cache.forget_all();
        let purged = purged.map_err(internal)?;
        for (project, stage) in &purged {
            if let Err(e) = self.runtime.forget(&StageKey::new(project, stage)).await {
                tracing::warn!(project, stage, error = %e, "could not delete the purged stage's storage");
            }
            tracing::info!(project, stage, "archived stage purged for good");
        }
        Ok(purged)
    }

    // ----- builds and releases --------------------------------------------------------------

    /// Registers a build of a project from its manifest; the build's files are in `workdir`
    /// (an absolute directory on this machine). A malformed manifest is refused with the line
    /// and the reason.
    pub async fn register_build(&self, project_id: &str, manifest: &str, workdir: &str) -> Result<Build, Error> {
        self.get_project(project_id).await?;
        let parsed = parse_manifest(manifest)?;
        let workdir = workdir.trim();
        if !std::path::Path::new(workdir).is_absolute() {
            return Err(Error::validation("workdir", "The build directory must be an absolute path."));
        }
        if !std::path::Path::new(workdir).is_dir() {
            return Err(Error::validation("workdir", format!("There is no directory '{workdir}' on the server.")));
        }
        let mut build = Build {
            project_id: project_id.to_owned(),
            number: 0,
            version: parsed.version,
            manifest: manifest.to_owned(),
            workdir: workdir.to_owned(),
            created_at: self.clock.now(),
        };
        let uid = uuid::Uuid::new_v4().to_string();
        build.number = retry_on_conflict(|| self.store.insert_build(&uid, &build)).await?;
        Ok(build)
    }

    /// A project's builds, newest first.
    pub async fn builds(&self, project_id: &str) -> Result<Vec<Build>, Error> {
        self.get_project(project_id).await?;
        let rows = self.store.list_builds(project_id).await.map_err(internal)?;
        Ok(rows.into_iter().map(|r| r.build).collect())
    }

    /// Deploys a build to a live stage as its new release, with a snapshot of the stage's
    /// configuration. The new release replaces the running one.
    pub async fn deploy(&self, project_id: &str, stage_id: &str, build_number: i64) -> Result<Release, Error> {
        self.get_stage(project_id, stage_id).await?;
        let build = self
            .store
            .get_build(project_id, build_number)
            .await
            .map_err(internal)?
            .ok_or_else(|| Error::not_found(format!("Project '{project_id}' has no build {build_number}.")))?;
        // The snapshot keeps secret values sealed, as the stage's configuration does.
        let config: BTreeMap<String, String> = self
            .store
            .list_config(project_id, stage_id)
            .await
            .map_err(internal)?
            .into_iter()
            .map(|v| (v.key, v.value))
            .collect();
        let now = self.clock.now();
        let number =
            retry_on_conflict(|| self.store.insert_release(project_id, stage_id, &build.uid, &config, now)).await?;
        let Some(number) = number else {
            return Err(self.get_stage(project_id, stage_id).await.err().unwrap_or_else(Error::internal));
        };
        // This deploy's release (a concurrent one may already have recorded a newer one).
        let release = self
            .releases(project_id, stage_id)
            .await?
            .into_iter()
            .find(|r| r.number == number)
            .ok_or_else(Error::internal)?;
        let version = build.build.version.as_deref().map(|v| format!(" ({v})")).unwrap_or_default();
        // A suspended stage keeps its new release for when it is resumed.
        let stage = self.get_stage(project_id, stage_id).await?;
        let when = if stage.status == StageStatus::Running { "" } else { "; it runs when the stage is resumed" };
        let message = format!("Release {} deployed: build {build_number}{version}{when}.", release.number);
        self.record(project_id, stage_id, StageEvent::new(now, EventKind::Deployed, message)).await;
        if stage.status == StageStatus::Running {
            // The previous release stops gracefully first, which may take the grace period:
            // answer after a moment and let it go on in the background (the stage page shows
            // the old components stopping, then the new ones starting).
            let services = self.clone();
            let number = release.number;
            let task = tokio::spawn(async move {
                let started = services.start_current(&stage).await;
                if let Err(e) = &started {
                    let message = format!("Release {number} could not be started: {}", e.message);
                    let event = StageEvent::new(services.clock.now(), EventKind::Crashed, message);
                    services.record(&stage.project_id, &stage.id, event).await;
                }
                started
            });
            if let Ok(Ok(Err(e))) = tokio::time::timeout(ANSWER_WITHIN, task).await {
                return Err(e);
            }
        }
        Ok(release)
    }

    /// Deploys the build of an earlier release again (a rollback), with today's configuration.
    pub async fn redeploy(&self, project_id: &str, stage_id: &str, release_number: i64) -> Result<Release, Error> {
        let releases = self.releases(project_id, stage_id).await?;
        let earlier = releases
            .iter()
            .find(|r| r.number == release_number)
            .ok_or_else(|| Error::not_found(format!("Stage '{stage_id}' has no release {release_number}.")))?;
        self.deploy(project_id, stage_id, earlier.build_number).await
    }

    /// A stage's releases, newest (the running one) first.
    pub async fn releases(&self, project_id: &str, stage_id: &str) -> Result<Vec<Release>, Error> {
        self.any_stage(project_id, stage_id).await?;
        let rows = self.store.list_releases(project_id, stage_id).await.map_err(internal)?;
        Ok(rows
            .into_iter()
            .map(|r| Release {
                project_id: project_id.to_owned(),
                stage_id: stage_id.to_owned(),
                number: r.number,
                build_number: r.build.number,
                build_version: r.build.version,
                config_keys: r.config.into_keys().collect(),
                created_at: r.created_at,
            })
            .collect())
    }

    // ----- configuration --------------------------------------------------------------------

    /// The configuration of a live stage; secret values are masked (`None`).
    pub async fn config(&self, project_id: &str, stage_id: &str) -> Result<Vec<ConfigEntry>, Error> {
        self.get_stage(project_id, stage_id).await?;
        let values = self.store.list_config(project_id, stage_id).await.map_err(internal)?;
        Ok(values.into_iter().map(masked).collect())
    }

    /// The configuration of a stage with secret values, for the runtime only: never send
    /// this to a browser or a client.
    pub async fn config_values(&self, project_id: &str, stage_id: &str) -> Result<BTreeMap<String, String>, Error> {
        let values = self.store.list_config(project_id, stage_id).await.map_err(internal)?;
        values.into_iter().map(|v| Ok((v.key, self.open(&v.value)?))).collect()
    }

    /// Sets one setting of a live stage. It applies with the stage's next release.
    pub async fn set_config(
        &self,
        project_id: &str,
        stage_id: &str,
        key: &str,
        value: &str,
        secret: bool,
    ) -> Result<ConfigEntry, Error> {
        let key = key.trim();
        validate_config(key, value)?;
        self.get_stage(project_id, stage_id).await?;
        // A secret's value is sealed before it reaches the database.
        let stored = if secret { self.seal(value) } else { value.to_owned() };
        let entry = ConfigValue { key: key.to_owned(), value: stored, secret, updated_at: self.clock.now() };
        if !self.store.set_config(project_id, stage_id, &entry).await.map_err(internal)? {
            return Err(self.get_stage(project_id, stage_id).await.err().unwrap_or_else(Error::internal));
        }
        let what = if secret { "Secret" } else { "Setting" };
        let message = format!("{what} {key} set; it applies with the next release.");
        self.record(project_id, stage_id, StageEvent::new(entry.updated_at, EventKind::ConfigChanged, message)).await;
        Ok(masked(entry))
    }

    /// Removes one setting of a live stage.
    pub async fn unset_config(&self, project_id: &str, stage_id: &str, key: &str) -> Result<(), Error> {
        self.get_stage(project_id, stage_id).await?;
        if !self.store.unset_config(project_id, stage_id, key.trim()).await.map_err(internal)? {
            return Err(Error::not_found(format!("Stage '{stage_id}' has no setting '{}'.", key.trim())));
        }
        let message = format!("Setting {} removed; this applies with the next release.", key.trim());
        self.record(project_id, stage_id, StageEvent::new(self.clock.now(), EventKind::ConfigChanged, message)).await;
        Ok(())
    }

    // ----- administration -------------------------------------------------------------------

    /// The retention policy in force (the seed's defaults until an administrator changes it).
    pub async fn retention(&self) -> Result<RetentionPolicy, Error> {
        let mut policy = RetentionPolicy::default();
        for (t, key) in RETENTION_KEYS {
            let stored = self.store.get_setting(key).await.map_err(internal)?;
            let days = match stored.as_deref().map(str::parse::<u32>) {
                None => continue,
                Some(Ok(d)) => d,
                Some(Err(_)) => {
                    tracing::warn!(key, ?stored, "ignoring unreadable retention setting");
                    continue;
                }
            };
            match t {
                StageType::Dev => policy.dev_days = days,
                StageType::Qa => policy.qa_days = days,
                StageType::Prod => policy.prod_days = days,
            }
        }
        Ok(policy)
    }

    /// Sets the retention per type from an administrator's input. Applies to stages archived
    /// from now on; already archived stages keep their deletion date.
    pub async fn set_retention(&self, dev: &str, qa: &str, prod: &str) -> Result<RetentionPolicy, Error> {
        let policy = RetentionPolicy::parse(dev, qa, prod)?;
        let pairs: Vec<(&str, String)> =
            RETENTION_KEYS.iter().map(|(t, key)| (*key, policy.days(*t).to_string())).collect();
        self.store.put_settings(&pairs).await.map_err(internal)?;
        Ok(policy)
    }

    // ----- helpers --------------------------------------------------------------------------

    async fn any_stage(&self, project_id: &str, stage_id: &str) -> Result<Stage, Error> {
        match self.store.get_stage(project_id, stage_id).await.map_err(internal)? {
            Some(stage) => Ok(stage),
            None => {
                self.get_project(project_id).await?;
                Err(Error::not_found(format!("Project '{project_id}' has no stage '{stage_id}'.")))
            }
        }
    }

    /// The "taken" error for `id`, saying whether an archived stage holds it, with a free
    /// suggestion.
    async fn stage_id_taken(&self, project_id: &str, id: &str) -> Result<Error, Error> {
        let taken = self.store.stage_ids_like(project_id, suggestion_stem(id).0).await.map_err(internal)?;
        let mut err = Error::id_taken(IdKind::Stage, id, first_free(id, taken));
        if let Some(Stage { purge_due_at: Some(due), .. }) =
            self.store.get_stage(project_id, id).await.map_err(internal)?
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

/// Runs a numbered insert again when a concurrent one took the same number.
async fn retry_on_conflict<T, F, Fut>(mut insert: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    for _ in 0..20 {
        match insert().await {
            Err(StoreError::Conflict) => continue,
            other => return other.map_err(internal),
        }
    }
    Err(internal(StoreError::Conflict))
}

/// The grace period a stage's components get between SIGTERM and SIGKILL.
fn grace(stage: &Stage) -> Duration {
    Duration::from_secs(u64::from(stage.grace_secs))
}

fn capitalized(s: &str) -> String {
    let mut chars = s.chars();
    chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

/// What leaves the server of a setting: a secret's value stays behind.
fn masked(v: ConfigValue) -> ConfigEntry {
    ConfigEntry { value: (!v.secret).then_some(v.value), key: v.key, secret: v.secret, updated_at: v.updated_at }
}

/// The ID the user typed (trimmed, validated) or, when blank, the one derived from `name`.
fn chosen_id(kind: IdKind, name: &str, id: Option<&str>) -> Result<String, Error> {
    let id = match id.map(str::trim) {
        Some(typed) if !typed.is_empty() => typed.to_owned(),
        _ => derive_id(kind, name),
    };
    validate_id(kind, &id)?;
    Ok(id)
}

/// The first free numbered alternative to the taken `id` (`id-2`, `id-3`, …; for a numbered
/// `id` the numbering continues), given every taken ID that shares its stem.
fn first_free(id: &str, taken: Vec<String>) -> String {
    let taken: HashSet<String> = taken.into_iter().collect();
    let (stem, start) = suggestion_stem(id);
    (start..)
        .map(|n| numbered_id(stem, n))
        .find(|candidate| !taken.contains(candidate))
        .expect("an unbounded range always has a free number")
}

/// How long the share-link proxy may serve a stage it read without reading it again.
pub const PROXY_CACHE_TTL: Duration = Duration::from_secs(1);
/// More remembered stages than this and the cache starts over.
const PROXY_CACHE_MAX: usize = 10_000;

/// Live stages the proxy read, each with when and in which generation. A change bumps the
/// generation, which makes every entry stale, and one read before a change (but stored after
/// it) is never served.
#[derive(Default)]
struct ProxyCache {
    generation: std::sync::atomic::AtomicU64,
    entries: std::sync::Mutex<std::collections::HashMap<(String, String), (std::time::Instant, u64, Stage)>>,
}

impl ProxyCache {
    fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn get(&self, key: &(String, String)) -> Option<Stage> {
        let entries = self.entries.lock().expect("proxy cache");
        let (at, generation, stage) = entries.get(key)?;
        (*generation == self.generation() && at.elapsed() < PROXY_CACHE_TTL).then(|| stage.clone())
    }

    fn put(&self, key: (String, String), stage: Stage, read_in: u64) {
        let mut entries = self.entries.lock().expect("proxy cache");
        if entries.len() >= PROXY_CACHE_MAX {
            entries.clear();
        }
        entries.insert(key, (std::time::Instant::now(), read_in, stage));
    }

    fn forget_all(&self) {
        self.generation.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.entries.lock().expect("proxy cache").clear();
    }
}
