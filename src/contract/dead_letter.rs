//! The dead-letter header set of docs/contract.md: building it for a failed job, and reading it
//! back leniently for `replay-dlq`.
//!
//! A dead letter is the original key and value, unchanged, plus these headers (UTF-8 strings).
//! Writing is strict and typed ([`DeadLetterHeaders`]); reading is lenient
//! ([`DeadLetterHeaders::parse`]) because a dead-letter topic outlives worker versions and may
//! hold records written by hand: a missing or garbled header is reported, never fatal.

use crate::contract::error::ErrorInfo;
use crate::contract::record::{JobRecord, Origin};
use chrono::{DateTime, SecondsFormat, Utc};

/// The header names of §6. Everything under `dlq.` is the worker's; `traceparent` is W3C's.
pub mod header {
    /// The topic the job was consumed from.
    pub const ORIGINAL_TOPIC: &str = "dlq.original.topic";
    /// The partition the job was consumed from.
    pub const ORIGINAL_PARTITION: &str = "dlq.original.partition";
    /// The job's offset in that partition.
    pub const ORIGINAL_OFFSET: &str = "dlq.original.offset";
    /// The job record's Kafka timestamp, milliseconds since the epoch (when it had one).
    pub const ORIGINAL_TIMESTAMP: &str = "dlq.original.timestamp";
    /// The error class (§5), e.g. `upstream_unavailable`.
    pub const ERROR_CLASS: &str = "dlq.error.class";
    /// The stage the error happened in, e.g. `token`.
    pub const ERROR_STAGE: &str = "dlq.error.stage";
    /// The error's description (never a secret).
    pub const ERROR_MESSAGE: &str = "dlq.error.message";
    /// The upstream HTTP status, only when there was one.
    pub const ERROR_HTTP_STATUS: &str = "dlq.error.http_status";
    /// HTTP requests made for the job.
    pub const ATTEMPTS: &str = "dlq.attempts";
    /// When the job failed, RFC 3339.
    pub const FAILED_AT: &str = "dlq.failed_at";
    /// The consumer group of the worker that failed it.
    pub const CONSUMER_GROUP: &str = "dlq.consumer_group";
    /// The version of the worker that failed it.
    pub const WORKER_VERSION: &str = "dlq.worker_version";
    /// How many times the job had been replayed before this failure (0 on the first).
    pub const REPLAY_COUNT: &str = "dlq.replay_count";
    /// `true` when the job's single-use code is spent: the dead letter is kept for audit only,
    /// and `replay-dlq` never re-publishes it. Written only when true.
    pub const CODE_SPENT: &str = "dlq.code_spent";
    /// The W3C trace context, copied from the job when it had one.
    pub const TRACEPARENT: &str = "traceparent";
    /// The prefix shared by every header the worker owns.
    pub const DLQ_PREFIX: &str = "dlq.";
    /// Prefix under which a replay keeps a dead letter's earlier `dlq.*` headers for audit.
    pub const PREVIOUS_PREFIX: &str = "dlq.previous.";

    /// The headers every dead letter carries (the others are written only when known).
    pub const ALWAYS_PRESENT: [&str; 11] = [
        ORIGINAL_TOPIC,
        ORIGINAL_PARTITION,
        ORIGINAL_OFFSET,
        ERROR_CLASS,
        ERROR_STAGE,
        ERROR_MESSAGE,
        ATTEMPTS,
        FAILED_AT,
        CONSUMER_GROUP,
        WORKER_VERSION,
        REPLAY_COUNT,
    ];
}

