//! Metrics: the sampler that closes an interval every 10 s ([`spawn_metrics_sampler`]), what
//! the share-link proxy reports of each request, a stage's charts and `/metrics`.

use super::{Acting, Services};
use crate::metrics::label;
use crate::StageKey;
use pergola_domain::access::Action;
use pergola_domain::metrics::{MetricsWindow, StageMetrics, SAMPLE_SECS};
use pergola_domain::Error;
use std::fmt::Write;

impl Services {
    /// One request the share-link proxy forwarded (`status` 502/504 when the component did
    /// not answer), with the time to the answer's head.
    pub fn record_proxied(&self, project_id: &str, stage_id: &str, component: &str, status: u16, elapsed_ms: f64) {
        self.metrics.record_request(&StageKey::new(project_id, stage_id), component, status, elapsed_ms);
    }

    /// Closes the current interval: what each component used (from the runtime) and what its
    /// service answered; the pages showing those stages hear of it.
    pub fn sample_metrics(&self) {
        let usage = self.runtime.usage();
        for key in self.metrics.sample(self.clock.now(), usage) {
            self.changes.publish_metrics(&key.project, &key.stage);
        }
    }
}

/// Samples every 10 s for as long as the services live (a task of the server).
pub fn spawn_metrics_sampler(services: Services) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(SAMPLE_SECS as u64));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            let s = services.clone();
            // Reading /proc is blocking work.
            let _ = tokio::task::spawn_blocking(move || s.sample_metrics()).await;
        }
    });
}

impl Acting {
    /// A stage's components' points in `window` (live or archived stage).
    pub async fn stage_metrics(
        &self,
        project_id: &str,
        stage_id: &str,
        window: MetricsWindow,
    ) -> Result<StageMetrics, Error> {
        self.allow_stage(Action::ReadStage, project_id, stage_id).await?;
        let to = self.clock.now();
        let from = to - chrono::Duration::seconds(window.secs());
        let components = self.metrics.window(&StageKey::new(project_id, stage_id), window, to);
        Ok(StageMetrics { window, from, to, components })
    }

    /// The Prometheus text exposition of the server, the proxy, the runtime and every stage
    /// (administrators).
    pub async fn prometheus_metrics(&self) -> Result<String, Error> {
        self.allow(Action::ReadServerMetrics, None, "").await?;
        let mut out = String::new();
        let uptime = (self.clock.now() - self.started_at).num_milliseconds() as f64 / 1000.0;
        let _ = writeln!(out, "# HELP pergola_build_info The server's version.\n# TYPE pergola_build_info gauge");
        let _ = writeln!(out, "pergola_build_info{{version=\"{}\"}} 1", label(env!("CARGO_PKG_VERSION")));
        let _ = writeln!(
            out,
            "# HELP pergola_uptime_seconds Seconds since the server started.\n# TYPE pergola_uptime_seconds gauge"
        );
        let _ = writeln!(out, "pergola_uptime_seconds {uptime}");
        let _ = writeln!(out, "# HELP pergola_live_streams Open live streams (dashboard pages, followed logs).\n# TYPE pergola_live_streams gauge");
        let _ = writeln!(out, "pergola_live_streams {}", self.changes.subscribers());
        let usage = self.runtime.usage();
        let _ = writeln!(out, "# HELP pergola_components_running Components with a running process.\n# TYPE pergola_components_running gauge");
        let _ = writeln!(out, "pergola_components_running {}", usage.len());
        let mut stages: Vec<StageKey> = usage.iter().map(|u| u.key.clone()).collect();
        stages.sort_by(|a, b| (&a.project, &a.stage).cmp(&(&b.project, &b.stage)));
        stages.dedup();
        let _ = writeln!(out, "# HELP pergola_component_restarts_total Restarts of a component since its release started.\n# TYPE pergola_component_restarts_total counter");
        for key in &stages {
            for c in self.runtime.status(key) {
                let _ = writeln!(
                    out,
                    "pergola_component_restarts_total{{project=\"{}\",stage=\"{}\",component=\"{}\"}} {}",
                    label(&key.project),
                    label(&key.stage),
                    label(&c.name),
                    c.restarts
                );
            }
        }
        self.metrics.write_prometheus(&mut out);
        Ok(out)
    }
}
