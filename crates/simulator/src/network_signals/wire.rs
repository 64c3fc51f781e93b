//! The Network Signals wire format: paths, JSON field names, request checks, response bodies and
//! the CAMARA error shape `{"status", "code", "message"}`.

use super::profile::Swap;
use crate::endpoint::SimEndpoint;
use crate::responses::status_fault_with;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{Map, Value};
use std::time::{Duration, SystemTime};

/// The path prefix of the Network Signals API, as in `https://api.tyntec.com/network-signal/v1`.
pub const SIGNALS_PATH_PREFIX: &str = "/network-signal/v1";

/// Each endpoint's path under [`SIGNALS_PATH_PREFIX`] (all `POST`).
pub(crate) const PATHS: [(SimEndpoint, &str); 5] = [
    (SimEndpoint::SimSwapCheck, "/sim-swap/check"),
    (SimEndpoint::SimSwapRetrieveDate, "/sim-swap/retrieve-date"),
    (SimEndpoint::DeviceSwapCheck, "/device-swap/check"),
    (
        SimEndpoint::DeviceSwapRetrieveDate,
        "/device-swap/retrieve-date",
    ),
    (
        SimEndpoint::CallForwardingCheck,
        "/call-forwarding/unconditional/check",
    ),
];

/// The JSON field names of requests and responses, kept together so they are easy to change.
pub(crate) mod field {
    /// Request: the number asked about, E.164 with a leading `+`.
    pub const PHONE_NUMBER: &str = "phoneNumber";
    /// Request of a swap check: the window in minutes.
    pub const MAX_AGE: &str = "maxAge";
    /// Response of a swap check.
    pub const SWAPPED: &str = "swapped";
    /// Response of the SIM swap retrieve-date.
    pub const LATEST_SIM_CHANGE: &str = "latestSimChange";
    /// Response of the device swap retrieve-date.
    pub const LATEST_DEVICE_CHANGE: &str = "latestDeviceChange";
    /// Response of the call forwarding check.
    pub const ACTIVE: &str = "active";
}

/// `maxAge` when the request has none, in minutes.
pub(crate) const DEFAULT_MAX_AGE_MINUTES: u64 = 240;
/// The `maxAge` values accepted, in minutes.
pub(crate) const MAX_AGE_MINUTES: std::ops::RangeInclusive<u64> = 1..=2400;

/// What an endpoint asks about a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Question {
    /// Did this swap happen within `max_age`? (`{"swapped": bool}`)
    Swapped { swap: Swap, max_age: Duration },
    /// When did this swap last happen? (`{"latest…Change": date | null}`)
    Date(Swap),
    /// Is unconditional call forwarding active? (`{"active": bool}`)
    Forwarding,
}

/// A valid request: the number (as sent) and the question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SignalRequest {
    pub number: String,
    pub question: Question,
}

/// Checks a request body for `endpoint`; the error is the 400 message (it never repeats the
/// number). Unknown fields are ignored; `maxAge` is read only by the two swap checks.
pub(crate) fn parse_request(endpoint: SimEndpoint, body: &[u8]) -> Result<SignalRequest, String> {
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return Err("The request body is not valid JSON.".into());
    };
    let Some(obj) = value.as_object() else {
        return Err("The request body must be a JSON object.".into());
    };
    let number = match obj.get(field::PHONE_NUMBER) {
        None => return Err(format!("{} is required.", field::PHONE_NUMBER)),
        Some(Value::String(n)) if is_e164(n) => n.clone(),
        Some(_) => {
            return Err(format!(
                "{} must be an E.164 number with a leading '+'.",
                field::PHONE_NUMBER
            ))
        }
    };
    let max_age = || match obj.get(field::MAX_AGE) {
        None => Ok(minutes(DEFAULT_MAX_AGE_MINUTES)),
        Some(v) => v
            .as_u64()
            .filter(|m| MAX_AGE_MINUTES.contains(m))
            .map(minutes)
            .ok_or_else(|| {
                format!(
                    "{} must be an integer from {} to {} (minutes).",
                    field::MAX_AGE,
                    MAX_AGE_MINUTES.start(),
                    MAX_AGE_MINUTES.end()
                )
            }),
    };
    let question = match endpoint {
        SimEndpoint::SimSwapCheck => Question::Swapped {
            swap: Swap::Sim,
            max_age: max_age()?,
        },
        SimEndpoint::DeviceSwapCheck => Question::Swapped {
            swap: Swap::Device,
            max_age: max_age()?,
        },
        SimEndpoint::SimSwapRetrieveDate => Question::Date(Swap::Sim),
        SimEndpoint::DeviceSwapRetrieveDate => Question::Date(Swap::Device),
        _ => Question::Forwarding,
    };
    Ok(SignalRequest { number, question })
}

fn minutes(m: u64) -> Duration {
    Duration::from_secs(m * 60)
}

