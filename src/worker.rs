//! The run loop: consume jobs, verify them concurrently (up to `worker.max_in_flight`), publish
//! results and dead letters, and store each partition's offset only up to its lowest unfinished
//! job, after the broker acknowledged what the finished jobs produced.

use crate::config::{Config, RateLimitScope};
use crate::contract::dead_letter::{DeadLetterHeaders, SourceRecord};
use crate::contract::{ErrorClass, ErrorInfo, Job, JobResult, Stage};
use crate::idempotency::IdempotencyCache;
use crate::kafka::consumer::{consumer_config, Shared, WorkerContext};
use crate::kafka::offsets::OffsetTracker;
use crate::kafka::producer::{DeadLetterRecord, Publisher};
use crate::kafka::warmup::ResultsReader;
use crate::secret::mask_msisdn;
use crate::silentauth::SilentAuthClient;
use crate::stats::Stats;
use crate::verify::{invalid_job_result, JobContext, Verifier};
use chrono::{TimeZone, Utc};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::producer::Producer;
use rdkafka::topic_partition_list::TopicPartitionList;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// Why the worker stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The brokers did not answer within `kafka.connect_timeout`.
    #[error(
        "cannot reach Kafka at {brokers} within kafka.connect_timeout ({timeout:?}): {source}"
    )]
    Unreachable {
        /// `kafka.brokers`.
        brokers: String,
        /// `kafka.connect_timeout`.
        timeout: Duration,
        /// The client's error.
        source: KafkaError,
    },
    /// A Kafka client could not be created or used.
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    /// The HTTP client could not be built.
    #[error(transparent)]
    Http(#[from] crate::silentauth::client::ClientError),
}

type Consumer_ = StreamConsumer<WorkerContext>;

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

/// Everything a job task needs.
struct JobEnv {
    verifier: Verifier<SilentAuthClient>,
    publisher: Publisher,
    shared: Arc<Shared>,
    consumer: Arc<Consumer_>,
    group_id: String,
    stats: Arc<Stats>,
}

/// A consumed record, copied out of librdkafka's buffer.
struct Taken {
    partition: i32,
    offset: i64,
    epoch: u64,
    timestamp_ms: Option<i64>,
    key: Option<Vec<u8>>,
    payload: Option<Vec<u8>>,
    traceparent: Option<String>,
    replay_count: u32,
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
        let api = SilentAuthClient::new(&config.api.base_url, config.api.timeout)?;
        let verifier = Verifier::from_config(api, &config);
        let publisher = Publisher::new(&config)?;

        // Fail fast, and clearly, when the brokers are not there.
        let timeout = config.kafka.connect_timeout;
        let probe = publisher.producer().client().fetch_metadata(None, timeout);
        if let Err(source) = probe {
            return Err(WorkerError::Unreachable {
                brokers: config.kafka.brokers.clone(),
                timeout,
                source,
            });
        }
        stats.producer_ok.store(true, Ordering::Relaxed);

        // Warm the idempotency cache before taking any job.
        let cache = IdempotencyCache::new(config.worker.idempotency_cache_size);
        let mut reader = ResultsReader::new(&config)?;
        let reader = tokio::task::spawn_blocking(move || {
            let n = reader.catch_up(&cache);
            (reader, cache, n)
        })
        .await
        .expect("warm-up task panicked");
        let (reader, cache, warmed) = reader;
        match warmed {
            Ok(n) => tracing::info!(
                results = n,
                "idempotency cache warmed from the results topic"
            ),
            Err(e) => tracing::warn!(error = %e, "could not warm the idempotency cache"),
        }

        let shared_limiters = match config.rate_limit.scope {
            RateLimitScope::PartitionShare => verifier.limiters().cloned().collect(),
            RateLimitScope::Instance => Vec::new(),
        };
        let shared = Arc::new(Shared {
            jobs_topic: config.topics.jobs.clone(),
            tracker: std::sync::Mutex::new(OffsetTracker::default()),
            partition_tokens: Default::default(),
            abandon_all: CancellationToken::new(),
            cache,
            warmup: std::sync::Mutex::new(reader),
            revoke_grace: config.worker.revoke_grace,
            shared_limiters,
            stats: stats.clone(),
            finished: tokio::sync::Notify::new(),
        });
        let consumer: Consumer_ = consumer_config(&config).create_with_context(WorkerContext {
            shared: shared.clone(),
        })?;
        consumer.subscribe(&[&config.topics.jobs])?;
        let consumer = Arc::new(consumer);
        let env = Arc::new(JobEnv {
            verifier,
            publisher,
            shared: shared.clone(),
            consumer: consumer.clone(),
            group_id: config.kafka.group_id.clone(),
            stats: stats.clone(),
        });

