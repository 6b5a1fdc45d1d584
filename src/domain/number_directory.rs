//! Which WhatsApp configuration a phone number ID, a WABA or an access token names, answered from
//! memory: the number configurations (with the decrypted token and a prebuilt `Authorization`
//! header) every request, webhook and delivery needs. `/metrics` counts lookups and misses per
//! cache (`wagate_cache_lookups_total`, `wagate_cache_misses_total`).
//!
//! Entries live for `cache.ttl`. A write made through this instance calls [`NumberDirectory::invalidate`]
//! (the domain services do it after their own writes); other instances converge within the TTL.

use std::sync::Arc;

use axum::http::HeaderValue;
use moka::future::Cache;
use secrecy::SecretString;
use uuid::Uuid;

use super::cache::{cache, negative_cache, unwrap_shared, CountedCache};
use crate::config::CacheConfig;
use crate::crypto::{SealedField, SecretBox};
use crate::store::{DynStore, PhoneNumber, StoreError};

/// A phone number's configuration as the proxy needs it: ids, owner and the usable token.
#[derive(Clone)]
pub struct NumberConfig {
    pub internal_id: Uuid,
    pub project_id: Uuid,
    pub phone_number_id: String,
    pub business_account_id: String,
    pub access_token: SecretString,
    /// `Bearer <token>`, built once so the hot path does not format it per request.
    pub authorization: HeaderValue,
    pub webhook_destination_url: Option<String>,
    /// Signs forwarded webhooks (`X-Hub-Signature-256`).
    pub webhook_secret: Option<SecretString>,
    pub inbound_processing_enabled: bool,
    /// From `account_update`: set when Meta no longer sends for the number.
    pub account_state: Option<String>,
    /// Templates Meta paused or disabled (`"STATUS:name:language"`).
    pub blocked_templates: Vec<String>,
    /// `STANDARD|HIGH` as Meta reported it; decides the send rate with `is_coexistence`.
    pub throughput_tier: Option<String>,
    pub is_coexistence: bool,
    /// The number's own send rate (messages per second), set through the Platform API.
    pub pacing_rate: Option<u32>,
    /// Sends wait until then (Meta's throughput upgrade, shared by every instance).
    pub paused_until: Option<chrono::DateTime<chrono::Utc>>,
}

impl std::fmt::Debug for NumberConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NumberConfig")
            .field("phone_number_id", &self.phone_number_id)
            .field("business_account_id", &self.business_account_id)
            .field("project_id", &self.project_id)
            .finish_non_exhaustive()
    }
}

pub(super) type NumberList = Arc<Vec<Arc<NumberConfig>>>;

/// The number caches. Cheap to clone (the caches are shared).
#[derive(Clone)]
pub struct NumberDirectory {
    store: DynStore,
    secrets: SecretBox,
    numbers: CountedCache<String, Option<Arc<NumberConfig>>>,
    wabas: CountedCache<(Uuid, String), NumberList>,
    sole: CountedCache<Uuid, Option<Arc<NumberConfig>>>,
    known_wabas: CountedCache<String, bool>,
    tokens: CountedCache<String, NumberList>,
    /// Hashes of tokens no number has, apart from `tokens` so a flood of bad tokens cannot evict
    /// the good ones (`cache.negative_max_entries`).
    unknown_tokens: Cache<String, ()>,
    /// Each number's webhooks (both kinds), by the number's internal id.
    webhooks: CountedCache<Uuid, super::webhooks::NumberWebhooks>,
    /// Each project's pair-rate mode (`None`: the configured default), for the pacer.
    pair_modes: Cache<Uuid, Option<String>>,
}

impl NumberDirectory {
    pub fn new(store: DynStore, secrets: SecretBox, config: &CacheConfig) -> Self {
        Self {
            store,
            secrets,
            numbers: CountedCache::new("numbers", config),
            wabas: CountedCache::new("wabas", config),
            sole: CountedCache::new("sole", config),
            known_wabas: CountedCache::new("known_wabas", config),
            tokens: CountedCache::new("tokens", config),
            unknown_tokens: negative_cache(config),
            webhooks: CountedCache::new("webhooks", config),
            pair_modes: cache(config),
        }
    }

