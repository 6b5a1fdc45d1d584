//! Inbound messages as Meta delivers them (contract.md §12.3–12.4, §10.2): every message type,
//! phone or BSUID-only users, with sensible defaults for whatever the caller leaves out.

use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::control::{Built, ControlError};
use super::media;
use super::state::{digits, is_bsuid, now, wamid, World};
use super::webhooks::{change, envelope, metadata};

/// The user injected messages come from when the caller names none.
pub const DEFAULT_FROM: &str = "15551234567";

/// Every inbound `type` the emulator builds; `button_reply`, `list_reply`, `nfm_reply` and
/// `call_permission_reply` are accepted as shorthands for the matching `interactive` message.
pub const INBOUND_TYPES: [&str; 18] = [
    "text",
    "image",
    "audio",
    "video",
    "document",
    "sticker",
    "location",
    "contacts",
    "interactive",
    "button",
    "reaction",
    "order",
    "system",
    "unsupported",
    "request_welcome",
    "referral",
    // Coexistence numbers only: a user edits (within 15 minutes) or revokes (within 2 days) a
    // message they sent; the payload names it (`original_message_id`).
    "edit",
    "revoke",
];

const INTERACTIVE_SHORTHANDS: [&str; 4] = [
    "button_reply",
    "list_reply",
    "nfm_reply",
    "call_permission_reply",
];

/// A valid 1×1 PNG, so an injected image opens in any viewer.
const PLACEHOLDER_PNG: [u8; 67] = [
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4,
    0x89, 0x00, 0x00, 0x00, 0x0a, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0x00, 0x01, 0x00, 0x00,
    0x05, 0x00, 0x01, 0x0d, 0x0a, 0x2d, 0xb4, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae,
    0x42, 0x60, 0x82,
];

/// Who a message comes from: a phone number, a BSUID, or both.
pub struct User {
    /// Phone digits; `Some("")` keeps Meta's Nov-2025 "withheld" form (empty strings).
    pub wa_id: Option<String>,
    pub user_id: Option<String>,
    pub parent_user_id: Option<String>,
}

impl User {
    /// Reads `from` / `user_id` / `parent_user_id`; a request naming nobody comes from
    /// [`DEFAULT_FROM`].
    pub fn from_request(body: &Map<String, Value>) -> Result<Self, ControlError> {
        let wa_id = match body.get("from") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.is_empty() => Some(String::new()),
            Some(Value::String(s)) if !digits(s).is_empty() => Some(digits(s)),
            Some(other) => {
                return Err(ControlError::bad(format!(
                    "from must be a phone number, got {other}"
                )))
            }
        };
        let bsuid = |key: &str| -> Result<Option<String>, ControlError> {
            match body.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) if is_bsuid(s) => Ok(Some(s.clone())),
                Some(other) => Err(ControlError::bad(format!(
                    "{key} must be a business-scoped user ID like US.13491208655302741918, got {other}"
                ))),
            }
        };
        let user_id = bsuid("user_id")?;
        let parent_user_id = bsuid("parent_user_id")?;
        let wa_id = match (&wa_id, &user_id) {
            (None, None) => Some(DEFAULT_FROM.to_owned()),
            _ => wa_id,
        };
        Ok(Self {
            wa_id,
            user_id,
            parent_user_id,
        })
    }

    /// The key the emulator files this user under (phone first, as Meta's `wa_id`).
    pub fn key(&self) -> String {
        self.wa_id
            .clone()
            .filter(|w| !w.is_empty())
            .or_else(|| self.user_id.clone())
            .unwrap_or_default()
    }

    /// A `contacts[]` item: `profile`, then `wa_id` / `user_id` / `parent_user_id` when known.
    pub fn contact(&self, body: &Map<String, Value>) -> Value {
        let mut profile = json!({
            "name": body.get("profile_name").and_then(Value::as_str).unwrap_or("Sandbox User"),
        });
        for key in ["username", "country_code"] {
            if let Some(value) = body.get(key).filter(|v| v.is_string()) {
                profile[key] = value.clone();
            }
        }
        let mut contact = json!({ "profile": profile });
        if let Some(wa_id) = &self.wa_id {
            contact["wa_id"] = json!(wa_id);
        }
        if let Some(user_id) = &self.user_id {
            contact["user_id"] = json!(user_id);
        }
        if let Some(parent) = &self.parent_user_id {
            contact["parent_user_id"] = json!(parent);
        }
        if let Some(hash) = body.get("identity_key_hash") {
            contact["identity_key_hash"] = hash.clone();
        }
        contact
    }
}

