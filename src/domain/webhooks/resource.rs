//! The webhook resource (Platform API `whatsapp_webhook`, contract §9.6): field rules, the
//! `secret_key` (sealed, shown once), the `meta` kind (a number's `webhook_destination_url`, signed
//! with the number's webhook secret), pausing by hand and resuming, and the test delivery.
//!
//! The store keeps a `meta` webhook and its number's `webhook_destination_url` in step; this
//! service decides what may be written and makes the caches forget numbers after every write.

use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

pub use super::rules::WebhookInput;
use super::rules::{
    already_has_meta, apply_headers, apply_kapso_fields, check_common, forbid_for_meta, list,
};
use super::DEFAULT_INACTIVITY_MINUTES;
use crate::crypto::{SealedField, SecretBox};
use crate::destination_guard::DestinationPolicy;
use crate::domain::field_error::FieldError;
use crate::domain::number_directory::NumberDirectory;
use crate::domain::phone_numbers::{PhoneNumberError, PhoneNumbers, UpdateInput};
use crate::store::{
    DeliveryRow, DeliveryStatus, DynStore, NewDelivery, PhoneNumber, Seek, StoreError, WebhookRow,
    WebhookScope,
};

const SECRET_PREFIX: &str = "wh_sec_";
const SECRET_RANDOM_LEN: usize = 32;

/// The event name of a test delivery (`POST …/webhooks/{id}/test`).
pub const TEST_EVENT: &str = "whatsapp.webhook.test";

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("validation failed")]
    Invalid(Vec<FieldError>),
    /// Unknown, malformed, or another project's: the same to the caller.
    #[error("webhook not found")]
    NotFound,
    /// The number in the path: unknown or another project's.
    #[error("phone number not found")]
    NumberNotFound,
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for WebhookError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound => Self::NotFound,
            other => Self::Store(other),
        }
    }
}

/// Errors of the phone-number service when this one writes a meta webhook's secret.
fn from_number_error(error: PhoneNumberError) -> WebhookError {
    match error {
        PhoneNumberError::Invalid(errors) => WebhookError::Invalid(
            errors
                .into_iter()
                .map(|e| match e.field.as_str() {
                    "webhook_secret" => FieldError::new("secret_key", e.message),
                    "webhook_destination_url" => FieldError::new("url", e.message),
                    _ => e,
                })
                .collect(),
        ),
        PhoneNumberError::NotFound => WebhookError::NotFound,
        PhoneNumberError::Store(e) => WebhookError::Store(e),
        other => WebhookError::Store(StoreError::Other(anyhow::anyhow!(other.to_string()))),
    }
}

/// A webhook as answered: the row, its number's Meta id (`None` for project webhooks) and the
/// `secret_key` when this answer is the one that shows it.
#[derive(Debug, Clone)]
pub struct WebhookView {
    pub row: WebhookRow,
    pub phone_number_id: Option<String>,
    pub secret_key: Option<String>,
}

impl WebhookView {
    /// Subscribed events (`[]` for a meta webhook, which receives Meta's payload unfiltered).
    pub fn events(&self) -> Vec<String> {
        list(&self.row.events)
    }

    pub fn headers(&self) -> serde_json::Map<String, serde_json::Value> {
        serde_json::from_str(&self.row.headers).unwrap_or_default()
    }

    pub fn buffer_events(&self) -> Vec<String> {
        list(&self.row.buffer_events)
    }

    /// The threshold of `whatsapp.conversation.inactive` (`None` for a meta webhook).
    pub fn inactivity_minutes(&self) -> Option<i32> {
        (!self.row.is_meta()).then(|| {
            self.row
                .inactivity_minutes
                .unwrap_or(DEFAULT_INACTIVITY_MINUTES)
        })
    }
}

/// `wh_sec_` + 32 random alphanumerics.
fn new_secret() -> String {
    let mut secret = String::from(SECRET_PREFIX);
    while secret.len() < SECRET_PREFIX.len() + SECRET_RANDOM_LEN {
        // URL-safe base64 of random bytes, without its two symbols: alphanumerics only.
        let token = crate::crypto::random_token(SECRET_RANDOM_LEN);
        let room = SECRET_PREFIX.len() + SECRET_RANDOM_LEN - secret.len();
        secret.extend(token.chars().filter(char::is_ascii_alphanumeric).take(room));
    }
    secret
}

