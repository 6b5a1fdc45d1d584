//! When a failed delivery is tried again: capped exponential backoff with jitter, stretched by a
//! receiver's `Retry-After`, until `give_up_after` has passed since the delivery was created.

use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};

#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    pub give_up_after: Duration,
    /// Fraction each delay is randomised by, either way.
    pub jitter: f64,
}

impl Backoff {
    pub fn from_config(config: &crate::config::DeliveryConfig) -> Self {
        Self {
            initial: config.backoff_initial,
            max: config.backoff_max,
            give_up_after: config.give_up_after,
            jitter: config.jitter,
        }
    }

    /// The delay after the `failures`-th failed attempt (1-based), before jitter.
    pub fn base_delay(&self, failures: u32) -> Duration {
        let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(31));
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// When to try again after `failures` failed attempts, or `None` when the delivery is past
    /// `give_up_after` and must be dead-lettered. `unit` is a uniform random number in [0, 1).
    pub fn next_attempt(
        &self,
        created_at: DateTime<Utc>,
        now: DateTime<Utc>,
        failures: u32,
        retry_after: Option<Duration>,
        unit: f64,
    ) -> Option<DateTime<Utc>> {
        let base = self.base_delay(failures).as_secs_f64();
        let jittered = base * (1.0 + self.jitter * (2.0 * unit - 1.0));
        let mut delay = Duration::from_secs_f64(jittered.max(0.0));
        if let Some(asked) = retry_after {
            // The receiver's wish wins when it asks for longer, within the schedule's cap.
            delay = delay.max(asked.min(self.max));
        }
        let next = now + chrono::Duration::from_std(delay).ok()?;
        let deadline = created_at + chrono::Duration::from_std(self.give_up_after).ok()?;
        (next <= deadline).then_some(next)
    }
}

/// `Retry-After` as seconds or an HTTP date.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The schedule the shipped `config/wagate.toml` gives, read through the real loader.
    fn shipped() -> Backoff {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/wagate.toml");
        let config = crate::config::Config::load(Some(&path)).expect("the shipped config loads");
        Backoff::from_config(&config.delivery)
    }

    /// A schedule for the arithmetic below, independent of the shipped values.
    fn schedule() -> Backoff {
        Backoff {
            initial: Duration::from_secs(5),
            max: Duration::from_secs(6 * 3600),
            give_up_after: Duration::from_secs(48 * 3600),
            jitter: 0.2,
        }
    }

    #[test]
    fn delays_double_up_to_the_cap() {
        let s = schedule();
        assert_eq!(s.base_delay(1), Duration::from_secs(5));
        assert_eq!(s.base_delay(2), Duration::from_secs(10));
        assert_eq!(s.base_delay(5), Duration::from_secs(80));
        assert_eq!(s.base_delay(20), Duration::from_secs(6 * 3600));
        assert_eq!(s.base_delay(1000), Duration::from_secs(6 * 3600));
    }

    #[test]
    fn the_default_schedule_spans_about_two_days() {
        let s = shipped();
        assert!(s.jitter > 0.0 && s.jitter < 1.0, "{s:?}");
        let created = Utc::now();
        let mut now = created;
        let mut attempts = 1;
        while let Some(next) = s.next_attempt(created, now, attempts, None, 0.5) {
            now = next;
            attempts += 1;
        }
        let span = now - created;
        assert!(span >= chrono::Duration::hours(40), "{span}");
        assert!(span <= chrono::Duration::hours(48), "{span}");
        assert!((15..=25).contains(&attempts), "{attempts} attempts");
    }

    #[test]
    fn jitter_stays_within_its_fraction() {
        let s = schedule();
        let now = Utc::now();
        let low = s.next_attempt(now, now, 3, None, 0.0).unwrap() - now;
        let high = s.next_attempt(now, now, 3, None, 0.999_999).unwrap() - now;
        assert_eq!(low, chrono::Duration::seconds(16));
        assert!(high <= chrono::Duration::seconds(24) && high > chrono::Duration::seconds(23));
    }

    #[test]
    fn retry_after_stretches_but_is_capped() {
        let s = schedule();
        let now = Utc::now();
        let asked = s
            .next_attempt(now, now, 1, Some(Duration::from_secs(120)), 0.5)
            .unwrap();
        assert_eq!(asked - now, chrono::Duration::seconds(120));
        let capped = s
            .next_attempt(now, now, 1, Some(Duration::from_secs(86_400 * 30)), 0.5)
            .unwrap();
        assert_eq!(capped - now, chrono::Duration::hours(6));
        // A short Retry-After never shortens the schedule.
        let short = s
            .next_attempt(now, now, 4, Some(Duration::from_secs(1)), 0.5)
            .unwrap();
        assert_eq!(short - now, chrono::Duration::seconds(40));
    }

    #[test]
    fn past_the_deadline_is_dead() {
        let s = schedule();
        let created = Utc::now() - chrono::Duration::hours(47);
        assert!(s.next_attempt(created, Utc::now(), 15, None, 0.5).is_none());
    }

    #[test]
    fn retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after("30", now), Some(Duration::from_secs(30)));
        let date = httpdate::fmt_http_date(now + Duration::from_secs(90));
        assert_eq!(parse_retry_after(&date, now), Some(Duration::from_secs(90)));
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
