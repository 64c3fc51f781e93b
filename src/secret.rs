//! A string that must never be printed: api keys, client secrets, authorization codes, tokens.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// Wraps a secret value so that `Debug` and `Display` print `***`.
///
/// The value is reachable only through [`Secret::expose`], which makes every place that sends a
/// secret over the wire easy to find. Serializing prints `***` too, so a secret can never reach a
/// result, a dead-letter header or `check-config` output by accident.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The raw value, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True when no value was given.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("***")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret(s.to_owned())
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Secret(s)
    }
}

/// Masks a phone number for logs: everything but the last three digits becomes `*`.
pub fn mask_msisdn(msisdn: &str) -> String {
    let n = msisdn.chars().count();
    msisdn
        .chars()
        .enumerate()
        .map(|(i, c)| if i + 3 < n { '*' } else { c })
        .collect()
}

/// A number from an untrusted source (the one the network verified), for an auditor: its last
/// three digits, the others masked (at most 12 `*`, however long the string); non-digits are
/// dropped, so nothing but three digits of it can reach a result.
pub fn mask_to_last_three_digits(login_hint: &str) -> String {
    let digits: Vec<char> = login_hint.chars().filter(char::is_ascii_digit).collect();
    if digits.len() <= 3 {
        return "***".to_owned();
    }
    let (hidden, shown) = digits.split_at(digits.len() - 3);
    let mut masked = "*".repeat(hidden.len().min(12));
    masked.extend(shown);
    masked
}

/// `text` with every occurrence of each of `secrets` replaced by `***` (an upstream that quotes
/// back a code, a token or a credential). Occurrences are found in the original text, so one
/// secret inside or overlapping another is hidden whole. Values shorter than 4 characters are
/// left alone: they would match ordinary words.
pub fn scrub(text: &str, secrets: &[&str]) -> String {
    let mut found: Vec<(usize, usize)> = secrets
        .iter()
        .filter(|s| s.len() >= 4)
        .flat_map(|s| text.match_indices(s).map(|(i, m)| (i, i + m.len())))
        .collect();
    if found.is_empty() {
        return text.to_owned();
    }
    found.sort_unstable();
    let mut hidden: Vec<(usize, usize)> = Vec::with_capacity(found.len());
    for (start, end) in found {
        match hidden.last_mut() {
            Some((_, last)) if start <= *last => *last = (*last).max(end),
            _ => hidden.push((start, end)),
        }
    }
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (start, end) in hidden {
        out.push_str(&text[at..start]);
        out.push_str("***");
        at = end;
    }
    out.push_str(&text[at..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_removes_every_echoed_secret() {
        let text = "bad code abcdef1234 for token tok-5678, again abcdef1234";
        assert_eq!(
            scrub(text, &["abcdef1234", "tok-5678"]),
            "bad code *** for token ***, again ***"
        );
        assert_eq!(scrub("nothing here", &["abcdef1234"]), "nothing here");
        assert_eq!(scrub("a b c", &["a", ""]), "a b c", "too short to scrub");
        // A secret inside another (a client secret of digits inside a token) or overlapping it
        // does not leave the rest of the other one behind.
        let both = ["12345", "AT-0123456789"];
        assert_eq!(scrub("token AT-0123456789.", &both), "token ***.");
        assert_eq!(scrub("ABCDEFG", &["ABCDE", "CDEFG"]), "***");
        assert_eq!(scrub("ABCD-ABCD", &["ABCD"]), "***-***");
    }

    #[test]
    fn the_verified_number_is_masked_to_its_last_three_digits() {
        assert_eq!(mask_to_last_three_digits("+381299999123"), "*********123");
        assert_eq!(mask_to_last_three_digits("381 29 999 9123"), "*********123");
        assert_eq!(mask_to_last_three_digits("12"), "***");
        assert_eq!(mask_to_last_three_digits("abc"), "***");
        let long = "9".repeat(5000) + "456";
        assert_eq!(mask_to_last_three_digits(&long), "************456");
    }

    #[test]
    fn debug_display_and_serialize_are_masked() {
        let s = Secret::new("hunter2-very-secret");
        assert_eq!(format!("{s:?}"), "***");
        assert_eq!(format!("{s}"), "***");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"***\"");
        assert_eq!(s.expose(), "hunter2-very-secret");
    }

    #[test]
    fn msisdn_keeps_last_three() {
        assert_eq!(mask_msisdn("381123456789"), "*********789");
        assert_eq!(mask_msisdn("12"), "12");
    }
}
