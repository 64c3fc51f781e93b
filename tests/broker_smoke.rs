//! Smoke tests of the test broker (see `tests/support/broker.rs` for how it is chosen):
//! idempotent produce with keys and headers, group consumption with manual offset store and
//! commit, and two-member consumer-group rebalances (eager `range` and `cooperative-sticky`).
//!
//! Run against tansu with `TANSU_BIN=~/.cargo/bin/tansu cargo test --test broker_smoke`, and
//! against the mock cluster with `TEST_BROKER=mock` or with neither variable set.

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use futures::future::{join_all, select_all};
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, RebalanceProtocol, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::Offset;
use support::TestBroker;

const PARTITIONS: i32 = 4;
const RECORDS: usize = 1_000;

fn key_of(i: usize) -> String {
    format!("key-{i}")
}

fn value_of(i: usize) -> String {
    format!("value of record {i}")
}

/// Headers of record `i`: text, binary with a NUL byte, empty and null values.
fn headers_of(i: usize) -> OwnedHeaders {
    OwnedHeaders::new()
        .insert(Header {
            key: "seq",
            value: Some(i.to_string().as_bytes()),
        })
        .insert(Header {
            key: "bin",
            value: Some(&[0u8, 0xff, (i % 256) as u8][..]),
        })
        .insert(Header {
            key: "empty",
            value: Some(&b""[..]),
        })
        .insert(Header::<&[u8]> {
            key: "null",
            value: None,
        })
}

/// Checks key, value and headers of a record read back; returns its sequence number.
fn check_record(message: &OwnedMessage) -> usize {
    let headers = message.headers().expect("record has headers");
    assert_eq!(headers.count(), 4, "header count at {}", describe(message));
    let seq_header = headers.get(0);
    assert_eq!(seq_header.key, "seq");
    let seq: usize = std::str::from_utf8(seq_header.value.expect("seq value"))
        .expect("utf-8 seq")
        .parse()
        .expect("numeric seq");
    assert_eq!(message.key(), Some(key_of(seq).as_bytes()), "key of {seq}");
    assert_eq!(
        message.payload(),
        Some(value_of(seq).as_bytes()),
        "value of {seq}"
    );
    let bin = headers.get(1);
    assert_eq!(bin.key, "bin");
    assert_eq!(
        bin.value,
        Some(&[0u8, 0xff, (seq % 256) as u8][..]),
        "bin of {seq}"
    );
    let empty = headers.get(2);
    assert_eq!(
        (empty.key, empty.value),
        ("empty", Some(&b""[..])),
        "empty of {seq}"
    );
    let null = headers.get(3);
    assert_eq!((null.key, null.value), ("null", None), "null of {seq}");
    seq
}

fn describe(message: &OwnedMessage) -> String {
    format!(
        "{}/{}@{}",
        message.topic(),
        message.partition(),
        message.offset()
    )
}

/// Produces records `range` with the idempotent producer, all in flight at once, and returns
/// `(partition, offset)` per sequence number.
async fn produce_range(
    producer: &FutureProducer,
    topic: &str,
    range: std::ops::Range<usize>,
) -> BTreeMap<usize, (i32, i64)> {
    let mut pending = Vec::with_capacity(range.len());
    for i in range {
        let key = key_of(i);
        let value = value_of(i);
        let record = FutureRecord::to(topic)
            .key(&key)
            .payload(&value)
            .headers(headers_of(i));
        let delivery = producer
            .send_result(record)
            .unwrap_or_else(|(err, _)| panic!("enqueue record {i}: {err}"));
        pending.push((i, delivery));
    }
    let (seqs, futures): (Vec<_>, Vec<_>) = pending.into_iter().unzip();
    let results = tokio::time::timeout(Duration::from_secs(60), join_all(futures))
        .await
        .expect("deliveries within 60 s");
    seqs.into_iter()
        .zip(results)
        .map(|(i, result)| match result {
            Ok(Ok(delivery)) => (i, (delivery.partition, delivery.offset)),
            Ok(Err((err, _))) => panic!("delivery of record {i} failed: {err}"),
            Err(_) => panic!("delivery of record {i} cancelled"),
        })
        .collect()
}

