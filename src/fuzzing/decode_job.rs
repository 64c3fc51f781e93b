//! The invariants of [`Job::decode`] on arbitrary bytes, in one place for the `decode_job` fuzz
//! target (`fuzz/`) and for `tests/fuzz_corpus.rs`, which replays the committed fuzz corpus on
//! stable Rust.
//!
//! The checks go beyond "does not panic". They restate Job v1 (docs/contract.md) independently of
//! the decoder's own validators and compare the decoder's answer with them:
//!
//! * bytes that are not a UTF-8 JSON object fail as such, and carry no `job_id`/`login_hint`;
//! * a failure names a field that the input really lacks (or really has, for an invalid value),
//!   and carries the input's `job_id` and `login_hint` exactly when they are valid;
//! * a failure is an `invalid_job` at stage `job`, not retryable, and its message is bounded;
//! * the outcome never depends on the value of `code` (only on its JSON type and on whether it is
//!   empty), so no message, `error_info()` or `Debug` output can carry the code;
//! * a decoded job echoes the input's fields and each obeys the contract's syntax.
//!
//! Only fields that exist in Job v1 are checked, so an optional field added later cannot break
//! these checks, and an input that fails on such a field is still held to every rule above.

use crate::contract::error::{ErrorClass, Stage};
use crate::contract::job::{DecodeFailure, Job, JobError, DEFAULT_CLIENT};
use crate::contract::network_signals::{SignalsRequest, SwapCheck};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The longest failure message accepted. Messages are fixed templates that name a field and a
/// rule (plus a position for JSON syntax errors) and never echo a value, so their length does not
/// grow with the input; this bound catches one that does.
pub const MAX_FAILURE_MESSAGE_LEN: usize = 256;

/// Decodes `bytes` with [`Job::decode`] and panics, describing the broken invariant and the
/// input, when the outcome breaks one of the invariants listed in this module's documentation.
pub fn check_decode(bytes: &[u8]) {
    if let Err(violation) = check_with(bytes, Job::decode) {
        panic!(
            "Job::decode broke an invariant: {violation}\ninput: {:?}",
            String::from_utf8_lossy(bytes)
        );
    }
}

type Decoded = Result<Job, DecodeFailure>;

/// The checks of [`check_decode`] against any decoder, so that the tests below can show that a
/// faulty decoder is caught.
fn check_with(bytes: &[u8], decode: impl Fn(&[u8]) -> Decoded) -> Result<(), String> {
    let outcome = decode(bytes);
    if decode(bytes) != outcome {
        return Err("decoding the same bytes twice gave different outcomes".into());
    }
    if let Err(failure) = &outcome {
        check_failure_shape(failure)?;
    }
    let parsed = std::str::from_utf8(bytes)
        .ok()
        .and_then(|text| serde_json::from_str::<Value>(text).ok());
    match (parsed, &outcome) {
        (None, Ok(_)) => Err("bytes that are not UTF-8 JSON were accepted".into()),
        (None, Err(failure)) => {
            expect_unkeyed(failure)?;
            match failure.error {
                JobError::NotJson(_) => Ok(()),
                _ => Err(format!(
                    "bytes that are not UTF-8 JSON failed with {failure}"
                )),
            }
        }
        (Some(Value::Object(obj)), _) => {
            match &outcome {
                Ok(job) => check_job(&obj, job)?,
                Err(failure) => check_object_failure(&obj, failure)?,
            }
            check_code_independence(&obj, &decode)
        }
        (Some(_), Ok(_)) => Err("JSON that is not an object was accepted".into()),
        (Some(_), Err(failure)) => {
            expect_unkeyed(failure)?;
            match failure.error {
                JobError::NotObject => Ok(()),
                _ => Err(format!("JSON that is not an object failed with {failure}")),
            }
        }
    }
}

