//! The Twilio double's control routes (accounts, owned numbers, stock) and its inbound side:
//! SMS and calls to owned numbers, posted to their URLs and signed as Twilio signs them.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::rest::{new_incoming, NumberForm};
use super::{hex32, in_stock_range, Incoming, TwilioAccount};
use crate::sandbox::Shared;
use crate::telephony::{e164, signature};

/// The test-facing routes (mounted under the control API's loopback rule).
pub fn control_routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/_sandbox/twilio/accounts", post(create_account))
        .route("/_sandbox/twilio/accounts/{sid}/numbers", post(give_number))
        .route("/_sandbox/twilio/stock/{country}", put(set_stock))
        .route("/_sandbox/twilio/sms", post(inject_sms))
        .route("/_sandbox/twilio/call", post(inject_call))
        .route("/_sandbox/twilio/deliveries", get(deliveries))
}

async fn create_account(State(shared): State<Arc<Shared>>) -> Response {
    let account = TwilioAccount::generate();
    shared
        .twilio()
        .accounts
        .insert(account.account_sid.clone(), account.auth_token.clone());
    (
        StatusCode::CREATED,
        Json(json!({"account_sid": account.account_sid, "auth_token": account.auth_token})),
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
struct GiveNumber {
    phone_number: String,
    sms_url: Option<String>,
    voice_url: Option<String>,
}

async fn give_number(
    State(shared): State<Arc<Shared>>,
    Path(sid): Path<String>,
    Json(input): Json<GiveNumber>,
) -> Response {
    let mut world = shared.twilio();
    if !world.accounts.contains_key(&sid) {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"error": "no such account"})),
        )
            .into_response();
    }
    let Some(parsed) = e164::parse(&input.phone_number) else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "phone_number must be E.164"})),
        )
            .into_response();
    };
    if world.owned(&parsed.e164).is_some() {
        return (
            StatusCode::CONFLICT,
            Json(json!({"error": "the number is owned already"})),
        )
            .into_response();
    }
    let form = NumberForm {
        sms_url: input.sms_url,
        voice_url: input.voice_url,
        ..NumberForm::default()
    };
    let incoming = new_incoming(&sid, &parsed.e164, &form);
    let body = incoming.json();
    world.numbers.insert(incoming.sid.clone(), incoming);
    (StatusCode::CREATED, Json(body)).into_response()
}

#[derive(Debug, Deserialize)]
struct Stock {
    available: bool,
}

async fn set_stock(
    State(shared): State<Arc<Shared>>,
    Path(country): Path<String>,
    Json(stock): Json<Stock>,
) -> Json<Value> {
    let country = country.to_ascii_uppercase();
    let mut world = shared.twilio();
    if stock.available {
        world.stock_off.remove(&country);
    } else {
        world.stock_off.insert(country.clone());
    }
    Json(json!({"country_iso": country, "available": stock.available}))
}

/// Posts a signed form to `url` as Twilio does; the receiver's status and body.
pub(super) async fn post_signed(
    shared: &Shared,
    token: &str,
    url: &str,
    params: Vec<(String, String)>,
) -> Result<(u16, String), String> {
    let signature = signature::sign(token, url, &params);
    let result = shared
        .http
        .post(url)
        .header("x-twilio-signature", signature)
        .header("user-agent", "TwilioProxy/1.1")
        .form(&params)
        .send()
        .await;
    let entry = |status: Option<u16>| json!({"url": url, "params": params.iter().cloned().collect::<BTreeMap<_, _>>(), "status": status});
    match result {
        Ok(response) => {
            let status = response.status().as_u16();
            shared.twilio().deliveries.push(entry(Some(status)));
            Ok((status, response.text().await.unwrap_or_default()))
        }
        Err(error) => {
            shared.twilio().deliveries.push(entry(None));
            Err(error.without_url().to_string())
        }
    }
}

