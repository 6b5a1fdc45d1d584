//! Webhook resources (contract §9.6): `/platform/v1/whatsapp/phone_numbers/{id}/webhooks` (a
//! number's, both kinds), `/platform/v1/whatsapp/webhooks` (the project's; get, PATCH, DELETE and
//! test also find the project's number webhooks by id). Parse, call
//! [`crate::domain::webhooks::resource`], present.

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use super::error::PlatformError;
use super::extract::{wrapper_missing, PlatformJson, ProjectKey};
use super::present::{Data, WebhookObject};
use crate::domain::webhooks::resource::{Place, WebhookError, WebhookInput, WebhookView};
use crate::http::graph::stored::paging::{self, ListContext, Query};
use crate::http::state::AppState;

const WRAPPER: &str = "whatsapp_webhook";

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/whatsapp/phone_numbers/{phone_number_id}/webhooks",
            get(list_of_number).post(create_for_number),
        )
        .route(
            "/whatsapp/phone_numbers/{phone_number_id}/webhooks/{id}",
            get(show_of_number)
                .patch(update_of_number)
                .delete(remove_of_number),
        )
        .route(
            "/whatsapp/webhooks",
            get(list_of_project).post(create_for_project),
        )
        .route(
            "/whatsapp/webhooks/{id}",
            get(show).patch(update).delete(remove),
        )
        .route("/whatsapp/webhooks/{id}/test", post(test))
}

impl From<WebhookError> for PlatformError {
    fn from(error: WebhookError) -> Self {
        match error {
            WebhookError::Invalid(errors) => Self::Validation(errors),
            WebhookError::NotFound => Self::NotFound("webhook"),
            WebhookError::NumberNotFound => Self::NotFound("phone number"),
            WebhookError::Store(e) => e.into(),
        }
    }
}

#[derive(Debug, Deserialize)]
struct WebhookBody {
    whatsapp_webhook: Option<WebhookInput>,
}

fn input(body: WebhookBody) -> Result<WebhookInput, PlatformError> {
    body.whatsapp_webhook
        .ok_or_else(|| wrapper_missing(WRAPPER))
}

fn webhook_response(status: StatusCode, view: &WebhookView) -> Response {
    let data = WebhookObject::new(view);
    (status, Json(Data { data })).into_response()
}

fn bad(error: crate::http::graph_error::GraphError) -> PlatformError {
    PlatformError::BadRequest(error.details.unwrap_or(error.message))
}

/// A keyset-paged list (`limit`, `after`, `before`), like the delivery log.
async fn list_at(
    state: &AppState,
    project_id: Uuid,
    place: Place<'_>,
    headers: &HeaderMap,
    raw: Option<&str>,
    path: &str,
) -> Result<Json<Value>, PlatformError> {
    let query = Query::parse(raw);
    // Cursors are bound to the list they came from: the project's, or one number's.
    let list = match place {
        Place::Project => project_id,
        Place::Number(n) => n.internal_id,
    };
    let page = paging::parse(&query, "w", list).map_err(bad)?;
    let rows = state
        .webhooks
        .list(project_id, place, page.seek, page.limit + 1)
        .await?;
    let context = ListContext {
        kind: "w",
        number: list,
        request: page,
        base_url: format!("{}/platform/v1{path}", state.origin.for_request(headers)),
        query: &query,
    };
    Ok(Json(paging::envelope(
        rows,
        &context,
        |view| (view.row.created_at, view.row.id),
        |view| serde_json::to_value(WebhookObject::new(view)).expect("serialises"),
    )))
}

