//! The retry policy of docs/contract.md: exponential backoff with jitter (backon), bounded by
//! attempts, total time and the code's deadline; `Retry-After` pauses the whole profile (a
//! Network Signals one its normal lane only), up to `retry.max_retry_after`; and the
//! single-use-code rule for token requests that got no answer.

use super::classify::{classify, Classification};
use super::client::{HttpOutcome, HttpResponse};
use super::limiter::{Limiter, Priority};
use super::spent::SpentCode;
use crate::config::RetryConfig;
use crate::contract::{ErrorClass, Stage};
use crate::spans::{self, AttemptEnd};
use backon::{BackoffBuilder, ExponentialBuilder};
use std::future::Future;
use std::time::Duration;
use tokio::time::Instant;
use tracing::Instrument;

/// How failed requests are retried.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts per stage, the first included.
    pub max_attempts: u32,
    /// First backoff.
    pub initial_backoff: Duration,
    /// Backoff cap.
    pub max_backoff: Duration,
    /// Total time one stage may spend.
    pub max_elapsed: Duration,
    /// The longest `Retry-After` honoured (an upstream's value is untrusted input).
    pub max_retry_after: Duration,
    /// Random jitter of up to 100% on each backoff (off only in tests that assert a schedule).
    pub jitter: bool,
    /// Total time userinfo may spend retrying once the code is spent (see
    /// [`RetryPolicy::after_spent_code`]).
    pub userinfo_max_elapsed: Duration,
    /// Which rate-limit permits the stage's requests take.
    pub priority: Priority,
    /// The job's spent-code state, for a stage that runs beside the exchange (a network-signal
    /// check): every request sent once it is spent takes [`Priority::High`] (see
    /// [`RetryPolicy::high_once_spent`]).
    pub spent: Option<SpentCode>,
}

impl RetryPolicy {
    /// The policy of `[retry]`.
    pub fn from_config(c: &RetryConfig) -> RetryPolicy {
        RetryPolicy {
            max_attempts: c.max_attempts.max(1),
            initial_backoff: c.initial_backoff,
            max_backoff: c.max_backoff,
            max_elapsed: c.max_elapsed,
            max_retry_after: c.max_retry_after,
            jitter: true,
            userinfo_max_elapsed: c.userinfo_max_elapsed,
            priority: Priority::Normal,
            spent: None,
        }
    }

    /// The policy of a stage that runs after the job's code is spent (userinfo after a 2xx
    /// token call): a failure then is final for the code, so it is retried for longer — bounded
    /// by time only, `retry.userinfo_max_elapsed`, and never beyond `expires_in`, the access
    /// token's lifetime — and its requests take permits before any job whose code is not spent.
    pub fn after_spent_code(&self, expires_in: Option<Duration>) -> RetryPolicy {
        let budget = match expires_in {
            Some(e) => self.userinfo_max_elapsed.min(e),
            None => self.userinfo_max_elapsed,
        };
        RetryPolicy {
            max_attempts: u32::MAX,
            max_elapsed: budget,
            priority: Priority::High,
            ..self.clone()
        }
    }

    /// The policy of a stage that runs beside the exchange of `spent`'s code (a job's
    /// network-signal checks): its requests take [`Priority::Normal`] while the code is not
    /// spent, and [`Priority::High`] for every request (first or retry) that waits for a permit
    /// after it is, so the checks a spent job still sends never queue behind new token calls nor
    /// wait out a signals pause. Its budget stays.
    pub fn high_once_spent(&self, spent: &SpentCode) -> RetryPolicy {
        RetryPolicy {
            spent: Some(spent.clone()),
            ..self.clone()
        }
    }

    /// The priority of the request about to be sent.
    fn priority_now(&self) -> Priority {
        match &self.spent {
            Some(spent) if spent.is_spent() => Priority::High,
            _ => self.priority,
        }
    }

    /// A `Retry-After` as honoured: at most `max_retry_after` and never beyond `max_elapsed`,
    /// so neither a wait nor a profile pause can outlast the budget, whatever the header said.
    pub fn clamp_retry_after(&self, retry_after: Duration) -> Duration {
        retry_after.min(self.max_retry_after).min(self.max_elapsed)
    }

    fn backoff(&self) -> impl Iterator<Item = Duration> {
        let b = ExponentialBuilder::new()
            .with_min_delay(self.initial_backoff)
            .with_max_delay(self.max_backoff)
            .with_factor(2.0)
            .without_max_times();
        if self.jitter {
            b.with_jitter().build()
        } else {
            b.build()
        }
    }
}