fn commit<C: ConsumerContext + 'static>(consumer: &StreamConsumer<C>) {
    match consumer.commit_consumer_state(CommitMode::Sync) {
        Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
        Err(err) => panic!("commit: {err}"),
    }
}

fn assigned_partitions<C: ConsumerContext + 'static>(
    consumer: &StreamConsumer<C>,
) -> BTreeSet<i32> {
    consumer
        .assignment()
        .expect("assignment")
        .elements()
        .iter()
        .map(|elem| elem.partition())
        .collect()
}

/// Polls every consumer (polling also serves rebalances) until `done` holds or `limit`
/// passes. Received records have their offsets stored and are appended to `received` with the
/// index of the consumer that read them. Returns whether `done` held.
async fn drive_until<C: ConsumerContext + 'static>(
    consumers: &[&StreamConsumer<C>],
    received: &mut Vec<(usize, OwnedMessage)>,
    limit: Duration,
    mut done: impl FnMut(&[(usize, OwnedMessage)]) -> bool,
) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if done(received) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        let polls = consumers
            .iter()
            .enumerate()
            .map(|(index, consumer)| Box::pin(async move { (index, consumer.recv().await) }));
        match tokio::time::timeout(Duration::from_millis(100), select_all(polls)).await {
            Err(_) => {}
            Ok(((index, Ok(message)), _, _)) => {
                consumers[index]
                    .store_offset(message.topic(), message.partition(), message.offset())
                    .unwrap_or_else(|err| panic!("store offset of {index}: {err}"));
                received.push((index, message.detach()));
            }
            Ok(((index, Err(err)), _, _)) => eprintln!("consumer {index}: {err}"),
        }
    }
}

#[tokio::test]
async fn idempotent_produce_then_group_consume_commit_and_resume() {
    let broker = TestBroker::start().await;
    let topic = TestBroker::unique_topic("smoke");
    broker.create_topic(&topic, PARTITIONS).await;

    // 1,000 records, keys and headers, idempotent producer with acks=all.
    let started = Instant::now();
    let producer: FutureProducer = broker.producer_config().create().expect("producer");
    let delivered = produce_range(&producer, &topic, 0..RECORDS).await;
    eprintln!("produced {RECORDS} records in {:?}", started.elapsed());
    let mut per_partition: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    for &(partition, offset) in delivered.values() {
        per_partition.entry(partition).or_default().push(offset);
    }
    assert_eq!(
        per_partition.keys().copied().collect::<Vec<_>>(),
        (0..PARTITIONS).collect::<Vec<_>>(),
        "keys spread over every partition"
    );
    for (partition, offsets) in &mut per_partition {
        offsets.sort_unstable();
        let expected: Vec<i64> = (0..offsets.len() as i64).collect();
        assert_eq!(
            offsets, &expected,
            "offsets of partition {partition} dense from 0"
        );
    }

    // Consume in a group: manual offset store, explicit commit.
    let group = TestBroker::unique_group("smoke");
    let mut config = broker.consumer_config(&group);
    config
        .set("enable.auto.offset.store", "false")
        .set("fetch.wait.max.ms", "50");
    let first: StreamConsumer = config.create().expect("consumer");
    first.subscribe(&[&topic]).expect("subscribe");
    let started = Instant::now();
    let mut received = Vec::new();
    let complete = drive_until(&[&first], &mut received, Duration::from_secs(60), |r| {
        r.len() >= RECORDS
    })
    .await;
    assert!(complete, "read {} of {RECORDS} records", received.len());
    eprintln!("consumed {RECORDS} records in {:?}", started.elapsed());
    let mut seen = BTreeSet::new();
    let mut last_offset: HashMap<i32, i64> = HashMap::new();
    for (_, message) in &received {
        let seq = check_record(message);
        assert!(seen.insert(seq), "record {seq} read twice");
        assert_eq!(
            delivered[&seq],
            (message.partition(), message.offset()),
            "record {seq} where the producer put it"
        );
        let last = last_offset.insert(message.partition(), message.offset());
        assert!(
            last.is_none_or(|last| last < message.offset()),
            "offsets in order within partition {}",
            message.partition()
        );
    }
    commit(&first);
    // The list must be gone before the consumer is dropped: librdkafka's partition lists hold
    // references to the consumer's partitions, and destroying the consumer waits for them.
    let committed = first
        .committed(Duration::from_secs(10))
        .expect("committed offsets");
    assert_eq!(committed.count(), PARTITIONS as usize);
    for elem in committed.elements() {
        let expected = per_partition[&elem.partition()].len() as i64;
        assert_eq!(
            elem.offset(),
            Offset::Offset(expected),
            "committed offset of partition {}",
            elem.partition()
        );
    }
    drop(committed);
    drop(first);

    // A second consumer of the group resumes after the committed offsets: the first record it
    // sees is one produced after it joined.
    let second: StreamConsumer = config.create().expect("second consumer");
    second.subscribe(&[&topic]).expect("subscribe");
    let mut late = Vec::new();
    let assigned = drive_until(&[&second], &mut late, Duration::from_secs(60), |_| {
        assigned_partitions(&second).len() == PARTITIONS as usize
    })
    .await;
    assert!(assigned, "second consumer assigned all partitions");
    assert!(
        late.is_empty(),
        "second consumer re-read {} records",
        late.len()
    );
    let extra = RECORDS;
    let (partition, offset) = broker
        .produce(
            &topic,
            Some(key_of(extra).as_bytes()),
            value_of(extra).as_bytes(),
            &[
                ("seq", extra.to_string().as_bytes()),
                ("bin", &[0u8, 0xff, (extra % 256) as u8]),
                ("empty", b""),
            ],
        )
        .await;
    let got_extra = drive_until(&[&second], &mut late, Duration::from_secs(30), |r| {
        !r.is_empty()
    })
    .await;
    assert!(got_extra, "second consumer reads the new record");
    assert_eq!(late.len(), 1, "only the new record");
    let message = &late[0].1;
    assert_eq!(message.key(), Some(key_of(extra).as_bytes()));
    assert_eq!((message.partition(), message.offset()), (partition, offset));
    assert_eq!(offset, per_partition[&partition].len() as i64);
    commit(&second);
}

