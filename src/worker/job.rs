//! One job's course, start to end: take the record (copy it out), register its offset, spawn its
//! task; the task decodes and verifies it (through the idempotency cache), builds the result and
//! dead letter, publishes them (or hands them to the transaction committer), finishes and stores
//! the offset, and tells the circuit breaker how it went.

use super::breaker::{CallOutcome, Gatekeeper};
use super::committer::TxnItem;
use super::rebalance::JobConsumer;
use super::state::{JobHold, WorkerState};
use crate::contract::dead_letter::{DeadLetterHeaders, SourceRecord};
use crate::contract::{ErrorInfo, Job, JobResult};
use crate::idempotency::index::{Indexed, Stored};
use crate::idempotency::{fingerprint, Answer, JobKey};
use crate::kafka::consumer::store_offset;
use crate::kafka::producer::{DeadLetterRecord, Output, Publisher, ResultRecord};
use crate::kafka::readback::ResultFetcher;
use crate::secret::mask_msisdn;
use crate::silentauth::{SilentAuthClient, SpentCode};
use crate::telemetry::counters::WorkerCounters;
use crate::telemetry::events::{
    DeadLetterPublished, IdempotencyHit, JobEnded, JobLetGo, JobStarted, JobVerified,
    ProduceFailed, ProduceSucceeded, ResultPublished,
};
use crate::telemetry::traces;
use crate::verify::{
    interrupted_result, invalid_job_result, reused_job_result, JobContext, LetGo,
    PresentationLedger, Verifier,
};
use chrono::{TimeZone, Utc};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// Everything a job task needs.
pub(super) struct JobEnv {
    /// Verifies a decoded job against the API.
    pub(super) verifier: Verifier<SilentAuthClient>,
    /// Publishes results and dead letters.
    pub(super) publisher: Arc<Publisher>,
    /// The shared state: offsets, the idempotency cache.
    pub(super) state: Arc<WorkerState>,
    /// Stores finished offsets.
    pub(super) consumer: Arc<JobConsumer>,
    /// The consumer group, named in dead-letter headers.
    pub(super) group_id: String,
    /// Counters.
    pub(super) stats: Arc<WorkerCounters>,
    /// Set with `exactly_once`: finished jobs go to the transaction committer.
    pub(super) committer: Option<mpsc::Sender<TxnItem>>,
    /// The circuit breaker, told every job's outcome.
    pub(super) breaker: Arc<Gatekeeper>,
    /// Reads earlier results back from the results topic for the idempotency cache.
    pub(super) fetcher: ResultFetcher,
    /// Records each presentation before the token request leaves (`worker.ledger`).
    pub(super) ledger: Option<Arc<dyn PresentationLedger>>,
}

/// A consumed record, copied out of librdkafka's buffer.
pub(super) struct Taken {
    partition: i32,
    offset: i64,
    epoch: u64,
    timestamp_ms: Option<i64>,
    key: Option<Vec<u8>>,
    payload: Option<Vec<u8>>,
    /// The job span's context (the record's own when traces are off).
    traceparent: Option<String>,
    /// The job's trace span (`telemetry::traces`), a child of the record's `traceparent`.
    span: tracing::Span,
    replay_count: u32,
    /// `dlq.previous.*` headers of a replayed job: the earlier failures, kept for audit.
    previous: Vec<(String, Vec<u8>)>,
}

