//! The network-signal checks of one job (SIM swap, device swap, call forwarding), run beside its
//! verification with the same retry rules, knowing nothing of Kafka.
//!
//! A 404 (the operator has no data for the number) — or CAMARA's 422 `SERVICE_NOT_APPLICABLE` —
//! is *inconclusive*, not a failure. A swap check that says `swapped` is followed by its
//! retrieve-date call for `latest_change`; a failing date call leaves the outcome and a null date.

use crate::contract::network_signals::{
    e164, ForwardingOutcome, ForwardingSignal, SignalsReport, SignalsRequest, SwapCheck,
    SwapOutcome, SwapSignal,
};
use crate::contract::{ErrorClass, ErrorInfo};
use crate::secret::Secret;
use crate::silentauth::network_signals::{parse_check, parse_date};
use crate::silentauth::retry::{run_stage_observed, Attempts, HttpObserver, StageCall, StageEnd};
use crate::silentauth::{Api, Classification, Limiter, RetryPolicy, SignalCall};

/// What the checks of one job run with: the job's client profile and the worker's policy.
#[derive(Debug, Clone, Copy)]
pub struct SignalEnv<'a, A> {
    /// The HTTP API.
    pub api: &'a A,
    /// The profile's `apiKey`.
    pub api_key: &'a Secret,
    /// The profile's limiter (or its separate signals limiter).
    pub limiter: &'a Limiter,
    /// The retry rules of docs/contract.md §5 (signals are retried like userinfo), with the
    /// job's spent code ([`RetryPolicy::high_once_spent`]): a check sent after the exchange takes
    /// the high lane.
    pub policy: &'a RetryPolicy,
    /// Told about every request, for metrics.
    pub observer: Option<&'a dyn HttpObserver>,
}

/// How one call ended.
enum Answer {
    /// A 2xx status and body.
    Body(u16, Vec<u8>),
    /// The operator has no data for the number.
    NoData,
    /// A failure with its class.
    Failed(ErrorInfo),
}

impl<A: Api> SignalEnv<'_, A> {
    /// Runs the checks `request` asks for, concurrently, for `login_hint` (sent in E.164).
    /// Returns the report and the requests made.
    pub async fn check_all(
        &self,
        request: &SignalsRequest,
        login_hint: &str,
    ) -> (SignalsReport, Attempts) {
        let phone = e164(login_hint);
        let sim = async {
            match request.sim_swap {
                Some(c) => Some(self.swap(SwapKind::Sim, c, &phone).await),
                None => None,
            }
        };
        let device = async {
            match request.device_swap {
                Some(c) => Some(self.swap(SwapKind::Device, c, &phone).await),
                None => None,
            }
        };
        let forwarding = async {
            match request.call_forwarding {
                true => Some(self.forwarding(&phone).await),
                false => None,
            }
        };
        let (sim, device, forwarding) = tokio::join!(sim, device, forwarding);
        let mut total = Attempts::default();
        let mut add = |a: &Attempts| total.add_concurrent(a);
        let report = SignalsReport {
            sim_swap: sim.map(|(s, a)| {
                add(&a);
                s
            }),
            device_swap: device.map(|(s, a)| {
                add(&a);
                s
            }),
            call_forwarding: forwarding.map(|(s, a)| {
                add(&a);
                s
            }),
        };
        (report, total)
    }

    async fn swap(&self, kind: SwapKind, check: SwapCheck, phone: &str) -> (SwapSignal, Attempts) {
        let mut attempts = Attempts::default();
        let (check_call, date_call) = kind.calls();
        let answer = self
            .call(
                check_call,
                phone,
                Some(check.max_age_minutes),
                &mut attempts,
            )
            .await;
        let (outcome, error) = match answer {
            Answer::Body(status, body) => match parse_check(check_call, &body) {
                Ok(true) => (SwapOutcome::Swapped, None),
                Ok(false) => (SwapOutcome::NotSwapped, None),
                Err(why) => (
                    SwapOutcome::Failed,
                    Some(protocol_error(check_call, status, why)),
                ),
            },
            Answer::NoData => (SwapOutcome::Inconclusive, None),
            Answer::Failed(e) => (SwapOutcome::Failed, Some(e)),
        };
        let latest_change = if outcome == SwapOutcome::Swapped {
            match self.call(date_call, phone, None, &mut attempts).await {
                Answer::Body(_, body) => parse_date(date_call, &body).ok().flatten(),
                Answer::NoData | Answer::Failed(_) => None,
            }
        } else {
            None
        };
        let signal = SwapSignal {
            outcome,
            latest_change,
            max_age_minutes: check.max_age_minutes,
            error,
        };
        (signal, attempts)
    }

    async fn forwarding(&self, phone: &str) -> (ForwardingSignal, Attempts) {
        let mut attempts = Attempts::default();
        let call = SignalCall::CallForwardingCheck;
        let (outcome, error) = match self.call(call, phone, None, &mut attempts).await {
            Answer::Body(status, body) => match parse_check(call, &body) {
                Ok(true) => (ForwardingOutcome::Active, None),
                Ok(false) => (ForwardingOutcome::Inactive, None),
                Err(why) => (
                    ForwardingOutcome::Failed,
                    Some(protocol_error(call, status, why)),
                ),
            },
            Answer::NoData => (ForwardingOutcome::Inconclusive, None),
            Answer::Failed(e) => (ForwardingOutcome::Failed, Some(e)),
        };
        (ForwardingSignal { outcome, error }, attempts)
    }

    /// One call with the retry rules; no code deadline applies (nothing is spent).
    async fn call(
        &self,
        call: SignalCall,
        phone: &str,
        max_age_minutes: Option<u32>,
        attempts: &mut Attempts,
    ) -> Answer {
        let stage = call.stage();
        let secrets = [self.api_key.expose()];
        let stage_call = StageCall {
            secrets: &secrets,
            observer: self.observer,
            ..StageCall::new(stage)
        };
        let end = run_stage_observed(self.policy, self.limiter, stage_call, attempts, || {
            self.api.signal(self.api_key, call, phone, max_age_minutes)
        })
        .await;
        match end {
            StageEnd::Success(r) => Answer::Body(r.status, r.body),
            StageEnd::Failed(c) if no_data(&c) => Answer::NoData,
            StageEnd::Failed(c) => Answer::Failed(c.error_info(stage)),
            StageEnd::Expired => Answer::Failed(ErrorInfo::new(
                ErrorClass::UpstreamUnavailable,
                stage,
                "no request could be sent",
            )),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum SwapKind {
    Sim,
    Device,
}

impl SwapKind {
    fn calls(self) -> (SignalCall, SignalCall) {
        match self {
            SwapKind::Sim => (SignalCall::SimSwapCheck, SignalCall::SimSwapDate),
            SwapKind::Device => (SignalCall::DeviceSwapCheck, SignalCall::DeviceSwapDate),
        }
    }
}

/// 404 (`NOT_FOUND`, `IDENTIFIER_NOT_FOUND`), or 422 `SERVICE_NOT_APPLICABLE`: no data.
fn no_data(c: &Classification) -> bool {
    match c.http_status {
        Some(404) => true,
        Some(422) => c.code.as_deref() == Some("SERVICE_NOT_APPLICABLE"),
        _ => false,
    }
}

fn protocol_error(call: SignalCall, status: u16, why: String) -> ErrorInfo {
    ErrorInfo::new(ErrorClass::ProtocolError, call.stage(), why).with_status(Some(status))
}
