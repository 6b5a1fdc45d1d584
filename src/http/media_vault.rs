//! `GET /media/{id}`: a kept media file, by the stable URL messages carry in `kapso.media_url` and
//! `media_data.url`. Works with the project's `X-API-Key` (or the number's own token), or with
//! the link's unexpired signature. Anything else (another project's key, a bad or expired
//! signature, no credentials, a file not kept) is the same 404 as an id that does not exist, and
//! no path or bucket name ever appears in an answer.
//!
//! Answers are built for hostile bytes: Meta's content type, `nosniff`, a sandboxing CSP, the
//! filename in `Content-Disposition`; and for players: `ETag` (the hash), single `Range`s (206).

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::collections::HashMap;

use uuid::Uuid;

use crate::domain::auth::Caller;
use crate::domain::media_links;
use crate::http::graph_error::GraphError;
use crate::http::state::AppState;
use crate::store::{MediaFileRow, MediaState};
use crate::vault::VaultError;

pub fn router() -> Router<AppState> {
    Router::new().route("/media/{id}", get(serve))
}

/// The signed link's parameters. Read leniently: a malformed value is no signature (the same
/// 404), never a query-parsing error of its own.
#[derive(Debug, Default)]
pub struct LinkQuery {
    expires: Option<i64>,
    signature: Option<String>,
}

impl LinkQuery {
    fn from_pairs(pairs: HashMap<String, String>) -> Self {
        Self {
            expires: pairs.get("expires").and_then(|v| v.parse().ok()),
            signature: pairs.get("signature").cloned(),
        }
    }
}

async fn serve(
    State(state): State<AppState>,
    Path(raw_id): Path<String>,
    Query(pairs): Query<HashMap<String, String>>,
    method: Method,
    headers: HeaderMap,
    extensions: axum::http::Extensions,
) -> Response {
    let link = LinkQuery::from_pairs(pairs);
    match answer(&state, &raw_id, link, &method, &headers, &extensions).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn answer(
    state: &AppState,
    raw_id: &str,
    link: LinkQuery,
    method: &Method,
    headers: &HeaderMap,
    extensions: &axum::http::Extensions,
) -> Result<Response, GraphError> {
    let not_found = || GraphError::unreachable_object(raw_id);
    let (Some(vault), Ok(id)) = (state.vault.as_ref(), Uuid::parse_str(raw_id)) else {
        return Err(not_found());
    };
    let row = state
        .store
        .find_media_file(id)
        .await?
        .ok_or_else(not_found)?;
    if !allowed(state, &row, link, headers, extensions).await? {
        return Err(not_found());
    }
    let (Some(sha256), MediaState::Stored) = (row.sha256.as_deref(), row.state()) else {
        return Err(not_found());
    };
    let etag = format!("\"{sha256}\"");
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
    {
        let mut response = StatusCode::NOT_MODIFIED.into_response();
        response
            .headers_mut()
            .insert(header::ETAG, header_value(&etag));
        return Ok(response);
    }
    let size = u64::try_from(row.byte_size.unwrap_or(0)).unwrap_or(0);
    let range = match requested_range(headers, size) {
        RangeRequest::Whole => None,
        RangeRequest::Part(range) => Some(range),
        RangeRequest::Unsatisfiable => return Ok(unsatisfiable(size)),
    };
    let read = match vault.get(sha256, range.clone()).await {
        Ok(read) => read,
        Err(VaultError::NotFound) => {
            tracing::error!(media = %row.id, "a stored media file is missing from the media store");
            return Err(not_found());
        }
        Err(VaultError::BadRange) => return Ok(unsatisfiable(size)),
        Err(error) => {
            tracing::warn!(media = %row.id, %error, "reading from the media store failed");
            return Err(GraphError::unavailable());
        }
    };
    let body = if method == Method::HEAD {
        Body::empty()
    } else {
        Body::from_stream(read.bytes)
    };
    let mut response = Response::new(body);
    if range.is_some() {
        *response.status_mut() = StatusCode::PARTIAL_CONTENT;
    }
    let headers = response.headers_mut();
    if range.is_some() {
        headers.insert(
            header::CONTENT_RANGE,
            header_value(&format!(
                "bytes {}-{}/{}",
                read.range.start,
                read.range.end.saturating_sub(1),
                read.total_size
            )),
        );
    }
    headers.insert(
        header::CONTENT_LENGTH,
        header_value(&(read.range.end - read.range.start).to_string()),
    );
    headers.insert(
        header::CONTENT_TYPE,
        row.content_type
            .as_deref()
            .and_then(|t| HeaderValue::from_str(t).ok())
            .unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    headers.insert(header::CONTENT_DISPOSITION, disposition(&row));
    headers.insert(header::ETAG, header_value(&etag));
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=3600"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Whatever the bytes are, a browser opening them runs nothing and loads nothing.
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; sandbox"),
    );
    Ok(response)
}

/// The project's key, a token of the number itself, or the link's own unexpired signature.
async fn allowed(
    state: &AppState,
    row: &MediaFileRow,
    link: LinkQuery,
    headers: &HeaderMap,
    extensions: &axum::http::Extensions,
) -> Result<bool, GraphError> {
    let has_credentials =
        headers.contains_key("x-api-key") || headers.contains_key(header::AUTHORIZATION);
    if has_credentials {
        let caller = crate::http::graph::caller::authenticate(state, headers, extensions).await?;
        return Ok(match caller {
            Caller::ApiKey { project_id, .. } => project_id == row.project_id,
            Caller::Bearer { numbers } => numbers
                .iter()
                .any(|n| n.internal_id == row.phone_number_internal_id),
        });
    }
    Ok(match (link.expires, link.signature) {
        (Some(expires), Some(signature)) => media_links::link_is_valid(
            &state.secrets,
            row.id,
            expires,
            &signature,
            crate::store::now(),
        ),
        _ => false,
    })
}

enum RangeRequest {
    Whole,
    Part(std::ops::Range<u64>),
    Unsatisfiable,
}

/// One `bytes=` range (`a-b`, `a-`, `-n`); several ranges or another unit get the whole file,
/// as RFC 9110 allows.
fn requested_range(headers: &HeaderMap, size: u64) -> RangeRequest {
    let Some(spec) = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().strip_prefix("bytes="))
    else {
        return RangeRequest::Whole;
    };
    if spec.contains(',') {
        return RangeRequest::Whole;
    }
    let Some((start, end)) = spec.trim().split_once('-') else {
        return RangeRequest::Whole;
    };
    let parsed = match (start.trim(), end.trim()) {
        ("", suffix) => suffix
            .parse::<u64>()
            .ok()
            .filter(|n| *n > 0)
            .map(|n| size.saturating_sub(n)..size),
        (start, "") => start.parse::<u64>().ok().map(|s| s..size),
        (start, end) => match (start.parse::<u64>(), end.parse::<u64>()) {
            (Ok(s), Ok(e)) if s <= e => Some(s..(e + 1).min(size)),
            _ => return RangeRequest::Unsatisfiable,
        },
    };
    match parsed {
        Some(range) if range.start < size && range.start < range.end => RangeRequest::Part(range),
        Some(_) => RangeRequest::Unsatisfiable,
        None => RangeRequest::Whole,
    }
}

