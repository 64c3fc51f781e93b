//! One job in, one result out: the whole verification of a job, knowing nothing of Kafka.
//!
//! Authorize errors short-circuit with no HTTP call; the code's deadline is checked before every
//! token request; then token, userinfo, the login_hint comparison and the verdict. Once the code
//! is spent (token 2xx, or a final failure after an ambiguous attempt) a failure is final: not
//! retryable, `code_spent`, userinfo runs first in the rate limit with a longer budget, and the
//! job's network-signal checks sent from then on run first too.

use crate::config::{ConcurrencyMode, Config};
use crate::contract::result::SCHEMA_VERSION;
use crate::contract::{ErrorClass, ErrorInfo, Job, JobResult, Stage, Status};
use crate::network_signals::SignalEnv;
use crate::secret::{scrub, Secret};
use crate::silentauth::client::Credentials;
use crate::silentauth::retry::{run_stage_observed, Attempts, HttpObserver, StageCall, StageEnd};
use crate::silentauth::{Api, Concurrency, Limiter, RetryPolicy, TokenGrant, UserInfo};
use chrono::{DateTime, Utc};
use futures::FutureExt;
use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

mod concluded;
mod context;
mod verdict;
pub use concluded::{interrupted_result, invalid_job_result, reused_job_result, LetGo};
use context::millis_between;
use context::record_presentation;
pub use context::{JobContext, PresentationLedger};
pub use verdict::same_number;
use verdict::{authorize_description, expired, internal_error, verdict_of, Verdict};

/// The verdict of one job, plus what the worker measures about it.
#[derive(Debug, Clone)]
pub struct Verification {
    /// The result to publish.
    pub result: JobResult,
    /// Time spent waiting for HTTP answers.
    pub http_time: Duration,
    /// Retries made.
    pub retries: u32,
}

/// One client profile: its credentials, its rate limiter and its concurrency limit.
#[derive(Debug, Clone)]
pub struct Profile {
    /// What the token request authenticates with.
    pub credentials: Credentials,
    /// Shared by every request of the profile.
    pub limiter: Arc<Limiter>,
    /// How many of the profile's jobs call the Silent Auth API at once (a job holds its slot
    /// from its token request to its userinfo answer).
    pub concurrency: Arc<Concurrency>,
    /// Network Signals requests: the same limiter unless the profile sets
    /// `signals_requests_per_second`.
    pub signals_limiter: Arc<Limiter>,
}

impl Profile {
    /// A profile whose Network Signals requests share the Silent Auth limiter.
    pub fn new(credentials: Credentials, limiter: Arc<Limiter>) -> Profile {
        Profile {
            credentials,
            signals_limiter: limiter.clone(),
            limiter,
            concurrency: Arc::new(Concurrency::unlimited()),
        }
    }
}

/// Verifies jobs against the Silent Auth API `A`.
#[derive(Debug)]
pub struct Verifier<A> {
    api: A,
    profiles: HashMap<String, Profile>,
    policy: RetryPolicy,
    code_ttl: Duration,
    observer: Option<Arc<dyn HttpObserver>>,
}

impl<A: Api> Verifier<A> {
    /// A verifier with explicit parts.
    pub fn new(
        api: A,
        profiles: HashMap<String, Profile>,
        policy: RetryPolicy,
        code_ttl: Duration,
    ) -> Self {
        Verifier {
            api,
            profiles,
            policy,
            code_ttl,
            observer: None,
        }
    }

