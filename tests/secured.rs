//! The worker binary on secured Apache Kafka (`scripts/kafka.sh --security sasl_ssl|mtls`): `run`,
//! `replay-dlq` and `doctor` over SASL_SSL with SCRAM-SHA-512 and over mutual TLS, the worker's
//! principal holding only the ACLs docs/operations.md lists; each of those ACLs taken away in
//! turn stops start-up naming it (exit 2, a log line, `doctor` FAIL) with the waiting job left
//! for later, and a Write taken away while running turns `/readyz` 503 without losing the job; a
//! wrong password or an untrusted broker certificate stops start-up at once naming SASL
//! authentication or the TLS certificate (exit 1). No secret appears in a log, `check-config` or
//! `doctor`.
//!
//! Each mode's node is started once per machine (`scripts/kafka.sh ensure`, under a file lock)
//! and stopped by `.ci/run`. Every test makes its own topics and group, so they share the nodes.

mod support;

use serde_json::Value;
use silentauth_simulator::{FaultRule, Scenario, SimEndpoint};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use support::load::{count, wait_count};
use support::secured::{Mode, Secured, WORKER};
use support::world::{read_topic, readyz_until, World};

const BIN: &str = env!("CARGO_BIN_EXE_silentauth-worker");
/// The hint whose token requests the simulator answers 500 (a dead letter).
const FAILING_HINT: &str = "491700000099";

fn scenario() -> Scenario {
    Scenario {
        faults: vec![FaultRule {
            endpoint: Some(SimEndpoint::Token),
            login_hints: Some(vec![FAILING_HINT.to_owned()]),
            status: Some(500),
            ..FaultRule::default()
        }],
        ..Scenario::default()
    }
}

/// A world on the secured node of `mode`: topics and records through the admin, the simulator.
async fn world(s: &Secured) -> World {
    World::with_topics(s.admin().await, scenario(), [2, 2, 1]).await
}

/// The ACLs `run` needs (docs/operations.md), as `TYPE:PATTERN:NAME:OPERATION`.
fn run_acls(w: &World) -> Vec<String> {
    vec![
        format!("topic:literal:{}:read", w.jobs),
        format!("topic:literal:{}:write", w.results),
        format!("topic:literal:{}:read", w.results),
        format!("topic:literal:{}:write", w.dlq),
        format!("topic:literal:{}:write", w.ledger),
        format!("topic:literal:{}:read", w.ledger),
        format!("group:literal:{}:read", w.group),
    ]
}

/// The ACLs `replay-dlq` needs besides (docs/operations.md).
fn replay_acls(w: &World) -> Vec<String> {
    vec![
        format!("topic:literal:{}:read", w.dlq),
        format!("group:literal:{}.replay:read", w.group),
        format!("topic:literal:{}:write", w.jobs),
    ]
}

/// The binary with `--config DIR/client.toml` (the script's fragment, unchanged) and the rest of
/// the world's settings from the environment.
fn worker(config: &Path, w: &World, args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(["--log-format", "json"])
        .args(args)
        .arg("--config")
        .arg(config)
        .stdin(Stdio::null());
    for (k, v) in [
        ("KAFKA__GROUP_ID", w.group.as_str()),
        ("KAFKA__CONNECT_TIMEOUT", "20s"),
        ("KAFKA__COMMIT_INTERVAL", "200ms"),
        ("TOPICS__JOBS", &w.jobs),
        ("TOPICS__RESULTS", &w.results),
        ("TOPICS__DEAD_LETTER", &w.dlq),
        ("TOPICS__LEDGER", &w.ledger),
        ("API__BASE_URL", &w.sim.base_url()),
        ("API__SIGNALS_BASE_URL", &w.sim.signals_base_url()),
        ("API__TIMEOUT", "2s"),
        ("RETRY__MAX_ATTEMPTS", "1"),
        ("WORKER__SHUTDOWN_GRACE", "5s"),
        ("ADMIN__LISTEN", "127.0.0.1:0"),
        ("CLIENTS__DEFAULT__CLIENT_ID", "client"),
        ("CLIENTS__DEFAULT__CLIENT_SECRET", "12345"),
        ("CLIENTS__DEFAULT__API_KEY", "sim-api-key"),
    ] {
        c.env(format!("SILENTAUTH__{k}"), v);
    }
    c.env("RUST_LOG", "info");
    c
}

