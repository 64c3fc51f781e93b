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

/// Settings that make a consumer prefetch nothing past its first fetch: each seek step wants one
/// record, and fetching on while the next step is prepared would only decompress batches
/// nobody reads.
pub fn single_record_settings(c: &mut ClientConfig) -> &mut ClientConfig {
    c.set("queued.min.messages", "1")
        // A partition over that threshold backs off its next fetch (1 s by default), and that
        // outlives the assignment: the next step on the partition would wait for it.
        .set("fetch.queue.backoff.ms", "0")
}

/// The first record read from a partition: its offset and timestamp (`None`: it has none).
pub type FirstRecord = (i64, Option<i64>);

/// The first record at or after each `(partition, offset)` of `topic`: its offset and
/// timestamp (`None` when the record has none), or `None` at the partition's end. An offset
/// before the log start reads from the log start (`auto.offset.reset = earliest`).
pub fn seek_first_records(
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
/// `None` at the partition's end (see [`seek_first_records`]).
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

/// What the search of [`first_at_or_after`] reads: a partition's watermarks and the first
/// records at or after offsets (a consumer; a fake in the tests).
trait Records {
    /// The low and high watermarks of `partition` of `topic`.
    fn watermarks(&self, topic: &str, partition: i32, timeout: Duration)
        -> KafkaResult<(i64, i64)>;

    /// As [`seek_first_records`].
    fn first(
        &self,
        topic: &str,
        at: &[(i32, i64)],
        timeout: Duration,
    ) -> KafkaResult<Vec<(i32, Option<FirstRecord>)>>;
}

impl Records for BaseConsumer {
    fn watermarks(
        &self,
        topic: &str,
        partition: i32,
        timeout: Duration,
    ) -> KafkaResult<(i64, i64)> {
        self.fetch_watermarks(topic, partition, timeout)
    }

    fn first(
        &self,
        topic: &str,
        at: &[(i32, i64)],
        timeout: Duration,
    ) -> KafkaResult<Vec<(i32, Option<FirstRecord>)>> {
        seek_first_records(self, topic, at, timeout)
    }
}

/// The offset of each of `partitions` of `topic` to read from so that every record stamped
/// at or after `at_ms` is read: a binary search over the records' timestamps, all partitions
/// sought together, until at most [`SCAN_SPAN`] records are left. It assumes timestamps grow
/// with offsets, as results stamped when published do; a record without a timestamp sends the
/// search earlier. Only brokers that cannot answer `offsets_for_times` need it.
pub fn first_at_or_after(
    consumer: &BaseConsumer,
    topic: &str,
    partitions: &[i32],
    at_ms: i64,
    timeout: Duration,
) -> KafkaResult<HashMap<i32, i64>> {
    search(consumer, topic, partitions, at_ms, timeout)
}

fn search(
    records: &impl Records,
    topic: &str,
    partitions: &[i32],
    at_ms: i64,
    timeout: Duration,
) -> KafkaResult<HashMap<i32, i64>> {
    let mut ranges = HashMap::new();
    for &p in partitions {
        ranges.insert(p, records.watermarks(topic, p, timeout)?);
    }
    loop {
        let steps: Vec<(i32, i64)> = ranges
            .iter()
            .filter(|(_, &(lo, hi))| hi - lo > SCAN_SPAN)
            .map(|(&p, &(lo, hi))| (p, lo + (hi - lo) / 2))
            .collect();
        if steps.is_empty() {
            break;
        }
        let mids: HashMap<i32, i64> = steps.iter().copied().collect();
        for (p, first) in records.first(topic, &steps, timeout)? {
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::cell::RefCell;
    use std::collections::BTreeMap;

    /// A partition's low and high watermarks and its records: offset to timestamp (offsets
    /// may have gaps: transaction markers, compaction).
    type Log = (i64, i64, BTreeMap<i64, Option<i64>>);

    /// Partitions as a broker holds them.
    #[derive(Default)]
    struct Fake {
        partitions: HashMap<i32, Log>,
        /// The steps of each call of `first`.
        calls: RefCell<Vec<Vec<(i32, i64)>>>,
    }

    impl Fake {
        fn add(&mut self, p: i32, records: impl IntoIterator<Item = (i64, Option<i64>)>) {
            let records: BTreeMap<i64, Option<i64>> = records.into_iter().collect();
            let lo = records.keys().next().copied().unwrap_or(0);
            let hi = records.keys().next_back().map_or(lo, |o| o + 1);
            self.partitions.insert(p, (lo, hi, records));
        }
    }

    impl Records for Fake {
        fn watermarks(&self, topic: &str, p: i32, _: Duration) -> KafkaResult<(i64, i64)> {
            assert_eq!(topic, "results");
            let (lo, hi, _) = self.partitions[&p];
            Ok((lo, hi))
        }

        fn first(
            &self,
            topic: &str,
            at: &[(i32, i64)],
            _: Duration,
        ) -> KafkaResult<Vec<(i32, Option<FirstRecord>)>> {
            assert_eq!(topic, "results");
            self.calls.borrow_mut().push(at.to_vec());
            Ok(at
                .iter()
                .map(|&(p, o)| {
                    let (lo, _, records) = &self.partitions[&p];
                    (
                        p,
                        records.range(o.max(*lo)..).next().map(|(&o, &ts)| (o, ts)),
                    )
                })
                .collect())
        }
    }

    fn search_fake(fake: &Fake, at_ms: i64) -> HashMap<i32, i64> {
        let partitions: Vec<i32> = fake.partitions.keys().copied().collect();
        search(fake, "results", &partitions, at_ms, Duration::from_secs(1)).unwrap()
    }

    /// Checks what the search promises for one partition: no record stamped at or after
    /// `at_ms` lies before the offset found, and at most [`SCAN_SPAN`] records stamped
    /// earlier lie between it and the first one that is not.
    fn check(fake: &Fake, p: i32, from: i64, at_ms: i64) {
        let (lo, hi, records) = &fake.partitions[&p];
        assert!(
            (*lo..=*hi).contains(&from),
            "partition {p}: {from} outside {lo}..{hi}"
        );
        let first_new = records
            .iter()
            .find(|(_, ts)| ts.is_some_and(|ts| ts >= at_ms))
            .map_or(*hi, |(&o, _)| o);
        assert!(
            from <= first_new,
            "partition {p}: from {from}, first new at {first_new}"
        );
        let old_read = records.range(from..first_new).count() as i64;
        assert!(
            old_read <= SCAN_SPAN,
            "partition {p}: {old_read} older records to skip"
        );
    }

    #[test]
    fn the_search_lands_just_before_the_first_record_of_the_time() {
        let mut fake = Fake::default();
        fake.add(0, (0..100_000).map(|o| (o, Some(1_000 + o))));
        let found = search_fake(&fake, 1_000 + 61_234);
        check(&fake, 0, found[&0], 1_000 + 61_234);
        assert!(found[&0] > 61_234 - SCAN_SPAN, "{found:?}");
        // 100,000 records down to 200: nine halvings.
        assert_eq!(fake.calls.borrow().len(), 9);
    }

    #[test]
    fn partitions_are_sought_together() {
        let mut fake = Fake::default();
        fake.add(0, (0..50_000).map(|o| (o, Some(o))));
        fake.add(1, (0..1_000).map(|o| (o, Some(o * 50))));
        fake.add(2, (0..100).map(|o| (o, Some(o * 500))));
        let found = search_fake(&fake, 25_000);
        for p in 0..3 {
            check(&fake, p, found[&p], 25_000);
        }
        assert_eq!(found[&2], 0, "a short partition is read from its start");
        let calls = fake.calls.borrow();
        // As many rounds as the longest partition needs; each round steps every partition
        // whose range is still longer than SCAN_SPAN.
        assert_eq!(calls.len(), 8, "{calls:?}");
        assert_eq!(calls[0].len(), 2, "{calls:?}");
        assert!(calls.iter().all(|c| c.iter().all(|&(p, _)| p != 2)));
    }

    #[test]
    fn a_time_past_every_record_lands_near_the_end_and_one_before_lands_at_the_start() {
        let mut fake = Fake::default();
        fake.add(0, (5_000..20_000).map(|o| (o, Some(o))));
        let late = search_fake(&fake, 1_000_000)[&0];
        assert!((20_000 - SCAN_SPAN..=20_000).contains(&late), "{late}");
        let early = search_fake(&fake, 0)[&0];
        assert_eq!(early, 5_000);
    }

    #[test]
    fn a_record_without_a_timestamp_sends_the_search_earlier() {
        let mut fake = Fake::default();
        fake.add(0, (0..10_000).map(|o| (o, Some(o))));
        let with_stamps = search_fake(&fake, 9_000)[&0];
        fake.add(0, (0..10_000).map(|o| (o, (o < 5_000).then_some(o))));
        let without = search_fake(&fake, 9_000)[&0];
        assert!(with_stamps > 8_000, "{with_stamps}");
        assert!(without <= 5_000, "{without}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn no_record_of_the_time_is_skipped_and_few_older_are_read(
            logs in proptest::collection::vec(
                (0i64..5_000, proptest::collection::vec((1i64..4, 0i64..30, any::<bool>()), 0..2_000)),
                1..4,
            ),
            at in 0i64..100_000,
        ) {
            let mut fake = Fake::default();
            let mut stamped = true;
            for (p, (start, steps)) in logs.iter().enumerate() {
                let (mut o, mut ts) = (*start, 0i64);
                let mut records = Vec::new();
                for &(gap, dt, unstamped) in steps {
                    // One record in about a hundred without a timestamp, in the first logs only.
                    let none = unstamped && dt == 0 && p == 0;
                    stamped &= !none;
                    records.push((o, (!none).then_some(ts)));
                    o += gap;
                    ts += dt;
                }
                fake.add(p as i32, records);
            }
            let at_ms = at % (fake.partitions.values().map(|(_, _, r)| r.len() as i64).max().unwrap() * 15 + 1);
            let found = search_fake(&fake, at_ms);
            prop_assert_eq!(found.len(), logs.len());
            for (&p, &from) in &found {
                if stamped {
                    check(&fake, p, from, at_ms);
                } else {
                    let (lo, hi, records) = &fake.partitions[&p];
                    prop_assert!((*lo..=*hi).contains(&from));
                    let first_new = records
                        .iter()
                        .find(|(_, ts)| ts.is_some_and(|ts| ts >= at_ms))
                        .map_or(*hi, |(&o, _)| o);
                    prop_assert!(from <= first_new);
                }
            }
        }
    }
}
