//! Numbers shared with the WhatsApp Business app (coexistence): the app's past chats imported by
//! `history` webhooks, its address book from `smb_app_state_sync`, and the `edit` and `revoke`
//! messages that change a message already stored.
//!
//! Imported history is stored with `origin: history`: it is the past, so it opens no
//! conversation and sends no Kapso event (Meta's raw payload is still forwarded like any other).

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use super::contacts::array;
use super::contacts::{self, text, Identity};
use super::envelope::RoutedNumber;
use super::message_content::{is_media, render};
use super::record::{self, IngestSettings, Recorded, ORIGIN_HISTORY};
use crate::store::{Direction, StoreResult, StoreTx};
use crate::time::iso;

/// Meta's `history_context.status` of a business message, as Kapso's status.
fn history_status(message: &Value) -> &'static str {
    let status = message
        .pointer("/history_context/status")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_ascii_lowercase();
    match status.as_str() {
        "delivered" => "delivered",
        "read" | "played" => "read",
        "error" | "failed" => "failed",
        _ => "sent",
    }
}

/// Stores every message of a `history` webhook (chunks of threads, one thread per user).
pub async fn import_history(
    tx: &mut dyn StoreTx,
    number: &RoutedNumber,
    value: &Value,
    settings: IngestSettings,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    for chunk in array(value, "history") {
        for thread in array(chunk, "threads") {
            let user = text(thread, "id").and_then(|id| contacts::normalize_wa_id(&id));
            for message in array(thread, "messages") {
                let from = text(message, "from").and_then(|f| contacts::normalize_wa_id(&f));
                // A thread holds both sides: what the user sent, and what the business sent them.
                let inbound = from.is_some() && from == user;
                let who = Identity {
                    wa_id: user.clone(),
                    bsuid: text(thread, "user_id").or_else(|| {
                        text(
                            message,
                            if inbound {
                                "from_user_id"
                            } else {
                                "to_user_id"
                            },
                        )
                    }),
                    ..Identity::default()
                };
                let recorded = Recorded {
                    direction: if inbound {
                        Direction::Inbound
                    } else {
                        Direction::Outbound
                    },
                    status: if inbound {
                        "received"
                    } else {
                        history_status(message)
                    },
                    origin: ORIGIN_HISTORY,
                };
                record::record_message(tx, number, message, &who, recorded, settings, now).await?;
            }
        }
    }
    Ok(())
}

/// Applies the business app's address book (`smb_app_state_sync`): a contact added or edited
/// there is the contact's display name here; a removed one loses it (the contact and its
/// messages stay).
pub async fn sync_app_state(
    tx: &mut dyn StoreTx,
    number: &RoutedNumber,
    value: &Value,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    for item in array(value, "state_sync") {
        if text(item, "type").as_deref() != Some("contact") {
            continue;
        }
        let entry = item.get("contact").unwrap_or(&Value::Null);
        let who = Identity {
            wa_id: text(entry, "phone_number").and_then(|p| contacts::normalize_wa_id(&p)),
            bsuid: text(entry, "user_id"),
            ..Identity::default()
        };
        if who.is_empty() {
            continue;
        }
        let name = text(entry, "full_name").or_else(|| text(entry, "first_name"));
        let removed = text(item, "action").as_deref() == Some("remove");
        let contact = if removed {
            match &who.wa_id {
                Some(wa_id) => tx.find_contact_by_wa_id(number.internal_id, wa_id).await?,
                None => None,
            }
        } else {
            contacts::upsert(tx, number.project_id, number.internal_id, &who, now).await?
        };
        if let Some(mut contact) = contact {
            let display_name = if removed { None } else { name };
            if contact.display_name != display_name {
                contact.display_name = display_name;
                contact.updated_at = now;
                tx.update_contact(&contact).await?;
            }
        }
    }
    Ok(())
}

/// An inbound `edit`: the stored message takes the new content and keeps the old one in its
/// edit history. Nothing happens for a message wagate never stored, or one already revoked.
pub async fn apply_edit(
    tx: &mut dyn StoreTx,
    number: &RoutedNumber,
    message: &Value,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let edit = message.get("edit").unwrap_or(&Value::Null);
    let (Some(original), Some(new)) = (text(edit, "original_message_id"), edit.get("message"))
    else {
        return Ok(());
    };
    tx.lock_key(number.internal_id, &original).await?;
    let Some(mut row) = tx.find_message(number.internal_id, &original).await? else {
        tracing::debug!(wamid = %original, "an edit names a message wagate does not hold; kept raw only");
        return Ok(());
    };
    if row.revoked_at.is_some() {
        return Ok(());
    }
    let mut body: Map<String, Value> = serde_json::from_str(&row.body).unwrap_or_default();
    let mut history: Vec<Value> = row
        .edits
        .as_deref()
        .and_then(|e| serde_json::from_str(e).ok())
        .unwrap_or_default();
    let before = Value::Object(body.clone());
    history.push(json!({
        "type": row.message_type,
        "content": render(&before),
        "body": before,
        "replaced_at": iso(now),
        "edit_id": text(message, "id"),
    }));
    let new_type = text(new, "type").unwrap_or_else(|| row.message_type.clone());
    body.remove(&row.message_type);
    body.insert("type".into(), json!(new_type));
    if let Some(payload) = new.get(&new_type) {
        body.insert(new_type.clone(), payload.clone());
    }
    let body = Value::Object(body);
    let content = render(&body);
    row.has_media = is_media(&new_type);
    row.message_type = new_type;
    row.body = body.to_string();
    row.edits = Some(Value::Array(history).to_string());
    row.updated_at = now;
    tx.rewrite_message(&row).await?;
    if let Some(conversation) = row.conversation_id {
        let preview: String = content.chars().take(500).collect();
        tx.set_conversation_preview(conversation, &row.wamid, Some(&preview), now)
            .await?;
    }
    Ok(())
}

/// An inbound `revoke`: the stored message's content (and any earlier versions of it) is
/// cleared; that it existed and was revoked stays.
pub async fn apply_revoke(
    tx: &mut dyn StoreTx,
    number: &RoutedNumber,
    message: &Value,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let revoke = message.get("revoke").unwrap_or(&Value::Null);
    let Some(original) = text(revoke, "original_message_id") else {
        return Ok(());
    };
    tx.lock_key(number.internal_id, &original).await?;
    let Some(mut row) = tx.find_message(number.internal_id, &original).await? else {
        tracing::debug!(wamid = %original, "a revoke names a message wagate does not hold; kept raw only");
        return Ok(());
    };
    if row.revoked_at.is_some() {
        return Ok(());
    }
    let old: Map<String, Value> = serde_json::from_str(&row.body).unwrap_or_default();
    let mut body = Map::new();
    for key in [
        "id",
        "from",
        "to",
        "timestamp",
        "context",
        "from_user_id",
        "to_user_id",
    ] {
        if let Some(value) = old.get(key) {
            body.insert(key.into(), value.clone());
        }
    }
    body.insert("type".into(), json!("revoke"));
    body.insert(
        "revoke".into(),
        json!({ "original_type": row.message_type, "revoked_at": iso(now) }),
    );
    row.message_type = "revoke".into();
    row.body = Value::Object(body).to_string();
    row.has_media = false;
    row.edits = None;
    row.revoked_at = Some(now);
    row.updated_at = now;
    tx.rewrite_message(&row).await?;
    // The conversation's preview of a revoked last message goes too.
    if let Some(conversation) = row.conversation_id {
        tx.set_conversation_preview(conversation, &row.wamid, None, now)
            .await?;
    }
    Ok(())
}
