//! Kafka plumbing: the consumer and its rebalance handling, the producer, the per-partition
//! offset tracker, the idempotency-cache warm-up and an embedded cluster for `demo` and tests.

pub mod consumer;
pub mod embedded;
pub mod offsets;
pub mod producer;
pub mod topics;
pub mod transactions;
pub mod warmup;
pub mod warmup_seek;
