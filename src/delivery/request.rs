//! One delivery request: the guarded HTTP client, the signed POST (Meta's or Kapso's headers),
//! and the answer read back within bounds, with transport errors worded for operators.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use secrecy::ExposeSecret as _;

use super::schedule::parse_retry_after;
use crate::config::DeliveryConfig;
use crate::destination_guard::{GuardedResolver, ResolvedToForbidden};
use crate::store::ClaimedDelivery;

/// Builds the delivery HTTP client: guarded DNS, no redirects, no environment proxy (a proxy
/// would resolve names itself, past the guard), bounded timeouts.
pub fn client(config: &DeliveryConfig) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .dns_resolver(Arc::new(GuardedResolver {
            allow_private_networks: config.allow_private_networks,
        }))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(config.request_timeout)
        .connect_timeout(config.connect_timeout)
        .pool_max_idle_per_host(config.per_destination)
        .user_agent(concat!("wagate/", env!("CARGO_PKG_VERSION")))
        .build()?)
}

pub(super) async fn post(
    client: &reqwest::Client,
    url: url::Url,
    claimed: &ClaimedDelivery,
    target: &Ready,
    excerpt_limit: usize,
) -> Result<Answer, String> {
    let row = &claimed.row;
    let body = claimed.payload.clone();
    let mut request = client.post(url);
    // Custom headers first: the ones wagate sets below win (they are also refused on write).
    for (name, value) in &target.headers {
        request = request.header(name.as_str(), value.as_str());
    }
    request = request
        .header("content-type", "application/json")
        .header("x-idempotency-key", &row.idempotency_key)
        .header("x-wagate-delivery-id", row.id.to_string())
        .header("x-wagate-attempt", (row.attempts + 1).to_string());
    if let Some(event_id) = row.event_id {
        request = request.header("x-wagate-event-id", event_id.to_string());
    }
    request = match &target.signing {
        Signing::Meta(secret) => request.header(
            "x-hub-signature-256",
            crate::crypto::hub_signature(secret.expose_secret().as_bytes(), &body),
        ),
        Signing::Kapso(secret) => {
            let mut request = request
                .header(
                    "x-webhook-signature",
                    crate::crypto::hmac_sha256_hex(secret.expose_secret().as_bytes(), &body),
                )
                .header("x-webhook-payload-version", "v2");
            if let Some(event) = &row.event_type {
                request = request.header("x-webhook-event", event);
            }
            if row.batch_size > 1 || is_batch(&body) {
                request = request
                    .header("x-webhook-batch", "true")
                    .header("x-batch-size", row.batch_size.to_string());
            }
            request
        }
        Signing::Missing(why) => return Err((*why).to_owned()),
    };
    let response = request.body(body).send().await.map_err(describe)?;
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, SystemTime::now()));
    let excerpt = read_excerpt(response, excerpt_limit).await;
    Ok(Answer {
        status,
        retry_after,
        excerpt,
    })
}

/// A batch body (`{"type", "batch": true, "data": […]}`); a batch of one is still a batch.
fn is_batch(body: &[u8]) -> bool {
    body.starts_with(br#"{"type":"#)
}

pub(super) struct Ready {
    pub(super) url: String,
    pub(super) headers: Vec<(String, String)>,
    pub(super) signing: Signing,
}

pub(super) enum Signing {
    /// `X-Hub-Signature-256` with the number's webhook secret (Meta's payload).
    Meta(secrecy::SecretString),
    /// `X-Webhook-Signature`, hex HMAC-SHA256 with the webhook's `secret_key`.
    Kapso(secrecy::SecretString),
    /// No usable secret: the attempt fails with this reason.
    Missing(&'static str),
}

pub(super) struct Answer {
    pub(super) status: u16,
    pub(super) retry_after: Option<Duration>,
    pub(super) excerpt: String,
}

/// Reads at most `limit` bytes of the answer (a receiver may send a huge body).
async fn read_excerpt(mut response: reqwest::Response, limit: usize) -> String {
    let mut bytes = Vec::new();
    while bytes.len() < limit {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            _ => break,
        }
    }
    bytes.truncate(limit);
    // PostgreSQL text cannot hold NUL: one such answer would fail the finisher's whole batch.
    String::from_utf8_lossy(&bytes).replace('\0', "\u{FFFD}")
}

/// A transport error in words an operator acts on.
fn describe(error: reqwest::Error) -> String {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&error);
    while let Some(e) = source {
        if let Some(refused) = e.downcast_ref::<ResolvedToForbidden>() {
            return format!("destination refused: {refused}");
        }
        source = e.source();
    }
    // Connection failures get one wording whatever their cause: "refused" against "timed out"
    // would let a tenant map which ports of a host are open, through its delivery log.
    if error.is_connect() {
        "could not connect to the destination (refused, unreachable or timed out)".into()
    } else if error.is_timeout() {
        "timed out waiting for the answer (delivery.request_timeout)".into()
    } else {
        chain(&error)
    }
}

fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}