/// `timestamp` as Meta writes it: a string of Unix seconds.
pub fn timestamp(body: &Map<String, Value>) -> String {
    match body.get("timestamp") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => now().to_string(),
    }
}

/// Builds the `messages` webhook for `POST /_sandbox/inbound`.
pub fn build(world: &mut World, host: &str, body: &Value) -> Result<Built, ControlError> {
    let body = body
        .as_object()
        .ok_or_else(|| ControlError::bad("the body must be a JSON object"))?;
    let pnid = body
        .get("phone_number_id")
        .and_then(Value::as_str)
        .ok_or_else(|| ControlError::bad("phone_number_id is required"))?;
    let number = world
        .numbers
        .get(pnid)
        .ok_or_else(|| ControlError::not_found(format!("unknown phone_number_id {pnid}")))?;
    let (waba, meta, business) = (
        number.info.business_account_id.clone(),
        metadata(number),
        number.display_digits(),
    );
    let user = User::from_request(body)?;
    let requested = body.get("type").and_then(Value::as_str).unwrap_or("text");
    let (kind, shorthand) = if INTERACTIVE_SHORTHANDS.contains(&requested) {
        ("interactive", Some(requested))
    } else {
        (requested, None)
    };
    if !INBOUND_TYPES.contains(&kind) {
        return Err(ControlError::bad(format!(
            "type must be one of {INBOUND_TYPES:?} or {INTERACTIVE_SHORTHANDS:?}, got \"{requested}\""
        )));
    }
    let user_key = user.key();
    let given = body.get(kind).filter(|v| !v.is_null());
    let last_sent = world
        .last_sent_to(pnid, &user_key)
        .unwrap_or_else(|| wamid(&business));

    let mut message = Map::new();
    if let Some(wa_id) = &user.wa_id {
        message.insert("from".into(), json!(wa_id));
    }
    if let Some(user_id) = &user.user_id {
        message.insert("from_user_id".into(), json!(user_id));
    }
    if let Some(parent) = &user.parent_user_id {
        message.insert("from_parent_user_id".into(), json!(parent));
    }
    let id = body
        .get("id")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| wamid(&user_key));
    message.insert("id".into(), json!(id));
    message.insert("timestamp".into(), json!(timestamp(body)));
    // A Click-to-WhatsApp `referral` message is a text message carrying a referral object.
    let wire_kind = if kind == "referral" { "text" } else { kind };
    message.insert("type".into(), json!(wire_kind));

    match kind {
        "image" | "audio" | "video" | "document" | "sticker" => {
            let payload = media_payload(world, pnid, host, kind, given)?;
            message.insert(kind.into(), payload);
        }
        "interactive" => {
            let payload = interactive_payload(shorthand, given)?;
            record_call_permission(world, pnid, &user_key, &payload);
            message.insert(kind.into(), payload);
        }
        "request_welcome" => {}
        "edit" | "revoke" => {
            let payload = given
                .filter(|p| {
                    p.get("original_message_id")
                        .and_then(Value::as_str)
                        .is_some()
                })
                .ok_or_else(|| {
                    ControlError::bad(format!(
                        "{kind} needs {{\"{kind}\": {{\"original_message_id\": …}}}}"
                    ))
                })?;
            message.insert(kind.into(), payload.clone());
        }
        "referral" => {
            message.insert(
                "text".into(),
                fill(json!({ "body": "Hi! I saw your ad." }), body.get("text")),
            );
            message.insert("referral".into(), fill(default_referral(), given));
        }
        "unsupported" => {
            message.insert(
                "unsupported".into(),
                fill(json!({ "type": "unknown" }), given),
            );
            message.insert(
                "errors".into(),
                json!([{
                    "code": 131051,
                    "title": "Message type unknown",
                    "message": "Message type unknown",
                    "error_data": { "details": "Message type is currently not supported." },
                }]),
            );
        }
        "system" => {
            message.insert("system".into(), system_payload(body, &user, given));
        }
        "contacts" => {
            message.insert(
                "contacts".into(),
                given.cloned().unwrap_or_else(default_contacts),
            );
        }
        _ => {
            let defaults = match kind {
                "text" => json!({ "body": "Hello from the sandbox" }),
                "location" => json!({
                    "latitude": 37.4847, "longitude": -122.1477,
                    "name": "Meta Headquarters", "address": "1 Hacker Way, Menlo Park, CA 94025",
                }),
                "button" => json!({ "payload": "sandbox-payload", "text": "Yes" }),
                "reaction" => json!({ "message_id": last_sent, "emoji": "\u{1f44d}" }),
                _ => json!({
                    "catalog_id": "300000000000001",
                    "text": "Please deliver to the front desk",
                    "product_items": [ { "product_retailer_id": "sku-1", "quantity": 1, "item_price": 9.99, "currency": "USD" } ],
                }),
            };
            message.insert(kind.into(), fill(defaults, given));
        }
    }
    // Groups API: a message a participant sent to a group names it.
    if let Some(group) = body.get("group_id").and_then(Value::as_str) {
        message.insert("group_id".into(), json!(group));
    }
    if let Some(context) = body.get("context").filter(|c| c.is_object()) {
        message.insert("context".into(), context.clone());
    } else if kind == "button" {
        // Quick-reply buttons always quote the template they answer.
        message.insert(
            "context".into(),
            json!({ "from": business, "id": last_sent }),
        );
    }
    if kind != "referral" {
        if let Some(referral) = body.get("referral").filter(|r| r.is_object()) {
            message.insert("referral".into(), referral.clone());
        }
    }

    let value = json!({
        "messaging_product": "whatsapp",
        "metadata": meta,
        "contacts": [user.contact(body)],
        "messages": [Value::Object(message)],
    });
    Ok(Built {
        waba: Some(waba.clone()),
        envelope: envelope(&waba, vec![change("messages", value)]),
    })
}

