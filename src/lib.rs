//! silentauth-worker turns tyntec Silent Authentication callbacks into fraud-grade verdicts.
//!
//! Upstream services publish **jobs** (an authorization code and the number to verify) to Kafka.
//! For each job the worker exchanges the code for a token (`POST /oauth2/token`), asks
//! `GET /oauth2/userinfo` whether the network verified the number, and publishes exactly one
//! **result** keyed by `job_id`; failures a later replay could fix also go to a **dead-letter**
//! topic, which `replay-dlq` re-publishes.
//!
//! Layers (dependencies point down only):
//! - [`contract`]: the wire formats of jobs, results and dead-letter headers. No I/O.
//! - [`silentauth`]: the HTTP client, the error-class table, retries and rate limits.
//! - [`verify`]: one job in, one result out; knows nothing of Kafka.
//! - [`kafka`]: Kafka plumbing (client settings, producer, offset tracker, cache warm-up reader).
//! - [`worker`]: consume, verify concurrently, publish, store offsets; its shared state,
//!   rebalance handling and exactly-once committer; builds on `kafka`.
//!
//! Delivery is at-least-once: an offset is stored only after the job's result (and dead letter)
//! is acknowledged by the broker, per partition up to the lowest unfinished offset. An idempotency
//! cache, warmed on every assignment with the results the assigned partitions can redeliver,
//! keeps a redelivered job from spending its single-use code twice.

pub mod admin;
pub mod bench;
pub mod clock;
pub mod config;
pub mod contract;
pub mod demo;
pub mod doctor;
pub mod idempotency;
pub mod kafka;
pub mod replay;
pub mod secret;
pub mod signals;
pub mod silentauth;
pub mod simulator;
pub mod stats;
pub mod telemetry;
#[cfg(feature = "test-faults")]
pub mod test_faults;
pub mod verify;
pub mod worker;
