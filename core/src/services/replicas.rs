//! Several servers on one database. Work that must happen once — the background sweeps (purge,
//! retention) — is done by the one server holding the *background* lease, and a runtime whose
//! stages are one server's own processes (the local runtime) is claimed by its server with
//! the *runtime* lease, so that a second server with such a runtime refuses to start instead
//! of starting the same stages twice. On SQLite there is one server, always.
//!
//! A lease is a row (`leases`: name, holder, until when) taken atomically, renewed every
//! [`LEASE_RENEW`] while its holder lives, and free to take once [`LEASE_TTL`] has passed
//! without a renewal: a server that dies hands its work over within that. A server stopping
//! gives its leases up at once; one killed on this machine is recognised as dead by its process
//! number, so that a restart does not wait for its lease to run out.

use super::{internal, Services};
use crate::live::Relayed;
use pergola_domain::Error;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How long a lease lasts without a renewal: a dead holder's work is taken over after this.
pub const LEASE_TTL: Duration = Duration::from_secs(10);
/// How often a holder renews its leases (and the others try to take a free one).
pub const LEASE_RENEW: Duration = Duration::from_secs(3);

/// The lease of the background sweeps.
pub const BACKGROUND_LEASE: &str = "background";
/// The lease of a runtime that belongs to one server.
pub const RUNTIME_LEASE: &str = "runtime";

/// This server among those on the database: its host, its process number and the process
/// namespace that number belongs to (containers on one host each have their own), and a
/// random part (a process number is reused; the random part never is).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Replica {
    pub host: String,
    pub pid: u32,
    /// The inode of `/proc/self/ns/pid` (0 when it cannot be read).
    pub pid_ns: u64,
    pub nonce: String,
}

impl Replica {
    /// This process.
    pub fn this_process() -> Self {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".into());
        let nonce = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        let pid_ns = std::fs::read_link("/proc/self/ns/pid")
            .ok()
            .and_then(|link| {
                let link = link.to_string_lossy().into_owned();
                link.strip_prefix("pid:[")?.strip_suffix(']')?.parse().ok()
            })
            .unwrap_or(0);
        Self { host, pid: std::process::id(), pid_ns, nonce }
    }

    /// How a lease names it: `HOST pid PID ns NS (NONCE)`.
    pub fn holder(&self) -> String {
        format!("{} pid {} ns {} ({})", self.host, self.pid, self.pid_ns, self.nonce)
    }

    fn parse(holder: &str) -> Option<Self> {
        let (host, rest) = holder.split_once(" pid ")?;
        let (pid, rest) = rest.split_once(" ns ")?;
        let (pid_ns, nonce) = rest.split_once(" (")?;
        Some(Self {
            host: host.into(),
            pid: pid.parse().ok()?,
            pid_ns: pid_ns.parse().ok()?,
            nonce: nonce.strip_suffix(')')?.into(),
        })
    }

    /// Whether `self`, a holder seen in the database, is a process of this machine — the same
    /// host and process namespace — that no longer runs (killed without giving its leases up):
    /// its process is gone, or its number is this process's own (a container started again
    /// after a kill gets the same number) and it is not this process.
    fn is_dead_here(&self, me: &Replica) -> bool {
        if self.host != me.host || self.pid_ns != me.pid_ns || self.pid_ns == 0 {
            return false;
        }
        if self.pid == me.pid {
            return self.nonce != me.nonce;
        }
        !std::path::Path::new(&format!("/proc/{}", self.pid)).exists()
    }
}

/// This server's part in the leases, shared by every clone of the services.
pub(super) struct Leases {
    pub(super) me: Replica,
    /// Whether this server does the background sweeps. A server alone does (the services'
    /// default); [`Services::renew_leases`] makes servers take turns.
    background: AtomicBool,
    /// Whether the leases were renewed at least once (the first renewal says what it found).
    renewed_once: AtomicBool,
    /// When the runtime's claim was last taken or renewed.
    runtime_renewed: std::sync::Mutex<Option<chrono::DateTime<chrono::Utc>>>,
}

impl Leases {
    /// Whether this server holds the background lease.
    pub(super) fn background(&self) -> bool {
        self.background.load(Ordering::SeqCst)
    }

    fn new(me: Replica) -> Self {
        Self {
            me,
            background: AtomicBool::new(true),
            renewed_once: AtomicBool::new(false),
            runtime_renewed: Default::default(),
        }
    }
}

