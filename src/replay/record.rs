//! One dead letter, decided: skipped by the filters, re-published with rewritten headers, or held
//! back because its code is spent or it reached `--max-replays`. Pure functions of the record and
//! the options; no I/O.

use super::options::ReplayOptions;
use crate::contract::dead_letter::{header, DeadLetterHeaders, ParsedDeadLetter};
use crate::contract::ErrorClass;
use chrono::{DateTime, TimeZone, Utc};

/// The prefix under which a re-published job keeps its dead letter's `dlq.*` headers.
pub const PREVIOUS_PREFIX: &str = header::PREVIOUS_PREFIX;

/// A record's headers, owned and byte-exact (a header may have no value).
pub type RawHeaders = Vec<(String, Option<Vec<u8>>)>;

/// What to do with one dead letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Outside `--class`/`--since`/`--until`: counted and left alone.
    Skip,
    /// Selected: re-publish to the target topic.
    Republish,
    /// Selected, but its replay count reached `--max-replays`: held back (or parked).
    AtMaxReplays,
    /// Selected, but its code is spent (`dlq.code_spent`, or a failure after the token call):
    /// never re-published, whatever the replay count; held back (or parked).
    CodeSpent,
}

/// A dead letter's headers as the replay sees them.
#[derive(Debug, Clone)]
pub struct Inspected {
    /// The lenient parse of the `dlq.*` headers.
    pub parsed: ParsedDeadLetter,
    /// The table row: the class name, `(missing)` or `(unknown)`.
    pub class_label: String,
    /// `dlq.failed_at`, else the dead letter record's own timestamp.
    pub failed_at: Option<DateTime<Utc>>,
    /// The job's code is spent: `dlq.code_spent`, or a `dlq.error.stage` after the token call
    /// (`userinfo`; a network-signal check of a job that carries a `code`).
    pub code_spent: bool,
}

impl Inspected {
    /// Reads `headers` of a dead letter whose Kafka timestamp is `record_ms` and whose value
    /// (the original job) is `value`.
    pub fn new(headers: &RawHeaders, record_ms: Option<i64>, value: Option<&[u8]>) -> Inspected {
        let parsed =
            DeadLetterHeaders::parse(headers.iter().map(|(k, v)| (k.as_str(), v.as_deref())));
        let class_label = match parsed.error_class.as_deref() {
            None => "(missing)".to_owned(),
            Some(c) => ErrorClass::parse(c)
                .map(|c| c.as_str().to_owned())
                .unwrap_or_else(|| "(unknown)".to_owned()),
        };
        let failed_at = parsed
            .failed_at
            .or_else(|| record_ms.and_then(|ms| Utc.timestamp_millis_opt(ms).single()));
        let stage = parsed.error_stage.as_deref();
        let code_spent = parsed.code_spent || after_the_exchange(stage, carries_code(value));
        Inspected {
            parsed,
            class_label,
            failed_at,
            code_spent,
        }
    }

    /// True when some `dlq.*` header was missing or garbled (the record is still replayable).
    pub fn garbled(&self) -> bool {
        !self.parsed.problems.is_empty()
    }

    /// Applies the filters, then the spent-code rule, then the `--max-replays` guard.
    pub fn decide(&self, opts: &ReplayOptions) -> Decision {
        if !opts.classes.is_empty() {
            let class = self
                .parsed
                .error_class
                .as_deref()
                .and_then(ErrorClass::parse);
            if !class.is_some_and(|c| opts.classes.contains(&c)) {
                return Decision::Skip;
            }
        }
        if opts.since.is_some() || opts.until.is_some() {
            let Some(t) = self.failed_at else {
                return Decision::Skip;
            };
            if opts.since.is_some_and(|s| t < s) || opts.until.is_some_and(|u| t >= u) {
                return Decision::Skip;
            }
        }
        if self.code_spent {
            Decision::CodeSpent
        } else if self.parsed.replay_count >= opts.max_replays {
            Decision::AtMaxReplays
        } else {
            Decision::Republish
        }
    }

    /// The re-published job's headers: `dlq.replay_count` incremented, every other `dlq.*` header
    /// renamed to `dlq.previous.*` (bytes unchanged), everything else (`traceparent`) kept.
    pub fn replay_headers(&self, headers: &RawHeaders) -> RawHeaders {
        let mut out: RawHeaders = headers
            .iter()
            .filter(|(k, _)| k != header::REPLAY_COUNT)
            .map(|(k, v)| match k.strip_prefix(header::DLQ_PREFIX) {
                Some(rest) => (format!("{PREVIOUS_PREFIX}{rest}"), v.clone()),
                None => (k.clone(), v.clone()),
            })
            .collect();
        let next = self.parsed.replay_count.saturating_add(1);
        out.push((
            header::REPLAY_COUNT.to_owned(),
            Some(next.to_string().into_bytes()),
        ));
        out
    }

