//! What changed, as it happens. The services publish every change of a stage or a project —
//! an event on a stage's timeline (whoever caused it: a user, the runtime, a background
//! settle) and every audited action — and the live streams of open pages and of `pergola
//! logs`/`suspend` subscribe. A change says only *where* something changed: a subscriber reads
//! what it shows again, through the services, with its own permissions.
//!
//! Changes of access — a session ended, a token revoked, a user disabled, a member's role
//! changed — are told apart ([`Changes::access_changed`], naming the user): that user's open
//! streams then check their caller again at once, instead of at their next periodic check (and
//! nobody else's do: revoking one's own tokens in a loop costs only one's own streams). And one user holds at most
//! [`STREAMS_PER_USER`] subscriptions, a server half the connections it accepts
//! ([`Changes::limit_streams`]): a client opening streams in a loop cannot take the server's
//! connections and memory.
//!
//! With several servers on one database, what is published on one is relayed to the others
//! ([`Changes::relay_through`]; PostgreSQL `NOTIFY`, see `services::replicas`), where it is
//! published again ([`Changes::heard_from_elsewhere`]): a page open on any server hears a
//! change made through any other.

use crate::places::{CountedPlaces, Place};
use tokio::sync::{broadcast, watch};

/// How many changes a slow subscriber may fall behind before it is told it missed some (it
/// then reads everything again).
const BACKLOG: usize = 1024;

/// How many live streams (dashboard tabs, `pergola logs -f`) one user may have open at once.
pub const STREAMS_PER_USER: usize = 24;

/// How many live streams one server holds at once, everyone's together, unless the server says
/// otherwise ([`Changes::limit_streams`]: half the connections it accepts): many users (or many
/// accounts of one) cannot take all of its connections and memory with streams either.
pub const STREAMS_ON_SERVER: usize = 512;

/// Why a stream could not be opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamsFull {
    /// The user has [`STREAMS_PER_USER`] open.
    User,
    /// The server holds as many as it may ([`Changes::limit_streams`]).
    Server,
}

/// Something changed in `project`: on stage `stage`, or in the project itself (a stage
/// created, a member added …); or new metrics of its stages `stages`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Change {
    pub project: String,
    pub stage: Option<String>,
    /// Only new metrics (a sample every 10 s), not a change of state.
    pub metrics: bool,
    /// New metrics: the stages with new points (`stage` is then `None`). One change names
    /// up to [`METRICS_STAGES_PER_CHANGE`]: a sample of a thousand running stages is a few
    /// changes on the bus (and relayed), not a thousand.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stages: Vec<String>,
}

/// How many stages one change of new metrics names at most: relayed to the other servers, it
/// stays well within PostgreSQL's 8 000-byte `NOTIFY` payload (Stage IDs are at most 63
/// characters).
pub const METRICS_STAGES_PER_CHANGE: usize = 64;

impl Change {
    /// Whether a stream of `project`, or of its stage `stage`, hears of this change.
    pub fn reaches(&self, project: &str, stage: Option<&str>) -> bool {
        if self.project != project {
            return false;
        }
        let Some(mine) = stage else { return true };
        match &self.stage {
            Some(on) => on == mine,
            None if self.metrics => self.stages.iter().any(|s| s == mine),
            None => true,
        }
    }
}

/// What is relayed to the other servers: a change, a user whose access changed, or that
/// some were lost on the way (the database did not answer).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Relayed {
    Change(Change),
    Access {
        user_id: String,
    },
    Missed,
    /// What a newer server relays that this one does not know (ignored).
    #[serde(other)]
    Unknown,
}

/// The bus the services publish changes on.
pub struct Changes {
    tx: broadcast::Sender<Change>,
    closed: watch::Sender<bool>,
    /// The users whose access changed.
    access: broadcast::Sender<String>,
    /// The open subscriptions of each user.
    open: CountedPlaces,
    /// All of them (one key), at most `server_limit`.
    everyone: CountedPlaces,
    server_limit: std::sync::atomic::AtomicUsize,
    /// Where what is published here goes to reach the other servers.
    relay: std::sync::OnceLock<tokio::sync::mpsc::UnboundedSender<Relayed>>,
    /// Counts the times changes may have been lost (see [`Changes::missed`]).
    missed: watch::Sender<u64>,
}

