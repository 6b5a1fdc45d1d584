//! Limits on failed authentications, per client address and per credential prefix (GCRA through
//! `governor`, `security.failed_auth_per_minute` with `failed_auth_burst`).
//!
//! Only failures consume quota, so a busy client with a good key is never slowed. The failure
//! that finds its quota spent blocks the client (and the prefix) until governor would allow the
//! next one; while blocked, requests are answered 429 before their credentials are looked at, so
//! a flood costs neither a checksum nor a lookup. governor cannot tell whether a check would pass
//! without spending a cell, hence the small `blocked` cache beside it.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::{CacheConfig, SecurityConfig};

/// How often the limiters forget clients and prefixes whose quota has refilled (their state is
/// then the same as an unseen key's), which bounds their memory to the failures of about one
/// minute.
const PRUNE_EVERY: Duration = Duration::from_secs(10);

/// What a limit is kept for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Subject {
    Client(IpAddr),
    Prefix(Arc<str>),
}

#[derive(Clone)]
pub struct AuthThrottle(Arc<Inner>);

struct Inner {
    clients: DefaultKeyedRateLimiter<IpAddr>,
    prefixes: DefaultKeyedRateLimiter<Arc<str>>,
    /// Until when a subject over its quota is refused. Bounded by `cache.max_entries`; an entry
    /// never outlives one replenish interval, the longest governor makes anyone wait.
    blocked: moka::future::Cache<Subject, Instant>,
    started: Instant,
    /// Milliseconds since `started` until which some subject may still be blocked (the latest
    /// block's end): past it nobody is, and `check` needs no cache lookup (the request path).
    blocked_until: AtomicU64,
    /// Milliseconds since `started` of the last prune.
    pruned_at: AtomicU64,
}

impl AuthThrottle {
    pub fn new(security: &SecurityConfig, cache: &CacheConfig) -> Self {
        let per_minute = security.failed_auth_per_minute.max(1);
        let burst = NonZeroU32::new(security.failed_auth_burst.max(1)).expect("at least 1");
        let period = Duration::from_secs(60) / per_minute;
        let quota = Quota::with_period(period)
            .expect("a positive period")
            .allow_burst(burst);
        Self(Arc::new(Inner {
            clients: RateLimiter::keyed(quota),
            prefixes: RateLimiter::keyed(quota),
            blocked: moka::future::Cache::builder()
                .max_capacity(cache.max_entries)
                .time_to_live(period.max(Duration::from_secs(1)))
                .build(),
            started: Instant::now(),
            blocked_until: AtomicU64::new(0),
            pruned_at: AtomicU64::new(0),
        }))
    }

    /// `Err(wait)` when the client or the prefix used up its failures: refuse before checking.
    /// `prefix` is `None` for credentials that count against their client only.
    pub async fn check(
        &self,
        client: Option<IpAddr>,
        prefix: Option<&str>,
    ) -> Result<(), Duration> {
        if self.since_start(Instant::now()) >= self.0.blocked_until.load(Ordering::Acquire) {
            return Ok(());
        }
        let subjects = client
            .map(|ip| Subject::Client(limit_key(ip)))
            .into_iter()
            .chain(prefix.map(|p| Subject::Prefix(p.into())));
        let mut wait = Duration::ZERO;
        for subject in subjects {
            if let Some(until) = self.0.blocked.get(&subject).await {
                wait = wait.max(until.saturating_duration_since(Instant::now()));
            }
        }
        if wait.is_zero() {
            Ok(())
        } else {
            Err(wait)
        }
    }

    /// Counts one failed authentication; `Err(wait)` when it was one too many, and from now on
    /// (for `wait`) the client and/or prefix are refused by [`check`](Self::check).
    pub async fn failed(
        &self,
        client: Option<IpAddr>,
        prefix: Option<&str>,
    ) -> Result<(), Duration> {
        self.prune();
        let inner = &self.0;
        let clock = inner.clients.clock();
        let mut over = Vec::new();
        if let Some(ip) = client.map(limit_key) {
            if let Err(not_until) = inner.clients.check_key(&ip) {
                over.push((Subject::Client(ip), not_until.wait_time_from(clock.now())));
            }
        }
        if let Some(prefix) = prefix.map(Arc::<str>::from) {
            if let Err(not_until) = inner.prefixes.check_key(&prefix) {
                let wait = not_until.wait_time_from(clock.now());
                over.push((Subject::Prefix(prefix), wait));
            }
        }
        let mut longest = Duration::ZERO;
        for (subject, wait) in over {
            let until = Instant::now() + wait;
            // Raised before the entry exists, so a `check` that skips the lookup never misses it.
            inner
                .blocked_until
                .fetch_max(self.since_start(until) + 1, Ordering::AcqRel);
            inner.blocked.insert(subject, until).await;
            longest = longest.max(wait);
        }
        if longest.is_zero() {
            Ok(())
        } else {
            metrics::counter!("wagate_auth_rate_limited_total").increment(1);
            Err(longest)
        }
    }

