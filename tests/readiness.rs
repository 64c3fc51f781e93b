//! Misconfigured topics fail loudly: a missing results or dead-letter topic stops `run` with exit
//! 2 naming the key (consuming nothing), or, with `worker.wait_for_topics`, keeps `/readyz` at 503
//! with the reason until the topic exists; a topic that goes missing while running turns
//! `/readyz` 503 whatever the broker probe says, and it is 200 again once publishing works.
//!
//! The worker's producer never asks the broker to create a topic, so on librdkafka's MockCluster
//! (which creates topics only when a metadata request allows it) a topic nobody created stays
//! missing, as on a broker with `auto.create.topics.enable=false`.

mod support;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use serde_json::{json, Value};
use silentauth_simulator::Scenario;
use silentauth_worker::config::Config;
use silentauth_worker::telemetry::counters::WorkerCounters;
use silentauth_worker::worker::Worker;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::world::{admin_addr, admin_get, read_topic, readyz_until, World};
use support::{BrokerKind, TestBroker};
use tokio_util::sync::CancellationToken;

const BIN: &str = env!("CARGO_BIN_EXE_silentauth-worker");

/// The committed offsets of `group` on `topic`'s partition 0 (`Offset::Invalid` when none).
async fn committed(w: &World, group: &str) -> Offset {
    let consumer: BaseConsumer = w.broker.consumer_config(group).create().unwrap();
    let topic = w.jobs.clone();
    tokio::task::spawn_blocking(move || {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&topic, 0);
        let c = consumer
            .committed_offsets(tpl, Duration::from_secs(10))
            .expect("committed offsets");
        c.elements()[0].offset()
    })
    .await
    .unwrap()
}

/// A config file for `config` (the World's settings, as TOML; secrets are written as `***`,
/// which is fine for a run that stops before any HTTP request).
fn write_config(dir: &std::path::Path, config: &Config) -> std::path::PathBuf {
    let path = dir.join("worker.toml");
    std::fs::write(&path, toml::to_string(config).unwrap()).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_results_dead_letter_or_ledger_topic_exits_2_naming_the_key_and_consumes_nothing()
{
    let w = World::new(Scenario::default(), 1).await;
    w.send_job(&w.job("kept", "381600000001")).await;
    let dir = tempfile::tempdir().unwrap();
    for key in ["topics.results", "topics.dead_letter", "topics.ledger"] {
        let missing = TestBroker::unique_topic("misspelled");
        let mut config = w.config();
        match key {
            "topics.results" => config.topics.results = missing.clone(),
            "topics.ledger" => config.topics.ledger = missing.clone(),
            _ => config.topics.dead_letter = missing.clone(),
        }
        let path = write_config(dir.path(), &config);
        let start = Instant::now();
        let out = Command::new(BIN)
            .args(["--log-format", "text", "run", "--config"])
            .arg(&path)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{key}: {err}");
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "{key}: {:?}",
            start.elapsed()
        );
        let line = err
            .lines()
            .find(|l| l.starts_with("error: "))
            .unwrap_or_else(|| panic!("{key}: no error line: {err}"));
        assert!(
            line.contains(&format!("{key}: topic '{missing}' does not exist"))
                && line.contains(&format!("correct {key}"))
                && line.contains("worker.wait_for_topics"),
            "{line}"
        );
        // The other topics were found and not reported.
        assert!(!line.contains(&w.jobs), "{line}");
        // Nothing was consumed: the group never committed.
        assert_eq!(committed(&w, &config.kafka.group_id).await, Offset::Invalid);
    }
    // The job is still there for a correctly configured worker.
    let (cancel, handle) = w.start(w.config());
    let results = w.results(1).await;
    assert_eq!(results[0].0["job_id"], "kept");
    cancel.cancel();
    handle.await.unwrap();
}

