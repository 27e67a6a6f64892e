//! Services and workers: kept running (restarted with back-off when they exit, health-probed)
//! until told to stop; then SIGTERM, grace period, SIGKILL.

use super::component::Component;
use super::launch::Launch;
use super::process::{kill_all, signal_group, spawn, terminate};
use super::StopSignal;
use crate::probe::http_ok;
use crate::{ComponentState, Health};
use chrono::Utc;
use pergola_domain::{ComponentSpec, EventKind};
use std::sync::Arc;
use std::time::Duration;

/// Longest wait between two restarts of a crashing service.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// How a service supervisor ended.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Ending {
    Terminated,
    Killed,
}

/// Keeps a service running until told to stop; then SIGTERM, grace period, SIGKILL. Its first
/// process starts at once (before the returned supervisor runs), so what the runtime observes
/// of a stage's start is reported by the time `start` returns.
pub(super) fn supervise(
    component: Arc<Component>,
    launch: Launch,
    spec: ComponentSpec,
    port: Option<u16>,
    mut stop: StopSignal,
) -> impl std::future::Future<Output = Ending> {
    let first = start_process(&component, &launch, port, false);
    async move {
        let mut first = Some(first);
        let mut quick_crashes = 0u32;
        let mut after_crash = false;
        loop {
            let attempt = match first.take() {
                Some(attempt) => attempt,
                None => {
                    if stop.borrow().is_some() {
                        component.update(|s| s.state = ComponentState::Stopped);
                        return Ending::Terminated;
                    }
                    start_process(&component, &launch, port, after_crash)
                }
            };
            let Some(mut child) = attempt else {
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
            };
            let pid = child.id();
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
                    // Leftovers of the crashed process (a sandbox ended with its process).
                    signal_group(pid, libc::SIGKILL);
                    component.output_read().await;
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
                Ok(grace) => return stop_process(&component, &mut child, launch.sandbox.is_some(), grace).await,
            }
        }
    }
}

/// Stops a component's running `child` (not reaped yet) as the stage's stop asks, `grace`
/// (`None`: at once): SIGTERM (sandboxed: to every process in its sandbox), up to `grace`,
/// then SIGKILL to what is left; what remains of its process group is killed either way. The
/// component is observed "stopping" (with the seconds left before SIGKILL), then "stopped".
/// Services, workers, jobs and cron runs all stop this way.
pub(super) async fn stop_process(
    component: &Component,
    child: &mut tokio::process::Child,
    sandboxed: bool,
    grace: Option<Duration>,
) -> Ending {
    let pid = child.id();
    let grace = grace.unwrap_or_default();
    component.set_kill_at(Some(Utc::now() + chrono::Duration::from_std(grace).unwrap_or_default()));
    component.update(|s| s.state = ComponentState::Stopping);
    component.log("pergola", format!("SIGTERM sent; SIGKILL in {} s if still running", grace.as_secs()));
    terminate(pid, sandboxed);
    let ending = match tokio::time::timeout(grace, child.wait()).await {
        Ok(_) => Ending::Terminated,
        Err(_) => {
            // Not reaped yet: `pid` is still the component's.
            kill_all(pid, sandboxed).await;
            component.event(
                EventKind::Killed,
                format!("{} was still running after the {} s grace period; killed", component.name, grace.as_secs()),
            );
            Ending::Killed
        }
    };
    component.set_kill_at(None);
    // What is left in its group (a sandbox ended with its process).
    signal_group(pid, libc::SIGKILL);
    let status = child.wait().await.ok();
    component.update(|s| {
        s.state = ComponentState::Stopped;
        s.health = Health::Unknown;
        s.pid = None;
        s.exit_code = status.and_then(|s| s.code());
    });
    ending
}

/// Starts the component's process; false (logged) when it could not be started. A start is
/// an event: "started", or "restarted" after a crash.
fn start_process(
    component: &Arc<Component>,
    launch: &Launch,
    port: Option<u16>,
    after_crash: bool,
) -> Option<tokio::process::Child> {
    component.update(|s| s.state = ComponentState::Starting);
    let child = match spawn(component, launch) {
        Ok(child) => child,
        Err(e) => {
            component.log("pergola", format!("cannot start '{}': {e}", launch.program.display()));
            return None;
        }
    };
    let on_port = port.map(|p| format!(" on port {p}")).unwrap_or_default();
    if after_crash {
        let restarts = component.read(|s| s.restarts);
        component.event(EventKind::Restarted, format!("{} restarted{on_port} (restart {restarts})", component.name));
    } else {
        component.event(EventKind::Started, format!("{} started{on_port}", component.name));
    }
    Some(child)
}

/// Sleeps `delay` unless told to stop first; true when told to stop.
async fn wait_or_stop(stop: &mut StopSignal, delay: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(delay) => stop.borrow().is_some(),
        _ = stop.changed() => true,
    }
}

fn backoff(quick_crashes: u32) -> Duration {
    (Duration::from_millis(100) * 2u32.saturating_pow(quick_crashes.saturating_sub(1).min(10))).min(MAX_BACKOFF)
}
