//! The simulator's own token-bucket rate limit (`[rate_limit]`), driven by the simulator clock.

use std::sync::Mutex;
use std::time::Instant;

/// A token bucket: `burst` tokens, refilled at `rate` per second.
pub(crate) struct TokenBucket {
    rate: f64,
    burst: f64,
    inner: Mutex<(f64, Instant)>,
}

impl TokenBucket {
    /// A full bucket at `now`.
    pub(crate) fn new(rate: f64, burst: u32, now: Instant) -> Self {
        let burst = f64::from(burst.max(1));
        TokenBucket {
            rate,
            burst,
            inner: Mutex::new((burst, now)),
        }
    }

    /// Takes one token if there is one.
    pub(crate) fn try_acquire(&self, now: Instant) -> bool {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (tokens, last) = *g;
        let refill = now.saturating_duration_since(last).as_secs_f64() * self.rate;
        let tokens = (tokens + refill).min(self.burst);
        if tokens >= 1.0 {
            *g = (tokens - 1.0, now);
            true
        } else {
            *g = (tokens, now);
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn allows_burst_then_refills_at_rate() {
        let t0 = Instant::now();
        let b = TokenBucket::new(2.0, 3, t0);
        assert!(b.try_acquire(t0));
        assert!(b.try_acquire(t0));
        assert!(b.try_acquire(t0));
        assert!(!b.try_acquire(t0));
        // Half a second at 2/s gives one token back.
        let t1 = t0 + Duration::from_millis(500);
        assert!(b.try_acquire(t1));
        assert!(!b.try_acquire(t1));
        // A long idle period refills only up to the burst.
        let t2 = t1 + Duration::from_secs(60);
        for _ in 0..3 {
            assert!(b.try_acquire(t2));
        }
        assert!(!b.try_acquire(t2));
    }
}
