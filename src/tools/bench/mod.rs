//! `silentauth-worker bench`: measured throughput, latency, CPU and memory of the real worker
//! against the simulator, scenario by scenario, with the ceilings of the same machine measured
//! in the same run.
//!
//! The broker is the embedded MockCluster (or `--brokers`) in this process, with the bench's
//! own producer and reader; the simulator runs in its own process (this binary as `simulate`)
//! and so does the worker (this binary as `run`), so the worker's CPU time and memory are its
//! own. S6 alone runs the worker in this process: it needs each job's HTTP time, which only
//! the worker's memory holds, and it measures latency, not resources.
//!
//! - [`run_scenarios`]: S1..S6 (see [`ScenarioId`]) and the limits;
//! - `render`: each scenario's printed report;
//! - [`batch`]: one timed batch of jobs through a fresh worker on fresh topics;
//! - [`load`]: minted codes, job records, topics; [`limits`]: passthrough and capacity;
//! - [`sim`]: the simulator process; [`child`]: the worker process; [`usage`]: getrusage and
//!   `/proc`;
//! - `adapt`: the adaptive concurrency limit followed per second through a latency step and a
//!   429 storm (`--scenario adapt`, not part of `all`);
//! - [`warmup`]: time to ready after a restart against a results topic holding millions of
//!   recent results (`--scenario warmup`, not part of `all`).

mod adapt;
pub mod batch;
pub mod child;
pub mod limits;
pub mod load;
mod render;
mod running;
use render::{render_s1, render_s2, render_s3, render_s4, render_s5, render_s6};
mod sample;
pub mod sim;
pub mod usage;
pub mod warmup;
mod window;

use anyhow::{bail, Context};
use batch::BatchSpec;
use limits::Limits;
use silentauth_worker::config::ConcurrencyMode;
use std::time::Duration;

/// One benchmark scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ScenarioId {
    /// Zero latency, no rate limit, 100,000 jobs: the worker's own throughput.
    S1,
    /// 100 ms per request, `max_in_flight` 1,024: concurrency hides latency.
    S2,
    /// 500 requests/s, burst 50, a 20,000-job backlog: the achieved rate over 30 s.
    S3,
    /// 30 s idle on an empty topic: CPU of one core.
    S4,
    /// 1,024 in flight over a 100,000-job backlog: peak memory.
    S5,
    /// At half of S1's rate: p99 of (job latency − HTTP time), the worker's own overhead.
    S6,
    /// Time to ready after a restart, the results topic pre-filled with 1,000,000 and
    /// 3,000,000 recent results (`--jobs N`: N only; `--partitions`: of the results topic).
    Warmup,
    /// Adaptive concurrency followed per second: jobs at a steady 3,000/s while the upstream
    /// steps from 0 to 100 ms and back, then answers 429 above 500 requests/s for 6 s.
    Adapt,
}

impl ScenarioId {
    /// Every scenario, in order.
    pub const ALL: [ScenarioId; 6] = [Self::S1, Self::S2, Self::S3, Self::S4, Self::S5, Self::S6];

    /// Scenarios run only when named.
    pub const EXTRA: [ScenarioId; 2] = [Self::Warmup, Self::Adapt];

    /// Parses `S1`..`S6`, `warmup` and `adapt` (any case), a comma-separated list, or `all` (S1..S6).
    pub fn parse_list(s: &str) -> anyhow::Result<Vec<ScenarioId>> {
        let mut out = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if part.eq_ignore_ascii_case("all") {
                out.extend(Self::ALL);
                continue;
            }
            let id = Self::ALL
                .into_iter()
                .chain(Self::EXTRA)
                .find(|id| format!("{id:?}").eq_ignore_ascii_case(part))
                .with_context(|| {
                    format!("unknown scenario {part:?}: expected S1..S6, warmup, adapt or all")
                })?;
            out.push(id);
        }
        out.sort();
        out.dedup();
        if out.is_empty() {
            bail!("no scenario given: expected S1..S6, warmup, adapt or all");
        }
        Ok(out)
    }
}

/// What `bench` is asked to do (the command-line flags).
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Scenarios to run (`--scenario`).
    pub scenarios: Vec<ScenarioId>,
    /// Overrides each scenario's job count (`--jobs`).
    pub jobs: Option<usize>,
    /// Overrides the jobs topic's partitions (`--partitions`).
    pub partitions: Option<i32>,
    /// An external broker (`--brokers`) instead of the embedded MockCluster.
    pub brokers: Option<String>,
    /// Skips the passthrough and capacity runs (`--skip-limits`).
    pub skip_limits: bool,
    /// Runs the worker in the bench process for every scenario (`--in-process`), e.g. to
    /// compare its throughput with the child process's.
    pub in_process: bool,
    /// `worker.max_in_flight` for every scenario (`--max-in-flight`).
    pub max_in_flight: Option<usize>,
    /// `worker.concurrency` for every scenario (`--concurrency`, default adaptive).
    pub concurrency: ConcurrencyMode,
    /// `worker.ledger` for every scenario (`--ledger`, default on).
    pub ledger: bool,
}

