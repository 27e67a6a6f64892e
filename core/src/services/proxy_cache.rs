//! What the share-link proxy last read of the live stages.

use super::StageIds;
use pergola_domain::Stage;
use std::time::Duration;

/// How long the share-link proxy may serve a stage it read without reading it again.
pub const PROXY_CACHE_TTL: Duration = Duration::from_secs(1);
/// More remembered stages than this and the cache starts over.
const PROXY_CACHE_MAX: usize = 10_000;

/// Live stages the proxy read, each with when and in which generation. A change bumps the
/// generation, which makes every entry stale, and one read before a change (but stored after
/// it) is never served.
/// A stage as read, when and in which generation.
type Remembered = (std::time::Instant, u64, Stage);

/// Who may pass, per stage and per credentials (the hashes of the share and guest cookies):
/// decided when, in which generation, and the answer.
type Decided = (std::time::Instant, u64, super::sharing::ShareAccess);

#[derive(Default)]
pub(super) struct ProxyCache {
    /// Where a change is told to the other servers of the database (see
    /// `Services::spawn_stage_notices`); unset: this server is alone.
    notices: std::sync::OnceLock<tokio::sync::mpsc::UnboundedSender<()>>,
    generation: std::sync::atomic::AtomicU64,
    entries: std::sync::Mutex<std::collections::HashMap<StageIds, Remembered>>,
    decisions: std::sync::Mutex<std::collections::HashMap<(StageIds, String), Decided>>,
}

impl ProxyCache {
    pub(super) fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub(super) fn get(&self, key: &StageIds) -> Option<Stage> {
        let entries = self.entries.lock().expect("proxy cache");
        let (at, generation, stage) = entries.get(key)?;
        (*generation == self.generation() && at.elapsed() < PROXY_CACHE_TTL).then(|| stage.clone())
    }

    pub(super) fn put(&self, key: StageIds, stage: Stage, read_in: u64) {
        let mut entries = self.entries.lock().expect("proxy cache");
        if entries.len() >= PROXY_CACHE_MAX {
            entries.clear();
        }
        entries.insert(key, (std::time::Instant::now(), read_in, stage));
    }

    pub(super) fn decision(&self, key: &(StageIds, String)) -> Option<super::sharing::ShareAccess> {
        let decisions = self.decisions.lock().expect("proxy cache");
        let (at, generation, access) = decisions.get(key)?;
        (*generation == self.generation() && at.elapsed() < PROXY_CACHE_TTL).then_some(*access)
    }

    pub(super) fn decide(&self, key: (StageIds, String), access: super::sharing::ShareAccess, read_in: u64) {
        let mut decisions = self.decisions.lock().expect("proxy cache");
        if decisions.len() >= PROXY_CACHE_MAX {
            decisions.clear();
        }
        decisions.insert(key, (std::time::Instant::now(), read_in, access));
    }

    /// Forgets every stage and decision (after a change of a stage, its sharing, a membership
    /// or a user), here and on the other servers of the database.
    pub(super) fn forget_all(&self) {
        self.forget_here();
        if let Some(notices) = self.notices.get() {
            let _ = notices.send(());
        }
    }

    /// From now on, changes are told through `notices`.
    pub(super) fn tell_through(&self, notices: tokio::sync::mpsc::UnboundedSender<()>) {
        let _ = self.notices.set(notices);
    }

    /// Forgets every stage and decision, on this server (another one changed something).
    pub(super) fn forget_here(&self) {
        self.generation.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.entries.lock().expect("proxy cache").clear();
        self.decisions.lock().expect("proxy cache").clear();
    }
}