/// The provenance of a dead letter, written as `dlq.*` headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterHeaders {
    /// `dlq.original.topic`.
    pub original_topic: String,
    /// `dlq.original.partition`.
    pub original_partition: i32,
    /// `dlq.original.offset`.
    pub original_offset: i64,
    /// `dlq.original.timestamp`, milliseconds since the epoch; omitted when unknown.
    pub original_timestamp: Option<i64>,
    /// `dlq.error.class`.
    pub error_class: String,
    /// `dlq.error.stage`.
    pub error_stage: String,
    /// `dlq.error.message`.
    pub error_message: String,
    /// `dlq.error.http_status`; omitted when there was no HTTP status.
    pub error_http_status: Option<u16>,
    /// `dlq.attempts`: HTTP requests made for the job.
    pub attempts: u32,
    /// `dlq.failed_at`.
    pub failed_at: DateTime<Utc>,
    /// `dlq.consumer_group`.
    pub consumer_group: String,
    /// `dlq.worker_version`.
    pub worker_version: String,
    /// `dlq.replay_count`: replays before this failure.
    pub replay_count: u32,
    /// `dlq.code_spent: true`; omitted when the code is not spent.
    pub code_spent: bool,
    /// `traceparent`, when the job had one.
    pub traceparent: Option<String>,
}

/// What `replay-dlq` could read off a dead letter's headers, however damaged they are.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ParsedDeadLetter {
    /// `dlq.replay_count`; 0 when missing or garbled.
    pub replay_count: u32,
    /// `dlq.error.class` as written (for `--class`), when present.
    pub error_class: Option<String>,
    /// `dlq.error.stage` as written, when present: a stage after the token call means the code
    /// is spent even without `dlq.code_spent`.
    pub error_stage: Option<String>,
    /// `dlq.failed_at` (for `--since`/`--until`), when present and RFC 3339.
    pub failed_at: Option<DateTime<Utc>>,
    /// `traceparent`, when present.
    pub traceparent: Option<String>,
    /// `dlq.code_spent`: true unless the header is absent or says `false` (a garbled value
    /// counts as spent: a code that may be spent is never presented again).
    pub code_spent: bool,
    /// Every `dlq.*` header as text, in record order (non-UTF-8 bytes replaced), for the
    /// replay to keep as `dlq.previous.*`.
    pub dlq: Vec<(String, String)>,
    /// Which headers were missing or garbled, one sentence each; empty when all is well.
    pub problems: Vec<String>,
}

impl DeadLetterHeaders {
    /// The headers of the dead letter of `record`, consumed from `origin`, which failed with
    /// `error` after `attempts` HTTP attempts.
    ///
    /// `dlq.replay_count` is the record's own (see [`replay_count_from_headers`]), so the
    /// replay tool can tell how often this job has already been tried.
    pub fn for_failure(
        record: &JobRecord,
        origin: Origin<'_>,
        error: &ErrorInfo,
        attempts: u32,
        failed_at: DateTime<Utc>,
    ) -> Self {
        DeadLetterHeaders {
            original_topic: origin.topic.to_owned(),
            original_partition: record.partition,
            original_offset: record.offset,
            original_timestamp: record.timestamp_ms,
            error_class: error.class.as_str().to_owned(),
            error_stage: error.stage.as_str().to_owned(),
            error_message: error.description.clone(),
            error_http_status: error.http_status,
            attempts,
            failed_at,
            consumer_group: origin.group.to_owned(),
            worker_version: env!("CARGO_PKG_VERSION").to_owned(),
            replay_count: record.replay_count,
            code_spent: error.code_spent,
            traceparent: record.traceparent.clone(),
        }
    }

