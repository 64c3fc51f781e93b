//! The simulator's shared state: the active scenario, issued codes and tokens (sharded maps,
//! locked briefly and never across an await), its clock and its counters.

use crate::endpoint::SimEndpoint;
use crate::faults::FaultEngine;
use crate::limiter::TokenBucket;
use crate::network_signals::profile::SignalBook;
use crate::scenario::{Scenario, SimClient};
use crate::stats::StatsRecorder;
use rand::distr::{Alphanumeric, SampleString};
use std::collections::hash_map::RandomState;
use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

/// How long a used or expired code is remembered, so a late second use still counts as reused.
const CODE_GRACE: Duration = Duration::from_secs(60);
const SHARDS: usize = 32;
/// About 30 years: the furthest ahead [`SimClock::now`] goes, whatever the offset, and still an
/// instant every platform's monotonic clock can represent.
const FAR_FUTURE: Duration = Duration::from_secs(86_400 * 365 * 30);

/// `d` from now on the standard clock, saturating at [`FAR_FUTURE`] instead of overflowing.
fn from_now_saturating(d: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(d.min(FAR_FUTURE))
        .or_else(|| now.checked_add(Duration::from_secs(86_400)))
        .unwrap_or(now)
}

/// Real monotonic time plus an offset tests can advance, so expiry needs no sleeping.
pub(crate) struct SimClock {
    offset_ns: AtomicU64,
}

impl SimClock {
    fn new() -> Self {
        SimClock {
            offset_ns: AtomicU64::new(0),
        }
    }

    /// The simulator's now.
    pub(crate) fn now(&self) -> Instant {
        from_now_saturating(Duration::from_nanos(self.offset_ns.load(Relaxed)))
    }

    /// The simulator's wall-clock now (real time plus the same offset), for dates in answers.
    pub(crate) fn wall_now(&self) -> SystemTime {
        SystemTime::now() + Duration::from_nanos(self.offset_ns.load(Relaxed))
    }

    /// Moves the simulator's now forward by `d`.
    pub(crate) fn advance(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.offset_ns.fetch_add(ns, Relaxed);
    }
}

/// A string-keyed map split into independently locked shards.
pub(crate) struct Sharded<V> {
    shards: Box<[Mutex<HashMap<String, V>>]>,
    hasher: RandomState,
}

impl<V> Sharded<V> {
    fn new() -> Self {
        Sharded {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
        }
    }

    /// Runs `f` on the shard holding `key`, with its lock held only for `f`.
    pub(crate) fn with<R>(&self, key: &str, f: impl FnOnce(&mut HashMap<String, V>) -> R) -> R {
        let i = (self.hasher.hash_one(key) as usize) % self.shards.len();
        let mut g = self.shards[i].lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g)
    }

    fn retain(&self, mut keep: impl FnMut(&V) -> bool) {
        for s in self.shards.iter() {
            s.lock()
                .unwrap_or_else(|p| p.into_inner())
                .retain(|_, v| keep(v));
        }
    }

    /// Entries in all shards.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
    }
}

/// What authorize bound a code to.
#[derive(Debug, Clone)]
pub(crate) struct CodeGrant {
    /// A serial number, used to count `per_code` faults without keeping the code itself around.
    pub id: u64,
    pub client_id: Arc<str>,
    pub redirect_uri: Arc<str>,
    pub login_hint: Arc<str>,
    pub expires_at: Instant,
}

struct CodeEntry {
    grant: CodeGrant,
    used: bool,
}

/// What a token request found when it presented a code.
pub(crate) enum Presented {
    /// Never issued, or forgotten after expiry.
    Unknown,
    /// Already presented by an earlier token request.
    Reused,
    /// First presentation; the code is now used.
    Fresh(CodeGrant),
}

/// What an access token stands for.
#[derive(Debug, Clone)]
pub(crate) struct IssuedToken {
    pub login_hint: Arc<str>,
    pub code_id: u64,
    pub expires_at: Instant,
}

