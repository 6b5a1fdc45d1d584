//! `/platform/v1/whatsapp/phone_numbers` and `/platform/v1/customers/{id}/whatsapp/phone_numbers`.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use uuid::Uuid;

use super::error::PlatformError;
use super::extract::{PlatformJson, ProjectKey};
use super::present::{Data, Listing, PhoneNumberObject};
use crate::domain::customers::CustomerError;
use crate::domain::phone_numbers::{
    ConnectInput, FieldError, PhoneNumberError, UpdateInput, Written,
};
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

pub const MAX_PER_PAGE: u32 = 100;
pub const DEFAULT_PER_PAGE: u32 = 20;

pub(super) fn wrapper_missing(name: &str) -> PlatformError {
    PlatformError::Validation(vec![FieldError::new(
        name,
        "is required: wrap the fields in {\"".to_owned() + name + "\": {…}}",
    )])
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

pub(super) fn parse_page_param(
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

async fn list_inner(
    state: &AppState,
    project_id: Uuid,
    customer_id: Option<Uuid>,
    query: ListQuery,
) -> Result<Response, PlatformError> {
    let page = parse_page_param("page", query.page.as_deref(), 1, 1_000_000)?;
    let per_page = parse_page_param(
        "per_page",
        query.per_page.as_deref(),
        DEFAULT_PER_PAGE,
        MAX_PER_PAGE,
    )?;
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
