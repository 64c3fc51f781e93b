//! A job's exit as one value: what one consumed job record publishes (its result, its dead
//! letter, or both), built by pure functions from the record and the job's result. The worker
//! hands the [`Publication`] to the producer (or to the transaction committer) whole.

use crate::contract::dead_letter::DeadLetterHeaders;
use crate::contract::record::{JobRecord, Origin};
use crate::contract::{ErrorClass, ErrorInfo, JobResult};
use chrono::{DateTime, Utc};

/// A result to publish, keyed by its `job_id`.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultRecord {
    /// The result.
    pub result: JobResult,
    /// The fingerprint of the job it answers (written as a header, so warm-ups can index
    /// results without decoding them); `None`: not to be indexed (a job that could not be
    /// decoded, a reused job_id).
    pub fingerprint: Option<u64>,
    /// The job's `traceparent`, copied to the result.
    pub traceparent: Option<String>,
}

/// A dead letter: the original record's key and value, and the §6 headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterRecord {
    /// The class of the failure it records.
    pub class: ErrorClass,
    /// The original key.
    pub key: Option<Vec<u8>>,
    /// The original value, unchanged.
    pub value: Option<Vec<u8>>,
    /// The §6 headers (`traceparent` included when the job had one).
    pub headers: Vec<(&'static str, String)>,
    /// Further headers carried over unchanged: the `dlq.previous.*` audit trail of a replayed
    /// job's earlier failures.
    pub audit_headers: Vec<(String, Vec<u8>)>,
}

/// What one job publishes: a result, a dead letter, or both (a decoded job always has a
/// result; a job whose `job_id` cannot be read has only its dead letter; a job answered before
/// whose result stands and cannot be read back publishes nothing).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Publication {
    /// The result, if the job has one.
    pub result: Option<ResultRecord>,
    /// The dead letter, if the job failed with a dead-lettered class.
    pub dead_letter: Option<DeadLetterRecord>,
}

impl Publication {
    /// The publication of a job answered with `result`, indexed under `fingerprint`: the
    /// result, and a dead letter when its error is dead-lettered (§5) and it is not a
    /// republished duplicate (whose dead letter, if any, was published the first time).
    pub fn answered(
        record: &JobRecord,
        origin: Origin<'_>,
        result: JobResult,
        fingerprint: Option<u64>,
        now: DateTime<Utc>,
    ) -> Publication {
        let dead_letter = result
            .dead_letter_error()
            .filter(|_| !result.duplicate)
            .map(|e| dead_letter(record, origin, e, result.attempts, now));
        Publication {
            dead_letter,
            result: Some(ResultRecord {
                result,
                fingerprint,
                traceparent: record.traceparent.clone(),
            }),
        }
    }

    /// The publication of a job that could not be decoded: its failed result when its
    /// `job_id` could be read (never indexed), and always its dead letter.
    pub fn invalid(
        record: &JobRecord,
        origin: Origin<'_>,
        result: Option<JobResult>,
        error: &ErrorInfo,
        now: DateTime<Utc>,
    ) -> Publication {
        Publication {
            dead_letter: Some(dead_letter(record, origin, error, 0, now)),
            result: result.map(|result| ResultRecord {
                result,
                fingerprint: None,
                traceparent: record.traceparent.clone(),
            }),
        }
    }

    /// The result published, if any.
    pub fn result(&self) -> Option<&JobResult> {
        self.result.as_ref().map(|r| &r.result)
    }

    /// The class the job ended with: its result's error (a `login_hint_mismatch` kept for
    /// audit included), else its dead letter's; `None` for a clean verdict.
    pub fn class(&self) -> Option<ErrorClass> {
        self.result()
            .and_then(|r| r.error.as_ref())
            .map(|e| e.class)
            .or(self.dead_letter.as_ref().map(|d| d.class))
    }
}

