//! `bench --scenario adapt`: the adaptive concurrency limit followed per second while jobs
//! arrive at a steady rate and the simulator changes under the worker: a latency step from 0 to
//! 100 ms and back, then a 429 storm (the simulator answers 429 above 500 requests/s), then
//! recovery.

use super::batch::{sim_scenario, Batch, BatchSpec};
use super::render::{common_rows, header};
use std::fmt::Write as _;
use std::time::Duration;

/// The phases of `adapt`: (start, what the simulator does from then on).
pub const PHASES: [(u64, &str); 5] = [
    (0, "0 ms"),
    (8, "100 ms per request"),
    (16, "0 ms"),
    (24, "429 above 500 requests/s"),
    (30, "0 ms, no limit"),
];

/// Jobs offered over the run (3,000 a second for 40 s).
pub const JOBS: usize = 120_000;

/// `base` (the scenario's name, jobs and partitions) with the offered rate and the timeline.
pub(super) fn spec(base: BatchSpec) -> BatchSpec {
    let scenario = |latency_ms: u64, limit: Option<f64>| {
        let mut s = sim_scenario(Duration::from_millis(latency_ms));
        s.rate_limit = limit.map(|rps| silentauth_simulator::SimRateLimit {
            requests_per_second: rps,
            burst: 50,
            endpoints: vec![
                silentauth_simulator::SimEndpoint::Token,
                silentauth_simulator::SimEndpoint::Userinfo,
            ],
        });
        s
    };
    let secs = Duration::from_secs;
    BatchSpec {
        publish_rate: Some(3_000.0),
        stop_after: Some(secs(40)),
        timeline: vec![
            (secs(PHASES[1].0), scenario(100, None)),
            (secs(PHASES[2].0), scenario(0, None)),
            (secs(PHASES[3].0), scenario(0, Some(500.0))),
            (secs(PHASES[4].0), scenario(0, None)),
        ],
        ..base
    }
}

/// `adapt`: the per-second series of the worker's concurrency limit, its results and the
/// throttled answers (429/503) it got, beside the simulator's phase.
pub(super) fn render(b: &Batch) -> String {
    let mut out = header(
        b,
        "adaptive concurrency per second: 3,000 jobs/s offered; latency step, then a 429 storm",
    );
    common_rows(&mut out, b);
    let _ = writeln!(
        out,
        "  {:>4}  {:<26} {:>9} {:>8} {:>9} {:>10}",
        "s", "simulator", "results/s", "limit", "in flight", "throttled/s"
    );
    for (prev, p) in b.series.iter().zip(b.series.iter().skip(1)) {
        let phase = PHASES
            .iter()
            .rev()
            .find(|(at, _)| p.t >= *at as f64)
            .map_or("", |(_, what)| what);
        let dt = (p.t - prev.t).max(1e-3);
        let _ = writeln!(
            out,
            "  {:>4.0}  {:<26} {:>9.0} {:>8} {:>9} {:>10.0}",
            p.t,
            phase,
            p.metrics.results.saturating_sub(prev.metrics.results) as f64 / dt,
            p.metrics.concurrency_limit,
            p.metrics.in_flight,
            p.metrics.throttled.saturating_sub(prev.metrics.throttled) as f64 / dt,
        );
    }
    out
}
