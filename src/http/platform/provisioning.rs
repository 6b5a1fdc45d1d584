//! Phone-number provisioning on the Platform API: the project's Twilio account
//! (`/phone_number_providers/twilio`) and its pools of numbers per country
//! (`/phone_number_pools`). Parse, call [`crate::domain::provisioning`], present.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::error::PlatformError;
use super::extract::{page_params, wrapper_missing, PlatformJson, ProjectKey};
use super::present::{Data, Listing, PoolNumberObject, ProviderObject};
use crate::domain::provisioning::{
    AddPoolNumber, NumberProvisioning, PoolError, ProviderAccountError, TwilioInput,
};
use crate::http::state::AppState;
use crate::store::ProvisionedNumber;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/phone_number_providers/twilio",
            get(show_twilio).put(put_twilio).delete(delete_twilio),
        )
        .route("/phone_number_pools", get(list_pools))
        .route(
            "/phone_number_pools/{country_iso}/numbers",
            get(list_numbers).post(add_number),
        )
        .route(
            "/phone_number_pools/{country_iso}/numbers/{id}",
            get(show_number).patch(set_state).delete(remove_number),
        )
        .route(
            "/phone_number_pools/{country_iso}/numbers/{id}/release",
            post(release_number),
        )
}

impl From<ProviderAccountError> for PlatformError {
    fn from(error: ProviderAccountError) -> Self {
        match error {
            ProviderAccountError::Invalid(errors) => Self::Validation(errors),
            ProviderAccountError::NotFound => Self::NotFound("twilio provider"),
            ProviderAccountError::Unreachable(message) => Self::BadGateway(message),
            ProviderAccountError::Store(e) => e.into(),
        }
    }
}

impl From<PoolError> for PlatformError {
    fn from(error: PoolError) -> Self {
        match error {
            PoolError::Invalid(errors) => Self::Validation(errors),
            PoolError::NotFound => Self::NotFound("pool number"),
            PoolError::Conflict(message) => Self::Conflict(message),
            PoolError::Unreachable(message) => Self::BadGateway(message),
            PoolError::Store(e) => e.into(),
        }
    }
}

/// Where Twilio sends the project's inbound SMS and calls: wagate's public origin.
fn inbound_base(state: &AppState, headers: &HeaderMap) -> String {
    state.origin.for_request(headers)
}

#[derive(Debug, Deserialize)]
struct ProviderBody {
    phone_number_provider: Option<TwilioInput>,
}

async fn put_twilio(
    State(state): State<AppState>,
    key: ProjectKey,
    headers: HeaderMap,
    PlatformJson(body): PlatformJson<ProviderBody>,
) -> Result<Response, PlatformError> {
    let input = body
        .phone_number_provider
        .ok_or_else(|| wrapper_missing("phone_number_provider"))?;
    let row = state
        .provisioning
        .register_twilio(key.project_id, input)
        .await?;
    tracing::info!(project_id = %key.project_id, account_sid = %row.account_sid,
        "Twilio account registered for provisioning");
    let urls = NumberProvisioning::inbound_urls(&inbound_base(&state, &headers), key.project_id);
    Ok(Json(Data {
        data: ProviderObject::new(&row, urls),
    })
    .into_response())
}

async fn show_twilio(
    State(state): State<AppState>,
    key: ProjectKey,
    headers: HeaderMap,
) -> Result<Response, PlatformError> {
    let row = state
        .provisioning
        .twilio_account(key.project_id)
        .await?
        .ok_or(PlatformError::NotFound("twilio provider"))?;
    let urls = NumberProvisioning::inbound_urls(&inbound_base(&state, &headers), key.project_id);
    Ok(Json(Data {
        data: ProviderObject::new(&row, urls),
    })
    .into_response())
}

async fn delete_twilio(
    State(state): State<AppState>,
    key: ProjectKey,
) -> Result<StatusCode, PlatformError> {
    state.provisioning.delete_twilio(key.project_id).await?;
    tracing::info!(project_id = %key.project_id, "Twilio account removed from provisioning");
    Ok(StatusCode::NO_CONTENT)
}

/// One country's pool: how many numbers it holds in each state.
#[derive(Debug, Default, Serialize)]
struct PoolObject {
    available: i64,
    country_iso: String,
    failed: i64,
    in_use: i64,
    released: i64,
    reserved: i64,
    total: i64,
}

