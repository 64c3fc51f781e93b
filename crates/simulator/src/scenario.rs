//! The simulator's scenario: credentials, devices, network signals, latency, fault rules and its
//! own rate limit (TOML).

use crate::endpoint::SimEndpoint;
use crate::error::ScenarioError;
use crate::fault_rule::FaultRule;
use crate::network_signals::profile::SignalsConfig;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// Everything that shapes how the simulator answers; `Scenario::default()` is "no file":
/// the seed's example credentials, every device verified, no latency, no faults, no rate limit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Scenario {
    /// OAuth clients accepted at authorize and token (default: the seed's `client` / `12345`).
    pub clients: Vec<SimClient>,
    /// Values accepted in the token request's `apiKey` header (default `["sim-api-key"]`).
    pub api_keys: Vec<String>,
    /// `apiKey` values the gateway knows but that lack the permission: the token and Network
    /// Signals endpoints answer 403 `permission_denied` to them (once the client credentials
    /// are accepted, at token). Default none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub forbidden_api_keys: Vec<String>,
    /// How long an authorization code can be exchanged after authorize (default 600s).
    #[serde(with = "humantime_serde")]
    pub code_ttl: Duration,
    /// How long an access token is accepted at userinfo; also reported as `expires_in`
    /// (default 86399s, as in the seed's A.2).
    #[serde(with = "humantime_serde")]
    pub token_ttl: Duration,
    /// login_hint -> the number the network sees for that device. A device not listed is seen
    /// as its own login_hint (verified); a different number makes userinfo answer `"false"`.
    pub devices: BTreeMap<String, String>,
    /// What the Network Signals endpoints report per number (default: no swap, no forwarding).
    #[serde(skip_serializing_if = "SignalsConfig::is_empty")]
    pub signals: SignalsConfig,
    /// Added response latency.
    pub latency: LatencyConfig,
    /// Fault rules, tried in order; the first one that selects a request applies.
    pub faults: Vec<FaultRule>,
    /// The simulator's own rate limit; over it the answer is 429 with `Retry-After: 1`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<SimRateLimit>,
    /// Seed of the random generator behind fault `rate` and latency `jitter` (reproducible runs).
    pub seed: u64,
}

impl Default for Scenario {
    fn default() -> Self {
        Scenario {
            clients: vec![SimClient {
                client_id: "client".to_owned(),
                client_secret: "12345".to_owned(),
                redirect_uris: None,
            }],
            api_keys: vec!["sim-api-key".to_owned()],
            forbidden_api_keys: Vec::new(),
            code_ttl: Duration::from_secs(600),
            token_ttl: Duration::from_secs(86_399),
            devices: BTreeMap::new(),
            signals: SignalsConfig::default(),
            latency: LatencyConfig::default(),
            faults: Vec::new(),
            rate_limit: None,
            seed: 0,
        }
    }
}

/// One OAuth client the simulator knows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimClient {
    /// The `client_id` sent at authorize and token.
    pub client_id: String,
    /// The `client_secret` sent at token.
    pub client_secret: String,
    /// When set, authorize refuses (400, no redirect) any other `redirect_uri`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_uris: Option<Vec<String>>,
}

/// A fixed delay plus a uniformly random jitter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Latency {
    /// Always added.
    #[serde(with = "humantime_serde")]
    pub fixed: Duration,
    /// Up to this much more, uniformly distributed.
    #[serde(with = "humantime_serde")]
    pub jitter: Duration,
}

/// Response latency for all endpoints, with optional per-endpoint overrides.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LatencyConfig {
    /// Used by every endpoint without an override.
    #[serde(with = "humantime_serde")]
    pub fixed: Duration,
    /// Used by every endpoint without an override.
    #[serde(with = "humantime_serde")]
    pub jitter: Duration,
    /// Override for authorize.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authorize: Option<Latency>,
    /// Override for token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<Latency>,
    /// Override for userinfo.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub userinfo: Option<Latency>,
    /// Override for `POST /sim-swap/check`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sim_swap_check: Option<Latency>,
    /// Override for `POST /sim-swap/retrieve-date`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sim_swap_retrieve_date: Option<Latency>,
    /// Override for `POST /device-swap/check`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_swap_check: Option<Latency>,
    /// Override for `POST /device-swap/retrieve-date`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_swap_retrieve_date: Option<Latency>,
    /// Override for `POST /call-forwarding/unconditional/check`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call_forwarding_check: Option<Latency>,
}

