//! Results concluded without an answer of the API: a job that could not be decoded, a job let go
//! after its code was presented (`interrupted`), a job_id reused for another verification.

use super::context::{millis_between, JobContext};
use crate::contract::job::DecodeFailure;
use crate::contract::result::SCHEMA_VERSION;
use crate::contract::{ErrorClass, ErrorInfo, Job, JobResult, Stage, Status};
use chrono::Utc;

/// The failed result of a job that could not be decoded (`invalid_job`), when its `job_id`
/// could be read.
pub fn invalid_job_result(failure: &DecodeFailure, ctx: &JobContext) -> Option<JobResult> {
    let job_id = failure.job_id.clone()?;
    Some(failed(
        job_id,
        failure.login_hint.clone(),
        failure.error_info(),
        0,
        ctx,
    ))
}

/// Why a job whose code was presented had to be let go before its answer was known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LetGo {
    /// Its partition was revoked and `worker.revoke_grace` ran out.
    Revoked,
    /// The worker was stopping and `worker.shutdown_grace` ran out.
    ShuttingDown,
    /// A redelivered job whose code was recorded as presented but that has no result (the
    /// instance that presented it stopped without publishing, e.g. a crash).
    Recorded,
    /// A job answered before whose result is no longer on the results topic (its retention
    /// shorter than `worker.code_ttl`): its code was used, and the earlier verdict is lost.
    ResultGone,
}

impl LetGo {
    fn description(self) -> &'static str {
        match self {
            LetGo::Revoked => {
                "the job's partition was revoked and worker.revoke_grace ran out after its code was presented, before the answer was known"
            }
            LetGo::ShuttingDown => {
                "the worker stopped and worker.shutdown_grace ran out after the job's code was presented, before the answer was known"
            }
            LetGo::Recorded => {
                "the job's code was recorded as presented by a worker that stopped before publishing its result"
            }
            LetGo::ResultGone => {
                "the job was answered before, but its result is no longer on the results topic (retention shorter than worker.code_ttl)"
            }
        }
    }
}

/// The final `interrupted` result of `job` (contract A2): its code was presented (`spent` says
/// whether it was also exchanged) and the worker let it go before the answer was known. Never
/// retryable, dead-lettered with `dlq.code_spent: true`; nothing presents the code again.
pub fn interrupted_result(job: &Job, ctx: &JobContext, why: LetGo) -> JobResult {
    let stage = if ctx.spent.get() == Some(crate::silentauth::Spent::Exchanged) {
        Stage::Userinfo
    } else {
        Stage::Token
    };
    let error = ErrorInfo::new(ErrorClass::Interrupted, stage, why.description()).with_code_spent(
        "the authorization code may have been used and cannot be presented again: the user has to authenticate again",
    );
    failed_job(job, ctx, error, ctx.spent.presentations())
}

/// The result of a job whose `job_id` was already answered for another code or number
/// (contract A2): not a redelivery, so it never gets the earlier verdict; `invalid_job`,
/// dead-lettered, and no HTTP call is made.
pub fn reused_job_result(job: &Job, ctx: &JobContext) -> JobResult {
    let error = ErrorInfo::new(
        ErrorClass::InvalidJob,
        Stage::Job,
        "job_id reused for a different verification: it was answered before for another code or login_hint",
    );
    failed_job(job, ctx, error, 0)
}

/// The failed result of a decoded `job` with `error` after `attempts` HTTP requests.
fn failed_job(job: &Job, ctx: &JobContext, error: ErrorInfo, attempts: u32) -> JobResult {
    JobResult {
        state: job.state.clone(),
        attributes: job.attributes.clone(),
        ..failed(
            job.job_id.clone(),
            Some(job.login_hint.clone()),
            error,
            attempts,
            ctx,
        )
    }
}

/// A failed result of `job_id` with `error` after `attempts` HTTP requests, nothing echoed.
fn failed(
    job_id: String,
    login_hint: Option<String>,
    error: ErrorInfo,
    attempts: u32,
    ctx: &JobContext,
) -> JobResult {
    let completed_at = Utc::now();
    JobResult {
        schema_version: SCHEMA_VERSION,
        job_id,
        status: Status::Failed,
        phone_number_verified: None,
        login_hint,
        sub: None,
        mobile_id: None,
        state: None,
        attributes: Default::default(),
        error: Some(error),
        attempts,
        duplicate: false,
        replay_count: ctx.replay_count,
        received_at: ctx.received_at,
        completed_at,
        duration_ms: millis_between(ctx.received_at, completed_at),
        signals: None,
        risk_flags: None,
    }
}
