//! What the emulator tells benchmarks and fault tests about sends:
//!
//! - the **send log**: per number, the wall-clock arrival of every accepted send (the last
//!   million) and the refusals by Meta's code, so a benchmark can check that no one-second
//!   window Meta would measure held more than the number's limit
//!   (`GET|DELETE /_sandbox/numbers/{pnid}/send_rate`);
//! - **lost answers** (`POST /_sandbox/knobs {"lose_answers": {"count": N, "hold_ms": M}}`): the
//!   next N accepted sends are accepted as usual (stored, status webhooks sent) but their answer
//!   is held for `hold_ms` and then replaced by a 503, as when a connection to Meta breaks after
//!   Meta took the message. A client that times out first cannot tell whether Meta has it.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::{json, Value};

/// Arrivals kept per number: enough for a 100,000-recipient benchmark many times over.
const KEPT: usize = 1_000_000;

/// `lose_answers`: how many accepted sends still lose their answer, and how long it is held.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LostAnswers {
    pub count: u32,
    pub hold_ms: u64,
}

impl Default for LostAnswers {
    fn default() -> Self {
        Self {
            count: 0,
            hold_ms: 30_000,
        }
    }
}

#[derive(Debug, Default)]
struct NumberLog {
    accepted: u64,
    /// Unix seconds of accepted sends, in arrival order.
    arrivals: VecDeque<f64>,
    refused: BTreeMap<u32, u64>,
}

/// Accepted sends and refusals per number.
#[derive(Debug, Default)]
pub struct SendLog {
    numbers: HashMap<String, NumberLog>,
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl SendLog {
    pub fn accepted(&mut self, pnid: &str) {
        let log = self.numbers.entry(pnid.to_owned()).or_default();
        log.accepted += 1;
        if log.arrivals.len() >= KEPT {
            log.arrivals.pop_front();
        }
        log.arrivals.push_back(unix_now());
    }

    pub fn refused(&mut self, pnid: &str, code: u32) {
        *self
            .numbers
            .entry(pnid.to_owned())
            .or_default()
            .refused
            .entry(code)
            .or_default() += 1;
    }

    pub fn clear(&mut self, pnid: &str) {
        self.numbers.remove(pnid);
    }

    /// The report `GET /_sandbox/numbers/{pnid}/send_rate` answers.
    pub fn report(&self, pnid: &str) -> Value {
        let Some(log) = self.numbers.get(pnid) else {
            return json!({"accepted": 0, "refused": {}, "max_in_any_second": 0, "per_second": []});
        };
        let mut times: Vec<f64> = log.arrivals.iter().copied().collect();
        times.sort_by(f64::total_cmp);
        json!({
            "accepted": log.accepted,
            "refused": log.refused.iter().map(|(c, n)| (c.to_string(), json!(n))).collect::<serde_json::Map<_, _>>(),
            "max_in_any_second": max_in_any_second(&times),
            "per_second": per_second(&times),
        })
    }
}

/// The most arrivals in any window of one second (`[t, t + 1)`), over sorted times.
pub fn max_in_any_second(sorted: &[f64]) -> usize {
    let mut worst = 0;
    let mut left = 0;
    for right in 0..sorted.len() {
        while sorted[right] - sorted[left] >= 1.0 {
            left += 1;
        }
        worst = worst.max(right - left + 1);
    }
    worst
}

fn per_second(sorted: &[f64]) -> Vec<Value> {
    let mut buckets: BTreeMap<i64, u64> = BTreeMap::new();
    for t in sorted {
        *buckets.entry(t.floor() as i64).or_default() += 1;
    }
    buckets
        .into_iter()
        .map(|(second, count)| json!({"second": second, "count": count}))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_busiest_second_is_found_across_calendar_seconds() {
        // 3 in [10.5, 11.4], though no calendar second holds more than 2.
        let times = [10.0, 10.5, 10.9, 11.4, 12.6];
        assert_eq!(max_in_any_second(&times), 3);
        assert_eq!(max_in_any_second(&[]), 0);
        assert_eq!(per_second(&times).len(), 3);
    }
}
