//! Webhooks the control API injects besides messages: raw statuses, calls, business username
//! updates and BSUID rotations (contract.md §12.5, §12.6, §10.2, §10.4).

use serde_json::{json, Map, Value};

use super::control::{Built, ControlError};
use super::graph_errors::webhook_error;
use super::inbound::{timestamp, User};
use super::state::{bsuid, now, wacid, CallState, World};
use super::webhooks::{change, envelope, metadata, status_object};

const STATUSES: [&str; 5] = ["sent", "delivered", "read", "failed", "played"];

/// A default SDP body, enough for clients that only check it is present.
const SAMPLE_SDP: &str = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=wagate sandbox\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:111 opus/48000/2\r\n";

fn object(body: &Value) -> Result<&Map<String, Value>, ControlError> {
    body.as_object()
        .ok_or_else(|| ControlError::bad("the body must be a JSON object"))
}

fn str_field<'a>(body: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    body.get(key).and_then(Value::as_str)
}

/// `POST /_sandbox/statuses`: `{"id"?, "phone_number_id"?, "recipient_id"?, "statuses": [
/// "read" | {"status", "id"?, "error_code"?, …overrides} ]}`, all in one change, in the given
/// order (duplicates allowed). Known wamids get the recipient and pricing of the real send.
pub fn statuses(world: &mut World, body: &Value) -> Result<Built, ControlError> {
    let body = object(body)?;
    let items = body
        .get("statuses")
        .and_then(Value::as_array)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ControlError::bad("statuses must be a non-empty array"))?;
    let mut pnid = str_field(body, "phone_number_id").map(str::to_owned);
    let mut built = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let item = match item {
            Value::String(status) => json!({ "status": status }),
            Value::Object(_) => item.clone(),
            _ => {
                return Err(ControlError::bad(format!(
                    "statuses[{i}] must be a string or an object"
                )))
            }
        };
        let status = item["status"].as_str().unwrap_or_default().to_owned();
        if !STATUSES.contains(&status.as_str()) {
            return Err(ControlError::bad(format!(
                "statuses[{i}].status must be one of {STATUSES:?}"
            )));
        }
        let id = item["id"]
            .as_str()
            .or_else(|| str_field(body, "id"))
            .ok_or_else(|| {
                ControlError::bad(format!(
                    "statuses[{i}] needs an id (or give a top-level id)"
                ))
            })?
            .to_owned();
        let errors = (status == "failed").then(|| {
            let code = item["error_code"]
                .as_u64()
                .and_then(|c| u32::try_from(c).ok())
                .unwrap_or(131026);
            json!([webhook_error(code)])
        });
        let mut object = match world.sent_mut(&id) {
            Some(sent) => {
                sent.statuses.push(status.clone());
                pnid.get_or_insert_with(|| sent.phone_number_id.clone());
                status_object(sent, &status, errors)
            }
            None => {
                let mut object =
                    json!({ "id": id, "status": status, "timestamp": now().to_string() });
                let recipient =
                    str_field(body, "recipient_id").unwrap_or(super::inbound::DEFAULT_FROM);
                object["recipient_id"] = json!(recipient);
                if let Some(errors) = errors {
                    object["errors"] = errors;
                }
                object
            }
        };
        if let (Value::Object(target), Value::Object(overrides)) = (&mut object, item) {
            for (key, value) in overrides {
                if key != "error_code" {
                    target.insert(key, value);
                }
            }
        }
        built.push(object);
    }
    let pnid = pnid.ok_or_else(|| {
        ControlError::bad("phone_number_id is required for wamids the sandbox did not send")
    })?;
    let number = world
        .numbers
        .get(&pnid)
        .ok_or_else(|| ControlError::not_found(format!("unknown phone_number_id {pnid}")))?;
    let waba = number.info.business_account_id.clone();
    let value =
        json!({ "messaging_product": "whatsapp", "metadata": metadata(number), "statuses": built });
    Ok(Built {
        envelope: envelope(&waba, vec![change("messages", value)]),
        waba: Some(waba),
    })
}

