//! The send log, for benchmarks: per number, the wall-clock arrival of every accepted send (the
//! last million) and the refusals by Meta's limit codes, so a benchmark can check that no
//! one-second window Meta would measure held more than the number's limit
//! (`GET|DELETE /_sandbox/numbers/{pnid}/send_rate`).
//!
//! It records whether or not the `limits` knob is on (a benchmark of wagate's own pacing runs
//! with Meta's limits off and checks the rate it produced). The emulator is driven at thousands
//! of sends a second, so recording is one integer push under the world lock the send already
//! holds; the report copies the arrivals under the lock and sorts and counts them after
//! releasing it.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::control::ControlError;
use super::Shared;

/// Arrivals kept per number: enough for a 100,000-recipient benchmark many times over (8 MB).
const KEPT: usize = 1_000_000;

/// The refusals the report always shows, zero or not: Meta's limits (throughput, pair rate,
/// throughput upgrade), so a benchmark reads `refused["130429"]` without a missing-key case.
const LIMIT_CODES: [u32; 3] = [130429, 131056, 131057];

const MICROS: i64 = 1_000_000;

#[derive(Debug, Default)]
struct NumberLog {
    /// Every accepted send since the last clear, including those no longer in `arrivals`.
    accepted: u64,
    /// Unix microseconds of accepted sends, in arrival order (the newest `KEPT`).
    arrivals: VecDeque<i64>,
    refused: BTreeMap<u32, u64>,
}

/// Accepted sends and refusals per number.
#[derive(Debug, Default)]
pub struct SendLog {
    numbers: HashMap<String, NumberLog>,
}

fn unix_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

impl SendLog {
    /// Records an accepted send of `pnid`, now. Called under the world lock on every send.
    pub fn accepted(&mut self, pnid: &str) {
        // `get_mut` first: no key allocation on the hot path once the number has a log.
        let log = match self.numbers.get_mut(pnid) {
            Some(log) => log,
            None => self.numbers.entry(pnid.to_owned()).or_default(),
        };
        log.accepted += 1;
        if log.arrivals.len() >= KEPT {
            log.arrivals.pop_front();
        }
        log.arrivals.push_back(unix_micros());
    }

    /// Records a send of `pnid` refused with Meta's `code`.
    pub fn refused(&mut self, pnid: &str, code: u32) {
        let log = match self.numbers.get_mut(pnid) {
            Some(log) => log,
            None => self.numbers.entry(pnid.to_owned()).or_default(),
        };
        *log.refused.entry(code).or_default() += 1;
    }

    pub fn clear(&mut self, pnid: &str) {
        self.numbers.remove(pnid);
    }

    /// What the report needs, copied so the world lock can be released before the work.
    fn snapshot(&self, pnid: &str) -> Snapshot {
        match self.numbers.get(pnid) {
            None => Snapshot::default(),
            Some(log) => Snapshot {
                accepted: log.accepted,
                arrivals: log.arrivals.iter().copied().collect(),
                refused: log.refused.clone(),
            },
        }
    }
}

#[derive(Debug, Default)]
struct Snapshot {
    accepted: u64,
    arrivals: Vec<i64>,
    refused: BTreeMap<u32, u64>,
}

impl Snapshot {
    /// The report `GET /_sandbox/numbers/{pnid}/send_rate` answers.
    fn report(mut self) -> Value {
        // Arrivals are pushed in lock order, so already sorted unless the wall clock stepped.
        if !self.arrivals.is_sorted() {
            self.arrivals.sort_unstable();
        }
        let mut refused = serde_json::Map::new();
        for code in LIMIT_CODES {
            refused.insert(code.to_string(), json!(0));
        }
        for (code, n) in &self.refused {
            refused.insert(code.to_string(), json!(n));
        }
        json!({
            "accepted": self.accepted,
            "refused": refused,
            "max_in_any_second": max_in_any_second(&self.arrivals),
            "per_second": per_second(&self.arrivals),
        })
    }
}

/// The most arrivals in any window of one second (`[t, t + 1 s)`, as Meta's throughput and the
/// `limits` knob measure it), over sorted Unix microseconds: two pointers, linear.
fn max_in_any_second(sorted: &[i64]) -> usize {
    let mut worst = 0;
    let mut left = 0;
    for right in 0..sorted.len() {
        while sorted[right] - sorted[left] >= MICROS {
            left += 1;
        }
        worst = worst.max(right - left + 1);
    }
    worst
}

