//! Business–user pairs: Meta allows a small burst of messages from one number to one user, then
//! about one per `pair_interval`. Each pair also carries the lock that keeps a number's sends to
//! one user in the order they came: a send holds it from its pacing wait until Meta answers.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use uuid::Uuid;

/// A pair's token bucket and its order lock.
#[derive(Debug)]
pub struct Pair {
    /// (tokens, last refill).
    tokens: Mutex<(f64, Instant)>,
    order: Arc<tokio::sync::Mutex<()>>,
    /// Over its rate since the last message within it (so `observe` warns once per episode).
    over: std::sync::atomic::AtomicBool,
}

impl Pair {
    fn new(burst: u32, now: Instant) -> Self {
        Self {
            tokens: Mutex::new((f64::from(burst.max(1)), now)),
            order: Arc::default(),
            over: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Takes one message; `false` when the pair is over its rate (the token is not taken).
    pub fn take(&self, burst: u32, interval: Duration, now: Instant) -> bool {
        let mut guard = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        let (tokens, last) = &mut *guard;
        let refill = if interval.is_zero() {
            f64::INFINITY
        } else {
            now.saturating_duration_since(*last).as_secs_f64() / interval.as_secs_f64()
        };
        *tokens = (*tokens + refill).min(f64::from(burst.max(1)));
        *last = now;
        if *tokens < 1.0 {
            return false;
        }
        *tokens -= 1.0;
        self.over.store(false, std::sync::atomic::Ordering::Relaxed);
        true
    }

    /// Marks the pair over its rate; `true` the first time since it was last within it.
    pub fn went_over(&self) -> bool {
        !self.over.swap(true, std::sync::atomic::Ordering::Relaxed)
    }

    /// Meta answered `131056`: the pair waits a whole interval before its next message.
    pub fn exhaust(&self, now: Instant) {
        let mut guard = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        *guard = (0.0, now);
    }

    /// Waits for the sends to this user that came earlier.
    pub async fn in_order(&self) -> tokio::sync::OwnedMutexGuard<()> {
        self.order.clone().lock_owned().await
    }
}

/// Pairs seen recently, forgotten once idle long enough to have refilled.
#[derive(Clone)]
pub struct Pairs {
    cache: moka::sync::Cache<(Uuid, String), Arc<Pair>>,
    burst: u32,
}

impl Pairs {
    pub fn new(burst: u32, interval: Duration) -> Self {
        // Idle for a whole burst's refill, a pair is as good as new.
        let idle = (interval * burst.max(1)).max(Duration::from_secs(1));
        Self {
            cache: moka::sync::Cache::builder()
                .max_capacity(1_000_000)
                .time_to_idle(idle)
                .build(),
            burst,
        }
    }

    pub fn get(&self, number: Uuid, user: &str, now: Instant) -> Arc<Pair> {
        self.cache.get_with((number, user.to_owned()), || {
            Arc::new(Pair::new(self.burst, now))
        })
    }

    pub fn existing(&self, number: Uuid, user: &str) -> Option<Arc<Pair>> {
        self.cache.get(&(number, user.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pair_gets_its_burst_then_one_message_per_interval() {
        let start = Instant::now();
        let pair = Pair::new(3, start);
        let interval = Duration::from_secs(6);
        assert!(pair.take(3, interval, start));
        assert!(pair.take(3, interval, start));
        assert!(pair.take(3, interval, start));
        assert!(!pair.take(3, interval, start));
        assert!(!pair.take(3, interval, start + Duration::from_secs(5)));
        assert!(pair.take(3, interval, start + Duration::from_secs(6)));
        pair.exhaust(start + Duration::from_secs(7));
        assert!(!pair.take(3, interval, start + Duration::from_secs(12)));
        assert!(pair.take(3, interval, start + Duration::from_secs(13)));
    }
}
