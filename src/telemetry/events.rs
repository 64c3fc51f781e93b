//! Typed events: one struct per thing that moves a [`WorkerCounters`] counter. Its `emit` bumps
//! exactly the counters that thing concerns, with fixed labels, and logs what the moment is worth
//! logging; a call site says what happened in one line and cannot bump the wrong counter.

use super::counters::WorkerCounters;
use crate::contract::{ErrorClass, Status};
use std::fmt::Display;
use std::sync::atomic::Ordering::{AcqRel, Relaxed};
use std::time::Duration;

// ---- Jobs ----

/// A job was taken from the jobs topic and started: consumed, and in flight until [`JobEnded`].
#[derive(Debug, Clone, Copy)]
pub struct JobStarted;

impl JobStarted {
    /// Counts the job consumed and in flight.
    pub fn emit(self, counters: &WorkerCounters) {
        counters.consumed.fetch_add(1, Relaxed);
        counters.in_flight.fetch_add(1, AcqRel);
    }
}

/// A job's task ended, however (published, abandoned, fenced or panicked).
#[derive(Debug, Clone, Copy)]
pub struct JobEnded;

impl JobEnded {
    /// Counts the job out of in flight.
    pub fn emit(self, counters: &WorkerCounters) {
        counters.in_flight.fetch_sub(1, AcqRel);
    }
}

/// A job was verified against the APIs (not answered from the idempotency cache).
#[derive(Debug, Clone, Copy)]
pub struct JobVerified<'a> {
    /// The job.
    pub job_id: &'a str,
    /// HTTP requests sent for it (its result's `attempts`).
    pub requests: u32,
    /// Of which retries.
    pub retries: u32,
    /// Time spent waiting for HTTP answers (told to an observer, if one is set).
    pub http_time: Duration,
}

impl JobVerified<'_> {
    /// Counts the requests and retries; tells the HTTP time to an observer, if one is set.
    pub fn emit(self, counters: &WorkerCounters) {
        counters
            .http_requests
            .fetch_add(u64::from(self.requests), Relaxed);
        counters.retries.fetch_add(u64::from(self.retries), Relaxed);
        counters.http_time(self.job_id, self.http_time);
    }
}

/// A redelivered job was answered from the idempotency cache.
#[derive(Debug, Clone, Copy)]
pub struct IdempotencyHit;

impl IdempotencyHit {
    /// Counts a duplicate.
    pub fn emit(self, counters: &WorkerCounters) {
        counters.duplicates.fetch_add(1, Relaxed);
    }
}

/// The shutdown grace ran out with jobs still in flight; they are let go (each counted by
/// [`JobLetGo`]).
#[derive(Debug, Clone, Copy)]
pub struct ShutdownGraceExpired {
    /// Jobs let go.
    pub let_go: u64,
}

impl ShutdownGraceExpired {
    /// Warns.
    pub fn emit(self) {
        tracing::warn!(
            let_go = self.let_go,
            "shutdown grace ran out; jobs whose code was presented end interrupted, the others will be redelivered"
        );
    }
}

/// A revoke's grace ran out and jobs of the revoked partitions were still unfinished when the
/// partitions were released (each let go job is counted by [`JobLetGo`]).
#[derive(Debug, Clone, Copy)]
pub struct RevokeGraceExpired<'a> {
    /// Jobs handed over unfinished.
    pub abandoned: u64,
    /// The revoked partitions.
    pub partitions: &'a [i32],
}

impl RevokeGraceExpired<'_> {
    /// Warns.
    pub fn emit(self) {
        tracing::warn!(
            abandoned = self.abandoned,
            partitions = ?self.partitions,
            "revoke grace ran out; the next owner redoes the jobs whose code was never presented"
        );
    }
}

/// A job was let go (a revoke or shutdown whose grace ran out): handed over untouched when its
/// code was never presented, else concluded `interrupted` by this worker.
#[derive(Debug, Clone, Copy)]
pub struct JobLetGo<'a> {
    /// The job, when it could be read.
    pub job_id: Option<&'a str>,
    /// True when its code was presented (it ends `interrupted`).
    pub interrupted: bool,
    /// Why: `revoke` or `shutdown`.
    pub reason: &'static str,
}

