//! What every request passes through before its route, in one middleware: the request id, the
//! credential headers marked sensitive, the per-request deadline, the request metrics, and
//! `Connection: close` while draining.
//!
//! These were five layers (four `from_fn` and tower-http's sensitive-headers layer); each boxed
//! a future and cloned the route per request, and the metrics looked their label set up in the
//! recorder's registry twice per request. On the proxy's hot path that was a measurable share of
//! wagate's own work (issue #24), so they are one future here, and the metric handles are made
//! once per route template and status.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::header::{AUTHORIZATION, CONNECTION, CONTENT_TYPE};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use metrics::{Counter, Histogram};

use super::graph::path::is_graph_path;
use super::overload::unavailable_in;
use super::request_id;
use super::state::AppState;

const API_KEY_HEADER: &str = "x-api-key";

/// The edge's state: the app, and the request metrics' handles by route template.
#[derive(Clone)]
pub struct Edge {
    state: AppState,
    metrics: Arc<RequestMetrics>,
}

impl Edge {
    pub fn new(state: AppState) -> Self {
        Self {
            state,
            metrics: Arc::default(),
        }
    }
}

/// `wagate_http_request_duration_seconds{route}` and `wagate_http_requests_total{route, status}`
/// handles, made on a route's first request (route templates, never raw paths, so the set is
/// bounded by the router).
#[derive(Default)]
struct RequestMetrics {
    routes: RwLock<HashMap<Box<str>, Arc<RouteMetrics>>>,
}

pub(super) struct RouteMetrics {
    route: Box<str>,
    duration: Histogram,
    by_status: RwLock<Vec<(u16, Counter)>>,
}

impl RequestMetrics {
    fn route(&self, route: &str) -> Arc<RouteMetrics> {
        if let Some(found) = self.routes.read().expect("metrics lock").get(route) {
            return found.clone();
        }
        let mut routes = self.routes.write().expect("metrics lock");
        routes
            .entry(route.into())
            .or_insert_with(|| {
                Arc::new(RouteMetrics {
                    route: route.into(),
                    duration: metrics::histogram!(
                        "wagate_http_request_duration_seconds",
                        "route" => route.to_owned()
                    ),
                    by_status: RwLock::default(),
                })
            })
            .clone()
    }
}

impl RouteMetrics {
    fn record(&self, status: u16, elapsed: Duration) {
        self.duration.record(elapsed.as_secs_f64());
        let counted = self
            .by_status
            .read()
            .expect("metrics lock")
            .iter()
            .find(|(s, _)| *s == status)
            .map(|(_, counter)| counter.increment(1))
            .is_some();
        if !counted {
            let counter = metrics::counter!(
                "wagate_http_requests_total",
                "route" => self.route.to_string(),
                "status" => status.to_string()
            );
            counter.increment(1);
            self.by_status
                .write()
                .expect("metrics lock")
                .push((status, counter));
        }
    }
}

pub async fn edge(State(edge): State<Edge>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str)
        .unwrap_or("unmatched");
    let metrics = edge.route_metrics(route);
    edge.around(&metrics, request, |request| next.run(request))
        .await
}

impl Edge {
    /// The request metrics of one route template; [`Edge::around`] records into them.
    pub(super) fn route_metrics(&self, route: &str) -> Arc<RouteMetrics> {
        self.metrics.route(route)
    }

    /// The edge's work around `run` (the route's handler, with its own layers): what [`edge`]
    /// does for the router, and `http::app` for the Graph mounts it serves without it.
    pub(super) async fn around<F, Fut>(
        &self,
        metrics: &RouteMetrics,
        mut request: Request,
        run: F,
    ) -> Response
    where
        F: FnOnce(Request) -> Fut,
        Fut: std::future::Future<Output = Response>,
    {
        let started = Instant::now();
        let graph_route = is_graph_path(request.uri().path());

        // The request id: the caller's when sane, else a new one; echoed on the response.
        let headers = request.headers_mut();
        let id = headers
            .get(request_id::REQUEST_ID_HEADER)
            .and_then(request_id::accept_incoming)
            .unwrap_or_else(request_id::generate);
        let id_header = HeaderValue::from_str(&id).expect("request ids are ASCII");
        headers.insert(request_id::REQUEST_ID_HEADER, id_header.clone());
        // Credentials never print in a debug log of the headers.
        for name in [AUTHORIZATION.as_str(), API_KEY_HEADER] {
            if let Some(value) = headers.get_mut(name) {
                value.set_sensitive(true);
            }
        }

        // `server.request_timeout`: uploads stream under `body_idle_timeout` instead.
        let streamed = headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("multipart/"));
        let limit = self.state.config.server.request_timeout;
        let run = request_id::scope(id, run(request));
        let mut response = if streamed {
            run.await
        } else {
            match tokio::time::timeout(limit, run).await {
                Ok(response) => response,
                Err(_) => {
                    metrics::counter!("wagate_http_overload_total", "reason" => "request_timeout")
                        .increment(1);
                    tracing::warn!(
                        limit = ?limit,
                        route = %metrics.route,
                        request_id = ?id_header,
                        "request did not finish within server.request_timeout; answered 503"
                    );
                    unavailable_in(
                        graph_route,
                        "the request did not finish within server.request_timeout",
                    )
                }
            }
        };

        let headers = response.headers_mut();
        headers.insert(request_id::REQUEST_ID_HEADER, id_header);
        // While draining, no kept-alive connection is reused while this instance closes it.
        if self.state.lifecycle.is_draining() {
            headers.insert(CONNECTION, HeaderValue::from_static("close"));
        }
        metrics.record(response.status().as_u16(), started.elapsed());
        response
    }
}