        let max_in_flight = config.worker.max_in_flight.max(1) as u64;
        let resume_at = max_in_flight - max_in_flight / 4;
        let mut paused: Option<TopicPartitionList> = None;
        tracing::info!(topic = %config.topics.jobs, group = %config.kafka.group_id, "worker started");
        loop {
            let in_flight = stats.in_flight.load(Ordering::Acquire);
            if paused.is_none() && in_flight >= max_in_flight {
                if let Ok(a) = consumer.assignment() {
                    if consumer.pause(&a).is_ok() {
                        paused = Some(a);
                    }
                }
            } else if in_flight < resume_at {
                if let Some(a) = paused.take() {
                    // Only what is still assigned can be resumed.
                    let now = consumer.assignment().unwrap_or(a);
                    let _ = consumer.resume(&now);
                }
            }
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                _ = shared.finished.notified(), if paused.is_some() => continue,
                m = consumer.recv() => match m {
                    Ok(m) => {
                        let Some(taken) = take(&shared, &m) else { continue };
                        stats.consumed.fetch_add(1, Ordering::Relaxed);
                        stats.in_flight.fetch_add(1, Ordering::AcqRel);
                        let token = shared
                            .partition_tokens
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .get(&taken.partition)
                            .cloned()
                            .unwrap_or_default();
                        let span = tracing::info_span!("job", partition = taken.partition, offset = taken.offset, job_id = tracing::field::Empty);
                        tokio::spawn(job_task(env.clone(), taken, token).instrument(span));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "consumer error");
                    }
                }
            }
        }

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
            shared.abandon_all.cancel();
        }
        let positions = shared
            .tracker
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .positions();
        for (p, pos) in positions {
            shared.store(&*consumer, p, pos);
        }
        match consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) => {
                stats.commits.fetch_add(1, Ordering::Relaxed);
            }
            Err(KafkaError::ConsumerCommit(rdkafka::types::RDKafkaErrorCode::NoOffset)) => {}
            Err(e) => tracing::warn!(error = %e, "final commit failed"),
        }
        consumer.unsubscribe();
        if let Err(e) = env.publisher.flush(Duration::from_secs(10)) {
            tracing::warn!(error = %e, "producer flush failed");
        }
        tracing::info!("worker stopped");
        Ok(())
    }
}

/// Copies a record out and registers its offset, unless its partition is no longer ours.
fn take(shared: &Shared, m: &rdkafka::message::BorrowedMessage<'_>) -> Option<Taken> {
    let partition = m.partition();
    let offset = m.offset();
    let epoch = {
        let mut t = shared.tracker.lock().unwrap_or_else(|e| e.into_inner());
        let epoch = t.epoch(partition)?;
        t.start(partition, epoch, offset).then_some(epoch)?
    };
    let mut traceparent = None;
    let mut replay_count = 0;
    if let Some(h) = m.headers() {
        for header in h.iter() {
            match header.key {
                "traceparent" => {
                    traceparent = header
                        .value
                        .and_then(|v| std::str::from_utf8(v).ok())
                        .map(str::to_owned)
                }
                crate::contract::dead_letter::header::REPLAY_COUNT => {
                    replay_count = header
                        .value
                        .and_then(|v| std::str::from_utf8(v).ok())
                        .and_then(|s| s.trim().parse().ok())
                        .unwrap_or(0)
                }
                _ => {}
            }
        }
    }
    Some(Taken {
        partition,
        offset,
        epoch,
        timestamp_ms: m.timestamp().to_millis(),
        key: m.key().map(<[u8]>::to_vec),
        payload: m.payload().map(<[u8]>::to_vec),
        traceparent,
        replay_count,
    })
}