impl JobLetGo<'_> {
    /// Counts the job as abandoned or interrupted; warns about an interrupted one.
    pub fn emit(self, counters: &WorkerCounters) {
        if self.interrupted {
            counters.interrupted.fetch_add(1, Relaxed);
            tracing::warn!(
                job_id = self.job_id.unwrap_or("<unreadable>"),
                reason = self.reason,
                "job let go after its code was presented; it ends interrupted"
            );
        } else {
            counters.abandoned.fetch_add(1, Relaxed);
        }
    }
}

// ---- Outputs ----

/// A job's result was acknowledged by the broker.
#[derive(Debug, Clone, Copy)]
pub struct ResultPublished {
    /// Its status.
    pub status: Status,
    /// Its error class, if any.
    pub class: Option<ErrorClass>,
}

impl ResultPublished {
    /// Counts the result, by status and class.
    pub fn emit(self, counters: &WorkerCounters) {
        counters.result(self.status, self.class);
    }
}

/// A job's dead letter was acknowledged by the broker.
#[derive(Debug, Clone, Copy)]
pub struct DeadLetterPublished {
    /// The dead-lettered error's class.
    pub class: ErrorClass,
}

impl DeadLetterPublished {
    /// Counts the dead letter, by class.
    pub fn emit(self, counters: &WorkerCounters) {
        counters.dead_letter(self.class);
    }
}

/// Producing a job's result or dead letter failed; it is retried after `retry_in`.
#[derive(Clone, Copy)]
pub struct ProduceFailed<'a> {
    /// The config key of the topic that failed (`topics.results`, `topics.dead_letter`).
    pub key: &'static str,
    /// What failed.
    pub error: &'a dyn Display,
    /// The wait before the next attempt.
    pub retry_in: Duration,
}

impl ProduceFailed<'_> {
    /// Counts a produce error, marks the producer down and the topic unusable (`/readyz` 503
    /// with the reason), and logs the error.
    pub fn emit(self, counters: &WorkerCounters) {
        counters.produce_errors.fetch_add(1, Relaxed);
        counters.producer_ok.store(false, Relaxed);
        counters.set_unready("publish", self.key, self.error.to_string());
        tracing::error!(error = %self.error, retry_in = ?self.retry_in, "cannot publish the result; retrying");
    }
}

/// A job's outputs were produced and acknowledged.
#[derive(Debug, Clone, Copy)]
pub struct ProduceSucceeded;

impl ProduceSucceeded {
    /// Marks the producer up.
    pub fn emit(self, counters: &WorkerCounters) {
        counters.producer_ok.store(true, Relaxed);
    }
}

/// A transaction (a batch of outputs and their offsets) committed.
#[derive(Debug, Clone, Copy)]
pub struct TransactionCommitted;

impl TransactionCommitted {
    /// Marks the producer up and counts an offset commit.
    pub fn emit(self, counters: &WorkerCounters) {
        counters.producer_ok.store(true, Relaxed);
        counters.commits.fetch_add(1, Relaxed);
    }
}

/// A transaction failed; it is aborted and the batch retried after `retry_in`.
#[derive(Clone, Copy)]
pub struct TransactionFailed<'a> {
    /// What failed.
    pub error: &'a dyn Display,
    /// The wait before the next attempt.
    pub retry_in: Duration,
}

impl TransactionFailed<'_> {
    /// Marks the producer down and warns.
    pub fn emit(self, counters: &WorkerCounters) {
        counters.producer_ok.store(false, Relaxed);
        tracing::warn!(error = %self.error, retry_in = ?self.retry_in, "transaction failed; aborting and retrying the batch");
    }
}

/// The transactional producer was fenced or failed for good.
#[derive(Clone, Copy)]
pub struct TransactionFenced<'a> {
    /// What failed.
    pub error: &'a dyn Display,
}

