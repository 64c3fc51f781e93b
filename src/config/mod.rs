//! Typed configuration (docs/contract.md): a TOML file, an environment overlay
//! (`SILENTAUTH__SECTION__KEY`), defaults, and validation that names the key.
//!
//! Loading goes: TOML text → table → environment overlay → typed [`Config`] (unknown keys are
//! rejected) → [`Config::validate`]. Every error names the key (or the environment variable) and
//! never prints a secret value.
//!
//! # Environment overlay
//!
//! A variable `SILENTAUTH__A__B__C=value` sets key `a.b.c`:
//! - the prefix and the segments are case-insensitive; segments are separated by `__` (a single
//!   `_` belongs to the name, as in `BASE_URL`); a segment matches an existing key of the file
//!   regardless of case, and new keys (such as a new client profile's name) are lower-cased;
//! - `SILENTAUTH__KAFKA__PROPERTIES__<NAME>` sets the librdkafka property `<NAME>` lower-cased
//!   with every `_` (and `__`) turned into `.`: `..._SASL_MECHANISM` sets `sasl.mechanism`. A
//!   property of the file whose name differs only in `.`/`_` is overridden instead;
//! - values are strings, converted to the key's type: integers for `retry.max_attempts`,
//!   `worker.max_in_flight`, `worker.idempotency_cache_size`, `clients.<name>.burst`, a number
//!   for `clients.<name>.requests_per_second`, strings for everything else (durations such as
//!   `"250ms"`, `group_id = "123"`). Types come from the defaults of [`Config`] and the embedded
//!   `config/default.toml`, plus a table for `clients.<name>.*`, so a profile can be created
//!   entirely from the environment;
//! - variables that start with `SILENTAUTH_` but not `SILENTAUTH__` are ignored.

use crate::secret::Secret;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use toml::{Table, Value};

mod env;
mod error;

use env::{overlay_env, process_env, stringify_properties};
use error::{deserialize_error, syntax_error};
pub use error::{env_var_for, ConfigError, Violation};

/// The prefix of overriding environment variables, followed by `__`.
pub const ENV_PREFIX: &str = "SILENTAUTH";

/// Where [`Config::load`] looks for a config file when none is given, relative to the working
/// directory.
pub const DEFAULT_CONFIG_PATH: &str = "config/default.toml";

/// The documented default configuration, compiled in; used when [`DEFAULT_CONFIG_PATH`] is absent.
pub const EMBEDDED_DEFAULT_TOML: &str = include_str!("../../config/default.toml");

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Kafka connection and consumer settings.
    #[serde(default)]
    pub kafka: KafkaConfig,
    /// Topic names.
    #[serde(default)]
    pub topics: TopicsConfig,
    /// The Silent Auth API.
    #[serde(default)]
    pub api: ApiConfig,
    /// Credentials profiles by name; jobs pick one with `client` (default `"default"`).
    #[serde(default)]
    pub clients: BTreeMap<String, ClientConfig>,
    /// Retry policy for HTTP requests.
    #[serde(default)]
    pub retry: RetryConfig,
    /// The worker's processing settings.
    #[serde(default)]
    pub worker: WorkerConfig,
    /// How rate limits are shared between instances.
    #[serde(default)]
    pub rate_limit: RateLimitConfig,
    /// The admin HTTP listener.
    #[serde(default)]
    pub admin: AdminConfig,
}

/// Kafka settings.
///
/// `Debug` masks the values of secret-looking `properties` (see [`is_secret_property`]).
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap servers, comma separated.
    #[serde(default = "default_brokers")]
    pub brokers: String,
    /// Consumer group of the worker.
    #[serde(default = "default_group_id")]
    pub group_id: String,
    /// librdkafka properties applied last (override everything the worker sets).
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// How often stored offsets are committed.
    #[serde(default = "default_commit_interval", with = "humantime_serde")]
    pub commit_interval: Duration,
    /// How long start-up waits for the brokers before failing.
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
}

