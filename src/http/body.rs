//! Reading request bodies within a limit. A declared `Content-Length` over the limit is refused
//! before a byte is read; a chunked body is cut off as soon as it passes the limit.

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::header::CONTENT_LENGTH;
use axum::http::HeaderMap;

#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("request body too large")]
    TooLarge,
    /// The client stopped sending for longer than `server.body_idle_timeout`.
    #[error("request body stalled")]
    Stalled,
    #[error("{0}")]
    Read(String),
}

/// The `Content-Length` the client declared, if any.
pub fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

pub fn declared_too_large(headers: &HeaderMap, limit: usize) -> bool {
    declared_length(headers).is_some_and(|len| len > limit as u64)
}

/// Whether a body-stream error was our own limit or idle timeout, looking through wrappers.
pub fn classify(error: &(dyn std::error::Error + 'static)) -> Option<BodyError> {
    let mut source = Some(error);
    while let Some(err) = source {
        if err.is::<http_body_util::LengthLimitError>() {
            return Some(BodyError::TooLarge);
        }
        if err.is::<tower_http::timeout::TimeoutError>() {
            return Some(BodyError::Stalled);
        }
        source = err.source();
    }
    None
}

pub async fn read_limited(request: Request, limit: usize) -> Result<Bytes, BodyError> {
    let declared_too_large = declared_too_large(request.headers(), limit);
    read_body(request.into_body(), declared_too_large, limit).await
}

/// Reads a body whose headers were already checked (`declared_too_large`).
pub async fn read_body(
    body: Body,
    declared_too_large: bool,
    limit: usize,
) -> Result<Bytes, BodyError> {
    if declared_too_large {
        return Err(BodyError::TooLarge);
    }
    axum::body::to_bytes(body, limit)
        .await
        .map_err(|e| classify(&e).unwrap_or_else(|| BodyError::Read(e.to_string())))
}