/// `^\+[1-9][0-9]{6,14}$`: a leading `+`, then 7 to 15 digits not starting with 0.
pub(crate) fn is_e164(n: &str) -> bool {
    let Some(d) = n.strip_prefix('+') else {
        return false;
    };
    (7..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()) && !d.starts_with('0')
}

/// `{"swapped": bool}`.
pub(crate) fn swapped(swapped: bool) -> Response {
    object(field::SWAPPED, Value::Bool(swapped))
}

/// `{"latestSimChange": …}` or `{"latestDeviceChange": …}`: RFC 3339 in UTC, or null.
pub(crate) fn date(swap: Swap, at: Option<SystemTime>) -> Response {
    let name = match swap {
        Swap::Sim => field::LATEST_SIM_CHANGE,
        Swap::Device => field::LATEST_DEVICE_CHANGE,
    };
    let value = at.map_or(Value::Null, |t| Value::String(rfc3339(t)));
    object(name, value)
}

/// `{"active": bool}`.
pub(crate) fn forwarding(active: bool) -> Response {
    object(field::ACTIVE, Value::Bool(active))
}

fn object(name: &str, value: Value) -> Response {
    let mut m = Map::new();
    m.insert(name.to_owned(), value);
    Json(Value::Object(m)).into_response()
}

/// A time as RFC 3339 in UTC with whole seconds, e.g. `2026-11-25T10:00:00Z`.
pub(crate) fn rfc3339(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A CAMARA error: `{"status": 404, "code": "IDENTIFIER_NOT_FOUND", "message": "…"}`.
pub(crate) fn camara_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({
        "status": status.as_u16(),
        "code": code,
        "message": message,
    });
    (status, Json(body)).into_response()
}

/// 400 `INVALID_ARGUMENT`.
pub(crate) fn invalid_argument(message: &str) -> Response {
    camara_error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", message)
}

/// 401 `UNAUTHENTICATED`: no `apiKey`, or one the scenario does not list.
pub(crate) fn unauthenticated() -> Response {
    camara_error(
        StatusCode::UNAUTHORIZED,
        "UNAUTHENTICATED",
        "Request not authenticated due to missing, invalid, or expired credentials.",
    )
}

/// 403 `PERMISSION_DENIED`: a key the scenario lists in `forbidden_api_keys`.
pub(crate) fn permission_denied() -> Response {
    camara_error(
        StatusCode::FORBIDDEN,
        "PERMISSION_DENIED",
        "Client does not have sufficient permissions to perform this action.",
    )
}

/// 404 `IDENTIFIER_NOT_FOUND`: the operator has no data for the number.
pub(crate) fn identifier_not_found() -> Response {
    camara_error(
        StatusCode::NOT_FOUND,
        "IDENTIFIER_NOT_FOUND",
        "Device identifier not found.",
    )
}

