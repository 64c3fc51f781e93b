//! The worker: consume jobs, verify them concurrently (up to `worker.max_in_flight`), publish
//! results and dead letters, and store each partition's offset only up to its lowest unfinished
//! job, after the broker acknowledged what the finished jobs produced. While the circuit breaker
//! is open no job starts: records wait in order, and the partitions are paused so polling goes on.
//!
//! [`Worker::run`] goes through `startup` (clients, preflight, consumer), the run loop in
//! `intake` (which starts each job's course in `job`) and `drain` (stop and commit). The state
//! they share is in `state`, the consumer's rebalance handling in `rebalance`, and the
//! `exactly_once` transactions in `committer`.

pub mod breaker;
mod committer;
mod drain;
mod error;
mod intake;
mod job;
mod preflight;
mod rebalance;
mod startup;
mod state;

pub use error::WorkerError;

use crate::config::Config;
use crate::telemetry::counters::WorkerCounters;
use intake::Intake;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// One configured worker; [`Worker::counters`] is live while [`Worker::run`] runs.
#[derive(Debug)]
pub struct Worker {
    config: Config,
    counters: Arc<WorkerCounters>,
}

/// Runs a worker until `cancel` fires, then shuts down gracefully.
pub async fn run(config: Config, cancel: CancellationToken) -> Result<(), WorkerError> {
    Worker::new(config).run(cancel).await
}

impl Worker {
    /// A worker for `config`.
    pub fn new(config: Config) -> Worker {
        Worker {
            config,
            counters: Arc::new(WorkerCounters::default()),
        }
    }

    /// The live counters.
    pub fn counters(&self) -> Arc<WorkerCounters> {
        self.counters.clone()
    }

    /// Consumes until `cancel` fires; then stops taking jobs, finishes in-flight ones within
    /// `worker.shutdown_grace`, commits, and flushes the producer.
    pub async fn run(self, cancel: CancellationToken) -> Result<(), WorkerError> {
        // Cancelled by the caller, or by the worker itself when it must halt.
        let cancel = cancel.child_token();
        let Some(started) = startup::start(&self.config, &self.counters, &cancel).await? else {
            return Ok(());
        };
        let state = started.state.clone();
        Intake::new(&started, &self.config, cancel).run().await;
        drain::stop(started, &self.config).await?;
        match state.halted() {
            Some(why) => Err(WorkerError::Halted(why)),
            None => Ok(()),
        }
    }
}
