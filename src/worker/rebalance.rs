//! The group consumer's context: rebalances, commits and statistics. On a revoke it stops taking
//! jobs from the revoked partitions, waits up to `worker.revoke_grace` for their in-flight jobs,
//! commits what finished inside the callback and abandons the rest; on an assignment it warms
//! the idempotency cache with what the new partitions can redeliver (see
//! [`crate::kafka::warmup`]) and then starts a fresh assignment in the [`WorkerState`]. With
//! `rate_limit.scope = "partition_share"` both rescale the shared limiters.

use super::state::{WorkerState, LET_GO_LIMIT};
use crate::config::{Config, Delivery};
use crate::kafka::consumer::{consumer_lags, partitions_of};
use crate::kafka::warmup::{ResultsReader, WarmupError};
use crate::silentauth::Limiter;
use crate::telemetry::events::{
    AllPartitionsRevoked, OffsetsCommitted, PartitionsAssigned, PartitionsRevoked,
    RevokeGraceExpired,
};
use rdkafka::consumer::StreamConsumer;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientContext;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often an assignment's warm-up is tried before the worker halts: each try reads on while
/// the brokers answer (see [`ResultsReader`]), so only brokers that stop answering (or refuse
/// the read) exhaust them.
const WARMUP_ATTEMPTS: u64 = 3;

/// The worker's group consumer.
pub type JobConsumer = StreamConsumer<WorkerContext>;

/// The consumer's context: routes rebalance events, commit results and statistics to the
/// [`WorkerState`].
#[derive(Debug)]
pub struct WorkerContext {
    /// The worker's shared state.
    pub state: Arc<WorkerState>,
    /// Warms the cache from the results topic on every assignment.
    warmup: Mutex<ResultsReader>,
    /// Reads the presentation ledger beside it (`worker.ledger`).
    ledger: Option<Mutex<ResultsReader>>,
    /// How long a revoke waits for in-flight jobs.
    revoke_grace: Duration,
    /// With `exactly_once`, offsets travel in transactions: a revoke commits nothing itself.
    transactional: bool,
    /// Limiters to scale with the partition share, when `rate_limit.scope = "partition_share"`.
    shared_limiters: Vec<Arc<Limiter>>,
}

impl WorkerContext {
    /// The context for `config`, warming `state`'s cache with `warmup` (the results reader, and
    /// the ledger reader with `worker.ledger`) and scaling
    /// `shared_limiters` (empty unless the rate limit is shared by partition).
    pub fn new(
        config: &Config,
        state: Arc<WorkerState>,
        warmup: (ResultsReader, Option<ResultsReader>),
        shared_limiters: Vec<Arc<Limiter>>,
    ) -> WorkerContext {
        WorkerContext {
            state,
            warmup: Mutex::new(warmup.0),
            ledger: warmup.1.map(Mutex::new),
            revoke_grace: config.worker.revoke_grace,
            transactional: config.worker.delivery == Delivery::ExactlyOnce,
            shared_limiters,
        }
    }

    fn revoke(&self, consumer: &BaseConsumer<WorkerContext>, partitions: &[i32]) {
        let deadline = crate::clock::from_now_std(self.revoke_grace);
        blocking(|| self.wait_idle(partitions, deadline));
        // What is still running is let go: a job whose code was presented concludes itself
        // `interrupted` and finishes its offset before the partitions are released (contract A2).
        self.state.assignments().let_go(partitions);
        let limit = crate::clock::from_now_std(LET_GO_LIMIT);
        blocking(|| self.wait_let_go(partitions, limit));
        let revoked = self.state.assignments().revoke(partitions);
        let counters = &self.state.counters;
        counters.forget_lag(partitions);
        if revoked.abandoned > 0 {
            RevokeGraceExpired {
                abandoned: revoked.abandoned,
                partitions,
            }
            .emit();
        }
        let mut commit = TopicPartitionList::new();
        for (p, pos) in revoked.positions {
            let _ = commit.add_partition_offset(&self.state.jobs_topic, p, Offset::Offset(pos));
        }
        if commit.count() > 0 && !self.transactional {
            match consumer.commit(&commit, CommitMode::Sync) {
                Ok(()) => OffsetsCommitted.emit(counters),
                Err(e) => tracing::warn!(error = %e, "commit on revoke failed"),
            }
        }
        tracing::info!(?partitions, "partitions revoked");
    }

