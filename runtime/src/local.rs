//! [`LocalRuntime`]: components as child processes of the server, each in its own process group.

use crate::probe::http_ok;
use crate::{
    ComponentState, ComponentStatus, Health, LogLine, Runtime, RuntimeError, StageKey, StageSpec,
    StopReport, LOG_LINES,
};
use chrono::Utc;
use pergola_domain::{ComponentKind, ComponentSpec, Schedule};
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Longest wait between two restarts of a crashing service.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Variables of the server's own environment that components inherit; nothing else leaks
/// (the server's `DATABASE_URL`, for one, must not).
const INHERITED_ENV: &[&str] = &["PATH", "HOME", "LANG", "LC_ALL", "TZ"];

pub struct LocalRuntime {
    data_dir: PathBuf,
    stages: Mutex<HashMap<StageKey, StageRun>>,
    cron: CronTiming,
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
    observed: Mutex<ComponentStatus>,
    logs: Mutex<VecDeque<LogLine>>,
}

impl Component {
    fn update(&self, f: impl FnOnce(&mut ComponentStatus)) {
        f(&mut self.observed.lock().expect("status lock"));
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
        }
    }

    /// Checks cron schedules every `tick` against the time `now` tells (for tests; by default
    /// schedules are checked at every minute of the system clock).
    pub fn with_cron_timing(mut self, tick: Duration, now: impl Fn() -> chrono::DateTime<Utc> + Send + Sync + 'static) -> Self {
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

    fn launch(&self, spec: &StageSpec, c: &ComponentSpec, tmp: &Path) -> std::io::Result<Launch> {
        let mut env: Vec<(String, String)> = INHERITED_ENV
            .iter()
            .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v)))
            .collect();
        env.extend(c.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        env.extend(spec.config.iter().map(|(k, v)| (k.clone(), v.clone())));
        if let Some(port) = c.port {
            env.push(("PORT".into(), port.to_string()));
        }
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
        let program = if program.is_relative() && c.command.contains('/') { spec.workdir.join(program) } else { program };
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
        for c in &spec.components {
            let launch = self
                .launch(&spec, c, &tmp_dir.join(&c.name))
                .map_err(|e| RuntimeError(format!("cannot prepare component '{}': {e}", c.name)))?;
            let component = Arc::new(Component {
                name: c.name.clone(),
                observed: Mutex::new(ComponentStatus {
                    name: c.name.clone(),
                    kind: c.kind,
                    port: c.port,
                    state: ComponentState::Starting,
                    health: Health::Unknown,
                    restarts: 0,
                    pid: None,
                    started_at: None,
                    exit_code: None,
                }),
                logs: Mutex::new(VecDeque::new()),
            });
            run.components.push(component.clone());
            match c.kind {
                ComponentKind::Service => {
                    let task = tokio::spawn(supervise(component, launch, c.clone(), stop_rx.clone()));
                    run.services.push((c.name.clone(), task));
                }
                ComponentKind::Job => {
                    tokio::spawn(run_job(component, launch));
                }
                ComponentKind::Cron => {
                    let schedule = c.schedule.clone().unwrap_or_default();
                    let parsed = Schedule::parse(&schedule)
                        .map_err(|e| RuntimeError(format!("component '{}': {e}", c.name)))?;
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
        let components: Vec<_> = self.stages.lock().expect("stages lock").get(key).map(|r| r.components.clone()).unwrap_or_default();
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
        stages
            .get(key)
            .map(|run| run.components.iter().map(|c| c.observed.lock().expect("status lock").clone()).collect())
            .unwrap_or_default()
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
    mut stop: watch::Receiver<Option<Duration>>,
) -> Ending {
    let mut quick_crashes = 0u32;
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
        let probe = spec.health.clone().zip(spec.port).map(|(check, port)| {
            let component = component.clone();
            tokio::spawn(async move {
                loop {
                    let ok = http_ok(port, &check.path, Duration::from_secs(2)).await;
                    component.update(|s| s.health = if ok { Health::Healthy } else { Health::Unhealthy });
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
                component.log("pergola", format!("exited with {}; restarting", code.map_or("a signal".into(), |c| format!("code {c}"))));
                component.update(|s| {
                    s.state = ComponentState::Crashed;
                    s.health = Health::Unknown;
                    s.restarts += 1;
                    s.exit_code = code;
                    s.pid = None;
                });
                quick_crashes = if started.elapsed() > Duration::from_secs(30) { 1 } else { quick_crashes + 1 };
                if wait_or_stop(&mut stop, backoff(quick_crashes)).await {
                    component.update(|s| s.state = ComponentState::Stopped);
                    return Ending::Terminated;
                }
            }
            Ok(grace) => {
                let grace = grace.unwrap_or_default();
                component.update(|s| s.state = ComponentState::Stopping);
                signal_group(pid, libc::SIGTERM);
                let ending = match tokio::time::timeout(grace, child.wait()).await {
                    Ok(_) => Ending::Terminated,
                    Err(_) => {
                        component.log("pergola", format!("still running after the {grace:?} grace period; killed"));
                        Ending::Killed
                    }
                };
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
        tokio::spawn(run_job(component.clone(), launch.clone()));
    }
}

/// Runs a job once, to completion; it is not stopped by a suspend.
async fn run_job(component: Arc<Component>, launch: Launch) {
    let tmp = launch.env.iter().find(|(k, _)| k == "TMPDIR").map(|(_, v)| PathBuf::from(v));
    let code = match spawn(&component, &launch) {
        Ok(mut child) => child.wait().await.ok().and_then(|s| s.code()),
        Err(e) => {
            component.log("pergola", format!("cannot start '{}': {e}", launch.program.display()));
            None
        }
    };
    component.update(|s| {
        s.state = ComponentState::Completed;
        s.exit_code = code;
        s.pid = None;
    });
    if let Some(tmp) = tmp {
        let _ = std::fs::remove_dir_all(tmp);
    }
}
