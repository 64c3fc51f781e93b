//! Job v1 (docs/contract.md): decoding raw Kafka bytes into a validated [`Job`].
//!
//! The rules here and `schemas/job.v1.schema.json` accept exactly the same documents;
//! `tests/schema.rs` runs a corpus and a property test through both.
//!
//! **Null handling.** A field whose value is JSON `null` is treated exactly as if it were absent.
//! For optional fields that means `null` is accepted; for required fields (`job_id`,
//! `login_hint`, and `code`/`redirect_uri` when there is no `error`) it means `null` is rejected,
//! just as a missing field would be. A present, non-null field must always be valid, even where
//! it is not needed (a `code` next to an `error` must still be a non-empty string).
//!
//! **Secrets.** Error messages name the field and the rule it broke; they never echo a field's
//! value, so the authorization code cannot leak through a result or a dead-letter header.
//!
//! **Bounded work.** Decoding is one linear pass of `serde_json` (whose recursion limit bounds
//! nesting) followed by checks that are linear in the size of the fields they read.

use crate::contract::error::{ErrorClass, ErrorInfo, Stage};
use crate::contract::network_signals::{
    SignalsRequest, SwapCheck, DEFAULT_MAX_AGE_MINUTES, MAX_MAX_AGE_MINUTES,
};
pub use crate::contract::syntax::{
    is_valid_client, is_valid_job_id, is_valid_login_hint, is_valid_redirect_uri, parse_rfc3339,
    MAX_CLIENT_LEN, MAX_JOB_ID_LEN, MAX_LOGIN_HINT_DIGITS, MIN_LOGIN_HINT_DIGITS,
};
use crate::secret::Secret;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fmt;

/// The only job schema version this worker understands.
pub const JOB_SCHEMA_VERSION: u64 = 1;
/// The credentials profile a job uses when it names none.
pub const DEFAULT_CLIENT: &str = "default";

/// A validated verification job.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// 1..128 chars of `[A-Za-z0-9._:-]`.
    pub job_id: String,
    /// The MSISDN to verify: 8..15 digits, optional leading `+`.
    pub login_hint: String,
    /// The authorization code (absent when `error` is present: a job carrying an authorize
    /// error never spends a code, so a code sent alongside one is validated and then dropped).
    pub code: Option<Secret>,
    /// Required with `code`; absolute http(s) URL.
    pub redirect_uri: Option<String>,
    /// The authorize redirect's error.
    pub error: Option<String>,
    /// The authorize redirect's error description.
    pub error_description: Option<String>,
    /// Echoed.
    pub state: Option<String>,
    /// Credentials profile, default `"default"`.
    pub client: String,
    /// When the callback got the code.
    pub issued_at: Option<DateTime<Utc>>,
    /// Echoed string map.
    pub attributes: BTreeMap<String, String>,
    /// The network-signal checks asked for (`None` when the job has no `signals`).
    pub signals: Option<SignalsRequest>,
}

/// Why a job is invalid; each variant names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    /// The bytes are not UTF-8 JSON.
    #[error("job is not valid UTF-8 JSON: {0}")]
    NotJson(String),
    /// The JSON is not an object.
    #[error("job must be a JSON object")]
    NotObject,
    /// A required field is missing.
    #[error("missing required field `{0}`")]
    Missing(&'static str),
    /// A field has the wrong type or an invalid value.
    #[error("invalid field `{field}`: {reason}")]
    Invalid {
        /// The field name.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

impl JobError {
    /// The field the error is about, when there is one.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            JobError::Missing(f) => Some(f),
            JobError::Invalid { field, .. } => Some(field),
            _ => None,
        }
    }

    fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        JobError::Invalid {
            field,
            reason: reason.into(),
        }
    }
}

/// A job that could not be decoded, with its `job_id` when that could still be read.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodeFailure {
    /// The job id, if readable and valid.
    pub job_id: Option<String>,
    /// The login_hint, if readable (echoed in the failed result).
    pub login_hint: Option<String>,
    /// What is wrong.
    pub error: JobError,
}

impl DecodeFailure {
    /// A failure of bytes that are not a JSON object, so nothing can be recovered.
    fn unkeyed(error: JobError) -> Self {
        DecodeFailure {
            job_id: None,
            login_hint: None,
            error,
        }
    }

    /// The `invalid_job` error of the failed result and the dead letter (§5).
    pub fn error_info(&self) -> ErrorInfo {
        ErrorInfo::new(ErrorClass::InvalidJob, Stage::Job, self.error.to_string())
    }
}

impl fmt::Display for DecodeFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)
    }
}

impl std::error::Error for DecodeFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

