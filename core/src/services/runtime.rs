//! What runs: share links, components, logs, and starting / stopping a stage's release.

use super::{grace, internal, Acting, Services, ANSWER_WITHIN, TURN_WAIT};
use crate::secrets::Place;
use crate::store::StoreError;
use crate::{StageKey, StageSpec, StopMode, StopReport};
use pergola_domain::access::Action;
use pergola_domain::runtime::{ComponentStatus, LogLine};
use pergola_domain::share::ShareLink;
use pergola_domain::{parse_manifest, ComponentKind, Error, EventKind, Stage, StageEvent, StageStatus};

impl Acting {
    /// A live stage and what its current release gives the runtime, each secret value replaced
    /// by `redacted` (none is opened): for people to review what a runtime applies.
    pub async fn current_spec(
        &self,
        project_id: &str,
        stage_id: &str,
        redacted: &str,
    ) -> Result<(Stage, StageSpec), Error> {
        let stage = self.allow_stage(Action::ReadStage, project_id, stage_id).await?;
        let stage = self.live(stage)?;
        let rows = self.store.list_releases(project_id, stage_id).await.map_err(internal("list the releases"))?;
        let Some(current) = rows.into_iter().next() else {
            return Err(Error::invalid_state(format!(
                "Stage '{stage_id}' has no release yet: deploy a build to it first."
            )));
        };
        let secret = self
            .store
            .list_config(project_id, stage_id)
            .await
            .map_err(internal("list the configuration"))?
            .into_iter()
            .filter(|entry| entry.secret)
            .map(|entry| entry.key)
            .collect();
        let spec = self.spec_of(&stage, current, Some((redacted, &secret))).await?;
        Ok((stage, spec))
    }

    /// The share links of a stage's service components.
    pub async fn share_links(&self, project_id: &str, stage_id: &str) -> Result<Vec<ShareLink>, Error> {
        let components = self.components(project_id, stage_id).await?;
        Ok(self.links_of(project_id, stage_id, &components))
    }

    /// What runs of a live stage, as the runtime sees it.
    pub async fn components(&self, project_id: &str, stage_id: &str) -> Result<Vec<ComponentStatus>, Error> {
        self.get_stage(project_id, stage_id).await?;
        Ok(self.runtime.status(&StageKey::new(project_id, stage_id)))
    }

    /// The last output lines of a component of a live stage.
    pub async fn logs(&self, project_id: &str, stage_id: &str, component: &str) -> Result<Vec<LogLine>, Error> {
        self.get_stage(project_id, stage_id).await?;
        Ok(self.runtime.logs(&StageKey::new(project_id, stage_id), component))
    }
}

impl Services {
    /// The share links of the service components among `components`.
    pub(super) fn links_of(&self, project_id: &str, stage_id: &str, components: &[ComponentStatus]) -> Vec<ShareLink> {
        components
            .iter()
            .filter(|c| c.kind == ComponentKind::Service)
            .map(|c| ShareLink { url: self.share.url(&c.name, stage_id, project_id), component: c.name.clone() })
            .collect()
    }

