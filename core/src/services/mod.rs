//! The operations behind every dashboard action, API route and CLI command, one file per topic.
//!
//! They take typed values: the edges (the dashboard's server functions, the REST handlers, the
//! CLI) parse what users typed with `pergola-domain`. Each operation still checks its input
//! against the domain's rules (names, IDs, bounds), so no caller can skip a rule, and maps store
//! failures to [`Error`]: users see a clear message, the server log keeps the detail and the
//! operation that failed.

mod access;
mod activity;
mod config;
mod demo;
mod events;
mod fetch;
mod lifecycle;
mod limits;
mod live;
mod metrics;
mod projects;
mod promote;
mod proxy_cache;
mod releases;
mod replicas;
mod retention;
mod runtime;
mod sharing;
mod stages;

pub use access::{Acting, Authenticated, Caller, Credential, FirstRun, NewSession};
pub use demo::DEMO_MANIFEST;
pub use fetch::{BuildFiles, BuildGrant, DOWNLOADS_AT_ONCE, FETCH_TOKEN_PREFIX, FETCH_TOKEN_TTL};
pub use live::{LogFollow, Note, Watch, MAX_LIFE, METRICS_AT_MOST_EVERY, RECHECK, STREAMS_PER_USER};
pub use metrics::spawn_metrics_sampler;
pub use promote::Duplicate;
use proxy_cache::ProxyCache;
pub use proxy_cache::PROXY_CACHE_TTL;
pub use releases::PATH_BUILDS_OFF;
pub use replicas::{spawn_lease_keeper, Replica, BACKGROUND_LEASE, LEASE_RENEW, LEASE_TTL, RUNTIME_LEASE};
pub use runtime::ReconcileReport;
pub use sharing::{ShareAccess, ShareCredentials, SHARE_CODE_TTL};

/// The mark of a plain value in a release's configuration snapshot that would otherwise read
/// as sealed (see `Services::to_snapshot`).
const SNAPSHOT_PLAIN: char = '\0';

use crate::artifacts::Artifacts;
use crate::live::Changes;
use crate::runtime::{EventSink, EventStream};
use crate::secrets::Place;
use crate::{Clock, NoRuntime, Runtime, SecretBox, Store, StoreError};
use pergola_domain::share::ShareBase;
use pergola_domain::{Error, Stage, StageEvent};
use std::sync::Arc;
use std::time::Duration;

/// A stage named by its (project ID, stage ID).
type StageIds = (String, String);

/// One lock per stage, taken while what runs on it changes.
type StageLocks = std::sync::Mutex<std::collections::HashMap<StageIds, Arc<tokio::sync::Mutex<()>>>>;

#[derive(Clone)]
pub struct Services {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    /// What runs the stages ([`NoRuntime`] by default: releases are recorded, nothing runs).
    runtime: Arc<dyn Runtime>,
    /// The sink the runtime reports to: flushed before an event of the services is recorded,
    /// so the timeline keeps the order in which things happened.
    observed: EventSink,
    /// The grace period new stages get (between SIGTERM and SIGKILL).
    grace: Duration,
    /// Where share links point.
    share: ShareBase,
    /// Seals secret configuration values at rest; without one they are stored as they are.
    secrets: Option<SecretBox>,
    /// Live stages as the share-link proxy last read them (see [`Services::stage_with_components`]).
    proxy_cache: Arc<ProxyCache>,
    /// One lock per stage: what runs on a stage changes one operation at a time.
    locks: Arc<StageLocks>,
    /// How much of the events timelines [`Services::prune_events`] keeps.
    events_kept: EventsKept,
    /// The first run's setup code, and whether users exist.
    auth: Arc<access::AuthState>,
    /// When failed sign-ins lock a username out from an address.
    throttle: pergola_domain::Throttle,
    /// When sessions end.
    sessions: pergola_domain::SessionPolicy,
    /// Where uploaded builds are kept; `None`: uploads are refused (a server always has one).
    artifacts: Option<Artifacts>,
    /// How long an artifact no release runs is kept after its newest build.
    artifact_retention: chrono::Duration,
    /// Whether administrators may register builds by a directory on the server.
    path_builds: bool,
    /// Where every change is published for the live streams.
    changes: Arc<Changes>,
    /// What the components used and how their services answered.
    metrics: Arc<crate::metrics::MetricsBook>,
    /// When these services were made (the server's uptime).
    started_at: chrono::DateTime<chrono::Utc>,
    /// This server among others on the database, and the leases it holds.
    leases: Arc<replicas::Leases>,
    /// The builds being packed for downloads (see [`Services::download_permit`]).
    downloads: Arc<tokio::sync::Semaphore>,
    /// The Kubernetes runtime's settings (what a stage's objects name).
    cluster: Arc<crate::config::Cluster>,
    /// The stages' turns across servers this server may hold at once.
    turns: Arc<tokio::sync::Semaphore>,
    /// The stages left suspending this server is settling (see `Services::settle_left_suspends`).
    settling: Arc<std::sync::Mutex<std::collections::HashSet<crate::StageKey>>>,
    /// The newest stop of each stage this server asks again (see
    /// `Services::ask_again_while_refused`).
    asking_again: Arc<std::sync::Mutex<runtime::AskingAgain>>,
}

