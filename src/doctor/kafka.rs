//! Kafka checks: the brokers answer with the configured TLS/SASL, each topic exists (with its
//! partition count), the results and dead-letter topics keep records long enough (in
//! [`super::retention`]), and the consumer group's state and lag.

use super::capture::Capture;
use super::check::Check;
use super::retention::{admin_timeout, describe, retention};
use crate::config::Config;
use crate::kafka::acl::{self, Authorization};
use crate::kafka::connect;
use crate::kafka::topics::{self, Presence, TopicState};
use rdkafka::admin::AdminClient;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaResult;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::time::Duration;

/// The worker's connection settings: the brokers and `kafka.properties` (TLS, SASL).
fn client_config(config: &Config) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &config.kafka.brokers)
        .set("client.id", "silentauth-worker-doctor")
        .set("allow.auto.create.topics", "false");
    for (k, v) in &config.kafka.properties {
        c.set(k, v);
    }
    c
}

/// `security.protocol` (and `sasl.mechanism`) as configured, for the report.
fn security(config: &Config) -> String {
    let p = &config.kafka.properties;
    let protocol = p
        .get("security.protocol")
        .map_or("plaintext", String::as_str);
    match p.get("sasl.mechanism") {
        Some(m) if protocol.to_ascii_lowercase().starts_with("sasl") => {
            format!("security.protocol {protocol}, sasl.mechanism {m}")
        }
        _ => format!("security.protocol {protocol}"),
    }
}

/// Every Kafka check, in order; later ones are skipped when the brokers do not answer.
pub(super) async fn checks(config: &Config) -> Vec<Check> {
    let (broker_count, states) = match inspect(config).await {
        Ok(a) => a,
        Err(e) => return unanswered(config, &e),
    };
    let mut out = vec![Check::pass(
        "kafka.brokers",
        format!(
            "{} broker(s) answer at {} with {}",
            broker_count,
            config.kafka.brokers,
            security(config)
        ),
    )];
    out.extend(states.iter().map(topic_check));
    let admin: AdminClient<Capture> = match client_config(config).create_with_context(Capture) {
        Ok(a) => a,
        Err(e) => {
            out.push(Check::fail(
                "kafka.brokers",
                format!("cannot create a Kafka admin client: {e}"),
                "fix the librdkafka settings in kafka.properties",
            ));
            return out;
        }
    };
    // A topic that cannot be used (rather than one that does not exist) may lack an ACL.
    out.push(if states.iter().all(|s| s.presence != Presence::Missing) {
        acls(config).await
    } else {
        Check::skip("kafka ACLs", "a topic does not exist")
    });
    out.extend(retentions(config, &admin, &states).await);
    let partitions = states.iter().find_map(|s| match s.presence {
        Presence::Present(n) if s.key == "topics.jobs" => Some(n),
        _ => None,
    });
    out.push(match partitions {
        Some(n) => group(config, n as i32).await,
        None => Check::skip("kafka.group_id", "the jobs topic does not exist"),
    });
    out
}

/// The first contact (within `kafka.connect_timeout`, stopping at the first TLS or SASL
/// refusal) and the state of every configured topic: the number of brokers and the states.
async fn inspect(config: &Config) -> Result<(usize, Vec<TopicState>), connect::ConnectError> {
    let timeout = config.kafka.connect_timeout;
    let c = config.clone();
    tokio::task::spawn_blocking(move || {
        let metadata = connect::connect(&c, "silentauth-worker-doctor", timeout)?;
        let mut states = topics::states(&metadata, &c);
        if let Ok(client) =
            client_config(&c).create_with_context::<_, BaseConsumer<Capture>>(Capture)
        {
            topics::refine(client.client(), &mut states, timeout);
        }
        Ok((metadata.brokers().len(), states))
    })
    .await
    .expect("metadata task panicked")
}

/// The brokers did not answer: `kafka.brokers` fails with the reason, every later check skips.
fn unanswered(config: &Config, e: &connect::ConnectError) -> Vec<Check> {
    let mut out = vec![Check::fail(
        "kafka.brokers",
        format!(
            "no answer from {} within kafka.connect_timeout ({}) with {}: {e}",
            config.kafka.brokers,
            humantime::format_duration(config.kafka.connect_timeout),
            security(config)
        ),
        e.fix(),
    )];
    let skipped = topics::configured(config)
        .into_iter()
        .map(|(key, _)| key)
        .chain([
            "kafka ACLs",
            "topics.results retention",
            "topics.dead_letter retention",
        ])
        .chain(["kafka.group_id"]);
    out.extend(skipped.map(|key| Check::skip(key, "the brokers do not answer")));
    out
}

/// One topic: PASS with its partition count, or FAIL with what is wrong and the fix.
fn topic_check(s: &TopicState) -> Check {
    match (&s.presence, s.problem()) {
        (Presence::Present(n), _) => Check::pass(
            s.key,
            format!("topic '{}' exists, {n} partition(s)", s.topic),
        ),
        (_, Some(problem)) => {
            let (detail, fix) = problem.split_once("; ").unwrap_or((&problem, ""));
            let detail = detail.trim_start_matches(&format!("{}: ", s.key));
            Check::fail(s.key, detail, fix)
        }
        (_, None) => unreachable!("a topic that is not present has a problem"),
    }
}

