//! `POST /_sandbox/events/{field}`: the webhooks of Meta's 2025–26 platform changes, built from
//! Meta's documented samples around the value the caller gives, for one number:
//!
//! - number-level fields (`history`, `smb_app_state_sync`, the four `group_*` fields) get the
//!   number's `metadata`, as Meta sends them;
//! - WABA-level fields (`account_update`, `phone_number_quality_update`, the template fields)
//!   name the number by display number where Meta does, and move the emulator's own state:
//!   a quality update changes the limit and throughput Graph reports for the number, an
//!   `account_update` `VERIFIED_ACCOUNT` its official-business-account badge.
//!
//! Body: `{"phone_number_id", "value": {…}, "deliver"?}`; the answer is the usual injection
//! report (the envelope and, when delivered, wagate's answer).

use serde_json::{json, Value};

use super::control::{Built, ControlError};
use super::state::World;
use super::webhooks::{change, envelope, metadata};

/// Fields Meta sends with the number's `metadata`.
const NUMBER_FIELDS: [&str; 6] = [
    "history",
    "smb_app_state_sync",
    "group_lifecycle_update",
    "group_participants_update",
    "group_settings_update",
    "group_status_update",
];

/// Fields Meta sends for the whole business account.
const WABA_FIELDS: [&str; 5] = [
    "account_update",
    "phone_number_quality_update",
    "message_template_status_update",
    "message_template_quality_update",
    "template_category_update",
];

pub fn build(world: &mut World, field: &str, body: &Value) -> Result<Built, ControlError> {
    let number_level = NUMBER_FIELDS.contains(&field);
    if !number_level && !WABA_FIELDS.contains(&field) {
        return Err(ControlError::not_found(format!(
            "no sample for field {field}; known: {NUMBER_FIELDS:?} {WABA_FIELDS:?}"
        )));
    }
    let pnid = body
        .get("phone_number_id")
        .and_then(Value::as_str)
        .ok_or_else(|| ControlError::bad("phone_number_id is required"))?;
    let mut value = match body.get("value") {
        Some(Value::Object(value)) => value.clone(),
        None => serde_json::Map::new(),
        Some(_) => return Err(ControlError::bad("value must be an object")),
    };
    let number = world
        .numbers
        .get_mut(pnid)
        .ok_or_else(|| ControlError::not_found(format!("unknown phone_number_id {pnid}")))?;
    let display = super::state::digits(&number.info.display_phone_number);
    if number_level {
        value.insert("messaging_product".into(), json!("whatsapp"));
        value.insert("metadata".into(), metadata(number));
    }
    match field {
        "phone_number_quality_update" => {
            value
                .entry("display_phone_number")
                .or_insert_with(|| json!(display));
            let event = value.get("event").and_then(Value::as_str).unwrap_or("");
            let limit = value
                .get("max_daily_conversations_per_business")
                .or_else(|| value.get("current_limit"))
                .and_then(Value::as_str)
                .map(str::to_owned);
            if event == "THROUGHPUT_UPGRADE" || limit.as_deref() == Some("TIER_UNLIMITED") {
                number.throughput_level = "HIGH".into();
            } else if let Some(limit) = limit {
                number.messaging_limit_tier = limit;
            }
        }
        "account_update" => {
            value
                .entry("phone_number")
                .or_insert_with(|| json!(display));
            if value.get("event").and_then(Value::as_str) == Some("VERIFIED_ACCOUNT") {
                number.is_official_business_account = true;
            }
        }
        _ => {}
    }
    let waba = number.info.business_account_id.clone();
    if field == "message_template_status_update" {
        // The emulator's own template takes Meta's new status (a paused template stays paused
        // for sends made straight to the emulator too).
        let named = |key: &str| value.get(key).and_then(Value::as_str).map(str::to_owned);
        let id = value.get("message_template_id").map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        });
        if let Some(status) = named("event") {
            let name = named("message_template_name");
            for template in world.templates.values_mut() {
                let same = Some(&template.id) == id.as_ref()
                    || (template.waba_id == waba && Some(&template.name) == name.as_ref());
                if same {
                    template.status = status.clone();
                }
            }
        }
    }
    Ok(Built {
        envelope: envelope(&waba, vec![change(field, Value::Object(value))]),
        waba: Some(waba),
    })
}
