//! `worker.delivery = "exactly_once"` on a broker with real transactions (Apache Kafka): the
//! offsets committed inside transactions are the group's committed offsets, records of an aborted
//! transaction stay invisible to `read_committed` readers (and to the worker's own cache warm-up),
//! and a second instance with the same `transactional.id` fences the first, which stops with an
//! error and writes nothing afterwards.
//!
//! librdkafka's MockCluster stores no transactional offsets and cannot fence a producer, and tansu
//! has no transactions, so these checks need Apache Kafka (`TEST_BROKER=kafka`, which CI uses).
//! On any other broker each test prints a SKIPPED line to the real stderr and returns.

mod support;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use serde_json::json;
use silentauth_simulator::Scenario;
use silentauth_worker::config::{Config, Delivery};
use std::time::Duration;
use support::broker::announce;
use support::world::{read_topic, World};
use support::{BrokerKind, TestBroker};
use tokio_util::sync::CancellationToken;

/// The test broker when it has real transactions; `None` (with a SKIPPED line) otherwise.
async fn transactional_broker(test: &str) -> Option<TestBroker> {
    let broker = TestBroker::start().await;
    if matches!(
        broker.kind(),
        BrokerKind::Kafka | BrokerKind::External | BrokerKind::Docker
    ) {
        return Some(broker);
    }
    announce(&format!(
        "SKIPPED {test}: needs Apache Kafka (TEST_BROKER=kafka); {:?} has no real transactions \
         (MockCluster stores no transactional offsets and cannot fence; tansu has no EndTxn)",
        broker.kind()
    ));
    None
}

