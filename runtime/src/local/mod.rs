//! [`LocalRuntime`]: components as child processes of the server, each in its own process group.
//!
//! - `component`: what is observed of a component (status, probes, logs) and its events;
//! - `launch`: the program, directory and environment a component's process starts with;
//! - `process`: spawning a process in its own group, capturing its output, signalling it;
//! - `supervise`: services and workers, restarted with back-off until stopped;
//! - `jobs`: jobs and cron runs;
//! - `reaper`: processes an earlier, killed server left behind.

mod component;
mod jobs;
mod launch;
mod process;
mod reaper;
mod supervise;

use crate::{
    ComponentState, ComponentStatus, LogLine, Runtime, RuntimeError, StageKey, StageSpec, StopReport, MAX_ENV_BYTES,
};
use async_trait::async_trait;
use chrono::Utc;
use component::Component;
use jobs::{run_cron, run_job, CronTiming};
use launch::assign_port;
use pergola_core::EventSink;
use pergola_domain::{ComponentKind, ComponentSpec, Schedule};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use supervise::{supervise, Ending};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A stage's stop signal: `Some(grace)` tells its components to stop.
type StopSignal = watch::Receiver<Option<Duration>>;

pub struct LocalRuntime {
    /// Absolute, so the paths handed to components (which run in their build's directory)
    /// point where they should.
    data_dir: PathBuf,
    stages: Mutex<HashMap<StageKey, StageRun>>,
    cron: CronTiming,
    /// Where what it observes goes (see [`Runtime::observe`]).
    events: Mutex<Option<EventSink>>,
}

struct StageRun {
    components: Vec<Arc<Component>>,
    /// `Some(grace)` tells the service supervisors to stop.
    stop: watch::Sender<Option<Duration>>,
    services: Vec<(String, JoinHandle<Ending>)>,
    tmp_dir: PathBuf,
}

/// What a component starts with: its launch, its port (services) and its schedule (cron).
type Prepared = (launch::Launch, Option<u16>, Option<Schedule>);

