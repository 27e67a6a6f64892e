//! [`LocalRuntime`]: components as child processes of the server, each in its own process group.

use crate::probe::http_ok;
use crate::{
    ComponentState, ComponentStatus, Health, LogLine, Runtime, RuntimeError, StageKey, StageSpec, StopReport, LOG_LINES,
};
use chrono::{DateTime, Utc};
use pergola_domain::runtime::{Probe, PROBE_HISTORY};
use pergola_domain::{ComponentKind, ComponentSpec, EventKind, Schedule, StageEvent};
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// Longest wait between two restarts of a crashing service.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Variables of the server's own environment that components inherit; nothing else leaks
/// (the server's `DATABASE_URL`, for one, must not).
const INHERITED_ENV: &[&str] = &["PATH", "HOME", "LANG", "LC_ALL", "TZ"];
/// Failed health probes in a row before a starting service counts as unhealthy.
const STARTUP_PROBES: usize = 3;
/// Every component process carries `PERGOLA_RUNTIME=<data dir>`, so the processes a killed
/// server left behind can be found (and stopped) when it starts again.
const MARKER_VAR: &str = "PERGOLA_RUNTIME";

/// What the runtime observed of a stage's components, for its events timeline.
pub type EventSender = mpsc::UnboundedSender<(StageKey, StageEvent)>;

pub struct LocalRuntime {
    data_dir: PathBuf,
    stages: Mutex<HashMap<StageKey, StageRun>>,
    cron: CronTiming,
    events: Option<EventSender>,
}

/// When cron schedules are checked, and what time it is then.
#[derive(Clone)]
struct CronTiming {
    /// `None`: at every wall-clock minute; `Some(d)`: every `d` (tests).
    tick: Option<Duration>,
    now: Arc<dyn Fn() -> chrono::DateTime<Utc> + Send + Sync>,
}

impl CronTiming {
    fn delay(&self) -> Duration {
        self.tick.unwrap_or_else(|| {
            let into_minute = (self.now)().timestamp_millis().rem_euclid(60_000) as u64;
            Duration::from_millis(60_000 - into_minute + 50)
        })
    }
}

struct StageRun {
    components: Vec<Arc<Component>>,
    /// `Some(grace)` tells the service supervisors to stop.
    stop: watch::Sender<Option<Duration>>,
    services: Vec<(String, JoinHandle<Ending>)>,
    tmp_dir: PathBuf,
}

/// How a service supervisor ended.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ending {
    Terminated,
    Killed,
}

struct Component {
    name: String,
    key: StageKey,
    observed: Mutex<ComponentStatus>,
    logs: Mutex<VecDeque<LogLine>>,
    /// While stopping: when SIGKILL follows.
    kill_at: Mutex<Option<DateTime<Utc>>>,
    events: Option<EventSender>,
}

impl Component {
    fn update(&self, f: impl FnOnce(&mut ComponentStatus)) {
        f(&mut self.observed.lock().expect("status lock"));
    }

    /// Tells the events timeline (and the log) what happened.
    fn event(&self, kind: EventKind, message: String) {
        self.log("pergola", message.clone());
        if let Some(events) = &self.events {
            let _ = events.send((self.key.clone(), StageEvent::of_component(Utc::now(), kind, &self.name, message)));
        }
    }

    /// Records a health probe; a change of health is an event.
    fn probed(&self, healthy: bool) {
        let changed = {
            let mut s = self.observed.lock().expect("status lock");
            if s.probes.len() == PROBE_HISTORY {
                s.probes.remove(0);
            }
            s.probes.push(Probe { at: Utc::now(), healthy });
            // While it starts (no success yet), a few failed probes are expected: it is
            // unhealthy only after STARTUP_PROBES failures in a row.
            let starting = s.health == Health::Unknown
                && s.probes.iter().rev().take(STARTUP_PROBES).filter(|p| !p.healthy).count() < STARTUP_PROBES;
            let health = if healthy {
                Health::Healthy
            } else if starting {
                Health::Unknown
            } else {
                Health::Unhealthy
            };
            let changed = s.health != health;
            s.health = health;
            changed
        };
        if changed {
            let (kind, what) =
                if healthy { (EventKind::Healthy, "healthy") } else { (EventKind::Unhealthy, "unhealthy") };
            self.event(kind, format!("{} is {what}", self.name));
        }
    }

