//! The consumer side: the group consumer's settings and its rebalance handling. On a revoke it
//! stops taking jobs from the revoked partitions, waits up to `worker.revoke_grace` for their
//! in-flight jobs, commits what finished inside the callback and abandons the rest; on an
//! assignment it warms the idempotency cache with what the new partitions can redeliver
//! (see [`super::warmup`]) and then starts a fresh offset tracker.

use super::offsets::OffsetTracker;
use super::warmup::ResultsReader;
use crate::config::Config;
use crate::idempotency::IdempotencyCache;
use crate::silentauth::Limiter;
use crate::telemetry::counters::WorkerCounters;
use crate::telemetry::events::{
    AllPartitionsRevoked, OffsetsCommitted, PartitionsAssigned, RevokeGraceExpired,
};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientContext;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// How many kilobytes of prefetched jobs librdkafka may hold (`queued.max.messages.kbytes`; its
/// default, 65,536, lets one worker buffer 64 MB of backlog). 8 MB is thousands of jobs ahead
/// of `max_in_flight`; librdkafka also caps `fetch.max.bytes` to it unless that is set.
pub const PREFETCH_KBYTES: u32 = 8_192;

/// How often librdkafka reports its statistics, which feed `silentauth_consumer_lag`
/// (milliseconds). Each report is a JSON document the consumer builds and the worker parses.
pub const STATISTICS_INTERVAL_MS: u32 = 15_000;

/// The librdkafka settings of the group consumer; `kafka.properties` come last and win.
pub fn consumer_config(config: &Config) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &config.kafka.brokers)
        .set("group.id", &config.kafka.group_id)
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("enable.auto.offset.store", "false")
        .set("enable.auto.commit", "true")
        .set(
            "auto.commit.interval.ms",
            config.kafka.commit_interval.as_millis().max(1).to_string(),
        )
        .set("auto.offset.reset", "earliest")
        .set("client.id", "silentauth-worker")
        .set("queued.max.messages.kbytes", PREFETCH_KBYTES.to_string())
        // Feeds `silentauth_consumer_lag` (WorkerContext::stats_raw).
        .set("statistics.interval.ms", STATISTICS_INTERVAL_MS.to_string());
    for (k, v) in &config.kafka.properties {
        c.set(k, v);
    }
    c
}

/// State shared by the consumer loop, the job tasks and the rebalance callbacks.
#[derive(Debug)]
pub struct Shared {
    /// The jobs topic.
    pub jobs_topic: String,
    /// Offsets per assigned partition.
    pub tracker: Mutex<OffsetTracker>,
    /// Cancels the in-flight jobs of one partition's assignment.
    pub partition_tokens: Mutex<HashMap<i32, CancellationToken>>,
    /// Parent of every partition token: cancelled to abandon everything at shutdown.
    pub abandon_all: CancellationToken,
    /// The idempotency cache.
    pub cache: IdempotencyCache,
    /// Warms the cache from the results topic on every assignment.
    pub warmup: Mutex<ResultsReader>,
    /// How long a revoke waits for in-flight jobs.
    pub revoke_grace: Duration,
    /// With `exactly_once`, offsets travel in transactions: a revoke commits nothing itself.
    pub transactional: bool,
    /// Limiters to scale with the partition share, when `rate_limit.scope = "partition_share"`.
    pub shared_limiters: Vec<Arc<Limiter>>,
    /// Counters.
    pub stats: Arc<WorkerCounters>,
    /// Woken whenever a job finishes.
    pub finished: tokio::sync::Notify,
}

impl Shared {
    /// Stores `position` (the next offset to consume) for `partition`. A partition that is no
    /// longer assigned answers `ERR__STATE`, which is benign during a rebalance.
    pub fn store<C: ConsumerContext>(
        &self,
        consumer: &impl Consumer<C>,
        partition: i32,
        position: i64,
    ) {
        let mut tpl = TopicPartitionList::new();
        if tpl
            .add_partition_offset(&self.jobs_topic, partition, Offset::Offset(position))
            .is_err()
        {
            return;
        }
        match consumer.store_offsets(&tpl) {
            Ok(()) => {}
            Err(KafkaError::StoreOffset(RDKafkaErrorCode::State)) => {
                tracing::debug!(partition, "offset store after revoke ignored (ERR__STATE)");
            }
            Err(e) => tracing::warn!(partition, error = %e, "storing an offset failed"),
        }
    }

