//! What the worker knows about a job besides its content.

use crate::contract::Job;
use crate::silentauth::{HttpOutcome, SpentCode, Transport};
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Where a job's presentation is recorded durably before its token request leaves, so that a
/// job redelivered after a crash, whose code was recorded but has no result, is concluded
/// `interrupted` instead of presented again (contract A2; the worker's is a Kafka topic).
pub trait PresentationLedger: Send + Sync + std::fmt::Debug {
    /// Records that `job`'s code (delivered with `replay_count`) is about to be presented;
    /// done once the record is durable.
    fn record<'a>(&'a self, job: &'a Job, replay_count: u32) -> BoxFuture<'a, Result<(), String>>;
}

/// What the worker knows about a job besides its content.
#[derive(Debug, Clone)]
pub struct JobContext {
    /// When the worker consumed the job.
    pub received_at: DateTime<Utc>,
    /// From the `dlq.replay_count` header (0 for a first delivery).
    pub replay_count: u32,
    /// The record's timestamp: the code's issue time when the job has no `issued_at`.
    pub record_time: Option<DateTime<Utc>>,
    /// Whether the job's code is spent: the verifier marks it, the caller reads it (and keeps
    /// a clone until the result is acknowledged, for the codes-at-risk gauge).
    pub spent: SpentCode,
    /// Records the presentation before the token request leaves; `None`: not recorded.
    pub ledger: Option<Arc<dyn PresentationLedger>>,
}

impl JobContext {
    /// A context for a job received now.
    pub fn now() -> JobContext {
        JobContext {
            received_at: Utc::now(),
            replay_count: 0,
            record_time: None,
            spent: SpentCode::new(),
            ledger: None,
        }
    }
}

pub(super) fn millis_between(a: DateTime<Utc>, b: DateTime<Utc>) -> u64 {
    (b - a).num_milliseconds().max(0) as u64
}

/// Records in the ledger (if any, and unless `recorded` says it was) that the job's code is about
/// to be presented, right before its token request leaves (after its rate-limit permit, so a job
/// still waiting for one has recorded nothing). `Err` is the attempt's outcome when the record
/// failed: the request is not sent (a failure before sending, retried like one).
pub(super) async fn record_presentation(
    job: &Job,
    ctx: &JobContext,
    recorded: &AtomicBool,
) -> Result<(), HttpOutcome> {
    let Some(ledger) = ctx.ledger.as_deref() else {
        return Ok(());
    };
    if recorded.load(Ordering::Acquire) {
        return Ok(());
    }
    // From here the record may land even if this job is let go before its answer: the job then
    // ends `interrupted` here, as the next owner would conclude from the ledger.
    ctx.spent.recording();
    match ledger.record(job, ctx.replay_count).await {
        Ok(()) => {
            recorded.store(true, Ordering::Release);
            Ok(())
        }
        Err(e) => {
            tracing::warn!(
                job_id = %job.job_id,
                error = %e,
                "cannot record the presentation; the token request is not sent"
            );
            Err(HttpOutcome::Transport(Transport::Connect(format!(
                "the presentation ledger could not record the presentation: {e}"
            ))))
        }
    }
}
