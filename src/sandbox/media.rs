//! Media: multipart upload, metadata, delete and the authenticated download URL
//! (contract.md §14). Bytes stay in memory for the life of the emulator.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{FromRequest, Multipart, Request};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::graph::{GraphCall, GraphResult};
use super::graph_errors::GraphError;
use super::state::{numeric_id, MediaObject, World};
use super::Shared;

/// Meta's upload limit for any media (documents may be this large).
pub const MAX_MEDIA_BYTES: usize = 100 * 1024 * 1024;
/// Limit for the small text fields of an upload (`messaging_product`, `type`).
const MAX_TEXT_FIELD: usize = 64 * 1024;

/// MIME types Meta accepts for upload, without parameters (`audio/ogg; codecs=opus` is `audio/ogg`).
const SUPPORTED_TYPES: [&str; 17] = [
    "audio/aac",
    "audio/amr",
    "audio/mpeg",
    "audio/mp4",
    "audio/ogg",
    "text/plain",
    "application/pdf",
    "application/vnd.ms-powerpoint",
    "application/msword",
    "application/vnd.ms-excel",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "image/jpeg",
    "image/png",
    "image/webp",
    "video/mp4",
];

/// Stores bytes as a media object of `owner` and returns its ID.
pub fn insert(world: &mut World, owner: &str, mime_type: &str, bytes: Bytes) -> MediaObject {
    let object = MediaObject {
        id: numeric_id(16),
        owner: owner.to_owned(),
        mime_type: mime_type.to_owned(),
        sha256: hex::encode(Sha256::digest(&bytes)),
        bytes,
    };
    world.media.insert(object.id.clone(), object.clone());
    object
}

/// The download URL handed out for a media object, pointing back at this emulator.
pub fn download_url(host: &str, id: &str) -> String {
    format!("http://{host}/_sandbox/media/{id}/download")
}

/// `POST /{pnid}/media`, multipart: `messaging_product`, `type`, `file`.
pub async fn upload(shared: &Arc<Shared>, call: &GraphCall, request: Request) -> GraphResult {
    let bad = |e: String| GraphError::invalid_parameter(format!("Invalid multipart body: {e}"));
    let mut multipart = Multipart::from_request(request, &())
        .await
        .map_err(|e| bad(e.body_text()))?;
    let mut fields: HashMap<String, String> = HashMap::new();
    let mut file: Option<(Bytes, Option<String>, Option<String>)> = None;
    while let Some(mut field) = multipart
        .next_field()
        .await
        .map_err(|e| bad(e.body_text()))?
    {
        let name = field.name().unwrap_or_default().to_owned();
        let is_file = name == "file";
        if is_file && file.is_some() {
            return Err(GraphError::invalid_parameter(
                "Only one file part may be uploaded",
            ));
        }
        let limit = if is_file {
            MAX_MEDIA_BYTES
        } else {
            MAX_TEXT_FIELD
        };
        let declared = field.content_type().map(str::to_owned);
        let filename = field.file_name().map(str::to_owned);
        // Stream chunk by chunk so an oversized upload is refused without buffering it all.
        let mut buffer = BytesMut::new();
        while let Some(chunk) = field.chunk().await.map_err(|e| bad(e.body_text()))? {
            if buffer.len() + chunk.len() > limit {
                return Err(GraphError::invalid_parameter(format!(
                    "Param {name} is larger than the {limit} bytes allowed"
                )));
            }
            buffer.extend_from_slice(&chunk);
        }
        if is_file {
            file = Some((buffer.freeze(), declared, filename));
        } else {
            fields.insert(name, String::from_utf8_lossy(&buffer).into_owned());
        }
    }

    let product = fields
        .get("messaging_product")
        .or_else(|| call.query.get("messaging_product"));
    match product {
        None => {
            return Err(GraphError::param_message(
                "(#100) The parameter messaging_product is required.",
            ))
        }
        Some(p) if !p.eq_ignore_ascii_case("whatsapp") => {
            return Err(GraphError::param_message(format!(
                "(#100) Param messaging_product must be one of {{WHATSAPP}} - got \"{p}\"."
            )))
        }
        Some(_) => {}
    }
    let Some((bytes, declared, filename)) = file else {
        return Err(GraphError::param_message(
            "(#100) The parameter file is required.",
        ));
    };
    if bytes.is_empty() {
        return Err(GraphError::invalid_parameter(
            "Param file must not be empty",
        ));
    }
    let mime_type = resolve_mime(declared.as_deref(), fields.get("type").map(String::as_str), filename.as_deref())
        .ok_or_else(|| {
            GraphError::invalid_parameter(format!(
                "Param file must be a file with one of the following types: {}. Received file of type '{}'.",
                SUPPORTED_TYPES.join(", "),
                declared.as_deref().unwrap_or("unknown")
            ))
        })?;
    let object = insert(&mut shared.world(), &call.id, &mime_type, bytes);
    Ok(json!({ "id": object.id }))
}