/// Defaults overlaid with what the caller gave (top-level keys of an object).
pub fn fill(defaults: Value, given: Option<&Value>) -> Value {
    match (defaults, given) {
        (Value::Object(mut base), Some(Value::Object(given))) => {
            for (key, value) in given {
                base.insert(key.clone(), value.clone());
            }
            Value::Object(base)
        }
        (_, Some(given)) => given.clone(),
        (defaults, None) => defaults,
    }
}

/// Media messages point at a real media object the gateway can fetch: the caller's (by `id`)
/// or a placeholder stored now for this number.
fn media_payload(
    world: &mut World,
    pnid: &str,
    host: &str,
    kind: &str,
    given: Option<&Value>,
) -> Result<Value, ControlError> {
    let given_id = given.and_then(|g| g.get("id")).and_then(Value::as_str);
    let given_mime = given
        .and_then(|g| g.get("mime_type"))
        .and_then(Value::as_str);
    let object = match given_id.and_then(|id| world.media.get(id)) {
        Some(existing) => existing.clone(),
        None if given_id.is_some() => {
            return Err(ControlError::bad(format!(
                "{kind}.id names no uploaded media; omit it to get a placeholder"
            )))
        }
        None => {
            let mime = given_mime.unwrap_or(match kind {
                "image" => "image/png",
                "audio" => "audio/ogg; codecs=opus",
                "video" => "video/mp4",
                "document" => "application/pdf",
                _ => "image/webp",
            });
            media::insert(world, pnid, mime, placeholder_bytes(mime))
        }
    };
    let mut payload = json!({
        "mime_type": object.mime_type,
        "sha256": object.sha256,
        "id": object.id,
        "url": media::download_url(host, &object.id),
    });
    match kind {
        "audio" => payload["voice"] = json!(true),
        "document" => payload["filename"] = json!("sandbox.pdf"),
        "sticker" => payload["animated"] = json!(false),
        _ => {}
    }
    Ok(fill(payload, given))
}

/// Small files with the right magic bytes for their type.
fn placeholder_bytes(mime: &str) -> Bytes {
    let base = mime.split(';').next().unwrap_or_default().trim();
    let bytes: Vec<u8> = match base {
        "image/png" => PLACEHOLDER_PNG.to_vec(),
        "image/jpeg" => [
            &[0xff, 0xd8, 0xff, 0xe0][..],
            b"wagate sandbox placeholder",
            &[0xff, 0xd9],
        ]
        .concat(),
        "image/webp" => [&b"RIFF\x1a\x00\x00\x00WEBPVP8 "[..], b"wagate sandbox"].concat(),
        "application/pdf" => b"%PDF-1.4\n% wagate sandbox placeholder\n%%EOF\n".to_vec(),
        "audio/ogg" => [&b"OggS\x00\x02"[..], b"wagate sandbox placeholder"].concat(),
        "video/mp4" | "audio/mp4" => [
            &b"\x00\x00\x00\x18ftypmp42"[..],
            b"wagate sandbox placeholder",
        ]
        .concat(),
        _ => b"wagate sandbox placeholder\n".to_vec(),
    };
    Bytes::from(bytes)
}

