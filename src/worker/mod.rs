//! The run loop: consume jobs, verify them concurrently (up to `worker.max_in_flight`), publish
//! results and dead letters, and store each partition's offset only up to its lowest unfinished
//! job, after the broker acknowledged what the finished jobs produced. While the circuit breaker
//! is open no job starts: records wait in order, and the partitions are paused so polling goes on.

pub mod breaker;
mod committer;
mod error;
mod job;
mod preflight;
mod rebalance;
mod state;

pub use error::WorkerError;

use crate::config::{Config, Delivery, RateLimitScope};
use crate::kafka::consumer::{group_consumer_config, store_offset};
use crate::kafka::producer::Publisher;
use crate::kafka::transactions;
use crate::kafka::warmup::ResultsReader;
use crate::silentauth::SilentAuthClient;
use crate::stats::Stats;
use crate::telemetry::{HttpMetrics, Telemetry};
use crate::verify::Verifier;
use breaker::{Gate, Gatekeeper};
use job::{copy, job_task, register, JobEnv, Taken};
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::topic_partition_list::TopicPartitionList;
use rebalance::{JobConsumer, WorkerContext};
use state::WorkerState;
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// One configured worker; [`Worker::stats`] is live while [`Worker::run`] runs.
#[derive(Debug)]
pub struct Worker {
    config: Config,
    stats: Arc<Stats>,
}

/// Runs a worker until `cancel` fires, then shuts down gracefully.
pub async fn run(config: Config, cancel: CancellationToken) -> Result<(), WorkerError> {
    Worker::new(config).run(cancel).await
}

impl Worker {
    /// A worker for `config`.
    pub fn new(config: Config) -> Worker {
        Worker {
            config,
            stats: Arc::new(Stats::default()),
        }
    }

