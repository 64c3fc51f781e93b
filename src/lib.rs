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
//! - [`telemetry`]: the counters every task shares and the typed events that move them, the
//!   Prometheus metrics, and the admin listener (`/metrics`, `/healthz`, `/readyz`, the status
//!   page).
//! - `kafka`, `worker`: consume, verify concurrently, publish, store offsets.
//!
//! Beside them: `replay` (`replay-dlq`), `doctor`, `config`. The library is what the binary's `run` needs and what its other
//! commands share; it carries no tools. The simulator is the crate `silentauth-simulator`
//! (`crates/simulator/`), and `demo` and `bench` belong to the binary (`src/tools/`). The fuzzing
//! oracles (`fuzzing`) compile only with feature `fuzzing`
//! (the fuzz targets and the crate's own tests enable it).
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
pub mod idempotency;
pub mod kafka;
pub mod network_signals;
pub mod replay;
pub mod secret;
pub mod silentauth;
pub mod telemetry;
#[cfg(feature = "test-faults")]
pub mod test_faults;
pub mod verify;
pub mod worker;
