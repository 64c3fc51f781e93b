//! The demo's workload: a seeded mix of jobs, each with the outcome CONTRACT.md says it must end
//! in, and the simulator scenario (devices and fault rules) that produces those outcomes.
//!
//! Every kind of job gets its own range of phone numbers (`381` + a two-digit kind + seven
//! digits), so a fault rule that names a kind's numbers touches no other kind.

use crate::contract::{ErrorClass, Status};
use crate::simulator::{FaultKind, FaultRule, Scenario, SimEndpoint, SimHandle};
use chrono::{SecondsFormat, Utc};
use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::time::Duration;

/// The callback URL every demo job was issued for.
pub const REDIRECT_URI: &str = "https://client.example.com/callback";

/// The credentials profile whose secret the simulator refuses (`credentials_rejected`).
pub const STALE_PROFILE: &str = "legacy";

/// Numbers per fault pool: a fault hits a handful of numbers, as a real incident would.
const POOL: usize = 12;

/// The seed's B.1 authorize errors.
const AUTHORIZE_ERRORS: [&str; 6] = [
    "invalid_client_id_request",
    "missing_scope",
    "insufficient_scope",
    "unsupported_scope",
    "missing_login_hint",
    "server_error",
];

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
    fn weight(self) -> usize {
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
    fn range(self) -> usize {
        Kind::ALL.iter().position(|k| *k == self).unwrap_or(0)
    }

    /// Kinds whose jobs share a small pool of numbers named by a fault rule.
    fn pooled(self) -> bool {
        self.fault().is_some()
    }

    /// The simulator fault rule behind this kind (without its `login_hints`).
    fn fault(self) -> Option<FaultRule> {
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

/// One generated job before its code is minted.
#[derive(Debug, Clone)]
pub struct JobSpec {
    /// Also the record key.
    pub job_id: String,
    /// What it exercises.
    pub kind: Kind,
    /// The job's `login_hint`.
    pub login_hint: String,
    /// The number the code is minted for (differs for a mismatch).
    pub device: String,
    /// A W3C `traceparent` header, on some jobs.
    pub traceparent: Option<String>,
    state: String,
    tenant: &'static str,
    error: &'static str,
    /// Minutes past the code's TTL, for expired jobs.
    late_minutes: u64,
    stamp_issued_at: bool,
}

/// One record to publish.
#[derive(Debug, Clone)]
pub struct Record {
    /// The job's id (the key).
    pub key: String,
    /// The job bytes.
    pub payload: Vec<u8>,
    /// The `traceparent` header, if any.
    pub traceparent: Option<String>,
}

/// The whole workload.
#[derive(Debug)]
pub struct Plan {
    /// The jobs, in publishing order.
    pub jobs: Vec<JobSpec>,
    /// The simulator scenario that makes each job end as expected.
    pub scenario: Scenario,
}

impl Plan {
    /// `n` jobs from `seed`: the same seed gives the same jobs, numbers and faults.
    pub fn new(n: usize, seed: u64) -> Plan {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut kinds = Vec::with_capacity(n);
        for (kind, count) in counts(n) {
            kinds.extend(std::iter::repeat_n(kind, count));
        }
        kinds.shuffle(&mut rng);

        let pools: Vec<Vec<String>> = Kind::ALL
            .iter()
            .map(|k| {
                if k.pooled() {
                    (0..POOL).map(|_| number(&mut rng, k.range())).collect()
                } else {
                    Vec::new()
                }
            })
            .collect();
        let mut scenario = Scenario {
            seed,
            ..Scenario::default()
        };
        for kind in Kind::ALL {
            if let Some(mut rule) = kind.fault() {
                rule.login_hints = Some(pools[kind.range()].clone());
                scenario.faults.push(rule);
            }
        }

        let mismatch_devices = Kind::ALL.len();
        let jobs = kinds
            .into_iter()
            .map(|kind| {
                let login_hint = match pools[kind.range()].choose(&mut rng) {
                    Some(n) => n.clone(),
                    None => number(&mut rng, kind.range()),
                };
                let device = match kind {
                    Kind::Mismatch => number(&mut rng, mismatch_devices),
                    Kind::NotVerified => {
                        // The network sees this device as someone else's number.
                        let other = number(&mut rng, mismatch_devices + 1);
                        scenario.devices.insert(login_hint.clone(), other);
                        login_hint.clone()
                    }
                    _ => login_hint.clone(),
                };
                JobSpec {
                    job_id: uuid::Builder::from_random_bytes(rng.random())
                        .into_uuid()
                        .to_string(),
                    kind,
                    login_hint,
                    device,
                    traceparent: rng.random_bool(0.3).then(|| {
                        format!(
                            "00-{:032x}-{:016x}-01",
                            rng.random::<u128>(),
                            rng.random::<u64>() | 1
                        )
                    }),
                    state: format!("{:08x}", rng.random::<u32>()),
                    tenant: ["acme", "globex", "initech", "umbrella"]
                        .choose(&mut rng)
                        .copied()
                        .unwrap_or("acme"),
                    error: AUTHORIZE_ERRORS
                        .choose(&mut rng)
                        .copied()
                        .unwrap_or("server_error"),
                    late_minutes: rng.random_range(1..=120),
                    stamp_issued_at: rng.random_bool(0.5),
                }
            })
            .collect();
        Plan { jobs, scenario }
    }

    /// The records to publish: every job once, in order, then the second copy of each
    /// redelivered job. Codes are minted by `sim` now; `code_ttl` is `worker.code_ttl`.
    pub fn records(&self, sim: &SimHandle, code_ttl: Duration) -> Vec<Record> {
        let mut records: Vec<Record> = self
            .jobs
            .iter()
            .map(|j| Record {
                key: j.job_id.clone(),
                payload: payload(j, sim, code_ttl),
                traceparent: j.traceparent.clone(),
            })
            .collect();
        let again: Vec<Record> = self
            .jobs
            .iter()
            .zip(&records)
            .filter(|(j, _)| j.kind == Kind::Redelivered)
            .map(|(_, r)| r.clone())
            .collect();
        records.extend(again);
        records
    }
}

/// How many jobs of each kind: the weights, at least one of each when `n` is 100 or more,
/// verified jobs taking the rest.
fn counts(n: usize) -> Vec<(Kind, usize)> {
    let mut counts: Vec<(Kind, usize)> = Kind::ALL
        .iter()
        .skip(1)
        .map(|&k| {
            let c = n * k.weight() / 10_000;
            (k, if n >= 100 { c.max(1) } else { c })
        })
        .collect();
    while counts.iter().map(|(_, c)| c).sum::<usize>() > n {
        if let Some(max) = counts.iter_mut().max_by_key(|(_, c)| *c) {
            max.1 -= 1;
        }
    }
    let rest = n - counts.iter().map(|(_, c)| c).sum::<usize>();
    counts.insert(0, (Kind::Verified, rest));
    counts
}

/// A 12-digit MSISDN in range `range`: `381`, two digits, seven random digits.
fn number(rng: &mut StdRng, range: usize) -> String {
    format!(
        "381{:02}{:07}",
        range % 100,
        rng.random_range(0..10_000_000u32)
    )
}

fn now_rfc3339(ago: Duration) -> String {
    let at = Utc::now() - chrono::Duration::from_std(ago).unwrap_or_default();
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn payload(j: &JobSpec, sim: &SimHandle, code_ttl: Duration) -> Vec<u8> {
    let mut job = json!({
        "job_id": j.job_id,
        "login_hint": j.login_hint,
        "redirect_uri": REDIRECT_URI,
        "state": j.state,
        "attributes": {"tenant": j.tenant, "channel": "demo"},
    });
    let code = || sim.mint_code("client", &j.device, REDIRECT_URI);
    match j.kind {
        Kind::AuthorizeError => {
            job["error"] = json!(j.error);
            job["error_description"] = json!("the operator refused the authorize request");
        }
        Kind::Expired => {
            job["code"] = json!(code());
            let late = code_ttl + Duration::from_secs(60 * j.late_minutes);
            job["issued_at"] = json!(now_rfc3339(late));
        }
        Kind::UnknownCode => {
            job["code"] = json!(format!("never-issued-{}", j.state));
        }
        Kind::StaleCredentials => {
            job["code"] = json!(code());
            job["client"] = json!(STALE_PROFILE);
        }
        Kind::PoisonNotJson => return b"<html><body>502 Bad Gateway</body></html>".to_vec(),
        Kind::PoisonNotUtf8 => {
            // A Latin-1 encoded job: `é` as the single byte 0xE9.
            let mut bytes = format!("{{\"job_id\":\"{}\",\"state\":\"caf", j.job_id).into_bytes();
            bytes.push(0xE9);
            bytes.extend_from_slice(b"\"}");
            return bytes;
        }
        Kind::PoisonWrongShape => {
            let mut inner = job.clone();
            inner["code"] = json!(code());
            return Value::Array(vec![inner]).to_string().into_bytes();
        }
        Kind::PoisonMissingField => {
            job["code"] = json!(code());
            if let Some(o) = job.as_object_mut() {
                o.remove("login_hint");
            }
        }
        Kind::PoisonUnknownClient => {
            job["code"] = json!(code());
            job["client"] = json!("acme-eu");
        }
        _ => {
            job["code"] = json!(code());
            if j.stamp_issued_at {
                job["issued_at"] = json!(now_rfc3339(Duration::ZERO));
            }
        }
    }
    job.to_string().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_add_up_and_cover_every_kind() {
        for n in [0, 1, 10, 99, 100, 300, 2_000, 20_000] {
            let c = counts(n);
            assert_eq!(c.iter().map(|(_, c)| c).sum::<usize>(), n, "{n}");
            if n >= 100 {
                assert!(c.iter().all(|(_, c)| *c >= 1), "{n}: {c:?}");
            }
        }
        let c = counts(10_000);
        let verified = c.iter().find(|(k, _)| *k == Kind::Verified).unwrap().1;
        assert!((7_500..8_500).contains(&verified), "{verified}");
    }

    #[test]
    fn the_same_seed_gives_the_same_plan() {
        let a = Plan::new(500, 7);
        let b = Plan::new(500, 7);
        assert_eq!(a.scenario, b.scenario);
        let ids = |p: &Plan| p.jobs.iter().map(|j| j.job_id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&a), ids(&b));
        assert_ne!(ids(&a), ids(&Plan::new(500, 8)));
        a.scenario.validate().unwrap();
    }

    #[test]
    fn fault_pools_hold_only_their_own_kind() {
        let p = Plan::new(2_000, 1);
        for j in &p.jobs {
            let rule = p
                .scenario
                .faults
                .iter()
                .find(|r| r.login_hints.as_ref().unwrap().contains(&j.device));
            assert_eq!(rule.is_some(), j.kind.pooled(), "{:?}", j.kind);
        }
    }
}
