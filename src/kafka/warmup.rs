//! Warms the idempotency cache on every assignment with only the results a redelivered job can
//! have, so the time to ready follows what can be redelivered, not what the results topic holds.
//!
//! The bound: offsets are in append order, so every job the group can redeliver on a partition
//! was appended at or after the jobs record at its committed offset, and its result was
//! published after that. So results are read from the append time of that record (the oldest
//! among the assigned partitions) minus `worker.warmup_margin`, which covers the clock skew
//! between whoever stamped the job (its producer, or the broker with `LogAppendTime`) and the
//! worker that stamped the result. However far the committed offset lags (commits failing for
//! minutes), the bound moves back with it. Nothing before `now - worker.code_ttl` is read: an
//! older job's code is spent or expired either way. A partition without a committed offset
//! (a new group, whose `auto.offset.reset = earliest` may redeliver the whole log), or offsets
//! that cannot be read, mean `now - code_ttl`.
//!
//! Results keyed by `job_id` land on a partition chosen by the key, not by the job's
//! partition, so every results partition is read from that time: its offset comes from
//! `offsets_for_times`, or, where the broker cannot answer it (librdkafka's MockCluster),
//! from a search over the records' timestamps ([`super::warmup_seek`]).

use super::producer::{FINGERPRINT_HEADER, REPLAY_COUNT_HEADER};
use super::warmup_seek::{first_at_or_after, seek_first_records, single_record_settings};
use crate::config::Config;
use crate::contract::JobResult;
use crate::idempotency::index::{Full, Indexed, Stored};
use crate::idempotency::IdempotencyCache;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Where redelivery can start on the partitions just assigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redelivery {
    /// Anything inside `code_ttl` may come again: a partition has no committed offset, or the
    /// offsets or the records at them could not be read.
    Unbounded,
    /// The oldest timestamp (epoch milliseconds) of the records at the committed offsets.
    From(i64),
    /// Every committed offset is at its partition's end: only new jobs will come.
    Nothing,
}

/// The time (epoch milliseconds) from which results are read, `now_ms` being now.
pub fn warm_since(now_ms: i64, code_ttl: Duration, margin: Duration, from: Redelivery) -> i64 {
    let floor = now_ms.saturating_sub(millis(code_ttl));
    let start = match from {
        Redelivery::Unbounded => floor,
        Redelivery::From(ts) => ts.saturating_sub(millis(margin)),
        Redelivery::Nothing => now_ms.saturating_sub(millis(margin)),
    };
    start.max(floor)
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// What one warm-up did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Warmed {
    /// Results remembered.
    pub results: usize,
    /// Where redelivery can start.
    pub redelivery: Redelivery,
    /// The time results were read from (epoch milliseconds).
    pub since_ms: i64,
}

/// Reads the results topic into the cache, remembering how far it got.
pub struct ResultsReader {
    consumer: BaseConsumer,
    /// Reads single records, for the seek (see [`single_record_settings`]).
    seeker: BaseConsumer,
    /// A client of the worker's group that never joins it: it reads the committed offsets.
    /// (The group consumer itself cannot, inside its rebalance callback: the offset fetch
    /// would wait for the callback to return.)
    group: BaseConsumer,
    topic: String,
    /// Reads the presentation ledger instead of the results topic.
    ledger: bool,
    jobs_topic: String,
    code_ttl: Duration,
    margin: Duration,
    timeout: Duration,
    positions: HashMap<i32, i64>,
    /// Every result stamped at or after this time, up to `positions`, was read.
    covered_ms: Option<i64>,
}

impl std::fmt::Debug for ResultsReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResultsReader")
            .field("topic", &self.topic)
            .field("positions", &self.positions)
            .field("covered_ms", &self.covered_ms)
            .finish()
    }
}