    /// The headers to attach to the dead-letter record, as UTF-8 strings, in a fixed order.
    /// Optional ones (`dlq.original.timestamp`, `dlq.error.http_status`, `dlq.code_spent`,
    /// `traceparent`) appear only when known (or true).
    pub fn to_headers(&self) -> Vec<(&'static str, String)> {
        let mut h = vec![
            (header::ORIGINAL_TOPIC, self.original_topic.clone()),
            (
                header::ORIGINAL_PARTITION,
                self.original_partition.to_string(),
            ),
            (header::ORIGINAL_OFFSET, self.original_offset.to_string()),
        ];
        if let Some(ts) = self.original_timestamp {
            h.push((header::ORIGINAL_TIMESTAMP, ts.to_string()));
        }
        h.push((header::ERROR_CLASS, self.error_class.clone()));
        h.push((header::ERROR_STAGE, self.error_stage.clone()));
        h.push((header::ERROR_MESSAGE, self.error_message.clone()));
        if let Some(status) = self.error_http_status {
            h.push((header::ERROR_HTTP_STATUS, status.to_string()));
        }
        h.push((header::ATTEMPTS, self.attempts.to_string()));
        h.push((
            header::FAILED_AT,
            self.failed_at.to_rfc3339_opts(SecondsFormat::Millis, true),
        ));
        h.push((header::CONSUMER_GROUP, self.consumer_group.clone()));
        h.push((header::WORKER_VERSION, self.worker_version.clone()));
        h.push((header::REPLAY_COUNT, self.replay_count.to_string()));
        if self.code_spent {
            h.push((header::CODE_SPENT, "true".to_owned()));
        }
        if let Some(tp) = &self.traceparent {
            h.push((header::TRACEPARENT, tp.clone()));
        }
        h
    }

    /// Reads a dead letter's headers leniently, for `replay-dlq`.
    ///
    /// Never fails: what cannot be read is left at its default and listed in `problems`.
    /// When a header repeats, the last value wins (as Kafka's `get_last`).
    pub fn parse<'a>(
        headers: impl IntoIterator<Item = (&'a str, Option<&'a [u8]>)>,
    ) -> ParsedDeadLetter {
        let mut out = ParsedDeadLetter::default();
        let mut seen: Vec<&'static str> = Vec::new();
        // Outer `None`: header absent; inner `None`: header present without a value.
        let mut last_replay_count: Option<Option<String>> = None;
        let mut last_failed_at: Option<Option<String>> = None;
        for (name, value) in headers {
            let text = value.map(|v| String::from_utf8_lossy(v).into_owned());
            if name.starts_with(header::DLQ_PREFIX) {
                out.dlq
                    .push((name.to_owned(), text.clone().unwrap_or_default()));
            }
            let Some(known) = known_header(name) else {
                continue;
            };
            if !seen.contains(&known) {
                seen.push(known);
            }
            if value.is_some_and(|v| std::str::from_utf8(v).is_err()) {
                out.problems.push(format!("{known} is not UTF-8"));
            }
            match known {
                header::REPLAY_COUNT => last_replay_count = Some(text),
                header::FAILED_AT => last_failed_at = Some(text),
                header::ERROR_CLASS => out.error_class = text,
                header::ERROR_STAGE => out.error_stage = text,
                header::TRACEPARENT => out.traceparent = text,
                header::CODE_SPENT => {
                    let v = text.as_deref().map(str::trim);
                    out.code_spent = v != Some("false");
                    if !matches!(v, Some("true" | "false")) {
                        out.problems
                            .push(format!("{} is not true or false", header::CODE_SPENT));
                    }
                }
                _ => {}
            }
        }

        if let Some(text) = last_replay_count {
            match text.as_deref().map(|s| s.trim().parse::<u32>()) {
                Some(Ok(n)) => out.replay_count = n,
                _ => out
                    .problems
                    .push(format!("{} is not a count", header::REPLAY_COUNT)),
            }
        }
        if let Some(text) = last_failed_at {
            out.failed_at = text.as_deref().and_then(|s| {
                DateTime::parse_from_rfc3339(s.trim())
                    .ok()
                    .map(|d| d.with_timezone(&Utc))
            });
            if out.failed_at.is_none() {
                out.problems
                    .push(format!("{} is not an RFC 3339 time", header::FAILED_AT));
            }
        }
        if let Some(class) = &out.error_class {
            if crate::contract::error::ErrorClass::parse(class).is_none() {
                out.problems
                    .push(format!("{} is not a known class", header::ERROR_CLASS));
            }
        }
        check_numeric::<i32>(&out.dlq, header::ORIGINAL_PARTITION, &mut out.problems);
        check_numeric::<i64>(&out.dlq, header::ORIGINAL_OFFSET, &mut out.problems);
        check_numeric::<i64>(&out.dlq, header::ORIGINAL_TIMESTAMP, &mut out.problems);
        check_numeric::<u16>(&out.dlq, header::ERROR_HTTP_STATUS, &mut out.problems);
        check_numeric::<u32>(&out.dlq, header::ATTEMPTS, &mut out.problems);
        for name in header::ALWAYS_PRESENT {
            if !seen.contains(&name) {
                out.problems.push(format!("{name} is missing"));
            }
        }
        out
    }
}

