//! The runtime seam: what actually runs a stage's components.
//!
//! The services (desired state, in the store) tell a [`Runtime`] to **start** a stage's current
//! release and to **stop** it, and ask it what it observes (`status`, `logs`); what it observes
//! on its own (starts, crashes, restarts, kills, health changes) it sends to the [`EventSink`]
//! the services hand it ([`Runtime::observe`]), and they record it in the stages' timelines.
//! The server calls [`crate::Services::reconcile`] at start-up so stages that should run are
//! started again.
//!
//! Implementations: `pergola_runtime::LocalRuntime` (processes on this machine) and
//! [`NoRuntime`] (records releases, runs nothing: the services' default).

use async_trait::async_trait;
use pergola_domain::runtime::{ComponentStatus, LogLine};
use pergola_domain::{ComponentSpec, Isolation, ResourceLimits, StageEvent, StageType};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Identifies a stage to the runtime.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StageKey {
    pub project: String,
    pub stage: String,
}

impl StageKey {
    pub fn new(project: &str, stage: &str) -> Self {
        Self { project: project.to_owned(), stage: stage.to_owned() }
    }
}

/// What should run for a stage: one of its releases.
#[derive(Clone, Debug)]
pub struct StageSpec {
    pub key: StageKey,
    /// The release this is (its number on the stage).
    pub release: i64,
    pub components: Vec<ComponentSpec>,
    /// The stage's configuration (secret values in clear), passed as environment variables.
    pub config: BTreeMap<String, String>,
    /// Where the commands run (the build's files).
    pub workdir: PathBuf,
    /// The limits of each component: its stage type's.
    pub limits: ResourceLimits,
    /// The stage's type (a cluster schedules PROD first).
    pub stage_type: StageType,
}

/// Mints the token with which whatever runs a release downloads its build from the control
/// plane (`GET …/releases/{n}/build`): given the stage and the release, a token that works for
/// a short while, or `None` when the server cannot mint one. The services hand one to their
/// runtime ([`Runtime::grant_builds`]).
pub type BuildMinter = Arc<dyn Fn(&StageKey, i64) -> Option<String> + Send + Sync>;

/// How far a [`Runtime::stop`] goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopMode {
    /// A suspend: services and workers stop (SIGTERM, the grace period, SIGKILL) and schedules
    /// stop at once, but jobs and cron runs already started go on to completion (the seed:
    /// "already started jobs are not affected and will run till completion").
    Suspend,
    /// Everything stops, jobs and cron runs already started too (SIGTERM, the grace period,
    /// SIGKILL): the stage is deleted, another release replaces it, it is purged, or the
    /// server shuts down.
    Halt,
}

/// How a stop went, per component stopped: services and workers, and with [`StopMode::Halt`]
/// the jobs and cron runs that were still going.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StopReport {
    /// Components that exited after SIGTERM within the grace period.
    pub terminated: Vec<String>,
    /// Components that were still running after the grace period and got SIGKILL.
    pub killed: Vec<String>,
    /// Components still running when the runtime stopped waiting for them (a cluster's pods
    /// that outlived the grace period and a margin: asked to stop, not yet gone).
    pub left: Vec<String>,
    /// Why the runtime could not ask the components to stop (a cluster that did not take the
    /// request); nothing was waited for. For the log only: the services ask again.
    pub refused: Option<String>,
}

/// A stop that was asked for and is being waited for ([`Runtime::ask_stop`]): `.await` it for
/// its [`StopReport`].
pub struct StopWait(std::pin::Pin<Box<dyn std::future::Future<Output = StopReport> + Send>>);

impl StopWait {
    /// Waits for `wait`.
    pub fn new(wait: impl std::future::Future<Output = StopReport> + Send + 'static) -> Self {
        Self(Box::pin(wait))
    }

    /// A stop already over.
    pub fn done(report: StopReport) -> Self {
        Self::new(std::future::ready(report))
    }
}