/// How many stages' turns across servers (see `Services::take_turn`) one server holds at
/// once: each holds a database connection, and the work done in it needs others (of the pool's
/// 10, one more is the listener of the other servers' notices).
pub const SHARED_TURNS: usize = 4;
/// How long a start of a stage's release waits for the stage's turn while another holds it
/// (asking the cluster for its change) before it gives up, saying the stage is busy — within
/// the usual 60 s of a proxy in front of the servers. A stop waits on.
pub const TURN_WAIT: Duration = Duration::from_secs(45);

/// How long an artifact no release runs is kept after its newest build, by default.
pub const ARTIFACT_RETENTION_DAYS: i64 = 7;

/// How much of each stage's events timeline is kept: its newest `per_stage` events, none older
/// than `max_age`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventsKept {
    pub per_stage: i64,
    pub max_age: chrono::Duration,
}

impl Default for EventsKept {
    fn default() -> Self {
        Self { per_stage: EVENTS_KEPT_PER_STAGE, max_age: chrono::Duration::days(EVENTS_KEPT_DAYS) }
    }
}

/// A stage's timeline keeps at most this many events (the newest).
pub const EVENTS_KEPT_PER_STAGE: i64 = 10_000;
/// Events older than this many days are deleted.
pub const EVENTS_KEPT_DAYS: i64 = 90;

/// The seed's "usually 60 secs" between SIGTERM and SIGKILL.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(pergola_domain::DEFAULT_GRACE_SECS as u64);

/// How long a suspend or delete waits for the components to stop before it answers; a stop
/// that takes longer goes on in the background while the stage shows "suspending".
const ANSWER_WITHIN: Duration = Duration::from_millis(500);

/// How many events a timeline shows.
pub const EVENTS_SHOWN: i64 = 100;

/// What to do with a failure of the store in `operation`: log it, with the operation and where
/// in the services it failed, and hand the caller the generic internal error. Called where the
/// operation is (`.map_err(internal("list the stages"))`), so the location is that line.
#[track_caller]
fn internal(operation: &'static str) -> impl FnOnce(StoreError) -> Error {
    let at = std::panic::Location::caller();
    move |e| {
        tracing::error!(operation, at = %at, error = %e, "store operation failed");
        Error::internal()
    }
}

/// Adds an event to a stage's timeline; a failure is logged, never the caller's problem.
/// Every timeline's new event is a change of its stage for the live streams.
async fn record(store: &dyn Store, changes: &Changes, project_id: &str, stage_id: &str, event: StageEvent) {
    if let Err(e) = store.add_event(project_id, stage_id, &event).await {
        tracing::warn!(project_id, stage_id, error = %e, "could not record a stage event");
    }
    changes.publish(project_id, Some(stage_id));
}

/// Records what a runtime observes in the stages' timelines, until it stops sending. (It holds
/// the store only: the runtime holding the sink is not kept alive by this task.) A runtime
/// shared by several servers (a cluster) is observed by each of them: only the one doing the
/// background work (`gate`) records, so that each event is in the timeline once.
async fn record_observed_events(
    store: Arc<dyn Store>,
    changes: Arc<Changes>,
    mut observed: EventStream,
    gate: Option<Arc<replicas::Leases>>,
) {
    while let Some((key, event)) = observed.recv().await {
        if gate.as_ref().is_none_or(|leases| leases.background()) {
            record(&*store, &changes, &key.project, &key.stage, event).await;
        }
    }
}

