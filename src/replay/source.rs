//! The reading side of a replay: the replay group's consumer, the topic checks, each partition's
//! range (from the group's position, or the low watermark, to the end captured at start), and the
//! synchronous commits.

use super::options::ReplayError;
use crate::config::Config;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaResult;
use rdkafka::message::BorrowedMessage;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Attempts of each broker request (metadata, watermarks, committed offsets, commit).
const ATTEMPTS: u32 = 3;

/// The part of one partition a replay reads: offsets `start..end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    /// The partition.
    pub partition: i32,
    /// The first offset to read.
    pub start: i64,
    /// The high watermark at start: this offset and later ones are left for the next run.
    pub end: i64,
}

/// The consumer of the dead-letter topic, in the group `<kafka.group_id>.replay`.
pub struct Source {
    consumer: Arc<StreamConsumer>,
    topic: String,
    group: String,
    timeout: Duration,
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source")
            .field("topic", &self.topic)
            .field("group", &self.group)
            .finish()
    }
}

/// The replay's own consumer group: its position never moves the worker's.
pub fn replay_group(config: &Config) -> String {
    format!("{}.replay", config.kafka.group_id)
}

impl Source {
    /// A consumer of `topics.dead_letter` that commits only when told to and reports EOF.
    pub fn new(config: &Config) -> Result<Source, ReplayError> {
        let group = replay_group(config);
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &config.kafka.brokers)
            .set("group.id", &group)
            .set("auto.offset.reset", "earliest")
            .set("client.id", "silentauth-worker-replay");
        for (k, v) in &config.kafka.properties {
            c.set(k, v);
        }
        // Whatever the passthrough says: commits happen only after acknowledgements, and the
        // end of a partition must be visible.
        c.set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "true");
        let consumer: StreamConsumer = c
            .create()
            .map_err(|e| ReplayError::broker("creating the replay consumer", e))?;
        Ok(Source {
            consumer: Arc::new(consumer),
            topic: config.topics.dead_letter.clone(),
            group,
            // Each of the ATTEMPTS gets a share, so a dead cluster fails within connect_timeout.
            timeout: (config.kafka.connect_timeout / ATTEMPTS).max(Duration::from_secs(1)),
        })
    }

    /// The replay group's id.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// Runs a blocking client call off the async threads, retrying it with backoff.
    async fn blocking<T, F>(&self, what: &str, f: F) -> Result<T, ReplayError>
    where
        T: Send + 'static,
        F: Fn(&StreamConsumer) -> KafkaResult<T> + Send + Sync + 'static,
    {
        let f = Arc::new(f);
        let mut backoff = Duration::from_millis(200);
        let mut attempt = 1;
        loop {
            let (c, g) = (self.consumer.clone(), f.clone());
            let result = match tokio::task::spawn_blocking(move || g(&c)).await {
                Ok(r) => r,
                Err(e) => std::panic::resume_unwind(e.into_panic()),
            };
            match result {
                Ok(t) => return Ok(t),
                Err(e) if attempt >= ATTEMPTS => return Err(ReplayError::broker(what, e)),
                Err(e) => {
                    tracing::warn!(error = %e, attempt, "{what} failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                    attempt += 1;
                }
            }
        }
    }

    /// Checks that every `(argument, topic)` exists, naming the argument when one does not, and
    /// returns the partitions of the dead-letter topic.
    pub async fn check_topics(&self, topics: &[(&str, &str)]) -> Result<Vec<i32>, ReplayError> {
        let timeout = self.timeout;
        // All topics: asking for one by name may create it on brokers that auto-create.
        let listed = self
            .blocking("reading the cluster's metadata", move |c| {
                let meta = c.fetch_metadata(None, timeout)?;
                Ok(meta
                    .topics()
                    .iter()
                    .filter(|t| t.error().is_none() && !t.partitions().is_empty())
                    .map(|t| {
                        let parts: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
                        (t.name().to_owned(), parts)
                    })
                    .collect::<BTreeMap<String, Vec<i32>>>())
            })
            .await?;
        for (argument, topic) in topics {
            if !listed.contains_key(*topic) {
                return Err(ReplayError::bad(
                    argument,
                    format!("topic {topic:?} does not exist"),
                ));
            }
        }
        let mut partitions = listed.get(&self.topic).cloned().unwrap_or_default();
        partitions.sort_unstable();
        Ok(partitions)
    }

    /// Each partition's range: from the group's committed position (or the low watermark with
    /// `from_beginning`, or when the group has none) to the high watermark now.
    pub async fn plan(
        &self,
        partitions: &[i32],
        from_beginning: bool,
    ) -> Result<Vec<Range>, ReplayError> {
        let (topic, timeout) = (self.topic.clone(), self.timeout);
        let parts = partitions.to_vec();
        let marks = self
            .blocking("reading the dead-letter topic's watermarks", move |c| {
                parts
                    .iter()
                    .map(|&p| c.fetch_watermarks(&topic, p, timeout).map(|w| (p, w)))
                    .collect::<KafkaResult<Vec<_>>>()
            })
            .await?;
        let mut committed = BTreeMap::new();
        if !from_beginning && !partitions.is_empty() {
            let (topic, parts) = (self.topic.clone(), partitions.to_vec());
            let tpl = self
                .blocking("reading the replay group's position", move |c| {
                    let mut tpl = TopicPartitionList::new();
                    for &p in &parts {
                        tpl.add_partition(&topic, p);
                    }
                    c.committed_offsets(tpl, timeout)
                })
                .await?;
            for e in tpl.elements() {
                if let Offset::Offset(o) = e.offset() {
                    committed.insert(e.partition(), o);
                }
            }
        }
        Ok(marks
            .into_iter()
            .map(|(partition, (low, high))| {
                let start = committed.get(&partition).map_or(low, |&o| o.max(low));
                Range {
                    partition,
                    start: start.min(high),
                    end: high,
                }
            })
            .collect())
    }

    /// Starts fetching every non-empty range at its start.
    pub fn assign(&self, ranges: &[Range]) -> Result<(), ReplayError> {
        let mut tpl = TopicPartitionList::new();
        for r in ranges.iter().filter(|r| r.start < r.end) {
            tpl.add_partition_offset(&self.topic, r.partition, Offset::Offset(r.start))
                .map_err(|e| ReplayError::broker("assigning the dead-letter topic", e))?;
        }
        self.consumer
            .assign(&tpl)
            .map_err(|e| ReplayError::broker("assigning the dead-letter topic", e))
    }

    /// The next record or event (`PartitionEOF` included).
    pub async fn recv(&self) -> KafkaResult<BorrowedMessage<'_>> {
        self.consumer.recv().await
    }

    /// Commits `positions` (partition → next offset to read) synchronously.
    pub async fn commit(&self, positions: &BTreeMap<i32, i64>) -> Result<(), ReplayError> {
        if positions.is_empty() {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::new();
        for (&p, &o) in positions {
            tpl.add_partition_offset(&self.topic, p, Offset::Offset(o))
                .map_err(|e| ReplayError::broker("committing the replay position", e))?;
        }
        self.blocking("committing the replay position", move |c| {
            c.commit(&tpl, CommitMode::Sync)
        })
        .await
    }
}