impl Default for Leases {
    fn default() -> Self {
        Self::new(Replica::this_process())
    }
}

impl Services {
    /// This server, as the leases name it.
    pub fn replica(&self) -> &Replica {
        &self.leases.me
    }

    /// Whether this server does the background sweeps now.
    pub fn runs_background_work(&self) -> bool {
        self.leases.background()
    }

    /// Every server of a database seals and opens secrets with one key: the first to start
    /// records a value sealed with its key (`key-check`); a server whose key cannot open it
    /// is refused before it serves anything (it could open no stage's secret, and would seal
    /// values the others cannot open). Before recording it, a key that opens none of the
    /// secrets already sealed in the database is refused too (a data directory lost, a server
    /// of an upgraded instance with a key of its own), and records nothing. Nothing to check
    /// without a key.
    pub async fn check_secret_key(&self) -> Result<(), Error> {
        const NAME: &str = "key-check";
        const VALUE: &str = "pergola: the servers' secret key";
        const RECOVER: &str = "Give every server of the database the same PERGOLA_SECRET_KEY (or one data \
             directory's secret.key). Only if the secrets were really sealed with a key that is lost, delete the \
             check to start with this one: DELETE FROM instance_settings WHERE name = 'key-check' (the secrets \
             sealed with the lost key stay unreadable; set them again).";
        let Some(secrets) = &self.secrets else { return Ok(()) };
        let place = crate::secrets::Place { project: "", stage: "", key: NAME };
        let mut stored = self.store.setting(NAME).await.map_err(internal("read the key check"))?;
        if stored.is_none() {
            let sample = self.store.sealed_config_sample(16).await.map_err(internal("read sealed secrets"))?;
            let opens = |(project, stage, key, value): &(String, String, String, String)| {
                secrets.open(value, crate::secrets::Place { project, stage, key }).is_ok()
            };
            if !sample.is_empty() && !sample.iter().any(opens) {
                return Err(Error::invalid_state(format!(
                    "This server's secret key opens none of the secrets sealed in the database. {RECOVER}"
                )));
            }
            let recorded = self.store.insert_setting(NAME, &secrets.seal(VALUE, place)).await;
            if recorded.map_err(internal("record the key check"))? {
                return Ok(());
            }
            // Another server recorded its own at the same moment.
            stored = self.store.setting(NAME).await.map_err(internal("read the key check"))?;
        }
        match stored.map(|stored| secrets.open(&stored, place)) {
            Some(Ok(value)) if value == VALUE => Ok(()),
            _ => Err(Error::invalid_state(format!(
                "This server's secret key is not the one the database's secrets are sealed with. {RECOVER}"
            ))),
        }
    }

    /// Claims the database for this server's runtime when that runtime belongs to one server
    /// (or the database is SQLite): refused, with who holds it, while another server lives.
    /// True when it claimed it (the claim must then be kept: [`spawn_lease_keeper`]).
    pub async fn claim_runtime(&self) -> Result<bool, Error> {
        if self.runtime.shared() && self.store.backend() != "sqlite" {
            return Ok(false);
        }
        for _ in 0..2 {
            if self.take(RUNTIME_LEASE).await? {
                *self.leases.runtime_renewed.lock().expect("lease") = Some(self.clock.now());
                return Ok(true);
            }
            let Some((holder, _)) = self.store.lease(RUNTIME_LEASE).await.map_err(internal("read a lease"))? else {
                continue;
            };
            match Replica::parse(&holder) {
                Some(dead) if dead.is_dead_here(&self.leases.me) => {
                    tracing::warn!(holder, "the server that held this database was killed: its claim is taken over");
                    self.store.release_lease(RUNTIME_LEASE, &holder).await.map_err(internal("release a lease"))?;
                }
                _ => {
                    let secs = LEASE_TTL.as_secs();
                    return Err(Error::invalid_state(format!(
                        "Another Pergola server ({holder}) runs the stages of this database, and its runtime belongs \
                         to one server (the local runtime runs stages as that server's own processes; SQLite has \
                         one server, always). Stop that server first — its claim ends at once when it stops, or \
                         {secs} s after it was killed — or run every server on PostgreSQL with a runtime they \
                         share."
                    )));
                }
            }
        }
        Err(Error::invalid_state("Could not claim the database for this server's runtime; try again."))
    }