impl Services {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            clock,
            runtime: Arc::new(NoRuntime),
            observed: EventSink::channel().0,
            grace: DEFAULT_GRACE,
            share: ShareBase { domain: "localhost".into(), port: 3000, secure: false },
            secrets: None,
            locks: Arc::default(),
            proxy_cache: Arc::default(),
            events_kept: EventsKept::default(),
            auth: Arc::default(),
            throttle: pergola_domain::Throttle::default(),
            sessions: pergola_domain::SessionPolicy::default(),
            artifacts: None,
            artifact_retention: chrono::Duration::days(ARTIFACT_RETENTION_DAYS),
            path_builds: false,
            changes: Arc::default(),
            metrics: Arc::default(),
            started_at: chrono::Utc::now(),
            leases: Arc::default(),
            downloads: Arc::new(tokio::sync::Semaphore::new(fetch::DOWNLOADS_AT_ONCE)),
            cluster: Arc::default(),
            turns: Arc::new(tokio::sync::Semaphore::new(SHARED_TURNS)),
            settling: Arc::default(),
            asking_again: Arc::default(),
        }
    }

    /// The same services, with the Kubernetes runtime's settings `cluster`.
    pub fn with_cluster(&self, cluster: crate::config::Cluster) -> Self {
        Self { cluster: Arc::new(cluster), ..self.clone() }
    }

    /// The Kubernetes runtime's settings: what a stage's objects are rendered with.
    pub fn cluster(&self) -> &crate::config::Cluster {
        &self.cluster
    }

    /// The bus on which every change is published (see [`crate::live`]).
    pub fn changes(&self) -> &Changes {
        &self.changes
    }

    /// The same services, keeping uploaded builds in `artifacts`.
    pub fn with_artifacts(&self, artifacts: Artifacts) -> Self {
        Self { artifacts: Some(artifacts), ..self.clone() }
    }

    /// The same services, keeping an artifact no release runs for `retention` after its
    /// newest build.
    pub fn with_artifact_retention(&self, retention: Duration) -> Self {
        let retention = chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
        Self { artifact_retention: retention, ..self.clone() }
    }

    /// The same services, letting administrators register builds by a server path (`on`) or
    /// not.
    pub fn with_path_builds(&self, on: bool) -> Self {
        Self { path_builds: on, ..self.clone() }
    }

    /// What an upload may be (`None`: this server takes no uploads).
    pub fn artifact_limits(&self) -> Option<crate::artifacts::ArtifactLimits> {
        self.artifacts.as_ref().map(Artifacts::limits)
    }

    /// Where share links point.
    pub fn share_base(&self) -> &ShareBase {
        &self.share
    }

    /// How long a session lasts at most, whatever its use (the cookie's `Max-Age`).
    pub fn session_lifetime(&self) -> chrono::Duration {
        self.sessions.absolute
    }

    /// The lock that serializes the runtime operations of one stage.
    fn stage_lock(&self, project_id: &str, stage_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().expect("stage locks");
        locks.entry((project_id.to_owned(), stage_id.to_owned())).or_default().clone()
    }

    /// The same services, sealing secret configuration values at rest with `secrets`.
    pub fn with_secrets(&self, secrets: SecretBox) -> Self {
        let services = Self { secrets: Some(secrets), ..self.clone() };
        services.runtime.grant_builds(services.build_minter());
        services
    }

    /// The stored form of a secret value of `place` (sealed, when the server has a key).
    fn seal(&self, value: &str, place: Place<'_>) -> String {
        self.secrets.as_ref().map_or_else(|| value.to_owned(), |s| s.seal(value, place))
    }

    /// The value of a stored setting: a secret one is opened (in its place), a plain one is
    /// what it is, even when it starts with `enc:`.
    fn open(&self, stored: &str, secret: bool, place: Place<'_>) -> Result<String, Error> {
        if !secret {
            return Ok(stored.to_owned());
        }
        match &self.secrets {
            Some(s) => s.open(stored, place).map_err(|e| {
                tracing::error!(
                    project = place.project,
                    stage = place.stage,
                    key = place.key,
                    error = %e,
                    "a secret configuration value could not be opened"
                );
                Error::internal()
            }),
            None if crate::secrets::is_sealed(stored) => {
                tracing::error!(
                    project = place.project,
                    stage = place.stage,
                    key = place.key,
                    "a sealed configuration value, but the server has no secret key"
                );
                Err(Error::internal())
            }
            None => Ok(stored.to_owned()),
        }
    }

    /// A setting as a release's configuration snapshot keeps it. The snapshot is a map of
    /// values without a secret flag, so a secret's sealed form is copied as it is (same
    /// project, stage and key: it still opens), and a plain value that starts with `enc:`
    /// (which would read as sealed) or with [`SNAPSHOT_PLAIN`] is marked by a leading
    /// [`SNAPSHOT_PLAIN`]; no setting's value holds a NUL, so the mark is unambiguous.
    fn to_snapshot(value: String, secret: bool) -> String {
        if !secret && (value.starts_with("enc:") || value.starts_with(SNAPSHOT_PLAIN)) {
            format!("{SNAPSHOT_PLAIN}{value}")
        } else {
            value
        }
    }

    /// A value of a release's configuration snapshot, opened (see [`Self::to_snapshot`]).
    /// Unmarked values are opened when sealed: snapshots taken before the mark existed did
    /// not tell plain values starting with `enc:v1:` from sealed ones either.
    fn open_snapshot(&self, stored: &str, place: Place<'_>) -> Result<String, Error> {
        match stored.strip_prefix(SNAPSHOT_PLAIN) {
            Some(plain) => Ok(plain.to_owned()),
            None => self.open(stored, crate::secrets::is_sealed(stored), place),
        }
    }

    /// The same store, seen through another clock.
    pub fn with_clock(&self, clock: Arc<dyn Clock>) -> Self {
        Self { clock, ..self.clone() }
    }

    /// The same services, running stages with `runtime`; new stages get this grace period.
    /// What the runtime observes from now on goes to the stages' timelines (a task forwards
    /// it, so this must be called within a Tokio runtime).
    pub fn with_runtime(&self, runtime: Arc<dyn Runtime>, grace: Duration) -> Self {
        let (sink, stream) = EventSink::channel();
        runtime.observe(sink.clone());
        runtime.grant_builds(self.build_minter());
        let gate = runtime.shared().then(|| self.leases.clone());
        tokio::spawn(record_observed_events(self.store.clone(), self.changes.clone(), stream, gate));
        Self { runtime, observed: sink, grace, ..self.clone() }
    }

    /// The same services, keeping `kept` of the events timelines (tests use small bounds).
    pub fn with_events_kept(&self, kept: EventsKept) -> Self {
        Self { events_kept: kept, ..self.clone() }
    }

    /// The same services, with share links pointing at `share`.
    pub fn with_share_base(&self, share: ShareBase) -> Self {
        Self { share, ..self.clone() }
    }
}