fn interactive_payload(
    shorthand: Option<&str>,
    given: Option<&Value>,
) -> Result<Value, ControlError> {
    let sub = given
        .and_then(|g| g.get("type"))
        .and_then(Value::as_str)
        .or(shorthand)
        .unwrap_or("button_reply");
    let defaults = match sub {
        "button_reply" => json!({ "id": "yes", "title": "Yes" }),
        "list_reply" => {
            json!({ "id": "row_1", "title": "First row", "description": "The first row of the list" })
        }
        "nfm_reply" => json!({
            "name": "flow",
            "body": "Sent",
            "response_json": "{\"flow_token\":\"sandbox-flow-token\",\"answer\":\"yes\"}",
        }),
        "call_permission_reply" => json!({
            "response": "accept",
            "is_permanent": false,
            "expiration_timestamp": now() + 7 * 24 * 3600,
            "response_source": "user_action",
        }),
        other => {
            return Err(ControlError::bad(format!(
                "interactive.type must be one of {INTERACTIVE_SHORTHANDS:?}, got \"{other}\""
            )))
        }
    };
    let inner = fill(defaults, given.and_then(|g| g.get(sub)));
    Ok(json!({ "type": sub, sub: inner }))
}

/// An accepted call permission request lets `call_permissions` report `temporary`.
fn record_call_permission(world: &mut World, pnid: &str, user: &str, payload: &Value) {
    let reply = &payload["call_permission_reply"];
    if reply["response"] != "accept" {
        return;
    }
    let expiry = if reply["is_permanent"] == true {
        i64::MAX
    } else {
        reply["expiration_timestamp"]
            .as_i64()
            .unwrap_or(now() + 7 * 24 * 3600)
    };
    if let Some(number) = world.numbers.get_mut(pnid) {
        number.call_permissions.insert(user.to_owned(), expiry);
    }
}

/// `system` messages: a changed number (the default) or a rotated BSUID.
fn system_payload(body: &Map<String, Value>, user: &User, given: Option<&Value>) -> Value {
    let name = body
        .get("profile_name")
        .and_then(Value::as_str)
        .unwrap_or("Sandbox User");
    let kind = given
        .and_then(|g| g.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("user_changed_number");
    let defaults = if kind == "user_changed_user_id" {
        let old = user.user_id.clone().unwrap_or_else(super::state::bsuid);
        let new = super::state::bsuid();
        json!({ "body": format!("User {name} changed from {old} to {new}"), "user_id": new, "type": kind })
    } else {
        let old = user
            .wa_id
            .clone()
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| DEFAULT_FROM.into());
        let new = "15557654321";
        json!({
            "body": format!("User {name} changed from {old} to {new}"),
            "wa_id": new,
            "type": kind,
        })
    };
    fill(defaults, given)
}

fn default_contacts() -> Value {
    json!([{
        "name": { "formatted_name": "Jane Doe", "first_name": "Jane", "last_name": "Doe" },
        "phones": [ { "phone": "+1 555-010-0002", "wa_id": "15550100002", "type": "CELL" } ],
        "emails": [ { "email": "jane@example.com", "type": "WORK" } ],
    }])
}

fn default_referral() -> Value {
    json!({
        "source_url": "https://fb.me/sandbox-ad",
        "source_id": "120000000000001",
        "source_type": "ad",
        "body": "Chat with us on WhatsApp",
        "headline": "wagate sandbox ad",
        "media_type": "image",
        "image_url": "https://example.com/ad.png",
        "ctwa_clid": "sandbox-ctwa-clid",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_overrides_top_level_keys() {
        let out = fill(json!({"a": 1, "b": 2}), Some(&json!({"b": 3})));
        assert_eq!(out, json!({"a": 1, "b": 3}));
        assert_eq!(fill(json!({"a": 1}), None), json!({"a": 1}));
    }

    #[test]
    fn users_default_to_a_phone() {
        let body = json!({}).as_object().cloned().unwrap_or_default();
        let user = User::from_request(&body).expect("valid");
        assert_eq!(user.wa_id.as_deref(), Some(DEFAULT_FROM));
        let body = json!({"user_id": "US.123"})
            .as_object()
            .cloned()
            .unwrap_or_default();
        let user = User::from_request(&body).expect("valid");
        assert!(user.wa_id.is_none());
        assert_eq!(user.key(), "US.123");
    }
}