impl ResultsReader {
    /// A reader of `topics.results` (and of single records of `topics.jobs`).
    pub fn new(config: &Config) -> KafkaResult<ResultsReader> {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &config.kafka.brokers)
            .set("group.id", format!("{}.warmup", config.kafka.group_id))
            .set("auto.offset.reset", "earliest");
        for (k, v) in &config.kafka.properties {
            c.set(k, v);
        }
        // Whatever the passthrough says, this reader never commits and must see EOF.
        c.set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true");
        let seeker = single_record_settings(&mut c.clone()).create()?;
        let group = c.clone().set("group.id", &config.kafka.group_id).create()?;
        Ok(ResultsReader {
            consumer: c.create()?,
            seeker,
            group,
            topic: config.topics.results.clone(),
            ledger: false,
            jobs_topic: config.topics.jobs.clone(),
            code_ttl: config.worker.code_ttl,
            margin: config.worker.warmup_margin,
            timeout: config.kafka.connect_timeout,
            positions: HashMap::new(),
            covered_ms: None,
        })
    }

    /// A reader of `topics.ledger`, the presentations recorded before token requests; it reads
    /// from where the results reader read (see [`ResultsReader::catch_up`]).
    pub fn ledger(config: &Config) -> KafkaResult<ResultsReader> {
        let mut reader = ResultsReader::new(config)?;
        reader.topic = config.topics.ledger.clone();
        reader.ledger = true;
        Ok(reader)
    }

    /// Warms the cache for `partitions` of the jobs topic, just assigned to this worker: from
    /// what their committed offsets can redeliver. Blocking.
    pub fn warm(
        &mut self,
        partitions: &[i32],
        cache: &IdempotencyCache,
    ) -> Result<Warmed, WarmupError> {
        let committed = committed_offsets(&self.group, &self.jobs_topic, partitions, self.timeout);
        self.warm_from(&committed, cache)
    }

    /// Warms the cache for jobs partitions whose committed offsets are `committed` (`None`:
    /// none). Blocking.
    pub fn warm_from(
        &mut self,
        committed: &[(i32, Option<i64>)],
        cache: &IdempotencyCache,
    ) -> Result<Warmed, WarmupError> {
        let redelivery = self.redelivery(committed).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot read the jobs at the committed offsets; warming over worker.code_ttl");
            Redelivery::Unbounded
        });
        let now = chrono::Utc::now().timestamp_millis();
        let since_ms = warm_since(now, self.code_ttl, self.margin, redelivery);
        let results = self.catch_up(cache, since_ms)?;
        Ok(Warmed {
            results,
            redelivery,
            since_ms,
        })
    }

    /// The oldest timestamp of the jobs records at `committed`.
    fn redelivery(&self, committed: &[(i32, Option<i64>)]) -> KafkaResult<Redelivery> {
        let mut at = Vec::with_capacity(committed.len());
        for &(p, o) in committed {
            match o {
                Some(o) => at.push((p, o)),
                None => return Ok(Redelivery::Unbounded),
            }
        }
        if at.is_empty() {
            return Ok(Redelivery::Nothing);
        }
        // An offset below the log start (retention) resets to the earliest record, as the
        // group's own `auto.offset.reset = earliest` does.
        let found = seek_first_records(&self.seeker, &self.jobs_topic, &at, self.timeout)?;
        let mut oldest = None;
        for (_, first) in found {
            match first {
                // At the end: nothing to redeliver on this partition.
                None => {}
                Some((_, Some(ts))) => oldest = Some(oldest.map_or(ts, |o: i64| o.min(ts))),
                Some((_, None)) => return Ok(Redelivery::Unbounded),
            }
        }
        Ok(oldest.map_or(Redelivery::Nothing, Redelivery::From))
    }

    /// Reads every result stamped at or after `since_ms` that was not read before, up to the
    /// current end of each partition, into `cache`. Blocking; returns the results remembered.
    pub fn catch_up(
        &mut self,
        cache: &IdempotencyCache,
        since_ms: i64,
    ) -> Result<usize, WarmupError> {
        let Some(partitions) = self.partitions()? else {
            // The topic does not exist yet: nothing was ever published.
            return Ok(0);
        };
        let from = self.start_positions(&partitions, since_ms)?;
        let (todo, ends) = self.unread(&partitions)?;
        if ends.is_empty() {
            return Ok(0);
        }
        self.consumer.assign(&todo)?;
        let read = self.read_to_ends(cache, ends, from);
        self.consumer.unassign()?;
        read
    }

    /// The topic's partitions; `None` when it does not exist or has none.
    fn partitions(&self) -> KafkaResult<Option<Vec<i32>>> {
        let meta = self
            .consumer
            .fetch_metadata(Some(&self.topic), self.timeout)?;
        let Some(t) = meta.topics().iter().find(|t| t.name() == self.topic) else {
            return Ok(None);
        };
        if t.error().is_some() || t.partitions().is_empty() {
            return Ok(None);
        }
        Ok(Some(t.partitions().iter().map(|p| p.id()).collect()))
    }

    /// Sets where to start: from `since_ms` everywhere when that is earlier than what was read
    /// already; otherwise where the last read stopped (new partitions: from `covered_ms`).
    /// Returns the time read from.
    fn start_positions(&mut self, partitions: &[i32], since_ms: i64) -> KafkaResult<i64> {
        let (seek, from): (Vec<i32>, i64) = match self.covered_ms {
            Some(c) if c <= since_ms => (
                partitions
                    .iter()
                    .copied()
                    .filter(|p| !self.positions.contains_key(p))
                    .collect(),
                c,
            ),
            _ => (partitions.to_vec(), since_ms),
        };
        if !seek.is_empty() {
            let starts = self.offsets_at(&seek, from)?;
            self.positions.extend(starts);
        }
        self.covered_ms = Some(from);
        Ok(from)
    }

    /// Where to stop: the partitions with records between their position and their end now,
    /// as an assignment from the positions, and their ends.
    fn unread(&self, partitions: &[i32]) -> KafkaResult<(TopicPartitionList, HashMap<i32, i64>)> {
        let mut todo = TopicPartitionList::new();
        let mut ends = HashMap::new();
        for &p in partitions {
            let (_, high) = self
                .consumer
                .fetch_watermarks(&self.topic, p, self.timeout)?;
            let pos = self.positions.get(&p).copied().unwrap_or(high);
            if pos < high {
                todo.add_partition_offset(&self.topic, p, Offset::Offset(pos))?;
                ends.insert(p, high);
            }
        }
        Ok((todo, ends))
    }

    /// Reads the assigned partitions up to `ends` (or until the brokers stop answering for
    /// `timeout`), remembering the records stamped at or after `from_ms`. Every result is
    /// indexed; the newest of each partition (as many as the cache holds) are decoded into the
    /// cache too, so the usual redelivery needs no read-back.
    fn read_to_ends(
        &mut self,
        cache: &IdempotencyCache,
        mut ends: HashMap<i32, i64>,
        from_ms: i64,
    ) -> Result<usize, WarmupError> {
        let tail = (cache.result_capacity() / ends.len()) as i64;
        let decode_from: HashMap<i32, i64> = ends.iter().map(|(&p, &e)| (p, e - tail)).collect();
        let mut read = 0;
        // Gives up only when the brokers stop answering: every record or partition end read
        // gives the read another `timeout`, so a long range on a busy machine is read whole.
        let mut deadline = crate::clock::from_now_std(self.timeout);
        while !ends.is_empty() {
            if Instant::now() > deadline {
                return Err(KafkaError::MessageConsumption(
                    rdkafka::types::RDKafkaErrorCode::OperationTimedOut,
                )
                .into());
            }
            match self.consumer.poll(Duration::from_millis(100)) {
                None => {}
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    deadline = crate::clock::from_now_std(self.timeout);
                    if let Some(end) = ends.remove(&p) {
                        let pos = self.positions.entry(p).or_insert(end);
                        *pos = (*pos).max(end);
                    }
                }
                Some(Err(e)) => return Err(e.into()),
                Some(Ok(m)) => {
                    deadline = crate::clock::from_now_std(self.timeout);
                    let p = m.partition();
                    self.positions.insert(p, m.offset() + 1);
                    // The search over timestamps may start a little early: skip what is older.
                    let recent = m.timestamp().to_millis().is_none_or(|ts| ts >= from_ms);
                    let newest = decode_from.get(&p).is_some_and(|&d| m.offset() >= d);
                    let kind = match (self.ledger, newest) {
                        (true, _) => Record::Presentation,
                        (false, decode) => Record::Result { decode },
                    };
                    if recent && remember(cache, &m, kind).map_err(WarmupError::Full)? {
                        read += 1;
                    }
                    if ends.get(&p).is_some_and(|&end| m.offset() + 1 >= end) {
                        ends.remove(&p);
                    }
                }
            }
        }
        Ok(read)
    }

    /// The first offset of each of `partitions` stamped at or after `at_ms`.
    fn offsets_at(&self, partitions: &[i32], at_ms: i64) -> KafkaResult<HashMap<i32, i64>> {
        let mut tpl = TopicPartitionList::new();
        for &p in partitions {
            tpl.add_partition_offset(&self.topic, p, Offset::Offset(at_ms))?;
        }
        let found = self.consumer.offsets_for_times(tpl, self.timeout)?;
        let mut starts = HashMap::new();
        let mut unanswered = Vec::new();
        for e in found.elements() {
            match e.offset() {
                Offset::Offset(o) => {
                    starts.insert(e.partition(), o);
                }
                // "No record at or after `at_ms`", or a broker that cannot look offsets up by
                // time (the MockCluster answers End): search the timestamps, which answers both.
                _ => unanswered.push(e.partition()),
            }
        }
        if !unanswered.is_empty() {
            starts.extend(first_at_or_after(
                &self.seeker,
                &self.topic,
                &unanswered,
                at_ms,
                self.timeout,
            )?);
        }
        Ok(starts)
    }
}

