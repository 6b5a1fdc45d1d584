//! The Graph passthrough: what the Graph mounts do with a request that is not a stored-data route.
//!
//! Phases, in the manner of pingora, each a function below:
//! 1. **resolve** the number the request is about, from memory (`resolve`);
//! 2. **classify** the exchange: a username call, a buffered send or call (recorded from its
//!    bodies), a media metadata lookup (its URL rewritten), or a plain stream;
//! 3. **build** the upstream request: strip the caller's credentials and hop-by-hop headers, set
//!    the number's token, buffer or stream the body within its limit;
//! 4. **send** with the shared client;
//! 5. **respond**: stream Graph's answer back unchanged, or buffer it to record or rewrite it.
//!
//! (Addressing and authentication happen before, in `http::graph`.) Only transport failures
//! (502/504) and requests checked before Meta is called (username claims) are wagate's own
//! errors; Meta's errors pass through untouched.

mod headers;
mod pacing;
mod uploads;
mod upstream_metrics;
mod usernames;

use axum::body::Body;
use axum::body::Bytes;
use axum::extract::Request;
use axum::http::header::{
    ACCEPT_ENCODING, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, TRANSFER_ENCODING, USER_AGENT,
};
use axum::http::{HeaderMap, HeaderValue, Method};
use axum::response::Response;
use tower_http::timeout::TimeoutBody;
use tracing::Instrument as _;

use crate::domain::auth::{Caller, NumberConfig};
use crate::domain::envelope::RoutedNumber;
use crate::domain::recorder::Recording;
use crate::http::body::{self as request_body, declared_too_large, BodyError};
use crate::http::graph::path::{query_param, GraphAddress};
use crate::http::graph::resolve::{self, Target};
use crate::http::graph_error::GraphError;
use crate::http::state::AppState;
use crate::types::MetaId;
use upstream_metrics::UpstreamMetrics;

/// Forwards an authenticated request to Graph with the resolved number's token.
pub async fn forward(
    state: &AppState,
    caller: &Caller,
    address: &GraphAddress,
    request: Request,
) -> Result<Response, GraphError> {
    let number = resolve_number(state, caller, address, request.method()).await?;
    let (version, expires) = version_for(state, address)?;
    let exchange = Exchange::classify(request.method(), address, &number);
    let upstream = build_upstream(state, address, &version, &number, exchange, request).await?;
    // Paced before the task below: a caller that hangs up while its send waits for a slot
    // cancels the send.
    let paced = if exchange == Exchange::Send {
        pacing::admit(state, &number, &upstream.request_bytes).await?
    } else {
        None
    };
    let answer = match exchange {
        Exchange::Username(_) | Exchange::Send | Exchange::Call | Exchange::Register => {
            // Finished in their own task: a client that hangs up must not cancel a request Meta
            // may accept, nor the recording of one it did accept. The task keeps the request's
            // span, so what it logs names the request, project and number.
            let state = state.clone();
            let task = async move {
                exchange_and_record(&state, &number, exchange, upstream, paced).await
            };
            tokio::spawn(task.instrument(tracing::Span::current()))
                .await
                .map_err(|_| GraphError::internal())?
        }
        Exchange::Upload => upload_and_keep(state, &number, upstream).await,
        Exchange::MediaLookup => {
            let answer = send(state, upstream.request).await?;
            rewrite_media_answer(state, &upstream.caller_headers, &number, address, answer).await
        }
        Exchange::Stream => send(state, upstream.request).await,
    };
    answer.map(|mut response| {
        if let Some(date) = expires.and_then(|d| HeaderValue::from_str(&d.to_string()).ok()) {
            response
                .headers_mut()
                .insert(axum::http::HeaderName::from_static(VERSION_EXPIRES), date);
        }
        response
    })
}

/// Tells callers when the Graph version they call reaches its end of life.
const VERSION_EXPIRES: &str = "x-wagate-graph-version-expires";

