//! Retention checks: the results topic keeps records at least `worker.code_ttl` (the idempotency
//! warm-up reads that far back) and the dead-letter topic keeps them long enough to replay, read
//! with DescribeConfigs.

use super::capture::{Capture, ADMIN_TIMEOUT};
use super::check::Check;
use crate::config::Config;
use rdkafka::admin::{AdminClient, AdminOptions, ConfigResource, ResourceSpecifier};
use std::collections::HashMap;
use std::time::Duration;

/// Dead-letter retention below this is reported as a warning: dead letters wait for an operator
/// to look at them and replay them.
const DEAD_LETTER_RETENTION_WARN: Duration = Duration::from_secs(7 * 24 * 3600);

/// How long one admin request may take: `kafka.connect_timeout`, at most [`ADMIN_TIMEOUT`].
pub(super) fn admin_timeout(config: &Config) -> Duration {
    config.kafka.connect_timeout.min(ADMIN_TIMEOUT)
}

/// The configuration of each of `topics`, from one DescribeConfigs request.
pub(super) async fn describe(
    admin: &AdminClient<Capture>,
    topics: &[&str],
    timeout: Duration,
) -> HashMap<String, Result<ConfigResource, String>> {
    if topics.is_empty() {
        return HashMap::new();
    }
    let specifiers: Vec<ResourceSpecifier<'_>> =
        topics.iter().map(|t| ResourceSpecifier::Topic(t)).collect();
    let opts = AdminOptions::new().request_timeout(Some(timeout));
    let answer = tokio::time::timeout(
        timeout + Duration::from_secs(1),
        admin.describe_configs(&specifiers, &opts),
    )
    .await;
    let all_failed = |e: String| {
        topics
            .iter()
            .map(|t| (t.to_string(), Err(e.clone())))
            .collect()
    };
    match answer {
        Err(_) => all_failed(format!("no answer within {timeout:?}")),
        Ok(Err(e)) => all_failed(e.to_string()),
        Ok(Ok(results)) => topics
            .iter()
            .zip(results)
            .map(|(t, r)| (t.to_string(), r.map_err(|e| e.to_string())))
            .collect(),
    }
}

/// The topic's `cleanup.policy` and `retention.ms`: results must be kept at least
/// `worker.code_ttl` (the idempotency warm-up reads that far back); dead letters should be kept
/// long enough for someone to replay them.
pub(super) fn retention(
    config: &Config,
    key: &str,
    topic: &str,
    resource: Result<ConfigResource, String>,
) -> Check {
    let check = format!("{key} retention");
    // A broker that may not describe the topic's configuration to this client can answer with
    // no entries at all rather than an error: that is no answer, not an unlimited retention.
    let resource = resource.and_then(|r| match r.get("cleanup.policy") {
        Some(_) => Ok(r),
        None => Err("the brokers returned no cleanup.policy".to_owned()),
    });
    let resource = match resource {
        Ok(r) => r,
        Err(e) => {
            return Check::warn(
                check,
                format!("cannot read the configuration of '{topic}' ({e})"),
                format!(
                    "check its cleanup.policy and retention.ms by hand, or allow this client \
                     DescribeConfigs on topic '{topic}'"
                ),
            )
        }
    };
    let value = |name: &str| {
        resource
            .get(name)
            .and_then(|e| e.value.clone())
            .unwrap_or_default()
    };
    let policy = value("cleanup.policy");
    let retention_ms: i64 = value("retention.ms").parse().unwrap_or(-1);
    let deletes = policy.split(',').any(|p| p.trim() == "delete");
    let kept = if !deletes || retention_ms < 0 {
        None
    } else {
        Some(Duration::from_millis(retention_ms as u64))
    };
    let shown = match kept {
        None => format!("cleanup.policy={policy}, retention.ms={retention_ms} (kept until compacted or forever)"),
        Some(d) => format!(
            "cleanup.policy={policy}, retention.ms={retention_ms} ({})",
            humantime::format_duration(d)
        ),
    };
    let alter = |min: Duration| {
        format!(
            "raise it: kafka-configs.sh --alter --entity-type topics --entity-name {topic} \
             --add-config retention.ms={}",
            min.as_millis()
        )
    };
    let ttl = config.worker.code_ttl;
    let ttl_shown = humantime::format_duration(ttl);
    match (key, kept) {
        ("topics.results", Some(d)) if d < ttl => Check::fail(
            check,
            format!(
                "{shown} is shorter than worker.code_ttl ({ttl_shown}): the warm-up cannot see \
                 older results, so a redelivered job could spend its code twice"
            ),
            format!("{}, or lower worker.code_ttl", alter(ttl)),
        ),
        ("topics.results", _) => Check::pass(
            check,
            format!("{shown} covers worker.code_ttl ({ttl_shown})"),
        ),
        (_, Some(d)) if d < DEAD_LETTER_RETENTION_WARN => Check::warn(
            check,
            format!("{shown}: dead letters older than that are deleted before anyone replays them"),
            alter(DEAD_LETTER_RETENTION_WARN),
        ),
        _ => Check::pass(check, shown),
    }
}
