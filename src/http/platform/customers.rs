//! `/platform/v1/customers` and `/platform/v1/customers/{id}/setup_links`.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, patch};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use super::error::PlatformError;
use super::extract::{time_param, PlatformJson, ProjectKey};
use super::phone_numbers::{parse_page_param, wrapper_missing, DEFAULT_PER_PAGE, MAX_PER_PAGE};
use crate::domain::phone_numbers::FieldError;
use crate::domain::setup_links::{self, SetupLinkError};
use crate::http::state::AppState;
use crate::store::{
    Customer, CustomerFilter, CustomerPatch, NewCustomer, Page, SetupLinkFilter, StoreError,
};
use crate::time::iso;

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

const MAX_NAME_LEN: usize = 255;
const MAX_EXTERNAL_ID_LEN: usize = 255;

fn customer_json(c: &Customer) -> Value {
    json!({
        "id": c.id,
        "name": c.name,
        "external_customer_id": c.external_customer_id,
        "created_at": iso(c.created_at),
        "updated_at": iso(c.updated_at),
    })
}

fn page_json<T>(page: Page<T>, number: u32, per_page: u32, present: impl Fn(&T) -> Value) -> Value {
    let total_pages = (page.total_count + i64::from(per_page) - 1) / i64::from(per_page);
    json!({
        "data": page.items.iter().map(present).collect::<Vec<_>>(),
        "meta": {
            "page": number,
            "per_page": per_page,
            "total_pages": total_pages,
            "total_count": page.total_count,
        }
    })
}

/// A customer of the caller's project; a malformed, unknown or foreign id is the same 404.
async fn own_customer(
    state: &AppState,
    project_id: Uuid,
    raw: &str,
) -> Result<Customer, PlatformError> {
    let id = Uuid::parse_str(raw).map_err(|_| PlatformError::NotFound("customer"))?;
    state
        .store
        .get_customer(project_id, id)
        .await
        .map_err(|e| match e {
            StoreError::NotFound => PlatformError::NotFound("customer"),
            other => other.into(),
        })
}

