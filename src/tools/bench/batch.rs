//! One timed batch: fresh topics, codes minted beforehand, a fresh worker (its own process, or
//! a task of this one for S6), the jobs published (all at once, paced, or as a backlog before the worker starts) while the
//! results are read back, and the measurements of that window.

use super::load::{self, Broker};
use super::running::Running;
pub use super::sample::Dist;
use super::sample::{Sampler, SeriesPoint};
use super::sim::SimProcess;
use super::usage;
use super::window::{Latencies, Window};
use crate::tools::demo::collect::{Collector, JobPublisher, Published, Received, WorkerGauges};
use crate::tools::demo::plan::Record;
use crate::tools::demo::DemoOptions;
use anyhow::Context;
use silentauth_simulator::{Latency, Scenario};
use silentauth_worker::config::{ConcurrencyMode, Config};

use std::time::{Duration, Instant};

/// Partitions of the dead-letter topic.
const DEAD_LETTER_PARTITIONS: i32 = 2;

/// Partitions of the presentation ledger: its records are small and each waits for its
/// acknowledgement, so fewer partitions make fuller batches.
const LEDGER_PARTITIONS: i32 = 1;

/// What the batches share: the broker, the simulator process and an HTTP client for minting.
pub struct Ctx<'a> {
    /// The broker.
    pub broker: &'a Broker,
    /// The simulator process.
    pub sim: &'a SimProcess,
    /// A client that does not follow redirects.
    pub http: &'a reqwest::Client,
}

/// What one batch does.
#[derive(Debug, Clone)]
pub struct BatchSpec {
    /// The scenario's name (`S1`).
    pub name: &'static str,
    /// Jobs to publish (0: none, only idle for `stop_after`).
    pub jobs: usize,
    /// Partitions of the jobs and results topics.
    pub partitions: i32,
    /// Simulator latency on token and userinfo (authorize, used for minting, has none).
    pub latency: Duration,
    /// `clients.default.requests_per_second` and `burst`.
    pub rate_limit: Option<(f64, u32)>,
    /// `worker.max_in_flight`.
    pub max_in_flight: usize,
    /// Stop reading results after this long (a rate-limited or idle run); else up to 10 min.
    pub stop_after: Option<Duration>,
    /// Publish at this many jobs per second instead of as fast as possible.
    pub publish_rate: Option<f64>,
    /// Publish every job before the worker starts.
    pub backlog_first: bool,
    /// Sample the process's RSS and the jobs in flight every 100 ms.
    pub sample_rss: bool,
    /// Have the worker keep each job's HTTP time (S6).
    pub keep_http_times: bool,
    /// Run the worker as a task of this process instead of a child process: only for what
    /// needs its in-memory counters (each job's HTTP time, S6), as CPU and memory then
    /// include the broker, the bench's producer and its reader.
    pub in_process: bool,
    /// `worker.concurrency`.
    pub concurrency: ConcurrencyMode,
    /// `worker.ledger`: record each presentation before its token request.
    pub ledger: bool,
    /// Simulator scenarios to switch to, each at its time after the worker is ready; with a
    /// per-second series of the worker's concurrency limit, results and throttled answers.
    pub timeline: Vec<(Duration, Scenario)>,
}

impl Default for BatchSpec {
    fn default() -> Self {
        BatchSpec {
            name: "",
            jobs: 0,
            partitions: 8,
            latency: Duration::ZERO,
            rate_limit: None,
            max_in_flight: 1024,
            stop_after: None,
            publish_rate: None,
            backlog_first: false,
            sample_rss: false,
            keep_http_times: false,
            in_process: false,
            concurrency: ConcurrencyMode::Adaptive,
            ledger: true,
            timeline: Vec::new(),
        }
    }
}

