//! The invariants of the worker's handling of upstream answers, for the `upstream_answer` fuzz
//! target (`fuzz/`) and for `tests/fuzz_corpus.rs`, which replays the committed corpus on stable.
//!
//! An input is one HTTP answer written like a response: a first line `<call> <status>` (`call`
//! one of [`CALLS`]), header lines (only `Retry-After` matters), a blank line, the body. An input
//! without that shape is the body of a `token 200`. The answer is given to the whole
//! verification of a job ([`Verifier::verify`]) for that call, every other call answering as a
//! healthy API would, and the outcome is checked:
//!
//! * nothing panics (a panic would also surface as `internal_error`, which is checked too);
//! * the result's class and stage are the ones docs/contract.md §5 gives for that status at that
//!   stage, restated here independently of `classify`; `retryable` (false once the code is
//!   spent) and the dead letter follow the class; a signal check's failure never changes the verdict, and a check that was not
//!   answered shows as `<check>_unchecked` in `risk_flags`;
//! * no secret is echoed: the code, the api key and the client secret never appear in the result
//!   or its `Debug` form (but for `sub` and `mobile_id`, the upstream's identifiers passed through
//!   verbatim), even when the answer's body carries them, nor does the access token a token
//!   answer issued, nor the one userinfo was called with (the harness's [`ACCESS_TOKEN`]).
//! * `Retry-After`, whatever its text, parses without panicking, and once clamped is never longer
//!   than `retry.max_retry_after` or `retry.max_elapsed`, and pausing a profile for it is safe.

use crate::contract::network_signals::{ForwardingOutcome, RiskFlag, SwapOutcome};
use crate::contract::{ErrorClass, Job, JobResult, Stage, Status};
use crate::secret::Secret;
use crate::silentauth::client::{parse_retry_after, Api, Credentials, HttpOutcome, HttpResponse};
use crate::silentauth::limiter::Limiter;
use crate::silentauth::network_signals::SignalCall;
use crate::silentauth::retry::RetryPolicy;
use crate::verify::{JobContext, Profile, Verifier};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// The calls an input can answer, as written on its first line.
pub const CALLS: [&str; 7] = [
    "token",
    "userinfo",
    "sim_swap_check",
    "sim_swap_date",
    "device_swap_check",
    "device_swap_date",
    "call_forwarding_check",
];

/// The job's code: must never be echoed.
pub const CODE: &str = "SECRET-CODE-1f3a";
/// The profile's api key.
pub const API_KEY: &str = "SECRET-APIKEY-77c1";
/// The profile's client secret.
pub const CLIENT_SECRET: &str = "SECRET-CLIENT-9d20";
/// The access token the healthy token call issues.
pub const ACCESS_TOKEN: &str = "SECRET-TOKEN-4b8e";
const LOGIN_HINT: &str = "4915100000001";

/// One fuzzed answer.
#[derive(Debug, Clone)]
pub struct Answer {
    /// Index into [`CALLS`].
    pub call: usize,
    /// The HTTP status.
    pub status: u16,
    /// The `Retry-After` header's raw bytes.
    pub retry_after: Option<Vec<u8>>,
    /// The body.
    pub body: Vec<u8>,
}

impl Answer {
    /// Reads an input (see the module documentation).
    pub fn decode(bytes: &[u8]) -> Answer {
        Self::parse(bytes).unwrap_or_else(|| Answer {
            call: 0,
            status: 200,
            retry_after: None,
            body: bytes.to_vec(),
        })
    }

    fn parse(bytes: &[u8]) -> Option<Answer> {
        let split = bytes.windows(2).position(|w| w == b"\n\n")?;
        let (head, body) = (&bytes[..split], &bytes[split + 2..]);
        let mut lines = head.split(|b| *b == b'\n');
        let first = std::str::from_utf8(lines.next()?).ok()?;
        let (call, status) = first.split_once(' ')?;
        let call = CALLS.iter().position(|c| *c == call)?;
        let status: u16 = status
            .trim()
            .parse()
            .ok()
            .filter(|s| (100..=599).contains(s))?;
        let retry_after = lines
            .filter_map(|l| {
                let colon = l.iter().position(|b| *b == b':')?;
                l[..colon]
                    .eq_ignore_ascii_case(b"retry-after")
                    .then(|| l[colon + 1..].to_vec())
            })
            .next_back();
        Some(Answer {
            call,
            status,
            retry_after,
            body: body.to_vec(),
        })
    }

