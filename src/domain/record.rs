//! Recording one message in the store: its contact and conversation, the statuses that arrived
//! before it, its media download and its Kapso events. Shared by webhook ingest (inbound
//! messages, business-app echoes, imported history) and the proxy's recorder (sends).

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use super::contacts::{self, text, Identity};
use super::conversations::{self, Activity};
use super::envelope::RoutedNumber;
use super::message_content::{is_media, next_status, render};
use super::webhooks::events;
use crate::store::{Direction, MessageRow, ProcessingStatus, StoreError, StoreResult, StoreTx};

/// Knobs the effects depend on.
#[derive(Debug, Clone, Copy)]
pub struct IngestSettings {
    pub inactivity: chrono::Duration,
    /// Queue a download into the media vault for every media message recorded.
    pub media_vault: bool,
}

/// `kapso.origin` of a message sent or received through the Cloud API (webhook or proxy).
pub const ORIGIN_CLOUD_API: &str = "cloud_api";
/// `kapso.origin` of a message the business sent from the WhatsApp Business app (coexistence echo).
pub const ORIGIN_BUSINESS_APP: &str = "business_app";
/// `kapso.origin` of a message imported from the business app's past chats (`history` webhook).
pub const ORIGIN_HISTORY: &str = "history";

/// How a message enters the store.
#[derive(Debug, Clone, Copy)]
pub struct Recorded {
    pub direction: Direction,
    pub status: &'static str,
    pub origin: &'static str,
}

/// Stores one message (once: duplicates change nothing), its contact and conversation, and
/// applies statuses that arrived before it.
pub async fn record_message(
    tx: &mut dyn StoreTx,
    number: &RoutedNumber,
    message: &Value,
    who: &Identity,
    recorded: Recorded,
    settings: IngestSettings,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let Some(wamid) = text(message, "id") else {
        return Ok(());
    };
    // One writer per wamid at a time: a concurrent status either sees the message or parks
    // before we look for parked statuses. Under that lock "not stored" stays true until we
    // insert, so the contact and conversation can be settled first and the message written
    // once, complete.
    tx.lock_key(number.internal_id, &wamid).await?;
    let (stored, parked) = tx.message_presence(number.internal_id, &wamid).await?;
    if stored {
        return Ok(());
    }
    let message_type = text(message, "type").unwrap_or_else(|| "text".into());
    // A group message's sender is a participant of the group, not a 1:1 contact of the number.
    let group_id = text(message, "group_id");
    let contact = match group_id {
        Some(_) => None,
        None => contacts::upsert(tx, number.project_id, number.internal_id, who, now).await?,
    };
    // Imported history is the past: it opens no conversation and announces nothing.
    let history = recorded.origin == ORIGIN_HISTORY;
    // A fresh inbound message waits for its delivery to the app; history is never delivered as
    // new (nothing would ever complete it).
    let processing_status =
        if recorded.direction == Direction::Inbound && !history && number.hands_off_inbound() {
            ProcessingStatus::Pending
        } else {
            ProcessingStatus::Completed
        };
    let meta_timestamp = message
        .get("timestamp")
        .and_then(|t| {
            t.as_str()
                .and_then(|s| s.parse().ok())
                .or_else(|| t.as_i64())
        })
        .unwrap_or_else(|| now.timestamp());
    let content = render(message);
    let mut row = MessageRow {
        id: Uuid::now_v7(),
        project_id: number.project_id,
        phone_number_internal_id: number.internal_id,
        wamid: wamid.clone(),
        direction: recorded.direction,
        message_type: message_type.clone(),
        status: recorded.status.into(),
        processing_status,
        origin: recorded.origin.into(),
        meta_timestamp,
        contact_id: contact.as_ref().map(|c| c.id),
        conversation_id: None,
        has_media: is_media(&message_type),
        body: message.to_string(),
        errors: message.get("errors").map(Value::to_string),
        statuses: "[]".into(),
        created_at: now,
        updated_at: now,
        group_id: group_id.clone(),
        edits: None,
        revoked_at: None,
    };
    let mut touched = None;
    if let Some(contact) = contact.as_ref().filter(|_| !history) {
        let activity = Activity {
            inbound: recorded.direction == Direction::Inbound,
            wamid: &wamid,
            message_type: &message_type,
            text: &content,
            at: now,
        };
        let touch = conversations::touch(
            tx,
            number.project_id,
            number.internal_id,
            contact.id,
            &activity,
            settings.inactivity,
        )
        .await?;
        row.conversation_id = Some(touch.conversation.id);
        touched = Some(touch);
    }
    if parked {
        for status in tx.take_parked_statuses(number.internal_id, &wamid).await? {
            if let Ok(status) = serde_json::from_str::<Value>(&status.status) {
                fold_status(&mut row, &status);
            }
        }
    }
    if !tx.insert_message(&row).await? {
        // Only a writer that skipped the wamid lock gets here. Roll back rather than leave a
        // conversation counting a message that is not this one; the writer retries the job
        // alone, and then finds the message stored.
        return Err(StoreError::Conflict {
            constraint: Some("messages (phone_number_internal_id, wamid)".into()),
        });
    }
    if settings.media_vault && row.has_media {
        if let Some(media) =
            super::media::queued_download(&row, &number.phone_number_id, message, now)
        {
            tx.queue_media(&media).await?;
        }
    }
    if let Some(touched) = &touched {
        let contact = contact.as_ref();
        if let Some(ended) = &touched.ended {
            events::queue_conversation_event(
                tx,
                number,
                events::CONVERSATION_ENDED,
                ended,
                contact,
                now,
            )
            .await?;
        }
        if touched.created {
            let created = &touched.conversation;
            events::queue_conversation_event(
                tx,
                number,
                events::CONVERSATION_CREATED,
                created,
                contact,
                now,
            )
            .await?;
        }
    }
    // Inbound messages are `received`; a business-app echo was `sent` from the phone.
    let event = match recorded.direction {
        _ if history => None,
        Direction::Inbound => Some(events::MESSAGE_RECEIVED),
        Direction::Outbound => {
            events::status_event(&row.status).filter(|_| recorded.origin != ORIGIN_CLOUD_API)
        }
    };
    if let Some(event) = event {
        events::queue_message_event(
            tx,
            number,
            event,
            &row,
            contact.as_ref(),
            touched.as_ref().map(|t| &t.conversation),
            touched.as_ref().is_some_and(|t| t.created),
            now,
        )
        .await?;
    }
    Ok(())
}

/// Adds a raw status to a message's history and moves its status forward when it should;
/// returns whether it moved.
pub fn fold_status(row: &mut MessageRow, status: &Value) -> bool {
    let mut history: Vec<Value> = serde_json::from_str(&row.statuses).unwrap_or_default();
    history.push(status.clone());
    row.statuses = Value::Array(history).to_string();
    let incoming = status.get("status").and_then(Value::as_str).unwrap_or("");
    if let Some(next) = next_status(&row.status, incoming) {
        row.status = next.into();
        if next == "failed" {
            row.errors = status.get("errors").map(Value::to_string);
        }
        return true;
    }
    false
}
