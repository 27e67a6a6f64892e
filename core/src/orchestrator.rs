//! The seam between the services (desired state, in the store) and a runtime (what actually
//! runs). The services call it after each change; the server calls [`crate::Services::reconcile`]
//! at start-up so stages that should run are started again.

use async_trait::async_trait;
use pergola_domain::runtime::{ComponentStatus, LogLine};
use pergola_domain::ComponentSpec;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// What a stage should run: its current release.
#[derive(Clone, Debug)]
pub struct RunPlan {
    pub project: String,
    pub stage: String,
    pub release: i64,
    pub components: Vec<ComponentSpec>,
    pub config: BTreeMap<String, String>,
    pub workdir: PathBuf,
}

/// How a stop went: the components that exited after SIGTERM, and those killed after the grace
/// period.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Halted {
    pub terminated: Vec<String>,
    pub killed: Vec<String>,
}

#[async_trait]
pub trait Orchestrator: Send + Sync {
    /// Runs `plan` on its stage, replacing what ran there (gracefully, within `grace`).
    async fn run(&self, plan: RunPlan, grace: Duration) -> Result<(), String>;
    /// Stops what runs on a stage: SIGTERM, up to `grace`, SIGKILL. Storage is kept.
    async fn halt(&self, project: &str, stage: &str, grace: Duration) -> Halted;
    /// Deletes a purged stage's persistent storage for good.
    async fn forget(&self, project: &str, stage: &str);
    /// The components of a stage as observed now.
    fn components(&self, project: &str, stage: &str) -> Vec<ComponentStatus>;
    /// The last output lines of a component.
    fn logs(&self, project: &str, stage: &str, component: &str) -> Vec<LogLine>;
}
