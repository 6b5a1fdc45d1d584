//! Reading request bodies within a limit. A declared `Content-Length` over the limit is refused
//! before a byte is read; a chunked body is cut off as soon as it passes the limit.

use axum::body::Bytes;
use axum::extract::Request;
use axum::http::header::CONTENT_LENGTH;

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

/// True when the request declares a body larger than `limit`.
pub fn declared_too_large(request: &Request, limit: usize) -> bool {
    request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|len| len > limit as u64)
}

pub async fn read_limited(request: Request, limit: usize) -> Result<Bytes, BodyError> {
    if declared_too_large(&request, limit) {
        return Err(BodyError::TooLarge);
    }
    axum::body::to_bytes(request.into_body(), limit)
        .await
        .map_err(|e| {
            let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
            while let Some(err) = source {
                if err.is::<http_body_util::LengthLimitError>() {
                    return BodyError::TooLarge;
                }
                if err.is::<tower_http::timeout::TimeoutError>() {
                    return BodyError::Stalled;
                }
                source = err.source();
            }
            BodyError::Read(e.to_string())
        })
}