    /// A live stage and what runs of it, for the share-link proxy (which decides itself who
    /// may see it): the stage is remembered for up to [`super::PROXY_CACHE_TTL`].
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
                let stage = self.live_stage(project_id, stage_id).await?;
                self.proxy_cache.put(key, stage.clone(), generation);
                stage
            }
        };
        let components = self.runtime.status(&StageKey::new(project_id, stage_id));
        Ok((stage, components))
    }

    /// Where the share-link proxy reaches a running service of a stage (`host:port`).
    pub fn upstream(&self, project_id: &str, stage_id: &str, component: &ComponentStatus) -> Option<String> {
        self.runtime.upstream(&StageKey::new(project_id, stage_id), component)
    }

    /// Starts the current release of every running live stage (the server calls this at
    /// start-up: what should run, runs again). A stage that cannot start is logged and counted,
    /// and the next one is tried; only failing to list the projects or a project's stages ends
    /// it early.
    pub async fn reconcile(&self) -> Result<ReconcileReport, Error> {
        let mut report = ReconcileReport::default();
        for project in self.store.list_projects().await.map_err(internal("list the projects to reconcile"))? {
            for stage in self.store.list_stages(&project.id).await.map_err(internal("list the stages to reconcile"))? {
                // A runtime the servers share (a cluster) went on without this server: what
                // should be stopped is stopped again (the server may have died before asking),
                // and what runs is applied again without restarting anything.
                // (By the server doing the background work: one server asks, not each.)
                let shared = self.runtime_shared();
                if shared && (stage.is_archived() || stage.status != StageStatus::Running) {
                    // Another server may be suspending it right now (its pods still stopping):
                    // the others leave it to that server's suspend, or to the background
                    // server's `settle_left_suspends`.
                    if !self.runs_background_work() {
                        continue;
                    }
                    match self.stop_again(&stage).await {
                        // Stopped and waited for: a suspending stage settles with what its
                        // stop reported (or starts, when a resume is pending).
                        Some(stopped) if stopped.refused.is_none() => {
                            let started = stage.status == StageStatus::Suspending
                                && self.settle_suspend(&stage.project_id, &stage.id, &stopped).await;
                            report.started += usize::from(started);
                        }
                        // The cluster does not take the request now: it is asked again in the
                        // background, and a suspend settles once it was.
                        Some(refused) => {
                            let services = self.clone();
                            tokio::spawn(async move {
                                let stopped = services.ask_again_while_refused(&stage, refused).await;
                                if stage.status == StageStatus::Suspending {
                                    services.settle_suspend(&stage.project_id, &stage.id, &stopped).await;
                                }
                            });
                        }
                        // It should run now (resumed or restored meanwhile), or could not be
                        // read: left as it is (a stage left suspending is settled later).
                        None => {}
                    }
                    continue;
                }
                if stage.status == StageStatus::Suspending {
                    // The server stopped while the stage was being suspended: nothing of it
                    // runs any more. It settles as suspended, or starts if a resume is pending.
                    if self.settle_suspend(&stage.project_id, &stage.id, &Default::default()).await {
                        report.started += 1;
                    }
                    continue;
                }
                if stage.is_archived() || stage.status != StageStatus::Running {
                    continue;
                }
                match self.start_current(&stage).await {
                    Ok(true) => {
                        report.started += 1;
                        if !shared {
                            let message = "Started again: the server restarted.";
                            self.record(
                                &stage.project_id,
                                &stage.id,
                                StageEvent::new(self.clock.now(), EventKind::Started, message),
                            )
                            .await;
                        }
                    }
                    Ok(false) => {}
                    Err(e) => {
                        report.failed += 1;
                        tracing::error!(
                            project = stage.project_id,
                            stage = stage.id,
                            error = %e,
                            "reconcile: the stage could not be started again; going on with the others"
                        );
                    }
                }
            }
        }
        Ok(report)
    }

    /// With a runtime the servers share (a cluster), settles each stage left suspending for
    /// longer than a stop takes — its grace period and [`LEFT_SUSPENDING_AFTER`]: the server
    /// that suspended it stopped or died before the stop ended (a rolling upgrade), timed from
    /// its last Suspending event (a rename does not postpone it). Each is
    /// stopped again (in its turn, while it still should not run) and, once its pods are gone,
    /// settled as suspended — or started, when a resume is pending. Each in a task of its own
    /// (its wait can last its grace period), at most one per stage on this server; a stop the
    /// runtime refuses is tried again at the next call. Run with the background work. Returns
    /// how many stages it began to settle.
    pub async fn settle_left_suspends(&self) -> Result<usize, Error> {
        if !self.runtime_shared() {
            return Ok(0);
        }
        let now = self.clock.now();
        let mut begun = 0;
        for project in self.store.list_projects().await.map_err(internal("list the projects"))? {
            for stage in self.store.list_stages(&project.id).await.map_err(internal("list the stages"))? {
                let takes = chrono::Duration::seconds(i64::from(stage.grace_secs)) + LEFT_SUSPENDING_AFTER;
                if stage.status != StageStatus::Suspending {
                    continue;
                }
                if now - stage.updated_at < takes {
                    // Changed since (renamed, a resume asked for while it stops): the suspend
                    // began at its Suspending event — if that is the newest change of state
                    // on its timeline (a suspend whose event is not written yet is no older
                    // for the last suspend's).
                    let events = self.store.list_events(&stage.project_id, &stage.id, super::EVENTS_SHOWN).await;
                    let began = events.ok().and_then(|events| {
                        let newest = events.into_iter().find(|e| {
                            matches!(
                                e.kind,
                                EventKind::Suspending
                                    | EventKind::Suspended
                                    | EventKind::Resumed
                                    | EventKind::Deployed
                                    | EventKind::Archived
                                    | EventKind::Restored
                                    | EventKind::Created
                            )
                        })?;
                        (newest.kind == EventKind::Suspending).then_some(newest.at)
                    });
                    if began.is_none_or(|at| now - at < takes) {
                        continue;
                    }
                }
                let key = StageKey::new(&stage.project_id, &stage.id);
                let Some(settling) = Settling::begin(&self.settling, key) else { continue };
                begun += 1;
                let services = self.clone();
                tokio::spawn(async move {
                    let _settling = settling;
                    tracing::warn!(project = stage.project_id, stage = stage.id, "a stage left suspending is settled");
                    // Refused: it stays suspending, and the next call tries again.
                    if let Some(report) = services.stop_again(&stage).await {
                        services.settle_suspend(&stage.project_id, &stage.id, &report).await;
                    }
                });
            }
        }
        Ok(begun)
    }

    /// Whether stages run on a runtime the servers share (a cluster), not this server's own.
    fn runtime_shared(&self) -> bool {
        self.runtime.shared() && self.runtime.runs_stages()
    }

    /// Stops what runs of every stage, all at once, each within its own grace period (the
    /// server is shutting down): the whole takes about the longest grace, not their sum. The
    /// stages keep their status, so [`Self::reconcile`] starts them again at the next start.
    /// Stages the store cannot list are left to the runtime's own last sweep. Returns how many
    /// stages had something stopped.
    pub async fn stop_all_stages(&self) -> usize {
        if !self.runtime.runs_stages() {
            return 0;
        }
        let mut stages = Vec::new();
        match self.store.list_projects().await {
            Ok(projects) => {
                for project in projects {
                    match self.store.list_stages(&project.id).await {
                        Ok(found) => stages.extend(found),
                        Err(e) => {
                            let _ = internal("list the stages to stop at shutdown")(e);
                        }
                    }
                }
            }
            Err(e) => {
                let _ = internal("list the projects to stop at shutdown")(e);
            }
        }
        let mut stopping = tokio::task::JoinSet::new();
        for stage in stages {
            let services = self.clone();
            stopping.spawn(async move {
                let report = services.stop(&stage, Some(StopMode::Halt)).await.unwrap_or_default();
                if !report.killed.is_empty() {
                    tracing::warn!(
                        project = stage.project_id,
                        stage = stage.id,
                        killed = ?report.killed,
                        "killed after the grace period at shutdown"
                    );
                }
                !(report.terminated.is_empty() && report.killed.is_empty())
            });
        }
        let mut stopped = 0;
        while let Some(done) = stopping.join_next().await {
            stopped += usize::from(done.unwrap_or(false));
        }
        stopped
    }

    /// Starts the stage's current release, if it has one and there is a runtime.
    pub(super) async fn start_current(&self, stage: &Stage) -> Result<bool, Error> {
        if !self.runtime.runs_stages() {
            return Ok(false);
        }
        // One at a time per stage — across the servers of the database when they share the
        // runtime — and with what is current once it is this one's turn: of two deploys
        // racing, the newest release is the one left running.
        let lock = self.stage_lock(&stage.project_id, &stage.id);
        let _turn = lock.lock().await;
        let shared = match self.start_turn(&stage.project_id, &stage.id).await {
            Ok(shared) => shared,
            Err(e) => {
                // Whoever asked may be gone by now (a deploy answers before): the timeline
                // says why the current release does not run.
                let message = format!("The current release could not be started: {}", e.message);
                self.record(
                    &stage.project_id,
                    &stage.id,
                    StageEvent::new(self.clock.now(), EventKind::Crashed, message),
                )
                .await;
                return Err(e);
            }
        };
        let started = self.start_in_turn(stage).await;
        SharedTurn::release(shared).await;
        started
    }

    /// [`Services::start_current`], once it is the stage's turn.
    async fn start_in_turn(&self, stage: &Stage) -> Result<bool, Error> {
        match self
            .store
            .get_stage(&stage.project_id, &stage.id)
            .await
            .map_err(internal("read the stage before starting it"))?
        {
            Some(now) if !now.is_archived() && now.status == StageStatus::Running => {}
            _ => return Ok(false),
        }
        let rows = self
            .store
            .list_releases(&stage.project_id, &stage.id)
            .await
            .map_err(internal("list the releases to start"))?;
        let Some(current) = rows.into_iter().next() else { return Ok(false) };
        let spec = self.spec_of(stage, current, None).await?;
        let number = spec.release;
        if let Err(e) = self.runtime.start(spec, grace(stage)).await {
            tracing::error!(project = stage.project_id, stage = stage.id, error = %e, "could not start the release");
            // Whoever asked (a deploy, a resume, a restore, the server's restart), the stage's
            // timeline says why nothing runs.
            let message = format!("Release {number} could not be started: {e}");
            self.record(&stage.project_id, &stage.id, StageEvent::new(self.clock.now(), EventKind::Crashed, message))
                .await;
            return Err(Error::invalid_state(format!("The release could not be started: {e}")));
        }
        Ok(true)
    }

    /// What the runtime is given to run `release` on `stage`: its configuration opened — or,
    /// with `redact`, each secret value (sealed in the snapshot, or a secret setting now)
    /// replaced by it and nothing opened.
    async fn spec_of(
        &self,
        stage: &Stage,
        release: crate::store::ReleaseRow,
        redact: Option<(&str, &std::collections::HashSet<String>)>,
    ) -> Result<StageSpec, Error> {
        let manifest = parse_manifest(&release.build.manifest)?;
        let config = release
            .config
            .iter()
            .map(|(k, v)| {
                if let Some((redacted, secret)) = redact {
                    if secret.contains(k) || (crate::secrets::is_sealed(v) && !v.starts_with(super::SNAPSHOT_PLAIN)) {
                        return Ok((k.clone(), redacted.to_owned()));
                    }
                }
                let place = Place { project: &stage.project_id, stage: &stage.id, key: k };
                Ok((k.clone(), self.open_snapshot(v, place)?))
            })
            .collect::<Result<_, Error>>()?;
        Ok(StageSpec {
            key: StageKey::new(&stage.project_id, &stage.id),
            release: release.number,
            components: manifest.components,
            config,
            workdir: release.build.workdir.into(),
            limits: self.limits().await?.of(stage.stage_type),
            stage_type: stage.stage_type,
        })
    }

    /// Stops a stage's components. With `mode`, as asked (the server shutting down halts
    /// every stage, whatever its state); without, as its state calls for, read again in its
    /// turn: a deleted stage is halted (its started jobs and cron runs stop too), a suspending
    /// one suspended (they run on) — and nothing is stopped when it should run by then (a
    /// restore or a resume got the turn first). The turn is held while the runtime asks the
    /// components to stop, not while it waits for them to be gone. A request the runtime
    /// could not make — or a stage that could not be read — is tried again
    /// ([`Services::ask_again_while_refused`]). `None`: nothing to stop.
    pub(super) async fn stop(&self, stage: &Stage, mode: Option<StopMode>) -> Option<StopReport> {
        let report = match self.ask_stop_in_turn(stage, mode, None).await {
            Asked::Stopping(wait) => wait.await,
            Asked::NotNow => return None,
            Asked::Unreadable => {
                StopReport { refused: Some("the stage could not be read".into()), ..Default::default() }
            }
        };
        Some(self.ask_again_while_refused(stage, report).await)
    }

    /// Stops a stage that should not run once more (reconcile with a shared runtime) — if,
    /// read again in its turn, it still should not: another server may have resumed or
    /// restored it since the list was read. `None` when it should run (or cannot be read).
    async fn stop_again(&self, listed: &Stage) -> Option<StopReport> {
        match self.ask_stop_in_turn(listed, None, None).await {
            Asked::Stopping(wait) => Some(wait.await),
            Asked::NotNow | Asked::Unreadable => None,
        }
    }

    /// In the stage's turn, asks the runtime to stop its components: with `mode`, as asked;
    /// without, read again, with the mode its state calls for (a halt when it is archived, a
    /// suspend when it is not running) or not at all when it should run — or, with
    /// `as_it_was` (its status and archival), when that changed since (someone else settled,
    /// resumed, restored or deleted it, and stops or starts it themselves).
    async fn ask_stop_in_turn(
        &self,
        stage: &Stage,
        mode: Option<StopMode>,
        as_it_was: Option<(StageStatus, bool)>,
    ) -> Asked {
        let lock = self.stage_lock(&stage.project_id, &stage.id);
        let _turn = lock.lock().await;
        let shared = self.stop_turn(&stage.project_id, &stage.id).await;
        let asked = match mode {
            Some(mode) => Ok(Some((mode, grace(stage)))),
            None => match self.store.get_stage(&stage.project_id, &stage.id).await {
                Ok(Some(now)) if as_it_was.is_some_and(|was| was != (now.status, now.is_archived())) => Ok(None),
                Ok(Some(now)) if now.is_archived() => Ok(Some((StopMode::Halt, grace(&now)))),
                Ok(Some(now)) if now.status != StageStatus::Running => Ok(Some((StopMode::Suspend, grace(&now)))),
                Ok(_) => Ok(None),
                Err(e) => Err(internal("read the stage before stopping it")(e)),
            },
        };
        let asked = match asked {
            Ok(Some((mode, grace))) => {
                let key = StageKey::new(&stage.project_id, &stage.id);
                Asked::Stopping(self.runtime.ask_stop(&key, grace, mode).await)
            }
            Ok(None) => Asked::NotNow,
            Err(_) => Asked::Unreadable,
        };
        SharedTurn::release(shared).await;
        asked
    }

    /// While the runtime could not ask a stage's components to stop (a cluster that did not
    /// take the request), asks again — after 1, 2, 4 … and then every [`ASK_AGAIN_AT_MOST`],
    /// each time in the stage's turn — as long as the stage, read again, should not run and
    /// its status and archival have not changed since (else whoever changed them — settled it
    /// through another server, resumed, restored, deleted it — stops or starts it: this server,
    /// cut off from the cluster, does not ask for ever; the report then still says `refused`).
    /// The first refusal goes on the stage's timeline (why, only in the log): a stage is not
    /// called suspended or deleted while what it runs was never asked to stop. One stage is
    /// asked again by one loop at a time on this server: a newer stop's (a delete's after a
    /// suspend's) takes over from an older one, which waits meanwhile and asks again should
    /// the newer one end first (the state it was for changed back) — and the timeline, told
    /// by the older one, is not told again.
    pub(super) async fn ask_again_while_refused(&self, stage: &Stage, mut report: StopReport) -> StopReport {
        if report.refused.is_none() {
            return report;
        }
        let (ticket, took_over) = AskAgainTicket::take(&self.asking_again, StageKey::new(&stage.project_id, &stage.id));
        let mut delay = ASK_AGAIN;
        let mut told = took_over;
        // The state the stop began with, once it could be read (the caller's copy may be older:
        // a delete's predates its archiving) — read now, before a newer stop can change it.
        let mut seen = self.status_and_archival(stage).await.ok().flatten();
        let mut waiting = false;
        while let Some(why) = &report.refused {
            if !waiting {
                tracing::warn!(
                    project = stage.project_id,
                    stage = stage.id,
                    error = why,
                    again_in = ?delay,
                    "the runtime could not ask the stage's components to stop"
                );
            }
            if !told {
                told = true;
                let message = "The components could not be asked to stop: the runtime did not take the request. \
                               Asking again until it does.";
                self.record(
                    &stage.project_id,
                    &stage.id,
                    StageEvent::new(self.clock.now(), EventKind::StopFailed, message),
                )
                .await;
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(ASK_AGAIN_AT_MOST);
            waiting = !ticket.newest();
            if waiting {
                // A newer stop of the stage asks meanwhile: this one only waits (the stage's
                // state is not read, nothing is asked, the timeline is not told again).
                continue;
            }
            if seen.is_none() {
                match self.status_and_archival(stage).await {
                    Ok(Some(now)) => seen = Some(now),
                    Ok(None) => break,
                    Err(e) => {
                        let _ = internal("read the stage to stop it again")(e);
                    }
                }
            }
            match self.ask_stop_in_turn(stage, None, seen).await {
                Asked::Stopping(wait) => report = wait.await,
                // The database did not answer: asked again after the next pause.
                Asked::Unreadable => {}
                // Still `refused`: this server stopped nothing (see above).
                Asked::NotNow => break,
            }
        }
        report
    }

    /// The stage's status and whether it is archived, as the database has them now (`None`:
    /// it is gone).
    async fn status_and_archival(&self, stage: &Stage) -> Result<Option<(StageStatus, bool)>, StoreError> {
        let now = self.store.get_stage(&stage.project_id, &stage.id).await?;
        Ok(now.map(|now| (now.status, now.is_archived())))
    }

    /// The stage's turn across the servers of the database, when they share the runtime (a
    /// cluster); `None` with a runtime of this server alone. At most [`SHARED_TURNS`] are held
    /// at once by a server (each holds a database connection). Taken by a task of its own: a
    /// request that goes away meanwhile leaves no more than that task waiting (with its
    /// connection and permit, for [`TURN_WAIT`] at most), and the turn it then gets is given
    /// back at once. [`StoreError::Busy`] when another holder kept it for [`TURN_WAIT`].
    async fn take_turn(&self, project_id: &str, stage_id: &str) -> Result<Option<SharedTurn>, StoreError> {
        // SQLite: one server, no turn to take across servers.
        if !self.runtime_shared() || self.store.backend() == "sqlite" {
            return Ok(None);
        }
        let (turns, store) = (self.turns.clone(), self.store.clone());
        let (project_id, stage_id) = (project_id.to_owned(), stage_id.to_owned());
        let taking = tokio::spawn(async move {
            // Closed only if the services are gone: no turn to wait for then.
            let Ok(permit) = turns.acquire_owned().await else { return Ok(None) };
            let turn = store.stage_turn(&project_id, &stage_id, TURN_WAIT).await?;
            Ok(Some(SharedTurn { turn, _permit: permit }))
        });
        match taking.await {
            Ok(taken) => taken,
            Err(e) => {
                tracing::error!(error = %e, "taking a stage's turn");
                Ok(None)
            }
        }
    }

    /// [`Services::take_turn`] for a start: one that waited [`TURN_WAIT`] in vain is given
    /// up, saying the stage is busy.
    async fn start_turn(&self, project_id: &str, stage_id: &str) -> Result<Option<SharedTurn>, Error> {
        match self.take_turn(project_id, stage_id).await {
            Ok(taken) => Ok(taken),
            Err(StoreError::Busy) => Err(Error::invalid_state(format!(
                "Stage '{stage_id}' is busy: what runs on it has been changing for {} s. Deploy again in a moment.",
                TURN_WAIT.as_secs()
            ))),
            Err(e) => Err(internal("wait for the stage's turn")(e)),
        }
    }

    /// [`Services::take_turn`] for a stop, which is never refused: it waits as long as the
    /// turn is held (saying so every [`TURN_WAIT`]), and goes on without it when the database
    /// cannot give it.
    async fn stop_turn(&self, project_id: &str, stage_id: &str) -> Option<SharedTurn> {
        loop {
            match self.take_turn(project_id, stage_id).await {
                Ok(taken) => return taken,
                Err(StoreError::Busy) => {
                    tracing::warn!(project_id, stage_id, "a stop still waits for the stage's turn");
                }
                Err(e) => {
                    tracing::error!(project_id, stage_id, error = %e, "stopping without the stage's turn");
                    return None;
                }
            }
        }
    }

    /// Stops a stage's components in the background, as its state calls for when it is its
    /// turn ([`Services::stop`]); answers once they stopped or after [`ANSWER_WITHIN`],
    /// whichever comes first. `then` runs when they have stopped (not when there was nothing
    /// to stop: a restore or resume got the turn first).
    pub(super) async fn stop_then<F, Fut>(&self, stage: Stage, then: F)
    where
        F: FnOnce(Services, StopReport) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let services = self.clone();
        let task = tokio::spawn(async move {
            if let Some(report) = services.stop(&stage, None).await {
                then(services, report).await;
            }
        });
        let _ = tokio::time::timeout(ANSWER_WITHIN, task).await;
    }

    /// A suspending stage whose components have stopped becomes suspended, or, if a resume
    /// was requested meanwhile (and it is still live), running with its last release started.
    /// True when it so started.
    pub(super) async fn settle_suspend(&self, project_id: &str, stage_id: &str, stopped: &StopReport) -> bool {
        if stopped.refused.is_some() {
            // Nothing was stopped: it stays suspending (whoever changed it since, or the
            // server doing the background work, settles it).
            return false;
        }
        let (now, settled) = self.settle_stopped(project_id, stage_id).await;
        self.proxy_cache.forget_all();
        let mut message =
            if stopped.left.is_empty() { "every component has stopped" } else { "every component was asked to stop" }
                .to_owned();
        if !stopped.terminated.is_empty() {
            message += &format!("; exited after SIGTERM: {}", stopped.terminated.join(", "));
        }
        if !stopped.killed.is_empty() {
            message += &format!("; killed after the grace period: {}", stopped.killed.join(", "));
        }
        if !stopped.left.is_empty() {
            message += &format!("; still stopping after the grace period: {}", stopped.left.join(", "));
        }
        match settled {
            Ok(Some(StageStatus::Running)) => {
                let message = format!("Resumed: {message}; started again with its last release.");
                self.record(project_id, stage_id, StageEvent::new(now, EventKind::Started, message)).await;
                let Ok(stage) = self.live_stage(project_id, stage_id).await else { return false };
                match self.start_current(&stage).await {
                    Ok(started) => started,
                    Err(e) => {
                        tracing::error!(project_id, stage_id, error = %e, "could not start a resumed stage");
                        false
                    }
                }
            }
            Ok(Some(_)) => {
                let message = format!("Suspended: {message}.");
                self.record(project_id, stage_id, StageEvent::new(now, EventKind::Suspended, message)).await;
                false
            }
            Ok(None) => false,
            Err(e) => {
                internal("settle a suspend")(e);
                false
            }
        }
    }
}

