//! Business usernames (`/{pnid}/username`, `/{pnid}/username_suggestions`) with the format
//! rules and errors of contract.md §8.2, and the `business_username_updates` webhook on every
//! change (claim → `reserved`, launch → `approved`, delete or transfer away → `deleted`).
//!
//! A username belongs to one number at a time. Another portfolio's (here: another WABA's)
//! username is not available (147001); one held by another number of the same portfolio moves
//! only with `transfer_action: force_transfer` (147005 otherwise). Claims stay `reserved` until
//! usernames launch (`POST /_sandbox/usernames/launch`), then they are `approved`; after the
//! launch new claims are approved at once.
//!
//! The webhooks are delivered before the Graph call answers, so a gateway in front of the
//! emulator has seen them by the time its client gets the answer (Meta sends them a moment
//! later; the state they carry is the same).

use std::sync::Arc;

use serde_json::{json, Value};

use super::graph::{GraphCall, GraphResult};
use super::graph_errors::GraphError;
use super::state::{NumberState, World};
use super::webhooks::{change, timed_envelope};
use super::Shared;
use crate::domain::usernames::{self as rules, same};

/// Names Meta keeps for itself; claiming them answers 147001.
const RESERVED: [&str; 6] = [
    "whatsapp",
    "meta",
    "facebook",
    "instagram",
    "support",
    "admin",
];

/// A `business_username_updates` webhook to deliver once the world lock is released.
pub struct Webhook {
    pub phone_number_id: String,
    pub waba: String,
    pub username: Option<String>,
    pub envelope: Value,
}

/// The `business_username_updates` envelope for the number's current state (contract.md §10.4):
/// `{display_phone_number, username, status}`, `username` omitted on `deleted`.
pub fn webhook(number: &NumberState) -> Value {
    let status = number.username_status.as_deref().unwrap_or("deleted");
    let mut value = json!({ "display_phone_number": number.display_digits(), "status": status });
    if status != "deleted" {
        if let Some(username) = &number.username {
            value["username"] = json!(username);
        }
    }
    timed_envelope(
        &number.info.business_account_id,
        vec![change("business_username_updates", value)],
    )
}

fn pending(number: &NumberState) -> Webhook {
    Webhook {
        phone_number_id: number.info.phone_number_id.clone(),
        waba: number.info.business_account_id.clone(),
        username: number.username.clone(),
        envelope: webhook(number),
    }
}

async fn deliver(shared: &Shared, webhooks: Vec<Webhook>) {
    for webhook in webhooks {
        shared.deliver(Some(&webhook.waba), &webhook.envelope).await;
    }
}

/// `GET /{pnid}/username` → `{"username","status"}`; `username` omitted when the number holds
/// none (`{"status":"deleted"}` after a delete, `{}` before any claim).
pub fn get(shared: &Arc<Shared>, pnid: &str) -> GraphResult {
    let world = shared.world();
    let number = world
        .numbers
        .get(pnid)
        .ok_or_else(|| GraphError::unsupported("get", pnid))?;
    let mut answer = json!({});
    if let Some(username) = &number.username {
        answer["username"] = json!(username);
    }
    if let Some(status) = &number.username_status {
        answer["status"] = json!(status);
    }
    Ok(answer)
}

/// `POST /{pnid}/username` `{"username","transfer_action"?: "none"|"force_transfer"}` →
/// `{"status":"reserved"}` (or `approved` after the launch).
pub async fn claim(shared: &Arc<Shared>, pnid: &str, call: &GraphCall) -> GraphResult {
    let (answer, webhooks) = claim_in(&mut shared.world(), pnid, call)?;
    deliver(shared, webhooks).await;
    Ok(answer)
}

