//! The purge task: archived stages whose retention has run out are deleted for good.

use crate::Services;
use std::time::Duration;

/// Runs a purge now and then every `every`, until the process ends.
pub fn spawn_purge_task(services: Services, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await; // the first tick is immediate: purge at start-up
            if let Err(e) = services.purge_due().await {
                tracing::warn!(error = %e, "purge of archived stages failed; will retry");
            }
        }
    })
}