/// What a delivery to an owned number found: its account token and URLs.
fn route_to(shared: &Shared, to: &str) -> Option<(Incoming, String)> {
    let world = shared.twilio();
    let incoming = world.owned(to)?.clone();
    let token = world.token(&incoming.account_sid)?;
    Some((incoming, token))
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Why an inbound delivery did not happen.
#[derive(Debug)]
pub(crate) enum Undelivered {
    /// The double owns no such number, or it has no URL for this traffic.
    NoRoute(String),
    /// The receiver could not be reached.
    Unreachable(String),
}

/// Sends an SMS to an owned number's `SmsUrl`; the receiver's HTTP status.
pub(crate) async fn deliver_sms(
    shared: &Shared,
    to: &str,
    from: &str,
    body: &str,
) -> Result<u16, Undelivered> {
    let (incoming, token) = route_to(shared, to)
        .ok_or_else(|| Undelivered::NoRoute(format!("the Twilio double owns no number {to}")))?;
    if incoming.sms_url.is_empty() {
        return Err(Undelivered::NoRoute(format!("{to} has no SmsUrl")));
    }
    let sid = format!("SM{}", hex32());
    let params = pairs(&[
        ("MessageSid", &sid),
        ("SmsSid", &sid),
        ("SmsMessageSid", &sid),
        ("AccountSid", &incoming.account_sid),
        ("From", from),
        ("To", to),
        ("Body", body),
        ("NumMedia", "0"),
        ("NumSegments", "1"),
        ("SmsStatus", "received"),
        ("ApiVersion", "2010-04-01"),
        ("ToCountry", in_stock_range(to).unwrap_or("US")),
        ("FromCountry", "US"),
    ]);
    post_signed(shared, &token, &incoming.sms_url, params)
        .await
        .map(|(status, _)| status)
        .map_err(Undelivered::Unreachable)
}

/// The `transcribeCallback` of a `<Record>` verb in a TwiML answer, resolved against `base`.
pub(super) fn transcribe_callback(twiml: &str, base: &str) -> Option<String> {
    let record = &twiml[twiml.find("<Record")?..];
    let record = &record[..record.find('>')?];
    let start = record.find("transcribeCallback=\"")? + "transcribeCallback=\"".len();
    let value = &record[start..];
    let raw = value[..value.find('"')?].replace("&amp;", "&");
    url::Url::parse(base)
        .and_then(|b| b.join(&raw))
        .map(String::from)
        .ok()
}

/// Rings an owned number (its `VoiceUrl`) and, when the answer records with a transcription
/// callback, posts `transcript` to it; (voice status, transcription status).
pub(crate) async fn deliver_call(
    shared: &Shared,
    to: &str,
    from: &str,
    transcript: &str,
) -> Result<(u16, Option<u16>), Undelivered> {
    let (incoming, token) = route_to(shared, to)
        .ok_or_else(|| Undelivered::NoRoute(format!("the Twilio double owns no number {to}")))?;
    if incoming.voice_url.is_empty() {
        return Err(Undelivered::NoRoute(format!("{to} has no VoiceUrl")));
    }
    let call = format!("CA{}", hex32());
    let params = pairs(&[
        ("CallSid", &call),
        ("AccountSid", &incoming.account_sid),
        ("From", from),
        ("To", to),
        ("CallStatus", "ringing"),
        ("Direction", "inbound"),
        ("ApiVersion", "2010-04-01"),
    ]);
    let (status, twiml) = post_signed(shared, &token, &incoming.voice_url, params)
        .await
        .map_err(Undelivered::Unreachable)?;
    let Some(callback) = transcribe_callback(&twiml, &incoming.voice_url) else {
        return Ok((status, None));
    };
    let recording = format!("RE{}", hex32());
    let params = pairs(&[
        ("TranscriptionSid", &format!("TR{}", hex32())),
        ("TranscriptionText", transcript),
        ("TranscriptionStatus", "completed"),
        ("RecordingSid", &recording),
        (
            "RecordingUrl",
            &format!(
                "https://api.twilio.com/2010-04-01/Accounts/{}/Recordings/{recording}",
                incoming.account_sid
            ),
        ),
        ("CallSid", &call),
        ("AccountSid", &incoming.account_sid),
        ("From", from),
        ("To", to),
    ]);
    let (transcribed, _) = post_signed(shared, &token, &callback, params)
        .await
        .map_err(Undelivered::Unreachable)?;
    Ok((status, Some(transcribed)))
}

fn undelivered(error: Undelivered) -> Response {
    match error {
        Undelivered::NoRoute(message) => (StatusCode::NOT_FOUND, Json(json!({"error": message}))),
        Undelivered::Unreachable(message) => {
            (StatusCode::BAD_GATEWAY, Json(json!({"error": message})))
        }
    }
    .into_response()
}

#[derive(Debug, Deserialize)]
struct InjectSms {
    to: String,
    from: Option<String>,
    body: String,
}

async fn inject_sms(State(shared): State<Arc<Shared>>, Json(input): Json<InjectSms>) -> Response {
    let from = input.from.unwrap_or_else(|| "+15005550006".into());
    match deliver_sms(&shared, &input.to, &from, &input.body).await {
        Ok(status) => Json(json!({"delivered": true, "status": status})).into_response(),
        Err(error) => undelivered(error),
    }
}

#[derive(Debug, Deserialize)]
struct InjectCall {
    to: String,
    from: Option<String>,
    transcript: String,
}

async fn inject_call(State(shared): State<Arc<Shared>>, Json(input): Json<InjectCall>) -> Response {
    let from = input.from.unwrap_or_else(|| "+15005550006".into());
    match deliver_call(&shared, &input.to, &from, &input.transcript).await {
        Ok((voice, transcription)) => Json(json!({"delivered": true, "voice_status": voice,
            "transcription_status": transcription}))
        .into_response(),
        Err(error) => undelivered(error),
    }
}

async fn deliveries(State(shared): State<Arc<Shared>>) -> Json<Value> {
    Json(json!({"data": shared.twilio().deliveries.clone()}))
}
