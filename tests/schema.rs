//! The JSON Schemas in `schemas/` agree with the code: `Job::decode` and `job.v1.schema.json`
//! accept exactly the same jobs, and every `JobResult` the worker can build is a valid
//! `result.v1.schema.json` document. Also: `Job::decode` never panics and keeps the key.

use chrono::{TimeZone, Utc};
use proptest::prelude::*;
use serde_json::{json, Value};
use silentauth_worker::contract::network_signals::{
    ForwardingOutcome, ForwardingSignal, RiskFlag, SignalsReport, SwapOutcome, SwapSignal,
};
use silentauth_worker::contract::{ErrorClass, ErrorInfo, Job, JobError, JobResult, Stage, Status};
use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

// ------------------------------------------------------------------------------------------
// Schemas
// ------------------------------------------------------------------------------------------

/// Compiles a schema the way every consumer should use it: draft 2020-12, formats asserted.
fn compile(text: &str) -> jsonschema::Validator {
    let schema: Value = serde_json::from_str(text).expect("schema is JSON");
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .build(&schema)
        .expect("schema compiles")
}

fn job_schema() -> &'static jsonschema::Validator {
    static V: OnceLock<jsonschema::Validator> = OnceLock::new();
    V.get_or_init(|| compile(include_str!("../schemas/job.v1.schema.json")))
}

fn result_schema() -> &'static jsonschema::Validator {
    static V: OnceLock<jsonschema::Validator> = OnceLock::new();
    V.get_or_init(|| compile(include_str!("../schemas/result.v1.schema.json")))
}

/// Whether the job schema accepts these bytes (bytes that are not JSON are rejected).
fn schema_accepts(bytes: &[u8]) -> bool {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(v) => job_schema().is_valid(&v),
        Err(_) => false,
    }
}

fn schema_errors(bytes: &[u8]) -> Vec<String> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(v) => job_schema()
            .iter_errors(&v)
            .map(|e| format!("{} at {}", e, e.instance_path))
            .collect(),
        Err(e) => vec![e.to_string()],
    }
}

// ------------------------------------------------------------------------------------------
// (a) The job corpus: tests/corpus/jobs.jsonl, one case a line:
//     {"name", "expect": "accept" | "reject", "field"?: the field the rejection names,
//      and one of "job" (a JSON value), "raw" (text that need not be JSON), "raw_hex" (bytes)}
// ------------------------------------------------------------------------------------------

/// What a corpus case must do: be accepted, or be rejected naming a field (`None`: no field,
/// e.g. not JSON or not an object).
#[derive(Debug, Clone, PartialEq)]
enum Expect {
    Accept,
    Reject(Option<String>),
}

struct Case {
    name: String,
    bytes: Vec<u8>,
    expect: Expect,
}

/// The code every corpus job carries, to check that no error message echoes it.
const CODE: &str = "kgoV1pFxi1EIlocesrMcia6AhNyw6SECRET";

fn corpus() -> Vec<Case> {
    include_str!("corpus/jobs.jsonl")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, line)| {
            let c: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("jobs.jsonl line {}: {e}", i + 1));
            let bytes = if let Some(job) = c.get("job") {
                serde_json::to_vec(job).unwrap()
            } else if let Some(raw) = c.get("raw").and_then(Value::as_str) {
                raw.as_bytes().to_vec()
            } else {
                let hex = c["raw_hex"].as_str().expect("job, raw or raw_hex");
                (0..hex.len())
                    .step_by(2)
                    .map(|j| u8::from_str_radix(&hex[j..j + 2], 16).unwrap())
                    .collect()
            };
            let expect = match c["expect"].as_str() {
                Some("accept") => Expect::Accept,
                Some("reject") => {
                    Expect::Reject(c.get("field").and_then(Value::as_str).map(str::to_owned))
                }
                other => panic!("jobs.jsonl line {}: expect {other:?}", i + 1),
            };
            Case {
                name: c["name"].as_str().expect("name").to_owned(),
                bytes,
                expect,
            }
        })
        .collect()
}

