//! Meta-aware pacing of outbound sends (issue #22). Every `POST {pnid}/messages` through the
//! proxy, and every queued broadcast send, takes a slot from its number's budget before it
//! leaves, so Meta sees each number at or under its throughput:
//!
//! - **rate**: the number's own (`pacing_rate`), else its tier's (`STANDARD`, `HIGH`,
//!   coexistence), from the number cache, so pacing costs no database read;
//! - **one budget across instances**: each instance paces at `rate / live instances`, the live
//!   set coming from a heartbeat table (`instances`);
//! - **Meta's answers**: `130429` halves the number's rate on this instance and it climbs back
//!   over `meta_backoff`; `131056` makes the pair wait a whole interval; `131057` pauses the
//!   number on every instance (written to the number, which every instance's cache follows);
//! - **pair rate**: per (number, user), observed, enforced or off by the project's mode;
//! - **order**: a number's sends to one user go one after another, in the order they came.
//!
//! A proxied send waits at most `max_wait` for its slot; past that it is answered locally in
//! Meta's own words (with `Retry-After`) and never reaches Meta. Queued sends take a slot only
//! when one is free now (`reserve_idle`), below proxied sends in priority.

mod bucket;
pub mod instances;
mod pair;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use uuid::Uuid;

pub use bucket::{Bucket, Budget, Slot};
use pair::{Pair, Pairs};

use super::number_directory::NumberConfig;
use crate::config::{PacingConfig, PairRateMode};

/// Why a send is answered locally instead of going to Meta.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `130429`: the number's budget has no slot within `max_wait`.
    Throughput { retry_after: Duration },
    /// `131056`: the pair is over its rate (project mode `enforce`).
    PairRate { retry_after: Duration },
    /// `131057`: Meta is upgrading the number's throughput; sends wait until it ends.
    Upgrading { retry_after: Duration },
}

impl Refusal {
    pub fn code(self) -> u32 {
        match self {
            Self::Throughput { .. } => 130_429,
            Self::PairRate { .. } => 131_056,
            Self::Upgrading { .. } => 131_057,
        }
    }

    pub fn retry_after(self) -> Duration {
        match self {
            Self::Throughput { retry_after }
            | Self::PairRate { retry_after }
            | Self::Upgrading { retry_after } => retry_after,
        }
    }
}

/// Held by an admitted send until Meta has answered: keeps later sends to the same user behind
/// it, and lets Meta's answer reach the pair.
pub struct Permit {
    _order: Option<tokio::sync::OwnedMutexGuard<()>>,
    pair: Option<Arc<Pair>>,
}

impl Permit {
    fn unpaced() -> Self {
        Self {
            _order: None,
            pair: None,
        }
    }
}

/// Where a number's rate comes from, for the phone-number object and the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NumberRate {
    /// Messages per second for the number as a whole (all instances together).
    pub rate: u32,
    /// `override|HIGH|STANDARD|coexistence`.
    pub source: &'static str,
}

/// A bucket with what the gauges need.
struct Entry {
    bucket: Bucket,
    phone_number_id: String,
    budget: Budget,
    /// Whether the number was paused at the last send (for the gauge).
    paused: bool,
}

/// The pacer. One per process, shared by the proxy and the broadcast worker.
pub struct Pacer {
    config: PacingConfig,
    buckets: Mutex<HashMap<Uuid, Entry>>,
    pairs: Pairs,
    live_instances: AtomicU32,
    /// Until then this instance sends nothing: the instances already running count it only at
    /// their next heartbeat, and until they do, their shares and this one's would add up to
    /// more than the rate.
    warm_until: Mutex<Option<Instant>>,
    /// This process in the heartbeat table.
    pub instance_id: Uuid,
}

impl Pacer {
    pub fn new(config: &PacingConfig) -> Self {
        Self {
            pairs: Pairs::new(config.pair_burst, config.pair_interval),
            config: config.clone(),
            buckets: Mutex::default(),
            live_instances: AtomicU32::new(1),
            warm_until: Mutex::default(),
            instance_id: Uuid::now_v7(),
        }
    }

    pub fn enabled(&self) -> bool {
        self.config.enabled
    }

    /// Instances sharing each number's rate (this one included).
    pub fn live_instances(&self) -> u32 {
        self.live_instances.load(Ordering::Relaxed).max(1)
    }

    /// This instance joined others (more than itself live): it waits until they have all
    /// counted it before it sends.
    pub(crate) fn hold_until_counted(&self, until: Instant) {
        *self.warm_until.lock().unwrap_or_else(|e| e.into_inner()) = Some(until);
    }

