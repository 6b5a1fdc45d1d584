//! Phone-number and WABA nodes: the number itself, business profile, settings, registration and
//! verification codes, the WABA node, its phone numbers and `subscribed_apps`.

use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::graph::{GraphCall, GraphResult};
use super::graph_errors::GraphError;
use super::state::NumberState;
use super::{Shared, SANDBOX_APP_ID};

/// The code `verify_code` accepts: the sandbox sends no SMS, so the code is fixed.
pub const SANDBOX_VERIFICATION_CODE: &str = "123456";

const PROFILE_FIELDS: [&str; 7] = [
    "about",
    "address",
    "description",
    "email",
    "websites",
    "vertical",
    "profile_picture_url",
];

/// Business categories Meta accepts for `vertical`.
const VERTICALS: [&str; 19] = [
    "UNDEFINED",
    "OTHER",
    "AUTO",
    "BEAUTY",
    "APPAREL",
    "EDU",
    "ENTERTAIN",
    "EVENT_PLAN",
    "FINANCE",
    "GROCERY",
    "GOVT",
    "HOTEL",
    "HEALTH",
    "NONPROFIT",
    "PROF_SERVICES",
    "RETAIL",
    "TRAVEL",
    "RESTAURANT",
    "NOT_A_BIZ",
];

fn number<'a>(world: &'a super::state::World, pnid: &str) -> Result<&'a NumberState, GraphError> {
    world
        .numbers
        .get(pnid)
        .ok_or_else(|| GraphError::unsupported("get", pnid))
}

fn number_mut<'a>(
    world: &'a mut super::state::World,
    pnid: &str,
) -> Result<&'a mut NumberState, GraphError> {
    world
        .numbers
        .get_mut(pnid)
        .ok_or_else(|| GraphError::unsupported("post", pnid))
}

/// The phone number node with every field the emulator knows.
pub fn phone_node(number: &NumberState) -> Value {
    json!({
        "id": number.info.phone_number_id,
        "display_phone_number": number.info.display_phone_number,
        "verified_name": number.info.verified_name,
        "quality_rating": "GREEN",
        "code_verification_status": "VERIFIED",
        "name_status": "APPROVED",
        "platform_type": if number.registered { "CLOUD_API" } else { "NOT_APPLICABLE" },
        "throughput": { "level": number.throughput_level },
        "status": if number.registered { "CONNECTED" } else { "DISCONNECTED" },
        "account_mode": "LIVE",
        "messaging_limit_tier": number.messaging_limit_tier,
        "whatsapp_business_manager_messaging_limit": number.messaging_limit_tier,
        "is_official_business_account": number.is_official_business_account,
        "is_pin_enabled": number.registered,
        "search_visibility": "VISIBLE",
    })
}

/// Fields answered when the caller does not pass `fields=`.
const DEFAULT_PHONE_FIELDS: [&str; 8] = [
    "id",
    "display_phone_number",
    "verified_name",
    "quality_rating",
    "code_verification_status",
    "name_status",
    "platform_type",
    "throughput",
];

/// Keeps `id` plus the requested fields Meta would know; unknown names are ignored.
fn select(node: Value, fields: Option<Vec<String>>, defaults: &[&str]) -> Value {
    let Value::Object(all) = node else {
        return node;
    };
    let wanted: Vec<String> = match fields {
        Some(f) if !f.is_empty() => f,
        _ => defaults.iter().map(|s| (*s).to_owned()).collect(),
    };
    let mut out = Map::new();
    if let Some(id) = all.get("id") {
        out.insert("id".into(), id.clone());
    }
    for field in wanted {
        if let Some(value) = all.get(&field) {
            out.insert(field, value.clone());
        }
    }
    Value::Object(out)
}

/// `GET /{pnid}`.
pub fn get_number(shared: &Arc<Shared>, pnid: &str, call: &GraphCall) -> GraphResult {
    let world = shared.world();
    let node = phone_node(number(&world, pnid)?);
    Ok(select(node, call.fields(), &DEFAULT_PHONE_FIELDS))
}

