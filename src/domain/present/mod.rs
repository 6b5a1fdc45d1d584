//! Stored rows as Kapso serves them (contract §4–7), for the stored-data routes and the Kapso-format
//! webhook events alike, shaped so every object validates in both
//! official SDKs (sdk-clients §3.1): string ids and timestamps, Python's type list, media objects
//! with an `id`, inbound-style `interactive`, a string `kapso.content`.

use serde_json::{json, Map, Value};

pub mod fields;

use crate::store::{CallRow, ContactRow, ConversationRow, MessageRow};
use crate::time::iso;
use fields::KapsoFields;

/// Message types the Python SDK accepts; anything else is served as `unknown`.
const SDK_TYPES: [&str; 14] = [
    "text",
    "image",
    "video",
    "audio",
    "document",
    "sticker",
    "location",
    "contacts",
    "interactive",
    "template",
    "reaction",
    "button",
    "order",
    "unknown",
];
const REPLY_TYPES: [&str; 3] = ["button_reply", "list_reply", "nfm_reply"];

/// A media message's file in the vault, as the message presents it.
#[derive(Debug, Clone, Default)]
pub struct MediaView {
    /// The stable wagate URL, signed for keyless use; only for a kept file.
    pub url: Option<String>,
    /// `pending`, `stored`, `failed` or `expired` (`media_data.status`).
    pub status: &'static str,
    /// Why a download failed (`media_data.error`).
    pub error: Option<String>,
    pub content_type: Option<String>,
    pub filename: Option<String>,
    pub byte_size: Option<i64>,
}

/// A message's status as lists serve it. Kapso calls an inbound message `received` (contract
/// §15.2), and so do wagate's rows and events; the official Python SDK's status enum
/// (`pending|sent|delivered|read|failed`) rejects it, so lists say `delivered`.
pub fn listed_status(status: &str) -> &str {
    if status == "received" {
        "delivered"
    } else {
        status
    }
}

fn contact_name(contact: Option<&ContactRow>) -> Option<String> {
    contact.and_then(|c| c.display_name.clone().or_else(|| c.profile_name.clone()))
}

fn text_of(payload: &Value, key: &str) -> Option<String> {
    payload.get(key).and_then(Value::as_str).map(str::to_owned)
}

fn metadata(raw: &str) -> Value {
    serde_json::from_str(raw).unwrap_or_else(|_| json!({}))
}

/// A stored message; `phone_number_id` is Meta's id of the business number.
pub fn message(
    row: &MessageRow,
    contact: Option<&ContactRow>,
    media: Option<&MediaView>,
    fields: &KapsoFields,
) -> Value {
    let body: Value = serde_json::from_str(&row.body).unwrap_or_default();
    let has_kapso = fields.wants_block(true);
    // `kapso.content` renders the body as stored, before the SDK-shaped changes below.
    let content = has_kapso.then(|| crate::domain::message_content::content_of_body(row, &body));
    let mut object = match body {
        Value::Object(object) => object,
        _ => Map::new(),
    };
    object.insert("id".into(), json!(row.wamid));
    object.insert("timestamp".into(), json!(row.meta_timestamp.to_string()));
    let original_type = row.message_type.as_str();
    let mut type_data = Map::new();
    if !SDK_TYPES.contains(&original_type) {
        object.insert("type".into(), json!("unknown"));
        type_data.insert("original_type".into(), json!(original_type));
    } else {
        object.insert("type".into(), json!(original_type));
    }
    if let Some(Value::Object(payload)) = object.get_mut(original_type) {
        if crate::domain::message_content::is_media(original_type) && !payload.contains_key("id") {
            // Sent by link: the SDK requires an id; the link stays beside it.
            payload.insert("id".into(), json!(""));
        }
        if original_type == "interactive" {
            let reply = payload
                .get("type")
                .and_then(Value::as_str)
                .is_some_and(|t| REPLY_TYPES.contains(&t));
            if !reply {
                // An outbound interactive message (button, list, cta_url, flow…): the SDK only knows
                // reply shapes, so the send payload moves to message_type_data.
                type_data.insert("interactive".into(), Value::Object(payload.clone()));
                payload.remove("type");
            }
        }
        if original_type == "order" {
            if let Some(text) = payload.get("text").cloned() {
                payload.insert("order_text".into(), text);
            }
        }
    }
    if let Some(content) = content {
        let kapso = message_kapso(row, &object, contact, media, type_data, content, fields);
        object.insert("kapso".into(), Value::Object(kapso));
    }
    Value::Object(object)
}

