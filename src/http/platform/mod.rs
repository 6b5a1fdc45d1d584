//! The Platform API (`/platform/v1`): project-scoped management with `X-API-Key`, bodies wrapped
//! in the resource name, answers as `{"data": …}` and errors as `{"error": …}`.

mod api_keys;
mod broadcasts;
mod customers;
mod deliveries;
mod error;
mod extract;
mod pacing;
mod phone_numbers;
mod present;
mod provisioning;
mod setup_links;
mod usage;
mod webhooks;

use axum::Router;

pub use error::PlatformError;

use crate::http::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .merge(phone_numbers::router())
        .merge(deliveries::router())
        .merge(customers::router())
        .merge(setup_links::router())
        .merge(api_keys::router())
        .merge(webhooks::router())
        .merge(provisioning::router())
        .merge(usage::router())
        .merge(pacing::router())
        .merge(broadcasts::router())
}