/// Runs the scenarios and prints a table per scenario on stdout (progress on stderr).
pub async fn run_scenarios(opts: BenchOptions) -> anyhow::Result<()> {
    let broker = load::Broker::start(opts.brokers.as_deref())?;
    let sim = sim::SimProcess::spawn().await?;
    let http = load::http_client()?;
    let ctx = batch::Ctx {
        broker: &broker,
        sim: &sim,
        http: &http,
    };
    print_preamble(&ctx, opts.in_process);
    let wants_limits = !opts.skip_limits
        && opts
            .scenarios
            .iter()
            .any(|s| matches!(s, ScenarioId::S1 | ScenarioId::S6));
    let mut run = Sequence {
        limits: None,
        s1_rate: None,
    };
    if wants_limits {
        run.limits = Some(measure_limits(&ctx, &opts).await?);
    }
    for id in &opts.scenarios {
        println!("{}", run.scenario(&ctx, &opts, *id).await?);
    }
    sim.stop().await;
    drop(broker);
    Ok(())
}

/// Says where the broker, the simulator and the worker run, and what the CPU figures cover.
fn print_preamble(ctx: &batch::Ctx<'_>, in_process: bool) {
    println!(
        "silentauth-worker bench: {}, simulator at {} (its own process), \
         {} CPUs; numbers are noisy when anything else runs on the machine",
        ctx.broker.describe(),
        ctx.sim.base_url(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    if in_process {
        println!(
            "The worker runs in this process (--in-process): CPU is getrusage(RUSAGE_SELF) of \
             the worker plus {}the bench's producer and reader.\n",
            match ctx.broker {
                load::Broker::Embedded(_) => "the embedded broker plus ",
                load::Broker::External(_) => "",
            }
        );
    } else {
        println!(
            "The worker runs as a child process (S6: in this process); its CPU is user+sys from \
             /proc/<pid>/stat, its memory VmRSS/VmHWM from /proc/<pid>/status. The bench \
             process ({}the bench's producer and reader) is reported apart.\n",
            match ctx.broker {
                load::Broker::Embedded(_) => "the embedded broker, ",
                load::Broker::External(_) => "",
            }
        );
    }
}

/// What one scenario of a run hands to the next: the limits, and S1's rate for S6.
struct Sequence {
    limits: Option<Limits>,
    s1_rate: Option<f64>,
}

impl Sequence {
    /// Runs scenario `id` and returns its report.
    async fn scenario(
        &mut self,
        ctx: &batch::Ctx<'_>,
        opts: &BenchOptions,
        id: ScenarioId,
    ) -> anyhow::Result<String> {
        Ok(match id {
            ScenarioId::S1 => {
                let b = batch::run(ctx, &s1_spec(opts)).await?;
                self.s1_rate = Some(b.throughput());
                render_s1(&b, self.limits)
            }
            ScenarioId::S2 => render_s2(&batch::run(ctx, &s2_spec(opts)).await?),
            ScenarioId::S3 => render_s3(&batch::run(ctx, &s3_spec(opts)).await?),
            ScenarioId::S4 => render_s4(&batch::run(ctx, &s4_spec(opts)).await?),
            ScenarioId::S5 => render_s5(&batch::run(ctx, &s5_spec(opts)).await?),
            ScenarioId::S6 => {
                let rate = match self.s1_rate {
                    Some(r) => r,
                    None => {
                        eprintln!("bench: S6 needs S1's rate; running S1 first");
                        batch::run(ctx, &s1_spec(opts)).await?.throughput()
                    }
                };
                render_s6(&batch::run(ctx, &s6_spec(opts, rate / 2.0)).await?, rate)
            }
            ScenarioId::Adapt => {
                let spec = adapt::spec(spec(opts, "adapt", adapt::JOBS));
                adapt::render(&batch::run(ctx, &spec).await?)
            }
            ScenarioId::Warmup => {
                let sizes = opts.jobs.map_or(warmup::SIZES.to_vec(), |n| vec![n]);
                let partitions = opts.partitions.unwrap_or(warmup::RESULTS_PARTITIONS);
                warmup::run(ctx, &sizes, partitions).await?
            }
        })
    }
}

fn jobs_topic_partitions(opts: &BenchOptions, jobs: usize) -> i32 {
    // The MockCluster keeps about 5 MB per partition: at least 8, one per 2,500 jobs.
    opts.partitions
        .unwrap_or((jobs / 2_500).clamp(8, 64) as i32)
}

fn spec(opts: &BenchOptions, name: &'static str, default_jobs: usize) -> BatchSpec {
    let jobs = opts.jobs.unwrap_or(default_jobs);
    BatchSpec {
        name,
        jobs,
        partitions: jobs_topic_partitions(opts, jobs),
        in_process: opts.in_process,
        max_in_flight: opts
            .max_in_flight
            .unwrap_or(BatchSpec::default().max_in_flight),
        concurrency: opts.concurrency,
        ledger: opts.ledger,
        ..BatchSpec::default()
    }
}

fn s1_spec(opts: &BenchOptions) -> BatchSpec {
    spec(opts, "S1", 100_000)
}

fn s2_spec(opts: &BenchOptions) -> BatchSpec {
    BatchSpec {
        latency: Duration::from_millis(100),
        ..spec(opts, "S2", 20_000)
    }
}

fn s3_spec(opts: &BenchOptions) -> BatchSpec {
    BatchSpec {
        rate_limit: Some((500.0, 50)),
        stop_after: Some(Duration::from_secs(30)),
        ..spec(opts, "S3", 20_000)
    }
}

fn s4_spec(opts: &BenchOptions) -> BatchSpec {
    BatchSpec {
        jobs: 0,
        partitions: opts.partitions.unwrap_or(8),
        stop_after: Some(Duration::from_secs(30)),
        ..spec(opts, "S4", 0)
    }
}

fn s5_spec(opts: &BenchOptions) -> BatchSpec {
    BatchSpec {
        latency: Duration::from_millis(100),
        backlog_first: true,
        sample_rss: true,
        ..spec(opts, "S5", 100_000)
    }
}

fn s6_spec(opts: &BenchOptions, rate: f64) -> BatchSpec {
    BatchSpec {
        publish_rate: Some(rate.max(1.0)),
        keep_http_times: true,
        in_process: true,
        ..spec(opts, "S6", 30_000)
    }
}

async fn measure_limits(ctx: &batch::Ctx<'_>, opts: &BenchOptions) -> anyhow::Result<Limits> {
    let n = opts.jobs.unwrap_or(100_000);
    let partitions = jobs_topic_partitions(opts, n);
    let id = uuid::Uuid::new_v4().simple().to_string();
    let (from, to) = (
        format!("bench-pass-{}-in", &id[..8]),
        format!("bench-pass-{}-out", &id[..8]),
    );
    ctx.broker
        .create_topics(&[(&from, partitions), (&to, partitions)])
        .await?;
    eprintln!("bench: limits: publishing {n} records for the passthrough ...");
    let publisher = crate::tools::demo::collect::JobPublisher::new(&ctx.broker.bootstrap())?;
    publisher.publish(&from, &limits::filler(n)).await?;
    let passthrough = limits::passthrough(&ctx.broker.bootstrap(), &from, &to, n).await?;
    eprintln!("bench: limits: passthrough {passthrough:.0} records/s; minting codes for the capacity run ...");
    ctx.sim
        .set_scenario(&batch::sim_scenario(Duration::ZERO))
        .await?;
    let pairs = 20_000;
    let mut best = (0.0, 0, 0.0);
    let mut tried = Vec::new();
    for concurrency in limits::CAPACITY_CONCURRENCIES {
        let hints: Vec<String> = (0..pairs).map(load::login_hint).collect();
        let codes = load::mint_codes(ctx.http, ctx.sim.base_url(), &hints).await?;
        let before = usage::self_usage().cpu;
        let rate = limits::capacity(ctx.http, ctx.sim.base_url(), codes, concurrency).await?;
        let cpu = (usage::self_usage().cpu.saturating_sub(before)).as_secs_f64();
        let cpu_per_1000 = cpu * 1000.0 / pairs as f64;
        tried.push(format!("{rate:.0} at {concurrency}"));
        if rate > best.0 {
            best = (rate, concurrency, cpu_per_1000);
        }
    }
    let l = Limits {
        passthrough,
        capacity_pairs: best.0,
        capacity_concurrency: best.1,
        capacity_cpu_per_1000: best.2,
    };
    println!(
        "limits\n  passthrough (consume -> produce, no HTTP)  {:>10.0} records/s ({n} records, {partitions} partitions)\n  \
         bare client, best of {} pairs in flight  {:>10.0} token+userinfo pairs/s at {} ({:.0} requests/s)\n  \
         bare client CPU s per 1,000 pairs (bench process, at {})  {:.3} s\n  \
         limit for the worker: min of the two       {:>10.0} jobs/s\n",
        l.passthrough,
        tried.join(", "),
        l.capacity_pairs,
        l.capacity_concurrency,
        l.capacity_pairs * 2.0,
        l.capacity_concurrency,
        l.capacity_cpu_per_1000,
        l.jobs_per_second()
    );
    Ok(l)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_scenario_lists() {
        assert_eq!(
            ScenarioId::parse_list("all").unwrap(),
            ScenarioId::ALL.to_vec()
        );
        assert_eq!(
            ScenarioId::parse_list("s3, S1,S3").unwrap(),
            vec![ScenarioId::S1, ScenarioId::S3]
        );
        assert!(ScenarioId::parse_list("S7").is_err());
        assert!(ScenarioId::parse_list("").is_err());
    }
}
