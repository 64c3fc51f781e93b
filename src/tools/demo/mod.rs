//! `silentauth-worker demo`: the whole product on one machine with no set-up — an embedded Kafka
//! cluster, the Silent Auth simulator and the real worker, fed a seeded mix of jobs whose
//! expected outcomes are known, then a summary and a check of every job against docs/contract.md.
//!
//! - [`kind`]: the kinds of job, each with its simulator fault and its expected outcome;
//! - [`plan`]: which jobs, which numbers, which payloads and the simulator scenario;
//! - [`collect`]: publishing the jobs and reading results and dead letters back, with progress;
//! - [`report`]: the comparison of every job with its expectation; `summary`: the printed text.
//!
//! [`run`] returns a [`DemoReport`]; `main` exits 0 only when [`DemoReport::success`].

pub mod collect;
pub mod kind;
pub mod plan;
pub mod report;
mod summary;
#[cfg(test)]
mod tests;

pub use report::{DemoReport, HttpCounts};

use anyhow::{bail, Context};
use collect::Collector;
use plan::{Plan, STALE_PROFILE};
use silentauth_simulator::{SimHandle, SimStats};
use silentauth_worker::config::{Config, ProfileConfig, TopicsConfig};
use silentauth_worker::harness::embedded::EmbeddedCluster;
use silentauth_worker::secret::Secret;
use silentauth_worker::telemetry::counters::WorkerCounters;
use silentauth_worker::worker::{Worker, WorkerError};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long the worker may take to join its group and get partitions.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Where the demo's producer sends its first record, outside the timed run.
const WARM_UP_TOPIC: &str = "silentauth.demo.warm-up";

/// Partitions of the dead-letter topic.
const DEAD_LETTER_PARTITIONS: i32 = 2;

/// What `demo` is asked to do (the command-line flags).
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Jobs to generate (`--jobs`).
    pub jobs: usize,
    /// Seed of the job mix (`--seed`): the same seed gives the same jobs and faults.
    pub seed: u64,
    /// How long to wait for the results once publishing started (`--timeout`).
    pub timeout: Duration,
    /// Fixed latency the simulator adds to every answer (`--latency`).
    pub latency: Duration,
    /// `worker.max_in_flight` (`--max-in-flight`).
    pub max_in_flight: usize,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            jobs: 2_000,
            seed: 42,
            timeout: Duration::from_secs(120),
            latency: Duration::ZERO,
            max_in_flight: Config::default().worker.max_in_flight,
        }
    }
}

/// Runs the demo end to end, prints progress (stderr) and the summary (stdout), and returns
/// the report. `Err` means the demo could not run at all (no ports, a broken worker start).
pub async fn run(opts: DemoOptions) -> anyhow::Result<DemoReport> {
    let plan = Plan::new(opts.jobs, opts.seed);
    let topics = TopicsConfig::default();
    let partitions = (opts.jobs / 2_500).clamp(8, 64) as i32;
    let cluster = start_cluster(&topics, partitions)?;
    let bootstrap = cluster.bootstrap_servers();
    let mut scenario = plan.scenario.clone();
    scenario.latency.fixed = opts.latency;
    let sim = SimHandle::start(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), scenario)
        .await
        .context("cannot start the simulator")?;
    let config = config(&bootstrap, &sim.base_url(), &opts);
    config.validate().context("demo configuration")?;
    let records = plan.records(&sim, config.worker.code_ttl);
    let (want_results, want_dead_letters) = expected(&plan, config.retry.max_attempts);
    println!(
        "silentauth-worker demo: {} jobs (seed {}), embedded Kafka at {bootstrap} \
         ({partitions} partitions), simulator at {} (latency {} ms), max_in_flight {}",
        opts.jobs,
        opts.seed,
        sim.addr(),
        opts.latency.as_millis(),
        config.worker.max_in_flight
    );

    let publisher = collect::JobPublisher::new(&bootstrap)?;
    publisher.warm_up(WARM_UP_TOPIC).await?;
    let collector = Collector::new(
        &bootstrap,
        (&topics.results, partitions),
        (&topics.dead_letter, DEAD_LETTER_PARTITIONS),
    )?;
    let (counters, cancel, mut handle) = start_worker(&config).await?;
    eprintln!(
        "demo: publishing {} records to {} ...",
        records.len(),
        topics.jobs
    );
    let published = match publisher.publish(&topics.jobs, &records).await {
        Ok(p) => p,
        Err(e) => {
            cancel.cancel();
            return Err(e);
        }
    };
    let deadline = published.first + opts.timeout;
    let received = collector
        .collect(want_results, want_dead_letters, deadline, &*counters)
        .await;

    let stop = config
        .worker
        .shutdown_grace
        .saturating_add(Duration::from_secs(15));
    stop_worker(&cancel, &mut handle, stop, "demo").await;
    let sim_stats = sim.stats();
    sim.shutdown().await;
    drop((collector, publisher));
    drop(cluster);

    let max_attempts = config.retry.max_attempts;
    let mut report = DemoReport::build(&plan, &records, &published, received, max_attempts);
    report.seed = opts.seed;
    report.http = http_counts(&counters, &sim_stats);
    print!("{}", report.render());
    Ok(report)
}

