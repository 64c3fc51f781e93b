//! The `warmup` scenario: a worker's time to ready after a restart, against a results topic
//! pre-filled with a million or more recent results. The group's committed offset is recent
//! (the jobs after it were appended seconds before the restart), so the cache warm-up reads
//! seconds of results, whatever the topic holds; a run on an empty results topic in the same
//! sitting shows what the start costs without any.

use super::batch::{sim_scenario, Ctx};
use super::child::WorkerProcess;
use super::load::{self, Broker};
use crate::tools::demo::collect::JobPublisher;
use crate::tools::demo::plan::Record;
use crate::tools::demo::DemoOptions;
use anyhow::{bail, Context};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use silentauth_worker::config::Config;
use silentauth_worker::contract::{result::SCHEMA_VERSION, JobResult, Status};
use silentauth_worker::kafka::producer::{FINGERPRINT_HEADER, REPLAY_COUNT_HEADER};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// Results in the pre-filled topic, by default.
pub const SIZES: [usize; 2] = [1_000_000, 3_000_000];

/// Partitions of the results topic, by default: the MockCluster keeps about 5 MB of
/// (compressed) log per partition.
pub const RESULTS_PARTITIONS: i32 = 64;

/// The pre-filled results are stamped evenly over this span before the restart.
const SPAN: Duration = Duration::from_secs(540);

/// Jobs the first worker verifies and commits; as many again wait after the committed offset.
const JOBS: usize = 100;
const JOBS_PARTITIONS: i32 = 8;

/// `session.timeout.ms` of the workers on the MockCluster (see [`restart`]).
const MOCK_SESSION_TIMEOUT_MS: &str = "3000";

/// One measured restart.
#[derive(Debug, Clone, Copy)]
pub struct Restart {
    /// Results written to the results topic.
    pub prefilled: usize,
    /// Results the topic held when the worker started (the MockCluster may drop old ones).
    pub held: i64,
    /// How long the pre-fill took.
    pub prefill: Duration,
    /// Start of the worker process to its first `/readyz` 200.
    pub ready: Duration,
    /// The same under a group that committed nothing: every result within `worker.code_ttl`
    /// is in range (as after an offset reset), the redelivery index holds them all.
    pub ready_all: Duration,
}

/// Measures a restart on an empty results topic, then on one pre-filled with each of `sizes`.
pub async fn run(ctx: &Ctx<'_>, sizes: &[usize], partitions: i32) -> anyhow::Result<String> {
    let mut rows = Vec::new();
    for &n in std::iter::once(&0).chain(sizes) {
        rows.push(restart(ctx, n, partitions).await?);
    }
    Ok(render(&rows, partitions, ctx.broker))
}

/// One restart against a results topic pre-filled with `n` results over `partitions`.
async fn restart(ctx: &Ctx<'_>, n: usize, partitions: i32) -> anyhow::Result<Restart> {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let prefix = format!("bench-warmup-{}", &id[..8]);
    let config = restart_config(ctx, &prefix, n, partitions).await?;
    let records = load::jobs(ctx.http, ctx.sim.base_url(), &prefix, 2 * JOBS).await?;
    let publisher = JobPublisher::new(&ctx.broker.bootstrap())?;
    commit_first_jobs(ctx, &config, &prefix, &publisher, &records[..JOBS]).await?;
    publisher
        .publish(&config.topics.jobs, &records[JOBS..])
        .await?;

    eprintln!("bench: warmup: pre-filling {n} results over {partitions} partitions ...");
    let started = Instant::now();
    let (b, t) = (ctx.broker.bootstrap(), config.topics.results.clone());
    let held = tokio::task::spawn_blocking(move || prefill(&b, &t, n))
        .await
        .context("pre-fill panicked")??;
    let prefill = started.elapsed();
    eprintln!(
        "bench: warmup: {n} results in {:.1} s (the topic holds {held}); restarting the worker ...",
        prefill.as_secs_f64()
    );

    let ready = time_to_ready(&config).await?;
    let mut fresh = config.clone();
    fresh.kafka.group_id = format!("{prefix}-fresh");
    let ready_all = time_to_ready(&fresh).await?;
    Ok(Restart {
        prefilled: n,
        held,
        prefill,
        ready,
        ready_all,
    })
}

