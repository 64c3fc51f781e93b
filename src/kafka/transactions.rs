//! The transactional producer's plumbing for `worker.delivery = "exactly_once"`: setting it up,
//! committing or aborting one transaction (with the consumer's offsets), and telling a fatal
//! failure (a newer instance with the same `transactional.id` fenced this one) from one worth
//! retrying. The worker's committer batches finished jobs into these transactions.

use super::producer::Publisher;
use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::error::KafkaError;
use rdkafka::producer::Producer;
use rdkafka::topic_partition_list::TopicPartitionList;
use std::time::Duration;

/// How long one transactional call may take.
pub const TXN_TIMEOUT: Duration = Duration::from_secs(30);

/// Why transactional writing stopped.
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

/// Adds `offsets` (when there are any) to the open transaction on behalf of the consumer group
/// `metadata` names, and commits it; blocking.
pub fn commit(
    publisher: &Publisher,
    offsets: &TopicPartitionList,
    metadata: &ConsumerGroupMetadata,
) -> Result<(), KafkaError> {
    if offsets.count() > 0 {
        publisher
            .producer()
            .send_offsets_to_transaction(offsets, metadata, TXN_TIMEOUT)?;
    }
    publisher.producer().commit_transaction(TXN_TIMEOUT)
}

/// Aborts the open transaction; blocking.
pub fn abort(publisher: &Publisher) -> Result<(), KafkaError> {
    publisher.producer().abort_transaction(TXN_TIMEOUT)
}

/// True when `e` is a fatal transactional error: this producer must write nothing more.
pub fn is_fatal(e: &KafkaError) -> bool {
    match e {
        KafkaError::Transaction(t) => t.is_fatal(),
        _ => false,
    }
}
