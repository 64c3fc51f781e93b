//! A test world: a broker, fresh topics, the simulator and a worker config pointing at both.

use super::TestBroker;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message, OwnedMessage};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use serde_json::{json, Value};
use silentauth_simulator::{Scenario, SimHandle};
use silentauth_worker::config::{Config, ProfileConfig};
use silentauth_worker::secret::Secret;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The redirect_uri every generated job uses.
pub const REDIRECT: &str = "https://client.example.com/callback";

/// Broker, topics, simulator.
pub struct World {
    /// See the type.
    pub broker: TestBroker,
    /// See the type.
    pub sim: SimHandle,
    /// See the type.
    pub jobs: String,
    /// See the type.
    pub results: String,
    /// See the type.
    pub dlq: String,
    /// The presentation ledger's topic.
    pub ledger: String,
    /// See the type.
    pub group: String,
}

impl World {
    /// Starts a world with `partitions` job partitions.
    pub async fn new(scenario: Scenario, partitions: i32) -> World {
        World::with_broker(TestBroker::start().await, scenario, partitions).await
    }

    /// A world on a given broker.
    pub async fn with_broker(broker: TestBroker, scenario: Scenario, partitions: i32) -> World {
        World::with_topics(broker, scenario, [partitions, 3, 1]).await
    }

    /// A world whose jobs, results and dead-letter topics have the given partition counts
    /// (MockCluster keeps ~5 MB per partition, so big runs spread their results).
    pub async fn with_topics(
        broker: TestBroker,
        scenario: Scenario,
        partitions: [i32; 3],
    ) -> World {
        let jobs = TestBroker::unique_topic("jobs");
        let results = TestBroker::unique_topic("results");
        let dlq = TestBroker::unique_topic("dlq");
        let ledger = TestBroker::unique_topic("ledger");
        broker.create_topic(&jobs, partitions[0]).await;
        broker.create_topic(&results, partitions[1]).await;
        broker.create_topic(&dlq, partitions[2]).await;
        broker.create_topic(&ledger, partitions[1]).await;
        let sim = SimHandle::start("127.0.0.1:0".parse().unwrap(), scenario)
            .await
            .expect("simulator");
        World {
            broker,
            sim,
            jobs,
            results,
            dlq,
            ledger,
            group: TestBroker::unique_group("worker"),
        }
    }

    /// A worker config for this world: two profiles, `default` and `wrong` (bad secret).
    pub fn config(&self) -> Config {
        let mut c = Config::default();
        c.kafka.brokers = self.broker.bootstrap();
        c.kafka.group_id = self.group.clone();
        c.kafka.connect_timeout = Duration::from_secs(10);
        c.kafka.commit_interval = Duration::from_millis(200);
        c.topics.jobs = self.jobs.clone();
        c.topics.results = self.results.clone();
        c.topics.dead_letter = self.dlq.clone();
        c.topics.ledger = self.ledger.clone();
        c.api.base_url = self.sim.base_url();
        c.api.signals_base_url = self.sim.signals_base_url();
        c.api.timeout = Duration::from_secs(2);
        c.retry.initial_backoff = Duration::from_millis(10);
        c.retry.max_backoff = Duration::from_millis(50);
        c.worker.shutdown_grace = Duration::from_secs(5);
        c.admin.listen = "127.0.0.1:0".into();
        c.clients
            .insert("default".into(), client("client", "12345"));
        c.clients
            .insert("wrong".into(), client("client", "not-the-secret"));
        c
    }

    /// Runs a worker in the background.
    pub fn start(&self, config: Config) -> (CancellationToken, tokio::task::JoinHandle<()>) {
        let cancel = CancellationToken::new();
        let c = cancel.clone();
        let handle = tokio::spawn(async move {
            silentauth_worker::worker::run(config, c)
                .await
                .expect("worker run");
        });
        (cancel, handle)
    }

    /// A valid job with a freshly minted code for `hint`.
    pub fn job(&self, id: &str, hint: &str) -> Value {
        let code = self.sim.mint_code("client", hint, REDIRECT);
        json!({"job_id": id, "login_hint": hint, "code": code, "redirect_uri": REDIRECT, "state": "st", "attributes": {"t": "acme"}})
    }

    /// Produces a raw record to the jobs topic.
    pub async fn send(&self, key: Option<&str>, value: &[u8], headers: &[(&str, &[u8])]) {
        self.broker
            .produce(&self.jobs, key.map(str::as_bytes), value, headers)
            .await;
    }

    /// Produces a job keyed by its id.
    pub async fn send_job(&self, job: &Value) {
        let id = job["job_id"].as_str().map(str::to_owned);
        self.send(id.as_deref(), job.to_string().as_bytes(), &[])
            .await;
    }

    /// Reads the results topic from the start until `n` records (60 s at most).
    pub async fn results(&self, n: usize) -> Vec<(Value, OwnedMessage)> {
        let msgs = self
            .broker
            .consume_all(&self.results, n, Duration::from_secs(60))
            .await;
        msgs.into_iter()
            .map(|m| (serde_json::from_slice(m.payload().unwrap()).unwrap(), m))
            .collect()
    }
}

/// A client profile with the simulator's api key.
pub fn client(id: &str, secret: &str) -> ProfileConfig {
    ProfileConfig {
        client_id: id.into(),
        client_secret: Secret::new(secret),
        api_key: Secret::new("sim-api-key"),
        requests_per_second: None,
        burst: 1,
        signals_requests_per_second: None,
    }
}

/// A header's value as text.
pub fn header<'a>(m: &'a OwnedMessage, name: &str) -> Option<&'a str> {
    m.headers()?
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .map(|v| std::str::from_utf8(v).unwrap())
}

