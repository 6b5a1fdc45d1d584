//! Phone-number provisioning for setup links ([`NumberProvisioning`]): a project's own provider
//! account (Twilio), its pools of numbers per country, the reservation of one number for a
//! setup link (pool first, else bought live), the verification codes that reach reserved numbers,
//! and the rules completion applies (the connected number must be the reserved one).
//!
//! The provider is behind [`crate::telephony::NumberProvider`]; only the account registration
//! knows it is Twilio. No JSON and no HTTP here: handlers pass the origin Twilio calls wagate at
//! (`inbound_base`), since only the HTTP layer knows where wagate is reachable.

mod inbound;
mod pool;
mod reserve;

use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use uuid::Uuid;

pub use self::inbound::{extract_code, InboundKind, InboundRejected};
pub use self::pool::{AddPoolNumber, PoolError};
pub use self::reserve::{Reservation, Unavailable};

use super::field_error::FieldError;
use crate::config::ProvisioningConfig;
use crate::crypto::{SealedField, SecretBox};
use crate::store::{DynStore, ProviderRow, StoreError};
use crate::telephony::{
    InboundUrls, NumberProvider, ProviderError, TwilioClient, TwilioCredentials,
};

/// The one provider kind wagate implements.
pub const TWILIO: &str = "twilio";

/// Body of `PUT /platform/v1/phone_number_providers/twilio`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TwilioInput {
    pub account_sid: Option<String>,
    pub auth_token: Option<SecretString>,
}

