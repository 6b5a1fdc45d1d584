//! `/platform/v1/customers` and `/platform/v1/customers/{id}/setup_links`: parse, call
//! [`crate::domain::customers`] or [`crate::domain::setup_links`], present.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch};
use axum::{Json, Router};
use serde::Deserialize;
use uuid::Uuid;

use super::error::PlatformError;
use super::extract::{time_param, PlatformJson, ProjectKey};
use super::phone_numbers::{parse_page_param, wrapper_missing, DEFAULT_PER_PAGE, MAX_PER_PAGE};
use super::present::{CustomerObject, Data, Listing, SetupLinkObject};
use crate::domain::customers::CustomerInput;
use crate::domain::setup_links;
use crate::http::state::AppState;
use crate::store::{Customer, CustomerFilter, SetupLinkFilter};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/customers", get(list).post(create))
        .route(
            "/customers/{customer_id}",
            get(show).patch(update).delete(remove),
        )
        .route(
            "/customers/{customer_id}/setup_links",
            get(list_links).post(create_link),
        )
        .route(
            "/customers/{customer_id}/setup_links/{link_id}",
            patch(update_link),
        )
}

/// A customer of the caller's project; a malformed, unknown or foreign id is the same 404.
async fn own_customer(
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
    let page = parse_page_param("page", query.page.as_deref(), 1, 1_000_000)?;
    let per_page = parse_page_param(
        "per_page",
        query.per_page.as_deref(),
        DEFAULT_PER_PAGE,
        MAX_PER_PAGE,
    )?;
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

#[derive(Debug, Deserialize)]
struct CreateLinkBody {
    setup_link: Option<setup_links::CreateInput>,
}

#[derive(Debug, Deserialize)]
struct UpdateLinkBody {
    setup_link: Option<setup_links::UpdateInput>,
}

/// `{origin}/setup/{token}`.
fn link_url(state: &AppState, headers: &HeaderMap, token: Option<String>) -> Option<String> {
    token.map(|t| {
        format!(
            "{}/setup/{t}",
            crate::http::origin::public_origin(&state.config, headers)
        )
    })
}

/// `{"data": <setup link>}` with its URL.
fn link_response(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    row: &crate::store::SetupLinkRow,
    token: Option<String>,
) -> Response {
    let url = link_url(state, headers, token);
    let data = SetupLinkObject::new(row, url, crate::store::now());
    (status, Json(Data { data })).into_response()
}

async fn create_link(
    State(state): State<AppState>,
    key: ProjectKey,
    headers: HeaderMap,
    Path(customer_id): Path<String>,
    PlatformJson(body): PlatformJson<CreateLinkBody>,
) -> Result<Response, PlatformError> {
    let customer = own_customer(&state, key.project_id, &customer_id).await?;
    let input = body.setup_link.unwrap_or_default();
    let (row, token) = state.setup_links.create(&customer, input).await?;
    tracing::info!(customer_id = %customer.id, setup_link_id = %row.id, "setup link created");
    Ok(link_response(
        &state,
        &headers,
        StatusCode::CREATED,
        &row,
        Some(token),
    ))
}

#[derive(Debug, Deserialize)]
struct LinkListQuery {
    page: Option<String>,
    per_page: Option<String>,
    status: Option<String>,
    created_after: Option<String>,
    created_before: Option<String>,
}

async fn list_links(
    State(state): State<AppState>,
    key: ProjectKey,
    headers: HeaderMap,
    Path(customer_id): Path<String>,
    Query(query): Query<LinkListQuery>,
) -> Result<Response, PlatformError> {
    let customer = own_customer(&state, key.project_id, &customer_id).await?;
    let page = parse_page_param("page", query.page.as_deref(), 1, 1_000_000)?;
    let per_page = parse_page_param(
        "per_page",
        query.per_page.as_deref(),
        DEFAULT_PER_PAGE,
        MAX_PER_PAGE,
    )?;
    let status = query.status.filter(|s| !s.is_empty());
    if let Some(s) = &status {
        if !["active", "used", "expired", "revoked"].contains(&s.as_str()) {
            return Err(PlatformError::BadRequest(format!(
                "status must be one of active, used, expired, revoked, got '{s}'"
            )));
        }
    }
    let filter = SetupLinkFilter {
        status,
        created_after: time_param("created_after", query.created_after.as_deref())?,
        created_before: time_param("created_before", query.created_before.as_deref())?,
    };
    let now = crate::store::now();
    let result = state
        .setup_links
        .list(customer.id, &filter, now, page, per_page)
        .await?;
    let listing = Listing::new(&result, page, per_page, |row| {
        let url = link_url(&state, &headers, state.setup_links.token(row));
        SetupLinkObject::new(row, url, now)
    });
    Ok(Json(listing).into_response())
}

async fn update_link(
    State(state): State<AppState>,
    key: ProjectKey,
    headers: HeaderMap,
    Path((customer_id, link_id)): Path<(String, String)>,
    PlatformJson(body): PlatformJson<UpdateLinkBody>,
) -> Result<Response, PlatformError> {
    let customer = own_customer(&state, key.project_id, &customer_id).await?;
    let link_id = Uuid::parse_str(&link_id).map_err(|_| PlatformError::NotFound("setup link"))?;
    let input = body
        .setup_link
        .ok_or_else(|| wrapper_missing("setup_link"))?;
    let row = state
        .setup_links
        .update(customer.id, link_id, input)
        .await?;
    let token = state.setup_links.token(&row);
    Ok(link_response(&state, &headers, StatusCode::OK, &row, token))
}
