//! Who is calling a Graph mount: `X-API-Key` and/or `Authorization: Bearer`, answered from the
//! authenticator's caches.

use axum::http::header::AUTHORIZATION;
use axum::http::{Extensions, HeaderMap};

use crate::domain::auth::{AuthError, Caller};
use crate::http::graph_error::GraphError;
use crate::http::state::AppState;

/// The caller, or the Graph error Meta would give for missing or bad credentials (429 code 4
/// when this client or key prefix failed too often).
pub async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    extensions: &Extensions,
) -> Result<Caller, GraphError> {
    let client = state.clients.of(headers, extensions);
    let api_key = headers.get("x-api-key").and_then(|v| v.to_str().ok());
    let bearer = headers.get(AUTHORIZATION).map(|v| {
        let value = v.to_str().unwrap_or("");
        match value.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token,
            // Another scheme, or garbage: present but unusable.
            _ => "",
        }
    });
    match state.auth.authenticate(client, api_key, bearer).await {
        Ok(caller) => Ok(caller),
        Err(AuthError::Missing) if api_key.is_none() && bearer.is_none() => {
            Err(GraphError::missing_credentials())
        }
        Err(AuthError::Missing | AuthError::Invalid) => Err(GraphError::invalid_credentials()),
        Err(AuthError::Throttled { retry_after }) => {
            Err(GraphError::too_many_failed_authentications(retry_after))
        }
        Err(AuthError::Store(e)) => Err(e.into()),
    }
}