#[derive(Debug, thiserror::Error)]
pub enum ProviderAccountError {
    #[error("validation failed")]
    Invalid(Vec<FieldError>),
    #[error("not found")]
    NotFound,
    /// Twilio could not be asked (the credentials are not stored).
    #[error("{0}")]
    Unreachable(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The provisioning service, built once and shared by the handlers.
#[derive(Clone)]
pub struct NumberProvisioning {
    store: DynStore,
    secrets: SecretBox,
    http: reqwest::Client,
    twilio_api_base: Arc<str>,
}

/// `AC` and 32 hex digits.
fn valid_account_sid(sid: &str) -> bool {
    sid.len() == 34 && sid.starts_with("AC") && sid[2..].bytes().all(|b| b.is_ascii_hexdigit())
}

impl NumberProvisioning {
    pub fn new(store: DynStore, secrets: SecretBox, config: &ProvisioningConfig) -> Self {
        Self {
            store,
            secrets,
            http: TwilioClient::http_client(config.provider_timeout),
            twilio_api_base: config.twilio_api_base.as_str().into(),
        }
    }

    fn twilio(&self, credentials: TwilioCredentials) -> TwilioClient {
        TwilioClient::new(self.http.clone(), &self.twilio_api_base, credentials)
    }

    /// Where a project's numbers send their inbound SMS and calls.
    pub fn inbound_urls(inbound_base: &str, project_id: Uuid) -> InboundUrls {
        let base = format!(
            "{}/providers/twilio/{project_id}",
            inbound_base.trim_end_matches('/')
        );
        InboundUrls {
            sms_url: format!("{base}/sms"),
            voice_url: format!("{base}/voice"),
        }
    }

    /// Registers (or replaces) the project's Twilio account after Twilio accepted the
    /// credentials. The auth token is sealed, bound to the row, and never shown again.
    pub async fn register_twilio(
        &self,
        project_id: Uuid,
        input: TwilioInput,
    ) -> Result<ProviderRow, ProviderAccountError> {
        let mut errors = Vec::new();
        let sid = input.account_sid.unwrap_or_default().trim().to_owned();
        if !valid_account_sid(&sid) {
            errors.push(FieldError::new(
                "account_sid",
                "must be a Twilio account SID: AC followed by 32 hex digits",
            ));
        }
        let token = input
            .auth_token
            .map(|t| t.expose_secret().trim().to_owned())
            .unwrap_or_default();
        if !(16..=128).contains(&token.len()) || !token.bytes().all(|b| b.is_ascii_alphanumeric()) {
            errors.push(FieldError::new(
                "auth_token",
                "must be the account's auth token (32 letters and digits, from the Twilio console)",
            ));
        }
        if !errors.is_empty() {
            return Err(ProviderAccountError::Invalid(errors));
        }
        let credentials = TwilioCredentials {
            account_sid: sid.clone(),
            auth_token: token.clone().into(),
        };
        match self.twilio(credentials).check().await {
            Ok(()) => {}
            Err(ProviderError::Unauthorized(_)) => {
                return Err(ProviderAccountError::Invalid(vec![FieldError::new(
                    "auth_token",
                    "Twilio refused this account SID and auth token; copy both from the Twilio console",
                )]))
            }
            Err(ProviderError::Refused { message, .. }) => {
                return Err(ProviderAccountError::Invalid(vec![FieldError::new(
                    "account_sid",
                    format!("Twilio refused the account: {message}"),
                )]))
            }
            Err(error @ ProviderError::Unreachable(_)) => {
                return Err(ProviderAccountError::Unreachable(format!(
                    "could not check the credentials with Twilio: {error}"
                )))
            }
        }
        let now = crate::store::now();
        let existing = self.store.provider(project_id, TWILIO).await?;
        // The row keeps its id on replacement, so the token is sealed for that id.
        let id = existing.as_ref().map_or_else(Uuid::now_v7, |row| row.id);
        let row = ProviderRow {
            id,
            project_id,
            kind: TWILIO.into(),
            account_sid: sid,
            auth_token_sealed: self.secrets.seal(SealedField::ProviderToken.at(id), &token),
            auth_token_key_id: self.secrets.key_id().to_owned(),
            created_at: existing.as_ref().map_or(now, |row| row.created_at),
            updated_at: now,
        };
        Ok(self.store.upsert_provider(&row).await?)
    }

    pub async fn twilio_account(
        &self,
        project_id: Uuid,
    ) -> Result<Option<ProviderRow>, StoreError> {
        self.store.provider(project_id, TWILIO).await
    }

    /// Removes the account: reserved and pooled numbers stay; nothing more is bought.
    pub async fn delete_twilio(&self, project_id: Uuid) -> Result<(), ProviderAccountError> {
        if self.store.delete_provider(project_id, TWILIO).await? {
            Ok(())
        } else {
            Err(ProviderAccountError::NotFound)
        }
    }

    /// The project's account with its token opened, if it has one that opens.
    async fn credentials(&self, project_id: Uuid) -> Result<Option<TwilioCredentials>, StoreError> {
        let Some(row) = self.store.provider(project_id, TWILIO).await? else {
            return Ok(None);
        };
        match self.secrets.open(
            SealedField::ProviderToken.at(row.id),
            &row.auth_token_key_id,
            &row.auth_token_sealed,
        ) {
            Ok(token) => Ok(Some(TwilioCredentials {
                account_sid: row.account_sid,
                auth_token: token.into(),
            })),
            Err(error) => {
                tracing::error!(%project_id, %error,
                    "the project's Twilio auth token does not open with the master keys; register the account again");
                Ok(None)
            }
        }
    }

    /// The project's provider client, if it registered one.
    async fn provider(
        &self,
        project_id: Uuid,
    ) -> Result<Option<Box<dyn NumberProvider>>, StoreError> {
        Ok(self
            .credentials(project_id)
            .await?
            .map(|c| Box::new(self.twilio(c)) as Box<dyn NumberProvider>))
    }

    /// Whether a setup link asking for numbers in `countries` can ever get one: the project has
    /// a provider, or a pool number (not released) in one of them.
    pub async fn can_provision(
        &self,
        project_id: Uuid,
        countries: &[String],
    ) -> Result<bool, StoreError> {
        Ok(self.store.provider(project_id, TWILIO).await?.is_some()
            || self.store.has_pool_numbers(project_id, countries).await?)
    }

    /// Gives back reservations of links that ended (the periodic sweep).
    pub async fn release_stale(&self) -> Result<u64, StoreError> {
        self.store
            .release_stale_reservations(crate::store::now())
            .await
    }
}

/// Releases reservations of ended links every `interval` (each instance may run it: one
/// statement, so concurrent sweeps cannot conflict).
pub async fn run_release_sweep(service: NumberProvisioning, interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    loop {
        tick.tick().await;
        match service.release_stale().await {
            Ok(0) => {}
            Ok(released) => {
                tracing::info!(
                    released,
                    "numbers reserved by ended setup links went back to the pool"
                )
            }
            Err(error) => tracing::warn!(%error, "reservation sweep failed; will retry"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_sids() {
        assert!(valid_account_sid("AC0123456789abcdef0123456789abcdef"));
        assert!(!valid_account_sid("AC0123456789abcdef0123456789abcde"));
        assert!(!valid_account_sid("PN0123456789abcdef0123456789abcdef"));
        assert!(!valid_account_sid("AC0123456789abcdef0123456789abcdeg"));
    }
}