    fn warming(&self, now: Instant) -> Option<Instant> {
        let until = *self.warm_until.lock().unwrap_or_else(|e| e.into_inner());
        until.filter(|u| *u > now)
    }

    pub(crate) fn set_live_instances(&self, live: u32) {
        let before = self.live_instances.swap(live.max(1), Ordering::Relaxed);
        if before != live.max(1) {
            tracing::info!(
                live_instances = live,
                "instances sharing each number's send rate changed"
            );
        }
        metrics::gauge!("wagate_pacing_live_instances").set(f64::from(live));
    }

    /// The number's rate and where it comes from.
    pub fn rate_of(&self, number: &NumberConfig) -> NumberRate {
        self.rate_for(
            number.pacing_rate,
            number.is_coexistence,
            number.throughput_tier.as_deref(),
        )
    }

    /// The rate of a number with this override, kind and tier.
    pub fn rate_for(
        &self,
        pacing_rate: Option<u32>,
        is_coexistence: bool,
        throughput_tier: Option<&str>,
    ) -> NumberRate {
        if let Some(rate) = pacing_rate {
            return NumberRate {
                rate,
                source: "override",
            };
        }
        if is_coexistence {
            return NumberRate {
                rate: self.config.coexistence_rate,
                source: "coexistence",
            };
        }
        match throughput_tier {
            Some(tier) if tier.eq_ignore_ascii_case("HIGH") => NumberRate {
                rate: self.config.high_rate,
                source: "HIGH",
            },
            _ => NumberRate {
                rate: self.config.standard_rate,
                source: "STANDARD",
            },
        }
    }

    fn budget(&self, number: &NumberConfig) -> Budget {
        Budget {
            rate: f64::from(self.rate_of(number).rate) / f64::from(self.live_instances()),
            burst: self.config.burst,
            recovery: self.config.meta_backoff,
        }
    }

    /// The number's pause (`131057`), as the number cache has it: written to the number by
    /// whichever instance Meta told, and cleared by the upgrade's webhook.
    fn pause(number: &NumberConfig, now: Instant) -> Option<Instant> {
        let until = number.paused_until?;
        (until - crate::store::now())
            .to_std()
            .ok()
            .map(|left| now + left)
    }

    fn with_entry<T>(
        &self,
        number: &NumberConfig,
        now: Instant,
        f: impl FnOnce(&mut Entry, Option<Instant>) -> T,
    ) -> T {
        let budget = self.budget(number);
        let warming = self.warming(now);
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let entry = buckets.entry(number.internal_id).or_insert_with(|| Entry {
            bucket: Bucket::new(now),
            phone_number_id: number.phone_number_id.clone(),
            budget,
            paused: false,
        });
        entry.budget = budget;
        let pause = Self::pause(number, now);
        entry.paused = pause.is_some();
        let not_before = match (pause, warming) {
            (Some(p), Some(w)) => Some(p.max(w)),
            (p, w) => p.or(w),
        };
        f(entry, not_before)
    }

    /// Admits a proxied send to `user` (its `to`), waiting up to `max_wait` for a slot.
    pub async fn admit(
        &self,
        number: &NumberConfig,
        user: Option<&str>,
        mode: PairRateMode,
    ) -> Result<Permit, Refusal> {
        if !self.config.enabled {
            return Ok(Permit::unpaced());
        }
        let arrived = Instant::now();
        let deadline = arrived + self.config.max_wait;
        let pair = user
            .filter(|u| !u.is_empty())
            .map(|u| self.pairs.get(number.internal_id, u, arrived));
        // Sends to one user go one after another; waiting for the earlier ones counts against
        // the same max_wait.
        let order = match &pair {
            Some(pair) => match tokio::time::timeout_at(deadline.into(), pair.in_order()).await {
                Ok(guard) => Some(guard),
                Err(_) => {
                    return Err(self.refused(Refusal::Throughput {
                        retry_after: self.config.max_wait,
                    }))
                }
            },
            None => None,
        };
        let now = Instant::now();
        if let (Some(pair), false) = (&pair, mode == PairRateMode::Off) {
            if !pair.take(self.config.pair_burst, self.config.pair_interval, now) {
                metrics::counter!("wagate_pacing_pair_over_total", "mode" => mode.as_str())
                    .increment(1);
                if mode == PairRateMode::Enforce {
                    return Err(self.refused(Refusal::PairRate {
                        retry_after: self.config.pair_interval,
                    }));
                }
                if pair.went_over() {
                    tracing::warn!(
                        "sends to one user faster than Meta's pair rate (pair_rate_mode observe: sent anyway; Meta may answer 131056); counted in wagate_pacing_pair_over_total"
                    );
                }
            }
        }
        let max_wait = deadline.saturating_duration_since(now);
        let reserved = self.with_entry(number, now, |entry, not_before| {
            let slot = entry
                .bucket
                .reserve(now, entry.budget, max_wait, not_before);
            (slot, entry.paused)
        });
        match reserved {
            (Slot::At(at), _) => {
                if at > now {
                    metrics::counter!("wagate_pacing_waits_total").increment(1);
                    tokio::time::sleep_until(at.into()).await;
                }
                Ok(Permit {
                    _order: order,
                    pair,
                })
            }
            (Slot::Full { retry_after }, true) => {
                Err(self.refused(Refusal::Upgrading { retry_after }))
            }
            (Slot::Full { retry_after }, false) => {
                Err(self.refused(Refusal::Throughput { retry_after }))
            }
        }
    }