impl LatencyConfig {
    /// The latency that applies to `endpoint`.
    pub fn for_endpoint(&self, endpoint: SimEndpoint) -> Latency {
        let over = match endpoint {
            SimEndpoint::Authorize => self.authorize,
            SimEndpoint::Token => self.token,
            SimEndpoint::Userinfo => self.userinfo,
            SimEndpoint::SimSwapCheck => self.sim_swap_check,
            SimEndpoint::SimSwapRetrieveDate => self.sim_swap_retrieve_date,
            SimEndpoint::DeviceSwapCheck => self.device_swap_check,
            SimEndpoint::DeviceSwapRetrieveDate => self.device_swap_retrieve_date,
            SimEndpoint::CallForwardingCheck => self.call_forwarding_check,
        };
        over.unwrap_or(Latency {
            fixed: self.fixed,
            jitter: self.jitter,
        })
    }
}

/// The simulator's own token-bucket limit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimRateLimit {
    /// Sustained requests per second (may be fractional).
    pub requests_per_second: f64,
    /// Requests allowed at once after an idle period (default 1).
    #[serde(default = "default_burst")]
    pub burst: u32,
    /// Endpoints the limit applies to, sharing one bucket (default token and userinfo; signal
    /// endpoints are limited only when listed, so existing scenarios keep their budget).
    #[serde(default = "default_limited")]
    pub endpoints: Vec<SimEndpoint>,
}

const fn default_burst() -> u32 {
    1
}

fn default_limited() -> Vec<SimEndpoint> {
    vec![SimEndpoint::Token, SimEndpoint::Userinfo]
}

impl Scenario {
    /// Parses and validates a scenario from TOML text.
    pub fn from_toml_str(s: &str) -> Result<Scenario, ScenarioError> {
        let scenario: Scenario = toml::from_str(s)?;
        scenario.validate()?;
        Ok(scenario)
    }

    /// Reads, parses and validates a scenario file.
    pub fn from_file(p: &Path) -> Result<Scenario, ScenarioError> {
        let text = std::fs::read_to_string(p).map_err(|source| ScenarioError::Io {
            path: p.to_owned(),
            source,
        })?;
        Self::from_toml_str(&text)
    }

    /// The scenario as TOML, e.g. for `PUT /_sim/scenario` from another process.
    pub fn to_toml_string(&self) -> String {
        // Serializing plain data (strings, numbers, durations as strings) cannot fail.
        toml::to_string(self).unwrap_or_default()
    }