/// The embedded cluster with the demo's topics: jobs and results on `partitions` partitions.
fn start_cluster(topics: &TopicsConfig, partitions: i32) -> anyhow::Result<EmbeddedCluster> {
    let cluster = EmbeddedCluster::start(1).context("cannot start the embedded Kafka cluster")?;
    for (topic, n) in [
        (&topics.jobs, partitions),
        (&topics.results, partitions),
        (&topics.dead_letter, DEAD_LETTER_PARTITIONS),
        (&topics.ledger, 1),
    ] {
        cluster
            .create_topic(topic, n)
            .with_context(|| format!("cannot create topic {topic}"))?;
    }
    Ok(cluster)
}

/// How many results (copies included) and dead letters the plan's jobs should end with.
fn expected(plan: &Plan, max_attempts: u32) -> (u64, u64) {
    let ends: Vec<_> = plan
        .jobs
        .iter()
        .map(|j| j.kind.expected(max_attempts))
        .collect();
    let results = ends
        .iter()
        .filter(|e| e.result.is_some())
        .map(|e| u64::from(e.copies))
        .sum();
    let dead_letters = ends.iter().filter(|e| e.dead_letter.is_some()).count() as u64;
    (results, dead_letters)
}

/// The worker on `config`, started and joined to its group: its counters, the token that
/// stops it and its task.
async fn start_worker(
    config: &Config,
) -> anyhow::Result<(
    Arc<WorkerCounters>,
    CancellationToken,
    JoinHandle<Result<(), WorkerError>>,
)> {
    let worker = Worker::new(config.clone());
    let counters = worker.counters();
    let cancel = CancellationToken::new();
    let mut handle = tokio::spawn(worker.run(cancel.clone()));
    eprintln!("demo: waiting for the worker to join its consumer group ...");
    if let Err(e) = wait_ready(&counters, &mut handle).await {
        cancel.cancel();
        return Err(e);
    }
    if let Some(addr) = counters.admin_addr() {
        eprintln!("demo: status page http://{addr}/ (metrics at /metrics)");
    }
    Ok((counters, cancel, handle))
}

/// The HTTP figures of the summary: the worker's requests and retries, the simulator's counts.
fn http_counts(counters: &WorkerCounters, sim: &SimStats) -> HttpCounts {
    HttpCounts {
        worker_requests: WorkerCounters::get(&counters.http_requests),
        worker_retries: WorkerCounters::get(&counters.retries),
        token: sim.total("token"),
        userinfo: sim.total("userinfo"),
        signals: sim.signals_total(),
        faults_injected: sim.faults_injected,
        codes_reused: sim.codes_reused,
    }
}

/// The simulator's Network Signals base URL beside its Silent Auth `base_url`.
fn signals_base_url(base_url: &str) -> String {
    let root = base_url.trim_end_matches('/');
    let root = root.strip_suffix("/silent-auth/v1").unwrap_or(root);
    format!("{root}/network-signal/v1")
}

/// The worker's configuration for the demo: the embedded cluster, the simulator, the seed's
/// example credentials, and short retry backoffs so faults heal quickly.
pub fn config(bootstrap: &str, base_url: &str, opts: &DemoOptions) -> Config {
    let profile = |secret: &str| ProfileConfig {
        client_id: "client".into(),
        client_secret: Secret::new(secret),
        api_key: Secret::new("sim-api-key"),
        requests_per_second: None,
        burst: 1,
        signals_requests_per_second: None,
    };
    let mut c = Config::default();
    c.kafka.brokers = bootstrap.to_owned();
    c.kafka.group_id = "silentauth-demo".into();
    c.kafka.connect_timeout = Duration::from_secs(10);
    c.api.base_url = base_url.to_owned();
    c.api.signals_base_url = signals_base_url(base_url);
    c.api.timeout = Duration::from_secs(5) + opts.latency * 2;
    c.clients.insert("default".into(), profile("12345"));
    // A profile whose secret was rotated upstream: its jobs end credentials_rejected.
    c.clients
        .insert(STALE_PROFILE.into(), profile("rotated-secret"));
    c.retry.initial_backoff = Duration::from_millis(20);
    c.retry.max_backoff = Duration::from_millis(200);
    c.retry.max_attempts = 4;
    c.worker.max_in_flight = opts.max_in_flight.max(1);
    c.worker.shutdown_grace = Duration::from_secs(5);
    c.admin.listen = "127.0.0.1:0".into();
    c
}

/// Cancels the worker and waits up to `within` for it to stop, reporting (as `who`) an error
/// or a stop that took too long; a worker that does not stop is aborted.
pub(crate) async fn stop_worker(
    cancel: &CancellationToken,
    handle: &mut JoinHandle<Result<(), WorkerError>>,
    within: Duration,
    who: &str,
) {
    cancel.cancel();
    match tokio::time::timeout(within, &mut *handle).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => eprintln!("{who}: the worker stopped with an error: {e}"),
        Ok(Err(e)) => eprintln!("{who}: the worker task failed: {e}"),
        Err(_) => {
            eprintln!("{who}: the worker did not stop within {within:?}");
            handle.abort();
        }
    }
}

/// Waits until the worker has partitions and a working producer, or reports why it stopped.
pub(crate) async fn wait_ready(
    counters: &Arc<WorkerCounters>,
    handle: &mut JoinHandle<Result<(), WorkerError>>,
) -> anyhow::Result<()> {
    let started = Instant::now();
    while !counters.ready() {
        if handle.is_finished() {
            return match handle.await {
                Ok(Ok(())) => bail!("the worker stopped before it was ready"),
                Ok(Err(e)) => Err(e).context("the worker could not start"),
                Err(e) => bail!("the worker task failed: {e}"),
            };
        }
        if started.elapsed() > READY_TIMEOUT {
            bail!("the worker got no partitions within {READY_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}