/// What every failure must look like, whatever the input.
fn check_failure_shape(failure: &DecodeFailure) -> Result<(), String> {
    let message = failure.to_string();
    if message != failure.error.to_string() {
        return Err("the failure's message is not its error's".into());
    }
    if message.len() > MAX_FAILURE_MESSAGE_LEN {
        return Err(format!(
            "a failure message of {} bytes: {message}",
            message.len()
        ));
    }
    if let Some(id) = &failure.job_id {
        if !job_id_syntax(id) {
            return Err(format!("a failure carries the invalid job_id {id:?}"));
        }
    }
    if let Some(hint) = &failure.login_hint {
        if !login_hint_syntax(hint) {
            return Err(format!("a failure carries the invalid login_hint {hint:?}"));
        }
    }
    let info = failure.error_info();
    if info.class != ErrorClass::InvalidJob || info.stage != Stage::Job || info.retryable {
        return Err(format!(
            "a decode failure is not a non-retryable invalid_job at stage job: {info:?}"
        ));
    }
    if info.code.is_some() || info.http_status.is_some() {
        return Err(format!(
            "a decode failure carries an upstream code or status: {info:?}"
        ));
    }
    if info.description != message {
        return Err("error_info().description is not the failure's message".into());
    }
    Ok(())
}

fn expect_unkeyed(failure: &DecodeFailure) -> Result<(), String> {
    if failure.job_id.is_some() || failure.login_hint.is_some() {
        return Err(format!(
            "a failure of bytes that are not a JSON object carries a key: {failure:?}"
        ));
    }
    Ok(())
}

/// A failure of a JSON object: it names a field the object really lacks or really has, and keeps
/// exactly the `job_id` and `login_hint` that can still be read.
fn check_object_failure(obj: &Map<String, Value>, failure: &DecodeFailure) -> Result<(), String> {
    match &failure.error {
        JobError::NotJson(_) | JobError::NotObject => {
            return Err(format!("a JSON object failed with {failure}"));
        }
        JobError::Missing(field) => {
            if present(obj, field).is_some() {
                return Err(format!("`{field}` is reported missing but is present"));
            }
        }
        JobError::Invalid { field, .. } => {
            if !path_present(obj, field) {
                return Err(format!("`{field}` is reported invalid but is absent"));
            }
        }
    }
    let job_id = readable(obj, "job_id", job_id_syntax);
    if failure.job_id.as_deref() != job_id {
        return Err(format!(
            "the failure carries job_id {:?}, the input's readable job_id is {job_id:?}",
            failure.job_id
        ));
    }
    let login_hint = readable(obj, "login_hint", login_hint_syntax);
    if failure.login_hint.as_deref() != login_hint {
        return Err(format!(
            "the failure carries login_hint {:?}, the input's readable login_hint is {login_hint:?}",
            failure.login_hint
        ));
    }
    Ok(())
}

/// A decoded job: every Job v1 field echoes the input and obeys the contract's syntax.
fn check_job(obj: &Map<String, Value>, job: &Job) -> Result<(), String> {
    check_identity(obj, job)?;
    check_verification(obj, job)?;
    check_echoed(obj, job)?;
    check_attributes(obj, job)
}

/// `schema_version` 1 when present; `job_id` and `login_hint` readable and echoed.
fn check_identity(obj: &Map<String, Value>, job: &Job) -> Result<(), String> {
    if let Some(v) = present(obj, "schema_version") {
        if v.as_f64() != Some(1.0) {
            return Err(format!("accepted schema_version {v}"));
        }
    }
    if readable(obj, "job_id", job_id_syntax) != Some(job.job_id.as_str()) {
        return Err(format!("accepted job_id {:?}", job.job_id));
    }
    if readable(obj, "login_hint", login_hint_syntax) != Some(job.login_hint.as_str()) {
        return Err(format!("accepted login_hint {:?}", job.login_hint));
    }
    Ok(())
}

