//! The kinds of job the demo generates: what each exercises, the simulator fault rule behind
//! it, and the outcome docs/contract.md prescribes for it (status, class, HTTP attempts, dead letter).

use crate::contract::{ErrorClass, Status};
use crate::simulator::{FaultKind, FaultRule, SimEndpoint};

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
}

impl Kind {
    /// Every kind; its position is also its number range.
    pub const ALL: [Kind; 22] = [
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
        };
        Expected {
            result: Some(ExpectedResult {
                status,
                class,
                attempts,
            }),
            dead_letter: class.filter(|c| c.dead_lettered()),
            copies: if self == Kind::Redelivered { 2 } else { 1 },
        }
    }

    /// The number range of this kind: `381` + two digits.
    pub(super) fn range(self) -> usize {
        Kind::ALL.iter().position(|k| *k == self).unwrap_or(0)
    }

    /// Kinds whose jobs share a small pool of numbers named by a fault rule.
    pub(super) fn pooled(self) -> bool {
        self.fault().is_some()
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
}
