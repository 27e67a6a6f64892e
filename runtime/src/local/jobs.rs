//! Jobs (run once per release, to completion) and cron components (a job run whenever their
//! schedule matches, while the stage runs), tracked like services.
//!
//! - Every job run and cron run is a task of its release's [`Runs`]. A suspend lets it go on to
//!   completion; a halt (the stage is deleted, another release replaces it, it is purged, the
//!   server shuts down) stops it the way services stop (SIGTERM, the grace period, SIGKILL:
//!   [`stop_process`]) and waits for it. A start of the same release (a resume) keeps the
//!   runs still going.
//! - When a run's process ends, what is left of its process group is killed (sandboxed, its
//!   sandbox's PID namespace ended with it, and every process in it).
//! - Each run gets a fresh, empty temporary directory (`TMPDIR`; `/tmp` in the sandbox),
//!   deleted when the run ends.
//! - A job runs once per release. Before it starts, the runtime records it under its data
//!   directory (`jobs/<project>/<stage>/<release>/<job>`: `started`, then how it ended); a
//!   start of the same release (resume, restore, server restart) finds the record and does not
//!   run it again: the component shows "completed", and its log says it already ran and how.
//!   A new release runs it again. A purge deletes the records with the stage.

use super::component::Component;
use super::launch::Launch;
use super::process::{signal_group, spawn};
use super::supervise::{stop_process, Ending};
use super::StopSignal;
use crate::ComponentState;
use chrono::Utc;
use pergola_domain::{ComponentKind, EventKind, Schedule};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// When cron schedules are checked, and what time it is then.
#[derive(Clone)]
pub(super) struct CronTiming {
    /// `None`: at every wall-clock minute; `Some(d)`: every `d` (tests).
    pub(super) tick: Option<Duration>,
    pub(super) now: Arc<dyn Fn() -> chrono::DateTime<Utc> + Send + Sync>,
}

impl CronTiming {
    fn delay(&self) -> Duration {
        self.tick.unwrap_or_else(|| {
            let into_minute = (self.now)().timestamp_millis().rem_euclid(60_000) as u64;
            Duration::from_millis(60_000 - into_minute + 50)
        })
    }
}

/// A run's task: `Some` when the run was stopped (how), `None` when it ended on its own.
type RunTask = (String, JoinHandle<Option<Ending>>);

/// The job runs and cron runs of a stage's release.
pub(super) struct Runs {
    /// `Some(grace)`: every run stops (SIGTERM, `grace`, SIGKILL), and none starts any more.
    halt: watch::Sender<Option<Duration>>,
    tasks: Mutex<Vec<RunTask>>,
}

impl Runs {
    pub(super) fn new() -> Arc<Self> {
        Arc::new(Runs { halt: watch::channel(None).0, tasks: Mutex::new(Vec::new()) })
    }

    /// Whether they were halted (no run starts any more).
    pub(super) fn halted(&self) -> bool {
        self.halt.borrow().is_some()
    }

    /// Starts `run` as a tracked task (not once halted).
    pub(super) fn spawn(&self, run: JobRun) {
        let mut tasks = self.tasks.lock().expect("runs lock");
        if self.halted() {
            return;
        }
        tasks.retain(|(_, task)| !task.is_finished());
        let name = run.component.name.clone();
        tasks.push((name, tokio::spawn(run_job(run, self.halt.subscribe()))));
    }

    /// Tells every run to stop within `grace` (and none to start any more); the runs to wait for.
    pub(super) fn halt(&self, grace: Duration) -> Vec<RunTask> {
        let mut tasks = self.tasks.lock().expect("runs lock");
        self.halt.send_replace(Some(grace));
        std::mem::take(&mut *tasks)
    }
}

/// A job's run, or a cron component's.
pub(super) struct JobRun {
    pub(super) component: Arc<Component>,
    pub(super) launch: Launch,
    /// A job: where its run for the release is recorded ([`record`]); `None` for a cron run.
    pub(super) record: Option<PathBuf>,
}

/// Records `what` of a job's run for its release at `path` (see [`recorded`]).
pub(super) fn record(path: &Path, what: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, format!("{what}\n"))
}

/// What a job's record at `path` says of its run (`None`: it has not run for this release):
/// its exit code, if it exited, and how it went, in words.
pub(super) fn recorded(path: &Path) -> Option<(Option<i32>, String)> {
    let line = std::fs::read_to_string(path).ok()?;
    let line = line.trim();
    let code = line.strip_prefix("exit ").and_then(|c| c.parse::<i32>().ok());
    let how = match (code, line) {
        (Some(code), _) => format!("exit code {code}"),
        (None, "signal") => "ended by a signal".into(),
        (None, "stopped") => {
            "stopped before it ended, when its stage was deleted or replaced or the server stopped".into()
        }
        (None, "unstartable") => "it could not be started".into(),
        _ => "started; the server stopped before it ended".into(),
    };
    Some((code, how))
}

