//! Start-up: the HTTP client and verifier, the admin listener, the producer, the preflight (the
//! brokers answer and every topic exists), transactions with `exactly_once`, the readiness
//! readiness check, the worker state and the group consumer (whose every assignment, the first included,
//! warms the idempotency cache before a job of it is taken), and the transaction committer.

use super::breaker::Gatekeeper;
use super::committer;
use super::error::WorkerError;
use super::job::JobEnv;
use super::preflight;
use super::rebalance::{JobConsumer, WorkerContext};
use super::state::WorkerState;
use crate::config::{Config, Delivery, RateLimitScope};
use crate::kafka::consumer::group_consumer_config;
use crate::kafka::ledger::KafkaLedger;
use crate::kafka::producer::Publisher;
use crate::kafka::readback::ResultFetcher;
use crate::kafka::transactions::{self, TxnError};
use crate::kafka::warmup::ResultsReader;
use crate::silentauth::SilentAuthClient;
use crate::telemetry::counters::WorkerCounters;
use crate::telemetry::events::PreflightPassed;
use crate::telemetry::prometheus::{HttpMetrics, ProfileLimits, Telemetry};
use crate::verify::{PresentationLedger, Verifier};
use rdkafka::consumer::Consumer;
use std::sync::Arc;
use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, DropGuard};

/// A started worker: what the run loop and the drain work with.
pub struct Started {
    /// Everything a job task needs. With `exactly_once` it holds the committer's channel,
    /// which closes once every copy is dropped.
    pub env: Arc<JobEnv>,
    /// The shared state.
    pub state: Arc<WorkerState>,
    /// The group consumer, subscribed to the jobs topic.
    pub consumer: Arc<JobConsumer>,
    /// The producer of results and dead letters.
    pub publisher: Arc<Publisher>,
    /// Cancelled when the transactional producer was fenced: the worker must stop.
    pub fenced: CancellationToken,
    /// The transaction committer, with `exactly_once`.
    pub committer: Option<JoinHandle<Result<(), TxnError>>>,
    /// Stop the readiness check and the admin listener when dropped.
    pub guards: (DropGuard, DropGuard),
}

/// Starts everything; `Ok(None)` when `cancel` fired while waiting for topics (nothing was
/// consumed).
pub async fn start(
    config: &Config,
    counters: &Arc<WorkerCounters>,
    cancel: &CancellationToken,
) -> Result<Option<Started>, WorkerError> {
    for warning in config.warnings() {
        tracing::warn!("{warning}");
    }
    let api = SilentAuthClient::new(&config.api.base_url, config.api.timeout)?
        .with_signals_base_url(&config.api.signals_base_url)?;
    let http_metrics = Arc::new(HttpMetrics::default());
    let verifier = Verifier::from_config(api, config).with_observer(http_metrics.clone());
    // The admin listener lives as long as the worker, whichever way it stops.
    let admin_guard = serve_admin(config, counters, &verifier, &http_metrics).await;
    let exactly_once = config.worker.delivery == Delivery::ExactlyOnce;
    let publisher = Arc::new(if exactly_once {
        Publisher::transactional(config)?
    } else {
        Publisher::new(config)?
    });
    if !preflight::preflight(&publisher, config, counters, cancel).await? {
        tracing::info!("stopped while waiting for topics; nothing was consumed");
        return Ok(None);
    }
    if exactly_once {
        let p = publisher.clone();
        tokio::task::spawn_blocking(move || transactions::init(&p))
            .await
            .expect("init task panicked")?;
    }
    PreflightPassed.emit(counters);
    let readiness_guard = start_readiness_check(&publisher, config, counters);

    let state = Arc::new(WorkerState::with_stop(
        config,
        counters.clone(),
        cancel.clone(),
    ));
    let consumer = subscribe(config, &state, &verifier)?;
    let fenced = CancellationToken::new();
    let (committer_tx, committer) = if exactly_once {
        let (p, s, c) = (publisher.clone(), state.clone(), consumer.clone());
        let (tx, task) = committer::spawn(p, s, c, fenced.clone());
        (Some(tx), Some(task))
    } else {
        (None, None)
    };
    let env = Arc::new(JobEnv {
        verifier,
        publisher: publisher.clone(),
        state: state.clone(),
        consumer: consumer.clone(),
        group_id: config.kafka.group_id.clone(),
        counters: counters.clone(),
        committer: committer_tx,
        breaker: Arc::new(Gatekeeper::new(&config.worker.breaker, counters.clone())),
        fetcher: ResultFetcher::new(config)?,
        ledger: ledger(config, &publisher)?,
    });
    tracing::info!(topic = %config.topics.jobs, group = %config.kafka.group_id, "worker started");
    Ok(Some(Started {
        env,
        state,
        consumer,
        publisher,
        fenced,
        committer,
        guards: (readiness_guard, admin_guard),
    }))
}