/// Two members of one group with `strategy`: the second joining splits the partitions, both
/// consume, and when it leaves the first gets everything back. No record is lost or (with
/// offsets committed before each rebalance) read twice.
async fn two_members_rebalance(strategy: &str) {
    let broker = TestBroker::start().await;
    let topic = TestBroker::unique_topic(&format!("rebalance-{strategy}"));
    broker.create_topic(&topic, PARTITIONS).await;
    let producer: FutureProducer = broker.producer_config().create().expect("producer");
    let group = TestBroker::unique_group(strategy);
    let mut config = broker.consumer_config(&group);
    config
        .set("partition.assignment.strategy", strategy)
        .set("enable.auto.offset.store", "false")
        .set("fetch.wait.max.ms", "50");
    let cooperative = strategy == "cooperative-sticky";
    let protocol_matches = |consumer: &StreamConsumer| match consumer.rebalance_protocol() {
        RebalanceProtocol::Cooperative => cooperative,
        RebalanceProtocol::Eager => !cooperative,
        RebalanceProtocol::None => false,
    };
    let seqs_of = |received: &[(usize, OwnedMessage)]| -> BTreeSet<usize> {
        received.iter().map(|(_, m)| check_record(m)).collect()
    };

    // One member takes all partitions.
    let one: StreamConsumer = config.create().expect("consumer one");
    one.subscribe(&[&topic]).expect("subscribe");
    let mut received = Vec::new();
    let started = Instant::now();
    let assigned = drive_until(&[&one], &mut received, Duration::from_secs(60), |_| {
        assigned_partitions(&one).len() == PARTITIONS as usize
    })
    .await;
    assert!(assigned, "{strategy}: first member assigned all partitions");
    eprintln!(
        "{strategy}: first member assigned after {:?}",
        started.elapsed()
    );
    assert!(
        protocol_matches(&one),
        "{strategy}: rebalance protocol of one"
    );
    produce_range(&producer, &topic, 0..100).await;
    assert!(
        drive_until(&[&one], &mut received, Duration::from_secs(30), |r| r.len()
            >= 100)
        .await,
        "{strategy}: first batch read, got {}",
        received.len()
    );
    commit(&one);

    // A second member joins: the partitions are split between the two.
    let two: StreamConsumer = config.create().expect("consumer two");
    two.subscribe(&[&topic]).expect("subscribe");
    let started = Instant::now();
    let split = drive_until(
        &[&one, &two],
        &mut received,
        Duration::from_secs(60),
        |_| {
            let (a, b) = (assigned_partitions(&one), assigned_partitions(&two));
            !a.is_empty()
                && !b.is_empty()
                && a.is_disjoint(&b)
                && a.len() + b.len() == PARTITIONS as usize
        },
    )
    .await;
    let (a, b) = (assigned_partitions(&one), assigned_partitions(&two));
    assert!(
        split,
        "{strategy}: partitions split between members, got {a:?} and {b:?}"
    );
    eprintln!(
        "{strategy}: split {a:?} / {b:?} after {:?}",
        started.elapsed()
    );
    assert!(
        protocol_matches(&two),
        "{strategy}: rebalance protocol of two"
    );
    produce_range(&producer, &topic, 100..300).await;
    assert!(
        drive_until(&[&one, &two], &mut received, Duration::from_secs(30), |r| r
            .len()
            >= 300)
        .await,
        "{strategy}: second batch read, got {}",
        received.len()
    );
    let by_member = |member: usize| {
        received[100..]
            .iter()
            .filter(|(index, _)| *index == member)
            .count()
    };
    assert!(
        by_member(0) > 0 && by_member(1) > 0,
        "{strategy}: both members read"
    );
    commit(&one);
    commit(&two);

    // The second member leaves: the first gets every partition back.
    drop(two);
    let started = Instant::now();
    let regained = drive_until(&[&one], &mut received, Duration::from_secs(60), |_| {
        assigned_partitions(&one).len() == PARTITIONS as usize
    })
    .await;
    assert!(
        regained,
        "{strategy}: first member regains all partitions, has {:?}",
        assigned_partitions(&one)
    );
    eprintln!("{strategy}: regained all after {:?}", started.elapsed());
    produce_range(&producer, &topic, 300..400).await;
    assert!(
        drive_until(&[&one], &mut received, Duration::from_secs(30), |r| r.len()
            >= 400)
        .await,
        "{strategy}: third batch read, got {}",
        received.len()
    );
    commit(&one);
    assert_eq!(received.len(), 400, "{strategy}: no record read twice");
    assert_eq!(
        seqs_of(&received),
        (0..400).collect(),
        "{strategy}: every record read"
    );
}

