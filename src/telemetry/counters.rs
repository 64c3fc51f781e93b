//! Counters the worker keeps while it runs: what `demo` summarises, `/metrics` exports and
//! `/readyz` reads.

use crate::config::BreakerTrigger;
use crate::contract::{ErrorClass, Status};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// The circuit breaker's triggers, as the `reason` label of `silentauth_breaker_trips_total`
/// Live counters, shared by every task of a run. Read them anywhere; move them only through
/// the typed events of [`super::events`].
#[derive(Debug, Default)]
pub struct WorkerCounters {
    /// Jobs taken from the jobs topic.
    pub consumed: AtomicU64,
    /// Results published.
    pub results: AtomicU64,
    /// Dead letters published.
    pub dead_letters: AtomicU64,
    /// Results republished from the idempotency cache.
    pub duplicates: AtomicU64,
    /// Jobs let go on a revoke or at shutdown before their code was presented (the next owner
    /// redoes them).
    pub abandoned: AtomicU64,
    /// Jobs let go on a revoke or at shutdown after their code was presented: concluded
    /// `interrupted` by this worker.
    pub interrupted: AtomicU64,
    /// HTTP requests sent.
    pub http_requests: AtomicU64,
    /// HTTP retries.
    pub retries: AtomicU64,
    /// Failed produce attempts (retried).
    pub produce_errors: AtomicU64,
    /// Offset commits that succeeded.
    pub commits: AtomicU64,
    /// Jobs in flight now.
    pub in_flight: AtomicU64,
    /// Jobs whose single-use code is spent and whose result is not acknowledged yet: what a
    /// crash now would cost (shared with each job's `SpentCode`).
    pub codes_at_risk: Arc<AtomicU64>,
    /// The bytes the idempotency cache counts for the results it holds (shared with the cache).
    pub idempotency_cache_bytes: Arc<AtomicU64>,
    /// True while the partitions are paused (the in-flight window stayed full, or the circuit
    /// breaker is open).
    pub paused: AtomicBool,
    /// True while partitions are assigned.
    pub assigned: AtomicBool,
    /// False while the brokers do not answer the periodic readiness check.
    pub brokers_ok: AtomicBool,
    /// False while results cannot be produced.
    pub producer_ok: AtomicBool,
    /// Partitions paused now (0 unless `paused`).
    pub paused_partitions: AtomicU64,
    /// Times the jobs partitions were paused (the in-flight window stayed full past the pause
    /// threshold, or the breaker opened).
    pub pauses: AtomicU64,
    /// Revokes served by the rebalance callback (partitions taken away, lost ones included).
    pub revokes: AtomicU64,
    /// True while the circuit breaker is open (consumption paused, `/readyz` 503).
    pub breaker_open: AtomicBool,
    /// Why the circuit breaker is open, while it is.
    breaker_reason: Mutex<Option<String>>,
    /// Circuit breaker trips by trigger (a label of [`BreakerTrigger`]).
    breaker_trips: Mutex<BTreeMap<&'static str, u64>>,
    /// Why the worker cannot do its job although the brokers answer, by (source, key): e.g.
    /// (`"readiness"`, `"topics.results"`) while metadata says that topic does not exist, or
    /// (`"publish"`, `"topics.dead_letter"`) while dead letters fail to publish.
    unready: Mutex<BTreeMap<(&'static str, &'static str), String>>,
    /// Consumer lag per jobs partition, from librdkafka's statistics.
    lag: Mutex<BTreeMap<i32, i64>>,
    /// Where the admin listener bound (set once it listens).
    admin_addr: OnceLock<SocketAddr>,
    by_outcome: Mutex<BTreeMap<(Status, Option<ErrorClass>), u64>>,
    dead_letters_by_class: Mutex<BTreeMap<ErrorClass, u64>>,
    /// Told each verified job's HTTP time, once set by [`WorkerCounters::observe_http_times`]
    /// (Result v1 does not carry it). Unset, a job pays one atomic load for it.
    http_time_observer: OnceLock<HttpTimeObserver>,
}

impl WorkerCounters {
    /// Counts one published result.
    pub(super) fn result(&self, status: Status, class: Option<ErrorClass>) {
        self.results.fetch_add(1, Ordering::Relaxed);
        *self
            .by_outcome
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((status, class))
            .or_default() += 1;
    }

    /// Counts one published dead letter.
    pub(super) fn dead_letter(&self, class: ErrorClass) {
        self.dead_letters.fetch_add(1, Ordering::Relaxed);
        *self
            .dead_letters_by_class
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(class)
            .or_default() += 1;
    }

