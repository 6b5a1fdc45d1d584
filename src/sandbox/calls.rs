//! Calling API (`POST /{pnid}/calls`, `GET /{pnid}/call_permissions`) and phone-number flows
//! (`GET/POST /{pnid}/flows`), contract.md §12.6 and §1.3.

use std::sync::Arc;

use serde_json::{json, Value};

use super::graph::{GraphCall, GraphResult};
use super::graph_errors::GraphError;
use super::state::{digits, is_bsuid, now, numeric_id, wacid, CallState};
use super::webhooks::{change, envelope, metadata};
use super::Shared;

const ACTIONS: [&str; 5] = ["connect", "pre_accept", "accept", "reject", "terminate"];

const FLOW_CATEGORIES: [&str; 8] = [
    "SIGN_UP",
    "SIGN_IN",
    "APPOINTMENT_BOOKING",
    "LEAD_GENERATION",
    "CONTACT_US",
    "CUSTOMER_SUPPORT",
    "SURVEY",
    "OTHER",
];

/// `session:{sdp_type, sdp}` must be present with the SDP type the action calls for.
fn require_session(call: &GraphCall, sdp_type: &str) -> Result<(), GraphError> {
    let session = call.params.get("session");
    let kind = session
        .and_then(|s| s.get("sdp_type"))
        .and_then(Value::as_str);
    let sdp = session.and_then(|s| s.get("sdp")).and_then(Value::as_str);
    match (kind, sdp) {
        (Some(k), Some(s)) if k == sdp_type && !s.is_empty() => Ok(()),
        (Some(k), Some(_)) if k != sdp_type => Err(GraphError::invalid_parameter(format!(
            "Param session['sdp_type'] must be \"{sdp_type}\" for this action"
        ))),
        _ => Err(GraphError::missing_parameter(format!(
            "session {{sdp_type: \"{sdp_type}\", sdp}} is required"
        ))),
    }
}

/// `POST /{pnid}/calls` with `action` connect, pre_accept, accept, reject or terminate.
pub fn call_action(shared: &Arc<Shared>, pnid: &str, call: &GraphCall) -> GraphResult {
    call.require_messaging_product()?;
    let action = match call.param_str("action") {
        Some(a) if ACTIONS.contains(&a) => a,
        Some(a) => {
            return Err(GraphError::invalid_parameter(format!(
                "Param action must be one of {ACTIONS:?}, got \"{a}\""
            )))
        }
        None => {
            return Err(GraphError::param_message(
                "(#100) The parameter action is required.",
            ))
        }
    };
    if action == "connect" {
        return connect(shared, pnid, call);
    }
    let call_id = call
        .param_str("call_id")
        .ok_or_else(|| GraphError::param_message("(#100) The parameter call_id is required."))?;
    if matches!(action, "pre_accept" | "accept") {
        require_session(call, "answer")?;
    }
    let mut world = shared.world();
    let Some(state) = world
        .calls
        .get_mut(call_id)
        .filter(|c| c.phone_number_id == pnid)
    else {
        return Err(GraphError::invalid_parameter(format!(
            "Param call_id '{call_id}' does not name a call of this phone number"
        )));
    };
    if matches!(state.status.as_str(), "REJECTED" | "COMPLETED") {
        return Err(GraphError::invalid_parameter(format!(
            "Call {call_id} has already ended"
        )));
    }
    state.status = match action {
        "pre_accept" => "PRE_ACCEPTED",
        "accept" => "ACCEPTED",
        "reject" => "REJECTED",
        _ => "COMPLETED",
    }
    .into();
    Ok(json!({ "messaging_product": "whatsapp", "success": true }))
}

/// A business-initiated call: answers the call ID, then (like Meta) a `RINGING` status webhook.
fn connect(shared: &Arc<Shared>, pnid: &str, call: &GraphCall) -> GraphResult {
    let to = call
        .param_str("to")
        .filter(|t| !t.is_empty())
        .ok_or_else(|| GraphError::param_message("(#100) The parameter to is required."))?;
    if !is_bsuid(to) && digits(to).len() < 5 {
        return Err(GraphError::invalid_parameter(
            "Param to must be a phone number or a business-scoped user ID",
        ));
    }
    require_session(call, "offer")?;
    let id = wacid();
    let mut world = shared.world();
    let number = world
        .numbers
        .get(pnid)
        .ok_or_else(|| GraphError::unsupported("post", pnid))?;
    let meta = metadata(number);
    let recipient = if is_bsuid(to) {
        to.to_owned()
    } else {
        digits(to)
    };
    world.calls.insert(
        id.clone(),
        CallState {
            phone_number_id: pnid.to_owned(),
            to: recipient.clone(),
            status: "RINGING".into(),
        },
    );
    drop(world);

    let mut status =
        json!({ "id": id, "timestamp": now().to_string(), "type": "call", "status": "RINGING" });
    status[if is_bsuid(&recipient) {
        "recipient_user_id"
    } else {
        "recipient_id"
    }] = json!(recipient);
    if let Some(data) = call.params.get("biz_opaque_callback_data") {
        status["biz_opaque_callback_data"] = data.clone();
    }
    let value = json!({ "messaging_product": "whatsapp", "metadata": meta, "statuses": [status] });
    let body = envelope(&call.waba, vec![change("calls", value)]);
    let (shared, waba) = (shared.clone(), call.waba.clone());
    tokio::spawn(async move {
        tokio::time::sleep(shared.status_delay).await;
        shared.deliver(Some(&waba), &body).await;
    });
    Ok(json!({ "messaging_product": "whatsapp", "calls": [ { "id": id } ] }))
}

