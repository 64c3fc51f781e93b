//! Result v1 (docs/contract.md): one job's verdict.

use crate::contract::error::ErrorInfo;
use crate::contract::network_signals::{RiskFlag, SignalsReport};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The only result schema version this worker writes.
pub const SCHEMA_VERSION: u32 = 1;

/// One job's verdict, published to the results topic keyed by `job_id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobResult {
    /// Always 1.
    pub schema_version: u32,
    /// The job's id.
    pub job_id: String,
    /// The verdict.
    pub status: Status,
    /// `Some` when the network answered, `None` when the job failed.
    pub phone_number_verified: Option<bool>,
    /// The job's login_hint (`None` only for an invalid job that lacked a readable one).
    pub login_hint: Option<String>,
    /// From userinfo.
    pub sub: Option<String>,
    /// From userinfo.
    pub mobile_id: Option<String>,
    /// Echoed from the job.
    pub state: Option<String>,
    /// Echoed from the job.
    pub attributes: BTreeMap<String, String>,
    /// Set when `status` is `failed`, or on a `login_hint_mismatch`.
    pub error: Option<ErrorInfo>,
    /// HTTP requests made for this job.
    pub attempts: u32,
    /// True when republished from the idempotency cache.
    pub duplicate: bool,
    /// From the `dlq.replay_count` header of a replayed job.
    pub replay_count: u32,
    /// When the worker consumed the job.
    pub received_at: DateTime<Utc>,
    /// When the verdict was reached.
    pub completed_at: DateTime<Utc>,
    /// `completed_at - received_at` in milliseconds.
    pub duration_ms: u64,
    /// The network-signal checks the job asked for (absent when it asked for none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signals: Option<SignalsReport>,
    /// What a fraud pipeline must look at, from `signals` (absent with it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub risk_flags: Option<Vec<RiskFlag>>,
}

impl JobResult {
    /// The error a dead letter is published for, if any (§5): the verdict's error when its
    /// class is dead-lettered; for a `signals_only` job, the first failed check whose class is
    /// (replaying such a job spends no code). A failed check beside a verdict is only reported.
    pub fn dead_letter_error(&self) -> Option<&ErrorInfo> {
        if let Some(e) = self.error.as_ref().filter(|e| e.class.dead_lettered()) {
            return Some(e);
        }
        if self.status != Status::SignalsOnly {
            return None;
        }
        self.signals
            .as_ref()?
            .errors()
            .find(|e| e.class.dead_lettered())
    }
}

/// The verdict of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// The network verified the job's own number.
    Verified,
    /// The network answered, and the number is not the device's.
    NotVerified,
    /// No verdict: see `error`.
    Failed,
    /// The job asked only for network signals: see `signals`.
    SignalsOnly,
}

impl Status {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Verified => "verified",
            Status::NotVerified => "not_verified",
            Status::Failed => "failed",
            Status::SignalsOnly => "signals_only",
        }
    }
}
