//! How many jobs of one client profile may talk to the Silent Auth API at once: a fixed number,
//! or a limit that tunes itself (adaptive concurrency, modelled on Vector's adaptive request
//! concurrency, with a throughput check on every raise): over windows of at least one round
//! trip, a raise stays only if it pays (the answers per second grow by at least
//! [`PAYOFF`] of the raise's proportion); a raise that does not pay is taken back, and the limit
//! then tries downwards (to 90%) until a cut costs as much; a window whose round trip rises
//! beyond its moving baseline cuts the limit to 90%, and answers that push back (429, 503,
//! timeouts, failed connections) cut it by half their share: to half when all did.
//!
//! Growth alone on the round trip (Vector's rule) does not find the knee where the upstream,
//! or this machine, is saturated: there every step raises the round trip a little, the baseline
//! follows, and the limit climbs to where more slots cost throughput. The payoff rule finds it:
//! where one more eighth of slots adds under [`PAYOFF`] of an eighth of answers, it stops.
//!
//! A job holds one [`Slot`] from its token request to its userinfo answer, so a job whose code
//! is spent never waits for a slot again, and the requests in flight never outnumber the slots.
//! The limit never exceeds `worker.max_in_flight`; the rate limit still binds first.

use super::client::HttpOutcome;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::Instant;

/// The limit an adaptive controller starts at (or `max`, if lower).
pub const INITIAL_LIMIT: usize = 128;
/// The shortest measurement window; a window also lasts at least one baseline round trip.
pub const MIN_WINDOW: Duration = Duration::from_millis(50);
/// Weight of the newest window in the round-trip baseline and its deviation.
const EWMA_ALPHA: f64 = 0.4;
/// A window whose mean round trip exceeds the baseline by this many deviations is congestion.
const DEVIATION_SCALE: f64 = 2.5;
/// ... and by at least this fraction of the baseline (no decrease on a perfectly steady
/// baseline's noise).
const MIN_RISE: f64 = 0.05;
/// The multiplicative decrease when the round trip rises (Vector's), and the step of an experiment
/// downwards.
const DECREASE_RATIO: f64 = 0.9;
/// The deepest cut when the upstream pushes back: a window of nothing but 429/503/timeouts
/// halves the limit; a window where a fraction `f` of the answers pushed back cuts it by `f / 2`
/// after that window's growth (DCTCP's answer to the fraction of marked packets), so a few
/// refusals among many answers (one failing path, an outage of a few jobs) trim the growth
/// instead of collapsing the limit, and a storm halves it.
const BACKPRESSURE_RATIO: f64 = 0.5;
/// The increase per window once past slow start: this fraction of the limit (at least 1).
const INCREASE_FRACTION: f64 = 0.125;
/// A change of the limit pays when the answers per second change by at least this share of
/// the change's proportion: a raise by an eighth must bring at least 15% of an eighth more
/// answers per second to stay, and a cut by a tenth that loses 15% of a tenth or more is
/// taken back. Where the upstream is idle a raise brings its full share (1.0); past the knee
/// of a saturated one, next to nothing. (0.3 settled lower, in the steep part of the curve,
/// where window-to-window noise pushed it further down; too high a limit costs less than too
/// low a one.)
pub const PAYOFF: f64 = 0.15;
/// Slow start ends at a raise that does not pay, at backpressure, or when a window's mean
/// round trip exceeds the baseline by this factor.
const SLOW_START_EXIT: f64 = 1.5;
/// The fewest answers in a window to weigh a change of the limit by (fewer: a raise is kept,
/// a cut taken back, as if the upstream were idle).
const MIN_JUDGED: u32 = 32;
/// Windows the limit stays at a value it was taken back to before the next experiment (the first
/// still carries answers of the slots that were taken back).
const HOLD_WINDOWS: u32 = 2;

/// What one request's answer says about the upstream's load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// An answer that says nothing about overload (2xx, 4xx other than 429, 5xx other than 503).
    Answered,
    /// 429, 503, a timeout, a failed connection or a body that broke off: the upstream is
    /// overloaded; back off.
    Backpressure,
}

impl Signal {
    /// The signal of a request's outcome.
    pub fn of_outcome(outcome: &HttpOutcome) -> Signal {
        Signal::of_status(outcome.complete_status())
    }

    /// The signal of an HTTP status (`None`: no answer, a transport failure).
    pub fn of_status(status: Option<u16>) -> Signal {
        match status {
            Some(429 | 503) | None => Signal::Backpressure,
            Some(_) => Signal::Answered,
        }
    }
}