fn message_kapso(
    row: &MessageRow,
    object: &Map<String, Value>,
    contact: Option<&ContactRow>,
    media: Option<&MediaView>,
    mut type_data: Map<String, Value>,
    content: String,
    fields: &KapsoFields,
) -> Map<String, Value> {
    let kind = row.message_type.as_str();
    let payload = object.get(kind).cloned().unwrap_or(Value::Null);
    if let Value::Object(p) = &payload {
        for key in [
            "caption",
            "filename",
            "mime_type",
            "animated",
            "voice",
            "latitude",
            "longitude",
            "name",
            "address",
            "catalog_id",
            "product_items",
        ] {
            if let Some(v) = p.get(key) {
                type_data.entry(key.to_owned()).or_insert(v.clone());
            }
        }
    }
    let nfm = object
        .get("interactive")
        .and_then(|i| i.get("nfm_reply"))
        .cloned();
    let flow_response: Option<Value> = nfm
        .as_ref()
        .and_then(|n| n.get("response_json"))
        .and_then(Value::as_str)
        .and_then(|s| serde_json::from_str(s).ok());
    // Kapso's `has_media`: a kept file exists. Until then (or when it will never be kept)
    // `media_data.status` says where it stands, and there is no URL to break.
    let media_url = media.and_then(|m| m.url.clone());
    let media_data = row.has_media.then(|| {
        json!({
            "url": media_url,
            "filename": media.and_then(|m| m.filename.clone()).or_else(|| text_of(&payload, "filename")),
            "content_type": media.and_then(|m| m.content_type.clone()).or_else(|| text_of(&payload, "mime_type")),
            "byte_size": media.and_then(|m| m.byte_size),
            "status": media.map(|m| m.status),
            "error": media.and_then(|m| m.error.clone()),
        })
    });
    let edits: Option<Value> = row
        .edits
        .as_deref()
        .and_then(|e| serde_json::from_str(e).ok());
    let all: [(&str, Value); 22] = [
        ("direction", json!(row.direction)),
        // `cloud_api`, `business_app` (coexistence echo) or `history` (imported past chats).
        ("origin", json!(row.origin)),
        ("group_id", json!(row.group_id)),
        ("edit_history", json!(edits)),
        ("revoked_at", json!(row.revoked_at.map(iso))),
        ("status", json!(listed_status(&row.status))),
        ("processing_status", json!(row.processing_status)),
        (
            "phone_number",
            json!(contact
                .and_then(|c| c.wa_id.as_ref())
                .map(|w| format!("+{w}"))),
        ),
        ("has_media", json!(media_url.is_some())),
        ("media_data", json!(media_data)),
        ("media_url", json!(media_url)),
        ("whatsapp_conversation_id", json!(row.conversation_id)),
        ("contact_name", json!(contact_name(contact))),
        (
            "message_type_data",
            if type_data.is_empty() {
                Value::Null
            } else {
                Value::Object(type_data)
            },
        ),
        ("content", json!(content)),
        ("flow_response", json!(flow_response)),
        (
            "flow_token",
            json!(flow_response.as_ref().and_then(|f| f.get("flow_token"))),
        ),
        ("flow_name", json!(nfm.as_ref().and_then(|n| n.get("name")))),
        (
            "order_text",
            json!(object.get("order").and_then(|o| o.get("text"))),
        ),
        (
            "business_scoped_user_id",
            json!(contact.and_then(|c| c.business_scoped_user_id.clone())),
        ),
        (
            "parent_business_scoped_user_id",
            json!(contact.and_then(|c| c.parent_business_scoped_user_id.clone())),
        ),
        ("username", json!(contact.and_then(|c| c.username.clone()))),
    ];
    all.into_iter()
        .filter(|(name, _)| fields.includes(name, true))
        .map(|(name, value)| (name.to_owned(), value))
        .collect()
}