/// The job record's `dlq.replay_count` header (set by `replay-dlq`), or 0 when it is absent or
/// garbled. The worker copies it into the result and into a new dead letter.
pub fn replay_count_from_headers<'a>(
    headers: impl IntoIterator<Item = (&'a str, Option<&'a [u8]>)>,
) -> u32 {
    headers
        .into_iter()
        .filter(|(name, _)| *name == header::REPLAY_COUNT)
        .last()
        .and_then(|(_, value)| value)
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// The `'static` name of a header this module knows, or `None`.
fn known_header(name: &str) -> Option<&'static str> {
    const ALL: [&str; 15] = [
        header::ORIGINAL_TOPIC,
        header::ORIGINAL_PARTITION,
        header::ORIGINAL_OFFSET,
        header::ORIGINAL_TIMESTAMP,
        header::ERROR_CLASS,
        header::ERROR_STAGE,
        header::ERROR_MESSAGE,
        header::ERROR_HTTP_STATUS,
        header::ATTEMPTS,
        header::FAILED_AT,
        header::CONSUMER_GROUP,
        header::WORKER_VERSION,
        header::REPLAY_COUNT,
        header::CODE_SPENT,
        header::TRACEPARENT,
    ];
    ALL.into_iter().find(|h| *h == name)
}

impl JobRecord {
    /// A record of `partition` at `offset` with `headers`: its trace context, its replay count
    /// and a replayed job's `dlq.previous.*` audit trail are read off them.
    pub fn new<'a>(
        partition: i32,
        offset: i64,
        timestamp_ms: Option<i64>,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
        headers: impl IntoIterator<Item = (&'a str, Option<&'a [u8]>)>,
    ) -> JobRecord {
        let mut replay_count = None;
        let mut traceparent = None;
        let mut previous = Vec::new();
        for (name, value) in headers {
            match name {
                header::REPLAY_COUNT => replay_count = Some(value),
                header::TRACEPARENT => {
                    traceparent = value
                        .and_then(|v| std::str::from_utf8(v).ok())
                        .map(str::to_owned)
                }
                n if n.starts_with(header::PREVIOUS_PREFIX) => {
                    previous.push((n.to_owned(), value.unwrap_or_default().to_vec()));
                }
                _ => {}
            }
        }
        let replay_count =
            replay_count_from_headers(replay_count.map(|v| (header::REPLAY_COUNT, v)));
        JobRecord {
            partition,
            offset,
            timestamp_ms,
            key: key.map(<[u8]>::to_vec),
            payload: payload.map(<[u8]>::to_vec),
            traceparent,
            replay_count,
            previous,
        }
    }
}