/// `POST /_sandbox/calls`: `{"phone_number_id", "event": "connect"|"terminate"|"status",
/// "call_id"?, "from"?, "user_id"?, "direction"?, "status"?, "session"?, "duration"?, …}`.
/// Connected calls are stored, so the Graph call actions work on them.
pub fn calls(world: &mut World, body: &Value) -> Result<Built, ControlError> {
    let body = object(body)?;
    let pnid = str_field(body, "phone_number_id")
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
    let event = str_field(body, "event").unwrap_or("connect");
    let direction = str_field(body, "direction")
        .unwrap_or("USER_INITIATED")
        .to_ascii_uppercase();
    if !matches!(direction.as_str(), "USER_INITIATED" | "BUSINESS_INITIATED") {
        return Err(ControlError::bad(
            "direction must be USER_INITIATED or BUSINESS_INITIATED",
        ));
    }
    let call_id = str_field(body, "call_id")
        .map(str::to_owned)
        .unwrap_or_else(wacid);
    let ts = timestamp(body);
    let user_initiated = direction == "USER_INITIATED";
    let mut call =
        json!({ "id": call_id, "event": event, "timestamp": ts, "direction": direction });
    // The user's side is `from` on user-initiated calls and `to` on business-initiated ones.
    let (user_side, business_side) = if user_initiated {
        ("from", "to")
    } else {
        ("to", "from")
    };
    call[business_side] = json!(business);
    if let Some(wa_id) = &user.wa_id {
        call[user_side] = json!(wa_id);
    }
    if let Some(user_id) = &user.user_id {
        call[format!("{user_side}_user_id")] = json!(user_id);
    }
    if let Some(data) = body.get("biz_opaque_callback_data") {
        call["biz_opaque_callback_data"] = data.clone();
    }
    let mut value = json!({ "messaging_product": "whatsapp", "metadata": meta });
    match event {
        "connect" => {
            let sdp_type = if user_initiated { "offer" } else { "answer" };
            let session = json!({ "sdp_type": sdp_type, "sdp": SAMPLE_SDP });
            call["session"] = super::inbound::fill(session, body.get("session"));
            world.calls.insert(
                call_id.clone(),
                CallState {
                    phone_number_id: pnid.to_owned(),
                    to: user.key(),
                    status: "RINGING".into(),
                },
            );
            value["contacts"] = json!([user.contact(body)]);
            value["calls"] = json!([call]);
        }
        "terminate" => {
            let status = str_field(body, "status")
                .unwrap_or("COMPLETED")
                .to_ascii_uppercase();
            if status == "COMPLETED" {
                let duration = body.get("duration").and_then(Value::as_i64).unwrap_or(60);
                let end = now();
                call["start_time"] = json!((end - duration).to_string());
                call["end_time"] = json!(end.to_string());
                call["duration"] = json!(duration);
            }
            call["status"] = json!(status);
            if let Some(errors) = body.get("errors") {
                call["errors"] = errors.clone();
            }
            if let Some(state) = world.calls.get_mut(&call_id) {
                state.status = "COMPLETED".into();
            }
            value["calls"] = json!([call]);
        }
        "status" => {
            let status = str_field(body, "status")
                .unwrap_or("ACCEPTED")
                .to_ascii_uppercase();
            if !matches!(status.as_str(), "RINGING" | "ACCEPTED" | "REJECTED") {
                return Err(ControlError::bad(
                    "status must be RINGING, ACCEPTED or REJECTED",
                ));
            }
            let mut item =
                json!({ "id": call_id, "timestamp": ts, "type": "call", "status": status });
            if let Some(wa_id) = &user.wa_id {
                item["recipient_id"] = json!(wa_id);
            }
            if let Some(user_id) = &user.user_id {
                item["recipient_user_id"] = json!(user_id);
            }
            if let Some(state) = world.calls.get_mut(&call_id) {
                state.status = status;
            }
            value["statuses"] = json!([item]);
        }
        other => {
            return Err(ControlError::bad(format!(
                "event must be connect, terminate or status, got \"{other}\""
            )))
        }
    }
    Ok(Built {
        envelope: envelope(&waba, vec![change("calls", value)]),
        waba: Some(waba),
    })
}