pub fn conversation(
    row: &ConversationRow,
    contact: Option<&ContactRow>,
    phone_number_id: &str,
    fields: &KapsoFields,
) -> Value {
    let mut object = json!({
        "id": row.id,
        "phone_number": contact.and_then(|c| c.wa_id.clone()),
        "business_scoped_user_id": contact.and_then(|c| c.business_scoped_user_id.clone()),
        "parent_business_scoped_user_id": contact.and_then(|c| c.parent_business_scoped_user_id.clone()),
        "username": contact.and_then(|c| c.username.clone()),
        "status": row.status,
        "last_active_at": iso(row.last_active_at),
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
        "ended_at": row.ended_at.map(iso),
        "whatsapp_config_id": row.phone_number_internal_id,
        "phone_number_id": phone_number_id,
        "contact_id": row.contact_id,
        "metadata": metadata(&row.metadata),
    });
    if fields.wants_block(false) {
        let all: [(&str, Value); 8] = [
            ("contact_name", json!(contact_name(contact))),
            ("messages_count", json!(row.messages_count)),
            ("last_message_id", json!(row.last_message_id)),
            ("last_message_type", json!(row.last_message_type)),
            ("last_message_timestamp", json!(row.last_message_timestamp)),
            ("last_message_text", json!(row.last_message_text)),
            ("last_inbound_at", json!(row.last_inbound_at.map(iso))),
            ("last_outbound_at", json!(row.last_outbound_at.map(iso))),
        ];
        let kapso: Map<String, Value> = all
            .into_iter()
            .filter(|(name, _)| fields.includes(name, false))
            .map(|(name, value)| (name.to_owned(), value))
            .collect();
        object["kapso"] = Value::Object(kapso);
    }
    object
}

pub fn contact(row: &ContactRow, phone_number_id: &str, fields: &KapsoFields) -> Value {
    let mut object = json!({
        "id": row.id,
        "wa_id": row.wa_id,
        "profile_name": row.profile_name,
        "display_name": row.display_name,
        "whatsapp_user_id": row.business_scoped_user_id,
        "business_scoped_user_id": row.business_scoped_user_id,
        "parent_business_scoped_user_id": row.parent_business_scoped_user_id,
        "username": row.username,
        "customer_id": row.customer_id,
        "phone_number_id": phone_number_id,
        "metadata": metadata(&row.metadata),
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
    });
    if fields.wants_block(false) && fields.includes("contact_name", false) {
        object["kapso"] = json!({ "contact_name": contact_name(Some(row)) });
    } else if fields.wants_block(false) {
        object["kapso"] = json!({});
    }
    object
}

pub fn call(row: &CallRow, contact: Option<&ContactRow>, phone_number_id: &str) -> Value {
    json!({
        "id": row.id,
        "call_id": row.call_id,
        "direction": row.direction,
        "status": row.status,
        "duration_seconds": row.duration_seconds,
        "started_at": iso(row.started_at),
        "session_started_at": row.session_started_at.map(iso),
        "ended_at": row.ended_at.map(iso),
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
        "from": row.from_number,
        "to": row.to_number,
        "user_wa_id": contact.and_then(|c| c.wa_id.clone()),
        "business_scoped_user_id": contact.and_then(|c| c.business_scoped_user_id.clone()),
        "whatsapp_contact_id": row.contact_id,
        "whatsapp_conversation_id": row.conversation_id,
        "whatsapp_config_id": row.phone_number_internal_id,
        "project_id": row.project_id,
        "phone_number_id": phone_number_id,
        "whatsapp_contact": contact.map(|c| json!({"id": c.id, "wa_id": c.wa_id, "profile_name": c.profile_name, "display_name": c.display_name})),
    })
}
