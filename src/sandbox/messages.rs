//! `POST /{version}/{pnid}/messages`: validation as Meta does it, the accepted answer, and the
//! status webhooks that follow (`sent` → `delivered` → `read`, shaped by the knobs).

use std::sync::Arc;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::graph::{GraphCall, GraphResult};
use super::graph_errors::{code_info, webhook_error, GraphError, Reported};
use super::state::{digits, is_bsuid, now, wamid, Knobs, SentMessage, World};
use super::webhooks::{change, envelope, metadata, status_object};
use super::Shared;

/// Message types a business can send (contract.md §12.1).
const SEND_TYPES: [&str; 11] = [
    "text",
    "image",
    "audio",
    "video",
    "document",
    "sticker",
    "location",
    "contacts",
    "interactive",
    "template",
    "reaction",
];

const INTERACTIVE_TYPES: [&str; 11] = [
    "button",
    "list",
    "product",
    "product_list",
    "catalog_message",
    "flow",
    "cta_url",
    "location_request_message",
    "address_message",
    "call_permission_request",
    "voice_call",
];

/// Who a send addresses.
struct Recipient {
    input: String,
    /// Phone digits, `Some("")` when `to` carried a BSUID (Nov-2025 form), `None` for `recipient`.
    wa_id: Option<String>,
    user_id: Option<String>,
}

/// A send: accepted or refused, and answered at once unless the `lose_answers` knob took it
/// ([`super::lost_answers`]); then the message still goes out as usual, but the answer is held
/// and replaced by Meta's transient error.
pub async fn send(shared: &Arc<Shared>, pnid: &str, call: &GraphCall) -> GraphResult {
    let (answer, hold) = accept(shared, pnid, call)?;
    match hold {
        None => Ok(answer),
        Some(hold) => {
            tokio::time::sleep(hold).await;
            Err(super::lost_answers::lost_answer())
        }
    }
}