/// Why a warm-up failed.
#[derive(Debug, thiserror::Error)]
pub enum WarmupError {
    /// The brokers failed or timed out.
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    /// More results lie in range than the redelivery index holds.
    #[error("worker.idempotency_index_size: more than {} results lie within worker.code_ttl of what the assigned partitions can redeliver, more than the redelivery index holds; raise worker.idempotency_index_size (about 70 bytes a job)", .0.max_entries)]
    Full(Full),
}

/// Indexes one results record (a result of a decoded job; others are left out) and, when
/// `decode` is set or the record predates the index headers, caches the result itself. True
/// when it was a result.
/// What a warm-up reads a record as.
#[derive(Debug, Clone, Copy)]
enum Record {
    /// A result; `decode`: cache the result itself too.
    Result { decode: bool },
    /// A presentation recorded in the ledger (headers only).
    Presentation,
}

fn remember(cache: &IdempotencyCache, m: &BorrowedMessage<'_>, kind: Record) -> Result<bool, Full> {
    let (decode, presentation) = match kind {
        Record::Result { decode } => (decode, false),
        Record::Presentation => (false, true),
    };
    let header = |name: &str| {
        m.headers().and_then(|h| {
            h.iter()
                .filter(|x| x.key == name)
                .last()
                .and_then(|x| x.value)
                .and_then(|v| std::str::from_utf8(v).ok())
        })
    };
    let Some(job_id) = m.key().and_then(|k| std::str::from_utf8(k).ok()) else {
        return Ok(false);
    };
    let fingerprint = match header(FINGERPRINT_HEADER) {
        Some("-") => return Ok(false),
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => None,
    };
    let replay_count = header(REPLAY_COUNT_HEADER).and_then(|v| v.parse::<u32>().ok());
    let mut result = None;
    if !presentation && (decode || fingerprint.is_none() || replay_count.is_none()) {
        match m
            .payload()
            .and_then(|v| serde_json::from_slice::<JobResult>(v).ok())
        {
            Some(r) if r.job_id == job_id => result = Some(r),
            _ => return Ok(false),
        }
    }
    let replay_count = replay_count
        .or(result.as_ref().map(|r| r.replay_count))
        .unwrap_or(0);
    let indexed = Indexed {
        fingerprint,
        replay_count,
        stored: (!presentation).then(|| Stored {
            partition: m.partition(),
            offset: m.offset(),
        }),
    };
    let seen_ms = m
        .timestamp()
        .to_millis()
        .unwrap_or_else(|| chrono::Utc::now().timestamp_millis());
    cache.index(job_id, indexed, seen_ms)?;
    if let Some(r) = result {
        cache.remember(&r, fingerprint);
    }
    Ok(true)
}