impl Services {
    /// [`crate::Store::settle_stopped`] now, asked again while the database fails — after 1,
    /// 2, 4 … and then every [`ASK_AGAIN_AT_MOST`] s, [`SETTLE_TRIES`] times in all — since a
    /// stage whose components have stopped would otherwise stay suspending until the server
    /// restarts (with a runtime of one server, nothing else settles it). The time it settled.
    async fn settle_stopped(
        &self,
        project_id: &str,
        stage_id: &str,
    ) -> (chrono::DateTime<chrono::Utc>, Result<Option<StageStatus>, StoreError>) {
        let mut delay = ASK_AGAIN;
        let mut tries = 1;
        loop {
            let now = self.clock.now();
            match self.store.settle_stopped(project_id, stage_id, now).await {
                Err(e) if tries < SETTLE_TRIES => {
                    tracing::warn!(project_id, stage_id, error = %e, again_in = ?delay, "settling a stop failed");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(ASK_AGAIN_AT_MOST);
                    tries += 1;
                }
                settled => return (now, settled),
            }
        }
    }
}

/// How often a stop's settling is tried while the database fails (about ten minutes in all).
const SETTLE_TRIES: u32 = 24;

/// A stage [`Services::settle_left_suspends`] is settling, in its set until dropped (the
/// task ended, or panicked).
struct Settling {
    set: std::sync::Arc<std::sync::Mutex<std::collections::HashSet<StageKey>>>,
    key: StageKey,
}