    /// Tells `observer` about every HTTP request sent (the worker's metrics).
    pub fn with_observer(mut self, observer: Arc<dyn HttpObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Each profile by name, e.g. to export its rate-limit wait and concurrency limit.
    pub fn profiles(&self) -> impl Iterator<Item = (&str, &Profile)> {
        self.profiles.iter().map(|(n, p)| (n.as_str(), p))
    }

    /// A verifier for the `[clients]`, `[retry]` and `worker.code_ttl` of `config`.
    pub fn from_config(api: A, config: &Config) -> Self {
        let profiles = config
            .clients
            .iter()
            .map(|(name, c)| {
                let credentials = Credentials {
                    client_id: c.client_id.clone(),
                    client_secret: c.client_secret.clone(),
                    api_key: c.api_key.clone(),
                };
                let mut profile = Profile::new(
                    credentials,
                    Arc::new(Limiter::new(c.requests_per_second, c.burst)),
                );
                if let Some(rps) = c.signals_requests_per_second {
                    profile.signals_limiter = Arc::new(Limiter::new(Some(rps), c.burst));
                }
                let max = config.worker.max_in_flight;
                profile.concurrency = Arc::new(match config.worker.concurrency {
                    ConcurrencyMode::Adaptive => Concurrency::adaptive(max),
                    ConcurrencyMode::Fixed => Concurrency::fixed(max),
                });
                (name.clone(), profile)
            })
            .collect();
        Verifier::new(
            api,
            profiles,
            RetryPolicy::from_config(&config.retry),
            config.worker.code_ttl,
        )
    }

    /// The profiles' limiters (a separate signals limiter too), e.g. to apply an instance's
    /// partition share.
    pub fn limiters(&self) -> impl Iterator<Item = &Arc<Limiter>> {
        self.profiles.values().flat_map(|p| {
            let separate = !Arc::ptr_eq(&p.limiter, &p.signals_limiter);
            std::iter::once(&p.limiter).chain(separate.then_some(&p.signals_limiter))
        })
    }

    /// Verifies one job and runs the network-signal checks it asks for, concurrently. Never
    /// fails: every problem is a class in the result, and a failed check is reported beside the
    /// verdict without changing it.
    pub async fn verify(&self, job: &Job, ctx: &JobContext) -> Verification {
        let mut attempts = Attempts::default();
        let signals = async {
            let (Some(request), Some(profile)) = (&job.signals, self.profiles.get(&job.client))
            else {
                return None;
            };
            // Once the exchange spent the code, the checks go first too: the result waits for them.
            let policy = self.policy.high_once_spent(&ctx.spent);
            let env = SignalEnv {
                api: &self.api,
                api_key: &profile.credentials.api_key,
                limiter: &profile.signals_limiter,
                policy: &policy,
                observer: self.observer.as_deref(),
            };
            // Boxed: three concurrent requests' state, allocated only for jobs that ask for
            // checks instead of inside every job's task.
            Some(Box::pin(env.check_all(request, &job.login_hint)).await)
        };
        // A panic (a bug) ends this job `internal_error` instead of killing its task, so the job
        // still gets a result and a dead letter and its offset moves on.
        let joined = AssertUnwindSafe(async {
            #[cfg(feature = "test-faults")]
            crate::test_faults::inject(job);
            tokio::join!(self.run(job, ctx, &mut attempts), signals)
        })
        .catch_unwind()
        .await;
        // A panic after the code was spent is final too: the spent-code rule below applies.
        let (verdict, signals) = joined.unwrap_or_else(|panic| (internal_error(&*panic), None));
        let (signals, signal_attempts) = signals.unzip();
        if let Some(a) = &signal_attempts {
            attempts.add_concurrent(a);
        }
        let risk_flags = signals.as_ref().map(|s| s.risk_flags());
        let completed_at = Utc::now();
        let Verdict {
            status,
            phone_number_verified,
            userinfo,
            error,
        } = verdict;
        let (sub, mobile_id) = userinfo.map(|u| (u.sub, u.mobile_id)).unwrap_or_default();
        let error = error.map(|e| {
            // The spent-code rule: a failure after the code is spent is final.
            match ctx.spent.get() {
                Some(why) if status == Status::Failed => e.with_code_spent(why.description()),
                _ => e,
            }
        });
        let mut result = JobResult {
            schema_version: SCHEMA_VERSION,
            job_id: job.job_id.clone(),
            status,
            phone_number_verified,
            login_hint: Some(job.login_hint.clone()),
            sub,
            mobile_id,
            state: job.state.clone(),
            attributes: job.attributes.clone(),
            error,
            attempts: attempts.count,
            duplicate: false,
            replay_count: ctx.replay_count,
            received_at: ctx.received_at,
            completed_at,
            duration_ms: millis_between(ctx.received_at, completed_at),
            signals,
            risk_flags,
        };
        self.scrub_secrets(job, &mut result);
        Verification {
            result,
            http_time: attempts.http_time,
            retries: attempts.retries,
        }
    }

    /// A last pass over every error's description and upstream `code` (the verdict's and the
    /// checks'): removes the job's code and the profile's api key and client secret. Upstream
    /// text was already scrubbed before it was shortened ([`crate::silentauth::classify`], which
    /// also knows the access token); this catches any other text that quotes them.
    fn scrub_secrets(&self, job: &Job, result: &mut JobResult) {
        let profile = self.profiles.get(&job.client).map(|p| &p.credentials);
        let secrets: Vec<&str> = job
            .code
            .iter()
            .map(|c| c.expose())
            .chain(profile.map(|c| c.api_key.expose()))
            .chain(profile.map(|c| c.client_secret.expose()))
            .collect();
        let checks = result.signals.iter_mut().flat_map(|s| {
            let swaps = [s.sim_swap.as_mut(), s.device_swap.as_mut()];
            let swaps = swaps.into_iter().flatten().filter_map(|x| x.error.as_mut());
            swaps.chain(s.call_forwarding.as_mut().and_then(|f| f.error.as_mut()))
        });
        for e in result.error.iter_mut().chain(checks) {
            e.description = scrub(&e.description, &secrets);
            e.code = e.code.as_deref().map(|c| scrub(c, &secrets));
        }
    }

    async fn run(&self, job: &Job, ctx: &JobContext, attempts: &mut Attempts) -> Verdict {
        let Some(profile) = self.profiles.get(&job.client) else {
            return Verdict::failed(ErrorInfo::new(
                ErrorClass::InvalidJob,
                Stage::Job,
                format!("client: unknown client profile `{}`", job.client),
            ));
        };
        if let Some(err) = &job.error {
            let description = job
                .error_description
                .clone()
                .unwrap_or_else(|| authorize_description(err).to_owned());
            return Verdict::failed(
                ErrorInfo::new(ErrorClass::AuthorizeRejected, Stage::Authorize, description)
                    .with_code(Some(err.clone())),
            );
        }
        let (Some(code), Some(redirect_uri)) = (&job.code, &job.redirect_uri) else {
            if job.code.is_none() && job.signals.is_some() {
                // Only network signals were asked for: they are the whole result.
                return Verdict {
                    status: Status::SignalsOnly,
                    phone_number_verified: None,
                    userinfo: None,
                    error: None,
                };
            }
            return Verdict::failed(ErrorInfo::new(
                ErrorClass::InvalidJob,
                Stage::Job,
                "a job needs `code` and `redirect_uri` unless it carries `error`",
            ));
        };
        let deadline = code_deadline(job, ctx, self.code_ttl);
        let left = (deadline - Utc::now()).to_std().unwrap_or(Duration::ZERO);
        if left.is_zero() {
            return expired(deadline);
        }
        let presentation = Presentation {
            profile,
            code,
            redirect_uri,
            deadline,
            deadline_at: crate::clock::from_now(left),
        };
        self.exchange(presentation, job, ctx, attempts).await
    }

    /// Presents the code (token), asks userinfo with the access token, and judges the answer.
    async fn exchange(
        &self,
        p: Presentation<'_>,
        job: &Job,
        ctx: &JobContext,
        attempts: &mut Attempts,
    ) -> Verdict {
        // One slot from the token request to the userinfo answer: a job whose code is spent
        // never waits for a slot.
        let concurrency = &*p.profile.concurrency;
        let slot = crate::spans::waited(concurrency.acquire(), crate::spans::concurrency_wait);
        let Ok(slot) = tokio::time::timeout_at(p.deadline_at, slot).await else {
            return expired(p.deadline);
        };
        let creds = &p.profile.credentials;
        let mut secrets = vec![
            p.code.expose(),
            creds.api_key.expose(),
            creds.client_secret.expose(),
        ];
        let grant = match self.present(&p, job, ctx, &secrets, attempts).await {
            Ok(grant) => grant,
            Err(verdict) => return verdict,
        };
        // From here on the code is spent: userinfo goes first and gets the longer budget.
        secrets.push(grant.access_token.expose());
        let call = StageCall {
            secrets: &secrets,
            observer: self.observer.as_deref(),
            ..StageCall::new(Stage::Userinfo)
        };
        let userinfo = run_stage_observed(
            &self.policy.after_spent_code(grant.expires_in),
            &p.profile.limiter,
            call,
            attempts,
            || concurrency.observed(self.api.userinfo(&grant.access_token)),
        )
        .await;
        drop(slot);
        match userinfo {
            StageEnd::Expired => expired(p.deadline),
            StageEnd::Failed(c) => Verdict::failed(c.error_info(Stage::Userinfo)),
            StageEnd::Success(r) => match UserInfo::parse(&r.body) {
                Ok(info) => verdict_of(info, job),
                Err(why) => Verdict::failed(protocol_error(Stage::Userinfo, r.status, why)),
            },
        }
    }

    /// The token stage: records the presentation (with the ledger on), presents the code and
    /// marks it spent as the answer says; the grant, or the job's verdict when there is none.
    async fn present(
        &self,
        p: &Presentation<'_>,
        job: &Job,
        ctx: &JobContext,
        secrets: &[&str],
        attempts: &mut Attempts,
    ) -> Result<TokenGrant, Verdict> {
        let concurrency = &*p.profile.concurrency;
        let creds = &p.profile.credentials;
        let call = StageCall {
            deadline: Some(p.deadline_at),
            secrets,
            observer: self.observer.as_deref(),
            ..StageCall::new(Stage::Token)
        };
        let recorded = AtomicBool::new(false);
        let token = run_stage_observed(&self.policy, &p.profile.limiter, call, attempts, || {
            let request = concurrency.observed(self.api.token(creds, p.code, p.redirect_uri));
            let recorded = &recorded;
            async move {
                if let Err(not_sent) = record_presentation(job, ctx, recorded).await {
                    return not_sent;
                }
                // The request leaves now: from here the code may be used whatever comes back.
                ctx.spent.presented();
                request.await
            }
        })
        .await;
        match token {
            StageEnd::Expired => Err(expired(p.deadline)),
            StageEnd::Failed(c) => {
                if c.exchanged {
                    // A 2xx whose body broke off: the code was used.
                    ctx.spent.exchanged();
                } else if attempts.ambiguous {
                    // An attempt may have used the code: it counts as spent.
                    ctx.spent.ambiguous();
                }
                Err(Verdict::failed(c.error_info(Stage::Token)))
            }
            StageEnd::Success(r) => {
                ctx.spent.exchanged();
                TokenGrant::parse(&r.body)
                    .map_err(|why| Verdict::failed(protocol_error(Stage::Token, r.status, why)))
            }
        }
    }
}

/// What presenting a job's code needs: its profile, the code and redirect_uri, and the deadline
/// (as a time for the result and as an instant for the timers).
#[derive(Debug, Clone, Copy)]
struct Presentation<'a> {
    profile: &'a Profile,
    code: &'a Secret,
    redirect_uri: &'a str,
    deadline: DateTime<Utc>,
    deadline_at: tokio::time::Instant,
}

