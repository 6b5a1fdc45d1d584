//! Who is calling, answered from memory: a project API key or a number's own access token.
//!
//! The hot path must not touch the database: known API keys are cached for `cache.ttl`, tokens
//! resolve through the [`NumberDirectory`]. Only credentials that could be real cost a lookup: a
//! key carrying this server's keyed checksum, a legacy-shaped key whose display prefix is one of
//! a live legacy key's, a token shaped like one wagate could have stored. Lookups that find
//! nothing are remembered in a small cache of their own (`cache.negative_max_entries`), so bad
//! credentials never evict good ones. Failed attempts are limited per client address and per
//! credential prefix ([`AuthThrottle`]); past the limit the answer is `Throttled`, before any
//! check.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use moka::future::Cache;
use secrecy::ExposeSecret;
use uuid::Uuid;

use super::auth_throttle::AuthThrottle;
use super::cache::{negative_cache, unwrap_shared, CountedCache};
use super::number_directory::NumberDirectory;
use crate::config::Config;
use crate::crypto::{self, ApiKeyChecksum};
use crate::store::{ApiKeyRecord, DynStore, StoreError};

pub use super::number_directory::NumberConfig;

/// Characters of a Bearer token its failures are counted under. Meta's tokens of one app share
/// their first dozen or so characters, so fewer would let one client's failures lock out every
/// token of that app.
const BEARER_PREFIX_LEN: usize = 24;

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
    /// Too many failed attempts from this client or with this prefix: retry after the wait.
    #[error("too many failed authentications")]
    Throttled { retry_after: Duration },
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, Clone, Copy)]
struct CachedKey {
    project_id: Uuid,
    key_id: Uuid,
    /// The key carries this server's keyed checksum (see `authenticate_api_key`): remembered so
    /// a cached key costs no HMAC per request.
    minted: bool,
}

impl CachedKey {
    fn caller(&self) -> Caller {
        Caller::ApiKey {
            project_id: self.project_id,
            key_id: self.key_id,
        }
    }
}

/// The SHA-256 of an API key: what the caches are keyed by (the hex form the store keeps is
/// twice as long to hash and compare, and was a string built per request).
type KeyDigest = [u8; 32];

/// The digest a stored `key_sha256` (lowercase hex) names; `None` for anything else.
fn digest_of_stored(key_sha256: &str) -> Option<KeyDigest> {
    let mut digest = [0u8; 32];
    hex::decode_to_slice(key_sha256, &mut digest).ok()?;
    Some(digest)
}

/// Why a key lookup gave no caller (moka caches neither).
enum Lookup {
    Unknown,
    Store(Arc<StoreError>),
}

/// Cached credential checks. Cheap to clone (shared caches).
#[derive(Clone)]
pub struct Authenticator {
    store: DynStore,
    checksum: ApiKeyChecksum,
    /// Live keys only: a miss never takes a place here.
    api_keys: CountedCache<KeyDigest, CachedKey>,
    /// Digests of well-formed keys that are unknown or revoked.
    unknown_keys: Cache<KeyDigest, ()>,
    /// Display prefixes of the live keys issued before keyed checksums. Loaded at start and
    /// after a revocation; legacy keys are never created again, so on any instance it is a
    /// superset of the truth and a stale copy only costs a lookup.
    legacy_prefixes: Arc<RwLock<HashSet<String>>>,
    accept_legacy: bool,
    throttle: AuthThrottle,
    numbers: NumberDirectory,
}

impl Authenticator {
    pub fn new(
        store: DynStore,
        numbers: NumberDirectory,
        checksum: ApiKeyChecksum,
        config: &Config,
    ) -> Self {
        Self {
            store,
            checksum,
            api_keys: CountedCache::new("api_keys", &config.cache),
            unknown_keys: negative_cache(&config.cache),
            legacy_prefixes: Arc::default(),
            accept_legacy: config.security.accept_legacy_api_keys,
            throttle: AuthThrottle::new(&config.security, &config.cache),
            numbers,
        }
    }