/// The dead letter of `record`, which failed with `error` after `attempts` HTTP attempts: the
/// record as consumed, with headers saying where it came from and why it failed.
fn dead_letter(
    record: &JobRecord,
    origin: Origin<'_>,
    error: &ErrorInfo,
    attempts: u32,
    now: DateTime<Utc>,
) -> DeadLetterRecord {
    DeadLetterRecord {
        class: error.class,
        key: record.key.clone(),
        value: record.payload.clone(),
        headers: DeadLetterHeaders::for_failure(record, origin, error, attempts, now).to_headers(),
        audit_headers: record.previous.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::dead_letter::header;
    use crate::contract::{Stage, Status};
    use chrono::TimeZone;

    fn record() -> JobRecord {
        JobRecord {
            partition: 2,
            offset: 41,
            timestamp_ms: Some(1_764_064_800_000),
            key: Some(b"job-1".to_vec()),
            payload: Some(b"{\"job_id\":\"job-1\"}".to_vec()),
            traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
            replay_count: 1,
            previous: vec![(
                "dlq.previous.1.error.class".into(),
                b"upstream_unavailable".to_vec(),
            )],
        }
    }

    const ORIGIN: Origin<'static> = Origin {
        topic: "silentauth.jobs",
        group: "silentauth-worker",
    };

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 5).unwrap()
    }

    fn result(error: Option<ErrorInfo>, duplicate: bool) -> JobResult {
        JobResult {
            schema_version: 1,
            job_id: "job-1".into(),
            status: if error.is_some() {
                Status::Failed
            } else {
                Status::Verified
            },
            phone_number_verified: error.is_none().then_some(true),
            login_hint: Some("+4915112345678".into()),
            sub: None,
            mobile_id: None,
            state: None,
            attributes: Default::default(),
            error,
            attempts: 3,
            duplicate,
            replay_count: 1,
            received_at: now(),
            completed_at: now(),
            duration_ms: 0,
            signals: None,
            risk_flags: None,
        }
    }

    fn unavailable() -> ErrorInfo {
        ErrorInfo::new(ErrorClass::UpstreamUnavailable, Stage::Token, "HTTP 503")
    }

    fn header_of<'a>(d: &'a DeadLetterRecord, name: &str) -> Option<&'a str> {
        d.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn a_verdict_publishes_its_result_only() {
        let p = Publication::answered(&record(), ORIGIN, result(None, false), Some(7), now());
        assert!(p.dead_letter.is_none());
        let r = p.result.as_ref().unwrap();
        assert_eq!(r.fingerprint, Some(7));
        assert_eq!(r.traceparent, record().traceparent);
        assert_eq!(p.class(), None);
    }

    #[test]
    fn a_dead_lettered_failure_carries_the_record_and_its_provenance() {
        let p = Publication::answered(
            &record(),
            ORIGIN,
            result(Some(unavailable()), false),
            Some(7),
            now(),
        );
        let d = p.dead_letter.as_ref().expect("a dead letter");
        assert_eq!(d.class, ErrorClass::UpstreamUnavailable);
        assert_eq!(d.key, record().key);
        assert_eq!(d.value, record().payload);
        assert_eq!(d.audit_headers, record().previous);
        assert_eq!(header_of(d, header::ORIGINAL_PARTITION), Some("2"));
        assert_eq!(header_of(d, header::ORIGINAL_OFFSET), Some("41"));
        assert_eq!(
            header_of(d, header::ORIGINAL_TOPIC),
            Some("silentauth.jobs")
        );
        assert_eq!(
            header_of(d, header::CONSUMER_GROUP),
            Some("silentauth-worker")
        );
        assert_eq!(header_of(d, header::ATTEMPTS), Some("3"));
        assert_eq!(header_of(d, header::REPLAY_COUNT), Some("1"));
        assert_eq!(
            header_of(d, header::TRACEPARENT),
            record().traceparent.as_deref()
        );
        assert_eq!(p.class(), Some(ErrorClass::UpstreamUnavailable));
    }

    #[test]
    fn a_duplicate_republishes_no_dead_letter() {
        let p = Publication::answered(
            &record(),
            ORIGIN,
            result(Some(unavailable()), true),
            Some(7),
            now(),
        );
        assert!(p.dead_letter.is_none());
        assert!(p.result.is_some());
    }

    #[test]
    fn an_invalid_job_is_dead_lettered_with_no_attempts_and_never_indexed() {
        let error = ErrorInfo::new(ErrorClass::InvalidJob, Stage::Job, "not JSON");
        let p = Publication::invalid(&record(), ORIGIN, None, &error, now());
        assert!(p.result.is_none());
        let d = p.dead_letter.as_ref().unwrap();
        assert_eq!(header_of(d, header::ATTEMPTS), Some("0"));
        assert_eq!(p.class(), Some(ErrorClass::InvalidJob));
        let with_id = Publication::invalid(
            &record(),
            ORIGIN,
            Some(result(Some(error.clone()), false)),
            &error,
            now(),
        );
        assert_eq!(with_id.result.unwrap().fingerprint, None);
    }
}
