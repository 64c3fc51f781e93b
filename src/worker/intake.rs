//! The run loop: takes records and starts their jobs, up to `worker.max_in_flight` at once and
//! only while the circuit breaker lets them through. A record that cannot start yet is held, in
//! order; while nothing may start the partitions are paused and polling goes on, so the consumer
//! stays in the group and rebalances are served. Each job's own course is in [`super::job`].

use super::breaker::{Gate, Gatekeeper};
use super::job::{self, JobEnv, Taken};
use super::rebalance::JobConsumer;
use super::startup::Started;
use super::state::WorkerState;
use crate::config::Config;
use crate::telemetry::counters::WorkerCounters;
use crate::telemetry::events::{PartitionsPaused, PartitionsResumed};
use rdkafka::consumer::Consumer;
use rdkafka::topic_partition_list::TopicPartitionList;
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The run loop's state.
pub struct Intake {
    env: Arc<JobEnv>,
    consumer: Arc<JobConsumer>,
    state: Arc<WorkerState>,
    counters: Arc<WorkerCounters>,
    breaker: Arc<Gatekeeper>,
    cancel: CancellationToken,
    fenced: CancellationToken,
    max_in_flight: u64,
    pause_after: Duration,
    /// What [`pause`] paused, until resumed.
    paused: Option<TopicPartitionList>,
    /// Records read while no job could start (breaker open, window full), oldest first; they
    /// start before anything newer, so per partition jobs still start in offset order.
    held: VecDeque<Taken>,
}

/// Whether the loop goes on.
enum Flow {
    Go,
    Stop,
}

impl Intake {
    /// The loop of a started worker, until `cancel` fires (or the producer is fenced).
    pub fn new(started: &Started, config: &Config, cancel: CancellationToken) -> Intake {
        Intake {
            env: started.env.clone(),
            consumer: started.consumer.clone(),
            state: started.state.clone(),
            counters: started.env.counters.clone(),
            breaker: started.env.breaker.clone(),
            cancel,
            fenced: started.fenced.clone(),
            max_in_flight: config.worker.max_in_flight.max(1) as u64,
            pause_after: pause_after(config),
            paused: None,
            held: VecDeque::new(),
        }
    }

    /// Runs until stopped. Held records are dropped unstarted: their offsets stay uncommitted.
    pub async fn run(mut self) {
        while let Flow::Go = self.step().await {}
        if !self.held.is_empty() {
            tracing::info!(
                held = self.held.len(),
                "stopping with jobs not started; their offsets are not committed"
            );
        }
    }

    async fn step(&mut self) -> Flow {
        let in_flight = self.counters.in_flight.load(Ordering::Acquire);
        // A job starts only while the redelivery index has room for every job in flight: at
        // its bound the worker waits for jobs to age out of `worker.code_ttl` rather than
        // forget one.
        let full =
            in_flight >= self.max_in_flight || !self.state.cache.has_room(in_flight as usize + 1);
        let gate = self.breaker.gate();
        let admits = matches!(gate, Gate::Closed | Gate::Probe);
        if admits && !full {
            return self.admit(gate == Gate::Probe).await;
        }
        // A full window waits for a free slot without polling, which keeps librdkafka's
        // prefetched records (pausing discards them). Should it stay full for `pause_after`,
        // the partitions are paused and polling goes on, so `max.poll.interval.ms` never trips
        // however slow the jobs are.
        if admits && self.paused.is_none() {
            return self.wait_for_slot().await;
        }
        self.hold(gate).await
    }

