//! Before consuming: the brokers answer and the jobs, results and dead-letter topics exist (a
//! missing one stops start-up, or is waited for with `worker.wait_for_topics`). While running:
//! a readiness check keeps `/readyz` honest about the brokers and the topics, asking the brokers every
//! [`RECHECK_INTERVAL`] while something is wrong and every [`READY_RECHECK`] while all is well, and
//! at once (at the next [`RECHECK_INTERVAL`]) when librdkafka reports the brokers lost.

use super::error::WorkerError;
use crate::config::Config;
use crate::kafka::acl::{self, Authorization};
use crate::kafka::connect;
use crate::kafka::producer::Publisher;
use crate::kafka::topics::{self, Presence, TopicState};
use crate::telemetry::counters::WorkerCounters;
use crate::telemetry::events::{BrokersAnswered, BrokersChecked, BrokersUnreachable};
use rdkafka::producer::Producer;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How often readiness checks the brokers and the topics, and a waiting preflight looks again.
pub(super) const RECHECK_INTERVAL: Duration = Duration::from_secs(2);

/// How often the readiness check asks the brokers about the topics while the last answer was good and
/// librdkafka reported no broker lost since (a lost topic is seen within this plus one
/// [`RECHECK_INTERVAL`]).
pub(super) const READY_RECHECK: Duration = Duration::from_secs(10);

/// Checks the brokers and the topics before anything is consumed. `Ok(true)`: go on;
/// `Ok(false)`: `cancel` fired while waiting for a topic (nothing was consumed).
pub(super) async fn preflight(
    publisher: &Arc<Publisher>,
    config: &Config,
    counters: &WorkerCounters,
    cancel: &CancellationToken,
) -> Result<bool, WorkerError> {
    first_contact(config).await?;
    let mut first = true;
    let mut told = Vec::new();
    loop {
        let states = match fetch_states(publisher, config).await {
            Ok(s) => s,
            Err(source) if first => {
                return Err(WorkerError::Unreachable {
                    brokers: config.kafka.brokers.clone(),
                    timeout: config.kafka.connect_timeout,
                    source,
                })
            }
            Err(e) => {
                BrokersUnreachable { error: &e }.emit(counters);
                Vec::new()
            }
        };
        first = false;
        if !states.is_empty() {
            BrokersAnswered.emit(counters);
            let problems: Vec<&TopicState> =
                states.iter().filter(|s| s.problem().is_some()).collect();
            if problems.is_empty() {
                for s in &states {
                    counters.clear_unready("preflight", s.key);
                    if let Presence::Present(partitions) = s.presence {
                        tracing::info!(key = s.key, topic = %s.topic, partitions, "topic found");
                    }
                }
                check_acls(publisher, config).await?;
                return Ok(true);
            }
            if !config.worker.wait_for_topics {
                return Err(refuse(publisher, config, &problems).await);
            }
            report_waiting(&states, &mut told, counters);
        }
        tokio::select! {
            _ = cancel.cancelled() => return Ok(false),
            _ = tokio::time::sleep(RECHECK_INTERVAL) => {}
        }
    }
}

/// Fails fast, and clearly, when the brokers are not there at all, refuse the credentials or
/// fail the TLS handshake: a client of its own, which stops at the first such failure.
async fn first_contact(config: &Config) -> Result<(), WorkerError> {
    let timeout = config.kafka.connect_timeout;
    let c = config.clone();
    tokio::task::spawn_blocking(move || {
        connect::connect(&c, "silentauth-worker-preflight", timeout).map(|_| ())
    })
    .await
    .expect("connection check panicked")
    .map_err(|error| WorkerError::Connect {
        brokers: config.kafka.brokers.clone(),
        timeout,
        error,
    })
}

/// The state of every configured topic, from the brokers' metadata.
async fn fetch_states(
    publisher: &Arc<Publisher>,
    config: &Config,
) -> Result<Vec<TopicState>, rdkafka::error::KafkaError> {
    let (p, c) = (publisher.clone(), config.clone());
    tokio::task::spawn_blocking(move || {
        topics::inspect(p.producer().client(), &c, c.kafka.connect_timeout)
    })
    .await
    .expect("metadata request panicked")
}

/// The error that stops start-up on topics that cannot be used: a missing ACL, named, when one
/// of them is refused rather than missing; else the topics' problems.
async fn refuse(
    publisher: &Arc<Publisher>,
    config: &Config,
    problems: &[&TopicState],
) -> WorkerError {
    if problems
        .iter()
        .any(|s| matches!(s.presence, Presence::Error(_)))
    {
        if let Err(e) = check_acls(publisher, config).await {
            return e;
        }
    }
    WorkerError::Topics {
        brokers: config.kafka.brokers.clone(),
        problems: problems.iter().filter_map(|s| s.problem()).collect(),
    }
}

