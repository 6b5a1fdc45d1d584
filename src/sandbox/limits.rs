//! Meta's send limits, when the `limits` knob is on: each number's throughput (messages per
//! second over a sliding one-second window: `STANDARD` 80, `HIGH` 1,000 by default), the
//! business–user pair rate (a small burst, then one message per interval) and the minute a
//! number is unusable while Meta upgrades its throughput. Over a limit a send is refused with
//! Meta's own error (`130429`, `131056`, `131057`) and nothing is sent or recorded.
//!
//! `POST /_sandbox/numbers/{pnid}/throughput_upgrade` starts an upgrade: sends answer `131057`
//! for `upgrade_ms`, then the number is `HIGH` and its `phone_number_quality_update`
//! (`THROUGHPUT_UPGRADE`) webhook is delivered, as Meta does.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::graph_errors::GraphError;

/// The limits and their sizes (`POST /_sandbox/knobs` `{"limits": {…}}`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LimitKnobs {
    /// Off by default: the benchmarks drive the emulator far past Meta's limits.
    pub enabled: bool,
    pub standard_mps: u32,
    pub high_mps: u32,
    /// Messages to one user allowed back to back before the pair rate applies.
    pub pair_burst: u32,
    /// After the burst, one message to the same user per this many milliseconds.
    pub pair_interval_ms: u64,
    /// How long a throughput upgrade keeps the number unusable (Meta: up to a minute).
    pub upgrade_ms: u64,
}

impl Default for LimitKnobs {
    fn default() -> Self {
        Self {
            enabled: false,
            standard_mps: 80,
            high_mps: 1_000,
            pair_burst: 3,
            pair_interval_ms: 6_000,
            upgrade_ms: 60_000,
        }
    }
}

/// What the limiter remembers: recent sends per number and per pair, and upgrades under way.
#[derive(Debug, Default)]
pub struct Limiter {
    windows: HashMap<String, VecDeque<Instant>>,
    /// (number, user) → (tokens, last refill).
    pairs: HashMap<(String, String), (f64, Instant)>,
    upgrading: HashMap<String, Instant>,
}

impl Limiter {
    /// Marks `pnid` as upgrading until `until`.
    pub fn start_upgrade(&mut self, pnid: &str, until: Instant) {
        self.upgrading.insert(pnid.to_owned(), until);
    }

    /// Ends an upgrade; `true` when one was under way.
    pub fn finish_upgrade(&mut self, pnid: &str) -> bool {
        self.upgrading.remove(pnid).is_some()
    }

    /// Takes one send for (`pnid`, `user`) at `now`, or Meta's refusal. `high`: the number's
    /// throughput level is `HIGH`.
    pub fn admit(
        &mut self,
        knobs: &LimitKnobs,
        pnid: &str,
        user: &str,
        high: bool,
        now: Instant,
    ) -> Result<(), GraphError> {
        if !knobs.enabled {
            return Ok(());
        }
        if self.upgrading.get(pnid).is_some_and(|until| now < *until) {
            return Err(GraphError::from_code(
                131057,
                "The business phone number is being upgraded to a higher throughput; retry in about a minute.",
            ));
        }
        let limit = if high {
            knobs.high_mps
        } else {
            knobs.standard_mps
        };
        let window = self.windows.entry(pnid.to_owned()).or_default();
        while window
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
        {
            window.pop_front();
        }
        if window.len() >= limit as usize {
            return Err(GraphError::from_code(
                130429,
                format!("Cloud API message throughput has been reached ({limit} messages per second for this number)."),
            ));
        }
        if !user.is_empty() && knobs.pair_interval_ms > 0 {
            let burst = f64::from(knobs.pair_burst.max(1));
            let per_ms = 1.0 / knobs.pair_interval_ms as f64;
            let (tokens, last) = self
                .pairs
                .entry((pnid.to_owned(), user.to_owned()))
                .or_insert((burst, now));
            let refilled =
                (*tokens + now.duration_since(*last).as_millis() as f64 * per_ms).min(burst);
            if refilled < 1.0 {
                *tokens = refilled;
                *last = now;
                return Err(GraphError::from_code(
                    131056,
                    "Too many messages sent from the sender phone number to the same recipient phone number in a short period of time.",
                ));
            }
            *tokens = refilled - 1.0;
            *last = now;
        }
        window.push_back(now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on() -> LimitKnobs {
        LimitKnobs {
            enabled: true,
            standard_mps: 3,
            high_mps: 5,
            pair_burst: 2,
            pair_interval_ms: 1_000,
            upgrade_ms: 100,
        }
    }

    #[test]
    fn throughput_is_a_sliding_second() {
        let mut limiter = Limiter::default();
        let t0 = Instant::now();
        for i in 0..3 {
            limiter
                .admit(&on(), "1", &format!("u{i}"), false, t0)
                .unwrap();
        }
        let refused = limiter.admit(&on(), "1", "u9", false, t0).unwrap_err();
        assert_eq!(refused.code, 130429);
        // A HIGH number has more room; a second later the window is empty again.
        limiter.admit(&on(), "1", "u9", true, t0).unwrap();
        limiter
            .admit(&on(), "1", "u8", false, t0 + Duration::from_secs(1))
            .unwrap();
        // Off: everything passes.
        let off = LimitKnobs::default();
        for _ in 0..100 {
            limiter.admit(&off, "2", "u", false, t0).unwrap();
        }
    }

    #[test]
    fn pairs_get_a_burst_then_one_per_interval() {
        let mut limiter = Limiter::default();
        let t0 = Instant::now();
        limiter.admit(&on(), "1", "u", false, t0).unwrap();
        limiter.admit(&on(), "1", "u", false, t0).unwrap();
        let refused = limiter
            .admit(&on(), "1", "u", false, t0 + Duration::from_millis(10))
            .unwrap_err();
        assert_eq!(refused.code, 131056);
        limiter
            .admit(&on(), "1", "u", false, t0 + Duration::from_millis(1_100))
            .unwrap();
        // Another user is not held back.
        limiter
            .admit(&on(), "1", "v", false, t0 + Duration::from_millis(1_100))
            .unwrap();
    }

    #[test]
    fn an_upgrade_refuses_until_it_ends() {
        let mut limiter = Limiter::default();
        let t0 = Instant::now();
        limiter.start_upgrade("1", t0 + Duration::from_millis(100));
        assert_eq!(
            limiter.admit(&on(), "1", "u", false, t0).unwrap_err().code,
            131057
        );
        limiter
            .admit(&on(), "1", "u", false, t0 + Duration::from_millis(100))
            .unwrap();
        assert!(limiter.finish_upgrade("1"));
    }
}
