//! Load helpers shared by the reliability and secrets tests: bulk publishing, record counts
//! from watermarks, and waiting for every job's result.

use super::world::{read_topic, World};
use super::TestBroker;
use futures::future::join_all;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::FutureRecord;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use tokio::time::Instant;

/// Publishes jobs keyed by `job_id`, 1,000 at a time without waiting for each one.
pub async fn publish(w: &World, jobs: &[Value]) {
    let producer = w.broker.producer();
    for chunk in jobs.chunks(1000) {
        let payloads: Vec<(String, String)> = chunk
            .iter()
            .map(|j| (j["job_id"].as_str().unwrap().to_owned(), j.to_string()))
            .collect();
        let sends = payloads.iter().map(|(k, v)| {
            producer.send(
                FutureRecord::to(&w.jobs)
                    .key(k.as_str())
                    .payload(v.as_str()),
                Duration::from_secs(30),
            )
        });
        for r in join_all(sends).await {
            r.expect("produce a job");
        }
    }
}

/// The low and high watermarks of one partition, asked again (for up to 30 s) while the client
/// answers with an error: a fresh client's leader lookup can miss the topic it just fetched
/// metadata for (`Local: Unknown partition`) on a loaded machine.
pub fn watermarks(consumer: &BaseConsumer, topic: &str, partition: i32) -> (i64, i64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        match consumer.fetch_watermarks(topic, partition, Duration::from_secs(10)) {
            Ok(marks) => return marks,
            Err(err) if std::time::Instant::now() < deadline => {
                eprintln!("watermarks of {topic}/{partition}: {err}; asking again");
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(err) => panic!("watermarks of {topic}/{partition}: {err}"),
        }
    }
}

/// Records in `topic` now (sum of high minus low watermarks).
pub async fn count(broker: &TestBroker, topic: &str) -> i64 {
    let consumer: BaseConsumer = broker.client_config().create().unwrap();
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let t = Duration::from_secs(10);
        let meta = consumer.fetch_metadata(Some(&topic), t).expect("metadata");
        meta.topics()[0]
            .partitions()
            .iter()
            .map(|p| {
                let (lo, hi) = watermarks(&consumer, &topic, p.id());
                hi - lo
            })
            .sum()
    })
    .await
    .unwrap()
}

/// The high watermark (end offset) of every partition of `topic`, in partition order. Absence is
/// checked against these, not with a short read: a fresh topic that never received a record has
/// every high watermark at 0, and a topic nothing was written to keeps the ones it had.
pub async fn high_watermarks(broker: &TestBroker, topic: &str) -> Vec<i64> {
    let consumer: BaseConsumer = broker.client_config().create().unwrap();
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let t = Duration::from_secs(10);
        let meta = consumer.fetch_metadata(Some(&topic), t).expect("metadata");
        let mut ids: Vec<i32> = meta.topics()[0]
            .partitions()
            .iter()
            .map(|p| p.id())
            .collect();
        assert!(!ids.is_empty(), "{topic} has no partition");
        ids.sort_unstable();
        ids.into_iter()
            .map(|p| watermarks(&consumer, &topic, p).1)
            .collect()
    })
    .await
    .unwrap()
}

/// Asserts that nothing was ever written to `topic` (every high watermark is 0). Call it once
/// every writer is stopped and flushed, e.g. after the worker's task has returned.
pub async fn assert_never_written(broker: &TestBroker, topic: &str, what: &str) {
    let ends = high_watermarks(broker, topic).await;
    assert!(
        ends.iter().all(|&end| end == 0),
        "{what}: {topic} was written to (high watermarks {ends:?})"
    );
}

/// Waits until `topic` holds at least `n` records; panics after `timeout`.
pub async fn wait_count(broker: &TestBroker, topic: &str, n: i64, timeout: Duration) -> i64 {
    let deadline = Instant::now() + timeout;
    loop {
        let c = count(broker, topic).await;
        if c >= n {
            return c;
        }
        assert!(
            Instant::now() < deadline,
            "{topic}: {c} of {n} records after {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Results grouped by job id, in topic order per partition.
pub fn by_id(records: &[OwnedMessage]) -> BTreeMap<String, Vec<Value>> {
    let mut out: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for m in records {
        let v: Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
        out.entry(v["job_id"].as_str().unwrap().to_owned())
            .or_default()
            .push(v);
    }
    out
}

/// Waits until every id has a result; returns the results topic read at that moment.
pub async fn wait_all(w: &World, ids: &BTreeSet<String>, timeout: Duration) -> Vec<OwnedMessage> {
    let deadline = Instant::now() + timeout;
    loop {
        if count(&w.broker, &w.results).await >= ids.len() as i64 {
            let records = read_topic(&w.broker, &w.results).await;
            let got = by_id(&records);
            let missing = ids.iter().filter(|i| !got.contains_key(*i)).count();
            if missing == 0 {
                return records;
            }
            assert!(
                Instant::now() < deadline,
                "{missing} jobs without a result after {timeout:?}"
            );
        }
        assert!(
            Instant::now() < deadline,
            "results missing after {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