/// Where a webhook lives, as the path said.
#[derive(Debug, Clone, Copy)]
pub enum Place<'a> {
    /// `/whatsapp/webhooks…`: the project's own, and (for get, update, delete, test) any of the
    /// project's webhooks by id.
    Project,
    /// `/whatsapp/phone_numbers/{id}/webhooks…`: that number's.
    Number(&'a PhoneNumber),
}

/// The webhook service.
#[derive(Clone)]
pub struct WebhookResources {
    store: DynStore,
    secrets: SecretBox,
    destinations: DestinationPolicy,
    numbers: NumberDirectory,
    /// Writes a meta webhook's secret (the number's webhook secret), sealed as it always is.
    phone_numbers: PhoneNumbers,
}

impl WebhookResources {
    pub fn new(
        store: DynStore,
        secrets: SecretBox,
        destinations: DestinationPolicy,
        numbers: NumberDirectory,
        phone_numbers: PhoneNumbers,
    ) -> Self {
        Self {
            store,
            secrets,
            destinations,
            numbers,
            phone_numbers,
        }
    }

    /// A number of `project_id`; another project's is `NumberNotFound` like an unknown one.
    pub async fn number(
        &self,
        project_id: Uuid,
        phone_number_id: &str,
    ) -> Result<PhoneNumber, WebhookError> {
        self.store
            .find_phone_number(phone_number_id)
            .await?
            .filter(|n| n.project_id == project_id)
            .ok_or(WebhookError::NumberNotFound)
    }

    /// One page of a place's webhooks, newest first (`limit` rows at most).
    pub async fn list(
        &self,
        project_id: Uuid,
        place: Place<'_>,
        seek: Seek,
        limit: u32,
    ) -> Result<Vec<WebhookView>, WebhookError> {
        let (scope, phone_number_id) = match place {
            Place::Project => (WebhookScope::Project, None),
            Place::Number(n) => (
                WebhookScope::Number(n.internal_id),
                Some(n.phone_number_id.clone()),
            ),
        };
        let rows = self
            .store
            .list_webhooks(project_id, scope, seek, limit)
            .await?;
        Ok(rows
            .into_iter()
            .map(|row| WebhookView {
                row,
                phone_number_id: phone_number_id.clone(),
                secret_key: None,
            })
            .collect())
    }

    /// A webhook of the place; anything else (malformed, unknown, another project's or another
    /// number's) is `NotFound`.
    pub async fn get(
        &self,
        project_id: Uuid,
        place: Place<'_>,
        id: &str,
    ) -> Result<WebhookView, WebhookError> {
        let row = self.row(project_id, place, id).await?;
        self.view(row, place, None).await
    }

    async fn row(
        &self,
        project_id: Uuid,
        place: Place<'_>,
        id: &str,
    ) -> Result<WebhookRow, WebhookError> {
        let id = Uuid::parse_str(id).map_err(|_| WebhookError::NotFound)?;
        let row = self
            .store
            .get_webhook(project_id, id)
            .await?
            .ok_or(WebhookError::NotFound)?;
        match place {
            Place::Number(n) if row.phone_number_internal_id != Some(n.internal_id) => {
                Err(WebhookError::NotFound)
            }
            _ => Ok(row),
        }
    }

    async fn view(
        &self,
        row: WebhookRow,
        place: Place<'_>,
        secret_key: Option<String>,
    ) -> Result<WebhookView, WebhookError> {
        let phone_number_id = match (place, row.phone_number_internal_id) {
            (_, None) => None,
            (Place::Number(n), Some(_)) => Some(n.phone_number_id.clone()),
            (Place::Project, Some(internal_id)) => self
                .store
                .find_phone_number_by_internal_id(internal_id)
                .await?
                .map(|n| n.phone_number_id),
        };
        Ok(WebhookView {
            row,
            phone_number_id,
            secret_key,
        })
    }

    /// Creates a webhook at `place` (kind `kapso` unless the body says `meta`).
    pub async fn create(
        &self,
        project_id: Uuid,
        place: Place<'_>,
        input: WebhookInput,
    ) -> Result<WebhookView, WebhookError> {
        let written = self.create_inner(project_id, place, input).await;
        self.forget_numbers(written)
    }

