//! The topics the worker uses and whether each exists, read from metadata: backs the
//! start-up preflight, the readiness check and `doctor`. Nothing here creates a topic.

use crate::config::Config;
use rdkafka::client::{Client, ClientContext};
use rdkafka::error::KafkaError;
use rdkafka::metadata::Metadata;
use rdkafka::types::{RDKafkaErrorCode, RDKafkaRespErr};
use std::time::Duration;

/// The configured topics as (key, name): jobs, results, dead letters, and the presentation
/// ledger with `worker.ledger`.
pub fn configured(config: &Config) -> Vec<(&'static str, &str)> {
    let mut topics = vec![
        ("topics.jobs", config.topics.jobs.as_str()),
        ("topics.results", config.topics.results.as_str()),
        ("topics.dead_letter", config.topics.dead_letter.as_str()),
    ];
    if config.worker.ledger {
        topics.push(("topics.ledger", config.topics.ledger.as_str()));
    }
    topics
}

/// What metadata says about one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Presence {
    /// It exists with this many partitions.
    Present(usize),
    /// The brokers do not know it.
    Missing,
    /// The brokers answered for it with another error (e.g. not authorized).
    Error(String),
}

/// One configured topic and what metadata says about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicState {
    /// The configuration key, e.g. `topics.results`.
    pub key: &'static str,
    /// The topic's name.
    pub topic: String,
    /// What the brokers said.
    pub presence: Presence,
}

impl TopicState {
    /// A one-line problem naming the key, the topic and the fix; `None` when it exists.
    pub fn problem(&self) -> Option<String> {
        let (key, topic) = (self.key, &self.topic);
        match &self.presence {
            Presence::Present(_) => None,
            Presence::Missing => Some(format!(
                "{key}: topic '{topic}' does not exist; create it, or correct {key}"
            )),
            Presence::Error(e) => Some(format!(
                "{key}: topic '{topic}' cannot be used: {e}; check the topic and this client's ACLs"
            )),
        }
    }
}

/// What `metadata` says about `topic`.
pub fn presence(metadata: &Metadata, topic: &str) -> Presence {
    match metadata.topics().iter().find(|t| t.name() == topic) {
        None => Presence::Missing,
        Some(t) => match t.error() {
            None => Presence::Present(t.partitions().len()),
            Some(e) if is_unknown_topic(e) => Presence::Missing,
            Some(e) => Presence::Error(RDKafkaErrorCode::from(e).to_string()),
        },
    }
}

fn is_unknown_topic(e: RDKafkaRespErr) -> bool {
    matches!(
        e,
        RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART
            | RDKafkaRespErr::RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC
            | RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_ID
    )
}

/// Every configured topic's state from one metadata request for all topics (which never
/// creates a topic, whatever `allow.auto.create.topics` says), and one by name for a topic
/// missing from it (telling an authorization failure apart). Blocking.
pub fn inspect<C: ClientContext>(
    client: &Client<C>,
    config: &Config,
    timeout: Duration,
) -> Result<Vec<TopicState>, KafkaError> {
    let metadata = client.fetch_metadata(None, timeout)?;
    let mut states = states(&metadata, config);
    refine(client, &mut states, timeout);
    Ok(states)
}

/// Asks again, by name, for each topic `states` has as missing: a topic this client may not
/// describe is left out of the answer for every topic, as if it did not exist; asked for by
/// name, the brokers say that authorization failed. Blocking.
pub fn refine<C: ClientContext>(client: &Client<C>, states: &mut [TopicState], timeout: Duration) {
    for s in states
        .iter_mut()
        .filter(|s| s.presence == Presence::Missing)
    {
        if let Ok(m) = client.fetch_metadata(Some(&s.topic), timeout) {
            if let Presence::Error(e) = presence(&m, &s.topic) {
                s.presence = Presence::Error(format!(
                    "{e} (it may not exist, or this client's principal may not Describe it)"
                ));
            }
        }
    }
}

/// Every configured topic's state in `metadata`.
pub fn states(metadata: &Metadata, config: &Config) -> Vec<TopicState> {
    configured(config)
        .into_iter()
        .map(|(key, topic)| TopicState {
            key,
            topic: topic.to_owned(),
            presence: presence(metadata, topic),
        })
        .collect()
}