    fn since_start(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.0.started).as_millis() as u64
    }

    fn prune(&self) {
        let inner = &self.0;
        let now = inner.started.elapsed().as_millis() as u64;
        let last = inner.pruned_at.load(Ordering::Relaxed);
        let due = now.saturating_sub(last) >= PRUNE_EVERY.as_millis() as u64;
        // One caller prunes; the others go on.
        if due
            && inner
                .pruned_at
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.forget_refilled();
        }
    }

    fn forget_refilled(&self) {
        let inner = &self.0;
        inner.clients.retain_recent();
        inner.clients.shrink_to_fit();
        inner.prefixes.retain_recent();
        inner.prefixes.shrink_to_fit();
    }

    /// Clients and prefixes currently tracked.
    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.0.clients.len() + self.0.prefixes.len()
    }
}

/// The address a limit is kept for: IPv4 as is (and IPv4-mapped IPv6 as IPv4); IPv6 by its /64,
/// since one host commonly holds a whole /64 and could otherwise take a fresh quota per address.
fn limit_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle(per_minute: u32, burst: u32) -> AuthThrottle {
        let mut config = crate::config::Config::defaults();
        config.security.failed_auth_per_minute = per_minute;
        config.security.failed_auth_burst = burst;
        AuthThrottle::new(&config.security, &config.cache)
    }

    #[tokio::test]
    async fn failures_past_the_burst_block_the_client_and_the_prefix() {
        let throttle = throttle(1, 3);
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        for i in 0..3 {
            assert!(throttle
                .check(Some(a), Some(&format!("p{i}")))
                .await
                .is_ok());
            assert!(throttle
                .failed(Some(a), Some(&format!("p{i}")))
                .await
                .is_ok());
        }
        let wait = throttle.failed(Some(a), Some("p9")).await.unwrap_err();
        assert!(wait > Duration::from_secs(50), "{wait:?}");
        assert!(
            throttle.check(Some(a), Some("fresh")).await.is_err(),
            "the client is blocked"
        );
        assert!(
            throttle.check(Some(b), Some("fresh")).await.is_ok(),
            "another client is not"
        );
        // One prefix used from many addresses runs out too.
        for i in 0..3 {
            let ip: IpAddr = format!("198.51.100.{i}").parse().unwrap();
            assert!(throttle.failed(Some(ip), Some("shared")).await.is_ok());
        }
        assert!(throttle.failed(Some(b), Some("shared")).await.is_err());
        assert!(throttle.check(None, Some("shared")).await.is_err());
        // Credentials that count against their client only leave the prefix alone.
        assert!(throttle.failed(Some(b), None).await.is_ok());
    }

    #[tokio::test]
    async fn refilled_clients_and_prefixes_are_forgotten() {
        // A failure every 10 ms refills; after that the state equals an unseen key's.
        let throttle = throttle(6000, 1);
        for i in 0..50u8 {
            let ip = IpAddr::from([192, 0, 2, i]);
            let _ = throttle.failed(Some(ip), Some(&format!("p{i}"))).await;
        }
        assert_eq!(throttle.tracked(), 100);
        tokio::time::sleep(Duration::from_millis(50)).await;
        throttle.forget_refilled();
        assert_eq!(throttle.tracked(), 0);
    }

    #[test]
    fn ipv6_clients_are_limited_per_64() {
        let one: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let same: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(limit_key(one), limit_key(same));
        assert_ne!(limit_key(one), limit_key(other));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(limit_key(mapped), "192.0.2.1".parse::<IpAddr>().unwrap());
    }
}