/// Creates the restart's topics and returns the worker's configuration on them.
async fn restart_config(
    ctx: &Ctx<'_>,
    prefix: &str,
    n: usize,
    partitions: i32,
) -> anyhow::Result<Config> {
    let (jobs_topic, results_topic, dlq_topic) = (
        format!("{prefix}.jobs"),
        format!("{prefix}.results"),
        format!("{prefix}.dlq"),
    );
    ctx.broker
        .create_topics(&[
            (&jobs_topic, JOBS_PARTITIONS),
            (&results_topic, partitions),
            (&format!("{prefix}.results-first"), 1),
            (&dlq_topic, 1),
            (&format!("{prefix}.ledger"), 1),
        ])
        .await?;
    ctx.sim.set_scenario(&sim_scenario(Duration::ZERO)).await?;
    let bootstrap = ctx.broker.bootstrap();
    let mut config =
        crate::tools::demo::config(&bootstrap, ctx.sim.base_url(), &DemoOptions::default());
    config.kafka.group_id = format!("{prefix}-worker");
    config.topics.jobs = jobs_topic;
    config.topics.results = results_topic;
    config.topics.dead_letter = dlq_topic;
    config.topics.ledger = format!("{prefix}.ledger");
    // Room for every pre-filled result in range (the default holds 1,000,000).
    config.worker.idempotency_index_size = 2 * n.max(1_000_000);
    if matches!(ctx.broker, Broker::Embedded(_)) {
        // As in the other scenarios: the MockCluster holds every fetch for fetch.wait.max.ms.
        // And it holds the join of a group that had members for the session timeout less 1 s
        // (librdkafka's default 45 s), where a broker takes the leaving member's word.
        for (k, v) in [
            ("fetch.wait.max.ms", "10"),
            ("session.timeout.ms", MOCK_SESSION_TIMEOUT_MS),
            ("heartbeat.interval.ms", "500"),
        ] {
            config.kafka.properties.insert(k.into(), v.into());
        }
    }
    config.validate().context("bench configuration")?;
    Ok(config)
}

/// A first worker verifies and commits `first` (JOBS jobs), then stops.
async fn commit_first_jobs(
    ctx: &Ctx<'_>,
    config: &Config,
    prefix: &str,
    publisher: &JobPublisher,
    first: &[Record],
) -> anyhow::Result<()> {
    publisher.publish(&config.topics.jobs, first).await?;
    // Its results go elsewhere: appended before the pre-fill, they would sit in front of
    // results stamped earlier, which a log written as time passes never holds.
    let mut first_config = config.clone();
    first_config.topics.results = format!("{prefix}.results-first");
    let worker = WorkerProcess::spawn(&first_config).await?;
    let committed = |wait: Duration| {
        let (b, g, t) = (
            ctx.broker.bootstrap(),
            config.kafka.group_id.clone(),
            config.topics.jobs.clone(),
        );
        tokio::task::spawn_blocking(move || wait_committed(&b, &g, &t, JOBS as i64, wait))
    };
    // Its periodic commits, or else the one at shutdown.
    committed(Duration::from_secs(30)).await?.ok();
    worker.stop(Duration::from_secs(30)).await;
    committed(Duration::from_secs(10)).await??;
    Ok(())
}

/// Starts a worker process on `config`, times it to its first `/readyz` 200, and stops it.
async fn time_to_ready(config: &Config) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let worker = WorkerProcess::spawn(config).await?;
    let ready = started.elapsed();
    worker.stop(Duration::from_secs(30)).await;
    Ok(ready)
}

