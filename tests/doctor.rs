//! `silentauth-worker doctor` through the binary, against the test broker and the simulator: a
//! passing configuration exits 0, and each kind of failure (brokers, TLS, a missing topic, a
//! results retention shorter than `worker.code_ttl`, the consumer group, rejected credentials,
//! a key without permission, Network Signals) is found with its fix, exit 1, no secret printed.
//!
//! The MockCluster does not answer DescribeConfigs (the retention checks then warn, which does
//! not fail `doctor`) and has no ACLs (the group failure is injected as an OffsetFetch error):
//! the retention failure runs only on a real broker (TEST_BROKER=kafka or external) and says
//! so on stderr when skipped.

mod support;

use serde_json::Value;
use silentauth_simulator::Scenario;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use support::world::World;
use support::{BrokerKind, TestBroker};

const BIN: &str = env!("CARGO_BIN_EXE_silentauth-worker");
const SECRET: &str = "12345";
const WRONG_SECRET: &str = "not-the-secret";
const API_KEY: &str = "sim-api-key";
const NO_PERMISSION_KEY: &str = "Kx-no-permission-7Qd";
/// A user and password written into `api.base_url`.
const URL_USER: &str = "url-user-5Tz";
const URL_PASSWORD: &str = "url-pass-9Wk";

fn scenario() -> Scenario {
    Scenario {
        forbidden_api_keys: vec![NO_PERMISSION_KEY.into()],
        ..Scenario::default()
    }
}

/// Writes the World's configuration (its `default` profile only, with its secrets), edited by
/// `edit`.
fn config_file(dir: &tempfile::TempDir, w: &World, edit: impl FnOnce(&mut toml::Table)) -> PathBuf {
    let mut config = w.config();
    config.kafka.connect_timeout = std::time::Duration::from_secs(5);
    let mut t: toml::Table = toml::to_string(&config).unwrap().parse().unwrap();
    let clients = t["clients"].as_table_mut().unwrap();
    clients.remove("wrong");
    let c = clients["default"].as_table_mut().unwrap();
    c.insert("client_secret".into(), SECRET.into());
    c.insert("api_key".into(), API_KEY.into());
    edit(&mut t);
    let path = dir.path().join(format!("doctor-{}.toml", rand_suffix()));
    std::fs::File::create(&path)
        .and_then(|mut f| f.write_all(toml::to_string(&t).unwrap().as_bytes()))
        .unwrap();
    path
}

/// Writes to the real stderr, past the test harness's capture, so a skip is seen.
fn loud(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

fn rand_suffix() -> u64 {
    rand::random()
}

fn set(t: &mut toml::Table, path: &str, value: impl Into<toml::Value>) {
    let mut parts: Vec<&str> = path.split('.').collect();
    let last = parts.pop().unwrap();
    let mut cur = t;
    for p in parts {
        cur = cur
            .entry(p)
            .or_insert_with(|| toml::Value::Table(Default::default()))
            .as_table_mut()
            .unwrap();
    }
    cur.insert(last.into(), value.into());
}

/// Runs `doctor --config path [--json]`: the exit code, stdout, and each check's status and
/// line by check name.
fn doctor(path: &PathBuf) -> (i32, String, BTreeMap<String, (String, String)>) {
    let out = Command::new(BIN)
        .args(["doctor", "--config"])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let json = Command::new(BIN)
        .args(["doctor", "--json", "--config"])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(json.status.code(), out.status.code(), "--json agrees");
    let report: Value = serde_json::from_slice(&json.stdout).unwrap();
    let mut checks = BTreeMap::new();
    for c in report["checks"].as_array().unwrap() {
        let name = c["check"].as_str().unwrap().to_owned();
        let line = stdout
            .lines()
            .find(|l| l.split("  ").nth(1).map(str::trim) == Some(name.as_str()))
            .unwrap_or_else(|| panic!("no text line for {name}:\n{stdout}"))
            .to_owned();
        checks.insert(name, (c["status"].as_str().unwrap().to_owned(), line));
    }
    assert_eq!(report["ok"], out.status.code() == Some(0), "{stdout}");
    assert_eq!(stdout.lines().count(), checks.len() + 1, "{stdout}");
    for secret in [
        SECRET,
        WRONG_SECRET,
        API_KEY,
        NO_PERMISSION_KEY,
        URL_USER,
        URL_PASSWORD,
    ] {
        assert!(
            !stdout.contains(secret) && !String::from_utf8_lossy(&json.stdout).contains(secret),
            "secret {secret} printed:\n{stdout}"
        );
    }
    (out.status.code().unwrap(), stdout, checks)
}

fn status<'a>(checks: &'a BTreeMap<String, (String, String)>, name: &str) -> &'a str {
    &checks
        .get(name)
        .unwrap_or_else(|| panic!("no check {name}: {checks:?}"))
        .0
}

