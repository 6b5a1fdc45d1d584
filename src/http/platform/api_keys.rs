//! `/platform/v1/api_keys`: a project manages its own keys (issue, list, revoke) with one of
//! them. Parse, call [`crate::domain::api_keys`], present.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use uuid::Uuid;

use super::error::PlatformError;
use super::extract::ProjectKey;
use super::present::{ApiKeyObject, Data, IssuedApiKeyObject};
use crate::http::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api_keys", get(list).post(issue))
        .route("/api_keys/{key_id}", delete(revoke))
}

async fn list(State(state): State<AppState>, key: ProjectKey) -> Result<Response, PlatformError> {
    let keys = state.api_keys.list(key.project_id).await?;
    let data: Vec<ApiKeyObject> = keys.iter().map(ApiKeyObject::new).collect();
    Ok(Json(Data { data }).into_response())
}

async fn issue(State(state): State<AppState>, key: ProjectKey) -> Result<Response, PlatformError> {
    let issued = state.api_keys.issue(key.project_id).await?;
    tracing::info!(key_id = %issued.record.id, "API key issued");
    let data = IssuedApiKeyObject::new(&issued.record, &issued.plaintext);
    Ok((StatusCode::CREATED, Json(Data { data })).into_response())
}

async fn revoke(
    State(state): State<AppState>,
    key: ProjectKey,
    Path(key_id): Path<String>,
) -> Result<Response, PlatformError> {
    let id = Uuid::parse_str(&key_id).map_err(|_| PlatformError::NotFound("API key"))?;
    let revoked = state
        .api_keys
        .revoke(key.project_id, id)
        .await
        .map_err(|e| match e {
            crate::store::StoreError::NotFound => PlatformError::NotFound("API key"),
            other => other.into(),
        })?;
    tracing::info!(key_id = %revoked.id, "API key revoked");
    let data = ApiKeyObject::new(&revoked);
    Ok(Json(Data { data }).into_response())
}