/// While waiting for topics (`worker.wait_for_topics`): each missing one logged once and kept as
/// a `/readyz` reason; each found one logged and cleared.
fn report_waiting(states: &[TopicState], told: &mut Vec<&'static str>, counters: &WorkerCounters) {
    for s in states {
        match s.problem() {
            Some(p) => {
                let reason = format!("waiting (worker.wait_for_topics): {p}");
                if !told.contains(&s.key) {
                    tracing::warn!(key = s.key, topic = %s.topic, "{reason}");
                    told.push(s.key);
                }
                counters.set_unready("preflight", s.key, reason);
            }
            None => {
                if counters.clear_unready("preflight", s.key) {
                    tracing::info!(key = s.key, topic = %s.topic, "topic found");
                }
            }
        }
    }
}

/// Every ACL `run` needs on the topics and the group ([`acl::needed`]): a missing one stops
/// start-up naming it. Brokers that report no authorized operations (no authorizer) pass; a
/// describe request that goes unanswered is logged and passes too (the worker's own requests
/// then fail loudly on their own).
async fn check_acls(publisher: &Arc<Publisher>, config: &Config) -> Result<(), WorkerError> {
    let (p, c) = (publisher.clone(), config.clone());
    let verdict = tokio::task::spawn_blocking(move || {
        acl::check(p.producer().client(), &c, c.kafka.connect_timeout)
    })
    .await
    .expect("ACL check panicked");
    match verdict {
        Ok(Authorization::Granted) => {
            tracing::info!("the brokers grant every ACL the worker needs");
            Ok(())
        }
        Ok(Authorization::Unknown) => Ok(()),
        Ok(Authorization::Missing(missing)) => {
            let problems: Vec<String> = missing.iter().map(acl::Needed::problem).collect();
            for p in &problems {
                tracing::error!("{p}");
            }
            Err(WorkerError::Acls {
                brokers: config.kafka.brokers.clone(),
                problems,
            })
        }
        Err(e) => {
            tracing::warn!("the brokers did not say which ACLs this client has: {e}");
            Ok(())
        }
    }
}

/// Sets `counters.brokers_ok` from a metadata request per topic, and records (as source `"readiness"`)
/// each configured topic the brokers no longer know, so `/readyz` turns 503 with the reason
/// while the cluster is unreachable or a topic is gone, even with no job flowing. It asks every
/// [`RECHECK_INTERVAL`] while the last answer was bad (or a topic missing), after librdkafka
/// reported a broker lost, and otherwise every [`READY_RECHECK`].
pub(super) async fn check_readiness(
    publisher: Arc<Publisher>,
    config: Config,
    counters: Arc<WorkerCounters>,
    stop: CancellationToken,
) {
    let topics: Vec<(&'static str, String)> = topics::configured(&config)
        .into_iter()
        .map(|(k, t)| (k, t.to_owned()))
        .collect();
    let mut seen_losses = publisher.broker_losses();
    let mut asked = Instant::now();
    // Start-up's preflight has just found everything in order.
    let mut healthy = true;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(RECHECK_INTERVAL) => {}
        }
        let losses = publisher.broker_losses();
        if healthy && losses == seen_losses && asked.elapsed() < READY_RECHECK {
            continue;
        }
        (seen_losses, asked) = (losses, Instant::now());
        let (p, t) = (publisher.clone(), topics.clone());
        // One request per topic: a request for every topic would be large on a big cluster.
        // The first that goes unanswered says the brokers do not answer: the others are not
        // asked (each would wait its own timeout, and readiness would lag the outage).
        let answers = tokio::task::spawn_blocking(move || {
            let mut answers = Vec::with_capacity(t.len());
            for (key, topic) in t {
                let m = p
                    .producer()
                    .client()
                    .fetch_metadata(Some(&topic), RECHECK_INTERVAL);
                let failed = m.is_err();
                answers.push((key, topic.clone(), m.map(|m| topics::presence(&m, &topic))));
                if failed {
                    break;
                }
            }
            answers
        })
        .await
        .unwrap_or_default();
        let ok = !answers.is_empty() && answers.iter().all(|(_, _, a)| a.is_ok());
        BrokersChecked { answered: ok }.emit(&counters);
        healthy = ok;
        for (key, topic, answer) in answers {
            let Ok(presence) = answer else { continue };
            let state = TopicState {
                key,
                topic,
                presence,
            };
            match state.problem() {
                Some(p) => {
                    healthy = false;
                    if !counters.unready_reasons().contains(&p) {
                        tracing::error!(key, topic = %state.topic, "{p}; not ready");
                    }
                    counters.set_unready("readiness", key, p);
                }
                None => {
                    if counters.clear_unready("readiness", key) {
                        tracing::info!(key, topic = %state.topic, "topic found again");
                    }
                }
            }
        }
    }
}