/// Topic names (docs/contract.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicsConfig {
    /// Jobs to consume.
    #[serde(default = "default_jobs_topic")]
    pub jobs: String,
    /// Results to publish.
    #[serde(default = "default_results_topic")]
    pub results: String,
    /// Dead letters to publish.
    #[serde(default = "default_dead_letter_topic")]
    pub dead_letter: String,
}

/// The Silent Auth API.
///
/// `Debug` masks a password embedded in `base_url`.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Base URL, e.g. `https://api.tyntec.com/silent-auth/v1`.
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// Per-request timeout.
    #[serde(default = "default_api_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// tyntec Network Signals base URL, for jobs that ask for `signals`.
    #[serde(default = "default_signals_base_url")]
    pub signals_base_url: String,
}

/// One credentials profile.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// OAuth client id.
    pub client_id: String,
    /// OAuth client secret.
    pub client_secret: Secret,
    /// The `apiKey` header.
    pub api_key: Secret,
    /// Requests per second for this profile; absent means unlimited.
    #[serde(default)]
    pub requests_per_second: Option<f64>,
    /// Requests that may go out at once above the steady rate.
    #[serde(default = "default_burst")]
    pub burst: u32,
    /// A separate rate for Network Signals requests (with the same `burst`); absent means they
    /// share `requests_per_second`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signals_requests_per_second: Option<f64>,
}

/// Retry policy.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Attempts per request, the first included.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// First backoff.
    #[serde(default = "default_initial_backoff", with = "humantime_serde")]
    pub initial_backoff: Duration,
    /// Backoff cap.
    #[serde(default = "default_max_backoff", with = "humantime_serde")]
    pub max_backoff: Duration,
    /// Total time a request may spend retrying.
    #[serde(default = "default_max_elapsed", with = "humantime_serde")]
    pub max_elapsed: Duration,
    /// Total time userinfo may spend retrying once the token call succeeded (the code is spent,
    /// so a failure is final); never beyond the access token's `expires_in`.
    #[serde(default = "default_userinfo_max_elapsed", with = "humantime_serde")]
    pub userinfo_max_elapsed: Duration,
    /// The longest `Retry-After` honoured, for one request's wait and for the profile's pause.
    #[serde(default = "default_max_retry_after", with = "humantime_serde")]
    pub max_retry_after: Duration,
}

/// Delivery guarantee.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    /// Offsets stored after results are acknowledged.
    AtLeastOnce,
    /// Results, dead letters and offsets in one Kafka transaction.
    ExactlyOnce,
}

/// Processing settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerConfig {
    /// Jobs processed concurrently.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// How long a code stays usable after `issued_at`.
    #[serde(default = "default_code_ttl", with = "humantime_serde")]
    pub code_ttl: Duration,
    /// Delivery guarantee.
    #[serde(default = "default_delivery")]
    pub delivery: Delivery,
    /// How long a revoke waits for in-flight jobs.
    #[serde(default = "default_revoke_grace", with = "humantime_serde")]
    pub revoke_grace: Duration,
    /// How long shutdown waits for in-flight jobs.
    #[serde(default = "default_shutdown_grace", with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Entries in the idempotency cache.
    #[serde(default = "default_idempotency_cache_size")]
    pub idempotency_cache_size: usize,
    /// How much earlier than the append time of the jobs record at a committed offset the
    /// cache warm-up starts reading results: the clock skew allowed between job producers
    /// (or brokers) and workers. At most `code_ttl`.
    #[serde(default = "default_warmup_margin", with = "humantime_serde")]
    pub warmup_margin: Duration,
    /// This instance's stable name, for the `transactional.id` of `exactly_once` delivery
    /// (`<group_id>.<instance_id>`); empty means the host name. A restarted instance must keep
    /// its name so that it fences its own zombie.
    #[serde(default)]
    pub instance_id: String,
    /// What start-up does when the jobs, results or dead-letter topic does not exist: `false`
    /// exits 2 naming the key; `true` waits for it (consuming nothing, `/readyz` 503 with the
    /// reason), for deployments that create topics after the worker.
    #[serde(default)]
    pub wait_for_topics: bool,
    /// The circuit breaker that pauses consumption while every job fails for the same reason.
    #[serde(default)]
    pub breaker: BreakerConfig,
}

