//! The scenario's `[signals]` section: which numbers had a SIM or device swap and when, which
//! forward their calls, which the operator does not know; compiled for lookups by number.

use crate::error::ScenarioError;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::time::{Duration, SystemTime};

/// The longest swap age a scenario may give (100 years), so dates stay representable.
const MAX_AGE: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// `[signals]`: what the Network Signals endpoints report. Numbers no rule matches have had no
/// SIM or device swap and no call forwarding.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SignalsConfig {
    /// `[[signals.rules]]`, tried in order; the first rule that matches a number gives its signals.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<SignalRule>,
}

/// One `[[signals.rules]]` entry: which numbers it matches (`numbers` or `suffix`, exactly one)
/// and what the operator reports for them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SignalRule {
    /// Exact numbers, with or without a leading `+` (compared on digits).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub numbers: Option<Vec<String>>,
    /// Every number whose digits end with these digits (for generated numbers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suffix: Option<String>,
    /// The SIM changed this long before the scenario took effect; the age grows with the
    /// simulator's clock. Absent: no SIM change on record (`latestSimChange` null).
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub sim_swap_age: Option<Duration>,
    /// The device changed this long before the scenario took effect, as `sim_swap_age`.
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub device_swap_age: Option<Duration>,
    /// Unconditional call forwarding is active.
    pub call_forwarding: bool,
    /// The operator has no data for these numbers: every signal endpoint answers 404
    /// `IDENTIFIER_NOT_FOUND`. Cannot be combined with the other outcomes.
    pub unknown: bool,
}

impl SignalsConfig {
    /// No rules (the section is left out when the scenario is written back as TOML).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Checks every rule; the error names `signals.rules[i].<key>`.
    pub(crate) fn validate(&self) -> Result<(), ScenarioError> {
        for (i, r) in self.rules.iter().enumerate() {
            r.validate(i)?;
        }
        Ok(())
    }
}

impl SignalRule {
    fn validate(&self, i: usize) -> Result<(), ScenarioError> {
        let bad = |m: String| Err(ScenarioError::Invalid(format!("signals.rules[{i}].{m}")));
        match (&self.numbers, &self.suffix) {
            (Some(_), Some(_)) | (None, None) => {
                return bad("numbers or suffix: set exactly one of the two".into())
            }
            (Some(numbers), None) => {
                if numbers.is_empty() {
                    return bad("numbers must not be empty".into());
                }
                for (j, n) in numbers.iter().enumerate() {
                    if !is_scenario_number(n) {
                        return bad(format!(
                            "numbers[{j}] must be 7 to 15 digits, not starting with 0, \
                             with an optional leading '+'"
                        ));
                    }
                }
            }
            (None, Some(suffix)) => {
                let ok =
                    (1..=15).contains(&suffix.len()) && suffix.bytes().all(|b| b.is_ascii_digit());
                if !ok {
                    return bad("suffix must be 1 to 15 digits".into());
                }
            }
        }
        for (key, age) in [
            ("sim_swap_age", self.sim_swap_age),
            ("device_swap_age", self.device_swap_age),
        ] {
            if age.is_some_and(|a| a > MAX_AGE) {
                return bad(format!("{key} must be at most 100 years"));
            }
        }
        let has_outcome =
            self.sim_swap_age.is_some() || self.device_swap_age.is_some() || self.call_forwarding;
        if self.unknown && has_outcome {
            return bad(
                "unknown cannot be combined with sim_swap_age, device_swap_age or call_forwarding"
                    .into(),
            );
        }
        Ok(())
    }
}

/// A number as a scenario may write it: an optional `+`, then 7 to 15 digits not starting with 0.
fn is_scenario_number(n: &str) -> bool {
    let d = n.strip_prefix('+').unwrap_or(n);
    (7..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()) && !d.starts_with('0')
}

/// The digits of a number: `+4915…` and `4915…` are the same number.
pub(crate) fn digits(number: &str) -> &str {
    number.trim_start_matches('+')
}

/// Which swap a request asks about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Swap {
    /// SIM swap.
    Sim,
    /// Device swap.
    Device,
}

/// What the operator knows about one number.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct SubscriberProfile {
    sim_swap_age: Option<Duration>,
    device_swap_age: Option<Duration>,
    call_forwarding: bool,
    unknown: bool,
}

