//! The kinds of job the demo generates: what each exercises, the simulator fault rule behind
//! it, and the outcome docs/contract.md prescribes for it (status, class, HTTP attempts, dead letter).

use silentauth_simulator::{FaultKind, FaultRule, SignalRule, SimEndpoint};
use silentauth_worker::contract::{ErrorClass, Status};
use std::time::Duration;

/// What a job is made to exercise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// A clean verification.
    Verified,
    /// The device is another number: `phone_number_verified = "false"`.
    NotVerified,
    /// The authorize redirect carried a B.1 `error`.
    AuthorizeError,
    /// `issued_at` is older than `worker.code_ttl`.
    Expired,
    /// The code was issued for another number.
    Mismatch,
    /// A code the API never issued.
    UnknownCode,
    /// Token drops the connection after using the code; the retry gets 400.
    AmbiguousToken,
    /// Token answers 503 once per code, then heals.
    Token503Once,
    /// Token answers 500 twice per code, then heals.
    Token500Twice,
    /// Token drops the connection once per code before using it, then heals.
    TokenDropOnce,
    /// Userinfo answers 502 once per token, then heals.
    Userinfo502Once,
    /// Userinfo answers 429 once per token, then heals.
    Userinfo429Once,
    /// Token answers 403 `permission_denied` for these numbers.
    Forbidden,
    /// Token answers 500 for these numbers, always (an operator outage).
    Outage,
    /// The job names a profile whose client secret was rotated upstream.
    StaleCredentials,
    /// Userinfo answers 200 with a body that is not JSON.
    Malformed,
    /// Published twice (a redelivery): the second copy is answered from the idempotency cache.
    Redelivered,
    /// Not JSON at all.
    PoisonNotJson,
    /// Not UTF-8.
    PoisonNotUtf8,
    /// JSON, but not an object.
    PoisonWrongShape,
    /// An object with a readable `job_id` but no `login_hint`.
    PoisonMissingField,
    /// A valid job naming a credentials profile the worker does not have.
    PoisonUnknownClient,
    /// Verification plus all three network signals on a number whose SIM and device were just
    /// swapped and whose calls are forwarded.
    SignalsRisky,
    /// Verification plus all three signals on a number with nothing to report.
    SignalsQuiet,
    /// Only signals (SIM swap and call forwarding), no code: `signals_only`.
    SignalsOnly,
    /// Verification plus all three signals on a number the operator has no data for (404).
    SignalsUnknown,
    /// Verification plus call forwarding, whose endpoint answers 503 for these numbers.
    SignalFailing,
}

impl Kind {
    /// Every kind; its position is also its number range.
    pub const ALL: [Kind; 27] = [
        Kind::Verified,
        Kind::NotVerified,
        Kind::AuthorizeError,
        Kind::Expired,
        Kind::Mismatch,
        Kind::UnknownCode,
        Kind::AmbiguousToken,
        Kind::Token503Once,
        Kind::Token500Twice,
        Kind::TokenDropOnce,
        Kind::Userinfo502Once,
        Kind::Userinfo429Once,
        Kind::Forbidden,
        Kind::Outage,
        Kind::StaleCredentials,
        Kind::Malformed,
        Kind::Redelivered,
        Kind::PoisonNotJson,
        Kind::PoisonNotUtf8,
        Kind::PoisonWrongShape,
        Kind::PoisonMissingField,
        Kind::PoisonUnknownClient,
        Kind::SignalsRisky,
        Kind::SignalsQuiet,
        Kind::SignalsOnly,
        Kind::SignalsUnknown,
        Kind::SignalFailing,
    ];

    /// Share of the jobs, per 10,000 (verified jobs take the rest).
    pub(super) fn weight(self) -> usize {
        match self {
            Kind::Verified => 0,
            Kind::NotVerified => 1000,
            Kind::AuthorizeError => 120,
            Kind::Expired => 80,
            Kind::Mismatch => 80,
            Kind::Outage => 80,
            Kind::Forbidden => 40,
            Kind::UnknownCode
            | Kind::Token503Once
            | Kind::Token500Twice
            | Kind::TokenDropOnce
            | Kind::Userinfo502Once
            | Kind::Userinfo429Once
            | Kind::Redelivered => 30,
            Kind::AmbiguousToken | Kind::StaleCredentials | Kind::Malformed => 15,
            Kind::PoisonNotJson
            | Kind::PoisonNotUtf8
            | Kind::PoisonWrongShape
            | Kind::PoisonMissingField
            | Kind::PoisonUnknownClient => 4,
            Kind::SignalsRisky | Kind::SignalsQuiet | Kind::SignalsOnly => 60,
            Kind::SignalsUnknown | Kind::SignalFailing => 30,
        }
    }

