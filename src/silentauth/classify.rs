//! The error-class table of docs/contract.md as one function: (stage, HTTP status, body, transport
//! error) to class, retry decision and the upstream error code. A status together with a
//! transport error is an answer whose body broke off.

use crate::contract::{ErrorClass, ErrorInfo, Stage};
use crate::secret::scrub;
use serde::Deserialize;

/// A request that got no HTTP response, or a response whose body did not arrive whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// Connecting (or resolving the host) failed: the request was never sent.
    Connect(String),
    /// No (whole) answer within `api.timeout` after the request was sent: the server may have
    /// acted on it.
    Timeout,
    /// The connection broke (reset, closed mid-response) after the request was sent.
    Reset(String),
}

impl Transport {
    /// True when the server may have received and acted on the request.
    pub fn after_send(&self) -> bool {
        !matches!(self, Transport::Connect(_))
    }
}

/// What one failed attempt means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classification {
    /// The class the job ends with if no retry follows.
    pub class: ErrorClass,
    /// Whether another attempt may follow (within the retry budget).
    pub retry: bool,
    /// True when the code may have been spent by this attempt (token stage: sent and no answer,
    /// or a gateway's 502/504).
    pub ambiguous: bool,
    /// True when the code was certainly spent by this attempt: the token call answered 2xx but
    /// its body could not be read in full. The stage ends here; nothing may present the code
    /// again.
    pub exchanged: bool,
    /// The upstream `error` string, when the body had one.
    pub code: Option<String>,
    /// The HTTP status, when there was a response.
    pub http_status: Option<u16>,
    /// Why, for the result's description, the log and the dead letter. Never holds a secret.
    pub reason: String,
}

impl Classification {
    /// The result's `error` object for a stage that ended on this failure.
    pub fn error_info(self, stage: Stage) -> ErrorInfo {
        ErrorInfo::new(self.class, stage, self.reason)
            .with_code(self.code)
            .with_status(self.http_status)
    }
}

/// The OAuth / tyntec error body `{"error": "...", "error_description": "..."}`, or the CAMARA
/// one of Network Signals `{"status": 404, "code": "NOT_FOUND", "message": "..."}`.
#[derive(Debug, Deserialize)]
struct ErrorBody {
    #[serde(alias = "code")]
    error: Option<String>,
    #[serde(alias = "message")]
    error_description: Option<String>,
}

/// The `error` values of a token 400 that reject the client, not the code (RFC 6749 §5.2 allows
/// 400 for a client authentication failure; A2): `credentials_rejected`, like a 401.
const CLIENT_AUTHENTICATION_FAILED: [&str; 2] = ["invalid_client", "unauthorized_client"];

/// Longest upstream description carried into a result.
const MAX_DESCRIPTION: usize = 200;
/// Longest upstream `error` string carried into a result (the seed's are under 40 characters).
const MAX_CODE: usize = 64;

/// Classifies one failed attempt: a non-2xx response (`status`, `body`), a transport failure
/// (`transport` without `status`), or an answer whose body broke off (`status` and `transport`:
/// how it broke).
///
/// `secrets` are what the request carried (the code, the api key, the client secret, the access
/// token): an upstream `error` or `error_description` that quotes one has it replaced by `***`
/// *before* the text is shortened, so no part of a secret cut by the shortening survives.
///
/// `stage` is [`Stage::Token`], [`Stage::Userinfo`] or a network-signal stage. A 2xx read whole
/// is not a failure and is never passed here; a 2xx whose body does not parse is a
/// `protocol_error` decided by the client. A token 2xx whose body broke off spent the code: a
/// final `protocol_error`. Signal checks are idempotent and retried like userinfo; their 404
/// ("no data for the number") is classified `protocol_error` here and turned into an
/// *inconclusive* outcome by the caller.
pub fn classify(
    stage: Stage,
    status: Option<u16>,
    body: &[u8],
    transport: Option<&Transport>,
    secrets: &[&str],
) -> Classification {
    match (status, transport) {
        (Some(status), Some(t)) => broken_body(stage, status, t),
        (None, Some(t)) => no_answer(stage, t),
        (status, None) => answered(stage, status.unwrap_or(0), body, secrets),
    }
}