/// The version Graph is asked with (`graph.version_policy`), and the caller's version's end of
/// life when it is near or past.
fn version_for(
    state: &AppState,
    address: &GraphAddress,
) -> Result<(String, Option<chrono::NaiveDate>), GraphError> {
    let asked = address.version();
    match state
        .graph
        .versions
        .check(asked, crate::store::now().date_naive())
    {
        crate::graph::Verdict::Refuse(reason) => {
            metrics::counter!("wagate_graph_version_refused_total").increment(1);
            Err(GraphError::invalid_parameter(&reason))
        }
        crate::graph::Verdict::Forward { version, expires } => {
            if expires.is_some() {
                // Only versions in the table get here, so the label's values are bounded.
                metrics::counter!("wagate_graph_version_expiring_requests_total", "version" => asked.to_owned())
                    .increment(1);
            }
            Ok((version, expires))
        }
    }
}

/// Phase 1: the number the request is about (path segment as number, then as WABA, then
/// `?phone_number_id=`, then the caller's own), named on the request's span.
async fn resolve_number(
    state: &AppState,
    caller: &Caller,
    address: &GraphAddress,
    method: &Method,
) -> Result<std::sync::Arc<NumberConfig>, GraphError> {
    let phone_number_id = query_param(address.query(), "phone_number_id");
    let target = Target {
        object_id: address.object_id(),
        has_edge: address.has_edge(),
        phone_number_id: phone_number_id.as_deref(),
        method: method.as_str(),
    };
    let number = resolve::resolve(&state.numbers, caller, target).await?;
    let span = tracing::Span::current();
    span.record("project_id", tracing::field::display(number.project_id));
    span.record("phone_number_id", number.phone_number_id.as_str());
    Ok(number)
}

/// Phase 2: what kind of exchange this is, which decides how its bodies travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exchange {
    /// `GET|POST|DELETE {pnid}/username`: Meta's answer is recorded on the number; a claim is
    /// checked before Meta sees it.
    Username(usernames::Op),
    /// `POST {id}/messages`: recorded as a sent message.
    Send,
    /// `POST {id}/calls`: recorded as a call.
    Call,
    /// `POST {id}/register`: a success with a `pin` turns the number's two-step PIN on.
    Register,
    /// `POST {id}/media`: streams like everything else; the vault keeps a copy on the way.
    Upload,
    /// `GET /{object}`: possibly media metadata, whose URL only works with the token.
    MediaLookup,
    /// Everything else (media up to 100 MiB included) streams both ways.
    Stream,
}

impl Exchange {
    fn classify(method: &Method, address: &GraphAddress, number: &NumberConfig) -> Self {
        if let Some(op) = usernames::op(method, address.rest(), number) {
            return Self::Username(op);
        }
        if *method == Method::POST {
            let edge = address
                .rest()
                .strip_prefix(address.object_id())
                .and_then(|r| r.strip_prefix('/'));
            match edge {
                Some("messages") => return Self::Send,
                Some("calls") => return Self::Call,
                Some("register") => return Self::Register,
                Some("media") => return Self::Upload,
                _ => {}
            }
        }
        if *method == Method::GET && !address.has_edge() {
            return Self::MediaLookup;
        }
        Self::Stream
    }

    /// Sends, calls and username claims are small JSON recorded from (or checked in) their
    /// bodies, so they are read whole; everything else streams within server.media_body_limit.
    fn buffers_request(self) -> bool {
        matches!(
            self,
            Self::Send | Self::Call | Self::Register | Self::Username(usernames::Op::Claim)
        )
    }
}

/// Phase 3's result: the request for Graph, plus what the later phases need from the caller's.
struct Upstream {
    request: hyper::Request<Body>,
    /// The request body, when it was buffered (sends and calls are recorded from it).
    request_bytes: Bytes,
    /// The username a claim asked for, once checked.
    claimed: Option<String>,
    /// The caller's headers, kept only for a media lookup (its download links use the Host).
    caller_headers: HeaderMap,
    /// The vault's copy of an upload, when one is being kept.
    upload_copy: Option<uploads::UploadCopy>,
}

