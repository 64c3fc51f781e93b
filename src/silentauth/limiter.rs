//! The per-profile rate limiter: a governor GCRA bucket on tokio's clock with two priorities (a
//! job whose code is spent goes first), plus the profile-wide pauses a `Retry-After` sets: a
//! Silent Auth one holds both lanes, a Network Signals one the normal lane only.

use governor::clock::{Clock, Reference};
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::Notify;
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

/// Every request passes `main` (the configured rate and burst); a normal one first passes
/// `pacer` (the same rate, burst 1), so the burst is left for codes at risk.
#[derive(Debug)]
struct Buckets {
    main: Bucket,
    pacer: Bucket,
}

impl Buckets {
    fn new(rate: f64, burst: u32, clock: &TokioClock) -> Buckets {
        Buckets {
            main: make_bucket(rate, burst, clock),
            pacer: make_bucket(rate, 1, clock),
        }
    }
}

/// The rate limit of one client profile.
///
/// Every HTTP request takes a permit with [`Limiter::acquire`]. A 429 or 503 carrying
/// `Retry-After` pauses the whole profile, so the jobs that share the profile stop together
/// instead of each finding the limit on its own: a Silent Auth one with [`Limiter::pause_for`]
/// (both lanes), a Network Signals one with [`Limiter::pause_normal_for`] (the normal lane: the
/// requests of spent codes go on).
#[derive(Debug)]
pub struct Limiter {
    clock: TokioClock,
    /// The configured rate, or `None` for unlimited.
    rate: Option<(f64, u32)>,
    /// The buckets in force (replaced when the instance's share changes).
    bucket: RwLock<Option<Arc<Buckets>>>,
    paused: Mutex<Pauses>,
    waited: Mutex<Duration>,
    /// Normal waiters for a permit, first come first served.
    queue: tokio::sync::Mutex<()>,
    /// High-priority waiters for a permit, first come first served.
    high_queue: tokio::sync::Mutex<()>,
    /// High-priority requests waiting now (queued or at the head).
    high_waiting: AtomicUsize,
    /// Told when `high_waiting` falls to 0, so the normal head takes permits again.
    high_idle: Notify,
}

/// The order in which waiting requests get permits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    /// A request of a job whose code is not spent yet (a token call, a network-signal check
    /// before the exchange). Paced: normal requests never go out in a burst (at most one per
    /// `1 / rate`), so a full bucket cannot spend a burst of codes whose userinfo calls then wait
    /// for permits.
    Normal,
    /// A request of a job whose code is spent (its userinfo call, its network-signal checks
    /// after the exchange): served before every normal waiter, so a code at risk never waits
    /// behind new token calls; it may use the burst, and a Network Signals pause never holds it.
    High,
}

/// Until when each lane is paused by a `Retry-After`.
#[derive(Debug, Default, Clone, Copy)]
struct Pauses {
    /// Every request waits (a Silent Auth `Retry-After`).
    all: Option<Instant>,
    /// Only normal requests wait (a Network Signals `Retry-After`).
    normal: Option<Instant>,
}

impl Pauses {
    /// When the pause that holds `priority` ends, if one was set.
    fn until(self, priority: Priority) -> Option<Instant> {
        match priority {
            Priority::High => self.all,
            Priority::Normal => self.all.max(self.normal),
        }
    }
}

/// Counts one high-priority waiter while it lives (also when its wait is cancelled).
struct HighWaiter<'a>(&'a Limiter);

impl<'a> HighWaiter<'a> {
    fn enter(limiter: &'a Limiter) -> HighWaiter<'a> {
        limiter.high_waiting.fetch_add(1, Ordering::AcqRel);
        HighWaiter(limiter)
    }
}

impl Drop for HighWaiter<'_> {
    fn drop(&mut self) {
        if self.0.high_waiting.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.high_idle.notify_waiters();
        }
    }
}

