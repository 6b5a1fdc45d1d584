//! Proving that a caller controls the number it connects: Graph must answer for the phone number
//! with the given token, and list it under the given WABA. Without this, any project could claim
//! someone else's phone_number_id and receive its webhooks.

use serde_json::Value;

use super::field_error::FieldError;
use crate::graph::GraphClient;
use crate::store::PhoneNumberDetails;

/// The Graph version used for wagate's own calls.
const VERSION: &str = "v23.0";

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("{}", .0.message)]
    Refused(FieldError),
    #[error("could not reach Graph to verify the number: {0}")]
    Unreachable(String),
}

async fn get(
    graph: &GraphClient,
    token: &str,
    path: &str,
    query: &str,
) -> Result<(u16, Value), VerifyError> {
    let url = graph.url(VERSION, path, Some(query));
    let response = graph
        .http
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .map_err(|e| {
            VerifyError::Unreachable(if e.is_timeout() {
                "timeout".into()
            } else {
                "connection failed".into()
            })
        })?;
    let status = response.status().as_u16();
    let body = response.json::<Value>().await.unwrap_or(Value::Null);
    Ok((status, body))
}

fn graph_message(body: &Value) -> String {
    body.pointer("/error/message")
        .and_then(Value::as_str)
        .unwrap_or("no details")
        .to_owned()
}

/// Checks the token reaches `phone_number_id` (and, when given, that the number belongs to
/// `business_account_id`); returns Meta's details of the number.
pub async fn number(
    graph: &GraphClient,
    token: &str,
    phone_number_id: &str,
    business_account_id: Option<&str>,
) -> Result<PhoneNumberDetails, VerifyError> {
    let (status, node) = get(
        graph,
        token,
        phone_number_id,
        "fields=id,display_phone_number,verified_name,quality_rating,code_verification_status,name_status",
    )
    .await?;
    if status != 200 || node.get("id").and_then(Value::as_str) != Some(phone_number_id) {
        return Err(VerifyError::Refused(FieldError::new(
            "access_token",
            format!("cannot reach phone number {phone_number_id} on Graph ({}); check the token and the id", graph_message(&node)),
        )));
    }
    if let Some(waba) = business_account_id {
        let (status, list) = get(
            graph,
            token,
            &format!("{waba}/phone_numbers"),
            "fields=id&limit=100",
        )
        .await?;
        let listed = list
            .get("data")
            .and_then(Value::as_array)
            .is_some_and(|numbers| {
                numbers
                    .iter()
                    .any(|n| n.get("id").and_then(Value::as_str) == Some(phone_number_id))
            });
        if status != 200 || !listed {
            return Err(VerifyError::Refused(FieldError::new(
                "business_account_id",
                format!("Graph does not list phone number {phone_number_id} under business account {waba}"),
            )));
        }
    }
    let text = |key: &str| node.get(key).and_then(Value::as_str).map(str::to_owned);
    Ok(PhoneNumberDetails {
        display_phone_number: text("display_phone_number"),
        verified_name: text("verified_name"),
        quality_rating: text("quality_rating"),
        code_verification_status: text("code_verification_status"),
        name_status: text("name_status"),
        status: Some("CONNECTED".into()),
        ..PhoneNumberDetails::default()
    })
}