    /// The `Retry-After` as the HTTP client reads it: visible ASCII only, else ignored.
    fn header_value(&self) -> Option<String> {
        let raw = self.retry_after.as_deref()?;
        let v = reqwest::header::HeaderValue::from_bytes(raw.trim_ascii()).ok()?;
        v.to_str().ok().map(str::to_owned)
    }

    fn response(&self) -> HttpOutcome {
        HttpOutcome::Response(HttpResponse {
            status: self.status,
            body: self.body.clone(),
            retry_after: self
                .header_value()
                .and_then(|v| parse_retry_after(&v, SystemTime::now())),
        })
    }
}

/// An API that answers `answer` for its call and healthily for every other.
struct ScriptedApi {
    answer: Answer,
}

fn ok(body: serde_json::Value) -> HttpOutcome {
    HttpOutcome::Response(HttpResponse {
        status: 200,
        body: body.to_string().into_bytes(),
        retry_after: None,
    })
}

impl Api for ScriptedApi {
    async fn token(&self, _: &Credentials, _: &Secret, _: &str) -> HttpOutcome {
        if self.answer.call == 0 {
            return self.answer.response();
        }
        ok(
            serde_json::json!({"access_token": ACCESS_TOKEN, "token_type": "Bearer",
            "expires_in": 3600, "scope": "openid"}),
        )
    }

    async fn userinfo(&self, _: &Secret) -> HttpOutcome {
        if self.answer.call == 1 {
            return self.answer.response();
        }
        ok(
            serde_json::json!({"sub": "99dd", "mobile_id": "2d83", "login_hint": LOGIN_HINT,
            "phone_number_verified": "true"}),
        )
    }

    async fn signal(&self, _: &Secret, call: SignalCall, _: &str, _: Option<u32>) -> HttpOutcome {
        if signal_index(call) + 2 == self.answer.call {
            return self.answer.response();
        }
        match call {
            // Swapped, so that the date calls are made too.
            SignalCall::SimSwapCheck | SignalCall::DeviceSwapCheck => {
                ok(serde_json::json!({"swapped": true}))
            }
            SignalCall::SimSwapDate => {
                ok(serde_json::json!({"latestSimChange": "2026-11-26T10:00:00Z"}))
            }
            SignalCall::DeviceSwapDate => ok(serde_json::json!({"latestDeviceChange": null})),
            SignalCall::CallForwardingCheck => ok(serde_json::json!({"active": false})),
        }
    }
}

fn signal_index(call: SignalCall) -> usize {
    match call {
        SignalCall::SimSwapCheck => 0,
        SignalCall::SimSwapDate => 1,
        SignalCall::DeviceSwapCheck => 2,
        SignalCall::DeviceSwapDate => 3,
        SignalCall::CallForwardingCheck => 4,
    }
}

/// Retries that take microseconds, so one input costs a few milliseconds at most.
fn fast_policy() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 2,
        initial_backoff: Duration::from_micros(100),
        max_backoff: Duration::from_micros(100),
        max_elapsed: Duration::from_millis(2),
        max_retry_after: Duration::from_millis(1),
        jitter: false,
        userinfo_max_elapsed: Duration::from_millis(4),
        priority: crate::silentauth::Priority::Normal,
        spent: None,
    }
}

fn verifier(answer: Answer) -> Verifier<ScriptedApi> {
    let credentials = Credentials {
        client_id: "client".into(),
        client_secret: Secret::new(CLIENT_SECRET),
        api_key: Secret::new(API_KEY),
    };
    let profile = Profile::new(credentials, Arc::new(Limiter::unlimited()));
    let profiles = HashMap::from([("default".to_owned(), profile)]);
    Verifier::new(
        ScriptedApi { answer },
        profiles,
        fast_policy(),
        Duration::from_secs(600),
    )
}

fn job() -> Job {
    let v = serde_json::json!({"job_id": "fuzz-1", "login_hint": LOGIN_HINT, "code": CODE,
        "redirect_uri": "https://client.example.com/callback",
        "signals": {"sim_swap": {}, "device_swap": {}, "call_forwarding": {}}});
    Job::decode(v.to_string().as_bytes()).expect("the harness's job is valid")
}