/// Runs a worker with `wait_for_topics` whose `key` topic does not exist yet, checks that it
/// waits (503 with the reason, nothing consumed), creates the topic, and checks that the job
/// is then processed and `/readyz` turns 200.
async fn waits_for(key: &str) {
    let w = World::new(Scenario::default(), 1).await;
    let later = TestBroker::unique_topic("created-later");
    let mut config = w.config();
    config.worker.wait_for_topics = true;
    // A dead letter needs a poison job; a result, a good one.
    let (output, job) = match key {
        "topics.results" => {
            config.topics.results = later.clone();
            (later.clone(), w.job("late-ok", "381600000002"))
        }
        _ => {
            config.topics.dead_letter = later.clone();
            (
                later.clone(),
                json!({"job_id": "late-poison", "login_hint": "381600000003"}),
            )
        }
    };
    w.send_job(&job).await;
    let worker = Worker::new(config);
    let stats = worker.counters();
    let cancel = CancellationToken::new();
    let c = cancel.clone();
    let handle = tokio::spawn(async move { worker.run(c).await.expect("worker run") });
    let addr = admin_addr(&stats, Duration::from_secs(10)).await;
    let (_, body) = readyz_until(addr, Duration::from_secs(20), "named the topic", |c, b| {
        c == 503 && b.contains(key)
    })
    .await;
    assert!(
        body.contains(&format!("{key}: topic '{later}' does not exist"))
            && body.contains("worker.wait_for_topics"),
        "{body}"
    );
    let (_, status) = admin_get(addr, "/status.json").await;
    let status: Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["ready"], false);
    assert_eq!(
        format!(
            "not ready: {}\n",
            status["not_ready_reason"].as_str().unwrap()
        ),
        body
    );
    // Waiting consumes nothing: a few probe rounds later, still no job taken.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(WorkerCounters::get(&stats.consumed), 0);
    assert_eq!(admin_get(addr, "/readyz").await.0, 503);

    w.broker.create_topic(&later, 1).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while read_topic(&w.broker, &output).await.is_empty() {
        assert!(Instant::now() < deadline, "nothing reached {output}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    readyz_until(addr, Duration::from_secs(30), "turned 200", |c, _| c == 200).await;
    let (_, status) = admin_get(addr, "/status.json").await;
    let status: Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["ready"], true);
    assert!(status["not_ready_reason"].is_null(), "{status}");
    assert_eq!(WorkerCounters::get(&stats.consumed), 1);
    cancel.cancel();
    handle.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_for_a_missing_results_topic_is_503_with_the_reason_until_it_exists() {
    waits_for("topics.results").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_for_a_missing_dead_letter_topic_is_503_with_the_reason_until_it_exists() {
    waits_for("topics.dead_letter").await;
}

/// Makes `topic` missing while the worker runs: on the MockCluster the brokers answer
/// UNKNOWN_TOPIC_OR_PART for it from then on; on a real broker it is deleted.
async fn make_missing(broker: &TestBroker, topic: &str) {
    use rdkafka::admin::{AdminClient, AdminOptions};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::types::RDKafkaRespErr;
    match broker.mock() {
        Some(cluster) => cluster
            .mock()
            .topic_error(
                topic,
                RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART,
            )
            .unwrap(),
        None => {
            let admin: AdminClient<DefaultClientContext> = broker.client_config().create().unwrap();
            let r = admin
                .delete_topics(&[topic], &AdminOptions::new())
                .await
                .unwrap();
            assert!(r.iter().all(|t| t.is_ok()), "{r:?}");
        }
    }
}

/// Brings `topic` back (empty on a real broker).
async fn bring_back(broker: &TestBroker, topic: &str) {
    use rdkafka::types::RDKafkaRespErr;
    match broker.mock() {
        Some(cluster) => cluster
            .mock()
            .topic_error(topic, RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR)
            .unwrap(),
        None => broker.create_topic(topic, 1).await,
    }
}

/// A worker runs ready; `key`'s topic goes missing: 503 naming it though the brokers answer;
/// the topic comes back and a job of the kind that writes to it is published: 200 again.
async fn topic_lost_while_running(key: &str) {
    let w = World::new(Scenario::default(), 1).await;
    if w.broker.kind() == BrokerKind::Tansu {
        eprintln!(
            "SKIPPED on tansu: it does not delete topics; run with TEST_BROKER=mock or kafka"
        );
        return;
    }
    let topic = match key {
        "topics.results" => w.results.clone(),
        _ => w.dlq.clone(),
    };
    let worker = Worker::new(w.config());
    let stats = worker.counters();
    let cancel = CancellationToken::new();
    let c = cancel.clone();
    let handle = tokio::spawn(async move { worker.run(c).await.expect("worker run") });
    let addr = admin_addr(&stats, Duration::from_secs(10)).await;
    readyz_until(addr, Duration::from_secs(30), "turned 200", |c, _| c == 200).await;

    make_missing(&w.broker, &topic).await;
    let (_, body) = readyz_until(addr, Duration::from_secs(20), "named the topic", |c, b| {
        c == 503 && b.contains(key)
    })
    .await;
    assert!(
        body.contains(&format!("{key}: topic '{topic}' does not exist")),
        "{body}"
    );
    assert!(
        stats.brokers_ok.load(std::sync::atomic::Ordering::Relaxed),
        "the broker probe itself is fine"
    );
    let (_, status) = admin_get(addr, "/status.json").await;
    let status: Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["ready"], false);
    assert!(
        status["not_ready_reason"].as_str().unwrap().contains(key),
        "{status}"
    );

    bring_back(&w.broker, &topic).await;
    let job = match key {
        "topics.results" => w.job("after", "381600000004"),
        _ => json!({"job_id": "after-poison", "login_hint": "381600000005"}),
    };
    w.send_job(&job).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !read_topic(&w.broker, &topic)
        .await
        .iter()
        .any(|m| rdkafka::Message::key(m) == Some(job["job_id"].as_str().unwrap().as_bytes()))
    {
        assert!(Instant::now() < deadline, "the job never reached {topic}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    readyz_until(addr, Duration::from_secs(20), "turned 200 again", |c, _| {
        c == 200
    })
    .await;
    cancel.cancel();
    handle.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_results_topic_lost_while_running_is_503_until_publishing_works_again() {
    topic_lost_while_running("topics.results").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_topic_lost_while_running_is_503_until_publishing_works_again() {
    topic_lost_while_running("topics.dead_letter").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_while_waiting_for_a_topic_consumes_nothing_and_returns_cleanly() {
    let w = World::new(Scenario::default(), 1).await;
    w.send_job(&w.job("untouched", "381600000006")).await;
    let mut config = w.config();
    config.worker.wait_for_topics = true;
    config.topics.dead_letter = TestBroker::unique_topic("never-created");
    let group = config.kafka.group_id.clone();
    let worker = Worker::new(config);
    let stats = worker.counters();
    let cancel = CancellationToken::new();
    let c = cancel.clone();
    let handle = tokio::spawn(async move { worker.run(c).await });
    let addr = admin_addr(&stats, Duration::from_secs(10)).await;
    readyz_until(addr, Duration::from_secs(20), "named the topic", |c, b| {
        c == 503 && b.contains("topics.dead_letter")
    })
    .await;
    cancel.cancel();
    let stopped = tokio::time::timeout(Duration::from_secs(10), handle)
        .await
        .expect("the worker stops promptly while waiting")
        .unwrap();
    assert!(stopped.is_ok(), "{stopped:?}");
    assert_eq!(WorkerCounters::get(&stats.consumed), 0);
    assert_eq!(committed(&w, &group).await, Offset::Invalid);
}