impl Settling {
    /// `None` when the stage is being settled already.
    fn begin(
        set: &std::sync::Arc<std::sync::Mutex<std::collections::HashSet<StageKey>>>,
        key: StageKey,
    ) -> Option<Self> {
        let mut settling = set.lock().unwrap_or_else(|p| p.into_inner());
        settling.insert(key.clone()).then(|| Self { set: set.clone(), key })
    }
}

impl Drop for Settling {
    fn drop(&mut self) {
        self.set.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.key);
    }
}

/// The stops of each stage being asked again on this server, by ticket (oldest first).
#[derive(Default)]
pub(crate) struct AskingAgain {
    issued: u64,
    live: std::collections::HashMap<StageKey, Vec<u64>>,
}

/// A loop's place in [`AskingAgain`], given back when the loop ends.
struct AskAgainTicket {
    book: std::sync::Arc<std::sync::Mutex<AskingAgain>>,
    key: StageKey,
    ticket: u64,
}

impl AskAgainTicket {
    /// A new ticket for the stage, and whether it takes over from a loop still asking.
    fn take(book: &std::sync::Arc<std::sync::Mutex<AskingAgain>>, key: StageKey) -> (Self, bool) {
        let mut asking = book.lock().unwrap_or_else(|p| p.into_inner());
        asking.issued += 1;
        let ticket = asking.issued;
        let live = asking.live.entry(key.clone()).or_default();
        let took_over = !live.is_empty();
        live.push(ticket);
        (Self { book: book.clone(), key, ticket }, took_over)
    }

