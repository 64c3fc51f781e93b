//! A Kafka broker for integration tests, chosen from the environment.
//!
//! [`TestBroker::start`] picks, in this order:
//! 1. `KAFKA_BOOTSTRAP_SERVERS` (non-empty): an external cluster, used as is;
//! 2. `TANSU_BIN` (non-empty): a tansu broker spawned as a child process on a free loopback port,
//!    with sqlite storage in a fresh temp dir, killed on drop;
//! 3. Apache Kafka in Docker via testcontainers, when a Docker engine answers (otherwise the
//!    skip is printed);
//! 4. librdkafka's in-process MockCluster ([`EmbeddedCluster`]).
//!
//! `TEST_BROKER=mock|kafka|tansu|external|docker` forces one kind regardless of the order above
//! (`tansu` still needs `TANSU_BIN`, `external` still needs `KAFKA_BOOTSTRAP_SERVERS`).
//! `kafka` is Apache Kafka from Maven Central jars (`scripts/kafka.sh`): the cluster at
//! `KAFKA_BOOTSTRAP_SERVERS` when set (CI starts one and sets it), else one node started once
//! per machine with `scripts/kafka.sh ensure` and shared by every test process (stop it with
//! `scripts/kafka.sh stop`). [`TestBroker::kafka_cluster3`] gives the 3-node cluster for
//! broker-failure tests.
//!
//! The choice is written straight to the process's stderr (not through the test harness's
//! capture), e.g. `broker: tansu at 127.0.0.1:40123`, so it shows in every test run.
//!
//! Parallel tests in one binary are safe: each `TestBroker::start` gets its own tansu process
//! (distinct port, distinct temp dir) or its own mock cluster; with an external cluster, use
//! [`TestBroker::unique_topic`] and fresh group ids.

use std::collections::HashSet;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use rand::distr::{Alphanumeric, SampleString};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::{Header, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use silentauth_worker::harness::embedded::EmbeddedCluster;
use tempfile::TempDir;

/// How long a tansu child may take to answer a metadata request after spawning.
const TANSU_START_TIMEOUT: Duration = Duration::from_secs(30);
/// Upper bound for a single admin / produce round trip in the helpers.
const OP_TIMEOUT: Duration = Duration::from_secs(30);
/// Number of brokers of the mock cluster.
const MOCK_BROKERS: i32 = 3;

/// Which kind of broker a [`TestBroker`] runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BrokerKind {
    /// A cluster given by `KAFKA_BOOTSTRAP_SERVERS`.
    External,
    /// Apache Kafka started in Docker through testcontainers.
    Docker,
    /// Apache Kafka from Maven Central jars, started by `scripts/kafka.sh` (one shared broker,
    /// or the 3-node cluster).
    Kafka,
    /// A tansu child process (`TANSU_BIN`).
    Tansu,
    /// librdkafka's in-process mock cluster.
    Mock,
}

/// A running broker plus a few client helpers.
pub struct TestBroker {
    kind: BrokerKind,
    bootstrap: String,
    /// Replication factor of the topics [`TestBroker::create_topic`] makes.
    replication: i32,
    /// librdkafka properties every client of the helpers gets (TLS and SASL of a secured node).
    properties: Vec<(String, String)>,
    // Clients first: fields drop in declaration order, so these go before the broker does.
    producer: OnceLock<FutureProducer>,
    admin: OnceLock<Arc<AdminClient<DefaultClientContext>>>,
    backend: Backend,
}

enum Backend {
    External,
    /// A `scripts/kafka.sh` cluster; it outlives the test process (shared).
    Kafka,
    /// Held for its lifetime: dropping it stops and removes the container.
    #[allow(dead_code)]
    Docker(
        Box<
            testcontainers_modules::testcontainers::ContainerAsync<
                testcontainers_modules::kafka::apache::Kafka,
            >,
        >,
    ),
    Tansu(TansuProcess),
    Mock(EmbeddedCluster),
}