/// The file part's own type wins; `type` and the file extension are fallbacks for clients that
/// send `application/octet-stream`.
fn resolve_mime(
    declared: Option<&str>,
    type_field: Option<&str>,
    filename: Option<&str>,
) -> Option<String> {
    let by_extension = filename
        .and_then(|f| f.rsplit_once('.'))
        .and_then(|(_, ext)| mime_for_extension(&ext.to_ascii_lowercase()));
    [declared, type_field, by_extension]
        .into_iter()
        .flatten()
        .map(|m| m.trim().to_ascii_lowercase())
        .find(|m| {
            let base = m.split(';').next().unwrap_or_default().trim();
            SUPPORTED_TYPES.contains(&base) || base == "video/3gpp"
        })
}

fn mime_for_extension(ext: &str) -> Option<&'static str> {
    Some(match ext {
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "webp" => "image/webp",
        "mp4" => "video/mp4",
        "3gp" => "video/3gpp",
        "aac" => "audio/aac",
        "amr" => "audio/amr",
        "mp3" => "audio/mpeg",
        "m4a" => "audio/mp4",
        "ogg" | "opus" => "audio/ogg",
        "txt" => "text/plain",
        "pdf" => "application/pdf",
        "doc" => "application/msword",
        "docx" => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "xls" => "application/vnd.ms-excel",
        "xlsx" => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "ppt" => "application/vnd.ms-powerpoint",
        "pptx" => "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        _ => return None,
    })
}

/// With `?phone_number_id=`, Meta only serves media uploaded on that number.
fn check_number_filter(object: &MediaObject, call: &GraphCall) -> Result<(), GraphError> {
    match call.query_str("phone_number_id") {
        Some(pnid) if pnid != object.owner => {
            Err(GraphError::unsupported(call.method.as_str(), &object.id))
        }
        _ => Ok(()),
    }
}

/// `GET /{media_id}`.
pub fn get(shared: &Arc<Shared>, id: &str, call: &GraphCall) -> GraphResult {
    let world = shared.world();
    let object = world
        .media
        .get(id)
        .ok_or_else(|| GraphError::unsupported("get", id))?;
    check_number_filter(object, call)?;
    Ok(json!({
        "messaging_product": "whatsapp",
        "url": download_url(&call.host, id),
        "mime_type": object.mime_type,
        "sha256": object.sha256,
        "file_size": object.bytes.len(),
        "id": object.id,
    }))
}

/// `DELETE /{media_id}`.
pub fn delete(shared: &Arc<Shared>, id: &str, call: &GraphCall) -> GraphResult {
    let mut world = shared.world();
    let object = world
        .media
        .get(id)
        .ok_or_else(|| GraphError::unsupported("delete", id))?;
    check_number_filter(object, call)?;
    world.media.remove(id);
    Ok(json!({ "success": true }))
}

/// `GET /_sandbox/media/{id}/download`: the bytes, for a Bearer token of the owning WABA, as
/// Meta's lookaside URL requires (contract.md §14). Unknown IDs are 404, which tells a client
/// to fetch a fresh URL.
pub fn download(shared: &Arc<Shared>, id: &str, token: Option<&str>, method: &Method) -> Response {
    if method != Method::GET && method != Method::HEAD {
        return GraphError::unsupported(method.as_str(), id).into_response();
    }
    let Some(token) = token else {
        return GraphError::missing_token().into_response();
    };
    let world = shared.world();
    let Some(object) = world.media.get(id) else {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(GraphError::unsupported("get", id).to_json()),
        )
            .into_response();
    };
    let owner_waba = world.waba_of(&object.owner).unwrap_or_default();
    if !world.token_grants(token, &owner_waba) {
        return GraphError::invalid_token().into_response();
    }
    let mut response = Response::new(if method == Method::HEAD {
        Body::empty()
    } else {
        Body::from(object.bytes.clone())
    });
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&object.mime_type) {
        headers.insert(header::CONTENT_TYPE, value);
    }
    headers.insert(
        header::CONTENT_LENGTH,
        HeaderValue::from(object.bytes.len()),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mime_resolution() {
        assert_eq!(
            resolve_mime(Some("image/png"), None, None).as_deref(),
            Some("image/png")
        );
        assert_eq!(
            resolve_mime(Some("application/octet-stream"), Some("image/jpeg"), None).as_deref(),
            Some("image/jpeg")
        );
        assert_eq!(
            resolve_mime(Some("application/octet-stream"), None, Some("a.PDF")).as_deref(),
            Some("application/pdf")
        );
        assert_eq!(
            resolve_mime(Some("audio/ogg; codecs=opus"), None, None).as_deref(),
            Some("audio/ogg; codecs=opus")
        );
        assert!(resolve_mime(Some("application/zip"), None, Some("a.zip")).is_none());
    }
}