async fn job_task(env: Arc<JobEnv>, taken: Taken, token: CancellationToken) {
    let (partition, offset, epoch) = (taken.partition, taken.offset, taken.epoch);
    let done = tokio::select! {
        _ = token.cancelled() => false,
        _ = process(&env, taken) => true,
    };
    if done {
        let position = env
            .shared
            .tracker
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .finish(partition, epoch, offset);
        if let Some(pos) = position {
            env.shared.store(&*env.consumer, partition, pos);
        }
    }
    env.stats.in_flight.fetch_sub(1, Ordering::AcqRel);
    env.shared.finished.notify_one();
}

/// Verifies one record and publishes what it produced; returns once the broker acknowledged.
async fn process(env: &JobEnv, taken: Taken) {
    let ctx = JobContext {
        received_at: Utc::now(),
        replay_count: taken.replay_count,
        record_time: taken
            .timestamp_ms
            .and_then(|ms| Utc.timestamp_millis_opt(ms).single()),
    };
    let payload = taken.payload.as_deref().unwrap_or_default();
    let (result, error): (Option<JobResult>, Option<ErrorInfo>) = match Job::decode(payload) {
        Err(failure) => {
            let result = invalid_job_result(&failure, &ctx);
            let error = ErrorInfo::new(
                ErrorClass::InvalidJob,
                Stage::Job,
                failure.error.to_string(),
            );
            tracing::warn!(job_id = failure.job_id.as_deref().unwrap_or("<unreadable>"), error = %failure.error, "invalid job");
            (result, Some(error))
        }
        Ok(job) => {
            tracing::Span::current().record("job_id", job.job_id.as_str());
            let (result, duplicate) = env
                .shared
                .cache
                .run(&job.job_id, ctx.replay_count, || async {
                    let out = env.verifier.verify(&job, &ctx).await;
                    env.stats
                        .http_requests
                        .fetch_add(out.result.attempts as u64, Ordering::Relaxed);
                    env.stats
                        .retries
                        .fetch_add(out.retries as u64, Ordering::Relaxed);
                    out.result
                })
                .await;
            let mut result = result;
            if duplicate {
                result.duplicate = true;
                env.stats.duplicates.fetch_add(1, Ordering::Relaxed);
            }
            tracing::debug!(
                login_hint = %mask_msisdn(&job.login_hint),
                status = result.status.as_str(),
                class = result.error.as_ref().map(|e| e.class.as_str()),
                duplicate,
                "verified"
            );
            let error = result
                .error
                .clone()
                .filter(|e| e.class.dead_lettered() && !duplicate);
            (Some(result), error)
        }
    };
    let dead_letter = error.as_ref().map(|e| {
        let source = SourceRecord {
            topic: env.shared.jobs_topic.clone(),
            partition: taken.partition,
            offset: taken.offset,
            timestamp_ms: taken.timestamp_ms,
            traceparent: taken.traceparent.clone(),
        };
        let attempts = result.as_ref().map_or(0, |r| r.attempts);
        DeadLetterRecord {
            key: taken.key.clone(),
            value: taken.payload.clone(),
            headers: DeadLetterHeaders::for_failure(
                &source,
                e,
                attempts,
                &env.group_id,
                taken.replay_count,
                Utc::now(),
            )
            .to_headers(),
        }
    });

    // Publish until acknowledged: a result that cannot be produced is never marked done.
    let mut backoff = Duration::from_millis(100);
    loop {
        match env
            .publisher
            .publish(
                result.as_ref(),
                dead_letter.as_ref(),
                taken.traceparent.as_deref(),
            )
            .await
        {
            Ok(()) => break,
            Err(e) => {
                env.stats.produce_errors.fetch_add(1, Ordering::Relaxed);
                env.stats.producer_ok.store(false, Ordering::Relaxed);
                tracing::error!(error = %e, retry_in = ?backoff, "cannot publish the result; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
    env.stats.producer_ok.store(true, Ordering::Relaxed);
    if let Some(r) = &result {
        env.stats
            .result(r.status, r.error.as_ref().map(|e| e.class));
    }
    if let Some(e) = &error {
        env.stats.dead_letter(e.class);
    }
}
