//! Prometheus metrics: one process-wide recorder (the `metrics` facade), rendered at `/metrics`.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's recorder, installed on first use. Tests start several apps in one process;
/// they share it, as instances of one binary would share nothing else.
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        // Another recorder may already be installed (an embedding application); then ours just
        // renders nothing, which is better than refusing to start.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}