/// The measurements of one batch.
#[derive(Debug)]
pub struct Batch {
    /// What ran.
    pub spec: BatchSpec,
    /// Results read.
    pub results: u64,
    /// Dead letters read.
    pub dead_letters: u64,
    /// True when not every result arrived (and the batch was not meant to stop early).
    pub timed_out: bool,
    /// First and last result read.
    pub result_span: Option<(Instant, Instant)>,
    /// The results' `duration_ms`.
    pub duration_ms: Dist,
    /// From handing the job to the producer to reading its result.
    pub end_to_end: Dist,
    /// `end_to_end` minus the job's HTTP time (S6).
    pub overhead: Dist,
    /// `duration_ms` minus the job's HTTP time (S6).
    pub worker_overhead: Dist,
    /// CPU of this process over the measured window (with an in-process worker, the worker's
    /// too).
    pub cpu: Duration,
    /// CPU of the worker process over the measured window (`None` with an in-process worker).
    pub worker_cpu: Option<Duration>,
    /// CPU seconds of the simulator process over the window.
    pub sim_cpu: Option<f64>,
    /// `ru_maxrss` at the end (the whole process's peak so far).
    pub max_rss_kib: u64,
    /// The simulator's counters for the window.
    pub sim: silentauth_simulator::SimStats,
    /// The measured window.
    pub window: Duration,
    /// VmRSS of this process before the worker started.
    pub rss_before_kib: u64,
    /// The highest VmRSS sampled of the process holding the worker: the worker process, or
    /// this one (in process, with `sample_rss`).
    pub rss_peak_kib: u64,
    /// VmRSS of the worker process once it was ready (0 in process).
    pub worker_rss_ready_kib: u64,
    /// VmHWM (peak resident set) of the worker process at the end of the window (0 in process).
    pub worker_hwm_kib: u64,
    /// Per second, with a timeline: the worker's concurrency limit, results, throttled answers.
    pub series: Vec<SeriesPoint>,
    /// The most jobs in flight at a sample (with `sample_rss`).
    pub in_flight_peak: u64,
}

impl Batch {
    /// Results per second from the first to the last result.
    pub fn throughput(&self) -> f64 {
        match self.result_span {
            Some((a, b)) if b > a => {
                (self.results.saturating_sub(1)) as f64 / (b - a).as_secs_f64()
            }
            _ => 0.0,
        }
    }

    /// CPU seconds of this process per 1,000 results.
    pub fn cpu_per_1000(&self) -> f64 {
        self.cpu.as_secs_f64() * 1000.0 / self.results.max(1) as f64
    }

    /// CPU seconds of the worker process per 1,000 results (`None` in process).
    pub fn worker_cpu_per_1000(&self) -> Option<f64> {
        self.worker_cpu
            .map(|c| c.as_secs_f64() * 1000.0 / self.results.max(1) as f64)
    }

    /// The simulator's per-second series without its first and last (partial) seconds.
    pub fn sim_full_seconds(&self) -> Vec<u64> {
        let c = &self.sim.api_per_second.counts;
        if c.len() > 2 {
            c[1..c.len() - 1].to_vec()
        } else {
            c.clone()
        }
    }
}

/// The simulator scenario of a batch: `latency` on token and userinfo, none on authorize.
pub fn sim_scenario(latency: Duration) -> Scenario {
    let mut s = Scenario::default();
    s.latency.fixed = latency;
    s.latency.authorize = Some(Latency::default());
    s
}

/// Switches the simulator to each scenario of `timeline` at its time, then waits forever.
async fn follow_timeline(
    sim: &SimProcess,
    timeline: &[(Duration, Scenario)],
) -> anyhow::Result<()> {
    let start = tokio::time::Instant::now();
    for (at, scenario) in timeline {
        tokio::time::sleep_until(start + *at).await;
        sim.set_scenario(scenario).await?;
        eprintln!(
            "bench: at {:.0} s: the simulator's scenario changes",
            at.as_secs_f64()
        );
    }
    std::future::pending().await
}

/// Runs one batch and measures it: fresh topics and codes, a worker started on them, the jobs
/// published and their results read within a measured window, then the worker stopped.
pub async fn run(ctx: &Ctx<'_>, spec: &BatchSpec) -> anyhow::Result<Batch> {
    let topics = Topics::create(ctx, spec).await?;
    let records = mint(ctx, spec, &topics.prefix).await?;
    let bootstrap = ctx.broker.bootstrap();
    let publisher = JobPublisher::new(&bootstrap)?;
    publisher.warm_up(&topics.warm_up).await?;
    // No reader on an idle run: its background fetches would count as the worker's idle CPU.
    let collector = (spec.jobs > 0)
        .then(|| {
            Collector::new(
                &bootstrap,
                (&topics.results, spec.partitions),
                (&topics.dead_letter, DEAD_LETTER_PARTITIONS),
            )
        })
        .transpose()?;
    let config = worker_config(ctx, spec, &topics)?;
    let backlog = publish_backlog(spec, &publisher, &topics.jobs, &records).await?;
    let rss_before_kib = usage::current_rss_kib().unwrap_or(0);
    let worker = Running::start(spec.in_process, spec.keep_http_times, config).await?;
    ctx.sim.reset_stats().await?;
    let child = worker.child();
    let worker_rss_ready_kib = child.and_then(|c| c.rss_kib()).map_or(0, |(rss, _)| rss);
    let mut sampler = Sampler::start(spec.sample_rss, spec.jobs == 0, worker.live(), child);
    if !spec.timeline.is_empty() {
        sampler = sampler.with_series();
    }

    eprintln!("bench: {}: running ...", spec.name);
    let window = Window::open(ctx.sim, child);
    let load = Load {
        publisher: &publisher,
        topic: &topics.jobs,
        records: &records,
        backlog,
    };
    let (published, received) = drive(
        ctx,
        spec,
        collector.as_ref(),
        load,
        &sampler,
        &*worker.live(),
    )
    .await?;
    let usage = window.close(ctx.sim, child);
    let peaks = sampler.peaks();
    let series = sampler.series();
    drop(sampler);
    let sim_stats = ctx.sim.stats().await?;
    let live = worker.live();
    worker.stop().await;
    let http_times = live.http_times();

    let latencies = Latencies::of(&received, published.as_ref(), &http_times);
    Ok(Batch {
        spec: spec.clone(),
        results: received.result_count,
        dead_letters: received.dead_letter_count,
        timed_out: received.timed_out && spec.stop_after.is_none(),
        result_span: latencies.span,
        duration_ms: Dist::new(latencies.duration),
        end_to_end: Dist::new(latencies.end_to_end),
        overhead: Dist::new(latencies.overhead),
        worker_overhead: Dist::new(latencies.worker_overhead),
        cpu: usage.cpu,
        worker_cpu: usage.worker_cpu,
        sim_cpu: usage.sim_cpu,
        max_rss_kib: usage.max_rss_kib,
        sim: sim_stats,
        window: usage.elapsed,
        rss_before_kib,
        rss_peak_kib: peaks.rss_kib,
        worker_rss_ready_kib,
        worker_hwm_kib: usage.worker_hwm_kib,
        series,
        in_flight_peak: peaks.in_flight,
    })
}

