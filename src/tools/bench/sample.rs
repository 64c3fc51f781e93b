//! What a batch measures while it runs: the distribution of latencies, and the peaks of the
//! worker's memory and in-flight jobs sampled every few milliseconds.

use super::child::{Counters, MetricsSample, WorkerProcess};
use super::usage;
use crate::tools::demo::collect::WorkerGauges;
use silentauth_worker::telemetry::counters::WorkerCounters;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Sorted samples in milliseconds.
#[derive(Debug, Clone, Default)]
pub struct Dist(Vec<f64>);

impl Dist {
    pub(super) fn new(mut v: Vec<f64>) -> Dist {
        v.sort_by(f64::total_cmp);
        Dist(v)
    }

    /// The `q` quantile (nearest rank), 0 when empty.
    pub fn quantile(&self, q: f64) -> f64 {
        if self.0.is_empty() {
            return 0.0;
        }
        let i = ((q * self.0.len() as f64).ceil() as usize).clamp(1, self.0.len()) - 1;
        self.0[i]
    }

    /// `p50 / p99 / max ms`.
    pub fn render_ms(&self) -> String {
        if self.0.is_empty() {
            return "n/a".into();
        }
        format!(
            "{:.1} / {:.1} / {:.1} ms",
            self.quantile(0.5),
            self.quantile(0.99),
            self.quantile(1.0)
        )
    }
}

/// One second of a batch's per-second series (cumulative counts; the render takes differences).
#[derive(Debug, Clone, Copy)]
pub struct SeriesPoint {
    /// Seconds since the batch started.
    pub t: f64,
    /// The worker's `/metrics` at that moment.
    pub metrics: MetricsSample,
}

/// The worker's figures as the bench sees them while a batch runs.
#[derive(Debug)]
pub(super) enum Live {
    /// The counters of the worker running in this process, and the HTTP times of its jobs
    /// when the batch keeps them.
    InProcess {
        counters: Arc<WorkerCounters>,
        http_times: Option<Arc<HttpTimes>>,
    },
    /// A child worker's figures, as the sampler last read them from its `/status.json`.
    Child(ChildFigures),
}

/// Each job's HTTP time, by job_id, as the worker in this process tells them (S6 subtracts it
/// from the job's latency).
#[derive(Debug, Default)]
pub(super) struct HttpTimes(Mutex<HashMap<String, Duration>>);

impl HttpTimes {
    /// Starts keeping the HTTP time of every job `counters` sees verified from now on.
    pub(super) fn observe(counters: &WorkerCounters) -> Arc<HttpTimes> {
        let times = Arc::new(HttpTimes::default());
        let kept = times.clone();
        counters.observe_http_times(move |job_id, took| {
            kept.0
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(job_id.to_owned(), took);
        });
        times
    }
}

/// What the sampler last read of a child worker's counters.
#[derive(Debug, Default)]
pub(super) struct ChildFigures {
    in_flight: AtomicU64,
    http_requests: AtomicU64,
}

impl ChildFigures {
    /// Keeps the child's figures of one sample.
    fn record(&self, sample: Counters) {
        self.in_flight.store(sample.in_flight, Ordering::Relaxed);
        self.http_requests
            .store(sample.http_requests, Ordering::Relaxed);
    }
}

impl Live {
    /// Each job's HTTP time, by job_id: kept only by a worker in this process that was asked to
    /// keep them; empty otherwise.
    pub(super) fn http_times(&self) -> HashMap<String, Duration> {
        match self {
            Live::InProcess {
                http_times: Some(t),
                ..
            } => t.0.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            Live::InProcess { .. } | Live::Child(_) => HashMap::new(),
        }
    }
}

impl WorkerGauges for Live {
    fn in_flight(&self) -> u64 {
        match self {
            Live::InProcess { counters, .. } => counters.in_flight(),
            Live::Child(f) => f.in_flight.load(Ordering::Relaxed),
        }
    }

    fn http_requests(&self) -> u64 {
        match self {
            Live::InProcess { counters, .. } => counters.http_requests(),
            Live::Child(f) => f.http_requests.load(Ordering::Relaxed),
        }
    }
}

/// The highest values a [`Sampler`] saw.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Peaks {
    pub(super) rss_kib: u64,
    pub(super) in_flight: u64,
}

/// Samples every 100 ms, while the batch runs, the resident memory of the process that holds
/// the worker and the jobs in flight. A child's memory comes from `/proc` (which costs it
/// nothing); its counters from its `/status.json`, every 100 ms only when `sample_rss` asks
/// for the in-flight peak, else every second for the progress line, and never on an idle run.
pub(super) struct Sampler<'a> {
    live: Arc<Live>,
    child: Option<&'a WorkerProcess>,
    sample_rss: bool,
    idle: bool,
    rss_kib: AtomicU64,
    in_flight: AtomicU64,
    /// The per-second series, when asked for.
    series: Option<Mutex<Vec<SeriesPoint>>>,
}

impl<'a> Sampler<'a> {
    /// A sampler of `live` (and of `child`'s memory when `sample_rss`); `idle` for a batch of
    /// no jobs.
    pub(super) fn start(
        sample_rss: bool,
        idle: bool,
        live: Arc<Live>,
        child: Option<&'a WorkerProcess>,
    ) -> Self {
        Sampler {
            live,
            child,
            sample_rss,
            idle,
            rss_kib: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            series: None,
        }
    }

    /// Also records, every second, the child's concurrency limit, results and throttled
    /// answers.
    pub(super) fn with_series(mut self) -> Self {
        self.series = Some(Mutex::new(Vec::new()));
        self
    }

    /// The per-second series (empty unless asked for).
    pub(super) fn series(&self) -> Vec<SeriesPoint> {
        self.series.as_ref().map_or_else(Vec::new, |s| {
            s.lock().unwrap_or_else(|e| e.into_inner()).clone()
        })
    }

    /// Samples until dropped (never returns).
    pub(super) async fn run(&self) -> std::convert::Infallible {
        if self.child.is_none() && !self.sample_rss {
            return std::future::pending().await;
        }
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let started = Instant::now();
        for n in 0u64.. {
            tick.tick().await;
            if let (Some(series), Some(c), true) = (&self.series, self.child, n % 10 == 0) {
                if let Some(metrics) = c.metrics().await {
                    let point = SeriesPoint {
                        t: started.elapsed().as_secs_f64(),
                        metrics,
                    };
                    series.lock().unwrap_or_else(|e| e.into_inner()).push(point);
                }
            }
            let rss = match self.child {
                Some(c) => c.rss_kib().map(|(rss, _)| rss),
                None => usage::current_rss_kib(),
            };
            self.rss_kib.fetch_max(rss.unwrap_or(0), Ordering::Relaxed);
            if let (Some(c), Live::Child(figures)) = (self.child, &*self.live) {
                if !self.idle && (self.sample_rss || n % 10 == 0) {
                    if let Some(counters) = c.counters().await {
                        figures.record(counters);
                    }
                }
            }
            self.in_flight
                .fetch_max(self.live.in_flight(), Ordering::Relaxed);
        }
        unreachable!("the sampler's loop does not end")
    }

    pub(super) fn peaks(&self) -> Peaks {
        Peaks {
            rss_kib: self.rss_kib.load(Ordering::Relaxed),
            in_flight: self.in_flight.load(Ordering::Relaxed),
        }
    }
}