/// `GET /{waba}`.
pub fn get_waba(shared: &Arc<Shared>, waba: &str, call: &GraphCall) -> GraphResult {
    let world = shared.world();
    let name = world
        .numbers
        .values()
        .find(|n| n.info.business_account_id == waba)
        .map(|n| n.info.verified_name.clone())
        .unwrap_or_else(|| "wagate sandbox".into());
    let node = json!({
        "id": waba,
        "name": name,
        "currency": "USD",
        "timezone_id": "1",
        "message_template_namespace": format!("sandbox_{waba}"),
        "account_review_status": "APPROVED",
        "business_verification_status": "verified",
        "ownership_type": "SELF",
    });
    Ok(select(
        node,
        call.fields(),
        &[
            "id",
            "name",
            "currency",
            "timezone_id",
            "message_template_namespace",
        ],
    ))
}

/// `GET /{waba}/phone_numbers`.
pub fn list_phone_numbers(shared: &Arc<Shared>, waba: &str, call: &GraphCall) -> GraphResult {
    let world = shared.world();
    let data: Vec<Value> = world
        .numbers
        .values()
        .filter(|n| n.info.business_account_id == waba)
        .map(|n| select(phone_node(n), call.fields(), &DEFAULT_PHONE_FIELDS))
        .collect();
    Ok(json!({ "data": data, "paging": { "cursors": { "before": "MAZDZD", "after": "MAZDZD" } } }))
}

/// `GET /{pnid}/whatsapp_business_profile`.
pub fn get_profile(shared: &Arc<Shared>, pnid: &str, call: &GraphCall) -> GraphResult {
    let world = shared.world();
    let mut profile = Value::Object(number(&world, pnid)?.profile.clone());
    if let Some(fields) = call.fields().filter(|f| !f.is_empty()) {
        profile = select(profile, Some(fields), &[]);
    }
    profile["messaging_product"] = json!("whatsapp");
    Ok(json!({ "data": [profile] }))
}

/// `POST /{pnid}/whatsapp_business_profile`: updates the given fields.
pub fn update_profile(shared: &Arc<Shared>, pnid: &str, call: &GraphCall) -> GraphResult {
    call.require_messaging_product()?;
    let mut updates = Map::new();
    for field in PROFILE_FIELDS {
        let Some(value) = call.params.get(field) else {
            continue;
        };
        match (field, value) {
            ("websites", Value::Array(sites)) => {
                if sites.len() > 2 || !sites.iter().all(Value::is_string) {
                    return Err(GraphError::invalid_parameter(
                        "Param websites must be an array of at most 2 URLs",
                    ));
                }
            }
            ("websites", _) => {
                return Err(GraphError::invalid_parameter(
                    "Param websites must be an array",
                ))
            }
            ("vertical", Value::String(v)) if !VERTICALS.contains(&v.as_str()) => {
                return Err(GraphError::invalid_parameter(format!(
                    "Param vertical must be one of {VERTICALS:?}"
                )))
            }
            ("about", Value::String(v)) if v.chars().count() > 139 => {
                return Err(GraphError::invalid_parameter(
                    "Param about must be at most 139 characters long",
                ))
            }
            ("email", Value::String(v)) if !v.is_empty() && !v.contains('@') => {
                return Err(GraphError::invalid_parameter(
                    "Param email must be a valid email address",
                ))
            }
            (_, Value::String(_)) => {}
            _ => {
                return Err(GraphError::invalid_parameter(format!(
                    "Param {field} must be a string"
                )))
            }
        }
        updates.insert(field.to_owned(), value.clone());
    }
    // `profile_picture_handle` (from a resumable upload) becomes a picture URL in Meta's store.
    if let Some(handle) = call.param_str("profile_picture_handle") {
        updates.insert(
            "profile_picture_url".into(),
            json!(format!("https://pps.whatsapp.net/v/sandbox/{handle}.jpg")),
        );
    }
    let mut world = shared.world();
    number_mut(&mut world, pnid)?.profile.extend(updates);
    Ok(json!({ "success": true }))
}

/// `GET /{pnid}/settings`.
pub fn get_settings(shared: &Arc<Shared>, pnid: &str) -> GraphResult {
    let world = shared.world();
    Ok(number(&world, pnid)?.settings.clone())
}