/// A change of the limit under test: the limit before it and that window's answers per second.
#[derive(Debug, Clone, Copy)]
struct Experiment {
    from: f64,
    rate: f64,
    /// The change was made at the end of the last window: this one is not judged.
    settling: bool,
}

/// The controller's state: AIMD over windows of at least one baseline round trip, every change
/// of the limit tested against the answers per second it brings.
#[derive(Debug)]
struct Aimd {
    limit: f64,
    max: f64,
    /// Doubling per window until the first raise that does not pay (or a decrease).
    slow_start: bool,
    /// Probing downwards: a raise did not pay, and no cut has cost yet.
    downhill: bool,
    /// The change made at the end of the last window, judged at the end of this one.
    experiment: Option<Experiment>,
    /// Windows to wait before the next experiment.
    hold: u32,
    /// The round-trip baseline (seconds, EWMA of window means) and its mean deviation.
    past: Option<(f64, f64)>,
    window_start: Instant,
    sum: f64,
    n: u32,
    /// Answers of the window that pushed back.
    pushed: u32,
    /// The limit was reached during the window (a job found no free slot or took the last).
    reached: bool,
}

impl Aimd {
    fn new(initial: usize, max: usize, now: Instant) -> Aimd {
        Aimd {
            limit: initial as f64,
            max: max as f64,
            slow_start: true,
            downhill: false,
            experiment: None,
            hold: 0,
            past: None,
            window_start: now,
            sum: 0.0,
            n: 0,
            pushed: 0,
            reached: false,
        }
    }

    fn window(&self) -> Duration {
        let past = self.past.map_or(0.0, |(p, _)| p);
        MIN_WINDOW.max(Duration::from_secs_f64(past))
    }

    /// Adds one answer; at the end of a window, returns the new limit.
    fn observe(&mut self, now: Instant, rtt: Duration, signal: Signal) -> Option<usize> {
        self.sum += rtt.as_secs_f64();
        self.n += 1;
        self.pushed += u32::from(signal == Signal::Backpressure);
        let elapsed = now.saturating_duration_since(self.window_start);
        if elapsed < self.window() {
            return None;
        }
        let mean = self.sum / f64::from(self.n);
        let rate = f64::from(self.n) / elapsed.as_secs_f64();
        let congested = self.past.is_some_and(|(past, dev)| {
            if self.slow_start {
                mean > past * SLOW_START_EXIT
            } else {
                mean > past + (DEVIATION_SCALE * dev).max(MIN_RISE * past)
            }
        });
        match self.experiment.take() {
            // A window that did not reach the limit says nothing about a change of it.
            Some(_) if !self.reached => {}
            // The first window after a change still carries the answers of the limit before.
            Some(experiment) if experiment.settling => {
                self.experiment = Some(Experiment {
                    settling: false,
                    ..experiment
                })
            }
            Some(experiment) if self.n >= MIN_JUDGED => self.judge(experiment, rate),
            // Too few answers to weigh: keep a raise, take a cut back.
            Some(experiment) if experiment.from < self.limit => {}
            Some(experiment) => self.limit = experiment.from,
            None if congested => {
                self.limit *= DECREASE_RATIO;
                self.slow_start = false;
            }
            None if self.reached && self.hold > 0 => self.hold -= 1,
            None if self.reached => self.step(rate),
            None => {}
        }
        if self.pushed > 0 {
            let share = f64::from(self.pushed) / f64::from(self.n);
            self.limit *= 1.0 - (1.0 - BACKPRESSURE_RATIO) * share;
            self.slow_start = false;
            // Recovery after push-back climbs; no experiment of this window is judged.
            self.downhill = false;
            self.hold = 0;
            self.experiment = None;
        }
        self.limit = self.limit.floor().clamp(1.0, self.max);
        self.past = Some(match self.past {
            None => (mean, 0.0),
            Some((past, dev)) => (
                past + EWMA_ALPHA * (mean - past),
                dev + EWMA_ALPHA * ((mean - past).abs() - dev),
            ),
        });
        self.window_start = now;
        self.sum = 0.0;
        self.n = 0;
        self.pushed = 0;
        self.reached = false;
        Some(self.limit as usize)
    }

