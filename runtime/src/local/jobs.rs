//! Jobs (run once per start, to completion) and cron components (a job run whenever their
//! schedule matches, while the stage runs).

use super::component::Component;
use super::launch::Launch;
use super::process::spawn;
use super::StopSignal;
use crate::ComponentState;
use chrono::Utc;
use pergola_domain::{ComponentKind, EventKind, Schedule};
use std::sync::Arc;
use std::time::Duration;

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

/// Starts a run of a cron component whenever its schedule matches, while the stage runs. A
/// run already started is not stopped by a suspend; a run still going when the next one is
/// due makes that one skip.
pub(super) async fn run_cron(
    component: Arc<Component>,
    launch: Launch,
    schedule: Schedule,
    timing: CronTiming,
    mut stop: StopSignal,
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
        if component.read(|s| s.state) == ComponentState::Running {
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
pub(super) async fn run_job(component: Arc<Component>, launch: Launch, schedule: Option<StopSignal>) {
    let tmp = launch.tmp.clone();
    let code = match spawn(&component, &launch) {
        Ok(mut child) => child.wait().await.ok().and_then(|s| s.code()),
        Err(e) => {
            component.log("pergola", format!("cannot start '{}': {e}", launch.program.display()));
            None
        }
    };
    // Its cgroups go with its last process (the next cron run makes them again).
    launch.limits.release();
    let cron = component.read(|s| s.kind) == ComponentKind::Cron;
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
    let _ = std::fs::remove_dir_all(tmp);
}
