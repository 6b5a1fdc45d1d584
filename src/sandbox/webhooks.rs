//! Meta's webhook envelopes and their signed delivery.
//!
//! Envelope: `{"object":"whatsapp_business_account","entry":[{"id":<WABA>,"changes":[{"field",
//! "value"}]}]}` (contract.md §12.3). Delivery signs the exact bytes sent with
//! `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(app secret, body)>`, as Meta does.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};

use serde::Serialize;
use serde_json::{json, Value};

use super::state::{now, NumberState, SentMessage};
use super::Shared;
use crate::crypto::hub_signature;

/// Deliveries remembered by `GET /_sandbox/deliveries`.
const DELIVERY_LOG_CAPACITY: usize = 200;

/// The outcome of one webhook POST.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Delivery {
    /// HTTP status the webhook target answered; `None` when nothing was sent or it failed.
    pub webhook_status: Option<u16>,
    /// Why nothing was sent, or the transport error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_error: Option<String>,
}

/// How a delivery signs its body.
#[derive(Debug, Clone)]
pub enum Signature {
    /// HMAC with the app secret, as Meta does.
    AppSecret,
    /// A fixed header value (tests of signature rejection).
    Fixed(String),
    /// No `X-Hub-Signature-256` header at all.
    Omit,
}

#[derive(Default)]
pub struct DeliveryLog {
    entries: Mutex<VecDeque<Value>>,
}