impl Limiter {
    /// A limiter for `requests_per_second` (None: unlimited) with `burst` requests at once.
    pub fn new(requests_per_second: Option<f64>, burst: u32) -> Limiter {
        let clock = TokioClock {
            origin: Instant::now(),
        };
        let rate = requests_per_second.map(|r| (r, burst.max(1)));
        let bucket = rate.map(|(r, b)| Arc::new(Buckets::new(r, b, &clock)));
        Limiter {
            clock,
            rate,
            bucket: RwLock::new(bucket),
            paused: Mutex::new(Pauses::default()),
            waited: Mutex::new(Duration::ZERO),
            queue: tokio::sync::Mutex::new(()),
            high_queue: tokio::sync::Mutex::new(()),
            high_waiting: AtomicUsize::new(0),
            high_idle: Notify::new(),
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
        let bucket = Arc::new(Buckets::new(rate * share, b, &self.clock));
        *self.bucket.write().unwrap_or_else(|e| e.into_inner()) = Some(bucket);
    }

    /// Waits for a permit of [`Priority::Normal`]; returns how long it waited. See
    /// [`Limiter::acquire_with`].
    pub async fn acquire(&self) -> Duration {
        self.acquire_with(Priority::Normal).await
    }

    /// Waits for a permit; returns how long it waited. Every request takes one, whatever its
    /// priority, so the rate holds. Waiters of one priority queue in FIFO order and only the one
    /// at the head sleeps until the next permit is due, so a thousand queued jobs cost one
    /// wake-up per permit, not a thousand. A [`Priority::High`] waiter is served before every
    /// [`Priority::Normal`] one: the normal head yields each permit while a high one waits.
    /// Normal requests are also paced (never a burst); the burst is left for high ones.
    /// Cancellable: dropping the future leaves the queue without taking a permit.
    pub async fn acquire_with(&self, priority: Priority) -> Duration {
        let start = Instant::now();
        if self.rate.is_none() && !self.is_paused(priority) {
            return Duration::ZERO;
        }
        match priority {
            Priority::High => {
                let _waiting = HighWaiter::enter(self);
                let _turn = self.high_queue.lock().await;
                self.take(priority).await;
            }
            Priority::Normal => {
                let _turn = self.queue.lock().await;
                self.take(priority).await;
            }
        }
        let waited = start.elapsed();
        if !waited.is_zero() {
            *self.waited.lock().unwrap_or_else(|e| e.into_inner()) += waited;
        }
        waited
    }

    /// Takes the next permit as the head of a queue. A normal head waits while high-priority
    /// requests wait (it never takes a permit one of them could take) and passes the pacer.
    async fn take(&self, priority: Priority) {
        let mut paced = priority == Priority::High;
        loop {
            if priority == Priority::Normal && self.high_waiting.load(Ordering::Acquire) > 0 {
                let notified = self.high_idle.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if self.high_waiting.load(Ordering::Acquire) > 0 {
                    notified.await;
                }
                continue;
            }
            if let Some(until) = self.pauses().until(priority) {
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
            let Some(bucket) = bucket else { return };
            if !paced {
                match bucket.pacer.check() {
                    Ok(()) => paced = true,
                    Err(not_until) => {
                        let wait = not_until.wait_time_from(self.clock.now());
                        tokio::time::sleep(wait.max(Duration::from_micros(50))).await;
                        continue;
                    }
                }
            }
            match bucket.main.check() {
                Ok(()) => return,
                Err(not_until) => {
                    let wait = not_until.wait_time_from(self.clock.now());
                    tokio::time::sleep(wait.max(Duration::from_micros(50))).await;
                }
            }
        }
    }

    fn pauses(&self) -> Pauses {
        *self.paused.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn is_paused(&self, priority: Priority) -> bool {
        self.pauses()
            .until(priority)
            .is_some_and(|until| until > Instant::now())
    }

    /// Pauses every request of the profile, both lanes, for `d` (a Silent Auth `Retry-After`:
    /// userinfo would be refused too). A later, shorter pause never shortens an earlier, longer
    /// one.
    pub fn pause_for(&self, d: Duration) {
        let mut p = self.paused.lock().unwrap_or_else(|e| e.into_inner());
        extend(&mut p.all, d);
    }

    /// Pauses the profile's [`Priority::Normal`] requests for `d` (a Network Signals
    /// `Retry-After`): token calls and the checks of jobs whose code is not spent wait, so no new
    /// code is spent while checks are refused; the high lane goes on, so neither the userinfo nor
    /// the checks of a spent code are held by it (a check that got the 429 still waits out its own
    /// `Retry-After`). A later, shorter pause never shortens an earlier, longer one.
    pub fn pause_normal_for(&self, d: Duration) {
        let mut p = self.paused.lock().unwrap_or_else(|e| e.into_inner());
        extend(&mut p.normal, d);
    }

    /// Total time requests spent waiting for permits.
    pub fn total_wait(&self) -> Duration {
        *self.waited.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Moves a pause's end to `d` from now, unless it already ends later.
fn extend(pause: &mut Option<Instant>, d: Duration) {
    let until = crate::clock::from_now(d);
    if pause.is_none_or(|cur| cur < until) {
        *pause = Some(until);
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
        permits_mixed(limiter, tasks, 0, secs).await
    }

    /// [`permits`] with `high` more requesters of [`Priority::High`].
    async fn permits_mixed(
        limiter: Arc<Limiter>,
        tasks: usize,
        high: usize,
        secs: u64,
    ) -> Vec<Duration> {
        let start = Instant::now();
        let times = Arc::new(Mutex::new(Vec::new()));
        let mut handles = Vec::new();
        for i in 0..tasks + high {
            let (l, t) = (limiter.clone(), times.clone());
            let priority = if i < tasks {
                Priority::Normal
            } else {
                Priority::High
            };
            handles.push(tokio::spawn(async move {
                loop {
                    l.acquire_with(priority).await;
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
    async fn the_high_lane_passes_a_signals_pause_that_holds_the_normal_lane() {
        for rate in [None, Some(10.0)] {
            let l = Arc::new(Limiter::new(rate, 1));
            l.pause_normal_for(Duration::from_secs(5));
            let start = Instant::now();
            // A normal request (a token call) is queued first and waits the pause out...
            let normal = tokio::spawn({
                let l = l.clone();
                async move {
                    l.acquire().await;
                    start.elapsed()
                }
            });
            tokio::time::sleep(Duration::from_millis(1)).await;
            // ...while the requests of spent codes go at once, one after the other.
            for _ in 0..3 {
                l.acquire_with(Priority::High).await;
            }
            let high = start.elapsed();
            let bound = Duration::from_millis(if rate.is_some() { 202 } else { 1 });
            assert!(high <= bound, "{rate:?}: high lane held {high:?}");
            let normal = normal.await.unwrap();
            assert!(normal >= Duration::from_secs(5), "{rate:?}: {normal:?}");
            assert!(
                normal <= Duration::from_millis(5001),
                "{rate:?}: {normal:?}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_auth_pause_still_holds_both_lanes() {
        let l = Limiter::unlimited();
        l.pause_normal_for(Duration::from_secs(1));
        l.pause_for(Duration::from_secs(3));
        let start = Instant::now();
        l.acquire_with(Priority::High).await;
        assert!(
            start.elapsed() >= Duration::from_secs(3),
            "{:?}",
            start.elapsed()
        );
        // A shorter signals pause neither shortens nor outlasts a Silent Auth one.
        l.pause_for(Duration::from_secs(2));
        l.pause_normal_for(Duration::from_secs(1));
        let s = Instant::now();
        l.acquire().await;
        assert!(s.elapsed() >= Duration::from_secs(2), "{:?}", s.elapsed());
        // And a longer signals pause holds the normal lane past the Silent Auth one.
        l.pause_for(Duration::from_secs(1));
        l.pause_normal_for(Duration::from_secs(4));
        let s = Instant::now();
        l.acquire_with(Priority::High).await;
        assert!(s.elapsed() >= Duration::from_secs(1), "{:?}", s.elapsed());
        assert!(s.elapsed() < Duration::from_secs(2), "{:?}", s.elapsed());
        l.acquire().await;
        assert!(s.elapsed() >= Duration::from_secs(4), "{:?}", s.elapsed());
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

    #[tokio::test(start_paused = true)]
    async fn the_rate_holds_with_both_priorities() {
        let (rps, burst) = (50.0, 10);
        let limiter = Arc::new(Limiter::new(Some(rps), burst));
        let times = permits_mixed(limiter, 32, 32, 10).await;
        assert!(times.len() >= 500, "only {} permits in 10s", times.len());
        for t_ms in [10u64, 100, 500, 1000, 3000] {
            let t = Duration::from_millis(t_ms);
            let bound = (rps * t.as_secs_f64()).ceil() as usize + burst as usize;
            let seen = max_in_window(&times, t);
            assert!(seen <= bound, "window {t:?}: {seen} > {bound}");
        }
    }

    /// Queues `normal` normal waiters, then `high` high ones, on a limiter whose only permit is
    /// taken; returns who got each later permit, in order, and when.
    async fn served_order(normal: usize, high: usize) -> Vec<(String, Duration)> {
        let l = Arc::new(Limiter::new(Some(10.0), 1));
        l.acquire().await;
        let start = Instant::now();
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut hs = Vec::new();
        let names = (0..normal)
            .map(|i| (format!("normal-{i}"), Priority::Normal))
            .chain((0..high).map(|i| (format!("high-{i}"), Priority::High)));
        for (name, priority) in names {
            let (l, o) = (l.clone(), order.clone());
            hs.push(tokio::spawn(async move {
                l.acquire_with(priority).await;
                o.lock().unwrap().push((name, start.elapsed()));
            }));
            // Each waiter is queued before the next one arrives.
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        for h in hs {
            h.await.unwrap();
        }
        let v = order.lock().unwrap().clone();
        v
    }

    #[tokio::test(start_paused = true)]
    async fn a_high_priority_waiter_goes_before_queued_normal_ones() {
        let order = served_order(5, 1).await;
        let names: Vec<&str> = order.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            ["high-0", "normal-0", "normal-1", "normal-2", "normal-3", "normal-4"]
        );
        // It took the very next permit (due 100 ms after the first), and the rate held.
        assert!(order[0].1 <= Duration::from_millis(101), "{order:?}");
        for w in order.windows(2) {
            assert!(w[1].1 - w[0].1 >= Duration::from_millis(99), "{order:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn high_priority_waiters_are_first_come_first_served_among_themselves() {
        let order = served_order(3, 3).await;
        let names: Vec<&str> = order.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            ["high-0", "high-1", "high-2", "normal-0", "normal-1", "normal-2"]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_high_priority_wait_lets_normal_waiters_go_on() {
        let l = Arc::new(Limiter::new(Some(1.0), 1));
        l.acquire().await;
        let normal = tokio::spawn({
            let l = l.clone();
            async move { l.acquire().await }
        });
        tokio::time::sleep(Duration::from_millis(1)).await;
        let high =
            tokio::time::timeout(Duration::from_millis(100), l.acquire_with(Priority::High)).await;
        assert!(high.is_err());
        // The normal waiter gets the next permit, about a second after the first.
        let waited = tokio::time::timeout(Duration::from_secs(2), normal)
            .await
            .expect("not stuck behind a cancelled high-priority wait")
            .unwrap();
        assert!(waited <= Duration::from_secs(1), "{waited:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn normal_requests_are_paced_and_the_burst_is_left_for_high_ones() {
        let l = Limiter::new(Some(10.0), 5);
        let start = Instant::now();
        let mut normal = Vec::new();
        for _ in 0..5 {
            l.acquire().await;
            normal.push(start.elapsed());
        }
        // A full bucket, yet one normal permit per 100 ms.
        assert!(normal[4] >= Duration::from_millis(400), "{normal:?}");
        tokio::time::sleep(Duration::from_secs(1)).await;
        let s = Instant::now();
        for _ in 0..5 {
            l.acquire_with(Priority::High).await;
        }
        assert!(s.elapsed() <= Duration::from_millis(1), "{:?}", s.elapsed());
    }
}