/// Validates and accepts a send (or marks a message read). With the answer: how long to hold
/// it when the `lose_answers` knob takes this send, decided under the same lock as the
/// acceptance so only accepted sends use the knob up, in acceptance order.
fn accept(
    shared: &Arc<Shared>,
    pnid: &str,
    call: &GraphCall,
) -> Result<(Value, Option<std::time::Duration>), GraphError> {
    call.require_messaging_product()?;
    let params = &call.params;
    match params.get("status") {
        Some(Value::String(s)) if s == "read" => return mark_read(call).map(|a| (a, None)),
        Some(other) => {
            return Err(GraphError::invalid_parameter(format!(
                "Param status must be \"read\", got {other}"
            )))
        }
        None => {}
    }
    let mut world = shared.world();
    let number = world
        .numbers
        .get(pnid)
        .ok_or_else(|| GraphError::unsupported("post", pnid))?;
    if !number.registered {
        return Err(GraphError::from_code(
            133010,
            "Phone number is not registered on the WhatsApp Business Platform. Register it with POST /{phone_number_id}/register.",
        ));
    }
    let business_digits = number.display_digits();
    let display = metadata(number);
    let recipient = recipient(params)?;
    if recipient.wa_id.as_deref() == Some(business_digits.as_str()) {
        return Err(GraphError::from_code(
            131021,
            "Sender and recipient phone number is the same.",
        ));
    }
    if let Some(kind) = params.get("recipient_type") {
        if !matches!(kind.as_str(), Some("individual" | "group")) {
            return Err(GraphError::invalid_parameter(
                "Param recipient_type must be one of {INDIVIDUAL, GROUP}",
            ));
        }
    }
    let kind = match params.get("type") {
        None | Some(Value::Null) => "text".to_owned(),
        Some(Value::String(t)) if SEND_TYPES.contains(&t.as_str()) => t.clone(),
        Some(other) => {
            return Err(GraphError::param_message(format!(
                "(#100) Param type must be one of {{AUDIO, CONTACTS, DOCUMENT, IMAGE, INTERACTIVE, LOCATION, REACTION, STICKER, TEMPLATE, TEXT, VIDEO}} - got {other}."
            )))
        }
    };
    if let Some(context) = params.get("context") {
        if !context.get("message_id").is_some_and(Value::is_string) {
            return Err(GraphError::missing_parameter(
                "context['message_id'] is required",
            ));
        }
    }
    let category = validate_payload(&world, &call.waba, pnid, &kind, params)?;
    let phone_less = recipient.wa_id.as_deref().is_none_or(str::is_empty);
    if kind == "template" && phone_less && category == "authentication" {
        return Err(GraphError::from_code(
            131062,
            "Authentication templates require a phone number recipient.",
        ));
    }

    let knobs = world.knobs.clone();
    let failure = knobs.fail_sends_with.map(|code| (code, code_info(code)));
    if let Some((code, info)) = failure {
        if info.reported == Reported::Sync {
            return Err(GraphError::from_code(code, info.details));
        }
    }

    let user = recipient
        .wa_id
        .clone()
        .filter(|w| !w.is_empty())
        .or_else(|| recipient.user_id.clone())
        .unwrap_or_default();
    // Meta's limits apply to a send it would otherwise accept.
    let high = world
        .numbers
        .get(pnid)
        .is_some_and(|n| n.throughput_level == "HIGH");
    let limits = knobs.limits.clone();
    if let Err(refusal) = world
        .limiter
        .admit(&limits, pnid, &user, high, std::time::Instant::now())
    {
        world.send_log.refused(pnid, refusal.code);
        return Err(refusal);
    }
    // Recorded whether or not the limits are on: benchmarks read the rate they produced.
    world.send_log.accepted(pnid);
    let hold = world.knobs.lose_answers.take();
    let message = SentMessage {
        id: wamid(&user),
        phone_number_id: pnid.to_owned(),
        to: params.get("to").and_then(Value::as_str).map(str::to_owned),
        wa_id: recipient.wa_id.clone(),
        recipient: recipient.user_id.clone(),
        kind: kind.clone(),
        timestamp: now(),
        conversation_id: conversation_id(pnid, &user, &category),
        category,
        request: Value::Object(params.clone()),
        statuses: Vec::new(),
    };
    world.record_sent(message.clone());
    drop(world);

    let mut contact = json!({ "input": recipient.input });
    if let Some(wa_id) = &recipient.wa_id {
        contact["wa_id"] = json!(wa_id);
    }
    if let Some(user_id) = &recipient.user_id {
        contact["user_id"] = json!(user_id);
    }
    let mut sent = json!({ "id": message.id, "message_status": "accepted" });
    if params.get("recipient_type").and_then(Value::as_str) == Some("group") {
        sent["group_id"] = json!(recipient.input);
    }
    let answer = json!({
        "messaging_product": "whatsapp",
        "contacts": [contact],
        "messages": [sent],
    });
    let plan = match failure {
        Some((code, _)) => vec![("failed", Some(json!([webhook_error(code)])))],
        None => status_plan(&kind, &knobs),
    };
    spawn_statuses(
        shared.clone(),
        call.waba.clone(),
        display,
        message,
        plan,
        knobs,
    );
    Ok((answer, hold))
}

/// `{"status":"read","message_id":…,"typing_indicator"?}` → `{"success":true}`.
fn mark_read(call: &GraphCall) -> GraphResult {
    if call
        .params
        .get("message_id")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return Err(GraphError::param_message(
            "(#100) The parameter message_id is required.",
        ));
    }
    if let Some(indicator) = call.params.get("typing_indicator") {
        if indicator.get("type").and_then(Value::as_str) != Some("text") {
            return Err(GraphError::invalid_parameter(
                "Param typing_indicator['type'] must be \"text\"",
            ));
        }
    }
    Ok(json!({ "success": true }))
}