impl TestBroker {
    /// Starts (or connects to) the broker selected by the environment; see the module docs.
    pub async fn start() -> TestBroker {
        let forced = env_nonempty("TEST_BROKER");
        match forced.as_deref() {
            None | Some("auto") => {}
            Some("mock") => return Self::start_mock(),
            Some("kafka") => return Self::start_kafka().await,
            Some("tansu") => {
                let bin = env_nonempty("TANSU_BIN").expect("TEST_BROKER=tansu needs TANSU_BIN");
                return Self::start_tansu(bin).await;
            }
            Some("external") => {
                let servers = env_nonempty("KAFKA_BOOTSTRAP_SERVERS")
                    .expect("TEST_BROKER=external needs KAFKA_BOOTSTRAP_SERVERS");
                return Self::external(servers).await;
            }
            Some("docker") => {
                return Self::start_docker()
                    .await
                    .expect("TEST_BROKER=docker needs a Docker engine")
            }
            Some(other) => {
                panic!(
                    "TEST_BROKER={other:?}: expected mock, kafka, tansu, external, docker or auto"
                )
            }
        }

        if let Some(servers) = env_nonempty("KAFKA_BOOTSTRAP_SERVERS") {
            return Self::external(servers).await;
        }
        if let Some(bin) = env_nonempty("TANSU_BIN") {
            return Self::start_tansu(bin).await;
        }

        // Apache Kafka in Docker, through testcontainers, when a Docker engine answers.
        if docker_socket_present() {
            if let Some(broker) = Self::start_docker().await {
                return broker;
            }
        } else {
            announce("broker: docker not available, skipping testcontainers");
        }

        Self::start_mock()
    }

    /// Starts a fresh librdkafka mock cluster, whatever the environment says. For tests that
    /// need fault injection ([`TestBroker::mock`]) or transactions.
    pub fn start_mock() -> TestBroker {
        let cluster = EmbeddedCluster::start(MOCK_BROKERS).expect("start mock cluster");
        let bootstrap = cluster.bootstrap_servers();
        announce(&format!("broker: mock cluster at {bootstrap}"));
        Self::new(BrokerKind::Mock, bootstrap, Backend::Mock(cluster))
    }

    /// Spawns `bin` as a tansu broker on a free loopback port with sqlite storage in a fresh
    /// temp dir and waits until it answers metadata requests. Panics if it does not within
    /// 30 s (three attempts, in case another process grabbed the port).
    pub async fn start_tansu(bin: impl Into<PathBuf>) -> TestBroker {
        let bin = bin.into();
        let mut failures = Vec::new();
        for _attempt in 0..3 {
            let port = reserve_port();
            let mut process = match TansuProcess::spawn(&bin, port) {
                Ok(process) => process,
                Err(err) => panic!("cannot spawn tansu {}: {err}", bin.display()),
            };
            match process.wait_ready().await {
                Ok(()) => {
                    let bootstrap = process.addr.to_string();
                    announce(&format!(
                        "broker: tansu at {bootstrap} (pid {}, data in {})",
                        process.child.id(),
                        process.dir.path().display()
                    ));
                    return Self::new(BrokerKind::Tansu, bootstrap, Backend::Tansu(process));
                }
                Err(err) => failures.push(format!("port {port}: {err}")),
            }
        }
        panic!("tansu did not start:\n{}", failures.join("\n"));
    }

