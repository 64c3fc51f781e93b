//! The error half of the contract: the stable error classes (docs/contract.md §5), the stage an
//! error happened in, and the `error` object of a result.

use serde::{Deserialize, Serialize};

/// Why a job failed (or, for `login_hint_mismatch`, why it is not verified).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorInfo {
    /// The stable class (§5).
    pub class: ErrorClass,
    /// Where it happened.
    pub stage: Stage,
    /// The upstream `error` string when there was one.
    pub code: Option<String>,
    /// The upstream HTTP status when there was one.
    pub http_status: Option<u16>,
    /// Human-readable; never contains a secret.
    pub description: String,
    /// Whether a later replay could help.
    pub retryable: bool,
    /// True when the job's single-use code is spent (a token call returned 2xx, or the job
    /// failed after an ambiguous token attempt): nothing may present it again, so the failure is
    /// final and the user has to authenticate again. Written only when true.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub code_spent: bool,
}

impl ErrorInfo {
    /// An error whose `retryable` flag follows the class table.
    pub fn new(class: ErrorClass, stage: Stage, description: impl Into<String>) -> Self {
        ErrorInfo {
            class,
            stage,
            code: None,
            http_status: None,
            description: description.into(),
            retryable: class.retryable(),
            code_spent: false,
        }
    }

    /// Marks the error final because the job's code is spent: not retryable, and the
    /// description ends with `why` (which says the user has to authenticate again).
    pub fn with_code_spent(mut self, why: &str) -> Self {
        self.code_spent = true;
        self.retryable = false;
        self.description = format!("{}; {why}", self.description);
        self
    }

    /// Adds the upstream error code.
    pub fn with_code(mut self, code: Option<String>) -> Self {
        self.code = code;
        self
    }

    /// Adds the upstream HTTP status.
    pub fn with_status(mut self, status: Option<u16>) -> Self {
        self.http_status = status;
        self
    }
}

/// The stable error classes of docs/contract.md. The `class` strings are the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// Undecodable or invalid job.
    InvalidJob,
    /// The job carries an authorize `error`.
    AuthorizeRejected,
    /// The code's deadline passed before a request could be sent.
    Expired,
    /// Token 400: bad, used, expired code or redirect mismatch.
    CodeRejected,
    /// 401 `invalid_client` for the worker's credentials.
    CredentialsRejected,
    /// 403 `permission_denied`.
    PermissionDenied,
    /// 429 still returned when retries ran out.
    RateLimited,
    /// 5xx, timeout or connection failure when retries ran out.
    UpstreamUnavailable,
    /// A 2xx body that does not parse, or an unexpected status.
    ProtocolError,
    /// Verified by the network for a different number.
    LoginHintMismatch,
    /// The worker itself failed on this job (a bug caught at run time, e.g. a panic).
    InternalError,
    /// The code was (or may have been) presented and the worker had to let the job go before
    /// its answer was known (a revoke or shutdown whose grace ran out, or a crash recorded
    /// before the request): final, the code counts as spent (contract A2).
    Interrupted,
}

impl ErrorClass {
    /// Every class, in table order.
    pub const ALL: [ErrorClass; 12] = [
        ErrorClass::InvalidJob,
        ErrorClass::AuthorizeRejected,
        ErrorClass::Expired,
        ErrorClass::CodeRejected,
        ErrorClass::CredentialsRejected,
        ErrorClass::PermissionDenied,
        ErrorClass::RateLimited,
        ErrorClass::UpstreamUnavailable,
        ErrorClass::ProtocolError,
        ErrorClass::LoginHintMismatch,
        ErrorClass::InternalError,
        ErrorClass::Interrupted,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::InvalidJob => "invalid_job",
            ErrorClass::AuthorizeRejected => "authorize_rejected",
            ErrorClass::Expired => "expired",
            ErrorClass::CodeRejected => "code_rejected",
            ErrorClass::CredentialsRejected => "credentials_rejected",
            ErrorClass::PermissionDenied => "permission_denied",
            ErrorClass::RateLimited => "rate_limited",
            ErrorClass::UpstreamUnavailable => "upstream_unavailable",
            ErrorClass::ProtocolError => "protocol_error",
            ErrorClass::LoginHintMismatch => "login_hint_mismatch",
            ErrorClass::InternalError => "internal_error",
            ErrorClass::Interrupted => "interrupted",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<ErrorClass> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// Whether a job with this class also goes to the dead-letter topic (§5 table).
    pub fn dead_lettered(self) -> bool {
        matches!(
            self,
            ErrorClass::InvalidJob
                | ErrorClass::CredentialsRejected
                | ErrorClass::PermissionDenied
                | ErrorClass::RateLimited
                | ErrorClass::UpstreamUnavailable
                | ErrorClass::ProtocolError
                | ErrorClass::InternalError
                | ErrorClass::Interrupted
        )
    }

    /// The `retryable` flag of the result (§5 table): whether a later replay could help.
    /// (`internal_error` is retryable unless the job's code is spent; the class alone cannot
    /// know that, so whoever builds the error and knows it turns the flag off.)
    pub fn retryable(self) -> bool {
        matches!(
            self,
            ErrorClass::CredentialsRejected
                | ErrorClass::PermissionDenied
                | ErrorClass::RateLimited
                | ErrorClass::UpstreamUnavailable
                | ErrorClass::InternalError
        )
    }
}

impl std::fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where in the flow an error happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Decoding or validating the job.
    Job,
    /// The authorize redirect (the job carried its error).
    Authorize,
    /// The code's deadline.
    Deadline,
    /// `POST /oauth2/token`.
    Token,
    /// `GET /oauth2/userinfo`.
    Userinfo,
    /// `POST /sim-swap/check` and `/sim-swap/retrieve-date` (Network Signals).
    SimSwap,
    /// `POST /device-swap/check` and `/device-swap/retrieve-date`.
    DeviceSwap,
    /// `POST /call-forwarding/unconditional/check`.
    CallForwarding,
}

impl Stage {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Job => "job",
            Stage::Authorize => "authorize",
            Stage::Deadline => "deadline",
            Stage::Token => "token",
            Stage::Userinfo => "userinfo",
            Stage::SimSwap => "sim_swap",
            Stage::DeviceSwap => "device_swap",
            Stage::CallForwarding => "call_forwarding",
        }
    }
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_names_round_trip() {
        for c in ErrorClass::ALL {
            assert_eq!(ErrorClass::parse(c.as_str()), Some(c));
            assert_eq!(serde_json::to_value(c).unwrap(), c.as_str());
        }
        assert_eq!(ErrorClass::parse("nope"), None);
    }

    #[test]
    fn dead_letter_table_matches_contract() {
        let dl: Vec<_> = ErrorClass::ALL
            .into_iter()
            .filter(|c| c.dead_lettered())
            .map(ErrorClass::as_str)
            .collect();
        assert_eq!(
            dl,
            [
                "invalid_job",
                "credentials_rejected",
                "permission_denied",
                "rate_limited",
                "upstream_unavailable",
                "protocol_error",
                "internal_error",
                "interrupted"
            ]
        );
    }
}