impl std::future::Future for StopWait {
    type Output = StopReport;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<StopReport> {
        self.0.as_mut().poll(cx)
    }
}

/// Why a runtime could not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// No port could be found for a service.
    #[error("no free port for component '{component}': {source}")]
    NoPort {
        component: String,
        #[source]
        source: std::io::Error,
    },
    /// A component could not be launched (its directories could not be created, or the process
    /// could not be spawned).
    #[error("cannot prepare component '{component}': {source}")]
    Launch {
        component: String,
        #[source]
        source: std::io::Error,
    },
    /// A component's environment is larger than the runtime allows (starting it would fail
    /// with E2BIG at every try).
    #[error("component '{component}': its environment takes {size} bytes, more than the {limit} allowed")]
    Environment { component: String, size: usize, limit: usize },
    /// A cron component's schedule does not parse.
    #[error("component '{component}': {reason}")]
    Schedule { component: String, reason: String },
    /// Components must run sandboxed and the sandbox cannot run (the message says what to do).
    #[error("{0}")]
    Sandbox(String),
    /// The build's files could not be copied into the release (missing, too large, unreadable).
    #[error("cannot copy the build's files for release {release}: {reason}")]
    Release { release: i64, reason: String },
    /// The cluster the stages run on refused a request or could not be reached (the message
    /// says which object and why).
    #[error("Kubernetes: {0}")]
    Cluster(String),
    /// The runtime's own files (storage, temporary data) could not be read or written.
    #[error("{what} ({}): {source}", path.display())]
    Storage {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What a runtime observed of a stage's components, for its timeline.
pub type Observed = (StageKey, StageEvent);

enum Message {
    Observed(Observed),
    /// Answered once everything sent before has been handled.
    Flush(oneshot::Sender<()>),
}

/// How many observed events may wait for the timelines at once ([`EventSink::channel`]).
/// Beyond that (a component that crash-loops faster than the store writes, a store that
/// hangs), events are dropped and counted, and the count is logged: the server's memory does
/// not grow with what components do.
pub const EVENT_CHANNEL_CAPACITY: usize = 10_000;

/// Where a runtime sends what it observes; the services hand one to their runtime
/// ([`Runtime::observe`]) and record what arrives in the stages' timelines.
#[derive(Clone, Debug)]
pub struct EventSink {
    tx: mpsc::Sender<Message>,
    /// Events dropped because the channel was full, not logged yet.
    dropped: Arc<AtomicU64>,
}

/// The receiving end of an [`EventSink`].
pub struct EventStream {
    rx: mpsc::Receiver<Message>,
    dropped: Arc<AtomicU64>,
}

impl EventSink {
    /// A sink and the stream of what is sent to it, holding up to [`EVENT_CHANNEL_CAPACITY`]
    /// events. This is the one place the channel is made.
    pub fn channel() -> (EventSink, EventStream) {
        Self::with_capacity(EVENT_CHANNEL_CAPACITY)
    }

    /// A sink holding up to `capacity` events (tests use small ones).
    pub fn with_capacity(capacity: usize) -> (EventSink, EventStream) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let dropped = Arc::new(AtomicU64::new(0));
        (EventSink { tx, dropped: dropped.clone() }, EventStream { rx, dropped })
    }

    /// Sends an event about a stage without ever waiting (a runtime never waits for the
    /// timelines): when the channel is full it is dropped and counted (the first of a run of
    /// drops is logged at once, the count when the reader catches up); when nobody listens
    /// any more, it is dropped silently.
    pub fn send(&self, key: StageKey, event: StageEvent) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.tx.try_send(Message::Observed((key, event))) {
            if self.dropped.fetch_add(1, Ordering::Relaxed) == 0 {
                tracing::warn!(
                    capacity = self.tx.max_capacity(),
                    "the runtime's event channel is full: events are dropped until the timelines catch up"
                );
            }
        }
    }

    /// Events dropped because the channel was full and not yet reported by the reader.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Waits until everything sent so far has been handled by the stream's reader (at once
    /// when nobody reads it).
    pub async fn flush(&self) {
        let (done, handled) = oneshot::channel();
        if self.tx.send(Message::Flush(done)).await.is_ok() {
            let _ = handled.await;
        }
    }
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Message::Observed(observed) => f.debug_tuple("Observed").field(observed).finish(),
            Message::Flush(_) => f.write_str("Flush"),
        }
    }
}