/// Phase 3: the upstream request, with the number's token and a body within its limit.
async fn build_upstream(
    state: &AppState,
    address: &GraphAddress,
    version: &str,
    number: &NumberConfig,
    exchange: Exchange,
    request: Request,
) -> Result<Upstream, GraphError> {
    let (parts, body) = request.into_parts();
    let declares_body =
        parts.headers.contains_key(CONTENT_LENGTH) || parts.headers.contains_key(TRANSFER_ENCODING);
    let caller_headers = if exchange == Exchange::MediaLookup {
        parts.headers.clone()
    } else {
        HeaderMap::new()
    };
    let mut headers = headers::for_upstream(parts.headers);
    headers.insert(AUTHORIZATION, number.authorization.clone());
    if exchange != Exchange::Stream {
        // These answers are parsed (recorded, rewritten): ask for them uncompressed.
        headers.insert(ACCEPT_ENCODING, HeaderValue::from_static("identity"));
    }

    let mut request_bytes = Bytes::new();
    let mut claimed = None;
    let mut upload_copy = None;
    let body = if exchange.buffers_request() {
        let limit = state.config.server.json_body_limit;
        let too_large = declared_too_large(&headers, limit);
        let bytes = request_body::read_body(body, too_large, limit)
            .await
            .map_err(|e| GraphError::unreadable_body(e, limit))?;
        if exchange == Exchange::Username(usernames::Op::Claim) {
            // Checked before Meta is called: a bad claim never leaves wagate.
            claimed = Some(usernames::check_claim(&headers, address.query(), &bytes)?);
        }
        if exchange == Exchange::Send {
            refuse_what_meta_would(number, &bytes)?;
        }
        headers.insert(CONTENT_LENGTH, bytes.len().into());
        request_bytes = bytes.clone();
        Body::from(bytes)
    } else {
        let limit = state.config.server.media_body_limit;
        if declared_too_large(&headers, limit) {
            return Err(GraphError::payload_too_large(limit));
        }
        if declares_body {
            let body = Body::new(http_body_util::Limited::new(body, limit));
            if exchange == Exchange::Upload {
                let (body, copy) = uploads::tee(state, &headers, body);
                upload_copy = copy;
                body
            } else {
                body
            }
        } else {
            // No body declared (a GET, a DELETE): send none, rather than an empty chunked one.
            Body::empty()
        }
    };

    let uri = state
        .graph
        .url(
            version,
            &upstream_rest(&parts.method, address),
            address.query(),
        )
        .parse::<axum::http::Uri>()
        .map_err(|_| GraphError::invalid_parameter("path: not a valid URL path"))?;
    if !headers.contains_key(USER_AGENT) {
        headers.insert(
            USER_AGENT,
            HeaderValue::from_static(crate::graph::USER_AGENT),
        );
    }
    let mut request = hyper::Request::new(body);
    *request.method_mut() = parts.method;
    *request.uri_mut() = uri;
    *request.headers_mut() = headers;
    Ok(Upstream {
        request,
        request_bytes,
        claimed,
        caller_headers,
        upload_copy,
    })
}

/// The path Graph is asked for. `GET {waba}/message_templates/{id}` (the JS SDK's
/// templates.get) is not a Graph route; Graph serves one template at `/{id}`.
fn upstream_rest(method: &Method, address: &GraphAddress) -> String {
    let rest = address.rest();
    let segments: Vec<&str> = rest.split('/').collect();
    match (*method == Method::GET, segments.as_slice()) {
        (true, [_, "message_templates", id]) if MetaId::is_valid(id) => (*id).to_owned(),
        _ => rest.to_owned(),
    }
}

/// A send Meta would refuse for the number's account state or a paused or disabled template is
/// answered here, in Meta's words, without calling Meta (the state comes from the number cache).
fn refuse_what_meta_would(number: &NumberConfig, body: &[u8]) -> Result<(), GraphError> {
    if number.account_state.is_none() && number.blocked_templates.is_empty() {
        return Ok(());
    }
    let body: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    match crate::domain::account_state::refusal(
        number.account_state.as_deref(),
        &number.blocked_templates,
        &body,
    ) {
        Some(refusal) => {
            metrics::counter!("wagate_sends_refused_locally_total", "code" => refusal.code.to_string())
                .increment(1);
            Err(GraphError::meta_refusal(refusal))
        }
        None => Ok(()),
    }
}

/// Meta registered the number: with a `pin` in the request, its two-step PIN is now on
/// (recorded through the writer, so held like a send while the database is away).
async fn record_pin(state: &AppState, number: &NumberConfig, request: &[u8]) {
    let with_pin = serde_json::from_slice::<serde_json::Value>(request)
        .ok()
        .and_then(|r| r.get("pin").and_then(|p| p.as_str()).map(str::len))
        .is_some_and(|len| len > 0);
    if !with_pin {
        return;
    }
    let recording = Recording::PinEnabled {
        number: number.internal_id,
        at: crate::store::now(),
    };
    state
        .writer
        .record(recording)
        .await
        .warn_if_held("two-step PIN");
}