/// Starts a run of a cron component whenever its schedule matches, until the stage stops (its
/// `stop` signal). The runs are `runs`': a run already started is not stopped by a suspend; a
/// run still going when the next one is due makes that one skip.
pub(super) async fn run_cron(
    component: Arc<Component>,
    launch: Launch,
    schedule: Schedule,
    timing: CronTiming,
    mut stop: StopSignal,
    runs: Arc<Runs>,
) {
    component.scheduled.store(true, Ordering::SeqCst);
    let mut last_minute = None;
    loop {
        let stopped = tokio::select! {
            _ = tokio::time::sleep(timing.delay()) => stop.borrow().is_some(),
            // The stage's run is gone (`Err`) or told to stop.
            changed = stop.changed() => changed.is_err() || stop.borrow().is_some(),
        };
        if stopped || runs.halted() {
            // A run already started goes on (unless halted); an idle schedule just stops.
            component.scheduled.store(false, Ordering::SeqCst);
            component.update(|s| {
                if !matches!(s.state, ComponentState::Running | ComponentState::Stopping) {
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
        if matches!(component.read(|s| s.state), ComponentState::Running | ComponentState::Stopping) {
            component.log("pergola", "the previous run is still going; this run is skipped".into());
            continue;
        }
        component.log("pergola", format!("scheduled run at {}", now.format("%Y-%m-%d %H:%M UTC")));
        runs.spawn(JobRun { component: component.clone(), launch: launch.clone(), record: None });
    }
}

/// Runs a job (or a cron run) once, in a fresh temporary directory, to completion unless
/// `halt` says to stop; what its process leaves in its group is killed when it ends. Returns
/// how it was stopped (`None`: it ended on its own). A job then is "completed"; a cron
/// component goes back to "scheduled", or "stopped" if its schedule stopped meanwhile.
async fn run_job(run: JobRun, mut halt: StopSignal) -> Option<Ending> {
    let JobRun { component, launch, record: record_at } = run;
    let cron = component.read(|s| s.kind) == ComponentKind::Cron;
    let note = |what: &str| {
        if let Some(path) = &record_at {
            if let Err(e) = record(path, what) {
                tracing::warn!(path = %path.display(), error = %e, "cannot record how a job ended");
            }
        }
    };
    let started = fresh_dir(&launch.tmp).and_then(|()| spawn(&component, &launch));
    let mut child = match started {
        Ok(child) => child,
        Err(e) => {
            let message = format!("{} could not be started ('{}'): {e}", component.name, launch.program.display());
            component.event(EventKind::Crashed, message);
            note("unstartable");
            finished(&component, cron, None);
            remove_tmp(&launch.tmp);
            return None;
        }
    };
    let pid = child.id();
    let outcome = tokio::select! {
        status = child.wait() => Ok(status.ok()),
        grace = halted(&mut halt) => Err(grace),
    };
    let ending = match outcome {
        Ok(status) => {
            // What its process left behind in its group (a sandbox ended with its process).
            signal_group(pid, libc::SIGKILL);
            component.output_read().await;
            let code = status.and_then(|s| s.code());
            match code {
                Some(0) if cron => {}
                Some(0) => component.event(EventKind::Completed, format!("{} completed", component.name)),
                Some(c) => component.event(EventKind::Crashed, format!("{} failed with code {c}", component.name)),
                None => component.event(EventKind::Crashed, format!("{} did not run to completion", component.name)),
            }
            note(&code.map_or("signal".to_owned(), |c| format!("exit {c}")));
            finished(&component, cron, code);
            None
        }
        Err(grace) => {
            let ending = stop_process(&component, &mut child, launch.sandbox.is_some(), Some(grace)).await;
            note("stopped");
            Some(ending)
        }
    };
    // Its cgroups go with its last process (the next run makes them again).
    launch.limits.release();
    remove_tmp(&launch.tmp);
    ending
}

/// A run that ended on its own: a job is completed; a cron component is scheduled again, or
/// stopped if its schedule stopped (decided under the status lock, so a schedule stopping at
/// the same moment is seen).
fn finished(component: &Component, cron: bool, code: Option<i32>) {
    component.update(|s| {
        s.state = match cron {
            false => ComponentState::Completed,
            true if component.scheduled.load(Ordering::SeqCst) => ComponentState::Scheduled,
            true => ComponentState::Stopped,
        };
        s.exit_code = code;
        s.pid = None;
    });
}

/// Waits until the runs are halted; their grace period. If the runs are gone without a halt
/// (which a stage's runtime never does), at once: nothing runs untracked.
async fn halted(halt: &mut StopSignal) -> Duration {
    loop {
        if let Some(grace) = *halt.borrow_and_update() {
            return grace;
        }
        if halt.changed().await.is_err() {
            return Duration::ZERO;
        }
    }
}

/// `dir`, new and empty (whatever was there is deleted).
fn fresh_dir(dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    std::fs::create_dir_all(dir)
}

/// Deletes a run's temporary directory, and the start's directory holding it once empty.
fn remove_tmp(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
    if let Some(parent) = dir.parent() {
        let _ = std::fs::remove_dir(parent);
    }
}