async fn list_of_project(
    State(state): State<AppState>,
    key: ProjectKey,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, PlatformError> {
    list_at(
        &state,
        key.project_id,
        Place::Project,
        &headers,
        raw.as_deref(),
        "/whatsapp/webhooks",
    )
    .await
}

async fn list_of_number(
    State(state): State<AppState>,
    key: ProjectKey,
    Path(phone_number_id): Path<String>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, PlatformError> {
    let number = state
        .webhooks
        .number(key.project_id, &phone_number_id)
        .await?;
    let path = format!(
        "/whatsapp/phone_numbers/{}/webhooks",
        number.phone_number_id
    );
    list_at(
        &state,
        key.project_id,
        Place::Number(&number),
        &headers,
        raw.as_deref(),
        &path,
    )
    .await
}

async fn create_for_project(
    State(state): State<AppState>,
    key: ProjectKey,
    PlatformJson(body): PlatformJson<WebhookBody>,
) -> Result<Response, PlatformError> {
    let input = input(body)?;
    let view = state
        .webhooks
        .create(key.project_id, Place::Project, input)
        .await?;
    tracing::info!(webhook_id = %view.row.id, kind = %view.row.kind, "project webhook created");
    Ok(webhook_response(StatusCode::CREATED, &view))
}

async fn create_for_number(
    State(state): State<AppState>,
    key: ProjectKey,
    Path(phone_number_id): Path<String>,
    PlatformJson(body): PlatformJson<WebhookBody>,
) -> Result<Response, PlatformError> {
    let number = state
        .webhooks
        .number(key.project_id, &phone_number_id)
        .await?;
    let input = input(body)?;
    let view = state
        .webhooks
        .create(key.project_id, Place::Number(&number), input)
        .await?;
    tracing::info!(webhook_id = %view.row.id, kind = %view.row.kind, %phone_number_id, "webhook created");
    Ok(webhook_response(StatusCode::CREATED, &view))
}

async fn show(
    State(state): State<AppState>,
    key: ProjectKey,
    Path(id): Path<String>,
) -> Result<Response, PlatformError> {
    let view = state
        .webhooks
        .get(key.project_id, Place::Project, &id)
        .await?;
    Ok(webhook_response(StatusCode::OK, &view))
}

async fn show_of_number(
    State(state): State<AppState>,
    key: ProjectKey,
    Path((phone_number_id, id)): Path<(String, String)>,
) -> Result<Response, PlatformError> {
    let number = state
        .webhooks
        .number(key.project_id, &phone_number_id)
        .await?;
    let view = state
        .webhooks
        .get(key.project_id, Place::Number(&number), &id)
        .await?;
    Ok(webhook_response(StatusCode::OK, &view))
}

async fn update(
    State(state): State<AppState>,
    key: ProjectKey,
    Path(id): Path<String>,
    PlatformJson(body): PlatformJson<WebhookBody>,
) -> Result<Response, PlatformError> {
    // An unknown webhook is a 404 whatever the body says.
    state
        .webhooks
        .get(key.project_id, Place::Project, &id)
        .await?;
    let input = input(body)?;
    let view = state
        .webhooks
        .update(key.project_id, Place::Project, &id, input)
        .await?;
    tracing::info!(webhook_id = %view.row.id, "webhook updated");
    Ok(webhook_response(StatusCode::OK, &view))
}

async fn update_of_number(
    State(state): State<AppState>,
    key: ProjectKey,
    Path((phone_number_id, id)): Path<(String, String)>,
    PlatformJson(body): PlatformJson<WebhookBody>,
) -> Result<Response, PlatformError> {
    let number = state
        .webhooks
        .number(key.project_id, &phone_number_id)
        .await?;
    let place = Place::Number(&number);
    state.webhooks.get(key.project_id, place, &id).await?;
    let input = input(body)?;
    let view = state
        .webhooks
        .update(key.project_id, place, &id, input)
        .await?;
    tracing::info!(webhook_id = %view.row.id, %phone_number_id, "webhook updated");
    Ok(webhook_response(StatusCode::OK, &view))
}

async fn remove(
    State(state): State<AppState>,
    key: ProjectKey,
    Path(id): Path<String>,
) -> Result<StatusCode, PlatformError> {
    state
        .webhooks
        .delete(key.project_id, Place::Project, &id)
        .await?;
    tracing::info!(webhook_id = %id, "webhook deleted");
    Ok(StatusCode::NO_CONTENT)
}

async fn remove_of_number(
    State(state): State<AppState>,
    key: ProjectKey,
    Path((phone_number_id, id)): Path<(String, String)>,
) -> Result<StatusCode, PlatformError> {
    let number = state
        .webhooks
        .number(key.project_id, &phone_number_id)
        .await?;
    state
        .webhooks
        .delete(key.project_id, Place::Number(&number), &id)
        .await?;
    tracing::info!(webhook_id = %id, %phone_number_id, "webhook deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// Queues a signed `whatsapp.webhook.test` delivery; 202 with the delivery object.
async fn test(
    State(state): State<AppState>,
    key: ProjectKey,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Value>), PlatformError> {
    let row = state.webhooks.test(key.project_id, &id).await?;
    state.delivery_wake.notify_one();
    tracing::info!(webhook_id = %id, delivery_id = %row.id, "webhook test queued");
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "data": crate::delivery::to_json(&row) })),
    ))
}
