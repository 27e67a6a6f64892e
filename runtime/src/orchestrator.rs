//! [`LocalRuntime`] as the services' [`Orchestrator`].

use crate::{LocalRuntime, Runtime, StageKey, StageSpec};
use async_trait::async_trait;
use pergola_core::{Halted, Orchestrator, RunPlan};
use pergola_domain::runtime::{ComponentStatus, LogLine};
use std::time::Duration;

fn key(project: &str, stage: &str) -> StageKey {
    StageKey { project: project.to_owned(), stage: stage.to_owned() }
}

#[async_trait]
impl Orchestrator for LocalRuntime {
    async fn run(&self, plan: RunPlan, grace: Duration) -> Result<(), String> {
        let spec = StageSpec {
            key: key(&plan.project, &plan.stage),
            components: plan.components,
            config: plan.config,
            workdir: plan.workdir,
        };
        Runtime::start(self, spec, grace).await.map_err(|e| e.to_string())
    }

    async fn halt(&self, project: &str, stage: &str, grace: Duration) -> Halted {
        let report = Runtime::stop(self, &key(project, stage), grace).await;
        Halted { terminated: report.terminated, killed: report.killed }
    }

    async fn forget(&self, project: &str, stage: &str) {
        if let Err(e) = self.purge_storage(&key(project, stage)) {
            tracing::warn!(project, stage, error = %e, "could not delete the purged stage's storage");
        }
    }

    fn components(&self, project: &str, stage: &str) -> Vec<ComponentStatus> {
        Runtime::status(self, &key(project, stage))
    }

    fn logs(&self, project: &str, stage: &str, component: &str) -> Vec<LogLine> {
        Runtime::logs(self, &key(project, stage), component)
    }
}
