//! Meta's phone-number step of Embedded Signup, for the setup page's simulated sign-in: the
//! customer types a number, Meta sends a six-digit code to it (by SMS or a call, here through the
//! Twilio double when the double owns the number), the customer types the code, and only then is
//! the number Meta's (served, its OAuth code `sandbox-code-<id>` exchangeable). Until then the
//! number does not exist for Graph, so a flow that skips the code cannot connect it.
//!
//! `POST /_sandbox/signup/phone_numbers`, `GET /_sandbox/signup/phone_numbers/{id}`,
//! `POST /_sandbox/signup/phone_numbers/{id}/verify` (control API: loopback callers only).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use rand::Rng as _;
use serde::Deserialize;
use serde_json::json;

use super::graph_errors::GraphError;
use super::state::numeric_id;
use super::twilio::{deliver_call, deliver_sms};
use super::{SandboxNumber, Shared};
use crate::telephony::e164;

/// Wrong codes before the code is void and a new one must be requested.
const MAX_ATTEMPTS: u32 = 5;

/// A number typed in the phone step, not verified yet.
#[derive(Debug, Clone)]
pub struct PendingSignup {
    pub number: SandboxNumber,
    pub code: Option<String>,
    pub attempts: u32,
}

pub fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/_sandbox/signup/phone_numbers", post(add_phone_number))
        .route("/_sandbox/signup/phone_numbers/{id}", get(show))
        .route("/_sandbox/signup/phone_numbers/{id}/verify", post(verify))
}

#[derive(Debug, Deserialize)]
struct PhoneStep {
    phone_number: Option<String>,
    verified_name: Option<String>,
    code_method: Option<String>,
}

fn invalid_parameter(message: &str) -> Response {
    GraphError::param_message(message).into_response()
}

async fn add_phone_number(
    State(shared): State<Arc<Shared>>,
    Json(input): Json<PhoneStep>,
) -> Response {
    let Some(parsed) = input.phone_number.as_deref().and_then(e164::parse) else {
        return invalid_parameter(
            "(#100) Param phone_number must be a valid phone number with its country code",
        );
    };
    let method = match input.code_method.as_deref() {
        None | Some("SMS") => "SMS",
        Some("VOICE") => "VOICE",
        Some(_) => {
            return invalid_parameter("(#100) Param code_method must be one of {SMS, VOICE}")
        }
    };
    let code = format!("{:06}", rand::thread_rng().gen_range(0..1_000_000));
    let pending = {
        let mut world = shared.world();
        let display_taken = world
            .numbers
            .values()
            .map(|n| &n.info)
            .chain(world.signups.values().map(|p| &p.number))
            .any(|n| e164::parse(&n.display_phone_number).is_some_and(|d| d.e164 == parsed.e164));
        if display_taken {
            return invalid_parameter(
                "(#100) This phone number is already registered to a WhatsApp Business account",
            );
        }
        let pnid = numeric_id(15);
        let number = SandboxNumber {
            access_token: format!("sandbox-token-{pnid}"),
            phone_number_id: pnid.clone(),
            business_account_id: numeric_id(15),
            display_phone_number: parsed.display.clone(),
            verified_name: input
                .verified_name
                .unwrap_or_else(|| "wagate sandbox business".into()),
        };
        let pending = PendingSignup {
            number,
            code: Some(code.clone()),
            attempts: 0,
        };
        world.signups.insert(pnid, pending.clone());
        pending
    };
    let spaced: String = code
        .chars()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(" ");
    let sent = if method == "SMS" {
        let body = format!(
            "<#> {}-{} is your WhatsApp Business verification code. Don't share this code with others.",
            &code[..3],
            &code[3..]
        );
        deliver_sms(&shared, &parsed.e164, "+15550100000", &body).await
    } else {
        let transcript =
            format!("Your WhatsApp verification code is {spaced}. Again, your code is {spaced}.");
        deliver_call(&shared, &parsed.e164, "+15550100000", &transcript)
            .await
            .map(|(status, _)| status)
    };
    if let Err(error) = &sent {
        tracing::debug!(
            ?error,
            "sandbox signup: the code was not delivered (read it with GET)"
        );
    }
    let number = &pending.number;
    (
        StatusCode::CREATED,
        Json(json!({
            "phone_number_id": number.phone_number_id,
            "business_account_id": number.business_account_id,
            "display_phone_number": number.display_phone_number,
            "code_sent": sent.is_ok(),
            "code_method": method,
        })),
    )
        .into_response()
}

async fn show(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let world = shared.world();
    if let Some(pending) = world.signups.get(&id) {
        return Json(json!({"phone_number_id": id, "status": "pending", "code": pending.code}))
            .into_response();
    }
    if world.numbers.contains_key(&id) {
        return Json(json!({"phone_number_id": id, "status": "verified", "code": null}))
            .into_response();
    }
    (
        StatusCode::NOT_FOUND,
        Json(json!({"error": "no such pending number"})),
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
struct Verify {
    code: Option<String>,
}

async fn verify(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    Json(input): Json<Verify>,
) -> Response {
    let typed: String = input
        .code
        .unwrap_or_default()
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    let mut world = shared.world();
    let Some(pending) = world.signups.get_mut(&id) else {
        return GraphError::from_code(100, format!("Unknown phone number {id}")).into_response();
    };
    let Some(code) = pending.code.clone() else {
        return invalid_parameter(
            "(#136024) Too many wrong codes: request a new verification code",
        );
    };
    if !crate::crypto::constant_time_eq(typed.as_bytes(), code.as_bytes()) {
        pending.attempts += 1;
        if pending.attempts >= MAX_ATTEMPTS {
            pending.code = None;
        }
        return invalid_parameter(
            "(#136025) Verification code is incorrect. Check the code and try again.",
        );
    }
    let number = world.signups.remove(&id).expect("found above").number;
    if let Err(problem) = world.add_number(number, false) {
        return invalid_parameter(&problem);
    }
    Json(json!({"success": true})).into_response()
}
