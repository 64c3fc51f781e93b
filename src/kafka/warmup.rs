//! Warms the idempotency cache from the results topic: the records of the last
//! `worker.code_ttl` at start-up, then only what arrived since, on every assignment.

use crate::config::Config;
use crate::contract::JobResult;
use crate::idempotency::IdempotencyCache;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Reads the results topic up to its end, remembering where it stopped.
pub struct ResultsReader {
    consumer: BaseConsumer,
    topic: String,
    window: Duration,
    timeout: Duration,
    positions: HashMap<i32, i64>,
}

impl std::fmt::Debug for ResultsReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResultsReader")
            .field("topic", &self.topic)
            .field("positions", &self.positions)
            .finish()
    }
}

impl ResultsReader {
    /// A reader of `topics.results` for the window `worker.code_ttl`.
    pub fn new(config: &Config) -> KafkaResult<ResultsReader> {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &config.kafka.brokers)
            .set("group.id", format!("{}.warmup", config.kafka.group_id))
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            .set("auto.offset.reset", "earliest");
        for (k, v) in &config.kafka.properties {
            c.set(k, v);
        }
        // Whatever the passthrough says, this reader never commits and must see EOF.
        c.set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true");
        Ok(ResultsReader {
            consumer: c.create()?,
            topic: config.topics.results.clone(),
            window: config.worker.code_ttl,
            timeout: config.kafka.connect_timeout,
            positions: HashMap::new(),
        })
    }

    /// True when the record at `high - 1` of `partition` is at or after `since`.
    fn newest_is_recent(
        &self,
        partition: i32,
        high: i64,
        since: chrono::DateTime<chrono::Utc>,
    ) -> KafkaResult<bool> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.topic, partition, Offset::Offset(high - 1))?;
        self.consumer.assign(&tpl)?;
        let deadline = crate::clock::from_now_std(self.timeout);
        let recent = loop {
            if Instant::now() > deadline {
                break true; // cannot tell: reading too much is safe, too little is not
            }
            match self.consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    break m
                        .timestamp()
                        .to_millis()
                        .is_none_or(|ts| ts >= since.timestamp_millis())
                }
                Some(Err(KafkaError::PartitionEOF(_))) => break false,
                Some(Err(e)) => {
                    self.consumer.unassign()?;
                    return Err(e);
                }
                None => {}
            }
        };
        self.consumer.unassign()?;
        Ok(recent)
    }

    /// Reads every result from the last position (or the start of the window) to the current
    /// end of each partition into `cache`. Blocking; returns the number of results read.
    pub fn catch_up(&mut self, cache: &IdempotencyCache) -> KafkaResult<usize> {
        let deadline = crate::clock::from_now_std(self.timeout);
        let meta = self
            .consumer
            .fetch_metadata(Some(&self.topic), self.timeout)?;
        let Some(t) = meta.topics().iter().find(|t| t.name() == self.topic) else {
            return Ok(0);
        };
        if t.error().is_some() || t.partitions().is_empty() {
            // The topic does not exist yet: nothing was ever published.
            return Ok(0);
        }
        let partitions: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();

        // Where to start: the last position, or the first offset inside the window.
        let missing: Vec<i32> = partitions
            .iter()
            .copied()
            .filter(|p| !self.positions.contains_key(p))
            .collect();
        if !missing.is_empty() {
            let since =
                chrono::Utc::now() - chrono::Duration::from_std(self.window).unwrap_or_default();
            let mut tpl = TopicPartitionList::new();
            for &p in &missing {
                tpl.add_partition_offset(&self.topic, p, Offset::Offset(since.timestamp_millis()))?;
            }
            let found = self.consumer.offsets_for_times(tpl, self.timeout)?;
            for e in found.elements() {
                let p = e.partition();
                let (low, high) = self
                    .consumer
                    .fetch_watermarks(&self.topic, p, self.timeout)?;
                let start = match e.offset() {
                    Offset::Offset(o) => o,
                    // "No record at or after `since`" — unless the broker cannot look offsets up
                    // by time (librdkafka's mock cluster answers End): then, if the newest record
                    // is inside the window, scan the partition from its start.
                    _ if high > low && self.newest_is_recent(p, high, since)? => low,
                    _ => high,
                };
                self.positions.insert(p, start);
            }
        }

        // Where to stop: each partition's end now.
        let mut todo = TopicPartitionList::new();
        let mut ends = HashMap::new();
        for &p in &partitions {
            let (_, high) = self
                .consumer
                .fetch_watermarks(&self.topic, p, self.timeout)?;
            let pos = self.positions.get(&p).copied().unwrap_or(high);
            if pos < high {
                todo.add_partition_offset(&self.topic, p, Offset::Offset(pos))?;
                ends.insert(p, high);
            }
        }
        if ends.is_empty() {
            return Ok(0);
        }
        self.consumer.assign(&todo)?;
        let mut read = 0;
        while !ends.is_empty() {
            if Instant::now() > deadline {
                self.consumer.unassign()?;
                return Err(KafkaError::MessageConsumption(
                    rdkafka::types::RDKafkaErrorCode::OperationTimedOut,
                ));
            }
            match self.consumer.poll(Duration::from_millis(100)) {
                None => {}
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    if let Some(end) = ends.remove(&p) {
                        let pos = self.positions.entry(p).or_insert(end);
                        *pos = (*pos).max(end);
                    }
                }
                Some(Err(e)) => {
                    self.consumer.unassign()?;
                    return Err(e);
                }
                Some(Ok(m)) => {
                    let p = m.partition();
                    self.positions.insert(p, m.offset() + 1);
                    if let Some(r) = m
                        .payload()
                        .and_then(|v| serde_json::from_slice::<JobResult>(v).ok())
                    {
                        cache.remember(r);
                        read += 1;
                    }
                    if ends.get(&p).is_some_and(|&end| m.offset() + 1 >= end) {
                        ends.remove(&p);
                    }
                }
            }
        }
        self.consumer.unassign()?;
        Ok(read)
    }
}