impl Default for Changes {
    fn default() -> Self {
        Changes {
            tx: broadcast::channel(BACKLOG).0,
            closed: watch::channel(false).0,
            access: broadcast::channel(BACKLOG).0,
            open: CountedPlaces::default(),
            everyone: CountedPlaces::default(),
            server_limit: STREAMS_ON_SERVER.into(),
            relay: Default::default(),
            missed: watch::channel(0).0,
        }
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
        let change =
            Change { project: project.to_owned(), stage: stage.map(str::to_owned), metrics: false, stages: Vec::new() };
        self.send(change, true);
    }

    /// Tells every subscriber that `stages` of `project` have new metrics, in a few changes.
    pub fn publish_metrics(&self, project: &str, stages: &[&str]) {
        for some in stages.chunks(METRICS_STAGES_PER_CHANGE) {
            let stages = some.iter().map(|s| (*s).to_owned()).collect();
            self.send(Change { project: project.to_owned(), stage: None, metrics: true, stages }, true);
        }
    }

    /// Tells the subscriptions of `user_id` that what they may read may have changed (a
    /// session ended, a token revoked, the user disabled, a role changed): each checks its
    /// caller again.
    pub fn access_changed(&self, user_id: &str) {
        self.send_access(user_id.to_owned(), true);
    }

    /// From now on, what is published here is also sent to `relay` (for the other servers).
    pub fn relay_through(&self, relay: tokio::sync::mpsc::UnboundedSender<Relayed>) {
        let _ = self.relay.set(relay);
    }

    /// Publishes here what another server published (not relayed again).
    pub fn heard_from_elsewhere(&self, relayed: Relayed) {
        match relayed {
            Relayed::Change(change) => self.send(change, false),
            Relayed::Access { user_id } => self.send_access(user_id, false),
            Relayed::Missed => self.missed(),
            Relayed::Unknown => {}
        }
    }

    /// Changes may have been lost on their way from another server (the connection that
    /// hears them was lost, or theirs could not be sent): every subscriber hears
    /// [`Heard::Missed`] and reads everything again.
    pub fn missed(&self) {
        self.missed.send_modify(|n| *n = n.wrapping_add(1));
    }

    fn send(&self, change: Change, relay: bool) {
        if let Some(tell) = self.relay.get().filter(|_| relay) {
            let _ = tell.send(Relayed::Change(change.clone()));
        }
        if self.tx.receiver_count() > 0 {
            let _ = self.tx.send(change);
        }
    }

    fn send_access(&self, user_id: String, relay: bool) {
        if let Some(tell) = self.relay.get().filter(|_| relay) {
            let _ = tell.send(Relayed::Access { user_id: user_id.clone() });
        }
        if self.access.receiver_count() > 0 {
            let _ = self.access.send(user_id);
        }
    }

    /// Hears the changes published from now on.
    pub fn subscribe(&self) -> Subscription {
        Subscription {
            rx: self.tx.subscribe(),
            closed: self.closed.subscribe(),
            access: self.access.subscribe(),
            missed: self.missed.subscribe(),
            user: None,
            _places: Vec::new(),
        }
    }

    /// [`Changes::subscribe`] for `user_id`, counted among their open streams and the server's;
    /// refused when they have [`STREAMS_PER_USER`] open already, or the server holds as many as
    /// it may ([`Changes::limit_streams`]).
    pub fn subscribe_as(&self, user_id: &str) -> Result<Subscription, StreamsFull> {
        let mine = self.open.take(user_id, STREAMS_PER_USER).ok_or(StreamsFull::User)?;
        let limit = self.server_limit.load(std::sync::atomic::Ordering::Relaxed);
        let server = self.everyone.take("", limit).ok_or(StreamsFull::Server)?;
        Ok(Subscription { user: Some(user_id.to_owned()), _places: vec![mine, server], ..self.subscribe() })
    }

    /// From now on, the server holds at most `limit` streams (at least one).
    pub fn limit_streams(&self, limit: usize) {
        self.server_limit.store(limit.max(1), std::sync::atomic::Ordering::Relaxed);
    }

    /// How many streams `user_id` has open.
    pub fn streams_of(&self, user_id: &str) -> usize {
        self.open.held_by(user_id)
    }

    /// The server is stopping: every subscription ends (open streams close, so that the
    /// listener's drain is not held up by them).
    pub fn close(&self) {
        self.closed.send_replace(true);
    }