    fn refused(&self, refusal: Refusal) -> Refusal {
        metrics::counter!("wagate_pacing_local_answers_total", "code" => refusal.code().to_string())
            .increment(1);
        refusal
    }

    /// Waits for a free slot at low priority (queued sends): never ahead of proxied sends that
    /// reserved theirs. Returns at once when pacing is off.
    pub async fn admit_queued(&self, number: &NumberConfig) {
        if !self.config.enabled {
            return;
        }
        loop {
            let now = Instant::now();
            let reserved = self.with_entry(number, now, |entry, pause| {
                entry.bucket.reserve_idle(now, entry.budget, pause)
            });
            match reserved {
                Ok(at) => {
                    if at > now {
                        tokio::time::sleep_until(at.into()).await;
                    }
                    return;
                }
                Err(next) => tokio::time::sleep_until(next.into()).await,
            }
        }
    }

    /// Meta answered a send with an error `code`: adjust the budget. For `131057` returns the
    /// time to pause the number until: the caller writes it on the number (every instance's
    /// cache follows) before it answers, so no later send of this instance goes out unpaused.
    pub fn meta_refused(
        &self,
        number: &NumberConfig,
        user: Option<&str>,
        permit: Option<&Permit>,
        code: u64,
    ) -> Option<chrono::DateTime<chrono::Utc>> {
        if !matches!(code, 130_429 | 131_056 | 131_057) {
            return None;
        }
        metrics::counter!("wagate_meta_rate_limits_total", "code" => code.to_string()).increment(1);
        if !self.config.enabled {
            return None;
        }
        let now = Instant::now();
        match code {
            130_429 => {
                let recovery = self.config.meta_backoff;
                self.with_entry(number, now, |entry, _| entry.bucket.decrease(now, recovery));
                tracing::warn!(
                    "Meta answered 130429 (throughput): this number's rate is halved and climbs back over pacing.meta_backoff"
                );
                None
            }
            131_056 => {
                let pair = permit
                    .and_then(|p| p.pair.clone())
                    .or_else(|| user.and_then(|u| self.pairs.existing(number.internal_id, u)));
                if let Some(pair) = pair {
                    pair.exhaust(now);
                }
                None
            }
            _ => {
                let pause = self.config.upgrade_pause;
                tracing::warn!(
                    pause = ?pause,
                    "Meta answered 131057 (throughput upgrade under way): the number's sends wait until it ends"
                );
                chrono::Duration::from_std(pause)
                    .ok()
                    .map(|p| crate::store::now() + p)
            }
        }
    }

    /// Sets the per-number gauges (`/metrics`): rate, tokens and pause of every number paced.
    pub fn report(&self) {
        let now = Instant::now();
        let buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        for entry in buckets.values() {
            let label = entry.phone_number_id.clone();
            let factor = entry.bucket.factor(now, entry.budget.recovery);
            metrics::gauge!("wagate_pacing_rate", "phone_number_id" => label.clone())
                .set(entry.budget.rate * factor);
            metrics::gauge!("wagate_pacing_tokens", "phone_number_id" => label.clone())
                .set(entry.bucket.tokens(now, entry.budget));
            let paused = entry.paused;
            metrics::gauge!("wagate_pacing_paused", "phone_number_id" => label).set(if paused {
                1.0
            } else {
                0.0
            });
        }
    }
}