    /// The status with the figures that depend on the time of asking.
    fn observe(&self) -> ComponentStatus {
        let mut s = self.observed.lock().expect("status lock").clone();
        let now = Utc::now();
        let running = matches!(s.state, ComponentState::Running | ComponentState::Stopping) && s.pid.is_some();
        s.uptime_secs = s.started_at.filter(|_| running).map(|t| (now - t).num_seconds().max(0) as u64);
        s.kill_in_secs = if s.state == ComponentState::Stopping {
            self.kill_at.lock().expect("kill lock").map(|t| (t - now).num_seconds().max(0) as u64)
        } else {
            None
        };
        s
    }

    fn log(&self, stream: &str, line: String) {
        let mut logs = self.logs.lock().expect("log lock");
        if logs.len() == LOG_LINES {
            logs.pop_front();
        }
        logs.push_back(LogLine { at: Utc::now(), stream: stream.to_owned(), line });
    }
}

/// Everything needed to start one component's process.
#[derive(Clone)]
struct Launch {
    program: PathBuf,
    args: Vec<String>,
    workdir: PathBuf,
    env: Vec<(String, String)>,
}

impl LocalRuntime {
    /// `data_dir` holds `storage/` (kept) and `tmp/` (wiped) for every stage.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            stages: Mutex::new(HashMap::new()),
            cron: CronTiming { tick: None, now: Arc::new(Utc::now) },
            events: None,
        }
    }

    /// Sends what it observes (starts, crashes, restarts, kills, health changes) to `events`.
    pub fn with_events(mut self, events: EventSender) -> Self {
        self.events = Some(events);
        self
    }

    fn marker(&self) -> String {
        let dir = std::fs::canonicalize(&self.data_dir).unwrap_or_else(|_| self.data_dir.clone());
        dir.display().to_string()
    }

    /// Stops the component processes an earlier server with the same data directory left
    /// running (it was killed without a chance to stop them): SIGTERM to their process groups,
    /// up to `grace`, then SIGKILL. Returns how many process groups there were. Call it at
    /// start-up, before the stages that should run are started again.
    pub async fn reap_orphans(&self, grace: Duration) -> usize {
        let marker = format!("{MARKER_VAR}={}", self.marker());
        let groups = orphan_groups(&marker);
        if groups.is_empty() {
            return 0;
        }
        tracing::warn!(groups = groups.len(), "stopping component processes left behind by an earlier server");
        for &pgid in &groups {
            signal_group(Some(pgid), libc::SIGTERM);
        }
        let deadline = tokio::time::Instant::now() + grace;
        while tokio::time::Instant::now() < deadline && !orphan_groups(&marker).is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for pgid in orphan_groups(&marker) {
            signal_group(Some(pgid), libc::SIGKILL);
        }
        groups.len()
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
        self.data_dir.join("storage").join(&key.project).join(&key.stage).join(volume)
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
        match std::fs::remove_dir_all(self.data_dir.join("storage").join(&key.project).join(&key.stage)) {
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
            .filter(|c| !matches!(c.observed.lock().expect("status lock").state, ComponentState::Stopped))
            .filter_map(|c| c.observed.lock().expect("status lock").port)
            .collect()
    }

    fn launch(&self, spec: &StageSpec, c: &ComponentSpec, port: Option<u16>, tmp: &Path) -> std::io::Result<Launch> {
        let mut env: Vec<(String, String)> =
            INHERITED_ENV.iter().filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v))).collect();
        env.extend(c.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        env.extend(spec.config.iter().map(|(k, v)| (k.clone(), v.clone())));
        if let Some(port) = port {
            env.push(("PORT".into(), port.to_string()));
        }
        env.push((MARKER_VAR.into(), self.marker()));
        env.push(("PERGOLA_PROJECT".into(), spec.key.project.clone()));
        env.push(("PERGOLA_STAGE".into(), spec.key.stage.clone()));
        env.push(("PERGOLA_COMPONENT".into(), c.name.clone()));
        for volume in &c.storage {
            let dir = self.storage_dir(&spec.key, volume);
            std::fs::create_dir_all(&dir)?;
            let var = format!("PERGOLA_STORAGE_{}", volume.to_ascii_uppercase().replace('-', "_"));
            env.push((var, dir.display().to_string()));
        }
        std::fs::create_dir_all(tmp)?;
        env.push(("TMPDIR".into(), tmp.display().to_string()));
        let program = PathBuf::from(&c.command);
        let program =
            if program.is_relative() && c.command.contains('/') { spec.workdir.join(program) } else { program };
        Ok(Launch { program, args: c.args.clone(), workdir: spec.workdir.clone(), env })
    }
}