    /// Reads which legacy keys are live; returns their display prefixes (for the start-up
    /// warning). With `security.accept_legacy_api_keys` off they are read but never accepted.
    pub async fn load_legacy_keys(&self) -> Result<Vec<String>, StoreError> {
        let mut prefixes = self.store.live_legacy_api_key_prefixes().await?;
        prefixes.sort();
        *self.legacy_prefixes.write().expect("not poisoned") = prefixes.iter().cloned().collect();
        Ok(prefixes)
    }

    /// Authenticates from the two accepted headers. `X-API-Key` wins when both are present
    /// (the JS SDK sends both when both are configured). `client` is the caller's address, for
    /// the failed-attempt limit.
    pub async fn authenticate(
        &self,
        client: Option<IpAddr>,
        api_key: Option<&str>,
        bearer: Option<&str>,
    ) -> Result<Caller, AuthError> {
        match (api_key, bearer) {
            (Some(key), _) => self.authenticate_api_key(client, key).await,
            (None, Some(token)) => {
                let token = token.trim();
                if token.is_empty() {
                    return Err(AuthError::Invalid);
                }
                let prefix: String = token.chars().take(BEARER_PREFIX_LEN).collect();
                let prefix = format!("bearer:{prefix}");
                self.limited(client, Some(&prefix), self.bearer(token))
                    .await
            }
            (None, None) => Err(AuthError::Missing),
        }
    }

    pub async fn authenticate_api_key(
        &self,
        client: Option<IpAddr>,
        key: &str,
    ) -> Result<Caller, AuthError> {
        let key = key.trim();
        if key.is_empty() {
            return Err(AuthError::Missing);
        }
        // A live key already cached (nearly every request) is answered from its entry: no
        // HMAC, no loader. The failure limits still apply first (a blocked client's good key is
        // refused too). Revoking a key drops its entry at once.
        let digest: KeyDigest = crypto::sha256(key.as_bytes());
        let cached = self.api_keys.hit(&digest);
        // A key with this server's checksum was minted here: it is real (if perhaps revoked),
        // not a guess, so it counts against its client only. Counting it against its prefix
        // too would let anyone who saw a key's display prefix lock that key out.
        let minted = match cached {
            Some(found) => found.minted,
            None => self.checksum.verify(key),
        };
        let prefix = (!minted).then(|| format!("key:{}", crypto::api_key_display_prefix(key)));
        let attempt = async {
            match cached {
                Some(found) => Ok(found.caller()),
                None => self.api_key(key, digest, minted).await,
            }
        };
        self.limited(client, prefix.as_deref(), attempt).await
    }

    /// Runs `attempt` unless the client or prefix is over its failure quota, and counts it when
    /// it fails; the failure that spends the quota is itself answered `Throttled`.
    async fn limited(
        &self,
        client: Option<IpAddr>,
        prefix: Option<&str>,
        attempt: impl std::future::Future<Output = Result<Caller, AuthError>>,
    ) -> Result<Caller, AuthError> {
        let throttled = |retry_after| AuthError::Throttled { retry_after };
        self.throttle
            .check(client, prefix)
            .await
            .map_err(throttled)?;
        let result = attempt.await;
        if matches!(result, Err(AuthError::Invalid)) {
            self.throttle
                .failed(client, prefix)
                .await
                .map_err(throttled)?;
        }
        result
    }