    async fn create_inner(
        &self,
        project_id: Uuid,
        place: Place<'_>,
        input: WebhookInput,
    ) -> Result<WebhookView, WebhookError> {
        let mut errors = Vec::new();
        let kind = input.kind.clone().unwrap_or_else(|| "kapso".into());
        let number = match place {
            Place::Number(n) => Some(n),
            Place::Project => None,
        };
        match (kind.as_str(), number) {
            ("kapso", _) => {}
            ("meta", None) => errors.push(FieldError::new(
                "kind",
                "meta webhooks belong to a phone number (Meta's payload is per number); \
                 create it under /platform/v1/whatsapp/phone_numbers/{phone_number_id}/webhooks",
            )),
            ("meta", Some(n)) => {
                let existing = self.store.get_webhook(project_id, n.internal_id).await?;
                if n.webhook_destination_url.is_some() || existing.is_some() {
                    errors.push(already_has_meta());
                }
            }
            _ => errors.push(FieldError::new("kind", "must be \"kapso\" or \"meta\"")),
        }
        match input.url.as_deref() {
            None => errors.push(FieldError::new("url", "is required")),
            Some(url) => self.check_url(url, &mut errors).await,
        }
        check_common(&input, &mut errors);
        let now = crate::store::now();
        let id = if kind == "meta" {
            // A meta webhook is its number's webhook_destination_url: it shares the number's id.
            number.map_or_else(Uuid::now_v7, |n| n.internal_id)
        } else {
            Uuid::now_v7()
        };
        let url = input.url.as_deref().unwrap_or_default().trim().to_owned();
        let mut row = WebhookRow::new(
            id,
            project_id,
            number.map(|n| n.internal_id),
            &kind,
            url,
            now,
        );
        row.active = input.active.unwrap_or(true);
        row.paused_at = (input.active == Some(false)).then_some(now);
        if kind == "meta" {
            forbid_for_meta(&input, &mut errors);
        } else {
            if input.events.is_none() {
                errors.push(FieldError::new(
                    "events",
                    "is required: name at least one event",
                ));
            }
            apply_kapso_fields(&input, &mut row, number.is_some(), &mut errors);
        }
        apply_headers(&input, &mut row, &mut errors);
        if !errors.is_empty() {
            return Err(WebhookError::Invalid(errors));
        }

        if kind == "meta" {
            let n = number.expect("meta is refused on project webhooks above");
            self.store.create_webhook(&row).await.map_err(|e| match e {
                StoreError::Conflict { .. } => WebhookError::Invalid(vec![already_has_meta()]),
                other => other.into(),
            })?;
            let secret = match &input.secret_key {
                Some(secret) => Some(
                    self.set_number_secret(project_id, n, Some(secret), false)
                        .await?,
                ),
                None => self.number_secret(n).await?,
            };
            let row = self
                .store
                .get_webhook(project_id, id)
                .await?
                .ok_or(WebhookError::NotFound)?;
            return self.view(row, place, secret).await;
        }
        let secret = match &input.secret_key {
            Some(secret) => secret.expose_secret().trim().to_owned(),
            None => new_secret(),
        };
        row.secret_sealed = Some(self.secrets.seal(SealedField::WebhookKey.at(id), &secret));
        row.secret_key_id = Some(self.secrets.key_id().to_owned());
        let row = self.store.create_webhook(&row).await?;
        self.view(row, place, Some(secret)).await
    }

    /// Applies a PATCH to a webhook of `place`.
    pub async fn update(
        &self,
        project_id: Uuid,
        place: Place<'_>,
        id: &str,
        input: WebhookInput,
    ) -> Result<WebhookView, WebhookError> {
        let written = self.update_inner(project_id, place, id, input).await;
        self.forget_numbers(written)
    }

