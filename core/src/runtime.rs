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
use pergola_domain::{ComponentSpec, Isolation, ResourceLimits, StageEvent};
use std::collections::BTreeMap;
use std::path::PathBuf;
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
}

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

/// Where a runtime sends what it observes; the services hand one to their runtime
/// ([`Runtime::observe`]) and record what arrives in the stages' timelines.
#[derive(Clone, Debug)]
pub struct EventSink(mpsc::UnboundedSender<Message>);

/// The receiving end of an [`EventSink`].
pub struct EventStream(mpsc::UnboundedReceiver<Message>);

impl EventSink {
    /// A sink and the stream of what is sent to it. This is the one place the channel is
    /// made (unbounded for now: a runtime never waits for the timelines).
    pub fn channel() -> (EventSink, EventStream) {
        let (tx, rx) = mpsc::unbounded_channel();
        (EventSink(tx), EventStream(rx))
    }

    /// Sends an event about a stage; when nobody listens any more, it is dropped.
    pub fn send(&self, key: StageKey, event: StageEvent) {
        let _ = self.0.send(Message::Observed((key, event)));
    }

    /// Waits until everything sent so far has been handled by the stream's reader (at once
    /// when nobody reads it).
    pub async fn flush(&self) {
        let (done, handled) = oneshot::channel();
        if self.0.send(Message::Flush(done)).is_ok() {
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
            match self.0.recv().await? {
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
            match self.0.try_recv().ok()? {
                Message::Observed(observed) => return Some(observed),
                Message::Flush(done) => {
                    let _ = done.send(());
                }
            }
        }
    }
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
    /// From now on, sends what it observes on its own (starts, crashes, restarts, kills,
    /// health changes) to `sink`, instead of any sink given before. By default it observes
    /// nothing worth telling.
    fn observe(&self, sink: EventSink) {
        let _ = sink;
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
    fn runs_stages(&self) -> bool {
        false
    }
}
