//! The purge task: archived stages whose retention has run out are deleted for good, then the
//! artifacts no release runs any more ([`Services::purge_artifacts`]), the metric points older
//! than the charts show go ([`Services::prune_metrics`]), and the events timelines are bounded
//! ([`Services::prune_events`]); sessions the policy ended go ([`Services::end_stale_sessions`]);
//! stages an older server made or renamed during a rolling update
//! get their search key ([`Services::fill_name_keys`]); with a runtime the servers share, stages
//! a server left suspending are settled ([`Services::settle_left_suspends`]).
use crate::Services;
use std::time::Duration;

/// How often the events timelines are pruned (a scan of every event: not at every purge).
pub const PRUNE_EVENTS_EVERY: Duration = Duration::from_secs(3600);

/// Runs a purge now and then every `every`, until the process ends; prunes the events
/// timelines with the first purge and then at most every [`PRUNE_EVENTS_EVERY`].
pub fn spawn_purge_task(services: Services, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut next_prune = tokio::time::Instant::now();
        loop {
            tick.tick().await; // the first tick is immediate: purge at start-up
                               // Of several servers on one database, one sweeps.
            if !services.runs_background_work() {
                continue;
            }
            if let Err(e) = services.purge_due().await {
                tracing::warn!(error = %e, "purge of archived stages failed; will retry");
            }
            // After the stages: a purged stage's releases no longer keep their artifacts.
            if let Err(e) = services.purge_artifacts().await {
                tracing::warn!(error = %e, "purge of unused artifacts failed; will retry");
            }
            // With a shared runtime: stages a stopped or killed server left suspending.
            if let Err(e) = services.settle_left_suspends().await {
                tracing::warn!(error = %e, "settling the stages left suspending failed; will retry");
            }
            // Stages an older server made or renamed during a rolling update.
            if let Err(e) = services.fill_name_keys().await {
                tracing::warn!(error = %e, "filling the stages' search keys failed; will retry");
            }
            if let Err(e) = services.prune_metrics().await {
                tracing::warn!(error = %e, "pruning the metric points failed; will retry");
            }
            // Sessions ended by their policy that nobody used again (and the share hosts'
            // sessions they opened).
            if let Err(e) = services.end_stale_sessions().await {
                tracing::warn!(error = %e, "deleting ended sessions failed; will retry");
            }
            if tokio::time::Instant::now() >= next_prune {
                match services.prune_events().await {
                    Ok(_) => next_prune = tokio::time::Instant::now() + PRUNE_EVENTS_EVERY,
                    Err(e) => tracing::warn!(error = %e, "pruning the events timelines failed; will retry"),
                }
            }
        }
    })
}