    /// Blocks until `partitions` have no job in flight, or until `deadline`.
    fn wait_idle(&self, partitions: &[i32], deadline: Instant) {
        while self.state.assignments().in_flight(partitions) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Blocks until the job tasks of `partitions`, let go, have ended, or until `limit`.
    fn wait_let_go(&self, partitions: &[i32], limit: Instant) {
        loop {
            let live = self.state.assignments().live(partitions);
            if live == 0 {
                return;
            }
            if Instant::now() >= limit {
                tracing::warn!(
                    live,
                    ?partitions,
                    "jobs let go on revoke did not publish their interrupted results in time"
                );
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Warms the idempotency cache for `partitions` (tried [`WARMUP_ATTEMPTS`] times, each read
    /// giving up only when the brokers stop answering), then starts their assignment; halts
    /// the worker when the warm-up cannot be done.
    fn assign(&self, consumer: &BaseConsumer<WorkerContext>, partitions: &[i32]) {
        let cache = &self.state.cache;
        let warm = || -> Result<_, WarmupError> {
            let mut reader = self.warmup.lock().unwrap_or_else(|e| e.into_inner());
            let w = reader.warm(partitions, cache)?;
            // The presentations recorded over the same range: a job among them without a
            // result ends interrupted when it comes again.
            let presented = match &self.ledger {
                Some(l) => {
                    let mut l = l.lock().unwrap_or_else(|e| e.into_inner());
                    l.catch_up(cache, w.since_ms)?
                }
                None => 0,
            };
            Ok((w, presented))
        };
        let started = Instant::now();
        let mut attempt = 1;
        let warmed = loop {
            match blocking(warm) {
                Err(WarmupError::Kafka(e)) if attempt < WARMUP_ATTEMPTS => {
                    tracing::warn!(error = %e, attempt, "could not warm the idempotency cache; trying again");
                    std::thread::sleep(Duration::from_secs(attempt));
                    attempt += 1;
                }
                warmed => break warmed,
            }
        };
        match warmed {
            Ok((w, presented)) => {
                tracing::info!(
                    results = w.results,
                    presented,
                    redelivery = ?w.redelivery,
                    since = %chrono::DateTime::from_timestamp_millis(w.since_ms).unwrap_or_default(),
                    ms = started.elapsed().as_millis() as u64,
                    "idempotency cache warmed for the assigned partitions"
                );
            }
            Err(e) => {
                // Taking these partitions' jobs without knowing their earlier results (or with
                // more of them than the index holds) could present codes again: refused loudly
                // instead (contract A2).
                let why = match e {
                    WarmupError::Full(_) => e.to_string(),
                    WarmupError::Kafka(e) => format!(
                        "cannot read the results topic (topics.results) to warm the idempotency cache after {WARMUP_ATTEMPTS} attempts: {e}; without the earlier results a redelivered job's code could be presented again (check the brokers and the worker's Read ACL on the results and ledger topics)"
                    ),
                };
                self.state.halt(why);
                return;
            }
        }
        self.state.assignments().assign(partitions);
        PartitionsAssigned.emit(&self.state.counters);
        self.rescale(consumer);
        tracing::info!(?partitions, "partitions assigned");
    }

    /// Scales the shared limiters to this instance's share of the jobs topic's partitions.
    fn rescale(&self, consumer: &BaseConsumer<WorkerContext>) {
        if self.shared_limiters.is_empty() {
            return;
        }
        let owned = self.state.owned().len();
        let topic = &self.state.jobs_topic;
        let total = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(5))
            .ok()
            .and_then(|m| {
                m.topics()
                    .iter()
                    .find(|t| t.name() == topic)
                    .map(|t| t.partitions().len())
            })
            .unwrap_or(0);
        if total == 0 {
            return;
        }
        let share = owned as f64 / total as f64;
        for l in &self.shared_limiters {
            l.set_share(share);
        }
        tracing::info!(
            owned,
            total,
            share,
            "rate limit rescaled to the partition share"
        );
    }
}

impl ClientContext for WorkerContext {
    /// Keeps each jobs partition's `consumer_lag` from librdkafka's statistics (-1, unknown,
    /// is left out). Only the few fields needed are decoded, and nothing is logged.
    fn stats_raw(&self, statistics: &[u8]) {
        let owned = self.state.owned();
        // Only partitions owned now: a report can lag behind a revoke.
        let keep = |p: i32| owned.contains(&p);
        if let Some(lag) = consumer_lags(statistics, &self.state.jobs_topic, keep) {
            self.state.counters.set_lag(lag);
        }
    }
}

impl ConsumerContext for WorkerContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let parts = partitions_of(tpl, &self.state.jobs_topic);
            if !parts.is_empty() {
                PartitionsRevoked.emit(&self.state.counters);
                self.revoke(consumer, &parts);
            }
            let remaining = consumer.assignment().map(|a| a.count()).unwrap_or(0);
            if remaining <= parts.len() {
                AllPartitionsRevoked.emit(&self.state.counters);
            }
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let parts = partitions_of(tpl, &self.state.jobs_topic);
                if !parts.is_empty() {
                    self.assign(consumer, &parts);
                }
            }
            Rebalance::Revoke(_) => self.rescale(consumer),
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        match result {
            Ok(()) => OffsetsCommitted.emit(&self.state.counters),
            Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(e) => tracing::warn!(error = %e, "offset commit failed"),
        }
    }
}

/// Runs blocking work inside a rebalance callback. On a multi-threaded runtime the callback's
/// worker thread hands its other tasks over first, so in-flight jobs keep running meanwhile.
fn blocking<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}