/// What happened to the requests of one job, across stages.
#[derive(Debug, Default, Clone)]
pub struct Attempts {
    /// HTTP requests sent (the `attempts` of the result).
    pub count: u32,
    /// Time spent waiting for HTTP answers.
    pub http_time: Duration,
    /// Retries made (attempts beyond the first of each stage).
    pub retries: u32,
    /// True once a token request was sent and got no answer: the code may be spent.
    pub ambiguous: bool,
}

impl Attempts {
    /// Adds the requests of work that ran at the same time as this: counts add up, and the
    /// time waited for answers is the longer of the two (they overlapped).
    pub fn add_concurrent(&mut self, other: &Attempts) {
        self.count += other.count;
        self.retries += other.retries;
        self.http_time = self.http_time.max(other.http_time);
    }
}

/// How a stage ended.
#[derive(Debug)]
pub enum StageEnd {
    /// A 2xx response.
    Success(HttpResponse),
    /// A failure that is final (not retryable, or the budget ran out).
    Failed(Classification),
    /// The deadline passed before a request could be sent.
    Expired,
}

/// Told about every HTTP request a stage sends, so metrics can be kept without the domain
/// knowing where they go. Called on the request path: implementations must be cheap.
pub trait HttpObserver: Send + Sync + std::fmt::Debug {
    /// One request of `stage` ended with `status` (`None`: no complete response, a transport
    /// error or a body that broke off) after `elapsed`.
    fn request(&self, stage: Stage, status: Option<u16>, elapsed: Duration);
}

/// One stage's requests as the retry loop sees them.
#[derive(Debug, Clone, Copy)]
pub struct StageCall<'a> {
    /// Which call (`token`, `userinfo` or a network-signal check).
    pub stage: Stage,
    /// The code's deadline, for the token stage; `None`: only the policy bounds the stage.
    pub deadline: Option<Instant>,
    /// What the requests carry that an answer must not quote back (the code, the api key, the
    /// client secret, the access token): scrubbed from upstream text before it is shortened.
    pub secrets: &'a [&'a str],
    /// Told about every request sent (the worker's metrics).
    pub observer: Option<&'a dyn HttpObserver>,
}

impl StageCall<'_> {
    /// A stage with no deadline, no secrets to scrub and no observer.
    pub fn new(stage: Stage) -> Self {
        StageCall {
            stage,
            deadline: None,
            secrets: &[],
            observer: None,
        }
    }
}

/// Runs one stage (`token` or `userinfo`): takes a permit for every request, retries as the
/// policy says, and stops at `deadline` (the code's, for the token stage). The unit tests' entry;
/// the verifier calls [`run_stage_observed`].
#[cfg(test)]
pub async fn run_stage<F, Fut>(
    policy: &RetryPolicy,
    limiter: &Limiter,
    stage: Stage,
    deadline: Option<Instant>,
    attempts: &mut Attempts,
    send: F,
) -> StageEnd
where
    F: FnMut() -> Fut,
    Fut: Future<Output = HttpOutcome>,
{
    let call = StageCall {
        deadline,
        ..StageCall::new(stage)
    };
    run_stage_observed(policy, limiter, call, attempts, send).await
}

