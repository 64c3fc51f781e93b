//! The circuit breaker (`worker.breaker`): a state machine fed with every finished job's outcome
//! that decides whether the run loop may start another job. Closed, it lets everything through;
//! open, nothing, until `probe_interval` has passed; then exactly one probe job, whose outcome
//! closes it again or re-opens it for another interval.
//!
//! Two triggers open it: `consecutive` `credentials_rejected`/`permission_denied` results in a
//! row, or more than `dead_letter_ratio` of the last `window` jobs dead-lettered. Only jobs that
//! reached the API count: a duplicate (answered from the idempotency cache), an `invalid_job`, an
//! `authorize_rejected` or an `expired` job made no HTTP call and says nothing about the upstream,
//! so it neither counts toward a trigger, resets one, nor closes the breaker as a probe.
//!
//! The machine is pure: time comes in as an argument, so tests drive it with made-up instants.
//! [`Gatekeeper`] puts it behind a mutex for the worker and reports its transitions to the log,
//! the counters and `/readyz`.

use crate::config::{BreakerConfig, BreakerTrigger};
use crate::contract::{ErrorClass, Publication};
use crate::telemetry::counters::WorkerCounters;
use crate::telemetry::events::{BreakerClosed, BreakerTripped};
use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// What the breaker needs to know about one finished job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallOutcome {
    /// The result's error class (also a `login_hint_mismatch` kept for audit), or the dead
    /// letter's when there is no result; `None` for a clean verdict.
    pub class: Option<ErrorClass>,
    /// True when the job was dead-lettered.
    pub dead_lettered: bool,
    /// True when the result was republished from the idempotency cache (no HTTP call).
    pub duplicate: bool,
}

impl CallOutcome {
    /// What a job that published `publication` tells the breaker; `None` for a job the worker
    /// concluded `interrupted` itself, which is not an answer of the API.
    pub fn of(publication: &Publication) -> Option<CallOutcome> {
        let class = publication.class();
        if class == Some(ErrorClass::Interrupted) {
            return None;
        }
        Some(CallOutcome {
            class,
            dead_lettered: publication.dead_letter.is_some(),
            duplicate: publication.result().is_some_and(|r| r.duplicate),
        })
    }

    /// True when the job never reached the API, so it tells nothing about the upstream.
    pub fn reached_api(&self) -> bool {
        !self.duplicate
            && !matches!(
                self.class,
                Some(ErrorClass::InvalidJob | ErrorClass::AuthorizeRejected | ErrorClass::Expired)
            )
    }

    fn rejected(&self) -> bool {
        matches!(
            self.class,
            Some(ErrorClass::CredentialsRejected | ErrorClass::PermissionDenied)
        )
    }
}

/// True when a probe's outcome is a failure of the kind `trigger` counts: a rejection for
/// `consecutive`, a dead letter for `dead_letter_ratio`.
fn fails(trigger: BreakerTrigger, o: &CallOutcome) -> bool {
    match trigger {
        BreakerTrigger::Consecutive => o.rejected(),
        BreakerTrigger::DeadLetterRatio => o.dead_lettered,
    }
}

/// Why the breaker opened, in words for the log and `/readyz`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason {
    /// The trigger.
    pub trigger: BreakerTrigger,
    /// E.g. `20 consecutive credentials_rejected results`.
    pub detail: String,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.detail)
    }
}

/// What the run loop may do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Start jobs freely.
    Closed,
    /// Start exactly one job, the probe ([`Breaker::start_readiness_check`]).
    Probe,
    /// Start nothing before this instant.
    WaitUntil(Instant),
    /// Start nothing until the probe in flight finishes.
    WaitForProbe,
}

/// A change of state the worker reports.
#[derive(Debug, Clone, PartialEq)]
pub enum Transition {
    /// Closed → open.
    Tripped(Reason),
    /// The probe failed the same way: open for another `probe_interval`.
    ProbeFailed {
        /// Why the breaker is open.
        reason: Reason,
        /// The probe's error class.
        class: Option<ErrorClass>,
    },
    /// The probe did not fail the same way: closed again.
    Recovered(Reason),
}

#[derive(Debug, Clone, PartialEq)]
enum State {
    Closed,
    Open { reason: Reason, probe_at: Instant },
    Probing { reason: Reason },
}

