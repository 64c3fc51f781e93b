//! The ACLs `run` needs, checked against what the brokers say this client may do: a
//! DescribeTopics and a DescribeConsumerGroups request with the authorized operations included
//! (KIP-430), which change nothing. Backs the start-up preflight, the readiness check and
//! `doctor`, so a missing ACL is named (the resource, the operation, what needs it) instead of
//! surfacing as a topic that seems not to exist or a produce that keeps failing.
//!
//! What `run` needs (docs/operations.md): Read on the jobs topic and on the consumer group, Write
//! and Read on the results topic (results; the idempotency warm-up and read-back read it), Write
//! on the dead-letter topic, Write and Read on the ledger topic (with `worker.ledger`), and with
//! `exactly_once` Write on the transactional id (checked by `init_transactions` at start-up,
//! since the brokers describe no authorized operations for transactional ids). Read and Write
//! imply Describe; Kafka 3.0 and later need no IdempotentWrite on the cluster for idempotent
//! producers (a Write on a topic is enough).

use crate::config::Config;
use rdkafka::bindings as rd;
use rdkafka::client::{Client, ClientContext};
use rdkafka::types::RDKafkaErrorCode;
use std::ffi::{c_char, CStr, CString};
use std::time::Duration;

/// An operation of an ACL the worker needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Consume, fetch offsets, join a group.
    Read,
    /// Produce.
    Write,
}

impl Operation {
    fn name(self) -> &'static str {
        match self {
            Operation::Read => "Read",
            Operation::Write => "Write",
        }
    }

    fn code(self) -> u32 {
        match self {
            Operation::Read => rd::rd_kafka_AclOperation_t::RD_KAFKA_ACL_OPERATION_READ as u32,
            Operation::Write => rd::rd_kafka_AclOperation_t::RD_KAFKA_ACL_OPERATION_WRITE as u32,
        }
    }
}

/// One ACL `run` needs: an operation on a topic or on the group, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Needed {
    /// The configuration key naming the resource (`topics.jobs`, `kafka.group_id`).
    pub key: &'static str,
    /// `topic` or `group`.
    pub resource: &'static str,
    /// The topic's or group's name.
    pub name: String,
    /// The operation.
    pub operation: Operation,
    /// What the worker does with it.
    pub why: &'static str,
}

impl Needed {
    /// One line naming the key, the missing ACL and why it is needed.
    pub fn problem(&self) -> String {
        format!(
            "{}: this client's principal may not {} {} '{}' ({}); grant it ALLOW {} on {} '{}'",
            self.key,
            self.operation.name(),
            self.resource,
            self.name,
            self.why,
            self.operation.name(),
            self.resource,
            self.name
        )
    }
}

/// The topic and group ACLs `run` needs with `config`.
pub fn needed(config: &Config) -> Vec<Needed> {
    let t = &config.topics;
    let topic = |key, name: &str, operation, why| Needed {
        key,
        resource: "topic",
        name: name.to_owned(),
        operation,
        why,
    };
    let mut out = vec![
        topic("topics.jobs", &t.jobs, Operation::Read, "consume jobs"),
        topic(
            "topics.results",
            &t.results,
            Operation::Write,
            "publish results",
        ),
        topic(
            "topics.results",
            &t.results,
            Operation::Read,
            "the idempotency warm-up and read-back read it",
        ),
        topic(
            "topics.dead_letter",
            &t.dead_letter,
            Operation::Write,
            "publish dead letters",
        ),
    ];
    if config.worker.ledger {
        out.push(topic(
            "topics.ledger",
            &t.ledger,
            Operation::Write,
            "record each presentation before its token request",
        ));
        out.push(topic(
            "topics.ledger",
            &t.ledger,
            Operation::Read,
            "the ledger warm-up reads it",
        ));
    }
    out.push(Needed {
        key: "kafka.group_id",
        resource: "group",
        name: config.kafka.group_id.clone(),
        operation: Operation::Read,
        why: "join the consumer group and commit its offsets",
    });
    out
}

/// What the brokers said about the needed ACLs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authorization {
    /// Every needed ACL is there.
    Granted,
    /// These are missing.
    Missing(Vec<Needed>),
    /// The brokers report no authorized operations (no authorizer, or too old to say).
    Unknown,
}