/// Runs one stage as `call` describes it: takes a permit for every request, retries as the
/// policy says, stops at the call's deadline (the code's, for the token stage), and tells the
/// call's observer about every request sent.
pub async fn run_stage_observed<F, Fut>(
    policy: &RetryPolicy,
    limiter: &Limiter,
    call: StageCall<'_>,
    attempts: &mut Attempts,
    mut send: F,
) -> StageEnd
where
    F: FnMut() -> Fut,
    Fut: Future<Output = HttpOutcome>,
{
    let (stage, deadline) = (call.stage, call.deadline);
    let started = Instant::now();
    let mut backoff = policy.backoff();
    let mut tries = 0u32;
    let mut last: Option<Classification> = None;
    loop {
        let waiting = permit(policy, limiter, deadline);
        if !spans::waited(waiting, || spans::rate_limit_wait(stage.as_str())).await {
            return match last {
                None => StageEnd::Expired,
                Some(c) => StageEnd::Failed(with_note(c, "retries stopped at the code's deadline")),
            };
        }
        tries += 1;
        let (mut c, retry_after) = match attempt(policy, &call, attempts, tries, &mut send).await {
            Ok(success) => return StageEnd::Success(success),
            Err(failure) => failure,
        };
        if stage == Stage::Token && c.class == ErrorClass::CodeRejected && attempts.ambiguous {
            c = with_note(
                c,
                "the code may have been used by an earlier attempt that got no answer",
            );
        }
        attempts.ambiguous |= c.ambiguous;
        if !c.retry {
            return StageEnd::Failed(c);
        }
        if let (Some(ra), Some(429 | 503)) = (retry_after, c.http_status) {
            spans::retry_after(stage.as_str(), ra);
            pause(limiter, stage, ra);
        }
        let next = backoff.next().unwrap_or(policy.max_backoff);
        let delay = match retry_delay(policy, deadline, started, tries, next, retry_after) {
            Ok(delay) => delay,
            Err(note) => return StageEnd::Failed(with_note(c, &note)),
        };
        last = Some(c);
        tokio::time::sleep(delay).await;
    }
}

/// Sends the `tries`-th request of `call`'s stage and judges its answer: counted in `attempts`,
/// told to the call's observer and recorded on the attempt's span.
async fn attempt<F, Fut>(
    policy: &RetryPolicy,
    call: &StageCall<'_>,
    attempts: &mut Attempts,
    tries: u32,
    send: &mut F,
) -> Result<HttpResponse, (Classification, Option<Duration>)>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = HttpOutcome>,
{
    let stage = call.stage;
    attempts.count += 1;
    if tries > 1 {
        attempts.retries += 1;
    }
    let t0 = Instant::now();
    let span = spans::http_attempt(stage.as_str(), method(stage), tries);
    let outcome = send().instrument(span.clone()).await;
    let elapsed = t0.elapsed();
    let status = outcome.complete_status();
    attempts.http_time += elapsed;
    if let Some(o) = call.observer {
        o.request(stage, status, elapsed);
    }
    let judged = judge(policy, call, outcome);
    let end = attempt_end(stage, status, &judged);
    spans::record_attempt(&span, &end);
    judged
}

/// How an attempt of `stage` answered `status` ended, as judged, for its span: a token attempt
/// spends the code when it was answered 2xx, or may have used it, or got a 2xx whose body broke
/// off.
fn attempt_end(
    stage: Stage,
    status: Option<u16>,
    judged: &Result<HttpResponse, (Classification, Option<Duration>)>,
) -> AttemptEnd<'static> {
    match judged {
        Ok(_) => AttemptEnd {
            status,
            class: None,
            ambiguous: false,
            code_spent: stage == Stage::Token,
        },
        Err((c, _)) => AttemptEnd {
            status,
            class: Some(c.class.as_str()),
            ambiguous: c.ambiguous,
            code_spent: stage == Stage::Token && (c.ambiguous || c.exchanged),
        },
    }
}

/// The pause before the next try after the `tries`-th failed: the backoff's `next` step, at
/// least the answer's `retry_after`; `Err` with the reason when no try may follow (the attempts,
/// `retry.max_elapsed` or the code's deadline would be passed).
fn retry_delay(
    policy: &RetryPolicy,
    deadline: Option<Instant>,
    started: Instant,
    tries: u32,
    next: Duration,
    retry_after: Option<Duration>,
) -> Result<Duration, String> {
    if tries >= policy.max_attempts {
        return Err(format!("gave up after {tries} attempts"));
    }
    let delay = next.max(retry_after.unwrap_or_default());
    if started.elapsed().saturating_add(delay) > policy.max_elapsed {
        return Err("retry.max_elapsed reached".to_owned());
    }
    if deadline.is_some_and(|d| Instant::now().checked_add(delay).is_none_or(|at| at >= d)) {
        return Err("retries stopped at the code's deadline".to_owned());
    }
    Ok(delay)
}

/// The HTTP method of `stage`'s requests.
fn method(stage: Stage) -> &'static str {
    match stage {
        Stage::Userinfo => "GET",
        _ => "POST",
    }
}

/// Waits for a permit in the lane of the request about to be sent; false when `deadline` came
/// first (or is reached as the permit is granted).
async fn permit(policy: &RetryPolicy, limiter: &Limiter, deadline: Option<Instant>) -> bool {
    let acquire = limiter.acquire_with(policy.priority_now());
    match deadline {
        Some(d) => tokio::time::timeout_at(d, acquire).await.is_ok() && Instant::now() < d,
        None => {
            acquire.await;
            true
        }
    }
}