/// The state machine. Feed it every finished job with [`Breaker::record`] (or
/// [`Breaker::abandoned`]) and ask [`Breaker::gate`] before starting one.
#[derive(Debug)]
pub struct Breaker {
    consecutive: u32,
    dead_letter_ratio: f64,
    window: usize,
    probe_interval: Duration,
    state: State,
    /// Rejections in a row, and which classes they were.
    rejections: u32,
    credentials_seen: bool,
    permission_seen: bool,
    /// Dead-lettered or not, for the latest jobs that reached the API (at most `window`).
    recent: VecDeque<bool>,
    recent_dead: usize,
}

impl Breaker {
    /// A closed breaker with `config`'s triggers.
    pub fn new(config: &BreakerConfig) -> Breaker {
        Breaker {
            consecutive: config.consecutive,
            dead_letter_ratio: config.dead_letter_ratio,
            window: config.window.max(1),
            probe_interval: config.probe_interval,
            state: State::Closed,
            rejections: 0,
            credentials_seen: false,
            permission_seen: false,
            recent: VecDeque::new(),
            recent_dead: 0,
        }
    }

    /// The interval between probes.
    pub fn probe_interval(&self) -> Duration {
        self.probe_interval
    }

    /// Why the breaker is open, or `None` when it is closed.
    pub fn open_reason(&self) -> Option<&Reason> {
        match &self.state {
            State::Closed => None,
            State::Open { reason, .. } | State::Probing { reason } => Some(reason),
        }
    }

    /// What the run loop may do at `now`.
    pub fn gate(&self, now: Instant) -> Gate {
        match &self.state {
            State::Closed => Gate::Closed,
            State::Open { probe_at, .. } if now >= *probe_at => Gate::Probe,
            State::Open { probe_at, .. } => Gate::WaitUntil(*probe_at),
            State::Probing { .. } => Gate::WaitForProbe,
        }
    }

    /// Marks the job about to start as the probe; false (and no change) unless
    /// [`Breaker::gate`] says [`Gate::Probe`] at `now`.
    pub fn start_readiness_check(&mut self, now: Instant) -> bool {
        match &self.state {
            State::Open { reason, probe_at } if now >= *probe_at => {
                self.state = State::Probing {
                    reason: reason.clone(),
                };
                true
            }
            _ => false,
        }
    }

    /// Feeds one finished job; `probe` says whether it was started as the probe.
    ///
    /// Closed, the job updates both triggers and may trip one. Open, only the probe's outcome
    /// matters (jobs that were in flight when the breaker opened finish without effect): a
    /// failure of the kind that opened the breaker re-opens it for another `probe_interval`,
    /// anything else closes it with fresh counts. A probe that never reached the API made no
    /// HTTP call and proves nothing, so the next job becomes the probe at once.
    pub fn record(
        &mut self,
        outcome: CallOutcome,
        probe: bool,
        now: Instant,
    ) -> Option<Transition> {
        match &self.state {
            State::Closed => self.count(outcome, now),
            State::Probing { reason } if probe => {
                let reason = reason.clone();
                if !outcome.reached_api() {
                    self.state = State::Open {
                        reason,
                        probe_at: now,
                    };
                    None
                } else if fails(reason.trigger, &outcome) {
                    self.state = State::Open {
                        reason: reason.clone(),
                        probe_at: crate::clock::later(now, self.probe_interval),
                    };
                    Some(Transition::ProbeFailed {
                        reason,
                        class: outcome.class,
                    })
                } else {
                    self.state = State::Closed;
                    self.reset();
                    Some(Transition::Recovered(reason))
                }
            }
            State::Open { .. } | State::Probing { .. } => None,
        }
    }

    /// A job that ended without an outcome (abandoned on a revoke or at shutdown). An abandoned
    /// probe frees the probe slot after another `probe_interval`.
    pub fn abandoned(&mut self, probe: bool, now: Instant) {
        if let (true, State::Probing { reason }) = (probe, &self.state) {
            self.state = State::Open {
                reason: reason.clone(),
                probe_at: crate::clock::later(now, self.probe_interval),
            };
        }
    }