    /// A short description for the summary.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Verified => "verified",
            Kind::NotVerified => "device is another number",
            Kind::AuthorizeError => "authorize redirect error",
            Kind::Expired => "issued_at older than code_ttl",
            Kind::Mismatch => "code issued for another number",
            Kind::UnknownCode => "code never issued",
            Kind::AmbiguousToken => "token reset after using the code",
            Kind::Token503Once => "token 503 once, then heals",
            Kind::Token500Twice => "token 500 twice, then heals",
            Kind::TokenDropOnce => "token connection drop once",
            Kind::Userinfo502Once => "userinfo 502 once, then heals",
            Kind::Userinfo429Once => "userinfo 429 once, then heals",
            Kind::Forbidden => "token 403 permission_denied",
            Kind::Outage => "outage: token 500 always",
            Kind::StaleCredentials => "rotated client secret",
            Kind::Malformed => "userinfo body not JSON",
            Kind::Redelivered => "redelivered (published twice)",
            Kind::PoisonNotJson => "poison: not JSON",
            Kind::PoisonNotUtf8 => "poison: not UTF-8",
            Kind::PoisonWrongShape => "poison: JSON array",
            Kind::PoisonMissingField => "poison: no login_hint",
            Kind::PoisonUnknownClient => "poison: unknown client",
            Kind::SignalsRisky => "signals: swapped, forwarded",
            Kind::SignalsQuiet => "signals: nothing to report",
            Kind::SignalsOnly => "signals only, no code",
            Kind::SignalsUnknown => "signals: operator has no data",
            Kind::SignalFailing => "signals: forwarding check 503",
        }
    }

    /// The outcome the contract prescribes; `max_attempts` is `retry.max_attempts`.
    pub fn expected(self, max_attempts: u32) -> Expected {
        use ErrorClass as C;
        let (status, class, attempts) = match self {
            Kind::Verified | Kind::Redelivered => (Status::Verified, None, 2),
            Kind::NotVerified => (Status::NotVerified, None, 2),
            Kind::AuthorizeError => (Status::Failed, Some(C::AuthorizeRejected), 0),
            Kind::Expired => (Status::Failed, Some(C::Expired), 0),
            Kind::Mismatch => (Status::NotVerified, Some(C::LoginHintMismatch), 2),
            Kind::UnknownCode => (Status::Failed, Some(C::CodeRejected), 1),
            Kind::AmbiguousToken => (Status::Failed, Some(C::CodeRejected), 2),
            Kind::Token503Once
            | Kind::TokenDropOnce
            | Kind::Userinfo502Once
            | Kind::Userinfo429Once => (Status::Verified, None, 3),
            Kind::Token500Twice => (Status::Verified, None, 4),
            Kind::Forbidden => (Status::Failed, Some(C::PermissionDenied), 1),
            Kind::Outage => (Status::Failed, Some(C::UpstreamUnavailable), max_attempts),
            Kind::StaleCredentials => (Status::Failed, Some(C::CredentialsRejected), 1),
            Kind::Malformed => (Status::Failed, Some(C::ProtocolError), 2),
            Kind::PoisonNotJson | Kind::PoisonNotUtf8 | Kind::PoisonWrongShape => {
                return Expected {
                    result: None,
                    dead_letter: Some(C::InvalidJob),
                    copies: 1,
                }
            }
            Kind::PoisonMissingField | Kind::PoisonUnknownClient => {
                (Status::Failed, Some(C::InvalidJob), 0)
            }
            // token + userinfo, two swap checks with their dates, forwarding.
            Kind::SignalsRisky => (Status::Verified, None, 7),
            Kind::SignalsQuiet | Kind::SignalsUnknown => (Status::Verified, None, 5),
            Kind::SignalsOnly => (Status::SignalsOnly, None, 3),
            Kind::SignalFailing => (Status::Verified, None, 2 + max_attempts),
        };
        Expected {
            result: Some(ExpectedResult {
                status,
                class,
                attempts,
                signals: self.expected_signals(),
            }),
            dead_letter: class.filter(|c| c.dead_lettered()),
            copies: if self == Kind::Redelivered { 2 } else { 1 },
        }
    }

    /// The number range of this kind: `381` + two digits.
    pub(super) fn range(self) -> usize {
        Kind::ALL.iter().position(|k| *k == self).unwrap_or(0)
    }

    /// Kinds whose jobs share a small pool of numbers named by a fault or signals rule.
    pub(super) fn pooled(self) -> bool {
        self.fault().is_some() || self.signal_rule().is_some()
    }

    /// The `signals` the job asks for, as JSON.
    pub(super) fn signals_request(self) -> Option<serde_json::Value> {
        use serde_json::json;
        match self {
            Kind::SignalsRisky | Kind::SignalsQuiet | Kind::SignalsUnknown => Some(json!({
                "sim_swap": {"max_age_minutes": 240},
                "device_swap": {"max_age_minutes": 1440},
                "call_forwarding": {},
            })),
            Kind::SignalsOnly => Some(json!({"sim_swap": {}, "call_forwarding": {}})),
            Kind::SignalFailing => Some(json!({"call_forwarding": {}})),
            _ => None,
        }
    }

    /// The expected signals of the result, in the form of [`signals_summary`].
    ///
    /// [`signals_summary`]: super::report::signals_summary
    fn expected_signals(self) -> Option<&'static str> {
        Some(match self {
            Kind::SignalsRisky => {
                "sim_swap=swapped device_swap=swapped call_forwarding=active \
                 flags=recent_sim_swap,recent_device_swap,call_forwarding_active"
            }
            Kind::SignalsQuiet => {
                "sim_swap=not_swapped device_swap=not_swapped call_forwarding=inactive flags="
            }
            Kind::SignalsUnknown => {
                "sim_swap=inconclusive device_swap=inconclusive \
                 call_forwarding=inconclusive \
                 flags=sim_swap_unchecked,device_swap_unchecked,call_forwarding_unchecked"
            }
            Kind::SignalsOnly => "sim_swap=swapped call_forwarding=inactive flags=recent_sim_swap",
            Kind::SignalFailing => {
                "call_forwarding=failed/upstream_unavailable flags=call_forwarding_unchecked"
            }
            _ => return None,
        })
    }

    /// The simulator's signals rule for this kind's numbers (without its `numbers`).
    pub(super) fn signal_rule(self) -> Option<SignalRule> {
        let minutes = |m: u64| Some(Duration::from_secs(60 * m));
        Some(match self {
            Kind::SignalsRisky => SignalRule {
                sim_swap_age: minutes(30),
                device_swap_age: minutes(600),
                call_forwarding: true,
                ..SignalRule::default()
            },
            Kind::SignalsOnly => SignalRule {
                sim_swap_age: minutes(45),
                ..SignalRule::default()
            },
            Kind::SignalsUnknown => SignalRule {
                unknown: true,
                ..SignalRule::default()
            },
            _ => return None,
        })
    }

    /// The simulator fault rule behind this kind (without its `login_hints`).
    pub(super) fn fault(self) -> Option<FaultRule> {
        let status = |endpoint, status, first: Option<u64>| FaultRule {
            endpoint: Some(endpoint),
            status: Some(status),
            first,
            per_code: first.is_some(),
            ..FaultRule::default()
        };
        let drop = |after_processing| FaultRule {
            endpoint: Some(SimEndpoint::Token),
            kind: Some(FaultKind::Drop),
            after_processing,
            first: Some(1),
            per_code: true,
            ..FaultRule::default()
        };
        Some(match self {
            Kind::Forbidden => status(SimEndpoint::Token, 403, None),
            Kind::Outage => status(SimEndpoint::Token, 500, None),
            Kind::Token503Once => status(SimEndpoint::Token, 503, Some(1)),
            Kind::Token500Twice => status(SimEndpoint::Token, 500, Some(2)),
            Kind::TokenDropOnce => drop(false),
            Kind::AmbiguousToken => drop(true),
            Kind::Userinfo502Once => status(SimEndpoint::Userinfo, 502, Some(1)),
            Kind::Userinfo429Once => status(SimEndpoint::Userinfo, 429, Some(1)),
            Kind::Malformed => FaultRule {
                endpoint: Some(SimEndpoint::Userinfo),
                kind: Some(FaultKind::Malformed),
                ..FaultRule::default()
            },
            Kind::SignalFailing => status(SimEndpoint::CallForwardingCheck, 503, None),
            _ => return None,
        })
    }
}

/// What a job must produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expected {
    /// The result of every copy; `None` when the `job_id` cannot be read (dead letter only).
    pub result: Option<ExpectedResult>,
    /// The class of the one dead letter, when one is due.
    pub dead_letter: Option<ErrorClass>,
    /// Records published for the job (2 for a redelivery: one result each, the second a
    /// duplicate).
    pub copies: u32,
}

/// The fields of a result the demo checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpectedResult {
    /// `status`.
    pub status: Status,
    /// `error.class`.
    pub class: Option<ErrorClass>,
    /// `attempts` (HTTP requests).
    pub attempts: u32,
    /// The network signals and risk flags, for jobs that ask for them.
    pub signals: Option<&'static str>,
}
