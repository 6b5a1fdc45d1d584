//! The in-memory caches the request path reads: sized and timed by `[cache]`, and each counted by
//! name in `wagate_cache_lookups_total` and `wagate_cache_misses_total`.

use std::borrow::Borrow;
use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;

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

/// A cache that counts its lookups and misses. The counter handles are made once: a `counter!`
/// with labels looks its key up in the recorder's registry on every call, which the caches every
/// proxied request reads should not pay.
#[derive(Clone)]
pub(super) struct CountedCache<K, V> {
    entries: Cache<K, V>,
    lookups: Counter,
    misses: Counter,
}

impl<K, V> CountedCache<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    pub(super) fn new(name: &'static str, config: &CacheConfig) -> Self {
        Self {
            entries: cache(config),
            lookups: metrics::counter!("wagate_cache_lookups_total", "cache" => name),
            misses: metrics::counter!("wagate_cache_misses_total", "cache" => name),
        }
    }

    /// Counts a lookup and answers it from memory. A hit (nearly every request) builds no loader
    /// future and copies no key.
    pub(super) async fn hit<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.lookups.increment(1);
        self.entries.get(key).await
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
        self.entries
            .try_get_with(key, async {
                self.misses.increment(1);
                init.await
            })
            .await
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
        if let Some(found) = self.hit(key).await {
            return Ok(found);
        }
        let key = key.to_owned();
        self.load(key.clone(), make(key))
            .await
            .map_err(unwrap_shared)
    }

    /// The cache itself, to drop entries.
    pub(super) fn entries(&self) -> &Cache<K, V> {
        &self.entries
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
