//! Loading and validating: file or embedded default, environment overlay, typed config, rules
//! that name the key; and `check-config`.

use super::env::{overlay_env, process_env, stringify_properties};
use super::error::{deserialize_error, syntax_error, ConfigError, Violation};
use super::origin::{DEFAULT_CONFIG_PATH, EMBEDDED_DEFAULT_TOML};
use super::redact::{is_secret_property, mask_url_password};
use super::sections::*;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use toml::{Table, Value};

/// The smallest `worker.idempotency_cache_bytes`: room for about a hundred results.
const MIN_IDEMPOTENCY_CACHE_BYTES: usize = 64 * 1024;

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
        let env: Vec<(String, String)> = env.into_iter().collect();
        super::telemetry::overlay_otel_env(&mut table, &env)?;
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
        self.validate_kafka(&mut v);
        self.validate_topics(&mut v);
        self.validate_api(&mut v);
        self.validate_retry(&mut v);
        self.validate_worker(&mut v);
        self.validate_telemetry(&mut v);
        v.finish()
    }

    /// `kafka.*` (`acks` among its properties) and `admin.listen`.
    fn validate_kafka(&self, v: &mut Rules) {
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
        if let Some(acks) = self.kafka.properties.get("acks") {
            v.check(
                matches!(acks.trim(), "all" | "-1"),
                "kafka.properties.\"acks\"",
                "must be \"all\" (or -1): a result counts as published only once every in-sync replica has it at an offset",
            );
        }
        v.check(
            self.admin.listen.parse::<SocketAddr>().is_ok(),
            "admin.listen",
            "must be a socket address such as 127.0.0.1:9464",
        );
    }

    /// `topics.*`: valid names, all different (the ledger's only while it is on).
    fn validate_topics(&self, v: &mut Rules) {
        let t = &self.topics;
        let mut topics = vec![
            ("topics.jobs", &t.jobs),
            ("topics.results", &t.results),
            ("topics.dead_letter", &t.dead_letter),
        ];
        if self.worker.ledger {
            topics.push(("topics.ledger", &t.ledger));
        }
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
    }

    /// `api.*` and every `clients.<name>.*` profile.
    fn validate_api(&self, v: &mut Rules) {
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
    }

    /// `telemetry.*`.
    fn validate_telemetry(&self, v: &mut Rules) {
        for (key, rule) in self.telemetry.violations() {
            v.fail(key, &rule);
        }
    }

    /// `retry.*`.
    fn validate_retry(&self, v: &mut Rules) {
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
    }

    /// `worker.*`, its breaker included.
    fn validate_worker(&self, v: &mut Rules) {
        let w = &self.worker;
        v.check(w.max_in_flight >= 1, "worker.max_in_flight", "must be >= 1");
        v.positive(w.code_ttl, "worker.code_ttl");
        v.check(
            w.idempotency_cache_size >= 1,
            "worker.idempotency_cache_size",
            "must be >= 1",
        );
        v.check(
            w.idempotency_cache_bytes >= MIN_IDEMPOTENCY_CACHE_BYTES,
            "worker.idempotency_cache_bytes",
            "must be >= 65536",
        );
        v.check(
            w.idempotency_index_size >= 1,
            "worker.idempotency_index_size",
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
    }

    /// Settings that are valid but probably not meant, one sentence each naming the key: a
    /// revoke or shutdown grace shorter than one request may be (`api.timeout`) lets go of jobs
    /// whose userinfo is merely slow, and each of them ends `interrupted` (its code is spent).
    pub fn warnings(&self) -> Vec<String> {
        let timeout = self.api.timeout;
        [
            ("worker.revoke_grace", self.worker.revoke_grace),
            ("worker.shutdown_grace", self.worker.shutdown_grace),
        ]
        .into_iter()
        .filter(|(_, grace)| *grace < timeout)
        .map(|(key, grace)| {
            format!(
                "{key} ({}) is shorter than a userinfo round trip may take (api.timeout = {}): a job let go after its code was presented ends interrupted and its user has to authenticate again",
                humantime::format_duration(grace),
                humantime::format_duration(timeout)
            )
        })
        .collect()
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
        Ok(config) => {
            let warnings: String = config
                .warnings()
                .iter()
                .map(|w| format!("# warning: {w}\n"))
                .collect();
            (format!("{warnings}{}", config.render_masked()), 0)
        }
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

pub(super) fn valid_topic_name(name: &str) -> bool {
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