/// Runs `command` to its end (panics after `within`), with its stdout and stderr.
fn finish(mut command: Command, within: Duration) -> (Output, Duration) {
    let started = Instant::now();
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the worker binary");
    let deadline = started + within;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "still running after {within:?}:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    (child.wait_with_output().unwrap(), started.elapsed())
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn assert_no_secret(s: &Secured, what: &str, output: &str) {
    let secret = s.worker_secret();
    assert!(
        !output.contains(&secret),
        "{what} shows the worker's secret:\n{output}"
    );
}

/// Where the admin listener of a running worker logged it listens.
fn admin_addr(log: &Path, within: Duration) -> std::net::SocketAddr {
    let deadline = Instant::now() + within;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        for line in text.lines() {
            let Ok(v) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            if v["fields"]["message"] == "admin listener started" {
                return v["fields"]["addr"].as_str().unwrap().parse().unwrap();
            }
        }
        assert!(
            Instant::now() < deadline,
            "no admin listener in the log:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `run`, `doctor`, `check-config` and `replay-dlq` with DIR/client.toml: the worker's principal
/// with the documented ACLs only.
async fn run_replay_and_doctor(mode: Mode) {
    let Some(s) = Secured::ensure(mode).await else {
        return;
    };
    let w = world(&s).await;
    let mut acls = run_acls(&w);
    acls.extend(replay_acls(&w));
    s.grant(WORKER, &acls);
    let config = s.client_toml();

    let (out, _) = finish(worker(&config, &w, &["doctor"]), Duration::from_secs(60));
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("PASS  kafka ACLs"),
        "{stdout}{}",
        text(&out.stderr)
    );
    assert!(
        stdout.contains(match mode {
            Mode::SaslSsl => "security.protocol SASL_SSL, sasl.mechanism SCRAM-SHA-512",
            Mode::Mtls => "security.protocol SSL",
        }),
        "{stdout}"
    );
    assert_no_secret(&s, "doctor", &stdout);

    let (out, _) = finish(
        worker(&config, &w, &["check-config"]),
        Duration::from_secs(20),
    );
    let shown = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{shown}{}", text(&out.stderr));
    assert!(shown.contains("= \"***\""), "{shown}");
    assert_no_secret(&s, "check-config", &shown);

    let jobs = [
        w.job("sec-1", "491700000001"),
        w.job("sec-2", "491700000002"),
        w.job("sec-dl", FAILING_HINT),
    ];
    for j in &jobs {
        w.send_job(j).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("worker.log");
    let mut run = worker(&config, &w, &["run"]);
    run.stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    let child = run.spawn().unwrap();
    wait_count(&w.broker, &w.results, 3, Duration::from_secs(60)).await;
    support::process::sigterm(child);
    let logged = std::fs::read_to_string(&log).unwrap();
    assert_no_secret(&s, "the worker's log", &logged);
    assert!(
        logged.contains("the brokers grant every ACL the worker needs"),
        "{logged}"
    );
    let results = w.results_by_id().await;
    assert_eq!(results["sec-1"][0]["status"], "verified", "{results:?}");
    assert_eq!(results["sec-2"][0]["status"], "verified", "{results:?}");
    assert_eq!(results["sec-dl"][0]["status"], "failed", "{results:?}");
    assert_eq!(count(&w.broker, &w.dlq).await, 1);

    let jobs_before = count(&w.broker, &w.jobs).await;
    let (out, _) = finish(
        worker(&config, &w, &["replay-dlq"]),
        Duration::from_secs(60),
    );
    let report = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{report}{}", text(&out.stderr));
    assert_no_secret(&s, "replay-dlq", &format!("{report}{}", text(&out.stderr)));
    assert_eq!(count(&w.broker, &w.jobs).await, jobs_before + 1, "{report}");
    let replayed = read_topic(&w.broker, &w.jobs).await;
    let last: Value = serde_json::from_slice(
        rdkafka::message::Message::payload(replayed.last().unwrap()).unwrap(),
    )
    .unwrap();
    assert_eq!(last["job_id"], "sec-dl");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_replay_and_doctor_over_sasl_ssl_scram() {
    run_replay_and_doctor(Mode::SaslSsl).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_replay_and_doctor_over_mutual_tls() {
    run_replay_and_doctor(Mode::Mtls).await;
}

/// DIR/client.toml with `from` replaced by `to`, in `dir`.
fn edited_client_toml(s: &Secured, dir: &Path, from: &str, to: &str) -> PathBuf {
    let text = std::fs::read_to_string(s.client_toml()).unwrap();
    assert!(text.contains(from), "{from} not in client.toml");
    let path = dir.join("client.toml");
    std::fs::write(&path, text.replace(from, to)).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_or_an_untrusted_certificate_stops_start_up_at_once() {
    let dir = tempfile::tempdir().unwrap();

    let Some(s) = Secured::ensure(Mode::SaslSsl).await else {
        return;
    };
    let w = world(&s).await;
    let wrong = "wrong-password-0f3a9c";
    let bad = edited_client_toml(&s, dir.path(), &s.worker_secret(), wrong);
    let (out, took) = finish(worker(&bad, &w, &["run"]), Duration::from_secs(60));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    // Well within kafka.connect_timeout (20s): the first refusal ends it.
    assert!(took < Duration::from_secs(15), "took {took:?}:\n{stderr}");
    let last = stderr.lines().last().unwrap();
    assert!(
        last.starts_with("error: cannot reach Kafka")
            && last.contains("SASL authentication failed"),
        "{last}"
    );
    assert!(last.contains("sasl.password"), "{last}");
    // No retry storm: a handful of lines, not one per reconnect for 20 s.
    let auth_lines = stderr
        .lines()
        .filter(|l| l.contains("Authentication"))
        .count();
    assert!(auth_lines <= 12, "{auth_lines} lines:\n{stderr}");
    assert!(!stderr.contains(wrong), "{stderr}");
    let (out, _) = finish(worker(&bad, &w, &["doctor"]), Duration::from_secs(60));
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let line = stdout
        .lines()
        .find(|l| l.contains("kafka.brokers"))
        .unwrap();
    assert!(
        line.starts_with("FAIL") && line.contains("SASL authentication failed"),
        "{line}"
    );
    assert!(!stdout.contains(wrong), "{stdout}");
    drop(w);

    // A CA that did not sign the broker's certificate.
    let Some(s) = Secured::ensure(Mode::Mtls).await else {
        return;
    };
    let w = world(&s).await;
    let ca = dir.path().join("other-ca.pem");
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ])
        .arg("-keyout")
        .arg(dir.path().join("other-ca.key"))
        .arg("-out")
        .arg(&ca)
        .args(["-days", "1", "-subj", "/CN=not-the-brokers-ca"])
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", text(&made.stderr));
    let ours = s.dir.join("ca.pem").to_string_lossy().into_owned();
    let untrusted = edited_client_toml(&s, dir.path(), &ours, &ca.to_string_lossy());
    let (out, took) = finish(worker(&untrusted, &w, &["run"]), Duration::from_secs(60));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(took < Duration::from_secs(15), "took {took:?}:\n{stderr}");
    let last = stderr.lines().last().unwrap();
    assert!(
        last.contains("TLS handshake failed") && last.contains("certificate verify failed"),
        "{last}"
    );
    assert!(last.contains("ssl.ca.location"), "{last}");
    assert_no_secret(&s, "the worker's log", &stderr);
    let (out, _) = finish(worker(&untrusted, &w, &["doctor"]), Duration::from_secs(60));
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let line = stdout
        .lines()
        .find(|l| l.contains("kafka.brokers"))
        .unwrap();
    assert!(
        line.starts_with("FAIL") && line.contains("certificate"),
        "{line}"
    );
    assert_no_secret(&s, "doctor", &stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_missing_acl_stops_start_up_naming_it_and_the_job_waits() {
    let Some(s) = Secured::ensure(Mode::SaslSsl).await else {
        return;
    };
    let w = world(&s).await;
    let acls = run_acls(&w);
    s.grant(WORKER, &acls);
    w.send_job(&w.job("acl-1", "491700000011")).await;
    let config = s.client_toml();
    for acl in &acls {
        s.revoke(WORKER, std::slice::from_ref(acl));
        let parts: Vec<&str> = acl.split(':').collect();
        let op = match parts[3] {
            "read" => "Read",
            "write" => "Write",
            other => panic!("{other}"),
        };
        let named = format!("ALLOW {op} on {} '{}'", parts[0], parts[2]);

        let (out, _) = finish(worker(&config, &w, &["run"]), Duration::from_secs(60));
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "without {acl}:\n{stderr}");
        let last = stderr.lines().last().unwrap();
        assert!(
            last.starts_with("error: missing ACLs") && last.contains(&named),
            "without {acl}: {last}"
        );
        assert!(
            stderr
                .lines()
                .any(|l| l.contains("\"ERROR\"") && l.contains(&named)),
            "no log line names {named}:\n{stderr}"
        );

        let (out, _) = finish(worker(&config, &w, &["doctor"]), Duration::from_secs(60));
        let stdout = text(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "without {acl}:\n{stdout}");
        let line = stdout.lines().find(|l| l.contains("kafka ACLs")).unwrap();
        assert!(
            line.starts_with("FAIL") && line.contains(&named),
            "without {acl}: {line}"
        );

        s.grant(WORKER, std::slice::from_ref(acl));
    }
    // Nothing was consumed or published meanwhile: the job waits for a worker that may run.
    assert_eq!(count(&w.broker, &w.results).await, 0);
    assert_eq!(count(&w.broker, &w.ledger).await, 0);

    // Exactly-once also needs Write on its transactional id: refused by init_transactions.
    let txn_id = format!("{}.secured-1", w.group);
    let mut eos = worker(&config, &w, &["run"]);
    eos.env("SILENTAUTH__WORKER__DELIVERY", "exactly_once")
        .env("SILENTAUTH__WORKER__INSTANCE_ID", "secured-1");
    let (out, _) = finish(eos, Duration::from_secs(60));
    let stderr = text(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    let last = stderr.lines().last().unwrap();
    // The brokers' words as librdkafka passes them on; the wording varies with the request that
    // failed ("Transactional Id authorization failed", TransactionalIdAuthorizationFailed).
    let squashed = last.to_lowercase().replace(' ', "");
    assert!(
        squashed.contains("transactionalidauthorizationfailed"),
        "{last}"
    );
    assert_eq!(count(&w.broker, &w.results).await, 0);

    // With every ACL, the waiting job is done (exactly once).
    s.grant(
        WORKER,
        &[format!("transactional_id:literal:{txn_id}:write")],
    );
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("worker.log");
    let mut eos = worker(&config, &w, &["run"]);
    eos.env("SILENTAUTH__WORKER__DELIVERY", "exactly_once")
        .env("SILENTAUTH__WORKER__INSTANCE_ID", "secured-1")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    let child = eos.spawn().unwrap();
    wait_count(&w.broker, &w.results, 1, Duration::from_secs(60)).await;
    support::process::sigterm(child);
    let results = w.results_by_id().await;
    assert_eq!(results["acl-1"][0]["status"], "verified", "{results:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_on_results_taken_away_while_running_turns_readiness_503_and_loses_nothing() {
    let Some(s) = Secured::ensure(Mode::SaslSsl).await else {
        return;
    };
    let w = world(&s).await;
    let acls = run_acls(&w);
    s.grant(WORKER, &acls);
    let config = s.client_toml();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("worker.log");
    let mut run = worker(&config, &w, &["run"]);
    run.stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    let child = run.spawn().unwrap();
    let addr = admin_addr(&log, Duration::from_secs(60));
    w.send_job(&w.job("live-1", "491700000021")).await;
    wait_count(&w.broker, &w.results, 1, Duration::from_secs(60)).await;
    let ready = readyz_until(addr, Duration::from_secs(60), "200", |c, _| c == 200).await;
    assert_eq!(ready.0, 200);

    let write = format!("topic:literal:{}:write", w.results);
    s.revoke(WORKER, std::slice::from_ref(&write));
    w.send_job(&w.job("live-2", "491700000022")).await;
    let (_, body) = readyz_until(
        addr,
        Duration::from_secs(60),
        "503 naming the results topic",
        |c, b| c == 503 && b.contains(&w.results),
    )
    .await;
    assert!(body.to_lowercase().contains("authoriz"), "{body}");
    assert_eq!(count(&w.broker, &w.results).await, 1);

    s.grant(WORKER, &[write]);
    wait_count(&w.broker, &w.results, 2, Duration::from_secs(60)).await;
    readyz_until(addr, Duration::from_secs(60), "200 again", |c, _| c == 200).await;
    support::process::sigterm(child);
    let results = w.results_by_id().await;
    assert_eq!(results["live-2"][0]["status"], "verified", "{results:?}");
    assert_no_secret(
        &s,
        "the worker's log",
        &std::fs::read_to_string(&log).unwrap(),
    );
}
