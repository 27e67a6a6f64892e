//! [`LocalRuntime`]: components as child processes of the server, each in its own process group
//! and (unless the sandbox is off) in a bubblewrap sandbox, running an immutable copy of its
//! release's files.
//!
//! - `component`: what is observed of a component (status, probes, logs) and its events;
//! - `launch`: the program, directory, environment and sandbox a component's process starts with;
//! - `sandbox`: the bubblewrap sandbox (its arguments, detection);
//! - `release`: the read-only copy of a build a release runs from;
//! - `process`: spawning a process in its own group, capturing its output, signalling it;
//! - `supervise`: services and workers, restarted with back-off until stopped;
//! - `jobs`: jobs and cron runs (tracked per release, once per release for jobs);
//! - `reaper`: processes an earlier, killed server left behind;
//! - `children`: the server as a child subreaper: adopted processes collected, a stage's strays found;
//! - `limits`: the resource limits of a component's processes;
//! - `network`: what a component may do on the machine's network (Landlock);
//! - `copy`: a stage's storage copied for a duplicate, by file descriptors (no symlink followed).
//!
//! Under its data directory: `storage/<project>/<stage>/<volume>` (kept until the purge),
//! `releases/<project>/<stage>/<release>` (read-only copies), `jobs/<project>/<stage>/<release>/
//! <job>` (which jobs ran for which release: a fact that outlives the server), `tmp/<project>/
//! <stage>/<start>/<component>` (wiped when the stage stops, and at its first start by a new
//! server) and `sandbox/`. [`Runtime::forget`] deletes everything of a stage but `sandbox/`.

mod children;
mod component;
mod copy;
mod jobs;
mod launch;
mod limits;
mod network;
mod process;
mod reaper;
mod release;
mod sandbox;
mod supervise;
mod usage;

pub use children::{become_subreaper, reap_adopted, spawn_reaper};
pub use launch::runtime_marker;
pub use limits::Enforcer;
pub use network::NetworkGuard;
pub use release::{MAX_RELEASE_BYTES, MAX_RELEASE_FILES};
pub use sandbox::{Sandbox, SANDBOX_UID};

use crate::{
    ComponentState, ComponentStatus, LogLine, Runtime, RuntimeError, StageKey, StageSpec, StopMode, StopReport,
    MAX_ENV_BYTES,
};
use async_trait::async_trait;
use chrono::Utc;
use component::Component;
use jobs::{record, recorded, run_cron, CronTiming, JobRun, Runs};
use launch::assign_port;
use pergola_core::config::OutboundPorts;
use pergola_core::{ComponentUsage, EventSink};
use pergola_domain::{ComponentKind, ComponentSpec, Isolation, Schedule};
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
    /// The sandbox asked for: `None` for bwrap from `PATH`.
    sandbox: Option<Sandbox>,
    /// The sandbox once it has been checked and runs (checked again while it does not: it may
    /// have been installed meanwhile).
    checked: Mutex<Option<Sandbox>>,
    /// Directories never copied into a release (besides the runtime's own).
    hidden: Vec<PathBuf>,
    /// What enforces the components' resource limits.
    limits: Enforcer,
    /// This runtime's directory in the components' cgroups (several servers, or test runs, on
    /// one machine keep theirs apart): a hash of its data directory.
    cgroup: String,
    /// What restricts the components' network, and the ports they may connect to.
    network: NetworkGuard,
    outbound: OutboundPorts,
}

/// What runs of a stage: one start of one of its releases.
struct StageRun {
    release: i64,
    components: Vec<Arc<Component>>,
    /// `Some(grace)` tells the service supervisors and the cron schedules to stop.
    stop: watch::Sender<Option<Duration>>,
    services: Vec<(String, JoinHandle<Ending>)>,
    /// The cron schedules (each ends as soon as it is told to stop).
    schedules: Vec<JoinHandle<()>>,
    /// The release's job and cron runs: a start of the same release keeps them (a run
    /// started before a suspend goes on); a halt stops them.
    runs: Arc<Runs>,
    /// This start's temporary directories (one per component, under the stage's).
    tmp_dir: PathBuf,
}