/// What the job asks for: `error`, `code`, `redirect_uri` and `signals` echoed (no code beside
/// an error), and at least one thing to do.
fn check_verification(obj: &Map<String, Value>, job: &Job) -> Result<(), String> {
    let error = optional_str(obj, "error")?;
    if job.error.as_deref() != error || error == Some("") {
        return Err(format!("accepted error {error:?} as {:?}", job.error));
    }
    let code = optional_str(obj, "code")?;
    if code == Some("") {
        return Err("accepted an empty code".into());
    }
    let expected_code = if error.is_some() { None } else { code };
    if job.code.as_ref().map(|c| c.expose()) != expected_code {
        return Err(format!(
            "the decoded code is {}, expected {}",
            describe_presence(job.code.is_some()),
            describe_presence(expected_code.is_some())
        ));
    }
    let redirect_uri = optional_str(obj, "redirect_uri")?;
    if job.redirect_uri.as_deref() != redirect_uri {
        return Err(format!(
            "accepted redirect_uri {redirect_uri:?} as {:?}",
            job.redirect_uri
        ));
    }
    if let Some(uri) = redirect_uri {
        if !redirect_uri_syntax(uri) {
            return Err(format!("accepted redirect_uri {uri:?}"));
        }
    }
    let signals = expected_signals(obj)?;
    if job.signals != signals {
        return Err(format!(
            "accepted signals as {:?}, expected {signals:?}",
            job.signals
        ));
    }
    let asks_for_signals = signals.is_some_and(|s| !s.is_empty());
    if error.is_none() && code.is_some() && redirect_uri.is_none() {
        return Err("accepted a code without a redirect_uri".into());
    }
    if error.is_none() && code.is_none() && !asks_for_signals {
        return Err("accepted a job with neither an error, a code nor a signal check".into());
    }
    Ok(())
}

/// `error_description`, `state`, `client` (or its default) and `issued_at` echoed.
fn check_echoed(obj: &Map<String, Value>, job: &Job) -> Result<(), String> {
    let echoed = [
        ("error_description", job.error_description.as_deref()),
        ("state", job.state.as_deref()),
    ];
    for (field, decoded) in echoed {
        let input = optional_str(obj, field)?;
        if decoded != input {
            return Err(format!("accepted {field} {input:?} as {decoded:?}"));
        }
    }
    let client = optional_str(obj, "client")?.unwrap_or(DEFAULT_CLIENT);
    if job.client != client || !client_syntax(client) {
        return Err(format!("accepted client {client:?} as {:?}", job.client));
    }
    match (optional_str(obj, "issued_at")?, job.issued_at) {
        (None, None) => {}
        (Some(text), Some(at)) => {
            let parsed = chrono::DateTime::parse_from_rfc3339(text).ok();
            let separator = text.as_bytes().get(10).copied();
            if parsed.map(|p| p.with_timezone(&chrono::Utc)) != Some(at)
                || !matches!(separator, Some(b'T' | b't'))
            {
                return Err(format!("accepted issued_at {text:?} as {at}"));
            }
        }
        (text, at) => return Err(format!("accepted issued_at {text:?} as {at:?}")),
    }
    Ok(())
}

/// `attributes`: an object of strings, echoed.
fn check_attributes(obj: &Map<String, Value>, job: &Job) -> Result<(), String> {
    let attributes = match present(obj, "attributes") {
        None => BTreeMap::new(),
        Some(Value::Object(map)) => map
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                other => Err(format!("accepted the attribute {k:?}: {other}")),
            })
            .collect::<Result<_, _>>()?,
        Some(other) => return Err(format!("accepted attributes {other}")),
    };
    if job.attributes != attributes {
        return Err(format!(
            "accepted attributes {attributes:?} as {:?}",
            job.attributes
        ));
    }
    Ok(())
}

