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

#[derive(Default)]
pub(super) struct ProxyCache {
    generation: std::sync::atomic::AtomicU64,
    entries: std::sync::Mutex<std::collections::HashMap<StageIds, Remembered>>,
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

    pub(super) fn forget_all(&self) {
        self.generation.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.entries.lock().expect("proxy cache").clear();
    }
}