#[test]
fn corpus_is_big_enough() {
    let cases = corpus();
    let good = cases.iter().filter(|c| c.expect == Expect::Accept).count();
    assert!(
        cases.len() >= 40 && good >= 10,
        "{} cases, {good} good",
        cases.len()
    );
}

#[test]
fn schema_and_decode_agree_on_the_corpus() {
    let mut failures = Vec::new();
    for case in corpus() {
        let decoded = Job::decode(&case.bytes);
        let by_schema = schema_accepts(&case.bytes);
        let by_code = decoded.is_ok();
        if by_schema != by_code {
            failures.push(format!(
                "{}: schema {} but decode {:?}; schema says {:?}",
                case.name,
                by_schema,
                decoded.as_ref().map(|_| ()).map_err(|e| e.to_string()),
                schema_errors(&case.bytes)
            ));
            continue;
        }
        match (&case.expect, &decoded) {
            (Expect::Accept, Ok(_)) => {}
            (Expect::Reject(field), Err(f)) if f.error.field() == field.as_deref() => {}
            (expect, got) => failures.push(format!(
                "{}: expected {:?}, got {:?}",
                case.name,
                expect,
                got.as_ref().map(|_| ()).map_err(|e| e.error.clone())
            )),
        }
        if let Err(f) = &decoded {
            let message = f.to_string();
            if message.contains(CODE) {
                failures.push(format!("{}: the error message leaks the code", case.name));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn failures_keep_job_id_and_login_hint() {
    for case in corpus() {
        let Err(f) = Job::decode(&case.bytes) else {
            continue;
        };
        let Ok(Value::Object(obj)) = serde_json::from_slice::<Value>(&case.bytes) else {
            assert_eq!((f.job_id, f.login_hint), (None, None), "{}", case.name);
            continue;
        };
        let valid = |field: &str, pattern_ok: fn(&str) -> bool| {
            obj.get(field)
                .and_then(Value::as_str)
                .filter(|s| pattern_ok(s))
                .map(str::to_owned)
        };
        assert_eq!(
            f.job_id,
            valid("job_id", silentauth_worker::contract::job::is_valid_job_id),
            "{}",
            case.name
        );
        assert_eq!(
            f.login_hint,
            valid(
                "login_hint",
                silentauth_worker::contract::job::is_valid_login_hint
            ),
            "{}",
            case.name
        );
    }
}

#[test]
fn format_validation_is_on() {
    // Shape-valid (passes the pattern) but not a calendar date: only `format` rejects it.
    let v = json!({"job_id": "j", "login_hint": "12345678", "error": "e",
                   "issued_at": "2023-02-29T00:00:00Z"});
    assert!(!job_schema().is_valid(&v));
    let v = json!({"job_id": "j", "login_hint": "12345678", "error": "e",
                   "issued_at": "2024-02-29T00:00:00Z"});
    assert!(job_schema().is_valid(&v));
}

#[test]
fn junk_is_rejected_quickly() {
    let junk: Vec<u8> = (0..200 * 1024u32).map(|i| (i * 7919 % 251) as u8).collect();
    let printable: String = (0..200 * 1024u32)
        .map(|i| char::from(b' ' + (i * 31 % 95) as u8))
        .collect();
    let huge_object = format!(
        r#"{{"job_id":"j","login_hint":"12345678","attributes":{{{}"last":1}}}}"#,
        (0..10_000)
            .map(|i| format!(r#""k{i}":"v","#))
            .collect::<String>()
    );
    let deep = "[".repeat(200 * 1024);
    let long_string = format!(r#"{{"job_id":"{}"}}"#, "a".repeat(200 * 1024));
    for bytes in [
        junk,
        printable.into_bytes(),
        huge_object.into_bytes(),
        deep.into_bytes(),
        long_string.into_bytes(),
    ] {
        let started = Instant::now();
        assert!(Job::decode(&bytes).is_err());
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "took {:?}",
            started.elapsed()
        );
    }
}

// ------------------------------------------------------------------------------------------
// (b) Results
// ------------------------------------------------------------------------------------------

fn result(status: Status) -> JobResult {
    let received = Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap();
    JobResult {
        schema_version: 1,
        job_id: "9b2c6f0e-1d2e".into(),
        status,
        phone_number_verified: match status {
            Status::Verified => Some(true),
            Status::NotVerified => Some(false),
            Status::Failed | Status::SignalsOnly => None,
        },
        login_hint: Some("381123456789".into()),
        sub: None,
        mobile_id: None,
        state: None,
        attributes: BTreeMap::new(),
        error: None,
        attempts: 2,
        duplicate: false,
        replay_count: 0,
        received_at: received,
        completed_at: received + chrono::Duration::milliseconds(184),
        duration_ms: 184,
        signals: None,
        risk_flags: None,
    }
}

fn with_everything(mut r: JobResult) -> JobResult {
    r.sub = Some("99dd91d1-2b3c".into());
    r.mobile_id = Some("2d83f2c1".into());
    r.state = Some("xyz12345".into());
    r.attributes.insert("tenant".into(), "acme".into());
    r.duplicate = true;
    r.replay_count = 3;
    r.completed_at = r.received_at + chrono::Duration::nanoseconds(123_456_789);
    r
}

/// Every error the worker reports, with the stage and HTTP status it can come with.
fn errors() -> Vec<ErrorInfo> {
    use ErrorClass::*;
    let e = |class, stage, code: Option<&str>, status: Option<u16>| {
        ErrorInfo::new(class, stage, format!("{class} at {stage}"))
            .with_code(code.map(str::to_owned))
            .with_status(status)
    };
    let mut all = vec![
        e(InvalidJob, Stage::Job, None, None),
        e(Expired, Stage::Deadline, None, None),
        e(LoginHintMismatch, Stage::Userinfo, None, Some(200)),
        e(InternalError, Stage::Job, None, None),
        e(Interrupted, Stage::Token, None, None)
            .with_code_spent("the user has to authenticate again"),
        e(Interrupted, Stage::Userinfo, None, None)
            .with_code_spent("the user has to authenticate again"),
    ];
    for code in [
        "invalid_client_id_request",
        "missing_scope",
        "insufficient_scope",
        "unsupported_scope",
        "missing_login_hint",
        "server_error",
    ] {
        all.push(e(AuthorizeRejected, Stage::Authorize, Some(code), None));
    }
    all.push(e(
        CodeRejected,
        Stage::Token,
        Some("invalid_grant"),
        Some(400),
    ));
    all.push(e(
        CodeRejected,
        Stage::Token,
        Some("invalid_request"),
        Some(400),
    ));
    for stage in [Stage::Token, Stage::Userinfo] {
        all.push(e(
            CredentialsRejected,
            stage,
            Some("invalid_client"),
            Some(401),
        ));
        all.push(e(
            PermissionDenied,
            stage,
            Some("permission_denied"),
            Some(403),
        ));
        all.push(e(RateLimited, stage, None, Some(429)));
        all.push(e(
            UpstreamUnavailable,
            stage,
            Some("internal_server_error"),
            Some(500),
        ));
        all.push(e(UpstreamUnavailable, stage, None, Some(503)));
        all.push(e(UpstreamUnavailable, stage, None, None));
        all.push(e(ProtocolError, stage, None, Some(200)));
        all.push(e(ProtocolError, stage, None, Some(302)));
    }
    // Once the code is spent, any failure of the token or userinfo stage is final.
    let spent: Vec<ErrorInfo> = all
        .iter()
        .filter(|e| matches!(e.stage, Stage::Token | Stage::Userinfo))
        .filter(|e| e.class != LoginHintMismatch)
        .map(|e| {
            e.clone()
                .with_code_spent("the user has to authenticate again")
        })
        .collect();
    all.extend(spent);
    all
}

fn assert_valid_result(r: &JobResult, what: &str) {
    let v = serde_json::to_value(r).unwrap();
    let problems: Vec<String> = result_schema()
        .iter_errors(&v)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect();
    assert!(problems.is_empty(), "{what}: {problems:?}\n{v:#}");
}

#[test]
fn every_result_validates() {
    let mut count = 0;
    for status in [Status::Verified, Status::NotVerified] {
        for r in [result(status), with_everything(result(status))] {
            assert_valid_result(&r, status.as_str());
            count += 1;
        }
    }
    // Verified by the network for a different number: not_verified, error kept for audit.
    let mismatch = errors()
        .into_iter()
        .find(|e| e.class == ErrorClass::LoginHintMismatch)
        .unwrap();
    for verified in [true, false] {
        let mut r = with_everything(result(Status::NotVerified));
        r.phone_number_verified = Some(verified);
        r.error = Some(mismatch.clone());
        assert_valid_result(&r, "login_hint_mismatch");
        count += 1;
    }
    let classes_seen: std::collections::BTreeSet<_> = errors().iter().map(|e| e.class).collect();
    assert_eq!(
        classes_seen.len(),
        ErrorClass::ALL.len(),
        "every class is covered"
    );
    for error in errors() {
        for duplicate in [false, true] {
            let mut r = result(Status::Failed);
            r.error = Some(error.clone());
            r.duplicate = duplicate;
            r.attempts = if error.http_status.is_some() { 3 } else { 0 };
            assert_valid_result(&r, &format!("{} {}", error.class, error.stage));
            let mut r = with_everything(r);
            r.sub = None;
            r.mobile_id = None;
            assert_valid_result(&r, &format!("{} {} (full)", error.class, error.stage));
            count += 2;
        }
    }
    // An invalid job whose login_hint could not be read.
    let mut r = result(Status::Failed);
    r.login_hint = None;
    r.attempts = 0;
    r.error = Some(ErrorInfo::new(
        ErrorClass::InvalidJob,
        Stage::Job,
        "invalid field `login_hint`: must be 8..15 digits",
    ));
    assert_valid_result(&r, "invalid job without login_hint");
    assert!(count > 80);
}

#[test]
fn result_schema_rejects_what_the_contract_forbids() {
    let failed = {
        let mut r = result(Status::Failed);
        r.error = Some(ErrorInfo::new(
            ErrorClass::UpstreamUnavailable,
            Stage::Token,
            "x",
        ));
        serde_json::to_value(r).unwrap()
    };
    let verified = serde_json::to_value(result(Status::Verified)).unwrap();
    assert!(result_schema().is_valid(&failed));
    assert!(result_schema().is_valid(&verified));
    let broken: Vec<(&str, Value)> = vec![
        ("extra field", {
            let mut v = verified.clone();
            v["code"] = "secret".into();
            v
        }),
        ("missing field", {
            let mut v = verified.clone();
            v.as_object_mut().unwrap().remove("duplicate");
            v
        }),
        ("unknown status", {
            let mut v = verified.clone();
            v["status"] = "maybe".into();
            v
        }),
        ("schema_version 2", {
            let mut v = verified.clone();
            v["schema_version"] = 2.into();
            v
        }),
        ("verified but false", {
            let mut v = verified.clone();
            v["phone_number_verified"] = false.into();
            v
        }),
        ("verified with an error", {
            let mut v = verified.clone();
            v["error"] = failed["error"].clone();
            v
        }),
        ("failed without error", {
            let mut v = failed.clone();
            v["error"] = Value::Null;
            v
        }),
        ("failed with a verdict", {
            let mut v = failed.clone();
            v["phone_number_verified"] = true.into();
            v
        }),
        ("not_verified with a non-mismatch error", {
            let mut v = failed.clone();
            v["status"] = "not_verified".into();
            v["phone_number_verified"] = false.into();
            v
        }),
        ("unknown class", {
            let mut v = failed.clone();
            v["error"]["class"] = "oops".into();
            v
        }),
        ("unknown stage", {
            let mut v = failed.clone();
            v["error"]["stage"] = "authorise".into();
            v
        }),
        ("code_spent false (written only when true)", {
            let mut v = failed.clone();
            v["error"]["code_spent"] = false.into();
            v
        }),
        ("a spent code still retryable", {
            let mut v = failed.clone();
            v["error"]["code_spent"] = true.into();
            v
        }),
        ("extra error field", {
            let mut v = failed.clone();
            v["error"]["access_token"] = "t".into();
            v
        }),
        ("negative attempts", {
            let mut v = verified.clone();
            v["attempts"] = (-1).into();
            v
        }),
        ("bad timestamp", {
            let mut v = verified.clone();
            v["received_at"] = "2023-02-29T00:00:00Z".into();
            v
        }),
        ("attribute not a string", {
            let mut v = verified.clone();
            v["attributes"] = json!({"a": 1});
            v
        }),
    ];
    for (what, v) in broken {
        assert!(!result_schema().is_valid(&v), "accepted: {what}");
    }
}

#[test]
fn results_round_trip_through_serde() {
    let mut r = with_everything(result(Status::Failed));
    r.error = errors().pop();
    let text = serde_json::to_string(&r).unwrap();
    assert_eq!(serde_json::from_str::<JobResult>(&text).unwrap(), r);
}

// ------------------------------------------------------------------------------------------
// (c) Properties
// ------------------------------------------------------------------------------------------

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("[a-z_]{0,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A valid value for `field` (`null` included where the field is optional).
fn valid_field(field: &'static str) -> BoxedStrategy<Value> {
    let s = |re: &'static str| re.prop_map(Value::from).boxed();
    let optional = |v: BoxedStrategy<Value>| prop_oneof![4 => v, 1 => Just(Value::Null)].boxed();
    match field {
        "job_id" => s("[A-Za-z0-9._:-]{1,128}"),
        "login_hint" => s("\\+?[0-9]{8,15}"),
        "code" => s("K[0-9A-Za-z]{12,24}"),
        "redirect_uri" => s(
            "(https?|HTTPS)://[a-z][a-z0-9_-]{0,7}(\\.[a-z][a-z0-9]{0,5})?(:[1-9][0-9]{0,3})?(/[a-z0-9._~-]{0,8})?(\\?[a-z=&]{0,6})?",
        )
        .prop_filter("IDNA labels are the one documented gap", |v| {
            !v.as_str().is_some_and(|u| u.contains("xn--"))
        })
        .boxed(),
        "error" => optional(s("[a-z_]{1,12}")),
        "client" => optional(s("[A-Za-z0-9_-]{1,64}")),
        "issued_at" => optional(s(
            "20[0-9]{2}-0[1-9]-[01][1-9][Tt][01][0-9]:[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,3})?([Zz]|[+-]0[0-9]:[0-5][0-9])",
        )),
        "attributes" => optional(
            prop::collection::btree_map("[a-z]{0,4}", ".{0,4}".prop_map(Value::from), 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect()))
                .boxed(),
        ),
        "schema_version" => optional(Just(json!(1)).boxed()),
        "signals" => optional(
            (
                prop::option::of(prop::option::of(1u32..=2400)),
                prop::option::of(prop::option::of(1u32..=2400)),
                any::<bool>(),
            )
                .prop_map(|(sim, device, forwarding)| {
                    let swap = |c: Option<Option<u32>>| {
                        c.map(|m| m.map_or(json!({}), |m| json!({"max_age_minutes": m})))
                    };
                    let mut obj = serde_json::Map::new();
                    for (name, v) in [("sim_swap", swap(sim)), ("device_swap", swap(device))] {
                        if let Some(v) = v {
                            obj.insert(name.into(), v);
                        }
                    }
                    if forwarding {
                        obj.insert("call_forwarding".into(), json!({}));
                    }
                    Value::Object(obj)
                })
                .boxed(),
        ),
        _ => optional(s(".{0,8}")),
    }
}

/// Edge values of `signals`: checks of the wrong type, max ages around the bounds and of the
/// wrong type, empty and unknown members.
fn edge_signals() -> BoxedStrategy<Value> {
    let max_age = prop_oneof![
        Just(json!(0)),
        Just(json!(1)),
        Just(json!(2400)),
        Just(json!(2401)),
        Just(json!(240.0)),
        Just(json!(1.5)),
        Just(json!(-1)),
        Just(json!("240")),
        Just(Value::Null),
    ];
    let check = prop_oneof![
        3 => max_age.prop_map(|m| json!({"max_age_minutes": m})),
        1 => Just(json!({})),
        1 => Just(Value::Null),
        1 => arb_json(),
    ];
    prop::collection::btree_map(
        prop_oneof![
            Just("sim_swap".to_owned()),
            Just("device_swap".to_owned()),
            Just("call_forwarding".to_owned()),
            Just("roaming".to_owned()),
        ],
        check,
        0..4,
    )
    .prop_map(|m| Value::Object(m.into_iter().collect()))
    .boxed()
}

/// A value that probes the edges of `field`'s rule: near-valid strings, wrong types, null.
fn edge_field(field: &'static str) -> BoxedStrategy<Value> {
    let strings: BoxedStrategy<String> = match field {
        "job_id" => prop_oneof!["[A-Za-z0-9._:-]{0,130}", "[A-Za-z0-9 /é\n]{0,4}"].boxed(),
        "login_hint" => prop_oneof!["\\+?[0-9]{6,17}", "[0-9+ a]{0,17}"].boxed(),
        "code" => prop_oneof!["K[0-9A-Za-z]{12,24}", Just(String::new())].boxed(),
        "redirect_uri" => (
            prop_oneof!["https?", "HTTP", "ftp", ""],
            prop_oneof![Just("://"), Just(":/"), Just(":")],
            prop_oneof![
                "[a-z0-9_-]{0,6}(\\.[a-zA-Z0-9_-]{0,5}){0,2}",
                "[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}",
                "\\[[0-9a-f:.]{0,16}\\]",
                "[a-z]{1,4}@[a-z]{1,4}",
            ],
            "(:[0-9]{0,6})?",
            "([/?#][a-zA-Z0-9/?#% .~:%-]{0,10})?",
        )
            .prop_filter("IDNA labels are the one documented gap", |(_, _, h, _, _)| {
                !h.to_ascii_lowercase().contains("xn--")
            })
            .prop_map(|(s, sep, h, p, t)| format!("{s}{sep}{h}{p}{t}"))
            .boxed(),
        "issued_at" => {
            "[0-9]{4}-[01][0-9]-[0-3][0-9][Tt ][0-2][0-9]:[0-6][0-9]:[0-6][0-9](\\.[0-9]{0,3})?([Zz]|[+-][0-2][0-9]:?[0-6][0-9])?"
                .boxed()
        }
        "client" => "[A-Za-z0-9_.-]{0,66}".boxed(),
        "error" => prop_oneof![Just(String::new()), "[a-z_]{1,12}"].boxed(),
        _ => ".{0,8}".boxed(),
    };
    let special: BoxedStrategy<Value> = match field {
        "schema_version" => prop_oneof![
            Just(json!(1)),
            Just(json!(1.0)),
            Just(json!(2)),
            Just(json!("1"))
        ]
        .boxed(),
        "attributes" => prop::collection::btree_map(
            "[a-z]{0,4}",
            prop_oneof![".{0,4}".prop_map(Value::from), arb_json()],
            0..4,
        )
        .prop_map(|m| Value::Object(m.into_iter().collect()))
        .boxed(),
        "signals" => edge_signals(),
        _ => strings.clone().prop_map(Value::from).boxed(),
    };
    prop_oneof![
        6 => strings.prop_map(Value::from),
        3 => special,
        1 => Just(Value::Null),
        1 => arb_json(),
    ]
    .boxed()
}

const FIELDS: [&str; 12] = [
    "job_id",
    "login_hint",
    "code",
    "redirect_uri",
    "error",
    "error_description",
    "state",
    "client",
    "issued_at",
    "attributes",
    "schema_version",
    "signals",
];

/// A job-like JSON object: a valid job (required fields nearly always present, optional ones
/// half the time), then zero to three mutations (a field removed or set to an edge value), and
/// sometimes an unknown field.
fn arb_job_object() -> impl Strategy<Value = serde_json::Map<String, Value>> {
    let fields: Vec<BoxedStrategy<Option<Value>>> = FIELDS
        .iter()
        .enumerate()
        .map(|(i, f)| {
            prop::option::weighted(if i < 4 { 0.95 } else { 0.5 }, valid_field(f)).boxed()
        })
        .collect();
    let mutation = (0..FIELDS.len(), prop::option::weighted(0.8, Just(()))).prop_flat_map(
        |(i, set)| match set {
            Some(()) => edge_field(FIELDS[i])
                .prop_map(move |v| (i, Some(v)))
                .boxed(),
            None => Just((i, None)).boxed(),
        },
    );
    (
        fields,
        prop::collection::vec(mutation, 0..4),
        prop::option::of(arb_json()),
    )
        .prop_map(|(values, mutations, extra)| {
            let mut obj = serde_json::Map::new();
            for (name, value) in FIELDS.iter().zip(values) {
                if let Some(v) = value {
                    obj.insert((*name).to_owned(), v);
                }
            }
            for (i, m) in mutations {
                match m {
                    Some(v) => obj.insert(FIELDS[i].to_owned(), v),
                    None => obj.remove(FIELDS[i]),
                };
            }
            if let Some(v) = extra {
                obj.insert("unknown_field".to_owned(), v);
            }
            obj
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn decode_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = Job::decode(&bytes);
    }

    #[test]
    fn decode_never_panics_on_text(text in ".{0,256}") {
        let _ = Job::decode(text.as_bytes());
    }

    #[test]
    fn schema_and_decode_agree_on_any_json(v in arb_json()) {
        let bytes = serde_json::to_vec(&v).unwrap();
        prop_assert_eq!(Job::decode(&bytes).is_ok(), schema_accepts(&bytes));
    }

    #[test]
    fn schema_and_decode_agree_on_job_like_objects(obj in arb_job_object()) {
        let bytes = serde_json::to_vec(&obj).unwrap();
        let decoded = Job::decode(&bytes);
        prop_assert_eq!(
            decoded.is_ok(),
            schema_accepts(&bytes),
            "decode: {:?}\nschema: {:?}",
            decoded.as_ref().map(|_| ()).map_err(|e| e.to_string()),
            schema_errors(&bytes)
        );
        if let Err(f) = &decoded {
            let valid_id = obj
                .get("job_id")
                .and_then(Value::as_str)
                .filter(|s| silentauth_worker::contract::job::is_valid_job_id(s));
            prop_assert_eq!(f.job_id.as_deref(), valid_id);
            if let Some(code) = obj.get("code").and_then(Value::as_str).filter(|c| c.len() > 8) {
                prop_assert!(!f.to_string().contains(code), "message leaks the code");
                prop_assert!(!format!("{:?}", f.error).contains(code), "debug leaks the code");
            }
            if matches!(f.error, JobError::NotJson(_) | JobError::NotObject) {
                prop_assert!(false, "an object is always JSON: {}", f);
            }
        }
    }
}

/// The generator above is only a test of agreement if it reaches both verdicts often.
#[test]
fn job_like_objects_reach_both_verdicts() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = arb_job_object();
    let (mut accepted, mut keyed_failures, n) = (0, 0, 2000);
    for _ in 0..n {
        let obj = strategy.new_tree(&mut runner).unwrap().current();
        match Job::decode(&serde_json::to_vec(&obj).unwrap()) {
            Ok(_) => accepted += 1,
            Err(f) if f.job_id.is_some() => keyed_failures += 1,
            Err(_) => {}
        }
    }
    assert!(accepted * 5 >= n, "only {accepted} of {n} accepted");
    assert!(
        keyed_failures * 10 >= n,
        "only {keyed_failures} of {n} keyed failures"
    );
}

fn signals_report(failed_stage: Stage) -> SignalsReport {
    let swap = |outcome, latest_change| SwapSignal {
        outcome,
        latest_change,
        max_age_minutes: 240,
        error: None,
    };
    let mut failed = swap(SwapOutcome::Failed, None);
    failed.error = Some(
        ErrorInfo::new(ErrorClass::UpstreamUnavailable, failed_stage, "down")
            .with_status(Some(503))
            .with_code(Some("UNAVAILABLE".into())),
    );
    SignalsReport {
        sim_swap: Some(swap(
            SwapOutcome::Swapped,
            Some(Utc.with_ymd_and_hms(2026, 11, 25, 9, 30, 0).unwrap()),
        )),
        device_swap: Some(failed),
        call_forwarding: Some(ForwardingSignal {
            outcome: ForwardingOutcome::Inconclusive,
            error: None,
        }),
    }
}

fn with_signals(mut r: JobResult, report: SignalsReport) -> JobResult {
    r.risk_flags = Some(report.risk_flags());
    r.signals = Some(report);
    r
}

#[test]
fn results_with_signals_validate() {
    for status in [Status::Verified, Status::NotVerified] {
        let r = with_signals(result(status), signals_report(Stage::DeviceSwap));
        assert_valid_result(&r, "verdict with signals");
    }
    let mut only = with_signals(
        result(Status::SignalsOnly),
        signals_report(Stage::DeviceSwap),
    );
    only.attempts = 6;
    assert_valid_result(&only, "signals_only");
    let quiet = SignalsReport {
        call_forwarding: Some(ForwardingSignal {
            outcome: ForwardingOutcome::Active,
            error: None,
        }),
        ..SignalsReport::default()
    };
    let r = with_signals(result(Status::SignalsOnly), quiet);
    assert_eq!(
        r.risk_flags.as_deref(),
        Some(&[RiskFlag::CallForwardingActive][..])
    );
    assert_valid_result(&r, "one check");
    // A failed job still reports the checks it asked for.
    let mut failed = with_signals(result(Status::Failed), SignalsReport::default());
    failed.error = Some(ErrorInfo::new(ErrorClass::Expired, Stage::Deadline, "late"));
    assert_valid_result(&failed, "failed with empty signals");
}

#[test]
fn result_schema_rejects_inconsistent_signals() {
    let rejects = |v: Value, what: &str| {
        assert!(!result_schema().is_valid(&v), "accepted {what}: {v:#}");
    };
    let good = serde_json::to_value(with_signals(
        result(Status::SignalsOnly),
        signals_report(Stage::DeviceSwap),
    ))
    .unwrap();
    assert!(result_schema().is_valid(&good));
    let mut v = good.clone();
    v["phone_number_verified"] = json!(true);
    rejects(v, "signals_only with a verdict");
    let mut v = good.clone();
    v["signals"]["device_swap"]["error"] = Value::Null;
    rejects(v, "a failed check without its error");
    let mut v = good.clone();
    v["signals"]["sim_swap"]["error"] = v["signals"]["device_swap"]["error"].clone();
    rejects(v, "an error beside a swapped outcome");
    let mut v = good.clone();
    v.as_object_mut().unwrap().remove("risk_flags");
    rejects(v, "signals without risk_flags");
    let mut v = good.clone();
    v["risk_flags"] = json!(["roaming"]);
    rejects(v, "an unknown flag");
    let mut v = good.clone();
    v["signals"]["call_forwarding"]["outcome"] = json!("swapped");
    rejects(v, "a swap outcome on call forwarding");
    let mut v = good;
    v.as_object_mut().unwrap().remove("signals");
    rejects(v, "signals_only without signals");
}
