//! The Graph passthrough: `/meta/whatsapp/{version}/…` and `/api/meta/{version}/…`.
//!
//! Phases, in the manner of pingora: authenticate (from memory), resolve the number (from
//! memory), rebuild the request (strip the caller's credentials and hop-by-hop headers, set the
//! number's token), send with the shared client, stream the answer back unchanged. Only
//! transport failures (502/504) and requests checked before Meta is called (username claims,
//! `usernames`) are wagate's own errors; Meta's errors pass through untouched.

mod headers;
pub mod resolve;
mod usernames;

use axum::body::Body;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_LENGTH, USER_AGENT};
use axum::http::{HeaderMap, HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use tower_http::timeout::TimeoutBody;

use crate::auth::{AuthError, Caller, NumberConfig};
use crate::domain::ingest::RoutedNumber;
use crate::domain::writer::{Durability, Recording};
use crate::http::body::{self as request_body, declared_too_large, BodyError};
use crate::http::graph_error::GraphError;
use crate::state::AppState;

pub use resolve::Target;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/meta/whatsapp/{version}/{*rest}", any(passthrough))
        .route("/api/meta/{version}/{*rest}", any(passthrough))
        .route(
            "/meta/whatsapp/media_download",
            axum::routing::get(crate::media::download),
        )
        .route(
            "/api/meta/media_download",
            axum::routing::get(crate::media::download),
        )
}

/// `(version, rest)` from the raw path, so the upstream path is byte-identical to the caller's.
pub fn split_graph_path(path: &str) -> Option<(&str, &str)> {
    let after_mount = crate::http::GRAPH_PREFIXES
        .iter()
        .find_map(|prefix| path.strip_prefix(prefix))?;
    after_mount.split_once('/')
}

/// Graph versions look like `v23.0`.
pub fn is_graph_version(version: &str) -> bool {
    let Some(rest) = version.strip_prefix('v') else {
        return false;
    };
    let Some((major, minor)) = rest.split_once('.') else {
        return false;
    };
    [major, minor]
        .iter()
        .all(|part| !part.is_empty() && part.len() <= 3 && part.bytes().all(|b| b.is_ascii_digit()))
}

/// Refuses paths Graph would normalise into another object than the one checked (`a/../b`,
/// `%2e%2e`, encoded slashes, empty segments): authorization is decided on the first segment, so
/// the path must mean exactly what it says.
fn check_segments(rest: &str) -> Result<(), GraphError> {
    // One trailing slash is harmless (`{id}/`); any other empty segment is not.
    let path = rest.strip_suffix('/').unwrap_or(rest);
    let bad = path.split('/').any(|raw| {
        let decoded = percent_encoding::percent_decode_str(raw).decode_utf8_lossy();
        raw.is_empty()
            || decoded == "."
            || decoded == ".."
            || decoded.contains('/')
            || decoded.contains('\\')
    });
    if bad {
        return Err(GraphError::invalid_parameter(
            "path: empty, '.' or '..' segments and encoded slashes are not allowed",
        ));
    }
    Ok(())
}

/// The credentials a Graph caller presented: `X-API-Key` and/or `Authorization: Bearer`.
pub async fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<Caller, GraphError> {
    let api_key = headers.get("x-api-key").and_then(|v| v.to_str().ok());
    let bearer = headers.get(AUTHORIZATION).map(|v| {
        let value = v.to_str().unwrap_or("");
        match value.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token,
            // Another scheme, or garbage: present but unusable.
            _ => "",
        }
    });
    match state.auth.authenticate(api_key, bearer).await {
        Ok(caller) => Ok(caller),
        Err(AuthError::Missing) if api_key.is_none() && bearer.is_none() => {
            Err(GraphError::missing_credentials())
        }
        Err(AuthError::Missing | AuthError::Invalid) => Err(GraphError::invalid_credentials()),
        Err(AuthError::Store(e)) => Err(e.into()),
    }
}

/// The value of one query parameter, percent-decoded.
pub fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query?.as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

