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
        pack(json, packed);
        Ok(Box::from(packed.as_slice()))
    })
}

/// Compact JSON `json` into `packed` (cleared first), each of [`PACKED_KEYS`] replaced by its
/// byte. Its text may also start at an escaped quote inside a string (a key `a\"status`):
/// [`unpack`] puts the same bytes back there too, so the round trip is exact for any compact
/// JSON, whose bytes are all 0x20 or above (serde_json escapes control characters).
fn pack(json: &[u8], packed: &mut Vec<u8>) {
    packed.clear();
    let mut rest = json;
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
}

/// The JSON [`pack`] was given.
fn unpack(packed: &[u8]) -> Vec<u8> {
    let mut json = Vec::with_capacity(packed.len() * 2);
    for &b in packed {
        match key_of(b) {
            Some(key) => json.extend_from_slice(key),
            None => json.push(b),
        }
    }
    json
}

/// The result [`encode`] stored.
pub(super) fn decode(packed: &[u8]) -> serde_json::Result<JobResult> {
    serde_json::from_slice(&unpack(packed))
}

#[cfg(test)]
mod tests {
    use super::super::tests::result;
    use super::*;
    use crate::contract::Status;
    use chrono::{TimeZone, Utc};
    use proptest::prelude::*;

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

    /// A key or string: one of the packed keys' names, a fragment that looks like a key
    /// (quotes, a colon), or any text, control characters and escapes included.
    fn text() -> impl Strategy<Value = String> {
        let names: Vec<String> = PACKED_KEYS
            .iter()
            .map(|(_, k)| String::from_utf8_lossy(&k[1..k.len() - 2]).into_owned())
            .collect();
        prop_oneof![
            proptest::sample::select(names.clone()),
            proptest::sample::select(names).prop_map(|n| format!("x\"{n}\":")),
            any::<String>(),
            "[\"\\\\:\\x00-\\x1f a-z]{0,12}",
        ]
    }

    /// Any JSON object, nested objects and arrays included (integers only: a float may not
    /// survive a text round trip, which is serde_json's business, not the packing's).
    fn object() -> impl Strategy<Value = serde_json::Value> {
        use serde_json::Value;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            text().prop_map(Value::String),
        ];
        let value = leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::btree_map(text(), inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        });
        proptest::collection::btree_map(text(), value, 0..8)
            .prop_map(|m| Value::Object(m.into_iter().collect()))
    }

    proptest! {
        #[test]
        fn any_json_object_packs_and_unpacks_to_the_same_bytes(value in object()) {
            let json = serde_json::to_vec(&value).unwrap();
            let mut packed = Vec::new();
            pack(&json, &mut packed);
            prop_assert!(packed.iter().all(|&b| b >= 0x20 || key_of(b).is_some()));
            prop_assert!(packed.len() <= json.len());
            let back = unpack(&packed);
            prop_assert_eq!(&back, &json);
            prop_assert_eq!(serde_json::from_slice::<serde_json::Value>(&back).unwrap(), value);
        }

        #[test]
        fn any_result_decodes_to_itself(
            job_id in text(),
            sub in proptest::option::of(text()),
            state in proptest::option::of(text()),
            attributes in proptest::collection::btree_map(text(), text(), 0..6),
            description in text(),
        ) {
            use crate::contract::{ErrorClass, ErrorInfo, Stage};
            let mut r = result(&job_id, 1);
            r.sub = sub;
            r.state = state;
            r.attributes = attributes;
            r.error = Some(ErrorInfo::new(ErrorClass::ProtocolError, Stage::Token, description));
            prop_assert_eq!(decode(&encode(&r).unwrap()).unwrap(), r);
        }
    }

    #[test]
    fn keys_are_packed_wherever_their_text_occurs_and_restored() {
        let json = br#"{"status":"verified","a\"status":1,"job_id":"\"job_id\":"}"#;
        let mut packed = Vec::new();
        pack(json, &mut packed);
        // `"status":` after the escaped quote of the key `a\"status` is packed too; the
        // `"job_id\":` inside the string is not a key's text.
        let expected = [
            &b"{\x03"[..],
            br#""verified","a\"#,
            b"\x03",
            br#"1,"#,
            b"\x02",
            br#""\"job_id\":"}"#,
        ]
        .concat();
        assert_eq!(packed, expected);
        assert_eq!(unpack(&packed), json);
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