impl TransactionFenced<'_> {
    /// Logs the error and marks the producer down.
    pub fn emit(self, counters: &WorkerCounters) {
        tracing::error!(error = %self.error, "transactional producer fenced or failed");
        counters.producer_ok.store(false, Relaxed);
    }
}

// ---- Kafka ----

/// An offset commit succeeded.
#[derive(Debug, Clone, Copy)]
pub struct OffsetsCommitted;

impl OffsetsCommitted {
    /// Counts the commit.
    pub fn emit(self, counters: &WorkerCounters) {
        counters.commits.fetch_add(1, Relaxed);
    }
}

/// Partitions were assigned (and the idempotency cache warmed for them).
#[derive(Debug, Clone, Copy)]
pub struct PartitionsAssigned;

impl PartitionsAssigned {
    /// Marks the worker assigned.
    pub fn emit(self, counters: &WorkerCounters) {
        counters.assigned.store(true, Relaxed);
    }
}

/// The rebalance callback is revoking jobs partitions (lost ones included).
#[derive(Debug, Clone, Copy)]
pub struct PartitionsRevoked;

impl PartitionsRevoked {
    /// Counts the revoke.
    pub fn emit(self, counters: &WorkerCounters) {
        counters.revokes.fetch_add(1, Relaxed);
    }
}

/// A revoke took every partition this instance had.
#[derive(Debug, Clone, Copy)]
pub struct AllPartitionsRevoked;

impl AllPartitionsRevoked {
    /// Marks the worker unassigned.
    pub fn emit(self, counters: &WorkerCounters) {
        counters.assigned.store(false, Relaxed);
    }
}

/// The jobs partitions were paused (the in-flight window stayed full, or the breaker opened).
#[derive(Debug, Clone, Copy)]
pub struct PartitionsPaused {
    /// How many partitions.
    pub count: u64,
}

impl PartitionsPaused {
    /// Sets the paused gauge and flag, and counts the pause.
    pub fn emit(self, counters: &WorkerCounters) {
        counters.pauses.fetch_add(1, Relaxed);
        counters.paused_partitions.store(self.count, Relaxed);
        counters.paused.store(true, Relaxed);
    }
}

/// The paused partitions were resumed.
#[derive(Debug, Clone, Copy)]
pub struct PartitionsResumed;

impl PartitionsResumed {
    /// Clears the paused flag and gauge.
    pub fn emit(self, counters: &WorkerCounters) {
        counters.paused.store(false, Relaxed);
        counters.paused_partitions.store(0, Relaxed);
    }
}

/// Start-up checks passed: the brokers answer, every topic exists, the producer is ready.
#[derive(Debug, Clone, Copy)]
pub struct PreflightPassed;

impl PreflightPassed {
    /// Marks the brokers and the producer up.
    pub fn emit(self, counters: &WorkerCounters) {
        counters.producer_ok.store(true, Relaxed);
        counters.brokers_ok.store(true, Relaxed);
    }
}

/// While start-up waits for topics, the brokers did not answer a metadata request.
#[derive(Clone, Copy)]
pub struct BrokersUnreachable<'a> {
    /// Why.
    pub error: &'a dyn Display,
}

impl BrokersUnreachable<'_> {
    /// Marks the brokers down and warns.
    pub fn emit(self, counters: &WorkerCounters) {
        counters.brokers_ok.store(false, Relaxed);
        tracing::warn!(error = %self.error, "the Kafka brokers do not answer while waiting for topics");
    }
}

/// While start-up waits for topics, the brokers answered a metadata request.
#[derive(Debug, Clone, Copy)]
pub struct BrokersAnswered;

impl BrokersAnswered {
    /// Marks the brokers up.
    pub fn emit(self, counters: &WorkerCounters) {
        counters.brokers_ok.store(true, Relaxed);
    }
}

/// The periodic readiness check asked the brokers for metadata.
#[derive(Debug, Clone, Copy)]
pub struct BrokersChecked {
    /// True when every topic's request was answered.
    pub answered: bool,
}