impl Runtime for LocalRuntime {
    async fn start(&self, spec: StageSpec, grace: Duration) -> Result<(), RuntimeError> {
        self.stop(&spec.key, grace).await;
        let run_id = Utc::now().timestamp_millis();
        let tmp_dir = self.data_dir.join("tmp").join(&spec.key.project).join(&spec.key.stage).join(run_id.to_string());
        let (stop, stop_rx) = watch::channel(None);
        let mut run = StageRun { components: Vec::new(), stop, services: Vec::new(), tmp_dir: tmp_dir.clone() };
        let mut taken = self.ports_in_use();
        for c in &spec.components {
            let port = if c.kind == ComponentKind::Service {
                let port = assign_port(c.port, &taken)
                    .map_err(|e| RuntimeError(format!("no free port for component '{}': {e}", c.name)))?;
                taken.push(port);
                Some(port)
            } else {
                None
            };
            let launch = self
                .launch(&spec, c, port, &tmp_dir.join(&c.name))
                .map_err(|e| RuntimeError(format!("cannot prepare component '{}': {e}", c.name)))?;
            let component = Arc::new(Component {
                name: c.name.clone(),
                key: spec.key.clone(),
                observed: Mutex::new(ComponentStatus {
                    name: c.name.clone(),
                    kind: c.kind,
                    port,
                    state: ComponentState::Starting,
                    health: Health::Unknown,
                    restarts: 0,
                    pid: None,
                    started_at: None,
                    exit_code: None,
                    uptime_secs: None,
                    kill_in_secs: None,
                    probes: Vec::new(),
                }),
                logs: Mutex::new(VecDeque::new()),
                kill_at: Mutex::new(None),
                events: self.events.clone(),
            });
            if let (Some(wanted), Some(port)) = (c.port, port) {
                if wanted != port {
                    component
                        .log("pergola", format!("port {wanted} is in use; listening on {port} instead (PORT={port})"));
                }
            }
            run.components.push(component.clone());
            match c.kind {
                ComponentKind::Service | ComponentKind::Worker => {
                    let task = tokio::spawn(supervise(component, launch, c.clone(), port, stop_rx.clone()));
                    run.services.push((c.name.clone(), task));
                }
                ComponentKind::Job => {
                    tokio::spawn(run_job(component, launch, None));
                }
                ComponentKind::Cron => {
                    let schedule = c.schedule.clone().unwrap_or_default();
                    let parsed =
                        Schedule::parse(&schedule).map_err(|e| RuntimeError(format!("component '{}': {e}", c.name)))?;
                    component.update(|s| s.state = ComponentState::Scheduled);
                    component.log("pergola", format!("scheduled: {schedule}"));
                    tokio::spawn(run_cron(component, launch, parsed, self.cron.clone(), stop_rx.clone()));
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
                return StopReport { terminated: vec![], killed: vec![] };
            };
            let _ = run.stop.send(Some(grace));
            (std::mem::take(&mut run.services), run.tmp_dir.clone())
        };
        let mut report = StopReport { terminated: vec![], killed: vec![] };
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
            let running_job = c.observed.lock().expect("status lock").state == ComponentState::Running
                && !report.terminated.contains(&c.name)
                && !report.killed.contains(&c.name);
            if !running_job {
                let _ = std::fs::remove_dir_all(tmp_dir.join(&c.name));
            }
        }
        report
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
            .map(|c| c.logs.lock().expect("log lock").iter().cloned().collect())
            .unwrap_or_default()
    }
}

fn spawn(component: &Arc<Component>, launch: &Launch) -> std::io::Result<Child> {
    let mut command = Command::new(&launch.program);
    command
        .args(&launch.args)
        .current_dir(&launch.workdir)
        .env_clear()
        .envs(launch.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = command.spawn()?;
    if let Some(out) = child.stdout.take() {
        tokio::spawn(capture(component.clone(), "stdout", out));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(capture(component.clone(), "stderr", err));
    }
    let pid = child.id();
    component.update(|s| {
        s.state = ComponentState::Running;
        s.pid = pid;
        s.started_at = Some(Utc::now());
        s.exit_code = None;
    });
    Ok(child)
}

async fn capture(component: Arc<Component>, stream: &'static str, pipe: impl AsyncRead + Unpin) {
    let mut lines = BufReader::new(pipe).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        component.log(stream, line);
    }
}