/// A request that got no response.
fn no_answer(stage: Stage, t: &Transport) -> Classification {
    let reason = match t {
        Transport::Connect(e) => format!("connection failed before the request was sent: {e}"),
        Transport::Timeout => "no response within api.timeout".to_owned(),
        Transport::Reset(e) => format!("connection broken after the request was sent: {e}"),
    };
    Classification {
        class: ErrorClass::UpstreamUnavailable,
        retry: true,
        ambiguous: stage == Stage::Token && t.after_send(),
        exchanged: false,
        code: None,
        http_status: None,
        reason,
    }
}

/// An answer whose status arrived and whose body did not (A2). On the token call a 2xx spent
/// the code whatever its body: final, `protocol_error`. Any other stage is idempotent and
/// retried, and a non-2xx is classified by its status, as if its body were empty.
fn broken_body(stage: Stage, status: u16, t: &Transport) -> Classification {
    let how = match t {
        Transport::Timeout => "did not arrive in full within api.timeout".to_owned(),
        Transport::Connect(e) | Transport::Reset(e) => format!("broke off: {e}"),
    };
    if !(200..300).contains(&status) {
        let mut c = answered(stage, status, b"", &[]);
        c.reason.push_str(&format!(" (its body {how})"));
        return c;
    }
    let token = stage == Stage::Token;
    Classification {
        class: if token {
            ErrorClass::ProtocolError
        } else {
            ErrorClass::UpstreamUnavailable
        },
        retry: !token,
        ambiguous: false,
        exchanged: token,
        code: None,
        http_status: Some(status),
        reason: format!("{stage} answered HTTP {status} but its body {how}"),
    }
}

/// A response read whole, with a status that is not 2xx.
fn answered(stage: Stage, status: u16, body: &[u8], secrets: &[&str]) -> Classification {
    let parsed: Option<ErrorBody> = serde_json::from_slice(body).ok();
    let code = parsed
        .as_ref()
        .and_then(|b| b.error.as_deref())
        .map(|c| truncate(&scrub(c, secrets), MAX_CODE));
    let upstream = parsed
        .as_ref()
        .and_then(|b| b.error_description.as_deref())
        .map(|d| truncate(&scrub(d, secrets), MAX_DESCRIPTION));
    let client_auth = parsed
        .as_ref()
        .and_then(|b| b.error.as_deref())
        .is_some_and(|e| CLIENT_AUTHENTICATION_FAILED.contains(&e));
    let (class, retry) = match (stage, status) {
        (Stage::Token, 400) if client_auth => (ErrorClass::CredentialsRejected, false),
        (Stage::Token, 400) => (ErrorClass::CodeRejected, false),
        (_, 401) => (ErrorClass::CredentialsRejected, false),
        (_, 403) => (ErrorClass::PermissionDenied, false),
        (_, 429) => (ErrorClass::RateLimited, true),
        (Stage::Token, 500 | 502 | 503 | 504 | 520 | 524) => {
            (ErrorClass::UpstreamUnavailable, true)
        }
        (Stage::Token, 501..=599) => (ErrorClass::UpstreamUnavailable, false),
        (Stage::Userinfo, 500..=599) => (ErrorClass::UpstreamUnavailable, true),
        (Stage::SimSwap | Stage::DeviceSwap | Stage::CallForwarding, 500..=599) => {
            (ErrorClass::UpstreamUnavailable, true)
        }
        _ => (ErrorClass::ProtocolError, false),
    };
    let what = match class {
        ErrorClass::ProtocolError => "unexpected status",
        _ => "upstream answered",
    };
    let mut reason = format!("{stage} {what} HTTP {status}");
    match (&code, &upstream) {
        (Some(c), Some(d)) => reason.push_str(&format!(" {c}: {d}")),
        (Some(c), None) => reason.push_str(&format!(" {c}")),
        (None, _) if parsed.is_none() && !body.is_empty() => reason.push_str(" (non-JSON body)"),
        _ => {}
    }
    Classification {
        class,
        retry,
        ambiguous: gateway_after_send(stage, status),
        exchanged: false,
        code,
        http_status: Some(status),
        reason,
    }
}

/// A 502 or 504 (A1), or a 520 or 524 (A2: a gateway's "unknown error" and "origin timed out
/// after accepting the request"), on the token call: a gateway answered, and the origin behind it
/// may have used the code before the gateway gave up, so the attempt counts as ambiguous, like a
/// timeout.
fn gateway_after_send(stage: Stage, status: u16) -> bool {
    stage == Stage::Token && GATEWAY.contains(&status)
}