    /// Renews this server's leases and takes the background one if it is free: returns false
    /// when the runtime's claim was lost — another server took it after this one failed to
    /// renew it in time, or the database has not answered for as long as a claim lasts (another
    /// server may have taken it meanwhile) — and this server must stop running stages.
    pub async fn renew_leases(&self, claims_runtime: bool) -> bool {
        match self.take(BACKGROUND_LEASE).await {
            Ok(held) => {
                let first = !self.leases.renewed_once.swap(true, Ordering::SeqCst);
                if self.leases.background.swap(held, Ordering::SeqCst) != held || first {
                    tracing::info!(
                        held,
                        "background work (purge, retention) {}",
                        if held { "taken" } else { "given up" }
                    );
                }
            }
            Err(_) => self.leases.background.store(false, Ordering::SeqCst),
        }
        if !claims_runtime {
            return true;
        }
        let now = self.clock.now();
        let taken = self.take(RUNTIME_LEASE).await;
        let mut renewed = self.leases.runtime_renewed.lock().expect("lease");
        match taken {
            Ok(held) => {
                if held {
                    *renewed = Some(now);
                }
                held
            }
            // The database away: the claim is this server's only until it runs out.
            Err(_) => renewed.is_some_and(|at| now - at < chrono::Duration::from_std(LEASE_TTL).expect("short")),
        }
    }

    /// Gives this server's leases up (it is stopping): another takes the work at once.
    pub async fn release_leases(&self) {
        let me = self.leases.me.holder();
        for name in [BACKGROUND_LEASE, RUNTIME_LEASE] {
            let _ = self.store.release_lease(name, &me).await;
        }
        self.leases.background.store(false, Ordering::SeqCst);
    }

    async fn take(&self, name: &str) -> Result<bool, Error> {
        let now = self.clock.now();
        let until = now + chrono::Duration::from_std(LEASE_TTL).expect("a short duration");
        self.store.take_lease(name, &self.leases.me.holder(), now, until).await.map_err(internal("take a lease"))
    }

    /// The same store, runtime and clock as another server, `replica` (tests of several
    /// servers on one database): its own leases and its own live streams.
    pub fn as_another_server(&self, replica: Replica) -> Self {
        let leases = Leases::new(replica);
        Self {
            leases: std::sync::Arc::new(leases),
            changes: Default::default(),
            locks: Default::default(),
            proxy_cache: Default::default(),
            metrics: Default::default(),
            turns: std::sync::Arc::new(tokio::sync::Semaphore::new(super::SHARED_TURNS)),
            settling: Default::default(),
            ..self.clone()
        }
    }

