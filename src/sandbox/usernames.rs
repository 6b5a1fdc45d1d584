//! Business usernames (`/{pnid}/username`, `/{pnid}/username_suggestions`) with the format
//! rules and errors of contract.md §8.2.

use std::sync::Arc;

use serde_json::{json, Value};

use super::graph::{GraphCall, GraphResult};
use super::graph_errors::GraphError;
use super::Shared;

/// Names Meta keeps for itself; claiming them answers 147001.
const RESERVED: [&str; 6] = [
    "whatsapp",
    "meta",
    "facebook",
    "instagram",
    "support",
    "admin",
];
const DOMAIN_SUFFIXES: [&str; 10] = [
    ".com", ".org", ".net", ".io", ".ai", ".co", ".app", ".dev", ".info", ".biz",
];

/// Why `name` (already lowercased) breaks Meta's format rules, if it does.
pub fn format_problem(name: &str) -> Option<&'static str> {
    let len = name.chars().count();
    if !(3..=35).contains(&len) {
        return Some("must be 3 to 35 characters long");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'_')
    {
        return Some("may only contain a-z, 0-9, periods and underscores");
    }
    if !name.bytes().any(|b| b.is_ascii_lowercase()) {
        return Some("must contain at least one letter");
    }
    if name.starts_with('.') || name.ends_with('.') {
        return Some("must not start or end with a period");
    }
    if name.contains("..") {
        return Some("must not contain two periods in a row");
    }
    if name.starts_with("www") {
        return Some("must not start with www");
    }
    if DOMAIN_SUFFIXES.iter().any(|s| name.ends_with(s)) {
        return Some("must not end with a domain suffix");
    }
    None
}

/// `GET /{pnid}/username` → `{"username","status"}`, or `{}` when the number has none.
pub fn get(shared: &Arc<Shared>, pnid: &str) -> GraphResult {
    let world = shared.world();
    let number = world
        .numbers
        .get(pnid)
        .ok_or_else(|| GraphError::unsupported("get", pnid))?;
    Ok(match &number.username {
        Some((username, status)) => json!({ "username": username, "status": status }),
        None => json!({}),
    })
}

/// `POST /{pnid}/username` `{"username","transfer_action"?: "none"|"force_transfer"}`.
pub fn claim(shared: &Arc<Shared>, pnid: &str, call: &GraphCall) -> GraphResult {
    let requested = call
        .param_str("username")
        .ok_or_else(|| GraphError::param_message("(#100) The parameter username is required."))?
        .trim_start_matches('@')
        .to_ascii_lowercase();
    if let Some(problem) = format_problem(&requested) {
        return Err(GraphError::invalid_parameter(format!(
            "Param username {problem}"
        )));
    }
    let force = match call.param_str("transfer_action") {
        None | Some("none") => false,
        Some("force_transfer") => true,
        Some(other) => {
            return Err(GraphError::invalid_parameter(format!(
                "Param transfer_action must be none or force_transfer, got \"{other}\""
            )))
        }
    };
    if RESERVED.contains(&requested.as_str()) {
        return Err(GraphError::from_code(
            147001,
            format!("The username {requested} is not available."),
        ));
    }
    let mut world = shared.world();
    let Some(number) = world.numbers.get(pnid) else {
        return Err(GraphError::unsupported("post", pnid));
    };
    if !number.registered {
        return Err(GraphError::from_code(
            133010,
            "Register the phone number before claiming a username.",
        ));
    }
    let holder = world
        .numbers
        .values()
        .find(|n| {
            n.info.phone_number_id != pnid
                && n.username.as_ref().is_some_and(|(u, _)| *u == requested)
        })
        .map(|n| {
            (
                n.info.phone_number_id.clone(),
                n.info.business_account_id.clone(),
            )
        });
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
        }
    }
    if let Some(number) = world.numbers.get_mut(pnid) {
        number.username = Some((requested, "reserved".into()));
    }
    Ok(json!({ "status": "reserved" }))
}

/// `DELETE /{pnid}/username`.
pub fn delete(shared: &Arc<Shared>, pnid: &str) -> GraphResult {
    let mut world = shared.world();
    let number = world
        .numbers
        .get_mut(pnid)
        .ok_or_else(|| GraphError::unsupported("delete", pnid))?;
    number.username = None;
    Ok(json!({ "success": true }))
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
            .any(|n| n.username.as_ref().is_some_and(|(u, _)| u == candidate))
    };
    let list: Vec<Value> = [
        base.clone(),
        format!("{base}_official"),
        format!("{base}_hq"),
        format!("the_{base}"),
    ]
    .into_iter()
    .filter(|c| format_problem(c).is_none() && !RESERVED.contains(&c.as_str()) && !taken(c))
    .map(Value::String)
    .collect();
    Ok(json!({ "data": [ { "username_suggestions": list } ] }))
}

#[cfg(test)]
mod tests {
    use super::format_problem;

    #[test]
    fn meta_username_rules() {
        assert_eq!(format_problem("kapso_support"), None);
        assert_eq!(format_problem("kapso.ai.team"), None);
        assert!(format_problem("ab").is_some());
        assert!(format_problem("1234").is_some());
        assert!(format_problem(".kapso").is_some());
        assert!(format_problem("kap..so").is_some());
        assert!(format_problem("wwwkapso").is_some());
        assert!(format_problem("kapso.com").is_some());
        assert!(format_problem("kapso-x").is_some());
    }
}
