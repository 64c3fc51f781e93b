//! Secrets and privacy under a full mixed workload: the worker binary runs at debug level in
//! both log formats over every outcome (verified, not verified, mismatch, every error class,
//! dead letters, duplicates) with distinctive credentials, and then its logs, every record it
//! produced (keys, values, headers), every trace span it exported (attributes, events, resource;
//! to an OTLP receiver in the test) and its `/metrics` text are scanned for the api key, the
//! client secrets, a SASL password given through `kafka.properties`, every authorization code,
//! every access/refresh/id token the simulator issued and every unmasked phone number.
//!
//! The contract puts two of these in records on purpose: a result carries the job's
//! `login_hint`, and a dead letter's value is the original job (with its code and number). Those
//! two places are checked to hold exactly that and nothing else; everywhere else nothing may
//! appear.

mod support;

use rdkafka::message::{Headers, Message, OwnedMessage};
use serde_json::{json, Value};
use silentauth_simulator::{FaultKind, FaultRule, RetryAfter, Scenario, SimClient, SimEndpoint};
use silentauth_worker::config::Config;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use support::load::{by_id, count, publish, wait_all};
use support::process::sigterm;
use support::tap::HttpTap;
use support::world::{read_topic, World, REDIRECT};

const BIN: &str = env!("CARGO_BIN_EXE_silentauth-worker");
const API_KEY: &str = "ApiKey-Zq7Wv3Kp9Lm2Xr5T";
const CLIENT_SECRET: &str = "ClientSecret-Hy4Nc8Bd6Fs1Jg0";
const WRONG_SECRET: &str = "WrongSecret-Pt5Ue2Ow9Ia3Sd7";
/// Passed to librdkafka through `kafka.properties` (no SASL mechanism is set, so it is unused).
const SASL_PASSWORD: &str = "SaslPassword-Rb6Vq1Mx8Kd4";

/// Numbers by what the simulator does with them (each phase adds its digit).
const VERIFIED: &str = "3819500000";
const NOT_VERIFIED: &str = "3819510000";
const MISMATCH_CODE: &str = "3819520000";
const MISMATCH_JOB: &str = "3819530000";
const UNAVAILABLE: &str = "3819540000";
const DENIED: &str = "3819550000";
const LIMITED: &str = "3819560000";
const MALFORMED: &str = "3819570000";
const RESET: &str = "3819580000";
const OTHER: &str = "3819590000";
/// The number the network sees for the not-verified devices.
const NETWORK: &str = "381959999999";

fn number(prefix: &str, phase: usize, i: usize) -> String {
    format!("{prefix}{phase}{i}")
}

/// Expected (status, class, dead-lettered) of each job.
type Expect = BTreeMap<String, (&'static str, &'static str, bool)>;

/// Everything a phase sent, to scan for afterwards.
#[derive(Default)]
struct Sent {
    codes: BTreeSet<String>,
    numbers: BTreeSet<String>,
    payloads: BTreeSet<Vec<u8>>,
    expect: Expect,
}

impl Sent {
    fn job(&mut self, w: &World, id: &str, hint: &str) -> Value {
        let j = w.job(id, hint);
        self.codes.insert(j["code"].as_str().unwrap().to_owned());
        self.numbers.insert(hint.to_owned());
        j
    }
}

