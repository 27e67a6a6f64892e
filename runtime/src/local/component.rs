//! A component of a running stage: what is observed of it (status, health probes, the last
//! output lines) and the events it reports.

use crate::{ComponentState, ComponentStatus, Health, LogLine, LOG_LINES};
use chrono::{DateTime, Utc};
use pergola_core::{EventSink, StageKey};
use pergola_domain::runtime::{Probe, PROBE_HISTORY};
use pergola_domain::{ComponentKind, EventKind, StageEvent};
use std::collections::VecDeque;
use std::sync::atomic::AtomicBool;
use std::sync::Mutex;

/// The number of the last line any component printed: a line's number (`seq`,
/// [`pergola_domain::runtime::line_number`]) is unique and grows, also across restarts,
/// releases and the server's restarts, so a follower that asks for the lines after the last one
/// it saw misses none when the component is replaced.
static LAST_LINE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Whether a process of the component runs (started and not yet reaped, or stopping).
pub(super) fn has_process(s: &ComponentStatus) -> bool {
    matches!(s.state, ComponentState::Running | ComponentState::Stopping) && s.pid.is_some()
}

/// The number of a line printed now, at `at`.
fn number_line(at: DateTime<Utc>) -> u64 {
    use std::sync::atomic::Ordering::Relaxed;
    let mut number = 0;
    let _ = LAST_LINE.fetch_update(Relaxed, Relaxed, |last| {
        number = pergola_domain::runtime::line_number(last, at);
        Some(number)
    });
    number
}

/// Failed health probes in a row before a starting service counts as unhealthy.
const STARTUP_PROBES: usize = 3;

pub(super) struct Component {
    pub(super) name: String,
    key: StageKey,
    observed: Mutex<ComponentStatus>,
    logs: Mutex<VecDeque<LogLine>>,
    /// While stopping: when SIGKILL follows.
    kill_at: Mutex<Option<DateTime<Utc>>>,
    events: Option<EventSink>,
    /// A cron component: whether its schedule is being followed (a run that ends then goes
    /// back to "scheduled", else to "stopped").
    pub(super) scheduled: AtomicBool,
    /// The tasks reading its current process's stdout and stderr into the log.
    readers: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

/// How long the end of a process waits for what it wrote to reach the log: a process it left
/// behind (out of its group) may hold its pipes open.
const OUTPUT_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

impl Component {
    /// A component about to start (or, for cron, to be scheduled).
    pub(super) fn new(
        key: StageKey,
        name: &str,
        kind: ComponentKind,
        port: Option<u16>,
        events: Option<EventSink>,
    ) -> Self {
        Component {
            name: name.to_owned(),
            key,
            observed: Mutex::new(ComponentStatus::new(name, kind, port, ComponentState::Starting)),
            logs: Mutex::new(VecDeque::new()),
            kill_at: Mutex::new(None),
            events,
            scheduled: AtomicBool::new(false),
            readers: Mutex::new(Vec::new()),
        }
    }

    /// The tasks reading a process just started into the log.
    pub(super) fn reading(&self, readers: Vec<tokio::task::JoinHandle<()>>) {
        *self.readers.lock().expect("readers lock") = readers;
    }

    /// Waits until what its process wrote before it ended is in the log (at most
    /// [`OUTPUT_WAIT`]), so that Pergola's line on how it ended (crashed, completed) comes after
    /// its own last lines — a traceback before "exited with code 1".
    pub(super) async fn output_read(&self) {
        let readers = std::mem::take(&mut *self.readers.lock().expect("readers lock"));
        let until = tokio::time::Instant::now() + OUTPUT_WAIT;
        for reader in readers {
            let _ = tokio::time::timeout_at(until, reader).await;
        }
    }

    pub(super) fn update(&self, f: impl FnOnce(&mut ComponentStatus)) {
        f(&mut self.observed.lock().expect("status lock"));
    }

    /// Reads something of the status as it was last recorded.
    pub(super) fn read<T>(&self, f: impl FnOnce(&ComponentStatus) -> T) -> T {
        f(&self.observed.lock().expect("status lock"))
    }

    /// While stopping: SIGKILL follows at `at` (`None`: no longer stopping).
    pub(super) fn set_kill_at(&self, at: Option<DateTime<Utc>>) {
        *self.kill_at.lock().expect("kill lock") = at;
    }

    /// Tells the events timeline (and the log) what happened.
    pub(super) fn event(&self, kind: EventKind, message: String) {
        self.log("pergola", message.clone());
        if let Some(events) = &self.events {
            events.send(self.key.clone(), StageEvent::of_component(Utc::now(), kind, &self.name, message));
        }
    }