impl WorkerConfig {
    /// `instance_id`, or the host name when it is empty.
    pub fn instance_name(&self) -> String {
        if !self.instance_id.is_empty() {
            return self.instance_id.clone();
        }
        std::env::var("HOSTNAME")
            .ok()
            .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "worker".to_owned())
    }
}

/// The circuit breaker (`worker.breaker`): pauses consumption when jobs keep failing for one
/// reason, and lets one probe job through every `probe_interval` until one succeeds.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerConfig {
    /// Consecutive `credentials_rejected` or `permission_denied` results that open the breaker;
    /// 0 turns this trigger off.
    #[serde(default = "default_breaker_consecutive")]
    pub consecutive: u32,
    /// The breaker opens when more than this share of the last `window` jobs that reached the
    /// API were dead-lettered; in (0, 1], and 1.0 turns this trigger off.
    #[serde(default = "default_breaker_dead_letter_ratio")]
    pub dead_letter_ratio: f64,
    /// Jobs (that reached the API) the dead-letter ratio is measured over.
    #[serde(default = "default_breaker_window")]
    pub window: usize,
    /// While open, one job is let through this often to probe whether the cause is gone.
    #[serde(default = "default_breaker_probe_interval", with = "humantime_serde")]
    pub probe_interval: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            consecutive: default_breaker_consecutive(),
            dead_letter_ratio: default_breaker_dead_letter_ratio(),
            window: default_breaker_window(),
            probe_interval: default_breaker_probe_interval(),
        }
    }
}

const fn default_breaker_consecutive() -> u32 {
    20
}
const fn default_breaker_dead_letter_ratio() -> f64 {
    0.5
}
const fn default_breaker_window() -> usize {
    100
}
const fn default_breaker_probe_interval() -> Duration {
    Duration::from_secs(30)
}

/// Rate-limit scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RateLimitScope {
    /// Each instance applies the configured rate on its own.
    Instance,
    /// Each instance applies the rate times its share of the jobs topic's partitions.
    PartitionShare,
}

/// Rate-limit settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Scope of `clients.<name>.requests_per_second`.
    #[serde(default = "default_scope")]
    pub scope: RateLimitScope,
}

/// Admin listener settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Address of `/metrics`, `/healthz`, `/readyz`.
    #[serde(default = "default_admin_listen")]
    pub listen: String,
}

fn default_brokers() -> String {
    "localhost:9092".into()
}
fn default_group_id() -> String {
    "silentauth-worker".into()
}
const fn default_commit_interval() -> Duration {
    Duration::from_secs(1)
}
const fn default_connect_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_jobs_topic() -> String {
    "silentauth.jobs".into()
}
fn default_results_topic() -> String {
    "silentauth.results".into()
}
fn default_dead_letter_topic() -> String {
    "silentauth.jobs.dlq".into()
}
fn default_signals_base_url() -> String {
    crate::silentauth::signals::DEFAULT_SIGNALS_BASE_URL.to_owned()
}