    /// Keeps the last change if it paid, else takes it back. A raise that pays is followed
    /// by the next; one that does not turns the probing downwards. A cut that costs is taken
    /// back, and one that does not is kept; either turns the probing upwards again. Each turn
    /// waits [`HOLD_WINDOWS`].
    fn judge(&mut self, experiment: Experiment, rate: f64) {
        let asked = self.limit / experiment.from - 1.0;
        let got = rate / experiment.rate - 1.0;
        // The answers per second moved with the limit by at least PAYOFF of its change: a
        // raise paid, or a cut cost.
        let elastic = got / asked >= PAYOFF;
        if asked > 0.0 && elastic {
            self.step(rate);
            return;
        }
        if elastic || asked > 0.0 {
            self.limit = experiment.from;
        }
        self.downhill = asked > 0.0;
        self.hold = HOLD_WINDOWS;
    }

    /// One step in the current direction: doubling in slow start (not judged; slow start ends
    /// on the round trip or on push-back), else an experiment judged two windows later.
    fn step(&mut self, rate: f64) {
        let from = self.limit;
        if self.downhill {
            self.limit = (self.limit * DECREASE_RATIO).floor();
        } else {
            let step = if self.slow_start {
                self.limit
            } else {
                self.limit * INCREASE_FRACTION
            };
            self.limit = (self.limit + step.max(1.0)).floor().min(self.max);
        }
        self.limit = self.limit.max(1.0);
        if self.limit == from {
            // At 1 (downhill) or at the maximum (uphill): nothing to experiment that way.
            self.downhill = false;
        } else if !self.slow_start && from >= f64::from(MIN_JUDGED) {
            // (Below MIN_JUDGED slots a window has too few answers to weigh: steps go unjudged.)
            self.experiment = Some(Experiment {
                from,
                rate,
                settling: true,
            });
        }
    }
}

/// The concurrency limit of one client profile (see the module docs).
#[derive(Debug)]
pub struct Concurrency {
    /// `None` for a fixed limit.
    aimd: Option<Mutex<Aimd>>,
    gate: Semaphore,
    limit: AtomicUsize,
    in_use: AtomicUsize,
    /// Slots to retire as they come back (a decrease below what is in use).
    debt: AtomicUsize,
}

/// One job's right to call the API; returned when dropped.
#[derive(Debug)]
pub struct Slot<'a> {
    owner: &'a Concurrency,
    permit: Option<SemaphorePermit<'a>>,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.owner.in_use.fetch_sub(1, Ordering::AcqRel);
        let retire = self
            .owner
            .debt
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |d| d.checked_sub(1))
            .is_ok();
        if let Some(permit) = self.permit.take() {
            if retire {
                permit.forget();
            }
        }
    }
}

impl Concurrency {
    /// A fixed limit of `limit` slots.
    pub fn fixed(limit: usize) -> Concurrency {
        Concurrency::build(None, limit.max(1))
    }

    /// No limit to speak of (tests and tools that do not configure one).
    pub fn unlimited() -> Concurrency {
        Concurrency::fixed(Semaphore::MAX_PERMITS)
    }

    /// A self-tuning limit that starts at [`INITIAL_LIMIT`] and never exceeds `max`.
    pub fn adaptive(max: usize) -> Concurrency {
        let max = max.max(1);
        let initial = INITIAL_LIMIT.min(max);
        Concurrency::build(
            Some(Mutex::new(Aimd::new(initial, max, Instant::now()))),
            initial,
        )
    }

    fn build(aimd: Option<Mutex<Aimd>>, limit: usize) -> Concurrency {
        Concurrency {
            aimd,
            gate: Semaphore::new(limit),
            limit: AtomicUsize::new(limit),
            in_use: AtomicUsize::new(0),
            debt: AtomicUsize::new(0),
        }
    }

    /// The limit in force.
    pub fn limit(&self) -> usize {
        self.limit.load(Ordering::Acquire)
    }

    /// Slots held now.
    pub fn in_use(&self) -> usize {
        self.in_use.load(Ordering::Acquire)
    }

