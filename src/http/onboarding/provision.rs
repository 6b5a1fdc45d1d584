//! The setup page's provisioned number (`provision_phone_number` links): when the customer picks
//! Dedicated, the page asks for a number (`POST /setup/{token}/provision`), shows it with the
//! instruction to enter it in Meta's phone-number step, and polls
//! `GET /setup/{token}/provisioned` until Meta's verification code has reached the number, which
//! it then shows, without a reload.
//!
//! With `onboarding.simulated_signup` the page also plays Meta's phone step against the
//! emulator (`…/simulated/phone_number`, `…/simulated/verify`): the emulator sends the code to the
//! number through its Twilio double, which is how `serve --sandbox` shows the whole flow.

use std::fmt::Write as _;

use axum::extract::{Path, Request, State};
use axum::http::header::CACHE_CONTROL;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::link::{language, lookup, Lookup};
use super::provision_i18n::{self, ProvisionStrings};
use crate::domain::onboarding::link_problem;
use crate::domain::provisioning::Unavailable;
use crate::graph::GraphCallError;
use crate::http::state::AppState;
use crate::store::{ProvisionedNumber, SetupLinkRow};
use crate::telephony::e164;
use crate::types::escape_html as esc;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/setup/{token}/provision", post(provision))
        .route("/setup/{token}/provisioned", get(provisioned))
        .route(
            "/setup/{token}/simulated/phone_number",
            post(simulated_phone),
        )
        .route("/setup/{token}/simulated/verify", post(simulated_verify))
}

/// Whether the page offers a provisioned number for this link.
pub(super) fn offers_number(link: &SetupLinkRow) -> bool {
    link.provision_phone_number && link.connection_types().contains(&"dedicated")
}

