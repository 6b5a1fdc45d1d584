//! The control API under `/_sandbox`: no auth (a local tool). It injects webhooks, adds numbers,
//! sets knobs ([`super::knobs`]) and exposes what the emulator saw (requests, sends, deliveries,
//! and each number's send rate in [`super::send_log`]).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use super::state::{World, SENT_CAPACITY};
use super::webhooks::{merge, Signature};
use super::{events, inbound, request_log, usernames, SandboxNumber, Shared};

/// A control API error: `{"error": "<message>"}` with a 4xx status.
#[derive(Debug)]
pub struct ControlError(pub StatusCode, pub String);

impl ControlError {
    pub fn bad(message: impl Into<String>) -> Self {
        Self(StatusCode::BAD_REQUEST, message.into())
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self(StatusCode::NOT_FOUND, message.into())
    }
}

impl IntoResponse for ControlError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

/// An envelope ready to send, and the WABA whose webhook target receives it.
pub struct Built {
    pub waba: Option<String>,
    pub envelope: Value,
}

type Shr = State<Arc<Shared>>;
type ControlResult = Result<Json<Value>, ControlError>;

pub fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route(
            "/_sandbox/health",
            get(|| async { Json(json!({ "status": "ok" })) }),
        )
        .route("/_sandbox/inbound", post(inject_inbound))
        .route("/_sandbox/statuses", post(inject_statuses))
        .route("/_sandbox/calls", post(inject_calls).get(list_calls))
        .route("/_sandbox/username_update", post(inject_username_update))
        .route("/_sandbox/user_id_update", post(inject_user_id_update))
        .route("/_sandbox/usernames/launch", post(launch_usernames))
        .route("/_sandbox/batch", post(inject_batch))
        .route("/_sandbox/raw", post(inject_raw))
        .route("/_sandbox/events/{field}", post(inject_platform_event))
        .route("/_sandbox/numbers", post(add_number).get(list_numbers))
        .route(
            "/_sandbox/numbers/{pnid}/throughput_upgrade",
            post(throughput_upgrade),
        )
        .route(
            "/_sandbox/requests",
            get(list_requests).delete(clear_requests),
        )
        .route("/_sandbox/sent", get(list_sent).delete(clear_sent))
        .route(
            "/_sandbox/deliveries",
            get(list_deliveries).delete(clear_deliveries),
        )
        .route(
            "/_sandbox/webhook_url",
            get(get_webhook_url).post(set_webhook_url),
        )
        .merge(super::knobs::routes())
        .merge(super::send_log::routes())
        .merge(super::twilio::control_routes())
        .merge(super::signup::routes())
        .route_layer(axum::middleware::from_fn(loopback_only))
}

/// The control API changes what the emulator says and where its webhooks go, without any
/// credential: it answers callers on this machine only, even when the emulator listens on
/// another address (`wagate sandbox --listen 0.0.0.0:…`).
async fn loopback_only(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let peer = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|info| info.0.ip());
    match peer {
        Some(ip) if !ip.is_loopback() => (
            axum::http::StatusCode::FORBIDDEN,
            Json(
                json!({ "error": "the sandbox control API answers callers on this machine only" }),
            ),
        )
            .into_response(),
        _ => next.run(request).await,
    }
}

/// Parses a JSON body ourselves so malformed input answers in the control API's shape.
pub(super) fn parse(body: &[u8]) -> Result<Value, ControlError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    serde_json::from_slice(body).map_err(|e| ControlError::bad(format!("invalid JSON body: {e}")))
}

fn host(headers: &HeaderMap) -> String {
    headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost")
        .to_owned()
}

/// `"deliver": false` builds without sending.
fn wants_delivery(body: &Value) -> bool {
    body.get("deliver").and_then(Value::as_bool).unwrap_or(true)
}

/// Sends (unless told not to) and answers `{"envelope","webhook_status","webhook_error"?}`.
async fn respond(
    shared: &Shared,
    built: Built,
    deliver: bool,
    signature: Signature,
) -> ControlResult {
    let mut answer = json!({ "envelope": built.envelope, "webhook_status": null });
    if deliver {
        let delivery = shared
            .deliver_signed(built.waba.as_deref(), &built.envelope, &signature)
            .await;
        answer["webhook_status"] = json!(delivery.webhook_status);
        if let Some(error) = delivery.webhook_error {
            answer["webhook_error"] = json!(error);
        }
    }
    Ok(Json(answer))
}

