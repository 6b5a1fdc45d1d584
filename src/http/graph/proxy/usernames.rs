//! The business username API through the proxy (contract.md §8.2, design §9):
//! `GET|POST|DELETE {pnid}/username` (and `GET {pnid}/username_suggestions`, a plain
//! passthrough).
//!
//! A claim is checked against Meta's format rules before Meta is called; a bad one is wagate's own
//! 400 (code 100, the broken rule in `error_data.details`) and never reaches Graph. Meta's answers,
//! errors included, come back unchanged; after a success the number's `username` and
//! `username_status` are recorded from it (the `business_username_updates` webhook updates the
//! same record, in `domain::ingest`).

use axum::http::{HeaderMap, Method};
use serde_json::{Map, Value};

use crate::domain::auth::NumberConfig;
use crate::domain::recorder::Recording;
use crate::domain::usernames;
use crate::http::graph_error::GraphError;
use crate::http::state::AppState;

/// Which username call a request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Get,
    Claim,
    Delete,
}

/// `{pnid}/username` (one trailing slash allowed) on the number the request resolved to.
pub fn op(method: &Method, rest: &str, number: &NumberConfig) -> Option<Op> {
    let path = rest.strip_suffix('/').unwrap_or(rest);
    let edge = path
        .strip_prefix(number.phone_number_id.as_str())?
        .strip_prefix('/')?;
    if edge != "username" {
        return None;
    }
    match *method {
        Method::GET => Some(Op::Get),
        Method::POST => Some(Op::Claim),
        Method::DELETE => Some(Op::Delete),
        _ => None,
    }
}

/// The parameters of a claim, as Graph reads them: the JSON body (or a form body), with query
/// parameters filling in what the body does not give.
fn params(
    headers: &HeaderMap,
    query: Option<&str>,
    body: &[u8],
) -> Result<Map<String, Value>, GraphError> {
    let content_type = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let mut params = if body.iter().all(u8::is_ascii_whitespace) {
        Map::new()
    } else if content_type.starts_with("application/x-www-form-urlencoded") {
        url::form_urlencoded::parse(body)
            .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
            .collect()
    } else {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(map)) => map,
            Ok(_) => {
                return Err(GraphError::invalid_parameter(
                    "body: must be a JSON object such as {\"username\": \"your_name\"}",
                ))
            }
            Err(error) => {
                return Err(GraphError::invalid_parameter(format!(
                    "body: not valid JSON ({error})"
                )))
            }
        }
    };
    if let Some(query) = query {
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            if key != "access_token" && !params.contains_key(key.as_ref()) {
                params.insert(key.into_owned(), Value::String(value.into_owned()));
            }
        }
    }
    Ok(params)
}

/// Checks a claim (`{"username", "transfer_action"?}`); returns the username Meta will be asked
/// for, exactly as given.
pub fn check_claim(
    headers: &HeaderMap,
    query: Option<&str>,
    body: &[u8],
) -> Result<String, GraphError> {
    let params = params(headers, query, body)?;
    let username = match params.get("username") {
        None | Some(Value::Null) => {
            return Err(GraphError::invalid_parameter(
                "username: required (a string such as \"your_business\")",
            ))
        }
        Some(Value::String(name)) => name.clone(),
        Some(other) => {
            return Err(GraphError::invalid_parameter(format!(
                "username: must be a string, got {other}"
            )))
        }
    };
    if let Some(problem) = usernames::problem(&username) {
        return Err(GraphError::invalid_parameter(format!(
            "username: {problem}, got '{username}'"
        )));
    }
    match params.get("transfer_action") {
        None | Some(Value::Null) => {}
        Some(Value::String(action)) if usernames::is_transfer_action(action) => {}
        Some(other) => {
            return Err(GraphError::invalid_parameter(format!(
                "transfer_action: must be none or force_transfer, got {other}"
            )))
        }
    }
    Ok(username)
}

/// What Meta's successful answer says the number's username now is: `(username, status)`.
/// `None` when the answer does not change what wagate knows.
fn update(
    op: Op,
    claimed: Option<&str>,
    answer: &Value,
) -> Option<(Option<String>, Option<String>)> {
    let status = answer
        .get("status")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_ascii_lowercase);
    match op {
        Op::Claim => {
            // A refused request (Meta's older answers say `REJECTED` with a 200) holds nothing.
            if status.as_deref() == Some("rejected") {
                return None;
            }
            Some((claimed.map(str::to_owned), status))
        }
        Op::Delete => {
            if answer.get("success").and_then(Value::as_bool) == Some(false) {
                return None;
            }
            Some((None, Some("deleted".to_owned())))
        }
        Op::Get => {
            if !answer.is_object() || answer.get("error").is_some() {
                return None;
            }
            let username = answer
                .get("username")
                .and_then(Value::as_str)
                .filter(|u| !u.is_empty())
                .map(str::to_owned);
            Some((username, status))
        }
    }
}

/// Records the username state after Meta answered 2xx, through the writer: with the database
/// away it is held (spill file, then memory) like a send; the client gets Meta's answer either
/// way.
pub async fn record(
    state: &AppState,
    number: &NumberConfig,
    op: Op,
    claimed: Option<&str>,
    answer: &[u8],
) {
    let Ok(answer) = serde_json::from_slice::<Value>(answer) else {
        return;
    };
    let Some((username, status)) = update(op, claimed, &answer) else {
        return;
    };
    let recording = Recording::Username {
        number: number.internal_id,
        username,
        status,
        at: crate::store::now(),
    };
    state
        .writer
        .record(recording)
        .await
        .warn_if_held("username change");
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn headers(content_type: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            axum::http::header::CONTENT_TYPE,
            content_type.parse().expect("header value"),
        );
        headers
    }

    #[test]
    fn claims_are_read_from_json_form_or_query() {
        let json_headers = headers("application/json");
        assert_eq!(
            check_claim(&json_headers, None, br#"{"username":"acme_support"}"#).ok(),
            Some("acme_support".into())
        );
        assert_eq!(
            check_claim(
                &headers("application/x-www-form-urlencoded"),
                None,
                b"username=acme.team&transfer_action=force_transfer"
            )
            .ok(),
            Some("acme.team".into())
        );
        assert_eq!(
            check_claim(&json_headers, Some("username=acme_q"), b"").ok(),
            Some("acme_q".into())
        );
        for bad in [
            &b"{nope"[..],
            b"[]",
            b"{}",
            br#"{"username": 5}"#,
            br#"{"username": "acme", "transfer_action": "steal"}"#,
            br#"{"username": "acme", "transfer_action": 1}"#,
            br#"{"username": "acme.com"}"#,
        ] {
            let error = check_claim(&json_headers, None, bad).expect_err("rejected");
            assert_eq!(error.code, 100);
        }
    }

    #[test]
    fn answers_become_state() {
        assert_eq!(
            update(Op::Claim, Some("acme"), &json!({"status": "reserved"})),
            Some((Some("acme".into()), Some("reserved".into())))
        );
        assert_eq!(
            update(Op::Claim, Some("acme"), &json!({"status": "REJECTED"})),
            None
        );
        assert_eq!(
            update(Op::Delete, None, &json!({"success": true})),
            Some((None, Some("deleted".into())))
        );
        assert_eq!(
            update(
                Op::Get,
                None,
                &json!({"username": "acme", "status": "APPROVED"})
            ),
            Some((Some("acme".into()), Some("approved".into())))
        );
        assert_eq!(update(Op::Get, None, &json!({})), Some((None, None)));
    }
}
