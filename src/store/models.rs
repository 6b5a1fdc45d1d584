//! Domain records as the store returns them. Both drivers decode these rows (`FromRow`).

use chrono::{DateTime, Utc};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Project {
    pub id: Uuid,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct NewApiKey {
    pub project_id: Uuid,
    pub key_sha256: String,
    pub display_prefix: String,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ApiKeyRecord {
    pub id: Uuid,
    pub project_id: Uuid,
    pub key_sha256: String,
    pub display_prefix: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl ApiKeyRecord {
    pub fn is_revoked(&self) -> bool {
        self.revoked_at.is_some()
    }
}

#[derive(Debug, Clone)]
pub struct NewCustomer {
    pub project_id: Uuid,
    pub name: String,
    pub external_customer_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Customer {
    pub id: Uuid,
    pub project_id: Uuid,
    pub name: String,
    pub external_customer_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A secret as stored: sealed bytes plus the id of the master key that sealed them.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedSecret {
    pub sealed: Vec<u8>,
    pub key_id: String,
}

impl std::fmt::Debug for SealedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SealedSecret(key {}, {} bytes)",
            self.key_id,
            self.sealed.len()
        )
    }
}

/// Meta-reported details of a number; all optional, filled at connect time or later.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PhoneNumberDetails {
    pub display_phone_number: Option<String>,
    pub verified_name: Option<String>,
    pub quality_rating: Option<String>,
    pub code_verification_status: Option<String>,
    pub name_status: Option<String>,
    pub status: Option<String>,
    pub throughput_tier: Option<String>,
    pub messaging_limit: Option<String>,
    pub is_official_business_account: bool,
    pub is_pin_enabled: bool,
}

#[derive(Debug, Clone)]
pub struct NewPhoneNumber {
    /// Chosen by the caller, since the sealed secrets below are bound to it.
    pub internal_id: Uuid,
    pub project_id: Uuid,
    pub customer_id: Option<Uuid>,
    pub phone_number_id: String,
    pub business_account_id: String,
    pub kind: String,
    pub name: Option<String>,
    pub details: PhoneNumberDetails,
    pub is_coexistence: bool,
    pub inbound_processing_enabled: bool,
    pub calls_enabled: bool,
    pub access_token: SealedSecret,
    pub access_token_sha256: String,
    pub webhook_destination_url: Option<String>,
    /// Sealed with the same key as the access token.
    pub webhook_secret: Option<Vec<u8>>,
    pub webhook_verify_token: Option<Vec<u8>>,
}

/// A WhatsApp configuration: one Meta phone number connected to a project.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PhoneNumber {
    pub internal_id: Uuid,
    pub project_id: Uuid,
    pub customer_id: Option<Uuid>,
    pub phone_number_id: String,
    pub business_account_id: String,
    pub kind: String,
    pub name: Option<String>,
    pub display_phone_number: Option<String>,
    pub verified_name: Option<String>,
    pub quality_rating: Option<String>,
    pub code_verification_status: Option<String>,
    pub name_status: Option<String>,
    pub status: Option<String>,
    pub throughput_tier: Option<String>,
    pub messaging_limit: Option<String>,
    pub is_official_business_account: bool,
    pub is_pin_enabled: bool,
    pub is_coexistence: bool,
    pub inbound_processing_enabled: bool,
    pub calls_enabled: bool,
    pub access_token_sealed: Vec<u8>,
    pub access_token_key_id: String,
    pub access_token_sha256: String,
    pub webhook_destination_url: Option<String>,
    pub webhook_secret_sealed: Option<Vec<u8>>,
    pub webhook_verify_token_sealed: Option<Vec<u8>>,
    pub secrets_key_id: Option<String>,
    pub webhook_verified_at: Option<DateTime<Utc>>,
    pub username: Option<String>,
    pub username_status: Option<String>,
    /// From `account_update`: `partner_app_uninstalled|offboarded|deleted|disabled`; `None`
    /// while the number is usable.
    pub account_state: Option<String>,
    pub account_state_at: Option<DateTime<Utc>>,
    /// Templates Meta has paused or disabled, as a JSON array of `"STATUS:name:language"`.
    pub blocked_templates: Option<String>,
    /// The number's own send rate (messages per second); `None`: its tier's.
    pub pacing_rate: Option<i64>,
    /// Meta's throughput upgrade (`131057`) pauses sends until then.
    pub paused_until: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A partial update; `None` leaves a field as it is. `Some(None)` clears a nullable field.
#[derive(Debug, Clone, Default)]
pub struct PhoneNumberPatch {
    /// The row the caller sealed new secrets for: the patch applies only if the number is still
    /// that row (not deleted and connected again meanwhile), else [`super::StoreError::NotFound`].
    pub internal_id: Option<Uuid>,
    pub name: Option<Option<String>>,
    pub access_token: Option<(SealedSecret, String)>,
    pub webhook_destination_url: Option<Option<String>>,
    pub webhook_secret: Option<Vec<u8>>,
    pub inbound_processing_enabled: Option<bool>,
    pub calls_enabled: Option<bool>,
    pub username: Option<Option<String>>,
    pub username_status: Option<Option<String>>,
}

impl PhoneNumberPatch {
    pub fn is_empty(&self) -> bool {
        self.name.is_none()
            && self.access_token.is_none()
            && self.webhook_destination_url.is_none()
            && self.webhook_secret.is_none()
            && self.inbound_processing_enabled.is_none()
            && self.calls_enabled.is_none()
            && self.username.is_none()
            && self.username_status.is_none()
    }
}
