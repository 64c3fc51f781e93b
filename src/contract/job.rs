//! Job v1 (CONTRACT.md §3): decoding raw Kafka bytes into a validated [`Job`].
//!
//! The rules here and `schemas/job.v1.schema.json` accept exactly the same documents;
//! `tests/schema.rs` runs a corpus and a property test through both.
//!
//! **Null handling.** A field whose value is JSON `null` is treated exactly as if it were absent.
//! For optional fields that means `null` is accepted; for required fields (`job_id`,
//! `login_hint`, and `code`/`redirect_uri` when there is no `error`) it means `null` is rejected,
//! just as a missing field would be. A present, non-null field must always be valid, even where
//! it is not needed (a `code` next to an `error` must still be a non-empty string).
//!
//! **Secrets.** Error messages name the field and the rule it broke; they never echo a field's
//! value, so the authorization code cannot leak through a result or a dead-letter header.
//!
//! **Bounded work.** Decoding is one linear pass of `serde_json` (whose recursion limit bounds
//! nesting) followed by checks that are linear in the size of the fields they read.

use crate::contract::result::{ErrorClass, ErrorInfo, Stage};
use crate::secret::Secret;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fmt;

/// The only job schema version this worker understands.
pub const JOB_SCHEMA_VERSION: u64 = 1;
/// The longest accepted `job_id`, in characters.
pub const MAX_JOB_ID_LEN: usize = 128;
/// The longest accepted `client` profile name, in characters.
pub const MAX_CLIENT_LEN: usize = 64;
/// The fewest digits of a `login_hint` (without the optional `+`).
pub const MIN_LOGIN_HINT_DIGITS: usize = 8;
/// The most digits of a `login_hint` (without the optional `+`).
pub const MAX_LOGIN_HINT_DIGITS: usize = 15;
/// The credentials profile a job uses when it names none.
pub const DEFAULT_CLIENT: &str = "default";

/// A validated verification job.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// 1..128 chars of `[A-Za-z0-9._:-]`.
    pub job_id: String,
    /// The MSISDN to verify: 8..15 digits, optional leading `+`.
    pub login_hint: String,
    /// The authorization code (absent when `error` is present: a job carrying an authorize
    /// error never spends a code, so a code sent alongside one is validated and then dropped).
    pub code: Option<Secret>,
    /// Required with `code`; absolute http(s) URL.
    pub redirect_uri: Option<String>,
    /// The authorize redirect's error.
    pub error: Option<String>,
    /// The authorize redirect's error description.
    pub error_description: Option<String>,
    /// Echoed.
    pub state: Option<String>,
    /// Credentials profile, default `"default"`.
    pub client: String,
    /// When the callback got the code.
    pub issued_at: Option<DateTime<Utc>>,
    /// Echoed string map.
    pub attributes: BTreeMap<String, String>,
}

/// Why a job is invalid; each variant names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    /// The bytes are not UTF-8 JSON.
    #[error("job is not valid UTF-8 JSON: {0}")]
    NotJson(String),
    /// The JSON is not an object.
    #[error("job must be a JSON object")]
    NotObject,
    /// A required field is missing.
    #[error("missing required field `{0}`")]
    Missing(&'static str),
    /// A field has the wrong type or an invalid value.
    #[error("invalid field `{field}`: {reason}")]
    Invalid {
        /// The field name.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

impl JobError {
    /// The field the error is about, when there is one.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            JobError::Missing(f) => Some(f),
            JobError::Invalid { field, .. } => Some(field),
            _ => None,
        }
    }

    fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        JobError::Invalid {
            field,
            reason: reason.into(),
        }
    }
}

/// A job that could not be decoded, with its `job_id` when that could still be read.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodeFailure {
    /// The job id, if readable and valid.
    pub job_id: Option<String>,
    /// The login_hint, if readable (echoed in the failed result).
    pub login_hint: Option<String>,
    /// What is wrong.
    pub error: JobError,
}

impl DecodeFailure {
    /// A failure of bytes that are not a JSON object, so nothing can be recovered.
    fn unkeyed(error: JobError) -> Self {
        DecodeFailure {
            job_id: None,
            login_hint: None,
            error,
        }
    }

    /// The `invalid_job` error of the failed result and the dead letter (§5).
    pub fn error_info(&self) -> ErrorInfo {
        ErrorInfo::new(ErrorClass::InvalidJob, Stage::Job, self.error.to_string())
    }
}