    /// A key not in the live cache. `minted`: the key carries this server's checksum.
    async fn api_key(
        &self,
        key: &str,
        digest: KeyDigest,
        minted: bool,
    ) -> Result<Caller, AuthError> {
        // Checksum first: a key this server did not issue costs no lookup.
        if !minted && !self.legacy_candidate(key) {
            return Err(AuthError::Invalid);
        }
        if self.unknown_keys.contains_key(&digest) {
            return Err(AuthError::Invalid);
        }
        let found = self
            .api_keys
            .load(digest, async {
                let record = self
                    .store
                    .find_api_key_by_hash(&hex::encode(digest))
                    .await
                    .map_err(|e| Lookup::Store(Arc::new(e)))?;
                match record {
                    Some(k) if !k.is_revoked() => Ok(CachedKey {
                        project_id: k.project_id,
                        key_id: k.id,
                        minted,
                    }),
                    _ => Err(Lookup::Unknown),
                }
            })
            .await;
        match found {
            Ok(key) => Ok(key.caller()),
            Err(error) => match &*error {
                Lookup::Unknown => {
                    self.unknown_keys.insert(digest, ()).await;
                    Err(AuthError::Invalid)
                }
                Lookup::Store(e) => Err(unwrap_shared(e.clone()).into()),
            },
        }
    }

    /// A key shaped like one issued before keyed checksums, with the display prefix of a live
    /// one: the only failed-checksum keys worth a lookup.
    fn legacy_candidate(&self, key: &str) -> bool {
        self.accept_legacy
            && crypto::api_key_legacy_shaped(key)
            && self
                .legacy_prefixes
                .read()
                .expect("not poisoned")
                .contains(&crypto::api_key_display_prefix(key))
    }

    async fn bearer(&self, token: &str) -> Result<Caller, AuthError> {
        // Only a token a number could have been connected with is worth a lookup.
        if !crypto::access_token_well_formed(token) {
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

    /// Drops the key a stored `key_sha256` names from both key caches (a revoked key dropped
    /// from the unknown ones is simply looked up again and found revoked).
    async fn forget_key(&self, key_sha256: &str) {
        match digest_of_stored(key_sha256) {
            Some(digest) => {
                self.api_keys.invalidate(&digest).await;
                self.unknown_keys.invalidate(&digest).await;
            }
            // Not a digest wagate wrote: forget every key rather than guess.
            None => self.invalidate_all_api_keys(),
        }
    }

    /// Forget a revoked key on this instance: its cache entry at once, and its display prefix
    /// if it was a legacy key (the set is read again; on failure the old superset stays).
    pub async fn key_revoked(&self, record: &ApiKeyRecord) {
        self.forget_key(&record.key_sha256).await;
        let legacy = self
            .legacy_prefixes
            .read()
            .expect("not poisoned")
            .contains(&record.display_prefix);
        if legacy {
            if let Err(error) = self.load_legacy_keys().await {
                tracing::warn!(%error, "could not re-read the legacy API keys after a revocation");
            }
        }
    }

    /// Forget a key changed elsewhere (the store's change feed: another instance, the CLI). If
    /// legacy keys are live, read their set again too: the change may be one's revocation.
    pub async fn invalidate_api_key(&self, key_sha256: &str) {
        self.forget_key(key_sha256).await;
        let any_legacy = !self
            .legacy_prefixes
            .read()
            .expect("not poisoned")
            .is_empty();
        if any_legacy {
            if let Err(error) = self.load_legacy_keys().await {
                tracing::warn!(%error, "could not re-read the legacy API keys after a change");
            }
        }
    }

    /// Forget every cached API key (the change feed may have missed a revocation). Unknown keys
    /// stay remembered: a missed change cannot have made one real (new keys are fresh random
    /// strings nobody tried before), and forgetting them would let a flood through to the
    /// database whenever the feed reconnects.
    pub fn invalidate_all_api_keys(&self) {
        self.api_keys.invalidate_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_key_hash_names_the_digest_the_caches_hold() {
        let key = "wag_example";
        let stored = crypto::sha256_hex(key.as_bytes());
        assert_eq!(
            digest_of_stored(&stored),
            Some(crypto::sha256(key.as_bytes()))
        );
        // Anything the store could not have written names no entry.
        assert_eq!(digest_of_stored(&stored[..62]), None);
        assert_eq!(digest_of_stored(&format!("{}zz", &stored[..62])), None);
        assert_eq!(digest_of_stored(""), None);
    }
}