    /// The webhooks of a number (both kinds, active or not), oldest first.
    pub async fn webhooks_of(
        &self,
        internal_id: Uuid,
    ) -> Result<super::webhooks::NumberWebhooks, StoreError> {
        self.webhooks
            .get_or_load(&internal_id, |id| async move {
                let rows = self.store.webhooks_of_number(id).await?;
                let targets = rows
                    .iter()
                    .map(|row| {
                        Arc::new(super::webhooks::WebhookTarget::from_row(&self.secrets, row))
                    })
                    .collect();
                Ok(Arc::new(targets))
            })
            .await
    }

    /// A webhook by id: from its number's cached list, or (a project webhook) from the store.
    pub async fn webhook(
        &self,
        number: Option<Uuid>,
        id: Uuid,
    ) -> Result<Option<Arc<super::webhooks::WebhookTarget>>, StoreError> {
        if let Some(number) = number {
            let hooks = self.webhooks_of(number).await?;
            if let Some(found) = hooks.iter().find(|w| w.id == id) {
                return Ok(Some(found.clone()));
            }
        }
        let row = self.store.find_webhook(id).await?;
        Ok(row.map(|row| {
            Arc::new(super::webhooks::WebhookTarget::from_row(
                &self.secrets,
                &row,
            ))
        }))
    }

    /// A number by Meta's phone number ID, in any project (callers check ownership).
    pub async fn number(
        &self,
        phone_number_id: &str,
    ) -> Result<Option<Arc<NumberConfig>>, StoreError> {
        self.numbers
            .get_or_load(phone_number_id, |id| async move {
                let row = self.store.find_phone_number(&id).await?;
                Ok(row.and_then(|n| decrypt(&self.secrets, n)).map(Arc::new))
            })
            .await
    }

    /// The numbers of `project_id` that belong to a WABA, oldest first.
    pub async fn numbers_of_waba(
        &self,
        project_id: Uuid,
        business_account_id: &str,
    ) -> Result<NumberList, StoreError> {
        let key = (project_id, business_account_id.to_owned());
        self.wabas
            .get_or_load(&key, |(project_id, waba)| async move {
                let rows = self
                    .store
                    .find_phone_numbers_by_waba(project_id, &waba)
                    .await?;
                Ok(Arc::new(decrypt_all(&self.secrets, rows)))
            })
            .await
    }

    /// The project's only number, when it has exactly one (so object ids need no
    /// `phone_number_id`).
    pub async fn sole_number(
        &self,
        project_id: Uuid,
    ) -> Result<Option<Arc<NumberConfig>>, StoreError> {
        self.sole
            .get_or_load(&project_id, |project_id| async move {
                let page = self
                    .store
                    .list_phone_numbers(project_id, None, 1, 2)
                    .await?;
                Ok(if page.total_count == 1 {
                    page.items
                        .into_iter()
                        .next()
                        .and_then(|n| decrypt(&self.secrets, n))
                        .map(Arc::new)
                } else {
                    None
                })
            })
            .await
    }

    /// Whether any project has a number in this WABA.
    pub async fn waba_known(&self, business_account_id: &str) -> Result<bool, StoreError> {
        self.known_wabas
            .get_or_load(business_account_id, |waba| async move {
                let numbers = self.store.find_phone_numbers_by_waba_any(&waba).await?;
                Ok(!numbers.is_empty())
            })
            .await
    }

