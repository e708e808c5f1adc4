//! `jti` replay protection for client assertions.
//!
//! An assertion's `jti` is remembered until the assertion expires; a second use within that time
//! is refused. The trait is object safe and asynchronous so a shared, database-backed cache can
//! replace the in-memory one when several rex instances serve one token URL.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;

/// A boxed future, so `ReplayCache` can be used as `Arc<dyn ReplayCache>`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("replay cache unavailable: {0}")]
pub struct ReplayCacheError(pub String);

pub trait ReplayCache: Send + Sync {
    /// Atomically records `key` as used until `expires_at` (Unix seconds). `Ok(true)` when it was
    /// not yet recorded (the assertion may proceed), `Ok(false)` when it was seen before and has
    /// not expired (a replay). Implementations must fail closed: an error refuses the assertion.
    fn check_and_record<'a>(
        &'a self,
        key: &'a str,
        expires_at: i64,
        now: i64,
    ) -> BoxFuture<'a, Result<bool, ReplayCacheError>>;
}

/// In-process replay cache: a map from key to expiry, swept of expired entries at most every
/// `SWEEP_INTERVAL` seconds. Bounded: when full (after a sweep) it refuses new assertions rather
/// than grow without limit. Entries only come from assertions whose signature verified, so only
/// configured partners can fill it.
pub struct InMemoryReplayCache {
    state: Mutex<State>,
    max_entries: usize,
}

struct State {
    seen: HashMap<String, i64>,
    next_sweep: i64,
}

const SWEEP_INTERVAL: i64 = 30;

impl InMemoryReplayCache {
    pub fn new(max_entries: usize) -> InMemoryReplayCache {
        InMemoryReplayCache { state: Mutex::new(State { seen: HashMap::new(), next_sweep: i64::MIN }), max_entries }
    }

    /// Number of remembered (possibly expired, not yet swept) entries.
    pub fn len(&self) -> usize {
        self.state.lock().map(|s| s.seen.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn record(&self, key: &str, expires_at: i64, now: i64) -> Result<bool, ReplayCacheError> {
        let mut state = self.state.lock().map_err(|_| ReplayCacheError("lock poisoned".into()))?;
        if now >= state.next_sweep || state.seen.len() >= self.max_entries {
            state.seen.retain(|_, expiry| *expiry > now);
            state.next_sweep = now.saturating_add(SWEEP_INTERVAL);
        }
        if let Some(expiry) = state.seen.get(key)
            && *expiry > now
        {
            return Ok(false);
        }
        if state.seen.len() >= self.max_entries {
            return Err(ReplayCacheError(format!("more than {} unexpired assertions", self.max_entries)));
        }
        state.seen.insert(key.to_owned(), expires_at);
        Ok(true)
    }
}

impl Default for InMemoryReplayCache {
    fn default() -> InMemoryReplayCache {
        InMemoryReplayCache::new(100_000)
    }
}

impl ReplayCache for InMemoryReplayCache {
    fn check_and_record<'a>(
        &'a self,
        key: &'a str,
        expires_at: i64,
        now: i64,
    ) -> BoxFuture<'a, Result<bool, ReplayCacheError>> {
        let result = self.record(key, expires_at, now);
        Box::pin(std::future::ready(result))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn remembers_until_expiry_then_forgets() {
        let cache = InMemoryReplayCache::default();
        assert_eq!(cache.check_and_record("a", 1_100, 1_000).await, Ok(true));
        assert_eq!(cache.check_and_record("a", 1_100, 1_050).await, Ok(false), "replay within lifetime");
        assert_eq!(cache.check_and_record("b", 1_100, 1_050).await, Ok(true), "other key");
        assert_eq!(cache.check_and_record("a", 1_200, 1_100).await, Ok(true), "expired entry may be reused");
        assert_eq!(cache.check_and_record("a", 1_200, 1_101).await, Ok(false));
        // Sweeping drops expired entries.
        cache.check_and_record("c", 5_000, 4_000).await.unwrap();
        assert_eq!(cache.len(), 1);
    }

    #[tokio::test]
    async fn bounded_and_fails_closed() {
        let cache = InMemoryReplayCache::new(2);
        assert_eq!(cache.check_and_record("a", 2_000, 1_000).await, Ok(true));
        assert_eq!(cache.check_and_record("b", 2_000, 1_000).await, Ok(true));
        assert!(cache.check_and_record("c", 2_000, 1_001).await.is_err());
        assert_eq!(cache.check_and_record("a", 2_000, 1_001).await, Ok(false), "still detects replays when full");
        assert_eq!(cache.check_and_record("c", 3_000, 2_000).await, Ok(true), "space again after expiry");
    }

    #[test]
    fn usable_as_trait_object() {
        let cache: std::sync::Arc<dyn ReplayCache> = std::sync::Arc::new(InMemoryReplayCache::default());
        drop(cache);
    }
}
