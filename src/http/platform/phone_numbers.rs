//! `/platform/v1/whatsapp/phone_numbers` and `/platform/v1/customers/{id}/whatsapp/phone_numbers`.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use uuid::Uuid;

use super::error::PlatformError;
use super::extract::{page_params, wrapper_missing, PlatformJson, ProjectKey};
use super::present::{Data, Listing, PhoneNumberObject};
use crate::domain::customers::CustomerError;
use crate::domain::phone_numbers::{ConnectInput, PhoneNumberError, UpdateInput, Written};
use crate::http::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/whatsapp/phone_numbers", post(connect).get(list))
        .route(
            "/whatsapp/phone_numbers/{phone_number_id}",
            get(show).patch(update).delete(remove),
        )
        .route(
            "/customers/{customer_id}/whatsapp/phone_numbers",
            post(connect_for_customer).get(list_for_customer),
        )
}

#[derive(Debug, Deserialize)]
struct ConnectBody {
    whatsapp_phone_number: Option<ConnectInput>,
}

#[derive(Debug, Deserialize)]
struct UpdateBody {
    whatsapp_phone_number: Option<UpdateInput>,
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    page: Option<String>,
    per_page: Option<String>,
    customer_id: Option<String>,
}

fn parse_customer_id(raw: &str) -> Result<Uuid, PlatformError> {
    // A malformed id cannot exist, so it gets the same 404 as an unknown one.
    Uuid::parse_str(raw).map_err(|_| PlatformError::NotFound("customer"))
}

fn written_response(status: StatusCode, written: Written) -> Response {
    let data =
        PhoneNumberObject::new(&written.number).with_webhook_secret(written.new_webhook_secret);
    (status, Json(Data { data })).into_response()
}

async fn connect_inner(
    state: &AppState,
    project_id: Uuid,
    customer_id: Option<Uuid>,
    body: ConnectBody,
) -> Result<Response, PlatformError> {
    let input = body
        .whatsapp_phone_number
        .ok_or_else(|| wrapper_missing("whatsapp_phone_number"))?;
    let written = state
        .phone_numbers
        .connect(project_id, customer_id, input)
        .await
        .map_err(|e| match e {
            PhoneNumberError::NotFound => PlatformError::NotFound("customer"),
            other => other.into(),
        })?;
    tracing::info!(phone_number_id = %written.number.phone_number_id, "phone number connected");
    Ok(written_response(StatusCode::CREATED, written))
}

async fn connect(
    State(state): State<AppState>,
    key: ProjectKey,
    PlatformJson(body): PlatformJson<ConnectBody>,
) -> Result<Response, PlatformError> {
    connect_inner(&state, key.project_id, None, body).await
}

async fn connect_for_customer(
    State(state): State<AppState>,
    key: ProjectKey,
    Path(customer_id): Path<String>,
    PlatformJson(body): PlatformJson<ConnectBody>,
) -> Result<Response, PlatformError> {
    let customer_id = parse_customer_id(&customer_id)?;
    connect_inner(&state, key.project_id, Some(customer_id), body).await
}

async fn list_inner(
    state: &AppState,
    project_id: Uuid,
    customer_id: Option<Uuid>,
    query: ListQuery,
) -> Result<Response, PlatformError> {
    let (page, per_page) = page_params(query.page.as_deref(), query.per_page.as_deref())?;
    let result = state
        .phone_numbers
        .list(project_id, customer_id, page, per_page)
        .await?;
    let listing = Listing::new(&result, page, per_page, PhoneNumberObject::new);
    Ok(Json(listing).into_response())
}

async fn list(
    State(state): State<AppState>,
    key: ProjectKey,
    Query(query): Query<ListQuery>,
) -> Result<Response, PlatformError> {
    let customer_id = match query.customer_id.as_deref() {
        None | Some("") => None,
        Some(raw) => Some(Uuid::parse_str(raw).map_err(|_| {
            PlatformError::BadRequest("customer_id must be a customer UUID".into())
        })?),
    };
    list_inner(&state, key.project_id, customer_id, query).await
}

async fn list_for_customer(
    State(state): State<AppState>,
    key: ProjectKey,
    Path(customer_id): Path<String>,
    Query(query): Query<ListQuery>,
) -> Result<Response, PlatformError> {
    let customer_id = parse_customer_id(&customer_id)?;
    state
        .customers
        .get(key.project_id, customer_id)
        .await
        .map_err(|e| match e {
            CustomerError::NotFound => PlatformError::NotFound("customer"),
            other => other.into(),
        })?;
    list_inner(&state, key.project_id, Some(customer_id), query).await
}

async fn show(
    State(state): State<AppState>,
    key: ProjectKey,
    Path(phone_number_id): Path<String>,
) -> Result<Response, PlatformError> {
    // Another project's number and an unknown one give the same 404.
    let number = state
        .phone_numbers
        .get(key.project_id, &phone_number_id)
        .await?;
    Ok(Json(Data {
        data: PhoneNumberObject::new(&number),
    })
    .into_response())
}

async fn update(
    State(state): State<AppState>,
    key: ProjectKey,
    Path(phone_number_id): Path<String>,
    PlatformJson(body): PlatformJson<UpdateBody>,
) -> Result<Response, PlatformError> {
    let input = body
        .whatsapp_phone_number
        .ok_or_else(|| wrapper_missing("whatsapp_phone_number"))?;
    let written = state
        .phone_numbers
        .update(key.project_id, &phone_number_id, input)
        .await?;
    Ok(written_response(StatusCode::OK, written))
}

async fn remove(
    State(state): State<AppState>,
    key: ProjectKey,
    Path(phone_number_id): Path<String>,
) -> Result<StatusCode, PlatformError> {
    state
        .phone_numbers
        .disconnect(key.project_id, &phone_number_id)
        .await?;
    tracing::info!(%phone_number_id, "phone number disconnected");
    Ok(StatusCode::NO_CONTENT)
}
