//! The metrics of every call to Graph: `wagate_upstream_duration_seconds` (time to Graph's
//! response headers) and `wagate_upstream_responses_total{status}` (what Graph answered, by
//! class; `error` for a transport failure or timeout).

use std::sync::OnceLock;
use std::time::Duration;

use axum::http::StatusCode;

/// Every `status` label: [`status_label`]'s values, and `error`.
const OUTCOMES: [&str; 10] = [
    "2xx", "3xx", "400", "401", "403", "404", "429", "4xx", "5xx", "error",
];

/// The handles, looked up in the recorder once: a lookup hashes the name and labels, and the
/// proxy made two per request.
pub(super) struct UpstreamMetrics {
    duration: metrics::Histogram,
    /// One counter per [`OUTCOMES`] label, in that order.
    responses: [metrics::Counter; OUTCOMES.len()],
}

impl UpstreamMetrics {
    /// Made on the first call to Graph, after the process's recorder is installed.
    pub(super) fn get() -> &'static Self {
        static HANDLES: OnceLock<UpstreamMetrics> = OnceLock::new();
        HANDLES.get_or_init(|| {
            let counter = |outcome: &'static str| {
                metrics::counter!("wagate_upstream_responses_total", "status" => outcome)
            };
            Self {
                duration: metrics::histogram!("wagate_upstream_duration_seconds"),
                responses: OUTCOMES.map(counter),
            }
        })
    }

    pub(super) fn record_duration(&self, elapsed: Duration) {
        self.duration.record(elapsed.as_secs_f64());
    }

    /// Counts Graph's answer, or (`None`) a call that got none.
    pub(super) fn count(&self, status: Option<StatusCode>) {
        let label = status.map_or("error", |s| status_label(s.as_u16()));
        let at = OUTCOMES.iter().position(|&o| o == label);
        self.responses[at.expect("every label is an outcome")].increment(1);
    }
}

/// Status classes as metric labels (a bounded set).
fn status_label(status: u16) -> &'static str {
    match status {
        200..=299 => "2xx",
        300..=399 => "3xx",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        429 => "429",
        402 | 405..=428 | 430..=499 => "4xx",
        _ => "5xx",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_has_a_counter() {
        for status in 100..=999 {
            assert!(
                OUTCOMES.contains(&status_label(status)),
                "{status} is labelled {}, which has no counter",
                status_label(status)
            );
        }
    }
}