/// Phases 4 and 5 of a recorded exchange: send, read Meta's answer, record it if Meta accepted,
/// then answer with Meta's bytes.
async fn exchange_and_record(
    state: &AppState,
    number: &NumberConfig,
    exchange: Exchange,
    upstream: Upstream,
    paced: Option<pacing::Paced>,
) -> Result<Response, GraphError> {
    let (parts, body) = send(state, upstream.request).await?.into_parts();
    let bytes = read_upstream(state, body).await?;
    if !parts.status.is_success() {
        let code = count_meta_error(&bytes);
        if exchange == Exchange::Send {
            pacing::meta_refused(state, number, paced.as_ref(), code).await;
        }
    } else if let Exchange::Username(op) = exchange {
        usernames::record(state, number, op, upstream.claimed.as_deref(), &bytes).await;
    } else if exchange == Exchange::Register {
        record_pin(state, number, &upstream.request_bytes).await;
    } else {
        record_exchange(state, number, exchange, &upstream.request_bytes, &bytes).await;
    }
    Ok(Response::from_parts(parts, Body::from(bytes)))
}

/// Phases 4 and 5 of an upload: the body streams to Graph (a copy going into the vault on the
/// way); Meta's answer (small JSON with the media id) is read so the kept copy can be recorded
/// under that id, then passed back unchanged.
async fn upload_and_keep(
    state: &AppState,
    number: &NumberConfig,
    mut upstream: Upstream,
) -> Result<Response, GraphError> {
    let Some(copy) = upstream.upload_copy.take() else {
        return send(state, upstream.request).await;
    };
    let answer = async {
        let (parts, body) = send(state, upstream.request).await?.into_parts();
        Ok((parts, read_upstream(state, body).await?))
    };
    match answer.await {
        Ok((parts, bytes)) => {
            copy.finish(state, number, parts.status.as_u16(), &bytes);
            Ok(Response::from_parts(parts, Body::from(bytes)))
        }
        Err(error) => {
            // No media id: whatever the copy kept is removed again.
            copy.finish(state, number, 0, &[]);
            Err(error)
        }
    }
}

/// Phase 5 of a media lookup: media metadata's URL only works with the number's token, so it
/// is answered with wagate's own signed download link beside it.
async fn rewrite_media_answer(
    state: &AppState,
    caller_headers: &HeaderMap,
    number: &NumberConfig,
    address: &GraphAddress,
    answer: Response,
) -> Result<Response, GraphError> {
    let is_json = answer
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("json"));
    if !answer.status().is_success() || !is_json {
        return Ok(answer);
    }
    let (mut parts, body) = answer.into_parts();
    let bytes = read_upstream(state, body).await?;
    let body = match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(json) if json.get("mime_type").is_some() && json.get("url").is_some() => {
            let rewritten = crate::http::graph::media::rewrite_metadata(
                state,
                caller_headers,
                number,
                address.object_id(),
                json,
            );
            parts.headers.remove(CONTENT_LENGTH);
            Body::from(serde_json::to_vec(&rewritten).expect("JSON serialises"))
        }
        _ => Body::from(bytes),
    };
    Ok(Response::from_parts(parts, body))
}

/// Phase 4: sends to Graph within `graph.timeout` for the response headers (hop-by-hop headers
/// of the answer dropped); the answer's body streams with
/// `graph.timeout` as the longest pause between chunks, so a long download that keeps flowing is
/// never cut.
async fn send(state: &AppState, request: hyper::Request<Body>) -> Result<Response, GraphError> {
    let timeout = state.config.graph.timeout;
    let started = std::time::Instant::now();
    let answer = tokio::time::timeout(timeout, state.graph.passthrough.request(request)).await;
    // Time to Graph's response headers, and what Graph answered (`error` for transport failures).
    let metrics = UpstreamMetrics::get();
    metrics.record_duration(started.elapsed());
    metrics.count(match &answer {
        Ok(Ok(response)) => Some(response.status()),
        _ => None,
    });
    match answer {
        Err(_) => Err(GraphError::gateway_timeout(format!(
            "Graph did not answer within {timeout:?}"
        ))),
        Ok(Err(error)) => Err(upstream_error(&error, state.config.server.media_body_limit)),
        Ok(Ok(response)) => {
            let mut response =
                response.map(|incoming| Body::new(TimeoutBody::new(timeout, incoming)));
            headers::for_downstream(response.headers_mut());
            Ok(response)
        }
    }
}