    /// Whether this is the newest loop still asking for the stage: an older one waits while a
    /// newer one asks, and asks again once that one has ended (it may have ended for a state
    /// that changed back since).
    fn newest(&self) -> bool {
        let asking = self.book.lock().unwrap_or_else(|p| p.into_inner());
        asking.live.get(&self.key).and_then(|live| live.last()) == Some(&self.ticket)
    }
}

impl Drop for AskAgainTicket {
    fn drop(&mut self) {
        let mut asking = self.book.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(live) = asking.live.get_mut(&self.key) {
            live.retain(|t| *t != self.ticket);
            if live.is_empty() {
                asking.live.remove(&self.key);
            }
        }
    }
}

/// What [`Services::ask_stop_in_turn`] did.
enum Asked {
    /// Asked the runtime: the stop to wait for.
    Stopping(crate::StopWait),
    /// Nothing to stop now (the stage should run, or changed since).
    NotNow,
    /// The stage could not be read: nothing was asked.
    Unreadable,
}

/// A stage's turn across the servers of the database ([`crate::store::StageTurn`]) and the
/// permit that counts it among this server's [`SHARED_TURNS`].
struct SharedTurn {
    turn: crate::store::StageTurn,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl SharedTurn {
    /// Ends the turn, if one was taken.
    async fn release(shared: Option<SharedTurn>) {
        if let Some(shared) = shared {
            shared.turn.release().await;
        }
    }
}

/// How long a stage may be suspending beyond its grace period before the server doing the
/// background work settles it ([`Services::settle_left_suspends`]): a stop waits for its pods
/// 30 s past the grace period at most.
pub const LEFT_SUSPENDING_AFTER: chrono::Duration = chrono::Duration::seconds(120);

/// How soon a stop the runtime refused is asked again (doubled each time, up to
/// [`ASK_AGAIN_AT_MOST`]).
const ASK_AGAIN: std::time::Duration = std::time::Duration::from_secs(1);
const ASK_AGAIN_AT_MOST: std::time::Duration = std::time::Duration::from_secs(30);

/// What [`Services::reconcile`] did: how many stages started again, how many could not.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    pub started: usize,
    pub failed: usize,
}