    async fn update_inner(
        &self,
        project_id: Uuid,
        place: Place<'_>,
        id: &str,
        input: WebhookInput,
    ) -> Result<WebhookView, WebhookError> {
        let current = self.row(project_id, place, id).await?;
        let mut errors = Vec::new();
        if let Some(kind) = &input.kind {
            if *kind != current.kind {
                errors.push(FieldError::new(
                    "kind",
                    format!(
                        "cannot be changed (this webhook is {}); delete it and create one of the other kind",
                        current.kind
                    ),
                ));
            }
        }
        if let Some(url) = input.url.as_deref() {
            self.check_url(url, &mut errors).await;
        }
        check_common(&input, &mut errors);
        if input.secret_key.is_some() && input.rotate_secret_key == Some(true) {
            errors.push(FieldError::new(
                "rotate_secret_key",
                "cannot be combined with secret_key; send one or the other",
            ));
        }
        let now = crate::store::now();
        let mut row = current.clone();
        if let Some(url) = &input.url {
            row.url = url.trim().to_owned();
        }
        match input.active {
            Some(true) => {
                row.active = true;
                row.paused_reason = None;
                row.paused_at = None;
                row.consecutive_failures = 0;
            }
            Some(false) if current.active || current.paused_reason.is_some() => {
                // Paused by hand: no reason, and nothing is held for it from now on.
                row.active = false;
                row.paused_reason = None;
                row.paused_at = Some(now);
            }
            _ => {}
        }
        if current.is_meta() {
            forbid_for_meta(&input, &mut errors);
        } else {
            let has_number = current.phone_number_internal_id.is_some();
            apply_kapso_fields(&input, &mut row, has_number, &mut errors);
        }
        apply_headers(&input, &mut row, &mut errors);
        if !errors.is_empty() {
            return Err(WebhookError::Invalid(errors));
        }

        let rotate = input.rotate_secret_key == Some(true);
        let mut shown = None;
        if !current.is_meta() {
            let secret = match (&input.secret_key, rotate) {
                (Some(secret), _) => Some(secret.expose_secret().trim().to_owned()),
                (None, true) => Some(new_secret()),
                (None, false) => None,
            };
            if let Some(secret) = secret {
                row.secret_sealed = Some(
                    self.secrets
                        .seal(SealedField::WebhookKey.at(row.id), &secret),
                );
                row.secret_key_id = Some(self.secrets.key_id().to_owned());
                shown = Some(secret);
            }
        }
        row.updated_at = now;
        let row = self.store.update_webhook(&row).await?;
        if current.is_meta() && (input.secret_key.is_some() || rotate) {
            let number = self.meta_number(project_id, place, &row).await?;
            shown = Some(
                self.set_number_secret(project_id, &number, input.secret_key.as_ref(), rotate)
                    .await?,
            );
        }
        self.view(row, place, shown).await
    }

    /// Deletes a webhook of `place` (a meta one clears its number's `webhook_destination_url`).
    pub async fn delete(
        &self,
        project_id: Uuid,
        place: Place<'_>,
        id: &str,
    ) -> Result<(), WebhookError> {
        let deleted = async {
            let row = self.row(project_id, place, id).await?;
            self.store.delete_webhook(project_id, row.id).await?;
            Ok(())
        }
        .await;
        self.forget_numbers(deleted)
    }

    /// Queues one test delivery (`whatsapp.webhook.test`) to a webhook of the project, through
    /// the outbox: the worker signs and sends it like any event. A webhook wagate paused holds
    /// it until resumed; one paused by hand refuses it.
    pub async fn test(&self, project_id: Uuid, id: &str) -> Result<DeliveryRow, WebhookError> {
        let row = self.row(project_id, Place::Project, id).await?;
        let auto_paused = !row.active && row.paused_reason.is_some();
        if !row.active && !auto_paused {
            return Err(WebhookError::Invalid(vec![FieldError::new(
                "active",
                "the webhook is inactive (paused by hand); PATCH active: true before testing it",
            )]));
        }
        let number = match row.phone_number_internal_id {
            Some(internal_id) => {
                self.store
                    .find_phone_number_by_internal_id(internal_id)
                    .await?
            }
            None => None,
        };
        let now = crate::store::now();
        let payload = serde_json::json!({
            "test": true,
            "webhook_id": row.id,
            "project_id": row.project_id,
            "phone_number_id": number.as_ref().map(|n| n.phone_number_id.as_str()),
            "sent_at": crate::time::iso(now),
        });
        let delivery = NewDelivery {
            id: Uuid::now_v7(),
            project_id,
            phone_number_internal_id: number.as_ref().map(|n| n.internal_id),
            phone_number_id: number
                .as_ref()
                .map(|n| n.phone_number_id.clone())
                .unwrap_or_default(),
            event_id: None,
            route_id: None,
            fields: String::new(),
            idempotency_key: Uuid::new_v4().to_string(),
            message_wamids: String::new(),
            replay_of: None,
            created_at: now,
            webhook_id: row.id,
            event_type: Some(TEST_EVENT.to_owned()),
            payload: Some(serde_json::to_vec(&payload).expect("JSON values serialise")),
            batch_size: 1,
            status: if auto_paused {
                DeliveryStatus::Paused
            } else {
                DeliveryStatus::Pending
            },
        };
        self.store
            .queue_deliveries(std::slice::from_ref(&delivery))
            .await?;
        self.store
            .find_delivery(project_id, delivery.id)
            .await?
            .ok_or(WebhookError::NotFound)
    }