    fn revoke(&self, consumer: &BaseConsumer<WorkerContext>, partitions: &[i32]) {
        let deadline = crate::clock::from_now_std(self.revoke_grace);
        let wait = || loop {
            let busy: usize = {
                let t = self.tracker.lock().unwrap_or_else(|e| e.into_inner());
                partitions.iter().map(|&p| t.in_flight(p)).sum()
            };
            if busy == 0 || Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        blocking(wait);
        let mut commit = TopicPartitionList::new();
        let mut abandoned = 0u64;
        {
            let mut t = self.tracker.lock().unwrap_or_else(|e| e.into_inner());
            let mut tokens = self
                .partition_tokens
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            for &p in partitions {
                if let Some(offsets) = t.revoke(p) {
                    abandoned += offsets.in_flight() as u64;
                    if let Some(pos) = offsets.committable() {
                        let _ =
                            commit.add_partition_offset(&self.jobs_topic, p, Offset::Offset(pos));
                    }
                }
                if let Some(tok) = tokens.remove(&p) {
                    tok.cancel();
                }
            }
        }
        self.stats.forget_lag(partitions);
        if abandoned > 0 {
            RevokeGraceExpired {
                abandoned,
                partitions,
            }
            .emit(&self.stats);
        }
        if commit.count() > 0 && !self.transactional {
            match consumer.commit(&commit, CommitMode::Sync) {
                Ok(()) => OffsetsCommitted.emit(&self.stats),
                Err(e) => tracing::warn!(error = %e, "commit on revoke failed"),
            }
        }
        tracing::info!(?partitions, "partitions revoked");
    }

    fn assign(&self, consumer: &BaseConsumer<WorkerContext>, partitions: &[i32]) {
        let warm = || {
            let mut reader = self.warmup.lock().unwrap_or_else(|e| e.into_inner());
            reader.warm(partitions, &self.cache)
        };
        let started = Instant::now();
        match blocking(warm) {
            Ok(w) => tracing::info!(
                results = w.results,
                redelivery = ?w.redelivery,
                since = %chrono::DateTime::from_timestamp_millis(w.since_ms).unwrap_or_default(),
                ms = started.elapsed().as_millis() as u64,
                "idempotency cache warmed for the assigned partitions"
            ),
            Err(e) => tracing::warn!(error = %e, "could not warm the idempotency cache"),
        }
        {
            let mut t = self.tracker.lock().unwrap_or_else(|e| e.into_inner());
            let mut tokens = self
                .partition_tokens
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            for &p in partitions {
                t.assign(p);
                if let Some(old) = tokens.insert(p, self.abandon_all.child_token()) {
                    old.cancel();
                }
            }
        }
        PartitionsAssigned.emit(&self.stats);
        self.rescale(consumer);
        tracing::info!(?partitions, "partitions assigned");
    }

    /// Scales the shared limiters to this instance's share of the jobs topic's partitions.
    fn rescale(&self, consumer: &BaseConsumer<WorkerContext>) {
        if self.shared_limiters.is_empty() {
            return;
        }
        let owned = self
            .tracker
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .partitions()
            .len();
        let total = consumer
            .fetch_metadata(Some(&self.jobs_topic), Duration::from_secs(5))
            .ok()
            .and_then(|m| {
                m.topics()
                    .iter()
                    .find(|t| t.name() == self.jobs_topic)
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

/// The consumer's context: routes rebalance events to [`Shared`].
#[derive(Debug, Clone)]
pub struct WorkerContext {
    /// The worker's shared state.
    pub shared: Arc<Shared>,
}

impl ClientContext for WorkerContext {
    /// Keeps each jobs partition's `consumer_lag` from librdkafka's statistics (-1, unknown,
    /// is left out). Only the few fields needed are decoded, and nothing is logged.
    fn stats_raw(&self, statistics: &[u8]) {
        #[derive(serde::Deserialize)]
        struct Report {
            #[serde(default)]
            topics: HashMap<String, TopicReport>,
        }
        #[derive(serde::Deserialize)]
        struct TopicReport {
            #[serde(default)]
            partitions: HashMap<String, PartitionReport>,
        }
        #[derive(serde::Deserialize)]
        struct PartitionReport {
            #[serde(default = "unknown")]
            consumer_lag: i64,
        }
        fn unknown() -> i64 {
            -1
        }
        let Ok(report) = serde_json::from_slice::<Report>(statistics) else {
            return;
        };
        let owned = self
            .shared
            .tracker
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .partitions();
        let lag = report
            .topics
            .get(&self.shared.jobs_topic)
            .map(|t| {
                t.partitions
                    .iter()
                    .filter_map(|(p, r)| Some((p.parse::<i32>().ok()?, r.consumer_lag)))
                    .filter(|&(p, lag)| p >= 0 && lag >= 0)
                    // Only partitions owned now: a report can lag behind a revoke.
                    .filter(|&(p, _)| owned.contains(&p))
                    .collect()
            })
            .unwrap_or_default();
        self.shared.stats.set_lag(lag);
    }
}

impl ConsumerContext for WorkerContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let parts = partitions_of(tpl, &self.shared.jobs_topic);
            if !parts.is_empty() {
                self.shared.revoke(consumer, &parts);
            }
            let remaining = consumer.assignment().map(|a| a.count()).unwrap_or(0);
            if remaining <= parts.len() {
                AllPartitionsRevoked.emit(&self.shared.stats);
            }
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let parts = partitions_of(tpl, &self.shared.jobs_topic);
                if !parts.is_empty() {
                    self.shared.assign(consumer, &parts);
                }
            }
            Rebalance::Revoke(_) => self.shared.rescale(consumer),
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        match result {
            Ok(()) => OffsetsCommitted.emit(&self.shared.stats),
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

fn partitions_of(tpl: &TopicPartitionList, topic: &str) -> Vec<i32> {
    tpl.elements_for_topic(topic)
        .iter()
        .map(|e| e.partition())
        .collect()
}