/// What a component starts with: its launch, its port (services) and its schedule (cron).
type Prepared = (launch::Launch, Option<u16>, Option<Schedule>);

impl LocalRuntime {
    /// `data_dir` holds `storage/` (kept), `tmp/` (wiped) and `releases/` (copies of the builds)
    /// for every stage, and `sandbox/` (the sandbox's `passwd` and `group`). It is created
    /// if need be, and a relative one is taken from the current directory, once, here.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        let data_dir = absolute_dir(data_dir.into());
        Self {
            cgroup: limits::instance_name(&data_dir),
            data_dir,
            stages: Mutex::new(HashMap::new()),
            cron: CronTiming { tick: None, now: Arc::new(Utc::now) },
            events: Mutex::new(None),
            sandbox: None,
            checked: Mutex::new(None),
            hidden: Vec::new(),
            limits: Enforcer::detect(),
            network: NetworkGuard::detect(),
            outbound: OutboundPorts::default(),
        }
    }

    /// Lets components connect to `outbound` (besides their own stage's services) rather than
    /// to the default ports (53, 80, 443).
    pub fn with_outbound(mut self, outbound: OutboundPorts) -> Self {
        self.outbound = outbound;
        self
    }

    /// Restricts the components' network with `guard` rather than with what
    /// [`NetworkGuard::detect`] found ([`NetworkGuard::none`]: not at all).
    pub fn with_network_guard(mut self, guard: NetworkGuard) -> Self {
        self.network = guard;
        self
    }

    /// Enforces the components' limits with `enforcer` rather than with what
    /// [`Enforcer::detect`] found.
    pub fn with_enforcer(mut self, enforcer: Enforcer) -> Self {
        self.limits = enforcer;
        self
    }

    /// How components are isolated and their limits enforced, for the dashboard.
    pub fn isolation_report(&self) -> Isolation {
        let sandbox = match self.sandbox() {
            Ok(Sandbox::Bubblewrap(_)) => "bubblewrap",
            Ok(Sandbox::Off) => "off",
            Err(_) => "unavailable",
        };
        let (network, network_detail) = self.network.describe(&self.outbound);
        Isolation {
            sandbox: sandbox.into(),
            sandbox_detail: self.sandbox_status(),
            limits: self.limits.mode().into(),
            limits_detail: self.limits.describe(),
            network: network.into(),
            network_detail,
        }
    }

    /// Runs components with `sandbox` (checked at the first start, and at every start until it
    /// runs) rather than with `bwrap` from `PATH`. Without a working sandbox no stage starts,
    /// unless it is [`Sandbox::Off`].
    pub fn with_sandbox(mut self, sandbox: Sandbox) -> Self {
        self.sandbox = Some(sandbox);
        self
    }

    /// Never copies `dir` (the server's data directory: its database and secret key) into a
    /// release, should a build's directory hold it.
    pub fn hiding(mut self, dir: impl Into<PathBuf>) -> Self {
        self.hidden.push(absolute_dir_no_create(dir.into()));
        self
    }

    /// The sandbox components run in; `Err`: why none can run.
    fn sandbox(&self) -> Result<Sandbox, String> {
        let mut checked = self.checked.lock().expect("sandbox lock");
        if let Some(sandbox) = &*checked {
            return Ok(sandbox.clone());
        }
        // Its scratch directory in the runtime's own directory, not in the shared /tmp.
        let scratch = self.data_dir.join("sandbox");
        let sandbox = match &self.sandbox {
            None => Sandbox::detect_in(&scratch),
            Some(s) => s.clone().check_in(&scratch),
        }?;
        *checked = Some(sandbox.clone());
        Ok(sandbox)
    }

    /// Whether stages can start: the sandbox runs, or it is off.
    pub fn can_start_stages(&self) -> bool {
        self.sandbox().is_ok()
    }

    /// How components are isolated, in a sentence (for the logs and the dashboard).
    pub fn sandbox_status(&self) -> String {
        match self.sandbox() {
            Ok(Sandbox::Bubblewrap(bwrap)) => format!(
                "components run sandboxed by bubblewrap ({}): their release read-only at /app, their storage \
                 at /storage, a private /tmp, as an unprivileged user, without a view of the server's files \
                 or processes",
                bwrap.display()
            ),
            Ok(Sandbox::Off) => "the sandbox is off (PERGOLA_SANDBOX=off): components run as the server's user and \
                                 can read and write what the server can (its database, its secret key, every \
                                 stage's files)"
                .into(),
            Err(why) => format!("no stage can start: {why}"),
        }
    }

    /// The cgroup of a component, under the limits' base.
    fn cgroup_path<'a>(&'a self, key: &'a StageKey, component: &'a str) -> [&'a str; 4] {
        [&self.cgroup, &key.project, &key.stage, component]
    }

    /// Where the files of a stage's release are copied.
    fn release_dir(&self, key: &StageKey, release: i64) -> PathBuf {
        self.stage_releases(key).join(release.to_string())
    }

    fn stage_releases(&self, key: &StageKey) -> PathBuf {
        self.data_dir.join("releases").join(&key.project).join(&key.stage)
    }

    /// The value of `PERGOLA_RUNTIME` its processes carry (see [`runtime_marker`]).
    fn marker(&self) -> String {
        runtime_marker(&self.data_dir)
    }

    /// The value servers before [`runtime_marker`] gave it (the data directory's path): the
    /// processes such a server left when it was killed are stopped too.
    fn legacy_marker(&self) -> String {
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

    /// Stops every stage, jobs and cron runs included (the server is shutting down): no
    /// component outlives the server.
    pub async fn shutdown(&self, grace: Duration) {
        let keys: Vec<StageKey> = self.stages.lock().expect("stages lock").keys().cloned().collect();
        for key in keys {
            self.stop(&key, grace, StopMode::Halt).await;
        }
    }

    /// Where a stage's temporary directories are (one directory per start).
    fn stage_tmp(&self, key: &StageKey) -> PathBuf {
        self.data_dir.join("tmp").join(&key.project).join(&key.stage)
    }

    /// Where the runs of a stage's jobs are recorded (see `jobs`).
    fn stage_jobs(&self, key: &StageKey) -> PathBuf {
        self.data_dir.join("jobs").join(&key.project).join(&key.stage)
    }

    /// Where the run of job `job` of a stage's release `release` is recorded.
    fn job_record(&self, key: &StageKey, release: i64, job: &str) -> PathBuf {
        self.stage_jobs(key).join(release.to_string()).join(job)
    }

    /// The jobs and cron runs of a stage that are running now (they run to completion).
    fn running_jobs(&self, key: &StageKey) -> Vec<String> {
        let stages = self.stages.lock().expect("stages lock");
        stages
            .get(key)
            .map(|run| {
                run.components
                    .iter()
                    .filter(|c| {
                        c.read(|s| {
                            matches!(s.kind, ComponentKind::Job | ComponentKind::Cron)
                                && s.state == ComponentState::Running
                        })
                    })
                    .map(|c| c.name.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// What of a stage still runs: every component while the stage runs (it was started and
    /// not stopped since); after a suspend, the job and cron runs still going and whatever
    /// process of the stage is left (found by its environment, strays included).
    fn running_now(&self, key: &StageKey) -> Vec<String> {
        let mut running: Vec<String> = {
            let stages = self.stages.lock().expect("stages lock");
            stages
                .get(key)
                .map(|run| {
                    let started = run.stop.borrow().is_none();
                    run.components
                        .iter()
                        .filter(|c| {
                            started
                                || c.read(|s| {
                                    matches!(
                                        s.state,
                                        ComponentState::Starting | ComponentState::Running | ComponentState::Stopping
                                    )
                                })
                        })
                        .map(|c| c.name.clone())
                        .collect()
                })
                .unwrap_or_default()
        };
        let marker = format!("{}={}", launch::MARKER_VAR, self.marker());
        for process in children::stage_processes(&marker, &key.project, &key.stage) {
            if !running.contains(&process.component) {
                running.push(process.component);
            }
        }
        running
    }

    /// Deletes a stage's persistent storage for good (when the stage is purged).
    pub fn purge_storage(&self, key: &StageKey) -> std::io::Result<()> {
        match std::fs::remove_dir_all(self.stage_storage(key)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// The ports the services of every stage were given and still hold, and every port of a
    /// stage something of which still runs: a job or cron run going on after a suspend may
    /// connect to its stage's services' ports (its network rules name them), which are
    /// therefore not given to another stage meanwhile.
    /// The ports of stage `starting` itself are not counted: its services get theirs again.
    fn ports_in_use(&self, starting: &StageKey) -> Vec<u16> {
        let stages = self.stages.lock().expect("stages lock");
        let mut taken = Vec::new();
        for (_, run) in stages.iter().filter(|(key, _)| *key != starting) {
            let alive = run.components.iter().any(|c| c.read(component::has_process));
            for c in &run.components {
                if let Some(port) =
                    c.read(|s| (alive || s.state != ComponentState::Stopped).then_some(s.port).flatten())
                {
                    taken.push(port);
                }
            }
        }
        taken
    }

    /// Gives component `c` its port (taken from `taken`), prepares its launch (from the
    /// release's files in `release`, sandboxed by `bwrap` if given) and parses its schedule;
    /// refuses an environment over [`MAX_ENV_BYTES`].
    fn prepare(
        &self,
        spec: &StageSpec,
        c: &ComponentSpec,
        (taken, before): (&mut Vec<u16>, Option<u16>),
        (tmp_dir, release, bwrap): (&Path, &Path, Option<&Path>),
    ) -> Result<Prepared, RuntimeError> {
        let port = if c.kind == ComponentKind::Service {
            // The manifest's port, else the one it had at its last start, when free.
            let port = assign_port(c.port.into_iter().chain(before), taken)
                .map_err(|source| RuntimeError::NoPort { component: c.name.clone(), source })?;
            taken.push(port);
            Some(port)
        } else {
            None
        };
        let launch = self
            .launch(spec, c, port, &tmp_dir.join(&c.name), release, bwrap)
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

/// `dir` as an absolute path (canonical when it exists).
fn absolute_dir_no_create(dir: PathBuf) -> PathBuf {
    std::fs::canonicalize(&dir).or_else(|_| std::path::absolute(&dir)).unwrap_or(dir)
}

#[async_trait]
impl Runtime for LocalRuntime {
    async fn start(&self, spec: StageSpec, grace: Duration) -> Result<(), RuntimeError> {
        let before = self.stages.lock().expect("stages lock").get(&spec.key).map(|run| run.release);
        let same_release = before == Some(spec.release);
        // A resume of the same release lets its job and cron runs still going go on; anything
        // else (another release) stops them too.
        let mode = if same_release { StopMode::Suspend } else { StopMode::Halt };
        self.stop(&spec.key, grace, mode).await;
        if before.is_none() {
            // This server never ran the stage: what an earlier one left in its temporary
            // directories is not used by anything (its processes were reaped).
            let _ = std::fs::remove_dir_all(self.stage_tmp(&spec.key));
        }
        tracing::debug!(project = spec.key.project, stage = spec.key.stage, release = spec.release, "starting");
        // Its services' ports of the last start, given again when free: a job of the stage still
        // running after a suspend may connect to them (its network rules name them).
        let ports_before: HashMap<String, u16> = {
            let stages = self.stages.lock().expect("stages lock");
            let services = stages.get(&spec.key).map(|run| run.components.as_slice()).unwrap_or_default();
            services
                .iter()
                .filter_map(|c| {
                    let port = c.read(|s| (s.kind == ComponentKind::Service).then_some(s.port).flatten())?;
                    Some((c.name.clone(), port))
                })
                .collect()
        };
        // Of the same release, the jobs' and cron components (a run still going, the logs of
        // the last one) and the runs, unless they were halted (a delete, then a restore).
        let (kept, runs) = {
            let stages = self.stages.lock().expect("stages lock");
            match stages.get(&spec.key).filter(|_| same_release) {
                Some(run) => {
                    let kept: HashMap<String, Arc<Component>> = run
                        .components
                        .iter()
                        .filter(|c| matches!(c.read(|s| s.kind), ComponentKind::Job | ComponentKind::Cron))
                        .map(|c| (c.name.clone(), c.clone()))
                        .collect();
                    let runs = if run.runs.halted() { Runs::new() } else { run.runs.clone() };
                    (kept, runs)
                }
                None => (HashMap::new(), Runs::new()),
            }
        };
        let run_id = Utc::now().timestamp_millis();
        let tmp_dir = self.stage_tmp(&spec.key).join(run_id.to_string());
        let bwrap = match self.sandbox() {
            Ok(Sandbox::Bubblewrap(bwrap)) => Some(bwrap),
            Ok(Sandbox::Off) => None,
            Err(why) => return Err(RuntimeError::Sandbox(why)),
        };
        // The release's files: the build's, copied once (read-only) when it is first started.
        let release = {
            let (build, dest) = (spec.workdir.clone(), self.release_dir(&spec.key, spec.release));
            let mut hidden = self.hidden.clone();
            hidden.push(self.data_dir.clone());
            tokio::task::spawn_blocking(move || release::copy_release(&build, &dest, &hidden))
                .await
                .unwrap_or_else(|e| Err(format!("the copy stopped: {e}")))
                .map_err(|reason| RuntimeError::Release { release: spec.release, reason })?
        };
        let mut taken = self.ports_in_use(&spec.key);
        let events = self.events.lock().expect("events lock").clone();
        // Everything is prepared (and checked) first, and the jobs to run are recorded as run
        // for this release: a refused start leaves nothing running, scheduled or recorded.
        let mut prepared = Vec::new();
        for c in &spec.components {
            let before = ports_before.get(&c.name).copied();
            match self.prepare(&spec, c, (&mut taken, before), (&tmp_dir, &release, bwrap.as_deref())) {
                Ok(p) => prepared.push(p),
                Err(e) => {
                    let _ = std::fs::remove_dir_all(&tmp_dir);
                    return Err(e);
                }
            }
        }
        // What each may do on the network: listen on its own port, connect to its stage's
        // services (and the outbound ports).
        let stage_ports: Vec<u16> = prepared.iter().filter_map(|(_, port, _)| *port).collect();
        for (c, (launch, port, _)) in spec.components.iter().zip(prepared.iter_mut()) {
            match self.network.rules(&self.outbound, *port, &stage_ports) {
                Ok(rules) => launch.network = rules,
                Err(source) => {
                    let _ = std::fs::remove_dir_all(&tmp_dir);
                    return Err(RuntimeError::Launch { component: c.name.clone(), source });
                }
            }
        }
        // Per job: how it already ran for this release, or where its run is recorded.
        let mut jobs: HashMap<&str, Result<(Option<i32>, String), PathBuf>> = HashMap::new();
        for c in spec.components.iter().filter(|c| c.kind == ComponentKind::Job) {
            let path = self.job_record(&spec.key, spec.release, &c.name);
            jobs.insert(&c.name, recorded(&path).ok_or(path));
        }
        let mut written = Vec::new();
        for path in jobs.values().filter_map(|j| j.as_ref().err()) {
            if let Err(source) = record(path, "started") {
                for path in written {
                    let _ = std::fs::remove_file(path);
                }
                let _ = std::fs::remove_dir_all(&tmp_dir);
                return Err(RuntimeError::Storage {
                    what: "cannot record that a job runs for this release",
                    path: path.clone(),
                    source,
                });
            }
            written.push(path);
        }
        // From here on nothing fails.
        let (stop, stop_rx) = watch::channel(None);
        let mut run = StageRun {
            release: spec.release,
            components: Vec::new(),
            stop,
            services: Vec::new(),
            schedules: Vec::new(),
            runs: runs.clone(),
            tmp_dir: tmp_dir.clone(),
        };
        for (c, (launch, port, schedule)) in spec.components.iter().zip(prepared) {
            let component = match kept.get(&c.name).filter(|k| k.read(|s| s.kind) == c.kind) {
                Some(kept) => kept.clone(),
                None => Arc::new(Component::new(spec.key.clone(), &c.name, c.kind, port, events.clone())),
            };
            if let (Some(wanted), Some(port)) = (c.port, port) {
                if wanted != port {
                    component
                        .log("pergola", format!("port {wanted} is in use; listening on {port} instead (PORT={port})"));
                }
            }
            run.components.push(component.clone());
            let going = matches!(component.read(|s| s.state), ComponentState::Running | ComponentState::Stopping);
            match (c.kind, schedule) {
                (ComponentKind::Service | ComponentKind::Worker, _) => {
                    let task = tokio::spawn(supervise(component, launch, c.clone(), port, stop_rx.clone()));
                    run.services.push((c.name.clone(), task));
                }
                (ComponentKind::Cron, Some(parsed)) => {
                    if !going {
                        component.update(|s| s.state = ComponentState::Scheduled);
                    }
                    component.log("pergola", format!("scheduled: {}", c.schedule.clone().unwrap_or_default()));
                    let schedule =
                        run_cron(component, launch, parsed, self.cron.clone(), stop_rx.clone(), runs.clone());
                    run.schedules.push(tokio::spawn(schedule));
                }
                (ComponentKind::Job | ComponentKind::Cron, _) => match jobs.remove(c.name.as_str()) {
                    Some(Err(path)) => runs.spawn(JobRun { component, launch, record: Some(path) }),
                    Some(Ok((code, how))) => {
                        // Already ran for this release (a run still going goes on).
                        let _ = std::fs::remove_dir_all(&launch.tmp);
                        if !going {
                            component.update(|s| {
                                s.state = ComponentState::Completed;
                                s.exit_code = code;
                                s.pid = None;
                            });
                            component.log(
                                "pergola",
                                format!(
                                    "already ran for release {} ({how}); a job runs once per release: deploy \
                                     again to run it again",
                                    spec.release
                                ),
                            );
                        }
                    }
                    None => {}
                },
            }
        }
        self.stages.lock().expect("stages lock").insert(spec.key, run);
        Ok(())
    }

    async fn stop(&self, key: &StageKey, grace: Duration, mode: StopMode) -> StopReport {
        let deadline = tokio::time::Instant::now() + grace;
        let marker = format!("{}={}", launch::MARKER_VAR, self.marker());
        let (services, schedules, runs, tmp_dir, groups) = {
            let mut stages = self.stages.lock().expect("stages lock");
            let Some(run) = stages.get_mut(key) else {
                return StopReport::default();
            };
            run.stop.send_replace(Some(grace));
            let runs = if mode == StopMode::Halt { run.runs.halt(grace) } else { Vec::new() };
            let groups: Vec<u32> = run.components.iter().filter_map(|c| c.read(|s| s.pid)).collect();
            let (services, schedules) = (std::mem::take(&mut run.services), std::mem::take(&mut run.schedules));
            (services, schedules, runs, run.tmp_dir.clone(), groups)
        };
        // Strays: what a component started outside its process group (a daemon's double fork)
        // is asked to stop too, within the same grace; after a suspend, jobs still running keep
        // theirs.
        let running_jobs = if mode == StopMode::Halt { Vec::new() } else { self.running_jobs(key) };
        let strays = |all: Vec<children::StageProcess>| -> Vec<children::StageProcess> {
            all.into_iter().filter(|p| !running_jobs.contains(&p.component)).collect()
        };
        let outside: Vec<_> = strays(children::stage_processes(&marker, &key.project, &key.stage))
            .into_iter()
            .filter(|p| !groups.contains(&p.group))
            .collect();
        children::signal_each(&outside, libc::SIGTERM);
        let mut report = StopReport::default();
        for (name, task) in services {
            match task.await {
                Ok(Ending::Killed) => report.killed.push(name),
                _ => report.terminated.push(name),
            }
        }
        for schedule in schedules {
            let _ = schedule.await;
        }
        for (name, task) in runs {
            match task.await {
                Ok(Some(Ending::Killed)) => report.killed.push(name),
                Ok(Some(Ending::Terminated)) => report.terminated.push(name),
                _ => {}
            }
        }
        // What is left of them gets the rest of the grace period, then SIGKILL.
        let mut left = strays(children::stage_processes(&marker, &key.project, &key.stage));
        while !left.is_empty() && !outside.is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
            left = strays(children::stage_processes(&marker, &key.project, &key.stage));
        }
        if !left.is_empty() {
            tracing::warn!(
                project = key.project,
                stage = key.stage,
                processes = left.len(),
                "killing processes the stage's components left outside their process groups"
            );
            children::signal_each(&left, libc::SIGKILL);
        }
        // What stopped (a job or cron run still going keeps its cgroups and temporary directory
        // until it ends).
        let stopped: Vec<String> = self
            .stages
            .lock()
            .expect("stages lock")
            .get(key)
            .map(|r| r.components.clone())
            .unwrap_or_default()
            .into_iter()
            .filter(|c| !matches!(c.read(|s| s.state), ComponentState::Running | ComponentState::Stopping))
            .map(|c| c.name.clone())
            .collect();
        for name in &stopped {
            self.limits.release(&self.cgroup_path(key, name));
        }
        if mode == StopMode::Halt {
            // Nothing of the stage runs any more.
            let _ = std::fs::remove_dir_all(self.stage_tmp(key));
            return report;
        }
        // Temporary data of the services is lost.
        for name in &stopped {
            let _ = std::fs::remove_dir_all(tmp_dir.join(name));
        }
        let _ = std::fs::remove_dir(&tmp_dir);
        report
    }

    async fn forget(&self, key: &StageKey) -> Result<(), RuntimeError> {
        // Nothing should run of a purged stage (deleting it stopped everything); whatever does
        // is killed.
        self.stop(key, Duration::ZERO, StopMode::Halt).await;
        self.stages.lock().expect("stages lock").remove(key);
        let mut failed = None;
        for (what, path) in [
            ("cannot delete the stage's temporary data", self.stage_tmp(key)),
            ("cannot delete what was recorded of the stage's jobs", self.stage_jobs(key)),
            ("cannot delete the stage's release copies", self.stage_releases(key)),
            ("cannot delete the stage's storage", self.stage_storage(key)),
        ] {
            // Every one is tried; the first failure is reported.
            if let Err(source) = release::remove_tree(&path) {
                failed.get_or_insert(RuntimeError::Storage { what, path, source });
            }
        }
        failed.map_or(Ok(()), Err)
    }

    fn still_running(&self, key: &StageKey) -> Vec<String> {
        self.running_now(key)
    }

    async fn copy_storage(&self, from: &StageKey, to: &StageKey) -> Result<(), RuntimeError> {
        let (source, target) = (self.stage_storage(from), self.stage_storage(to));
        // A job or cron run still going after the suspend (or a process it left) could change
        // the storage under the copy, or swap one of its directories for a symlink: the copy
        // waits until nothing of the stage runs. (The copy never follows a symlink anyway.)
        let running = self.running_now(from);
        if !running.is_empty() {
            return Err(RuntimeError::Storage {
                what: "cannot copy the stage's storage while processes of the stage still run",
                path: source,
                source: std::io::Error::other(format!(
                    "still running: {}; try again once they have ended",
                    running.join(", ")
                )),
            });
        }
        let existed = std::fs::symlink_metadata(&target).is_ok();
        let copied = {
            let (source, target) = (source.clone(), target.clone());
            tokio::task::spawn_blocking(move || copy::copy_tree(&source, &target))
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(format!("the copy stopped: {e}"))))
        };
        copied.map_err(|source| {
            // Half a copy is no copy (a target that was there already is left alone).
            if !existed {
                let _ = std::fs::remove_dir_all(&target);
            }
            RuntimeError::Storage { what: "cannot copy the stage's storage", path: self.stage_storage(from), source }
        })
    }

    fn status(&self, key: &StageKey) -> Vec<ComponentStatus> {
        let stages = self.stages.lock().expect("stages lock");
        stages.get(key).map(|run| run.components.iter().map(|c| c.observe()).collect()).unwrap_or_default()
    }

    fn logs(&self, key: &StageKey, component: &str) -> Vec<LogLine> {
        self.logs_after(key, component, 0).unwrap_or_default()
    }

    fn usage(&self) -> Vec<ComponentUsage> {
        let running: Vec<(StageKey, String, u32)> = {
            let stages = self.stages.lock().expect("stages lock");
            stages
                .iter()
                .flat_map(|(key, run)| {
                    run.components
                        .iter()
                        .filter_map(|c| c.read(|s| s.pid).map(|pid| (key.clone(), c.name.clone(), pid)))
                })
                .collect()
        };
        if running.is_empty() {
            return Vec::new();
        }
        let table = usage::ProcTable::read();
        running
            .into_iter()
            .filter_map(|(key, component, pid)| {
                let (cpu_secs, memory_bytes) = table.tree(pid)?;
                Some(ComponentUsage { key, component, cpu_secs, memory_bytes })
            })
            .collect()
    }

    fn logs_after(&self, key: &StageKey, component: &str, after: u64) -> Option<Vec<LogLine>> {
        let component = {
            let stages = self.stages.lock().expect("stages lock");
            stages.get(key).and_then(|run| run.components.iter().find(|c| c.name == component)).cloned()
        };
        // Copied outside the lock every stage shares.
        component.map(|c| c.logs_after(after))
    }

    fn shown_after(&self, key: &StageKey, component: &str, after: u64) -> Option<(Vec<LogLine>, bool)> {
        let component = {
            let stages = self.stages.lock().expect("stages lock");
            stages.get(key).and_then(|run| run.components.iter().find(|c| c.name == component)).cloned()
        };
        component.map(|c| c.shown_after(after))
    }

    fn last_line(&self, key: &StageKey, component: &str) -> Option<u64> {
        let stages = self.stages.lock().expect("stages lock");
        stages.get(key).and_then(|run| run.components.iter().find(|c| c.name == component)).map(|c| c.last_line())
    }

    /// Stages started from now on report to `sink`; those already running keep reporting
    /// where they did.
    fn observe(&self, sink: EventSink) {
        *self.events.lock().expect("events lock") = Some(sink);
    }

    fn isolation(&self) -> Option<Isolation> {
        Some(self.isolation_report())
    }

    /// Builds' files only: a component that runs a ready image needs a runtime of containers.
    fn can_run(&self, component: &pergola_domain::ComponentSpec) -> Result<(), String> {
        match &component.image {
            Some(image) => Err(format!(
                "component '{}' runs the image '{image}', and this server runs uploaded builds as processes, not \
                 images (images run on the Kubernetes runtime)",
                component.name
            )),
            None => Ok(()),
        }
    }
}
