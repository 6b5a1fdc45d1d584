//! Prometheus metrics: one process-wide recorder (the `metrics` facade), rendered at `/metrics`.

use std::sync::OnceLock;
use std::time::Duration;

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

/// How often recorded histogram samples are folded into their buckets (the exporter's own
/// default when it runs the upkeep itself).
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// The process's recorder, installed on first use. Tests start several apps in one process;
/// they share it, as instances of one binary would share nothing else.
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = builder().build_recorder();
        let handle = recorder.handle();
        // Another recorder may already be installed (an embedding application); then ours just
        // renders nothing, which is better than refusing to start.
        let _ = metrics::set_global_recorder(recorder);
        spawn_upkeep(handle.clone(), UPKEEP_INTERVAL);
        handle
    })
}

/// The exporter keeps every histogram sample (a value and an `Instant`, about 16 bytes of heap
/// each) until an upkeep or a scrape folds it into the buckets. Without this, an instance nobody
/// scrapes grew by that much per request per histogram for as long as it ran. A thread of its
/// own, not a task: it outlives any one runtime, as the recorder does.
fn spawn_upkeep(handle: PrometheusHandle, every: Duration) {
    let upkeep = move || loop {
        std::thread::sleep(every);
        handle.run_upkeep();
    };
    if let Err(error) = std::thread::Builder::new()
        .name("wagate-metrics".into())
        .spawn(upkeep)
    {
        tracing::warn!(%error, "could not start the metrics upkeep thread; histogram samples are kept until /metrics is scraped");
    }
}

#[cfg(test)]
mod tests {
    use std::alloc::System;
    use std::time::Instant;

    use metrics::{Key, Metadata, Recorder as _};

    use super::*;

    /// Counts the heap bytes allocated and not yet freed, process-wide (nextest runs each test in
    /// its own process).
    #[global_allocator]
    static ALLOCATOR: cap::Cap<System> = cap::Cap::new(System, usize::MAX);

    const MIB: usize = 1024 * 1024;

    #[test]
    fn histogram_samples_are_folded_into_buckets_without_a_scrape() {
        let recorder = builder().build_recorder();
        let metadata = Metadata::new(module_path!(), metrics::Level::INFO, None);
        let histogram =
            recorder.register_histogram(&Key::from_name("wagate_test_seconds"), &metadata);
        let before = ALLOCATOR.allocated();
        for i in 0..1_000_000 {
            histogram.record(f64::from(i % 100) / 1000.0);
        }
        // The premise: the exporter holds every sample until something drains it.
        let held = ALLOCATOR.allocated().saturating_sub(before);
        assert!(held > 12 * MIB, "1,000,000 samples held only {held} bytes");

        spawn_upkeep(recorder.handle(), Duration::from_millis(20));
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            // Most of it, not all: other tests of this binary may allocate meanwhile when they
            // share its process (`cargo test`).
            let left = ALLOCATOR.allocated().saturating_sub(before);
            if left < held / 4 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the upkeep never released the samples: {left} bytes still held"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // Folded, not lost: every sample is counted once.
        let rendered = recorder.handle().render();
        assert!(
            rendered.contains("wagate_test_seconds_count 1000000"),
            "{rendered}"
        );
    }
}
