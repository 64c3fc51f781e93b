//! The demo's workload: a seeded mix of jobs (see [`Kind`]), their payloads with freshly minted
//! codes, and the simulator scenario (devices and fault rules) that makes each job end as its
//! kind expects.
//!
//! Every kind of job gets its own range of phone numbers (`381` + a two-digit kind + seven
//! digits), so a fault rule that names a kind's numbers touches no other kind.

pub use super::kind::Kind;
use chrono::{SecondsFormat, Utc};
use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use silentauth_simulator::{Scenario, SignalsConfig, SimHandle};
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
        let pools = number_pools(&mut rng);
        let mut scenario = scenario(seed, &pools);
        let jobs = kinds
            .into_iter()
            .map(|kind| job(kind, &pools, &mut rng, &mut scenario))
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

/// Per kind (by its range), the numbers its jobs draw from: [`POOL`] of them for a pooled kind
/// (its fault or signal rule names them), none for the others.
fn number_pools(rng: &mut StdRng) -> Vec<Vec<String>> {
    Kind::ALL
        .iter()
        .map(|k| {
            if k.pooled() {
                (0..POOL).map(|_| number(rng, k.range())).collect()
            } else {
                Vec::new()
            }
        })
        .collect()
}

/// The simulator scenario: each kind's fault and signal rule, on its pool of numbers.
fn scenario(seed: u64, pools: &[Vec<String>]) -> Scenario {
    let mut scenario = Scenario {
        seed,
        ..Scenario::default()
    };
    let mut signal_rules = Vec::new();
    for kind in Kind::ALL {
        if let Some(mut rule) = kind.fault() {
            rule.login_hints = Some(pools[kind.range()].clone());
            scenario.faults.push(rule);
        }
        if let Some(mut rule) = kind.signal_rule() {
            rule.numbers = Some(pools[kind.range()].clone());
            signal_rules.push(rule);
        }
    }
    scenario.signals = SignalsConfig {
        rules: signal_rules,
    };
    scenario
}

/// One job of `kind`: its number from the kind's pool (or a fresh one), the device that
/// answers for it (a not-verified job's device is registered in `scenario` as another
/// number's), and its random fields.
fn job(kind: Kind, pools: &[Vec<String>], rng: &mut StdRng, scenario: &mut Scenario) -> JobSpec {
    let mismatch_devices = Kind::ALL.len();
    let login_hint = match pools[kind.range()].choose(rng) {
        Some(n) => n.clone(),
        None => number(rng, kind.range()),
    };
    let device = match kind {
        Kind::Mismatch => number(rng, mismatch_devices),
        Kind::NotVerified => {
            // The network sees this device as someone else's number.
            let other = number(rng, mismatch_devices + 1);
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
            .choose(rng)
            .copied()
            .unwrap_or("acme"),
        error: AUTHORIZE_ERRORS
            .choose(rng)
            .copied()
            .unwrap_or("server_error"),
        late_minutes: rng.random_range(1..=120),
        stamp_issued_at: rng.random_bool(0.5),
    }
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
        Kind::SignalsOnly => {
            if let Some(o) = job.as_object_mut() {
                o.remove("redirect_uri");
            }
        }
        _ => {
            job["code"] = json!(code());
            if j.stamp_issued_at {
                job["issued_at"] = json!(now_rfc3339(Duration::ZERO));
            }
        }
    }
    if let Some(signals) = j.kind.signals_request() {
        job["signals"] = signals;
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
            let fault = p
                .scenario
                .faults
                .iter()
                .find(|r| r.login_hints.as_ref().unwrap().contains(&j.device));
            assert_eq!(fault.is_some(), j.kind.fault().is_some(), "{:?}", j.kind);
            let signals = p
                .scenario
                .signals
                .rules
                .iter()
                .find(|r| r.numbers.as_ref().unwrap().contains(&j.login_hint));
            assert_eq!(
                signals.is_some(),
                j.kind.signal_rule().is_some(),
                "{:?}",
                j.kind
            );
        }
    }
}
