//! `worker.delivery = "exactly_once"`: a transactional producer commits each batch of results,
//! dead letters and the consumer's offsets atomically (one transaction per batch, bounded by
//! count and time). A fenced producer (a newer instance with the same `transactional.id`) stops
//! the worker instead of writing as a zombie.

use super::rebalance::JobConsumer;
use super::state::WorkerState;
use crate::contract::Publication;
use crate::idempotency::index::Stored;
use crate::kafka::offsets::Ticket;
use crate::kafka::producer::Publisher;
use crate::kafka::transactions::{self, is_fatal, TxnError};
use crate::telemetry::events::{TransactionCommitted, TransactionFailed, TransactionFenced};
use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::producer::Producer;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Records per transaction at most.
pub const MAX_BATCH: usize = 500;

/// How long a transaction waits for more records before committing.
pub const LINGER: Duration = Duration::from_millis(50);

/// One finished job waiting for its transaction.
#[derive(Debug)]
pub struct TxnItem {
    /// What the job publishes.
    pub publication: Publication,
    /// Its offset's place in the tracker.
    pub ticket: Ticket,
    /// Told once the transaction holding the job committed, with where its result lies.
    pub done: oneshot::Sender<Option<Stored>>,
}

/// Starts the committer; returns the sender job tasks hand finished jobs to (dropping every
/// copy lets it finish its last batch and stop) and its task. A fatal failure cancels `fenced`.
pub fn spawn(
    publisher: Arc<Publisher>,
    state: Arc<WorkerState>,
    consumer: Arc<JobConsumer>,
    fenced: CancellationToken,
) -> (mpsc::Sender<TxnItem>, JoinHandle<Result<(), TxnError>>) {
    let (tx, rx) = mpsc::channel(MAX_BATCH * 4);
    let task = tokio::spawn(async move {
        let r = run_committer(publisher, state, consumer, rx).await;
        if r.is_err() {
            fenced.cancel();
        }
        r
    });
    (tx, task)
}

/// Commits batches from `rx` until it closes; returns an error when the producer is fenced or
/// fails fatally (the caller must stop: nothing more may be written by this instance).
pub async fn run_committer(
    publisher: Arc<Publisher>,
    state: Arc<WorkerState>,
    consumer: Arc<JobConsumer>,
    mut rx: mpsc::Receiver<TxnItem>,
) -> Result<(), TxnError> {
    let mut batch: Vec<TxnItem> = Vec::with_capacity(MAX_BATCH);
    while next_batch(&mut rx, &mut batch).await {
        // The offsets of these jobs are finished now: the positions sent with the transaction
        // cover them and nothing still in flight.
        let partitions = state.finish_all(batch.iter().map(|i| i.ticket));
        let stored = commit_until_done(&publisher, &state, &consumer, &batch, &partitions).await?;
        TransactionCommitted.emit(&state.counters);
        for (i, at) in batch.drain(..).zip(stored) {
            let _ = i.done.send(at);
        }
    }
    Ok(())
}

/// Fills `batch` with the next item and whatever follows within [`LINGER`], up to
/// [`MAX_BATCH`]; false when `rx` closed with nothing left.
async fn next_batch(rx: &mut mpsc::Receiver<TxnItem>, batch: &mut Vec<TxnItem>) -> bool {
    let Some(first) = rx.recv().await else {
        return false;
    };
    batch.push(first);
    let linger = tokio::time::sleep(LINGER);
    tokio::pin!(linger);
    while batch.len() < MAX_BATCH {
        tokio::select! {
            _ = &mut linger => break,
            item = rx.recv() => match item {
                Some(i) => batch.push(i),
                None => break,
            },
        }
    }
    true
}

/// Commits `batch` in one transaction, aborting and retrying with a growing backoff until it
/// commits or the producer fails fatally.
async fn commit_until_done(
    publisher: &Arc<Publisher>,
    state: &WorkerState,
    consumer: &JobConsumer,
    batch: &[TxnItem],
    partitions: &BTreeSet<i32>,
) -> Result<Vec<Option<Stored>>, TxnError> {
    let mut backoff = Duration::from_millis(100);
    loop {
        let e = match commit_batch(publisher, state, consumer, batch, partitions).await {
            Ok(stored) => return Ok(stored),
            Err(e) => e,
        };
        if is_fatal(&e) {
            TransactionFenced { error: &e }.emit(&state.counters);
            return Err(TxnError::Fatal(e));
        }
        TransactionFailed {
            error: &e,
            retry_in: backoff,
        }
        .emit(&state.counters);
        let p = publisher.clone();
        let aborted = tokio::task::spawn_blocking(move || transactions::abort(&p))
            .await
            .expect("abort task panicked");
        if let Err(e) = aborted {
            if is_fatal(&e) {
                return Err(TxnError::Fatal(e));
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// One transaction: the batch's outputs, and the offsets of its partitions, committed together;
/// done once the broker acknowledged every output. Where each item's result lies.
async fn commit_batch(
    publisher: &Arc<Publisher>,
    state: &WorkerState,
    consumer: &JobConsumer,
    batch: &[TxnItem],
    partitions: &BTreeSet<i32>,
) -> Result<Vec<Option<Stored>>, KafkaError> {
    publisher.producer().begin_transaction()?;
    let mut deliveries = Vec::with_capacity(batch.len());
    for i in batch {
        deliveries.push(publisher.enqueue(&i.publication).await?);
    }
    let mut offsets = TopicPartitionList::new();
    for (p, pos) in state.positions_of(partitions) {
        offsets.add_partition_offset(&state.jobs_topic, p, Offset::Offset(pos))?;
    }
    let metadata = consumer
        .group_metadata()
        .ok_or(KafkaError::Global(rdkafka::types::RDKafkaErrorCode::State))?;
    let p = publisher.clone();
    tokio::task::spawn_blocking(move || transactions::commit(&p, &offsets, &metadata))
        .await
        .expect("commit task panicked")?;
    let mut stored = Vec::with_capacity(deliveries.len());
    for q in deliveries {
        if let Some(d) = q.dead_letter {
            delivered(d.await)?;
        }
        stored.push(match q.result {
            Some(d) => Some(delivered(d.await)?),
            None => None,
        });
    }
    Ok(stored)
}

/// Where a record of a committed transaction lies (its offset may be unknown: the
/// transaction's commit is what counts here).
fn delivered<E>(
    d: Result<rdkafka::producer::future_producer::OwnedDeliveryResult, E>,
) -> Result<Stored, KafkaError> {
    match d {
        Ok(Ok(d)) => Ok(Stored {
            partition: d.partition,
            offset: d.offset,
        }),
        Ok(Err((e, _))) => Err(e),
        Err(_) => Err(KafkaError::Canceled),
    }
}
