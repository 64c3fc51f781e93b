//! The per-profile rate limiter: a governor GCRA bucket on tokio's clock, plus a profile-wide
//! pause that a 429's `Retry-After` sets.

use governor::clock::{Clock, Reference};
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::time::Instant;

/// governor's clock, driven by tokio's (pausable) time so tests can own time.
#[derive(Debug, Clone)]
struct TokioClock {
    origin: Instant,
}

impl Clock for TokioClock {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        Nanos::from(Instant::now().saturating_duration_since(self.origin))
    }
}

type Bucket = RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<Nanos>>;

/// The rate limit of one client profile.
///
/// Every HTTP request takes a permit with [`Limiter::acquire`]. A 429 or 503 carrying
/// `Retry-After` pauses the whole profile with [`Limiter::pause_for`], so the jobs that share the
/// profile stop together instead of each finding the limit on its own.
#[derive(Debug)]
pub struct Limiter {
    clock: TokioClock,
    /// The configured rate, or `None` for unlimited.
    rate: Option<(f64, u32)>,
    /// The bucket in force (replaced when the instance's share changes).
    bucket: RwLock<Option<Arc<Bucket>>>,
    paused_until: Mutex<Option<Instant>>,
    waited: Mutex<Duration>,
    /// Waiters for a permit, first come first served.
    queue: tokio::sync::Mutex<()>,
}

impl Limiter {
    /// A limiter for `requests_per_second` (None: unlimited) with `burst` requests at once.
    pub fn new(requests_per_second: Option<f64>, burst: u32) -> Limiter {
        let clock = TokioClock {
            origin: Instant::now(),
        };
        let rate = requests_per_second.map(|r| (r, burst.max(1)));
        let bucket = rate.map(|(r, b)| Arc::new(make_bucket(r, b, &clock)));
        Limiter {
            clock,
            rate,
            bucket: RwLock::new(bucket),
            paused_until: Mutex::new(None),
            waited: Mutex::new(Duration::ZERO),
            queue: tokio::sync::Mutex::new(()),
        }
    }

    /// An unlimited limiter.
    pub fn unlimited() -> Limiter {
        Limiter::new(None, 1)
    }

    /// The configured requests per second, if limited.
    pub fn rate(&self) -> Option<f64> {
        self.rate.map(|(r, _)| r)
    }

    /// Scales the configured rate by `share` (0..=1], e.g. the share of the jobs topic's
    /// partitions this instance owns. Burst is scaled too, never below 1.
    pub fn set_share(&self, share: f64) {
        let Some((rate, burst)) = self.rate else {
            return;
        };
        let share = share.clamp(1e-6, 1.0);
        let b = ((burst as f64 * share).round() as u32).max(1);
        let bucket = Arc::new(make_bucket(rate * share, b, &self.clock));
        *self.bucket.write().unwrap_or_else(|e| e.into_inner()) = Some(bucket);
    }

    /// Waits for a permit; returns how long it waited. Waiters queue in FIFO order and only the
    /// one at the head sleeps until the next permit is due, so a thousand queued jobs cost one
    /// wake-up per permit, not a thousand. Cancellable: dropping the future leaves the queue
    /// without taking a permit.
    pub async fn acquire(&self) -> Duration {
        let start = Instant::now();
        if self.rate.is_none() && !self.is_paused() {
            return Duration::ZERO;
        }
        let _turn = self.queue.lock().await;
        loop {
            let paused = *self.paused_until.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(until) = paused {
                if until > Instant::now() {
                    tokio::time::sleep_until(until).await;
                    continue;
                }
            }
            let bucket = self
                .bucket
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            let Some(bucket) = bucket else { break };
            match bucket.check() {
                Ok(()) => break,
                Err(not_until) => {
                    let wait = not_until.wait_time_from(self.clock.now());
                    tokio::time::sleep(wait.max(Duration::from_micros(50))).await;
                }
            }
        }
        let waited = start.elapsed();
        if !waited.is_zero() {
            *self.waited.lock().unwrap_or_else(|e| e.into_inner()) += waited;
        }
        waited
    }