/// The topics of one batch, named after it and a random id.
struct Topics {
    /// `bench-<scenario>-<id>`: the topics' and the worker group's prefix.
    prefix: String,
    jobs: String,
    results: String,
    dead_letter: String,
    ledger: String,
    /// The bench producer's own topic, written once before the measured window.
    warm_up: String,
}

impl Topics {
    /// Creates the batch's topics on the broker.
    async fn create(ctx: &Ctx<'_>, spec: &BatchSpec) -> anyhow::Result<Topics> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let prefix = format!("bench-{}-{}", spec.name.to_lowercase(), &id[..8]);
        let topics = Topics {
            jobs: format!("{prefix}.jobs"),
            results: format!("{prefix}.results"),
            dead_letter: format!("{prefix}.dlq"),
            ledger: format!("{prefix}.ledger"),
            warm_up: format!("{prefix}.warm-up"),
            prefix,
        };
        ctx.broker
            .create_topics(&[
                (&topics.jobs, spec.partitions),
                (&topics.results, spec.partitions),
                (&topics.dead_letter, DEAD_LETTER_PARTITIONS),
                (&topics.ledger, LEDGER_PARTITIONS),
                (&topics.warm_up, 1),
            ])
            .await?;
        Ok(topics)
    }
}

/// Sets the simulator to the batch's latency and mints one code per job over HTTP.
async fn mint(ctx: &Ctx<'_>, spec: &BatchSpec, prefix: &str) -> anyhow::Result<Vec<Record>> {
    ctx.sim.set_scenario(&sim_scenario(spec.latency)).await?;
    eprintln!(
        "bench: {}: minting {} codes over HTTP ...",
        spec.name, spec.jobs
    );
    let minting = Instant::now();
    let records = load::jobs(ctx.http, ctx.sim.base_url(), prefix, spec.jobs).await?;
    eprintln!(
        "bench: {}: minted in {:.1} s",
        spec.name,
        minting.elapsed().as_secs_f64()
    );
    Ok(records)
}

/// The demo's worker configuration on the batch's topics, with the batch's limits.
fn worker_config(ctx: &Ctx<'_>, spec: &BatchSpec, topics: &Topics) -> anyhow::Result<Config> {
    let demo = DemoOptions {
        latency: spec.latency,
        max_in_flight: spec.max_in_flight,
        ..DemoOptions::default()
    };
    let bootstrap = ctx.broker.bootstrap();
    let mut config = crate::tools::demo::config(&bootstrap, ctx.sim.base_url(), &demo);
    config.kafka.group_id = format!("{}-worker", topics.prefix);
    config.topics.jobs = topics.jobs.clone();
    config.topics.results = topics.results.clone();
    config.topics.dead_letter = topics.dead_letter.clone();
    config.topics.ledger = topics.ledger.clone();
    config.worker.ledger = spec.ledger;
    if matches!(ctx.broker, Broker::Embedded(_)) && spec.jobs > 0 {
        // The MockCluster holds every fetch for the full fetch.wait.max.ms (500 ms by default)
        // even when records arrive meanwhile; a real broker answers as soon as data is there.
        // Not on the idle run, which measures the worker's default polling.
        config
            .kafka
            .properties
            .insert("fetch.wait.max.ms".into(), "10".into());
    }
    if let Some((rps, burst)) = spec.rate_limit {
        let profile = config
            .clients
            .get_mut("default")
            .context("the demo config has no default profile")?;
        profile.requests_per_second = Some(rps);
        profile.burst = burst;
    }
    config.worker.concurrency = spec.concurrency;
    config.validate().context("bench configuration")?;
    Ok(config)
}