impl EventStream {
    /// The next event, once one is sent; `None` when every sink is gone. A flush waiting on
    /// this stream is answered when the reader comes back for more, so after it has handled
    /// what came before.
    pub async fn recv(&mut self) -> Option<Observed> {
        loop {
            let message = self.rx.recv().await;
            self.report_dropped();
            match message? {
                Message::Observed(observed) => return Some(observed),
                Message::Flush(done) => {
                    let _ = done.send(());
                }
            }
        }
    }

    /// The next event if one was sent already.
    pub fn try_recv(&mut self) -> Option<Observed> {
        loop {
            let message = self.rx.try_recv().ok();
            self.report_dropped();
            match message? {
                Message::Observed(observed) => return Some(observed),
                Message::Flush(done) => {
                    let _ = done.send(());
                }
            }
        }
    }

    /// Logs how many events were dropped since the last report (the reader is catching up).
    fn report_dropped(&self) {
        let dropped = self.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            tracing::warn!(dropped, "events the runtime observed were dropped: its event channel was full");
        }
    }
}

/// What a running component uses: the CPU time of all its processes since they started
/// (those it waited for included) and their resident memory.
#[derive(Clone, Debug, PartialEq)]
pub struct ComponentUsage {
    pub key: StageKey,
    pub component: String,
    pub cpu_secs: f64,
    pub memory_bytes: u64,
}

