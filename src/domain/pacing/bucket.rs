//! One number's send budget: a GCRA ("virtual scheduling") bucket. Each send reserves the next
//! free slot; slots are `1 / rate` apart, and a bucket left idle lets at most `burst` worth of
//! time of sends go back to back. Reserving in arrival order under one lock is what keeps sends
//! in the order they came (FIFO), without a queue.
//!
//! The rate is the number's, times an AIMD factor (halved by Meta's `130429`, climbing back
//! linearly over `meta_backoff`), divided between the live instances.

use std::time::{Duration, Instant};

/// The smallest share of its rate Meta's answers can push a number down to.
const FLOOR: f64 = 0.1;

#[derive(Debug, Clone)]
pub struct Bucket {
    /// The earliest time the next send may go.
    next_free: Instant,
    /// Rate factor set by the last decrease, and when.
    factor: f64,
    decreased_at: Option<Instant>,
}

/// What a reservation got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// Send at this time (now or later).
    At(Instant),
    /// No slot within the wait allowed; the next one is this far away.
    Full { retry_after: Duration },
}

/// The rate a reservation is made at.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// Messages per second for this instance (the number's rate over the live instances).
    pub rate: f64,
    /// How much idle time's worth of sends may go back to back.
    pub burst: Duration,
    /// `meta_backoff`: how long a decrease takes to climb back from the floor to full.
    pub recovery: Duration,
}

impl Bucket {
    pub fn new(now: Instant) -> Self {
        Self {
            next_free: now,
            factor: 1.0,
            decreased_at: None,
        }
    }

    /// The AIMD factor at `now`: the last decrease plus the linear climb since.
    pub fn factor(&self, now: Instant, recovery: Duration) -> f64 {
        match self.decreased_at {
            None => 1.0,
            Some(at) => {
                let climbed = if recovery.is_zero() {
                    1.0
                } else {
                    now.saturating_duration_since(at).as_secs_f64() / recovery.as_secs_f64()
                        * (1.0 - FLOOR)
                };
                (self.factor + climbed).min(1.0)
            }
        }
    }

    /// Meta said `130429`: halve the rate (down to the floor).
    pub fn decrease(&mut self, now: Instant, recovery: Duration) {
        self.factor = (self.factor(now, recovery) * 0.5).max(FLOOR);
        self.decreased_at = Some(now);
    }

    fn interval(&self, now: Instant, budget: Budget) -> Duration {
        let rate = (budget.rate * self.factor(now, budget.recovery)).max(0.001);
        Duration::from_secs_f64(1.0 / rate)
    }

    /// The first slot not before `not_before` (a pause), as the bucket stands at `now`.
    fn first_slot(&self, now: Instant, budget: Budget, not_before: Option<Instant>) -> Instant {
        let idle_credit = now.checked_sub(budget.burst).unwrap_or(now);
        let slot = self.next_free.max(idle_credit);
        not_before.map_or(slot, |p| slot.max(p))
    }

    /// Reserves a slot within `max_wait` of `now`, or says how long until one.
    pub fn reserve(
        &mut self,
        now: Instant,
        budget: Budget,
        max_wait: Duration,
        not_before: Option<Instant>,
    ) -> Slot {
        let slot = self.first_slot(now, budget, not_before);
        if slot > now + max_wait {
            return Slot::Full {
                retry_after: slot - now,
            };
        }
        self.next_free = slot + self.interval(now, budget);
        Slot::At(slot.max(now))
    }

    /// A low-priority reservation (queued sends): taken only when the next slot is at most one
    /// interval away, so proxied sends, which reserve ahead, never wait behind more than one.
    /// Otherwise the time to look again.
    pub fn reserve_idle(
        &mut self,
        now: Instant,
        budget: Budget,
        not_before: Option<Instant>,
    ) -> Result<Instant, Instant> {
        let interval = self.interval(now, budget);
        let slot = self.first_slot(now, budget, not_before);
        if slot > now + interval {
            return Err(slot);
        }
        self.next_free = slot + interval;
        Ok(slot.max(now))
    }