    /// Starts Apache Kafka (KRaft, the official `apache/kafka` image family) in a container;
    /// `None`, with a visible line, when the Docker engine does not answer.
    pub async fn start_docker() -> Option<TestBroker> {
        use testcontainers_modules::kafka::apache;
        use testcontainers_modules::testcontainers::runners::AsyncRunner;
        let started = tokio::time::timeout(
            Duration::from_secs(180),
            apache::Kafka::default().with_jvm_image().start(),
        )
        .await;
        let container = match started {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                announce(&format!(
                    "broker: docker engine did not start Kafka ({e}), skipping testcontainers"
                ));
                return None;
            }
            Err(_) => {
                announce("broker: Kafka container not up within 180 s, skipping testcontainers");
                return None;
            }
        };
        let port = container
            .get_host_port_ipv4(apache::KAFKA_PORT)
            .await
            .expect("mapped Kafka port");
        let bootstrap = format!("127.0.0.1:{port}");
        announce(&format!("broker: apache kafka in docker at {bootstrap}"));
        Some(Self::new(
            BrokerKind::Docker,
            bootstrap,
            Backend::Docker(Box::new(container)),
        ))
    }

    /// Apache Kafka (`TEST_BROKER=kafka`): the cluster at `KAFKA_BOOTSTRAP_SERVERS` when set,
    /// else the machine's shared single node from `scripts/kafka.sh ensure`. Panics with the
    /// script's message when it cannot start one (no `java`, no `mvn`, a port taken, ...).
    pub async fn start_kafka() -> TestBroker {
        let bootstrap = match env_nonempty("KAFKA_BOOTSTRAP_SERVERS") {
            Some(servers) => servers,
            None => kafka_script(&["ensure", "--nodes", "1"])
                .unwrap_or_else(|err| panic!("TEST_BROKER=kafka: {err}")),
        };
        announce(&format!(
            "broker: apache kafka {} at {bootstrap}",
            kafka_version()
        ));
        let broker = Self::new(BrokerKind::Kafka, bootstrap, Backend::Kafka);
        broker.check_metadata().await;
        broker
    }

    /// The 3-node Apache Kafka cluster (replication factor 3, `min.insync.replicas=2`) for
    /// broker-failure tests, started once per machine (`scripts/kafka.sh ensure --nodes 3`,
    /// or the one at `KAFKA_CLUSTER3_DIR`). `None`, with a loud SKIPPED line naming what is
    /// missing, only where no such cluster can run (`java` or `mvn` not installed) and the
    /// environment did not ask for Apache Kafka. Under `TEST_BROKER=kafka`, and wherever the
    /// tools are there, a cluster that does not start (a timeout, a taken port, bad storage)
    /// panics with the script's message: the test fails instead of passing untested.
    pub async fn kafka_cluster3() -> Option<(TestBroker, KafkaNodes)> {
        let dir = env_nonempty("KAFKA_CLUSTER3_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo_root().join("target/kafka/cluster3"));
        let missing: Vec<&str> = ["java", "mvn", "python3"]
            .into_iter()
            .filter(|tool| !on_path(tool))
            .collect();
        let asked = env_nonempty("TEST_BROKER").as_deref() == Some("kafka");
        if !missing.is_empty() && !asked {
            announce(&format!(
                "SKIPPED: this test needs the 3-broker Apache Kafka cluster, which needs {} \
                 (not found on PATH); TEST_BROKER=kafka makes this a failure",
                missing.join(" and ")
            ));
            return None;
        }
        let dir_arg = dir.to_string_lossy().into_owned();
        let bootstrap = kafka_script(&["ensure", "--nodes", "3", "--dir", &dir_arg])
            .unwrap_or_else(|err| panic!("the 3-broker Apache Kafka cluster did not start: {err}"));
        announce(&format!(
            "broker: apache kafka {} 3-node cluster at {bootstrap}",
            kafka_version()
        ));
        let mut broker = Self::new(BrokerKind::Kafka, bootstrap, Backend::Kafka);
        broker.replication = 3;
        broker.check_metadata().await;
        broker.wait_in_sync(3, Duration::from_secs(120)).await;
        Some((broker, KafkaNodes { dir }))
    }

    /// Connects to an existing cluster at `servers`, checking that it answers metadata.
    pub async fn external(servers: String) -> TestBroker {
        announce(&format!("broker: external at {servers}"));
        let broker = Self::new(BrokerKind::External, servers, Backend::External);
        broker.check_metadata().await;
        broker
    }

    async fn check_metadata(&self) {
        let admin = self.admin();
        tokio::task::spawn_blocking(move || {
            admin
                .inner()
                .fetch_metadata(None, Duration::from_secs(10))
                .map(|_| ())
        })
        .await
        .expect("metadata task")
        .expect("the cluster does not answer metadata requests");
    }

    /// Waits until the cluster is whole: `brokers` brokers in its metadata and every partition
    /// (the internal topics' too) led and fully in sync. A cluster that had nodes killed and
    /// restarted answers metadata long before its replicas have caught up; a test that starts
    /// on it then finds offset commits or produce requests refused for too few in-sync
    /// replicas. Panics after `timeout` with what is still missing.
    pub async fn wait_in_sync(&self, brokers: usize, timeout: Duration) {
        let admin = self.admin();
        tokio::task::spawn_blocking(move || {
            let deadline = Instant::now() + timeout;
            loop {
                let missing = match admin.inner().fetch_metadata(None, Duration::from_secs(5)) {
                    Ok(meta) => {
                        let mut missing = Vec::new();
                        if meta.brokers().len() < brokers {
                            missing.push(format!("{} of {brokers} brokers", meta.brokers().len()));
                        }
                        for t in meta.topics() {
                            for p in t.partitions() {
                                if p.leader() < 0 || p.isr().len() < p.replicas().len() {
                                    missing.push(format!(
                                        "{}/{}: leader {}, isr {:?} of {:?}",
                                        t.name(),
                                        p.id(),
                                        p.leader(),
                                        p.isr(),
                                        p.replicas()
                                    ));
                                }
                            }
                        }
                        missing
                    }
                    Err(err) => vec![format!("metadata: {err}")],
                };
                if missing.is_empty() {
                    return;
                }
                assert!(
                    Instant::now() < deadline,
                    "the cluster is not in sync after {timeout:?}: {}",
                    missing.join("; ")
                );
                std::thread::sleep(Duration::from_millis(250));
            }
        })
        .await
        .expect("in-sync task");
    }

    fn new(kind: BrokerKind, bootstrap: String, backend: Backend) -> TestBroker {
        TestBroker {
            kind,
            bootstrap,
            replication: 1,
            properties: Vec::new(),
            producer: OnceLock::new(),
            admin: OnceLock::new(),
            backend,
        }
    }

    /// The `bootstrap.servers` string of the broker.
    pub fn bootstrap(&self) -> String {
        self.bootstrap.clone()
    }

    /// Which kind of broker this is.
    pub fn kind(&self) -> BrokerKind {
        self.kind
    }

    /// The mock cluster, for fault injection, when running on [`BrokerKind::Mock`].
    pub fn mock(&self) -> Option<&EmbeddedCluster> {
        match &self.backend {
            Backend::Mock(cluster) => Some(cluster),
            _ => None,
        }
    }

    /// Whether the broker supports transactional producers (tansu does not).
    pub fn supports_transactions(&self) -> bool {
        !matches!(self.kind, BrokerKind::Tansu)
    }

    /// A topic name that no other test uses: `prefix` plus a random suffix.
    pub fn unique_topic(prefix: &str) -> String {
        format!("{prefix}-{}", random_suffix())
    }

    /// A consumer group id that no other test uses: `prefix` plus a random suffix.
    pub fn unique_group(prefix: &str) -> String {
        format!("{prefix}-group-{}", random_suffix())
    }

    /// A client config with `bootstrap.servers` (and a secured node's TLS/SASL properties).
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap);
        for (k, v) in &self.properties {
            config.set(k, v);
        }
        config
    }

    /// A secured `scripts/kafka.sh` node, used through `properties` (its admin's TLS and SASL
    /// settings), checked to answer metadata requests.
    pub async fn secured(bootstrap: String, properties: Vec<(String, String)>) -> TestBroker {
        let mut broker = Self::new(BrokerKind::Kafka, bootstrap, Backend::Kafka);
        broker.properties = properties;
        broker.check_metadata().await;
        broker
    }

    /// Producer settings used by [`TestBroker::produce`]: idempotent, `acks=all`.
    pub fn producer_config(&self) -> ClientConfig {
        let mut config = self.client_config();
        config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("message.timeout.ms", "30000");
        config
    }

    /// Consumer settings for `group`: earliest offset, no auto commit, no partition EOF
    /// events, short session so rebalances in tests are quick.
    pub fn consumer_config(&self, group: &str) -> ClientConfig {
        let mut config = self.client_config();
        config
            .set("group.id", group)
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "500");
        config
    }

    /// Creates `name` with `partitions` partitions (replication factor 1, or 3 on the 3-node
    /// cluster) and waits until
    /// every partition has a leader. An already existing topic is accepted. Panics on error.
    pub async fn create_topic(&self, name: &str, partitions: i32) {
        match &self.backend {
            Backend::Mock(cluster) => cluster
                .create_topic(name, partitions)
                .unwrap_or_else(|err| panic!("create topic {name} on mock cluster: {err}")),
            Backend::Tansu(_) | Backend::External | Backend::Docker(_) | Backend::Kafka => {
                let admin = self.admin();
                let options = AdminOptions::new()
                    .operation_timeout(Some(Duration::from_secs(10)))
                    .request_timeout(Some(Duration::from_secs(10)));
                let topic =
                    NewTopic::new(name, partitions, TopicReplication::Fixed(self.replication));
                let results =
                    tokio::time::timeout(OP_TIMEOUT, admin.create_topics(&[topic], &options))
                        .await
                        .unwrap_or_else(|_| panic!("create topic {name}: timed out"))
                        .unwrap_or_else(|err| panic!("create topic {name}: {err}"));
                for result in results {
                    match result {
                        Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                        Err((topic, code)) => panic!("create topic {topic}: {code}"),
                    }
                }
            }
        }
        self.wait_for_topic(name, partitions).await;
    }

    /// Waits (up to 30 s) until metadata shows `name` with `partitions` partitions, each with
    /// a leader.
    pub async fn wait_for_topic(&self, name: &str, partitions: i32) {
        let deadline = Instant::now() + OP_TIMEOUT;
        let mut last = String::from("no metadata yet");
        while Instant::now() < deadline {
            let admin = self.admin();
            let topic = name.to_owned();
            let state = tokio::task::spawn_blocking(move || {
                let metadata = admin
                    .inner()
                    .fetch_metadata(Some(&topic), Duration::from_secs(5))
                    .map_err(|err| err.to_string())?;
                let Some(topic) = metadata.topics().iter().find(|t| t.name() == topic) else {
                    return Err("topic missing from metadata".to_owned());
                };
                if let Some(err) = topic.error() {
                    return Err(format!("topic error {err:?}"));
                }
                let with_leader = topic
                    .partitions()
                    .iter()
                    .filter(|p| p.leader() >= 0)
                    .count();
                Ok(with_leader)
            })
            .await
            .expect("metadata task");
            match state {
                Ok(ready) if ready == partitions as usize => return,
                Ok(ready) => last = format!("{ready}/{partitions} partitions with a leader"),
                Err(err) => last = err,
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("topic {name} not ready after {OP_TIMEOUT:?}: {last}");
    }

    /// Produces one record with the shared idempotent producer and waits for the broker's
    /// acknowledgement. Returns `(partition, offset)`. Panics on error or after 30 s.
    pub async fn produce(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        value: &[u8],
        headers: &[(&str, &[u8])],
    ) -> (i32, i64) {
        let mut record = FutureRecord::<[u8], [u8]>::to(topic)
            .payload(value)
            .headers(to_headers(headers));
        if let Some(key) = key {
            record = record.key(key);
        }
        let send = self.producer().send(record, Timeout::After(OP_TIMEOUT));
        match tokio::time::timeout(OP_TIMEOUT, send).await {
            Ok(Ok(delivery)) => (delivery.partition, delivery.offset),
            Ok(Err((err, _))) => panic!("produce to {topic}: {err}"),
            Err(_) => panic!("produce to {topic}: timed out"),
        }
    }

    /// Reads `topic` from the beginning in a fresh consumer group until `expected` records
    /// are read or `timeout` passes, and returns what was read (possibly fewer records).
    pub async fn consume_all(
        &self,
        topic: &str,
        expected: usize,
        timeout: Duration,
    ) -> Vec<OwnedMessage> {
        let deadline = tokio::time::Instant::now() + timeout;
        let group = Self::unique_group("consume-all");
        let consumer: StreamConsumer = self
            .consumer_config(&group)
            .create()
            .expect("create consumer");
        consumer.subscribe(&[topic]).expect("subscribe");
        let mut records = Vec::with_capacity(expected.min(10_000));
        while records.len() < expected {
            match tokio::time::timeout_at(deadline, consumer.recv()).await {
                Err(_) => break,
                Ok(Ok(message)) => records.push(message.detach()),
                Ok(Err(err)) => {
                    eprintln!("consume_all({topic}): {err}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        records
    }

    /// The shared idempotent producer (created on first use).
    pub fn producer(&self) -> &FutureProducer {
        self.producer.get_or_init(|| {
            self.producer_config()
                .create()
                .expect("create idempotent producer")
        })
    }

    fn admin(&self) -> Arc<AdminClient<DefaultClientContext>> {
        self.admin
            .get_or_init(|| Arc::new(self.client_config().create().expect("create admin client")))
            .clone()
    }
}

/// The nodes of a `scripts/kafka.sh` cluster, to kill and restart one (node id = `node.id`).
pub struct KafkaNodes {
    dir: PathBuf,
}

impl KafkaNodes {
    /// SIGKILLs node `id` and waits until the process is gone.
    pub fn kill(&self, id: i32) {
        self.run(&["kill-node", &id.to_string()]);
    }

    /// Starts node `id` again on its storage and ports (returns at once; the node rejoins).
    pub fn start(&self, id: i32) {
        self.run(&["start-node", &id.to_string()]);
    }

    /// Stops every node of the cluster (`scripts/kafka.sh stop`); a failure is printed, not
    /// raised (this runs in `Drop`).
    pub fn stop_all(&self) {
        let dir = self.dir.to_string_lossy().into_owned();
        match kafka_script(&["stop", "--dir", &dir]) {
            Ok(_) => announce(&format!("broker: 3-node cluster in {dir} stopped")),
            Err(err) => announce(&format!("broker: stopping the 3-node cluster: {err}")),
        }
    }

    fn run(&self, args: &[&str]) {
        let dir = self.dir.to_string_lossy().into_owned();
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--dir", &dir]);
        kafka_script(&all).unwrap_or_else(|err| panic!("scripts/kafka.sh {args:?}: {err}"));
    }
}

/// Runs `scripts/kafka.sh` with `args`; its last stdout line on success, its stderr on failure.
pub fn kafka_script(args: &[&str]) -> Result<String, String> {
    let script = repo_root().join("scripts/kafka.sh");
    let output = Command::new("bash")
        .arg(&script)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|err| format!("cannot run {}: {err}", script.display()))?;
    if !output.status.success() {
        return Err(format!(
            "{} {args:?} failed ({}):\n{}",
            script.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_owned())
}

/// The Kafka version pinned in `kafka-test/pom.xml`.
fn kafka_version() -> String {
    let pom = std::fs::read_to_string(repo_root().join("kafka-test/pom.xml")).unwrap_or_default();
    pom.split("<kafka.version>")
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .unwrap_or("4.x")
        .to_owned()
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A tansu child process and its data directory.
struct TansuProcess {
    child: Child,
    addr: SocketAddr,
    log_path: PathBuf,
    // Dropped after the child is killed (see `Drop`), which deletes the data.
    dir: TempDir,
}

impl TansuProcess {
    fn spawn(bin: &Path, port: u16) -> std::io::Result<TansuProcess> {
        let dir = tempfile::Builder::new().prefix("tansu-test-").tempdir()?;
        let log_path = dir.path().join("tansu.log");
        let log = File::create(&log_path)?;
        let url = format!("tcp://127.0.0.1:{port}");
        let mut command = Command::new(bin);
        command
            .arg("broker")
            .args(["--listener-url", &url])
            .args(["--advertised-listener-url", &url])
            .args(["--storage-engine", "sqlite://tansu.db"])
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        // tansu reads these from the environment; make sure none leaks in from the caller's.
        for var in [
            "CLUSTER_ID",
            "LISTENER_URL",
            "ADVERTISED_LISTENER_URL",
            "STORAGE_ENGINE",
            "SCHEMA_REGISTRY",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "DATA_LAKE",
        ] {
            command.env_remove(var);
        }
        let child = command.spawn()?;
        Ok(TansuProcess {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            log_path,
            dir,
        })
    }

    /// Polls until the broker accepts a connection and answers a metadata request.
    async fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + TANSU_START_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().map_err(|err| err.to_string())? {
                return Err(format!("exited with {status}; log:\n{}", self.log_tail()));
            }
            if TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok() {
                let servers = self.addr.to_string();
                let answered = tokio::task::spawn_blocking(move || {
                    let client: AdminClient<DefaultClientContext> = ClientConfig::new()
                        .set("bootstrap.servers", &servers)
                        .create()
                        .map_err(|err| err.to_string())?;
                    let metadata = client
                        .inner()
                        .fetch_metadata(None, Duration::from_secs(3))
                        .map_err(|err| err.to_string())?;
                    if metadata.brokers().is_empty() {
                        return Err("metadata lists no broker".to_owned());
                    }
                    Ok(())
                })
                .await
                .map_err(|err| err.to_string())?;
                if answered.is_ok() {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(format!(
            "no metadata answer within {TANSU_START_TIMEOUT:?}; log:\n{}",
            self.log_tail()
        ))
    }

    /// The last few KB of the broker's log.
    fn log_tail(&self) -> String {
        let mut tail = String::new();
        if let Ok(mut file) = File::open(&self.log_path) {
            let len = file.metadata().map(|m| m.len()).unwrap_or(0);
            let _ = file.seek(SeekFrom::Start(len.saturating_sub(8 * 1024)));
            let mut bytes = Vec::new();
            let _ = file.read_to_end(&mut bytes);
            tail = String::from_utf8_lossy(&bytes).into_owned();
        }
        tail
    }
}

impl Drop for TansuProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            announce(&format!(
                "broker: tansu at {} log tail (test panicked):\n{}",
                self.addr,
                self.log_tail()
            ));
        }
        release_port(self.addr.port());
    }
}

/// Ports handed to tansu children of this process and not yet released, so parallel tests
/// never pick the same one even if the OS would hand it out again.
fn ports_in_use() -> &'static Mutex<HashSet<u16>> {
    static PORTS: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    PORTS.get_or_init(|| Mutex::new(HashSet::new()))
}

/// A loopback port that was free a moment ago and is not used by another test of this process.
fn reserve_port() -> u16 {
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
        let port = listener.local_addr().expect("local addr").port();
        drop(listener);
        if ports_in_use()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(port)
        {
            return port;
        }
    }
}

fn release_port(port: u16) {
    ports_in_use()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&port);
}

fn to_headers(headers: &[(&str, &[u8])]) -> OwnedHeaders {
    headers.iter().fold(
        OwnedHeaders::new_with_capacity(headers.len()),
        |acc, &(key, value)| {
            acc.insert(Header {
                key,
                value: Some(value),
            })
        },
    )
}

fn random_suffix() -> String {
    Alphanumeric.sample_string(&mut rand::rng(), 10)
}

pub fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .filter(|value| !value.trim().is_empty())
}

/// True when `tool` is an executable file in a `PATH` directory.
pub fn on_path(tool: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            std::fs::metadata(dir.join(tool))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

fn docker_socket_present() -> bool {
    env_nonempty("DOCKER_HOST").is_some() || Path::new("/var/run/docker.sock").exists()
}

/// Writes a line to the real stderr, bypassing the test harness's output capture.
pub fn announce(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}