/// `POST /{pnid}/settings`: deep-merges the given objects into the stored settings.
pub fn update_settings(shared: &Arc<Shared>, pnid: &str, call: &GraphCall) -> GraphResult {
    let mut updates = call.params.clone();
    updates.remove("messaging_product");
    updates.remove("fields");
    if updates.is_empty() {
        return Err(GraphError::invalid_parameter(
            "At least one setting (e.g. calling, user_identity_change) is required",
        ));
    }
    if let Some(status) = updates.get("calling").and_then(|c| c.get("status")) {
        if !matches!(status.as_str(), Some("ENABLED" | "DISABLED")) {
            return Err(GraphError::invalid_parameter(
                "Param calling['status'] must be ENABLED or DISABLED",
            ));
        }
    }
    let mut world = shared.world();
    merge_into(
        &mut number_mut(&mut world, pnid)?.settings,
        Value::Object(updates),
    );
    Ok(json!({ "success": true }))
}

fn merge_into(target: &mut Value, update: Value) {
    match (target, update) {
        (Value::Object(target), Value::Object(update)) => {
            for (key, value) in update {
                merge_into(target.entry(key).or_insert(Value::Null), value);
            }
        }
        (target, update) => *target = update,
    }
}

/// `POST /{pnid}/register`: a 6-digit two-step verification PIN is required.
pub fn register(shared: &Arc<Shared>, pnid: &str, call: &GraphCall) -> GraphResult {
    call.require_messaging_product()?;
    let pin = match call.params.get("pin") {
        Some(Value::String(pin)) => pin.clone(),
        Some(Value::Number(pin)) => pin.to_string(),
        _ => {
            return Err(GraphError::param_message(
                "(#100) The parameter pin is required.",
            ))
        }
    };
    if pin.len() != 6 || !pin.bytes().all(|b| b.is_ascii_digit()) {
        return Err(GraphError::param_message(
            "(#100) Param pin must be 6 characters long.",
        ));
    }
    let mut world = shared.world();
    number_mut(&mut world, pnid)?.registered = true;
    Ok(json!({ "success": true }))
}

/// `POST /{pnid}/deregister`.
pub fn deregister(shared: &Arc<Shared>, pnid: &str) -> GraphResult {
    let mut world = shared.world();
    number_mut(&mut world, pnid)?.registered = false;
    Ok(json!({ "success": true }))
}

/// `POST /{pnid}/request_code`: `code_method` SMS or VOICE, and a `language`.
pub fn request_code(shared: &Arc<Shared>, pnid: &str, call: &GraphCall) -> GraphResult {
    match call.param_str("code_method") {
        Some(m) if m.eq_ignore_ascii_case("SMS") || m.eq_ignore_ascii_case("VOICE") => {}
        Some(_) => {
            return Err(GraphError::param_message(
                "(#100) Param code_method must be one of {SMS, VOICE}.",
            ))
        }
        None => {
            return Err(GraphError::param_message(
                "(#100) The parameter code_method is required.",
            ))
        }
    }
    if call.param_str("language").is_none_or(str::is_empty) {
        return Err(GraphError::param_message(
            "(#100) The parameter language is required.",
        ));
    }
    let mut world = shared.world();
    number_mut(&mut world, pnid)?.code_requested = true;
    Ok(json!({ "success": true }))
}

/// `POST /{pnid}/verify_code`: only [`SANDBOX_VERIFICATION_CODE`] verifies.
pub fn verify_code(shared: &Arc<Shared>, pnid: &str, call: &GraphCall) -> GraphResult {
    let code = match call.params.get("code") {
        Some(Value::String(code)) => code.clone(),
        Some(Value::Number(code)) => code.to_string(),
        _ => {
            return Err(GraphError::param_message(
                "(#100) The parameter code is required.",
            ))
        }
    };
    if code != SANDBOX_VERIFICATION_CODE {
        return Err(GraphError::from_code(
            136025,
            "Code couldn't be verified, You have entered the wrong code. (The sandbox accepts 123456.)",
        ));
    }
    let mut world = shared.world();
    number_mut(&mut world, pnid)?.code_requested = false;
    Ok(json!({ "success": true }))
}

