//! Stopping: finish the in-flight jobs within `worker.shutdown_grace` and abandon the rest,
//! commit (the stored offsets, or with `exactly_once` the committer's last batch), flush the
//! producer and close the consumer without hanging on it.

use super::error::WorkerError;
use super::rebalance::JobConsumer;
use super::startup::Started;
use super::state::{WorkerState, LET_GO_LIMIT};
use crate::config::{Config, Delivery};
use crate::kafka::consumer::store_offset;
use crate::kafka::transactions::TxnError;
use crate::telemetry::events::{OffsetsCommitted, ShutdownGraceExpired};
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// How long a stopping worker waits for its consumer to close (leave the group).
const CONSUMER_CLOSE_LIMIT: Duration = Duration::from_secs(10);

/// How long a stopping worker waits for the transaction committer's last batch.
const COMMITTER_LIMIT: Duration = Duration::from_secs(60);

/// Stops a worker whose run loop ended; the committer's fatal error, if it stopped on one.
pub async fn stop(started: Started, config: &Config) -> Result<(), WorkerError> {
    let Started {
        env,
        state,
        consumer,
        publisher,
        fenced: _,
        committer,
        guards,
    } = started;
    tracing::info!("stopping: finishing in-flight jobs");
    finish_in_flight(&state, config.worker.shutdown_grace).await;
    if config.worker.delivery != Delivery::ExactlyOnce {
        commit_stored(&state, &consumer);
    }
    // With exactly_once, closing the channel lets the committer finish its last batch
    // (abandoned jobs drop their handles as they stop).
    drop(env);
    let committed = join_committer(committer).await;
    consumer.unsubscribe();
    if let Err(e) = publisher.flush(Duration::from_secs(10)) {
        tracing::warn!(error = %e, "producer flush failed");
    }
    close_consumer(consumer, CONSUMER_CLOSE_LIMIT).await;
    drop(guards);
    committed?;
    tracing::info!("worker stopped");
    Ok(())
}

/// Waits up to `grace` for the in-flight jobs, then lets go of those still running: a job whose
/// code was presented concludes itself `interrupted` (its result published and its offset
/// finished, waited for up to [`LET_GO_LIMIT`]); the others stop unpublished and will be
/// redelivered.
async fn finish_in_flight(state: &WorkerState, grace: Duration) {
    state.stopping.store(true, Ordering::Release);
    if idle_within(state, grace).await {
        return;
    }
    let left = state.counters.in_flight.load(Ordering::Acquire);
    ShutdownGraceExpired { let_go: left }.emit();
    state.abandon_all();
    if !idle_within(state, LET_GO_LIMIT).await {
        tracing::warn!(
            live = state.counters.in_flight.load(Ordering::Acquire),
            "jobs let go at shutdown did not publish their interrupted results in time"
        );
    }
}

/// Waits up to `limit` for every job task to end; true when none is left.
async fn idle_within(state: &WorkerState, limit: Duration) -> bool {
    let counters = &state.counters;
    let limit = tokio::time::sleep(limit);
    tokio::pin!(limit);
    while counters.in_flight.load(Ordering::Acquire) > 0 {
        tokio::select! {
            _ = &mut limit => break,
            _ = state.finished.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
    counters.in_flight.load(Ordering::Acquire) == 0
}

/// Stores every partition's position and commits what is stored (at-least-once delivery).
fn commit_stored(state: &WorkerState, consumer: &JobConsumer) {
    for (p, pos) in state.positions() {
        store_offset(consumer, &state.jobs_topic, p, pos);
    }
    match consumer.commit_consumer_state(CommitMode::Sync) {
        Ok(()) => OffsetsCommitted.emit(&state.counters),
        Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
        Err(e) => tracing::warn!(error = %e, "final commit failed"),
    }
}

/// Waits for the committer (once its channel closed) to finish, up to [`COMMITTER_LIMIT`].
async fn join_committer(
    committer: Option<JoinHandle<Result<(), TxnError>>>,
) -> Result<(), TxnError> {
    let Some(task) = committer else {
        return Ok(());
    };
    match tokio::time::timeout(COMMITTER_LIMIT, task).await {
        Ok(r) => r.expect("committer panicked"),
        Err(_) => {
            tracing::warn!("the transaction committer did not finish in time");
            Ok(())
        }
    }
}

/// Drops the consumer, which leaves the group, on a thread of its own and waits at most
/// `limit`. librdkafka's close serves the revoke that `unsubscribe` caused, and an assignment
/// call in that rebalance can block for good (seen with a second instance joining as this one
/// stopped); a stopping worker must not hang on it. Its offsets are committed by then; if the
/// close does not finish, the group moves its partitions once the session times out.
async fn close_consumer(consumer: Arc<JobConsumer>, limit: Duration) {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        drop(consumer);
        let _ = tx.send(());
    });
    if tokio::time::timeout(limit, rx).await.is_err() {
        tracing::warn!(
            limit = ?limit,
            "the consumer did not close in time; stopping without waiting for it"
        );
    }
}
