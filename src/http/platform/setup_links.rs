//! `/platform/v1/customers/{id}/setup_links`: parse, call [`crate::domain::setup_links`],
//! present. The hosted page a link opens is `http::onboarding`.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch};
use axum::{Json, Router};
use serde::Deserialize;
use uuid::Uuid;

use super::customers::own_customer;
use super::error::PlatformError;
use super::extract::{page_params, time_param, wrapper_missing, PlatformJson, ProjectKey};
use super::present::{Data, Listing, SetupLinkObject};
use crate::domain::setup_links::{CreateInput, UpdateInput};
use crate::http::state::AppState;
use crate::store::{ProvisionedNumber, SetupLinkFilter, SetupLinkRow};

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/customers/{customer_id}/setup_links",
            get(list_links).post(create_link),
        )
        .route(
            "/customers/{customer_id}/setup_links/{link_id}",
            patch(update_link),
        )
}

#[derive(Debug, Deserialize)]
struct CreateLinkBody {
    setup_link: Option<CreateInput>,
}

#[derive(Debug, Deserialize)]
struct UpdateLinkBody {
    setup_link: Option<UpdateInput>,
}

/// `{origin}/setup/{token}`.
fn link_url(state: &AppState, headers: &HeaderMap, token: Option<String>) -> Option<String> {
    token.map(|t| format!("{}/setup/{t}", state.origin.for_request(headers)))
}

/// `{"data": <setup link>}` with its URL.
fn link_response(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    row: &SetupLinkRow,
    provisioned: Option<&ProvisionedNumber>,
    token: Option<String>,
) -> Response {
    let url = link_url(state, headers, token);
    let data = SetupLinkObject::new(row, provisioned, url, crate::store::now());
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
        None,
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
    let (page, per_page) = page_params(query.page.as_deref(), query.per_page.as_deref())?;
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
    let ids: Vec<_> = result.items.iter().map(|row| row.id).collect();
    let held = state.provisioning.reservations(&ids).await?;
    let listing = Listing::new(&result, page, per_page, |row| {
        let url = link_url(&state, &headers, state.setup_links.token(row));
        let provisioned = held.iter().find(|n| n.setup_link_id == Some(row.id));
        SetupLinkObject::new(row, provisioned, url, now)
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
    let provisioned = state.provisioning.reservation(row.id).await?;
    Ok(link_response(
        &state,
        &headers,
        StatusCode::OK,
        &row,
        provisioned.as_ref(),
        token,
    ))
}
