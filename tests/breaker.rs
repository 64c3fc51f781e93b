//! The circuit breaker end to end, on the broker chosen by `tests/support` and the simulator:
//! each trigger opens it (`/readyz` 503, one ERROR line, the metrics), while open only one probe
//! job starts per `probe_interval`, a probe that succeeds resumes consumption, and no job is ever
//! skipped; rebalances and shutdown still work while it is open.

mod support;

use silentauth_simulator::{FaultRule, Scenario, SimEndpoint};
use silentauth_worker::config::{BreakerConfig, Config};
use silentauth_worker::telemetry::counters::WorkerCounters;
use silentauth_worker::worker::Worker;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use support::world::{admin_addr, admin_get, header, metric, read_topic, World};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const PROBE: Duration = Duration::from_millis(500);

/// Every log line of this test binary's workers (INFO and up), captured once for all tests.
fn logs() -> &'static Mutex<Vec<u8>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = buf.clone();
        let _ = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || Sink(sink.clone()))
            .try_init();
        buf
    })
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Sink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Captured lines at `level` that contain every one of `parts`.
fn log_lines(level: &str, parts: &[&str]) -> Vec<String> {
    let text = String::from_utf8_lossy(&logs().lock().unwrap()).into_owned();
    text.lines()
        .filter(|l| l.contains(&format!(" {level} ")) && parts.iter().all(|p| l.contains(p)))
        .map(str::to_owned)
        .collect()
}

/// The log lines of `level` holding every one of `parts`, once there is at least one (the state a
/// test waited for can be visible a moment before its log line is written).
async fn logged(level: &str, parts: &[&str]) -> Vec<String> {
    until(Duration::from_secs(10), "the log line", || async {
        let lines = log_lines(level, parts);
        (!lines.is_empty()).then_some(lines)
    })
    .await
}

/// Polls `check` every 20 ms until it yields a value; panics naming `what` after `timeout`.
async fn until<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

struct Running {
    stats: Arc<WorkerCounters>,
    addr: SocketAddr,
    cancel: CancellationToken,
    handle: JoinHandle<()>,
}

async fn start(config: Config) -> Running {
    let worker = Worker::new(config);
    let stats = worker.counters();
    let cancel = CancellationToken::new();
    let c = cancel.clone();
    let handle = tokio::spawn(async move { worker.run(c).await.expect("worker run") });
    let addr = admin_addr(&stats, Duration::from_secs(30)).await;
    Running {
        stats,
        addr,
        cancel,
        handle,
    }
}

impl Running {
    /// Waits until `/readyz` says the breaker is open; returns its body.
    async fn wait_open(&self) -> String {
        let addr = self.addr;
        until(
            Duration::from_secs(60),
            "the breaker opens",
            || async move {
                let (code, body) = admin_get(addr, "/readyz").await;
                (code == 503 && body.contains("circuit breaker open")).then_some(body)
            },
        )
        .await
    }

    /// Waits until at least `n` jobs were started.
    async fn wait_consumed(&self, n: u64) {
        let s = self.stats.clone();
        until(
            Duration::from_secs(60),
            &format!("{n} jobs started"),
            || {
                let ok = WorkerCounters::get(&s.consumed) >= n;
                async move { ok.then_some(()) }
            },
        )
        .await
    }

    async fn stop(self) {
        self.cancel.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.handle)
            .await
            .expect("shutdown within the grace")
            .unwrap();
    }
}

fn breaker(consecutive: u32, probe_interval: Duration) -> BreakerConfig {
    BreakerConfig {
        consecutive,
        dead_letter_ratio: 0.5,
        window: 10,
        probe_interval,
    }
}

/// A scenario whose gateway accepts another api key than the worker's: every token request is
/// a 401 (credentials_rejected, never retried).
fn rotated_api_key() -> Scenario {
    Scenario {
        api_keys: vec!["a-rotated-key".into()],
        ..Scenario::default()
    }
}

fn token_requests(w: &World) -> u64 {
    w.sim.stats().endpoints.get("token").map_or(0, |e| e.total)
}

