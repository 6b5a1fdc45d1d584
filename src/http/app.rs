//! The service every connection runs. Requests to the Graph mounts go straight to their handler
//! with the edge's work, the request span and the body idle timeout around it; everything else
//! goes through the router (`http::router`) and its layers.
//!
//! Why: the Graph passthrough is the path where wagate competes with a bare proxy (issue #24),
//! and on it axum's route lookup, the `from_fn` middleware's boxed future and route clone, and
//! tower-http's trace layer (a span entered on every body frame) were work a proxy does not
//! need per request. What a caller sees is the same either way: the request id, the deadline,
//! the metrics under the route template, the `request finished` log line in the request's span,
//! and the 408 for a stalled body. `HEAD`, and paths axum's router might match differently, go
//! through the router.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::Request;
use axum::http::Method;
use axum::response::Response;
use axum::Router;
use tower::ServiceExt as _;
use tower_http::timeout::TimeoutBody;
use tracing::Instrument as _;

use super::edge::{Edge, RouteMetrics};
use super::graph::path::{split_graph_path, GRAPH_PREFIXES};
use super::graph::{self, MOUNT_TEMPLATES};
use super::state::AppState;

/// Cheap to clone: one per connection.
#[derive(Clone)]
pub struct HttpApp(Arc<Inner>);

struct Inner {
    router: Router,
    state: AppState,
    edge: Edge,
    /// Each Graph mount's request metrics, in the order of [`MOUNT_TEMPLATES`].
    graph_metrics: Vec<Arc<RouteMetrics>>,
}

impl HttpApp {
    pub fn new(state: AppState) -> Self {
        let edge = Edge::new(state.clone());
        let graph_metrics = MOUNT_TEMPLATES
            .iter()
            .map(|template| edge.route_metrics(template))
            .collect();
        Self(Arc::new(Inner {
            router: super::router(state.clone(), edge.clone()),
            state,
            edge,
            graph_metrics,
        }))
    }

    pub async fn serve(self, request: Request) -> Response {
        match graph_mount(request.method(), request.uri().path()) {
            Some(mount) => self.serve_graph(mount, request).await,
            None => match self.0.router.clone().oneshot(request).await {
                Ok(response) => response,
                Err(infallible) => match infallible {},
            },
        }
    }

    /// What the router's layers do for a route, in their order: the edge (outermost), the
    /// span and its `request finished` line, the body idle timeout.
    async fn serve_graph(&self, mount: usize, request: Request) -> Response {
        let inner = &*self.0;
        let (template, metrics) = (MOUNT_TEMPLATES[mount], &inner.graph_metrics[mount]);
        let timeout = inner.state.config.server.body_idle_timeout;
        let request = request.map(|body| Body::new(TimeoutBody::new(timeout, body)));
        inner
            .edge
            .around(metrics, request, |request| {
                let span = super::request_span(template, &request);
                async move {
                    let started = Instant::now();
                    // Boxed: the handler's future is large (every proxy and stored-data phase),
                    // and each wrapper above (deadline, request-id scope, span, the
                    // connection's service) would otherwise copy it as it is built; a profile
                    // showed those copies at 5% of the passthrough's CPU.
                    let response = Box::pin(graph::serve(&inner.state, request)).await;
                    super::log_response(&response, started.elapsed(), &tracing::Span::none());
                    response
                }
                .instrument(span)
            })
            .await
    }
}

/// Which Graph mount (an index into [`MOUNT_TEMPLATES`]) serves `path` without the router: a
/// non-empty `{version}` segment and a non-empty rest that does not start with another `/`
/// (axum's router matches those too, and they are left to it rather than matched here by a
/// second reading of its rules).
fn graph_mount(method: &Method, path: &str) -> Option<usize> {
    if method == Method::HEAD {
        // axum answers `HEAD` without the body a handler made.
        return None;
    }
    let mount = GRAPH_PREFIXES
        .iter()
        .position(|prefix| path.starts_with(prefix))?;
    let (version, rest) = split_graph_path(path)?;
    (!version.is_empty() && !rest.is_empty() && !rest.starts_with('/')).then_some(mount)
}

#[cfg(test)]
mod tests {
    use axum::extract::MatchedPath;
    use axum::routing::any;

    use super::*;

    /// Every path matched here is matched by axum's router to the same mount.
    #[tokio::test]
    async fn the_router_agrees_on_every_path_taken() {
        let mut router = Router::new();
        for template in MOUNT_TEMPLATES {
            router = router.route(
                template,
                any(|matched: MatchedPath| async move { matched.as_str().to_owned() }),
            );
        }
        let paths = [
            "/meta/whatsapp/v24.0/123/messages",
            "/meta/whatsapp/v24.0/123",
            "/api/meta/v21.0/123/whatsapp_business_profile",
            "/api/meta/x/y",
            "/meta/whatsapp/v24.0/a%2Fb/c",
            "/meta/whatsapp/v24.0/123/",
            "/meta/whatsapp/v24.0/",
            "/meta/whatsapp//123",
            "/meta/whatsapp/v24.0//123",
            "/meta/whatsapp/media_download",
            "/meta/whatsappx/v24.0/1",
            "/api/meta/v24.0",
            "/platform/v1/customers",
        ];
        let mut taken = 0;
        for path in paths {
            let Some(mount) = graph_mount(&Method::GET, path) else {
                continue;
            };
            taken += 1;
            let request = Request::get(path).body(Body::empty()).unwrap();
            let response = router.clone().oneshot(request).await.unwrap();
            let body = axum::body::to_bytes(response.into_body(), 1024)
                .await
                .unwrap();
            assert_eq!(&body[..], MOUNT_TEMPLATES[mount].as_bytes(), "{path}");
        }
        assert_eq!(taken, 6, "the cases above cover both mounts");
    }

    #[test]
    fn head_and_other_paths_go_to_the_router() {
        assert_eq!(graph_mount(&Method::HEAD, "/meta/whatsapp/v24.0/1/x"), None);
        assert_eq!(
            graph_mount(&Method::POST, "/api/meta/v24.0/1/messages"),
            Some(1)
        );
        assert_eq!(graph_mount(&Method::GET, "/meta/whatsapp/v24.0/"), None);
        assert_eq!(graph_mount(&Method::GET, "/healthz"), None);
    }
}