/// A number's profile when no rule matches: known, no swap, no forwarding.
const NOTHING: SubscriberProfile = SubscriberProfile {
    sim_swap_age: None,
    device_swap_age: None,
    call_forwarding: false,
    unknown: false,
};

impl SubscriberProfile {
    fn of(r: &SignalRule) -> SubscriberProfile {
        SubscriberProfile {
            sim_swap_age: r.sim_swap_age,
            device_swap_age: r.device_swap_age,
            call_forwarding: r.call_forwarding,
            unknown: r.unknown,
        }
    }

    /// The operator has no data for the number (404).
    pub(crate) fn unknown(&self) -> bool {
        self.unknown
    }

    /// Unconditional call forwarding is active.
    pub(crate) fn call_forwarding(&self) -> bool {
        self.call_forwarding
    }

    /// How long ago the swap happened, `elapsed` after the scenario took effect; `None` when
    /// there is no swap on record.
    pub(crate) fn swap_age(&self, swap: Swap, elapsed: Duration) -> Option<Duration> {
        let configured = match swap {
            Swap::Sim => self.sim_swap_age,
            Swap::Device => self.device_swap_age,
        };
        configured.map(|age| age.saturating_add(elapsed))
    }

    /// Whether the swap happened within the last `max_age` (a swap exactly `max_age` ago counts).
    pub(crate) fn swapped_within(&self, swap: Swap, elapsed: Duration, max_age: Duration) -> bool {
        self.swap_age(swap, elapsed).is_some_and(|a| a <= max_age)
    }

    /// When the swap happened, given the simulator's wall-clock now; `None` without a swap.
    pub(crate) fn swap_date(
        &self,
        swap: Swap,
        elapsed: Duration,
        wall_now: SystemTime,
    ) -> Option<SystemTime> {
        let age = self.swap_age(swap, elapsed)?;
        Some(wall_now.checked_sub(age).unwrap_or(SystemTime::UNIX_EPOCH))
    }
}

/// The `[signals]` rules compiled for lookups: exact numbers in a map, suffixes in rule order.
#[derive(Debug, Default)]
pub(crate) struct SignalBook {
    profiles: Vec<SubscriberProfile>,
    /// Digits -> index of the first rule listing them.
    exact: HashMap<String, usize>,
    /// (rule index, suffix digits), in rule order.
    suffixes: Vec<(usize, String)>,
}

impl SignalBook {
    /// Compiles validated rules.
    pub(crate) fn new(config: &SignalsConfig) -> SignalBook {
        let mut book = SignalBook::default();
        for (i, r) in config.rules.iter().enumerate() {
            book.profiles.push(SubscriberProfile::of(r));
            for n in r.numbers.iter().flatten() {
                book.exact.entry(digits(n).to_owned()).or_insert(i);
            }
            if let Some(s) = &r.suffix {
                book.suffixes.push((i, s.clone()));
            }
        }
        book
    }