/// Notes a problem when the last value of a numeric `dlq.*` header does not parse as `T`.
fn check_numeric<T: std::str::FromStr>(
    dlq: &[(String, String)],
    name: &str,
    problems: &mut Vec<String>,
) {
    if let Some((_, v)) = dlq.iter().rev().find(|(n, _)| n == name) {
        if v.trim().parse::<T>().is_err() {
            problems.push(format!("{name} is not a number in range"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::error::{ErrorClass, Stage};
    use chrono::TimeZone;

    fn source(replay_count: u32) -> JobRecord {
        JobRecord {
            partition: 3,
            offset: 1234,
            timestamp_ms: Some(1_764_064_800_000),
            traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
            replay_count,
            ..JobRecord::default()
        }
    }

    fn origin(group: &str) -> Origin<'_> {
        Origin {
            topic: "silentauth.jobs",
            group,
        }
    }

    fn failed_at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 5).unwrap()
    }

    fn headers() -> DeadLetterHeaders {
        let err = ErrorInfo::new(ErrorClass::UpstreamUnavailable, Stage::Token, "HTTP 503")
            .with_code(Some("server_error".into()))
            .with_status(Some(503));
        DeadLetterHeaders::for_failure(
            &source(1),
            origin("silentauth-worker"),
            &err,
            4,
            failed_at(),
        )
    }

    fn as_raw(h: &[(&'static str, String)]) -> Vec<(&'static str, Option<Vec<u8>>)> {
        h.iter()
            .map(|(k, v)| (*k, Some(v.as_bytes().to_vec())))
            .collect()
    }

    fn parse_raw(raw: &[(&str, Option<Vec<u8>>)]) -> ParsedDeadLetter {
        DeadLetterHeaders::parse(raw.iter().map(|(k, v)| (*k, v.as_deref())))
    }

    #[test]
    fn for_failure_fills_every_field() {
        let h = headers();
        assert_eq!(h.original_topic, "silentauth.jobs");
        assert_eq!(h.error_class, "upstream_unavailable");
        assert_eq!(h.error_stage, "token");
        assert_eq!(h.error_message, "HTTP 503");
        assert_eq!(h.error_http_status, Some(503));
        assert_eq!(h.worker_version, env!("CARGO_PKG_VERSION"));
        assert_eq!(h.replay_count, 1);
    }

    #[test]
    fn to_headers_writes_the_contract_names() {
        let h = headers().to_headers();
        let get = |n: &str| h.iter().find(|(k, _)| *k == n).map(|(_, v)| v.as_str());
        assert_eq!(get("dlq.original.topic"), Some("silentauth.jobs"));
        assert_eq!(get("dlq.original.partition"), Some("3"));
        assert_eq!(get("dlq.original.offset"), Some("1234"));
        assert_eq!(get("dlq.original.timestamp"), Some("1764064800000"));
        assert_eq!(get("dlq.error.class"), Some("upstream_unavailable"));
        assert_eq!(get("dlq.error.http_status"), Some("503"));
        assert_eq!(get("dlq.attempts"), Some("4"));
        assert_eq!(get("dlq.failed_at"), Some("2026-11-25T10:00:05.000Z"));
        assert_eq!(get("dlq.consumer_group"), Some("silentauth-worker"));
        assert_eq!(get("dlq.replay_count"), Some("1"));
        assert!(get("traceparent").is_some());
        assert_eq!(h.len(), 14);

        let mut bare = headers();
        bare.original_timestamp = None;
        bare.error_http_status = None;
        bare.traceparent = None;
        let h = bare.to_headers();
        assert_eq!(h.len(), 11);
        let names: Vec<_> = h.iter().map(|(k, _)| *k).collect();
        assert_eq!(names, header::ALWAYS_PRESENT);
    }

    #[test]
    fn round_trip_through_parse() {
        let h = headers();
        let p = parse_raw(&as_raw(&h.to_headers()));
        assert_eq!(p.problems, Vec::<String>::new());
        assert_eq!(p.replay_count, 1);
        assert_eq!(p.error_class.as_deref(), Some("upstream_unavailable"));
        assert_eq!(p.failed_at, Some(failed_at()));
        assert_eq!(p.traceparent, h.traceparent);
        assert_eq!(p.dlq.len(), 13, "every dlq.* header, not traceparent");
        assert!(p.dlq.iter().all(|(k, _)| k.starts_with("dlq.")));
    }

    #[test]
    fn missing_headers_are_reported_not_fatal() {
        let p = parse_raw(&[("other", Some(b"x".to_vec()))]);
        assert_eq!(p.replay_count, 0);
        assert_eq!(p.error_class, None);
        assert_eq!(p.failed_at, None);
        assert!(p.dlq.is_empty());
        assert_eq!(p.problems.len(), header::ALWAYS_PRESENT.len());
        assert!(p
            .problems
            .contains(&"dlq.replay_count is missing".to_owned()));
    }

    #[test]
    fn garbled_headers_are_reported() {
        let mut raw = as_raw(&headers().to_headers());
        for (k, v) in raw.iter_mut() {
            match *k {
                header::REPLAY_COUNT => *v = Some(b"-1".to_vec()),
                header::FAILED_AT => *v = Some(b"yesterday".to_vec()),
                header::ERROR_CLASS => *v = Some(b"\xffboom".to_vec()),
                header::ORIGINAL_PARTITION => *v = Some(b"3x".to_vec()),
                header::ERROR_HTTP_STATUS => *v = Some(b"70000".to_vec()),
                header::ATTEMPTS => *v = None,
                _ => {}
            }
        }
        let p = parse_raw(&raw);
        assert_eq!(p.replay_count, 0);
        assert_eq!(p.failed_at, None);
        assert_eq!(p.error_class.as_deref(), Some("\u{fffd}boom"));
        for expected in [
            "dlq.replay_count is not a count",
            "dlq.failed_at is not an RFC 3339 time",
            "dlq.error.class is not UTF-8",
            "dlq.error.class is not a known class",
            "dlq.original.partition is not a number in range",
            "dlq.error.http_status is not a number in range",
            "dlq.attempts is not a number in range",
        ] {
            assert!(
                p.problems.iter().any(|x| x == expected),
                "{expected}: {:?}",
                p.problems
            );
        }
        assert_eq!(p.problems.len(), 7, "{:?}", p.problems);
    }

    #[test]
    fn last_header_wins() {
        let raw = [
            (header::REPLAY_COUNT, Some(b"1".to_vec())),
            (header::REPLAY_COUNT, Some(b"2".to_vec())),
        ];
        assert_eq!(parse_raw(&raw).replay_count, 2);
        assert_eq!(
            replay_count_from_headers(raw.iter().map(|(k, v)| (*k, v.as_deref()))),
            2
        );
    }

    #[test]
    fn replay_count_of_a_job_record() {
        let count = |raw: &[(&str, Option<&[u8]>)]| replay_count_from_headers(raw.iter().copied());
        assert_eq!(count(&[]), 0);
        assert_eq!(count(&[("traceparent", Some(b"00-x"))]), 0);
        assert_eq!(count(&[("dlq.replay_count", Some(b"3"))]), 3);
        assert_eq!(count(&[("dlq.replay_count", Some(b" 3 "))]), 3);
        assert_eq!(count(&[("dlq.replay_count", Some(b"three"))]), 0);
        assert_eq!(count(&[("dlq.replay_count", Some(b"\xff"))]), 0);
        assert_eq!(count(&[("dlq.replay_count", None)]), 0);
    }

    #[test]
    fn a_spent_code_is_written_and_read_back() {
        let err = ErrorInfo::new(ErrorClass::UpstreamUnavailable, Stage::Userinfo, "HTTP 500")
            .with_code_spent("the user has to authenticate again");
        let h = DeadLetterHeaders::for_failure(&source(0), origin("g"), &err, 5, failed_at());
        assert!(h.code_spent);
        let written = h.to_headers();
        let spent: Vec<_> = written
            .iter()
            .filter(|(k, _)| *k == "dlq.code_spent")
            .collect();
        assert_eq!(spent, [&("dlq.code_spent", "true".to_owned())]);
        let p = parse_raw(&as_raw(&written));
        assert!(p.code_spent);
        assert_eq!(p.problems, Vec::<String>::new());
        // Absent: not spent. `false`: not spent. Anything else: spent, and reported.
        assert!(!parse_raw(&as_raw(&headers().to_headers())).code_spent);
        let read = |v: Option<&[u8]>| {
            let mut raw = as_raw(&headers().to_headers());
            raw.push(("dlq.code_spent", v.map(<[u8]>::to_vec)));
            parse_raw(&raw)
        };
        assert!(!read(Some(b"false")).code_spent);
        for garbled in [Some(&b"yes"[..]), Some(b"\xff"), None] {
            let p = read(garbled);
            assert!(p.code_spent, "{garbled:?}");
            assert!(p
                .problems
                .contains(&"dlq.code_spent is not true or false".to_owned()));
        }
    }
}