/// The checks a decoded job must carry, read from the input by the contract's rules: `signals`
/// an object whose `sim_swap`/`device_swap`/`call_forwarding` members are objects or null, a
/// swap check's `max_age_minutes` an integer 1..=2400 (default 240).
fn expected_signals(obj: &Map<String, Value>) -> Result<Option<SignalsRequest>, String> {
    let signals = match present(obj, "signals") {
        None => return Ok(None),
        Some(Value::Object(m)) => m,
        Some(other) => return Err(format!("accepted signals {other}")),
    };
    let check = |name: &str| match present(signals, name) {
        None => Ok(None),
        Some(Value::Object(c)) => Ok(Some(c)),
        Some(other) => Err(format!("accepted signals.{name} {other}")),
    };
    let swap = |name: &str| -> Result<Option<SwapCheck>, String> {
        let Some(c) = check(name)? else {
            return Ok(None);
        };
        let max_age_minutes = match present(c, "max_age_minutes") {
            None => 240,
            Some(v) => match v.as_u64() {
                Some(m @ 1..=2400) => m as u32,
                _ => return Err(format!("accepted signals.{name}.max_age_minutes {v}")),
            },
        };
        Ok(Some(SwapCheck { max_age_minutes }))
    };
    Ok(Some(SignalsRequest {
        sim_swap: swap("sim_swap")?,
        device_swap: swap("device_swap")?,
        call_forwarding: check("call_forwarding")?.is_some(),
    }))
}

/// Whether a dotted field path (`signals.sim_swap.max_age_minutes`) names a member of `obj`.
fn path_present(obj: &Map<String, Value>, path: &str) -> bool {
    let mut current = obj;
    let mut parts = path.split('.').peekable();
    while let Some(part) = parts.next() {
        match (current.get(part), parts.peek()) {
            (None, _) => return false,
            (Some(_), None) => return true,
            (Some(Value::Object(inner)), Some(_)) => current = inner,
            (Some(_), Some(_)) => return false,
        }
    }
    false
}

/// Replacing a present `code` by another value of the same JSON type (and emptiness) must change
/// nothing but the decoded code; and that other value must appear in no output.
fn check_code_independence(
    obj: &Map<String, Value>,
    decode: &impl Fn(&[u8]) -> Decoded,
) -> Result<(), String> {
    let Some(code) = present(obj, "code") else {
        return Ok(());
    };
    // Both sides go through the same serialization, so any difference comes from `code` alone.
    let mut variant = obj.clone();
    let canary = canary_for(obj);
    let replacement = match code {
        Value::String(s) if s.is_empty() => return Ok(()),
        Value::String(_) => Value::String(canary.clone()),
        Value::Bool(b) => Value::Bool(!b),
        Value::Number(_) => Value::from(7_310_597_u64),
        Value::Array(_) => Value::Array(vec![Value::String(canary.clone())]),
        Value::Object(_) => Value::Object(Map::from_iter([(
            canary.clone(),
            Value::String(canary.clone()),
        )])),
        Value::Null => return Ok(()),
    };
    variant.insert("code".into(), replacement);
    let encode = |m: &Map<String, Value>| serde_json::to_vec(m).expect("a JSON map serializes");
    let baseline = decode(&encode(obj));
    let changed = decode(&encode(&variant));

    let leak = |text: &str, what: &str| {
        if text.contains(&canary) {
            Err(format!("{what} contains the job's code"))
        } else {
            Ok(())
        }
    };
    match (baseline, changed) {
        (Err(a), Err(b)) => {
            if a != b {
                return Err(format!(
                    "the failure depends on the code's value: {a:?} versus {b:?}"
                ));
            }
            leak(&b.to_string(), "a failure message")?;
            leak(&format!("{b:?}"), "a failure's Debug output")?;
            let info = serde_json::to_string(&b.error_info()).expect("ErrorInfo serializes");
            leak(&info, "error_info()")
        }
        (Ok(a), Ok(mut b)) => {
            leak(&format!("{b:?}"), "a decoded job's Debug output")?;
            if a.code.is_some() && b.code.as_ref().map(|c| c.expose()) != Some(canary.as_str()) {
                return Err("the decoded code is not the input's code".into());
            }
            b.code = a.code.clone();
            if a != b {
                return Err("the decoded job depends on the code's value".into());
            }
            Ok(())
        }
        (a, b) => Err(format!(
            "acceptance depends on the code's value: {} versus {}",
            describe_outcome(&a),
            describe_outcome(&b)
        )),
    }
}