    fn is_paused(&self) -> bool {
        self.paused_until
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|until| until > Instant::now())
    }

    /// Pauses every request of the profile for `d` (a `Retry-After`). A later, shorter pause
    /// never shortens an earlier, longer one.
    pub fn pause_for(&self, d: Duration) {
        let until = crate::clock::from_now(d);
        let mut p = self.paused_until.lock().unwrap_or_else(|e| e.into_inner());
        if p.is_none_or(|cur| cur < until) {
            *p = Some(until);
        }
    }

    /// Total time requests spent waiting for permits.
    pub fn total_wait(&self) -> Duration {
        *self.waited.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn make_bucket(rate: f64, burst: u32, clock: &TokioClock) -> Bucket {
    let period = Duration::from_secs_f64(1.0 / rate.max(1e-9)).max(Duration::from_nanos(1));
    let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
    let quota = Quota::with_period(period)
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MAX))
        .allow_burst(burst);
    RateLimiter::direct_with_clock(quota, clock.clone())
}

// `Nanos` must stay a governor `Reference` for the clock above.
const _: fn() = || {
    fn is_reference<T: Reference>() {}
    is_reference::<Nanos>();
};

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Runs `tasks` requesters for `secs` of paused time; returns each permit's time offset.
    async fn permits(limiter: Arc<Limiter>, tasks: usize, secs: u64) -> Vec<Duration> {
        let start = Instant::now();
        let times = Arc::new(Mutex::new(Vec::new()));
        let mut handles = Vec::new();
        for _ in 0..tasks {
            let (l, t) = (limiter.clone(), times.clone());
            handles.push(tokio::spawn(async move {
                loop {
                    l.acquire().await;
                    let at = start.elapsed();
                    if at >= Duration::from_secs(secs) {
                        break;
                    }
                    t.lock().unwrap().push(at);
                }
            }));
        }
        for h in handles {
            h.await.unwrap();
        }
        let mut v = times.lock().unwrap().clone();
        v.sort();
        v
    }

    fn max_in_window(times: &[Duration], window: Duration) -> usize {
        let mut best = 0;
        let mut lo = 0;
        for hi in 0..times.len() {
            while times[hi] - times[lo] >= window {
                lo += 1;
            }
            best = best.max(hi - lo + 1);
        }
        best
    }

    #[tokio::test(start_paused = true)]
    async fn never_more_than_rate_times_window_plus_burst() {
        let (rps, burst) = (50.0, 10);
        let limiter = Arc::new(Limiter::new(Some(rps), burst));
        let times = permits(limiter, 64, 10).await;
        // Reaches the rate...
        assert!(times.len() >= 500, "only {} permits in 10s", times.len());
        // ...and never exceeds rps * t + burst in any window of length t.
        for t_ms in [10u64, 100, 500, 1000, 3000] {
            let t = Duration::from_millis(t_ms);
            let bound = (rps * t.as_secs_f64()).ceil() as usize + burst as usize;
            let seen = max_in_window(&times, t);
            assert!(seen <= bound, "window {t:?}: {seen} > {bound}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn unlimited_never_waits() {
        let l = Limiter::unlimited();
        for _ in 0..10_000 {
            assert_eq!(l.acquire().await, Duration::ZERO);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_pauses_the_whole_profile() {
        let l = Arc::new(Limiter::unlimited());
        l.pause_for(Duration::from_secs(2));
        let start = Instant::now();
        let done = Arc::new(AtomicUsize::new(0));
        let mut hs = Vec::new();
        for _ in 0..3 {
            let (l, d) = (l.clone(), done.clone());
            hs.push(tokio::spawn(async move {
                l.acquire().await;
                d.fetch_add(1, Ordering::SeqCst);
            }));
        }
        for h in hs {
            h.await.unwrap();
        }
        assert!(start.elapsed() >= Duration::from_secs(2));
        assert_eq!(done.load(Ordering::SeqCst), 3);
        // A shorter pause does not shorten a longer one.
        l.pause_for(Duration::from_secs(5));
        l.pause_for(Duration::from_secs(1));
        let s = Instant::now();
        l.acquire().await;
        assert!(s.elapsed() >= Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_is_cancellable() {
        let l = Limiter::new(Some(1.0), 1);
        l.acquire().await; // takes the only permit
        let r = tokio::time::timeout(Duration::from_millis(100), l.acquire()).await;
        assert!(r.is_err(), "second permit must wait ~1s");
        // The cancelled wait took nothing: the next permit is due 1s after the first.
        let s = Instant::now();
        l.acquire().await;
        assert!(
            s.elapsed() <= Duration::from_millis(950),
            "{:?}",
            s.elapsed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn share_scales_the_rate() {
        let l = Arc::new(Limiter::new(Some(100.0), 1));
        l.set_share(0.5);
        let times = permits(l, 8, 4).await;
        let n = times.len();
        assert!((190..=205).contains(&n), "{n} permits in 4s at 50/s");
    }
}