/// Reads every record of `topic` from the start to its current end, without a consumer group
/// (so no join delay). A broker error (a node down in a broker-failure test) restarts the read
/// with a fresh client; panics after 60 s.
pub async fn read_topic(broker: &TestBroker, topic: &str) -> Vec<OwnedMessage> {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let mut config = broker.consumer_config(&TestBroker::unique_group("read"));
        config.set("enable.partition.eof", "true");
        let consumer: BaseConsumer = config.create().expect("consumer");
        let name = topic.to_owned();
        let read = tokio::task::spawn_blocking(move || try_read_topic(&consumer, &name, deadline))
            .await
            .expect("reader task");
        match read {
            Ok(records) => return records,
            Err(err) => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "read_topic({topic}) failed for 60 s: {err}"
                );
                eprintln!("read_topic({topic}): {err}; reading again");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

fn try_read_topic(
    consumer: &BaseConsumer,
    topic: &str,
    deadline: std::time::Instant,
) -> Result<Vec<OwnedMessage>, String> {
    let t = Duration::from_secs(10);
    let meta = consumer
        .fetch_metadata(Some(topic), t)
        .map_err(|e| format!("metadata: {e}"))?;
    let parts: Vec<i32> = meta.topics()[0]
        .partitions()
        .iter()
        .map(|p| p.id())
        .collect();
    let mut tpl = TopicPartitionList::new();
    let mut open = std::collections::HashSet::new();
    for &p in &parts {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, t)
            .map_err(|e| format!("watermarks: {e}"))?;
        if high > low {
            tpl.add_partition_offset(topic, p, Offset::Offset(low))
                .unwrap();
            open.insert(p);
        }
    }
    let mut out = Vec::new();
    if open.is_empty() {
        return Ok(out);
    }
    consumer.assign(&tpl).map_err(|e| format!("assign: {e}"))?;
    while !open.is_empty() {
        if std::time::Instant::now() >= deadline {
            return Err(format!("{} partitions not read to their end", open.len()));
        }
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => out.push(m.detach()),
            Some(Err(KafkaError::PartitionEOF(p))) => {
                open.remove(&p);
            }
            Some(Err(e)) => eprintln!("read_topic({topic}): {e}"),
            None => {}
        }
    }
    Ok(out)
}

impl World {
    /// Every result on the results topic now, grouped by `job_id` in topic order.
    pub async fn results_by_id(&self) -> BTreeMap<String, Vec<Value>> {
        let mut by_id: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        for m in read_topic(&self.broker, &self.results).await {
            let v: Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
            by_id
                .entry(v["job_id"].as_str().unwrap().to_owned())
                .or_default()
                .push(v);
        }
        by_id
    }

    /// Publishes `n` valid jobs `<prefix>-<i>` whose login_hints are `<number>` followed by `i`
    /// on 7 digits; returns their ids.
    pub async fn send_jobs(&self, prefix: &str, number: &str, n: usize) -> BTreeSet<String> {
        let mut ids = BTreeSet::new();
        for i in 0..n {
            let id = format!("{prefix}-{i}");
            self.send_job(&self.job(&id, &format!("{number}{i:07}")))
                .await;
            ids.insert(id);
        }
        ids
    }

    /// Waits until every id in `ids` has a result; panics after `timeout`.
    pub async fn wait_until_all(
        &self,
        ids: &BTreeSet<String>,
        timeout: Duration,
    ) -> BTreeMap<String, Vec<Value>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let by_id = self.results_by_id().await;
            let missing = ids.iter().filter(|i| !by_id.contains_key(*i)).count();
            if missing == 0 {
                return by_id;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{missing} jobs without a result after {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// Waits until the results topic holds at least `n` records; panics after 60 s.
    pub async fn wait_for_results(&self, n: usize) {
        let seen = self.results_within(n, Duration::from_secs(60)).await;
        assert!(seen >= n, "fewer than {n} results after 60 s: {seen}");
    }

    /// Waits until the results topic holds `n` records or `timeout` passes; the count seen.
    pub async fn results_within(&self, n: usize, timeout: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let seen = read_topic(&self.broker, &self.results).await.len();
            if seen >= n || tokio::time::Instant::now() >= deadline {
                return seen;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// GETs `path` from a worker's admin listener at `addr`: (status, body).
pub async fn admin_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let r = reqwest::Client::new()
        .get(format!("http://{addr}{path}"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .expect("admin listener answers");
    (r.status().as_u16(), r.text().await.unwrap())
}

/// Polls `/readyz` until `want(status, body)` holds; panics after `within`.
pub async fn readyz_until(
    addr: std::net::SocketAddr,
    within: std::time::Duration,
    what: &str,
    want: impl Fn(u16, &str) -> bool,
) -> (u16, String) {
    let deadline = std::time::Instant::now() + within;
    loop {
        let (code, body) = admin_get(addr, "/readyz").await;
        if want(code, &body) {
            return (code, body);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "/readyz never {what}: last {code} {body:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// The value of one sample of a worker's `/metrics` at `addr`, e.g.
/// `silentauth_breaker_trips_total{reason="x"}`; panics when it is missing.
pub async fn metric(addr: std::net::SocketAddr, sample: &str) -> f64 {
    let text = admin_get(addr, "/metrics").await.1;
    text.lines()
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no sample {sample} in\n{text}"))
}

/// The address the admin listener of the worker whose counters are `stats` bound; panics after
/// `within`.
pub async fn admin_addr(
    stats: &silentauth_worker::telemetry::counters::WorkerCounters,
    within: Duration,
) -> std::net::SocketAddr {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(a) = stats.admin_addr() {
            return a;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the admin listener did not bind within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