/// The whole mix for one phase; `phase` keeps ids and numbers distinct between phases.
fn mix(w: &World, phase: usize, sent: &mut Sent) -> Vec<Value> {
    let mut jobs = Vec::new();
    let mut add = |sent: &mut Sent, j: Value, status, class, dead| {
        let id = j["job_id"].as_str().unwrap().to_owned();
        sent.expect.insert(id, (status, class, dead));
        jobs.push(j);
    };
    for i in 0..4 {
        let j = sent.job(w, &format!("p{phase}-ok-{i}"), &number(VERIFIED, phase, i));
        add(sent, j, "verified", "none", false);
    }
    let j = sent.job(w, &format!("p{phase}-nv"), &number(NOT_VERIFIED, phase, 0));
    add(sent, j, "not_verified", "none", false);
    let mut j = sent.job(w, &format!("p{phase}-mm"), &number(MISMATCH_CODE, phase, 0));
    j["login_hint"] = json!(number(MISMATCH_JOB, phase, 0));
    sent.numbers.insert(number(MISMATCH_JOB, phase, 0));
    add(sent, j, "not_verified", "login_hint_mismatch", false);
    for (prefix, class, dead) in [
        (UNAVAILABLE, "upstream_unavailable", true),
        (DENIED, "permission_denied", true),
        (LIMITED, "rate_limited", true),
        (MALFORMED, "protocol_error", true),
        (RESET, "code_rejected", false),
    ] {
        let j = sent.job(w, &format!("p{phase}-{class}"), &number(prefix, phase, 0));
        add(sent, j, "failed", class, dead);
    }
    let other = number(OTHER, phase, 0);
    let mut j = sent.job(w, &format!("p{phase}-creds"), &other);
    j["client"] = json!("wrong");
    add(sent, j, "failed", "credentials_rejected", true);
    let mut j = sent.job(w, &format!("p{phase}-unknown-client"), &other);
    j["client"] = json!("nobody");
    add(sent, j, "failed", "invalid_job", true);
    let mut j = sent.job(w, &format!("p{phase}-never-issued"), &other);
    let fake = format!("NeverIssuedCode{phase}Xw8Rt5Yu2Io");
    j["code"] = json!(fake);
    sent.codes.insert(fake);
    add(sent, j, "failed", "code_rejected", false);
    let mut j = sent.job(w, &format!("p{phase}-expired"), &other);
    j["issued_at"] = json!("2020-01-01T00:00:00Z");
    add(sent, j, "failed", "expired", false);
    let j =
        json!({"job_id": format!("p{phase}-authz"), "login_hint": other, "error": "missing_scope"});
    add(sent, j, "failed", "authorize_rejected", false);
    for j in &jobs {
        sent.payloads.insert(j.to_string().into_bytes());
    }
    jobs
}