impl Job {
    /// Decodes and validates a job from raw bytes. Never panics.
    ///
    /// On failure the [`DecodeFailure`] still carries `job_id` and `login_hint` whenever the
    /// bytes are a JSON object whose fields of those names are themselves valid, so the worker
    /// can publish a keyed `invalid_job` result.
    pub fn decode(bytes: &[u8]) -> Result<Job, DecodeFailure> {
        let text = std::str::from_utf8(bytes).map_err(|e| {
            DecodeFailure::unkeyed(JobError::NotJson(format!(
                "invalid UTF-8 at byte {}",
                e.valid_up_to()
            )))
        })?;
        let value: Value = serde_json::from_str(text)
            .map_err(|e| DecodeFailure::unkeyed(JobError::NotJson(e.to_string())))?;
        let Value::Object(obj) = value else {
            return Err(DecodeFailure::unkeyed(JobError::NotObject));
        };
        Self::from_object(&obj).map_err(|error| DecodeFailure {
            job_id: read_job_id(&obj).ok(),
            login_hint: read_login_hint(&obj).ok(),
            error,
        })
    }

    /// Validates every field of a decoded JSON object, reporting the first rule broken.
    fn from_object(obj: &Map<String, Value>) -> Result<Job, JobError> {
        if let Some(v) = present(obj, "schema_version") {
            if !is_one(v) {
                return Err(JobError::invalid("schema_version", "must be 1"));
            }
        }
        let job_id = read_job_id(obj)?;
        let login_hint = read_login_hint(obj)?;
        let asked = Asked::read(obj)?;
        let error_description = optional_string(obj, "error_description")?;
        let state = optional_string(obj, "state")?;
        let client = read_client(obj)?;
        let issued_at = read_issued_at(obj)?;
        let attributes = read_attributes(obj)?;
        Ok(Job {
            job_id,
            login_hint,
            // A job with an authorize error never spends a code: do not carry the secret on.
            code: if asked.error.is_some() {
                None
            } else {
                asked.code.map(Secret::new)
            },
            redirect_uri: asked.redirect_uri,
            error: asked.error,
            error_description,
            state,
            client,
            issued_at,
            attributes,
            signals: asked.signals,
        })
    }
}

/// What a job asks the worker to do: present a code, conclude an authorize error, run
/// network-signal checks.
struct Asked {
    error: Option<String>,
    code: Option<String>,
    redirect_uri: Option<String>,
    signals: Option<SignalsRequest>,
}

impl Asked {
    /// Reads `error`, `code`, `redirect_uri` and `signals`; without an `error`, a code needs a
    /// `redirect_uri`, and a job without a code must ask for at least one signal check.
    fn read(obj: &Map<String, Value>) -> Result<Asked, JobError> {
        let error = optional_string(obj, "error")?;
        if error.as_deref() == Some("") {
            return Err(JobError::invalid("error", "must not be empty"));
        }
        let code = optional_string(obj, "code")?;
        if code.as_deref() == Some("") {
            return Err(JobError::invalid("code", "must not be empty"));
        }
        let redirect_uri = optional_string(obj, "redirect_uri")?;
        if let Some(uri) = &redirect_uri {
            if !is_valid_redirect_uri(uri) {
                return Err(JobError::invalid(
                    "redirect_uri",
                    "must be an absolute http or https URL",
                ));
            }
        }
        let signals = read_signals(obj)?;
        if error.is_none() {
            if code.is_some() && redirect_uri.is_none() {
                return Err(JobError::Missing("redirect_uri"));
            }
            match &signals {
                // A job with only `signals` runs the checks alone.
                Some(s) if code.is_none() && s.is_empty() => {
                    return Err(JobError::invalid(
                        "signals",
                        "a job without `code` or `error` must ask for at least one of sim_swap, device_swap, call_forwarding",
                    ))
                }
                Some(_) => {}
                None if code.is_none() => return Err(JobError::Missing("code")),
                None => {}
            }
        }
        Ok(Asked {
            error,
            code,
            redirect_uri,
            signals,
        })
    }
}

/// `client`, [`DEFAULT_CLIENT`] when absent.
fn read_client(obj: &Map<String, Value>) -> Result<String, JobError> {
    match optional_string(obj, "client")? {
        None => Ok(DEFAULT_CLIENT.to_owned()),
        Some(c) if is_valid_client(&c) => Ok(c),
        Some(_) => Err(JobError::invalid(
            "client",
            "must be 1..64 characters of [A-Za-z0-9_-]",
        )),
    }
}

/// `issued_at`, an RFC 3339 date-time when present.
fn read_issued_at(obj: &Map<String, Value>) -> Result<Option<DateTime<Utc>>, JobError> {
    match optional_string(obj, "issued_at")? {
        None => Ok(None),
        Some(s) => parse_rfc3339(&s)
            .map(Some)
            .ok_or_else(|| JobError::invalid("issued_at", "must be an RFC 3339 date-time")),
    }
}