fn signal_group(pid: Option<u32>, signal: libc::c_int) {
    if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
        // SAFETY: kill(2) with a negative pid signals the process group we created for the
        // component (process_group(0) makes its pid the group id); it touches no memory.
        unsafe {
            libc::kill(-pid, signal);
        }
    }
}

/// Keeps a service running until told to stop; then SIGTERM, grace period, SIGKILL.
async fn supervise(
    component: Arc<Component>,
    launch: Launch,
    spec: ComponentSpec,
    port: Option<u16>,
    mut stop: watch::Receiver<Option<Duration>>,
) -> Ending {
    let mut quick_crashes = 0u32;
    let mut after_crash = false;
    loop {
        if stop.borrow().is_some() {
            component.update(|s| s.state = ComponentState::Stopped);
            return Ending::Terminated;
        }
        component.update(|s| s.state = ComponentState::Starting);
        let mut child = match spawn(&component, &launch) {
            Ok(child) => child,
            Err(e) => {
                component.log("pergola", format!("cannot start '{}': {e}", launch.program.display()));
                component.update(|s| {
                    s.state = ComponentState::Crashed;
                    s.restarts += 1;
                });
                quick_crashes += 1;
                if wait_or_stop(&mut stop, backoff(quick_crashes)).await {
                    component.update(|s| s.state = ComponentState::Stopped);
                    return Ending::Terminated;
                }
                continue;
            }
        };
        let pid = child.id();
        let on_port = port.map(|p| format!(" on port {p}")).unwrap_or_default();
        if after_crash {
            let restarts = component.observed.lock().expect("status lock").restarts;
            component
                .event(EventKind::Restarted, format!("{} restarted{on_port} (restart {restarts})", component.name));
        } else {
            component.event(EventKind::Started, format!("{} started{on_port}", component.name));
        }
        let probe = spec.health.clone().zip(port).map(|(check, port)| {
            let component = component.clone();
            tokio::spawn(async move {
                loop {
                    let ok = http_ok(port, &check.path, Duration::from_secs(2)).await;
                    component.probed(ok);
                    tokio::time::sleep(Duration::from_secs(u64::from(check.interval_secs))).await;
                }
            })
        });
        let started = tokio::time::Instant::now();
        let outcome = tokio::select! {
            status = child.wait() => Err(status),
            _ = stop.changed() => Ok(*stop.borrow()),
        };
        if let Some(probe) = probe {
            probe.abort();
        }
        match outcome {
            Err(status) => {
                let code = status.ok().and_then(|s| s.code());
                signal_group(pid, libc::SIGKILL); // leftovers of the crashed process
                after_crash = true;
                quick_crashes = if started.elapsed() > Duration::from_secs(30) { 1 } else { quick_crashes + 1 };
                let how = code.map_or("a signal".into(), |c| format!("code {c}"));
                let delay = backoff(quick_crashes);
                component.event(
                    EventKind::Crashed,
                    format!("{} exited with {how}; restarting in {} ms", component.name, delay.as_millis()),
                );
                component.update(|s| {
                    s.state = ComponentState::Crashed;
                    s.health = Health::Unknown;
                    s.restarts += 1;
                    s.exit_code = code;
                    s.pid = None;
                });
                if wait_or_stop(&mut stop, delay).await {
                    component.update(|s| s.state = ComponentState::Stopped);
                    return Ending::Terminated;
                }
            }
            Ok(grace) => {
                let grace = grace.unwrap_or_default();
                *component.kill_at.lock().expect("kill lock") =
                    Some(Utc::now() + chrono::Duration::from_std(grace).unwrap_or_default());
                component.update(|s| s.state = ComponentState::Stopping);
                component.log("pergola", format!("SIGTERM sent; SIGKILL in {} s if still running", grace.as_secs()));
                signal_group(pid, libc::SIGTERM);
                let ending = match tokio::time::timeout(grace, child.wait()).await {
                    Ok(_) => Ending::Terminated,
                    Err(_) => {
                        component.event(
                            EventKind::Killed,
                            format!(
                                "{} was still running after the {} s grace period; killed",
                                component.name,
                                grace.as_secs()
                            ),
                        );
                        Ending::Killed
                    }
                };
                *component.kill_at.lock().expect("kill lock") = None;
                signal_group(pid, libc::SIGKILL);
                let status = child.wait().await.ok();
                component.update(|s| {
                    s.state = ComponentState::Stopped;
                    s.health = Health::Unknown;
                    s.pid = None;
                    s.exit_code = status.and_then(|s| s.code());
                });
                return ending;
            }
        }
    }
}