/// Counts Meta's error code from a buffered error answer (`wagate_meta_errors_total{code}`).
/// Codes are Meta's small integers; anything else is `other`, so the label set stays bounded.
fn count_meta_error(body: &[u8]) -> Option<u64> {
    let code = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.pointer("/error/code").and_then(serde_json::Value::as_u64))
        .filter(|c| *c < 1_000_000);
    let label = code.map_or_else(|| "other".to_owned(), |c| c.to_string());
    metrics::counter!("wagate_meta_errors_total", "code" => label).increment(1);
    code
}

/// Reads a whole Graph answer (sends, calls, media metadata: small JSON) within the media limit.
async fn read_upstream(state: &AppState, body: Body) -> Result<Bytes, GraphError> {
    axum::body::to_bytes(body, state.config.server.media_body_limit)
        .await
        .map_err(|error| {
            if matches!(request_body::classify(&error), Some(BodyError::Stalled)) {
                tracing::warn!("Graph stopped sending its answer");
                GraphError::gateway_timeout("Graph did not finish its answer in time")
            } else {
                tracing::warn!(cause = %transport_cause(&error), "Graph answer unreadable");
                GraphError::bad_gateway("the connection to Graph failed")
            }
        })
}

/// Records an accepted send or call before the client gets Meta's answer: committed, or (the
/// database down) fsynced to the spill file, or in memory when that is full; the client must
/// never be made to resend what Meta accepted.
async fn record_exchange(
    state: &AppState,
    number: &NumberConfig,
    exchange: Exchange,
    request: &[u8],
    response: &[u8],
) {
    let (Ok(request), Ok(response)) = (
        serde_json::from_slice::<serde_json::Value>(request),
        serde_json::from_slice::<serde_json::Value>(response),
    ) else {
        return;
    };
    // A number's webhooks are cached with it; without them (database away) its events wait.
    let webhooks = state
        .numbers
        .webhooks_of(number.internal_id)
        .await
        .unwrap_or_default();
    let number = RoutedNumber::new(number, webhooks);
    let at = crate::store::now();
    let recording = match exchange {
        Exchange::Send => Recording::Send {
            number,
            request,
            response,
            at,
        },
        Exchange::Call => {
            if request.get("action").and_then(serde_json::Value::as_str) != Some("connect") {
                return;
            }
            Recording::Call {
                number,
                request,
                response,
                at,
            }
        }
        // Username answers are recorded by `usernames::record`, registrations by `record_pin`;
        // nothing else is recorded.
        Exchange::Username(_)
        | Exchange::Register
        | Exchange::Upload
        | Exchange::MediaLookup
        | Exchange::Stream => return,
    };
    state.writer.record(recording).await.warn_if_held("send");
}

/// The innermost cause of a transport error: hyper's own messages carry no URL (Graph URLs can
/// carry tokens in their query string).
fn transport_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

fn timed_out(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(error);
    while let Some(err) = source {
        if err
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        {
            return true;
        }
        source = err.source();
    }
    false
}

/// Maps a transport failure: our own body limits first, then timeouts (504), then the rest (502).
fn upstream_error(error: &hyper_util::client::legacy::Error, media_limit: usize) -> GraphError {
    match request_body::classify(error) {
        Some(BodyError::TooLarge) => return GraphError::payload_too_large(media_limit),
        Some(BodyError::Stalled) => return GraphError::request_timeout(),
        _ => {}
    }
    if timed_out(error) {
        tracing::warn!(cause = %transport_cause(error), "Graph timed out");
        GraphError::gateway_timeout("Graph did not answer in time")
    } else {
        tracing::warn!(cause = %transport_cause(error), "Graph unreachable");
        GraphError::bad_gateway(if error.is_connect() {
            "could not connect to Graph"
        } else {
            "the connection to Graph failed"
        })
    }
}
