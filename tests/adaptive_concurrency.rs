//! Adaptive concurrency end to end (`worker.concurrency`): an upstream that starts refusing
//! (429 above its rate) makes the worker cut its concurrency limit instead of piling on, and
//! every job still gets its result while the limit moves; a fixed limit stays at
//! `max_in_flight`. The limit is read from `/metrics` (`silentauth_concurrency_limit`).

mod support;

use silentauth_simulator::{Scenario, SimEndpoint, SimRateLimit};
use silentauth_worker::config::{ConcurrencyMode, Config};
use silentauth_worker::silentauth::concurrency::INITIAL_LIMIT;
use silentauth_worker::worker::Worker;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use support::world::{admin_addr, metric, World};
use tokio_util::sync::CancellationToken;

const LIMIT: &str = "silentauth_concurrency_limit{client=\"default\"}";

/// Starts a worker on `config`; returns its admin address, its stop and its task.
async fn start(
    config: Config,
) -> (
    SocketAddr,
    CancellationToken,
    tokio::task::JoinHandle<Result<(), silentauth_worker::worker::WorkerError>>,
) {
    let worker = Worker::new(config);
    let stats = worker.counters();
    let cancel = CancellationToken::new();
    let handle = tokio::spawn(worker.run(cancel.clone()));
    let addr = admin_addr(&stats, Duration::from_secs(30)).await;
    (addr, cancel, handle)
}

fn storm() -> Scenario {
    Scenario {
        rate_limit: Some(SimRateLimit {
            requests_per_second: 100.0,
            burst: 10,
            endpoints: vec![SimEndpoint::Token, SimEndpoint::Userinfo],
        }),
        ..Scenario::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusing_upstream_cuts_the_limit_and_every_job_still_gets_its_result() {
    let w = World::new(storm(), 4).await;
    let mut config = w.config();
    config.worker.max_in_flight = 256;
    // Retries ride out the storm; a short Retry-After pause keeps the test quick.
    config.retry.max_attempts = 100;
    config.retry.max_elapsed = Duration::from_secs(120);
    config.retry.max_retry_after = Duration::from_millis(100);
    let (addr, cancel, handle) = start(config).await;
    assert_eq!(metric(addr, LIMIT).await, INITIAL_LIMIT as f64);

    let ids = w.send_jobs("adapt", "38173", 400).await;
    // The 429s cut the limit below where it started.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut lowest = f64::MAX;
    while lowest >= INITIAL_LIMIT as f64 {
        assert!(
            Instant::now() < deadline,
            "the limit never fell below {INITIAL_LIMIT} under 429s"
        );
        lowest = lowest.min(metric(addr, LIMIT).await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let throttled = w.sim.stats().count("token", 429) + w.sim.stats().count("userinfo", 429);
    assert!(throttled > 0, "the simulator refused nothing");

    // The storm ends: every job gets its result, verified, none lost.
    w.sim.set_scenario(Scenario::default());
    let by_id = w.wait_until_all(&ids, Duration::from_secs(120)).await;
    for (id, rs) in &by_id {
        assert!(rs.iter().any(|r| r["status"] == "verified"), "{id}: {rs:?}");
    }
    println!(
        "429 storm: {} jobs, {throttled} requests refused, limit {INITIAL_LIMIT} -> {lowest}, \
         {} after",
        ids.len(),
        metric(addr, LIMIT).await
    );
    cancel.cancel();
    handle.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fixed_limit_is_max_in_flight_whatever_the_upstream_says() {
    let w = World::new(storm(), 1).await;
    let mut config = w.config();
    config.worker.max_in_flight = 48;
    config.worker.concurrency = ConcurrencyMode::Fixed;
    config.retry.max_retry_after = Duration::from_millis(100);
    let (addr, cancel, handle) = start(config).await;
    assert_eq!(metric(addr, LIMIT).await, 48.0);
    let ids = w.send_jobs("fixed", "38174", 60).await;
    w.wait_until_all(&ids, Duration::from_secs(120)).await;
    assert!(w.sim.stats().count("token", 429) + w.sim.stats().count("userinfo", 429) > 0);
    assert_eq!(metric(addr, LIMIT).await, 48.0);
    cancel.cancel();
    handle.await.unwrap().unwrap();
}
