//! Prometheus metrics: one process-wide recorder (the `metrics` facade), rendered at `/metrics`.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Buckets of every `…_seconds` histogram: from a fast proxied read (a millisecond) to a slow
/// webhook destination or Graph call near its timeout.
const SECONDS_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Buckets of the writer's batch sizes (rows per commit, up to `writer.max_batch`).
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

/// Histograms with buckets, not summaries: quantiles from two instances behind a load balancer
/// cannot be combined, bucket counts can (`histogram_quantile(sum by (le) (rate(…)))`).
fn builder() -> PrometheusBuilder {
    // Only an empty bucket list is refused; these are constants.
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full("wagate_writer_batch_size".into()),
                BATCH_BUCKETS,
            )
        })
        .expect("bucket lists are not empty")
}

/// The process's recorder, installed on first use. Tests start several apps in one process;
/// they share it, as instances of one binary would share nothing else.
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = builder().build_recorder();
        let handle = recorder.handle();
        // Another recorder may already be installed (an embedding application); then ours just
        // renders nothing, which is better than refusing to start.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}
