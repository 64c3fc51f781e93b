//! Job v1 (CONTRACT.md §3): decoding raw Kafka bytes into a validated [`Job`].

use crate::secret::Secret;
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;

/// A validated verification job.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// 1..128 chars of `[A-Za-z0-9._:-]`.
    pub job_id: String,
    /// The MSISDN to verify: 8..15 digits, optional leading `+`.
    pub login_hint: String,
    /// The authorization code (absent when `error` is present).
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

impl Job {
    /// Decodes and validates a job from raw bytes. Never panics.
    pub fn decode(_bytes: &[u8]) -> Result<Job, DecodeFailure> {
        Err(DecodeFailure {
            job_id: None,
            login_hint: None,
            error: JobError::NotObject,
        })
    }
}
