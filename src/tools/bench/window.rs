//! A batch's measured window: the CPU and memory it used (this process, the worker process,
//! the simulator), and the latencies of the results read in it.

use super::child::WorkerProcess;
use super::sim::SimProcess;
use super::usage;
use crate::tools::demo::collect::{Published, Received};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The resource counters read when the measured window opens.
pub(super) struct Window {
    started: Instant,
    usage: usage::Usage,
    sim_cpu: Option<f64>,
    worker_cpu: Option<f64>,
}

/// What the measured window used.
pub(super) struct WindowUsage {
    /// How long the window lasted.
    pub(super) elapsed: Duration,
    /// CPU of this process.
    pub(super) cpu: Duration,
    /// CPU of the worker process (`None` in process).
    pub(super) worker_cpu: Option<Duration>,
    /// CPU seconds of the simulator process.
    pub(super) sim_cpu: Option<f64>,
    /// `ru_maxrss` at the end.
    pub(super) max_rss_kib: u64,
    /// VmHWM of the worker process at the end (0 in process).
    pub(super) worker_hwm_kib: u64,
}

impl Window {
    /// Reads the CPU of this process, the simulator and the worker process, then starts the
    /// clock.
    pub(super) fn open(sim: &SimProcess, child: Option<&WorkerProcess>) -> Window {
        Window {
            usage: usage::self_usage(),
            sim_cpu: sim.cpu_seconds(),
            worker_cpu: child.and_then(WorkerProcess::cpu_seconds),
            started: Instant::now(),
        }
    }

    /// Stops the clock and reads what the window used.
    pub(super) fn close(self, sim: &SimProcess, child: Option<&WorkerProcess>) -> WindowUsage {
        let elapsed = self.started.elapsed();
        let usage = usage::self_usage();
        let sim_cpu = sim.cpu_seconds();
        let worker_cpu = child.and_then(WorkerProcess::cpu_seconds);
        WindowUsage {
            elapsed,
            cpu: usage.cpu.saturating_sub(self.usage.cpu),
            worker_cpu: self
                .worker_cpu
                .zip(worker_cpu)
                .map(|(a, b)| Duration::from_secs_f64((b - a).max(0.0))),
            sim_cpu: self.sim_cpu.zip(sim_cpu).map(|(a, b)| b - a),
            max_rss_kib: usage.max_rss_kib,
            worker_hwm_kib: child.and_then(|c| c.rss_kib()).map_or(0, |(_, hwm)| hwm),
        }
    }
}

/// The latencies of a batch's results, each result counted at its first arrival.
#[derive(Default)]
pub(super) struct Latencies {
    /// First and last result read.
    pub(super) span: Option<(Instant, Instant)>,
    /// The results' `duration_ms`.
    pub(super) duration: Vec<f64>,
    /// From handing the job to the producer to reading its result.
    pub(super) end_to_end: Vec<f64>,
    /// `end_to_end` minus the job's HTTP time.
    pub(super) overhead: Vec<f64>,
    /// `duration_ms` minus the job's HTTP time.
    pub(super) worker_overhead: Vec<f64>,
}

impl Latencies {
    /// The latencies of `received`: end to end from when each job was `published`, and less
    /// each job's HTTP time where `http_times` has it.
    pub(super) fn of(
        received: &Received,
        published: Option<&Published>,
        http_times: &HashMap<String, Duration>,
    ) -> Latencies {
        let sent_at = published.map(|p| &p.sent_at);
        let mut l = Latencies::default();
        for (job_id, seen) in &received.results {
            let Some(first) = seen.first() else { continue };
            l.span = Some(match l.span {
                None => (first.at, first.at),
                Some((a, b)) => (a.min(first.at), b.max(first.at)),
            });
            let d_ms = first.result.duration_ms as f64;
            l.duration.push(d_ms);
            let http_ms = http_times.get(job_id).map(|d| d.as_secs_f64() * 1e3);
            if let Some(http_ms) = http_ms {
                l.worker_overhead.push(d_ms - http_ms);
            }
            if let Some(sent) = sent_at.and_then(|s| s.get(job_id)) {
                let ms = first.at.saturating_duration_since(*sent).as_secs_f64() * 1e3;
                l.end_to_end.push(ms);
                if let Some(http_ms) = http_ms {
                    l.overhead.push(ms - http_ms);
                }
            }
        }
        l
    }
}
