//! The admin listener: health and readiness, `/metrics` adding up after a mixed run, and the
//! status page with its JSON.

mod support;

use serde_json::{json, Value};
use silentauth_simulator::Scenario;
use silentauth_worker::config::Config;
use silentauth_worker::telemetry::counters::WorkerCounters;
use silentauth_worker::worker::Worker;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use support::world::{admin_addr, World};
use tokio_util::sync::CancellationToken;

/// GETs `path`; `None` when nothing listens.
async fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let r = reqwest::Client::new()
        .get(format!("http://{addr}{path}"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?;
    let status = r.status().as_u16();
    Some((status, r.text().await.ok()?))
}

/// Sums the samples of `/metrics` by family name, keeping the labels apart:
/// name -> (labels -> value).
fn parse(text: &str) -> BTreeMap<String, BTreeMap<String, f64>> {
    let mut out: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (series, value) = line.rsplit_once(' ').expect("name value");
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => (n, l.trim_end_matches('}')),
            None => (series, ""),
        };
        let v = match value {
            "+Inf" => f64::INFINITY,
            v => v.parse().expect("a number"),
        };
        out.entry(name.to_owned())
            .or_default()
            .insert(labels.to_owned(), v);
    }
    out
}

fn total(m: &BTreeMap<String, BTreeMap<String, f64>>, name: &str) -> f64 {
    m.get(name).map_or(0.0, |s| s.values().sum())
}