/// When the job's code can no longer be presented: its issue time (`issued_at`, else the
/// record's timestamp, else when it was received) plus `code_ttl`. An issue time after
/// `received_at` (a skewed clock, a made-up value) counts as `received_at` (A2): it can never
/// stretch a code's life beyond `code_ttl` from when the worker got it.
fn code_deadline(job: &Job, ctx: &JobContext, code_ttl: Duration) -> DateTime<Utc> {
    let issued_at = job
        .issued_at
        .or(ctx.record_time)
        .unwrap_or(ctx.received_at)
        .min(ctx.received_at);
    let ttl = chrono::Duration::from_std(code_ttl).unwrap_or(chrono::Duration::MAX);
    issued_at
        .checked_add_signed(ttl)
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// The result's error for a classified failure of `stage`.
fn protocol_error(stage: Stage, status: u16, why: String) -> ErrorInfo {
    ErrorInfo::new(ErrorClass::ProtocolError, stage, why).with_status(Some(status))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_issue_time_in_the_future_counts_as_received_at() {
        let ctx = JobContext::now();
        let ttl = Duration::from_secs(600);
        let job_issued = |at: Option<DateTime<Utc>>| {
            let mut v = serde_json::json!({"job_id": "j", "login_hint": "381123456789",
                "code": "c", "redirect_uri": "https://cb.example/cb"});
            if let Some(at) = at {
                v["issued_at"] = at.to_rfc3339().into();
            }
            Job::decode(v.to_string().as_bytes()).unwrap()
        };
        let expected = ctx.received_at + chrono::Duration::seconds(600);
        let future = ctx.received_at + chrono::Duration::days(365);
        assert_eq!(
            code_deadline(&job_issued(Some(future)), &ctx, ttl),
            expected
        );
        let past = ctx.received_at - chrono::Duration::seconds(60);
        let d = code_deadline(&job_issued(Some(past)), &ctx, ttl);
        assert_eq!(
            d,
            past + chrono::Duration::seconds(600),
            "a past one is kept"
        );
        // A record timestamp ahead of the worker's clock is held to the same rule.
        let skewed = JobContext {
            record_time: Some(future),
            ..ctx.clone()
        };
        assert_eq!(code_deadline(&job_issued(None), &skewed, ttl), expected);
    }
}
