//! The in-memory caches the request path reads: sized and timed by `[cache]`, and each counted by
//! name in `wagate_cache_lookups_total` and `wagate_cache_misses_total`.

use std::borrow::Borrow;
use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;
use std::time::{Duration, Instant};

use metrics::Counter;
use moka::future::Cache;

use crate::config::CacheConfig;
use crate::store::StoreError;

/// A moka cache sized and timed by `[cache]`.
pub(super) fn cache<K, V>(config: &CacheConfig) -> Cache<K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    Cache::builder()
        .max_capacity(config.max_entries)
        .time_to_live(config.ttl)
        .build()
}

/// The cache of credentials that were looked up and not found: small, its own, same TTL.
pub(super) fn negative_cache<K>(config: &CacheConfig) -> Cache<K, ()>
where
    K: Hash + Eq + Send + Sync + 'static,
{
    Cache::builder()
        .max_capacity(config.negative_max_entries)
        .time_to_live(config.ttl)
        .build()
}

/// A cache that counts its lookups and misses.
///
/// Entries live in a `quick_cache` map with their expiry beside them: a hit (nearly every
/// proxied request reads two of these caches) is a sharded read lock, a hash and a clock read.
/// moka did the same with a read recorded for its eviction policy and housekeeping run from the
/// request, about 2% of a passthrough's CPU in the profile behind issue #24. moka still runs every
/// load: it is the single flight, so callers that miss the same key together wait on one load
/// and share its error, and it keeps nothing once the value is here (each load forgets its key).
///
/// The counter handles are made once: a `counter!` with labels looks its key up in the
/// recorder's registry on every call, which the caches every proxied request reads should not
/// pay.
#[derive(Clone)]
pub(super) struct CountedCache<K, V> {
    entries: Arc<quick_cache::sync::Cache<K, Stamped<V>>>,
    loads: Cache<K, V>,
    ttl: Duration,
    lookups: Counter,
    misses: Counter,
}

/// A value and when it stops being served (`cache.ttl` after it was loaded).
#[derive(Clone)]
struct Stamped<V> {
    value: V,
    expires: Instant,
}

impl<K, V> CountedCache<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    pub(super) fn new(name: &'static str, config: &CacheConfig) -> Self {
        let capacity = usize::try_from(config.max_entries)
            .unwrap_or(usize::MAX)
            .max(1);
        Self {
            entries: Arc::new(quick_cache::sync::Cache::new(capacity)),
            loads: cache(config),
            ttl: config.ttl,
            lookups: metrics::counter!("wagate_cache_lookups_total", "cache" => name),
            misses: metrics::counter!("wagate_cache_misses_total", "cache" => name),
        }
    }

    /// Counts a lookup and answers it from memory. A hit (nearly every request) builds no loader
    /// future and copies no key.
    pub(super) fn hit<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.lookups.increment(1);
        self.entries
            .get(key)
            .filter(|stamped| stamped.expires > Instant::now())
            .map(|stamped| stamped.value)
    }

    /// Runs `init` once however many callers miss the same key together, and counts the miss.
    /// An error is shared by those callers and not cached.
    pub(super) async fn load<E>(
        &self,
        key: K,
        init: impl Future<Output = Result<V, E>>,
    ) -> Result<V, Arc<E>>
    where
        E: Send + Sync + 'static,
    {
        let value = self
            .loads
            .try_get_with(key.clone(), async {
                self.misses.increment(1);
                init.await
            })
            .await?;
        let expires = Instant::now() + self.ttl;
        self.entries.insert(
            key.clone(),
            Stamped {
                value: value.clone(),
                expires,
            },
        );
        // The value is served from `entries` now; the single flight keeps nothing.
        self.loads.invalidate(&key).await;
        Ok(value)
    }

    /// [`hit`](Self::hit), else [`load`](Self::load) with the loader `make` builds for the key.
    pub(super) async fn get_or_load<Q, Fut>(
        &self,
        key: &Q,
        make: impl FnOnce(K) -> Fut,
    ) -> Result<V, StoreError>
    where
        K: Borrow<Q>,
        Q: ToOwned<Owned = K> + Hash + Eq + ?Sized,
        Fut: Future<Output = Result<V, StoreError>>,
    {
        if let Some(found) = self.hit(key) {
            return Ok(found);
        }
        let key = key.to_owned();
        self.load(key.clone(), make(key))
            .await
            .map_err(unwrap_shared)
    }

    /// Forgets one key.
    pub(super) async fn invalidate<Q>(&self, key: &Q)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.entries.remove(key);
        self.loads.invalidate(key).await;
    }

    /// Forgets every key.
    pub(super) fn invalidate_all(&self) {
        self.entries.clear();
        self.loads.invalidate_all();
    }
}