fn default_base_url() -> String {
    "https://api.tyntec.com/silent-auth/v1".into()
}
const fn default_api_timeout() -> Duration {
    Duration::from_secs(10)
}
const fn default_burst() -> u32 {
    1
}
const fn default_max_attempts() -> u32 {
    4
}
const fn default_initial_backoff() -> Duration {
    Duration::from_millis(100)
}
const fn default_max_backoff() -> Duration {
    Duration::from_secs(5)
}
const fn default_max_elapsed() -> Duration {
    Duration::from_secs(30)
}
const fn default_userinfo_max_elapsed() -> Duration {
    Duration::from_secs(120)
}
const fn default_max_retry_after() -> Duration {
    Duration::from_secs(10)
}
const fn default_max_in_flight() -> usize {
    1024
}
const fn default_code_ttl() -> Duration {
    Duration::from_secs(600)
}
const fn default_delivery() -> Delivery {
    Delivery::AtLeastOnce
}
const fn default_revoke_grace() -> Duration {
    Duration::from_secs(10)
}
const fn default_shutdown_grace() -> Duration {
    Duration::from_secs(30)
}
const fn default_idempotency_cache_size() -> usize {
    100_000
}
const fn default_warmup_margin() -> Duration {
    Duration::from_secs(10)
}
const fn default_scope() -> RateLimitScope {
    RateLimitScope::Instance
}
fn default_admin_listen() -> String {
    "127.0.0.1:9464".into()
}

macro_rules! default_from_serde {
    ($($t:ty),*) => {$(
        impl Default for $t {
            fn default() -> Self {
                toml::from_str("").expect("every field has a default")
            }
        }
    )*};
}
default_from_serde!(
    Config,
    KafkaConfig,
    TopicsConfig,
    ApiConfig,
    RetryConfig,
    WorkerConfig,
    RateLimitConfig,
    AdminConfig
);

/// True when a librdkafka property holds a secret and must be printed as `***`: its name
/// contains `password`, `secret`, `token`, `key` or `jaas`, or it is `sasl.oauthbearer.config`.
pub fn is_secret_property(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    ["password", "secret", "token", "key", "jaas"]
        .iter()
        .any(|w| name.contains(w))
        || name == "sasl.oauthbearer.config"
}

/// `base_url` with an embedded password replaced by `***` (unchanged when it has none).
fn mask_url_password(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => raw.to_owned(),
    }
}

impl fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let properties: BTreeMap<&str, &str> = self
            .properties
            .iter()
            .map(|(k, v)| {
                let v = if is_secret_property(k) { "***" } else { v };
                (k.as_str(), v)
            })
            .collect();
        f.debug_struct("KafkaConfig")
            .field("brokers", &self.brokers)
            .field("group_id", &self.group_id)
            .field("properties", &properties)
            .field("commit_interval", &self.commit_interval)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

impl fmt::Debug for ApiConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiConfig")
            .field("base_url", &mask_url_password(&self.base_url))
            .field("timeout", &self.timeout)
            .field(
                "signals_base_url",
                &mask_url_password(&self.signals_base_url),
            )
            .finish()
    }
}

