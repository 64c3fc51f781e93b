//! Fault selection: which `[[faults]]` rule, if any, applies to a request, with `first` healing,
//! `per_code` counting, `login_hints` filtering and a seeded `rate`.

use crate::broken::BodyShape;
use crate::endpoint::SimEndpoint;
use crate::fault_rule::{FaultKind, FaultRule};
use crate::responses::AuthorizeError;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;

/// What to do to a selected request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Action {
    /// Answer this status instead of processing.
    Status {
        status: u16,
        retry_after: Option<String>,
        body: Option<String>,
    },
    /// Close the connection without answering (after processing when asked).
    Drop { after_processing: bool },
    /// Wait, then answer (the wait comes after processing when asked).
    Slow {
        delay: Duration,
        after_processing: bool,
    },
    /// Process, then answer a 200 that does not parse.
    Malformed { body: Option<String> },
    /// Process, then send the endpoint's answer with a body that does not arrive whole.
    BrokenBody(BodyShape),
    /// Authorize only: redirect with this B.1 error.
    RedirectError {
        error: AuthorizeError,
        description: String,
    },
}

/// The request a rule is matched against.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Subject<'a> {
    /// Where the request went.
    pub endpoint: SimEndpoint,
    /// The login_hint of the code/token (authorize: the query's; signals: the number asked
    /// about), when known.
    pub login_hint: Option<&'a str>,
    /// The code the request is about (token: the code; userinfo: the code behind the token).
    pub code_id: Option<u64>,
}

struct RuleState {
    rule: FaultRule,
    endpoint: Option<SimEndpoint>,
    hints: Option<HashSet<String>>,
    seen: AtomicU64,
    per_key: Mutex<HashMap<String, u64>>,
}

/// The compiled fault rules of one scenario plus its seeded random generator.
pub(crate) struct FaultEngine {
    rules: Vec<RuleState>,
    rng: Mutex<StdRng>,
}

/// `+381…` and `381…` name the same number.
pub(crate) fn normalize_hint(h: &str) -> &str {
    h.trim_start_matches('+')
}

impl FaultEngine {
    /// Compiles `rules` (already validated) with the scenario's `seed`.
    pub(crate) fn new(rules: &[FaultRule], seed: u64) -> Self {
        let rules = rules
            .iter()
            .map(|r| RuleState {
                rule: r.clone(),
                endpoint: r.endpoint,
                hints: r.login_hints.as_ref().map(|h| {
                    h.iter()
                        .map(|s| normalize_hint(s).to_owned())
                        .collect::<HashSet<_>>()
                }),
                seen: AtomicU64::new(0),
                per_key: Mutex::new(HashMap::new()),
            })
            .collect();
        FaultEngine {
            rules,
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
        }
    }

    /// A uniform random number in `[0, 1)` from the seeded generator.
    pub(crate) fn random(&self) -> f64 {
        self.rng
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .random::<f64>()
    }

    /// The first rule that selects `subject`, as an action.
    pub(crate) fn pick(&self, subject: Subject<'_>) -> Option<Action> {
        self.rules
            .iter()
            .find(|r| self.selects(r, subject))
            .and_then(|r| action(&r.rule))
    }

    fn selects(&self, r: &RuleState, s: Subject<'_>) -> bool {
        if r.endpoint != Some(s.endpoint) {
            return false;
        }
        if let Some(hints) = &r.hints {
            match s.login_hint {
                Some(h) if hints.contains(normalize_hint(h)) => {}
                _ => return false,
            }
        }
        if let Some(first) = r.rule.first {
            let n = if r.rule.per_code {
                let key = match (s.endpoint, s.code_id, s.login_hint) {
                    (e, _, Some(h)) if e == SimEndpoint::Authorize || e.is_signal() => {
                        format!("h:{}", normalize_hint(h))
                    }
                    (_, Some(id), _) => format!("c:{id}"),
                    // Nothing to count per: the rule does not apply.
                    _ => return false,
                };
                let mut m = r.per_key.lock().unwrap_or_else(|p| p.into_inner());
                let n = m.entry(key).or_insert(0);
                *n += 1;
                *n
            } else {
                r.seen.fetch_add(1, Relaxed) + 1
            };
            if n > first {
                return false;
            }
        }
        match r.rule.rate {
            Some(rate) => self.random() < rate,
            None => true,
        }
    }
}