    /// The live counters.
    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    /// Consumes until `cancel` fires; then stops taking jobs, finishes in-flight ones within
    /// `worker.shutdown_grace`, commits, and flushes the producer.
    pub async fn run(self, cancel: CancellationToken) -> Result<(), WorkerError> {
        let config = self.config;
        let stats = self.stats;
        let api = SilentAuthClient::new(&config.api.base_url, config.api.timeout)?
            .with_signals_base_url(&config.api.signals_base_url)?;
        let http_metrics = Arc::new(HttpMetrics::default());
        let verifier = Verifier::from_config(api, &config).with_observer(http_metrics.clone());
        // The admin listener lives as long as this call, whichever way it returns.
        let admin_stop = CancellationToken::new();
        let _admin_guard = admin_stop.clone().drop_guard();
        let limiters = verifier
            .profile_limiters()
            .map(|(name, l)| (name.to_owned(), l.clone()))
            .collect();
        let telemetry = Telemetry::new(stats.clone(), &http_metrics, limiters);
        crate::admin::start(&config.admin.listen, stats.clone(), telemetry, admin_stop).await;
        let exactly_once = config.worker.delivery == Delivery::ExactlyOnce;
        let publisher = Arc::new(if exactly_once {
            Publisher::transactional(&config)?
        } else {
            Publisher::new(&config)?
        });

        // The brokers answer and every topic exists, before anything is consumed.
        if !preflight::preflight(&publisher, &config, &stats, &cancel).await? {
            tracing::info!("stopped while waiting for topics; nothing was consumed");
            return Ok(());
        }
        if exactly_once {
            let p = publisher.clone();
            tokio::task::spawn_blocking(move || transactions::init(&p))
                .await
                .expect("init task panicked")?;
        }
        stats.producer_ok.store(true, Ordering::Relaxed);
        stats.brokers_ok.store(true, Ordering::Relaxed);
        // Readiness follows the brokers and the topics: a metadata probe every PROBE_INTERVAL.
        let probe_stop = CancellationToken::new();
        let _probe_guard = probe_stop.clone().drop_guard();
        tokio::spawn(preflight::probe(
            publisher.clone(),
            config.clone(),
            stats.clone(),
            probe_stop,
        ));

        // The idempotency cache is warmed on every assignment, the first included, before any
        // job of the assigned partitions is taken (worker::rebalance, kafka::warmup).
        let reader = ResultsReader::new(&config)?;
        let shared_limiters = match config.rate_limit.scope {
            RateLimitScope::PartitionShare => verifier.limiters().cloned().collect(),
            RateLimitScope::Instance => Vec::new(),
        };
        let shared = Arc::new(WorkerState::new(&config, stats.clone()));
        let context = WorkerContext::new(&config, shared.clone(), reader, shared_limiters);
        let consumer: JobConsumer =
            group_consumer_config(&config, exactly_once).create_with_context(context)?;
        consumer.subscribe(&[&config.topics.jobs])?;
        let consumer = Arc::new(consumer);
        let fenced = CancellationToken::new();
        let (committer, committer_task) = if exactly_once {
            let (tx, task) = committer::spawn(
                publisher.clone(),
                shared.clone(),
                consumer.clone(),
                fenced.clone(),
            );
            (Some(tx), Some(task))
        } else {
            (None, None)
        };
        let env = Arc::new(JobEnv {
            verifier,
            publisher: publisher.clone(),
            shared: shared.clone(),
            consumer: consumer.clone(),
            group_id: config.kafka.group_id.clone(),
            stats: stats.clone(),
            committer,
            breaker: Arc::new(Gatekeeper::new(&config.worker.breaker, stats.clone())),
        });
        let breaker = env.breaker.clone();

        let max_in_flight = config.worker.max_in_flight.max(1) as u64;
        let pause_after = pause_after(&config);
        let mut paused: Option<TopicPartitionList> = None;
        // Records read while no job could start (breaker open, window full), oldest first; they
        // start before anything newer, so per partition jobs still start in offset order.
        let mut held: VecDeque<Taken> = VecDeque::new();
        tracing::info!(topic = %config.topics.jobs, group = %config.kafka.group_id, "worker started");
        loop {
            let full = stats.in_flight.load(Ordering::Acquire) >= max_in_flight;
            let gate = breaker.gate();
            let admits = matches!(gate, Gate::Closed | Gate::Probe);
            if admits && !full {
                if let Some(taken) = held.pop_front() {
                    start(&env, &breaker, taken, gate == Gate::Probe);
                    continue;
                }
                if let Some(a) = paused.take() {
                    resume(&consumer, &stats, a);
                }
                tokio::select! {
                    biased;
                    _ = cancel.cancelled() => break,
                    _ = fenced.cancelled() => break,
                    m = consumer.recv() => match m {
                        Ok(m) => {
                            let Some(taken) = copy(&shared, &m) else { continue };
                            // The breaker may have opened while this record was awaited.
                            match breaker.gate() {
                                g @ (Gate::Closed | Gate::Probe) => {
                                    start(&env, &breaker, taken, g == Gate::Probe);
                                }
                                Gate::WaitUntil(_) | Gate::WaitForProbe => held.push_back(taken),
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "consumer error");
                        }
                    }
                }
                continue;
            }
            // A full window waits for a free slot without polling, which keeps librdkafka's
            // prefetched records (pausing discards them). Should it stay full for
            // `pause_after`, the partitions are paused and polling goes on, so
            // `max.poll.interval.ms` never trips however slow the jobs are.
            if admits && paused.is_none() {
                tokio::select! {
                    biased;
                    _ = cancel.cancelled() => break,
                    _ = fenced.cancelled() => break,
                    _ = shared.finished.notified() => continue,
                    _ = tokio::time::sleep(pause_after) => {
                        paused = pause(&consumer, &stats);
                        continue;
                    }
                }
            }
            // No job may start: the breaker is open (its partitions are paused at once), or the
            // window stayed full. Polling goes on, so the consumer stays in the group and
            // rebalances are served; a record that still arrives is held, in order, and the
            // assignment (which a rebalance may have grown) is paused again.
            if paused.is_none() {
                paused = pause(&consumer, &stats);
            }
            let wake = match gate {
                Gate::WaitUntil(at) => at,
                _ => crate::clock::from_now(Duration::from_secs(3600)),
            };
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                _ = fenced.cancelled() => break,
                _ = shared.finished.notified() => continue,
                _ = tokio::time::sleep_until(wake) => continue,
                m = consumer.recv() => match m {
                    Ok(m) => {
                        if let Some(taken) = copy(&shared, &m) {
                            held.push_back(taken);
                        }
                        if let Some(a) = pause(&consumer, &stats) {
                            paused = Some(a);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "consumer error");
                    }
                }
            }
        }
        if !held.is_empty() {
            tracing::info!(
                held = held.len(),
                "stopping with jobs not started; their offsets are not committed"
            );
        }
        drop(held);