impl fmt::Display for DecodeFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)
    }
}

impl std::error::Error for DecodeFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

impl Job {
    /// Decodes and validates a job from raw bytes. Never panics.
    ///
    /// On failure the [`DecodeFailure`] still carries `job_id` and `login_hint` whenever the
    /// bytes are a JSON object whose fields of those names are themselves valid, so the worker
    /// can publish a keyed `invalid_job` result.
    pub fn decode(bytes: &[u8]) -> Result<Job, DecodeFailure> {
        let text = std::str::from_utf8(bytes).map_err(|e| {
            DecodeFailure::unkeyed(JobError::NotJson(format!(
                "invalid UTF-8 at byte {}",
                e.valid_up_to()
            )))
        })?;
        let value: Value = serde_json::from_str(text)
            .map_err(|e| DecodeFailure::unkeyed(JobError::NotJson(e.to_string())))?;
        let Value::Object(obj) = value else {
            return Err(DecodeFailure::unkeyed(JobError::NotObject));
        };
        Self::from_object(&obj).map_err(|error| DecodeFailure {
            job_id: read_job_id(&obj).ok(),
            login_hint: read_login_hint(&obj).ok(),
            error,
        })
    }

    /// Validates every field of a decoded JSON object, reporting the first rule broken.
    fn from_object(obj: &Map<String, Value>) -> Result<Job, JobError> {
        if let Some(v) = present(obj, "schema_version") {
            if !is_one(v) {
                return Err(JobError::invalid("schema_version", "must be 1"));
            }
        }
        let job_id = read_job_id(obj)?;
        let login_hint = read_login_hint(obj)?;

        let error = optional_string(obj, "error")?;
        if error.as_deref() == Some("") {
            return Err(JobError::invalid("error", "must not be empty"));
        }
        let code = optional_string(obj, "code")?;
        if code.as_deref() == Some("") {
            return Err(JobError::invalid("code", "must not be empty"));
        }
        let redirect_uri = optional_string(obj, "redirect_uri")?;
        if let Some(uri) = &redirect_uri {
            check_redirect_uri(uri)?;
        }
        if error.is_none() {
            if code.is_none() {
                return Err(JobError::Missing("code"));
            }
            if redirect_uri.is_none() {
                return Err(JobError::Missing("redirect_uri"));
            }
        }

        let error_description = optional_string(obj, "error_description")?;
        let state = optional_string(obj, "state")?;
        let client = match optional_string(obj, "client")? {
            None => DEFAULT_CLIENT.to_owned(),
            Some(c) if is_valid_client(&c) => c,
            Some(_) => {
                return Err(JobError::invalid(
                    "client",
                    "must be 1..64 characters of [A-Za-z0-9_-]",
                ))
            }
        };
        let issued_at =
            match optional_string(obj, "issued_at")? {
                None => None,
                Some(s) => Some(parse_rfc3339(&s).ok_or_else(|| {
                    JobError::invalid("issued_at", "must be an RFC 3339 date-time")
                })?),
            };
        let attributes = read_attributes(obj)?;

        Ok(Job {
            job_id,
            login_hint,
            // A job with an authorize error never spends a code: do not carry the secret on.
            code: if error.is_some() {
                None
            } else {
                code.map(Secret::new)
            },
            redirect_uri,
            error,
            error_description,
            state,
            client,
            issued_at,
            attributes,
        })
    }
}

/// True when `s` is a valid `job_id`: 1..128 characters of `[A-Za-z0-9._:-]`.
pub fn is_valid_job_id(s: &str) -> bool {
    (1..=MAX_JOB_ID_LEN).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// True when `s` is a valid `login_hint`: 8..15 ASCII digits with an optional leading `+`.
pub fn is_valid_login_hint(s: &str) -> bool {
    let digits = s.strip_prefix('+').unwrap_or(s);
    (MIN_LOGIN_HINT_DIGITS..=MAX_LOGIN_HINT_DIGITS).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
}

/// True when `s` is a syntactically valid `client` profile name: 1..64 chars of `[A-Za-z0-9_-]`.
pub fn is_valid_client(s: &str) -> bool {
    (1..=MAX_CLIENT_LEN).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
}

/// The field's value, or `None` when it is absent or `null` (the two mean the same).
fn present<'a>(obj: &'a Map<String, Value>, field: &str) -> Option<&'a Value> {
    obj.get(field).filter(|v| !v.is_null())
}