/// Asks the brokers which operations this client may do on the configured topics and group,
/// and compares with [`needed`]. A topic or group the client may not even describe lacks every
/// operation. Blocking; `Err` when a request is not answered.
pub fn check<C: ClientContext>(
    client: &Client<C>,
    config: &Config,
    timeout: Duration,
) -> Result<Authorization, String> {
    let needed = needed(config);
    let mut topics: Vec<String> = Vec::new();
    for n in needed.iter().filter(|n| n.resource == "topic") {
        if !topics.contains(&n.name) {
            topics.push(n.name.clone());
        }
    }
    let mut allowed = describe(client, Kind::Topics, &topics, timeout)?;
    // The group's coordinator may not be there yet (a new cluster creates its offsets topic on
    // the first request for a coordinator): asked again until it answers.
    let group = std::slice::from_ref(&config.kafka.group_id);
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let described = describe(client, Kind::Groups, group, timeout)?;
        let waiting = described.iter().any(|a| {
            matches!(
                a.error,
                Some(
                    RDKafkaErrorCode::CoordinatorNotAvailable
                        | RDKafkaErrorCode::CoordinatorLoadInProgress
                        | RDKafkaErrorCode::NotCoordinator
                )
            )
        });
        if !waiting || std::time::Instant::now() >= deadline {
            allowed.extend(described);
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut missing = Vec::new();
    for n in needed {
        let kind = if n.resource == "topic" {
            Kind::Topics
        } else {
            Kind::Groups
        };
        match allowed.iter().find(|a| a.kind == kind && a.name == n.name) {
            Some(Allowed { ops: None, .. }) => return Ok(Authorization::Unknown),
            Some(Allowed { ops: Some(ops), .. }) if ops.contains(&n.operation.code()) => {}
            _ => missing.push(n),
        }
    }
    Ok(if missing.is_empty() {
        Authorization::Granted
    } else {
        Authorization::Missing(missing)
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Topics,
    Groups,
}

/// The operations allowed on one resource: `None` when the broker did not say; empty when it
/// refused to describe the resource at all.
struct Allowed {
    kind: Kind,
    name: String,
    ops: Option<Vec<u32>>,
    /// The error the brokers answered for the resource, if any.
    error: Option<RDKafkaErrorCode>,
}

/// One DescribeTopics or DescribeConsumerGroups request with the authorized operations.
fn describe<C: ClientContext>(
    client: &Client<C>,
    kind: Kind,
    names: &[String],
    timeout: Duration,
) -> Result<Vec<Allowed>, String> {
    let c_names: Vec<CString> = names
        .iter()
        .map(|n| CString::new(n.as_str()).map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    let mut ptrs: Vec<*const c_char> = c_names.iter().map(|c| c.as_ptr()).collect();
    let rk = client.native_ptr();
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: every handle created here is destroyed before returning; the strings and the
    // pointer array outlive the calls that read them (librdkafka copies them); results are read
    // while their event is alive and copied out.
    unsafe {
        let op = match kind {
            Kind::Topics => rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_DESCRIBETOPICS,
            Kind::Groups => rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_DESCRIBECONSUMERGROUPS,
        };
        let options = rd::rd_kafka_AdminOptions_new(rk, op);
        let err = rd::rd_kafka_AdminOptions_set_include_authorized_operations(options, 1);
        if !err.is_null() {
            let why = error_text(err);
            rd::rd_kafka_error_destroy(err);
            rd::rd_kafka_AdminOptions_destroy(options);
            return Err(why);
        }
        let mut errstr = [0 as c_char; 256];
        rd::rd_kafka_AdminOptions_set_request_timeout(
            options,
            ms,
            errstr.as_mut_ptr(),
            errstr.len(),
        );
        let queue = rd::rd_kafka_queue_new(rk);
        match kind {
            Kind::Topics => {
                let collection =
                    rd::rd_kafka_TopicCollection_of_topic_names(ptrs.as_mut_ptr(), ptrs.len());
                rd::rd_kafka_DescribeTopics(rk, collection, options, queue);
                rd::rd_kafka_TopicCollection_destroy(collection);
            }
            Kind::Groups => {
                rd::rd_kafka_DescribeConsumerGroups(
                    rk,
                    ptrs.as_mut_ptr(),
                    ptrs.len(),
                    options,
                    queue,
                );
            }
        }
        // The request's own timeout bounds it; the poll waits a little longer for its answer.
        let event = rd::rd_kafka_queue_poll(queue, ms.saturating_add(2_000));
        let out = if event.is_null() {
            Err("no answer to the describe request".to_owned())
        } else if rd::rd_kafka_event_error(event)
            != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
        {
            Err(cstr(rd::rd_kafka_event_error_string(event)))
        } else {
            Ok(read_result(kind, event))
        };
        if !event.is_null() {
            rd::rd_kafka_event_destroy(event);
        }
        rd::rd_kafka_queue_destroy(queue);
        rd::rd_kafka_AdminOptions_destroy(options);
        drop(c_names);
        out
    }
}

/// The described resources of a successful result event.
///
/// # Safety
/// `event` is a live DescribeTopics or DescribeConsumerGroups result event, as `kind` says.
unsafe fn read_result(kind: Kind, event: *mut rd::rd_kafka_event_t) -> Vec<Allowed> {
    let mut out = Vec::new();
    let mut n = 0usize;
    match kind {
        Kind::Topics => {
            let result = rd::rd_kafka_event_DescribeTopics_result(event);
            let items = rd::rd_kafka_DescribeTopics_result_topics(result, &mut n);
            for i in 0..n {
                let d = *items.add(i);
                let name = cstr(rd::rd_kafka_TopicDescription_name(d));
                let e = rd::rd_kafka_TopicDescription_error(d);
                let denied = is_denied(e);
                let mut cnt = 0usize;
                let ops = rd::rd_kafka_TopicDescription_authorized_operations(d, &mut cnt);
                out.push(Allowed {
                    kind,
                    name,
                    ops: operations(denied, ops, cnt),
                    error: code(e),
                });
            }
        }
        Kind::Groups => {
            let result = rd::rd_kafka_event_DescribeConsumerGroups_result(event);
            let items = rd::rd_kafka_DescribeConsumerGroups_result_groups(result, &mut n);
            for i in 0..n {
                let d = *items.add(i);
                let name = cstr(rd::rd_kafka_ConsumerGroupDescription_group_id(d));
                let e = rd::rd_kafka_ConsumerGroupDescription_error(d);
                let denied = is_denied(e);
                let mut cnt = 0usize;
                let ops = rd::rd_kafka_ConsumerGroupDescription_authorized_operations(d, &mut cnt);
                out.push(Allowed {
                    kind,
                    name,
                    ops: operations(denied, ops, cnt),
                    error: code(e),
                });
            }
        }
    }
    out
}

/// True when `err` says the client may not describe the resource (or it does not exist: the
/// brokers do not tell the two apart for a client without Describe).
///
/// # Safety
/// `err` is null or a live error.
unsafe fn is_denied(err: *const rd::rd_kafka_error_t) -> bool {
    if err.is_null() {
        return false;
    }
    let code = RDKafkaErrorCode::from(rd::rd_kafka_error_code(err));
    matches!(
        code,
        RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::GroupAuthorizationFailed
            | RDKafkaErrorCode::UnknownTopicOrPartition
    )
}

/// The authorized operations as codes: empty when denied, `None` when the broker did not say.
///
/// # Safety
/// `ops` points to `cnt` operations (or is null).
unsafe fn operations(
    denied: bool,
    ops: *const rd::rd_kafka_AclOperation_t,
    cnt: usize,
) -> Option<Vec<u32>> {
    if denied {
        return Some(Vec::new());
    }
    if ops.is_null() {
        return None;
    }
    // Read as integers: a value this build does not know must not become an enum.
    let raw = ops as *const u32;
    Some((0..cnt).map(|i| *raw.add(i)).collect())
}

/// The code of `err`, when there is one.
///
/// # Safety
/// `err` is null or a live error.
unsafe fn code(err: *const rd::rd_kafka_error_t) -> Option<RDKafkaErrorCode> {
    (!err.is_null()).then(|| RDKafkaErrorCode::from(rd::rd_kafka_error_code(err)))
}

unsafe fn error_text(err: *const rd::rd_kafka_error_t) -> String {
    cstr(rd::rd_kafka_error_string(err))
}

unsafe fn cstr(p: *const c_char) -> String {
    if p.is_null() {
        String::new()
    } else {
        CStr::from_ptr(p).to_string_lossy().into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_follows_the_configuration() {
        let mut c = Config::default();
        c.topics.jobs = "j".into();
        c.kafka.group_id = "g".into();
        let all: Vec<String> = needed(&c)
            .iter()
            .map(|n| format!("{} {} {}", n.operation.name(), n.resource, n.name))
            .collect();
        assert_eq!(
            all,
            [
                "Read topic j",
                "Write topic silentauth.results",
                "Read topic silentauth.results",
                "Write topic silentauth.jobs.dlq",
                "Write topic silentauth.ledger",
                "Read topic silentauth.ledger",
                "Read group g"
            ]
        );
        c.worker.ledger = false;
        assert!(needed(&c).iter().all(|n| n.key != "topics.ledger"));
        let p = needed(&c)[0].problem();
        assert_eq!(
            p,
            "topics.jobs: this client's principal may not Read topic 'j' (consume jobs); grant it ALLOW Read on topic 'j'"
        );
    }
}