    /// The numbers stored with this access token (by its SHA-256), any project.
    pub async fn numbers_with_token(&self, token_sha256: &str) -> Result<NumberList, StoreError> {
        if let Some(found) = self.tokens.hit(token_sha256) {
            return Ok(found);
        }
        if self.unknown_tokens.contains_key(token_sha256) {
            return Ok(NumberList::default());
        }
        let numbers = self
            .tokens
            .load(token_sha256.to_owned(), async {
                let rows = self
                    .store
                    .find_phone_numbers_by_token_hash(token_sha256)
                    .await?;
                Ok(Arc::new(decrypt_all(&self.secrets, rows)))
            })
            .await
            .map_err(unwrap_shared)?;
        // Unknown tokens are not kept in `tokens`, where a flood of them would evict the
        // numbers in use.
        if numbers.is_empty() {
            self.tokens.invalidate(token_sha256).await;
            self.unknown_tokens
                .insert(token_sha256.to_owned(), ())
                .await;
        }
        Ok(numbers)
    }

    /// Forget every cached number configuration on this instance (after connect, update, delete).
    pub fn invalidate(&self) {
        self.numbers.invalidate_all();
        self.wabas.invalidate_all();
        self.sole.invalidate_all();
        self.known_wabas.invalidate_all();
        self.tokens.invalidate_all();
        self.unknown_tokens.invalidate_all();
        self.webhooks.invalidate_all();
        self.pair_modes.invalidate_all();
    }

    /// The project's pair-rate mode as stored (`None`: not chosen).
    pub async fn pair_rate_mode(&self, project_id: Uuid) -> Result<Option<String>, StoreError> {
        let store = self.store.clone();
        self.pair_modes
            .try_get_with(project_id, async move {
                store.project_pair_rate_mode(project_id).await
            })
            .await
            .map_err(unwrap_shared)
    }
}

fn decrypt_all(secrets: &SecretBox, rows: Vec<PhoneNumber>) -> Vec<Arc<NumberConfig>> {
    rows.into_iter()
        .filter_map(|n| decrypt(secrets, n))
        .map(Arc::new)
        .collect()
}

/// Opens a stored number's token. A token sealed under another master key, or for another row
/// (copied there), is logged and the number treated as unusable rather than failing every
/// request: it is never served with a token that is not its own.
fn decrypt(secrets: &SecretBox, n: PhoneNumber) -> Option<NumberConfig> {
    let opened = secrets
        .open(
            SealedField::AccessToken.at(n.internal_id),
            &n.access_token_key_id,
            &n.access_token_sealed,
        )
        .map_err(|e| e.to_string())
        .and_then(|token| {
            let mut header = HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| "the stored access token is not a valid header value".to_owned())?;
            header.set_sensitive(true);
            Ok((token, header))
        });
    let webhook_secret = match (&n.webhook_secret_sealed, &n.secrets_key_id) {
        (Some(sealed), key_id) => match secrets.open(
            SealedField::WebhookSecret.at(n.internal_id),
            key_id.as_deref().unwrap_or_default(),
            sealed,
        ) {
            Ok(secret) => Some(SecretString::from(secret)),
            Err(error) => {
                tracing::error!(
                    phone_number_id = %n.phone_number_id,
                    %error,
                    "cannot open the webhook secret; forwarded webhooks stay queued until one is set (PATCH rotate_webhook_secret)"
                );
                None
            }
        },
        _ => None,
    };
    match opened {
        Ok((token, authorization)) => Some(NumberConfig {
            webhook_secret,
            authorization,
            internal_id: n.internal_id,
            project_id: n.project_id,
            phone_number_id: n.phone_number_id,
            business_account_id: n.business_account_id,
            access_token: token.into(),
            webhook_destination_url: n.webhook_destination_url,
            inbound_processing_enabled: n.inbound_processing_enabled,
            account_state: n.account_state,
            blocked_templates: n
                .blocked_templates
                .as_deref()
                .and_then(|b| serde_json::from_str(b).ok())
                .unwrap_or_default(),
            throughput_tier: n.throughput_tier,
            is_coexistence: n.is_coexistence,
            pacing_rate: n
                .pacing_rate
                .and_then(|r| u32::try_from(r).ok())
                .filter(|r| *r > 0),
            paused_until: n.paused_until,
        }),
        Err(error) => {
            tracing::error!(
                phone_number_id = %n.phone_number_id,
                %error,
                "cannot use the stored access token; check security.master_key, or PATCH a new token"
            );
            None
        }
    }
}