/// The statuses a gateway answers for an origin that may have acted on the request.
const GATEWAY: [u16; 4] = [502, 504, 520, 524];

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ErrorClass::*;
    use Stage::{Token, Userinfo};

    fn body(error: &str, description: &str) -> Vec<u8> {
        serde_json::json!({"error": error, "error_description": description})
            .to_string()
            .into_bytes()
    }

    fn check(
        stage: Stage,
        status: u16,
        b: &[u8],
        class: ErrorClass,
        retry: bool,
    ) -> Classification {
        let c = classify(stage, Some(status), b, None, &[]);
        assert_eq!((c.class, c.retry), (class, retry), "{stage} {status}");
        assert_eq!(c.http_status, Some(status));
        let gateway = stage == Token && matches!(status, 502 | 504 | 520 | 524);
        assert_eq!(c.ambiguous, gateway, "{stage} {status}");
        assert!(!c.exchanged, "{stage} {status}");
        c
    }

    // Seed table B.2, one test per row.
    #[test]
    fn b2_400_invalid_request_is_code_rejected() {
        let b = body(
            "invalid_request",
            "Client specified an invalid argument, request body or query param.",
        );
        let c = check(Token, 400, &b, CodeRejected, false);
        assert_eq!(c.code.as_deref(), Some("invalid_request"));
        assert!(c.reason.contains("invalid argument"));
    }

    #[test]
    fn token_400_invalid_grant_is_code_rejected() {
        let c = check(
            Token,
            400,
            &body("invalid_grant", "used"),
            CodeRejected,
            false,
        );
        assert_eq!(c.code.as_deref(), Some("invalid_grant"));
    }

    #[test]
    fn b2_401_invalid_client_is_credentials_rejected() {
        let b = body("invalid_client", "Request not authenticated due to missing, invalid, or expired credentials. A new authentication is required.");
        let c = check(Token, 401, &b, CredentialsRejected, false);
        assert_eq!(c.code.as_deref(), Some("invalid_client"));
    }

    #[test]
    fn token_400_invalid_or_unauthorized_client_is_credentials_rejected() {
        for error in ["invalid_client", "unauthorized_client"] {
            let c = check(
                Token,
                400,
                &body(error, "client authentication failed"),
                CredentialsRejected,
                false,
            );
            assert_eq!(c.code.as_deref(), Some(error));
        }
        // Only the exact values: anything else on a token 400 is about the code.
        for error in [
            "invalid_grant",
            "invalid_request",
            "Invalid_Client",
            "invalid_client_id",
        ] {
            check(Token, 400, &body(error, "d"), CodeRejected, false);
        }
        // A userinfo 400 stays unexpected, whatever its error.
        check(
            Userinfo,
            400,
            &body("invalid_client", "d"),
            ProtocolError,
            false,
        );
    }

    #[test]
    fn b2_403_permission_denied() {
        let b = body(
            "permission_denied",
            "Client does not have sufficient permissions to perform this action.",
        );
        check(Token, 403, &b, PermissionDenied, false);
    }

    #[test]
    fn b2_500_internal_server_error_is_retried() {
        let b = body("internal_server_error", "Request could not be processed.");
        let c = check(Token, 500, &b, UpstreamUnavailable, true);
        assert_eq!(c.code.as_deref(), Some("internal_server_error"));
    }

    // Seed table B.3, one test per row.
    #[test]
    fn b3_401_invalid_client_is_credentials_rejected() {
        check(
            Userinfo,
            401,
            &body("invalid_client", "Request not authenticated"),
            CredentialsRejected,
            false,
        );
    }

    #[test]
    fn b3_403_permission_denied() {
        check(
            Userinfo,
            403,
            &body("permission_denied", "no"),
            PermissionDenied,
            false,
        );
    }

    #[test]
    fn b3_500_internal_server_error_is_retried() {
        check(
            Userinfo,
            500,
            &body("internal_server_error", "Request could not be processed."),
            UpstreamUnavailable,
            true,
        );
    }

    #[test]
    fn status_429_is_rate_limited_and_retried_on_both_stages() {
        check(Token, 429, b"", RateLimited, true);
        check(Userinfo, 429, b"{}", RateLimited, true);
    }

    #[test]
    fn gateway_statuses_are_retried_on_both_stages() {
        for s in [502, 503, 504] {
            check(Token, s, b"Bad Gateway", UpstreamUnavailable, true);
            check(Userinfo, s, b"", UpstreamUnavailable, true);
        }
    }

    #[test]
    fn token_502_and_504_are_ambiguous_and_503_is_not() {
        // A gateway's 502/504 may come after the origin used the code (A1); a 503 or 500 is the
        // origin itself refusing before it used it.
        for s in [502, 504] {
            let c = classify(Token, Some(s), b"", None, &[]);
            assert!(c.retry && c.ambiguous, "{s}");
            let c = classify(Userinfo, Some(s), b"", None, &[]);
            assert!(c.retry && !c.ambiguous, "userinfo {s} spends nothing");
        }
        for s in [500, 503, 429] {
            assert!(!classify(Token, Some(s), b"", None, &[]).ambiguous, "{s}");
        }
    }

    #[test]
    fn token_520_and_524_are_ambiguous_and_retried_like_502_and_504() {
        for s in [520, 524] {
            let c = check(Token, s, b"error code: 524", UpstreamUnavailable, true);
            assert!(c.ambiguous, "{s}");
            let c = check(Userinfo, s, b"", UpstreamUnavailable, true);
            assert!(!c.ambiguous, "userinfo {s} spends nothing");
        }
        for s in [521, 522, 523, 525] {
            check(Token, s, b"", UpstreamUnavailable, false);
        }
    }

    #[test]
    fn other_5xx_on_token_is_not_retried() {
        check(Token, 501, b"", UpstreamUnavailable, false);
        check(Userinfo, 501, b"", UpstreamUnavailable, true);
    }

    #[test]
    fn non_json_error_body_still_classifies_by_status() {
        let c = check(Token, 500, b"<html>oops</html>", UpstreamUnavailable, true);
        assert_eq!(c.code, None);
        assert!(c.reason.contains("non-JSON"), "{}", c.reason);
        let c = check(Token, 400, b"not json", CodeRejected, false);
        assert_eq!(c.code, None);
    }

    #[test]
    fn unexpected_statuses_are_protocol_errors() {
        for s in [301, 404, 405, 409, 418] {
            check(Token, s, b"", ProtocolError, false);
        }
        check(Userinfo, 400, b"", ProtocolError, false);
    }

    #[test]
    fn timeout_is_retried_and_ambiguous_on_token_only() {
        let c = classify(Token, None, b"", Some(&Transport::Timeout), &[]);
        assert_eq!(
            (c.class, c.retry, c.ambiguous),
            (UpstreamUnavailable, true, true)
        );
        let c = classify(Userinfo, None, b"", Some(&Transport::Timeout), &[]);
        assert_eq!(
            (c.class, c.retry, c.ambiguous),
            (UpstreamUnavailable, true, false)
        );
    }

    #[test]
    fn connection_refused_is_retried_and_not_ambiguous() {
        let t = Transport::Connect("connection refused".into());
        let c = classify(Token, None, b"", Some(&t), &[]);
        assert_eq!(
            (c.class, c.retry, c.ambiguous),
            (UpstreamUnavailable, true, false)
        );
        assert_eq!(c.http_status, None);
    }

    #[test]
    fn reset_after_send_is_retried_and_ambiguous() {
        let t = Transport::Reset("connection reset by peer".into());
        let c = classify(Token, None, b"", Some(&t), &[]);
        assert_eq!(
            (c.class, c.retry, c.ambiguous),
            (UpstreamUnavailable, true, true)
        );
    }

    #[test]
    fn a_token_2xx_whose_body_broke_off_spent_the_code_and_ends_the_stage() {
        let reset = Transport::Reset("connection closed before message completed".into());
        for cause in [Transport::Timeout, reset] {
            for status in [200, 201] {
                let c = classify(Token, Some(status), b"", Some(&cause), &[]);
                assert_eq!(c.class, ProtocolError, "{cause:?}");
                assert!(!c.retry && c.exchanged && !c.ambiguous, "{cause:?}");
                assert_eq!(c.http_status, Some(status));
                assert!(c.reason.contains("its body"), "{}", c.reason);
            }
        }
        let c = classify(Token, Some(200), b"", Some(&Transport::Timeout), &[]);
        assert!(c.reason.contains("api.timeout"), "{}", c.reason);
    }

    #[test]
    fn a_userinfo_or_signal_2xx_whose_body_broke_off_is_retried() {
        for stage in [Userinfo, Stage::SimSwap, Stage::CallForwarding] {
            let c = classify(stage, Some(200), b"", Some(&Transport::Timeout), &[]);
            assert_eq!((c.class, c.retry), (UpstreamUnavailable, true), "{stage}");
            assert!(!c.exchanged && !c.ambiguous, "{stage}");
            assert_eq!(c.http_status, Some(200));
        }
    }

    #[test]
    fn another_status_whose_body_broke_off_is_classified_by_its_status() {
        let cut = Transport::Reset("unexpected end of file".into());
        let c = classify(Token, Some(400), b"", Some(&cut), &[]);
        assert_eq!(
            (c.class, c.retry, c.exchanged),
            (CodeRejected, false, false)
        );
        assert!(c.reason.contains("broke off"), "{}", c.reason);
        let c = classify(Token, Some(500), b"", Some(&cut), &[]);
        assert_eq!(
            (c.class, c.retry, c.ambiguous),
            (UpstreamUnavailable, true, false)
        );
        let c = classify(Token, Some(502), b"", Some(&cut), &[]);
        assert!(c.retry && c.ambiguous && !c.exchanged);
        let c = classify(Userinfo, Some(401), b"", Some(&cut), &[]);
        assert_eq!(c.class, CredentialsRejected);
    }

    #[test]
    fn long_upstream_descriptions_are_truncated() {
        let long = "x".repeat(1000);
        let c = check(
            Token,
            400,
            &body("invalid_request", &long),
            CodeRejected,
            false,
        );
        assert!(c.reason.len() < 300);
        let c = check(Token, 400, &body(&long, "d"), CodeRejected, false);
        assert!(c.code.unwrap().chars().count() <= MAX_CODE + 1);
        assert!(c.reason.len() < 400);
    }

    #[test]
    fn a_quoted_secret_is_scrubbed_before_the_text_is_shortened() {
        const CODE: &str = "kgoV1pFxi1EIlocesrMcia6AhNyw6";
        const TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.access";
        // Each secret starts a few characters before the cut, so shortening alone keeps a piece.
        let description = format!("{}{CODE} and {TOKEN}", "d".repeat(MAX_DESCRIPTION - 8));
        let error = format!("{}{TOKEN}", "e".repeat(MAX_CODE - 8));
        let c = classify(
            Userinfo,
            Some(401),
            &body(&error, &description),
            None,
            &[CODE, TOKEN],
        );
        for secret in [CODE, TOKEN] {
            let piece = &secret[..8];
            assert!(!c.reason.contains(piece), "{}", c.reason);
            assert!(!c.code.as_deref().unwrap().contains(piece), "{:?}", c.code);
        }
        assert!(c.reason.contains("***"), "{}", c.reason);
        assert!(c.code.unwrap().ends_with("***"));
    }

    #[test]
    fn each_failure_says_why_in_its_reason() {
        let reason = |stage, status, body: &[u8], t: Option<&Transport>| {
            classify(stage, status, body, t, &[]).reason
        };
        let refused = Transport::Connect("connection refused".into());
        let reset = Transport::Reset("connection reset by peer".into());
        assert_eq!(
            reason(Token, None, b"", Some(&refused)),
            "connection failed before the request was sent: connection refused"
        );
        assert_eq!(
            reason(Token, None, b"", Some(&Transport::Timeout)),
            "no response within api.timeout"
        );
        assert_eq!(
            reason(Userinfo, None, b"", Some(&reset)),
            "connection broken after the request was sent: connection reset by peer"
        );
        assert_eq!(
            reason(Token, Some(200), b"", Some(&reset)),
            "token answered HTTP 200 but its body broke off: connection reset by peer"
        );
        assert_eq!(
            reason(Userinfo, Some(200), b"", Some(&Transport::Timeout)),
            "userinfo answered HTTP 200 but its body did not arrive in full within api.timeout"
        );
        assert_eq!(
            reason(Token, Some(503), b"", Some(&refused)),
            "token upstream answered HTTP 503 (its body broke off: connection refused)"
        );
        assert_eq!(
            reason(Token, Some(400), &body("invalid_grant", "used"), None),
            "token upstream answered HTTP 400 invalid_grant: used"
        );
        assert_eq!(
            reason(Userinfo, Some(401), br#"{"error":"invalid_token"}"#, None),
            "userinfo upstream answered HTTP 401 invalid_token"
        );
        assert_eq!(
            reason(Token, Some(404), b"", None),
            "token unexpected status HTTP 404"
        );
        assert_eq!(
            reason(Token, Some(418), b"teapot", None),
            "token unexpected status HTTP 418 (non-JSON body)"
        );
        // JSON without an `error`: nothing to add, and it is not "non-JSON".
        assert_eq!(
            reason(Userinfo, Some(500), br#"{"error_description":"d"}"#, None),
            "userinfo upstream answered HTTP 500"
        );
    }

    #[test]
    fn a_status_without_a_transport_failure_is_an_answer() {
        // `None` and a status: classified by the status; no status at all reads as status 0.
        let c = classify(Token, None, b"", None, &[]);
        assert_eq!(
            (c.class, c.retry, c.http_status),
            (ProtocolError, false, Some(0))
        );
        assert!(!Transport::Connect(String::new()).after_send());
        assert!(Transport::Timeout.after_send());
        assert!(Transport::Reset(String::new()).after_send());
    }

    #[test]
    fn a_classification_becomes_the_stage_error() {
        let c = classify(Token, Some(401), &body("invalid_client", "no"), None, &[]);
        let info = c.error_info(Token);
        assert_eq!(info.class, CredentialsRejected);
        assert_eq!(info.stage, Token);
        assert_eq!(info.code.as_deref(), Some("invalid_client"));
        assert_eq!(info.http_status, Some(401));
        assert_eq!(
            info.description,
            "token upstream answered HTTP 401 invalid_client: no"
        );
    }

    #[test]
    fn truncation_keeps_the_start_and_marks_the_cut() {
        assert_eq!(truncate("abcdef", 3), "abc…");
        assert_eq!(truncate("abc", 3), "abc");
        assert_eq!(truncate("日本語です", 2), "日本…");
        let c = classify(
            Token,
            Some(400),
            &body(&"c".repeat(MAX_CODE + 5), &"d".repeat(MAX_DESCRIPTION + 5)),
            None,
            &[],
        );
        let code = format!("{}…", "c".repeat(MAX_CODE));
        assert_eq!(c.code.as_deref(), Some(code.as_str()));
        assert!(
            c.reason
                .ends_with(&format!("{code}: {}…", "d".repeat(MAX_DESCRIPTION))),
            "{}",
            c.reason
        );
    }

    fn camara(status: u16, code: &str) -> Vec<u8> {
        serde_json::json!({"status": status, "code": code, "message": "from the operator"})
            .to_string()
            .into_bytes()
    }

    #[test]
    fn network_signal_errors_use_the_camara_body_and_the_same_rules() {
        for stage in [Stage::SimSwap, Stage::DeviceSwap, Stage::CallForwarding] {
            let c = check(
                stage,
                404,
                &camara(404, "IDENTIFIER_NOT_FOUND"),
                ProtocolError,
                false,
            );
            assert_eq!(c.code.as_deref(), Some("IDENTIFIER_NOT_FOUND"));
            assert!(c.reason.contains("from the operator"), "{}", c.reason);
            check(
                stage,
                400,
                &camara(400, "INVALID_ARGUMENT"),
                ProtocolError,
                false,
            );
            check(
                stage,
                401,
                &camara(401, "UNAUTHENTICATED"),
                CredentialsRejected,
                false,
            );
            check(
                stage,
                403,
                &camara(403, "PERMISSION_DENIED"),
                PermissionDenied,
                false,
            );
            check(
                stage,
                429,
                &camara(429, "TOO_MANY_REQUESTS"),
                RateLimited,
                true,
            );
            for status in [500, 501, 502, 503, 504] {
                check(
                    stage,
                    status,
                    &camara(status, "UNAVAILABLE"),
                    UpstreamUnavailable,
                    true,
                );
            }
            let t = classify(stage, None, b"", Some(&Transport::Timeout), &[]);
            assert!(t.retry && !t.ambiguous, "a signal check spends nothing");
        }
    }
}