/// The JSON type of a value, for error messages that must not echo the value itself.
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn optional_string(
    obj: &Map<String, Value>,
    field: &'static str,
) -> Result<Option<String>, JobError> {
    match present(obj, field) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(JobError::invalid(
            field,
            format!("must be a string, not {}", kind(other)),
        )),
    }
}

fn required_string<'a>(
    obj: &'a Map<String, Value>,
    field: &'static str,
) -> Result<&'a str, JobError> {
    match obj.get(field) {
        None => Err(JobError::Missing(field)),
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(JobError::invalid(
            field,
            format!("must be a string, not {}", kind(other)),
        )),
    }
}

fn read_job_id(obj: &Map<String, Value>) -> Result<String, JobError> {
    let s = required_string(obj, "job_id")?;
    if is_valid_job_id(s) {
        Ok(s.to_owned())
    } else {
        Err(JobError::invalid(
            "job_id",
            "must be 1..128 characters of [A-Za-z0-9._:-]",
        ))
    }
}

fn read_login_hint(obj: &Map<String, Value>) -> Result<String, JobError> {
    let s = required_string(obj, "login_hint")?;
    if is_valid_login_hint(s) {
        Ok(s.to_owned())
    } else {
        Err(JobError::invalid(
            "login_hint",
            "must be 8..15 digits with an optional leading '+'",
        ))
    }
}

fn read_attributes(obj: &Map<String, Value>) -> Result<BTreeMap<String, String>, JobError> {
    match present(obj, "attributes") {
        None => Ok(BTreeMap::new()),
        Some(Value::Object(map)) => map
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                other => Err(JobError::invalid(
                    "attributes",
                    format!("every value must be a string, found {}", kind(other)),
                )),
            })
            .collect(),
        Some(other) => Err(JobError::invalid(
            "attributes",
            format!("must be an object of strings, not {}", kind(other)),
        )),
    }
}

/// `schema_version` must equal 1; like JSON Schema's `const`, `1.0` is the same number.
fn is_one(v: &Value) -> bool {
    match v {
        Value::Number(n) => {
            n.as_u64() == Some(JOB_SCHEMA_VERSION) || (n.is_f64() && n.as_f64() == Some(1.0))
        }
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------------
// redirect_uri
//
// The accepted shape is exactly the `pattern` of `redirect_uri` in `schemas/job.v1.schema.json`:
//   scheme   http | https (any case), then "://"
//   host     a DNS name (labels of [A-Za-z0-9_-], the last starting with a letter),
//            a dotted-quad IPv4 address, or an IPv6 literal in brackets
//   port     optional, 0..65535 without leading zeros
//   rest     optional path / query / fragment of RFC 3986 characters, `%` only as `%XX`
// No user-info. The `url` crate must then also parse it; the two disagree only for IDNA
// labels (`xn--…`) that are not valid punycode, which the schema cannot express.
// ---------------------------------------------------------------------------------------------

fn check_redirect_uri(uri: &str) -> Result<(), JobError> {
    const REASON: &str = "must be an absolute http or https URL";
    if !redirect_uri_shape_ok(uri) {
        return Err(JobError::invalid("redirect_uri", REASON));
    }
    match url::Url::parse(uri) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(()),
        Ok(_) => Err(JobError::invalid("redirect_uri", REASON)),
        Err(e) => Err(JobError::invalid("redirect_uri", format!("{REASON} ({e})"))),
    }
}

fn redirect_uri_shape_ok(uri: &str) -> bool {
    let Some(rest) = strip_prefix_ignore_case(uri, "https://")
        .or_else(|| strip_prefix_ignore_case(uri, "http://"))
    else {
        return false;
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    authority_ok(authority) && tail_ok(tail)
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

fn authority_ok(authority: &str) -> bool {
    let (host_ok, port) = if let Some(inner) = authority.strip_prefix('[') {
        let Some(close) = inner.find(']') else {
            return false;
        };
        let after = &inner[close + 1..];
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return false,
        };
        (ipv6_ok(&inner[..close]), port)
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (dns_name_ok(host) || ipv4_ok(host), Some(port)),
            None => (dns_name_ok(authority) || ipv4_ok(authority), None),
        }
    };
    host_ok && port.is_none_or(port_ok)
}

fn dns_name_ok(host: &str) -> bool {
    let labels_ok = host.split('.').all(|label| {
        !label.is_empty()
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
    });
    let last_starts_with_letter = host
        .rsplit('.')
        .next()
        .and_then(|l| l.bytes().next())
        .is_some_and(|b| b.is_ascii_alphabetic());
    labels_ok && last_starts_with_letter
}

/// A decimal octet 0..255 without leading zeros.
fn dec_octet_ok(s: &str) -> bool {
    (1..=3).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_digit())
        && (s.len() == 1 || !s.starts_with('0'))
        && s.parse::<u16>().is_ok_and(|n| n <= 255)
}