/// Waits until `group` committed `total` offsets over `topic` (`wait` at most).
fn wait_committed(
    bootstrap: &str,
    group: &str,
    topic: &str,
    total: i64,
    wait: Duration,
) -> anyhow::Result<()> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..JOBS_PARTITIONS {
        tpl.add_partition(topic, p);
    }
    let deadline = silentauth_worker::clock::from_now_std(wait);
    loop {
        let c = consumer.committed_offsets(tpl.clone(), Duration::from_secs(10))?;
        let sum: i64 = c
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            })
            .sum();
        if sum >= total {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the first worker committed {sum} of {total} offsets in {wait:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Writes `n` results stamped evenly over the [`SPAN`] before now, with big compressed
/// batches; returns the records the topic holds afterwards.
fn prefill(bootstrap: &str, topic: &str, n: usize) -> anyhow::Result<i64> {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("compression.type", "lz4")
        .set("linger.ms", "100")
        .set("batch.size", "1000000")
        .set("batch.num.messages", "100000")
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .set("acks", "1")
        .set("message.timeout.ms", "300000")
        .create()
        .context("cannot create the pre-fill producer")?;
    let now = chrono::Utc::now();
    let span_ms = SPAN.as_millis() as i64;
    for i in 0..n {
        let ts = now.timestamp_millis() - span_ms + (i as i64 * span_ms) / n.max(1) as i64;
        let key = format!("warm-{i}");
        let payload = result(&key, ts)?;
        loop {
            // The headers the worker writes, so the warm-up indexes without decoding.
            let headers = OwnedHeaders::new_with_capacity(2)
                .insert(Header {
                    key: FINGERPRINT_HEADER,
                    value: Some(&format!("{:016x}", i as u64 + 1)),
                })
                .insert(Header {
                    key: REPLAY_COUNT_HEADER,
                    value: Some("0"),
                });
            let record = BaseRecord::<str, [u8]>::to(topic)
                .key(&key)
                .payload(&payload)
                .headers(headers)
                .timestamp(ts);
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    producer.poll(Duration::from_millis(5));
                }
                Err((e, _)) => bail!("cannot pre-fill {topic}: {e}"),
            }
        }
        if i % 10_000 == 0 {
            producer.poll(Duration::ZERO);
        }
    }
    producer
        .flush(Duration::from_secs(300))
        .context("cannot flush the pre-fill")?;
    let meta = producer
        .client()
        .fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let mut held = 0;
    for p in meta.topics().iter().flat_map(|t| t.partitions()) {
        let (low, high) =
            producer
                .client()
                .fetch_watermarks(topic, p.id(), Duration::from_secs(10))?;
        held += high - low;
    }
    Ok(held)
}

/// A verified job's result, as the worker publishes it.
fn result(job_id: &str, ts_ms: i64) -> anyhow::Result<Vec<u8>> {
    let at = chrono::DateTime::from_timestamp_millis(ts_ms).unwrap_or_default();
    Ok(serde_json::to_vec(&JobResult {
        schema_version: SCHEMA_VERSION,
        job_id: job_id.into(),
        status: Status::Verified,
        phone_number_verified: Some(true),
        login_hint: Some(load::login_hint(ts_ms as usize % 1_000_000)),
        sub: None,
        mobile_id: None,
        state: Some("bench".into()),
        attributes: [("tenant".to_owned(), "bench".to_owned())].into(),
        error: None,
        attempts: 2,
        duplicate: false,
        replay_count: 0,
        received_at: at,
        completed_at: at,
        duration_ms: 3,
        signals: None,
        risk_flags: None,
    })?)
}

fn render(rows: &[Restart], partitions: i32, broker: &Broker) -> String {
    let mut out = format!(
        "warmup — time to ready after a restart (process start to /readyz 200), target <= 5 s\n  \
         results topic: {partitions} partitions, results stamped evenly over the {} minutes before \
         the restart; the group's committed offset {JOBS} jobs behind, appended seconds before\n",
        SPAN.as_secs() / 60
    );
    let _ = writeln!(
        out,
        "  {:>12} {:>12} {:>10} {:>14} {:>16}",
        "results", "held", "pre-fill", "time to ready", "all in range"
    );
    for r in rows {
        let _ = writeln!(
            out,
            "  {:>12} {:>12} {:>8.1} s {:>12.2} s {:>14.2} s{}",
            r.prefilled,
            r.held,
            r.prefill.as_secs_f64(),
            r.ready.as_secs_f64(),
            r.ready_all.as_secs_f64(),
            if r.prefilled > 0 && r.held < r.prefilled as i64 {
                "  (the broker dropped the oldest records)"
            } else {
                ""
            }
        );
    }
    if matches!(broker, Broker::Embedded(_)) {
        out.push_str(
            "  the 0 row is the start without any result to read: process start and group join \
             (the MockCluster holds a returning group's join for session.timeout.ms - 1 s: the \
             workers here set 3 s)\n",
        );
    } else {
        out.push_str("  the 0 row is the start without any result to read\n");
    }
    out.push_str(
        "  all in range: the same restart under a group that committed nothing, so the warm-up \
         indexes every result within worker.code_ttl (as after an offset reset)\n",
    );
    out
}