/// A string that appears nowhere in the object, so finding it in an output means it came from
/// the replaced `code`.
fn canary_for(obj: &Map<String, Value>) -> String {
    let text = serde_json::to_string(obj).unwrap_or_default();
    (0u32..)
        .map(|n| format!("code-canary-{n}"))
        .find(|c| !text.contains(c.as_str()))
        .expect("some counter value is absent from a finite text")
}

fn describe_outcome(outcome: &Decoded) -> String {
    match outcome {
        Ok(_) => "accepted".into(),
        Err(failure) => format!("rejected ({failure})"),
    }
}

fn describe_presence(present: bool) -> &'static str {
    if present {
        "present"
    } else {
        "absent"
    }
}

/// The field's value, `None` when absent or `null` (the two mean the same in Job v1).
fn present<'a>(obj: &'a Map<String, Value>, field: &str) -> Option<&'a Value> {
    obj.get(field).filter(|v| !v.is_null())
}

/// An optional field of an accepted job: absent, `null` or a string.
fn optional_str<'a>(obj: &'a Map<String, Value>, field: &str) -> Result<Option<&'a str>, String> {
    match present(obj, field) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(format!("accepted a job whose `{field}` is {other}")),
    }
}

/// The field when it is a string that obeys `syntax`.
fn readable<'a>(
    obj: &'a Map<String, Value>,
    field: &str,
    syntax: fn(&str) -> bool,
) -> Option<&'a str> {
    obj.get(field).and_then(Value::as_str).filter(|s| syntax(s))
}

/// `job_id`: 1..128 characters of `[A-Za-z0-9._:-]`.
fn job_id_syntax(s: &str) -> bool {
    (1..=128).contains(&s.chars().count())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-_:".contains(c))
}

/// `login_hint`: 8..15 digits with an optional leading `+`.
fn login_hint_syntax(s: &str) -> bool {
    let digits = s.strip_prefix('+').unwrap_or(s);
    (8..=15).contains(&digits.chars().count()) && digits.chars().all(|c| c.is_ascii_digit())
}

/// `client`: 1..64 characters of `[A-Za-z0-9_-]`.
fn client_syntax(s: &str) -> bool {
    (1..=64).contains(&s.chars().count())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-".contains(c))
}