/// The field's value, or `None` when it is absent or `null` (the two mean the same).
fn present<'a>(obj: &'a Map<String, Value>, field: &str) -> Option<&'a Value> {
    obj.get(field).filter(|v| !v.is_null())
}

/// The JSON type of a value, for error messages that must not echo the value itself.
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn optional_string(
    obj: &Map<String, Value>,
    field: &'static str,
) -> Result<Option<String>, JobError> {
    match present(obj, field) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(JobError::invalid(
            field,
            format!("must be a string, not {}", kind(other)),
        )),
    }
}

fn required_string<'a>(
    obj: &'a Map<String, Value>,
    field: &'static str,
) -> Result<&'a str, JobError> {
    match obj.get(field) {
        None => Err(JobError::Missing(field)),
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(JobError::invalid(
            field,
            format!("must be a string, not {}", kind(other)),
        )),
    }
}

fn read_job_id(obj: &Map<String, Value>) -> Result<String, JobError> {
    let s = required_string(obj, "job_id")?;
    if is_valid_job_id(s) {
        Ok(s.to_owned())
    } else {
        Err(JobError::invalid(
            "job_id",
            "must be 1..128 characters of [A-Za-z0-9._:-]",
        ))
    }
}

fn read_login_hint(obj: &Map<String, Value>) -> Result<String, JobError> {
    let s = required_string(obj, "login_hint")?;
    if is_valid_login_hint(s) {
        Ok(s.to_owned())
    } else {
        Err(JobError::invalid(
            "login_hint",
            "must be 8..15 digits with an optional leading '+'",
        ))
    }
}

fn read_attributes(obj: &Map<String, Value>) -> Result<BTreeMap<String, String>, JobError> {
    match present(obj, "attributes") {
        None => Ok(BTreeMap::new()),
        Some(Value::Object(map)) => map
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                other => Err(JobError::invalid(
                    "attributes",
                    format!("every value must be a string, found {}", kind(other)),
                )),
            })
            .collect(),
        Some(other) => Err(JobError::invalid(
            "attributes",
            format!("must be an object of strings, not {}", kind(other)),
        )),
    }
}

/// `signals`: an object whose `sim_swap`, `device_swap` and `call_forwarding` members are
/// objects (or null, meaning not asked for); other members are ignored, like unknown fields.
fn read_signals(obj: &Map<String, Value>) -> Result<Option<SignalsRequest>, JobError> {
    let signals = match present(obj, "signals") {
        None => return Ok(None),
        Some(Value::Object(m)) => m,
        Some(other) => {
            return Err(JobError::invalid(
                "signals",
                format!("must be an object, not {}", kind(other)),
            ))
        }
    };
    Ok(Some(SignalsRequest {
        sim_swap: read_swap_check(
            signals,
            "sim_swap",
            "signals.sim_swap",
            "signals.sim_swap.max_age_minutes",
        )?,
        device_swap: read_swap_check(
            signals,
            "device_swap",
            "signals.device_swap",
            "signals.device_swap.max_age_minutes",
        )?,
        call_forwarding: signal_object(signals, "call_forwarding", "signals.call_forwarding")?
            .is_some(),
    }))
}

fn signal_object<'a>(
    signals: &'a Map<String, Value>,
    name: &str,
    field: &'static str,
) -> Result<Option<&'a Map<String, Value>>, JobError> {
    match present(signals, name) {
        None => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m)),
        Some(other) => Err(JobError::invalid(
            field,
            format!("must be an object, not {}", kind(other)),
        )),
    }
}

/// One swap check of `signals`: `name`, reported as `field` (and `max_age_field`) when invalid.
fn read_swap_check(
    signals: &Map<String, Value>,
    name: &str,
    field: &'static str,
    max_age_field: &'static str,
) -> Result<Option<SwapCheck>, JobError> {
    let Some(check) = signal_object(signals, name, field)? else {
        return Ok(None);
    };
    let max_age_minutes = match present(check, "max_age_minutes") {
        None => DEFAULT_MAX_AGE_MINUTES,
        // An integer literal: `240.0` is refused, as the schema's "integer" type does here.
        Some(v) => v
            .as_u64()
            .filter(|m| (1..=u64::from(MAX_MAX_AGE_MINUTES)).contains(m))
            .map(|m| m as u32)
            .ok_or_else(|| {
                JobError::invalid(
                    max_age_field,
                    format!("must be an integer from 1 to {MAX_MAX_AGE_MINUTES} (minutes)"),
                )
            })?,
    };
    Ok(Some(SwapCheck { max_age_minutes }))
}