#[tokio::test]
async fn cooperative_sticky_two_members() {
    two_members_rebalance("cooperative-sticky").await;
}

#[tokio::test]
async fn eager_range_two_members() {
    two_members_rebalance("range").await;
}

#[tokio::test]
async fn helpers_round_trip() {
    let broker = TestBroker::start().await;
    let topic = TestBroker::unique_topic("helpers");
    broker.create_topic(&topic, 2).await;
    // Creating it again is accepted.
    broker.create_topic(&topic, 2).await;
    for i in 0..10u8 {
        broker
            .produce(&topic, Some(&[i]), &[i, i], &[("n", &[i])])
            .await;
    }
    broker.produce(&topic, None, b"no key", &[]).await;
    let records = broker
        .consume_all(&topic, 11, Duration::from_secs(30))
        .await;
    assert_eq!(records.len(), 11);
    let keyless = records.iter().filter(|m| m.key().is_none()).count();
    assert_eq!(keyless, 1);
    for message in records.iter().filter(|m| m.key().is_some()) {
        let i = message.key().expect("key")[0];
        assert_eq!(message.payload(), Some(&[i, i][..]));
        let header = message.headers().expect("headers").get(0);
        assert_eq!((header.key, header.value), ("n", Some(&[i][..])));
    }
    // Nothing more arrives: consume_all stops at the timeout.
    let started = Instant::now();
    let records = broker
        .consume_all(&topic, 12, Duration::from_secs(10))
        .await;
    assert_eq!(records.len(), 11);
    assert!(started.elapsed() >= Duration::from_secs(10));
}