/// `GET /{pnid}/call_permissions?user_wa_id=…`: `temporary` once the user accepted a call
/// permission request (an injected `call_permission_reply`), `no_permission` otherwise.
pub fn call_permissions(shared: &Arc<Shared>, pnid: &str, call: &GraphCall) -> GraphResult {
    let user = call
        .query_str("user_wa_id")
        .or_else(|| call.param_str("user_wa_id"))
        .filter(|u| !u.is_empty())
        .ok_or_else(|| GraphError::param_message("(#100) The parameter user_wa_id is required."))?;
    let key = if is_bsuid(user) {
        user.to_owned()
    } else {
        digits(user)
    };
    let world = shared.world();
    let number = world
        .numbers
        .get(pnid)
        .ok_or_else(|| GraphError::unsupported("get", pnid))?;
    let expiry = number
        .call_permissions
        .get(&key)
        .copied()
        .filter(|e| *e > now());
    let mut permission =
        json!({ "status": if expiry.is_some() { "temporary" } else { "no_permission" } });
    if let Some(expiry) = expiry {
        permission["expiration_time"] = json!(expiry);
    }
    Ok(json!({
        "messaging_product": "whatsapp",
        "permission": permission,
        "actions": [
            {
                "action_name": "send_call_permission_request",
                "can_perform_action": expiry.is_none(),
                "limits": [ { "time_period": "PT24H", "max_allowed": 1, "current_usage": 0 } ],
            },
            {
                "action_name": "start_call",
                "can_perform_action": expiry.is_some(),
                "limits": [ { "time_period": "PT24H", "max_allowed": 5, "current_usage": 0 } ],
            }
        ],
    }))
}

/// `GET /{pnid}/flows`.
pub fn list_flows(shared: &Arc<Shared>, pnid: &str, _call: &GraphCall) -> GraphResult {
    let world = shared.world();
    let flows = world
        .numbers
        .get(pnid)
        .map(|n| n.flows.clone())
        .unwrap_or_default();
    Ok(json!({ "data": flows, "paging": { "cursors": { "before": "QVFIU", "after": "QVFIU" } } }))
}

/// `POST /{pnid}/flows`: `name` and `categories` required; `flow_json`, if given, must be JSON.
pub fn create_flow(shared: &Arc<Shared>, pnid: &str, call: &GraphCall) -> GraphResult {
    let name = call
        .param_str("name")
        .filter(|n| !n.trim().is_empty())
        .ok_or_else(|| GraphError::param_message("(#100) The parameter name is required."))?;
    let categories: Vec<String> = match call.params.get("categories") {
        Some(Value::Array(list)) if !list.is_empty() => list
            .iter()
            .map(|c| c.as_str().map(str::to_ascii_uppercase))
            .collect::<Option<Vec<_>>>()
            .filter(|cs| cs.iter().all(|c| FLOW_CATEGORIES.contains(&c.as_str())))
            .ok_or_else(|| {
                GraphError::invalid_parameter(format!(
                    "Param categories must be a list of {FLOW_CATEGORIES:?}"
                ))
            })?,
        _ => {
            return Err(GraphError::param_message(
                "(#100) The parameter categories is required.",
            ))
        }
    };
    let validation_errors = match call.params.get("flow_json") {
        Some(Value::String(text)) if serde_json::from_str::<Value>(text).is_err() => vec![json!({
            "error": "INVALID_JSON",
            "error_type": "JSON_SCHEMA_ERROR",
            "message": "flow_json is not valid JSON",
        })],
        _ => Vec::new(),
    };
    let id = numeric_id(16);
    let flow = json!({
        "id": id,
        "name": name,
        "status": "DRAFT",
        "categories": categories,
        "validation_errors": validation_errors,
    });
    let mut world = shared.world();
    world
        .numbers
        .get_mut(pnid)
        .ok_or_else(|| GraphError::unsupported("post", pnid))?
        .flows
        .push(flow);
    Ok(json!({ "id": id, "success": true, "validation_errors": validation_errors }))
}
