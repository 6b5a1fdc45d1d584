//! Recording a send Meta accepted as an outbound message: who it went to, by Meta's rule, and
//! the stored shape of the message. Used by the proxy's recorder and by ingest (a queued send
//! whose answer was lost is recorded when Meta's status webhook names it).

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use super::contacts::{self, text, Identity};
use super::envelope::RoutedNumber;
use super::record::{self, IngestSettings, Recorded};
use crate::store::{Direction, StoreResult, StoreTx};

/// Records `request` (a Graph send body), accepted with `response`, as an outbound message.
pub async fn record_send(
    tx: &mut dyn StoreTx,
    number: &RoutedNumber,
    request: &Value,
    response: &Value,
    settings: IngestSettings,
    at: DateTime<Utc>,
) -> StoreResult<()> {
    // A group send goes to the group: nobody in it is a 1:1 contact.
    let to_group = text(request, "recipient_type").as_deref() == Some("group");
    let who = if to_group {
        Identity::default()
    } else {
        recipient(request, response)
    };
    let Some(mut message) = outbound_message(request, response, &who, at) else {
        return Ok(());
    };
    let recorded = Recorded {
        direction: Direction::Outbound,
        status: "pending",
        origin: record::ORIGIN_CLOUD_API,
    };
    if let (true, Some(group), Value::Object(object)) =
        (to_group, text(request, "to"), &mut message)
    {
        object.insert("group_id".into(), json!(group));
    }
    record::record_message(tx, number, &message, &who, recorded, settings, at).await
}

/// Who a send went to, by Meta's rule: `to` wins over `recipient` when both are given (`to` is a
/// phone number, or a BSUID in Meta's Nov-2025 form; `recipient` a BSUID or parent BSUID). Meta's
/// answer (`contacts[0].wa_id` / `user_id`) is the most precise. BSUIDs are kept exactly as given:
/// phone normalisation only ever applies to phone numbers.
fn recipient(request: &Value, response: &Value) -> Identity {
    let contact = response.pointer("/contacts/0").unwrap_or(&Value::Null);
    let to = text(request, "to");
    let to_is_bsuid = to.as_deref().is_some_and(contacts::is_bsuid);
    // The BSUID the send was addressed to: `to` when it is one, else `recipient` unless a
    // phone `to` took precedence.
    let addressed = match &to {
        Some(to) if to_is_bsuid => Some(to.clone()),
        Some(_) => None,
        None => text(request, "recipient").filter(|r| contacts::is_bsuid(r)),
    };
    let wa_id = text(contact, "wa_id")
        .or_else(|| to.filter(|_| !to_is_bsuid))
        .and_then(|w| contacts::normalize_wa_id(&w));
    let mut identity = Identity {
        wa_id,
        ..Identity::default()
    };
    for bsuid in [text(contact, "user_id"), addressed].into_iter().flatten() {
        if contacts::is_parent_bsuid(&bsuid) {
            identity.parent_bsuid.get_or_insert(bsuid);
        } else if contacts::is_bsuid(&bsuid) {
            identity.bsuid.get_or_insert(bsuid);
        }
    }
    identity
}

/// The stored shape of a send: Meta's message object (`id`, `timestamp`, `type`, `to`, the type's
/// payload, `context`), with the send payload as given.
fn outbound_message(
    request: &Value,
    response: &Value,
    who: &Identity,
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
    // Meta's name for the BSUID a business message went to (as in message echoes).
    if let Some(bsuid) = &who.bsuid {
        message.insert("to_user_id".into(), json!(bsuid));
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
        // Meta's Nov-2025 form: a BSUID in `to`, `wa_id: ""` in the answer.
        let id = recipient(
            &json!({"to": "US.13491208655302741918"}),
            &json!({"contacts": [{"input": "US.13491208655302741918", "wa_id": ""}]}),
        );
        assert_eq!(id.bsuid.as_deref(), Some("US.13491208655302741918"));
        assert_eq!(id.wa_id, None);
        // A parent BSUID names the user across portfolios; Meta's answer names them here.
        let id = recipient(
            &json!({"recipient": "US.ENT.11815799212886844830"}),
            &json!({"contacts": [{"input": "US.ENT.11815799212886844830", "user_id": "US.1349"}]}),
        );
        assert_eq!(id.bsuid.as_deref(), Some("US.1349"));
        assert_eq!(
            id.parent_bsuid.as_deref(),
            Some("US.ENT.11815799212886844830")
        );
    }

    #[test]
    fn outbound_shape_keeps_the_payload() {
        let at = chrono::Utc::now();
        let message = outbound_message(
            &json!({"to": "1", "type": "template", "template": {"name": "hello"}, "context": {"message_id": "wamid.q"}}),
            &json!({"messages": [{"id": "wamid.x"}]}),
            &Identity::default(),
            at,
        )
        .unwrap();
        assert_eq!(message["id"], "wamid.x");
        assert_eq!(message["template"]["name"], "hello");
        assert_eq!(message["context"]["id"], "wamid.q");
        assert!(message["timestamp"].is_string());
        assert!(
            outbound_message(&json!({}), &json!({"error": {}}), &Identity::default(), at).is_none()
        );
        let who = Identity {
            bsuid: Some("US.1349".into()),
            ..Identity::default()
        };
        let message = outbound_message(
            &json!({"recipient": "US.1349", "type": "text", "text": {"body": "hi"}}),
            &json!({"messages": [{"id": "wamid.y"}]}),
            &who,
            at,
        )
        .unwrap();
        assert_eq!(message["to_user_id"], "US.1349");
        assert_eq!(message["recipient"], "US.1349");
    }
}