/// The grace period a stage's components get between SIGTERM and SIGKILL.
fn grace(stage: &Stage) -> Duration {
    Duration::from_secs(u64::from(stage.grace_secs))
}

fn capitalized(s: &str) -> String {
    let mut chars = s.chars();
    chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Collects what the log writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_store_failure_is_logged_with_its_operation_and_where_it_failed() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt().with_ansi(false).with_writer(move || writer.clone()).finish();
        let line = line!() + 2;
        let error = tracing::subscriber::with_default(subscriber, || {
            Err::<(), _>(StoreError::Conflict).map_err(internal("list the stages")).unwrap_err()
        });
        assert_eq!(error.kind, Error::internal().kind, "the caller sees the generic internal error");
        let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert!(log.contains("store operation failed"), "{log}");
        assert!(log.contains("list the stages"), "{log}");
        assert!(log.contains(&format!("services/mod.rs:{line}")), "{log}");
    }

    #[tokio::test]
    async fn only_secret_entries_are_opened_and_snapshots_keep_plain_values_plain() {
        let env = crate::testing::sqlite_env().await;
        let s = &env.services;
        let here = Place { project: "shop", stage: "prod", key: "TOKEN" };
        for plain in ["enc:v1:abc", "enc:v2:00", "enc:", "\0x", "debug", ""] {
            assert_eq!(s.open(plain, false, here).unwrap(), plain, "a plain value is itself");
            let snap = Services::to_snapshot(plain.to_owned(), false);
            assert_eq!(s.open_snapshot(&snap, here).unwrap(), plain, "{snap:?}");
        }
        assert!(s.open("enc:v1:abc", true, here).is_err(), "marked secret, it is opened (and fails)");
        let sealed = s.seal("s3cret", here);
        assert_eq!(Services::to_snapshot(sealed.clone(), true), sealed, "copied as it is");
        assert_eq!(s.open_snapshot(&sealed, here).unwrap(), "s3cret");
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt().with_ansi(false).with_writer(move || writer.clone()).finish();
        let moved =
            tracing::subscriber::with_default(subscriber, || s.open(&sealed, true, Place { stage: "qa", ..here }));
        assert_eq!(moved.unwrap_err().kind, Error::internal().kind);
        let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert!(log.contains("could not be opened") && log.contains("qa") && log.contains("TOKEN"), "{log}");
        env.cleanup().await;
    }
}
