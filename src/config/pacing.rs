//! `[pacing]`: Meta-aware outbound pacing (per-number throughput, business–user pair rate,
//! Meta's rate-limit answers) and the queued sends (broadcasts) paced by the same budget.

use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;

/// What happens when one business–user pair is sent to faster than Meta allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PairRateMode {
    /// Count (`wagate_pacing_pair_over_total`) and warn; the send goes to Meta.
    Observe,
    /// Answer `131056` locally, before Meta does.
    Enforce,
    /// No pair accounting.
    Off,
}

impl PairRateMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Observe => "observe",
            Self::Enforce => "enforce",
            Self::Off => "off",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "observe" => Some(Self::Observe),
            "enforce" => Some(Self::Enforce),
            "off" => Some(Self::Off),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PacingConfig {
    /// Off: sends go to Meta as fast as callers make them (Meta's own answers still pass).
    pub enabled: bool,
    /// Messages per second of a `STANDARD` number (Meta: 80).
    pub standard_rate: u32,
    /// Messages per second of a `HIGH` number, after Meta's automatic upgrade (Meta: 1,000).
    pub high_rate: u32,
    /// Messages per second of a coexistence number (Meta: fixed at 20).
    pub coexistence_rate: u32,
    /// Sends allowed back to back, as this much time's worth of the rate (at least one message);
    /// small, so no one-second window Meta measures goes over the rate.
    #[serde(with = "humantime_serde")]
    pub burst: Duration,
    /// The longest a proxied send waits for its number's budget before it is answered `130429`
    /// locally, with `Retry-After`.
    #[serde(with = "humantime_serde")]
    pub max_wait: Duration,
    /// Default pair-rate mode of projects that have not chosen one.
    pub pair_rate_mode: PairRateMode,
    /// Messages to one user allowed back to back before the pair rate applies.
    pub pair_burst: u32,
    /// After the burst, one message to the same user per this interval (Meta: about 6 s).
    #[serde(with = "humantime_serde")]
    pub pair_interval: Duration,
    /// After Meta answers `130429`, the number's rate halves (down to a tenth at most) and climbs
    /// back to full over this time.
    #[serde(with = "humantime_serde")]
    pub meta_backoff: Duration,
    /// How long `131057` (throughput upgrade under way) pauses a number when Meta says no time.
    #[serde(with = "humantime_serde")]
    pub upgrade_pause: Duration,
    /// How often each instance says it is alive; a number's rate is shared between live ones.
    #[serde(with = "humantime_serde")]
    pub heartbeat: Duration,
    /// An instance not heard from for this long no longer takes a share.
    #[serde(with = "humantime_serde")]
    pub instance_ttl: Duration,
    /// Most recipients in one broadcast.
    pub max_recipients: u32,
    /// Sends of queued broadcasts in flight at once on one instance.
    pub broadcast_concurrency: usize,
    /// Recipients a worker claims at once.
    pub broadcast_claim_batch: u32,
    /// A claimed recipient not finished within this time is claimed again (by any instance).
    #[serde(with = "humantime_serde")]
    pub broadcast_lease: Duration,
    /// Retryable failures (`130429`, `131056`, `131057`, 5xx, timeouts) are retried this many
    /// times before the recipient fails.
    pub max_attempts: u32,
    /// Backoff of the first retry; doubles each time, with jitter, up to `retry_max`.
    #[serde(with = "humantime_serde")]
    pub retry_base: Duration,
    #[serde(with = "humantime_serde")]
    pub retry_max: Duration,
    /// A send whose answer was lost (timeout, broken connection, killed worker) is sent again
    /// only when Meta's status webhook for it has not arrived within this time.
    #[serde(with = "humantime_serde")]
    pub lost_answer_grace: Duration,
    /// How often an idle broadcast worker looks for due recipients (woken at once by this
    /// instance's own `send`).
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
}

impl PacingConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.standard_rate == 0 || self.high_rate == 0 || self.coexistence_rate == 0 {
            return Err(ConfigError(
                "pacing.standard_rate, pacing.high_rate and pacing.coexistence_rate must be at least 1 (messages per second)".into(),
            ));
        }
        if self.heartbeat.is_zero() || self.instance_ttl <= self.heartbeat {
            return Err(ConfigError(
                "pacing.instance_ttl must be longer than pacing.heartbeat (e.g. \"1s\" and \"3s\")"
                    .into(),
            ));
        }
        if self.max_recipients == 0
            || self.broadcast_concurrency == 0
            || self.broadcast_claim_batch == 0
            || self.max_attempts == 0
        {
            return Err(ConfigError(
                "pacing.max_recipients, pacing.broadcast_concurrency, pacing.broadcast_claim_batch and pacing.max_attempts must be at least 1".into(),
            ));
        }
        if self.broadcast_lease.is_zero()
            || self.poll_interval.is_zero()
            || self.retry_base.is_zero()
        {
            return Err(ConfigError(
                "pacing.broadcast_lease, pacing.poll_interval and pacing.retry_base must be above zero".into(),
            ));
        }
        Ok(())
    }
}