async fn passthrough(State(state): State<AppState>, request: Request) -> Response {
    match forward(&state, request).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn forward(state: &AppState, request: Request) -> Result<Response, GraphError> {
    let path = request.uri().path().to_owned();
    let query = request.uri().query().map(str::to_owned);
    let (version, rest) = split_graph_path(&path)
        .ok_or_else(|| GraphError::invalid_parameter("path: expected /{version}/{object}"))?;
    if !is_graph_version(version) {
        return Err(GraphError::invalid_parameter(format!(
            "version: '{version}' is not a Graph API version such as v23.0"
        )));
    }
    check_segments(rest)?;
    let caller = authenticate(state, request.headers()).await?;
    if let Some(route) = crate::stored::route(request.method(), rest) {
        let limit = state.config.server.json_body_limit;
        let (parts, body) = request.into_parts();
        let too_large = declared_too_large(&parts.headers, limit);
        let body = request_body::read_body(body, too_large, limit)
            .await
            .map_err(|e| body_error(e, limit))?;
        let stored_request = crate::stored::Request {
            state,
            caller: &caller,
            query: crate::stored::Query::parse(query.as_deref()),
            headers: &parts.headers,
            path: &path,
            body,
        };
        return crate::stored::handle(stored_request, route).await;
    }
    let mut segments = rest.split('/');
    let object_id = segments.next().unwrap_or("");
    let has_edge = segments.any(|s| !s.is_empty());
    let phone_number_id = query_param(query.as_deref(), "phone_number_id");
    let number = resolve::resolve(
        &state.auth,
        &caller,
        Target {
            object_id,
            has_edge,
            phone_number_id: phone_number_id.as_deref(),
        },
    )
    .await?;
    let span = tracing::Span::current();
    span.record("project_id", tracing::field::display(number.project_id));
    span.record("phone_number_id", number.phone_number_id.as_str());

    // `GET {waba}/message_templates/{id}` (the JS SDK's templates.get) is not a Graph route;
    // Graph serves one template at `/{id}`.
    let segments: Vec<&str> = rest.split('/').collect();
    let upstream_rest = match (request.method() == Method::GET, segments.as_slice()) {
        (true, [_, "message_templates", id]) if resolve::is_meta_id(id) => (*id).to_owned(),
        _ => rest.to_owned(),
    };
    // `GET /{object}`: possibly media metadata, whose URL only works with the token.
    let media_lookup = request.method() == Method::GET && !has_edge;
    let (parts, body) = request.into_parts();
    let declares_body = parts.headers.contains_key(CONTENT_LENGTH)
        || parts
            .headers
            .contains_key(axum::http::header::TRANSFER_ENCODING);
    // Only a metadata lookup needs the caller's Host later (to build download links).
    let caller_headers = if media_lookup {
        parts.headers.clone()
    } else {
        HeaderMap::new()
    };
    let mut upstream_headers = parts.headers;
    headers::for_upstream(&mut upstream_headers);
    upstream_headers.insert(AUTHORIZATION, number.authorization.clone());

    // Sends, calls and username claims are small JSON recorded from (or checked in) their
    // bodies, so they are buffered; everything else (media up to 100 MiB) streams through within
    // server.media_body_limit. Username calls also record Meta's answer.
    let record = match usernames::op(&parts.method, rest, &number) {
        Some(op) => Some(RecordKind::Username(op)),
        None => (parts.method == Method::POST)
            .then(|| {
                match rest
                    .strip_prefix(object_id)
                    .and_then(|r| r.strip_prefix('/'))
                {
                    Some("messages") => Some(RecordKind::Send),
                    Some("calls") => Some(RecordKind::Call),
                    _ => None,
                }
            })
            .flatten(),
    };
    let buffer_request = matches!(
        record,
        Some(RecordKind::Send | RecordKind::Call | RecordKind::Username(usernames::Op::Claim))
    );
    if record.is_some() || media_lookup {
        // These answers are parsed (recorded, rewritten): ask for them uncompressed.
        upstream_headers.insert(
            axum::http::header::ACCEPT_ENCODING,
            axum::http::HeaderValue::from_static("identity"),
        );
    }
    let mut request_bytes = None;
    let mut claimed = None;
    let upstream_body = if buffer_request {
        let limit = state.config.server.json_body_limit;
        let too_large = declared_too_large(&upstream_headers, limit);
        let bytes = request_body::read_body(body, too_large, limit)
            .await
            .map_err(|e| body_error(e, limit))?;
        if record == Some(RecordKind::Username(usernames::Op::Claim)) {
            // Checked before Meta is called: a bad claim never leaves wagate.
            claimed = Some(usernames::check_claim(
                &upstream_headers,
                query.as_deref(),
                &bytes,
            )?);
        }
        upstream_headers.insert(CONTENT_LENGTH, bytes.len().into());
        request_bytes = Some(bytes.clone());
        Body::from(bytes)
    } else {
        let limit = state.config.server.media_body_limit;
        if declared_too_large(&upstream_headers, limit) {
            return Err(GraphError::payload_too_large(limit));
        }
        if declares_body {
            Body::new(http_body_util::Limited::new(body, limit))
        } else {
            // No body declared (a GET, a DELETE): send none, rather than an empty chunked one.
            Body::empty()
        }
    };

    let uri = state
        .graph
        .url(version, &upstream_rest, query.as_deref())
        .parse::<axum::http::Uri>()
        .map_err(|_| GraphError::invalid_parameter("path: not a valid URL path"))?;
    if !upstream_headers.contains_key(USER_AGENT) {
        upstream_headers.insert(
            USER_AGENT,
            HeaderValue::from_static(crate::graph::USER_AGENT),
        );
    }
    let mut request = hyper::Request::new(upstream_body);
    *request.method_mut() = parts.method;
    *request.uri_mut() = uri;
    *request.headers_mut() = upstream_headers;
    if let Some(kind) = record {
        // Sends, calls and username changes finish in their own task: a client that hangs up
        // must not cancel a request Meta may accept, nor the recording of one it did accept.
        let request_bytes = request_bytes.unwrap_or_default();
        let task_state = state.clone();
        let task_number = number.clone();
        let exchange = tokio::spawn(async move {
            let (mut parts, body) = send(&task_state, request).await?.into_parts();
            headers::for_downstream(&mut parts.headers);
            let bytes = read_upstream(&task_state, body).await?;
            if !parts.status.is_success() {
                count_meta_error(&bytes);
            }
            if parts.status.is_success() {
                match kind {
                    RecordKind::Username(op) => {
                        usernames::record(&task_state, &task_number, op, claimed.as_deref(), &bytes)
                            .await
                    }
                    _ => {
                        record_exchange(&task_state, &task_number, kind, &request_bytes, &bytes)
                            .await
                    }
                }
            }
            Ok::<_, GraphError>(Response::from_parts(parts, Body::from(bytes)))
        });
        return exchange.await.map_err(|_| GraphError::internal())?;
    }
    let (mut parts, body) = send(state, request).await?.into_parts();
    headers::for_downstream(&mut parts.headers);
    let is_json = parts
        .headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("json"));
    if media_lookup && parts.status.is_success() && is_json {
        let bytes = read_upstream(state, body).await?;
        let body = match serde_json::from_slice::<serde_json::Value>(&bytes) {
            Ok(json) if json.get("mime_type").is_some() && json.get("url").is_some() => {
                let rewritten = crate::media::rewrite_metadata(
                    state,
                    &caller_headers,
                    &number,
                    object_id,
                    json,
                );
                parts.headers.remove(CONTENT_LENGTH);
                Body::from(serde_json::to_vec(&rewritten).expect("JSON serialises"))
            }
            _ => Body::from(bytes),
        };
        return Ok(Response::from_parts(parts, body));
    }
    Ok(Response::from_parts(parts, body))
}