/// The presentation ledger, with `worker.ledger`: written through the worker's producer, or
/// with `exactly_once` through a producer of its own (a record must be acknowledged before the
/// token request, outside any transaction).
fn ledger(
    config: &Config,
    publisher: &Arc<Publisher>,
) -> Result<Option<Arc<dyn PresentationLedger>>, WorkerError> {
    if !config.worker.ledger {
        return Ok(None);
    }
    let producer = match config.worker.delivery {
        Delivery::ExactlyOnce => Arc::new(Publisher::new(config)?),
        Delivery::AtLeastOnce => publisher.clone(),
    };
    let ledger = KafkaLedger::new(producer, config.topics.ledger.clone());
    Ok(Some(Arc::new(ledger)))
}

/// Starts the admin listener (metrics, health, status); it stops when the guard is dropped.
async fn serve_admin(
    config: &Config,
    counters: &Arc<WorkerCounters>,
    verifier: &Verifier<SilentAuthClient>,
    http_metrics: &HttpMetrics,
) -> DropGuard {
    let stop = CancellationToken::new();
    let guard = stop.clone().drop_guard();
    let limiters = verifier
        .profiles()
        .map(|(name, p)| ProfileLimits {
            client: name.to_owned(),
            limiter: p.limiter.clone(),
            concurrency: p.concurrency.clone(),
        })
        .collect();
    let telemetry = Telemetry::new(counters.clone(), http_metrics, limiters);
    crate::telemetry::admin::start(&config.admin.listen, counters.clone(), telemetry, stop).await;
    guard
}

/// Readiness follows the brokers and the topics: a metadata request per topic (see [`preflight::check_readiness`]),
/// until the guard is dropped.
fn start_readiness_check(
    publisher: &Arc<Publisher>,
    config: &Config,
    counters: &Arc<WorkerCounters>,
) -> DropGuard {
    let stop = CancellationToken::new();
    let guard = stop.clone().drop_guard();
    let (p, c, s) = (publisher.clone(), config.clone(), counters.clone());
    tokio::spawn(preflight::check_readiness(p, c, s, stop));
    guard
}

/// The group consumer, subscribed to the jobs topic. Its context warms the idempotency cache
/// from the results topic on every assignment ([`crate::kafka::warmup`]) and, with
/// `rate_limit.scope = "partition_share"`, scales the verifier's limiters to the partition share.
fn subscribe(
    config: &Config,
    state: &Arc<WorkerState>,
    verifier: &Verifier<SilentAuthClient>,
) -> Result<Arc<JobConsumer>, WorkerError> {
    let reader = ResultsReader::new(config)?;
    let ledger = match config.worker.ledger {
        true => Some(ResultsReader::ledger(config)?),
        false => None,
    };
    let shared_limiters = match config.rate_limit.scope {
        RateLimitScope::PartitionShare => verifier.limiters().cloned().collect(),
        RateLimitScope::Instance => Vec::new(),
    };
    let context = WorkerContext::new(config, state.clone(), (reader, ledger), shared_limiters);
    let exactly_once = config.worker.delivery == Delivery::ExactlyOnce;
    let consumer: JobConsumer =
        group_consumer_config(config, exactly_once).create_with_context(context)?;
    consumer.subscribe(&[&config.topics.jobs])?;
    Ok(Arc::new(consumer))
}