/// A scenario compiled for serving.
pub(crate) struct Active {
    pub scenario: Scenario,
    pub clients: HashMap<String, SimClient>,
    pub api_keys: HashSet<String>,
    /// Keys answered 403 `permission_denied` (the scenario's `forbidden_api_keys`).
    pub forbidden_api_keys: HashSet<String>,
    pub faults: FaultEngine,
    pub limiter: Option<(TokenBucket, Vec<SimEndpoint>)>,
    /// The `[signals]` rules, compiled.
    pub signals: SignalBook,
    /// When the scenario took effect on the simulator's clock: swap ages count from here.
    pub since: Instant,
}

impl Active {
    fn new(scenario: Scenario, now: Instant) -> Self {
        Active {
            clients: scenario
                .clients
                .iter()
                .map(|c| (c.client_id.clone(), c.clone()))
                .collect(),
            api_keys: scenario.api_keys.iter().cloned().collect(),
            forbidden_api_keys: scenario.forbidden_api_keys.iter().cloned().collect(),
            faults: FaultEngine::new(&scenario.faults, scenario.seed),
            limiter: scenario.rate_limit.as_ref().map(|rl| {
                (
                    TokenBucket::new(rl.requests_per_second, rl.burst, now),
                    rl.endpoints.clone(),
                )
            }),
            signals: SignalBook::new(&scenario.signals),
            since: now,
            scenario,
        }
    }

    /// The number the network sees for the device that claimed `login_hint`.
    pub(crate) fn network_number<'a>(&'a self, login_hint: &'a str) -> &'a str {
        self.scenario
            .devices
            .get(login_hint)
            .map_or(login_hint, String::as_str)
    }
}

/// Everything the handlers share.
pub(crate) struct SimState {
    active: RwLock<Arc<Active>>,
    codes: Sharded<CodeEntry>,
    tokens: Sharded<IssuedToken>,
    next_code_id: AtomicU64,
    pub stats: StatsRecorder,
    pub clock: SimClock,
}

/// A random URL-safe string of `len` characters.
pub(crate) fn random_string(len: usize) -> String {
    Alphanumeric.sample_string(&mut rand::rng(), len)
}

impl SimState {
    pub(crate) fn new(scenario: Scenario) -> Self {
        let clock = SimClock::new();
        SimState {
            active: RwLock::new(Arc::new(Active::new(scenario, clock.now()))),
            codes: Sharded::new(),
            tokens: Sharded::new(),
            next_code_id: AtomicU64::new(1),
            stats: StatsRecorder::new(),
            clock,
        }
    }