/// Sends to Graph within `graph.timeout` for the response headers; the answer's body streams with
/// `graph.timeout` as the longest pause between chunks, so a long download that keeps flowing is
/// never cut.
async fn send(state: &AppState, request: hyper::Request<Body>) -> Result<Response, GraphError> {
    let timeout = state.config.graph.timeout;
    let started = std::time::Instant::now();
    let answer = tokio::time::timeout(timeout, state.graph.passthrough.request(request)).await;
    // Time to Graph's response headers, and what Graph answered (`error` for transport failures).
    metrics::histogram!("wagate_upstream_duration_seconds").record(started.elapsed().as_secs_f64());
    let outcome = match &answer {
        Ok(Ok(response)) => status_label(response.status().as_u16()),
        _ => "error",
    };
    metrics::counter!("wagate_upstream_responses_total", "status" => outcome).increment(1);
    match answer {
        Err(_) => Err(GraphError::gateway_timeout(format!(
            "Graph did not answer within {timeout:?}"
        ))),
        Ok(Err(error)) => Err(upstream_error(&error, state.config.server.media_body_limit)),
        Ok(Ok(response)) => {
            Ok(response.map(|incoming| Body::new(TimeoutBody::new(timeout, incoming))))
        }
    }
}

/// Status classes as metric labels (a bounded set).
fn status_label(status: u16) -> &'static str {
    match status {
        200..=299 => "2xx",
        300..=399 => "3xx",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        429 => "429",
        402 | 405..=428 | 430..=499 => "4xx",
        _ => "5xx",
    }
}