    fn count(&mut self, o: CallOutcome, now: Instant) -> Option<Transition> {
        if !o.reached_api() {
            return None;
        }
        if o.rejected() {
            self.rejections += 1;
            match o.class {
                Some(ErrorClass::CredentialsRejected) => self.credentials_seen = true,
                _ => self.permission_seen = true,
            }
        } else {
            self.rejections = 0;
            self.credentials_seen = false;
            self.permission_seen = false;
        }
        self.recent.push_back(o.dead_lettered);
        self.recent_dead += usize::from(o.dead_lettered);
        if self.recent.len() > self.window && self.recent.pop_front() == Some(true) {
            self.recent_dead -= 1;
        }

        let reason = if self.consecutive > 0 && self.rejections >= self.consecutive {
            let classes = match (self.credentials_seen, self.permission_seen) {
                (true, true) => "credentials_rejected/permission_denied",
                (false, true) => "permission_denied",
                _ => "credentials_rejected",
            };
            Reason {
                trigger: BreakerTrigger::Consecutive,
                detail: format!("{} consecutive {classes} results", self.rejections),
            }
        } else if self.recent.len() == self.window
            && self.recent_dead as f64 > self.dead_letter_ratio * self.window as f64
        {
            Reason {
                trigger: BreakerTrigger::DeadLetterRatio,
                detail: format!(
                    "{} of the last {} jobs were dead-lettered (more than dead_letter_ratio {})",
                    self.recent_dead, self.window, self.dead_letter_ratio
                ),
            }
        } else {
            return None;
        };
        self.reset();
        self.state = State::Open {
            reason: reason.clone(),
            probe_at: crate::clock::later(now, self.probe_interval),
        };
        Some(Transition::Tripped(reason))
    }

    fn reset(&mut self) {
        self.rejections = 0;
        self.credentials_seen = false;
        self.permission_seen = false;
        self.recent.clear();
        self.recent_dead = 0;
    }
}

/// The worker's breaker: the state machine behind a mutex, shared by the run loop (which asks
/// the gate) and the job tasks (which report outcomes). Transitions go to the log (one ERROR
/// per trip, INFO on recovery), to [`WorkerCounters`] (`/readyz`, `/status.json`, the metrics).
#[derive(Debug)]
pub struct Gatekeeper {
    breaker: Mutex<Breaker>,
    counters: Arc<WorkerCounters>,
}

