//! One job's course, start to end: take the record (copy it out), register its offset, spawn its
//! task; the task decodes and verifies it (through the idempotency cache), builds the result and
//! dead letter, publishes them (or hands them to the transaction committer), finishes and stores
//! the offset, and tells the circuit breaker how it went.

use super::breaker::{CallOutcome, Gatekeeper};
use super::committer::TxnItem;
use super::rebalance::JobConsumer;
use super::state::{JobHold, WorkerState};
use crate::contract::{Job, JobRecord, JobResult, Origin, Publication};
use crate::idempotency::index::{Indexed, Stored};
use crate::idempotency::{fingerprint, Answer, JobKey};
use crate::kafka::offsets::Ticket;
use crate::kafka::producer::{Output, Publisher};
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
    pub(super) counters: Arc<WorkerCounters>,
    /// Set with `exactly_once`: finished jobs go to the transaction committer.
    pub(super) committer: Option<mpsc::Sender<TxnItem>>,
    /// The circuit breaker, told every job's outcome.
    pub(super) breaker: Arc<Gatekeeper>,
    /// Reads earlier results back from the results topic for the idempotency cache.
    pub(super) fetcher: ResultFetcher,
    /// Records each presentation before the token request leaves (`worker.ledger`).
    pub(super) ledger: Option<Arc<dyn PresentationLedger>>,
}

/// A consumed record, copied out of librdkafka's buffer, with its place in the offset tracker.
pub(super) struct Taken {
    ticket: Ticket,
    record: JobRecord,
    /// The job's trace span (`telemetry::traces`), a child of the record's `traceparent`; the
    /// record carries this span's context as its `traceparent` (the record's own when traces
    /// are off).
    span: tracing::Span,
}

/// Takes a record: copies it out, unless its partition is no longer ours. Its offset is not
/// registered yet: [`start`] does that, so a record held back while the circuit breaker is open
/// keeps the stored offset at or below its own.
pub(super) fn take(state: &WorkerState, m: &BorrowedMessage<'_>) -> Option<Taken> {
    let ticket = state.ticket(m.partition(), m.offset())?;
    let span = traces::job_span(&state.jobs_topic, m);
    let headers = m.headers().into_iter().flat_map(|h| h.iter());
    let mut record = JobRecord::new(
        m.partition(),
        m.offset(),
        m.timestamp().to_millis(),
        m.key(),
        m.payload(),
        headers.map(|h| (h.key, h.value)),
    );
    record.traceparent = traces::outgoing_traceparent(&span, m);
    Some(Taken {
        ticket,
        record,
        span,
    })
}

