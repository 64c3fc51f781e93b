//! A consumed job record, as the worker copied it out of the consumer, and where it came from.

/// A consumed job record, copied out of the consumer's buffer: where it lies and what it
/// carries ([`JobRecord::new`], with the `dlq.*` headers it reads, is in
/// [`crate::contract::dead_letter`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobRecord {
    /// Its partition of the jobs topic.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// Its Kafka timestamp in milliseconds since the epoch, when it had one.
    pub timestamp_ms: Option<i64>,
    /// Its key.
    pub key: Option<Vec<u8>>,
    /// Its value: the job.
    pub payload: Option<Vec<u8>>,
    /// The `traceparent` its result and dead letter carry: the job span's context when traces
    /// are on, else the record's own header.
    pub traceparent: Option<String>,
    /// Its `dlq.replay_count` header: 0 unless it is a replayed job.
    pub replay_count: u32,
    /// Its `dlq.previous.*` headers: a replayed job's earlier failures, kept for audit.
    pub previous: Vec<(String, Vec<u8>)>,
}

/// Where records come from and who consumed them, written into every dead letter.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    /// The jobs topic.
    pub topic: &'a str,
    /// The consumer group.
    pub group: &'a str,
}