    async fn check_url(&self, url: &str, errors: &mut Vec<FieldError>) {
        if let Err(refusal) =
            crate::destination_guard::check_destination(url, self.destinations).await
        {
            errors.push(FieldError::new("url", refusal.to_string()));
        }
    }

    /// The number a meta webhook belongs to.
    async fn meta_number(
        &self,
        project_id: Uuid,
        place: Place<'_>,
        row: &WebhookRow,
    ) -> Result<PhoneNumber, WebhookError> {
        if let Place::Number(n) = place {
            return Ok(n.clone());
        }
        let internal_id = row.phone_number_internal_id.ok_or(WebhookError::NotFound)?;
        self.store
            .find_phone_number_by_internal_id(internal_id)
            .await?
            .filter(|n| n.project_id == project_id)
            .ok_or(WebhookError::NotFound)
    }

    /// Sets (or, with `rotate`, generates) the number's webhook secret through the phone-number
    /// service, which seals it as always; returns the secret now in force.
    async fn set_number_secret(
        &self,
        project_id: Uuid,
        number: &PhoneNumber,
        secret: Option<&SecretString>,
        rotate: bool,
    ) -> Result<String, WebhookError> {
        let patch = UpdateInput {
            webhook_secret: secret.cloned(),
            rotate_webhook_secret: rotate.then_some(true),
            ..UpdateInput::default()
        };
        let written = self
            .phone_numbers
            .update(project_id, &number.phone_number_id, patch)
            .await
            .map_err(from_number_error)?;
        match (written.new_webhook_secret, secret) {
            (Some(generated), _) => Ok(generated),
            (None, Some(given)) => Ok(given.expose_secret().trim().to_owned()),
            (None, None) => Err(WebhookError::Store(StoreError::Other(anyhow::anyhow!(
                "the phone-number service rotated no webhook secret"
            )))),
        }
    }

    /// The number's current webhook secret (what its meta webhook signs with), if it opens.
    async fn number_secret(&self, number: &PhoneNumber) -> Result<Option<String>, WebhookError> {
        // Read again: the row in hand may predate a secret written since.
        let number = self
            .store
            .find_phone_number_by_internal_id(number.internal_id)
            .await?
            .ok_or(WebhookError::NumberNotFound)?;
        let Some(sealed) = &number.webhook_secret_sealed else {
            return Ok(None);
        };
        let key_id = number.secrets_key_id.as_deref().unwrap_or_default();
        match self.secrets.open(
            SealedField::WebhookSecret.at(number.internal_id),
            key_id,
            sealed,
        ) {
            Ok(secret) => Ok(Some(secret)),
            Err(error) => {
                tracing::error!(phone_number_id = %number.phone_number_id, %error,
                    "cannot open the number's webhook secret; rotate it (PATCH rotate_secret_key)");
                Ok(None)
            }
        }
    }

    /// Passes a write's result on; after a successful one, this instance's caches forget every
    /// number (and so every number's webhooks).
    fn forget_numbers<T>(&self, written: Result<T, WebhookError>) -> Result<T, WebhookError> {
        if written.is_ok() {
            self.numbers.invalidate();
        }
        written
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_are_prefixed_alphanumerics() {
        let a = new_secret();
        let b = new_secret();
        assert_ne!(a, b);
        let rest = a.strip_prefix("wh_sec_").unwrap();
        assert_eq!(rest.len(), 32);
        assert!(rest.bytes().all(|b| b.is_ascii_alphanumeric()), "{a}");
    }
}
