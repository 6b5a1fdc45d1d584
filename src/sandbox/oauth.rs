//! Embedded-signup plumbing: the OAuth code exchange and `debug_token`, which onboarding uses
//! to turn a code into a token and to find the WABAs that token reaches.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use axum::http::StatusCode;
use serde_json::json;

use super::graph::GraphResult;
use super::graph_errors::GraphError;
use super::{Shared, SANDBOX_APP_ID};

/// Codes the emulator exchanges: `sandbox-code-<phone_number_id>` yields that number's token.
pub const CODE_PREFIX: &str = "sandbox-code-";

fn oauth_error(code: u32, message: &str) -> GraphError {
    GraphError {
        status: StatusCode::BAD_REQUEST,
        kind: "OAuthException",
        code,
        subcode: None,
        message: message.to_owned(),
        details: None,
    }
}

/// `GET /{version}/oauth/access_token?client_id&client_secret&code`.
pub fn exchange_code(shared: &Arc<Shared>, query: &HashMap<String, String>) -> GraphResult {
    let get = |k: &str| query.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let (Some(client_id), Some(secret), Some(code)) =
        (get("client_id"), get("client_secret"), get("code"))
    else {
        return Err(oauth_error(
            100,
            "Missing client_id, client_secret or code parameter.",
        ));
    };
    if client_id != SANDBOX_APP_ID {
        return Err(oauth_error(
            101,
            "Error validating application. Invalid application ID.",
        ));
    }
    if !crate::crypto::constant_time_eq(secret.as_bytes(), shared.app_secret.as_bytes()) {
        return Err(oauth_error(1, "Error validating client secret."));
    }
    let world = shared.world();
    let token = code
        .strip_prefix(CODE_PREFIX)
        .and_then(|pnid| world.numbers.get(pnid))
        .map(|n| n.info.access_token.clone())
        .ok_or_else(|| oauth_error(100, "Invalid verification code format.").with_subcode(36007))?;
    Ok(json!({ "access_token": token, "token_type": "bearer" }))
}

/// `GET /{version}/debug_token?input_token=…`, authenticated with an app token
/// (`<app id>|<app secret>`) or any known token.
pub fn debug_token(
    shared: &Arc<Shared>,
    token: Option<&str>,
    query: &HashMap<String, String>,
) -> GraphResult {
    let Some(token) = token else {
        return Err(GraphError::missing_token());
    };
    let app_token = format!("{SANDBOX_APP_ID}|{}", shared.app_secret);
    let world = shared.world();
    if !crate::crypto::constant_time_eq(token.as_bytes(), app_token.as_bytes())
        && !world.token_known(token)
    {
        return Err(GraphError::invalid_token());
    }
    let Some(input) = query.get("input_token").filter(|t| !t.is_empty()) else {
        return Err(GraphError::param_message(
            "(#100) The parameter input_token is required.",
        ));
    };
    let wabas: BTreeSet<String> = world
        .numbers
        .values()
        .filter(|n| &n.info.access_token == input)
        .map(|n| n.info.business_account_id.clone())
        .collect();
    if wabas.is_empty() {
        return Ok(
            json!({ "data": { "app_id": SANDBOX_APP_ID, "is_valid": false, "scopes": [] } }),
        );
    }
    let targets: Vec<String> = wabas.into_iter().collect();
    Ok(json!({
        "data": {
            "app_id": SANDBOX_APP_ID,
            "type": "SYSTEM_USER",
            "application": "wagate sandbox",
            "data_access_expires_at": 0,
            "expires_at": 0,
            "is_valid": true,
            "scopes": ["whatsapp_business_management", "whatsapp_business_messaging"],
            "granular_scopes": [
                { "scope": "whatsapp_business_management", "target_ids": targets },
                { "scope": "whatsapp_business_messaging", "target_ids": targets },
            ],
        }
    }))
}
