//! The group consumer's plumbing: its librdkafka settings (plain and for `exactly_once`),
//! storing an offset, the partitions of one topic in a partition list, and the per-partition
//! lag read from librdkafka's statistics. The worker's rebalance handling uses these.

use crate::config::Config;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaErrorCode;
use std::collections::{BTreeMap, HashMap};

/// How many kilobytes of prefetched jobs librdkafka may hold (`queued.max.messages.kbytes`; its
/// default, 65,536, lets one worker buffer 64 MB of backlog, and each prefetched job costs
/// librdkafka about twice its size again). 1 MB is thousands of jobs ahead of `max_in_flight`,
/// refilled every [`FETCH_QUEUE_BACKOFF_MS`]; librdkafka also caps `fetch.max.bytes` to it unless
/// that is set.
pub const PREFETCH_KBYTES: u32 = 1_024;

/// How long a partition whose prefetched jobs reached [`PREFETCH_KBYTES`] waits before it is
/// fetched again (`fetch.queue.backoff.ms`, milliseconds; librdkafka's default, 1,000, lets a
/// worker doing thousands of jobs a second drain a 1 MB prefetch and wait idle).
pub const FETCH_QUEUE_BACKOFF_MS: u32 = 20;

/// How often librdkafka reports its statistics, which feed `silentauth_consumer_lag`
/// (milliseconds). Each report is a JSON document the consumer builds and the worker parses.
pub const STATISTICS_INTERVAL_MS: u32 = 15_000;

/// The librdkafka settings of the group consumer for at-least-once delivery, before
/// `kafka.properties`.
fn consumer_defaults(config: &Config) -> ClientConfig {
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
        .set("fetch.queue.backoff.ms", FETCH_QUEUE_BACKOFF_MS.to_string())
        // Feeds `silentauth_consumer_lag` (see [`consumer_lags`]).
        .set("statistics.interval.ms", STATISTICS_INTERVAL_MS.to_string());
    c
}

/// The librdkafka settings of the group consumer; for `transactional` (`exactly_once`)
/// delivery offsets travel inside the transactions, so nothing is auto-committed, and jobs
/// written transactionally upstream are read once committed. `kafka.properties` are applied
/// once, last, and win.
pub fn group_consumer_config(config: &Config, transactional: bool) -> ClientConfig {
    let mut c = consumer_defaults(config);
    if transactional {
        c.set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed");
    }
    for (k, v) in &config.kafka.properties {
        c.set(k, v);
    }
    c
}

/// Stores `position` (the next offset to consume) for `partition` of `topic`. A partition that
/// is no longer assigned answers `ERR__STATE`, which is benign during a rebalance.
pub fn store_offset<C: ConsumerContext>(
    consumer: &impl Consumer<C>,
    topic: &str,
    partition: i32,
    position: i64,
) {
    let mut tpl = TopicPartitionList::new();
    if tpl
        .add_partition_offset(topic, partition, Offset::Offset(position))
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

/// The partitions of `topic` in `tpl`.
pub fn partitions_of(tpl: &TopicPartitionList, topic: &str) -> Vec<i32> {
    tpl.elements_for_topic(topic)
        .iter()
        .map(|e| e.partition())
        .collect()
}

/// Each partition's `consumer_lag` in one of librdkafka's statistics reports, for `topic` and
/// the partitions `keep` accepts (-1, unknown, is left out); `None` when the report cannot be
/// read. Only the few fields needed are decoded.
pub fn consumer_lags(
    statistics: &[u8],
    topic: &str,
    keep: impl Fn(i32) -> bool,
) -> Option<BTreeMap<i32, i64>> {
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
    let report = serde_json::from_slice::<Report>(statistics).ok()?;
    let lags = report
        .topics
        .get(topic)
        .map(|t| {
            t.partitions
                .iter()
                .filter_map(|(p, r)| Some((p.parse::<i32>().ok()?, r.consumer_lag)))
                .filter(|&(p, lag)| p >= 0 && lag >= 0)
                .filter(|&(p, _)| keep(p))
                .collect()
        })
        .unwrap_or_default();
    Some(lags)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lags_keep_known_values_of_the_kept_partitions_of_the_topic() {
        let report = br#"{"topics": {
            "jobs": {"partitions": {"0": {"consumer_lag": 5}, "1": {"consumer_lag": -1},
                                    "2": {}, "3": {"consumer_lag": 7}, "-1": {"consumer_lag": 9}}},
            "other": {"partitions": {"0": {"consumer_lag": 11}}}}}"#;
        let lags = consumer_lags(report, "jobs", |p| p != 3).unwrap();
        assert_eq!(lags, BTreeMap::from([(0, 5)]));
        assert_eq!(
            consumer_lags(report, "absent", |_| true),
            Some(BTreeMap::new())
        );
        assert_eq!(consumer_lags(b"not json", "jobs", |_| true), None);
    }

    #[test]
    fn exactly_once_reads_committed_and_commits_nothing_itself() {
        let mut config = Config::default();
        config
            .kafka
            .properties
            .insert("isolation.level".into(), "read_uncommitted".into());
        let plain = group_consumer_config(&config, false);
        assert_eq!(plain.get("enable.auto.commit"), Some("true"));
        assert_eq!(plain.get("isolation.level"), Some("read_uncommitted"));
        let txn = group_consumer_config(&config, true);
        assert_eq!(txn.get("enable.auto.commit"), Some("false"));
        assert_eq!(
            txn.get("isolation.level"),
            Some("read_uncommitted"),
            "properties win"
        );
    }
}
