//! The runtime: what actually runs a stage's components.
//!
//! [`Runtime`] is the abstraction the platform talks to (a Kubernetes implementation can
//! follow: desired state in, observed state out); [`LocalRuntime`] is the embedded default,
//! running each component as a child process of the server, in its own process group:
//!
//! - **services** run continuously; when one exits it is `crashed`, restarted with back-off,
//!   and its restarts are counted; an HTTP health check marks it healthy / unhealthy; each
//!   gets a port (the manifest's when it is free, else any free one) passed as `PORT`;
//! - **workers** run continuously like services, without a port;
//! - **jobs** run once per start, to completion;
//! - **cron** components run as jobs whenever their schedule matches, only while the stage runs;
//! - stdout and stderr are kept line by line (the last [`LOG_LINES`] per component);
//! - **stop** (suspend, archive, redeploy) sends SIGTERM to every service's process group,
//!   waits up to the grace period, then sends SIGKILL to what is left; jobs already started
//!   are not touched and run to completion; temporary directories are wiped, storage is kept.
//!
//! Each process gets the environment: manifest `env`, then the stage configuration, then what
//! the platform sets — `PORT` (services), `PERGOLA_RUNTIME` (marks the processes of this
//! runtime, so the ones a killed server left behind are stopped when it starts again), `PERGOLA_PROJECT`, `PERGOLA_STAGE`,
//! `PERGOLA_COMPONENT`, `PERGOLA_STORAGE_<NAME>` (a per-stage directory per volume, kept across
//! suspend and redeploy) and `TMPDIR` (a per-run directory, wiped when the stage stops).

mod local;
mod orchestrator;
mod probe;

pub use local::{EventSender, LocalRuntime};

pub use pergola_domain::runtime::{ComponentState, ComponentStatus, Health, LogLine};
use pergola_domain::ComponentSpec;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// How many output lines are kept per component.
pub const LOG_LINES: usize = 500;

/// Identifies a stage to the runtime.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StageKey {
    pub project: String,
    pub stage: String,
}

/// What should run for a stage.
#[derive(Clone, Debug)]
pub struct StageSpec {
    pub key: StageKey,
    pub components: Vec<ComponentSpec>,
    /// The stage's configuration, passed as environment variables.
    pub config: BTreeMap<String, String>,
    /// Where the commands run (the build's files).
    pub workdir: PathBuf,
}

/// How a stop went, per service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StopReport {
    /// Services that exited after SIGTERM within the grace period.
    pub terminated: Vec<String>,
    /// Services that were still running after the grace period and got SIGKILL.
    pub killed: Vec<String>,
}

#[derive(Debug)]
pub struct RuntimeError(pub String);

impl std::fmt::Display for RuntimeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RuntimeError {}

/// Runs stages. Implementations: [`LocalRuntime`] (processes on this machine).
#[allow(async_fn_in_trait)]
pub trait Runtime {
    /// Starts every component of `spec`; a stage already running is stopped first.
    async fn start(&self, spec: StageSpec, grace: Duration) -> Result<(), RuntimeError>;
    /// Stops a stage's services gracefully (SIGTERM, `grace`, SIGKILL). Jobs already started
    /// run to completion. Storage is kept; temporary data is wiped.
    async fn stop(&self, key: &StageKey, grace: Duration) -> StopReport;
    /// The components of a stage as observed now (empty when it runs nothing).
    fn status(&self, key: &StageKey) -> Vec<ComponentStatus>;
    /// The last output lines of a component.
    fn logs(&self, key: &StageKey, component: &str) -> Vec<LogLine>;
}