/// `POST /_sandbox/username_update`: `{"phone_number_id", "status": approved|reserved|deleted,
/// "username"?}` → a `business_username_updates` webhook; the number's username follows it.
pub fn username_update(world: &mut World, body: &Value) -> Result<Built, ControlError> {
    let body = object(body)?;
    let pnid = str_field(body, "phone_number_id")
        .ok_or_else(|| ControlError::bad("phone_number_id is required"))?;
    let status = str_field(body, "status")
        .unwrap_or("approved")
        .to_ascii_lowercase();
    if !matches!(status.as_str(), "approved" | "reserved" | "deleted") {
        return Err(ControlError::bad(
            "status must be approved, reserved or deleted",
        ));
    }
    let number = world
        .numbers
        .get_mut(pnid)
        .ok_or_else(|| ControlError::not_found(format!("unknown phone_number_id {pnid}")))?;
    let username = str_field(body, "username")
        .map(|u| u.trim_start_matches('@').to_owned())
        .or_else(|| number.username.clone());
    if status == "deleted" {
        number.username = None;
    } else {
        let username = username
            .ok_or_else(|| ControlError::bad("username is required unless status is deleted"))?;
        if let Some(problem) = crate::domain::usernames::problem(&username) {
            return Err(ControlError::bad(format!("username {problem}")));
        }
        number.username = Some(username);
    }
    number.username_status = Some(status);
    let waba = number.info.business_account_id.clone();
    Ok(Built {
        envelope: super::usernames::webhook(number),
        waba: Some(waba),
    })
}

/// `POST /_sandbox/user_id_update`: `{"phone_number_id", "previous", "current"?, "wa_id"?,
/// "profile_name"?}` → a `user_id_update` webhook (contract.md §10.2).
pub fn user_id_update(world: &mut World, body: &Value) -> Result<Built, ControlError> {
    let body = object(body)?;
    let pnid = str_field(body, "phone_number_id")
        .ok_or_else(|| ControlError::bad("phone_number_id is required"))?;
    let number = world
        .numbers
        .get(pnid)
        .ok_or_else(|| ControlError::not_found(format!("unknown phone_number_id {pnid}")))?;
    let valid = |key: &str| match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if super::state::is_bsuid(s) => Ok(Some(s.clone())),
        Some(other) => Err(ControlError::bad(format!(
            "{key} must be a business-scoped user ID, got {other}"
        ))),
    };
    let previous = valid("previous")?
        .ok_or_else(|| ControlError::bad("previous (the old BSUID) is required"))?;
    let current = valid("current")?.unwrap_or_else(bsuid);
    let name = str_field(body, "profile_name").unwrap_or("Sandbox User");
    let wa_id = str_field(body, "wa_id").map(super::state::digits);
    let mut contact = json!({ "profile": { "name": name }, "user_id": current });
    let mut update = json!({
        "detail": format!("User id for {name} has been updated."),
        "user_id": { "previous": previous, "current": current },
        "timestamp": timestamp(body),
    });
    if let Some(wa_id) = wa_id {
        contact["wa_id"] = json!(wa_id);
        update["wa_id"] = json!(wa_id);
    }
    let waba = number.info.business_account_id.clone();
    let value = json!({
        "messaging_product": "whatsapp",
        "metadata": metadata(number),
        "contacts": [contact],
        "user_id_update": [update],
    });
    Ok(Built {
        envelope: envelope(&waba, vec![change("user_id_update", value)]),
        waba: Some(waba),
    })
}
