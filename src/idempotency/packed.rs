//! Results packed for the idempotency cache: compact JSON with each key of a result replaced
//! by one control byte, in one allocation of its exact size.

use crate::contract::JobResult;

/// The keys of a result (and of its `error`) as they appear in its JSON, each with the byte that
/// stands for it once packed (see [`encode`]): they are about half of a result's JSON. The bytes
/// are control characters other than JSON's whitespace, which compact JSON never contains raw
/// (serde_json escapes them inside strings).
const PACKED_KEYS: [(u8, &[u8]); 24] = [
    (0x01, b"\"schema_version\":"),
    (0x02, b"\"job_id\":"),
    (0x03, b"\"status\":"),
    (0x04, b"\"phone_number_verified\":"),
    (0x05, b"\"login_hint\":"),
    (0x06, b"\"sub\":"),
    (0x07, b"\"mobile_id\":"),
    (0x08, b"\"state\":"),
    (0x0b, b"\"attributes\":"),
    (0x0c, b"\"error\":"),
    (0x0e, b"\"attempts\":"),
    (0x0f, b"\"duplicate\":"),
    (0x10, b"\"replay_count\":"),
    (0x11, b"\"received_at\":"),
    (0x12, b"\"completed_at\":"),
    (0x13, b"\"duration_ms\":"),
    (0x14, b"\"signals\":"),
    (0x15, b"\"risk_flags\":"),
    (0x16, b"\"class\":"),
    (0x17, b"\"stage\":"),
    (0x18, b"\"code\":"),
    (0x19, b"\"http_status\":"),
    (0x1a, b"\"description\":"),
    (0x1b, b"\"retryable\":"),
];

/// The key `byte` stands for, if it stands for one.
fn key_of(byte: u8) -> Option<&'static [u8]> {
    PACKED_KEYS
        .iter()
        .find_map(|&(b, key)| (b == byte).then_some(key))
}

/// `result` as compact JSON with each of [`PACKED_KEYS`] replaced by its byte, in one allocation
/// of its exact size: a verified result from the simulator takes 307 bytes instead of 491.
/// (Encoding into a growing `Vec` and shrinking it also left a trail of freed buffers between
/// the long-lived entries.)
pub(super) fn encode(result: &JobResult) -> serde_json::Result<Box<[u8]>> {
    thread_local! {
        static SCRATCH: std::cell::RefCell<(Vec<u8>, Vec<u8>)> =
            const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
    }
    SCRATCH.with_borrow_mut(|(json, packed)| {
        json.clear();
        serde_json::to_writer(&mut *json, result)?;
        packed.clear();
        let mut rest = json.as_slice();
        while let Some((&first, tail)) = rest.split_first() {
            debug_assert!(first >= 0x20, "compact JSON holds no raw control character");
            let key = (first == b'"')
                .then(|| PACKED_KEYS.iter().find(|(_, k)| rest.starts_with(k)))
                .flatten();
            match key {
                Some(&(byte, k)) => {
                    packed.push(byte);
                    rest = &rest[k.len()..];
                }
                None => {
                    packed.push(first);
                    rest = tail;
                }
            }
        }
        Ok(Box::from(packed.as_slice()))
    })
}

/// The result [`encode`] stored.
pub(super) fn decode(packed: &[u8]) -> serde_json::Result<JobResult> {
    let mut json = Vec::with_capacity(packed.len() * 2);
    for &b in packed {
        match key_of(b) {
            Some(key) => json.extend_from_slice(key),
            None => json.push(b),
        }
    }
    serde_json::from_slice(&json)
}

#[cfg(test)]
mod tests {
    use super::super::tests::result;
    use super::*;
    use crate::contract::Status;
    use chrono::{TimeZone, Utc};

    /// A result using every key, with strings that look like keys, quotes, escapes and control
    /// characters, and a nested error and signals.
    fn full_result() -> JobResult {
        use crate::contract::network_signals::{
            ForwardingOutcome, ForwardingSignal, RiskFlag, SignalsReport, SwapOutcome, SwapSignal,
        };
        use crate::contract::{ErrorClass, ErrorInfo, Stage};
        let error = ErrorInfo::new(
            ErrorClass::LoginHintMismatch,
            Stage::Userinfo,
            "said \"status\": \u{1}\n\t\\ \"job_id\":",
        )
        .with_code(Some("\"code\":".into()))
        .with_status(Some(200));
        let mut r = result("9b2c6f0e-\"sub\":-\u{1f}", 3);
        r.status = Status::NotVerified;
        r.phone_number_verified = Some(false);
        r.sub = Some("\"error\":null".into());
        r.mobile_id = Some("\u{7f}é日本".into());
        r.state = Some(String::new());
        r.attributes = [
            ("status".to_string(), "\"status\":".to_string()),
            ("\u{2}".to_string(), "\\\"".to_string()),
        ]
        .into();
        r.error = Some(
            error
                .clone()
                .with_code_spent("the token request was answered"),
        );
        r.signals = Some(SignalsReport {
            sim_swap: Some(SwapSignal {
                outcome: SwapOutcome::Failed,
                latest_change: Some(Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()),
                max_age_minutes: 60,
                error: Some(error),
            }),
            device_swap: None,
            call_forwarding: Some(ForwardingSignal {
                outcome: ForwardingOutcome::Inactive,
                error: None,
            }),
        });
        r.risk_flags = Some(vec![RiskFlag::SimSwapUnchecked]);
        r
    }

    #[test]
    fn each_key_has_its_own_control_byte_outside_json_whitespace() {
        let bytes: std::collections::BTreeSet<u8> = PACKED_KEYS.iter().map(|&(b, _)| b).collect();
        assert_eq!(bytes.len(), PACKED_KEYS.len());
        assert!(bytes
            .iter()
            .all(|&b| b != 0 && b < 0x20 && !b"\t\n\r".contains(&b)));
    }

    #[test]
    fn a_packed_result_decodes_to_the_same_result() {
        for r in [result("a", 0), full_result()] {
            let packed = encode(&r).unwrap();
            assert!(
                packed.iter().all(|&b| b >= 0x20 || key_of(b).is_some()),
                "only key bytes below 0x20"
            );
            assert_eq!(decode(&packed).unwrap(), r);
        }
    }

    #[test]
    fn packing_halves_a_plain_result() {
        let r = result("9b2c6f0e-7a44-4d7e-9a53-5b3c2f1e0d9a", 0);
        let (json, packed) = (serde_json::to_vec(&r).unwrap(), encode(&r).unwrap());
        assert!(
            packed.len() * 100 <= json.len() * 60,
            "{} bytes packed, {} as JSON",
            packed.len(),
            json.len()
        );
    }
}