fn exactly_once(w: &World, instance: &str) -> Config {
    let mut config = w.config();
    config.worker.delivery = Delivery::ExactlyOnce;
    config.worker.instance_id = instance.into();
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_committed_in_transactions_are_the_groups_committed_offsets() {
    let Some(broker) = transactional_broker("exactly-once offsets").await else {
        return;
    };
    let w = World::with_broker(broker, Scenario::default(), 2).await;
    let worker = silentauth_worker::worker::Worker::new(exactly_once(&w, "eos-offsets"));
    let stats = worker.counters();
    let cancel = CancellationToken::new();
    let handle = tokio::spawn(worker.run(cancel.clone()));
    for i in 0..30 {
        w.send_job(&w.job(&format!("eos-{i}"), &format!("3815000000{i:02}")))
            .await;
    }
    w.send(Some("poison"), b"not json", &[]).await;
    let results = w.results(30).await;
    assert_eq!(results.len(), 30);
    assert!(results.iter().all(|(r, _)| r["status"] == "verified"));
    // The dead letter commits in a transaction too: wait for it through read_committed.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while read_topic(&w.broker, &w.dlq).await.is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "no dead letter");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    cancel.cancel();
    handle.await.unwrap().unwrap();
    assert!(
        silentauth_worker::telemetry::counters::WorkerCounters::get(&stats.commits) >= 1,
        "no transaction committed"
    );
    let (committed, ends) = committed_and_ends(&w, 2).await;
    println!("committed offsets {committed:?}, log ends {ends:?}");
    assert_eq!(
        committed, ends,
        "the group's committed offsets are the ones sent with the transactions"
    );
    assert_eq!(read_topic(&w.broker, &w.dlq).await.len(), 1);

    // Committed offsets at the log end do not tell transactions from at-least-once commits (a
    // graceful at-least-once stop leaves them there too). Two things only transactions leave:
    // (1) each commit or abort marker is a control record that takes an offset of every results
    // partition the transaction wrote to and that no reader is given, so the partitions end past
    // the records a read_committed reader gets; (2) the broker's transaction log
    // (`__transaction_state`) holds, under the worker's `transactional.id`, transactions that
    // took in the group's offsets partition (`__consumer_offsets`, added by
    // `send_offsets_to_transaction`) beside the results topic.
    let records = read_topic(&w.broker, &w.results).await.len() as i64;
    let log_end = high_watermark(&w.broker, &w.results).await;
    let txn_id = format!("{}.eos-offsets", w.group);
    let txn_log = read_uncommitted(&w.broker, "__transaction_state").await;
    let ours: Vec<&[u8]> = txn_log
        .iter()
        .filter(|m| contains(m.key().unwrap_or_default(), txn_id.as_bytes()))
        .filter_map(|m| m.payload())
        .collect();
    let with_offsets = ours
        .iter()
        .filter(|v| contains(v, b"__consumer_offsets") && contains(v, w.results.as_bytes()))
        .count();
    println!(
        "results: {records} records read_committed, log end {log_end} ({} control records); \
         {} transaction log records of {txn_id}, {with_offsets} naming __consumer_offsets and \
         the results topic",
        log_end - records,
        ours.len()
    );
    assert!(
        log_end > records,
        "the results partitions carry no transaction marker: {records} records, log end {log_end}"
    );
    assert!(
        with_offsets >= 1,
        "no transaction of {txn_id} took in the group's offsets ({} records of it in \
         __transaction_state)",
        ours.len()
    );
}

/// True when `needle` occurs in `haystack`.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborted_results_are_invisible_and_never_warm_the_cache() {
    let Some(broker) = transactional_broker("aborted transaction").await else {
        return;
    };
    let w = World::with_broker(broker, Scenario::default(), 1).await;
    // A result for `ghost` written in a transaction that aborts, as a zombie's would be.
    let ghost = json!({"schema_version": 1, "job_id": "ghost", "status": "verified",
        "phone_number_verified": true, "login_hint": "381500000077", "duplicate": false,
        "attempts": 2, "replay_count": 0});
    let producer: BaseProducer = w
        .broker
        .producer_config()
        .set("transactional.id", TestBroker::unique_group("aborter"))
        .create()
        .unwrap();
    let results_topic = w.results.clone();
    tokio::task::spawn_blocking(move || {
        let t = Duration::from_secs(30);
        producer.init_transactions(t).unwrap();
        producer.begin_transaction().unwrap();
        let payload = ghost.to_string();
        producer
            .send(
                BaseRecord::<str, str>::to(&results_topic)
                    .key("ghost")
                    .payload(&payload),
            )
            .map_err(|(e, _)| e)
            .unwrap();
        producer.flush(t).unwrap();
        producer.abort_transaction(t).unwrap();
    })
    .await
    .unwrap();

    let uncommitted = read_uncommitted(&w.broker, &w.results).await;
    assert!(
        uncommitted
            .iter()
            .any(|m| m.key() == Some(b"ghost".as_slice())),
        "the aborted record is in the log"
    );
    assert!(
        read_topic(&w.broker, &w.results).await.is_empty(),
        "a read_committed reader sees no aborted record"
    );

    // The worker warms its cache from the results topic: the aborted result must not answer
    // the real job, which is verified with its own code.
    let tokens_before = w.sim.stats().total("token");
    let (cancel, handle) = w.start(w.config());
    w.send_job(&w.job("ghost", "381500000077")).await;
    let results = w.results(1).await;
    assert_eq!(results.len(), 1);
    let (r, _) = &results[0];
    assert_eq!(r["job_id"], "ghost");
    assert_eq!(r["duplicate"], false, "not answered from an aborted result");
    assert_eq!(r["status"], "verified");
    assert_eq!(w.sim.stats().total("token"), tokens_before + 1);
    cancel.cancel();
    handle.await.unwrap();
    println!(
        "aborted transaction: {} record(s) in the log, 0 visible to read_committed; the job was verified, not answered from the cache",
        uncommitted.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fenced_instance_stops_and_writes_nothing_afterwards() {
    let Some(broker) = transactional_broker("fencing").await else {
        return;
    };
    let w = World::with_broker(broker, Scenario::default(), 1).await;
    let cancel = CancellationToken::new();
    let handle = tokio::spawn(silentauth_worker::worker::run(
        exactly_once(&w, "eos-fence"),
        cancel.clone(),
    ));
    w.send_job(&w.job("before", "381500000001")).await;
    assert_eq!(w.results(1).await.len(), 1);

    // A newer instance with the same transactional.id takes over: the old one is a zombie.
    let zombie_killer: BaseProducer = w
        .broker
        .producer_config()
        .set("transactional.id", format!("{}.eos-fence", w.group))
        .create()
        .unwrap();
    let zombie_killer = tokio::task::spawn_blocking(move || {
        zombie_killer
            .init_transactions(Duration::from_secs(30))
            .unwrap();
        zombie_killer
    })
    .await
    .unwrap();
    let log_end_at_fence = high_watermark(&w.broker, &w.results).await;

    w.send_job(&w.job("after", "381500000002")).await;
    let outcome = tokio::time::timeout(Duration::from_secs(120), handle)
        .await
        .expect("a fenced worker stops by itself")
        .unwrap();
    let err = outcome.expect_err("a fenced worker must fail");
    assert!(err.to_string().contains("fatal"), "{err}");
    cancel.cancel();
    drop(zombie_killer);

    // Nothing from the zombie after the fence, not even an aborted record.
    let all = read_uncommitted(&w.broker, &w.results).await;
    let after: Vec<_> = all
        .iter()
        .filter(|m| m.key() == Some(b"after".as_slice()))
        .collect();
    assert!(after.is_empty(), "the fenced instance wrote {after:?}");
    assert_eq!(
        high_watermark(&w.broker, &w.results).await,
        log_end_at_fence,
        "the results log did not grow after the fence"
    );
    let (committed, _) = committed_and_ends(&w, 1).await;
    assert_eq!(committed, vec![1], "only `before` is committed");

    // Its successor (same instance id) picks the job up: nothing is lost.
    let cancel = CancellationToken::new();
    let handle = tokio::spawn(silentauth_worker::worker::run(
        exactly_once(&w, "eos-fence"),
        cancel.clone(),
    ));
    let ids = ["after".to_owned()].into_iter().collect();
    let by_id = w.wait_until_all(&ids, Duration::from_secs(60)).await;
    let after = &by_id["after"];
    assert_eq!(after.len(), 1, "{after:?}");
    println!(
        "fenced: the zombie stopped with '{err}'; its successor answered `after` with {} ({})",
        after[0]["status"], after[0]["error"]["class"]
    );
    cancel.cancel();
    handle.await.unwrap().unwrap();
}

/// Every record of `topic` with `isolation.level=read_uncommitted` (aborted ones included).
async fn read_uncommitted(broker: &TestBroker, topic: &str) -> Vec<OwnedMessage> {
    let mut config = broker.consumer_config(&TestBroker::unique_group("uncommitted"));
    config
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_uncommitted");
    let consumer: BaseConsumer = config.create().unwrap();
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let t = Duration::from_secs(10);
        let meta = consumer.fetch_metadata(Some(&topic), t).unwrap();
        let mut tpl = TopicPartitionList::new();
        let mut open = std::collections::HashSet::new();
        for p in meta.topics()[0].partitions() {
            let (low, high) = consumer.fetch_watermarks(&topic, p.id(), t).unwrap();
            if high > low {
                tpl.add_partition_offset(&topic, p.id(), Offset::Offset(low))
                    .unwrap();
                open.insert(p.id());
            }
        }
        let mut out = Vec::new();
        if open.is_empty() {
            return out;
        }
        consumer.assign(&tpl).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !open.is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "read_uncommitted timed out"
            );
            match consumer.poll(Duration::from_millis(200)) {
                Some(Ok(m)) => out.push(m.detach()),
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    open.remove(&p);
                }
                Some(Err(e)) => eprintln!("read_uncommitted({topic}): {e}"),
                None => {}
            }
        }
        out
    })
    .await
    .unwrap()
}