/// Starts a job: registers its offset as in flight and spawns its task. A record whose partition
/// was revoked since it was taken is dropped (the next owner consumes it again). `probe` marks
/// the one job the open breaker lets through.
pub(super) fn start(env: &Arc<JobEnv>, taken: Taken, probe: bool) {
    let Some(hold) = env.state.start(taken.ticket) else {
        return;
    };
    if probe {
        // Only the run loop moves the breaker from open to probing, so the gate it just read
        // still holds.
        let started = env.breaker.start_readiness_check();
        debug_assert!(started, "the probe gate closed under the run loop");
    }
    JobStarted.emit(&env.counters);
    traces::record_group(&taken.span, &env.group_id);
    let span = tracing::info_span!(
        "job",
        partition = taken.ticket.partition,
        offset = taken.ticket.offset,
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
        JobEnded.emit(&self.0.counters);
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
    let spent = SpentCode::counted(env.counters.codes_at_risk.clone());
    let ctx = context(env, &taken.record, &spent);
    let publication = tokio::select! {
        biased;
        _ = let_go.cancelled() => interrupted(env, &taken.record, &ctx)?,
        p = process(env, &taken.record, &ctx) => p,
    };
    let stored = deliver(env, taken.ticket, &publication).await?;
    index(env, &publication, stored);
    traces::record_job_end(&publication, taken.record.replay_count);
    if let Some(r) = publication.result() {
        ResultPublished {
            status: r.status,
            class: r.error.as_ref().map(|e| e.class),
        }
        .emit(&env.counters);
    }
    if let Some(d) = &publication.dead_letter {
        DeadLetterPublished { class: d.class }.emit(&env.counters);
    }
    drop(spent);
    CallOutcome::of(&publication)
}

/// Delivers a job's publication and finishes its ticket: published until acknowledged, then
/// the offset finished and stored (at-least-once); or handed to the transaction committer,
/// which commits it with the offsets (exactly-once). Where its result lies; `None` when the
/// committer stopped (fenced: the worker is shutting down with an error).
async fn deliver(
    env: &JobEnv,
    ticket: Ticket,
    publication: &Publication,
) -> Option<Option<Stored>> {
    let Some(committer) = &env.committer else {
        let stored = publish(env, publication).await;
        env.state.finish(ticket, &*env.consumer);
        return Some(stored);
    };
    let (done, committed) = oneshot::channel();
    let item = TxnItem {
        publication: publication.clone(),
        ticket,
        done,
    };
    committer.send(item).await.ok()?;
    committed.await.ok()
}

/// Tells the redelivery index where a result of a decoded job was published.
fn index(env: &JobEnv, publication: &Publication, stored: Option<Stored>) {
    let Some(r) = &publication.result else {
        return;
    };
    let (Some(fingerprint), Some(stored)) = (r.fingerprint, stored) else {
        return;
    };
    let indexed = Indexed {
        fingerprint: Some(fingerprint),
        replay_count: r.result.replay_count,
        stored: Some(stored),
    };
    let now = Utc::now().timestamp_millis();
    if let Err(full) = env.state.cache.index(&r.result.job_id, indexed, now) {
        // The run loop starts a job only while every job in flight fits: a bug if reached.
        tracing::error!(
            job_id = %r.result.job_id,
            max = full.max_entries,
            "the redelivery index is full; raise worker.idempotency_index_size"
        );
    }
}

/// Publishes until acknowledged: a result that cannot be produced is never marked done. While
/// it fails, `/readyz` answers 503 naming the topic; the first success clears that.
async fn publish(env: &JobEnv, publication: &Publication) -> Option<Stored> {
    let mut backoff = Duration::from_millis(100);
    let publishing = crate::spans::publish(
        publication.result.is_some(),
        publication.dead_letter.is_some(),
    );
    let stored = loop {
        match env
            .publisher
            .publish(publication)
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
                .emit(&env.counters);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    };
    ProduceSucceeded.emit(&env.counters);
    let published = [
        (Output::Results, publication.result.is_some()),
        (Output::DeadLetter, publication.dead_letter.is_some()),
    ];
    for (output, _) in published.into_iter().filter(|(_, sent)| *sent) {
        // A topic just written to exists, whatever an earlier probe said.
        let cleared = env.counters.clear_unready("publish", output.key())
            | env.counters.clear_unready("readiness", output.key());
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

/// What the verification knows of `record` besides its content, received now.
fn context(env: &JobEnv, record: &JobRecord, spent: &SpentCode) -> JobContext {
    JobContext {
        received_at: Utc::now(),
        replay_count: record.replay_count,
        record_time: record
            .timestamp_ms
            .and_then(|ms| Utc.timestamp_millis_opt(ms).single()),
        spent: spent.clone(),
        ledger: env.ledger.clone(),
    }
}

/// Where the worker's records come from, for dead letters.
fn origin(env: &JobEnv) -> Origin<'_> {
    Origin {
        topic: &env.state.jobs_topic,
        group: &env.group_id,
    }
}

/// The publication of a job let go before its answer was known: `None` when its code was never
/// presented (it is handed over untouched), else its final `interrupted` result and dead letter.
fn interrupted(env: &JobEnv, record: &JobRecord, ctx: &JobContext) -> Option<Publication> {
    let stopping = env
        .state
        .stopping
        .load(std::sync::atomic::Ordering::Acquire);
    let (why, reason) = match stopping {
        true => (LetGo::ShuttingDown, "shutdown"),
        false => (LetGo::Revoked, "revoke"),
    };
    // A presented job decoded, or its code would not have been presented (nor recorded in the
    // ledger as about to be).
    let job = Job::decode(record.payload.as_deref().unwrap_or_default())
        .ok()
        .filter(|_| ctx.spent.may_be_presented());
    JobLetGo {
        job_id: job.as_ref().map(|j| j.job_id.as_str()),
        interrupted: job.is_some(),
        reason,
    }
    .emit(&env.counters);
    let job = job?;
    let fingerprint = fingerprint(&job);
    let result = conclude_interrupted(env, &job, ctx, why, fingerprint);
    let now = Utc::now();
    Some(Publication::answered(
        record,
        origin(env),
        result,
        Some(fingerprint),
        now,
    ))
}

/// Decodes and verifies one record: what it publishes. Nothing when the job was answered
/// earlier and that result cannot be read back (it stands; nothing is published or presented
/// again).
async fn process(env: &JobEnv, record: &JobRecord, ctx: &JobContext) -> Publication {
    let payload = record.payload.as_deref().unwrap_or_default();
    match Job::decode(payload) {
        Err(failure) => {
            let result = invalid_job_result(&failure, ctx);
            let job_id = failure.job_id.as_deref().unwrap_or("<unreadable>");
            tracing::warn!(job_id, error = %failure.error, "invalid job");
            let error = failure.error_info();
            Publication::invalid(record, origin(env), result, &error, Utc::now())
        }
        Ok(job) => {
            tracing::Span::current().record("job_id", job.job_id.as_str());
            let Some((result, fingerprint)) = answer(env, &job, ctx).await else {
                return Publication::default();
            };
            tracing::debug!(
                login_hint = %mask_msisdn(&job.login_hint),
                status = result.status.as_str(),
                class = result.error.as_ref().map(|e| e.class.as_str()),
                duplicate = result.duplicate,
                "verified"
            );
            Publication::answered(record, origin(env), result, fingerprint, Utc::now())
        }
    }
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
        .emit(&env.counters);
        out.result
    };
    let read_back = |at| env.fetcher.read_async(at, &job.job_id);
    match env.state.cache.run(&key, verify, read_back).await {
        Answer::Verified(r) => Some((r, Some(key.fingerprint))),
        Answer::Duplicate(mut r) => {
            r.duplicate = true;
            crate::spans::idempotency_hit();
            IdempotencyHit.emit(&env.counters);
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
