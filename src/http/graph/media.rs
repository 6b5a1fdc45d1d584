//! Media downloads through wagate. Graph's media URL needs the number's token, which callers of
//! wagate never hold, so metadata answers (`GET /{media_id}`) get a short-lived signed
//! `download_url` on wagate (also put in `url`, the only field the Python SDK reads), and
//! `GET /meta/whatsapp/media_download?token=…` fetches the bytes from Graph with the token and
//! streams them back.

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::domain::auth::NumberConfig;
use crate::graph::GraphCallError;
use crate::http::graph_error::GraphError;
use crate::http::state::AppState;

/// How long a download link works (Meta's own URLs live 5 minutes).
const LINK_LIFETIME: Duration = Duration::minutes(5);

#[derive(Debug, Serialize, Deserialize)]
struct Claim {
    /// Phone number whose token fetches the media.
    p: String,
    /// Its internal id: a number reconnected elsewhere since is not the same number.
    n: uuid::Uuid,
    /// Graph's URL of the bytes.
    u: String,
    /// Expiry, Unix seconds.
    e: i64,
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
}

fn issue(
    state: &AppState,
    number: &NumberConfig,
    url: &str,
    now: DateTime<Utc>,
) -> (String, DateTime<Utc>) {
    let expires = now + LINK_LIFETIME;
    let claim = serde_json::to_vec(&Claim {
        p: number.phone_number_id.clone(),
        n: number.internal_id,
        u: url.into(),
        e: expires.timestamp(),
    })
    .expect("serialises");
    let signature = state.secrets.sign_link(&claim);
    (
        format!("{}.{}", b64().encode(&claim), b64().encode(signature)),
        expires,
    )
}

fn verify(state: &AppState, token: &str, now: DateTime<Utc>) -> Option<Claim> {
    let (claim, signature) = token.split_once('.')?;
    let claim = b64().decode(claim).ok()?;
    let signature = b64().decode(signature).ok()?;
    if !crate::crypto::constant_time_eq(&state.secrets.sign_link(&claim), &signature) {
        return None;
    }
    let claim: Claim = serde_json::from_slice(&claim).ok()?;
    (claim.e >= now.timestamp()).then_some(claim)
}

/// Adds `download_url` (and points `url` at it) in a Graph media metadata answer for `object_id`.
pub fn rewrite_metadata(
    state: &AppState,
    headers: &HeaderMap,
    number: &NumberConfig,
    object_id: &str,
    mut body: Value,
) -> Value {
    let Some(url) = body.get("url").and_then(Value::as_str).map(str::to_owned) else {
        return body;
    };
    // Only Meta's answer about this very object, pointing at a media host, gets a link.
    if body.get("id").and_then(Value::as_str) != Some(object_id) || !state.graph.is_media_host(&url)
    {
        return body;
    }
    let origin = state.origin.for_request(headers);
    let (token, expires) = issue(state, number, &url, Utc::now());
    let download = format!("{origin}/meta/whatsapp/media_download?token={token}");
    body["download_url"] = Value::String(download.clone());
    body["download_url_expires_at"] = Value::String(crate::time::iso(expires));
    body["url"] = Value::String(download);
    body
}

#[derive(Debug, Deserialize)]
pub struct DownloadQuery {
    token: Option<String>,
}

pub async fn download(
    State(state): State<AppState>,
    Query(query): Query<DownloadQuery>,
) -> Response {
    match fetch(&state, query).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn fetch(state: &AppState, query: DownloadQuery) -> Result<Response, GraphError> {
    let token = query
        .token
        .ok_or_else(|| GraphError::invalid_parameter("token: required"))?;
    let claim = verify(state, &token, Utc::now()).ok_or_else(|| {
        GraphError::invalid_parameter(
            "token: invalid or expired; fetch the media metadata again for a fresh link",
        )
    })?;
    let number = state
        .numbers
        .number(&claim.p)
        .await?
        .filter(|n| n.internal_id == claim.n)
        .ok_or_else(|| GraphError::unreachable_object(&claim.p))?;
    let upstream = state
        .graph
        .download_media(&claim.u, number.authorization.clone())
        .await
        .map_err(|error| match error {
            GraphCallError::Timeout => GraphError::gateway_timeout("Graph did not answer in time"),
            GraphCallError::Connect { detail } => {
                GraphError::bad_gateway(format!("could not fetch the media: {detail}"))
            }
            // The download answers Graph's status as it is; it never refuses.
            GraphCallError::Refused { .. } => GraphError::internal(),
        })?;
    let mut response = Response::builder().status(upstream.status());
    for name in [
        "content-type",
        "content-length",
        "content-disposition",
        "etag",
        "last-modified",
    ] {
        if let Some(value) = upstream.headers().get(name) {
            response = response.header(name, value.clone());
        }
    }
    response
        .body(Body::from_stream(upstream.bytes_stream()))
        .map_err(|_| GraphError::internal())
}