fn only_result<'a>(
    by_id: &'a BTreeMap<String, Vec<serde_json::Value>>,
    id: &str,
) -> &'a serde_json::Value {
    let rs = &by_id[id];
    assert_eq!(rs.len(), 1, "{id}: {rs:?}");
    &rs[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consecutive_credential_rejections_open_it_and_a_good_probe_resumes() {
    logs();
    let w = World::new(rotated_api_key(), 1).await;
    let mut config = w.config();
    config.worker.max_in_flight = 1;
    config.worker.breaker = breaker(5, PROBE);
    let n = 20;
    let ids: Vec<String> = (0..n).map(|i| format!("cred-{i:02}")).collect();
    for (i, id) in ids.iter().enumerate() {
        w.send_job(&w.job(id, &format!("38190{i:07}"))).await;
    }
    let worker = start(config).await;

    let body = worker.wait_open().await;
    assert_eq!(
        body,
        "not ready: circuit breaker open: 5 consecutive credentials_rejected results\n"
    );
    // One job at a time: exactly the five rejected ones ran before it opened (a sixth request
    // can only be the first probe, half a second later).
    assert!(token_requests(&w) <= 6, "{}", token_requests(&w));
    assert_eq!(metric(worker.addr, "silentauth_breaker_open").await, 1.0);
    assert_eq!(
        metric(
            worker.addr,
            "silentauth_breaker_trips_total{reason=\"consecutive\"}"
        )
        .await,
        1.0
    );
    let status: serde_json::Value =
        serde_json::from_str(&admin_get(worker.addr, "/status.json").await.1).unwrap();
    assert_eq!(status["breaker"]["open"], true, "{status}");
    assert_eq!(
        status["breaker"]["reason"],
        "5 consecutive credentials_rejected results"
    );

    // While open, one probe per interval: three more token requests take at least two
    // intervals, and each is one more job (a rejected probe), never a burst of them.
    let t0 = Instant::now();
    let base = token_requests(&w);
    let consumed = WorkerCounters::get(&worker.stats.consumed);
    let sim = &w;
    until(Duration::from_secs(30), "three probes", || async move {
        (token_requests(sim) >= base + 3).then_some(())
    })
    .await;
    let elapsed = t0.elapsed();
    assert!(elapsed >= PROBE * 2, "3 probes in {elapsed:?}");
    let probes = token_requests(&w) - base;
    assert!(
        WorkerCounters::get(&worker.stats.consumed) - consumed <= probes,
        "jobs started beyond the probes"
    );
    assert_eq!(admin_get(worker.addr, "/readyz").await.0, 503);
    let opened = logged(
        "ERROR",
        &["circuit breaker open: 5 consecutive credentials_rejected results; probing one job every 500ms"],
    )
    .await;
    assert_eq!(opened.len(), 1, "{opened:?}");

    // The key is fixed: the next probe succeeds and consumption resumes.
    w.sim.set_scenario(Scenario::default());
    let wanted: BTreeSet<String> = ids.iter().cloned().collect();
    let by_id = w.wait_until_all(&wanted, Duration::from_secs(60)).await;
    let addr = worker.addr;
    until(Duration::from_secs(10), "ready again", || async move {
        (admin_get(addr, "/readyz").await.0 == 200).then_some(())
    })
    .await;
    assert_eq!(metric(worker.addr, "silentauth_breaker_open").await, 0.0);
    assert_eq!(
        metric(
            worker.addr,
            "silentauth_breaker_trips_total{reason=\"consecutive\"}"
        )
        .await,
        1.0
    );
    assert_eq!(
        metric(
            worker.addr,
            "silentauth_breaker_trips_total{reason=\"dead_letter_ratio\"}"
        )
        .await,
        0.0
    );
    let closed = logged("INFO", &["circuit breaker closed", "consecutive"]).await;
    assert_eq!(closed.len(), 1, "{closed:?}");
    worker.stop().await;

    // In offset order: the rejected jobs first (the five, then every failed probe), then only
    // verified ones. Nothing skipped, nothing twice.
    let rejected = ids
        .iter()
        .take_while(|id| only_result(&by_id, id)["status"] == "failed")
        .count();
    assert!(rejected >= 5 + 3, "{rejected} rejected");
    for (i, id) in ids.iter().enumerate() {
        let r = only_result(&by_id, id);
        if i < rejected {
            assert_eq!(r["error"]["class"], "credentials_rejected", "{r}");
        } else {
            assert_eq!(r["status"], "verified", "{r}");
        }
    }
    let dead: Vec<String> = read_topic(&w.broker, &w.dlq)
        .await
        .iter()
        .map(|m| {
            assert_eq!(header(m, "dlq.error.class"), Some("credentials_rejected"));
            String::from_utf8(rdkafka::Message::key(m).unwrap().to_vec()).unwrap()
        })
        .collect();
    assert_eq!(dead, ids[..rejected], "the rejected jobs are dead-lettered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_ratio_over_the_window_opens_it_until_the_upstream_heals() {
    logs();
    let outage = Scenario {
        faults: vec![FaultRule {
            endpoint: Some(SimEndpoint::Token),
            status: Some(500),
            ..FaultRule::default()
        }],
        ..Scenario::default()
    };
    let w = World::new(outage, 3).await;
    let mut config = w.config();
    config.worker.max_in_flight = 2;
    config.retry.max_attempts = 2;
    config.worker.breaker = breaker(5, PROBE);
    let ids = w.send_jobs("ratio", "38191", 30).await;
    let worker = start(config).await;

    let body = worker.wait_open().await;
    assert_eq!(
        body,
        "not ready: circuit breaker open: 10 of the last 10 jobs were dead-lettered \
         (more than dead_letter_ratio 0.5)\n"
    );
    assert_eq!(
        metric(
            worker.addr,
            "silentauth_breaker_trips_total{reason=\"dead_letter_ratio\"}"
        )
        .await,
        1.0
    );
    // At most the two jobs in flight at the trip ran on; then one probe per interval.
    let consumed = WorkerCounters::get(&worker.stats.consumed);
    assert!(consumed <= 12, "{consumed} jobs started");
    let t0 = Instant::now();
    worker.wait_consumed(consumed + 3).await;
    let elapsed = t0.elapsed();
    assert!(elapsed >= PROBE * 2, "3 probes in {elapsed:?}");
    let requests = token_requests(&w);
    assert_eq!(admin_get(worker.addr, "/readyz").await.0, 503);
    assert!(
        requests <= (WorkerCounters::get(&worker.stats.consumed) + 1) * 2,
        "{requests} token requests"
    );
    let opened = logged(
        "ERROR",
        &["circuit breaker open", "jobs were dead-lettered"],
    )
    .await;
    assert_eq!(opened.len(), 1, "{opened:?}");

    w.sim.set_scenario(Scenario::default());
    let by_id = w.wait_until_all(&ids, Duration::from_secs(60)).await;
    let addr = worker.addr;
    until(Duration::from_secs(10), "ready again", || async move {
        (admin_get(addr, "/readyz").await.0 == 200).then_some(())
    })
    .await;
    assert_eq!(metric(worker.addr, "silentauth_breaker_open").await, 0.0);
    let closed = logged("INFO", &["circuit breaker closed", "dead_letter_ratio"]).await;
    assert_eq!(closed.len(), 1, "{closed:?}");
    worker.stop().await;

    let mut failed = BTreeSet::new();
    for id in &ids {
        let r = only_result(&by_id, id);
        if r["status"] == "failed" {
            assert_eq!(r["error"]["class"], "upstream_unavailable", "{r}");
            failed.insert(id.clone());
        } else {
            assert_eq!(r["status"], "verified", "{r}");
        }
    }
    assert!(failed.len() >= 10 + 2, "{} failed", failed.len());
    assert!(failed.len() < ids.len(), "nothing verified after the heal");
    let dead: BTreeSet<String> = read_topic(&w.broker, &w.dlq)
        .await
        .iter()
        .map(|m| String::from_utf8(rdkafka::Message::key(m).unwrap().to_vec()).unwrap())
        .collect();
    assert_eq!(dead, failed, "exactly the failed jobs are dead-lettered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebalance_and_shutdown_work_while_open_and_skip_nothing() {
    logs();
    let w = World::new(rotated_api_key(), 2).await;
    let mut config = w.config();
    config.worker.max_in_flight = 1;
    // No probe during the test: whatever A read after opening must wait, and be redone.
    config.worker.breaker = breaker(3, Duration::from_secs(3600));
    for (k, v) in [
        ("session.timeout.ms", "6000"),
        ("heartbeat.interval.ms", "500"),
    ] {
        config.kafka.properties.insert(k.into(), v.into());
    }
    let ids = w.send_jobs("held", "38192", 24).await;
    let a = start(config.clone()).await;
    a.wait_open().await;
    assert_eq!(
        logged(
            "ERROR",
            &["3 consecutive credentials_rejected results; probing one job every 1h"]
        )
        .await
        .len(),
        1
    );
    w.sim.set_scenario(Scenario::default());

    // A second instance joins: A, paused but polling, gives up a partition, and B verifies
    // the jobs A was holding back on it.
    let mut b_config = config;
    b_config.worker.breaker = BreakerConfig::default();
    let b = start(b_config).await;
    b.wait_consumed(1).await;
    // Still assigned a partition (readiness checks that first), and still open.
    let (code, body) = admin_get(a.addr, "/readyz").await;
    assert_eq!(
        (code, body.as_str()),
        (
            503,
            "not ready: circuit breaker open: 3 consecutive credentials_rejected results\n"
        )
    );

    // Shutting A down does not wait for its probe interval.
    let t0 = Instant::now();
    a.stop().await;
    assert!(t0.elapsed() < Duration::from_secs(20), "{:?}", t0.elapsed());

    // B takes A's partition over from its committed offset: every job ends with a result.
    let by_id = w.wait_until_all(&ids, Duration::from_secs(90)).await;
    b.stop().await;
    let mut rejected = 0;
    for id in &ids {
        let rs = &by_id[id];
        if rs[0]["status"] == "failed" {
            assert_eq!(rs[0]["error"]["class"], "credentials_rejected", "{rs:?}");
            rejected += 1;
        } else {
            assert!(rs.iter().all(|r| r["status"] == "verified"), "{id}: {rs:?}");
        }
    }
    assert_eq!(rejected, 3, "only the jobs that opened the breaker failed");
}