/// Runs stages.
#[async_trait]
pub trait Runtime: Send + Sync {
    /// Starts every component of `spec`; what ran on the stage is stopped first (gracefully,
    /// within `grace`): as for a suspend when it ran the same release (a resume: a job or cron
    /// run still going goes on), else entirely ([`StopMode::Halt`]). A job runs once per
    /// release: one that already ran for `spec.release` (before a suspend, a delete, a server
    /// restart) is not run again, and shows as completed. A start that fails leaves nothing of
    /// `spec` running (the error says why).
    async fn start(&self, spec: StageSpec, grace: Duration) -> Result<(), RuntimeError>;
    /// Stops a stage's components gracefully (SIGTERM, up to `grace`, SIGKILL) and its
    /// schedules at once; jobs and cron runs already started go on to completion with
    /// [`StopMode::Suspend`], and are stopped too with [`StopMode::Halt`]. Storage is kept;
    /// temporary data is wiped (a run still going keeps its own until it ends).
    async fn stop(&self, key: &StageKey, grace: Duration, mode: StopMode) -> StopReport;
    /// [`Runtime::stop`] in two steps: answers once the components are asked to stop, with
    /// what waits for them to be gone — a shared runtime's stage changes are asked for in the
    /// stage's turn across servers, and waited for outside it. By default the whole stop is
    /// done before it answers.
    async fn ask_stop(&self, key: &StageKey, grace: Duration, mode: StopMode) -> StopWait {
        StopWait::done(self.stop(key, grace, mode).await)
    }
    /// Forgets a purged stage for good: whatever still runs of it is killed, what was
    /// observed of it (components, logs) is dropped, and its temporary data, its release
    /// copies, what it recorded of its jobs and its persistent storage are deleted. `Err`:
    /// something could not be deleted; the services then keep the stage (archived, due) and
    /// ask again at the next purge, so it must be safe to call again.
    async fn forget(&self, key: &StageKey) -> Result<(), RuntimeError>;
    /// The components of a stage as observed now (empty when it runs nothing).
    fn status(&self, key: &StageKey) -> Vec<ComponentStatus>;
    /// The last output lines of a component.
    fn logs(&self, key: &StageKey, component: &str) -> Vec<LogLine>;
    /// What each running component of every stage uses now (one look at the machine). By
    /// default nothing is known.
    fn usage(&self) -> Vec<ComponentUsage> {
        Vec::new()
    }
    /// The component's kept output lines numbered after `after` (`LogLine::seq`), oldest
    /// first; `None` when the stage runs no such component (a follower then waits, or ends).
    fn logs_after(&self, key: &StageKey, component: &str, after: u64) -> Option<Vec<LogLine>> {
        let running = self.status(key).iter().any(|c| c.name == component);
        running.then(|| self.logs(key, component).into_iter().filter(|l| l.seq > after).collect())
    }
    /// The number of the component's newest kept line (0: none yet); `None` when the stage
    /// runs no such component. Asked four times a second by every open stage page, so a
    /// runtime that keeps many lines answers without copying them.
    fn last_line(&self, key: &StageKey, component: &str) -> Option<u64> {
        self.logs_after(key, component, 0).map(|lines| lines.last().map_or(0, |l| l.seq))
    }
    /// Whether a component's line numbers began again below `after`, the last a page or a
    /// follower saw, now that its newest kept line is `newest` — then every line kept is new to
    /// them. The local runtime's numbers are the server's clock and count, which a restart with
    /// the clock set back begins again; a cluster's are the kubelet's times, the same on every
    /// server and after a restart (while a restarted server reads a pod's log again, its newest
    /// line is older than a follower's — not new), so it answers false.
    fn numbers_began_again(&self, newest: u64, after: u64) -> bool {
        0 < newest && newest < after
    }
    /// What a page is sent of the component's kept lines numbered after `after`: the newest
    /// ([`pergola_domain::logs::shown_count`]), and whether that is all of them. A runtime that
    /// keeps many lines copies only those.
    fn shown_after(&self, key: &StageKey, component: &str, after: u64) -> Option<(Vec<LogLine>, bool)> {
        self.logs_after(key, component, after).map(|lines| {
            let newer = lines.len();
            let shown = pergola_domain::logs::shown(lines);
            let all = shown.len() == newer;
            (shown, all)
        })
    }
    /// From now on, sends what it observes on its own (starts, crashes, restarts, kills,
    /// health changes) to `sink`, instead of any sink given before. By default it observes
    /// nothing worth telling.
    fn observe(&self, sink: EventSink) {
        let _ = sink;
    }
    /// What of stopped stage `key` still runs and could write to its storage (a job or cron run
    /// a suspend lets finish, a process it left): the names of those components. By default
    /// nothing.
    fn still_running(&self, key: &StageKey) -> Vec<String> {
        let _ = key;
        Vec::new()
    }
    /// Copies stage `from`'s persistent storage (every volume) to stage `to`, which has none
    /// yet (a duplicate). The services call it only while `from` is stopped, so the copy is
    /// consistent. By default there is no storage to copy.
    async fn copy_storage(&self, from: &StageKey, to: &StageKey) -> Result<(), RuntimeError> {
        let _ = (from, to);
        Ok(())
    }
    /// From now on, mints the tokens its releases download their builds with through `minter`
    /// (a runtime whose components run elsewhere, and fetch their build from the control
    /// plane). By default builds are read where they are.
    fn grant_builds(&self, minter: BuildMinter) {
        let _ = minter;
    }
    /// Where the share-link proxy reaches a running service (`host:port`): by default the
    /// port it listens on, on this machine.
    fn upstream(&self, key: &StageKey, component: &ComponentStatus) -> Option<String> {
        let _ = key;
        component.port.map(|port| format!("127.0.0.1:{port}"))
    }
    /// Whether it runs anything at all: false only for [`NoRuntime`], so that the services do
    /// not report stages as started when nothing runs them.
    fn runs_stages(&self) -> bool {
        true
    }
    /// How components are isolated and their limits enforced (`None`: nothing runs).
    fn isolation(&self) -> Option<Isolation> {
        None
    }
    /// Whether it can run `component` at all (asked before a build is deployed, so that a build
    /// it cannot run is refused with the reason and the running release stays). By default,
    /// anything.
    fn can_run(&self, component: &pergola_domain::ComponentSpec) -> Result<(), String> {
        let _ = component;
        Ok(())
    }
    /// Whether several servers on one database may run it side by side: true for a runtime
    /// whose stages run where every server reaches them (a cluster), false for one whose
    /// stages are one server's own processes — that server then claims the database for
    /// itself ([`crate::Services::claim_runtime`]).
    fn shared(&self) -> bool {
        false
    }
}

