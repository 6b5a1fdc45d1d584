//! The Graph mounts, `/meta/whatsapp/{version}/…` and `/api/meta/{version}/…`: every request is
//! addressed (`path`), authenticated (`caller`), then either served from the database (`stored`)
//! or forwarded to Graph (`proxy`). `media` serves the signed download links the proxy hands out.
//!
//! Inside this module imports go one way: this file dispatches to `stored` and `proxy`, which
//! share `path`, `caller` and `resolve` but never import each other or this file.

pub mod caller;
pub mod media;
pub mod path;
pub mod proxy;
pub mod resolve;
pub mod stored;

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;

use crate::http::graph_error::GraphError;
use crate::http::state::AppState;
use path::GraphAddress;

/// The Graph mounts' route templates, in the order of [`path::GRAPH_PREFIXES`]; `http::app`
/// serves the same two without the router.
pub const MOUNT_TEMPLATES: [&str; 2] = [
    "/meta/whatsapp/{version}/{*rest}",
    "/api/meta/{version}/{*rest}",
];

pub fn router() -> Router<AppState> {
    let [kapso, api] = MOUNT_TEMPLATES;
    Router::new()
        .route(kapso, any(graph_request))
        .route(api, any(graph_request))
        .route("/meta/whatsapp/media_download", get(media::download))
        .route("/api/meta/media_download", get(media::download))
}

async fn graph_request(State(state): State<AppState>, request: Request) -> Response {
    serve(&state, request).await
}

/// One request to a Graph mount (`/meta/whatsapp/{version}/{*rest}`, `/api/meta/{version}/{*rest}`),
/// answered in the Graph envelope whatever happens; `http::app` calls it without the router.
pub async fn serve(state: &AppState, request: Request) -> Response {
    match dispatch(state, request).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

/// Address and authenticate, then hand the request to the stored-data routes or to the proxy.
async fn dispatch(state: &AppState, request: Request) -> Result<Response, GraphError> {
    let address = GraphAddress::parse(request.uri())?;
    let caller = caller::authenticate(state, request.headers(), request.extensions()).await?;
    match stored::route(request.method(), address.rest()) {
        Some(route) => stored::serve(state, &caller, &address, request, route).await,
        None => proxy::forward(state, &caller, &address, request).await,
    }
}