fn unsatisfiable(size: u64) -> Response {
    let mut response = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
    response.headers_mut().insert(
        header::CONTENT_RANGE,
        header_value(&format!("bytes */{size}")),
    );
    response
}

/// `inline` with the filename (ASCII fallback and RFC 5987 UTF-8); the CSP keeps inline safe.
fn disposition(row: &MediaFileRow) -> HeaderValue {
    let name = row
        .filename
        .as_deref()
        .filter(|n| !n.trim().is_empty())
        .map(str::to_owned)
        .unwrap_or_else(|| {
            format!(
                "{}{}",
                row.wamid.chars().take(40).collect::<String>(),
                extension(row)
            )
        });
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded: String = name
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    header_value(&format!(
        "inline; filename=\"{ascii}\"; filename*=UTF-8''{encoded}"
    ))
}

fn extension(row: &MediaFileRow) -> &'static str {
    match row.content_type.as_deref().unwrap_or("") {
        "image/jpeg" => ".jpg",
        "image/png" => ".png",
        "image/webp" => ".webp",
        "video/mp4" => ".mp4",
        "audio/ogg" | "audio/ogg; codecs=opus" => ".ogg",
        "audio/mpeg" => ".mp3",
        "application/pdf" => ".pdf",
        _ => "",
    }
}

fn header_value(value: &str) -> HeaderValue {
    HeaderValue::from_str(value).unwrap_or(HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(value: &str, size: u64) -> Option<std::ops::Range<u64>> {
        let mut headers = HeaderMap::new();
        headers.insert(header::RANGE, HeaderValue::from_str(value).unwrap());
        match requested_range(&headers, size) {
            RangeRequest::Whole => None,
            RangeRequest::Part(r) => Some(r),
            RangeRequest::Unsatisfiable => Some(0..0),
        }
    }

    #[test]
    fn single_byte_ranges_are_understood() {
        assert_eq!(range("bytes=0-9", 100), Some(0..10));
        assert_eq!(range("bytes=90-", 100), Some(90..100));
        assert_eq!(range("bytes=-10", 100), Some(90..100));
        assert_eq!(range("bytes=95-200", 100), Some(95..100));
        assert_eq!(range("bytes=100-", 100), Some(0..0), "unsatisfiable");
        assert_eq!(range("bytes=5-2", 100), Some(0..0), "unsatisfiable");
        assert_eq!(range("bytes=0-1,5-6", 100), None, "several: whole file");
        assert_eq!(range("items=0-1", 100), None);
    }
}