impl Config {
    /// Reads the configuration: `path` when given (a missing file is an error naming it), else
    /// [`DEFAULT_CONFIG_PATH`] when it exists, else [`EMBEDDED_DEFAULT_TOML`]; then overlays the
    /// process environment and validates.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let (origin, text) = match path {
            Some(p) => (p.display().to_string(), read_file(p)?),
            None if Path::new(DEFAULT_CONFIG_PATH).is_file() => (
                DEFAULT_CONFIG_PATH.to_owned(),
                read_file(Path::new(DEFAULT_CONFIG_PATH))?,
            ),
            None => (
                "<embedded config/default.toml>".to_owned(),
                EMBEDDED_DEFAULT_TOML.to_owned(),
            ),
        };
        Self::parse(&origin, &text, process_env()?)
    }

    /// Builds a configuration from TOML text and environment variables (`(name, value)` pairs;
    /// names not starting with `SILENTAUTH__` are ignored), then validates it. Tests pass their
    /// own variables here instead of touching the process environment.
    pub fn from_sources(
        toml_text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        Self::parse("<config>", toml_text, env)
    }

    fn parse(
        origin: &str,
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut table: Table = text
            .parse()
            .map_err(|e: toml::de::Error| syntax_error(origin, text, &e))?;
        let sources = overlay_env(&mut table, env)?;
        stringify_properties(&mut table);
        let config: Config = serde_path_to_error::deserialize(Value::Table(table))
            .map_err(|e| deserialize_error(e, &sources))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks the rules that types cannot express; the error lists every broken rule, each
    /// naming its key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut v = Rules::default();
        let k = &self.kafka;
        v.check(
            !k.brokers.trim().is_empty(),
            "kafka.brokers",
            "must not be empty",
        );
        v.check(
            k.brokers.trim().is_empty() || k.brokers.split(',').all(|b| !b.trim().is_empty()),
            "kafka.brokers",
            "must not have an empty entry between commas",
        );
        v.check(
            !k.group_id.trim().is_empty(),
            "kafka.group_id",
            "must not be empty",
        );
        v.positive(k.commit_interval, "kafka.commit_interval");
        v.positive(k.connect_timeout, "kafka.connect_timeout");

        let t = &self.topics;
        let topics = [
            ("topics.jobs", &t.jobs),
            ("topics.results", &t.results),
            ("topics.dead_letter", &t.dead_letter),
        ];
        for (i, (key, name)) in topics.iter().enumerate() {
            v.check(
                valid_topic_name(name),
                key,
                "must be 1..249 characters of [A-Za-z0-9._-]",
            );
            for (other_key, other) in &topics[..i] {
                v.check(name != other, key, &format!("must differ from {other_key}"));
            }
        }

        for (key, value) in [
            ("api.base_url", &self.api.base_url),
            ("api.signals_base_url", &self.api.signals_base_url),
        ] {
            match url::Url::parse(value) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.has_host() => {}
                Ok(_) => v.fail(key, "must be an absolute http(s) URL"),
                Err(e) => v.fail(key, &format!("must be an absolute http(s) URL ({e})")),
            }
        }
        v.positive(self.api.timeout, "api.timeout");

        for (name, c) in &self.clients {
            let key = |field: &str| format!("clients.{name}.{field}");
            v.check(
                !c.client_id.trim().is_empty(),
                &key("client_id"),
                "must not be empty",
            );
            v.check(
                !c.client_secret.is_empty(),
                &key("client_secret"),
                "must not be empty",
            );
            v.check(!c.api_key.is_empty(), &key("api_key"), "must not be empty");
            for (field, rate) in [
                ("requests_per_second", c.requests_per_second),
                ("signals_requests_per_second", c.signals_requests_per_second),
            ] {
                if let Some(rps) = rate {
                    if !rps.is_finite() {
                        v.fail(&key(field), "must be a finite number");
                    } else {
                        v.check(rps > 0.0, &key(field), "must be > 0");
                    }
                }
            }
            v.check(c.burst >= 1, &key("burst"), "must be >= 1");
        }

        let r = &self.retry;
        v.check(r.max_attempts >= 1, "retry.max_attempts", "must be >= 1");
        v.positive(r.initial_backoff, "retry.initial_backoff");
        v.check(
            r.initial_backoff <= r.max_backoff,
            "retry.initial_backoff",
            "must be <= retry.max_backoff",
        );
        v.positive(r.max_elapsed, "retry.max_elapsed");
        v.check(
            r.userinfo_max_elapsed >= r.max_elapsed,
            "retry.userinfo_max_elapsed",
            "must be >= retry.max_elapsed (a spent code deserves the longer budget)",
        );
        v.check(
            r.max_retry_after <= r.max_elapsed,
            "retry.max_retry_after",
            "must be <= retry.max_elapsed",
        );

        let w = &self.worker;
        v.check(w.max_in_flight >= 1, "worker.max_in_flight", "must be >= 1");
        v.positive(w.code_ttl, "worker.code_ttl");
        v.check(
            w.idempotency_cache_size >= 1,
            "worker.idempotency_cache_size",
            "must be >= 1",
        );
        v.check(
            w.warmup_margin <= w.code_ttl,
            "worker.warmup_margin",
            "must be <= worker.code_ttl",
        );
        let b = &w.breaker;
        v.check(
            b.dead_letter_ratio.is_finite()
                && b.dead_letter_ratio > 0.0
                && b.dead_letter_ratio <= 1.0,
            "worker.breaker.dead_letter_ratio",
            "must be > 0 and <= 1 (1 turns the ratio trigger off)",
        );
        v.check(b.window >= 1, "worker.breaker.window", "must be >= 1");
        v.positive(b.probe_interval, "worker.breaker.probe_interval");

        v.check(
            self.admin.listen.parse::<SocketAddr>().is_ok(),
            "admin.listen",
            "must be a socket address such as 127.0.0.1:9464",
        );
        v.finish()
    }

    /// The effective configuration as TOML, every secret printed as `***`: client secrets, api
    /// keys, secret-looking `kafka.properties` (see [`is_secret_property`]) and a password in
    /// `api.base_url`. Backs `check-config`.
    pub fn render_masked(&self) -> String {
        let mut masked = self.clone();
        for (name, value) in masked.kafka.properties.iter_mut() {
            if is_secret_property(name) {
                *value = "***".to_owned();
            }
        }
        masked.api.base_url = mask_url_password(&masked.api.base_url);
        masked.api.signals_base_url = mask_url_password(&masked.api.signals_base_url);
        match toml::to_string_pretty(&masked) {
            Ok(text) => format!("# effective configuration; secrets are shown as ***\n{text}"),
            Err(e) => format!("# cannot render the configuration: {e}\n"),
        }
    }
}