fn action(r: &FaultRule) -> Option<Action> {
    Some(match r.effective_kind()? {
        FaultKind::Status => Action::Status {
            status: r.status?,
            retry_after: r.retry_after.as_ref().map(|v| v.header_value()),
            body: r.body.clone(),
        },
        FaultKind::Drop => Action::Drop {
            after_processing: r.after_processing,
        },
        FaultKind::Slow => Action::Slow {
            delay: r.delay?,
            after_processing: r.after_processing,
        },
        FaultKind::Malformed => Action::Malformed {
            body: r.body.clone(),
        },
        FaultKind::TruncatedBody => Action::BrokenBody(BodyShape::Truncated),
        FaultKind::StalledBody => Action::BrokenBody(BodyShape::Stalled(r.delay?)),
        FaultKind::WrongLength => Action::BrokenBody(BodyShape::WrongLength),
        FaultKind::RedirectError => {
            let error = AuthorizeError::parse(r.error.as_deref().unwrap_or("server_error"))?;
            Action::RedirectError {
                error,
                description: r
                    .error_description
                    .clone()
                    .unwrap_or_else(|| error.description().to_owned()),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Scenario;

    fn engine(toml: &str) -> FaultEngine {
        let s = Scenario::from_toml_str(toml).unwrap();
        FaultEngine::new(&s.faults, s.seed)
    }

    fn token(hint: &str, code_id: u64) -> Subject<'_> {
        Subject {
            endpoint: SimEndpoint::Token,
            login_hint: Some(hint),
            code_id: Some(code_id),
        }
    }

    #[test]
    fn first_heals_overall() {
        let e = engine("[[faults]]\nendpoint = \"token\"\nstatus = 500\nfirst = 2");
        assert!(e.pick(token("1", 1)).is_some());
        assert!(e.pick(token("1", 2)).is_some());
        assert_eq!(e.pick(token("1", 3)), None);
    }

    #[test]
    fn first_counts_per_code() {
        let e = engine(
            "[[faults]]\nendpoint = \"token\"\nstatus = 503\nretry_after = \"2\"\nfirst = 1\nper_code = true",
        );
        let expected = Action::Status {
            status: 503,
            retry_after: Some("2".into()),
            body: None,
        };
        assert_eq!(e.pick(token("1", 1)), Some(expected.clone()));
        assert_eq!(e.pick(token("1", 1)), None);
        assert_eq!(e.pick(token("1", 2)), Some(expected));
        assert_eq!(e.pick(token("1", 2)), None);
    }

    #[test]
    fn login_hints_filter_and_endpoint_must_match() {
        let e = engine(
            "[[faults]]\nendpoint = \"token\"\nstatus = 403\nlogin_hints = [\"+381111111111\"]",
        );
        assert!(e.pick(token("381111111111", 1)).is_some());
        assert_eq!(e.pick(token("381222222222", 2)), None);
        let unknown = Subject {
            login_hint: None,
            ..token("", 3)
        };
        assert_eq!(e.pick(unknown), None);
        let ui = Subject {
            endpoint: SimEndpoint::Userinfo,
            ..token("381111111111", 1)
        };
        assert_eq!(e.pick(ui), None);
    }

    #[test]
    fn later_rules_apply_when_earlier_ones_heal() {
        let e = engine(
            "[[faults]]\nendpoint = \"token\"\nstatus = 500\nfirst = 1\n\
             [[faults]]\nendpoint = \"token\"\nkind = \"drop\"\nafter_processing = true",
        );
        assert!(matches!(e.pick(token("1", 1)), Some(Action::Status { .. })));
        assert_eq!(
            e.pick(token("1", 1)),
            Some(Action::Drop {
                after_processing: true
            })
        );
    }

    #[test]
    fn rate_is_seeded_and_roughly_right() {
        let text = "seed = 42\n[[faults]]\nendpoint = \"token\"\nstatus = 500\nrate = 0.3";
        let run = || {
            let e = engine(text);
            (0..1000)
                .map(|i| e.pick(token("1", i)).is_some())
                .collect::<Vec<_>>()
        };
        let a = run();
        assert_eq!(a, run(), "same seed, same choices");
        let hits = a.iter().filter(|x| **x).count();
        assert!((200..400).contains(&hits), "{hits} of 1000 at rate 0.3");
    }

    #[test]
    fn signal_rules_select_and_count_per_number() {
        let e = engine(
            "[[faults]]\nendpoint = \"sim_swap_check\"\nstatus = 503\nfirst = 1\nper_code = true\n\
             login_hints = [\"4915100000001\", \"+4915100000002\"]",
        );
        let ask = |number| Subject {
            endpoint: SimEndpoint::SimSwapCheck,
            login_hint: Some(number),
            code_id: None,
        };
        let other = Subject {
            endpoint: SimEndpoint::DeviceSwapCheck,
            ..ask("4915100000002")
        };
        assert_eq!(e.pick(other), None, "another signal endpoint");
        assert!(e.pick(ask("4915100000001")).is_some());
        assert_eq!(e.pick(ask("4915100000001")), None, "healed for this number");
        assert!(e.pick(ask("4915100000002")).is_some(), "counted per number");
        assert_eq!(e.pick(ask("4915100000003")), None, "not listed");
    }

    #[test]
    fn broken_body_kinds_select_their_shape() {
        let e = engine(
            "[[faults]]\nendpoint = \"token\"\nkind = \"truncated_body\"\nlogin_hints = [\"1\"]\n\
             [[faults]]\nendpoint = \"token\"\nkind = \"stalled_body\"\ndelay = \"3s\"\nlogin_hints = [\"2\"]\n\
             [[faults]]\nendpoint = \"token\"\nkind = \"wrong_length\"",
        );
        let stalled = BodyShape::Stalled(Duration::from_secs(3));
        for (hint, shape) in [
            ("1", BodyShape::Truncated),
            ("2", stalled),
            ("3", BodyShape::WrongLength),
        ] {
            assert_eq!(e.pick(token(hint, 1)), Some(Action::BrokenBody(shape)));
        }
    }

    #[test]
    fn redirect_error_defaults_to_server_error() {
        let e = engine("[[faults]]\nendpoint = \"authorize\"\nkind = \"redirect_error\"");
        let s = Subject {
            endpoint: SimEndpoint::Authorize,
            login_hint: Some("1"),
            code_id: None,
        };
        assert_eq!(
            e.pick(s),
            Some(Action::RedirectError {
                error: AuthorizeError::ServerError,
                description: "Unexpected server error".into()
            })
        );
    }
}