/// Runs the answer in `bytes` through the verification of a job and panics, naming the broken
/// invariant, when the outcome breaks one of those in this module's documentation.
pub fn check_answer(bytes: &[u8]) {
    let answer = Answer::decode(bytes);
    if let Err(violation) = check_retry_after(&answer).and_then(|()| check_outcome(&answer)) {
        panic!(
            "an upstream answer broke an invariant: {violation}\nanswer: {} {}\nretry-after: {:?}\nbody: {:?}",
            CALLS[answer.call],
            answer.status,
            answer.retry_after.as_deref().map(String::from_utf8_lossy),
            String::from_utf8_lossy(&answer.body)
        );
    }
}

fn check_retry_after(answer: &Answer) -> Result<(), String> {
    let Some(value) = answer.header_value() else {
        return Ok(());
    };
    let Some(d) = parse_retry_after(&value, SystemTime::now()) else {
        return Ok(());
    };
    let policy = RetryPolicy::from_config(&crate::config::RetryConfig::default());
    let clamped = policy.clamp_retry_after(d);
    if clamped > policy.max_retry_after || clamped > policy.max_elapsed {
        return Err(format!("Retry-After {value:?} clamped to {clamped:?}"));
    }
    let limiter = Limiter::unlimited();
    limiter.pause_for(d);
    limiter.pause_normal_for(d);
    let _ = crate::clock::from_now(d);
    Ok(())
}

fn check_outcome(answer: &Answer) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(|e| format!("no runtime: {e}"))?;
    let v = verifier(answer.clone());
    let r = runtime
        .block_on(v.verify(&job(), &JobContext::now()))
        .result;
    check_secrets(answer, &r)?;
    if let Some(e) = &r.error {
        // The spent-code rule: once the code is spent, no failure is retryable.
        if e.retryable != (e.class.retryable() && !e.code_spent) {
            return Err(format!(
                "retryable does not follow the class and the spent-code rule: {e:?}"
            ));
        }
        if e.code_spent && !e.description.contains("authenticate again") {
            return Err(format!("a spent code's failure does not say so: {e:?}"));
        }
        if e.class == ErrorClass::InternalError {
            return Err("the verification panicked".into());
        }
    }
    if r.dead_letter_error()
        .is_some_and(|e| !e.class.dead_lettered())
    {
        return Err("a class that is not dead-lettered has a dead letter".into());
    }
    let healthy_2xx = (200..300).contains(&answer.status);
    match answer.call {
        0 | 1 => {
            let stage = if answer.call == 0 {
                Stage::Token
            } else {
                Stage::Userinfo
            };
            check_verdict(&r, stage, answer, healthy_2xx)?;
            if r.risk_flags
                .as_ref()
                .is_none_or(|f| f.iter().any(is_unchecked))
            {
                return Err(format!("healthy checks were flagged: {:?}", r.risk_flags));
            }
        }
        call => {
            if r.status != Status::Verified || r.error.is_some() {
                return Err(format!("a signal answer changed the verdict: {r:?}"));
            }
            check_signal(&r, call, answer.status)?;
        }
    }
    Ok(())
}

/// The class docs/contract.md §5 gives a failed `status` at `stage`, whose body is `body`.
fn expected_class(stage: Stage, status: u16, body: &[u8]) -> ErrorClass {
    // (A2) A token 400 whose `error` rejects the client is about the credentials.
    let error = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned));
    let client = matches!(
        error.as_deref(),
        Some("invalid_client" | "unauthorized_client")
    );
    match (stage, status) {
        (_, 200..=299) => ErrorClass::ProtocolError,
        (Stage::Token, 400) if client => ErrorClass::CredentialsRejected,
        (Stage::Token, 400) => ErrorClass::CodeRejected,
        (_, 401) => ErrorClass::CredentialsRejected,
        (_, 403) => ErrorClass::PermissionDenied,
        (_, 429) => ErrorClass::RateLimited,
        (_, 500..=599) => ErrorClass::UpstreamUnavailable,
        _ => ErrorClass::ProtocolError,
    }
}

