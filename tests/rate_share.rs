//! A global rate limit across instances: three workers in one group with
//! `rate_limit.scope = "partition_share"` each scale their limiter to their share of the jobs
//! topic's partitions, so the simulator sees at most the configured rate (plus the burst) in
//! total, and, with a backlog, close to it.

mod support;

use silentauth_simulator::Scenario;
use silentauth_worker::config::RateLimitScope;
use silentauth_worker::telemetry::counters::WorkerCounters;
use silentauth_worker::worker::Worker;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use support::world::World;
use tokio_util::sync::CancellationToken;

const INSTANCES: usize = 3;
const PARTITIONS: i32 = 6;
const RATE: f64 = 40.0;
const BURST: u32 = 4;
/// 2 requests per job: 1,600 requests, 40 s at the rate, longer than the measured window.
const JOBS: usize = 800;
/// Seconds of the per-second series that are checked.
const WINDOW: u64 = 12;

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_share_keeps_the_combined_rate_within_the_limit() {
    let w = World::new(Scenario::default(), PARTITIONS).await;
    let mut config = w.config();
    config.rate_limit.scope = RateLimitScope::PartitionShare;
    let profile = config.clients.get_mut("default").unwrap();
    profile.requests_per_second = Some(RATE);
    profile.burst = BURST;
    for (k, v) in [
        ("session.timeout.ms", "6000"),
        ("heartbeat.interval.ms", "500"),
    ] {
        config.kafka.properties.insert(k.into(), v.into());
    }

    let cancel = CancellationToken::new();
    let mut stats: Vec<Arc<WorkerCounters>> = Vec::new();
    let mut handles = Vec::new();
    for _ in 0..INSTANCES {
        let worker = Worker::new(config.clone());
        stats.push(worker.counters());
        handles.push(tokio::spawn(worker.run(cancel.clone())));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while !stats.iter().all(|s| s.ready()) {
        assert!(
            Instant::now() < deadline,
            "not every instance got partitions"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Let the last rebalance's rescale land on every instance.
    tokio::time::sleep(Duration::from_secs(2)).await;

    for i in 0..JOBS {
        let id = format!("share-{i}");
        w.send_job(&w.job(&id, &format!("38175{i:07}"))).await;
    }
    // Skip the first (partial) second, then watch WINDOW full seconds.
    let first = unix_now() + 2;
    let last = first + WINDOW - 1;
    while unix_now() <= last {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let sim = w.sim.stats();
    cancel.cancel();
    for h in handles {
        h.await.unwrap().unwrap();
    }

    let series = &sim.api_per_second;
    let start = series.start_unix.expect("the simulator saw requests");
    let window: Vec<u64> = (first..=last)
        .map(|sec| {
            sec.checked_sub(start)
                .and_then(|i| series.counts.get(i as usize).copied())
                .unwrap_or(0)
        })
        .collect();
    let mean = window.iter().sum::<u64>() as f64 / window.len() as f64;
    let consumed: Vec<u64> = stats
        .iter()
        .map(|s| WorkerCounters::get(&s.consumed))
        .collect();
    eprintln!(
        "rate_share: {INSTANCES} instances, {PARTITIONS} partitions, rate {RATE}/s burst {BURST}: \
         per second {window:?}, mean {mean:.1}/s; jobs consumed per instance {consumed:?}"
    );
    assert!(
        consumed.iter().all(|&c| c > 0),
        "every instance worked: {consumed:?}"
    );
    let ceiling = RATE as u64 + u64::from(BURST);
    assert!(
        window.iter().all(|&n| n <= ceiling),
        "a second went over {ceiling}: {window:?}"
    );
    assert!(
        mean >= 0.9 * RATE,
        "mean {mean:.1}/s is below 90% of {RATE}: {window:?}"
    );
}