/// The runtime of services that only record: releases are kept, nothing runs, nothing is
/// observed.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoRuntime;

#[async_trait]
impl Runtime for NoRuntime {
    async fn start(&self, _: StageSpec, _: Duration) -> Result<(), RuntimeError> {
        Ok(())
    }
    async fn stop(&self, _: &StageKey, _: Duration, _: StopMode) -> StopReport {
        StopReport::default()
    }
    async fn forget(&self, _: &StageKey) -> Result<(), RuntimeError> {
        Ok(())
    }
    fn status(&self, _: &StageKey) -> Vec<ComponentStatus> {
        Vec::new()
    }
    fn logs(&self, _: &StageKey, _: &str) -> Vec<LogLine> {
        Vec::new()
    }
    fn shared(&self) -> bool {
        true
    }
    fn runs_stages(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pergola_domain::EventKind;

    fn event(n: usize) -> StageEvent {
        StageEvent::of_component(chrono::Utc::now(), EventKind::Crashed, "web", format!("crash {n}"))
    }

    #[tokio::test]
    async fn a_flood_of_events_is_bounded_counted_and_normal_events_still_arrive() {
        let key = StageKey::new("shop", "qa");
        let (sink, mut stream) = EventSink::channel();
        // A component crash-looping while nobody reads: five times what the channel holds.
        for n in 0..5 * EVENT_CHANNEL_CAPACITY {
            sink.send(key.clone(), event(n));
        }
        assert_eq!(sink.dropped(), 4 * EVENT_CHANNEL_CAPACITY as u64, "what did not fit was counted");
        let mut held = 0;
        while let Some((_, e)) = stream.try_recv() {
            assert_eq!(e.message, format!("crash {held}"), "the oldest are kept, in order");
            held += 1;
        }
        assert_eq!(held, EVENT_CHANNEL_CAPACITY, "no more than the channel holds");
        assert_eq!(sink.dropped(), 0, "the reader reported the drops");
        // Room again: an ordinary event arrives, and a flush is answered.
        sink.send(key.clone(), StageEvent::new(chrono::Utc::now(), EventKind::Started, "started"));
        let reader = tokio::spawn(async move { stream.recv().await.map(|(_, e)| e.message) });
        assert_eq!(reader.await.unwrap().as_deref(), Some("started"));
    }

    #[tokio::test]
    async fn sending_never_waits_and_flush_waits_for_the_reader() {
        let key = StageKey::new("shop", "qa");
        let (sink, mut stream) = EventSink::with_capacity(2);
        for n in 0..3 {
            sink.send(key.clone(), event(n));
        }
        assert_eq!(sink.dropped(), 1);
        let flushed = {
            let sink = sink.clone();
            tokio::spawn(async move { sink.flush().await })
        };
        let mut seen = Vec::new();
        while seen.len() < 2 {
            seen.push(stream.recv().await.unwrap().1.message);
        }
        assert_eq!(seen, ["crash 0", "crash 1"]);
        let reader = tokio::spawn(async move { stream.recv().await });
        tokio::time::timeout(Duration::from_secs(5), flushed).await.expect("flush answered").unwrap();
        drop(sink);
        assert!(reader.await.unwrap().is_none(), "every sink gone");
    }
}
