//! Who is calling, answered from memory: a project API key or a number's own access token.
//!
//! The hot path must not touch the database: API keys are cached for `cache.ttl`, tokens resolve
//! through the [`NumberDirectory`]. Unknown keys are cached too (as `None`), so a flood of one bad
//! key costs no queries, and keys that are not even shaped like ours are refused before any lookup.

use std::sync::Arc;

use moka::future::Cache;
use secrecy::ExposeSecret;
use uuid::Uuid;

use super::number_directory::{cache, unwrap_shared, NumberDirectory};
use crate::config::CacheConfig;
use crate::crypto;
use crate::store::{DynStore, StoreError};

pub use super::number_directory::NumberConfig;

/// An authenticated caller.
#[derive(Debug, Clone)]
pub enum Caller {
    /// A project API key: may reach every number of its project.
    ApiKey { project_id: Uuid, key_id: Uuid },
    /// A number's own access token: may reach exactly the numbers stored with that token.
    Bearer {
        numbers: Arc<Vec<Arc<NumberConfig>>>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("no credentials")]
    Missing,
    #[error("unknown, malformed or revoked credentials")]
    Invalid,
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, Clone, Copy)]
struct CachedKey {
    project_id: Uuid,
    key_id: Uuid,
}

/// Cached credential checks. Cheap to clone (shared caches).
#[derive(Clone)]
pub struct Authenticator {
    store: DynStore,
    api_keys: Cache<String, Option<CachedKey>>,
    numbers: NumberDirectory,
}

impl Authenticator {
    pub fn new(store: DynStore, numbers: NumberDirectory, config: &CacheConfig) -> Self {
        Self {
            store,
            api_keys: cache(config),
            numbers,
        }
    }

    /// Authenticates from the two accepted headers. `X-API-Key` wins when both are present
    /// (the JS SDK sends both when both are configured).
    pub async fn authenticate(
        &self,
        api_key: Option<&str>,
        bearer: Option<&str>,
    ) -> Result<Caller, AuthError> {
        match (api_key, bearer) {
            (Some(key), _) => self.authenticate_api_key(key).await,
            (None, Some(token)) => self.authenticate_bearer(token).await,
            (None, None) => Err(AuthError::Missing),
        }
    }

    pub async fn authenticate_api_key(&self, key: &str) -> Result<Caller, AuthError> {
        let key = key.trim();
        if key.is_empty() {
            return Err(AuthError::Missing);
        }
        // Shape check first: anything that cannot be one of our keys costs nothing.
        if !crypto::api_key_well_formed(key) {
            return Err(AuthError::Invalid);
        }
        let hash = crypto::sha256_hex(key.as_bytes());
        let store = self.store.clone();
        metrics::counter!("wagate_cache_lookups_total", "cache" => "api_keys").increment(1);
        let cached = self
            .api_keys
            .try_get_with(hash.clone(), async move {
                metrics::counter!("wagate_cache_misses_total", "cache" => "api_keys").increment(1);
                let record = store.find_api_key_by_hash(&hash).await?;
                Ok::<_, StoreError>(record.filter(|k| !k.is_revoked()).map(|k| CachedKey {
                    project_id: k.project_id,
                    key_id: k.id,
                }))
            })
            .await
            .map_err(unwrap_shared)?;
        let key = cached.ok_or(AuthError::Invalid)?;
        Ok(Caller::ApiKey {
            project_id: key.project_id,
            key_id: key.key_id,
        })
    }

    pub async fn authenticate_bearer(&self, token: &str) -> Result<Caller, AuthError> {
        let token = token.trim();
        if token.is_empty() || token.len() > 4096 {
            return Err(AuthError::Invalid);
        }
        let numbers = self
            .numbers
            .numbers_with_token(&crypto::sha256_hex(token.as_bytes()))
            .await?;
        // The stored hash matched; compare the token itself too, in constant time, so a hash
        // collision could never grant access.
        let matches = numbers.iter().any(|n| {
            crypto::constant_time_eq(n.access_token.expose_secret().as_bytes(), token.as_bytes())
        });
        if numbers.is_empty() || !matches {
            return Err(AuthError::Invalid);
        }
        Ok(Caller::Bearer { numbers })
    }

    /// Forget an API key (after revocation) on this instance.
    pub async fn invalidate_api_key(&self, key_sha256: &str) {
        self.api_keys.invalidate(key_sha256).await;
    }

    /// Forget every cached API key (the change feed may have missed a revocation).
    pub fn invalidate_all_api_keys(&self) {
        self.api_keys.invalidate_all();
    }
}