    /// Whether the server is stopping.
    pub fn is_closed(&self) -> bool {
        *self.closed.borrow()
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
    /// The subscriber fell more than the backlog behind, or changes from another server were
    /// lost: everything may have changed (access too).
    Missed,
    /// The server is stopping.
    Closed,
    /// Access changed somewhere: check the caller again.
    Access,
}

/// One subscriber's view of the bus.
pub struct Subscription {
    rx: broadcast::Receiver<Change>,
    closed: watch::Receiver<bool>,
    access: broadcast::Receiver<String>,
    missed: watch::Receiver<u64>,
    /// Whose stream it is (`None`: it hears every change of access).
    user: Option<String>,
    /// Its places among its user's open streams and the server's, given back when it ends.
    _places: Vec<Place>,
}

/// Whether a change of `user_id`'s access concerns a subscription of `me` (`None`: one that
/// hears everyone's).
fn concerns(me: Option<&str>, user_id: &str) -> bool {
    me.is_none_or(|me| me == user_id)
}

impl Subscription {
    /// Waits for the next change.
    pub async fn next(&mut self) -> Heard {
        if *self.closed.borrow() {
            return Heard::Closed;
        }
        loop {
            tokio::select! {
                heard = self.rx.recv() => return match heard {
                    Ok(change) => Heard::Change(change),
                    Err(broadcast::error::RecvError::Lagged(_)) => Heard::Missed,
                    Err(broadcast::error::RecvError::Closed) => Heard::Closed,
                },
                _ = self.closed.wait_for(|closed| *closed) => return Heard::Closed,
                Ok(()) = self.missed.changed() => return Heard::Missed,
                heard = self.access.recv() => match heard {
                    Ok(user) if concerns(self.user.as_deref(), &user) => return Heard::Access,
                    Ok(_) | Err(broadcast::error::RecvError::Closed) => {}
                    // Some were missed: any of them may have been this user's.
                    Err(broadcast::error::RecvError::Lagged(_)) => return Heard::Access,
                },
            }
        }
    }