fn conflict_on_external_id(error: StoreError) -> PlatformError {
    match error {
        StoreError::Conflict { .. } => PlatformError::Conflict(
            "a customer with this external_customer_id already exists in the project".into(),
        ),
        StoreError::NotFound => PlatformError::NotFound("customer"),
        other => other.into(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CustomerInput {
    name: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    external_customer_id: Option<Option<String>>,
}

fn double_option<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

#[derive(Debug, Deserialize)]
struct CustomerBody {
    customer: Option<CustomerInput>,
}

fn check_customer(input: &CustomerInput, creating: bool) -> Result<(), PlatformError> {
    let mut errors = Vec::new();
    match input.name.as_deref().map(str::trim) {
        None if creating => errors.push(FieldError::new("name", "is required")),
        Some("") => errors.push(FieldError::new("name", "must not be empty")),
        Some(name) if name.chars().count() > MAX_NAME_LEN => errors.push(FieldError::new(
            "name",
            format!("must be at most {MAX_NAME_LEN} characters"),
        )),
        _ => {}
    }
    if let Some(Some(external)) = &input.external_customer_id {
        if external.trim().is_empty() || external.len() > MAX_EXTERNAL_ID_LEN {
            errors.push(FieldError::new(
                "external_customer_id",
                format!("must be 1 to {MAX_EXTERNAL_ID_LEN} characters"),
            ));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(PlatformError::Validation(errors))
    }
}

async fn create(
    State(state): State<AppState>,
    key: ProjectKey,
    PlatformJson(body): PlatformJson<CustomerBody>,
) -> Result<(StatusCode, Json<Value>), PlatformError> {
    let input = body.customer.ok_or_else(|| wrapper_missing("customer"))?;
    check_customer(&input, true)?;
    let customer = state
        .store
        .create_customer(NewCustomer {
            project_id: key.project_id,
            name: input.name.unwrap_or_default().trim().to_owned(),
            external_customer_id: input.external_customer_id.flatten(),
        })
        .await
        .map_err(conflict_on_external_id)?;
    tracing::info!(customer_id = %customer.id, "customer created");
    Ok((
        StatusCode::CREATED,
        Json(json!({ "data": customer_json(&customer) })),
    ))
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
) -> Result<Json<Value>, PlatformError> {
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
        .store
        .list_customers(key.project_id, &filter, page, per_page)
        .await?;
    Ok(Json(page_json(result, page, per_page, customer_json)))
}

async fn show(
    State(state): State<AppState>,
    key: ProjectKey,
    Path(id): Path<String>,
) -> Result<Json<Value>, PlatformError> {
    let customer = own_customer(&state, key.project_id, &id).await?;
    Ok(Json(json!({ "data": customer_json(&customer) })))
}

async fn update(
    State(state): State<AppState>,
    key: ProjectKey,
    Path(id): Path<String>,
    PlatformJson(body): PlatformJson<CustomerBody>,
) -> Result<Json<Value>, PlatformError> {
    let customer = own_customer(&state, key.project_id, &id).await?;
    let input = body.customer.ok_or_else(|| wrapper_missing("customer"))?;
    check_customer(&input, false)?;
    let patch = CustomerPatch {
        name: input.name.map(|n| n.trim().to_owned()),
        external_customer_id: input.external_customer_id,
    };
    let customer = state
        .store
        .update_customer(key.project_id, customer.id, &patch)
        .await
        .map_err(conflict_on_external_id)?;
    Ok(Json(json!({ "data": customer_json(&customer) })))
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
        .store
        .delete_customer(key.project_id, customer.id, force)
        .await
        .map_err(|e| match e {
            StoreError::Conflict { .. } => PlatformError::Conflict(
                "the customer has connected phone numbers; disconnect them first, or delete with ?force=true \
                 to keep them connected to the project without a customer"
                    .into(),
            ),
            StoreError::NotFound => PlatformError::NotFound("customer"),
            other => other.into(),
        })?;
    state.auth.invalidate_numbers();
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

impl From<SetupLinkError> for PlatformError {
    fn from(error: SetupLinkError) -> Self {
        match error {
            SetupLinkError::Invalid(errors) => Self::Validation(errors),
            SetupLinkError::NotFound => Self::NotFound("setup link"),
            SetupLinkError::Store(e) => e.into(),
        }
    }
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

async fn create_link(
    State(state): State<AppState>,
    key: ProjectKey,
    headers: HeaderMap,
    Path(customer_id): Path<String>,
    PlatformJson(body): PlatformJson<CreateLinkBody>,
) -> Result<(StatusCode, Json<Value>), PlatformError> {
    let customer = own_customer(&state, key.project_id, &customer_id).await?;
    let input = body.setup_link.unwrap_or_default();
    let (row, token) = setup_links::create(&*state.store, &state.secrets, &customer, input).await?;
    tracing::info!(customer_id = %customer.id, setup_link_id = %row.id, "setup link created");
    let url = link_url(&state, &headers, Some(token));
    Ok((
        StatusCode::CREATED,
        Json(json!({ "data": setup_links::to_json(&row, url, crate::store::now()) })),
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
) -> Result<Json<Value>, PlatformError> {
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
        .store
        .list_setup_links(customer.id, &filter, now, page, per_page)
        .await?;
    Ok(Json(page_json(result, page, per_page, |row| {
        setup_links::to_json(
            row,
            link_url(&state, &headers, setup_links::token(&state.secrets, row)),
            now,
        )
    })))
}

async fn update_link(
    State(state): State<AppState>,
    key: ProjectKey,
    headers: HeaderMap,
    Path((customer_id, link_id)): Path<(String, String)>,
    PlatformJson(body): PlatformJson<UpdateLinkBody>,
) -> Result<Json<Value>, PlatformError> {
    let customer = own_customer(&state, key.project_id, &customer_id).await?;
    let link_id = Uuid::parse_str(&link_id).map_err(|_| PlatformError::NotFound("setup link"))?;
    let input = body
        .setup_link
        .ok_or_else(|| wrapper_missing("setup_link"))?;
    let row = setup_links::update(&*state.store, customer.id, link_id, input).await?;
    let url = link_url(&state, &headers, setup_links::token(&state.secrets, &row));
    Ok(Json(
        json!({ "data": setup_links::to_json(&row, url, crate::store::now()) }),
    ))
}