    /// The scenario in force (cheap: one Arc clone under a read lock).
    pub(crate) fn active(&self) -> Arc<Active> {
        self.active
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replaces the scenario; fault counters and the rate limit start afresh, codes and tokens stay.
    pub(crate) fn set_scenario(&self, s: Scenario) {
        let next = Arc::new(Active::new(s, self.clock.now()));
        *self.active.write().unwrap_or_else(|p| p.into_inner()) = next;
    }

    /// Issues a code bound to the client, number and redirect_uri (valid for `code_ttl`).
    pub(crate) fn mint_code(
        &self,
        client_id: &str,
        login_hint: &str,
        redirect_uri: &str,
    ) -> String {
        let ttl = self.active().scenario.code_ttl;
        let code = random_string(43);
        let grant = CodeGrant {
            id: self.next_code_id.fetch_add(1, Relaxed),
            client_id: client_id.into(),
            redirect_uri: redirect_uri.into(),
            login_hint: login_hint.into(),
            expires_at: self.clock.now() + ttl,
        };
        self.codes.with(&code, |m| {
            m.insert(code.clone(), CodeEntry { grant, used: false })
        });
        self.stats.codes_issued.fetch_add(1, Relaxed);
        code
    }

    /// The grant behind `code` without using it (for fault filters).
    pub(crate) fn peek_code(&self, code: &str) -> Option<CodeGrant> {
        self.codes
            .with(code, |m| m.get(code).map(|e| e.grant.clone()))
    }

    /// Presents `code`: marks it used and says whether it was fresh (counts reuse).
    pub(crate) fn present_code(&self, code: &str) -> Presented {
        let p = self.codes.with(code, |m| match m.get_mut(code) {
            None => Presented::Unknown,
            Some(e) if e.used => Presented::Reused,
            Some(e) => {
                e.used = true;
                Presented::Fresh(e.grant.clone())
            }
        });
        if matches!(p, Presented::Reused) {
            self.stats.codes_reused.fetch_add(1, Relaxed);
        }
        p
    }

    /// Issues an access token for a code's number, valid for `ttl`.
    pub(crate) fn issue_token(&self, grant: &CodeGrant, ttl: Duration) -> String {
        let token = random_string(64);
        let t = IssuedToken {
            login_hint: grant.login_hint.clone(),
            code_id: grant.id,
            expires_at: self.clock.now() + ttl,
        };
        self.tokens.with(&token, |m| m.insert(token.clone(), t));
        self.stats.tokens_issued.fetch_add(1, Relaxed);
        token
    }

    /// The grant behind a live access token.
    pub(crate) fn lookup_token(&self, token: &str) -> Option<IssuedToken> {
        let now = self.clock.now();
        self.tokens
            .with(token, |m| m.get(token).cloned())
            .filter(|t| t.expires_at > now)
    }

    /// Forgets expired tokens, and codes past expiry plus a grace period.
    pub(crate) fn sweep(&self) {
        let now = self.clock.now();
        self.codes.retain(|e| e.grant.expires_at + CODE_GRACE > now);
        self.tokens.retain(|t| t.expires_at > now);
    }

    /// Codes and tokens currently remembered.
    #[cfg(test)]
    pub(crate) fn remembered(&self) -> (usize, usize) {
        (self.codes.len(), self.tokens.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_single_use_and_reuse_is_counted() {
        let s = SimState::new(Scenario::default());
        let code = s.mint_code("client", "381", "https://cb.example/");
        assert!(code.len() >= 32);
        assert!(code.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_eq!(s.peek_code(&code).unwrap().login_hint.as_ref(), "381");
        assert!(matches!(s.present_code(&code), Presented::Fresh(_)));
        assert!(matches!(s.present_code(&code), Presented::Reused));
        assert!(matches!(s.present_code("nope"), Presented::Unknown));
        assert_eq!(s.stats.snapshot().codes_reused, 1);
        assert_eq!(s.stats.snapshot().codes_issued, 1);
    }

    #[test]
    fn sweep_forgets_expired_codes_and_tokens() {
        let s = SimState::new(Scenario::default());
        let code = s.mint_code("client", "381", "https://cb.example/");
        let Presented::Fresh(grant) = s.present_code(&code) else {
            panic!("fresh code")
        };
        let token = s.issue_token(&grant, Duration::from_secs(10));
        assert!(s.lookup_token(&token).is_some());
        s.clock.advance(Duration::from_secs(11));
        assert!(s.lookup_token(&token).is_none());
        s.sweep();
        assert_eq!(s.remembered(), (1, 0));
        s.clock.advance(Duration::from_secs(600) + CODE_GRACE);
        s.sweep();
        assert_eq!(s.remembered(), (0, 0));
    }

    #[test]
    fn a_huge_clock_offset_saturates_instead_of_panicking() {
        let clock = SimClock::new();
        clock.advance(Duration::MAX);
        let far = clock.now();
        assert!(far > Instant::now() + Duration::from_secs(86_400 * 365));
        assert!(far <= Instant::now() + FAR_FUTURE);
    }

    #[test]
    fn devices_map_the_network_number() {
        let s = SimState::new(
            Scenario::from_toml_str("[devices]\n\"381111111111\" = \"381999999999\"").unwrap(),
        );
        let a = s.active();
        assert_eq!(a.network_number("381111111111"), "381999999999");
        assert_eq!(a.network_number("381222222222"), "381222222222");
    }
}