/// `schema_version` must equal 1; like JSON Schema's `const`, `1.0` is the same number.
fn is_one(v: &Value) -> bool {
    match v {
        Value::Number(n) => {
            n.as_u64() == Some(JOB_SCHEMA_VERSION) || (n.is_f64() && n.as_f64() == Some(1.0))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"job_id":"j-1","login_hint":"+381123456789","code":"s3cr3t-code","redirect_uri":"https://client.example.com/cb"}"#;

    fn with(field: &str, value: Value) -> Vec<u8> {
        let mut v: Value = serde_json::from_str(GOOD).unwrap();
        v[field] = value;
        serde_json::to_vec(&v).unwrap()
    }

    #[test]
    fn decodes_a_minimal_job_with_defaults() {
        let job = Job::decode(GOOD.as_bytes()).unwrap();
        assert_eq!(job.job_id, "j-1");
        assert_eq!(job.login_hint, "+381123456789");
        assert_eq!(job.code.as_ref().map(Secret::expose), Some("s3cr3t-code"));
        assert_eq!(job.client, DEFAULT_CLIENT);
        assert!(job.attributes.is_empty());
        assert_eq!(job.issued_at, None);
    }

    #[test]
    fn decodes_every_field() {
        let bytes =
            br#"{"schema_version":1,"job_id":"a.b:c_d-1","login_hint":"38112345","code":"c",
            "redirect_uri":"HTTP://[::1]:8080/cb?x=1#f","state":"xyz","client":"eu_2",
            "issued_at":"2026-11-25T11:00:00+01:00","attributes":{"tenant":"acme"},"extra":[1]}"#;
        let job = Job::decode(bytes).unwrap();
        assert_eq!(job.client, "eu_2");
        assert_eq!(job.state.as_deref(), Some("xyz"));
        assert_eq!(
            job.issued_at.unwrap().to_rfc3339(),
            "2026-11-25T10:00:00+00:00"
        );
        assert_eq!(job.attributes["tenant"], "acme");
    }

    #[test]
    fn authorize_error_makes_code_optional_and_drops_it() {
        let job = Job::decode(br#"{"job_id":"j","login_hint":"12345678","error":"missing_scope"}"#)
            .unwrap();
        assert_eq!(job.error.as_deref(), Some("missing_scope"));
        assert!(job.code.is_none() && job.redirect_uri.is_none());
        let job = Job::decode(&with("error", "server_error".into())).unwrap();
        assert!(
            job.code.is_none(),
            "the code is not carried next to an error"
        );
    }

    #[test]
    fn null_is_absent() {
        for f in [
            "state",
            "client",
            "issued_at",
            "attributes",
            "schema_version",
            "error",
        ] {
            assert!(Job::decode(&with(f, Value::Null)).is_ok(), "{f}");
        }
        let e = Job::decode(&with("code", Value::Null)).unwrap_err();
        assert_eq!(e.error, JobError::Missing("code"));
        let e = Job::decode(&with("job_id", Value::Null)).unwrap_err();
        assert_eq!(e.error.field(), Some("job_id"));
        assert_eq!(e.job_id, None);
        assert_eq!(e.login_hint.as_deref(), Some("+381123456789"));
    }

    #[test]
    fn failures_keep_the_key_and_never_echo_the_code() {
        let e = Job::decode(&with("redirect_uri", "ftp://x/".into())).unwrap_err();
        assert_eq!(e.job_id.as_deref(), Some("j-1"));
        assert_eq!(e.error.field(), Some("redirect_uri"));
        assert!(!e.to_string().contains("s3cr3t"));
        assert_eq!(e.error_info().class, ErrorClass::InvalidJob);
        assert!(!e.error_info().retryable);
        let e = Job::decode(&with("code", 42.into())).unwrap_err();
        assert_eq!(
            e.error.to_string(),
            "invalid field `code`: must be a string, not a number"
        );
    }

    #[test]
    fn not_json_and_not_object() {
        assert!(matches!(
            Job::decode(b"\xff\xfe").unwrap_err().error,
            JobError::NotJson(_)
        ));
        assert!(matches!(
            Job::decode(b"{").unwrap_err().error,
            JobError::NotJson(_)
        ));
        assert_eq!(Job::decode(b"[1]").unwrap_err().error, JobError::NotObject);
        assert_eq!(
            Job::decode(b"\"x\"").unwrap_err().error,
            JobError::NotObject
        );
    }

    #[test]
    fn deep_nesting_is_rejected_without_overflow() {
        let deep = "[".repeat(100_000);
        assert!(Job::decode(deep.as_bytes()).is_err());
        let deep_attr = format!(
            r#"{{"job_id":"j","login_hint":"12345678","error":"e","attributes":{}}}"#,
            "{\"a\":".repeat(50_000)
        );
        assert!(Job::decode(deep_attr.as_bytes()).is_err());
    }
}
