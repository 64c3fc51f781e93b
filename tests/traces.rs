//! Traces, end to end: the binary exports to an OTLP/HTTP receiver decoding with the official
//! protobuf definitions (`tests/support/otlp.rs`; docs/testing.md says why not a Collector). A
//! job's trace continues its `traceparent` and shows each HTTP attempt under retries, the
//! Retry-After pauses and the publish; a dead-lettered job's trace is linked from the
//! `replay-dlq` span its replayed job continues; the sampling ratio holds; a dead collector
//! costs nothing but dropped spans; no span carries a secret, a code or a whole number.

mod support;

use serde_json::Value;
use silentauth_simulator::{Scenario, SimClient};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::otlp::{Received, Receiver};
use support::world::{header, read_topic, World};

const BIN: &str = env!("CARGO_BIN_EXE_silentauth-worker");

const CLIENT_SECRET: &str = "Tr4ceS3cret-Vb9q";
const API_KEY: &str = "Tr4ceApiK3y-Hx2w";
/// The upstream service's span: the job's span must be its child.
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";
const RETRIED: &str = "381555000111";
const FAILING: &str = "381555000222";

fn scenario(faults: &str) -> Scenario {
    let mut s = Scenario::from_toml_str(faults).expect("scenario");
    s.clients = vec![SimClient {
        client_id: "client".into(),
        client_secret: CLIENT_SECRET.into(),
        redirect_uris: None,
    }];
    s.api_keys = vec![API_KEY.into()];
    s
}

/// A free port for a worker's admin listener.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn config_file(dir: &Path, w: &World, admin_port: u16) -> PathBuf {
    let body = format!(
        r#"
[kafka]
brokers = "{brokers}"
group_id = "{group}"
connect_timeout = "10s"
commit_interval = "200ms"
[topics]
jobs = "{jobs}"
results = "{results}"
dead_letter = "{dlq}"
ledger = "{ledger}"
[api]
base_url = "{base}"
timeout = "2s"
[clients.default]
client_id = "client"
client_secret = "{CLIENT_SECRET}"
api_key = "{API_KEY}"
[retry]
max_attempts = 3
initial_backoff = "10ms"
max_backoff = "50ms"
[worker]
shutdown_grace = "3s"
[admin]
listen = "127.0.0.1:{admin_port}"
"#,
        brokers = w.broker.bootstrap(),
        group = w.group,
        jobs = w.jobs,
        results = w.results,
        dlq = w.dlq,
        ledger = w.ledger,
        base = w.sim.base_url(),
    );
    let path = dir.join("worker.toml");
    std::fs::File::create(&path)
        .and_then(|mut f| f.write_all(body.as_bytes()))
        .unwrap();
    path
}

/// Starts `silentauth-worker <args>` with JSON logs into `dir/<name>.log` and `env`.
fn spawn(dir: &Path, name: &str, args: &[&str], env: &[(&str, String)]) -> Child {
    let mut cmd = Command::new(BIN);
    cmd.arg("--log-format").arg("json").args(args);
    for var in [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_TRACES_SAMPLER",
        "OTEL_TRACES_SAMPLER_ARG",
        "OTEL_SDK_DISABLED",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("RUST_LOG", "debug")
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join(format!("{name}.log"))).unwrap());
    cmd.spawn().expect("start the binary")
}

fn traced(r: &Receiver) -> Vec<(&'static str, String)> {
    vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", r.endpoint()),
        ("OTEL_SERVICE_NAME", "trace-test".into()),
    ]
}

/// The job's message with a fresh code; the code is returned too.
fn job(w: &World, id: &str, hint: &str) -> (Value, String) {
    let j = w.job(id, hint);
    let code = j["code"].as_str().unwrap().to_owned();
    (j, code)
}

fn children<'a>(spans: &'a [Received], parent: &Received) -> Vec<&'a Received> {
    spans
        .iter()
        .filter(|s| s.trace_id == parent.trace_id && s.parent_span_id == parent.span_id)
        .collect()
}