    /// Waits for a slot, first come first served. Cancellable.
    pub async fn acquire(&self) -> Slot<'_> {
        let permit = self.gate.acquire().await.ok();
        let in_use = self.in_use.fetch_add(1, Ordering::AcqRel) + 1;
        if let Some(aimd) = &self.aimd {
            if in_use >= self.limit() {
                lock(aimd).reached = true;
            }
        }
        Slot {
            owner: self,
            permit,
        }
    }

    /// Tells the controller how one request went: its round trip and what its answer says.
    pub fn observe(&self, rtt: Duration, signal: Signal) {
        let Some(aimd) = &self.aimd else { return };
        let changed = lock(aimd).observe(Instant::now(), rtt, signal);
        if let Some(new) = changed {
            self.set_limit(new);
        }
    }

    /// Runs one request, telling the controller its round trip and outcome.
    pub async fn observed<F>(&self, request: F) -> HttpOutcome
    where
        F: Future<Output = HttpOutcome>,
    {
        let started = Instant::now();
        let outcome = request.await;
        self.observe(started.elapsed(), Signal::of_outcome(&outcome));
        outcome
    }

    fn set_limit(&self, new: usize) {
        let old = self.limit.swap(new, Ordering::AcqRel);
        if new > old {
            // New slots first pay off the debt of an earlier cut; the rest open at once.
            let add = new - old;
            let owed = self
                .debt
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |d| {
                    Some(d.saturating_sub(add))
                })
                .unwrap_or_else(|d| d);
            self.gate.add_permits(add - owed.min(add));
        } else if new < old {
            let cut = old - new;
            let forgotten = self.gate.forget_permits(cut);
            self.debt.fetch_add(cut - forgotten, Ordering::AcqRel);
        }
    }
}