/// `to` wins over `recipient` when both are present (contract.md §10.3).
fn recipient(params: &serde_json::Map<String, Value>) -> Result<Recipient, GraphError> {
    // Groups API: `to` is the group's id.
    if params.get("recipient_type").and_then(Value::as_str) == Some("group") {
        return match params
            .get("to")
            .and_then(Value::as_str)
            .filter(|s| !s.trim().is_empty())
        {
            Some(group) => Ok(Recipient {
                input: group.to_owned(),
                wa_id: None,
                user_id: None,
            }),
            None => Err(GraphError::invalid_parameter(
                "Param to must be the group's id when recipient_type is group",
            )),
        };
    }
    if let Some(to) = params.get("to").filter(|v| !v.is_null()) {
        let Some(to) = to.as_str().filter(|s| !s.trim().is_empty()) else {
            return Err(GraphError::invalid_parameter(
                "Param to must be a non-empty string",
            ));
        };
        if is_bsuid(to) {
            return Ok(Recipient {
                input: to.to_owned(),
                wa_id: Some(String::new()),
                user_id: Some(to.to_owned()),
            });
        }
        let allowed = to
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '+' | ' ' | '-' | '(' | ')' | '.'));
        let wa_id = digits(to);
        if !allowed || !(5..=15).contains(&wa_id.len()) {
            return Err(GraphError::invalid_parameter(format!(
                "Param to must be a phone number (E.164, 5 to 15 digits) or a business-scoped user ID, got \"{to}\""
            )));
        }
        return Ok(Recipient {
            input: to.to_owned(),
            wa_id: Some(wa_id),
            user_id: None,
        });
    }
    match params.get("recipient").filter(|v| !v.is_null()) {
        Some(Value::String(r)) if is_bsuid(r) => Ok(Recipient {
            input: r.clone(),
            wa_id: None,
            user_id: Some(r.clone()),
        }),
        Some(other) => Err(GraphError::invalid_parameter(format!(
            "Param recipient must be a business-scoped user ID like US.13491208655302741918, got {other}"
        ))),
        None => Err(GraphError::param_message("(#100) The parameter to is required.")),
    }
}

/// Checks the object of the message type; returns the pricing category of the send.
fn validate_payload(
    world: &World,
    waba: &str,
    pnid: &str,
    kind: &str,
    params: &serde_json::Map<String, Value>,
) -> Result<String, GraphError> {
    let Some(payload) = params.get(kind).filter(|v| !v.is_null()) else {
        return Err(GraphError::missing_parameter(format!(
            "Parameter '{kind}' is required for messages of type {kind}"
        )));
    };
    if kind == "contacts" {
        return validate_contacts(payload).map(|()| "service".to_owned());
    }
    if !payload.is_object() {
        return Err(GraphError::invalid_parameter(format!(
            "Param {kind} must be a JSON object"
        )));
    }
    let field = |name: &str| payload.get(name).filter(|v| !v.is_null());
    let missing =
        |name: &str| GraphError::missing_parameter(format!("{kind}['{name}'] is required"));
    match kind {
        "text" => {
            let body = field("body")
                .and_then(Value::as_str)
                .ok_or_else(|| missing("body"))?;
            if body.is_empty() {
                return Err(missing("body"));
            }
            if body.chars().count() > 4096 {
                return Err(GraphError::invalid_parameter(
                    "Param text['body'] must be at most 4096 characters long",
                ));
            }
        }
        "image" | "audio" | "video" | "document" | "sticker" => {
            match (field("id"), field("link")) {
                (Some(id), _) => {
                    let id = id.as_str().unwrap_or_default();
                    let owned = world.media.get(id).is_some_and(|m| {
                        world.waba_of(&m.owner).as_deref() == Some(waba) || m.owner == pnid
                    });
                    if !owned {
                        return Err(GraphError::from_code(
                            131009,
                            format!(
                                "{kind}['id'] '{id}' is not a valid media ID for this phone number"
                            ),
                        ));
                    }
                }
                (None, Some(link)) => {
                    let valid = link
                        .as_str()
                        .and_then(|l| url::Url::parse(l).ok())
                        .is_some_and(|u| matches!(u.scheme(), "http" | "https"));
                    if !valid {
                        return Err(GraphError::from_code(
                            131009,
                            format!("{kind}['link'] must be an http or https URL"),
                        ));
                    }
                }
                (None, None) => {
                    return Err(GraphError::missing_parameter(format!(
                        "{kind}['id'] or {kind}['link'] is required"
                    )))
                }
            }
        }
        "location" => {
            for (name, bound) in [("latitude", 90.0), ("longitude", 180.0)] {
                let value = field(name).ok_or_else(|| missing(name))?;
                let number = value
                    .as_f64()
                    .or_else(|| value.as_str().and_then(|s| s.parse().ok()));
                if !number.is_some_and(|n: f64| n.abs() <= bound) {
                    return Err(GraphError::from_code(
                        131009,
                        format!("location['{name}'] must be a number between -{bound} and {bound}"),
                    ));
                }
            }
        }
        "interactive" => validate_interactive(payload)?,
        "template" => return validate_template(world, waba, payload),
        "reaction" => {
            field("message_id")
                .and_then(Value::as_str)
                .ok_or_else(|| missing("message_id"))?;
            // An empty emoji removes the reaction, so only presence is required.
            field("emoji")
                .and_then(Value::as_str)
                .ok_or_else(|| missing("emoji"))?;
        }
        _ => {}
    }
    Ok("service".to_owned())
}

