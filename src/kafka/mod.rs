//! Kafka plumbing: the first contact with the brokers (TLS, SASL) and the ACLs the worker needs,
//! the group consumer's settings, the producer and its client context, the transactional
//! producer's calls, the per-partition offset tracker, topic checks and the idempotency-cache
//! warm-up (a results-topic reader). Nothing here knows the worker; the worker
//! (`crate::worker`) builds on it. The embedded cluster of `demo`, `bench` and the tests is in
//! `crate::harness`.

pub mod acl;
pub mod connect;
pub mod consumer;
pub mod context;
pub mod ledger;
pub mod offsets;
pub mod producer;
pub mod readback;
pub mod topics;
pub mod transactions;
pub mod warmup;
pub mod warmup_seek;
