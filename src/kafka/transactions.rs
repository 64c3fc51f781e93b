//! `worker.delivery = "exactly_once"`: a transactional producer commits each batch of results,
//! dead letters and the consumer's offsets atomically (one transaction per batch, bounded by
//! count and time). A fenced producer (a newer instance with the same `transactional.id`) stops
//! the worker instead of writing as a zombie.

use super::consumer::{Shared, WorkerContext};
use super::producer::{DeadLetterRecord, Publisher};
use crate::contract::JobResult;
use crate::telemetry::events::{TransactionCommitted, TransactionFailed, TransactionFenced};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::Producer;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Records per transaction at most.
pub const MAX_BATCH: usize = 500;

/// How long a transaction waits for more records before committing.
pub const LINGER: Duration = Duration::from_millis(50);

/// How long one transactional call may take.
const TXN_TIMEOUT: Duration = Duration::from_secs(30);

/// One finished job waiting for its transaction.
#[derive(Debug)]
pub struct TxnItem {
    /// Its result, if it has one.
    pub result: Option<JobResult>,
    /// Its dead letter, if it has one.
    pub dead_letter: Option<DeadLetterRecord>,
    /// Copied to the result.
    pub traceparent: Option<String>,
    /// Where the job came from.
    pub partition: i32,
    /// The assignment epoch it was taken under.
    pub epoch: u64,
    /// Its offset.
    pub offset: i64,
    /// Told once the transaction holding the job committed.
    pub done: oneshot::Sender<()>,
}

/// Why the committer stopped.
#[derive(Debug, thiserror::Error)]
pub enum TxnError {
    /// Another producer with our `transactional.id` took over, or the producer failed fatally.
    #[error("transactional producer failed fatally (fenced by a newer instance?): {0}")]
    Fatal(KafkaError),
}

/// Sets the producer up for transactions (`init_transactions`); blocking.
pub fn init(publisher: &Publisher) -> Result<(), KafkaError> {
    publisher.producer().init_transactions(TXN_TIMEOUT)
}

/// Commits batches from `rx` until it closes; returns an error when the producer is fenced or
/// fails fatally (the caller must stop: nothing more may be written by this instance).
pub async fn run_committer(
    publisher: Arc<Publisher>,
    shared: Arc<Shared>,
    consumer: Arc<StreamConsumer<WorkerContext>>,
    mut rx: mpsc::Receiver<TxnItem>,
) -> Result<(), TxnError> {
    let mut batch: Vec<TxnItem> = Vec::with_capacity(MAX_BATCH);
    loop {
        let Some(first) = rx.recv().await else {
            return Ok(());
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
        // The offsets of these jobs are finished now: the positions sent with the transaction
        // cover them and nothing still in flight.
        let partitions: BTreeSet<i32> = {
            let mut t = shared.tracker.lock().unwrap_or_else(|e| e.into_inner());
            for i in &batch {
                t.finish(i.partition, i.epoch, i.offset);
            }
            batch.iter().map(|i| i.partition).collect()
        };
        let mut backoff = Duration::from_millis(100);
        loop {
            match commit_batch(&publisher, &shared, &consumer, &batch, &partitions).await {
                Ok(()) => break,
                Err(e) if is_fatal(&e) => {
                    TransactionFenced { error: &e }.emit(&shared.stats);
                    return Err(TxnError::Fatal(e));
                }
                Err(e) => {
                    TransactionFailed {
                        error: &e,
                        retry_in: backoff,
                    }
                    .emit(&shared.stats);
                    let p = publisher.clone();
                    let aborted = tokio::task::spawn_blocking(move || {
                        p.producer().abort_transaction(TXN_TIMEOUT)
                    })
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
        }
        TransactionCommitted.emit(&shared.stats);
        for i in batch.drain(..) {
            let _ = i.done.send(());
        }
    }
}

async fn commit_batch(
    publisher: &Arc<Publisher>,
    shared: &Shared,
    consumer: &StreamConsumer<WorkerContext>,
    batch: &[TxnItem],
    partitions: &BTreeSet<i32>,
) -> Result<(), KafkaError> {
    publisher.producer().begin_transaction()?;
    let mut deliveries = Vec::with_capacity(batch.len() * 2);
    for i in batch {
        deliveries.extend(
            publisher
                .enqueue(
                    i.result.as_ref(),
                    i.dead_letter.as_ref(),
                    i.traceparent.as_deref(),
                )
                .await?,
        );
    }
    let mut offsets = TopicPartitionList::new();
    {
        let t = shared.tracker.lock().unwrap_or_else(|e| e.into_inner());
        for (p, pos) in t.positions() {
            if partitions.contains(&p) {
                offsets.add_partition_offset(&shared.jobs_topic, p, Offset::Offset(pos))?;
            }
        }
    }
    let metadata = consumer
        .group_metadata()
        .ok_or(KafkaError::Global(rdkafka::types::RDKafkaErrorCode::State))?;
    let p = publisher.clone();
    tokio::task::spawn_blocking(move || {
        if offsets.count() > 0 {
            p.producer()
                .send_offsets_to_transaction(&offsets, &metadata, TXN_TIMEOUT)?;
        }
        p.producer().commit_transaction(TXN_TIMEOUT)
    })
    .await
    .expect("commit task panicked")?;
    for d in deliveries {
        match d.await {
            Ok(Ok(_)) => {}
            Ok(Err((e, _))) => return Err(e),
            Err(_) => return Err(KafkaError::Canceled),
        }
    }
    Ok(())
}

fn is_fatal(e: &KafkaError) -> bool {
    match e {
        KafkaError::Transaction(t) => t.is_fatal(),
        _ => false,
    }
}