/// Arrivals per calendar second, oldest first (seconds without a send are left out).
fn per_second(sorted: &[i64]) -> Vec<Value> {
    let mut buckets: Vec<(i64, u64)> = Vec::new();
    for t in sorted {
        let second = t.div_euclid(MICROS);
        match buckets.last_mut() {
            Some((last, count)) if *last == second => *count += 1,
            _ => buckets.push((second, 1)),
        }
    }
    buckets
        .into_iter()
        .map(|(second, count)| json!({"second": second, "count": count}))
        .collect()
}

/// `GET|DELETE /_sandbox/numbers/{pnid}/send_rate`, merged into the control API (and behind its
/// loopback-only guard, like `throughput_upgrade`).
pub fn routes() -> Router<Arc<Shared>> {
    Router::new().route(
        "/_sandbox/numbers/{pnid}/send_rate",
        get(send_rate).delete(clear_send_rate),
    )
}

fn unknown(pnid: &str) -> ControlError {
    ControlError::not_found(format!("unknown phone_number_id {pnid}"))
}

/// `GET /_sandbox/numbers/{pnid}/send_rate`: `{"accepted", "refused": {"130429", "131056",
/// "131057"}, "max_in_any_second", "per_second": [{"second", "count"}]}`.
async fn send_rate(
    State(shared): State<Arc<Shared>>,
    Path(pnid): Path<String>,
) -> Result<Json<Value>, ControlError> {
    let snapshot = {
        let world = shared.world();
        if !world.numbers.contains_key(&pnid) {
            return Err(unknown(&pnid));
        }
        world.send_log.snapshot(&pnid)
    };
    Ok(Json(snapshot.report()))
}

/// `DELETE /_sandbox/numbers/{pnid}/send_rate`: forgets the number's sends and refusals.
async fn clear_send_rate(
    State(shared): State<Arc<Shared>>,
    Path(pnid): Path<String>,
) -> Result<Json<Value>, ControlError> {
    let mut world = shared.world();
    if !world.numbers.contains_key(&pnid) {
        return Err(unknown(&pnid));
    }
    world.send_log.clear(&pnid);
    Ok(Json(json!({"success": true})))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: &[f64]) -> Vec<i64> {
        seconds.iter().map(|s| (s * MICROS as f64) as i64).collect()
    }

    #[test]
    fn the_busiest_second_is_found_across_calendar_seconds() {
        // 3 in [10.5, 11.4], though no calendar second holds more than 2.
        let times = at(&[10.0, 10.5, 10.9, 11.4, 12.6]);
        assert_eq!(max_in_any_second(&times), 3);
        assert_eq!(max_in_any_second(&[]), 0);
        // A window is half-open: exactly one second apart is two windows.
        assert_eq!(max_in_any_second(&at(&[1.0, 2.0, 3.0])), 1);
        let buckets = per_second(&times);
        assert_eq!(buckets.len(), 3);
        assert_eq!(buckets[0], json!({"second": 10, "count": 3}));
        assert_eq!(buckets[2], json!({"second": 12, "count": 1}));
    }

    #[test]
    fn the_report_always_names_the_limit_codes() {
        let mut log = SendLog::default();
        assert_eq!(
            log.snapshot("1").report(),
            json!({"accepted": 0, "refused": {"130429": 0, "131056": 0, "131057": 0},
                "max_in_any_second": 0, "per_second": []})
        );
        log.accepted("1");
        log.accepted("1");
        log.refused("1", 131056);
        let report = log.snapshot("1").report();
        assert_eq!(report["accepted"], 2);
        assert_eq!(report["max_in_any_second"], 2);
        assert_eq!(report["refused"]["131056"], 1);
        assert_eq!(report["refused"]["130429"], 0);
        log.clear("1");
        assert_eq!(log.snapshot("1").report()["accepted"], 0);
    }

    #[test]
    fn only_the_newest_arrivals_are_kept_but_all_are_counted() {
        let mut log = SendLog::default();
        for _ in 0..KEPT + 5 {
            log.accepted("1");
        }
        let snapshot = log.snapshot("1");
        assert_eq!(snapshot.accepted, (KEPT + 5) as u64);
        assert_eq!(snapshot.arrivals.len(), KEPT);
    }
}
