//! Fault tests on librdkafka's MockCluster: brokers down mid-run, produce, fetch, offset-commit
//! and join-group errors, slow brokers, a flood of poison. Nothing consumed may be lost, and each
//! test shows the worker met the fault it injects (not only the test's own clients).
//!
//! These need the mock's fault injection (broker down, request errors, round-trip time), so every
//! test here runs on a fresh MockCluster ([`TestBroker::start_mock`]) whatever `TEST_BROKER`
//! says (the SIGKILL-and-restart guarantee is `tests/reliability.rs`).

mod support;

use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use silentauth_simulator::Scenario;
use silentauth_worker::telemetry::counters::WorkerCounters;
use std::collections::BTreeSet;
use std::time::Duration;
use support::load::{assert_never_written, publish};
use support::world::{admin_addr, admin_get, World};
use support::TestBroker;

/// The tests of this file run one at a time: each runs a mock cluster, a worker (or the worker
/// binary) and a flood of records, and their timeouts must hold on a loaded 2-core machine beside
/// a JVM broker, not only when they have the machine to themselves.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn slow_scenario(ms: u64) -> Scenario {
    let mut s = Scenario::default();
    s.latency.fixed = Duration::from_millis(ms);
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_brokers_down_for_seconds_loses_nothing() {
    let _one_at_a_time = SERIAL.lock().await;
    let w = World::with_broker(TestBroker::start_mock(), slow_scenario(5), 4).await;
    let mut config = w.config();
    config.worker.max_in_flight = 64;
    let worker = silentauth_worker::worker::Worker::new(config);
    let stats = worker.counters();
    let cancel = tokio_util::sync::CancellationToken::new();
    let handle = tokio::spawn(worker.run(cancel.clone()));
    let admin = admin_addr(&stats, Duration::from_secs(10)).await;
    let ids = w.send_jobs("down", "38170", 300).await;
    // Let some work happen, then take every broker down for 10 s.
    w.wait_for_results(50).await;
    assert_eq!(admin_get(admin, "/readyz").await.0, 200);
    let mock = w.broker.mock().unwrap().mock();
    for b in 1..=3 {
        mock.broker_down(b).unwrap();
    }
    let down_at = tokio::time::Instant::now();
    let mut saw_not_ready = None;
    while down_at.elapsed() < Duration::from_secs(10) {
        let (code, body) = admin_get(admin, "/readyz").await;
        if code == 503 {
            saw_not_ready.get_or_insert(body);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let body = saw_not_ready.expect("/readyz must answer 503 during the outage");
    assert!(body.contains("brokers do not answer"), "{body}");
    for b in 1..=3 {
        mock.broker_up(b).unwrap();
    }
    let by_id = w.wait_until_all(&ids, Duration::from_secs(90)).await;
    for (id, rs) in &by_id {
        assert!(rs.iter().any(|r| r["status"] == "verified"), "{id}: {rs:?}");
    }
    // Ready again once the brokers answer.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while admin_get(admin, "/readyz").await.0 != 200 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "/readyz not 200 again after the outage"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cancel.cancel();
    handle.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_errors_are_retried_and_nothing_is_lost() {
    let _one_at_a_time = SERIAL.lock().await;
    let w = World::with_broker(TestBroker::start_mock(), Scenario::default(), 2).await;
    let mock = w.broker.mock().unwrap().mock();
    // Every job is produced and acknowledged before the errors are injected, and nothing else
    // produces afterwards: every injected error is answered to the worker's producer.
    let ids = w.send_jobs("perr", "38171", 100).await;
    mock.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS; 40],
    );
    let mut config = w.config();
    // librdkafka retries a retriable produce error by itself until the delivery timeout; a
    // short one makes it give up while errors remain, so the worker's own publish retry (a
    // result that cannot be produced is never marked done) is what has to save the results.
    config
        .kafka
        .properties
        .insert("message.timeout.ms".into(), "1000".into());
    // The presentation ledger's records would meet the injected errors before any result does
    // (each job records its presentation before its token request): this test is about results.
    config.worker.ledger = false;
    let worker = silentauth_worker::worker::Worker::new(config);
    let stats = worker.counters();
    let cancel = tokio_util::sync::CancellationToken::new();
    let handle = tokio::spawn(worker.run(cancel.clone()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    let by_id = loop {
        let by_id = w.results_by_id().await;
        let missing: Vec<&String> = ids.iter().filter(|i| !by_id.contains_key(*i)).collect();
        if missing.is_empty() {
            break by_id;
        }
        let get = WorkerCounters::get;
        assert!(
            tokio::time::Instant::now() < deadline,
            "no result for {missing:?} after 90 s; worker: consumed {}, results {}, \
             produce errors {}, in flight {}, commits {}",
            get(&stats.consumed),
            get(&stats.results),
            get(&stats.produce_errors),
            get(&stats.in_flight),
            get(&stats.commits)
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(by_id.len(), 100);
    let mut duplicates = 0;
    for rs in by_id.values() {
        assert!(rs.iter().all(|r| r["status"] == "verified"), "{rs:?}");
        duplicates += rs.len() - 1;
    }
    cancel.cancel();
    handle.await.unwrap().unwrap();
    let produce_errors = WorkerCounters::get(&stats.produce_errors);
    eprintln!(
        "produce errors: 100 jobs, 0 lost, {produce_errors} publishes failed and retried by the \
         worker, {duplicates} duplicate results"
    );
    assert!(
        produce_errors > 0,
        "the worker never saw a failed publish: the injected errors did not reach it"
    );
    assert_never_written(&w.broker, &w.dlq, "no dead letter for a produce error").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_commit_and_join_errors_and_a_slow_broker_lose_nothing() {
    let _one_at_a_time = SERIAL.lock().await;
    use RDKafkaRespErr::*;
    let w = World::with_broker(TestBroker::start_mock(), Scenario::default(), 4).await;
    let mock = w.broker.mock().unwrap().mock();
    // The mock answers the next requests of a kind with the errors pushed for it, whichever
    // client sends them. The test's own clients never join a group and never commit (they read
    // with `assign`), so only the worker can meet the JoinGroup and OffsetCommit errors; the
    // Fetch errors are pushed while the test reads nothing, so only the worker meets them too.
    // Each is shown met by what follows it: a request of that kind that succeeded afterwards
    // (an assignment, a commit, a record fetched) could only be sent once every error pushed
    // before it had been answered.
    mock.request_errors(
        RDKafkaApiKey::JoinGroup,
        &[RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS; 3],
    );
    mock.request_errors(
        RDKafkaApiKey::OffsetCommit,
        &[RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE; 4],
    );
    let mut config = w.config();
    config.kafka.commit_interval = Duration::from_millis(100);
    let worker = silentauth_worker::worker::Worker::new(config);
    let stats = worker.counters();
    let cancel = tokio_util::sync::CancellationToken::new();
    let handle = tokio::spawn(worker.run(cancel.clone()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !stats.assigned.load(std::sync::atomic::Ordering::Relaxed) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never assigned past 3 JoinGroup errors"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Assigned: the worker's JoinGroup went through, after the 3 errors before it.
    mock.request_errors(
        RDKafkaApiKey::Fetch,
        &[RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION; 4],
    );
    let ids = w.send_jobs("brk", "38175", 100).await;
    // Consumed: a Fetch of the worker's went through, after the 4 errors before it (the test
    // has read nothing yet).
    while WorkerCounters::get(&stats.consumed) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "nothing consumed past 4 Fetch errors"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let first = w.wait_until_all(&ids, Duration::from_secs(60)).await;
    // Then every broker answers 500 ms late, and 100 more jobs come (published at once, not
    // one by one through the slow brokers).
    let results_before_slow = WorkerCounters::get(&stats.results);
    let commits_before_slow = WorkerCounters::get(&stats.commits);
    for b in 1..=3 {
        mock.broker_round_trip_time(b, Duration::from_millis(500))
            .unwrap();
    }
    let slow_since = tokio::time::Instant::now();
    let jobs: Vec<_> = (0..100)
        .map(|i| w.job(&format!("slow-{i}"), &format!("38177{i:07}")))
        .collect();
    publish(&w, &jobs).await;
    let slow_ids = jobs
        .iter()
        .map(|j| j["job_id"].as_str().unwrap().to_owned())
        .collect();
    let second = w.wait_until_all(&slow_ids, Duration::from_secs(120)).await;
    // The last commit may still be on its way: wait for one through the slow brokers.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while WorkerCounters::get(&stats.commits) == commits_before_slow {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no commit through the slow brokers"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let slow_for = slow_since.elapsed();
    let results_slow = WorkerCounters::get(&stats.results) - results_before_slow;
    let commits_slow = WorkerCounters::get(&stats.commits) - commits_before_slow;
    for b in 1..=3 {
        mock.broker_round_trip_time(b, Duration::ZERO).unwrap();
    }
    for (id, rs) in first.iter().chain(second.iter()) {
        assert!(rs.iter().all(|r| r["status"] == "verified"), "{id}: {rs:?}");
    }
    let commits = WorkerCounters::get(&stats.commits);
    eprintln!(
        "broker faults: 3 JoinGroup, 4 Fetch and 4 OffsetCommit errors met by the worker; \
         {results_slow} results and {commits_slow} commits through 500 ms brokers in {slow_for:?}; \
         {commits} commits in all"
    );
    // A commit succeeded: the worker's OffsetCommit requests answered the 4 errors first.
    assert!(commits >= 1, "no offset commit went through");
    // The worker itself produced and committed through the slow brokers.
    assert!(
        results_slow >= 100 && commits_slow >= 1,
        "{results_slow} results and {commits_slow} commits through the slow brokers"
    );
    cancel.cancel();
    handle.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_poison_never_stalls_valid_jobs() {
    let _one_at_a_time = SERIAL.lock().await;
    use futures::future::join_all;
    let w = World::with_broker(TestBroker::start_mock(), Scenario::default(), 8).await;
    let (cancel, handle) = w.start(w.config());
    let poison: Vec<Vec<u8>> = vec![
        b"not json".to_vec(),
        vec![0xff, 0xfe, 0x00],
        b"[1,2,3]".to_vec(),
        Vec::new(),
        br#"{"job_id":"p","login_hint":"1"}"#.to_vec(),
    ];
    let (n_poison, n_valid) = (10_000, 500);
    let mut ids = BTreeSet::new();
    let mut valid = Vec::new();
    for i in 0..n_valid {
        let id = format!("flood-{i}");
        ids.insert(id.clone());
        valid.push(w.job(&id, &format!("38176{i:07}")));
    }
    // Interleave: 20 poison records around every valid job, produced concurrently in chunks.
    let producer = w.broker.producer();
    let mut records = Vec::new();
    for i in 0..n_poison {
        records.push(poison[i % poison.len()].clone());
        if i % 20 == 0 {
            records.push(valid[i / 20].to_string().into_bytes());
        }
    }
    for chunk in records.chunks(1000) {
        let sends = chunk.iter().map(|v| {
            producer.send(
                rdkafka::producer::FutureRecord::<(), [u8]>::to(&w.jobs).payload(v.as_slice()),
                Duration::from_secs(30),
            )
        });
        for r in join_all(sends).await {
            r.expect("produce");
        }
    }
    let by_id = w.wait_until_all(&ids, Duration::from_secs(120)).await;
    for id in &ids {
        assert_eq!(by_id[id][0]["status"], "verified", "{id}: {:?}", by_id[id]);
    }
    // The poison with a readable job_id got its failed result, too.
    assert!(by_id["p"]
        .iter()
        .all(|r| r["error"]["class"] == "invalid_job"));
    // Every poison record was dead-lettered, none lost.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let dl = support::world::read_topic(&w.broker, &w.dlq).await.len();
        if dl >= n_poison {
            assert_eq!(dl, n_poison);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{dl} of {n_poison} dead letters"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    cancel.cancel();
    handle.await.unwrap();
}
