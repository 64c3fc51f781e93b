//! Broker failures on the 3-node Apache Kafka cluster (replication factor 3,
//! `min.insync.replicas=2`, from `scripts/kafka.sh`): the leader of a jobs partition and of a
//! results partition SIGKILLed mid-run and restarted, and every broker down for 10 s. Nothing
//! consumed may be lost, and `/readyz` (the worker's readiness) follows the brokers.
//!
//! Needs `java`, `mvn` and `python3` (the cluster is started with
//! `scripts/kafka.sh ensure --nodes 3`). Where they are missing and the environment did not ask
//! for Apache Kafka, each test prints a SKIPPED line to the real stderr; under
//! `TEST_BROKER=kafka`, or whenever the tools are there, a cluster that does not start fails the
//! test. The two tests share the cluster, so they hold a lock and run one at a time; the last
//! of them to end stops it (a filtered run of one test leaves it running for the next run).

mod support;

use rdkafka::consumer::{BaseConsumer, Consumer};
use silentauth_simulator::Scenario;
use std::collections::BTreeMap;
use std::time::Duration;
use support::world::{admin_addr, admin_get, World};
use support::{KafkaNodes, TestBroker};
use tokio::sync::Mutex;

/// The tests kill nodes of one shared cluster: one at a time.
static CLUSTER: Mutex<()> = Mutex::const_new(());

/// The tests of this file: the one that ends when this many have ended stops the cluster.
const TESTS: usize = 2;

/// Counts a test of this file as ended when dropped (a failing one too) and stops the 3-node
/// cluster after the last, so it does not hold memory and cores for the rest of the suite.
struct LastStops(KafkaNodes);

impl Drop for LastStops {
    fn drop(&mut self) {
        static ENDED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        if ENDED.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1 == TESTS {
            self.0.stop_all();
        }
    }
}

/// `/readyz`'s status code from the worker's admin listener at `addr`.
async fn readyz(addr: std::net::SocketAddr) -> u16 {
    admin_get(addr, "/readyz").await.0
}

fn scenario() -> Scenario {
    let mut s = Scenario::default();
    s.latency.fixed = Duration::from_millis(20);
    s
}

/// Partition -> leader node id of `topic`.
async fn leaders(broker: &TestBroker, topic: &str) -> BTreeMap<i32, i32> {
    let consumer: BaseConsumer = broker
        .consumer_config(&TestBroker::unique_group("meta"))
        .create()
        .unwrap();
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let meta = consumer
            .fetch_metadata(Some(&topic), Duration::from_secs(10))
            .unwrap();
        meta.topics()[0]
            .partitions()
            .iter()
            .map(|p| (p.id(), p.leader()))
            .collect()
    })
    .await
    .unwrap()
}

