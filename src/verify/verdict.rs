//! A job's verdict before it becomes a result, and the verdicts the verification reaches
//! without an answer to judge (an expired code, a panic) or from one (userinfo).

use crate::contract::{ErrorClass, ErrorInfo, Job, Stage, Status};
use crate::silentauth::UserInfo;
use chrono::{DateTime, Utc};

/// A job's verdict before it becomes a result.
#[derive(Debug)]
pub(super) struct Verdict {
    pub(super) status: Status,
    pub(super) phone_number_verified: Option<bool>,
    /// The userinfo answer, when there was one.
    pub(super) userinfo: Option<UserInfo>,
    pub(super) error: Option<ErrorInfo>,
}

impl Verdict {
    /// No verdict: the job failed with `error`.
    pub(super) fn failed(error: ErrorInfo) -> Verdict {
        Verdict {
            status: Status::Failed,
            phone_number_verified: None,
            userinfo: None,
            error: Some(error),
        }
    }

    /// The network answered `userinfo`: the number is (`verified`) or is not the device's,
    /// with an `error` kept for audit (a `login_hint_mismatch`).
    pub(super) fn answered(
        verified: bool,
        userinfo: UserInfo,
        error: Option<ErrorInfo>,
    ) -> Verdict {
        Verdict {
            status: match verified {
                true => Status::Verified,
                false => Status::NotVerified,
            },
            phone_number_verified: Some(verified),
            userinfo: Some(userinfo),
            error,
        }
    }
}

/// The verdict of a userinfo answer for `job`: verified only for the job's own number.
pub(super) fn verdict_of(info: UserInfo, job: &Job) -> Verdict {
    if !info.phone_number_verified {
        return Verdict::answered(false, info, None);
    }
    if same_number(&info.login_hint, &job.login_hint) {
        return Verdict::answered(true, info, None);
    }
    let e = ErrorInfo::new(
        ErrorClass::LoginHintMismatch,
        Stage::Userinfo,
        format!(
            "the network verified a different number ({}) than the job's login_hint",
            crate::secret::mask_to_last_three_digits(&info.login_hint)
        ),
    );
    Verdict::answered(false, info, Some(e))
}

/// The verdict of a job whose code's `deadline` passed before a request could be sent.
pub(super) fn expired(deadline: DateTime<Utc>) -> Verdict {
    let e = ErrorInfo::new(
        ErrorClass::Expired,
        Stage::Deadline,
        format!(
            "the code's deadline (issued_at + worker.code_ttl = {}) passed before a request could be sent",
            deadline.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        ),
    );
    Verdict::failed(e)
}

/// The verdict of a job whose verification panicked: `internal_error` at stage `job`,
/// dead-lettered and retryable (§5). The panic's message goes to the log, never to the result.
pub(super) fn internal_error(panic: &(dyn std::any::Any + Send)) -> Verdict {
    let message = panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a panic without a message");
    tracing::error!(
        panic = message.chars().take(200).collect::<String>(),
        "verifying a job panicked; it ends internal_error"
    );
    let e = ErrorInfo::new(
        ErrorClass::InternalError,
        Stage::Job,
        "the worker failed on this job (a bug caught at run time; its log has the details)",
    );
    Verdict::failed(e)
}

/// Compares two MSISDNs by their digits, ignoring a `+` or `00` international prefix.
pub fn same_number(a: &str, b: &str) -> bool {
    fn norm(s: &str) -> String {
        let digits: String = s.chars().filter(char::is_ascii_digit).collect();
        match digits.strip_prefix("00") {
            Some(rest) if !s.trim_start().starts_with('+') => rest.to_owned(),
            _ => digits,
        }
    }
    let (a, b) = (norm(a), norm(b));
    !a.is_empty() && a == b
}

/// The seed's B.1 descriptions, for an authorize error that came without one.
pub(super) fn authorize_description(error: &str) -> &'static str {
    match error {
        "invalid_client_id_request" => "A required OAuth 2.0 parameter is missing or invalid.",
        "missing_scope" => "A required OAuth 2.0 scope parameter is missing",
        "insufficient_scope" => "Only openid scope requested, while custom scope is also required",
        "unsupported_scope" => {
            "The requested scope is unknown, malformed, or exceeds permitted scope."
        }
        "missing_login_hint" => "Scope requires login_hint but not provided",
        "server_error" => "Unexpected server error",
        _ => "the authorize request was rejected",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_compare_by_digits_ignoring_international_prefixes() {
        assert!(same_number("381123456789", "+381123456789"));
        assert!(same_number("00381123456789", "381123456789"));
        assert!(same_number("+381 12 345 6789", "381123456789"));
        assert!(!same_number("381123456789", "381123456788"));
        assert!(!same_number("", ""));
        assert!(!same_number("+00381123456789", "381123456789"));
    }
}
