//! `/platform/v1/customers`: parse, call [`crate::domain::customers`], present. A customer's
//! setup links are [`super::setup_links`].

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use uuid::Uuid;

use super::error::PlatformError;
use super::extract::{page_params, wrapper_missing, PlatformJson, ProjectKey};
use super::present::{CustomerObject, Data, Listing};
use crate::domain::customers::CustomerInput;
use crate::http::state::AppState;
use crate::store::{Customer, CustomerFilter};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/customers", get(list).post(create))
        .route(
            "/customers/{customer_id}",
            get(show).patch(update).delete(remove),
        )
}

/// A customer of the caller's project; a malformed, unknown or foreign id is the same 404.
pub(super) async fn own_customer(
    state: &AppState,
    project_id: Uuid,
    raw: &str,
) -> Result<Customer, PlatformError> {
    let id = Uuid::parse_str(raw).map_err(|_| PlatformError::NotFound("customer"))?;
    Ok(state.customers.get(project_id, id).await?)
}

fn customer_response(status: StatusCode, customer: &Customer) -> Response {
    let data = CustomerObject::new(customer);
    (status, Json(Data { data })).into_response()
}

#[derive(Debug, Deserialize)]
struct CustomerBody {
    customer: Option<CustomerInput>,
}

async fn create(
    State(state): State<AppState>,
    key: ProjectKey,
    PlatformJson(body): PlatformJson<CustomerBody>,
) -> Result<Response, PlatformError> {
    let input = body.customer.ok_or_else(|| wrapper_missing("customer"))?;
    let customer = state.customers.create(key.project_id, input).await?;
    tracing::info!(customer_id = %customer.id, "customer created");
    Ok(customer_response(StatusCode::CREATED, &customer))
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    page: Option<String>,
    per_page: Option<String>,
    name: Option<String>,
    external_customer_id: Option<String>,
}

async fn list(
    State(state): State<AppState>,
    key: ProjectKey,
    Query(query): Query<ListQuery>,
) -> Result<Response, PlatformError> {
    let (page, per_page) = page_params(query.page.as_deref(), query.per_page.as_deref())?;
    let filter = CustomerFilter {
        name: query.name.filter(|n| !n.is_empty()),
        external_customer_id: query.external_customer_id.filter(|n| !n.is_empty()),
    };
    let result = state
        .customers
        .list(key.project_id, &filter, page, per_page)
        .await?;
    let listing = Listing::new(&result, page, per_page, CustomerObject::new);
    Ok(Json(listing).into_response())
}

async fn show(
    State(state): State<AppState>,
    key: ProjectKey,
    Path(id): Path<String>,
) -> Result<Response, PlatformError> {
    let customer = own_customer(&state, key.project_id, &id).await?;
    Ok(customer_response(StatusCode::OK, &customer))
}

async fn update(
    State(state): State<AppState>,
    key: ProjectKey,
    Path(id): Path<String>,
    PlatformJson(body): PlatformJson<CustomerBody>,
) -> Result<Response, PlatformError> {
    let customer = own_customer(&state, key.project_id, &id).await?;
    let input = body.customer.ok_or_else(|| wrapper_missing("customer"))?;
    let customer = state
        .customers
        .update(key.project_id, customer.id, input)
        .await?;
    Ok(customer_response(StatusCode::OK, &customer))
}

#[derive(Debug, Deserialize)]
struct DeleteQuery {
    force: Option<String>,
}

async fn remove(
    State(state): State<AppState>,
    key: ProjectKey,
    Path(id): Path<String>,
    Query(query): Query<DeleteQuery>,
) -> Result<StatusCode, PlatformError> {
    let customer = own_customer(&state, key.project_id, &id).await?;
    let force = match query.force.as_deref() {
        None | Some("false") | Some("0") => false,
        Some("true") | Some("1") => true,
        Some(other) => {
            return Err(PlatformError::BadRequest(format!(
                "force must be true or false, got '{other}'"
            )))
        }
    };
    state
        .customers
        .delete(key.project_id, customer.id, force)
        .await?;
    tracing::info!(customer_id = %customer.id, force, "customer deleted");
    Ok(StatusCode::NO_CONTENT)
}