async fn list_pools(
    State(state): State<AppState>,
    key: ProjectKey,
) -> Result<Response, PlatformError> {
    let counts = state.provisioning.pool_counts(key.project_id).await?;
    let mut pools: Vec<PoolObject> = Vec::new();
    for count in counts {
        if pools
            .last()
            .is_none_or(|p| p.country_iso != count.country_iso)
        {
            pools.push(PoolObject {
                country_iso: count.country_iso.clone(),
                ..PoolObject::default()
            });
        }
        let pool = pools.last_mut().expect("pushed above");
        pool.total += count.count;
        match count.state.as_str() {
            "available" => pool.available += count.count,
            "reserved" => pool.reserved += count.count,
            "in_use" => pool.in_use += count.count,
            "released" => pool.released += count.count,
            _ => pool.failed += count.count,
        }
    }
    Ok(Json(Data { data: pools }).into_response())
}

#[derive(Debug, Deserialize)]
struct NumberListQuery {
    page: Option<String>,
    per_page: Option<String>,
    state: Option<String>,
}

async fn list_numbers(
    State(state): State<AppState>,
    key: ProjectKey,
    Path(country_iso): Path<String>,
    Query(query): Query<NumberListQuery>,
) -> Result<Response, PlatformError> {
    let (page, per_page) = page_params(query.page.as_deref(), query.per_page.as_deref())?;
    let result = state
        .provisioning
        .list_pool(
            key.project_id,
            &country_iso,
            query.state.filter(|s| !s.is_empty()),
            page,
            per_page,
        )
        .await?;
    let listing = Listing::new(&result, page, per_page, PoolNumberObject::new);
    Ok(Json(listing).into_response())
}

#[derive(Debug, Deserialize)]
struct AddNumberBody {
    pool_number: Option<AddPoolNumber>,
}

async fn add_number(
    State(state): State<AppState>,
    key: ProjectKey,
    headers: HeaderMap,
    Path(country_iso): Path<String>,
    PlatformJson(body): PlatformJson<AddNumberBody>,
) -> Result<Response, PlatformError> {
    let input = body
        .pool_number
        .ok_or_else(|| wrapper_missing("pool_number"))?;
    let number = state
        .provisioning
        .add_pool_number(
            key.project_id,
            &country_iso,
            input,
            &inbound_base(&state, &headers),
        )
        .await?;
    tracing::info!(project_id = %key.project_id, provisioned_number_id = %number.id,
        country_iso = %number.country_iso, "number added to the pool");
    Ok((
        StatusCode::CREATED,
        Json(Data {
            data: PoolNumberObject::new(&number),
        }),
    )
        .into_response())
}

/// `{"data": <pool number>}`.
fn number_answer(number: &ProvisionedNumber) -> Response {
    Json(Data {
        data: PoolNumberObject::new(number),
    })
    .into_response()
}

fn number_id(raw: &str) -> Result<Uuid, PlatformError> {
    Uuid::parse_str(raw).map_err(|_| PlatformError::NotFound("pool number"))
}

async fn show_number(
    State(state): State<AppState>,
    key: ProjectKey,
    Path((country_iso, id)): Path<(String, String)>,
) -> Result<Response, PlatformError> {
    let number = state
        .provisioning
        .pool_number(key.project_id, &country_iso, number_id(&id)?)
        .await?;
    Ok(number_answer(&number))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateInput {
    state: Option<String>,
}

#[derive(Debug, Deserialize)]
struct StateBody {
    pool_number: Option<StateInput>,
}

async fn set_state(
    State(state): State<AppState>,
    key: ProjectKey,
    Path((country_iso, id)): Path<(String, String)>,
    PlatformJson(body): PlatformJson<StateBody>,
) -> Result<Response, PlatformError> {
    let input = body
        .pool_number
        .ok_or_else(|| wrapper_missing("pool_number"))?;
    let number = state
        .provisioning
        .set_pool_number_state(
            key.project_id,
            &country_iso,
            number_id(&id)?,
            input.state.as_deref(),
        )
        .await?;
    tracing::info!(project_id = %key.project_id, provisioned_number_id = %number.id,
        state = %number.state, "pool number state set by hand");
    Ok(number_answer(&number))
}

async fn remove_number(
    State(state): State<AppState>,
    key: ProjectKey,
    Path((country_iso, id)): Path<(String, String)>,
) -> Result<StatusCode, PlatformError> {
    state
        .provisioning
        .remove_pool_number(key.project_id, &country_iso, number_id(&id)?)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn release_number(
    State(state): State<AppState>,
    key: ProjectKey,
    Path((country_iso, id)): Path<(String, String)>,
) -> Result<Response, PlatformError> {
    let number = state
        .provisioning
        .release_pool_number(key.project_id, &country_iso, number_id(&id)?)
        .await?;
    tracing::info!(project_id = %key.project_id, provisioned_number_id = %number.id,
        "pool number released to the provider");
    Ok(number_answer(&number))
}