    /// Whether access changed for this subscription's user since last asked (for a stream that
    /// does not wait on [`Subscription::next`]).
    pub fn access_changed(&mut self) -> bool {
        // Lost changes may have been of access.
        let mut changed = self.missed.has_changed().unwrap_or(false);
        self.missed.borrow_and_update();
        loop {
            match self.access.try_recv() {
                Ok(user) => changed |= concerns(self.user.as_deref(), &user),
                Err(broadcast::error::TryRecvError::Lagged(_)) => changed = true,
                Err(_) => return changed,
            }
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
    async fn changes_lost_on_the_way_from_another_server_make_every_subscriber_read_again() {
        let bus = Changes::default();
        let (mut a, mut b) = (bus.subscribe(), bus.subscribe());
        bus.heard_from_elsewhere(Relayed::Missed);
        assert_eq!(a.next().await, Heard::Missed);
        assert!(b.access_changed(), "a stream that does not wait on next checks its caller again");
        assert!(!b.access_changed(), "once");
        // What is relayed reads back as it was sent; what a newer server sends is ignored.
        for relayed in [
            Relayed::Change(Change { project: "p".into(), stage: None, metrics: true, stages: vec!["dev".into()] }),
            Relayed::Change(Change { project: "p".into(), stage: Some("dev".into()), metrics: false, stages: vec![] }),
            Relayed::Access { user_id: "u1".into() },
            Relayed::Missed,
        ] {
            let json = serde_json::to_string(&relayed).unwrap();
            assert_eq!(serde_json::from_str::<Relayed>(&json).unwrap(), relayed, "{json}");
        }
        assert_eq!(serde_json::from_str::<Relayed>(r#"{"kind":"rebalance"}"#).unwrap(), Relayed::Unknown);
        bus.heard_from_elsewhere(Relayed::Unknown);
        bus.publish("p", None);
        assert_eq!(
            a.next().await,
            Heard::Change(Change { project: "p".into(), stage: None, metrics: false, stages: vec![] })
        );
    }

    #[tokio::test]
    async fn a_sample_of_a_thousand_running_stages_is_a_few_changes_each_stage_still_hears() {
        let bus = Changes::default();
        let mut sub = bus.subscribe();
        // Stage IDs as long as they may be.
        let ids: Vec<String> = (0..1000).map(|n| format!("{n:0>63}")).collect();
        let stages: Vec<&str> = ids.iter().map(String::as_str).collect();
        bus.publish_metrics("p", &stages);
        let mut heard = Vec::new();
        while let Ok(Heard::Change(change)) =
            tokio::time::timeout(std::time::Duration::from_millis(50), sub.next()).await
        {
            heard.push(change);
        }
        assert_eq!(heard.len(), 1000usize.div_ceil(METRICS_STAGES_PER_CHANGE), "no Missed, a few changes");
        for id in [&ids[0], &ids[500], &ids[999]] {
            assert_eq!(heard.iter().filter(|c| c.reaches("p", Some(id))).count(), 1, "{id} hears of its metrics once");
        }
        assert!(heard.iter().all(|c| c.metrics && c.reaches("p", None)), "the project's page hears them all");
        assert!(!heard.iter().any(|c| c.reaches("p", Some("another-stage")) || c.reaches("q", None)));
        // Relayed to another server, each stays within PostgreSQL's NOTIFY payload.
        for change in heard {
            let json = serde_json::to_string(&Relayed::Change(change)).unwrap();
            assert!(json.len() < 7_000, "{} bytes", json.len());
        }
        // A change of state on one stage reaches that stage's stream only; one of the project,
        // every stream of the project.
        let on_dev = Change { project: "p".into(), stage: Some("dev".into()), metrics: false, stages: vec![] };
        assert!(on_dev.reaches("p", Some("dev")) && !on_dev.reaches("p", Some("qa")) && on_dev.reaches("p", None));
        let of_project = Change { stage: None, ..on_dev };
        assert!(of_project.reaches("p", Some("qa")) && !of_project.reaches("q", Some("qa")));
    }

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
                Heard::Change(Change {
                    project: "p".into(),
                    stage: Some("dev".into()),
                    metrics: false,
                    stages: vec![]
                })
            );
            assert_eq!(
                sub.next().await,
                Heard::Change(Change { project: "p".into(), stage: None, metrics: false, stages: vec![] })
            );
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

    #[tokio::test]
    async fn one_user_opens_a_bounded_number_of_streams_and_gets_them_back_as_they_end() {
        let bus = Changes::default();
        let mut held: Vec<_> = (0..STREAMS_PER_USER).map(|_| bus.subscribe_as("u1").expect("room")).collect();
        assert_eq!(bus.subscribe_as("u1").err(), Some(StreamsFull::User), "one too many");
        assert_eq!(bus.streams_of("u1"), STREAMS_PER_USER);
        // Somebody else is not held up by it.
        let other = bus.subscribe_as("u2").expect("another user's stream");
        held.pop();
        assert_eq!(bus.streams_of("u1"), STREAMS_PER_USER - 1);
        let again = bus.subscribe_as("u1").expect("a stream that ended makes room");
        drop((held, again, other));
        assert_eq!((bus.streams_of("u1"), bus.streams_of("u2")), (0, 0));
        assert_eq!(bus.subscribers(), 0);
    }

    #[tokio::test]
    async fn the_server_holds_a_bounded_number_of_streams_whoever_opens_them() {
        let bus = Changes::default();
        bus.limit_streams(5);
        // Many accounts, a few streams each: the server's bound holds.
        let mut held: Vec<_> = (0..5).map(|n| bus.subscribe_as(&format!("u{}", n % 3)).expect("room")).collect();
        assert_eq!(bus.subscribe_as("u9").err(), Some(StreamsFull::Server));
        assert_eq!(bus.streams_of("u9"), 0, "a refused stream holds none of its user's places");
        held.pop();
        let again = bus.subscribe_as("u9").expect("a stream that ended makes room");
        drop((held, again));
        assert_eq!(bus.everyone.keys(), 0);
        assert_eq!(bus.subscribers(), 0);
    }

    #[tokio::test]
    async fn a_change_of_access_reaches_that_users_subscriptions_once() {
        let bus = Changes::default();
        let mut waiting = bus.subscribe_as("u1").unwrap();
        let mut polling = bus.subscribe_as("u1").unwrap();
        let mut other = bus.subscribe_as("u2").unwrap();
        assert!(!polling.access_changed());
        bus.access_changed("u1");
        assert_eq!(waiting.next().await, Heard::Access);
        assert!(polling.access_changed());
        assert!(!polling.access_changed(), "told once");
        assert!(!other.access_changed(), "another user's streams are not disturbed");
        bus.access_changed("u2");
        assert!(!polling.access_changed());
        bus.publish("p", None);
        assert!(matches!(waiting.next().await, Heard::Change(_)), "another user's change is not heard");
        assert!(other.access_changed());
    }
}