fn answer(status: StatusCode, body: Value) -> Response {
    let mut response = (status, Json(body)).into_response();
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// What the page shows of the number. The code only while the number is reserved for the link.
fn number_json(number: &ProvisionedNumber) -> Value {
    let display = e164::parse(&number.phone_number)
        .map_or_else(|| number.phone_number.clone(), |p| p.display);
    let reserved = number.state == "reserved";
    json!({
        "status": number.state,
        "id": number.id,
        "phone_number": number.phone_number,
        "display_number": display,
        "country_iso": number.country_iso,
        "code": if reserved { number.last_code.as_deref() } else { None },
        "message": if reserved { number.last_message.as_deref() } else { None },
        "code_received_at": number.last_code_at.filter(|_| reserved).map(crate::time::iso),
    })
}

/// The active provisioning link behind `token`, or the answer explaining why there is none.
async fn active_link(state: &AppState, token: &str) -> Result<SetupLinkRow, Response> {
    let link = match lookup(state, token).await {
        Lookup::Found(link) => *link,
        Lookup::Missing => {
            return Err(answer(
                StatusCode::NOT_FOUND,
                json!({"error": "no such setup link"}),
            ))
        }
        Lookup::Unavailable => {
            return Err(answer(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error": "database unavailable; retry"}),
            ))
        }
    };
    if let Some(code) = link_problem(&link, crate::store::now()) {
        return Err(answer(
            StatusCode::GONE,
            json!({"error": "the setup link is no longer active", "error_code": code.as_str()}),
        ));
    }
    if !offers_number(&link) {
        return Err(answer(
            StatusCode::CONFLICT,
            json!({"error": "this setup link does not provision a number"}),
        ));
    }
    Ok(link)
}

async fn provision(
    State(state): State<AppState>,
    Path(token): Path<String>,
    request: Request,
) -> Response {
    let link = match active_link(&state, &token).await {
        Ok(link) => link,
        Err(response) => return response,
    };
    let lang = language(Some(&link), request.headers());
    let inbound_base = state.origin.for_request(request.headers());
    match state.provisioning.reserve(&link, &inbound_base).await {
        Ok(number) => answer(
            StatusCode::OK,
            json!({"status": "reserved", "number": number_json(&number)}),
        ),
        Err(Unavailable::Store(error)) => {
            tracing::error!(setup_link_id = %link.id, %error, "could not reserve a number");
            answer(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error": "database unavailable; retry"}),
            )
        }
        Err(Unavailable::LinkEnded) => answer(
            StatusCode::GONE,
            json!({"error": "the setup link is no longer active"}),
        ),
        Err(why) => {
            tracing::warn!(setup_link_id = %link.id, reason = %why, "no number for a setup link");
            answer(
                StatusCode::OK,
                json!({
                    "status": "unavailable",
                    "message": provision_i18n::strings(lang).unavailable,
                    "reason": why.to_string(),
                }),
            )
        }
    }
}

async fn provisioned(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    let link = match active_link(&state, &token).await {
        Ok(link) => link,
        Err(response) => return response,
    };
    match state.provisioning.reservation(link.id).await {
        Ok(Some(number)) => answer(
            StatusCode::OK,
            json!({"status": "reserved", "number": number_json(&number)}),
        ),
        Ok(None) => answer(StatusCode::OK, json!({"status": "none"})),
        Err(error) => {
            tracing::error!(setup_link_id = %link.id, %error, "could not read the reserved number");
            answer(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error": "database unavailable; retry"}),
            )
        }
    }
}

#[derive(Debug, Default, Deserialize)]
struct SimulatedPhone {
    phone_number: Option<String>,
    code_method: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct SimulatedVerify {
    phone_number_id: Option<String>,
    code: Option<String>,
}

/// A simulated-step body, or the answer refusing the request.
async fn simulated_body<T: serde::de::DeserializeOwned + Default>(
    state: &AppState,
    token: &str,
    request: Request,
) -> Result<T, Response> {
    if !state.config.onboarding.simulated_signup {
        return Err(answer(
            StatusCode::NOT_FOUND,
            json!({"error": "the simulated sign-in is off (onboarding.simulated_signup)"}),
        ));
    }
    active_link(state, token).await?;
    let body = crate::http::body::read_limited(request, state.config.server.json_body_limit)
        .await
        .map_err(|e| answer(StatusCode::BAD_REQUEST, json!({"error": e.to_string()})))?;
    serde_json::from_slice(&body)
        .map_err(|e| answer(StatusCode::BAD_REQUEST, json!({"error": e.to_string()})))
}

fn emulator_error(error: GraphCallError) -> Response {
    let message = match error {
        GraphCallError::Refused { message, .. } => message,
        other => other.to_string(),
    };
    answer(StatusCode::BAD_REQUEST, json!({"error": message}))
}

async fn simulated_phone(
    State(state): State<AppState>,
    Path(token): Path<String>,
    request: Request,
) -> Response {
    let input: SimulatedPhone = match simulated_body(&state, &token, request).await {
        Ok(input) => input,
        Err(response) => return response,
    };
    let method = match input.code_method.as_deref() {
        Some("VOICE") => "VOICE",
        _ => "SMS",
    };
    match state
        .graph
        .emulator_signup_phone(input.phone_number.as_deref().unwrap_or_default(), method)
        .await
    {
        Ok(pending) => answer(
            StatusCode::OK,
            json!({
                "phone_number_id": pending.phone_number_id,
                "business_account_id": pending.business_account_id,
                "code_sent": pending.code_sent,
            }),
        ),
        Err(error) => emulator_error(error),
    }
}

async fn simulated_verify(
    State(state): State<AppState>,
    Path(token): Path<String>,
    request: Request,
) -> Response {
    let input: SimulatedVerify = match simulated_body(&state, &token, request).await {
        Ok(input) => input,
        Err(response) => return response,
    };
    let (Some(pnid), Some(code)) = (input.phone_number_id, input.code) else {
        return answer(
            StatusCode::BAD_REQUEST,
            json!({"error": "phone_number_id and code are required"}),
        );
    };
    match state.graph.emulator_signup_verify(&pnid, code.trim()).await {
        Ok(()) => answer(StatusCode::OK, json!({"verified": true})),
        Err(error) => emulator_error(error),
    }
}

/// The page's section for the provisioned number (hidden until Dedicated is picked), and with
/// the simulated sign-in, Meta's simulated phone step.
pub(super) fn section(lang: &str, simulated: bool) -> String {
    let p: &ProvisionStrings = provision_i18n::strings(lang);
    let mut html = format!(
        "<section class=\"provisioned\" id=\"provisioned\" aria-live=\"polite\" hidden>\n\
         <h2>{}</h2>\n<p class=\"muted\" id=\"provisioned-status\">{}</p>\n\
         <p class=\"number\" id=\"provisioned-number\" dir=\"ltr\"></p>\n\
         <p id=\"provisioned-instruction\" hidden>{}</p>\n\
         <p class=\"code-box\" id=\"provisioned-code-box\" hidden>{}: <strong id=\"provisioned-code\" dir=\"ltr\"></strong></p>\n\
         <p class=\"muted\" id=\"provisioned-waiting\" hidden>{}</p>\n\
         <p class=\"error\" id=\"provisioned-unavailable\" role=\"alert\" hidden></p>\n</section>\n",
        esc(p.number_title),
        esc(p.reserving),
        esc(p.instruction),
        esc(p.code_label),
        esc(p.waiting_code),
    );
    if simulated {
        let _ = write!(
            html,
            "<section class=\"simulated\" id=\"simulated-phone-step\" hidden>\n\
             <h2>{}</h2>\n\
             <label for=\"sim-phone-number\">{}</label><input id=\"sim-phone-number\" dir=\"ltr\" inputmode=\"tel\" autocomplete=\"off\">\n\
             <button type=\"button\" id=\"sim-send-code\">{}</button>\n\
             <p class=\"muted\" id=\"sim-code-sent\" hidden>{}</p>\n\
             <label for=\"sim-code\">{}</label><input id=\"sim-code\" dir=\"ltr\" inputmode=\"numeric\" autocomplete=\"one-time-code\">\n\
             <button type=\"button\" class=\"primary\" id=\"sim-verify\">{}</button>\n</section>\n",
            esc(p.sim_title),
            esc(p.sim_phone_label),
            esc(p.sim_send_code),
            esc(p.sim_code_sent),
            esc(p.code_label),
            esc(p.sim_verify),
        );
    }
    html
}

/// The strings the page's script needs for the provisioned number.
pub(super) fn script_strings(lang: &str) -> Value {
    let p = provision_i18n::strings(lang);
    json!({
        "reserving": p.reserving,
        "unavailable": p.unavailable,
        "code_received": p.code_received,
        "sim_wrong_code": p.sim_wrong_code,
    })
}
