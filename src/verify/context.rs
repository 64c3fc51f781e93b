//! What the worker knows about a job besides its content.

use crate::silentauth::SpentCode;
use chrono::{DateTime, Utc};

/// What the worker knows about a job besides its content.
#[derive(Debug, Clone)]
pub struct JobContext {
    /// When the worker consumed the job.
    pub received_at: DateTime<Utc>,
    /// From the `dlq.replay_count` header (0 for a first delivery).
    pub replay_count: u32,
    /// The record's timestamp: the code's issue time when the job has no `issued_at`.
    pub record_time: Option<DateTime<Utc>>,
    /// Whether the job's code is spent: the verifier marks it, the caller reads it (and keeps
    /// a clone until the result is acknowledged, for the codes-at-risk gauge).
    pub spent: SpentCode,
}

impl JobContext {
    /// A context for a job received now.
    pub fn now() -> JobContext {
        JobContext {
            received_at: Utc::now(),
            replay_count: 0,
            record_time: None,
            spent: SpentCode::new(),
        }
    }
}

pub(super) fn millis_between(a: DateTime<Utc>, b: DateTime<Utc>) -> u64 {
    (b - a).num_milliseconds().max(0) as u64
}