impl BrokersChecked {
    /// Sets whether the brokers answer; logs when that changes.
    pub fn emit(self, counters: &WorkerCounters) {
        let ok = self.answered;
        if counters.brokers_ok.swap(ok, Relaxed) != ok {
            if ok {
                tracing::info!("the Kafka brokers answer again");
            } else {
                tracing::error!("the Kafka brokers do not answer; not ready");
            }
        }
    }
}

// ---- Circuit breaker ----

/// The circuit breaker opened.
#[derive(Clone, Copy)]
pub struct BreakerTripped<'a> {
    /// The trigger's label (one of [`crate::config::BreakerTrigger::label`]).
    pub trigger: &'static str,
    /// Why, e.g. `20 consecutive credentials_rejected results`.
    pub detail: &'a str,
    /// How often it lets one probe job through while open.
    pub probe_interval: &'a dyn Display,
}

impl BreakerTripped<'_> {
    /// Counts the trip by trigger, marks the breaker open with its reason, and logs it.
    pub fn emit(self, counters: &WorkerCounters) {
        counters.breaker_tripped(self.trigger, self.detail);
        tracing::error!(
            reason = self.trigger,
            "circuit breaker open: {}; probing one job every {}",
            self.detail,
            self.probe_interval
        );
    }
}

/// The circuit breaker closed: its probe job succeeded.
#[derive(Debug, Clone, Copy)]
pub struct BreakerClosed {
    /// The label of the trigger that had opened it.
    pub trigger: &'static str,
}