/// 429 from the simulator's own rate limit, with `Retry-After: 1`.
pub(crate) fn rate_limited() -> Response {
    let mut r = default_error(StatusCode::TOO_MANY_REQUESTS);
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

/// The response of a status fault on a signal endpoint: `body` or the CAMARA default.
pub(crate) fn status_fault(status: u16, retry_after: Option<&str>, body: Option<&str>) -> Response {
    status_fault_with(status, retry_after, body, default_error)
}

/// The CAMARA code and message for `status` (the default body of an injected status).
fn default_error(status: StatusCode) -> Response {
    let (code, message) = match status.as_u16() {
        400 => ("INVALID_ARGUMENT", "Client specified an invalid argument."),
        401 => ("UNAUTHENTICATED", "Request not authenticated."),
        403 => (
            "PERMISSION_DENIED",
            "Client does not have sufficient permissions to perform this action.",
        ),
        404 => ("IDENTIFIER_NOT_FOUND", "Device identifier not found."),
        409 => ("CONFLICT", "Conflict."),
        422 => ("UNPROCESSABLE_ENTITY", "Unprocessable entity."),
        429 => ("TOO_MANY_REQUESTS", "Rate limit reached."),
        500 => ("INTERNAL", "Server error."),
        501 => (
            "NOT_IMPLEMENTED",
            "This functionality is not implemented yet.",
        ),
        502 => (
            "BAD_GATEWAY",
            "An upstream server returned an invalid response.",
        ),
        503 => ("UNAVAILABLE", "Service unavailable."),
        504 => ("TIMEOUT", "Request timeout exceeded."),
        _ => {
            let reason = status.canonical_reason().unwrap_or("Unexpected status");
            let code: String = reason
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() {
                        c.to_ascii_uppercase()
                    } else {
                        '_'
                    }
                })
                .collect();
            return camara_error(status, &code, reason);
        }
    };
    camara_error(status, code, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body(r: Response) -> Value {
        let bytes = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    fn parse(endpoint: SimEndpoint, body: &str) -> Result<SignalRequest, String> {
        parse_request(endpoint, body.as_bytes())
    }

    #[test]
    fn e164_is_a_plus_and_7_to_15_digits() {
        for ok in ["+4915112345678", "+1234567", "+123456789012345"] {
            assert!(is_e164(ok), "{ok}");
        }
        for bad in [
            "4915112345678",
            "+0491511234567",
            "+123456",
            "+1234567890123456",
            "+49 151 1234567",
            "++4915112345678",
            "+49151a2345678",
            "",
            "+",
        ] {
            assert!(!is_e164(bad), "{bad}");
        }
    }

    #[test]
    fn swap_checks_read_max_age_with_a_default() {
        let r = parse(
            SimEndpoint::SimSwapCheck,
            r#"{"phoneNumber":"+4915100000001"}"#,
        )
        .unwrap();
        assert_eq!(r.number, "+4915100000001");
        assert_eq!(
            r.question,
            Question::Swapped {
                swap: Swap::Sim,
                max_age: minutes(240)
            }
        );
        let r = parse(
            SimEndpoint::DeviceSwapCheck,
            r#"{"phoneNumber":"+4915100000001","maxAge":2400,"extra":1}"#,
        )
        .unwrap();
        assert_eq!(
            r.question,
            Question::Swapped {
                swap: Swap::Device,
                max_age: minutes(2400)
            }
        );
        let date = parse(
            SimEndpoint::DeviceSwapRetrieveDate,
            r#"{"phoneNumber":"+4915100000001","maxAge":"ignored"}"#,
        )
        .unwrap();
        assert_eq!(date.question, Question::Date(Swap::Device));
        let fwd = parse(
            SimEndpoint::CallForwardingCheck,
            r#"{"phoneNumber":"+4915100000001"}"#,
        )
        .unwrap();
        assert_eq!(fwd.question, Question::Forwarding);
    }

    #[test]
    fn bad_bodies_are_refused_without_echoing_the_number() {
        let cases = [
            ("not json", "not valid JSON"),
            ("[1]", "JSON object"),
            ("{}", "phoneNumber is required"),
            (r#"{"phoneNumber":4915100000001}"#, "E.164"),
            (r#"{"phoneNumber":"4915100000001"}"#, "E.164"),
            (r#"{"phoneNumber":"+4915100000001","maxAge":0}"#, "maxAge"),
            (
                r#"{"phoneNumber":"+4915100000001","maxAge":2401}"#,
                "maxAge",
            ),
            (r#"{"phoneNumber":"+4915100000001","maxAge":-5}"#, "maxAge"),
            (r#"{"phoneNumber":"+4915100000001","maxAge":2.5}"#, "maxAge"),
            (
                r#"{"phoneNumber":"+4915100000001","maxAge":"240"}"#,
                "maxAge",
            ),
            (
                r#"{"phoneNumber":"+4915100000001","maxAge":null}"#,
                "maxAge",
            ),
        ];
        for (text, needle) in cases {
            let err = parse(SimEndpoint::SimSwapCheck, text).unwrap_err();
            assert!(err.contains(needle), "{text}: {err}");
            assert!(!err.contains("4915100000001"), "{err}");
        }
    }

    #[tokio::test]
    async fn bodies_use_the_field_names() {
        assert_eq!(
            body(swapped(true)).await,
            serde_json::json!({"swapped": true})
        );
        assert_eq!(
            body(forwarding(false)).await,
            serde_json::json!({"active": false})
        );
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_064_800);
        assert_eq!(
            body(date(Swap::Sim, Some(t))).await,
            serde_json::json!({"latestSimChange": "2025-11-25T10:00:00Z"})
        );
        assert_eq!(
            body(date(Swap::Device, None)).await,
            serde_json::json!({"latestDeviceChange": null})
        );
    }

    #[tokio::test]
    async fn errors_have_the_camara_shape() {
        let r = identifier_not_found();
        assert_eq!(r.status(), 404);
        let b = body(r).await;
        assert_eq!(
            (b["status"].as_u64(), b["code"].as_str()),
            (Some(404), Some("IDENTIFIER_NOT_FOUND"))
        );
        let r = rate_limited();
        assert_eq!(r.headers()[header::RETRY_AFTER], "1");
        assert_eq!(body(r).await["code"], "TOO_MANY_REQUESTS");
        let r = status_fault(503, Some("7"), None);
        assert_eq!(r.headers()[header::RETRY_AFTER], "7");
        assert_eq!(
            body(r).await,
            serde_json::json!({"status": 503, "code": "UNAVAILABLE", "message": "Service unavailable."})
        );
        assert_eq!(
            body(status_fault(500, None, None)).await["code"],
            "INTERNAL"
        );
        assert_eq!(
            body(status_fault(418, None, None)).await["code"],
            "I_M_A_TEAPOT"
        );
        let custom = status_fault(502, None, Some("Bad Gateway"));
        assert_eq!(
            custom.headers()[header::CONTENT_TYPE],
            "text/plain; charset=utf-8"
        );
    }
}
