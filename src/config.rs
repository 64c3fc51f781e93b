//! Typed configuration (CONTRACT.md §8): a TOML file, an environment overlay
//! (`SILENTAUTH__SECTION__KEY`), defaults, and validation that names the key.

use crate::secret::Secret;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
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
#[derive(Debug, Clone, Serialize, Deserialize)]
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

/// Topic names (CONTRACT.md §2).
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
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Base URL, e.g. `https://api.tyntec.com/silent-auth/v1`.
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// Per-request timeout.
    #[serde(default = "default_api_timeout", with = "humantime_serde")]
    pub timeout: Duration,
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
    KafkaConfig,
    TopicsConfig,
    ApiConfig,
    RetryConfig,
    WorkerConfig,
    RateLimitConfig,
    AdminConfig
);