impl BreakerClosed {
    /// Marks the breaker closed and logs it.
    pub fn emit(self, counters: &WorkerCounters) {
        counters.breaker_closed();
        tracing::info!(
            reason = self.trigger,
            "circuit breaker closed: the probe job succeeded; consuming again"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicBool, AtomicU64};

    /// Every figure the counters export, flattened: scalars by field name, maps by key.
    fn snapshot(c: &WorkerCounters) -> BTreeMap<String, u64> {
        let n = |a: &AtomicU64| a.load(Relaxed);
        let b = |a: &AtomicBool| u64::from(a.load(Relaxed));
        let mut s: BTreeMap<String, u64> = [
            ("consumed", n(&c.consumed)),
            ("results", n(&c.results)),
            ("dead_letters", n(&c.dead_letters)),
            ("duplicates", n(&c.duplicates)),
            ("abandoned", n(&c.abandoned)),
            ("interrupted", n(&c.interrupted)),
            ("http_requests", n(&c.http_requests)),
            ("retries", n(&c.retries)),
            ("produce_errors", n(&c.produce_errors)),
            ("commits", n(&c.commits)),
            ("in_flight", n(&c.in_flight)),
            ("codes_at_risk", n(&c.codes_at_risk)),
            ("paused", b(&c.paused)),
            ("assigned", b(&c.assigned)),
            ("brokers_ok", b(&c.brokers_ok)),
            ("producer_ok", b(&c.producer_ok)),
            ("paused_partitions", n(&c.paused_partitions)),
            ("pauses", n(&c.pauses)),
            ("revokes", n(&c.revokes)),
            ("breaker_open", b(&c.breaker_open)),
            ("breaker_reason", u64::from(c.breaker_reason().is_some())),
            ("unready", c.unready_reasons().len() as u64),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        for ((status, class), v) in c.outcomes() {
            let class = class.map_or("none", ErrorClass::as_str);
            s.insert(format!("results{{{},{class}}}", status.as_str()), v);
        }
        for (class, v) in c.dead_letters_by_class() {
            s.insert(format!("dead_letters{{{}}}", class.as_str()), v);
        }
        for (trigger, v) in c.breaker_trips() {
            s.insert(format!("breaker_trips{{{trigger}}}"), v);
        }
        s
    }

    /// Emits through `emit` and returns what moved: (name, before, after).
    fn moved(c: &WorkerCounters, emit: impl FnOnce(&WorkerCounters)) -> Vec<(String, u64, u64)> {
        let before = snapshot(c);
        emit(c);
        let after = snapshot(c);
        after
            .iter()
            .filter_map(|(k, &v)| {
                let was = before.get(k).copied().unwrap_or(0);
                (was != v).then(|| (k.clone(), was, v))
            })
            .collect()
    }

    fn m(name: &str, before: u64, after: u64) -> (String, u64, u64) {
        (name.to_owned(), before, after)
    }

    #[test]
    fn job_events_move_the_job_counters() {
        let c = WorkerCounters::default();
        let started = moved(&c, |c| JobStarted.emit(c));
        assert_eq!(started, [m("consumed", 0, 1), m("in_flight", 0, 1)]);
        let verified = JobVerified {
            job_id: "j1",
            requests: 3,
            retries: 1,
            http_time: Duration::from_millis(40),
        };
        let v = moved(&c, |c| verified.emit(c));
        assert_eq!(v, [m("http_requests", 0, 3), m("retries", 0, 1)]);
        assert_eq!(
            moved(&c, |c| IdempotencyHit.emit(c)),
            [m("duplicates", 0, 1)]
        );
        assert_eq!(moved(&c, |c| JobEnded.emit(c)), [m("in_flight", 1, 0)]);
        let shutdown = ShutdownGraceExpired { let_go: 2 };
        assert_eq!(moved(&c, |_| shutdown.emit()), [], "each job counts itself");
        let revoke = RevokeGraceExpired {
            abandoned: 3,
            partitions: &[0, 1],
        };
        assert_eq!(moved(&c, |_| revoke.emit()), []);
        let untouched = JobLetGo {
            job_id: None,
            interrupted: false,
            reason: "revoke",
        };
        assert_eq!(moved(&c, |c| untouched.emit(c)), [m("abandoned", 0, 1)]);
        let presented = JobLetGo {
            job_id: Some("j-1"),
            interrupted: true,
            reason: "shutdown",
        };
        assert_eq!(moved(&c, |c| presented.emit(c)), [m("interrupted", 0, 1)]);
    }

    #[test]
    fn http_time_goes_to_the_observer_once_one_is_set() {
        let c = WorkerCounters::default();
        let verified = |job_id| JobVerified {
            job_id,
            requests: 2,
            retries: 0,
            http_time: Duration::from_millis(25),
        };
        verified("before").emit(&c);
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = seen.clone();
        c.observe_http_times(move |job_id, took| {
            sink.lock().unwrap().push((job_id.to_owned(), took));
        });
        let v = moved(&c, |c| verified("after").emit(c));
        assert_eq!(v, [m("http_requests", 2, 4)]);
        assert_eq!(
            *seen.lock().unwrap(),
            [("after".to_owned(), Duration::from_millis(25))]
        );
    }

    #[test]
    fn output_events_count_by_status_and_class_and_track_the_producer() {
        let c = WorkerCounters::default();
        let result = ResultPublished {
            status: Status::Failed,
            class: Some(ErrorClass::CodeRejected),
        };
        assert_eq!(
            moved(&c, |c| result.emit(c)),
            [m("results", 0, 1), m("results{failed,code_rejected}", 0, 1)]
        );
        let verified = ResultPublished {
            status: Status::Verified,
            class: None,
        };
        assert_eq!(
            moved(&c, |c| verified.emit(c)),
            [m("results", 1, 2), m("results{verified,none}", 0, 1)]
        );
        let dead = DeadLetterPublished {
            class: ErrorClass::InvalidJob,
        };
        assert_eq!(
            moved(&c, |c| dead.emit(c)),
            [
                m("dead_letters", 0, 1),
                m("dead_letters{invalid_job}", 0, 1)
            ]
        );
        assert_eq!(
            moved(&c, |c| ProduceSucceeded.emit(c)),
            [m("producer_ok", 0, 1)]
        );
        let failed = ProduceFailed {
            key: "topics.results",
            error: &"denied",
            retry_in: Duration::from_millis(100),
        };
        assert_eq!(
            moved(&c, |c| failed.emit(c)),
            [
                m("produce_errors", 0, 1),
                m("producer_ok", 1, 0),
                m("unready", 0, 1)
            ]
        );
        assert_eq!(c.unready_reasons(), ["denied"]);
    }

    #[test]
    fn transaction_events_track_the_producer_and_count_commits() {
        let c = WorkerCounters::default();
        assert_eq!(
            moved(&c, |c| TransactionCommitted.emit(c)),
            [m("commits", 0, 1), m("producer_ok", 0, 1)]
        );
        let failed = TransactionFailed {
            error: &"timed out",
            retry_in: Duration::from_millis(100),
        };
        assert_eq!(moved(&c, |c| failed.emit(c)), [m("producer_ok", 1, 0)]);
        TransactionCommitted.emit(&c);
        let fenced = TransactionFenced { error: &"fenced" };
        assert_eq!(moved(&c, |c| fenced.emit(c)), [m("producer_ok", 1, 0)]);
    }

    #[test]
    fn kafka_events_move_the_assignment_pause_and_broker_state() {
        let c = WorkerCounters::default();
        assert_eq!(
            moved(&c, |c| OffsetsCommitted.emit(c)),
            [m("commits", 0, 1)]
        );
        assert_eq!(
            moved(&c, |c| PartitionsAssigned.emit(c)),
            [m("assigned", 0, 1)]
        );
        assert_eq!(
            moved(&c, |c| PartitionsRevoked.emit(c)),
            [m("revokes", 0, 1)]
        );
        assert_eq!(
            moved(&c, |c| AllPartitionsRevoked.emit(c)),
            [m("assigned", 1, 0)]
        );
        let paused = PartitionsPaused { count: 4 };
        assert_eq!(
            moved(&c, |c| paused.emit(c)),
            [
                m("paused", 0, 1),
                m("paused_partitions", 0, 4),
                m("pauses", 0, 1)
            ]
        );
        assert_eq!(
            moved(&c, |c| PartitionsResumed.emit(c)),
            [m("paused", 1, 0), m("paused_partitions", 4, 0)]
        );
        assert_eq!(
            moved(&c, |c| PreflightPassed.emit(c)),
            [m("brokers_ok", 0, 1), m("producer_ok", 0, 1)]
        );
        let unreachable = BrokersUnreachable {
            error: &"timed out",
        };
        assert_eq!(moved(&c, |c| unreachable.emit(c)), [m("brokers_ok", 1, 0)]);
        assert_eq!(
            moved(&c, |c| BrokersAnswered.emit(c)),
            [m("brokers_ok", 0, 1)]
        );
        let checked = |answered| BrokersChecked { answered };
        assert_eq!(moved(&c, |c| checked(true).emit(c)), []);
        assert_eq!(
            moved(&c, |c| checked(false).emit(c)),
            [m("brokers_ok", 1, 0)]
        );
        assert_eq!(moved(&c, |c| checked(false).emit(c)), []);
    }

    #[test]
    fn breaker_events_count_trips_by_trigger_and_keep_the_reason() {
        let c = WorkerCounters::default();
        let tripped = BreakerTripped {
            trigger: "dead_letter_ratio",
            detail: "6 of the last 10 jobs were dead-lettered",
            probe_interval: &"30s",
        };
        assert_eq!(
            moved(&c, |c| tripped.emit(c)),
            [
                m("breaker_open", 0, 1),
                m("breaker_reason", 0, 1),
                m("breaker_trips{dead_letter_ratio}", 0, 1)
            ]
        );
        assert_eq!(
            c.breaker_reason().as_deref(),
            Some("6 of the last 10 jobs were dead-lettered")
        );
        let closed = BreakerClosed {
            trigger: "dead_letter_ratio",
        };
        assert_eq!(
            moved(&c, |c| closed.emit(c)),
            [m("breaker_open", 1, 0), m("breaker_reason", 1, 0)]
        );
    }
}