fn check_verdict(r: &JobResult, stage: Stage, answer: &Answer, two_xx: bool) -> Result<(), String> {
    let status = answer.status;
    match (r.status, &r.error) {
        (Status::Verified, None) if two_xx => Ok(()),
        (Status::NotVerified, None) if two_xx && stage == Stage::Userinfo => Ok(()),
        (Status::NotVerified, Some(e))
            if two_xx && stage == Stage::Userinfo && e.class == ErrorClass::LoginHintMismatch =>
        {
            Ok(())
        }
        (Status::Failed, Some(e))
            if e.stage == stage && e.class == expected_class(stage, status, &answer.body) =>
        {
            if r.phone_number_verified.is_some() {
                return Err("a failed result has a verdict".into());
            }
            Ok(())
        }
        _ => Err(format!(
            "{stage} {status} ended {:?} with {:?}",
            r.status, r.error
        )),
    }
}

fn is_unchecked(f: &RiskFlag) -> bool {
    matches!(
        f,
        RiskFlag::SimSwapUnchecked
            | RiskFlag::DeviceSwapUnchecked
            | RiskFlag::CallForwardingUnchecked
    )
}

fn check_signal(r: &JobResult, call: usize, status: u16) -> Result<(), String> {
    let report = r.signals.as_ref().ok_or("no signals reported")?;
    let flags = r.risk_flags.as_deref().ok_or("no risk_flags")?;
    let (stage, unchecked_flag, error, unchecked) = match call {
        2..=5 => {
            let (swap, stage, flag) = if call <= 3 {
                (&report.sim_swap, Stage::SimSwap, RiskFlag::SimSwapUnchecked)
            } else {
                (
                    &report.device_swap,
                    Stage::DeviceSwap,
                    RiskFlag::DeviceSwapUnchecked,
                )
            };
            let swap = swap.as_ref().ok_or("a swap check is missing")?;
            let is_date = call == 3 || call == 5;
            if is_date && swap.outcome != SwapOutcome::Swapped {
                return Err(format!("a date answer changed the check: {swap:?}"));
            }
            let unchecked = matches!(
                swap.outcome,
                SwapOutcome::Failed | SwapOutcome::Inconclusive
            );
            (stage, flag, swap.error.clone(), unchecked)
        }
        _ => {
            let fwd = report
                .call_forwarding
                .as_ref()
                .ok_or("the forwarding check is missing")?;
            let unchecked = matches!(
                fwd.outcome,
                ForwardingOutcome::Failed | ForwardingOutcome::Inconclusive
            );
            (
                Stage::CallForwarding,
                RiskFlag::CallForwardingUnchecked,
                fwd.error.clone(),
                unchecked,
            )
        }
    };
    if unchecked != flags.contains(&unchecked_flag) {
        return Err(format!(
            "{stage}: unchecked {unchecked} but flags {flags:?}"
        ));
    }
    if let Some(e) = error {
        let no_data = status == 404 || status == 422;
        if e.stage != stage || (e.class != expected_class(stage, status, b"") && !no_data) {
            return Err(format!("{stage} {status} failed with {e:?}"));
        }
    }
    Ok(())
}

fn check_secrets(answer: &Answer, r: &JobResult) -> Result<(), String> {
    // `sub` and `mobile_id` are the upstream's identifiers, passed through verbatim: an upstream
    // that answers a secret as an identifier echoes it itself; everything the worker writes is
    // checked.
    let mut r = r.clone();
    (r.sub, r.mobile_id) = (None, None);
    let text = format!(
        "{}\n{r:?}",
        serde_json::to_string(&r).map_err(|e| format!("the result does not serialize: {e}"))?
    );
    let mut secrets = vec![CODE, API_KEY, CLIENT_SECRET, ACCESS_TOKEN];
    // A fuzzed token answer's own access token is a secret too.
    let body: Option<serde_json::Value> = serde_json::from_slice(&answer.body).ok();
    let issued = body
        .as_ref()
        .and_then(|b| b.get("access_token"))
        .and_then(|t| t.as_str())
        .filter(|t| answer.call == 0 && t.len() >= 8);
    secrets.extend(issued);
    match secrets.iter().find(|s| text.contains(*s)) {
        Some(s) => Err(format!("the result echoes the secret {s:?}")),
        None => Ok(()),
    }
}