        // Shutdown: finish in-flight jobs within the grace, abandon the rest, commit, flush.
        tracing::info!("stopping: finishing in-flight jobs");
        let grace = tokio::time::sleep(config.worker.shutdown_grace);
        tokio::pin!(grace);
        while stats.in_flight.load(Ordering::Acquire) > 0 {
            tokio::select! {
                _ = &mut grace => break,
                _ = shared.finished.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
        let left = stats.in_flight.load(Ordering::Acquire);
        if left > 0 {
            tracing::warn!(
                abandoned = left,
                "shutdown grace ran out; these jobs will be redelivered"
            );
            stats.abandoned.fetch_add(left, Ordering::Relaxed);
            shared.abandon_all();
        }
        if !exactly_once {
            for (p, pos) in shared.positions() {
                store_offset(&*consumer, &shared.jobs_topic, p, pos);
            }
            match consumer.commit_consumer_state(CommitMode::Sync) {
                Ok(()) => {
                    stats.commits.fetch_add(1, Ordering::Relaxed);
                }
                Err(KafkaError::ConsumerCommit(rdkafka::types::RDKafkaErrorCode::NoOffset)) => {}
                Err(e) => tracing::warn!(error = %e, "final commit failed"),
            }
        }
        // With exactly_once, closing the channel lets the committer finish its last batch
        // (abandoned jobs drop their handles as they stop).
        drop(env);
        let committed = match committer_task {
            None => Ok(()),
            Some(task) => match tokio::time::timeout(Duration::from_secs(60), task).await {
                Ok(r) => r.expect("committer panicked"),
                Err(_) => {
                    tracing::warn!("the transaction committer did not finish in time");
                    Ok(())
                }
            },
        };
        consumer.unsubscribe();
        if let Err(e) = publisher.flush(Duration::from_secs(10)) {
            tracing::warn!(error = %e, "producer flush failed");
        }
        close_consumer(consumer, CONSUMER_CLOSE_LIMIT).await;
        committed?;
        tracing::info!("worker stopped");
        Ok(())
    }
}

/// How long a stopping worker waits for its consumer to close (leave the group).
const CONSUMER_CLOSE_LIMIT: Duration = Duration::from_secs(10);

/// Drops the consumer, which leaves the group, on a thread of its own and waits at most
/// `limit`. librdkafka's close serves the revoke that `unsubscribe` caused, and an assignment
/// call in that rebalance can block for good (seen with a second instance joining as this one
/// stopped); a stopping worker must not hang on it. Its offsets are committed by then; if the
/// close does not finish, the group moves its partitions once the session times out.
async fn close_consumer(consumer: Arc<JobConsumer>, limit: Duration) {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        drop(consumer);
        let _ = tx.send(());
    });
    if tokio::time::timeout(limit, rx).await.is_err() {
        tracing::warn!(
            limit = ?limit,
            "the consumer did not close in time; stopping without waiting for it"
        );
    }
}

/// Starts a job: registers its offset and spawns its task. A record whose partition was revoked
/// since it was read is dropped (the next owner consumes it again). `probe` marks the one job
/// the open breaker lets through.
fn start(env: &Arc<JobEnv>, breaker: &Gatekeeper, taken: Taken, probe: bool) {
    let Some(token) = register(&env.shared, &taken) else {
        return;
    };
    if probe {
        // Only this loop moves the breaker from open to probing, so the gate it just read
        // still holds.
        let started = breaker.start_probe();
        debug_assert!(started, "the probe gate closed under the run loop");
    }
    env.stats.consumed.fetch_add(1, Ordering::Relaxed);
    env.stats.in_flight.fetch_add(1, Ordering::AcqRel);
    let span = tracing::info_span!(
        "job",
        partition = taken.partition,
        offset = taken.offset,
        probe,
        job_id = tracing::field::Empty
    );
    tokio::spawn(job_task(env.clone(), taken, token, probe).instrument(span));
}

/// Pauses every assigned partition; `None` when the assignment cannot be read or paused.
fn pause(consumer: &JobConsumer, stats: &Stats) -> Option<TopicPartitionList> {
    let a = consumer.assignment().ok()?;
    consumer.pause(&a).ok()?;
    stats
        .paused_partitions
        .store(a.count() as u64, Ordering::Relaxed);
    stats.paused.store(true, Ordering::Relaxed);
    Some(a)
}

/// Resumes what [`pause`] paused, as far as it is still assigned.
fn resume(consumer: &JobConsumer, stats: &Stats, paused: TopicPartitionList) {
    let now = consumer.assignment().unwrap_or(paused);
    let _ = consumer.resume(&now);
    stats.paused.store(false, Ordering::Relaxed);
    stats.paused_partitions.store(0, Ordering::Relaxed);
}

/// How long a full window may go without polling before the partitions are paused: well inside
/// `max.poll.interval.ms` (librdkafka's default 300 s, or what `kafka.properties` sets).
fn pause_after(config: &Config) -> Duration {
    let max_poll = config
        .kafka
        .properties
        .get("max.poll.interval.ms")
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(300_000);
    Duration::from_millis((max_poll / 4).clamp(10, 1_000))
}