/// A loader's error as the one caller sees it: moka shares it between the callers that waited
/// on the same load.
pub(super) fn unwrap_shared(error: Arc<StoreError>) -> StoreError {
    match Arc::try_unwrap(error) {
        Ok(error) => error,
        Err(shared) => match &*shared {
            StoreError::NotFound => StoreError::NotFound,
            StoreError::Unavailable(message) => StoreError::Unavailable(message.clone()),
            StoreError::Conflict { constraint } => StoreError::Conflict {
                constraint: constraint.clone(),
            },
            StoreError::Other(e) => StoreError::Other(anyhow::anyhow!("{e:#}")),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn config(ttl: Duration) -> CacheConfig {
        CacheConfig {
            ttl,
            max_entries: 100,
            change_poll_interval: Duration::from_secs(1),
            negative_max_entries: 10,
        }
    }

    /// A loader that counts its runs and answers `answer` after a pause long enough for
    /// concurrent callers to pile up behind it.
    async fn counted(
        runs: &AtomicUsize,
        answer: Result<u32, StoreError>,
    ) -> Result<u32, StoreError> {
        runs.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(50)).await;
        answer
    }

    #[tokio::test]
    async fn a_loaded_value_is_served_until_its_ttl_then_loaded_again() {
        let cache = CountedCache::<String, u32>::new("test", &config(Duration::from_secs(2)));
        let runs = AtomicUsize::new(0);
        assert_eq!(cache.hit("a"), None);
        let first = cache.get_or_load("a", |_| counted(&runs, Ok(1))).await;
        assert_eq!(first.unwrap(), 1);
        assert_eq!(cache.hit("a"), Some(1));
        let again = cache.get_or_load("a", |_| counted(&runs, Ok(2))).await;
        assert_eq!((again.unwrap(), runs.load(Ordering::SeqCst)), (1, 1));

        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert_eq!(cache.hit("a"), None, "expired with its ttl");
        let reloaded = cache.get_or_load("a", |_| counted(&runs, Ok(3))).await;
        assert_eq!((reloaded.unwrap(), runs.load(Ordering::SeqCst)), (3, 2));
    }

    #[tokio::test]
    async fn callers_missing_together_share_one_load_and_its_error() {
        let cache = CountedCache::<String, u32>::new("test", &config(Duration::from_secs(60)));
        let runs = AtomicUsize::new(0);
        let unavailable = || Err(StoreError::Unavailable("database away".into()));
        let failed = futures::future::join_all(
            (0..8).map(|_| cache.get_or_load("k", |_| counted(&runs, unavailable()))),
        )
        .await;
        assert!(failed
            .iter()
            .all(|r| matches!(r, Err(StoreError::Unavailable(_)))));
        assert_eq!(runs.load(Ordering::SeqCst), 1, "one load for eight callers");
        assert_eq!(cache.hit("k"), None, "an error is not cached");

        let loaded = futures::future::join_all(
            (0..8).map(|_| cache.get_or_load("k", |_| counted(&runs, Ok(7)))),
        )
        .await;
        assert!(loaded.iter().all(|r| matches!(r, Ok(7))));
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        assert_eq!(cache.hit("k"), Some(7));
    }

    #[tokio::test]
    async fn invalidate_forgets_one_key_and_invalidate_all_every_key() {
        let cache = CountedCache::<String, u32>::new("test", &config(Duration::from_secs(60)));
        let runs = AtomicUsize::new(0);
        for (key, value) in [("a", 1), ("b", 2), ("c", 3)] {
            cache
                .get_or_load(key, |_| counted(&runs, Ok(value)))
                .await
                .unwrap();
        }
        cache.invalidate("a").await;
        assert_eq!((cache.hit("a"), cache.hit("b")), (None, Some(2)));
        let reloaded = cache.get_or_load("a", |_| counted(&runs, Ok(10))).await;
        assert_eq!(
            reloaded.unwrap(),
            10,
            "loaded again, not the forgotten value"
        );
        cache.invalidate_all();
        assert_eq!(
            (cache.hit("a"), cache.hit("b"), cache.hit("c")),
            (None, None, None)
        );
    }
}