    /// The original job's Kafka timestamp (`dlq.original.timestamp`), when present and valid:
    /// the re-published record carries it so the worker keeps the code's real age.
    pub fn original_timestamp(&self) -> Option<i64> {
        self.parsed
            .dlq
            .iter()
            .rev()
            .find(|(k, _)| k == header::ORIGINAL_TIMESTAMP)
            .and_then(|(_, v)| v.trim().parse::<i64>().ok())
            .filter(|ms| *ms >= 0)
    }
}

/// True when a dead letter's `stage` comes after the token call, so the job's code was
/// exchanged (or may have been) even if the header `dlq.code_spent` is missing (A2): `userinfo`,
/// and a network-signal check of a job that carries a `code` (its exchange runs beside the
/// checks). Other stages — `job`, `authorize`, `deadline`, `token`, a check of a job without a
/// code — say nothing either way.
fn after_the_exchange(stage: Option<&str>, carries_code: bool) -> bool {
    match stage.map(str::trim) {
        Some("userinfo") => true,
        Some("sim_swap" | "device_swap" | "call_forwarding") => carries_code,
        _ => false,
    }
}

/// True when the dead-lettered job (the record's value) is a JSON object with a non-null `code`.
fn carries_code(value: Option<&[u8]>) -> bool {
    value
        .and_then(|v| serde_json::from_slice::<serde_json::Value>(v).ok())
        .and_then(|job| job.get("code").map(|c| !c.is_null()))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(pairs: &[(&str, &str)]) -> RawHeaders {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), Some(v.as_bytes().to_vec())))
            .collect()
    }

    fn dead_letter(class: &str, failed_at: &str, count: &str) -> RawHeaders {
        raw(&[
            ("dlq.original.topic", "silentauth.jobs"),
            ("dlq.original.partition", "0"),
            ("dlq.original.offset", "7"),
            ("dlq.original.timestamp", "1764064800000"),
            ("dlq.error.class", class),
            ("dlq.error.stage", "token"),
            ("dlq.error.message", "HTTP 500"),
            ("dlq.attempts", "2"),
            ("dlq.failed_at", failed_at),
            ("dlq.consumer_group", "g"),
            ("dlq.worker_version", "0.1.0"),
            ("dlq.replay_count", count),
            ("traceparent", "00-aa-bb-01"),
        ])
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn filters_by_class_and_half_open_time_range() {
        let h = dead_letter("upstream_unavailable", "2026-01-01T10:00:00Z", "0");
        let i = Inspected::new(&h, None, None);
        assert!(!i.garbled());
        let mut o = ReplayOptions::default();
        assert_eq!(i.decide(&o), Decision::Republish);
        o.classes = vec![ErrorClass::RateLimited];
        assert_eq!(i.decide(&o), Decision::Skip);
        o.classes.push(ErrorClass::UpstreamUnavailable);
        assert_eq!(i.decide(&o), Decision::Republish);
        o.since = Some(at("2026-01-01T10:00:00Z"));
        assert_eq!(i.decide(&o), Decision::Republish);
        o.until = Some(at("2026-01-01T10:00:00Z"));
        assert_eq!(i.decide(&o), Decision::Skip);
        o.since = Some(at("2026-01-01T10:00:01Z"));
        o.until = None;
        assert_eq!(i.decide(&o), Decision::Skip);
    }

    #[test]
    fn garbled_failed_at_falls_back_to_the_record_timestamp() {
        let h = dead_letter("upstream_unavailable", "last tuesday", "x");
        let ms = at("2026-03-01T00:00:00Z").timestamp_millis();
        let i = Inspected::new(&h, Some(ms), None);
        assert!(i.garbled());
        assert_eq!(i.parsed.replay_count, 0);
        assert_eq!(i.failed_at, Some(at("2026-03-01T00:00:00Z")));
        let o = ReplayOptions {
            since: Some(at("2026-02-01T00:00:00Z")),
            ..ReplayOptions::default()
        };
        assert_eq!(i.decide(&o), Decision::Republish);
    }

    #[test]
    fn no_headers_at_all_is_replayable_with_count_zero() {
        let i = Inspected::new(&Vec::new(), None, None);
        assert!(i.garbled());
        assert_eq!(i.class_label, "(missing)");
        assert_eq!(i.decide(&ReplayOptions::default()), Decision::Republish);
        let o = ReplayOptions {
            classes: vec![ErrorClass::InvalidJob],
            ..ReplayOptions::default()
        };
        assert_eq!(i.decide(&o), Decision::Skip);
        let h = i.replay_headers(&Vec::new());
        assert_eq!(h, raw(&[("dlq.replay_count", "1")]));
        assert_eq!(i.original_timestamp(), None);
    }

    #[test]
    fn max_replays_guard() {
        let h = dead_letter("rate_limited", "2026-01-01T10:00:00Z", "3");
        let i = Inspected::new(&h, None, None);
        assert_eq!(i.decide(&ReplayOptions::default()), Decision::AtMaxReplays);
        let o = ReplayOptions {
            max_replays: 4,
            ..ReplayOptions::default()
        };
        assert_eq!(i.decide(&o), Decision::Republish);
    }

    #[test]
    fn headers_are_kept_as_previous_and_the_count_incremented() {
        let h = dead_letter("upstream_unavailable", "2026-01-01T10:00:00Z", "1");
        let i = Inspected::new(&h, None, None);
        let out = i.replay_headers(&h);
        let get = |n: &str| {
            out.iter()
                .filter(|(k, _)| k == n)
                .map(|(_, v)| String::from_utf8(v.clone().unwrap()).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(get("dlq.replay_count"), vec!["2"]);
        assert_eq!(
            get("dlq.previous.error.class"),
            vec!["upstream_unavailable"]
        );
        assert_eq!(get("dlq.previous.original.offset"), vec!["7"]);
        assert_eq!(get("traceparent"), vec!["00-aa-bb-01"]);
        assert!(get("dlq.previous.replay_count").is_empty());
        assert!(out.iter().all(|(k, _)| k == "traceparent"
            || k == "dlq.replay_count"
            || k.starts_with("dlq.previous.")));
        assert_eq!(out.len(), h.len());
        assert_eq!(i.original_timestamp(), Some(1_764_064_800_000));
    }

    #[test]
    fn a_failure_after_the_token_call_is_spent_without_the_header() {
        const WITH_CODE: &[u8] = br#"{"job_id":"j","login_hint":"381123456789","code":"c","redirect_uri":"https://cb.example/cb"}"#;
        const SIGNALS_ONLY: &[u8] =
            br#"{"job_id":"j","login_hint":"381123456789","signals":{"sim_swap":{}}}"#;
        let at_stage = |stage: &str| {
            let mut h = dead_letter("upstream_unavailable", "2026-01-01T10:00:00Z", "0");
            for (k, v) in h.iter_mut() {
                if k == "dlq.error.stage" {
                    *v = Some(stage.as_bytes().to_vec());
                }
            }
            h
        };
        let decide = |stage: &str, value: &[u8]| {
            let i = Inspected::new(&at_stage(stage), None, Some(value));
            assert!(!i.parsed.code_spent, "no dlq.code_spent header");
            i.decide(&ReplayOptions::default())
        };
        for value in [WITH_CODE, SIGNALS_ONLY, b"not json"] {
            assert_eq!(decide("userinfo", value), Decision::CodeSpent);
        }
        for stage in ["sim_swap", "device_swap", "call_forwarding"] {
            assert_eq!(decide(stage, WITH_CODE), Decision::CodeSpent, "{stage}");
            assert_eq!(decide(stage, SIGNALS_ONLY), Decision::Republish, "{stage}");
            let null_code = br#"{"job_id":"j","code":null,"signals":{}}"#;
            assert_eq!(decide(stage, null_code), Decision::Republish, "{stage}");
        }
        for stage in ["token", "job", "authorize", "deadline"] {
            assert_eq!(decide(stage, WITH_CODE), Decision::Republish, "{stage}");
        }
        // Spent whatever --max-replays says, and still subject to the filters.
        let i = Inspected::new(&at_stage("userinfo"), None, Some(WITH_CODE));
        let o = ReplayOptions {
            max_replays: 100,
            ..ReplayOptions::default()
        };
        assert_eq!(i.decide(&o), Decision::CodeSpent);
        let o = ReplayOptions {
            classes: vec![ErrorClass::RateLimited],
            ..ReplayOptions::default()
        };
        assert_eq!(i.decide(&o), Decision::Skip);
    }

    #[test]
    fn a_spent_code_is_never_republished() {
        let mut h = dead_letter("upstream_unavailable", "2026-01-01T10:00:00Z", "0");
        h.push(("dlq.code_spent".into(), Some(b"true".to_vec())));
        let i = Inspected::new(&h, None, None);
        assert!(!i.garbled());
        assert_eq!(i.decide(&ReplayOptions::default()), Decision::CodeSpent);
        let o = ReplayOptions {
            classes: vec![ErrorClass::UpstreamUnavailable],
            max_replays: 100,
            ..ReplayOptions::default()
        };
        assert_eq!(i.decide(&o), Decision::CodeSpent);
        // The filters still apply first.
        let o = ReplayOptions {
            classes: vec![ErrorClass::RateLimited],
            ..ReplayOptions::default()
        };
        assert_eq!(i.decide(&o), Decision::Skip);
        // A garbled value counts as spent.
        let last = h.len() - 1;
        h[last].1 = Some(b"maybe".to_vec());
        let i = Inspected::new(&h, None, None);
        assert!(i.garbled());
        assert_eq!(i.decide(&ReplayOptions::default()), Decision::CodeSpent);
    }
}
