//! Recording what passes through the proxy: sends (as outbound messages, `pending`), `status: read`
//! requests (the inbound message becomes `read`) and calls placed through Graph.

use serde_json::{json, Map, Value};

use super::contacts::{self, text, Identity};
use super::ingest::{self, IngestSettings, Recorded};
use super::writer::Recording;
use crate::store::{StoreResult, StoreTx};

pub async fn apply(
    tx: &mut dyn StoreTx,
    recording: &Recording,
    settings: IngestSettings,
) -> StoreResult<()> {
    match recording {
        Recording::Send {
            number,
            request,
            response,
            at,
        } => {
            if request.get("status").and_then(Value::as_str) == Some("read") {
                if let Some(wamid) = text(request, "message_id") {
                    ingest::mark_read(tx, number.internal_id, &wamid, *at).await?;
                }
                return Ok(());
            }
            let Some(message) = outbound_message(request, response, *at) else {
                return Ok(());
            };
            let who = recipient(request, response);
            let recorded = Recorded {
                direction: "outbound",
                status: "pending",
                origin: "cloud_api",
            };
            ingest::record_message(tx, number, &message, &who, recorded, settings, *at).await
        }
        Recording::Call {
            number,
            request,
            response,
            at,
        } => super::calls::record_outbound(tx, number, request, response, *at).await,
    }
}

/// Who a send went to, by Meta's rule: `to` (a phone) wins over `recipient` (a BSUID); Meta's
/// answer (`contacts[0].wa_id` / `user_id`) is the most precise.
fn recipient(request: &Value, response: &Value) -> Identity {
    let contact = response.pointer("/contacts/0").unwrap_or(&Value::Null);
    let to = text(request, "to");
    let recipient = text(request, "recipient");
    let to_is_bsuid = to.as_deref().is_some_and(contacts::is_bsuid);
    let wa_id = text(contact, "wa_id")
        .or_else(|| to.clone().filter(|_| !to_is_bsuid))
        .and_then(|w| contacts::normalize_wa_id(&w));
    let bsuid = text(contact, "user_id")
        .or_else(|| to.filter(|_| to_is_bsuid))
        .or_else(|| {
            if wa_id.is_none() {
                recipient.filter(|r| contacts::is_bsuid(r))
            } else {
                None
            }
        });
    Identity {
        wa_id,
        bsuid,
        ..Identity::default()
    }
}

/// The stored shape of a send: Meta's message object (`id`, `timestamp`, `type`, `to`, the type's
/// payload, `context`), with the send payload as given.
fn outbound_message(
    request: &Value,
    response: &Value,
    at: chrono::DateTime<chrono::Utc>,
) -> Option<Value> {
    let wamid = response.pointer("/messages/0/id")?.as_str()?;
    let message_type = text(request, "type").unwrap_or_else(|| "text".into());
    let mut message = Map::new();
    message.insert("id".into(), json!(wamid));
    message.insert("timestamp".into(), json!(at.timestamp().to_string()));
    message.insert("type".into(), json!(message_type));
    for key in [
        "to",
        "recipient",
        "recipient_type",
        "biz_opaque_callback_data",
    ] {
        if let Some(value) = request.get(key) {
            message.insert(key.into(), value.clone());
        }
    }
    if let Some(payload) = request.get(&message_type) {
        message.insert(message_type.clone(), payload.clone());
    }
    if let Some(reply_to) = request.pointer("/context/message_id") {
        message.insert("context".into(), json!({ "id": reply_to }));
    }
    if let Some(status) = response.pointer("/messages/0/message_status") {
        message.insert("message_status".into(), status.clone());
    }
    Some(Value::Object(message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn to_wins_over_recipient() {
        let id = recipient(
            &json!({"to": "+1 555 0100", "recipient": "US.123"}),
            &json!({}),
        );
        assert_eq!(id.wa_id.as_deref(), Some("15550100"));
        assert_eq!(id.bsuid, None);
        let id = recipient(
            &json!({"recipient": "US.123"}),
            &json!({"contacts": [{"input": "US.123", "user_id": "US.123"}]}),
        );
        assert_eq!(id.bsuid.as_deref(), Some("US.123"));
        assert_eq!(id.wa_id, None);
    }

    #[test]
    fn outbound_shape_keeps_the_payload() {
        let at = chrono::Utc::now();
        let message = outbound_message(
            &json!({"to": "1", "type": "template", "template": {"name": "hello"}, "context": {"message_id": "wamid.q"}}),
            &json!({"messages": [{"id": "wamid.x"}]}),
            at,
        )
        .unwrap();
        assert_eq!(message["id"], "wamid.x");
        assert_eq!(message["template"]["name"], "hello");
        assert_eq!(message["context"]["id"], "wamid.q");
        assert!(message["timestamp"].is_string());
        assert!(outbound_message(&json!({}), &json!({"error": {}}), at).is_none());
    }
}