/// Builds under the world lock, then releases it before any network I/O.
async fn inject(
    shared: &Shared,
    body: &[u8],
    build: impl FnOnce(&mut World, &Value) -> Result<Built, ControlError>,
) -> ControlResult {
    let body = parse(body)?;
    let built = build(&mut shared.world(), &body)?;
    respond(shared, built, wants_delivery(&body), Signature::AppSecret).await
}

async fn inject_inbound(
    State(shared): Shr,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> ControlResult {
    let host = host(&headers);
    inject(&shared, &body, |world, body| {
        inbound::build(world, &host, body)
    })
    .await
}

async fn inject_statuses(State(shared): Shr, body: bytes::Bytes) -> ControlResult {
    inject(&shared, &body, events::statuses).await
}

async fn inject_calls(State(shared): Shr, body: bytes::Bytes) -> ControlResult {
    inject(&shared, &body, events::calls).await
}

async fn inject_username_update(State(shared): Shr, body: bytes::Bytes) -> ControlResult {
    inject(&shared, &body, events::username_update).await
}

async fn inject_user_id_update(State(shared): Shr, body: bytes::Bytes) -> ControlResult {
    inject(&shared, &body, events::user_id_update).await
}

/// `POST /_sandbox/usernames/launch` `{"phone_number_id"?}`: usernames launch (everywhere, or
/// for one number): every `reserved` username becomes `approved`, each with its
/// `business_username_updates` webhook, and later claims are approved at once. Answers
/// `{"launched", "approved": [{"phone_number_id", "username", "webhook_status", …}]}`.
async fn launch_usernames(State(shared): Shr, body: bytes::Bytes) -> ControlResult {
    let body = parse(&body)?;
    let only = match body.get("phone_number_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(pnid)) => Some(pnid.clone()),
        Some(_) => return Err(ControlError::bad("phone_number_id must be a string")),
    };
    let webhooks = {
        let mut world = shared.world();
        if let Some(pnid) = &only {
            if !world.numbers.contains_key(pnid) {
                return Err(ControlError::not_found(format!(
                    "unknown phone_number_id {pnid}"
                )));
            }
        } else {
            world.usernames_launched = true;
        }
        usernames::launch(&mut world, only.as_deref())
    };
    let mut approved = Vec::with_capacity(webhooks.len());
    for webhook in webhooks {
        let delivery = shared.deliver(Some(&webhook.waba), &webhook.envelope).await;
        let mut item = json!({
            "phone_number_id": webhook.phone_number_id,
            "username": webhook.username,
            "webhook_status": delivery.webhook_status,
        });
        if let Some(error) = delivery.webhook_error {
            item["webhook_error"] = json!(error);
        }
        approved.push(item);
    }
    let launched = shared.world().usernames_launched;
    Ok(Json(json!({ "launched": launched, "approved": approved })))
}

/// The first entry's `id`, when it is a WABA, picks the webhook target (its override, if any).
fn first_entry_waba(envelope: &Value) -> Option<String> {
    envelope["entry"][0]["id"].as_str().map(str::to_owned)
}

/// `POST /_sandbox/batch` `{"envelopes":[…]}`: each item is a built envelope (has `entry`) or a
/// request of another injection route with `"kind"` = inbound (default), statuses, calls,
/// username_update, user_id_update. All are merged into one envelope, sent once.
async fn inject_batch(State(shared): Shr, headers: HeaderMap, body: bytes::Bytes) -> ControlResult {
    let body = parse(&body)?;
    let items = body
        .get("envelopes")
        .and_then(Value::as_array)
        .filter(|e| !e.is_empty())
        .ok_or_else(|| ControlError::bad("envelopes must be a non-empty array"))?;
    let host = host(&headers);
    let envelopes = {
        let mut world = shared.world();
        let mut envelopes = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            if item.get("entry").is_some() {
                envelopes.push(item.clone());
                continue;
            }
            let built = match item
                .get("kind")
                .and_then(Value::as_str)
                .unwrap_or("inbound")
            {
                "inbound" => inbound::build(&mut world, &host, item),
                "statuses" => events::statuses(&mut world, item),
                "calls" => events::calls(&mut world, item),
                "username_update" => events::username_update(&mut world, item),
                "user_id_update" => events::user_id_update(&mut world, item),
                other => Err(ControlError::bad(format!("unknown kind \"{other}\""))),
            }
            .map_err(|e| ControlError(e.0, format!("envelopes[{i}]: {}", e.1)))?;
            envelopes.push(built.envelope);
        }
        envelopes
    };
    let envelope = merge(envelopes).map_err(ControlError::bad)?;
    let built = Built {
        waba: first_entry_waba(&envelope),
        envelope,
    };
    respond(&shared, built, wants_delivery(&body), Signature::AppSecret).await
}

