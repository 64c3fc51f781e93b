//! Single records read by offset, for the cache warm-up: the timestamp of the jobs record at a
//! committed offset, and the first results offset at or after a time where the broker cannot
//! look it up (librdkafka's MockCluster answers `offsets_for_times` with "end").

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaErrorCode;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The search over timestamps stops once a partition's range is this short and reading starts
/// from its low end (records older than the bound are skipped as they are read).
pub const SCAN_SPAN: i64 = 200;

/// Settings that make a consumer prefetch nothing past its first fetch: each probe wants one
/// record, and fetching on while the next probe is prepared would only decompress batches
/// nobody reads.
pub fn probe_settings(c: &mut ClientConfig) -> &mut ClientConfig {
    c.set("queued.min.messages", "1")
        // A partition over that threshold backs off its next fetch (1 s by default), and that
        // outlives the assignment: the next probe of the partition would wait for it.
        .set("fetch.queue.backoff.ms", "0")
}

/// The first record read from a partition: its offset and timestamp (`None`: it has none).
pub type FirstRecord = (i64, Option<i64>);

/// The first record at or after each `(partition, offset)` of `topic`: its offset and
/// timestamp (`None` when the record has none), or `None` at the partition's end. An offset
/// before the log start reads from the log start (`auto.offset.reset = earliest`).
pub fn probe_first_records(
    consumer: &BaseConsumer,
    topic: &str,
    at: &[(i32, i64)],
    timeout: Duration,
) -> KafkaResult<Vec<(i32, Option<FirstRecord>)>> {
    first_records(consumer, topic, at, timeout, |m| {
        (m.offset(), m.timestamp().to_millis())
    })
}

/// What `read` makes of the first record at or after each `(partition, offset)` of `topic`, or
/// `None` at the partition's end (see [`probe_first_records`]).
pub fn first_records<T>(
    consumer: &BaseConsumer,
    topic: &str,
    at: &[(i32, i64)],
    timeout: Duration,
    read: impl Fn(&BorrowedMessage<'_>) -> T,
) -> KafkaResult<Vec<(i32, Option<T>)>> {
    let mut tpl = TopicPartitionList::new();
    let mut wanted: HashMap<i32, i64> = HashMap::new();
    for &(p, o) in at {
        tpl.add_partition_offset(topic, p, Offset::Offset(o))?;
        wanted.insert(p, o);
    }
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    consumer.assign(&tpl)?;
    let deadline = crate::clock::from_now_std(timeout);
    let mut found = Vec::with_capacity(wanted.len());
    let outcome = loop {
        if wanted.is_empty() {
            break Ok(());
        }
        if Instant::now() > deadline {
            break Err(KafkaError::MessageConsumption(
                RDKafkaErrorCode::OperationTimedOut,
            ));
        }
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Ok(m)) => {
                let p = m.partition();
                if m.topic() == topic && wanted.get(&p).is_some_and(|&o| m.offset() >= o) {
                    wanted.remove(&p);
                    found.push((p, Some(read(&m))));
                }
            }
            Some(Err(KafkaError::PartitionEOF(p))) if wanted.remove(&p).is_some() => {
                found.push((p, None));
            }
            Some(Err(KafkaError::PartitionEOF(_))) => {}
            Some(Err(e)) => break Err(e),
        }
    };
    consumer.unassign()?;
    outcome.map(|()| found)
}

/// The offset of each of `partitions` of `topic` to read from so that every record stamped
/// at or after `at_ms` is read: a binary search over the records' timestamps, all partitions
/// probed together, until at most [`SCAN_SPAN`] records are left. It assumes timestamps grow
/// with offsets, as results stamped when published do; a record without a timestamp sends the
/// search earlier. Only brokers that cannot answer `offsets_for_times` need it.
pub fn first_at_or_after(
    consumer: &BaseConsumer,
    topic: &str,
    partitions: &[i32],
    at_ms: i64,
    timeout: Duration,
) -> KafkaResult<HashMap<i32, i64>> {
    let mut ranges = HashMap::new();
    for &p in partitions {
        ranges.insert(p, consumer.fetch_watermarks(topic, p, timeout)?);
    }
    loop {
        let probes: Vec<(i32, i64)> = ranges
            .iter()
            .filter(|(_, &(lo, hi))| hi - lo > SCAN_SPAN)
            .map(|(&p, &(lo, hi))| (p, lo + (hi - lo) / 2))
            .collect();
        if probes.is_empty() {
            break;
        }
        let mids: HashMap<i32, i64> = probes.iter().copied().collect();
        for (p, first) in probe_first_records(consumer, topic, &probes, timeout)? {
            let (Some(range), Some(&mid)) = (ranges.get_mut(&p), mids.get(&p)) else {
                continue;
            };
            match first {
                Some((offset, Some(ts))) if ts < at_ms => range.0 = (offset + 1).min(range.1),
                // At or after `at_ms`, without a timestamp, or nothing left from `mid` on.
                _ => range.1 = mid,
            }
        }
    }
    Ok(ranges.into_iter().map(|(p, (lo, _))| (p, lo)).collect())
}
