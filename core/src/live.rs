//! What changed, as it happens. The services publish every change of a stage or a project —
//! an event on a stage's timeline (whoever caused it: a user, the runtime, a background
//! settle) and every audited action — and the live streams of open pages and of `pergola
//! logs`/`suspend` subscribe. A change says only *where* something changed: a subscriber reads
//! what it shows again, through the services, with its own permissions.

use tokio::sync::{broadcast, watch};

/// How many changes a slow subscriber may fall behind before it is told it missed some (it
/// then reads everything again).
const BACKLOG: usize = 1024;

/// Something changed in `project`: on stage `stage`, or in the project itself (a stage
/// created, a member added …).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub project: String,
    pub stage: Option<String>,
    /// Only new metrics (a sample every 10 s), not a change of state.
    pub metrics: bool,
}

/// The bus the services publish changes on.
pub struct Changes {
    tx: broadcast::Sender<Change>,
    closed: watch::Sender<bool>,
}

impl Default for Changes {
    fn default() -> Self {
        Changes { tx: broadcast::channel(BACKLOG).0, closed: watch::channel(false).0 }
    }
}

impl std::fmt::Debug for Changes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Changes").field("subscribers", &self.tx.receiver_count()).finish()
    }
}

impl Changes {
    /// Tells every subscriber that something changed (nobody listening is fine).
    pub fn publish(&self, project: &str, stage: Option<&str>) {
        if self.tx.receiver_count() > 0 {
            let _ =
                self.tx.send(Change { project: project.to_owned(), stage: stage.map(str::to_owned), metrics: false });
        }
    }

    /// Tells every subscriber that a stage has new metrics.
    pub fn publish_metrics(&self, project: &str, stage: &str) {
        if self.tx.receiver_count() > 0 {
            let _ = self.tx.send(Change { project: project.to_owned(), stage: Some(stage.to_owned()), metrics: true });
        }
    }

    /// Hears the changes published from now on.
    pub fn subscribe(&self) -> Subscription {
        Subscription { rx: self.tx.subscribe(), closed: self.closed.subscribe() }
    }

    /// The server is stopping: every subscription ends (open streams close, so that the
    /// listener's drain is not held up by them).
    pub fn close(&self) {
        self.closed.send_replace(true);
    }

    /// How many subscriptions are open.
    pub fn subscribers(&self) -> usize {
        self.tx.receiver_count()
    }
}

/// What a subscription heard next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Heard {
    Change(Change),
    /// The subscriber fell more than the backlog behind: some changes are lost, so everything
    /// may have changed.
    Missed,
    /// The server is stopping.
    Closed,
}

/// One subscriber's view of the bus.
pub struct Subscription {
    rx: broadcast::Receiver<Change>,
    closed: watch::Receiver<bool>,
}

impl Subscription {
    /// Waits for the next change.
    pub async fn next(&mut self) -> Heard {
        if *self.closed.borrow() {
            return Heard::Closed;
        }
        tokio::select! {
            heard = self.rx.recv() => match heard {
                Ok(change) => Heard::Change(change),
                Err(broadcast::error::RecvError::Lagged(_)) => Heard::Missed,
                Err(broadcast::error::RecvError::Closed) => Heard::Closed,
            },
            _ = self.closed.wait_for(|closed| *closed) => Heard::Closed,
        }
    }

    /// Whether the server is stopping.
    pub fn is_closed(&self) -> bool {
        *self.closed.borrow()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn subscribers_hear_changes_in_order_and_the_end() {
        let bus = Changes::default();
        bus.publish("p", Some("nobody-listens"));
        let mut a = bus.subscribe();
        let mut b = bus.subscribe();
        bus.publish("p", Some("dev"));
        bus.publish("p", None);
        for sub in [&mut a, &mut b] {
            assert_eq!(
                sub.next().await,
                Heard::Change(Change { project: "p".into(), stage: Some("dev".into()), metrics: false })
            );
            assert_eq!(sub.next().await, Heard::Change(Change { project: "p".into(), stage: None, metrics: false }));
        }
        bus.close();
        assert_eq!(a.next().await, Heard::Closed);
        assert!(b.is_closed());
    }

    #[tokio::test]
    async fn a_subscriber_far_behind_is_told_it_missed_changes() {
        let bus = Changes::default();
        let mut slow = bus.subscribe();
        for n in 0..BACKLOG + 10 {
            bus.publish("p", Some(&format!("s{n}")));
        }
        assert_eq!(slow.next().await, Heard::Missed);
        // Then it goes on with what is still kept.
        assert!(matches!(slow.next().await, Heard::Change(_)));
    }
}