fn ipv4_ok(host: &str) -> bool {
    let parts: Vec<&str> = host.splitn(5, '.').collect();
    parts.len() == 4 && parts.iter().all(|p| dec_octet_ok(p))
}

/// RFC 3986 `IPv6address` (the schema spells out the same grammar as a regular expression).
fn ipv6_ok(s: &str) -> bool {
    fn h16(p: &str) -> bool {
        (1..=4).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_hexdigit())
    }
    // Pieces on one side of "::" (or the whole address): h16 groups, the last may be IPv4.
    // Returns the number of 16-bit groups they make, or None.
    fn groups(side: &str, may_end_in_ipv4: bool) -> Option<usize> {
        if side.is_empty() {
            return Some(0);
        }
        let pieces: Vec<&str> = side.split(':').collect();
        let mut n = 0;
        for (i, p) in pieces.iter().enumerate() {
            if h16(p) {
                n += 1;
            } else if may_end_in_ipv4 && i + 1 == pieces.len() && ipv4_ok(p) {
                n += 2;
            } else {
                return None;
            }
        }
        Some(n)
    }
    if s.len() > 45 {
        return false;
    }
    match s.split_once("::") {
        None => groups(s, true) == Some(8),
        Some((left, right)) => {
            if right.contains("::") {
                return false;
            }
            match (groups(left, false), groups(right, true)) {
                (Some(l), Some(r)) => l + r <= 7,
                _ => false,
            }
        }
    }
}

fn port_ok(port: &str) -> bool {
    (1..=5).contains(&port.len())
        && port.bytes().all(|b| b.is_ascii_digit())
        && (port.len() == 1 || !port.starts_with('0'))
        && port.parse::<u32>().is_ok_and(|n| n <= 65535)
}

/// Path, query and fragment: RFC 3986 characters, `%` only before two hex digits, one `#`.
fn tail_ok(tail: &str) -> bool {
    let (before, fragment) = match tail.split_once('#') {
        Some((b, f)) => (b, Some(f)),
        None => (tail, None),
    };
    let chars_ok = |s: &str| {
        let b = s.as_bytes();
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'%' => {
                    if !(i + 2 < b.len()
                        && b[i + 1].is_ascii_hexdigit()
                        && b[i + 2].is_ascii_hexdigit())
                    {
                        return false;
                    }
                    i += 3;
                }
                c if c.is_ascii_alphanumeric() || b"._~!$&'()*+,;=:@/?-".contains(&c) => i += 1,
                _ => return false,
            }
        }
        true
    };
    chars_ok(before) && fragment.is_none_or(chars_ok)
}

// ---------------------------------------------------------------------------------------------
// issued_at
//
// RFC 3339 `date-time` exactly as JSON Schema's `format: date-time` checks it: `T`/`t`
// separator, `Z`/`z` or `±HH:MM` offset (hours ≤ 23), a real calendar date, and a leap second
// (`:60`) only where it falls on 23:59 UTC. chrono then converts it (chrono alone is laxer: it
// also takes a space separator and a leap second at any minute).
// ---------------------------------------------------------------------------------------------