/// `POST /_sandbox/numbers/{pnid}/throughput_upgrade`: Meta upgrades the number to `HIGH`
/// throughput. With the `limits` knob on, its sends answer `131057` for `limits.upgrade_ms`;
/// then the number is `HIGH` and its `THROUGHPUT_UPGRADE` webhook is delivered.
async fn throughput_upgrade(
    State(shared): Shr,
    axum::extract::Path(pnid): axum::extract::Path<String>,
) -> ControlResult {
    let wait = {
        let mut world = shared.world();
        if !world.numbers.contains_key(&pnid) {
            return Err(ControlError::not_found(format!(
                "unknown phone_number_id {pnid}"
            )));
        }
        let wait = std::time::Duration::from_millis(world.knobs.limits.upgrade_ms);
        world
            .limiter
            .start_upgrade(&pnid, std::time::Instant::now() + wait);
        wait
    };
    let task = shared.clone();
    let number = pnid.clone();
    tokio::spawn(async move {
        tokio::time::sleep(wait).await;
        let built = {
            let mut world = task.world();
            world.limiter.finish_upgrade(&number);
            super::platform_events::build(
                &mut world,
                "phone_number_quality_update",
                &json!({"phone_number_id": number,
                    "value": {"event": "THROUGHPUT_UPGRADE", "current_limit": "TIER_UNLIMITED"}}),
            )
        };
        if let Ok(built) = built {
            task.deliver(built.waba.as_deref(), &built.envelope).await;
        }
    });
    Ok(Json(
        json!({ "phone_number_id": pnid, "upgrading_for_ms": wait.as_millis() as u64 }),
    ))
}

async fn inject_platform_event(
    State(shared): Shr,
    axum::extract::Path(field): axum::extract::Path<String>,
    body: bytes::Bytes,
) -> ControlResult {
    inject(&shared, &body, |world, body| {
        super::platform_events::build(world, &field, body)
    })
    .await
}

/// `POST /_sandbox/raw` `{"envelope": any, "signature"?: "sha256=…" | null}`: sent as is,
/// signed with the app secret unless `signature` overrides (a string) or omits (null) it.
async fn inject_raw(State(shared): Shr, body: bytes::Bytes) -> ControlResult {
    let body = parse(&body)?;
    let envelope = body
        .get("envelope")
        .cloned()
        .ok_or_else(|| ControlError::bad("envelope is required"))?;
    let signature = match body.get("signature") {
        None => Signature::AppSecret,
        Some(Value::Null) => Signature::Omit,
        Some(Value::String(s)) => Signature::Fixed(s.clone()),
        Some(_) => return Err(ControlError::bad("signature must be a string or null")),
    };
    let built = Built {
        waba: first_entry_waba(&envelope),
        envelope,
    };
    respond(&shared, built, wants_delivery(&body), signature).await
}

/// `POST /_sandbox/numbers`: the [`SandboxNumber`] fields (display number and verified name
/// optional) plus `registered` (default true).
async fn add_number(
    State(shared): Shr,
    body: bytes::Bytes,
) -> Result<(StatusCode, Json<Value>), ControlError> {
    let body = parse(&body)?;
    let text = |key: &str| body.get(key).and_then(Value::as_str).map(str::to_owned);
    let required =
        |key: &str| text(key).ok_or_else(|| ControlError::bad(format!("{key} is required")));
    let pnid = required("phone_number_id")?;
    let number = SandboxNumber {
        display_phone_number: text("display_phone_number").unwrap_or_else(|| {
            let tail: String = pnid
                .chars()
                .skip(pnid.chars().count().saturating_sub(7))
                .collect();
            format!("+1 555-{tail}")
        }),
        verified_name: text("verified_name").unwrap_or_else(|| "wagate sandbox".into()),
        business_account_id: required("business_account_id")?,
        access_token: required("access_token")?,
        phone_number_id: pnid,
    };
    let registered = body
        .get("registered")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    shared
        .world()
        .add_number(number.clone(), registered)
        .map_err(ControlError::bad)?;
    let mut answer = serde_json::to_value(&number).unwrap_or_default();
    answer["registered"] = json!(registered);
    Ok((StatusCode::CREATED, Json(answer)))
}