    /// Records a health probe; a change of health is an event.
    pub(super) fn probed(&self, healthy: bool) {
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
    pub(super) fn observe(&self) -> ComponentStatus {
        let mut s = self.observed.lock().expect("status lock").clone();
        let now = Utc::now();
        let running = has_process(&s);
        s.uptime_secs = s.started_at.filter(|_| running).map(|t| (now - t).num_seconds().max(0) as u64);
        s.kill_in_secs = if s.state == ComponentState::Stopping {
            self.kill_at.lock().expect("kill lock").map(|t| (t - now).num_seconds().max(0) as u64)
        } else {
            None
        };
        s
    }

    pub(super) fn log(&self, stream: &str, line: String) {
        let mut logs = self.logs.lock().expect("log lock");
        if logs.len() == LOG_LINES {
            logs.pop_front();
        }
        // Numbered under the lock: the kept lines are in the order of their numbers.
        let at = Utc::now();
        let seq = number_line(at);
        logs.push_back(LogLine { at, stream: stream.to_owned(), line, seq });
    }

    /// What a page is sent of the lines after `after`, and whether that is all of them (only
    /// those are copied).
    pub(super) fn shown_after(&self, after: u64) -> (Vec<LogLine>, bool) {
        pergola_domain::logs::shown_after(&self.logs.lock().expect("log lock"), after)
    }

    /// The number of the newest line kept (0: none yet).
    pub(super) fn last_line(&self) -> u64 {
        self.logs.lock().expect("log lock").back().map_or(0, |l| l.seq)
    }

    /// The last output lines after line number `after` (0: all that are kept), oldest first.
    pub(super) fn logs_after(&self, after: u64) -> Vec<LogLine> {
        let logs = self.logs.lock().expect("log lock");
        let first = logs.partition_point(|l| l.seq <= after);
        logs.range(first..).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_follower_gets_each_line_once_across_a_replaced_component() {
        let key = StageKey::new("p", "dev");
        let old = Component::new(key.clone(), "web", ComponentKind::Service, None, None);
        old.log("stdout", "one".into());
        old.log("stdout", "two".into());
        let seen = old.logs_after(0);
        assert_eq!(seen.iter().map(|l| l.line.as_str()).collect::<Vec<_>>(), ["one", "two"]);
        let last = seen.last().unwrap().seq;
        assert!(old.logs_after(last).is_empty());
        old.log("stderr", "three".into());
        assert_eq!(old.logs_after(last).iter().map(|l| l.line.as_str()).collect::<Vec<_>>(), ["three"]);
        // A new release's component starts numbering after every line printed before.
        let new = Component::new(key, "web", ComponentKind::Service, None, None);
        new.log("stdout", "fresh".into());
        assert_eq!(new.logs_after(last).iter().map(|l| l.line.as_str()).collect::<Vec<_>>(), ["fresh"]);
    }

    #[test]
    fn only_the_last_lines_are_kept_and_their_numbers_go_on() {
        let c = Component::new(StageKey::new("p", "dev"), "web", ComponentKind::Worker, None, None);
        for n in 0..LOG_LINES + 5 {
            c.log("stdout", format!("line {n}"));
        }
        let kept = c.logs_after(0);
        assert_eq!(kept.len(), LOG_LINES);
        assert_eq!(kept[0].line, "line 5");
        assert!(kept.windows(2).all(|w| w[0].seq < w[1].seq));
        assert_eq!(c.logs_after(kept[LOG_LINES - 2].seq).len(), 1);
        assert_eq!(c.last_line(), kept[LOG_LINES - 1].seq);
        // A page is sent the newest 200, which are not all the lines after the first kept.
        let (shown, all) = c.shown_after(kept[0].seq);
        assert_eq!((shown.len(), all), (pergola_domain::logs::LINES_SHOWN, false));
        assert_eq!(shown.last(), kept.last());
        assert_eq!(c.shown_after(kept[LOG_LINES - 3].seq), (kept[LOG_LINES - 2..].to_vec(), true));
    }

    #[tokio::test]
    async fn the_end_of_a_process_waits_for_its_last_output() {
        let c =
            std::sync::Arc::new(Component::new(StageKey::new("p", "dev"), "web", ComponentKind::Worker, None, None));
        // A reader still busy with the last bytes the process wrote before it ended.
        let reader = {
            let c = c.clone();
            tokio::spawn(async move {
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                c.log("stderr", "Traceback: the last words".into());
            })
        };
        c.reading(vec![reader]);
        c.output_read().await;
        assert_eq!(c.logs_after(0).last().map(|l| l.line.as_str()), Some("Traceback: the last words"));
        // A reader that never ends (a process left behind holds the pipe) is waited for 1 s.
        c.reading(vec![tokio::spawn(std::future::pending())]);
        let started = std::time::Instant::now();
        c.output_read().await;
        let waited = started.elapsed();
        assert!(
            waited >= std::time::Duration::from_millis(900) && waited < std::time::Duration::from_secs(2),
            "{waited:?}"
        );
    }

    #[test]
    fn line_numbers_grow_across_a_server_restart() {
        // A restarted server numbers from the time: its first line is numbered after every
        // line the server before it printed (fewer than one a microsecond).
        let c = Component::new(StageKey::new("p", "dev"), "web", ComponentKind::Worker, None, None);
        let before = Utc::now();
        c.log("stdout", "after the restart".into());
        let seq = c.logs_after(0)[0].seq;
        assert!(seq >= u64::try_from(before.timestamp_micros()).unwrap(), "{seq}");
    }
}
