//! Webhook resources and the Kapso-format events they receive (contract §9).
//!
//! `resource` is the Platform API's service (validation, secrets, the `meta` kind kept in step
//! with `webhook_destination_url`); `events` renders v2 event bodies and queues one delivery per
//! matching webhook inside the transaction that caused the event; `buffers` and `inactivity`
//! are the two events that happen later (a batch's window closing, a conversation going quiet).
//! Delivery itself is the shared outbox's (`delivery::worker`).

pub mod events;
pub mod resource;
mod rules;
pub mod sweeps;

use std::sync::Arc;

use secrecy::SecretString;
use uuid::Uuid;

use crate::crypto::{SealedField, SecretBox};
use crate::store::WebhookRow;

/// Events a number's `kapso` webhook may subscribe to.
pub const NUMBER_EVENTS: [&str; 8] = [
    "whatsapp.message.received",
    "whatsapp.message.sent",
    "whatsapp.message.delivered",
    "whatsapp.message.read",
    "whatsapp.message.failed",
    "whatsapp.conversation.created",
    "whatsapp.conversation.ended",
    "whatsapp.conversation.inactive",
];

/// Events a project webhook may subscribe to (message and conversation events never go there).
pub const PROJECT_EVENTS: [&str; 2] = [
    crate::store::webhook_outbox::PHONE_NUMBER_CREATED,
    crate::store::webhook_outbox::PHONE_NUMBER_DELETED,
];

/// The only event that can be buffered (contract §9.5).
pub const BUFFERABLE_EVENT: &str = "whatsapp.message.received";

/// A webhook as the delivery worker and ingest use it: parsed lists, the decrypted key.
#[derive(Clone)]
pub struct WebhookTarget {
    pub id: Uuid,
    pub project_id: Uuid,
    pub phone_number_internal_id: Option<Uuid>,
    pub is_meta: bool,
    pub url: String,
    pub events: Vec<String>,
    pub active: bool,
    /// Paused by wagate (not by hand): new events are held for it rather than dropped.
    pub auto_paused: bool,
    /// A kapso webhook's `secret_key`; `None` when it cannot be opened (wrong master key).
    pub secret: Option<SecretString>,
    pub headers: Vec<(String, String)>,
    pub buffer_enabled: bool,
    pub buffer_window_seconds: i32,
    pub max_buffer_size: i32,
    pub buffer_events: Vec<String>,
    pub inactivity_minutes: i32,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

impl std::fmt::Debug for WebhookTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookTarget")
            .field("id", &self.id)
            .field("is_meta", &self.is_meta)
            .field("active", &self.active)
            .finish_non_exhaustive()
    }
}

/// Defaults when a buffered webhook leaves a size or window unset (contract §9.5).
pub const DEFAULT_BUFFER_WINDOW_SECONDS: i32 = 5;
pub const DEFAULT_MAX_BUFFER_SIZE: i32 = 50;
pub const DEFAULT_INACTIVITY_MINUTES: i32 = 60;

impl WebhookTarget {
    pub fn from_row(secrets: &SecretBox, row: &WebhookRow) -> Self {
        let list = |text: &str| serde_json::from_str::<Vec<String>>(text).unwrap_or_default();
        let headers: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&row.headers).unwrap_or_default();
        let key_id = row.secret_key_id.as_deref().unwrap_or_default();
        let secret = row.secret_sealed.as_ref().and_then(|sealed| {
            match secrets.open(SealedField::WebhookKey.at(row.id), key_id, sealed) {
                Ok(secret) => Some(SecretString::from(secret)),
                Err(error) => {
                    tracing::error!(webhook_id = %row.id, %error, "cannot open a webhook's secret_key; rotate it");
                    None
                }
            }
        });
        Self {
            id: row.id,
            project_id: row.project_id,
            phone_number_internal_id: row.phone_number_internal_id,
            is_meta: row.is_meta(),
            url: row.url.clone(),
            events: list(&row.events),
            active: row.active,
            auto_paused: !row.active && row.paused_reason.is_some(),
            secret,
            headers: headers
                .into_iter()
                .filter_map(|(k, v)| Some((k, v.as_str()?.to_owned())))
                .collect(),
            buffer_enabled: row.buffer_enabled,
            buffer_window_seconds: row
                .buffer_window_seconds
                .unwrap_or(DEFAULT_BUFFER_WINDOW_SECONDS),
            max_buffer_size: row.max_buffer_size.unwrap_or(DEFAULT_MAX_BUFFER_SIZE),
            buffer_events: list(&row.buffer_events),
            inactivity_minutes: row.inactivity_minutes.unwrap_or(DEFAULT_INACTIVITY_MINUTES),
            created_at: row.created_at,
        }
    }

    /// Whether new events go to it (queued now, or held while wagate has it paused).
    pub fn receives(&self) -> bool {
        self.active || self.auto_paused
    }

    /// Whether this kapso webhook wants `event`.
    pub fn wants(&self, event: &str) -> bool {
        !self.is_meta && self.receives() && self.events.iter().any(|e| e == event)
    }

    /// Whether `event` is buffered for this webhook.
    pub fn buffers(&self, event: &str) -> bool {
        self.buffer_enabled
            && event == BUFFERABLE_EVENT
            && (self.buffer_events.is_empty() || self.buffer_events.iter().any(|e| e == event))
    }
}

/// A number's webhooks, as cached with it.
pub type NumberWebhooks = Arc<Vec<Arc<WebhookTarget>>>;