/// `check-config`: loads the configuration like `run` would and returns what to print and the
/// exit code: the masked configuration (ends with a newline; print to stdout) and 0, or
/// `error: <message naming the key>` (no trailing newline; print to stderr) and 2.
pub fn check_config(path: Option<&Path>) -> (String, i32) {
    match Config::load(path) {
        Ok(config) => (config.render_masked(), 0),
        Err(e) => (format!("error: {e}"), 2),
    }
}

#[derive(Default)]
struct Rules(Vec<Violation>);

impl Rules {
    fn check(&mut self, ok: bool, key: &str, rule: &str) {
        if !ok {
            self.fail(key, rule);
        }
    }
    fn fail(&mut self, key: &str, rule: &str) {
        self.0.push(Violation {
            key: key.to_owned(),
            rule: rule.to_owned(),
        });
    }
    fn positive(&mut self, d: Duration, key: &str) {
        self.check(!d.is_zero(), key, "must be > 0");
    }
    fn finish(self) -> Result<(), ConfigError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(self.0))
        }
    }
}

fn valid_topic_name(name: &str) -> bool {
    (1..=249).contains(&name.len())
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn read_file(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::env::*;
    use super::error::*;
    use super::*;

    fn segs(name: &str) -> Vec<String> {
        env_segments(name)
            .unwrap()
            .into_iter()
            .map(str::to_ascii_lowercase)
            .collect()
    }

    #[test]
    fn env_segments_need_the_double_underscore_prefix() {
        assert_eq!(
            env_segments("SILENTAUTH__API__BASE_URL"),
            Some(vec!["API", "BASE_URL"])
        );
        assert_eq!(
            env_segments("silentauth__worker__x"),
            Some(vec!["worker", "x"])
        );
        assert_eq!(env_segments("SILENTAUTH_LOG"), None);
        assert_eq!(env_segments("SILENTAUTH"), None);
        assert_eq!(env_segments("OTHER__API__BASE_URL"), None);
    }

    #[test]
    fn property_names_map_underscores_to_dots() {
        let root = Table::new();
        assert_eq!(
            canonical_path(
                &root,
                &segs("SILENTAUTH__KAFKA__PROPERTIES__SASL_MECHANISM")
            ),
            ["kafka", "properties", "sasl.mechanism"]
        );
        assert_eq!(
            canonical_path(
                &root,
                &segs("SILENTAUTH__KAFKA__PROPERTIES__SSL__KEY_PASSWORD")
            ),
            ["kafka", "properties", "ssl.key.password"]
        );
    }

    #[test]
    fn segments_match_existing_keys_regardless_of_case() {
        let root: Table = "[clients.AcmeEU]\nclient_id = \"a\"\n".parse().unwrap();
        assert_eq!(
            canonical_path(&root, &segs("SILENTAUTH__CLIENTS__ACMEEU__API_KEY")),
            ["clients", "AcmeEU", "api_key"]
        );
        assert_eq!(
            canonical_path(&root, &segs("SILENTAUTH__CLIENTS__NEW__API_KEY")),
            ["clients", "new", "api_key"]
        );
    }

    #[test]
    fn kinds_come_from_the_defaults_and_the_client_table() {
        let schema = Schema::new();
        let kind = |p: &str| schema.kind(&p.split('.').map(String::from).collect::<Vec<_>>());
        assert_eq!(kind("worker.max_in_flight"), Kind::Integer);
        assert_eq!(kind("retry.max_attempts"), Kind::Integer);
        assert_eq!(kind("worker.idempotency_cache_size"), Kind::Integer);
        assert_eq!(kind("worker.code_ttl"), Kind::Str);
        assert_eq!(kind("kafka.group_id"), Kind::Str);
        assert_eq!(kind("kafka"), Kind::Section);
        assert_eq!(kind("clients.x"), Kind::Section);
        assert_eq!(kind("clients.x.burst"), Kind::Integer);
        assert_eq!(kind("clients.x.requests_per_second"), Kind::Float);
        assert_eq!(kind("clients.x.api_key"), Kind::Str);
        assert_eq!(kind("kafka.properties.linger.ms"), Kind::Str);
        assert_eq!(kind("no.such.key"), Kind::Str);
    }

    #[test]
    fn secret_properties_are_recognised() {
        for name in [
            "sasl.password",
            "ssl.key.password",
            "SSL.KEYSTORE.PASSWORD",
            "sasl.oauthbearer.client.secret",
            "sasl.oauthbearer.config",
            "sasl.kerberos.keytab",
        ] {
            assert!(is_secret_property(name), "{name}");
        }
        for name in [
            "sasl.username",
            "sasl.mechanism",
            "linger.ms",
            "bootstrap.servers",
        ] {
            assert!(!is_secret_property(name), "{name}");
        }
    }

    #[test]
    fn url_passwords_are_masked() {
        assert_eq!(
            mask_url_password("https://u:pw@host/v1"),
            "https://u:***@host/v1"
        );
        assert_eq!(mask_url_password("https://host/v1"), "https://host/v1");
        assert_eq!(mask_url_password("not a url"), "not a url");
    }

    #[test]
    fn topic_names_follow_kafka_rules() {
        assert!(valid_topic_name("silentauth.jobs.dlq"));
        assert!(valid_topic_name("a-b_c.1"));
        assert!(!valid_topic_name(""));
        assert!(!valid_topic_name(".."));
        assert!(!valid_topic_name("with space"));
        assert!(!valid_topic_name(&"x".repeat(250)));
    }

    #[test]
    fn syntax_errors_give_line_column_and_key() {
        let text = "[kafka]\nbrokers = \"a\"\ngroup_id = = 1\n";
        let e = text.parse::<Table>().unwrap_err();
        match syntax_error("f.toml", text, &e) {
            ConfigError::Syntax {
                origin, line, near, ..
            } => {
                assert_eq!(origin, "f.toml");
                assert_eq!(line, 3);
                assert_eq!(near.as_deref(), Some("kafka.group_id"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn env_var_for_inverts_the_overlay() {
        assert_eq!(
            env_var_for("clients.default.client_secret"),
            "SILENTAUTH__CLIENTS__DEFAULT__CLIENT_SECRET"
        );
    }

    #[test]
    fn embedded_default_is_valid() {
        let config = Config::from_sources(EMBEDDED_DEFAULT_TOML, Vec::new()).unwrap();
        assert_eq!(config.api.base_url, default_base_url());
        assert_eq!(config.kafka.brokers, default_brokers());
    }
}
