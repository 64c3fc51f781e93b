//! Backpressure: jobs that hold their in-flight slots far longer than the pause threshold, for
//! a run several times longer than `max.poll.interval.ms`. The full window must pause the
//! partitions and keep polling, so the member is never thrown out of the group (no revoke).

mod support;

use silentauth_simulator::Scenario;
use silentauth_worker::config::ConcurrencyMode;
use silentauth_worker::telemetry::counters::WorkerCounters;
use silentauth_worker::worker::Worker;
use std::time::{Duration, Instant};
use support::world::World;
use tokio_util::sync::CancellationToken;

/// `max.poll.interval.ms` of the test: the smallest librdkafka accepts beside a 6 s session
/// (Apache Kafka's smallest `session.timeout.ms`). The worker pauses a window that stayed full
/// for a quarter of it, at most 1 s (`src/worker/intake.rs`, `pause_after`): 1 s here.
const MAX_POLL: Duration = Duration::from_secs(6);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_full_past_the_pause_threshold_pauses_and_is_never_revoked() {
    // Each request takes 3.5 s, a job (token, then userinfo) 7 s: a slot is held seven times
    // the 1 s pause threshold and longer than MAX_POLL, so a worker that stopped polling while
    // its window is full would be revoked; 8 jobs two at a time take 28 s or more, over four
    // times MAX_POLL.
    let mut scenario = Scenario::default();
    scenario.latency.fixed = Duration::from_millis(3500);
    let w = World::new(scenario, 2).await;
    let mut config = w.config();
    config.worker.max_in_flight = 2;
    // Both slots in use all along: the adaptive limit would go down to one as the round trip
    // grows, and the jobs behind would wait past their codes' lifetime.
    config.worker.concurrency = ConcurrencyMode::Fixed;
    config.api.timeout = Duration::from_secs(10);
    for (k, v) in [
        ("session.timeout.ms", "6000"),
        ("heartbeat.interval.ms", "500"),
        ("max.poll.interval.ms", &MAX_POLL.as_millis().to_string()),
    ] {
        config.kafka.properties.insert(k.into(), v.to_owned());
    }
    let worker = Worker::new(config);
    let stats = worker.counters();
    let cancel = CancellationToken::new();
    let handle = tokio::spawn(worker.run(cancel.clone()));
    let started = Instant::now();
    let ids = w.send_jobs("slow", "38173", 8).await;
    let by_id = w.wait_until_all(&ids, Duration::from_secs(120)).await;
    let took = started.elapsed();
    // Read before the shutdown, whose own revoke is expected.
    let pauses = WorkerCounters::get(&stats.pauses);
    let revokes = WorkerCounters::get(&stats.revokes);
    eprintln!(
        "backpressure on {:?}: 8 jobs in {:.1} s ({:.1} x max.poll.interval.ms), {pauses} pauses, \
         {revokes} revokes",
        w.broker.kind(),
        took.as_secs_f64(),
        took.as_secs_f64() / MAX_POLL.as_secs_f64()
    );
    assert!(
        took >= 3 * MAX_POLL,
        "the run ({took:?}) must outlast max.poll.interval.ms several times"
    );
    assert_eq!(
        revokes, 0,
        "the member was revoked: polling stopped for too long"
    );
    assert!(
        pauses > 0,
        "the window stayed full past the threshold: it must pause"
    );
    for (id, rs) in &by_id {
        assert!(
            rs.len() == 1 && rs[0]["status"] == "verified",
            "{id}: {rs:?}"
        );
    }
    assert_eq!(WorkerCounters::get(&stats.duplicates), 0);
    assert_eq!(w.sim.stats().total("token"), 8, "no code exchanged twice");
    cancel.cancel();
    handle.await.unwrap().unwrap();
}