/// Sleeps `delay` unless told to stop first; true when told to stop.
async fn wait_or_stop(stop: &mut watch::Receiver<Option<Duration>>, delay: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(delay) => stop.borrow().is_some(),
        _ = stop.changed() => true,
    }
}

fn backoff(quick_crashes: u32) -> Duration {
    (Duration::from_millis(100) * 2u32.saturating_pow(quick_crashes.saturating_sub(1).min(10))).min(MAX_BACKOFF)
}

/// Starts a run of a cron component whenever its schedule matches, while the stage runs. A
/// run already started is not stopped by a suspend; a run still going when the next one is
/// due makes that one skip.
async fn run_cron(
    component: Arc<Component>,
    launch: Launch,
    schedule: Schedule,
    timing: CronTiming,
    mut stop: watch::Receiver<Option<Duration>>,
) {
    let mut last_minute = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(timing.delay()) => {}
            _ = stop.changed() => {}
        }
        if stop.borrow().is_some() {
            // A run already started goes on; an idle schedule just stops.
            component.update(|s| {
                if s.state != ComponentState::Running {
                    s.state = ComponentState::Stopped;
                }
            });
            return;
        }
        let now = (timing.now)();
        let minute = now.timestamp() / 60;
        if last_minute == Some(minute) || !schedule.matches(now) {
            continue;
        }
        last_minute = Some(minute);
        if component.observed.lock().expect("status lock").state == ComponentState::Running {
            component.log("pergola", "the previous run is still going; this run is skipped".into());
            continue;
        }
        component.log("pergola", format!("scheduled run at {}", now.format("%Y-%m-%d %H:%M UTC")));
        tokio::spawn(run_job(component.clone(), launch.clone(), Some(stop.clone())));
    }
}

/// Runs a job once, to completion; it is not stopped by a suspend. A cron run (`schedule` is
/// its stage's stop signal) goes back to "scheduled" afterwards, or "stopped" if the stage
/// stopped meanwhile.
async fn run_job(component: Arc<Component>, launch: Launch, schedule: Option<watch::Receiver<Option<Duration>>>) {
    let tmp = launch.env.iter().find(|(k, _)| k == "TMPDIR").map(|(_, v)| PathBuf::from(v));
    let code = match spawn(&component, &launch) {
        Ok(mut child) => child.wait().await.ok().and_then(|s| s.code()),
        Err(e) => {
            component.log("pergola", format!("cannot start '{}': {e}", launch.program.display()));
            None
        }
    };
    let cron = component.observed.lock().expect("status lock").kind == ComponentKind::Cron;
    match code {
        Some(0) if cron => {}
        Some(0) => component.event(EventKind::Completed, format!("{} completed", component.name)),
        Some(c) => component.event(EventKind::Crashed, format!("{} failed with code {c}", component.name)),
        None => component.event(EventKind::Crashed, format!("{} did not run to completion", component.name)),
    }
    let after = match &schedule {
        None => ComponentState::Completed,
        Some(stop) if stop.borrow().is_some() => ComponentState::Stopped,
        Some(_) => ComponentState::Scheduled,
    };
    component.update(|s| {
        s.state = after;
        s.exit_code = code;
        s.pid = None;
    });
    if let Some(tmp) = tmp {
        let _ = std::fs::remove_dir_all(tmp);
    }
}

/// The preferred port when it is free (not given to another component, nothing listening on
/// it), else a free one the system picks.
fn assign_port(preferred: Option<u16>, taken: &[u16]) -> std::io::Result<u16> {
    if let Some(port) = preferred.filter(|p| !taken.contains(p)) {
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    loop {
        let port = std::net::TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port();
        if !taken.contains(&port) {
            return Ok(port);
        }
    }
}

/// The process groups of the processes whose environment holds `marker` (`NAME=value`).
fn orphan_groups(marker: &str) -> Vec<u32> {
    let own = std::process::id();
    let mut groups: Vec<u32> = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else { return groups };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        if pid == own {
            continue;
        }
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else { continue };
        if !environ.split(|b| *b == 0).any(|var| var == marker.as_bytes()) {
            continue;
        }
        // /proc/<pid>/stat: "pid (comm) state ppid pgrp …"; comm may hold spaces and ')'.
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        let Some(pgrp) = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(2))
            .and_then(|g| g.parse::<u32>().ok())
        else {
            continue;
        };
        let zombie = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next()) == Some("Z");
        if !zombie && pgrp > 1 && !groups.contains(&pgrp) {
            groups.push(pgrp);
        }
    }
    groups
}