/// A `Retry-After` pauses the profile. A Silent Auth one holds every request: userinfo would be
/// refused too. A Network Signals one holds the normal lane only, never the userinfo or checks of
/// spent codes (docs/network-signals.md says why).
fn pause(limiter: &Limiter, stage: Stage, d: Duration) {
    match stage {
        Stage::SimSwap | Stage::DeviceSwap | Stage::CallForwarding => limiter.pause_normal_for(d),
        _ => limiter.pause_for(d),
    }
}

/// A 2xx read whole, or the classification of anything else with the `Retry-After` it asked
/// for (as honoured).
fn judge(
    policy: &RetryPolicy,
    call: &StageCall<'_>,
    outcome: HttpOutcome,
) -> Result<HttpResponse, (Classification, Option<Duration>)> {
    let (stage, secrets) = (call.stage, call.secrets);
    Err(match outcome {
        HttpOutcome::Response(r) if (200..300).contains(&r.status) => return Ok(r),
        HttpOutcome::Response(r) => (
            classify(stage, Some(r.status), &r.body, None, secrets),
            r.retry_after.map(|ra| policy.clamp_retry_after(ra)),
        ),
        HttpOutcome::Incomplete { status, cause } => (
            classify(stage, Some(status), b"", Some(&cause), secrets),
            None,
        ),
        HttpOutcome::Transport(t) => (classify(stage, None, b"", Some(&t), secrets), None),
    })
}