/// `redirect_uri`: an absolute http(s) URL with a host and no user-info, written in RFC 3986
/// characters only (the `url` crate would silently drop tabs and newlines).
fn redirect_uri_syntax(s: &str) -> bool {
    let lower = s.to_ascii_lowercase();
    let rfc3986 = s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-._~:/?#[]@!$&'()*+,;=%".contains(c));
    (lower.starts_with("http://") || lower.starts_with("https://"))
        && rfc3986
        && url::Url::parse(s).is_ok_and(|u| {
            matches!(u.scheme(), "http" | "https")
                && u.host().is_some()
                && u.username().is_empty()
                && u.password().is_none()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"job_id":"j-1","login_hint":"+381123456789","code":"s3cr3t-code","redirect_uri":"https://client.example.com/cb","state":"s","attributes":{"tenant":"acme"}}"#;
    const BAD_URI: &str = r#"{"job_id":"j-1","login_hint":"+381123456789","code":"s3cr3t-code","redirect_uri":"ftp://x/"}"#;

    fn code_of(bytes: &[u8]) -> Option<String> {
        let v: Value = serde_json::from_slice(bytes).ok()?;
        v.get("code")?.as_str().map(str::to_owned)
    }

    #[test]
    fn the_real_decoder_passes_on_valid_invalid_and_garbage_input() {
        for input in [
            GOOD.as_bytes(),
            BAD_URI.as_bytes(),
            br#"{"job_id":null,"login_hint":"12345678","error":"e"}"#,
            br#"{"job_id":"j","login_hint":"12345678","code":[1],"redirect_uri":"http://a"}"#,
            b"\xff\xfe",
            b"[1]",
            b"",
        ] {
            assert_eq!(check_with(input, Job::decode), Ok(()));
        }
    }

    #[test]
    fn catches_a_failure_message_that_echoes_the_code() {
        let leaky = |b: &[u8]| {
            Job::decode(b).map_err(|mut f| {
                if let (JobError::Invalid { reason, .. }, Some(code)) = (&mut f.error, code_of(b)) {
                    reason.push_str(&code);
                }
                f
            })
        };
        let err = check_with(BAD_URI.as_bytes(), leaky).unwrap_err();
        assert!(err.contains("depends on the code"), "{err}");
    }

    #[test]
    fn catches_a_job_whose_fields_break_the_syntax_or_differ_from_the_input() {
        let breakages: [fn(&mut Job); 5] = [
            |j| j.login_hint = "1234567".into(),
            |j| j.job_id = "j 1".into(),
            |j| j.client = "other".into(),
            |j| j.state = None,
            |j| {
                j.attributes.clear();
            },
        ];
        for breakage in breakages {
            let faulty = |b: &[u8]| {
                Job::decode(b).map(|mut j| {
                    breakage(&mut j);
                    j
                })
            };
            assert!(check_with(GOOD.as_bytes(), faulty).is_err());
        }
    }

    #[test]
    fn catches_a_failure_with_an_invalid_or_lost_key() {
        let bad_key = |b: &[u8]| {
            Job::decode(b).map_err(|mut f| {
                f.job_id = Some("not a job id".into());
                f
            })
        };
        let err = check_with(BAD_URI.as_bytes(), bad_key).unwrap_err();
        assert!(err.contains("invalid job_id"), "{err}");
        let lost_key = |b: &[u8]| {
            Job::decode(b).map_err(|mut f| {
                f.login_hint = None;
                f
            })
        };
        assert!(check_with(BAD_URI.as_bytes(), lost_key).is_err());
    }

    #[test]
    fn catches_a_wrong_field_name_and_accepted_garbage() {
        let wrong_field = |b: &[u8]| {
            Job::decode(b).map_err(|mut f| {
                f.error = JobError::Missing("redirect_uri");
                f
            })
        };
        assert!(check_with(BAD_URI.as_bytes(), wrong_field).is_err());
        let accepts_all = |_: &[u8]| Job::decode(GOOD.as_bytes());
        assert!(check_with(b"[1]", accepts_all).is_err());
        assert!(check_with(b"\xff", accepts_all).is_err());
    }

    #[test]
    fn catches_a_code_that_depends_on_its_value() {
        let short_codes_rejected = |b: &[u8]| match code_of(b) {
            Some(c) if c.len() < 12 => Job::decode(BAD_URI.as_bytes()),
            _ => Job::decode(b),
        };
        assert!(check_with(GOOD.as_bytes(), short_codes_rejected).is_err());
    }

    #[test]
    fn syntax_oracles_follow_the_contract() {
        assert!(job_id_syntax("a.b:c_d-1") && job_id_syntax(&"x".repeat(128)));
        assert!(!job_id_syntax("") && !job_id_syntax(&"x".repeat(129)) && !job_id_syntax("a/b"));
        assert!(login_hint_syntax("+12345678") && login_hint_syntax("123456789012345"));
        assert!(!login_hint_syntax("1234567") && !login_hint_syntax("++12345678"));
        assert!(!login_hint_syntax("1234567890123456") && !login_hint_syntax("+"));
        assert!(client_syntax("eu_2-x") && !client_syntax("a.b") && !client_syntax(""));
        assert!(redirect_uri_syntax("HTTPS://a.example:443/x?y=%2F#f"));
        for bad in ["ftp://a/", "http://u@a/", "http://a/\tb", "/cb", "http://"] {
            assert!(!redirect_uri_syntax(bad), "{bad}");
        }
    }
}