    /// Results by (status, class).
    pub fn outcomes(&self) -> BTreeMap<(Status, Option<ErrorClass>), u64> {
        self.by_outcome
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Dead letters by class.
    pub fn dead_letters_by_class(&self) -> BTreeMap<ErrorClass, u64> {
        self.dead_letters_by_class
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Reads a counter.
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }

    /// True when the worker can take and publish jobs: `/readyz` answers 200.
    pub fn ready(&self) -> bool {
        self.not_ready_reason().is_none()
    }

    /// Why the worker cannot take and publish jobs (what `/readyz` answers with its 503), or
    /// `None` when it can. The one place readiness is decided. Topics that cannot be used come
    /// before the assignment, because a worker waiting for a topic has none.
    pub fn not_ready_reason(&self) -> Option<String> {
        if !self.brokers_ok.load(Ordering::Relaxed) {
            return Some("the Kafka brokers do not answer".to_owned());
        }
        let reasons = self.unready_reasons();
        if !reasons.is_empty() {
            return Some(reasons.join("; "));
        }
        if !self.assigned.load(Ordering::Relaxed) {
            return Some("no partition assigned".to_owned());
        }
        if self.breaker_open.load(Ordering::Relaxed) {
            let reason = self.breaker_reason().unwrap_or_default();
            return Some(format!("circuit breaker open: {reason}"));
        }
        if !self.producer_ok.load(Ordering::Relaxed) {
            return Some("results cannot be produced".to_owned());
        }
        None
    }

    /// Records why the worker is not ready: `source` (`"preflight"`, `"readiness"`, `"publish"`)
    /// found that `key` (e.g. `"topics.results"`) cannot be used, for `reason`.
    pub fn set_unready(&self, source: &'static str, key: &'static str, reason: String) {
        self.unready
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((source, key), reason);
    }

    /// Withdraws what `source` said about `key`; true when it had said something.
    pub fn clear_unready(&self, source: &'static str, key: &'static str) -> bool {
        self.unready
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(source, key))
            .is_some()
    }

    /// Every reason recorded by [`WorkerCounters::set_unready`] and not cleared, in key order.
    pub fn unready_reasons(&self) -> Vec<String> {
        let map = self.unready.lock().unwrap_or_else(|e| e.into_inner());
        let mut entries: Vec<_> = map.iter().collect();
        entries.sort_by_key(|((source, key), _)| (*key, *source));
        entries.into_iter().map(|(_, r)| r.clone()).collect()
    }

    /// Records that the circuit breaker opened, by `trigger`, for `reason`.
    pub(super) fn breaker_tripped(&self, trigger: &'static str, reason: &str) {
        *self
            .breaker_reason
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(reason.to_owned());
        *self
            .breaker_trips
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(trigger)
            .or_default() += 1;
        self.breaker_open.store(true, Ordering::Relaxed);
    }

    /// Records that the circuit breaker closed.
    pub(super) fn breaker_closed(&self) {
        self.breaker_open.store(false, Ordering::Relaxed);
        *self
            .breaker_reason
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Why the circuit breaker is open, while it is.
    pub fn breaker_reason(&self) -> Option<String> {
        self.breaker_reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Circuit breaker trips by trigger; every trigger of [`BreakerTrigger`] is present.
    pub fn breaker_trips(&self) -> BTreeMap<&'static str, u64> {
        let mut trips: BTreeMap<&'static str, u64> =
            BreakerTrigger::ALL.iter().map(|t| (t.label(), 0)).collect();
        for (t, n) in self
            .breaker_trips
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            *trips.entry(t).or_default() += n;
        }
        trips
    }

    /// Replaces the consumer lag per partition (from the latest librdkafka statistics).
    pub fn set_lag(&self, lag: BTreeMap<i32, i64>) {
        *self.lag.lock().unwrap_or_else(|e| e.into_inner()) = lag;
    }

    /// Drops the lag of partitions this instance no longer owns.
    pub fn forget_lag(&self, partitions: &[i32]) {
        let mut lag = self.lag.lock().unwrap_or_else(|e| e.into_inner());
        for p in partitions {
            lag.remove(p);
        }
    }

    /// Consumer lag per partition, as last reported.
    pub fn lag(&self) -> BTreeMap<i32, i64> {
        self.lag.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Records where the admin listener bound; the first address wins.
    pub fn set_admin_addr(&self, addr: SocketAddr) {
        let _ = self.admin_addr.set(addr);
    }

    /// Where the admin listener bound, once it listens (tests bind `127.0.0.1:0`).
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr.get().copied()
    }

    /// Calls `observer` with each verified job's `job_id` and the time it spent waiting for
    /// HTTP answers, from now on (off by default, so it costs nothing; the first observer set
    /// stays). The worker keeps none of them: whoever measures keeps what it needs.
    pub fn observe_http_times(&self, observer: impl Fn(&str, Duration) + Send + Sync + 'static) {
        let _ = self
            .http_time_observer
            .set(HttpTimeObserver(Box::new(observer)));
    }

    /// Tells the observer, if one is set, the time `job_id` spent waiting for HTTP answers:
    /// without one this is one atomic load (no lock, no allocation).
    pub(super) fn http_time(&self, job_id: &str, took: Duration) {
        if let Some(observer) = self.http_time_observer.get() {
            (observer.0)(job_id, took);
        }
    }
}

/// Told a verified job's `job_id` and HTTP time.
type ObserveHttpTime = dyn Fn(&str, Duration) + Send + Sync;

/// What [`WorkerCounters::observe_http_times`] set.
struct HttpTimeObserver(Box<ObserveHttpTime>);

impl std::fmt::Debug for HttpTimeObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HttpTimeObserver")
    }
}