impl LocalRuntime {
    /// `data_dir` holds `storage/` (kept) and `tmp/` (wiped) for every stage. It is created
    /// if need be, and a relative one is taken from the current directory, once, here.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: absolute_dir(data_dir.into()),
            stages: Mutex::new(HashMap::new()),
            cron: CronTiming { tick: None, now: Arc::new(Utc::now) },
            events: Mutex::new(None),
        }
    }

    fn marker(&self) -> String {
        let dir = std::fs::canonicalize(&self.data_dir).unwrap_or_else(|_| self.data_dir.clone());
        dir.display().to_string()
    }

    /// Checks cron schedules every `tick` against the time `now` tells (for tests; by default
    /// schedules are checked at every minute of the system clock).
    pub fn with_cron_timing(
        mut self,
        tick: Duration,
        now: impl Fn() -> chrono::DateTime<Utc> + Send + Sync + 'static,
    ) -> Self {
        self.cron = CronTiming { tick: Some(tick), now: Arc::new(now) };
        self
    }

    /// Where a stage's persistent volume lives.
    pub fn storage_dir(&self, key: &StageKey, volume: &str) -> PathBuf {
        self.stage_storage(key).join(volume)
    }

    fn stage_storage(&self, key: &StageKey) -> PathBuf {
        self.data_dir.join("storage").join(&key.project).join(&key.stage)
    }

    /// Stops every stage (the server is shutting down): no component outlives the server.
    pub async fn shutdown(&self, grace: Duration) {
        let keys: Vec<StageKey> = self.stages.lock().expect("stages lock").keys().cloned().collect();
        for key in keys {
            self.stop(&key, grace).await;
        }
    }

    /// Deletes a stage's persistent storage for good (when the stage is purged).
    pub fn purge_storage(&self, key: &StageKey) -> std::io::Result<()> {
        match std::fs::remove_dir_all(self.stage_storage(key)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// The ports the services of every stage were given (running or not: a stopped stage
    /// gets its ports again when it resumes, if they are still free).
    fn ports_in_use(&self) -> Vec<u16> {
        let stages = self.stages.lock().expect("stages lock");
        stages
            .values()
            .flat_map(|run| run.components.iter())
            .filter_map(|c| c.read(|s| if s.state == ComponentState::Stopped { None } else { s.port }))
            .collect()
    }

    /// Gives component `c` its port (taken from `taken`), prepares its launch and parses its
    /// schedule; refuses an environment over [`MAX_ENV_BYTES`].
    fn prepare(
        &self,
        spec: &StageSpec,
        c: &ComponentSpec,
        taken: &mut Vec<u16>,
        tmp_dir: &Path,
    ) -> Result<Prepared, RuntimeError> {
        let port = if c.kind == ComponentKind::Service {
            let port = assign_port(c.port, taken)
                .map_err(|source| RuntimeError::NoPort { component: c.name.clone(), source })?;
            taken.push(port);
            Some(port)
        } else {
            None
        };
        let launch = self
            .launch(spec, c, port, &tmp_dir.join(&c.name))
            .map_err(|source| RuntimeError::Launch { component: c.name.clone(), source })?;
        let size = launch.env_bytes();
        if size > MAX_ENV_BYTES {
            return Err(RuntimeError::Environment { component: c.name.clone(), size, limit: MAX_ENV_BYTES });
        }
        let schedule = if c.kind == ComponentKind::Cron {
            let schedule = c.schedule.clone().unwrap_or_default();
            let parsed = Schedule::parse(&schedule)
                .map_err(|reason| RuntimeError::Schedule { component: c.name.clone(), reason })?;
            Some(parsed)
        } else {
            None
        };
        Ok((launch, port, schedule))
    }
}

/// `dir`, created if need be, as an absolute path (canonical when it could be created).
fn absolute_dir(dir: PathBuf) -> PathBuf {
    if let Err(e) = std::fs::create_dir_all(&dir) {
        tracing::warn!(dir = %dir.display(), error = %e, "cannot create the runtime's data directory");
    }
    std::fs::canonicalize(&dir).or_else(|_| std::path::absolute(&dir)).unwrap_or(dir)
}

#[async_trait]
impl Runtime for LocalRuntime {
    async fn start(&self, spec: StageSpec, grace: Duration) -> Result<(), RuntimeError> {
        self.stop(&spec.key, grace).await;
        tracing::debug!(project = spec.key.project, stage = spec.key.stage, release = spec.release, "starting");
        let run_id = Utc::now().timestamp_millis();
        let tmp_dir = self.data_dir.join("tmp").join(&spec.key.project).join(&spec.key.stage).join(run_id.to_string());
        let (stop, stop_rx) = watch::channel(None);
        let mut run = StageRun { components: Vec::new(), stop, services: Vec::new(), tmp_dir: tmp_dir.clone() };
        let mut taken = self.ports_in_use();
        let events = self.events.lock().expect("events lock").clone();
        // Everything is prepared (and checked) first: a refused start leaves nothing running.
        let mut prepared = Vec::new();
        for c in &spec.components {
            match self.prepare(&spec, c, &mut taken, &tmp_dir) {
                Ok(p) => prepared.push(p),
                Err(e) => {
                    let _ = std::fs::remove_dir_all(&tmp_dir);
                    return Err(e);
                }
            }
        }
        for (c, (launch, port, schedule)) in spec.components.iter().zip(prepared) {
            let component = Arc::new(Component::new(spec.key.clone(), &c.name, c.kind, port, events.clone()));
            if let (Some(wanted), Some(port)) = (c.port, port) {
                if wanted != port {
                    component
                        .log("pergola", format!("port {wanted} is in use; listening on {port} instead (PORT={port})"));
                }
            }
            run.components.push(component.clone());
            match (c.kind, schedule) {
                (ComponentKind::Service | ComponentKind::Worker, _) => {
                    let task = tokio::spawn(supervise(component, launch, c.clone(), port, stop_rx.clone()));
                    run.services.push((c.name.clone(), task));
                }
                (ComponentKind::Cron, Some(parsed)) => {
                    component.update(|s| s.state = ComponentState::Scheduled);
                    component.log("pergola", format!("scheduled: {}", c.schedule.clone().unwrap_or_default()));
                    tokio::spawn(run_cron(component, launch, parsed, self.cron.clone(), stop_rx.clone()));
                }
                (ComponentKind::Job | ComponentKind::Cron, _) => {
                    tokio::spawn(run_job(component, launch, None));
                }
            }
        }
        self.stages.lock().expect("stages lock").insert(spec.key, run);
        Ok(())
    }

    async fn stop(&self, key: &StageKey, grace: Duration) -> StopReport {
        let (services, tmp_dir) = {
            let mut stages = self.stages.lock().expect("stages lock");
            let Some(run) = stages.get_mut(key) else {
                return StopReport::default();
            };
            let _ = run.stop.send(Some(grace));
            (std::mem::take(&mut run.services), run.tmp_dir.clone())
        };
        let mut report = StopReport::default();
        for (name, task) in services {
            match task.await {
                Ok(Ending::Killed) => report.killed.push(name),
                _ => report.terminated.push(name),
            }
        }
        // Temporary data of the services is lost; a job still running keeps its own directory
        // until it completes.
        let components: Vec<_> =
            self.stages.lock().expect("stages lock").get(key).map(|r| r.components.clone()).unwrap_or_default();
        for c in components {
            let running_job = c.read(|s| s.state) == ComponentState::Running
                && !report.terminated.contains(&c.name)
                && !report.killed.contains(&c.name);
            if !running_job {
                let _ = std::fs::remove_dir_all(tmp_dir.join(&c.name));
            }
        }
        report
    }

    async fn forget(&self, key: &StageKey) -> Result<(), RuntimeError> {
        self.purge_storage(key).map_err(|source| RuntimeError::Storage {
            what: "cannot delete the stage's storage",
            path: self.stage_storage(key),
            source,
        })
    }

    fn status(&self, key: &StageKey) -> Vec<ComponentStatus> {
        let stages = self.stages.lock().expect("stages lock");
        stages.get(key).map(|run| run.components.iter().map(|c| c.observe()).collect()).unwrap_or_default()
    }

    fn logs(&self, key: &StageKey, component: &str) -> Vec<LogLine> {
        let stages = self.stages.lock().expect("stages lock");
        stages
            .get(key)
            .and_then(|run| run.components.iter().find(|c| c.name == component))
            .map(|c| c.logs())
            .unwrap_or_default()
    }

    /// Stages started from now on report to `sink`; those already running keep reporting
    /// where they did.
    fn observe(&self, sink: EventSink) {
        *self.events.lock().expect("events lock") = Some(sink);
    }
}
