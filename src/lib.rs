//! silentauth-worker turns tyntec Silent Authentication callbacks into fraud-grade verdicts.
//!
//! Upstream services publish **jobs** (an authorization code and the number to verify) to Kafka.
//! For each job the worker exchanges the code for a token (`POST /oauth2/token`), asks
//! `GET /oauth2/userinfo` whether the network verified the number, and publishes exactly one
//! **result** keyed by `job_id`; failures a later replay could fix also go to a **dead-letter**
//! topic, which `replay-dlq` re-publishes.
//!
//! Layers, lowest first; a module imports only from its own layer or below, and no file imports
//! a file that imports it back (`tests/layers.rs` checks both):
//! - [`clock`], [`secret`], [`spans`]: saturating time arithmetic; secrets and masking; the
//!   trace spans of a job (plain `tracing` spans of one target).
//! - [`contract`], [`config`]: the wire formats of jobs, results and dead-letter headers (no
//!   I/O); the typed configuration.
//! - [`silentauth`]: the HTTP client, the error-class table, retries, the two-priority limiter,
//!   the spent-code state of a job.
//! - [`verify`], [`network_signals`]: one job in, one result out, with its network-signal checks;
//!   knows nothing of Kafka.
//! - [`kafka`], [`telemetry`], [`idempotency`]: Kafka plumbing (client settings, producer,
//!   offset tracker, the warm-up reader); the counters, the typed events that move them, the
//!   Prometheus metrics and the admin listener; the `job_id` → result cache.
//! - [`worker`]: consume, verify concurrently, publish, store offsets; its shared state,
//!   rebalance handling and exactly-once committer.
//! - [`replay`], [`doctor`]: `replay-dlq`; the configuration checked against Kafka and the APIs.
//! - [`harness`]: test and tool support (the embedded Kafka cluster of `demo`, `bench` and the
//!   tests), outside the product's path.
//!
//! The library is what the binary's `run` needs and what its other commands share; it carries
//! no tools. The simulator is the crate `silentauth-simulator` (`crates/simulator/`); `demo` and
//! `bench` belong to the binary (`src/tools/`). The fuzzing oracles (`fuzzing`) compile only with
//! feature `fuzzing` (the fuzz targets and the crate's own tests enable it).
//!
//! Delivery is at-least-once: an offset is stored only after the job's result (and dead letter)
//! is acknowledged by the broker, per partition up to the lowest unfinished offset. An idempotency
//! cache, warmed on every assignment with the results the assigned partitions can redeliver,
//! keeps a redelivered job from spending its single-use code twice.

pub mod clock;
pub mod config;
pub mod contract;
pub mod doctor;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod harness;
pub mod idempotency;
pub mod kafka;
pub mod network_signals;
pub mod replay;
pub mod secret;
pub mod silentauth;
pub mod spans;
pub mod telemetry;
#[cfg(feature = "test-faults")]
pub mod test_faults;
pub mod verify;
pub mod worker;
