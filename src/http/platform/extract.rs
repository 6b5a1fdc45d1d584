//! Extractors of the Platform API, rejecting in its own error shape.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use super::error::PlatformError;
use crate::domain::auth::{AuthError, Caller};
use crate::domain::phone_numbers::FieldError;
use crate::http::body::{read_limited, BodyError};
use crate::http::state::AppState;

/// The project of the calling API key. Bearer tokens are not accepted here: they identify a
/// number, not a project.
#[derive(Debug, Clone, Copy)]
pub struct ProjectKey {
    pub project_id: Uuid,
}

impl FromRequestParts<AppState> for ProjectKey {
    type Rejection = PlatformError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let key = parts
            .headers
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .ok_or(PlatformError::MissingKey)?;
        let client = state.clients.of(&parts.headers, &parts.extensions);
        match state.auth.authenticate_api_key(client, key).await {
            Ok(Caller::ApiKey { project_id, .. }) => {
                tracing::Span::current().record("project_id", tracing::field::display(project_id));
                Ok(Self { project_id })
            }
            Ok(Caller::Bearer { .. }) | Err(AuthError::Invalid) => Err(PlatformError::InvalidKey),
            Err(AuthError::Missing) => Err(PlatformError::MissingKey),
            Err(AuthError::Throttled { retry_after }) => {
                Err(PlatformError::TooManyFailedAuthentications(retry_after))
            }
            Err(AuthError::Store(e)) => Err(e.into()),
        }
    }
}

/// A JSON body read within `server.json_body_limit`: 413 when larger, 400 when not JSON, 422 naming
/// the field when a value has the wrong type.
#[derive(Debug)]
pub struct PlatformJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for PlatformJson<T> {
    type Rejection = PlatformError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let limit = state.config.server.json_body_limit;
        let bytes = read_limited(request, limit).await.map_err(|e| match e {
            BodyError::TooLarge => PlatformError::PayloadTooLarge(limit),
            BodyError::Stalled => PlatformError::RequestTimeout,
            BodyError::Read(message) => {
                PlatformError::BadRequest(format!("could not read the request body: {message}"))
            }
        })?;
        if bytes.is_empty() {
            return Err(PlatformError::BadRequest(
                "request body is empty; send a JSON object".into(),
            ));
        }
        let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
            PlatformError::BadRequest(format!("request body is not valid JSON: {e}"))
        })?;
        if !value.is_object() {
            return Err(PlatformError::BadRequest(
                "request body must be a JSON object".into(),
            ));
        }
        serde_path_to_error::deserialize(value)
            .map(PlatformJson)
            .map_err(|e| {
                let path = e.path().to_string();
                let field = path.rsplit('.').next().unwrap_or("body").to_owned();
                PlatformError::Validation(vec![FieldError::new(field, e.into_inner().to_string())])
            })
    }
}

/// An optional ISO 8601 query parameter; a bad one is a 400 naming the parameter.
pub fn time_param(
    name: &str,
    raw: Option<&str>,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, PlatformError> {
    raw.filter(|r| !r.is_empty())
        .map(|r| {
            crate::time::parse_time(r).ok_or_else(|| {
                PlatformError::BadRequest(format!(
                    "{name}: must be an ISO 8601 time such as 2026-01-15T12:00:00Z, got '{r}'"
                ))
            })
        })
        .transpose()
}

const MAX_PER_PAGE: u32 = 100;
const DEFAULT_PER_PAGE: u32 = 20;

/// The 422 for a body whose fields are not wrapped in `{"<name>": {…}}`.
pub fn wrapper_missing(name: &str) -> PlatformError {
    PlatformError::Validation(vec![FieldError::new(
        name,
        "is required: wrap the fields in {\"".to_owned() + name + "\": {…}}",
    )])
}

fn parse_page_param(
    name: &str,
    raw: Option<&str>,
    default: u32,
    max: u32,
) -> Result<u32, PlatformError> {
    match raw {
        None | Some("") => Ok(default),
        Some(raw) => match raw.parse::<u32>() {
            Ok(v) if (1..=max).contains(&v) => Ok(v),
            _ => Err(PlatformError::BadRequest(format!(
                "{name} must be an integer between 1 and {max}"
            ))),
        },
    }
}

/// `(page, per_page)` from a list's query: page 1 and 20 per page unless given, at most 100.
pub fn page_params(
    page: Option<&str>,
    per_page: Option<&str>,
) -> Result<(u32, u32), PlatformError> {
    Ok((
        parse_page_param("page", page, 1, 1_000_000)?,
        parse_page_param("per_page", per_page, DEFAULT_PER_PAGE, MAX_PER_PAGE)?,
    ))
}