fn line<'a>(checks: &'a BTreeMap<String, (String, String)>, name: &str) -> &'a str {
    &checks[name].1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passing_configuration_exits_0_with_one_line_per_check() {
    let w = World::new(scenario(), 3).await;
    let dir = tempfile::tempdir().unwrap();
    let path = config_file(&dir, &w, |_| {});
    let (code, stdout, checks) = doctor(&path);
    assert_eq!(code, 0, "{stdout}");
    assert!(line(&checks, "kafka.brokers").contains("broker(s) answer"));
    assert!(line(&checks, "topics.jobs").contains(&format!("'{}' exists, 3 partition(s)", w.jobs)));
    assert!(line(&checks, "topics.results").contains("exists, 3 partition(s)"));
    assert!(line(&checks, "topics.dead_letter").contains("exists, 1 partition(s)"));
    assert_eq!(status(&checks, "kafka.group_id"), "pass");
    assert!(
        line(&checks, "kafka.group_id").contains("lag 0"),
        "{stdout}"
    );
    assert_eq!(status(&checks, "clients.default"), "pass");
    assert!(line(&checks, "clients.default").contains("refused with 400 invalid_request"));
    assert_eq!(status(&checks, "clients.default signals"), "pass");
    for retention in ["topics.results retention", "topics.dead_letter retention"] {
        match w.broker.kind() {
            BrokerKind::Mock => {
                assert_eq!(status(&checks, retention), "warn", "{stdout}");
                assert!(line(&checks, retention).contains("cannot read the configuration"));
            }
            _ => assert_eq!(
                status(&checks, retention),
                expected_retention_status(&w, retention).await,
                "{stdout}"
            ),
        }
    }
    assert!(stdout.ends_with("failed, 0 skipped\n") && stdout.contains(" 0 failed"));
}

