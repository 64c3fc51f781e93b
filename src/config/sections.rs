//! The configuration's sections as typed structs, each field with its default.

use super::redact::{is_secret_property, mask_url_password};
use crate::secret::Secret;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

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
    pub clients: BTreeMap<String, ProfileConfig>,
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
    /// Traces over OTLP (off unless an endpoint is set).
    #[serde(default)]
    pub telemetry: super::telemetry::TelemetryConfig,
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
    /// The presentation ledger (`worker.ledger`): a record per job whose code is about to be
    /// presented, written before the token request leaves.
    #[serde(default = "default_ledger_topic")]
    pub ledger: String,
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
pub struct ProfileConfig {
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

/// How many jobs of a client profile call the Silent Auth API at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConcurrencyMode {
    /// A limit that tunes itself to the upstream's round-trip time, backing off on 429, 503
    /// and timeouts, never above `max_in_flight`.
    Adaptive,
    /// Always `max_in_flight`.
    Fixed,
}

/// Processing settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerConfig {
    /// Jobs processed concurrently.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// How many of those call the Silent Auth API at once, per client profile.
    #[serde(default = "default_concurrency")]
    pub concurrency: ConcurrencyMode,
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
    /// Bytes the idempotency cache may hold (an integer), counted per result as its `job_id`, its
    /// JSON and a fixed overhead (`idempotency::ENTRY_OVERHEAD_BYTES`); whichever of this and
    /// `idempotency_cache_size` is reached first evicts the least recently used result.
    #[serde(default = "default_idempotency_cache_bytes")]
    pub idempotency_cache_bytes: usize,
    /// Jobs the redelivery index holds: where the result of every job seen within `code_ttl`
    /// lies in the results topic (about 35 to 70 bytes a job). The run loop starts a job only
    /// while the index has room for it, so the rate it covers is this over `code_ttl`; a
    /// warm-up that finds more results than this in range stops start-up naming the key.
    #[serde(default = "default_idempotency_index_size")]
    pub idempotency_index_size: usize,
    /// Record each job's presentation in `topics.ledger` before its token request leaves, so a
    /// job redelivered after a crash whose code was recorded but has no result ends
    /// `interrupted` instead of presenting its code again.
    #[serde(default = "default_true")]
    pub ledger: bool,
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

/// A trigger of the circuit breaker; its [`BreakerTrigger::label`], the name of its key under
/// `worker.breaker`, is the `reason` label of `silentauth_breaker_trips_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum BreakerTrigger {
    /// `worker.breaker.consecutive` rejections in a row.
    Consecutive,
    /// `worker.breaker.dead_letter_ratio` exceeded over the window.
    DeadLetterRatio,
}

impl BreakerTrigger {
    /// Every trigger.
    pub const ALL: [BreakerTrigger; 2] =
        [BreakerTrigger::Consecutive, BreakerTrigger::DeadLetterRatio];

    /// The metric label: the name of the trigger's config key.
    pub fn label(self) -> &'static str {
        match self {
            BreakerTrigger::Consecutive => "consecutive",
            BreakerTrigger::DeadLetterRatio => "dead_letter_ratio",
        }
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

pub(super) fn default_brokers() -> String {
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
fn default_ledger_topic() -> String {
    "silentauth.ledger".into()
}
/// `api.signals_base_url` when the configuration names none.
pub const DEFAULT_SIGNALS_BASE_URL: &str = "https://api.tyntec.com/network-signal/v1";

fn default_signals_base_url() -> String {
    DEFAULT_SIGNALS_BASE_URL.to_owned()
}

pub(super) fn default_base_url() -> String {
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
const fn default_concurrency() -> ConcurrencyMode {
    ConcurrencyMode::Adaptive
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
const fn default_idempotency_cache_bytes() -> usize {
    8 * 1024 * 1024
}
const fn default_true() -> bool {
    true
}
const fn default_idempotency_index_size() -> usize {
    1_000_000
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