    /// Checks ranges and combinations; the error names the offending key.
    pub fn validate(&self) -> Result<(), ScenarioError> {
        let bad = |m: String| Err(ScenarioError::Invalid(m));
        if let Some(rl) = &self.rate_limit {
            if !(rl.requests_per_second.is_finite() && rl.requests_per_second > 0.0) {
                return bad("rate_limit.requests_per_second must be > 0".into());
            }
            if rl.burst == 0 {
                return bad("rate_limit.burst must be >= 1".into());
            }
        }
        for (i, c) in self.clients.iter().enumerate() {
            if c.client_id.is_empty() {
                return bad(format!("clients[{i}].client_id must not be empty"));
            }
        }
        for (i, f) in self.faults.iter().enumerate() {
            f.validate(i)?;
        }
        self.signals.validate()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault_rule::FaultKind;

    #[test]
    fn empty_text_is_the_default() {
        assert_eq!(Scenario::from_toml_str("").unwrap(), Scenario::default());
    }

    #[test]
    fn parses_every_section() {
        let s = Scenario::from_toml_str(
            r#"
            api_keys = ["k1"]
            code_ttl = "50ms"
            seed = 7
            [[clients]]
            client_id = "c"
            client_secret = "s"
            redirect_uris = ["https://cb.example/x"]
            [devices]
            "381111111111" = "381222222222"
            [latency]
            fixed = "5ms"
            [latency.token]
            fixed = "1s"
            jitter = "10ms"
            [rate_limit]
            requests_per_second = 50
            burst = 10
            [[faults]]
            endpoint = "token"
            status = 429
            retry_after = "2"
            first = 1
            per_code = true
            login_hints = ["381111111111"]
            [[faults]]
            endpoint = "userinfo"
            kind = "slow"
            delay = "5s"
            "#,
        )
        .unwrap();
        assert_eq!(s.code_ttl, Duration::from_millis(50));
        assert_eq!(s.clients[0].client_id, "c");
        assert_eq!(s.devices["381111111111"], "381222222222");
        let token = s.latency.for_endpoint(SimEndpoint::Token);
        assert_eq!(token.fixed, Duration::from_secs(1));
        let ui = s.latency.for_endpoint(SimEndpoint::Userinfo);
        assert_eq!(ui.fixed, Duration::from_millis(5));
        let rl = s.rate_limit.as_ref().unwrap();
        assert_eq!((rl.requests_per_second, rl.burst), (50.0, 10));
        assert_eq!(rl.endpoints, default_limited());
        assert_eq!(s.faults[0].effective_kind(), Some(FaultKind::Status));
        assert_eq!(
            s.faults[0].retry_after.as_ref().unwrap().header_value(),
            "2"
        );
        assert_eq!(s.faults[1].delay, Some(Duration::from_secs(5)));
    }

    #[test]
    fn round_trips_through_toml() {
        let mut s = Scenario {
            code_ttl: Duration::from_millis(250),
            ..Scenario::default()
        };
        s.faults.push(FaultRule {
            endpoint: Some(SimEndpoint::Token),
            kind: Some(FaultKind::Drop),
            after_processing: true,
            rate: Some(0.5),
            ..FaultRule::default()
        });
        let text = s.to_toml_string();
        assert_eq!(Scenario::from_toml_str(&text).unwrap(), s);

        // Every section at once, as parsed from the repository's documented scenario file.
        let full = Scenario::from_file(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/simulator.toml"),
        )
        .unwrap();
        assert!(!full.devices.is_empty() && full.latency.token.is_some());
        assert!(!full.signals.is_empty());
        let text = full.to_toml_string();
        assert_eq!(Scenario::from_toml_str(&text).unwrap(), full, "{text}");
    }

    #[test]
    fn refuses_bad_values_naming_the_key() {
        let cases = [
            ("nope = 1", "unknown field"),
            ("[[faults]]\nstatus = 500", "faults[0].endpoint"),
            ("[[faults]]\nendpoint = \"token\"", "faults[0].kind"),
            (
                "[[faults]]\nendpoint = \"token\"\nstatus = 99",
                "status must be",
            ),
            (
                "[[faults]]\nendpoint = \"token\"\nkind = \"slow\"",
                "delay is required",
            ),
            (
                "[[faults]]\nendpoint = \"token\"\nkind = \"stalled_body\"",
                "delay is required for kind = \"stalled_body\"",
            ),
            (
                "[[faults]]\nendpoint = \"token\"\nkind = \"drop\"\nstatus = 500",
                "only allowed",
            ),
            (
                "[[faults]]\nendpoint = \"token\"\nkind = \"redirect_error\"",
                "only valid",
            ),
            (
                "[[faults]]\nendpoint = \"authorize\"\nkind = \"redirect_error\"\nerror = \"x\"",
                "B.1",
            ),
            (
                "[[faults]]\nendpoint = \"token\"\nstatus = 500\nrate = 2.0",
                "rate must",
            ),
            (
                "[[faults]]\nendpoint = \"token\"\nstatus = 500\nper_code = true",
                "per_code",
            ),
            (
                "[rate_limit]\nrequests_per_second = 0",
                "requests_per_second",
            ),
            ("[rate_limit]\nrequests_per_second = 1\nburst = 0", "burst"),
            ("code_ttl = \"soon\"", "code_ttl"),
        ];
        for (text, needle) in cases {
            let err = Scenario::from_toml_str(text).unwrap_err().to_string();
            assert!(err.contains(needle), "{text:?}: {err}");
        }
    }

    #[test]
    fn from_file_reports_the_path() {
        let err = Scenario::from_file(Path::new("/nonexistent/sim.toml")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/sim.toml"));
    }
}