fn parse_rfc3339(s: &str) -> Option<DateTime<Utc>> {
    if !rfc3339_strict(s) {
        return None;
    }
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

fn two_digits(b: &[u8]) -> Option<u32> {
    match b {
        [x, y] if x.is_ascii_digit() && y.is_ascii_digit() => {
            Some(u32::from(x - b'0') * 10 + u32::from(y - b'0'))
        }
        _ => None,
    }
}

fn rfc3339_strict(s: &str) -> bool {
    let b = s.as_bytes();
    // YYYY-MM-DDTHH:MM:SS is 19 bytes, plus at least a one-byte offset.
    if b.len() < 20 || !matches!(b[10], b'T' | b't') {
        return false;
    }
    if !b[..4].iter().all(u8::is_ascii_digit) || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    let year: u32 = b[..4]
        .iter()
        .fold(0, |acc, d| acc * 10 + u32::from(d - b'0'));
    let (Some(month), Some(day)) = (two_digits(&b[5..7]), two_digits(&b[8..10])) else {
        return false;
    };
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    if day == 0 || day > days_in_month {
        return false;
    }
    if b[13] != b':' || b[16] != b':' {
        return false;
    }
    let (Some(hour), Some(minute), Some(second)) = (
        two_digits(&b[11..13]),
        two_digits(&b[14..16]),
        two_digits(&b[17..19]),
    ) else {
        return false;
    };
    if hour > 23 || minute > 59 || second > 60 {
        return false;
    }
    let mut i = 19;
    if b[i] == b'.' {
        let start = i + 1;
        i = start;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start || i == b.len() {
            return false;
        }
    }
    // Minutes east of UTC.
    let offset_minutes: i64 = match &b[i..] {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let (Some(oh), Some(om)) = (two_digits(&[*h1, *h2]), two_digits(&[*m1, *m2])) else {
                return false;
            };
            if oh > 23 || om > 59 {
                return false;
            }
            let total = i64::from(oh * 60 + om);
            if *sign == b'+' {
                total
            } else {
                -total
            }
        }
        _ => return false,
    };
    if second == 60 {
        let utc = (i64::from(hour * 60 + minute) - offset_minutes).rem_euclid(24 * 60);
        return utc == 23 * 60 + 59;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"job_id":"j-1","login_hint":"+381123456789","code":"s3cr3t-code","redirect_uri":"https://client.example.com/cb"}"#;

    fn with(field: &str, value: Value) -> Vec<u8> {
        let mut v: Value = serde_json::from_str(GOOD).unwrap();
        v[field] = value;
        serde_json::to_vec(&v).unwrap()
    }

    #[test]
    fn decodes_a_minimal_job_with_defaults() {
        let job = Job::decode(GOOD.as_bytes()).unwrap();
        assert_eq!(job.job_id, "j-1");
        assert_eq!(job.login_hint, "+381123456789");
        assert_eq!(job.code.as_ref().map(Secret::expose), Some("s3cr3t-code"));
        assert_eq!(job.client, DEFAULT_CLIENT);
        assert!(job.attributes.is_empty());
        assert_eq!(job.issued_at, None);
    }

    #[test]
    fn decodes_every_field() {
        let bytes =
            br#"{"schema_version":1,"job_id":"a.b:c_d-1","login_hint":"38112345","code":"c",
            "redirect_uri":"HTTP://[::1]:8080/cb?x=1#f","state":"xyz","client":"eu_2",
            "issued_at":"2026-11-25T11:00:00+01:00","attributes":{"tenant":"acme"},"extra":[1]}"#;
        let job = Job::decode(bytes).unwrap();
        assert_eq!(job.client, "eu_2");
        assert_eq!(job.state.as_deref(), Some("xyz"));
        assert_eq!(
            job.issued_at.unwrap().to_rfc3339(),
            "2026-11-25T10:00:00+00:00"
        );
        assert_eq!(job.attributes["tenant"], "acme");
    }

    #[test]
    fn authorize_error_makes_code_optional_and_drops_it() {
        let job = Job::decode(br#"{"job_id":"j","login_hint":"12345678","error":"missing_scope"}"#)
            .unwrap();
        assert_eq!(job.error.as_deref(), Some("missing_scope"));
        assert!(job.code.is_none() && job.redirect_uri.is_none());
        let job = Job::decode(&with("error", "server_error".into())).unwrap();
        assert!(
            job.code.is_none(),
            "the code is not carried next to an error"
        );
    }

    #[test]
    fn null_is_absent() {
        for f in [
            "state",
            "client",
            "issued_at",
            "attributes",
            "schema_version",
            "error",
        ] {
            assert!(Job::decode(&with(f, Value::Null)).is_ok(), "{f}");
        }
        let e = Job::decode(&with("code", Value::Null)).unwrap_err();
        assert_eq!(e.error, JobError::Missing("code"));
        let e = Job::decode(&with("job_id", Value::Null)).unwrap_err();
        assert_eq!(e.error.field(), Some("job_id"));
        assert_eq!(e.job_id, None);
        assert_eq!(e.login_hint.as_deref(), Some("+381123456789"));
    }

    #[test]
    fn failures_keep_the_key_and_never_echo_the_code() {
        let e = Job::decode(&with("redirect_uri", "ftp://x/".into())).unwrap_err();
        assert_eq!(e.job_id.as_deref(), Some("j-1"));
        assert_eq!(e.error.field(), Some("redirect_uri"));
        assert!(!e.to_string().contains("s3cr3t"));
        assert_eq!(e.error_info().class, ErrorClass::InvalidJob);
        assert!(!e.error_info().retryable);
        let e = Job::decode(&with("code", 42.into())).unwrap_err();
        assert_eq!(
            e.error.to_string(),
            "invalid field `code`: must be a string, not a number"
        );
    }

    #[test]
    fn not_json_and_not_object() {
        assert!(matches!(
            Job::decode(b"\xff\xfe").unwrap_err().error,
            JobError::NotJson(_)
        ));
        assert!(matches!(
            Job::decode(b"{").unwrap_err().error,
            JobError::NotJson(_)
        ));
        assert_eq!(Job::decode(b"[1]").unwrap_err().error, JobError::NotObject);
        assert_eq!(
            Job::decode(b"\"x\"").unwrap_err().error,
            JobError::NotObject
        );
    }

    #[test]
    fn deep_nesting_is_rejected_without_overflow() {
        let deep = "[".repeat(100_000);
        assert!(Job::decode(deep.as_bytes()).is_err());
        let deep_attr = format!(
            r#"{{"job_id":"j","login_hint":"12345678","error":"e","attributes":{}}}"#,
            "{\"a\":".repeat(50_000)
        );
        assert!(Job::decode(deep_attr.as_bytes()).is_err());
    }

    #[test]
    fn redirect_uri_shapes() {
        for ok in [
            "http://a",
            "https://client.example.com/callback",
            "HTTPS://A.example:443/x?y=%2F#frag",
            "http://127.0.0.1:8080/cb",
            "http://[2001:db8::1]/",
            "http://[::ffff:1.2.3.4]:0",
            "http://localhost?x",
            "http://a_b-c.d#",
        ] {
            assert!(check_redirect_uri(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "/cb",
            "ftp://a/",
            "http:/a",
            "http://",
            "http://user@a/",
            "http://a:65536/",
            "http://a:080/",
            "http://a:/",
            "http://1.2.3.256/",
            "http://01.2.3.4/",
            "http://a..b/",
            "http://a.1/",
            "http://a/b c",
            "http://a/%zz",
            "http://a/#x#y",
            "http://[1:2]/",
            "http://[::1]x/",
            "mailto:x@y",
        ] {
            assert!(check_redirect_uri(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ipv6_grammar() {
        for ok in [
            "::",
            "::1",
            "1::",
            "1:2:3:4:5:6:7:8",
            "1:2:3:4:5:6::8",
            "::1.2.3.4",
            "1:2:3:4:5:6:1.2.3.4",
            "a::b:1.2.3.4",
        ] {
            assert!(ipv6_ok(ok), "{ok}");
        }
        for bad in [
            "",
            ":",
            "1:2:3:4:5:6:7",
            "1:2:3:4:5:6:7:8:9",
            "1::2::3",
            "1:2:3:4:5:6:7::8",
            "12345::",
            "1.2.3.4::",
            "g::",
            ":1::",
        ] {
            assert!(!ipv6_ok(bad), "{bad}");
        }
    }

    #[test]
    fn rfc3339_strictness() {
        for ok in [
            "2026-11-25T10:00:00Z",
            "2026-11-25t10:00:00.123456789012z",
            "2024-02-29T00:00:00+23:59",
            "2016-12-31T23:59:60Z",
            "2016-12-31T18:59:60-05:00",
        ] {
            assert!(parse_rfc3339(ok).is_some(), "{ok}");
        }
        for bad in [
            "2026-11-25 10:00:00Z",
            "2026-11-25T10:00:00",
            "2023-02-29T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-11-25T24:00:00Z",
            "2026-11-25T10:00:60Z",
            "2026-11-25T10:00:00.Z",
            "2026-11-25T10:00:00+24:00",
            "2026-11-25T10:00:00+0100",
            "yesterday",
        ] {
            assert!(parse_rfc3339(bad).is_none(), "{bad}");
        }
    }
}