/// The committed offset of each of `partitions` of `topic` for `group`'s consumer group (the
/// client need not be a member); `None` where nothing is committed, and for all of them when
/// the offsets cannot be read.
pub fn committed_offsets<C: ConsumerContext>(
    group: &impl Consumer<C>,
    topic: &str,
    partitions: &[i32],
    timeout: Duration,
) -> Vec<(i32, Option<i64>)> {
    let mut tpl = TopicPartitionList::new();
    for &p in partitions {
        tpl.add_partition(topic, p);
    }
    match group.committed_offsets(tpl, timeout) {
        Ok(c) => partitions
            .iter()
            .map(|&p| {
                let o = c.find_partition(topic, p).and_then(|e| match e.offset() {
                    Offset::Offset(o) if o >= 0 => Some(o),
                    _ => None,
                });
                (p, o)
            })
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the committed offsets");
            partitions.iter().map(|&p| (p, None)).collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(600);
    const MARGIN: Duration = Duration::from_secs(10);
    const NOW: i64 = 1_800_000_000_000;

    #[test]
    fn a_committed_offset_bounds_the_read_by_its_record_minus_the_margin() {
        let five_min_ago = NOW - 300_000;
        assert_eq!(
            warm_since(NOW, TTL, MARGIN, Redelivery::From(five_min_ago)),
            five_min_ago - 10_000
        );
    }

    #[test]
    fn never_before_code_ttl() {
        let hour_ago = NOW - 3_600_000;
        assert_eq!(
            warm_since(NOW, TTL, MARGIN, Redelivery::From(hour_ago)),
            NOW - 600_000
        );
        assert_eq!(
            warm_since(NOW, TTL, MARGIN, Redelivery::Unbounded),
            NOW - 600_000
        );
        // A margin as long as the window still stops at it.
        assert_eq!(
            warm_since(NOW, TTL, TTL, Redelivery::From(NOW)),
            NOW - 600_000
        );
    }

    #[test]
    fn nothing_to_redeliver_reads_only_the_margin() {
        assert_eq!(
            warm_since(NOW, TTL, MARGIN, Redelivery::Nothing),
            NOW - 10_000
        );
    }

    #[test]
    fn a_record_stamped_in_the_future_still_reads_from_the_margin_before_it() {
        // A producer's clock ahead of the worker's: the bound follows the record, not now.
        assert_eq!(
            warm_since(NOW, TTL, MARGIN, Redelivery::From(NOW + 5_000)),
            NOW - 5_000
        );
    }
}