/// Counts Meta's error code from a buffered error answer (`wagate_meta_errors_total{code}`).
/// Codes are Meta's small integers; anything else is `other`, so the label set stays bounded.
fn count_meta_error(body: &[u8]) {
    let code = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.pointer("/error/code").and_then(serde_json::Value::as_u64))
        .filter(|c| *c < 1_000_000)
        .map_or_else(|| "other".to_owned(), |c| c.to_string());
    metrics::counter!("wagate_meta_errors_total", "code" => code).increment(1);
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RecordKind {
    Send,
    Call,
    Username(usernames::Op),
}

/// Records an accepted send or call before the client gets Meta's answer (durable, or buffered
/// when the database is down: the client must never be made to resend what Meta accepted).
async fn record_exchange(
    state: &AppState,
    number: &NumberConfig,
    kind: RecordKind,
    request: &[u8],
    response: &[u8],
) {
    let (Ok(request), Ok(response)) = (
        serde_json::from_slice::<serde_json::Value>(request),
        serde_json::from_slice::<serde_json::Value>(response),
    ) else {
        return;
    };
    let number = RoutedNumber {
        internal_id: number.internal_id,
        project_id: number.project_id,
        forwarding: number.webhook_destination_url.is_some(),
    };
    let at = crate::store::now();
    let recording = match kind {
        RecordKind::Send => Recording::Send {
            number,
            request,
            response,
            at,
        },
        RecordKind::Call => {
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
        // Recorded by `usernames::record`.
        RecordKind::Username(_) => return,
    };
    if state.writer.record(recording).await == Durability::Buffered {
        tracing::warn!("send recorded in the retry buffer: database unavailable");
    }
}

fn body_error(error: BodyError, limit: usize) -> GraphError {
    match error {
        BodyError::TooLarge => GraphError::payload_too_large(limit),
        BodyError::Stalled => GraphError::request_timeout(),
        BodyError::Read(message) => {
            GraphError::invalid_parameter(format!("body: could not be read ({message})"))
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        for ok in ["v23.0", "v24.0", "v1.0", "v100.10"] {
            assert!(is_graph_version(ok), "{ok}");
        }
        for bad in ["23.0", "v23", "v23.", "va.0", "v23.0.1", "", "V23.0"] {
            assert!(!is_graph_version(bad), "{bad}");
        }
    }

    #[test]
    fn paths_split_after_the_mount() {
        assert_eq!(
            split_graph_path("/meta/whatsapp/v24.0/123/messages"),
            Some(("v24.0", "123/messages"))
        );
        assert_eq!(
            split_graph_path("/api/meta/v21.0/123"),
            Some(("v21.0", "123"))
        );
        assert_eq!(split_graph_path("/platform/v1/x"), None);
    }

    #[test]
    fn query_params_are_decoded() {
        assert_eq!(
            query_param(Some("a=1&phone_number_id=%31%32"), "phone_number_id").as_deref(),
            Some("12")
        );
        assert_eq!(query_param(None, "x"), None);
    }
}