fn claim_in(
    world: &mut World,
    pnid: &str,
    call: &GraphCall,
) -> Result<(Value, Vec<Webhook>), GraphError> {
    let requested = call
        .param_str("username")
        .ok_or_else(|| GraphError::param_message("(#100) The parameter username is required."))?
        .to_owned();
    if let Some(problem) = rules::problem(&requested) {
        return Err(GraphError::invalid_parameter(format!(
            "Param username {problem}"
        )));
    }
    let force = match call.params.get("transfer_action") {
        None | Some(Value::Null) => false,
        Some(Value::String(action)) if rules::is_transfer_action(action) => {
            action == "force_transfer"
        }
        Some(other) => {
            return Err(GraphError::invalid_parameter(format!(
                "Param transfer_action must be one of {{none, force_transfer}}, got {other}"
            )))
        }
    };
    if let Some(code) = world.knobs.fail_usernames_with {
        let info = super::graph_errors::code_info(code);
        return Err(GraphError::from_code(code, info.details));
    }
    if RESERVED.iter().any(|r| same(r, &requested)) {
        return Err(GraphError::from_code(
            147001,
            format!("The username {requested} is not available."),
        ));
    }
    let Some(number) = world.numbers.get(pnid) else {
        return Err(GraphError::unsupported("post", pnid));
    };
    if !number.registered {
        return Err(GraphError::from_code(
            133010,
            "Register the phone number before claiming a username.",
        ));
    }
    if let (Some(held), Some(status)) = (&number.username, &number.username_status) {
        if same(held, &requested) && status != "deleted" {
            // Claiming what the number already holds changes nothing.
            return Ok((json!({ "status": status }), Vec::new()));
        }
    }
    let holder = world
        .numbers
        .values()
        .find(|n| {
            n.info.phone_number_id != pnid
                && n.username.as_deref().is_some_and(|u| same(u, &requested))
        })
        .map(|n| {
            (
                n.info.phone_number_id.clone(),
                n.info.business_account_id.clone(),
            )
        });
    let mut webhooks = Vec::new();
    if let Some((holder_id, holder_waba)) = holder {
        if holder_waba != call.waba {
            return Err(GraphError::from_code(
                147001,
                format!("The username {requested} is taken."),
            ));
        }
        if !force {
            return Err(GraphError::from_code(
                147005,
                format!("Phone number {holder_id} in this portfolio holds {requested}; use transfer_action force_transfer."),
            ));
        }
        if let Some(previous) = world.numbers.get_mut(&holder_id) {
            previous.username = None;
            previous.username_status = Some("deleted".into());
            webhooks.push(pending(previous));
        }
    }
    let status = if world.usernames_launched {
        "approved"
    } else {
        "reserved"
    };
    if let Some(number) = world.numbers.get_mut(pnid) {
        number.username = Some(requested);
        number.username_status = Some(status.into());
        webhooks.push(pending(number));
    }
    Ok((json!({ "status": status }), webhooks))
}

/// `DELETE /{pnid}/username` → `{"success":true}`; a `deleted` webhook when it held one.
pub async fn delete(shared: &Arc<Shared>, pnid: &str) -> GraphResult {
    let webhooks = {
        let mut world = shared.world();
        let number = world
            .numbers
            .get_mut(pnid)
            .ok_or_else(|| GraphError::unsupported("delete", pnid))?;
        if number.username.take().is_some() {
            number.username_status = Some("deleted".into());
            vec![pending(number)]
        } else {
            Vec::new()
        }
    };
    deliver(shared, webhooks).await;
    Ok(json!({ "success": true }))
}

/// Approves the reserved usernames (of one number, or all); returns their webhooks.
pub fn launch(world: &mut World, only: Option<&str>) -> Vec<Webhook> {
    world
        .numbers
        .values_mut()
        .filter(|n| only.is_none_or(|p| p == n.info.phone_number_id))
        .filter(|n| n.username.is_some() && n.username_status.as_deref() == Some("reserved"))
        .map(|n| {
            n.username_status = Some("approved".into());
            pending(n)
        })
        .collect()
}

/// `GET /{pnid}/username_suggestions`: variants of the verified name that are valid and free.
pub fn suggestions(shared: &Arc<Shared>, pnid: &str) -> GraphResult {
    let world = shared.world();
    let number = world
        .numbers
        .get(pnid)
        .ok_or_else(|| GraphError::unsupported("get", pnid))?;
    let base: String = number
        .info
        .verified_name
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let base = base.trim_matches('_').to_owned();
    let taken = |candidate: &str| {
        world
            .numbers
            .values()
            .any(|n| n.username.as_deref().is_some_and(|u| same(u, candidate)))
    };
    let list: Vec<Value> = [
        base.clone(),
        format!("{base}_official"),
        format!("{base}_hq"),
        format!("the_{base}"),
    ]
    .into_iter()
    .filter(|c| rules::problem(c).is_none() && !RESERVED.iter().any(|r| same(r, c)) && !taken(c))
    .map(Value::String)
    .collect();
    Ok(json!({ "data": [ { "username_suggestions": list } ] }))
}