    /// The profile of the first rule that matches `number` (with or without `+`).
    pub(crate) fn lookup(&self, number: &str) -> &SubscriberProfile {
        let d = digits(number);
        let exact = self.exact.get(d).copied();
        let by_suffix = self
            .suffixes
            .iter()
            .take_while(|(i, _)| exact.is_none_or(|e| *i < e))
            .find(|(_, s)| d.ends_with(s.as_str()))
            .map(|(i, _)| *i);
        by_suffix
            .or(exact)
            .and_then(|i| self.profiles.get(i))
            .unwrap_or(&NOTHING)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Scenario;

    fn book(toml: &str) -> SignalBook {
        SignalBook::new(&Scenario::from_toml_str(toml).unwrap().signals)
    }

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn exact_numbers_match_on_digits_and_others_have_nothing() {
        let b = book(
            "[[signals.rules]]\nnumbers = [\"+4915100000001\", \"4915100000002\"]\n\
             sim_swap_age = \"30m\"\ncall_forwarding = true",
        );
        for n in ["+4915100000001", "4915100000001", "+4915100000002"] {
            let p = b.lookup(n);
            assert_eq!(p.swap_age(Swap::Sim, Duration::ZERO), Some(30 * MIN), "{n}");
            assert!(p.call_forwarding());
        }
        let other = b.lookup("+4915100000003");
        assert_eq!(*other, NOTHING);
        assert_eq!(other.swap_age(Swap::Sim, Duration::ZERO), None);
        assert!(!other.call_forwarding() && !other.unknown());
    }

    #[test]
    fn the_first_matching_rule_wins_between_suffixes_and_numbers() {
        let b = book(
            "[[signals.rules]]\nsuffix = \"99\"\nunknown = true\n\
             [[signals.rules]]\nnumbers = [\"4915100000099\", \"4915100000001\"]\ncall_forwarding = true\n\
             [[signals.rules]]\nsuffix = \"1\"\ndevice_swap_age = \"1h\"\n\
             [[signals.rules]]\nnumbers = [\"4915100000001\"]\nunknown = true",
        );
        assert!(
            b.lookup("+4915100000099").unknown(),
            "suffix rule comes first"
        );
        let p = b.lookup("+4915100000001");
        assert!(
            p.call_forwarding() && !p.unknown(),
            "exact rule comes first"
        );
        assert_eq!(p.swap_age(Swap::Device, Duration::ZERO), None);
        let p = b.lookup("+4915100000011");
        assert_eq!(p.swap_age(Swap::Device, Duration::ZERO), Some(60 * MIN));
        assert_eq!(*b.lookup("+4915100000012"), NOTHING);
    }

    #[test]
    fn ages_grow_with_elapsed_time_and_max_age_is_inclusive() {
        let b = book("[[signals.rules]]\nsuffix = \"7\"\nsim_swap_age = \"30m\"");
        let p = b.lookup("+4915100000007");
        assert!(p.swapped_within(Swap::Sim, Duration::ZERO, 30 * MIN));
        assert!(!p.swapped_within(Swap::Sim, Duration::ZERO, 29 * MIN));
        assert!(p.swapped_within(Swap::Sim, 210 * MIN, 240 * MIN));
        assert!(!p.swapped_within(Swap::Sim, 211 * MIN, 240 * MIN));
        assert!(!p.swapped_within(Swap::Device, Duration::ZERO, 2400 * MIN));
    }

    #[test]
    fn dates_are_the_wall_clock_minus_the_age() {
        let b = book("[[signals.rules]]\nnumbers = [\"+4915100000001\"]\ndevice_swap_age = \"2h\"");
        let p = b.lookup("+4915100000001");
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(
            p.swap_date(Swap::Device, 10 * MIN, now),
            Some(now - 130 * MIN)
        );
        assert_eq!(p.swap_date(Swap::Sim, 10 * MIN, now), None);
    }

    #[test]
    fn refuses_bad_rules_naming_the_key() {
        let cases = [
            (
                "[[signals.rules]]\nsim_swap_age = \"1m\"",
                "rules[0].numbers or suffix",
            ),
            (
                "[[signals.rules]]\nnumbers = [\"+4915100000001\"]\nsuffix = \"1\"",
                "exactly one",
            ),
            (
                "[[signals.rules]]\nnumbers = []",
                "numbers must not be empty",
            ),
            (
                "[[signals.rules]]\nnumbers = [\"+49 151\"]",
                "numbers[0] must be",
            ),
            (
                "[[signals.rules]]\nnumbers = [\"123456\"]",
                "numbers[0] must be",
            ),
            (
                "[[signals.rules]]\nnumbers = [\"4915100000001\", \"0049151000001\"]",
                "numbers[1] must be",
            ),
            ("[[signals.rules]]\nsuffix = \"\"", "suffix must be"),
            ("[[signals.rules]]\nsuffix = \"+1\"", "suffix must be"),
            (
                "[[signals.rules]]\nsuffix = \"1\"\nunknown = true\ncall_forwarding = true",
                "unknown cannot be combined",
            ),
            (
                "[[signals.rules]]\nsuffix = \"1\"\nsim_swap_age = \"200years\"",
                "sim_swap_age must be at most",
            ),
            (
                "[[signals.rules]]\nsuffix = \"1\"\nsim_swap_age = \"soon\"",
                "sim_swap_age",
            ),
            ("[signals]\nnope = 1", "unknown field"),
            (
                "[[signals.rules]]\nsuffix = \"1\"\nswapped = true",
                "unknown field",
            ),
        ];
        for (text, needle) in cases {
            let err = Scenario::from_toml_str(text).unwrap_err().to_string();
            assert!(err.contains(needle), "{text:?}: {err}");
        }
    }
}