    /// A job may start: the oldest held record's, else the next record's (the breaker may
    /// have opened while it was awaited: then it is held).
    async fn admit(&mut self, probe: bool) -> Flow {
        if let Some(taken) = self.held.pop_front() {
            job::start(&self.env, taken, probe);
            return Flow::Go;
        }
        if let Some(a) = self.paused.take() {
            resume(&self.consumer, &self.counters, a);
        }
        let consumer = self.consumer.clone();
        let m = tokio::select! {
            biased;
            _ = self.cancel.cancelled() => return Flow::Stop,
            _ = self.fenced.cancelled() => return Flow::Stop,
            m = consumer.recv() => m,
        };
        let taken = match m {
            Ok(m) => job::take(&self.state, &m),
            Err(e) => {
                tracing::warn!(error = %e, "consumer error");
                None
            }
        };
        // A record of a partition revoked since it was read is not ours any more.
        let Some(taken) = taken else {
            return Flow::Go;
        };
        match self.breaker.gate() {
            g @ (Gate::Closed | Gate::Probe) => job::start(&self.env, taken, g == Gate::Probe),
            Gate::WaitUntil(_) | Gate::WaitForProbe => self.held.push_back(taken),
        }
        Flow::Go
    }

    /// The window is full: wait for a job to finish, or pause after `pause_after`.
    async fn wait_for_slot(&mut self) -> Flow {
        tokio::select! {
            biased;
            _ = self.cancel.cancelled() => Flow::Stop,
            _ = self.fenced.cancelled() => Flow::Stop,
            _ = self.state.finished.notified() => Flow::Go,
            _ = tokio::time::sleep(self.pause_after) => {
                self.paused = pause(&self.consumer, &self.counters);
                Flow::Go
            }
        }
    }

    /// No job may start: the breaker is open (its partitions are paused at once), or the
    /// window stayed full. Polling goes on; a record that still arrives is held, in order, and
    /// the assignment (which a rebalance may have grown) is paused again.
    async fn hold(&mut self, gate: Gate) -> Flow {
        if self.paused.is_none() {
            self.paused = pause(&self.consumer, &self.counters);
        }
        // At least once a second: a full redelivery index frees room only with time.
        let second = crate::clock::from_now(Duration::from_secs(1));
        let wake = match gate {
            Gate::WaitUntil(at) => at.min(second),
            _ => second,
        };
        let consumer = self.consumer.clone();
        let m = tokio::select! {
            biased;
            _ = self.cancel.cancelled() => return Flow::Stop,
            _ = self.fenced.cancelled() => return Flow::Stop,
            _ = self.state.finished.notified() => return Flow::Go,
            _ = tokio::time::sleep_until(wake) => return Flow::Go,
            m = consumer.recv() => m,
        };
        match m {
            Ok(m) => {
                if let Some(taken) = job::take(&self.state, &m) {
                    self.held.push_back(taken);
                }
                if let Some(a) = pause(&self.consumer, &self.counters) {
                    self.paused = Some(a);
                }
            }
            Err(e) => tracing::warn!(error = %e, "consumer error"),
        }
        Flow::Go
    }
}

/// Pauses every assigned partition; `None` when the assignment cannot be read or paused.
fn pause(consumer: &JobConsumer, counters: &WorkerCounters) -> Option<TopicPartitionList> {
    let a = consumer.assignment().ok()?;
    consumer.pause(&a).ok()?;
    PartitionsPaused {
        count: a.count() as u64,
    }
    .emit(counters);
    Some(a)
}

/// Resumes what [`pause`] paused, as far as it is still assigned.
fn resume(consumer: &JobConsumer, counters: &WorkerCounters, paused: TopicPartitionList) {
    let now = consumer.assignment().unwrap_or(paused);
    let _ = consumer.resume(&now);
    PartitionsResumed.emit(counters);
}

/// How long a full window may go without polling before the partitions are paused: well inside
/// `max.poll.interval.ms` (librdkafka's default 300 s, or what `kafka.properties` sets).
fn pause_after(config: &Config) -> Duration {
    let max_poll = config
        .kafka
        .properties
        .get("max.poll.interval.ms")
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(300_000);
    Duration::from_millis((max_poll / 4).clamp(10, 1_000))
}