fn validate_contacts(payload: &Value) -> Result<(), GraphError> {
    let Some(contacts) = payload.as_array().filter(|c| !c.is_empty()) else {
        return Err(GraphError::missing_parameter(
            "contacts must be a non-empty array of contact objects",
        ));
    };
    for (i, contact) in contacts.iter().enumerate() {
        if contact["name"]["formatted_name"]
            .as_str()
            .is_none_or(str::is_empty)
        {
            return Err(GraphError::missing_parameter(format!(
                "contacts[{i}]['name']['formatted_name'] is required"
            )));
        }
    }
    Ok(())
}

fn validate_interactive(payload: &Value) -> Result<(), GraphError> {
    let Some(kind) = payload.get("type").and_then(Value::as_str) else {
        return Err(GraphError::missing_parameter(
            "interactive['type'] is required",
        ));
    };
    if !INTERACTIVE_TYPES.contains(&kind) {
        return Err(GraphError::invalid_parameter(format!(
            "Param interactive['type'] must be one of {INTERACTIVE_TYPES:?}, got \"{kind}\""
        )));
    }
    let needs_body = matches!(
        kind,
        "button"
            | "list"
            | "flow"
            | "cta_url"
            | "location_request_message"
            | "call_permission_request"
    );
    if needs_body && payload["body"]["text"].as_str().is_none_or(str::is_empty) {
        return Err(GraphError::missing_parameter(
            "interactive['body']['text'] is required",
        ));
    }
    let Some(action) = payload.get("action").filter(|a| a.is_object()) else {
        return Err(GraphError::missing_parameter(
            "interactive['action'] is required",
        ));
    };
    match kind {
        "button" => {
            let count = action["buttons"].as_array().map_or(0, Vec::len);
            if !(1..=3).contains(&count) {
                return Err(GraphError::from_code(
                    131009,
                    "interactive['action']['buttons'] must hold 1 to 3 buttons",
                ));
            }
        }
        "list" => {
            if action["button"].as_str().is_none_or(str::is_empty) {
                return Err(GraphError::missing_parameter(
                    "interactive['action']['button'] is required",
                ));
            }
            let count = action["sections"].as_array().map_or(0, Vec::len);
            if !(1..=10).contains(&count) {
                return Err(GraphError::from_code(
                    131009,
                    "interactive['action']['sections'] must hold 1 to 10 sections",
                ));
            }
        }
        _ => {}
    }
    Ok(())
}

