//! tyntec Network Signals (`{signals_base}`, header `apiKey`): the five calls and strict parsing
//! of their success bodies.

use crate::contract::Stage;
use chrono::{DateTime, Utc};
use serde_json::Value;

/// One Network Signals request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SignalCall {
    /// `POST /sim-swap/check` → `{"swapped": bool}`.
    SimSwapCheck,
    /// `POST /sim-swap/retrieve-date` → `{"latestSimChange": date or null}`.
    SimSwapDate,
    /// `POST /device-swap/check` → `{"swapped": bool}`.
    DeviceSwapCheck,
    /// `POST /device-swap/retrieve-date` → `{"latestDeviceChange": date or null}`.
    DeviceSwapDate,
    /// `POST /call-forwarding/unconditional/check` → `{"active": bool}`.
    CallForwardingCheck,
}

impl SignalCall {
    /// Every call, for building URLs once.
    pub const ALL: [SignalCall; 5] = [
        SignalCall::SimSwapCheck,
        SignalCall::SimSwapDate,
        SignalCall::DeviceSwapCheck,
        SignalCall::DeviceSwapDate,
        SignalCall::CallForwardingCheck,
    ];

    /// The path under the signals base URL.
    pub fn path(self) -> &'static str {
        match self {
            SignalCall::SimSwapCheck => "/sim-swap/check",
            SignalCall::SimSwapDate => "/sim-swap/retrieve-date",
            SignalCall::DeviceSwapCheck => "/device-swap/check",
            SignalCall::DeviceSwapDate => "/device-swap/retrieve-date",
            SignalCall::CallForwardingCheck => "/call-forwarding/unconditional/check",
        }
    }

    /// The result stage its errors are reported under (and its metrics label).
    pub fn stage(self) -> Stage {
        match self {
            SignalCall::SimSwapCheck | SignalCall::SimSwapDate => Stage::SimSwap,
            SignalCall::DeviceSwapCheck | SignalCall::DeviceSwapDate => Stage::DeviceSwap,
            SignalCall::CallForwardingCheck => Stage::CallForwarding,
        }
    }

    /// The request body: the number in E.164 and, for the swap checks, `maxAge` in minutes.
    pub fn body(self, phone_number: &str, max_age_minutes: Option<u32>) -> Value {
        match (self, max_age_minutes) {
            (SignalCall::SimSwapCheck | SignalCall::DeviceSwapCheck, Some(m)) => {
                serde_json::json!({"phoneNumber": phone_number, "maxAge": m})
            }
            _ => serde_json::json!({"phoneNumber": phone_number}),
        }
    }
}

/// Parses a 2xx body of a check: `{"swapped": bool}` or `{"active": bool}`.
pub fn parse_check(call: SignalCall, body: &[u8]) -> Result<bool, String> {
    let field = match call {
        SignalCall::CallForwardingCheck => "active",
        _ => "swapped",
    };
    let v: Value = serde_json::from_slice(body)
        .map_err(|_| format!("{} response is not JSON", call.path()))?;
    match v.get(field) {
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(format!(
            "{} response: {field} is not a boolean",
            call.path()
        )),
        None => Err(format!("{} response lacks {field}", call.path())),
    }
}

/// Parses a 2xx body of a retrieve-date call: the date, or `None` for null (no change known).
/// Device swap answers `latestDeviceChange`; `latestSimChange` is accepted for both.
pub fn parse_date(call: SignalCall, body: &[u8]) -> Result<Option<DateTime<Utc>>, String> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|_| format!("{} response is not JSON", call.path()))?;
    let value = ["latestDeviceChange", "latestSimChange"]
        .into_iter()
        .filter(|f| call == SignalCall::DeviceSwapDate || *f == "latestSimChange")
        .find_map(|f| v.get(f));
    match value {
        None => Err(format!("{} response lacks the date", call.path())),
        Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => DateTime::parse_from_rfc3339(s)
            .map(|d| Some(d.with_timezone(&Utc)))
            .map_err(|_| format!("{} response: the date is not RFC 3339", call.path())),
        Some(_) => Err(format!(
            "{} response: the date is not a string",
            call.path()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_carry_max_age_only_on_swap_checks() {
        let b = SignalCall::SimSwapCheck.body("+4915112345678", Some(60));
        assert_eq!(
            b,
            serde_json::json!({"phoneNumber": "+4915112345678", "maxAge": 60})
        );
        let b = SignalCall::CallForwardingCheck.body("+4915112345678", Some(60));
        assert_eq!(b, serde_json::json!({"phoneNumber": "+4915112345678"}));
        let b = SignalCall::SimSwapDate.body("+4915112345678", None);
        assert_eq!(b, serde_json::json!({"phoneNumber": "+4915112345678"}));
    }

    #[test]
    fn checks_parse_strictly() {
        assert_eq!(
            parse_check(SignalCall::SimSwapCheck, br#"{"swapped":true}"#),
            Ok(true)
        );
        assert_eq!(
            parse_check(SignalCall::CallForwardingCheck, br#"{"active":false}"#),
            Ok(false)
        );
        assert!(parse_check(SignalCall::SimSwapCheck, br#"{"swapped":"yes"}"#).is_err());
        assert!(parse_check(SignalCall::CallForwardingCheck, br#"{"swapped":true}"#).is_err());
        assert!(parse_check(SignalCall::DeviceSwapCheck, b"<html>").is_err());
    }

    #[test]
    fn dates_parse_or_are_null() {
        let d = parse_date(
            SignalCall::SimSwapDate,
            br#"{"latestSimChange":"2026-11-26T10:00:00Z"}"#,
        )
        .unwrap();
        assert_eq!(d.unwrap().to_rfc3339(), "2026-11-26T10:00:00+00:00");
        assert_eq!(
            parse_date(
                SignalCall::DeviceSwapDate,
                br#"{"latestDeviceChange":null}"#
            ),
            Ok(None)
        );
        assert!(parse_date(
            SignalCall::DeviceSwapDate,
            br#"{"latestSimChange":"2026-11-26T10:00:00+01:00"}"#
        )
        .unwrap()
        .is_some());
        assert!(parse_date(SignalCall::SimSwapDate, br#"{"latestDeviceChange":null}"#).is_err());
        assert!(parse_date(
            SignalCall::SimSwapDate,
            br#"{"latestSimChange":"yesterday"}"#
        )
        .is_err());
    }
}