fn value(m: &BTreeMap<String, BTreeMap<String, f64>>, name: &str, labels: &str) -> f64 {
    m.get(name)
        .and_then(|s| s.get(labels))
        .copied()
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_add_up_after_a_mixed_run_and_the_page_serves() {
    let w = World::new(Scenario::default(), 2).await;
    let mut config = w.config();
    // Statistics (the consumer lag) every second rather than every 15 s, so the lag shows soon.
    config
        .kafka
        .properties
        .insert("statistics.interval.ms".into(), "1000".into());
    let worker = Worker::new(config);
    let stats = worker.counters();
    let cancel = CancellationToken::new();
    let c = cancel.clone();
    let handle = tokio::spawn(async move { worker.run(c).await.expect("worker run") });
    let addr = admin_addr(&stats, Duration::from_secs(10)).await;
    assert_eq!(get(addr, "/healthz").await.unwrap().0, 200);

    // 10 verified, 4 failing classes (2 dead-lettered), 1 unreadable poison (dead-lettered),
    // and 1 redelivery answered from the idempotency cache: 16 records.
    let ok: Vec<Value> = (0..10)
        .map(|i| w.job(&format!("ok-{i}"), &format!("3817000000{i:02}")))
        .collect();
    for j in &ok {
        w.send_job(j).await;
    }
    let mut creds = w.job("creds", "381700000100");
    creds["client"] = json!("wrong");
    w.send_job(&creds).await;
    let mut noclient = w.job("noclient", "381700000101");
    noclient["client"] = json!("nobody");
    w.send_job(&noclient).await;
    w.send_job(&json!({"job_id": "authz", "login_hint": "381700000102", "error": "access_denied"}))
        .await;
    let mut rejected = w.job("rejected", "381700000103");
    rejected["code"] = json!("never-issued-code");
    w.send_job(&rejected).await;
    w.send(Some("poison"), b"hello", &[]).await;
    assert_eq!(w.results(14).await.len(), 14);
    w.send_job(&ok[0]).await;
    assert_eq!(w.results(15).await.len(), 15);

    // Results are counted once acknowledged: poll until everything is in.
    let mut m = BTreeMap::new();
    for _ in 0..100 {
        let (code, text) = get(addr, "/metrics").await.expect("metrics");
        assert_eq!(code, 200);
        m = parse(&text);
        if total(&m, "silentauth_results_total") == 15.0
            && total(&m, "silentauth_dead_letters_total") == 3.0
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(total(&m, "silentauth_jobs_consumed_total"), 16.0, "{m:?}");
    // Every record is a result, except the poison message without a readable job_id.
    assert_eq!(total(&m, "silentauth_results_total") + 1.0, 16.0, "{m:?}");
    assert_eq!(
        value(
            &m,
            "silentauth_results_total",
            "status=\"verified\",class=\"none\""
        ),
        11.0
    );
    for class in [
        "credentials_rejected",
        "authorize_rejected",
        "code_rejected",
    ] {
        let labels = format!("status=\"failed\",class=\"{class}\"");
        assert_eq!(
            value(&m, "silentauth_results_total", &labels),
            1.0,
            "{class}"
        );
    }
    assert_eq!(total(&m, "silentauth_dead_letters_total"), 3.0);
    assert_eq!(
        value(&m, "silentauth_dead_letters_total", "class=\"invalid_job\""),
        2.0
    );
    assert_eq!(total(&m, "silentauth_idempotency_hits_total"), 1.0);
    // HTTP requests as the simulator saw them.
    let sim = w.sim.stats();
    let sent = sim.endpoints.get("token").map_or(0, |e| e.total)
        + sim.endpoints.get("userinfo").map_or(0, |e| e.total);
    assert_eq!(total(&m, "silentauth_http_requests_total"), sent as f64);
    assert_eq!(
        value(
            &m,
            "silentauth_http_requests_total",
            "endpoint=\"token\",status=\"401\""
        ) + value(
            &m,
            "silentauth_http_requests_total",
            "endpoint=\"token\",status=\"400\""
        ),
        2.0,
        "the wrong secret and the unknown code: {m:?}"
    );
    assert_eq!(
        total(&m, "silentauth_http_request_duration_seconds_count"),
        sent as f64
    );
    assert_eq!(total(&m, "silentauth_jobs_in_flight"), 0.0);
    // Every verified job spent its code; every result is acknowledged: none is at risk.
    assert!(m.contains_key("silentauth_codes_at_risk"), "{m:?}");
    assert_eq!(total(&m, "silentauth_codes_at_risk"), 0.0);
    // At least the 11 verified results are remembered, each counting more than 100 bytes of
    // JSON beside the fixed overhead.
    let per_result = silentauth_worker::idempotency::ENTRY_OVERHEAD_BYTES + 100;
    assert!(
        total(&m, "silentauth_idempotency_cache_bytes") >= (11 * per_result) as f64,
        "{m:?}"
    );
    assert_eq!(total(&m, "silentauth_ready"), 1.0);
    assert_eq!(get(addr, "/readyz").await.unwrap().0, 200);

    // The status page: self-contained, and its JSON agrees with the counters.
    let (code, page) = get(addr, "/").await.unwrap();
    assert_eq!(code, 200);
    assert!(
        page.contains("<svg") && page.contains("status.json"),
        "{page}"
    );
    for external in ["src=\"http", "href=\"http", "<link", "@import"] {
        assert!(!page.contains(external), "external asset: {external}");
    }
    let (code, body) = get(addr, "/status.json").await.unwrap();
    assert_eq!(code, 200);
    let s: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(s["counters"]["consumed"], 16);
    assert_eq!(s["counters"]["dead_letters"], 3);
    assert_eq!(s["ready"], true);
    assert!(s["series"].is_array());
    let outcomes: u64 = s["outcomes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["count"].as_u64().unwrap())
        .sum();
    assert_eq!(outcomes, 15);
    // A second of samples later the series has a point.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let s: Value = serde_json::from_str(&get(addr, "/status.json").await.unwrap().1).unwrap();
    assert!(!s["series"].as_array().unwrap().is_empty(), "{s}");
    // librdkafka's statistics give each assigned partition's lag: 0 once caught up.
    let mut lag = BTreeMap::new();
    for _ in 0..120 {
        let text = get(addr, "/metrics").await.unwrap().1;
        lag = parse(&text)
            .remove("silentauth_consumer_lag")
            .unwrap_or_default();
        if lag.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(lag.len(), 2, "{lag:?}");
    assert!(lag.values().all(|&v| v == 0.0), "{lag:?}");
    // Nothing secret on the page or in the metrics.
    let metrics = get(addr, "/metrics").await.unwrap().1;
    for secret in ["12345", "not-the-secret", "sim-api-key", "381700000"] {
        assert!(
            !metrics.contains(secret) && !body.contains(secret),
            "{secret}"
        );
    }

    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(30), handle)
        .await
        .expect("shutdown")
        .unwrap();
    // The listener stops with the worker.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(get(addr, "/healthz").await.is_none(), "admin still up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_ready_while_kafka_is_unreachable_and_gone_when_run_fails() {
    let mut config = Config::default();
    config.kafka.brokers = "127.0.0.1:1".into();
    config.kafka.connect_timeout = Duration::from_secs(3);
    config.admin.listen = "127.0.0.1:0".into();
    let worker = Worker::new(config);
    let stats: Arc<WorkerCounters> = worker.counters();
    let handle = tokio::spawn(worker.run(CancellationToken::new()));
    let addr = admin_addr(&stats, Duration::from_secs(10)).await;
    assert_eq!(get(addr, "/healthz").await.unwrap().0, 200);
    let (code, body) = get(addr, "/readyz").await.unwrap();
    assert_eq!(code, 503, "{body}");
    let metrics = get(addr, "/metrics").await.unwrap().1;
    assert!(metrics.contains("silentauth_ready 0"), "{metrics}");
    let r = tokio::time::timeout(Duration::from_secs(30), handle)
        .await
        .expect("gives up")
        .unwrap();
    assert!(r.is_err());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(get(addr, "/healthz").await.is_none(), "admin still up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_admin_port_is_a_warning_not_a_failure() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut config = Config::default();
    config.kafka.brokers = "127.0.0.1:1".into();
    config.kafka.connect_timeout = Duration::from_secs(1);
    config.admin.listen = taken.local_addr().unwrap().to_string();
    let worker = Worker::new(config);
    let stats = worker.counters();
    let r = worker.run(CancellationToken::new()).await;
    // It went on to the broker probe (which fails here) instead of stopping at the bind.
    assert!(
        r.unwrap_err().to_string().contains("cannot reach Kafka"),
        "bind failure was fatal"
    );
    assert!(stats.admin_addr().is_none());
}
