//! Metrics: the sampler that closes an interval every 10 s ([`spawn_metrics_sampler`]) and
//! keeps its points in the database, what the share-link proxy reports of each request, a
//! stage's charts (what every server of the database sampled) and `/metrics` (this server's).

use super::{internal, Acting, Services};
use crate::metrics::label;
use crate::store::MetricRow;
use crate::StageKey;
use pergola_domain::access::Action;
use pergola_domain::metrics::{ComponentMetrics, MetricPoint, MetricsWindow, StageMetrics, SAMPLE_SECS, SUMMARY_SECS};
use pergola_domain::Error;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;

impl Services {
    /// One request the share-link proxy forwarded (`status` 502/504 when the component did
    /// not answer), with the time to the answer's head.
    pub fn record_proxied(&self, project_id: &str, stage_id: &str, component: &str, status: u16, elapsed_ms: f64) {
        self.metrics.record_request(&StageKey::new(project_id, stage_id), component, status, elapsed_ms);
    }

    /// Closes the current interval: what each component used (from the runtime) and what its
    /// service answered. The points are kept in the database, named by this server; the pages
    /// showing those stages hear of it.
    pub async fn sample_metrics(&self) {
        let (runtime, book, now) = (self.runtime.clone(), self.metrics.clone(), self.clock.now());
        // Reading /proc is blocking work.
        let made = tokio::task::spawn_blocking(move || book.sample(now, runtime.usage())).await.unwrap_or_default();
        self.keep_points(&made).await;
        // One change names many stages of a project (a sample of every running stage is a few
        // changes, not one per stage).
        let mut stages: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for key in made.iter().map(|p| &p.key) {
            stages.entry(&key.project).or_default().push(&key.stage);
        }
        for (project, mut stages) in stages {
            stages.sort_unstable();
            stages.dedup();
            self.changes.publish_metrics(project, &stages);
        }
    }

    /// Summarizes what this server sampled since the last 5-minute mark, and keeps it: the
    /// server is stopping (the next one starts its own series).
    pub async fn flush_metrics(&self) {
        let made = self.metrics.flush(self.clock.now());
        self.keep_points(&made).await;
    }

    /// Keeps `made` in the database, named by this server.
    async fn keep_points(&self, made: &[crate::metrics::NewPoint]) {
        if made.is_empty() {
            return;
        }
        let server = self.replica().holder();
        let rows: Vec<MetricRow> = made
            .iter()
            .map(|p| MetricRow {
                server: server.clone(),
                project_id: p.key.project.clone(),
                stage_id: p.key.stage.clone(),
                component: p.component.clone(),
                summary: p.summary,
                point: p.point.clone(),
            })
            .collect();
        if let Err(e) = self.store.save_metric_points(&rows).await {
            tracing::warn!(error = %e, "keeping the metric points sampled");
        }
    }

    /// Deletes the kept metric points older than the charts show (an hour of 10-second
    /// points, a day of summaries); how many went. The purge task calls it.
    pub async fn prune_metrics(&self) -> Result<u64, Error> {
        let now = self.clock.now();
        let hour = now - chrono::Duration::seconds(MetricsWindow::Hour.secs());
        let day = now - chrono::Duration::seconds(MetricsWindow::Day.secs());
        self.store.prune_metric_points(hour, day).await.map_err(internal("prune the metric points"))
    }
}

/// Samples every 10 s for as long as the services live (a task of the server).
pub fn spawn_metrics_sampler(services: Services) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(SAMPLE_SECS as u64));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            services.sample_metrics().await;
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
        let read = |summary: bool, from| async move {
            let rows = self.store.metric_points(project_id, stage_id, summary, from).await;
            rows.map_err(internal("read a stage's metric points"))
        };
        // What every server sampled: per component, the points of one stretch added up.
        let combine = |rows: Vec<MetricRow>, bucket_secs: i64| {
            let mut grouped: BTreeMap<String, Vec<(String, MetricPoint)>> = BTreeMap::new();
            for r in rows {
                grouped.entry(r.component).or_default().push((r.server, r.point));
            }
            grouped.into_iter().map(move |(c, points)| (c, MetricPoint::combine(points, bucket_secs)))
        };
        // 10-second points are kept for an hour.
        let recent = from.max(to - chrono::Duration::seconds(MetricsWindow::Hour.secs()));
        let mut by_component: BTreeMap<String, Vec<MetricPoint>> = BTreeMap::new();
        match window {
            MetricsWindow::Hour => by_component.extend(combine(read(false, recent).await?, SAMPLE_SECS)),
            MetricsWindow::Day => {
                // The summaries, then each server's 10-second points after its own last
                // summary of the component (servers summarize on the same 5-minute marks, but
                // one that stopped or started meanwhile has its own last one).
                let summaries = read(true, from).await?;
                let mut summarized: HashMap<(&str, &str), chrono::DateTime<chrono::Utc>> = HashMap::new();
                for r in &summaries {
                    let last = summarized.entry((r.server.as_str(), r.component.as_str())).or_insert(r.point.at);
                    *last = (*last).max(r.point.at);
                }
                let points: Vec<MetricRow> = read(false, recent)
                    .await?
                    .into_iter()
                    .filter(|r| {
                        summarized.get(&(r.server.as_str(), r.component.as_str())).is_none_or(|last| r.point.at > *last)
                    })
                    .collect();
                let points: Vec<(String, Vec<MetricPoint>)> = combine(points, SAMPLE_SECS).collect();
                by_component.extend(combine(summaries, SUMMARY_SECS));
                for (component, points) in points {
                    let all = by_component.entry(component).or_default();
                    all.extend(points);
                    all.sort_by_key(|p| p.at);
                }
            }
        }
        let components =
            by_component.into_iter().map(|(component, points)| ComponentMetrics { component, points }).collect();
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
        stages.sort();
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