fn scenario() -> Scenario {
    let hints = |prefix: &str| -> Vec<String> { (1..=2).map(|p| number(prefix, p, 0)).collect() };
    let rule = |e: SimEndpoint, prefix: &str| FaultRule {
        endpoint: Some(e),
        login_hints: Some(hints(prefix)),
        ..FaultRule::default()
    };
    let mut devices = BTreeMap::new();
    for h in hints(NOT_VERIFIED) {
        devices.insert(h, NETWORK.to_owned());
    }
    Scenario {
        clients: vec![SimClient {
            client_id: "client".into(),
            client_secret: CLIENT_SECRET.into(),
            redirect_uris: None,
        }],
        api_keys: vec![API_KEY.into()],
        devices,
        faults: vec![
            FaultRule {
                status: Some(500),
                ..rule(SimEndpoint::Token, UNAVAILABLE)
            },
            FaultRule {
                status: Some(403),
                ..rule(SimEndpoint::Token, DENIED)
            },
            FaultRule {
                status: Some(429),
                retry_after: Some(RetryAfter::Seconds(1)),
                ..rule(SimEndpoint::Token, LIMITED)
            },
            FaultRule {
                kind: Some(FaultKind::Malformed),
                ..rule(SimEndpoint::Userinfo, MALFORMED)
            },
            FaultRule {
                kind: Some(FaultKind::Drop),
                after_processing: true,
                first: Some(1),
                per_code: true,
                ..rule(SimEndpoint::Token, RESET)
            },
        ],
        ..Scenario::default()
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn spawn(config: &Path, format: &str, stderr: &Path, otlp: &str) -> Child {
    Command::new(BIN)
        .args(["--log-format", format, "run", "--config"])
        .arg(config)
        .env("RUST_LOG", "debug")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", otlp)
        .env("SILENTAUTH__CLIENTS__DEFAULT__CLIENT_SECRET", CLIENT_SECRET)
        .env("SILENTAUTH__CLIENTS__DEFAULT__API_KEY", API_KEY)
        .env("SILENTAUTH__CLIENTS__WRONG__CLIENT_SECRET", WRONG_SECRET)
        .env("SILENTAUTH__CLIENTS__WRONG__API_KEY", API_KEY)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(stderr).unwrap())
        .spawn()
        .expect("start the worker")
}

/// Every forbidden string found in `text`, by kind.
fn leaks(text: &str, forbidden: &[(&str, &BTreeSet<String>)]) -> Vec<String> {
    let mut out = Vec::new();
    for (kind, set) in forbidden {
        for s in set.iter() {
            if text.contains(s.as_str()) {
                out.push(format!("{kind} {s}"));
            }
        }
    }
    out
}

fn record_text(m: &OwnedMessage) -> (String, String, String) {
    let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
    let value = String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
    let mut headers = String::new();
    if let Some(h) = m.headers() {
        for h in h.iter() {
            headers.push_str(h.key);
            headers.push('=');
            headers.push_str(&String::from_utf8_lossy(h.value.unwrap_or_default()));
            headers.push('\n');
        }
    }
    (key, value, headers)
}

async fn secrets_scan(phases: usize) {
    let w = World::new(scenario(), 2).await;
    let tap = HttpTap::start(w.sim.addr()).await;
    let receiver = support::otlp::Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let admin_port = free_port();
    let mut config: Config = w.config();
    config.api.base_url = tap.base_url();
    config.retry.max_attempts = 2;
    config.admin.listen = format!("127.0.0.1:{admin_port}");
    config
        .kafka
        .properties
        .insert("sasl.password".into(), SASL_PASSWORD.into());
    let path = dir.path().join("worker.toml");
    // Secrets serialize as "***"; the real ones come from the environment.
    std::fs::write(&path, toml::to_string(&config).unwrap()).unwrap();

    let mut sent = Sent::default();
    let mut logs = Vec::new();
    let mut metrics = Vec::new();
    let mut duplicates_sent = 0;
    let mut all_ids = BTreeSet::new();
    for phase in 1..=phases {
        let format = if phase % 2 == 1 { "json" } else { "text" };
        let stderr = dir.path().join(format!("stderr-{phase}.log"));
        let child = spawn(&path, format, &stderr, &receiver.endpoint());
        let jobs = mix(&w, phase, &mut sent);
        let ids: BTreeSet<String> = jobs
            .iter()
            .map(|j| j["job_id"].as_str().unwrap().to_owned())
            .collect();
        publish(&w, &jobs).await;
        // Poison that still carries a number and a code: dead-lettered, no result.
        let hint = number(OTHER, phase, 1);
        let code = w.sim.mint_code("client", &hint, REDIRECT);
        let poison =
            json!({"job_id": 17, "login_hint": hint, "code": code, "redirect_uri": REDIRECT});
        sent.codes.insert(code);
        sent.numbers.insert(hint);
        sent.payloads.insert(poison.to_string().into_bytes());
        w.send(Some("poison"), poison.to_string().as_bytes(), &[])
            .await;
        all_ids.extend(ids.iter().cloned());
        wait_all(&w, &all_ids, Duration::from_secs(60)).await;
        // Redeliveries: answered from the cache as duplicates.
        let before = count(&w.broker, &w.results).await;
        publish(&w, &jobs[..3]).await;
        duplicates_sent += 3;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while count(&w.broker, &w.results).await < before + 3 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "duplicates answered"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let base = format!("http://127.0.0.1:{admin_port}");
        for p in ["/metrics", "/status.json"] {
            let text = reqwest::get(format!("{base}{p}"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            metrics.push(text);
        }
        sigterm(child);
        logs.push((phase, format, std::fs::read_to_string(&stderr).unwrap()));
    }

    // The workload did what it should: every outcome, dead letters, duplicates.
    let records = read_topic(&w.broker, &w.results).await;
    let results = by_id(&records);
    let mut duplicates = 0;
    for (id, (status, class, _)) in &sent.expect {
        let rs = &results[id];
        let first = &rs[0];
        assert_eq!(first["status"], *status, "{id}: {first}");
        assert_eq!(
            first["error"]["class"].as_str().unwrap_or("none"),
            *class,
            "{id}: {first}"
        );
        duplicates += rs.iter().filter(|r| r["duplicate"] == true).count();
    }
    assert_eq!(
        duplicates, duplicates_sent,
        "duplicates answered from the cache"
    );
    let dead = read_topic(&w.broker, &w.dlq).await;
    let dead_expected = sent.expect.values().filter(|e| e.2).count() + phases;
    assert_eq!(
        dead.len(),
        dead_expected,
        "dead letters (and one poison a phase)"
    );

    // What to look for.
    let secrets: BTreeSet<String> = [API_KEY, CLIENT_SECRET, WRONG_SECRET, SASL_PASSWORD]
        .map(String::from)
        .into();
    let tokens: BTreeSet<String> = tap.tokens_issued().into_iter().collect();
    let sim = w.sim.stats();
    // One token answer was dropped per reset job: issued but never delivered. Each phase gets
    // tokens for 4 verified, not verified, mismatch and malformed userinfo.
    let delivered = sim.tokens_issued - phases as u64;
    assert_eq!(
        tokens.len() as u64,
        3 * delivered,
        "every issued token seen"
    );
    assert_eq!(delivered, 7 * phases as u64);
    let presented: BTreeSet<String> = tap.codes_presented().into_keys().collect();
    assert!(
        presented.is_subset(&sent.codes),
        "codes presented were sent"
    );
    let mut numbers = sent.numbers.clone();
    numbers.insert(NETWORK.into());
    let everything: Vec<(&str, &BTreeSet<String>)> = vec![
        ("secret", &secrets),
        ("code", &sent.codes),
        ("token", &tokens),
        ("number", &numbers),
    ];
    let no_codes_or_numbers: Vec<(&str, &BTreeSet<String>)> =
        vec![("secret", &secrets), ("token", &tokens)];

    let mut found = Vec::new();
    for (phase, format, text) in &logs {
        // The per-job debug lines are there, with the number masked to its last digits.
        assert!(
            text.contains(&format!("p{phase}-ok-0")) && text.contains("*********"),
            "{format} log has the per-job lines: {text}"
        );
        if *format == "json" {
            assert!(text
                .lines()
                .all(|l| serde_json::from_str::<Value>(l).is_ok()));
        }
        found.extend(
            leaks(text, &everything)
                .into_iter()
                .map(|l| format!("{format} log: {l}")),
        );
    }
    // Every job's trace, its attempts and events, exported (flushed at each stop).
    let spans = receiver.spans();
    assert!(
        spans.iter().any(|s| s.name == "token"),
        "spans were exported"
    );
    found.extend(
        leaks(&format!("{spans:?}"), &everything)
            .into_iter()
            .map(|l| format!("span: {l}")),
    );
    for text in &metrics {
        assert!(text.contains("silentauth_results_total") || text.contains("\"results\""));
        found.extend(
            leaks(text, &everything)
                .into_iter()
                .map(|l| format!("admin: {l}")),
        );
    }
    for m in &records {
        let (key, value, headers) = record_text(m);
        let mut r: Value = serde_json::from_str(&value).unwrap();
        // The contract's one place for the number.
        r["login_hint"] = Value::Null;
        let rest = format!("{key}\n{r}\n{headers}");
        found.extend(
            leaks(&rest, &everything)
                .into_iter()
                .map(|l| format!("result {key}: {l}")),
        );
    }
    for m in &dead {
        let (key, value, headers) = record_text(m);
        assert!(
            sent.payloads.contains(m.payload().unwrap()),
            "dead letter {key}: the value is the original job"
        );
        found.extend(
            leaks(&format!("{key}\n{headers}"), &everything)
                .into_iter()
                .chain(leaks(&value, &no_codes_or_numbers))
                .map(|l| format!("dead letter {key}: {l}")),
        );
    }
    let log_lines: usize = logs.iter().map(|(_, _, t)| t.lines().count()).sum();
    eprintln!(
        "secrets: {} jobs sent ({phases} phases, json and text logs at debug), {} results, \
         {} dead letters, {duplicates} duplicates; scanned {log_lines} log lines, {} admin \
         pages, {} spans, {} records for {} secrets, {} codes, {} tokens, {} numbers: {} found",
        sent.expect.len() + phases + duplicates_sent,
        records.len(),
        dead.len(),
        metrics.len(),
        spans.len(),
        records.len() + dead.len(),
        secrets.len(),
        sent.codes.len(),
        tokens.len(),
        numbers.len(),
        found.len()
    );
    assert!(found.is_empty(), "leaked:\n{}", found.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_secret_reaches_logs_records_or_metrics() {
    secrets_scan(2).await;
}