    /// Sends that could go back to back right now (for the tokens gauge).
    pub fn tokens(&self, now: Instant, budget: Budget) -> f64 {
        let interval = self.interval(now, budget).as_secs_f64();
        let credit = (now.saturating_duration_since(self.next_free))
            .min(budget.burst)
            .as_secs_f64();
        if now < self.next_free {
            0.0
        } else {
            (credit / interval).floor() + 1.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(rate: f64) -> Budget {
        Budget {
            rate,
            burst: Duration::from_millis(20),
            recovery: Duration::from_secs(60),
        }
    }

    #[test]
    fn slots_are_one_interval_apart_and_refused_past_the_wait() {
        let start = Instant::now();
        let mut bucket = Bucket::new(start);
        let mut granted = 0;
        let mut refused = 0;
        for _ in 0..200 {
            match bucket.reserve(start, budget(100.0), Duration::from_secs(1), None) {
                Slot::At(at) => {
                    assert!(at <= start + Duration::from_secs(1));
                    granted += 1;
                }
                Slot::Full { retry_after } => {
                    assert!(retry_after > Duration::from_secs(1));
                    refused += 1;
                }
            }
        }
        // 100/s for one second of waiting, plus the slot at once.
        assert_eq!(granted, 101);
        assert_eq!(refused, 99);
    }

    #[test]
    fn any_one_second_window_holds_at_most_rate_plus_the_burst() {
        let start = Instant::now();
        let mut bucket = Bucket::new(start);
        let mut slots = Vec::new();
        // Offered 500/s for 3 s at 80/s.
        for i in 0..1500u64 {
            let now = start + Duration::from_millis(i * 2);
            if let Slot::At(at) = bucket.reserve(now, budget(80.0), Duration::from_secs(1), None) {
                slots.push(at);
            }
        }
        slots.sort();
        let mut worst = 0;
        let mut left = 0;
        for right in 0..slots.len() {
            while slots[right] - slots[left] >= Duration::from_secs(1) {
                left += 1;
            }
            worst = worst.max(right - left + 1);
        }
        assert!(worst <= 82, "{worst} sends in one second at 80/s");
        assert!(worst >= 80, "{worst}: the rate is not used");
    }

    #[test]
    fn meta_rate_limits_halve_the_rate_and_it_climbs_back() {
        let start = Instant::now();
        let recovery = Duration::from_secs(60);
        let mut bucket = Bucket::new(start);
        bucket.decrease(start, recovery);
        assert!((bucket.factor(start, recovery) - 0.5).abs() < 1e-9);
        bucket.decrease(start, recovery);
        assert!((bucket.factor(start, recovery) - 0.25).abs() < 1e-9);
        for _ in 0..10 {
            bucket.decrease(start, recovery);
        }
        assert!((bucket.factor(start, recovery) - FLOOR).abs() < 1e-9);
        assert!((bucket.factor(start + recovery, recovery) - 1.0).abs() < 1e-9);
    }

    #[test]
    fn a_pause_holds_every_slot_until_it_ends() {
        let start = Instant::now();
        let mut bucket = Bucket::new(start);
        let until = start + Duration::from_millis(500);
        match bucket.reserve(start, budget(80.0), Duration::from_secs(1), Some(until)) {
            Slot::At(at) => assert_eq!(at, until),
            Slot::Full { .. } => panic!("within the wait"),
        }
        let long = start + Duration::from_secs(5);
        assert!(matches!(
            bucket.reserve(start, budget(80.0), Duration::from_secs(1), Some(long)),
            Slot::Full { retry_after } if retry_after == Duration::from_secs(5)
        ));
    }

    #[test]
    fn idle_reservations_give_way_to_reservations_made_ahead() {
        let start = Instant::now();
        let mut bucket = Bucket::new(start);
        for _ in 0..10 {
            assert!(matches!(
                bucket.reserve(start, budget(100.0), Duration::from_secs(1), None),
                Slot::At(_)
            ));
        }
        assert!(bucket.reserve_idle(start, budget(100.0), None).is_err());
        let later = start + Duration::from_millis(100);
        assert!(bucket.reserve_idle(later, budget(100.0), None).is_ok());
    }
}