/// A profile table for `set`.
fn profile(secret: &str, api_key: &str) -> toml::Value {
    let mut t = toml::Table::new();
    t.insert("client_id".into(), "client".into());
    t.insert("client_secret".into(), secret.into());
    t.insert("api_key".into(), api_key.into());
    toml::Value::Table(t)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_credentials_a_key_without_permission_and_signals_failures_are_found() {
    let w = World::new(scenario(), 1).await;
    let dir = tempfile::tempdir().unwrap();
    let path = config_file(&dir, &w, |t| {
        set(t, "clients.wrong", profile(WRONG_SECRET, API_KEY));
        set(t, "clients.badkey", profile(SECRET, "not-a-known-key"));
        set(t, "clients.denied", profile(SECRET, NO_PERMISSION_KEY));
    });
    let (code, stdout, checks) = doctor(&path);
    assert_eq!(code, 1, "{stdout}");
    assert_eq!(status(&checks, "clients.default"), "pass", "{stdout}");
    for name in ["clients.wrong", "clients.badkey"] {
        assert_eq!(status(&checks, name), "fail", "{stdout}");
        let l = line(&checks, name);
        assert!(
            l.contains("rejected") && l.contains("401 invalid_client"),
            "{l}"
        );
        assert!(
            l.contains(&format!(
                "-> check {name}.api_key, client_id and client_secret"
            )),
            "{l}"
        );
    }
    let l = line(&checks, "clients.denied");
    assert_eq!(status(&checks, "clients.denied"), "fail");
    assert!(
        l.contains("403 permission_denied") && l.contains("-> ask tyntec"),
        "{l}"
    );
    // Network Signals only look at the api key.
    assert_eq!(status(&checks, "clients.wrong signals"), "pass", "{stdout}");
    let l = line(&checks, "clients.badkey signals");
    assert!(
        l.starts_with("FAIL") && l.contains("401 UNAUTHENTICATED"),
        "{l}"
    );
    let l = line(&checks, "clients.denied signals");
    assert!(
        l.starts_with("FAIL") && l.contains("403 PERMISSION_DENIED"),
        "{l}"
    );
    // The Kafka side of this configuration is fine.
    assert_eq!(status(&checks, "kafka.brokers"), "pass");
    assert_eq!(status(&checks, "topics.results"), "pass");
    // No code was spent, and nothing but these made-up requests reached the simulator.
    assert_eq!(w.sim.stats().tokens_issued, 0);

    // An API that does not answer, and a signals URL that is not Network Signals.
    let path = config_file(&dir, &w, |t| {
        set(t, "api.base_url", "http://127.0.0.1:1/silent-auth/v1");
        set(
            t,
            "api.signals_base_url",
            format!("{}/nothing-here", w.sim.base_url()),
        );
    });
    let (code, stdout, checks) = doctor(&path);
    assert_eq!(code, 1, "{stdout}");
    let l = line(&checks, "clients.default");
    assert!(
        l.contains("no answer from http://127.0.0.1:1") && l.contains("-> check api.base_url"),
        "{l}"
    );
    let l = line(&checks, "clients.default signals");
    assert!(
        l.contains("answered 404") && l.contains("-> check api.signals_base_url"),
        "{l}"
    );

    // An API that refuses the client with 400 (RFC 6749 §5.2 allows it), reached through a base
    // URL that carries a user and password: the check fails, and the URL is printed masked.
    let refusing = format!(
        "forbidden_api_keys = [{NO_PERMISSION_KEY:?}]\n[[faults]]\nendpoint = \"token\"\nstatus = 400\nbody = '{{\"error\":\"unauthorized_client\"}}'\n"
    );
    w.sim
        .set_scenario(Scenario::from_toml_str(&refusing).unwrap());
    let with_credentials = w
        .sim
        .base_url()
        .replace("http://", &format!("http://{URL_USER}:{URL_PASSWORD}@"));
    let path = config_file(&dir, &w, |t| set(t, "api.base_url", with_credentials));
    let (code, stdout, checks) = doctor(&path);
    assert_eq!(code, 1, "{stdout}");
    assert_eq!(status(&checks, "clients.default"), "fail", "{stdout}");
    let l = line(&checks, "clients.default");
    assert!(
        l.contains("rejected") && l.contains("400 unauthorized_client"),
        "{l}"
    );
    assert!(l.contains("-> check clients.default.api_key"), "{l}");
    assert!(l.contains("http://***@127.0.0.1:"), "{l}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_brokers_a_tls_mismatch_and_a_missing_topic_are_found() {
    let w = World::new(scenario(), 1).await;
    let dir = tempfile::tempdir().unwrap();

    let path = config_file(&dir, &w, |t| set(t, "kafka.brokers", "127.0.0.1:1"));
    let (code, stdout, checks) = doctor(&path);
    assert_eq!(code, 1, "{stdout}");
    let l = line(&checks, "kafka.brokers");
    assert!(
        l.starts_with("FAIL")
            && l.contains("Connection refused")
            && l.contains("-> check kafka.brokers"),
        "{l}"
    );
    for skipped in [
        "topics.jobs",
        "topics.results",
        "topics.dead_letter",
        "kafka.group_id",
    ] {
        assert_eq!(status(&checks, skipped), "skip", "{stdout}");
    }
    // The API checks do not depend on Kafka.
    assert_eq!(status(&checks, "clients.default"), "pass", "{stdout}");

    // The config asks for TLS; the broker speaks plaintext: the handshake fails.
    let path = config_file(&dir, &w, |t| {
        let mut props = toml::Table::new();
        props.insert("security.protocol".into(), "SSL".into());
        set(t, "kafka.properties", props);
    });
    let (code, stdout, checks) = doctor(&path);
    assert_eq!(code, 1, "{stdout}");
    let l = line(&checks, "kafka.brokers");
    assert!(
        l.starts_with("FAIL") && l.contains("security.protocol SSL") && l.contains("SSL"),
        "{l}"
    );

    let missing = TestBroker::unique_topic("misspelled");
    let path = config_file(&dir, &w, |t| set(t, "topics.results", missing.as_str()));
    let (code, stdout, checks) = doctor(&path);
    assert_eq!(code, 1, "{stdout}");
    let l = line(&checks, "topics.results");
    assert!(
        l.starts_with("FAIL")
            && l.contains(&format!(
                "topic '{missing}' does not exist -> create it, or correct topics.results"
            )),
        "{l}"
    );
    assert_eq!(status(&checks, "topics.results retention"), "skip");
    assert_eq!(status(&checks, "topics.jobs"), "pass");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_group_that_cannot_be_read_is_found() {
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
    // Injecting GROUP_AUTHORIZATION_FAILED needs the MockCluster (the test Kafka has no ACLs),
    // so this test runs on a fresh one whatever TEST_BROKER says.
    let w = World::with_broker(TestBroker::start_mock(), scenario(), 1).await;
    let cluster = w.broker.mock().expect("a mock cluster");
    cluster.mock().request_errors(
        RDKafkaApiKey::OffsetFetch,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED; 20],
    );
    let dir = tempfile::tempdir().unwrap();
    let path = config_file(&dir, &w, |_| {});
    let (code, stdout, checks) = doctor(&path);
    assert_eq!(code, 1, "{stdout}");
    let l = line(&checks, "kafka.group_id");
    assert!(
        l.starts_with("FAIL")
            && l.contains(&format!("group '{}'", w.group))
            && l.contains("-> allow this client Describe and Read"),
        "{l}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_results_retention_shorter_than_code_ttl_is_found() {
    let w = World::new(scenario(), 1).await;
    if w.broker.kind() == BrokerKind::Mock {
        loud(
            "SKIPPED a_results_retention_shorter_than_code_ttl_is_found: the MockCluster does \
             not answer DescribeConfigs; run with TEST_BROKER=kafka (scripts/kafka.sh) or external",
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // The topics keep the broker's default retention (7 days); a code_ttl of 30 days is longer.
    let path = config_file(&dir, &w, |t| set(t, "worker.code_ttl", "30days"));
    let (code, stdout, checks) = doctor(&path);
    assert_eq!(code, 1, "{stdout}");
    let l = line(&checks, "topics.results retention");
    assert!(
        l.starts_with("FAIL")
            && l.contains("is shorter than worker.code_ttl (30days)")
            && l.contains("--add-config retention.ms=2592000000"),
        "{l}"
    );
    let dlq = "topics.dead_letter retention";
    assert_eq!(
        status(&checks, dlq),
        expected_retention_status(&w, dlq).await,
        "{stdout}"
    );
}

/// What a retention check of `topic` should say, from the topic's `retention.ms` as the broker
/// describes it to this test (not as doctor reports it): results pass against the default
/// code_ttl of 10 minutes unless kept for less (-1 keeps them for ever), dead letters warn below
/// 7 days.
async fn expected_retention_status(w: &World, check: &str) -> &'static str {
    let topic = if check.starts_with("topics.dead_letter") {
        &w.dlq
    } else {
        &w.results
    };
    let ms = retention_ms(&w.broker, topic).await;
    let (week, ttl) = (7 * 24 * 3600 * 1000, 10 * 60 * 1000);
    match check.starts_with("topics.dead_letter") {
        true if (0..week).contains(&ms) => "warn",
        false if (0..ttl).contains(&ms) => "fail",
        _ => "pass",
    }
}

/// `retention.ms` of `topic`, read with the admin API's DescribeConfigs.
async fn retention_ms(broker: &TestBroker, topic: &str) -> i64 {
    use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> = broker.client_config().create().unwrap();
    let options = AdminOptions::new().request_timeout(Some(std::time::Duration::from_secs(10)));
    let described = admin
        .describe_configs(&[ResourceSpecifier::Topic(topic)], &options)
        .await
        .unwrap();
    let resource = described[0].as_ref().expect("the topic's configuration");
    resource
        .get("retention.ms")
        .and_then(|e| e.value.as_deref())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no retention.ms for {topic}"))
}