async fn list_numbers(State(shared): Shr) -> Json<Value> {
    let world = shared.world();
    let data: Vec<Value> = world
        .numbers
        .values()
        .map(|n| {
            let mut number = serde_json::to_value(&n.info).unwrap_or_default();
            number["registered"] = json!(n.registered);
            number["username"] = json!(n.username);
            number["username_status"] = json!(n.username_status);
            number
        })
        .collect();
    Json(json!({ "data": data }))
}

async fn list_requests(
    State(shared): Shr,
    Query(query): Query<HashMap<String, String>>,
) -> Json<Value> {
    let limit = query
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(request_log::CAPACITY)
        .min(request_log::CAPACITY);
    Json(json!({ "data": shared.requests.list(limit) }))
}

async fn clear_requests(State(shared): Shr) -> Json<Value> {
    shared.requests.clear();
    Json(json!({ "success": true }))
}

/// `GET /_sandbox/sent?phone_number_id=&limit=`: accepted sends, oldest first.
async fn list_sent(
    State(shared): Shr,
    Query(query): Query<HashMap<String, String>>,
) -> Json<Value> {
    let limit = query
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(SENT_CAPACITY);
    let world = shared.world();
    let matching: Vec<Value> = world
        .sent
        .iter()
        .filter(|m| {
            query
                .get("phone_number_id")
                .is_none_or(|p| *p == m.phone_number_id)
        })
        .map(|m| serde_json::to_value(m).unwrap_or_default())
        .collect();
    let skip = matching.len().saturating_sub(limit);
    Json(json!({ "data": matching[skip..] }))
}

async fn clear_sent(State(shared): Shr) -> Json<Value> {
    shared.world().sent.clear();
    Json(json!({ "success": true }))
}

async fn list_deliveries(State(shared): Shr) -> Json<Value> {
    Json(json!({ "data": shared.deliveries.list() }))
}

async fn clear_deliveries(State(shared): Shr) -> Json<Value> {
    shared.deliveries.clear();
    Json(json!({ "success": true }))
}

/// `GET /_sandbox/calls`: calls the emulator knows and their state.
async fn list_calls(State(shared): Shr) -> Json<Value> {
    let world = shared.world();
    let data: Vec<Value> = world
        .calls
        .iter()
        .map(|(id, c)| json!({ "id": id, "phone_number_id": c.phone_number_id, "user": c.to, "status": c.status }))
        .collect();
    Json(json!({ "data": data }))
}

async fn get_webhook_url(State(shared): Shr) -> Json<Value> {
    Json(json!({ "webhook_url": shared.webhook_url() }))
}

/// `POST /_sandbox/webhook_url` `{"webhook_url": "http://…" | null}`.
async fn set_webhook_url(State(shared): Shr, body: bytes::Bytes) -> ControlResult {
    let body = parse(&body)?;
    let url = match body.get("webhook_url") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => {
            let parsed = url::Url::parse(s)
                .map_err(|e| ControlError::bad(format!("invalid webhook_url: {e}")))?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(ControlError::bad("webhook_url must be http or https"));
            }
            Some(s.clone())
        }
        Some(_) => return Err(ControlError::bad("webhook_url must be a string or null")),
    };
    shared.set_webhook_url(url.clone());
    Ok(Json(json!({ "webhook_url": url })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_accepts_empty_and_rejects_garbage() {
        assert_eq!(parse(b"").ok(), Some(json!({})));
        assert!(parse(b"{").is_err());
    }

    #[tokio::test]
    async fn the_control_api_answers_loopback_callers_only() {
        use tower::ServiceExt as _;
        let router = crate::sandbox::Sandbox::new(crate::sandbox::SandboxConfig::demo()).router();
        let from = |peer: &str| {
            let mut request = axum::http::Request::builder()
                .method("POST")
                .uri("/_sandbox/webhook_url")
                .header("content-type", "application/json")
                .body(axum::body::Body::from(
                    r#"{"url":"http://attacker.example/hook"}"#,
                ))
                .unwrap();
            request.extensions_mut().insert(axum::extract::ConnectInfo(
                peer.parse::<std::net::SocketAddr>().unwrap(),
            ));
            request
        };
        let remote = router
            .clone()
            .oneshot(from("203.0.113.9:4000"))
            .await
            .unwrap();
        assert_eq!(remote.status(), 403);
        let local = router.oneshot(from("127.0.0.1:4000")).await.unwrap();
        assert_eq!(local.status(), 200);
    }
}
