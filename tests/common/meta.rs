//! What Meta sends: webhook envelopes and their `X-Hub-Signature-256`, computed here,
//! independently of wagate's crypto module.

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// The Meta app secret test apps verify webhooks with (the emulator's default).
pub const APP_SECRET: &str = "sandbox-app-secret";
pub const VERIFY_TOKEN: &str = "test-verify-token";

/// HMAC-SHA256, hex.
pub fn hmac_hex(key: &[u8], body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

pub fn sha256_hex(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

/// `X-Hub-Signature-256` of `body` under the test app secret, as Meta computes it.
pub fn signature(body: &[u8]) -> String {
    format!("sha256={}", hmac_hex(APP_SECRET.as_bytes(), body))
}

/// One change of `field` for WABA `waba`, in Meta's envelope.
pub fn envelope(waba: &str, field: &str, value: Value) -> Value {
    json!({"object": "whatsapp_business_account", "entry": [{"id": waba, "changes": [{"field": field, "value": value}]}]})
}

/// The `value` of a `messages` change: one inbound text from Ada (15551230001) to `pnid`.
pub fn text_value(pnid: &str, wamid: &str, text: &str) -> Value {
    json!({
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550000001", "phone_number_id": pnid},
        "contacts": [{"profile": {"name": "Ada"}, "wa_id": "15551230001"}],
        "messages": [{
            "from": "15551230001",
            "id": wamid,
            "timestamp": "1700000000",
            "type": "text",
            "text": {"body": text}
        }]
    })
}

/// POSTs `body` to `{base}/webhooks/whatsapp` signed with the app secret, as Meta does.
pub async fn post_webhook(http: &reqwest::Client, base: &str, body: &[u8]) -> reqwest::Response {
    http.post(format!("{base}/webhooks/whatsapp"))
        .header("content-type", "application/json")
        .header("x-hub-signature-256", signature(body))
        .body(body.to_vec())
        .send()
        .await
        .unwrap()
}