/// Takes a record: copies it out, unless its partition is no longer ours. Its offset is not
/// registered yet: [`start`] does that, so a record held back while the circuit breaker is open
/// keeps the stored offset at or below its own.
pub(super) fn take(state: &WorkerState, m: &BorrowedMessage<'_>) -> Option<Taken> {
    let partition = m.partition();
    let offset = m.offset();
    let epoch = state.epoch(partition)?;
    let span = traces::job_span(&state.jobs_topic, m);
    let mut replay_count = 0;
    let mut previous = Vec::new();
    if let Some(h) = m.headers() {
        replay_count = crate::contract::replay_count_from_headers(
            h.iter().map(|header| (header.key, header.value)),
        );
        for header in h.iter() {
            match header.key {
                k if k.starts_with(crate::contract::dead_letter::header::PREVIOUS_PREFIX) => {
                    previous.push((k.to_owned(), header.value.unwrap_or_default().to_vec()));
                }
                _ => {}
            }
        }
    }
    Some(Taken {
        partition,
        offset,
        epoch,
        timestamp_ms: m.timestamp().to_millis(),
        key: m.key().map(<[u8]>::to_vec),
        payload: m.payload().map(<[u8]>::to_vec),
        traceparent: traces::outgoing_traceparent(&span, m),
        span,
        replay_count,
        previous,
    })
}

/// Starts a job: registers its offset as in flight and spawns its task. A record whose partition
/// was revoked since it was taken is dropped (the next owner consumes it again). `probe` marks
/// the one job the open breaker lets through.
pub(super) fn start(env: &Arc<JobEnv>, taken: Taken, probe: bool) {
    let Some(hold) = env.state.start(taken.partition, taken.epoch, taken.offset) else {
        return;
    };
    if probe {
        // Only the run loop moves the breaker from open to probing, so the gate it just read
        // still holds.
        let started = env.breaker.start_probe();
        debug_assert!(started, "the probe gate closed under the run loop");
    }
    JobStarted.emit(&env.stats);
    traces::record_group(&taken.span, &env.group_id);
    let span = tracing::info_span!(
        "job",
        partition = taken.partition,
        offset = taken.offset,
        probe,
        job_id = tracing::field::Empty
    );
    // The trace span outside the log span: `Span::current()` in the job is the log span.
    let traced = taken.span.clone();
    let task = job_task(env.clone(), taken, hold, probe).instrument(span);
    tokio::spawn(task.instrument(traced));
}

/// Runs one job to the end: its outputs acknowledged (or committed) and its offset finished.
/// Cancelling `hold`'s token lets it go (see [`run_job`]); the task counts among its
/// partition's live tasks until it ends. `probe` marks the one job the open circuit breaker let
/// through.
async fn job_task(env: Arc<JobEnv>, taken: Taken, hold: JobHold, probe: bool) {
    let _in_flight = InFlight(&env);
    let outcome = run_job(&env, taken, &hold.token).await;
    env.breaker.finished(outcome, probe);
}

/// Counts a job out of `in_flight` however its task ends, a panic included, so shutdown never
/// waits for a task that is gone. (A panic in verification is already caught there and ends
/// the job `internal_error`; this guards the plumbing around it.)
struct InFlight<'a>(&'a JobEnv);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        JobEnded.emit(&self.0.stats);
        self.0.state.finished.notify_one();
    }
}