/// A template send needs an existing, approved template of that name and language in the WABA
/// (Meta answers 132001 otherwise); the send is billed in the template's category.
fn validate_template(world: &World, waba: &str, payload: &Value) -> Result<String, GraphError> {
    let Some(name) = payload.get("name").and_then(Value::as_str) else {
        return Err(GraphError::missing_parameter(
            "template['name'] is required",
        ));
    };
    let Some(language) = payload["language"]["code"].as_str() else {
        return Err(GraphError::missing_parameter(
            "template['language']['code'] is required",
        ));
    };
    let template = world
        .templates
        .values()
        .find(|t| t.waba_id == waba && t.name == name && t.language == language);
    match template {
        Some(t) if t.status == "APPROVED" => Ok(t.category.to_ascii_lowercase()),
        Some(t) if t.status == "PAUSED" => Err(GraphError::from_code(
            132015,
            format!("Template {name} is paused"),
        )),
        Some(t) if t.status == "DISABLED" => Err(GraphError::from_code(
            132016,
            format!("Template {name} is disabled"),
        )),
        _ => Err(GraphError::from_code(
            132001,
            format!("template name ({name}) does not exist in {language} or is not approved"),
        )),
    }
}

/// Statuses to deliver, in order, after the knobs: reactions only ever get `sent`.
fn status_plan(kind: &str, knobs: &Knobs) -> Vec<(&'static str, Option<Value>)> {
    let mut plan: Vec<&'static str> = if kind == "reaction" {
        vec!["sent"]
    } else {
        vec!["sent", "delivered", "read"]
    };
    if knobs.reorder {
        plan.reverse();
    }
    plan.into_iter().map(|s| (s, None)).collect()
}

/// Delivers the planned status webhooks one after another, `status_delay` apart.
fn spawn_statuses(
    shared: Arc<Shared>,
    waba: String,
    metadata: Value,
    message: SentMessage,
    plan: Vec<(&'static str, Option<Value>)>,
    knobs: Knobs,
) {
    tokio::spawn(async move {
        for (status, errors) in plan {
            tokio::time::sleep(shared.status_delay).await;
            if knobs.drop.iter().any(|d| d == status) {
                continue;
            }
            let value = json!({
                "messaging_product": "whatsapp",
                "metadata": metadata,
                "statuses": [status_object(&message, status, errors)],
            });
            let body = envelope(&waba, vec![change("messages", value)]);
            let copies = if knobs.duplicate { 2 } else { 1 };
            for _ in 0..copies {
                shared.deliver_with_retries(Some(&waba), &body).await;
                if let Some(sent) = shared.world().sent_mut(&message.id) {
                    sent.statuses.push(status.to_owned());
                }
            }
        }
    });
}

/// A stable conversation ID per (number, user, category), like Meta's 32-hex IDs.
fn conversation_id(pnid: &str, user: &str, category: &str) -> String {
    let digest = Sha256::digest(format!("{pnid}/{user}/{category}").as_bytes());
    hex::encode(&digest[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reorder_reverses_and_reactions_only_get_sent() {
        let knobs = Knobs {
            reorder: true,
            ..Knobs::default()
        };
        let plan: Vec<_> = status_plan("text", &knobs)
            .into_iter()
            .map(|p| p.0)
            .collect();
        assert_eq!(plan, ["read", "delivered", "sent"]);
        let plan: Vec<_> = status_plan("reaction", &Knobs::default())
            .into_iter()
            .map(|p| p.0)
            .collect();
        assert_eq!(plan, ["sent"]);
    }

    #[test]
    fn to_wins_over_recipient() {
        let params = json!({"to": "+1 (555) 123-4567", "recipient": "US.1"});
        let r = recipient(params.as_object().expect("object")).expect("valid");
        assert_eq!(r.wa_id.as_deref(), Some("15551234567"));
        assert_eq!(r.input, "+1 (555) 123-4567");
        let params = json!({"recipient": "US.ENT.11815799212886844830"});
        let r = recipient(params.as_object().expect("object")).expect("valid");
        assert_eq!(r.user_id.as_deref(), Some("US.ENT.11815799212886844830"));
        assert!(r.wa_id.is_none());
        assert!(recipient(json!({"to": "abc"}).as_object().expect("object")).is_err());
    }
}