impl Gatekeeper {
    /// A closed breaker reporting to `counters`.
    pub fn new(config: &BreakerConfig, counters: Arc<WorkerCounters>) -> Gatekeeper {
        Gatekeeper {
            breaker: Mutex::new(Breaker::new(config)),
            counters,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Breaker> {
        self.breaker.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// See [`Breaker::gate`].
    pub fn gate(&self) -> Gate {
        self.lock().gate(Instant::now())
    }

    /// See [`Breaker::start_readiness_check`].
    pub fn start_readiness_check(&self) -> bool {
        let started = self.lock().start_readiness_check(Instant::now());
        if started {
            tracing::info!("circuit breaker: letting one probe job through");
        }
        started
    }

    /// Reports a finished job (`None`: it ended without an outcome).
    pub fn finished(&self, outcome: Option<CallOutcome>, probe: bool) {
        let now = Instant::now();
        let mut b = self.lock();
        let Some(outcome) = outcome else {
            b.abandoned(probe, now);
            return;
        };
        let interval = humantime::format_duration(b.probe_interval());
        match b.record(outcome, probe, now) {
            None => {}
            Some(Transition::Tripped(reason)) => {
                BreakerTripped {
                    trigger: reason.trigger.label(),
                    detail: &reason.detail,
                    probe_interval: &interval,
                }
                .emit(&self.counters);
            }
            Some(Transition::ProbeFailed { reason, class }) => {
                tracing::warn!(
                    class = class.map(ErrorClass::as_str),
                    "circuit breaker probe failed; still open ({reason}); next probe in {interval}"
                );
            }
            Some(Transition::Recovered(reason)) => {
                BreakerClosed {
                    trigger: reason.trigger.label(),
                }
                .emit(&self.counters);
            }
        }
        debug_assert_eq!(
            b.open_reason().is_some(),
            self.counters.breaker_open.load(Ordering::Relaxed)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTERVAL: Duration = Duration::from_secs(30);

    fn config(consecutive: u32, ratio: f64, window: usize) -> BreakerConfig {
        BreakerConfig {
            consecutive,
            dead_letter_ratio: ratio,
            window,
            probe_interval: INTERVAL,
        }
    }

    fn ok() -> CallOutcome {
        CallOutcome {
            class: None,
            dead_lettered: false,
            duplicate: false,
        }
    }

    fn failed(class: ErrorClass) -> CallOutcome {
        CallOutcome {
            class: Some(class),
            dead_lettered: class.dead_lettered(),
            duplicate: false,
        }
    }

    fn duplicate(class: ErrorClass) -> CallOutcome {
        CallOutcome {
            duplicate: true,
            dead_lettered: false,
            ..failed(class)
        }
    }

    /// Feeds `n` copies of `o` as ordinary (non-probe) jobs; returns the transitions.
    fn feed(b: &mut Breaker, o: CallOutcome, n: usize, now: Instant) -> Vec<Transition> {
        (0..n).filter_map(|_| b.record(o, false, now)).collect()
    }

    fn tripped(t: &[Transition]) -> Vec<BreakerTrigger> {
        t.iter()
            .filter_map(|t| match t {
                Transition::Tripped(r) => Some(r.trigger),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn consecutive_rejections_trip_at_the_threshold_and_not_before() {
        let t0 = Instant::now();
        let mut b = Breaker::new(&config(5, 1.0, 100));
        assert!(feed(&mut b, failed(ErrorClass::CredentialsRejected), 4, t0).is_empty());
        assert_eq!(b.gate(t0), Gate::Closed);
        let t = feed(&mut b, failed(ErrorClass::CredentialsRejected), 1, t0);
        match &t[..] {
            [Transition::Tripped(r)] => {
                assert_eq!(r.trigger, BreakerTrigger::Consecutive);
                assert_eq!(r.detail, "5 consecutive credentials_rejected results");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(b.gate(t0), Gate::WaitUntil(t0 + INTERVAL));
        assert!(b.open_reason().is_some());
    }

    #[test]
    fn a_token_400_invalid_client_counts_toward_the_consecutive_trigger() {
        use crate::contract::Stage;
        use crate::silentauth::classify;
        // The class the worker publishes for a token 400 that rejects the client (A2).
        let body = br#"{"error":"invalid_client","error_description":"bad client"}"#;
        let class = classify(Stage::Token, Some(400), body, None, &[]).class;
        let t0 = Instant::now();
        let mut b = Breaker::new(&config(3, 1.0, 100));
        assert!(feed(&mut b, failed(class), 2, t0).is_empty());
        let t = feed(&mut b, failed(class), 1, t0);
        assert!(
            matches!(&t[..], [Transition::Tripped(r)] if r.detail == "3 consecutive credentials_rejected results"),
            "{t:?}"
        );
        // A token 400 about the code is not a rejection of the client: it resets the count.
        let code = br#"{"error":"invalid_grant"}"#;
        let rejected_code = classify(Stage::Token, Some(400), code, None, &[]).class;
        let mut b = Breaker::new(&config(3, 1.0, 100));
        feed(&mut b, failed(class), 2, t0);
        assert!(feed(&mut b, failed(rejected_code), 1, t0).is_empty());
        assert!(feed(&mut b, failed(class), 2, t0).is_empty());
        assert_eq!(b.gate(t0), Gate::Closed);
    }

    #[test]
    fn both_rejection_classes_count_and_are_named() {
        let t0 = Instant::now();
        let mut b = Breaker::new(&config(4, 1.0, 100));
        feed(&mut b, failed(ErrorClass::PermissionDenied), 2, t0);
        let t = feed(&mut b, failed(ErrorClass::CredentialsRejected), 2, t0);
        match &t[..] {
            [Transition::Tripped(r)] => assert_eq!(
                r.detail,
                "4 consecutive credentials_rejected/permission_denied results"
            ),
            other => panic!("{other:?}"),
        }
        let mut b = Breaker::new(&config(2, 1.0, 100));
        let t = feed(&mut b, failed(ErrorClass::PermissionDenied), 2, t0);
        assert!(
            matches!(&t[..], [Transition::Tripped(r)] if r.detail == "2 consecutive permission_denied results"),
            "{t:?}"
        );
    }

    #[test]
    fn any_other_outcome_that_reached_the_api_resets_the_count() {
        let t0 = Instant::now();
        for other in [
            ok(),
            failed(ErrorClass::CodeRejected),
            failed(ErrorClass::UpstreamUnavailable),
            failed(ErrorClass::LoginHintMismatch),
            failed(ErrorClass::ProtocolError),
        ] {
            let mut b = Breaker::new(&config(3, 1.0, 100));
            feed(&mut b, failed(ErrorClass::CredentialsRejected), 2, t0);
            feed(&mut b, other, 1, t0);
            assert!(
                feed(&mut b, failed(ErrorClass::CredentialsRejected), 2, t0).is_empty(),
                "{other:?} did not reset"
            );
            assert_eq!(b.gate(t0), Gate::Closed);
            assert_eq!(
                tripped(&feed(
                    &mut b,
                    failed(ErrorClass::CredentialsRejected),
                    1,
                    t0
                )),
                [BreakerTrigger::Consecutive]
            );
        }
    }

    #[test]
    fn jobs_that_never_reached_the_api_neither_count_nor_reset() {
        let t0 = Instant::now();
        let neutral = [
            failed(ErrorClass::InvalidJob),
            failed(ErrorClass::AuthorizeRejected),
            failed(ErrorClass::Expired),
            duplicate(ErrorClass::CredentialsRejected),
            CallOutcome {
                duplicate: true,
                ..ok()
            },
        ];
        let mut b = Breaker::new(&config(3, 0.5, 4));
        for n in neutral {
            assert!(!n.reached_api(), "{n:?}");
        }
        feed(&mut b, failed(ErrorClass::CredentialsRejected), 2, t0);
        for n in neutral {
            // Poison input alone never trips the ratio trigger either.
            assert!(feed(&mut b, n, 10, t0).is_empty(), "{n:?}");
        }
        assert_eq!(
            tripped(&feed(
                &mut b,
                failed(ErrorClass::CredentialsRejected),
                1,
                t0
            )),
            [BreakerTrigger::Consecutive]
        );
    }

    #[test]
    fn zero_turns_the_consecutive_trigger_off() {
        let t0 = Instant::now();
        let mut b = Breaker::new(&config(0, 1.0, 10));
        assert!(feed(&mut b, failed(ErrorClass::CredentialsRejected), 1000, t0).is_empty());
        assert_eq!(b.gate(t0), Gate::Closed);
    }

    #[test]
    fn the_ratio_trips_only_when_exceeded_over_a_full_window() {
        let t0 = Instant::now();
        let dead = failed(ErrorClass::UpstreamUnavailable);
        // A window not yet full never trips, even at 100%.
        let mut b = Breaker::new(&config(0, 0.5, 10));
        assert!(feed(&mut b, dead, 9, t0).is_empty());
        assert_eq!(
            tripped(&feed(&mut b, dead, 1, t0)),
            [BreakerTrigger::DeadLetterRatio]
        );

        // Exactly half is not more than half.
        let mut b = Breaker::new(&config(0, 0.5, 10));
        for _ in 0..5 {
            feed(&mut b, dead, 1, t0);
            feed(&mut b, ok(), 1, t0);
        }
        assert_eq!(b.gate(t0), Gate::Closed);
        // The window slides: the oldest (dead) entry leaves as a new dead one comes, still 5.
        assert!(feed(&mut b, dead, 1, t0).is_empty());
        // Replacing the oldest ok entry with a dead one makes 6 of 10.
        let t = feed(&mut b, dead, 1, t0);
        match &t[..] {
            [Transition::Tripped(r)] => {
                assert_eq!(r.trigger, BreakerTrigger::DeadLetterRatio);
                assert_eq!(
                    r.detail,
                    "6 of the last 10 jobs were dead-lettered (more than dead_letter_ratio 0.5)"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn old_dead_letters_slide_out_of_the_window() {
        let t0 = Instant::now();
        let mut b = Breaker::new(&config(0, 0.5, 4));
        feed(&mut b, failed(ErrorClass::RateLimited), 2, t0);
        // 2 of 4, then the dead ones leave as ok ones arrive: never more than half.
        assert!(feed(&mut b, ok(), 50, t0).is_empty());
        assert!(feed(&mut b, failed(ErrorClass::ProtocolError), 2, t0).is_empty());
        assert_eq!(
            tripped(&feed(&mut b, failed(ErrorClass::ProtocolError), 1, t0)),
            [BreakerTrigger::DeadLetterRatio]
        );
    }

    #[test]
    fn a_ratio_of_one_turns_the_ratio_trigger_off() {
        let t0 = Instant::now();
        let mut b = Breaker::new(&config(0, 1.0, 5));
        assert!(feed(&mut b, failed(ErrorClass::UpstreamUnavailable), 500, t0).is_empty());
    }

    #[test]
    fn open_it_waits_then_lets_exactly_one_probe_through() {
        let t0 = Instant::now();
        let mut b = Breaker::new(&config(2, 1.0, 10));
        feed(&mut b, failed(ErrorClass::CredentialsRejected), 2, t0);
        let almost = t0 + INTERVAL - Duration::from_millis(1);
        assert_eq!(b.gate(almost), Gate::WaitUntil(t0 + INTERVAL));
        assert!(!b.start_readiness_check(almost));
        let t1 = t0 + INTERVAL;
        assert_eq!(b.gate(t1), Gate::Probe);
        assert!(b.start_readiness_check(t1));
        assert!(!b.start_readiness_check(t1), "a second probe at once");
        assert_eq!(b.gate(t1 + INTERVAL * 5), Gate::WaitForProbe);
    }

    #[test]
    fn jobs_in_flight_when_it_opened_finish_without_effect() {
        let t0 = Instant::now();
        let mut b = Breaker::new(&config(2, 1.0, 10));
        feed(&mut b, failed(ErrorClass::CredentialsRejected), 2, t0);
        // Neither successes nor more rejections from older jobs change anything.
        assert!(feed(&mut b, ok(), 3, t0).is_empty());
        assert!(feed(&mut b, failed(ErrorClass::CredentialsRejected), 3, t0).is_empty());
        assert_eq!(b.gate(t0), Gate::WaitUntil(t0 + INTERVAL));
        let t1 = t0 + INTERVAL;
        assert!(b.start_readiness_check(t1));
        assert!(feed(&mut b, ok(), 3, t1).is_empty());
        assert_eq!(b.gate(t1), Gate::WaitForProbe);
    }

    #[test]
    fn a_failed_probe_reopens_for_another_interval_and_a_good_one_closes() {
        let t0 = Instant::now();
        let mut b = Breaker::new(&config(2, 1.0, 10));
        feed(&mut b, failed(ErrorClass::PermissionDenied), 2, t0);
        let t1 = t0 + INTERVAL;
        assert!(b.start_readiness_check(t1));
        let t2 = t1 + Duration::from_secs(1);
        match b.record(failed(ErrorClass::PermissionDenied), true, t2) {
            Some(Transition::ProbeFailed { reason, class }) => {
                assert_eq!(reason.trigger, BreakerTrigger::Consecutive);
                assert_eq!(class, Some(ErrorClass::PermissionDenied));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(b.gate(t2), Gate::WaitUntil(t2 + INTERVAL));
        let t3 = t2 + INTERVAL;
        assert!(b.start_readiness_check(t3));
        // After a consecutive trip, an upstream failure is not "the same kind": closed.
        match b.record(failed(ErrorClass::UpstreamUnavailable), true, t3) {
            Some(Transition::Recovered(r)) => assert_eq!(r.trigger, BreakerTrigger::Consecutive),
            other => panic!("{other:?}"),
        }
        assert_eq!(b.gate(t3), Gate::Closed);
        assert!(b.open_reason().is_none());
        // Counts start afresh after recovery.
        assert!(feed(&mut b, failed(ErrorClass::CredentialsRejected), 1, t3).is_empty());
        assert_eq!(
            tripped(&feed(
                &mut b,
                failed(ErrorClass::CredentialsRejected),
                1,
                t3
            )),
            [BreakerTrigger::Consecutive]
        );
    }

    #[test]
    fn after_a_ratio_trip_any_dead_letter_fails_the_probe() {
        let t0 = Instant::now();
        let mut b = Breaker::new(&config(20, 0.5, 4));
        feed(&mut b, failed(ErrorClass::UpstreamUnavailable), 4, t0);
        let t1 = t0 + INTERVAL;
        assert!(b.start_readiness_check(t1));
        assert!(matches!(
            b.record(failed(ErrorClass::RateLimited), true, t1),
            Some(Transition::ProbeFailed { .. })
        ));
        let t2 = t1 + INTERVAL;
        assert!(b.start_readiness_check(t2));
        // Not dead-lettered: closed, with an empty window (no instant re-trip).
        assert!(matches!(
            b.record(failed(ErrorClass::CodeRejected), true, t2),
            Some(Transition::Recovered(_))
        ));
        assert!(feed(&mut b, failed(ErrorClass::UpstreamUnavailable), 3, t2).is_empty());
        assert_eq!(b.gate(t2), Gate::Closed);
    }

    #[test]
    fn a_probe_that_never_reached_the_api_is_replaced_at_once() {
        let t0 = Instant::now();
        let mut b = Breaker::new(&config(2, 1.0, 10));
        feed(&mut b, failed(ErrorClass::CredentialsRejected), 2, t0);
        let t1 = t0 + INTERVAL;
        for neutral in [
            duplicate(ErrorClass::CredentialsRejected),
            CallOutcome {
                duplicate: true,
                ..ok()
            },
            failed(ErrorClass::InvalidJob),
            failed(ErrorClass::Expired),
        ] {
            assert!(b.start_readiness_check(t1));
            assert_eq!(b.record(neutral, true, t1), None, "{neutral:?}");
            assert_eq!(b.gate(t1), Gate::Probe, "{neutral:?}");
        }
        assert!(b.start_readiness_check(t1));
        assert!(matches!(
            b.record(ok(), true, t1),
            Some(Transition::Recovered(_))
        ));
    }

    #[test]
    fn an_abandoned_probe_frees_the_slot_after_an_interval() {
        let t0 = Instant::now();
        let mut b = Breaker::new(&config(1, 1.0, 10));
        feed(&mut b, failed(ErrorClass::CredentialsRejected), 1, t0);
        let t1 = t0 + INTERVAL;
        assert!(b.start_readiness_check(t1));
        b.abandoned(false, t1);
        assert_eq!(b.gate(t1), Gate::WaitForProbe, "not the probe");
        b.abandoned(true, t1);
        assert_eq!(b.gate(t1), Gate::WaitUntil(t1 + INTERVAL));
    }

    #[test]
    fn trigger_labels_are_the_breaker_config_keys() {
        let keys = toml::Value::try_from(BreakerConfig::default()).unwrap();
        for t in BreakerTrigger::ALL {
            assert!(
                keys.get(t.label()).is_some(),
                "{} is no worker.breaker key",
                t.label()
            );
        }
        let exported = WorkerCounters::default().breaker_trips();
        assert_eq!(exported.len(), BreakerTrigger::ALL.len());
    }

    #[tokio::test(start_paused = true)]
    async fn the_gatekeeper_reports_trips_and_recovery_to_the_stats() {
        let counters = Arc::new(WorkerCounters::default());
        use crate::telemetry::events::{PartitionsAssigned, PreflightPassed};
        PreflightPassed.emit(&counters);
        PartitionsAssigned.emit(&counters);
        let g = Gatekeeper::new(&config(2, 1.0, 10), counters.clone());
        g.finished(Some(failed(ErrorClass::CredentialsRejected)), false);
        assert!(counters.ready());
        g.finished(Some(failed(ErrorClass::CredentialsRejected)), false);
        assert!(counters.breaker_open.load(Ordering::Relaxed));
        assert!(!counters.ready());
        assert_eq!(
            counters.breaker_reason().as_deref(),
            Some("2 consecutive credentials_rejected results")
        );
        assert_eq!(counters.breaker_trips()["consecutive"], 1);
        assert_eq!(counters.breaker_trips()["dead_letter_ratio"], 0);
        assert!(matches!(g.gate(), Gate::WaitUntil(_)));
        assert!(!g.start_readiness_check());
        tokio::time::advance(INTERVAL).await;
        assert_eq!(g.gate(), Gate::Probe);
        assert!(g.start_readiness_check());
        g.finished(Some(failed(ErrorClass::CredentialsRejected)), true);
        assert!(counters.breaker_open.load(Ordering::Relaxed));
        assert_eq!(
            counters.breaker_trips()["consecutive"],
            1,
            "a failed probe is no new trip"
        );
        tokio::time::advance(INTERVAL).await;
        assert!(g.start_readiness_check());
        g.finished(Some(ok()), true);
        assert!(!counters.breaker_open.load(Ordering::Relaxed));
        assert!(counters.breaker_reason().is_none());
        assert!(counters.ready());
        assert_eq!(counters.breaker_trips()["consecutive"], 1);
    }
}