/// Runs the job; its outcome, or `None` when it stopped unpublished (let go before its code
/// was presented, or fenced) or was concluded `interrupted`.
///
/// Letting go (`let_go` cancelled: a revoke or a shutdown whose grace ran out) stops the
/// verification. A job whose code was never presented stops unpublished, its offset unfinished,
/// and the next owner takes it untouched; a job whose token request was sent is concluded here
/// with a final `interrupted` result and dead letter, published and finished like any other, so
/// the next owner's warm-up finds it and nothing presents the code again (contract A2).
async fn run_job(env: &JobEnv, taken: Taken, let_go: &CancellationToken) -> Option<CallOutcome> {
    // Held until the job's outputs are acknowledged (or it is abandoned): from the moment its code
    // is spent until then, the job counts in `silentauth_codes_at_risk`.
    let spent = SpentCode::counted(env.stats.codes_at_risk.clone());
    let ctx = context(env, &taken, &spent);
    let out = tokio::select! {
        biased;
        _ = let_go.cancelled() => interrupted(env, &taken, &ctx)?,
        out = process(env, &taken, &ctx) => out.unwrap_or_default(),
    };
    let concluded = out.interrupted;
    let stored = match &env.committer {
        None => {
            let stored = publish(env, &out, taken.traceparent.as_deref()).await;
            let position = env.state.finish(taken.partition, taken.epoch, taken.offset);
            if let Some(pos) = position {
                store_offset(&*env.consumer, &env.state.jobs_topic, taken.partition, pos);
            }
            stored
        }
        Some(committer) => {
            let (done, committed) = oneshot::channel();
            let item = TxnItem {
                result: out.result.clone(),
                fingerprint: out.fingerprint,
                dead_letter: out.dead_letter.clone(),
                traceparent: taken.traceparent.clone(),
                partition: taken.partition,
                epoch: taken.epoch,
                offset: taken.offset,
                done,
            };
            if committer.send(item).await.is_err() {
                // The committer stopped (fenced): the worker is shutting down with an error.
                return None;
            }
            committed.await.ok()?
        }
    };
    index(env, &out, stored);
    traces::record_job_end(out.result.as_ref(), out.error.as_ref(), taken.replay_count);
    if let Some(r) = &out.result {
        ResultPublished {
            status: r.status,
            class: r.error.as_ref().map(|e| e.class),
        }
        .emit(&env.stats);
    }
    if let Some(e) = &out.error {
        DeadLetterPublished { class: e.class }.emit(&env.stats);
    }
    drop(spent);
    if concluded {
        // Not an answer of the API: the circuit breaker learns nothing from it.
        return None;
    }
    Some(CallOutcome {
        class: out
            .result
            .as_ref()
            .and_then(|r| r.error.as_ref())
            .or(out.error.as_ref())
            .map(|e| e.class),
        dead_lettered: out.error.is_some(),
        duplicate: out.result.as_ref().is_some_and(|r| r.duplicate),
    })
}

/// Tells the redelivery index where a result of a decoded job was published.
fn index(env: &JobEnv, out: &Outputs, stored: Option<Stored>) {
    let (Some(r), Some(fingerprint), Some(stored)) = (&out.result, out.fingerprint, stored) else {
        return;
    };
    let indexed = Indexed {
        fingerprint: Some(fingerprint),
        replay_count: r.replay_count,
        stored: Some(stored),
    };
    let now = Utc::now().timestamp_millis();
    if let Err(full) = env.state.cache.index(&r.job_id, indexed, now) {
        // The run loop starts a job only while every job in flight fits: a bug if reached.
        tracing::error!(
            job_id = %r.job_id,
            max = full.max_entries,
            "the redelivery index is full; raise worker.idempotency_index_size"
        );
    }
}

/// What one job produces.
#[derive(Default)]
struct Outputs {
    result: Option<JobResult>,
    /// The fingerprint of the decoded job the result answers, for the redelivery index.
    fingerprint: Option<u64>,
    /// The dead-lettered error, when the job is dead-lettered.
    error: Option<ErrorInfo>,
    dead_letter: Option<DeadLetterRecord>,
    /// Concluded `interrupted` by this worker, not answered by the API.
    interrupted: bool,
}