impl DeliveryLog {
    fn push(&self, entry: Value) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= DELIVERY_LOG_CAPACITY {
            entries.pop_front();
        }
        entries.push_back(entry);
    }

    pub fn list(&self) -> Vec<Value> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.iter().cloned().collect()
    }

    pub fn clear(&self) {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

/// `metadata` of a `messages`-family change: Meta writes the display number as digits.
pub fn metadata(number: &NumberState) -> Value {
    json!({
        "display_phone_number": number.display_digits(),
        "phone_number_id": number.info.phone_number_id,
    })
}

pub fn change(field: &str, value: Value) -> Value {
    json!({ "field": field, "value": value })
}

/// An envelope with one entry for `waba`.
pub fn envelope(waba: &str, changes: Vec<Value>) -> Value {
    json!({
        "object": "whatsapp_business_account",
        "entry": [ { "id": waba, "changes": changes } ],
    })
}

/// Like [`envelope`] with `entry[].time`, which Meta adds on account-level fields (username
/// updates, template reviews).
pub fn timed_envelope(waba: &str, changes: Vec<Value>) -> Value {
    json!({
        "object": "whatsapp_business_account",
        "entry": [ { "id": waba, "time": now(), "changes": changes } ],
    })
}

/// Merges envelopes into one, as Meta batches: entries of the same WABA share one entry (their
/// changes concatenated in order), other WABAs get their own entries.
pub fn merge(envelopes: Vec<Value>) -> Result<Value, String> {
    let mut entries: Vec<Value> = Vec::new();
    for (index, envelope) in envelopes.into_iter().enumerate() {
        let Some(list) = envelope.get("entry").and_then(Value::as_array) else {
            return Err(format!("envelopes[{index}] has no entry array"));
        };
        for entry in list {
            let id = entry.get("id").cloned().unwrap_or(Value::Null);
            let changes = entry
                .get("changes")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            match entries.iter_mut().find(|e| e["id"] == id) {
                Some(existing) => {
                    if let Some(merged) = existing["changes"].as_array_mut() {
                        merged.extend(changes);
                    }
                }
                None => entries.push(entry.clone()),
            }
        }
    }
    Ok(json!({ "object": "whatsapp_business_account", "entry": entries }))
}

/// The `pricing` and `conversation` Meta attaches to `sent` and `delivered` (contract.md §12.5).
/// Free-form messages answer a user inside the service window, so they are free; templates
/// are billed in their category.
pub fn billing(message: &SentMessage, status: &str) -> (Value, Value) {
    let free = message.category == "service";
    let pricing = json!({
        "billable": !free,
        "pricing_model": "PMP",
        "type": if free { "free_customer_service" } else { "regular" },
        "category": message.category,
    });
    let mut conversation = json!({
        "id": message.conversation_id,
        "origin": { "type": message.category },
    });
    if status == "sent" {
        conversation["expiration_timestamp"] = json!((message.timestamp + 24 * 3600).to_string());
    }
    (pricing, conversation)
}

/// One `statuses[]` item for an accepted message.
pub fn status_object(message: &SentMessage, status: &str, errors: Option<Value>) -> Value {
    let mut object = json!({
        "id": message.id,
        "status": status,
        "timestamp": now().to_string(),
    });
    if let Some(wa_id) = message.wa_id.as_deref().filter(|w| !w.is_empty()) {
        object["recipient_id"] = json!(wa_id);
    }
    if let Some(user_id) = &message.recipient {
        object["recipient_user_id"] = json!(user_id);
    }
    if let Some(data) = message.request.get("biz_opaque_callback_data") {
        object["biz_opaque_callback_data"] = data.clone();
    }
    if matches!(status, "sent" | "delivered") {
        let (pricing, conversation) = billing(message, status);
        object["pricing"] = pricing;
        object["conversation"] = conversation;
    }
    if let Some(errors) = errors {
        object["errors"] = errors;
    }
    object
}

impl Shared {
    /// Where webhooks of `waba` go: its `override_callback_uri` if one was subscribed, else
    /// the global webhook URL. `Err` explains why nothing can be delivered.
    fn webhook_target(&self, waba: Option<&str>) -> Result<String, String> {
        if let Some(waba) = waba {
            let world = self.world();
            if let Some(state) = world.wabas.get(waba) {
                if !state.subscribed {
                    return Err(format!(
                        "no app is subscribed to WABA {waba} (POST /{{version}}/{waba}/subscribed_apps)"
                    ));
                }
                if let Some(uri) = &state.override_callback_uri {
                    return Ok(uri.clone());
                }
            }
        }
        self.webhook_url()
            .ok_or_else(|| "no webhook URL is configured".to_owned())
    }

    /// Signs and POSTs `envelope` to the target of `waba`.
    pub async fn deliver(&self, waba: Option<&str>, envelope: &Value) -> Delivery {
        match self.webhook_target(waba) {
            Ok(url) => self.post(&url, envelope, &Signature::AppSecret).await,
            Err(reason) => {
                tracing::debug!(%reason, "sandbox: webhook not delivered");
                Delivery {
                    webhook_status: None,
                    webhook_error: Some(reason),
                }
            }
        }
    }

    /// Like [`Shared::deliver`], tried again as Meta does when the receiver is unreachable or
    /// answers 5xx (up to 8 tries over about 12 s, the target looked up afresh each time), so
    /// an instance killed mid-delivery loses no status when another takes its place.
    pub async fn deliver_with_retries(&self, waba: Option<&str>, envelope: &Value) -> Delivery {
        let mut wait = std::time::Duration::from_millis(200);
        let mut delivery = self.deliver(waba, envelope).await;
        for _ in 1..8 {
            let failed = delivery.webhook_status.is_none_or(|s| s >= 500);
            if !failed || self.webhook_target(waba).is_err() {
                break;
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(std::time::Duration::from_secs(3));
            delivery = self.deliver(waba, envelope).await;
        }
        delivery
    }

    /// Like [`Shared::deliver`] with an explicit signature mode.
    pub async fn deliver_signed(
        &self,
        waba: Option<&str>,
        envelope: &Value,
        signature: &Signature,
    ) -> Delivery {
        match self.webhook_target(waba) {
            Ok(url) => self.post(&url, envelope, signature).await,
            Err(reason) => Delivery {
                webhook_status: None,
                webhook_error: Some(reason),
            },
        }
    }

    async fn post(&self, url: &str, envelope: &Value, signature: &Signature) -> Delivery {
        // Serialize once: the signature must cover exactly the bytes on the wire.
        let body = serde_json::to_vec(envelope).unwrap_or_default();
        let mut request = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json");
        match signature {
            Signature::AppSecret => {
                request = request.header(
                    "X-Hub-Signature-256",
                    hub_signature(self.app_secret.as_bytes(), &body),
                );
            }
            Signature::Fixed(value) => request = request.header("X-Hub-Signature-256", value),
            Signature::Omit => {}
        }
        let delivery = match request.body(body).send().await {
            Ok(response) => Delivery {
                webhook_status: Some(response.status().as_u16()),
                webhook_error: None,
            },
            Err(error) => {
                tracing::warn!(%url, %error, "sandbox: webhook delivery failed");
                Delivery {
                    webhook_status: None,
                    webhook_error: Some(error.to_string()),
                }
            }
        };
        self.deliveries.push(json!({
            "at": crate::time::iso(chrono::Utc::now()),
            "url": url,
            "webhook_status": delivery.webhook_status,
            "webhook_error": delivery.webhook_error,
            "envelope": envelope,
        }));
        delivery
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_groups_entries_by_waba() {
        let a = envelope("1", vec![change("messages", json!({"n": 1}))]);
        let b = envelope("2", vec![change("messages", json!({"n": 2}))]);
        let c = envelope("1", vec![change("calls", json!({"n": 3}))]);
        let merged = merge(vec![a, b, c]).expect("valid envelopes");
        let entries = merged["entry"].as_array().expect("entries");
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0]["changes"].as_array().map(Vec::len), Some(2));
        assert_eq!(entries[0]["changes"][1]["field"], "calls");
        assert!(merge(vec![json!({})]).is_err());
    }
}
