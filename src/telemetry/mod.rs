//! What the worker tells about itself while it runs.
//!
//! - [`counters`]: the live [`counters::WorkerCounters`] (atomics and small maps) every task of
//!   a run shares; read at scrape time, never aggregated on the job path.
//! - [`events`]: one typed event per thing that moves a counter (`JobStarted`, `ProduceFailed`,
//!   `BreakerTripped`, ...). Code outside this folder never writes a counter itself: it emits an
//!   event, whose `emit` bumps the counters with fixed labels and logs what is worth logging.
//! - [`prometheus`]: the `/metrics` registry over the counters, and the [`HttpObserver`]
//!   (`prometheus::HttpMetrics`) that counts and times every HTTP request by endpoint.
//! - [`traces`]: the OpenTelemetry exporter under the spans of [`crate::spans`], the job span,
//!   the `traceparent` of its outputs; [`span_queue`]: the bounded export queue that drops (and
//!   counts) rather than block a job; [`logging`]: the log subscriber, with `trace_id`/`span_id`.
//! - [`admin`]: the admin listener: `/metrics`, `/healthz`, `/readyz` and the status page
//!   (`status.html`, polling `/status.json`).
//!
//! [`HttpObserver`]: crate::silentauth::retry::HttpObserver

pub mod admin;
pub mod counters;
pub mod events;
pub mod logging;
pub mod prometheus;
pub mod span_queue;
pub mod traces;