/// The retention of the results and dead-letter topics (skipped for one that does not exist).
async fn retentions(
    config: &Config,
    admin: &AdminClient<Capture>,
    states: &[TopicState],
) -> Vec<Check> {
    let present = |key: &str| {
        states
            .iter()
            .any(|s| s.key == key && matches!(s.presence, Presence::Present(_)))
    };
    let outputs = [
        ("topics.results", config.topics.results.as_str()),
        ("topics.dead_letter", config.topics.dead_letter.as_str()),
    ];
    let existing: Vec<&str> = outputs
        .iter()
        .filter(|(key, _)| present(key))
        .map(|(_, t)| *t)
        .collect();
    let mut described = describe(admin, &existing, admin_timeout(config)).await;
    outputs
        .into_iter()
        .map(|(key, topic)| match described.remove(topic) {
            Some(resource) => retention(config, key, topic, resource),
            None => Check::skip(format!("{key} retention"), "the topic does not exist"),
        })
        .collect()
}

/// The ACLs `run` needs ([`acl::needed`]), from the operations the brokers say this client may
/// do on the topics and the group: FAIL naming each missing one.
async fn acls(config: &Config) -> Check {
    let c = config.clone();
    let verdict = tokio::task::spawn_blocking(move || {
        let client: BaseConsumer<Capture> = client_config(&c)
            .create_with_context(Capture)
            .map_err(|e| e.to_string())?;
        acl::check(client.client(), &c, admin_timeout(&c))
    })
    .await
    .expect("ACL task panicked");
    let needed = acl::needed(config).len();
    match verdict {
        Ok(Authorization::Granted) => Check::pass(
            "kafka ACLs",
            format!("this client may do the {needed} operations the worker needs on its topics and group"),
        ),
        Ok(Authorization::Missing(missing)) => {
            let detail: Vec<String> = missing.iter().map(acl::Needed::problem).collect();
            Check::fail(
                "kafka ACLs",
                format!("{} of {needed} needed ACLs missing: {}", missing.len(), detail.join("; ")),
                "grant the worker's principal the ACLs docs/operations.md lists",
            )
        }
        Ok(Authorization::Unknown) => Check::warn(
            "kafka ACLs",
            "the brokers do not report this client's authorized operations; ACLs not checked",
            "check the ACLs docs/operations.md lists by hand",
        ),
        Err(e) => Check::warn(
            "kafka ACLs",
            format!("the brokers did not say which operations this client may do: {e}"),
            "check the ACLs docs/operations.md lists by hand",
        ),
    }
}

/// The consumer group: its state (when the brokers describe groups) and its committed lag on
/// the jobs topic. The worker cannot run without reading the group's offsets, so a failure to
/// read them fails the check.
async fn group(config: &Config, partitions: i32) -> Check {
    let group_id = config.kafka.group_id.clone();
    let topic = config.topics.jobs.clone();
    let timeout = admin_timeout(config);
    let mut settings = client_config(config);
    settings
        .set("group.id", &group_id)
        .set("enable.auto.commit", "false");
    let consumer: BaseConsumer<Capture> = match settings.create_with_context(Capture) {
        Ok(c) => c,
        Err(e) => {
            return Check::fail(
                "kafka.group_id",
                format!("cannot create a consumer: {e}"),
                "fix the librdkafka settings in kafka.properties",
            )
        }
    };
    let g = group_id.clone();
    let (described, lag) = tokio::task::spawn_blocking(move || {
        let described = describe_group(&consumer, &g, timeout);
        (described, lag(&consumer, &topic, partitions, timeout))
    })
    .await
    .expect("group task panicked");
    match lag {
        Ok((total, 0)) => Check::pass(
            "kafka.group_id",
            format!("group '{group_id}': {described}; lag {total} on {partitions} partition(s)"),
        ),
        Ok((total, uncommitted)) => Check::pass(
            "kafka.group_id",
            format!(
                "group '{group_id}': {described}; {uncommitted} of {partitions} partition(s) \
                 without a committed offset; lag {total} (counted from the earliest record)"
            ),
        ),
        Err(e) => Check::fail(
            "kafka.group_id",
            format!("cannot read the committed offsets of group '{group_id}': {e}"),
            format!(
                "allow this client Describe and Read on group '{group_id}', or correct \
                 kafka.group_id"
            ),
        ),
    }
}

/// The group's state and member count, as the brokers describe it (or why they did not).
fn describe_group(consumer: &BaseConsumer<Capture>, group_id: &str, timeout: Duration) -> String {
    consumer
        .client()
        .fetch_group_list(Some(group_id), timeout)
        .map(|list| {
            list.groups()
                .iter()
                .find(|gi| gi.name() == group_id)
                .map(|gi| format!("state {}, {} member(s)", gi.state(), gi.members().len()))
                .unwrap_or_else(|| "not known to the brokers yet".to_owned())
        })
        .unwrap_or_else(|e| format!("state unknown (the brokers did not describe it: {e})"))
}

/// The group's lag on `topic`: the records after each committed offset (after the earliest
/// record where none is committed), and how many partitions have no committed offset.
fn lag(
    consumer: &BaseConsumer<Capture>,
    topic: &str,
    partitions: i32,
    timeout: Duration,
) -> KafkaResult<(i64, usize)> {
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let committed = consumer.committed_offsets(tpl, timeout)?;
    let mut total = 0i64;
    let mut uncommitted = 0;
    for e in committed.elements() {
        let (low, high) = consumer.fetch_watermarks(topic, e.partition(), timeout)?;
        match e.offset() {
            Offset::Offset(o) => total += (high - o).max(0),
            _ => {
                uncommitted += 1;
                total += high - low;
            }
        }
    }
    Ok((total, uncommitted))
}
