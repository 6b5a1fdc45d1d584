//! Kapso-format events (contract §9.4): rendered once, when the fact they announce is written,
//! and queued as one delivery per webhook that wants them, in the same transaction. So an event
//! exists exactly when its fact was committed, and its bytes (hence its signature and
//! `X-Idempotency-Key`) are the same on every retry and replay.
//!
//! A number's webhooks travel with it (`RoutedNumber::webhooks`, cached by the number directory):
//! when none wants an event, nothing is rendered and nothing read, so numbers without Kapso
//! webhooks pay nothing for them.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use uuid::Uuid;

use super::WebhookTarget;
use crate::domain::envelope::RoutedNumber;
use crate::domain::present::{self, fields::KapsoFields};
use crate::store::BufferedEvent;
use crate::store::{
    ContactRow, ConversationRow, DeliveryStatus, MessageRow, NewDelivery, StoreResult, StoreTx,
};

pub const MESSAGE_RECEIVED: &str = "whatsapp.message.received";
pub const CONVERSATION_CREATED: &str = "whatsapp.conversation.created";
pub const CONVERSATION_ENDED: &str = "whatsapp.conversation.ended";
pub const CONVERSATION_INACTIVE: &str = "whatsapp.conversation.inactive";

/// The event a message status announces, if any (`whatsapp.message.sent|delivered|read|failed`).
pub fn status_event(status: &str) -> Option<&'static str> {
    match status {
        "sent" => Some("whatsapp.message.sent"),
        "delivered" => Some("whatsapp.message.delivered"),
        "read" => Some("whatsapp.message.read"),
        "failed" => Some("whatsapp.message.failed"),
        _ => None,
    }
}

/// The webhooks of `number` that want `event`.
fn subscribers<'a>(
    number: &'a RoutedNumber,
    event: &'a str,
) -> impl Iterator<Item = &'a WebhookTarget> + 'a {
    number
        .webhooks
        .iter()
        .map(AsRef::as_ref)
        .filter(move |w| w.wants(event))
}

/// Whether any webhook of `number` wants `event` (check before reading what a body needs).
pub fn wanted(number: &RoutedNumber, event: &str) -> bool {
    subscribers(number, event).next().is_some()
}

/// The stored message in Kapso's shape with its whole `kapso` block, plus `kapso.statuses`
/// (every raw Meta status so far) as status events carry it.
pub fn message_object(row: &MessageRow, contact: Option<&ContactRow>) -> Value {
    let mut object = present::message(row, contact, None, &KapsoFields::All);
    let statuses: Value = serde_json::from_str(&row.statuses).unwrap_or_else(|_| json!([]));
    if let Some(kapso) = object.get_mut("kapso").and_then(Value::as_object_mut) {
        kapso.insert("statuses".into(), statuses);
        // Events say `received` as Kapso's do (lists say `delivered`: see `listed_status`).
        kapso.insert("status".into(), json!(row.status));
    }
    object
}

/// A message event (`whatsapp.message.*`): the message, its conversation with the `kapso`
/// summary, `is_new_conversation` and `phone_number_id`.
#[allow(clippy::too_many_arguments)]
pub async fn queue_message_event(
    tx: &mut dyn StoreTx,
    number: &RoutedNumber,
    event: &str,
    message: &MessageRow,
    contact: Option<&ContactRow>,
    conversation: Option<&ConversationRow>,
    is_new_conversation: bool,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    if !wanted(number, event) {
        return Ok(());
    }
    let body = json!({
        "message": message_object(message, contact),
        "conversation": conversation.map(|c| conversation_object(c, contact, number)),
        "is_new_conversation": is_new_conversation,
        "phone_number_id": number.phone_number_id,
    });
    let wamids = if event == MESSAGE_RECEIVED {
        message.wamid.as_str()
    } else {
        ""
    };
    queue(
        tx,
        number,
        event,
        &body,
        wamids,
        conversation.map(|c| c.id),
        now,
    )
    .await
}

/// `whatsapp.conversation.created|ended`: `{conversation, phone_number_id}`.
pub async fn queue_conversation_event(
    tx: &mut dyn StoreTx,
    number: &RoutedNumber,
    event: &str,
    conversation: &ConversationRow,
    contact: Option<&ContactRow>,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    if !wanted(number, event) {
        return Ok(());
    }
    let body = json!({
        "conversation": conversation_object(conversation, contact, number),
        "phone_number_id": number.phone_number_id,
    });
    queue(tx, number, event, &body, "", None, now).await
}

pub fn conversation_object(
    conversation: &ConversationRow,
    contact: Option<&ContactRow>,
    number: &RoutedNumber,
) -> Value {
    present::conversation(
        conversation,
        contact,
        &number.phone_number_id,
        &KapsoFields::All,
    )
}

/// One delivery per subscribed webhook (or, for a buffering one, a buffered event).
async fn queue(
    tx: &mut dyn StoreTx,
    number: &RoutedNumber,
    event: &str,
    body: &Value,
    wamids: &str,
    conversation_id: Option<Uuid>,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let bytes = serde_json::to_vec(body).expect("JSON serialises");
    for webhook in subscribers(number, event) {
        if let (true, Some(conversation_id)) = (webhook.buffers(event), conversation_id) {
            let window = chrono::Duration::seconds(i64::from(webhook.buffer_window_seconds));
            tx.buffer_webhook_event(&BufferedEvent {
                id: Uuid::now_v7(),
                webhook_id: webhook.id,
                conversation_id,
                project_id: number.project_id,
                phone_number_internal_id: number.internal_id,
                phone_number_id: number.phone_number_id.clone(),
                payload: bytes.clone(),
                flush_at: now + window,
                created_at: now,
            })
            .await?;
            continue;
        }
        tx.queue_delivery(&delivery(webhook, number, event, bytes.clone(), wamids))
            .await?;
    }
    Ok(())
}

/// A Kapso event's outbox row for `webhook`, due at once: stamped with the time it is queued,
/// whatever clock decided the event (the sweeps take theirs as an argument).
pub fn delivery(
    webhook: &WebhookTarget,
    number: &RoutedNumber,
    event: &str,
    payload: Vec<u8>,
    wamids: &str,
) -> NewDelivery {
    let now = crate::store::now();
    NewDelivery {
        id: Uuid::now_v7(),
        project_id: number.project_id,
        phone_number_internal_id: Some(number.internal_id),
        phone_number_id: number.phone_number_id.clone(),
        event_id: None,
        route_id: None,
        fields: String::new(),
        // One per (event, webhook); kept by retries and replays.
        idempotency_key: Uuid::now_v7().to_string(),
        message_wamids: wamids.to_owned(),
        replay_of: None,
        created_at: now,
        webhook_id: webhook.id,
        event_type: Some(event.to_owned()),
        payload: Some(payload),
        batch_size: 1,
        status: if webhook.active {
            DeliveryStatus::Pending
        } else {
            DeliveryStatus::Paused
        },
    }
}
