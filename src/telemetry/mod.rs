//! What the worker tells about itself while it runs.
//!
//! - [`counters`]: the live [`counters::WorkerCounters`] (atomics and small maps) every task of
//!   a run shares; read at scrape time, never aggregated on the job path.
//! - [`events`]: one typed event per thing that moves a counter (`JobStarted`, `ProduceFailed`,
//!   `BreakerTripped`, ...). Code outside this folder never writes a counter itself: it emits an
//!   event, whose `emit` bumps the counters with fixed labels and logs what is worth logging.
//! - [`prometheus`]: the `/metrics` registry over the counters, and the [`HttpObserver`]
//!   (`prometheus::HttpMetrics`) that counts and times every HTTP request by endpoint.
//! - [`admin`]: the admin listener: `/metrics`, `/healthz`, `/readyz` and the status page
//!   (`status.html`, polling `/status.json`).
//!
//! [`HttpObserver`]: crate::silentauth::retry::HttpObserver

pub mod admin;
pub mod counters;
pub mod events;
pub mod prometheus;