/// Publishes until acknowledged: a result that cannot be produced is never marked done. While
/// it fails, `/readyz` answers 503 naming the topic; the first success clears that.
async fn publish(env: &JobEnv, out: &Outputs, traceparent: Option<&str>) -> Option<Stored> {
    let mut backoff = Duration::from_millis(100);
    let result = out.result.as_ref().map(|result| ResultRecord {
        result,
        fingerprint: out.fingerprint,
    });
    let publishing = crate::spans::publish(result.is_some(), out.dead_letter.is_some());
    let stored = loop {
        match env
            .publisher
            .publish(result, out.dead_letter.as_ref(), traceparent)
            .instrument(publishing.clone())
            .await
        {
            Ok(stored) => break stored,
            Err(e) => {
                ProduceFailed {
                    key: e.output.key(),
                    error: &e,
                    retry_in: backoff,
                }
                .emit(&env.stats);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    };
    ProduceSucceeded.emit(&env.stats);
    let published = [
        (Output::Results, out.result.is_some()),
        (Output::DeadLetter, out.dead_letter.is_some()),
    ];
    for (output, _) in published.into_iter().filter(|(_, sent)| *sent) {
        // A topic just written to exists, whatever an earlier probe said.
        let cleared = env.stats.clear_unready("publish", output.key())
            | env.stats.clear_unready("probe", output.key());
        if cleared {
            tracing::info!(
                key = output.key(),
                topic = env.publisher.topic(output),
                "publishing works again"
            );
        }
    }
    stored
}

/// What the verification knows of `taken` besides its content, received now.
fn context(env: &JobEnv, taken: &Taken, spent: &SpentCode) -> JobContext {
    JobContext {
        received_at: Utc::now(),
        replay_count: taken.replay_count,
        record_time: taken
            .timestamp_ms
            .and_then(|ms| Utc.timestamp_millis_opt(ms).single()),
        spent: spent.clone(),
        ledger: env.ledger.clone(),
    }
}

/// The outputs of a job let go before its answer was known: `None` when its code was never
/// presented (it is handed over untouched), else its final `interrupted` result and dead letter.
fn interrupted(env: &JobEnv, taken: &Taken, ctx: &JobContext) -> Option<Outputs> {
    let stopping = env
        .state
        .stopping
        .load(std::sync::atomic::Ordering::Acquire);
    let (why, reason) = match stopping {
        true => (LetGo::ShuttingDown, "shutdown"),
        false => (LetGo::Revoked, "revoke"),
    };
    // A presented job decoded, or its code would not have been presented.
    let job = Job::decode(taken.payload.as_deref().unwrap_or_default())
        .ok()
        .filter(|_| ctx.spent.presentations() > 0);
    JobLetGo {
        job_id: job.as_ref().map(|j| j.job_id.as_str()),
        interrupted: job.is_some(),
        reason,
    }
    .emit(&env.stats);
    let job = job?;
    let fingerprint = fingerprint(&job);
    let result = conclude_interrupted(env, &job, ctx, why, fingerprint);
    let error = result.error.clone();
    let dead_letter = error
        .as_ref()
        .map(|e| dead_letter(env, taken, e, result.attempts));
    Some(Outputs {
        result: Some(result),
        fingerprint: Some(fingerprint),
        error,
        dead_letter,
        interrupted: true,
    })
}

/// Decodes and verifies one record, and builds its result and dead letter.
async fn process(env: &JobEnv, taken: &Taken, ctx: &JobContext) -> Option<Outputs> {
    let ctx = ctx.clone();
    let payload = taken.payload.as_deref().unwrap_or_default();
    let (result, fingerprint, error) = match Job::decode(payload) {
        Err(failure) => {
            let result = invalid_job_result(&failure, &ctx);
            let error = failure.error_info();
            tracing::warn!(job_id = failure.job_id.as_deref().unwrap_or("<unreadable>"), error = %failure.error, "invalid job");
            (result, None, Some(error))
        }
        Ok(job) => {
            tracing::Span::current().record("job_id", job.job_id.as_str());
            let (result, fingerprint) = answer(env, &job, &ctx).await?;
            tracing::debug!(
                login_hint = %mask_msisdn(&job.login_hint),
                status = result.status.as_str(),
                class = result.error.as_ref().map(|e| e.class.as_str()),
                duplicate = result.duplicate,
                "verified"
            );
            let error = result
                .dead_letter_error()
                .filter(|_| !result.duplicate)
                .cloned();
            (Some(result), fingerprint, error)
        }
    };
    let attempts = result.as_ref().map_or(0, |r| r.attempts);
    let dead_letter = error.as_ref().map(|e| dead_letter(env, taken, e, attempts));
    Some(Outputs {
        result,
        fingerprint,
        error,
        dead_letter,
        interrupted: false,
    })
}

/// A decoded job's result through the idempotency cache, and the fingerprint to index it by
/// (`None`: not to be indexed); `None` when the job was answered earlier and that result
/// cannot be read back (it stands; nothing is published or presented again).
async fn answer(env: &JobEnv, job: &Job, ctx: &JobContext) -> Option<(JobResult, Option<u64>)> {
    let key = JobKey {
        job_id: &job.job_id,
        replay_count: ctx.replay_count,
        fingerprint: fingerprint(job),
    };
    let verify = || async {
        // Boxed: the task of every job in flight (or waiting for a slot) would otherwise hold
        // room for its verification several times over (20 KB a task; 2.7 KB plus 3.5 KB while
        // verifying).
        let out = Box::pin(env.verifier.verify(job, ctx)).await;
        JobVerified {
            job_id: &job.job_id,
            requests: out.result.attempts,
            retries: out.retries,
            http_time: out.http_time,
        }
        .emit(&env.stats);
        out.result
    };
    let read_back = |at| env.fetcher.read_async(at, &job.job_id);
    match env.state.cache.run(&key, verify, read_back).await {
        Answer::Verified(r) => Some((r, Some(key.fingerprint))),
        Answer::Duplicate(mut r) => {
            r.duplicate = true;
            crate::spans::idempotency_hit();
            IdempotencyHit.emit(&env.stats);
            Some((r, Some(key.fingerprint)))
        }
        Answer::Reused => {
            tracing::warn!(job_id = %job.job_id, "job_id reused for a different verification");
            Some((reused_job_result(job, ctx), None))
        }
        Answer::Presented => {
            tracing::warn!(
                job_id = %job.job_id,
                "the job's code was recorded as presented by a worker that stopped before publishing its result; it ends interrupted"
            );
            let result = conclude_interrupted(env, job, ctx, LetGo::Recorded, key.fingerprint);
            Some((result, Some(key.fingerprint)))
        }
        Answer::Gone(at) => {
            tracing::warn!(
                job_id = %job.job_id,
                partition = at.partition,
                offset = at.offset,
                "the job was answered before and its result is gone from the results topic (retention shorter than worker.code_ttl?); it ends interrupted"
            );
            let result = conclude_interrupted(env, job, ctx, LetGo::ResultGone, key.fingerprint);
            Some((result, Some(key.fingerprint)))
        }
    }
}

/// `job`'s final `interrupted` result, cached at once (under the `fingerprint` of its code and
/// number) so a copy of the job that comes again to this worker is answered with it.
fn conclude_interrupted(
    env: &JobEnv,
    job: &Job,
    ctx: &JobContext,
    why: LetGo,
    fingerprint: u64,
) -> JobResult {
    let result = interrupted_result(job, ctx, why);
    env.state.cache.remember(&result, Some(fingerprint));
    result
}

/// The dead letter of a job that failed with `error` after `attempts` HTTP attempts: the record
/// as consumed, with headers saying where it came from and why it failed.
fn dead_letter(env: &JobEnv, taken: &Taken, error: &ErrorInfo, attempts: u32) -> DeadLetterRecord {
    let source = SourceRecord {
        topic: env.state.jobs_topic.clone(),
        partition: taken.partition,
        offset: taken.offset,
        timestamp_ms: taken.timestamp_ms,
        traceparent: taken.traceparent.clone(),
    };
    DeadLetterRecord {
        key: taken.key.clone(),
        value: taken.payload.clone(),
        headers: DeadLetterHeaders::for_failure(
            &source,
            error,
            attempts,
            &env.group_id,
            taken.replay_count,
            Utc::now(),
        )
        .to_headers(),
        audit_headers: taken.previous.clone(),
    }
}
