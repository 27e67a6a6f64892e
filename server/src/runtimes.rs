//! The runtime this server runs stages with (`PERGOLA_RUNTIME`): the local one (sandboxed
//! processes of this server, which it stops when it stops) or, in a build with the
//! `kubernetes` feature, a cluster (whose stages go on running while servers come and go).

use pergola_core::config::{RuntimeKind, ServerConfig};
use pergola_core::Runtime;
use pergola_runtime::{LocalRuntime, Sandbox};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub enum Chosen {
    Local(Arc<LocalRuntime>),
    #[cfg(feature = "kubernetes")]
    Kubernetes(pergola_kubernetes::KubernetesRuntime),
}

impl Chosen {
    /// The runtime the configuration names, ready to run stages.
    pub async fn from_config(config: &ServerConfig, data_dir: &Path) -> Result<Self, String> {
        match config.runtime {
            RuntimeKind::Local => {
                // Processes a component double-forks away from its process group are
                // re-parented to the server (not to init): they are found and ended with their
                // stage, and collected here.
                match pergola_runtime::become_subreaper() {
                    Ok(()) => pergola_runtime::spawn_reaper(),
                    Err(e) => tracing::warn!(
                        error = %e,
                        "cannot become a child subreaper: escaped component processes go to init"
                    ),
                }
                let runtime = LocalRuntime::new(data_dir.join("runtime"))
                    .hiding(data_dir)
                    .with_outbound(config.outbound_ports.clone());
                let runtime = Arc::new(if config.sandbox { runtime } else { runtime.with_sandbox(Sandbox::Off) });
                match (config.sandbox, runtime.can_start_stages()) {
                    (true, true) => tracing::info!("{}", runtime.sandbox_status()),
                    (true, false) => tracing::error!("{}", runtime.sandbox_status()),
                    (false, _) => tracing::warn!("{}", runtime.sandbox_status()),
                }
                let limits = runtime.isolation_report();
                tracing::info!(mode = limits.limits, "resource limits per stage type: {}", limits.limits_detail);
                if limits.network == "shared" {
                    tracing::warn!("network: {}", limits.network_detail);
                } else {
                    tracing::info!(mode = limits.network, "network: {}", limits.network_detail);
                }
                Ok(Chosen::Local(runtime))
            }
            #[cfg(feature = "kubernetes")]
            RuntimeKind::Kubernetes => {
                let runtime = pergola_kubernetes::KubernetesRuntime::connect(config.cluster.clone()).await?;
                runtime.watch();
                tracing::info!(control_plane = config.cluster.control_plane, "stages run on Kubernetes");
                Ok(Chosen::Kubernetes(runtime))
            }
            #[cfg(not(feature = "kubernetes"))]
            RuntimeKind::Kubernetes => Err(format!(
                "{}=kubernetes: this server was built without the Kubernetes runtime (build it with \
                 `--features kubernetes`)",
                pergola_core::config::RUNTIME
            )),
        }
    }

    pub fn runtime(&self) -> Arc<dyn Runtime> {
        match self {
            Chosen::Local(runtime) => runtime.clone(),
            #[cfg(feature = "kubernetes")]
            Chosen::Kubernetes(runtime) => Arc::new(runtime.clone()),
        }
    }

    /// Before anything starts a stage: the local runtime stops what a killed server left
    /// running (a cluster's stages are its own, and stay).
    #[allow(irrefutable_let_patterns)] // without the `kubernetes` feature there is one runtime
    pub async fn clean_up_after_a_killed_server(&self, grace: Duration) {
        if let Chosen::Local(runtime) = self {
            let reaped = runtime.reap_orphans(grace.min(Duration::from_secs(10))).await;
            if reaped > 0 {
                tracing::warn!(groups = reaped, "stopped components an earlier server left running");
            }
        }
    }

    /// Whether the stages stop when this server stops: yes for the local runtime (no component
    /// outlives its server), no for a cluster (other servers, or this one restarted, go on
    /// running them).
    pub fn stages_stop_with_the_server(&self) -> bool {
        matches!(self, Chosen::Local(_))
    }

    /// After the stages were stopped: the local runtime's sweep ends anything left.
    #[allow(irrefutable_let_patterns)]
    pub async fn shutdown(&self, grace: Duration) {
        if let Chosen::Local(runtime) = self {
            runtime.shutdown(grace).await;
        }
    }
}