fn job_span<'a>(spans: &'a [Received], job_id: &str, replay_count: u32) -> Option<&'a Received> {
    spans.iter().find(|s| {
        s.attributes.get("silentauth.job_id").map(String::as_str) == Some(job_id)
            && s.attributes.get("silentauth.replay_count") == Some(&replay_count.to_string())
    })
}

fn attr<'a>(s: &'a Received, key: &str) -> &'a str {
    s.attributes
        .get(key)
        .map(String::as_str)
        .unwrap_or_else(|| panic!("{} has no {key}: {s:?}", s.name))
}

fn traceparent_of(s: &Received) -> String {
    format!("00-{}-{}-01", s.trace_id, s.span_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_trace_continues_its_traceparent_through_retries_dead_letter_and_replay() {
    let faults = format!(
        r#"
[[faults]]
endpoint = "token"
status = 503
retry_after = "1"
first = 2
login_hints = ["{RETRIED}"]
[[faults]]
endpoint = "token"
status = 500
login_hints = ["{FAILING}"]
"#
    );
    let w = World::new(scenario(&faults), 1).await;
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_file(dir.path(), &w, free_port());
    let cfg_arg = cfg.to_str().unwrap();
    let worker = spawn(
        dir.path(),
        "worker",
        &["run", "--config", cfg_arg],
        &traced(&receiver),
    );

    let (retried, code_a) = job(&w, "retried", RETRIED);
    let (failing, code_b) = job(&w, "failing", FAILING);
    let incoming = format!("00-{TRACE_ID}-{PARENT_ID}-01");
    let (id_a, id_b) = ("retried", "failing");
    w.send(
        Some(id_a),
        retried.to_string().as_bytes(),
        &[
            ("traceparent", incoming.as_bytes()),
            ("tracestate", b"upstream=1"),
        ],
    )
    .await;
    w.send(Some(id_b), failing.to_string().as_bytes(), &[])
        .await;
    let results = w.results(2).await;

    let spans = receiver
        .wait_for(Duration::from_secs(30), "both job spans", |s| {
            job_span(s, id_a, 0).is_some() && job_span(s, id_b, 0).is_some()
        })
        .await;
    // Children end before their parent, so they arrived with it or before.
    let a = job_span(&spans, id_a, 0).unwrap();
    assert_eq!(a.trace_id, TRACE_ID, "the job continues the record's trace");
    assert_eq!(a.parent_span_id, PARENT_ID, "a child of the record's span");
    assert_eq!(a.name, format!("process {}", w.jobs));
    assert_eq!(attr(a, "messaging.system"), "kafka");
    assert_eq!(attr(a, "messaging.destination.name"), w.jobs);
    assert_eq!(attr(a, "messaging.destination.partition.id"), "0");
    assert_eq!(attr(a, "messaging.consumer.group.name"), w.group);
    assert!(a.attributes.contains_key("messaging.kafka.offset"));
    assert_eq!(attr(a, "silentauth.status"), "verified");
    assert_eq!(a.status_code, 1, "ok");
    assert_eq!(a.resource.get("service.name").unwrap(), "trace-test");

    let kids = children(&spans, a);
    let tokens: Vec<_> = kids.iter().filter(|s| s.name == "token").collect();
    let attempts: Vec<(&str, &str)> = tokens
        .iter()
        .map(|s| {
            (
                attr(s, "silentauth.attempt"),
                attr(s, "http.response.status_code"),
            )
        })
        .collect();
    assert_eq!(
        attempts,
        [("1", "503"), ("2", "503"), ("3", "200")],
        "one span per token attempt: {kids:#?}"
    );
    for t in &tokens {
        assert_eq!(attr(t, "http.request.method"), "POST");
        assert_eq!(attr(t, "server.address"), "127.0.0.1");
    }
    assert_eq!(attr(tokens[0], "error.type"), "upstream_unavailable");
    assert_eq!(attr(tokens[2], "silentauth.code_spent"), "true");
    let userinfo: Vec<_> = kids.iter().filter(|s| s.name == "userinfo").collect();
    assert_eq!(userinfo.len(), 1, "{kids:#?}");
    assert_eq!(attr(userinfo[0], "http.request.method"), "GET");
    assert_eq!(attr(userinfo[0], "http.response.status_code"), "200");
    assert_eq!(kids.iter().filter(|s| s.name == "publish").count(), 1);
    let pauses: Vec<&str> = a
        .events
        .iter()
        .filter(|(name, _)| name == "retry_after")
        .map(|(_, at)| at["silentauth.retry_after_ms"].as_str())
        .collect();
    assert_eq!(pauses, ["1000", "1000"], "{:?}", a.events);

    let by_id: BTreeMap<String, _> = results
        .iter()
        .map(|(v, m)| (v["job_id"].as_str().unwrap().to_owned(), m))
        .collect();
    assert_eq!(
        header(by_id[id_a], "traceparent"),
        Some(traceparent_of(a).as_str()),
        "the result carries the job span's context"
    );

    // The failed job: a new trace, its span an error, its dead letter pointing at it.
    let b = job_span(&spans, id_b, 0).unwrap();
    assert!(b.parent_span_id.is_empty(), "no traceparent: a root span");
    assert_eq!(b.status_code, 2, "error");
    assert_eq!(attr(b, "silentauth.error_class"), "upstream_unavailable");
    let b_tokens = children(&spans, b)
        .into_iter()
        .filter(|s| s.name == "token")
        .count();
    assert_eq!(b_tokens, 3, "max_attempts = 3");
    let letters = read_topic(&w.broker, &w.dlq).await;
    assert_eq!(letters.len(), 1);
    assert_eq!(
        header(&letters[0], "traceparent"),
        Some(traceparent_of(b).as_str())
    );
    assert_eq!(
        header(by_id[id_b], "traceparent"),
        Some(traceparent_of(b).as_str())
    );

    // The JSON log lines written inside the job span name it.
    let logs = std::fs::read_to_string(dir.path().join("worker.log")).unwrap();
    let tagged = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .any(|l| l["trace_id"] == TRACE_ID && l["span_id"].as_str() == Some(a.span_id.as_str()));
    assert!(
        tagged,
        "no log line carries the job's trace_id/span_id:\n{logs}"
    );

    // Replay the dead letter once the upstream healed; the replayed job continues the replay.
    w.sim.set_scenario(scenario(""));
    let replay = spawn(
        dir.path(),
        "replay",
        &["replay-dlq", "--config", cfg_arg],
        &traced(&receiver),
    )
    .wait_with_output()
    .unwrap();
    assert!(replay.status.success(), "replay-dlq: {replay:?}");
    let results = w.results(3).await;
    let spans = receiver
        .wait_for(Duration::from_secs(30), "the replayed job's span", |s| {
            job_span(s, id_b, 1).is_some()
        })
        .await;
    let replayed = job_span(&spans, id_b, 1).unwrap();
    let replay_span = spans
        .iter()
        .find(|s| s.span_id == replayed.parent_span_id)
        .expect("the replayed job's parent was exported");
    assert_eq!(replay_span.name, "replay");
    assert_eq!(replay_span.trace_id, replayed.trace_id);
    assert_eq!(
        replay_span.links,
        [(b.trace_id.clone(), b.span_id.clone())],
        "the replay links the dead letter's trace"
    );
    assert_eq!(attr(replayed, "silentauth.status"), "verified");
    let last = results
        .iter()
        .find(|(v, _)| v["job_id"] == id_b && v["replay_count"] == 1)
        .expect("the replayed result");
    assert_eq!(
        header(&last.1, "traceparent"),
        Some(traceparent_of(replayed).as_str())
    );

    // Nothing secret in any exported span, event or resource.
    let dump = format!("{spans:?}");
    for secret in [CLIENT_SECRET, API_KEY, &code_a, &code_b, RETRIED, FAILING] {
        assert!(!dump.contains(secret), "a span carries {secret}");
    }
    support::process::sigterm(worker);
}

/// Runs `n` jobs through a worker started with `env`; the time from the first job sent to the
/// last result read, the worker's admin address and the worker (still running).
async fn run_jobs(
    w: &World,
    dir: &Path,
    n: usize,
    env: &[(&str, String)],
) -> (Duration, u16, Child) {
    let port = free_port();
    let cfg = config_file(dir, w, port);
    let worker = spawn(
        dir,
        "worker",
        &["run", "--config", cfg.to_str().unwrap()],
        env,
    );
    let started = Instant::now();
    let ids = w.send_jobs("load", "381555", n).await;
    w.wait_for_results(ids.len()).await;
    (started.elapsed(), port, worker)
}

async fn dropped_spans(port: u16) -> f64 {
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    support::world::metric(addr, "silentauth_trace_spans_total{fate=\"dropped\"}").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sampling_ratio_is_honoured() {
    let w = World::new(scenario(""), 2).await;
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = traced(&receiver);
    env.push(("OTEL_TRACES_SAMPLER", "traceidratio".into()));
    env.push(("OTEL_TRACES_SAMPLER_ARG", "0.25".into()));
    let n = 400;
    let (_, _, worker) = run_jobs(&w, dir.path(), n, &env).await;
    // The flush at shutdown sends what is still queued.
    support::process::sigterm(worker);
    let jobs: Vec<Received> = receiver
        .spans()
        .into_iter()
        .filter(|s| s.attributes.contains_key("silentauth.job_id"))
        .collect();
    // Binomial(400, 0.25): mean 100, standard deviation 8.7; 60..140 is beyond 4.5 of them.
    assert!(
        (60..=140).contains(&jobs.len()),
        "{} of {n} jobs sampled at 0.25",
        jobs.len()
    );
    // Every result says whether its job was sampled, and exactly the sampled ones arrived.
    let results = read_topic(&w.broker, &w.results).await;
    let sampled: Vec<String> = results
        .iter()
        .filter_map(|m| header(m, "traceparent"))
        .filter(|tp| tp.ends_with("-01"))
        .map(str::to_owned)
        .collect();
    assert_eq!(results.len(), n);
    let mut exported: Vec<String> = jobs.iter().map(traceparent_of).collect();
    let mut sampled = sampled;
    exported.sort();
    sampled.sort();
    assert_eq!(exported, sampled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_collector_costs_nothing_but_dropped_spans() {
    let n = 600;
    // Without traces.
    let w = World::new(scenario(""), 2).await;
    let dir = tempfile::tempdir().unwrap();
    let (off, _, worker) = run_jobs(&w, dir.path(), n, &[]).await;
    support::process::sigterm(worker);

    // A collector that accepts connections and never answers: every export waits out its
    // timeout while the small queue overflows.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", dead.local_addr().unwrap());
    let w = World::new(scenario(""), 2).await;
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "2000".into()),
        ("OTEL_BSP_MAX_QUEUE_SIZE", "64".into()),
        ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "32".into()),
    ];
    let (on, port, worker) = run_jobs(&w, dir.path(), n, &env).await;
    let dropped = dropped_spans(port).await;
    let stopping = Instant::now();
    support::process::sigterm(worker);
    let stop = stopping.elapsed();
    println!("{n} jobs: {off:?} without traces, {on:?} exporting to a dead collector; {dropped} spans dropped; stopped in {stop:?}");
    assert!(dropped > 0.0, "a full queue drops and counts");
    assert!(
        on <= off * 2 + Duration::from_secs(3),
        "a dead collector slowed the jobs: {on:?} against {off:?}"
    );
    // The flush at shutdown is bounded by worker.shutdown_grace (3 s).
    assert!(stop < Duration::from_secs(3 + 5), "stopped in {stop:?}");
}