fn app_data() -> Value {
    json!({
        "id": SANDBOX_APP_ID,
        "link": format!("https://www.facebook.com/games/?app_id={SANDBOX_APP_ID}"),
        "name": "wagate sandbox",
    })
}

/// `GET /{waba}/subscribed_apps`.
pub fn get_subscribed_apps(shared: &Arc<Shared>, waba: &str) -> GraphResult {
    let world = shared.world();
    let Some(state) = world.wabas.get(waba).filter(|w| w.subscribed) else {
        return Ok(json!({ "data": [] }));
    };
    let mut app = json!({ "whatsapp_business_api_data": app_data() });
    if let Some(uri) = &state.override_callback_uri {
        app["override_callback_uri"] = json!(uri);
    }
    Ok(json!({ "data": [app] }))
}

/// `POST /{waba}/subscribed_apps`, optionally with `override_callback_uri` + `verify_token`:
/// Meta verifies the override with a `hub.challenge` GET before accepting it, and from then on
/// sends this WABA's webhooks there.
pub async fn subscribe_app(shared: &Arc<Shared>, waba: &str, call: &GraphCall) -> GraphResult {
    let uri = call
        .param_str("override_callback_uri")
        .filter(|u| !u.is_empty());
    let verify_token = call.param_str("verify_token");
    let override_uri = match (uri, verify_token) {
        (None, None) => None,
        (Some(uri), Some(token)) => {
            verify_callback(shared, uri, token).await?;
            Some(uri.to_owned())
        }
        _ => {
            return Err(GraphError::invalid_parameter(
                "override_callback_uri and verify_token must be given together",
            ))
        }
    };
    let mut world = shared.world();
    let state = world.wabas.entry(waba.to_owned()).or_default();
    state.subscribed = true;
    state.override_callback_uri = override_uri;
    Ok(json!({ "success": true }))
}

async fn verify_callback(shared: &Arc<Shared>, uri: &str, token: &str) -> Result<(), GraphError> {
    let failed = |why: String| GraphError {
        status: axum::http::StatusCode::BAD_REQUEST,
        kind: "OAuthException",
        code: 2200,
        subcode: None,
        message: format!("(#2200) Callback verification failed with the following errors: {why}"),
        details: None,
    };
    let mut url = url::Url::parse(uri).map_err(|e| failed(format!("invalid URL: {e}")))?;
    let challenge = super::state::numeric_id(10);
    url.query_pairs_mut()
        .append_pair("hub.mode", "subscribe")
        .append_pair("hub.challenge", &challenge)
        .append_pair("hub.verify_token", token);
    let response = shared
        .http
        .get(url)
        .send()
        .await
        .map_err(|e| failed(format!("could not reach the callback: {e}")))?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    if !status.is_success() || body.trim() != challenge {
        return Err(failed(format!(
            "HTTP status code = {}; the response must be 200 with the hub.challenge value as body",
            status.as_u16()
        )));
    }
    Ok(())
}

/// `DELETE /{waba}/subscribed_apps`: webhooks of this WABA stop.
pub fn unsubscribe_app(shared: &Arc<Shared>, waba: &str) -> GraphResult {
    let mut world = shared.world();
    let state = world.wabas.entry(waba.to_owned()).or_default();
    state.subscribed = false;
    state.override_callback_uri = None;
    Ok(json!({ "success": true }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_merge_deeply() {
        let mut settings = json!({"calling": {"status": "DISABLED", "icon": true}});
        merge_into(
            &mut settings,
            json!({"calling": {"status": "ENABLED"}, "x": 1}),
        );
        assert_eq!(
            settings,
            json!({"calling": {"status": "ENABLED", "icon": true}, "x": 1})
        );
    }

    #[test]
    fn select_keeps_id_and_known_fields() {
        let node = json!({"id": "1", "a": 1, "b": 2});
        let picked = select(node, Some(vec!["b".into(), "zzz".into()]), &[]);
        assert_eq!(picked, json!({"id": "1", "b": 2}));
    }
}