fn with_note(mut c: Classification, note: &str) -> Classification {
    c.reason = format!("{}; {note}", c.reason);
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::silentauth::classify::Transport;
    use std::sync::{Arc, Mutex};

    fn policy(max_attempts: u32) -> RetryPolicy {
        RetryPolicy {
            max_attempts,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            max_elapsed: Duration::from_secs(60),
            max_retry_after: Duration::from_secs(60),
            jitter: false,
            userinfo_max_elapsed: Duration::from_secs(120),
            priority: Priority::Normal,
            spent: None,
        }
    }

    fn resp(status: u16, retry_after: Option<u64>) -> HttpOutcome {
        HttpOutcome::Response(HttpResponse {
            status,
            body: Vec::new(),
            retry_after: retry_after.map(Duration::from_secs),
        })
    }

    /// Replays `script` and records when each request was sent (offset from the start).
    async fn run(
        p: &RetryPolicy,
        limiter: &Limiter,
        stage: Stage,
        deadline: Option<Duration>,
        script: Vec<HttpOutcome>,
    ) -> (StageEnd, Vec<Duration>, Attempts) {
        let start = Instant::now();
        let script = Arc::new(Mutex::new(script.into_iter()));
        let times = Arc::new(Mutex::new(Vec::new()));
        let mut attempts = Attempts::default();
        let end = run_stage(
            p,
            limiter,
            stage,
            deadline.map(|d| start + d),
            &mut attempts,
            || {
                times.lock().unwrap().push(start.elapsed());
                let next = script.lock().unwrap().next().expect("script too short");
                async move { next }
            },
        )
        .await;
        let t = times.lock().unwrap().clone();
        (end, t, attempts)
    }

    fn ms(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|&m| Duration::from_millis(m)).collect()
    }

    /// Tokio's timer has millisecond ticks: each sleep may end up to 1 ms late.
    fn assert_schedule(times: &[Duration], expected_ms: &[u64]) {
        assert_eq!(
            times.len(),
            expected_ms.len(),
            "{times:?} vs {expected_ms:?}"
        );
        for (i, (t, e)) in times.iter().zip(ms(expected_ms)).enumerate() {
            assert!(
                *t >= e && *t <= e + Duration::from_millis(1 + i as u64),
                "{times:?} vs {expected_ms:?}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn exponential_schedule_then_success() {
        let script = vec![
            resp(500, None),
            resp(502, None),
            resp(503, None),
            resp(200, None),
        ];
        let (end, times, a) = run(
            &policy(5),
            &Limiter::unlimited(),
            Stage::Token,
            None,
            script,
        )
        .await;
        assert!(matches!(end, StageEnd::Success(_)));
        assert_schedule(&times, &[0, 100, 300, 700]);
        // The 502 may have come from a gateway after the origin used the code (A1).
        assert_eq!((a.count, a.retries, a.ambiguous), (4, 3, true));
    }

    #[tokio::test(start_paused = true)]
    async fn backoff_is_capped_and_attempts_bounded() {
        let script = (0..6).map(|_| resp(504, None)).collect();
        let (end, times, a) = run(
            &policy(6),
            &Limiter::unlimited(),
            Stage::Token,
            None,
            script,
        )
        .await;
        assert_schedule(&times, &[0, 100, 300, 700, 1500, 2500]);
        let StageEnd::Failed(c) = end else { panic!() };
        assert_eq!(c.class, ErrorClass::UpstreamUnavailable);
        assert!(c.reason.contains("6 attempts"));
        assert_eq!(a.count, 6);
    }

    #[tokio::test(start_paused = true)]
    async fn jitter_stays_within_one_backoff() {
        let mut p = policy(4);
        p.jitter = true;
        let script = (0..4).map(|_| resp(500, None)).collect();
        let (_, times, _) = run(&p, &Limiter::unlimited(), Stage::Token, None, script).await;
        let gaps: Vec<_> = times.windows(2).map(|w| w[1] - w[0]).collect();
        for (gap, base) in gaps.iter().zip([100u64, 200, 400]) {
            // Jitter adds less than one backoff; paused time rounds a sleep up to the next
            // millisecond, so the gap can reach exactly twice the base.
            assert!(
                *gap >= Duration::from_millis(base) && *gap <= Duration::from_millis(2 * base),
                "{gap:?}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn max_elapsed_stops_retries() {
        let mut p = policy(100);
        p.max_elapsed = Duration::from_millis(1000);
        let script = (0..100).map(|_| resp(500, None)).collect();
        let (end, times, _) = run(&p, &Limiter::unlimited(), Stage::Userinfo, None, script).await;
        assert_schedule(&times, &[0, 100, 300, 700]);
        let StageEnd::Failed(c) = end else { panic!() };
        assert!(c.reason.contains("max_elapsed"));
    }

    #[tokio::test(start_paused = true)]
    async fn deadline_bounds_retries_and_expires_before_first_request() {
        let script = (0..10).map(|_| resp(500, None)).collect();
        let (end, times, _) = run(
            &policy(10),
            &Limiter::unlimited(),
            Stage::Token,
            Some(Duration::from_millis(500)),
            script,
        )
        .await;
        assert_schedule(&times, &[0, 100, 300]);
        let StageEnd::Failed(c) = end else { panic!() };
        assert!(c.reason.contains("deadline"));
        // A deadline already passed: no request at all.
        let (end, times, a) = run(
            &policy(3),
            &Limiter::unlimited(),
            Stage::Token,
            Some(Duration::ZERO),
            vec![],
        )
        .await;
        assert!(matches!(end, StageEnd::Expired));
        assert!(times.is_empty());
        assert_eq!(a.count, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_for_a_permit_past_the_deadline_expires() {
        let limiter = Limiter::new(Some(1.0), 1);
        limiter.acquire().await;
        let (end, times, _) = run(
            &policy(3),
            &limiter,
            Stage::Token,
            Some(Duration::from_millis(300)),
            vec![],
        )
        .await;
        assert!(matches!(end, StageEnd::Expired));
        assert!(times.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_is_honoured_and_pauses_the_profile() {
        let limiter = Limiter::unlimited();
        let script = vec![resp(429, Some(3)), resp(200, None)];
        let (end, times, _) = run(&policy(3), &limiter, Stage::Token, None, script).await;
        assert!(matches!(end, StageEnd::Success(_)));
        assert_schedule(&times, &[0, 3000]);
        // The pause applied to the profile: another request at t=0 would also have waited.
        let limiter = Limiter::unlimited();
        let script = vec![resp(503, Some(2)), resp(200, None)];
        let start = Instant::now();
        let p3 = policy(3);
        let (other, ours) = tokio::join!(
            async {
                tokio::time::sleep(Duration::from_millis(10)).await;
                limiter.acquire().await;
                start.elapsed()
            },
            run(&p3, &limiter, Stage::Userinfo, None, script)
        );
        assert!(matches!(ours.0, StageEnd::Success(_)));
        assert!(other >= Duration::from_secs(2), "{other:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_signals_retry_after_holds_the_normal_lane_and_a_silent_auth_one_both() {
        let cases = [
            (Stage::SimSwap, false),
            (Stage::DeviceSwap, false),
            (Stage::CallForwarding, false),
            (Stage::Token, true),
            (Stage::Userinfo, true),
        ];
        for (stage, holds_high) in cases {
            let limiter = Limiter::unlimited();
            let script = vec![resp(429, Some(3)), resp(200, None)];
            let start = Instant::now();
            let later = |priority| {
                let limiter = &limiter;
                async move {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    limiter.acquire_with(priority).await;
                    start.elapsed()
                }
            };
            let p3 = policy(3);
            let (normal, high, ours) = tokio::join!(
                later(Priority::Normal),
                later(Priority::High),
                run(&p3, &limiter, stage, None, script)
            );
            assert!(matches!(ours.0, StageEnd::Success(_)), "{stage}");
            // The stage itself waits out its Retry-After, whichever it is.
            assert_schedule(&ours.1, &[0, 3000]);
            assert!(normal >= Duration::from_secs(3), "{stage}: {normal:?}");
            if holds_high {
                assert!(high >= Duration::from_secs(3), "{stage}: {high:?}");
            } else {
                assert!(high <= Duration::from_millis(11), "{stage}: {high:?}");
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_check_beside_the_exchange_takes_the_high_lane_once_the_code_is_spent() {
        let limiter = Limiter::unlimited();
        let spent = SpentCode::new();
        let p = policy(3).high_once_spent(&spent);
        // Before the exchange the check is a normal request: a signals pause holds it.
        limiter.pause_normal_for(Duration::from_secs(2));
        let start = Instant::now();
        let mut times = Vec::new();
        let mut attempts = Attempts::default();
        let end = run_stage(&p, &limiter, Stage::SimSwap, None, &mut attempts, || {
            times.push(start.elapsed());
            let first = times.len() == 1;
            if first {
                // Meanwhile the exchange spends the code, and another check is refused.
                spent.exchanged();
                limiter.pause_normal_for(Duration::from_secs(10));
            }
            async move { resp(if first { 500 } else { 200 }, None) }
        })
        .await;
        assert!(matches!(end, StageEnd::Success(_)));
        // The retry after the exchange passes the 10 s pause: it only waited its backoff.
        assert_schedule(&times, &[2000, 2100]);
        // A normal request is still held.
        let s = Instant::now();
        limiter.acquire().await;
        assert!(
            s.elapsed() >= Duration::from_millis(9_899),
            "{:?}",
            s.elapsed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_longer_than_the_budget_is_cut_to_it() {
        let mut p = policy(5);
        p.max_elapsed = Duration::from_secs(10);
        let (end, times, _) = run(
            &p,
            &Limiter::unlimited(),
            Stage::Token,
            None,
            vec![resp(429, Some(60)), resp(429, Some(60))],
        )
        .await;
        assert_schedule(&times, &[0, 10_000]);
        let StageEnd::Failed(c) = end else { panic!() };
        assert_eq!(c.class, ErrorClass::RateLimited);
        assert!(c.reason.contains("max_elapsed"), "{}", c.reason);
    }

    #[tokio::test(start_paused = true)]
    async fn hostile_retry_after_is_capped_for_the_job_and_the_profile() {
        let mut p = policy(3);
        p.max_retry_after = Duration::from_secs(5);
        for hostile in [u64::MAX, u64::MAX / 2, 1 << 40, 86_400 * 365 * 1000] {
            let limiter = Limiter::unlimited();
            let script = vec![resp(429, Some(hostile)), resp(200, None)];
            let start = Instant::now();
            let (other, ours) = tokio::join!(
                async {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    limiter.acquire().await;
                    start.elapsed()
                },
                run(&p, &limiter, Stage::Token, None, script)
            );
            assert!(matches!(ours.0, StageEnd::Success(_)), "{hostile}");
            assert_schedule(&ours.1, &[0, 5000]);
            // The profile paused for the cap, not for the header's value.
            assert!(other >= Duration::from_secs(5), "{other:?}");
            assert!(other <= Duration::from_millis(5010), "{other:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_zero_falls_back_to_the_backoff() {
        let limiter = Limiter::unlimited();
        let script = vec![resp(503, Some(0)), resp(429, Some(0)), resp(200, None)];
        let (end, times, _) = run(&policy(3), &limiter, Stage::Userinfo, None, script).await;
        assert!(matches!(end, StageEnd::Success(_)));
        assert_schedule(&times, &[0, 100, 300]);
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_past_the_deadline_stops_at_the_deadline() {
        let mut p = policy(5);
        p.max_retry_after = Duration::from_secs(30);
        let (end, times, _) = run(
            &p,
            &Limiter::unlimited(),
            Stage::Token,
            Some(Duration::from_secs(2)),
            vec![resp(429, Some(u64::MAX))],
        )
        .await;
        assert_eq!(times.len(), 1);
        let StageEnd::Failed(c) = end else { panic!() };
        assert_eq!(c.class, ErrorClass::RateLimited);
        assert!(c.reason.contains("deadline"), "{}", c.reason);
    }

    #[test]
    fn clamping_never_exceeds_the_cap_or_the_budget() {
        let mut p = policy(3);
        p.max_retry_after = Duration::from_secs(20);
        p.max_elapsed = Duration::from_secs(10);
        assert_eq!(p.clamp_retry_after(Duration::MAX), Duration::from_secs(10));
        assert_eq!(
            p.clamp_retry_after(Duration::from_secs(3)),
            Duration::from_secs(3)
        );
        p.max_elapsed = Duration::from_secs(60);
        assert_eq!(
            p.clamp_retry_after(Duration::from_secs(u64::MAX)),
            Duration::from_secs(20)
        );
        assert_eq!(p.clamp_retry_after(Duration::ZERO), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn never_retried_statuses() {
        for s in [400, 401, 403] {
            let (end, times, _) = run(
                &policy(5),
                &Limiter::unlimited(),
                Stage::Token,
                None,
                vec![resp(s, None)],
            )
            .await;
            assert_eq!(times.len(), 1, "{s}");
            assert!(matches!(end, StageEnd::Failed(c) if !c.retry));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_400_after_an_ambiguous_attempt_says_the_code_may_be_used() {
        let script = vec![HttpOutcome::Transport(Transport::Timeout), resp(400, None)];
        let (end, times, a) = run(
            &policy(5),
            &Limiter::unlimited(),
            Stage::Token,
            None,
            script,
        )
        .await;
        assert_eq!(times.len(), 2);
        assert!(a.ambiguous);
        let StageEnd::Failed(c) = end else { panic!() };
        assert_eq!(c.class, ErrorClass::CodeRejected);
        assert!(
            c.reason
                .contains("may have been used by an earlier attempt"),
            "{}",
            c.reason
        );
        // A gateway's 502 or 504 may have come after the origin used the code (A1).
        for gateway in [502, 504] {
            let script = vec![resp(gateway, None), resp(400, None)];
            let (end, _, a) = run(
                &policy(5),
                &Limiter::unlimited(),
                Stage::Token,
                None,
                script,
            )
            .await;
            assert!(a.ambiguous, "{gateway}");
            let StageEnd::Failed(c) = end else { panic!() };
            assert!(c.reason.contains("may have been used"), "{}", c.reason);
        }
        // A connect failure never sent the code: a later 400 says nothing of the kind.
        let script = vec![
            HttpOutcome::Transport(Transport::Connect("refused".into())),
            resp(400, None),
        ];
        let (end, _, a) = run(
            &policy(5),
            &Limiter::unlimited(),
            Stage::Token,
            None,
            script,
        )
        .await;
        assert!(!a.ambiguous);
        let StageEnd::Failed(c) = end else { panic!() };
        assert!(!c.reason.contains("may have been used"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_token_2xx_whose_body_broke_off_ends_the_stage_at_once() {
        let broken = |cause| HttpOutcome::Incomplete { status: 200, cause };
        for cause in [Transport::Timeout, Transport::Reset("closed".into())] {
            let script = vec![broken(cause), resp(200, None)];
            let (end, times, a) = run(
                &policy(5),
                &Limiter::unlimited(),
                Stage::Token,
                None,
                script,
            )
            .await;
            assert_eq!(times.len(), 1, "the code is presented once");
            let StageEnd::Failed(c) = end else { panic!() };
            assert_eq!(c.class, ErrorClass::ProtocolError);
            assert!(c.exchanged && !a.ambiguous);
        }
        // Userinfo is idempotent: the same shape is retried.
        let script = vec![broken(Transport::Timeout), resp(200, None)];
        let (end, times, _) = run(
            &policy(5),
            &Limiter::unlimited(),
            Stage::Userinfo,
            None,
            script,
        )
        .await;
        assert!(matches!(end, StageEnd::Success(_)));
        assert_eq!(times.len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn after_a_spent_code_retries_run_on_time_not_attempts() {
        // Four attempts would stop at 700 ms; the spent-code budget (5 s here) keeps going.
        let mut p = policy(4);
        p.userinfo_max_elapsed = Duration::from_secs(5);
        let spent = p.after_spent_code(None);
        assert_eq!(spent.priority, Priority::High);
        let script = (0..100).map(|_| resp(500, None)).collect();
        let (end, times, _) =
            run(&spent, &Limiter::unlimited(), Stage::Userinfo, None, script).await;
        assert_schedule(&times, &[0, 100, 300, 700, 1500, 2500, 3500, 4500]);
        let StageEnd::Failed(c) = end else { panic!() };
        assert!(c.reason.contains("max_elapsed"), "{}", c.reason);
    }

    #[tokio::test(start_paused = true)]
    async fn the_spent_code_budget_never_outlives_the_access_token() {
        let mut p = policy(4);
        p.userinfo_max_elapsed = Duration::from_secs(60);
        let spent = p.after_spent_code(Some(Duration::from_secs(2)));
        assert_eq!(spent.max_elapsed, Duration::from_secs(2));
        let script = (0..100).map(|_| resp(503, None)).collect();
        let (_, times, _) = run(&spent, &Limiter::unlimited(), Stage::Userinfo, None, script).await;
        assert_schedule(&times, &[0, 100, 300, 700, 1500]);
        // An access token that already expired leaves one attempt.
        let spent = p.after_spent_code(Some(Duration::ZERO));
        let script = (0..100).map(|_| resp(503, None)).collect();
        let (_, times, _) = run(&spent, &Limiter::unlimited(), Stage::Userinfo, None, script).await;
        assert_eq!(times.len(), 1);
    }

    #[test]
    fn concurrent_work_adds_its_requests_and_overlaps_its_waits() {
        let mut a = Attempts {
            count: 2,
            http_time: Duration::from_secs(3),
            retries: 1,
            ambiguous: false,
        };
        let b = Attempts {
            count: 3,
            http_time: Duration::from_secs(5),
            retries: 2,
            ambiguous: false,
        };
        a.add_concurrent(&b);
        assert_eq!((a.count, a.retries), (5, 3));
        assert_eq!(a.http_time, Duration::from_secs(5), "the longer of the two");
    }

    #[tokio::test(start_paused = true)]
    async fn the_time_waited_for_answers_adds_up_over_attempts() {
        let mut attempts = Attempts::default();
        let mut script = vec![resp(503, None), resp(200, None)].into_iter();
        let end = run_stage(
            &policy(3),
            &Limiter::unlimited(),
            Stage::Userinfo,
            None,
            &mut attempts,
            || {
                let next = script.next().expect("script too short");
                async move {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    next
                }
            },
        )
        .await;
        assert!(matches!(end, StageEnd::Success(_)), "{end:?}");
        assert_eq!((attempts.count, attempts.retries), (2, 1));
        assert_eq!(attempts.http_time, Duration::from_millis(200));
    }

    #[test]
    fn an_attempt_spends_the_code_only_on_the_token_stage_when_answered_or_maybe_used() {
        let p = policy(3);
        let end = |stage, outcome: HttpOutcome| {
            let status = outcome.complete_status();
            let judged = judge(&p, &StageCall::new(stage), outcome);
            let e = attempt_end(stage, status, &judged);
            (e.class.is_some(), e.ambiguous, e.code_spent)
        };
        assert_eq!(end(Stage::Token, resp(200, None)), (false, false, true));
        assert_eq!(end(Stage::Userinfo, resp(200, None)), (false, false, false));
        assert_eq!(end(Stage::Token, resp(503, None)), (true, false, false));
        let no_answer = HttpOutcome::Transport(Transport::Timeout);
        assert_eq!(
            end(Stage::Token, no_answer),
            (true, true, true),
            "may have used it"
        );
        let broken = HttpOutcome::Incomplete {
            status: 200,
            cause: Transport::Timeout,
        };
        assert_eq!(end(Stage::Token, broken), (true, false, true), "exchanged");
    }

    #[test]
    fn userinfo_is_a_get_and_the_rest_are_posts() {
        assert_eq!(method(Stage::Userinfo), "GET");
        assert_eq!(method(Stage::Token), "POST");
    }
}