/// The sum of the high watermarks of `topic`'s partitions.
async fn high_watermark(broker: &TestBroker, topic: &str) -> i64 {
    let consumer: BaseConsumer = broker
        .consumer_config(&TestBroker::unique_group("hw"))
        .create()
        .unwrap();
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let t = Duration::from_secs(10);
        let meta = consumer.fetch_metadata(Some(&topic), t).unwrap();
        meta.topics()[0]
            .partitions()
            .iter()
            .map(|p| consumer.fetch_watermarks(&topic, p.id(), t).unwrap().1)
            .sum()
    })
    .await
    .unwrap()
}

/// The group's committed offsets on the jobs topic and the jobs topic's end offsets.
async fn committed_and_ends(w: &World, n: i32) -> (Vec<i64>, Vec<i64>) {
    let consumer: BaseConsumer = w.broker.consumer_config(&w.group).create().unwrap();
    let jobs = w.jobs.clone();
    tokio::task::spawn_blocking(move || {
        let t = Duration::from_secs(10);
        let mut tpl = TopicPartitionList::new();
        for p in 0..n {
            tpl.add_partition(&jobs, p);
        }
        let committed = consumer
            .committed_offsets(tpl, t)
            .unwrap()
            .elements()
            .iter()
            .map(|e| e.offset().to_raw().unwrap_or(-1))
            .collect();
        let ends = (0..n)
            .map(|p| consumer.fetch_watermarks(&jobs, p, t).unwrap().1)
            .collect();
        (committed, ends)
    })
    .await
    .unwrap()
}
