//! Rows of the stored-data tables (messages, contacts, conversations, calls, webhook events).
//! JSON columns are text in both backends, so the same `FromRow` decodes both.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::status::{ConversationStatus, Direction, ProcessingStatus};

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ContactRow {
    pub id: Uuid,
    pub project_id: Uuid,
    pub phone_number_internal_id: Uuid,
    pub wa_id: Option<String>,
    pub business_scoped_user_id: Option<String>,
    pub parent_business_scoped_user_id: Option<String>,
    pub username: Option<String>,
    pub profile_name: Option<String>,
    pub display_name: Option<String>,
    pub customer_id: Option<Uuid>,
    /// JSON object as text.
    pub metadata: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ConversationRow {
    pub id: Uuid,
    pub project_id: Uuid,
    pub phone_number_internal_id: Uuid,
    pub contact_id: Uuid,
    pub status: ConversationStatus,
    pub last_active_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub messages_count: i32,
    pub last_message_id: Option<String>,
    pub last_message_type: Option<String>,
    pub last_message_timestamp: Option<String>,
    pub last_message_text: Option<String>,
    pub last_inbound_at: Option<DateTime<Utc>>,
    pub last_outbound_at: Option<DateTime<Utc>>,
    pub metadata: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl ConversationRow {
    /// `last_active_at` truncated to the second: the indexed `active_second` column, which
    /// changes at most once a second so the per-message update stays a HOT update (see migration
    /// 0017).
    pub fn active_second(&self) -> DateTime<Utc> {
        whole_second(self.last_active_at)
    }

    /// A new active conversation of a contact, with nothing counted yet.
    pub fn opened(project_id: Uuid, number: Uuid, contact_id: Uuid, at: DateTime<Utc>) -> Self {
        Self {
            id: Uuid::now_v7(),
            project_id,
            phone_number_internal_id: number,
            contact_id,
            status: ConversationStatus::Active,
            last_active_at: at,
            ended_at: None,
            messages_count: 0,
            last_message_id: None,
            last_message_type: None,
            last_message_timestamp: None,
            last_message_text: None,
            last_inbound_at: None,
            last_outbound_at: None,
            metadata: "{}".into(),
            created_at: at,
            updated_at: at,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct MessageRow {
    pub id: Uuid,
    pub project_id: Uuid,
    pub phone_number_internal_id: Uuid,
    pub wamid: String,
    pub direction: Direction,
    /// Meta's type as received or sent (presentation maps unknown ones).
    pub message_type: String,
    /// `pending|sent|delivered|read|failed`.
    pub status: String,
    pub processing_status: ProcessingStatus,
    /// `cloud_api` (webhook or proxy) or `business_app` (coexistence echo).
    pub origin: String,
    pub meta_timestamp: i64,
    pub contact_id: Option<Uuid>,
    pub conversation_id: Option<Uuid>,
    pub has_media: bool,
    /// The Meta message object (webhook shape, or the send request for outbound) as JSON text.
    pub body: String,
    /// Meta error objects (JSON array text) from a failed status or an unsupported message.
    pub errors: Option<String>,
    /// Every raw status received, in arrival order (JSON array text).
    pub statuses: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The group a group message belongs to (Groups API); such messages have no 1:1 contact.
    pub group_id: Option<String>,
    /// Earlier versions of an edited message, oldest first (JSON array text of
    /// `{body, content, replaced_at}`); `None` when never edited.
    pub edits: Option<String>,
    /// When the sender revoked it (its content is cleared, the fact kept).
    pub revoked_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct CallRow {
    pub id: Uuid,
    pub project_id: Uuid,
    pub phone_number_internal_id: Uuid,
    pub call_id: String,
    pub direction: Direction,
    /// `initiated|ringing|answered|completed|failed`.
    pub status: String,
    pub from_number: Option<String>,
    pub to_number: Option<String>,
    pub contact_id: Option<Uuid>,
    pub conversation_id: Option<Uuid>,
    pub started_at: DateTime<Utc>,
    pub session_started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub duration_seconds: Option<i32>,
    /// Raw call events, in arrival order (JSON array text).
    pub events: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A raw webhook POST as received.
#[derive(Debug, Clone)]
pub struct NewWebhookEvent {
    pub id: Uuid,
    pub received_at: DateTime<Utc>,
    pub body: Vec<u8>,
    /// `processed`, `invalid_json` or `unrouted`.
    pub state: String,
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct WebhookEventRow {
    pub id: Uuid,
    pub received_at: DateTime<Utc>,
    pub body: Vec<u8>,
    pub state: String,
    pub error: Option<String>,
}

/// Meta's envelope restricted to one number's changes.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct EventRouteRow {
    pub id: Uuid,
    pub event_id: Uuid,
    /// `None` when no connected number matched (unrouted).
    pub project_id: Option<Uuid>,
    pub phone_number_id: String,
    /// Comma-separated webhook fields (`messages,calls`).
    pub fields: String,
    pub payload: Vec<u8>,
    pub created_at: DateTime<Utc>,
}

/// A status waiting for its message.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ParkedStatusRow {
    pub id: Uuid,
    pub status: String,
}

/// A rendered `whatsapp.message.received` held for a buffering webhook (its conversation's batch).
#[derive(Debug, Clone)]
pub struct BufferedEvent {
    pub id: Uuid,
    pub webhook_id: Uuid,
    pub conversation_id: Uuid,
    pub project_id: Uuid,
    pub phone_number_internal_id: Uuid,
    pub phone_number_id: String,
    pub payload: Vec<u8>,
    /// This event's window end; a batch is due at its oldest event's.
    pub flush_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
}

/// A time truncated to the second, as `active_second` holds it. Lists and sweeps bound that
/// column with it: truncation keeps order, so `t >= x` implies `whole_second(t) >= whole_second(x)`.
pub fn whole_second(at: DateTime<Utc>) -> DateTime<Utc> {
    chrono::SubsecRound::trunc_subsecs(at, 0)
}
