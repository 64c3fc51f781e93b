//! The syntax of Job v1's fields (docs/contract.md): identifiers, phone numbers, redirect URIs and
//! RFC 3339 times, checked exactly as `schemas/job.v1.schema.json` checks them.
//!
//! Each rule is written once here and once as a `pattern`/`format` in the schema;
//! `tests/schema.rs` keeps the two in step. Everything is linear in the input and never panics.

use chrono::{DateTime, Utc};

/// The longest accepted `job_id`, in characters.
pub const MAX_JOB_ID_LEN: usize = 128;
/// The longest accepted `client` profile name, in characters.
pub const MAX_CLIENT_LEN: usize = 64;
/// The fewest digits of a `login_hint` (without the optional `+`).
pub const MIN_LOGIN_HINT_DIGITS: usize = 8;
/// The most digits of a `login_hint` (without the optional `+`).
pub const MAX_LOGIN_HINT_DIGITS: usize = 15;

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

// ---------------------------------------------------------------------------------------------
// redirect_uri
//
// The accepted shape is exactly the `pattern` of `redirect_uri` in `schemas/job.v1.schema.json`:
//   scheme   http | https (any case), then "://"
//   host     a DNS name (labels of [A-Za-z0-9_-], the last starting with a letter),
//            a dotted-quad IPv4 address, or an RFC 3986 IPv6 literal in brackets
//   port     optional, 0..65535 without leading zeros
//   rest     optional path / query / fragment of RFC 3986 characters, `%` only as `%XX`
// No user-info. The `url` crate must then also parse it; the two disagree only for IDNA
// labels (`xn--…`) that are not valid punycode, which the schema cannot express.
// ---------------------------------------------------------------------------------------------

/// True when `uri` is an acceptable `redirect_uri`: an absolute http(s) URL of the shape above
/// that the `url` crate also parses.
pub fn is_valid_redirect_uri(uri: &str) -> bool {
    redirect_uri_shape_ok(uri)
        && url::Url::parse(uri)
            .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
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

/// Parses an RFC 3339 date-time as JSON Schema's `format: date-time` accepts it; `None` when it
/// is not one.
pub fn parse_rfc3339(s: &str) -> Option<DateTime<Utc>> {
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
            assert!(is_valid_redirect_uri(ok), "{ok}");
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
            assert!(!is_valid_redirect_uri(bad), "{bad}");
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