/// Polls `/readyz` at `addr` until it answers `want`; panics after `timeout`.
async fn wait_readyz(addr: std::net::SocketAddr, want: u16, timeout: Duration, what: &str) {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let code = readyz(addr).await;
        if code == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: /readyz still {code} after {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_of_a_jobs_and_a_results_partition_killed_and_restarted_loses_nothing() {
    let _one_at_a_time = CLUSTER.lock().await;
    let Some((broker, nodes)) = TestBroker::kafka_cluster3().await else {
        return;
    };
    let nodes = LastStops(nodes);
    let Run {
        w,
        admin,
        cancel,
        handle,
        ids,
    } = start_run(broker, "leader", "38171", 2000).await;

    let jobs = leaders(&w.broker, &w.jobs).await;
    let results = leaders(&w.broker, &w.results).await;
    let victim = jobs
        .values()
        .copied()
        .find(|n| results.values().any(|r| r == n))
        .unwrap_or(jobs[&0]);
    println!("leaders: jobs {jobs:?}, results {results:?}; SIGKILL node {victim}");
    nodes.0.kill(victim);
    let killed_at = tokio::time::Instant::now();
    let mut saw_not_ready = false;
    while killed_at.elapsed() < Duration::from_secs(5) {
        saw_not_ready |= readyz(admin).await != 200;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    nodes.0.start(victim);
    let by_id = w.wait_until_all(&ids, Duration::from_secs(180)).await;
    let lost = ids.iter().filter(|id| !by_id.contains_key(*id)).count();
    let duplicates: usize = by_id.values().map(|rs| rs.len() - 1).sum();
    for (id, rs) in &by_id {
        assert!(rs.iter().any(|r| r["status"] == "verified"), "{id}: {rs:?}");
    }
    wait_readyz(
        admin,
        200,
        Duration::from_secs(60),
        "ready after the restart",
    )
    .await;
    println!(
        "leader kill: {} jobs, {lost} lost, {duplicates} duplicate results, readiness dropped: {saw_not_ready}; new leaders jobs {:?}",
        ids.len(),
        leaders(&w.broker, &w.jobs).await
    );
    assert_eq!(lost, 0);
    cancel.cancel();
    handle.await.unwrap().unwrap();
    w.broker.wait_in_sync(3, Duration::from_secs(120)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_brokers_down_for_ten_seconds_loses_nothing() {
    let _one_at_a_time = CLUSTER.lock().await;
    let Some((broker, nodes)) = TestBroker::kafka_cluster3().await else {
        return;
    };
    let nodes = LastStops(nodes);
    let Run {
        w,
        admin,
        cancel,
        handle,
        ids,
    } = start_run(broker, "alldown", "38172", 1500).await;

    kill_all(&nodes.0);
    let down_at = tokio::time::Instant::now();
    let mut saw_not_ready = false;
    while down_at.elapsed() < Duration::from_secs(10) {
        saw_not_ready |= readyz(admin).await == 503;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for n in 1..=3 {
        nodes.0.start(n);
    }
    assert!(saw_not_ready, "/readyz must answer 503 during the outage");
    let by_id = w.wait_until_all(&ids, Duration::from_secs(180)).await;
    let duplicates: usize = by_id.values().map(|rs| rs.len() - 1).sum();
    for (id, rs) in &by_id {
        assert!(rs.iter().any(|r| r["status"] == "verified"), "{id}: {rs:?}");
    }
    wait_readyz(
        admin,
        200,
        Duration::from_secs(60),
        "ready again after the outage",
    )
    .await;
    println!(
        "all brokers down 10 s: {} jobs, 0 lost, {duplicates} duplicate results, readiness followed",
        ids.len()
    );
    cancel.cancel();
    handle.await.unwrap().unwrap();
    w.broker.wait_in_sync(3, Duration::from_secs(120)).await;
}

/// A worker at work on the 3-node cluster: `n` jobs sent, the first 200 answered.
struct Run {
    w: World,
    /// The worker's admin listener (`/readyz`).
    admin: std::net::SocketAddr,
    cancel: tokio_util::sync::CancellationToken,
    handle: tokio::task::JoinHandle<Result<(), silentauth_worker::worker::WorkerError>>,
    ids: std::collections::BTreeSet<String>,
}

async fn start_run(broker: TestBroker, prefix: &str, number: &str, n: usize) -> Run {
    let w = World::with_topics(broker, scenario(), [3, 3, 1]).await;
    let mut config = w.config();
    config.worker.max_in_flight = 16;
    let worker = silentauth_worker::worker::Worker::new(config);
    let stats = worker.counters();
    let cancel = tokio_util::sync::CancellationToken::new();
    let handle = tokio::spawn(worker.run(cancel.clone()));
    let admin = admin_addr(&stats, Duration::from_secs(30)).await;
    let ids = w.send_jobs(prefix, number, n).await;
    let seen = w.results_within(200, Duration::from_secs(120)).await;
    let get = silentauth_worker::telemetry::counters::WorkerCounters::get;
    assert!(
        seen >= 200 && stats.ready(),
        "{seen} results after 120 s; worker: ready {}, assigned {}, consumed {}, results {}, \
         produce errors {}, commits {}, in flight {}, not ready because {:?}",
        stats.ready(),
        stats.assigned.load(std::sync::atomic::Ordering::Relaxed),
        get(&stats.consumed),
        get(&stats.results),
        get(&stats.produce_errors),
        get(&stats.commits),
        get(&stats.in_flight),
        stats.unready_reasons()
    );
    Run {
        w,
        admin,
        cancel,
        handle,
        ids,
    }
}

fn kill_all(nodes: &KafkaNodes) {
    for n in 1..=3 {
        nodes.kill(n);
    }
}