    /// Tells the other servers of a PostgreSQL database at once when this one changes a stage,
    /// and listens for theirs, so that every server's share links answer from the change on
    /// (without it, within the proxy cache's 1 s); and relays what it publishes for the live
    /// streams (a change, new metrics, a user's access changed), so that pages open on any
    /// server hear what was done through any other. Nothing on SQLite.
    pub async fn spawn_stage_notices(&self) -> Result<(), Error> {
        let Some(mut listener) =
            self.store.listen_stages_changed().await.map_err(internal("listen for other servers' changes"))?
        else {
            return Ok(());
        };
        let me = self.leases.me.holder();
        let (tell, mut told) = tokio::sync::mpsc::unbounded_channel();
        self.proxy_cache.tell_through(tell);
        let (store, from) = (self.store.clone(), me.clone());
        tokio::spawn(async move {
            while told.recv().await.is_some() {
                while told.try_recv().is_ok() {}
                if let Err(e) = store.notify_stages_changed(&from).await {
                    tracing::warn!(error = %e, "telling the other servers of a change");
                }
            }
        });
        // What this server publishes for the live streams reaches the other servers' too.
        let (relay, mut relayed) = tokio::sync::mpsc::unbounded_channel();
        self.changes.relay_through(relay);
        let (store, from) = (self.store.clone(), me.clone());
        tokio::spawn(async move {
            while let Some(first) = relayed.recv().await {
                // What piled up meanwhile (the database was slow), each once (a few hundred
                // at a time: comparing is quadratic).
                let mut batch = vec![first];
                while batch.len() < 256 {
                    let Ok(more) = relayed.try_recv() else { break };
                    if !batch.contains(&more) {
                        batch.push(more);
                    }
                }
                for what in batch {
                    let notice = RelayNotice { from: from.clone(), what };
                    let Ok(payload) = serde_json::to_string(&notice) else { continue };
                    if let Err(e) = store.notify_change(&payload).await {
                        tracing::warn!(error = %e, "relaying a change to the other servers");
                        // The others miss this and what follows until the database answers
                        // again: nothing piles up meanwhile, and they are then told that
                        // they missed some (their pages read everything again).
                        let missed = RelayNotice { from: from.clone(), what: Relayed::Missed };
                        let missed = serde_json::to_string(&missed).unwrap_or_default();
                        loop {
                            while relayed.try_recv().is_ok() {}
                            tokio::time::sleep(Duration::from_secs(1)).await;
                            while relayed.try_recv().is_ok() {}
                            if store.notify_change(&missed).await.is_ok() {
                                break;
                            }
                        }
                        break;
                    }
                }
            }
        });
        let (cache, changes) = (self.proxy_cache.clone(), self.changes.clone());
        tokio::spawn(async move {
            loop {
                // `try_recv` says when the connection was lost (then reconnects at the next
                // call): notices may have been missed, so the cache starts over.
                match listener.try_recv().await {
                    Ok(Some(notice)) if notice.channel() == crate::store::CHANGE_NOTICES => {
                        match serde_json::from_str::<RelayNotice>(notice.payload()) {
                            Ok(n) if n.from != me => changes.heard_from_elsewhere(n.what),
                            Ok(_) => {}
                            Err(e) => tracing::warn!(error = %e, "an unreadable change from another server"),
                        }
                    }
                    Ok(Some(notice)) if notice.payload() == me => {}
                    Ok(Some(_)) => cache.forget_here(),
                    // The connection was lost: what the others published meanwhile is lost
                    // too — the open pages read everything again.
                    Ok(None) => {
                        cache.forget_here();
                        changes.missed();
                    }
                    Err(sqlx::Error::PoolClosed) => break,
                    Err(e) => {
                        cache.forget_here();
                        changes.missed();
                        tracing::warn!(error = %e, "listening for other servers' changes (trying again)");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
        Ok(())
    }

    /// Whether the database answers (the readiness probe `/readyz`).
    pub async fn ready(&self) -> Result<(), Error> {
        if self.changes.is_closed() {
            return Err(Error::invalid_state("The server is stopping."));
        }
        match tokio::time::timeout(Duration::from_secs(2), self.store.ping()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "readiness: the database does not answer");
                Err(Error::invalid_state("The database does not answer."))
            }
            Err(_) => Err(Error::invalid_state("The database does not answer within 2 s.")),
        }
    }
}

/// Renews the leases every [`LEASE_RENEW`] until the server stops; completes if the runtime's
/// claim is lost (the server must then stop: another runs the stages).
pub fn spawn_lease_keeper(services: Services, claims_runtime: bool) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(LEASE_RENEW);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if !services.renew_leases(claims_runtime).await {
                tracing::error!("another server took this database's runtime claim: stopping");
                return;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_holder_reads_back_and_a_dead_process_of_this_machine_is_known() {
        let me = Replica::this_process();
        assert_ne!(me.pid_ns, 0, "/proc/self/ns/pid is read");
        assert_eq!(Replica::parse(&me.holder()), Some(me.clone()));
        for garbage in ["", "host", "host pid x ns 1 (y)", "host pid 12 ns 1 (y", "a pid 1", "h pid 1 (n)"] {
            assert_eq!(Replica::parse(garbage), None, "{garbage}");
        }
        assert!(!me.is_dead_here(&me), "not itself");
        let parent = Replica { pid: std::os::unix::process::parent_id(), ..me.clone() };
        assert!(!parent.is_dead_here(&me), "a live process");
        let gone = Replica { pid: u32::MAX - 1, ..me.clone() };
        assert!(gone.is_dead_here(&me));
        let earlier = Replica { nonce: "earlier".into(), ..me.clone() };
        assert!(earlier.is_dead_here(&me), "this process's number, another process: the one before a restart");
        let elsewhere = Replica { host: format!("{}-other", me.host), ..gone.clone() };
        assert!(!elsewhere.is_dead_here(&me), "another machine's process cannot be looked at");
        let other_container = Replica { pid_ns: me.pid_ns + 1, ..gone };
        assert!(!other_container.is_dead_here(&me), "another process namespace's numbers mean nothing here");
    }
}

/// A change relayed to the other servers, and which server published it.
#[derive(serde::Serialize, serde::Deserialize)]
struct RelayNotice {
    from: String,
    what: Relayed,
}
