//! Kafka plumbing: the consumer, the producer, the per-partition offset tracker and an embedded
//! cluster for `demo` and tests.

pub mod embedded;