fn lock(m: &Mutex<Aimd>) -> std::sync::MutexGuard<'_, Aimd> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// Runs `jobs` jobs, each holding a slot for one request of `rtt(t)` answered with
    /// `signal(t)`, `t` being the time since the start; returns (second, limit, most slots in
    /// use) per 100 ms, and checks that the slots in use never exceed the limit in force.
    async fn drive(
        c: Arc<Concurrency>,
        jobs: usize,
        secs: u64,
        rtt: impl Fn(Duration, usize) -> Duration + Send + Sync + 'static,
        signal: impl Fn(Duration) -> Signal + Send + Sync + 'static,
    ) -> Vec<(f64, usize, usize)> {
        let start = Instant::now();
        let end = start + Duration::from_secs(secs);
        let (rtt, signal) = (Arc::new(rtt), Arc::new(signal));
        let peak = Arc::new(AtomicUsize::new(0));
        let over = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..jobs {
            let (c, rtt, signal, peak, over) = (
                c.clone(),
                rtt.clone(),
                signal.clone(),
                peak.clone(),
                over.clone(),
            );
            tasks.push(tokio::spawn(async move {
                while Instant::now() < end {
                    let slot = c.acquire().await;
                    let held = c.in_use();
                    peak.fetch_max(held, Ordering::Relaxed);
                    // The limit may have been cut while this job held its slot; it must
                    // never have been handed out beyond the limit plus what the cut left.
                    if held > c.limit() + c.debt.load(Ordering::Acquire) {
                        over.fetch_add(1, Ordering::Relaxed);
                    }
                    let t = start.elapsed();
                    let d = rtt(t, held);
                    tokio::time::sleep(d).await;
                    c.observe(d, signal(t));
                    drop(slot);
                    tokio::task::yield_now().await;
                }
            }));
        }
        let mut series = Vec::new();
        while Instant::now() < end {
            tokio::time::sleep(Duration::from_millis(100)).await;
            series.push((
                start.elapsed().as_secs_f64(),
                c.limit(),
                peak.swap(0, Ordering::Relaxed),
            ));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(over.load(Ordering::Relaxed), 0, "slots beyond the limit");
        series
    }

    fn at(series: &[(f64, usize, usize)], second: f64) -> usize {
        series
            .iter()
            .find(|(t, _, _)| *t >= second)
            .map(|s| s.1)
            .unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_steady_upstream_is_covered_within_a_second() {
        let c = Arc::new(Concurrency::adaptive(256));
        assert_eq!(c.limit(), INITIAL_LIMIT);
        let s = drive(
            c.clone(),
            300,
            3,
            |_, _| Duration::from_millis(100),
            |_| Signal::Answered,
        )
        .await;
        assert_eq!(at(&s, 1.0), 256, "{s:?}");
        assert_eq!(c.limit(), 256);
    }

    #[tokio::test(start_paused = true)]
    async fn the_limit_never_passes_max_nor_grows_without_demand() {
        let c = Arc::new(Concurrency::adaptive(300));
        let s = drive(
            c.clone(),
            1000,
            3,
            |_, _| Duration::from_millis(10),
            |_| Signal::Answered,
        )
        .await;
        assert!(s
            .iter()
            .all(|(_, limit, held)| *limit <= 300 && *held <= 300));
        // Only 20 jobs: the limit is never reached, so it stays where it started.
        let c = Arc::new(Concurrency::adaptive(256));
        drive(
            c.clone(),
            20,
            3,
            |_, _| Duration::from_millis(10),
            |_| Signal::Answered,
        )
        .await;
        assert_eq!(c.limit(), INITIAL_LIMIT);
    }

    #[tokio::test(start_paused = true)]
    async fn backpressure_cuts_the_limit_and_it_recovers_within_seconds() {
        let c = Arc::new(Concurrency::adaptive(256));
        let storm = |t: Duration| t >= Duration::from_secs(2) && t < Duration::from_secs(4);
        let s = drive(
            c.clone(),
            300,
            10,
            |_, _| Duration::from_millis(50),
            move |t| {
                if storm(t) {
                    Signal::Backpressure
                } else {
                    Signal::Answered
                }
            },
        )
        .await;
        assert_eq!(at(&s, 1.9), 256, "{s:?}");
        // Two seconds of 429s: half per window.
        assert!(at(&s, 4.0) < 100, "{s:?}");
        // Back to the ceiling within a few seconds of the storm's end.
        assert_eq!(at(&s, 9.0), 256, "{s:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_few_refusals_among_many_answers_trim_the_limit_without_collapsing_it() {
        let c = Arc::new(Concurrency::adaptive(256));
        let n = Arc::new(AtomicUsize::new(0));
        let s = drive(
            c.clone(),
            300,
            6,
            |_, _| Duration::from_millis(20),
            move |_| {
                // One answer in fifty is a 503.
                if n.fetch_add(1, Ordering::Relaxed) % 50 == 49 {
                    Signal::Backpressure
                } else {
                    Signal::Answered
                }
            },
        )
        .await;
        // Growth of an eighth per window outweighs a 1% cut: the limit stays near the top.
        let late = s.iter().filter(|(t, _, _)| *t >= 3.0).map(|x| x.1);
        assert!(late.min().unwrap() >= 200, "{s:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_latency_step_is_followed_both_ways() {
        let c = Arc::new(Concurrency::adaptive(256));
        let s = drive(
            c.clone(),
            300,
            12,
            |t, _| {
                if t >= Duration::from_secs(3) && t < Duration::from_secs(6) {
                    Duration::from_millis(100)
                } else {
                    Duration::from_millis(1)
                }
            },
            |_| Signal::Answered,
        )
        .await;
        // The step up reads as congestion for a few windows, then the baseline follows it
        // and the limit climbs back to what 100 ms needs.
        let low = s
            .iter()
            .filter(|(t, _, _)| (3.0..4.0).contains(t))
            .map(|x| x.1)
            .min()
            .unwrap();
        assert!(low < 256, "{s:?}");
        assert_eq!(at(&s, 5.9), 256, "{s:?}");
        assert_eq!(at(&s, 11.9), 256, "{s:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn on_a_saturated_upstream_the_limit_settles_at_the_knee() {
        // 10,000 answers per second at most, 5 ms when idle: past 50 slots in use, more slots
        // only lengthen the round trip (what a CPU-bound upstream on the same machine does).
        let c = Arc::new(Concurrency::adaptive(1024));
        let s = drive(
            c.clone(),
            1500,
            8,
            |_, held| Duration::from_secs_f64((held as f64 / 10_000.0).max(0.005)),
            |_| Signal::Answered,
        )
        .await;
        let late: Vec<usize> = s
            .iter()
            .filter(|(t, _, _)| *t >= 4.0)
            .map(|x| x.1)
            .collect();
        // Not at max_in_flight (where the round trip would be 100 ms for the same answers),
        // not starved below the knee.
        assert!(late.iter().all(|l| (40..=100).contains(l)), "{s:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_fixed_limit_stays_put_and_bounds_the_slots() {
        let c = Arc::new(Concurrency::fixed(8));
        let s = drive(
            c.clone(),
            100,
            1,
            |_, _| Duration::from_millis(5),
            |_| Signal::Backpressure,
        )
        .await;
        assert!(s.iter().all(|(_, limit, held)| *limit == 8 && *held <= 8));
        assert!(s.iter().any(|(_, _, held)| *held == 8));
    }

    #[tokio::test(start_paused = true)]
    async fn a_cut_below_the_slots_in_use_retires_them_as_they_return() {
        let c = Concurrency::fixed(4);
        let slots: Vec<_> = futures::future::join_all((0..4).map(|_| c.acquire())).await;
        c.set_limit(1);
        assert_eq!(c.debt.load(Ordering::Acquire), 3);
        // Growing by 2 while 3 are owed pays 2 off and opens nothing.
        c.set_limit(3);
        assert_eq!(c.debt.load(Ordering::Acquire), 1);
        assert_eq!(c.gate.available_permits(), 0);
        c.set_limit(1);
        assert_eq!(c.debt.load(Ordering::Acquire), 3);
        drop(slots);
        assert_eq!(c.debt.load(Ordering::Acquire), 0);
        assert_eq!(c.gate.available_permits(), 1);
        c.set_limit(3);
        assert_eq!(c.gate.available_permits(), 3);
    }

    /// A controller past slow start at `limit`, with a steady 50 ms baseline (so a window
    /// lasts 50 ms and 50 ms answers are not congestion).
    fn steady(limit: usize, max: usize, t0: Instant) -> Aimd {
        let mut a = Aimd::new(limit, max, t0);
        a.slow_start = false;
        a.past = Some((0.05, 0.0));
        a
    }

    const RTT: Duration = Duration::from_millis(50);

    /// One window of `n` answers of round trip `rtt`, the first `pushed` of them push-back,
    /// ending `len` after the window began; `reached`: whether the limit was reached in it.
    /// Returns the limit the window ends with.
    fn window(
        a: &mut Aimd,
        len: Duration,
        n: u32,
        rtt: Duration,
        pushed: u32,
        reached: bool,
    ) -> usize {
        let start = a.window_start;
        a.reached = reached;
        for i in 0..n - 1 {
            let signal = if i < pushed {
                Signal::Backpressure
            } else {
                Signal::Answered
            };
            assert_eq!(
                a.observe(start, rtt, signal),
                None,
                "the window is not over"
            );
        }
        let last = if n <= pushed {
            Signal::Backpressure
        } else {
            Signal::Answered
        };
        a.observe(start + len, rtt, last)
            .expect("the window is over")
    }

    /// A full window at the limit: `n` answers of 50 ms in 50 ms.
    fn busy(a: &mut Aimd, n: u32) -> usize {
        window(a, MIN_WINDOW, n, RTT, 0, true)
    }

    #[test]
    fn a_window_lasts_at_least_min_window_and_one_baseline_round_trip() {
        let t0 = Instant::now();
        let mut a = Aimd::new(8, 64, t0);
        assert_eq!(a.window(), MIN_WINDOW);
        assert_eq!(
            a.observe(t0 + Duration::from_millis(49), RTT, Signal::Answered),
            None
        );
        assert_eq!(
            a.observe(t0 + MIN_WINDOW, RTT, Signal::Answered),
            Some(8),
            "not reached: the limit stays"
        );
        // A window of 200 ms answers moves the baseline from 50 to 110 ms, and the next
        // window lasts that long.
        window(&mut a, MIN_WINDOW, 4, Duration::from_millis(200), 0, false);
        let len = a.window().as_secs_f64();
        assert!((0.1099..0.1101).contains(&len), "{len}");
        let start = a.window_start;
        assert_eq!(
            a.observe(start + Duration::from_millis(100), RTT, Signal::Answered),
            None
        );
        assert!(a
            .observe(start + a.window(), RTT, Signal::Answered)
            .is_some());
    }

    #[test]
    fn slow_start_doubles_up_to_max_and_ends_on_a_rising_round_trip() {
        let t0 = Instant::now();
        let mut a = Aimd::new(128, 1024, t0);
        a.past = Some((0.05, 0.0));
        assert_eq!(busy(&mut a, 100), 256);
        assert!(a.experiment.is_none(), "slow start is not judged");
        assert_eq!(busy(&mut a, 100), 512);
        assert_eq!(busy(&mut a, 100), 1024);
        assert_eq!(busy(&mut a, 100), 1024, "never past max");
        assert!(a.slow_start);
        // A mean round trip up to 1.5 times the baseline is no congestion in slow start...
        a.limit = 100.0;
        a.past = Some((0.05, 0.0));
        let rtt = Duration::from_secs_f64(0.074);
        assert_eq!(window(&mut a, MIN_WINDOW, 50, rtt, 0, true), 200);
        // ... beyond it, the limit is cut to 90% and slow start ends.
        a.past = Some((0.05, 0.0));
        let rtt = Duration::from_secs_f64(0.076);
        assert_eq!(window(&mut a, MIN_WINDOW, 50, rtt, 0, true), 180);
        assert!(!a.slow_start);
    }

    #[test]
    fn past_slow_start_congestion_is_a_rise_beyond_the_deviation_or_five_percent() {
        let t0 = Instant::now();
        // A steady baseline: 5% above it is the threshold.
        for (mean, limit) in [(0.0524, 112), (0.0526, 90)] {
            let mut a = steady(100, 1024, t0);
            let rtt = Duration::from_secs_f64(mean);
            assert_eq!(
                window(&mut a, MIN_WINDOW, 50, rtt, 0, true),
                limit,
                "{mean}"
            );
        }
        // A noisy one: 2.5 deviations above it.
        for (mean, limit) in [(0.0595, 112), (0.0605, 90)] {
            let mut a = steady(100, 1024, t0);
            a.past = Some((0.05, 0.004));
            let rtt = Duration::from_secs_f64(mean);
            assert_eq!(
                window(&mut a, MIN_WINDOW, 50, rtt, 0, true),
                limit,
                "{mean}"
            );
        }
    }

    #[test]
    fn a_raise_that_pays_is_followed_by_the_next_and_one_that_does_not_is_taken_back() {
        let t0 = Instant::now();
        let mut a = steady(64, 1024, t0);
        // 64 answers in 50 ms: 1,280/s. An eighth more slots.
        assert_eq!(busy(&mut a, 64), 72);
        let experiment = a.experiment.expect("a raise past slow start is judged");
        assert_eq!((experiment.from, experiment.settling), (64.0, true));
        assert!(
            (experiment.rate - 1280.0).abs() < 1e-6,
            "{}",
            experiment.rate
        );
        // The first window after it still carries the old limit's answers: not judged.
        assert_eq!(busy(&mut a, 90), 72);
        assert!(a.experiment.is_some_and(|p| !p.settling));
        // 66 answers: 3.1% more for 12.5% more slots, a quarter of the raise's share: it pays,
        // and the next raise follows.
        assert_eq!(busy(&mut a, 66), 81);
        assert_eq!(a.experiment.map(|p| p.from), Some(72.0));
        busy(&mut a, 66);
        // No more answers for the raise: taken back, and probing turns downwards after a hold.
        assert_eq!(busy(&mut a, 66), 72);
        assert!(a.downhill);
        assert_eq!(a.hold, HOLD_WINDOWS);
        assert!(a.experiment.is_none());
        for _ in 0..HOLD_WINDOWS {
            assert_eq!(busy(&mut a, 66), 72, "held");
        }
        assert_eq!(busy(&mut a, 66), 64, "a tenth down");
        assert_eq!(
            a.experiment.map(|p| (p.from, p.settling)),
            Some((72.0, true))
        );
    }

    #[test]
    fn a_raise_pays_from_payoff_of_its_share_on() {
        let t0 = Instant::now();
        let judge = |rate: f64| {
            let mut a = steady(200, 1024, t0);
            a.judge(
                Experiment {
                    from: 100.0,
                    rate: 1000.0,
                    settling: false,
                },
                rate,
            );
            a
        };
        // Twice the slots: 15% more answers is the bound.
        let rate = 1000.0 * (1.0 + PAYOFF) + 0.01;
        let paid = judge(rate);
        assert_eq!(paid.limit, 225.0, "the next raise: an eighth more");
        assert!(!paid.downhill && paid.hold == 0);
        assert_eq!(
            paid.experiment.map(|p| (p.from, p.rate)),
            Some((200.0, rate))
        );
        let unpaid = judge(1000.0 * (1.0 + PAYOFF) - 0.01);
        assert_eq!(unpaid.limit, 100.0);
        assert!(unpaid.downhill && unpaid.hold == HOLD_WINDOWS && unpaid.experiment.is_none());
    }

    #[test]
    fn a_cut_that_costs_is_taken_back_and_one_that_does_not_is_kept() {
        let t0 = Instant::now();
        let judge = |rate: f64| {
            let mut a = steady(90, 1024, t0);
            a.downhill = true;
            a.judge(
                Experiment {
                    from: 100.0,
                    rate: 1000.0,
                    settling: false,
                },
                rate,
            );
            a
        };
        // A tenth fewer slots: losing 1.5% of the answers or more is a cost.
        for (rate, limit) in [
            (1000.0 * (1.0 - 0.1 * PAYOFF) - 0.01, 100.0),
            (1000.0 * (1.0 - 0.1 * PAYOFF) + 0.01, 90.0),
            (1100.0, 90.0),
        ] {
            let a = judge(rate);
            assert_eq!(a.limit, limit, "{rate}");
            assert!(!a.downhill, "either way the probing turns upwards");
            assert_eq!(a.hold, HOLD_WINDOWS);
        }
    }

    #[test]
    fn steps_go_unjudged_below_min_judged_slots_and_stop_at_the_ends() {
        let t0 = Instant::now();
        let mut a = steady(16, 1024, t0);
        a.step(100.0);
        assert_eq!(a.limit, 18.0, "an eighth, at least one");
        assert!(a.experiment.is_none(), "too few slots to weigh");
        let mut a = steady(4, 1024, t0);
        a.step(100.0);
        assert_eq!(a.limit, 5.0);
        let mut a = steady(32, 1024, t0);
        a.step(100.0);
        assert_eq!(a.limit, 36.0);
        assert!(a.experiment.is_some());
        // Downhill at 1, uphill at max: nothing to experiment, and the direction turns.
        let mut a = steady(1, 1024, t0);
        a.downhill = true;
        a.step(100.0);
        assert_eq!(a.limit, 1.0);
        assert!(!a.downhill && a.experiment.is_none());
        let mut a = steady(1024, 1024, t0);
        a.step(100.0);
        assert_eq!(a.limit, 1024.0);
        assert!(a.experiment.is_none());
        let mut a = steady(1000, 1024, t0);
        a.step(100.0);
        assert_eq!(a.limit, 1024.0, "capped at max");
        let mut a = steady(100, 1024, t0);
        a.downhill = true;
        a.step(100.0);
        assert_eq!(a.limit, 90.0);
        assert!(a.downhill);
    }

    #[test]
    fn a_window_that_does_not_reach_the_limit_judges_nothing_and_steps_nowhere() {
        let t0 = Instant::now();
        let mut a = steady(64, 1024, t0);
        assert_eq!(busy(&mut a, 64), 72);
        assert_eq!(window(&mut a, MIN_WINDOW, 64, RTT, 0, false), 72);
        assert!(a.experiment.is_none(), "the raise stays, unjudged");
        assert_eq!(window(&mut a, MIN_WINDOW, 64, RTT, 0, false), 72);
        assert_eq!(busy(&mut a, 64), 81, "the next reached window steps");
    }

    #[test]
    fn too_few_answers_keep_a_raise_and_take_a_cut_back() {
        let t0 = Instant::now();
        let mut a = steady(64, 1024, t0);
        busy(&mut a, 64);
        busy(&mut a, 64);
        assert_eq!(busy(&mut a, MIN_JUDGED - 1), 72);
        assert!(a.experiment.is_none() && !a.downhill);
        let mut a = steady(64, 1024, t0);
        a.downhill = true;
        assert_eq!(busy(&mut a, 64), 57);
        busy(&mut a, 64);
        assert_eq!(busy(&mut a, MIN_JUDGED - 1), 64, "the cut taken back");
        // Exactly MIN_JUDGED answers are weighed: the same rate as before the cut is no cost.
        let mut a = steady(64, 1024, t0);
        a.downhill = true;
        busy(&mut a, MIN_JUDGED);
        busy(&mut a, MIN_JUDGED);
        assert_eq!(busy(&mut a, MIN_JUDGED), 57, "kept");
    }

    #[test]
    fn push_back_cuts_by_half_its_share_and_ends_any_experiment() {
        let t0 = Instant::now();
        let mut a = steady(200, 1024, t0);
        assert_eq!(window(&mut a, MIN_WINDOW, 40, RTT, 10, false), 175);
        let mut a = steady(200, 1024, t0);
        assert_eq!(window(&mut a, MIN_WINDOW, 40, RTT, 40, false), 100);
        let mut a = steady(1, 1024, t0);
        assert_eq!(
            window(&mut a, MIN_WINDOW, 4, RTT, 4, false),
            1,
            "never below 1"
        );
        // In slow start, at an experiment or downhill: push-back ends them all.
        let mut a = Aimd::new(128, 1024, t0);
        assert_eq!(window(&mut a, MIN_WINDOW, 40, RTT, 1, false), 126);
        assert!(!a.slow_start);
        let mut a = steady(64, 1024, t0);
        a.downhill = true;
        a.hold = 1;
        busy(&mut a, 64);
        window(&mut a, MIN_WINDOW, 64, RTT, 1, true);
        assert!(a.experiment.is_none() && !a.downhill && a.hold == 0);
    }

    #[test]
    fn transport_failures_429_and_503_are_backpressure() {
        assert_eq!(Signal::of_status(None), Signal::Backpressure);
        assert_eq!(Signal::of_status(Some(429)), Signal::Backpressure);
        assert_eq!(Signal::of_status(Some(503)), Signal::Backpressure);
        for s in [200, 400, 401, 500, 502] {
            assert_eq!(Signal::of_status(Some(s)), Signal::Answered);
        }
    }
}