/// Publishes every job before the worker starts, when the batch asks for a backlog.
async fn publish_backlog(
    spec: &BatchSpec,
    publisher: &JobPublisher,
    topic: &str,
    records: &[Record],
) -> anyhow::Result<Option<Published>> {
    if !spec.backlog_first || records.is_empty() {
        return Ok(None);
    }
    eprintln!(
        "bench: {}: publishing a backlog of {} jobs ...",
        spec.name,
        records.len()
    );
    Ok(Some(publisher.publish(topic, records).await?))
}

/// The measured window: the jobs published and the results read (or, on an idle run, the
/// batch's whole `stop_after`), while the sampler samples and the simulator follows the
/// timeline.
async fn drive(
    ctx: &Ctx<'_>,
    spec: &BatchSpec,
    collector: Option<&Collector>,
    load: Load<'_>,
    sampler: &Sampler<'_>,
    counters: &dyn WorkerGauges,
) -> anyhow::Result<(Option<Published>, Received)> {
    let limit = spec.stop_after.unwrap_or(Duration::from_secs(600));
    let deadline = silentauth_worker::clock::from_now_std(limit);
    let Some(collector) = collector else {
        tokio::select! {
            biased;
            _ = tokio::time::sleep(limit) => {}
            never = sampler.run() => match never {},
        }
        return Ok((None, Received::default()));
    };
    let collected = collect(collector, load, spec, deadline, counters);
    tokio::select! {
        biased;
        r = collected => r,
        never = sampler.run() => match never {},
        r = follow_timeline(ctx.sim, &spec.timeline) => {
            r?;
            unreachable!("follow_timeline waits forever once done")
        }
    }
}

/// The jobs of a batch and where they go.
struct Load<'a> {
    publisher: &'a JobPublisher,
    topic: &'a str,
    records: &'a [Record],
    /// The jobs published before the worker started, if the batch asked for a backlog.
    backlog: Option<Published>,
}

/// Publishes the jobs (unless the backlog is already there) while reading the results.
async fn collect(
    collector: &Collector,
    load: Load<'_>,
    spec: &BatchSpec,
    deadline: Instant,
    counters: &dyn WorkerGauges,
) -> anyhow::Result<(Option<Published>, Received)> {
    let want = spec.jobs as u64;
    if let Some(p) = load.backlog {
        return Ok((
            Some(p),
            collector.collect(want, 0, deadline, counters).await,
        ));
    }
    let publish = publish_paced(load.publisher, load.topic, load.records, spec.publish_rate);
    let collect = collector.collect(want, 0, deadline, counters);
    let (p, r) = tokio::join!(publish, collect);
    Ok((Some(p?), r))
}

/// Publishes every record, as fast as the producer takes them, or at `rate` per second in
/// slices every 50 ms.
async fn publish_paced(
    publisher: &JobPublisher,
    topic: &str,
    records: &[Record],
    rate: Option<f64>,
) -> anyhow::Result<Published> {
    let Some(rate) = rate else {
        return publisher.publish(topic, records).await;
    };
    let tick = Duration::from_millis(50);
    let per_tick = ((rate * tick.as_secs_f64()).round() as usize).max(1);
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut all: Option<Published> = None;
    for chunk in records.chunks(per_tick) {
        interval.tick().await;
        let p = publisher.publish(topic, chunk).await?;
        match &mut all {
            None => all = Some(p),
            Some(a) => {
                a.last_ack = p.last_ack;
                a.records += p.records;
                a.sent_at.extend(p.sent_at);
            }
        }
    }
    all.context("nothing to publish")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_nearest_rank() {
        let d = Dist::new((1..=100).rev().map(f64::from).collect());
        assert_eq!(d.quantile(0.5), 50.0);
        assert_eq!(d.quantile(0.99), 99.0);
        assert_eq!(d.quantile(1.0), 100.0);
        assert_eq!(Dist::default().quantile(0.5), 0.0);
        assert_eq!(Dist::default().render_ms(), "n/a");
    }

    #[test]
    fn the_scenario_leaves_authorize_without_latency() {
        let s = sim_scenario(Duration::from_millis(100));
        assert_eq!(s.latency.fixed, Duration::from_millis(100));
        assert_eq!(s.latency.authorize.map(|l| l.fixed), Some(Duration::ZERO));
        s.validate().unwrap();
    }
}
