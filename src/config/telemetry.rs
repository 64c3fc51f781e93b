//! The `telemetry` section (traces over OTLP), the standard `OTEL_*` variables that set it, and
//! its rules. Precedence, highest first: `SILENTAUTH__TELEMETRY__*`, `OTEL_*`, the TOML file, the
//! defaults. Traces are off unless an endpoint is configured.

use super::error::ConfigError;
use super::redact::mask_url_password;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;
use toml::{Table, Value};

/// Traces (docs/tracing.md).
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// The collector's base URL (`OTEL_EXPORTER_OTLP_ENDPOINT`); with `http/protobuf`,
    /// `/v1/traces` is appended. Empty: traces are off (unless `otlp_traces_endpoint` is set).
    #[serde(default)]
    pub otlp_endpoint: String,
    /// The full URL traces are sent to (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`), used as is; it
    /// wins over `otlp_endpoint`.
    #[serde(default)]
    pub otlp_traces_endpoint: String,
    /// `http/protobuf` (port 4318) or `grpc` (port 4317) (`OTEL_EXPORTER_OTLP_PROTOCOL`,
    /// `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`).
    #[serde(default = "default_protocol")]
    pub otlp_protocol: String,
    /// How long one export may take (`OTEL_EXPORTER_OTLP_TIMEOUT`, milliseconds there).
    #[serde(default = "default_export_timeout", with = "humantime_serde")]
    pub otlp_timeout: Duration,
    /// `service.name` of every span (`OTEL_SERVICE_NAME`).
    #[serde(default = "default_service_name")]
    pub service_name: String,
    /// More resource attributes, `key=value,key=value` (`OTEL_RESOURCE_ATTRIBUTES`).
    #[serde(default)]
    pub resource_attributes: String,
    /// `always_on`, `always_off`, `traceidratio`, `parentbased_always_on`,
    /// `parentbased_always_off` or `parentbased_traceidratio` (`OTEL_TRACES_SAMPLER`).
    #[serde(default = "default_sampler")]
    pub traces_sampler: String,
    /// The ratio of the `*traceidratio` samplers, 0 to 1 (`OTEL_TRACES_SAMPLER_ARG`).
    #[serde(default = "default_sampler_arg")]
    pub traces_sampler_arg: f64,
    /// True: no traces whatever else is set (`OTEL_SDK_DISABLED`).
    #[serde(default)]
    pub sdk_disabled: bool,
    /// Finished spans waiting for export; past it spans are dropped and counted
    /// (`OTEL_BSP_MAX_QUEUE_SIZE`).
    #[serde(default = "default_queue_size")]
    pub export_queue_size: usize,
    /// Spans per export request (`OTEL_BSP_MAX_EXPORT_BATCH_SIZE`).
    #[serde(default = "default_batch_size")]
    pub export_batch_size: usize,
    /// The longest a finished span waits before its batch is sent (`OTEL_BSP_SCHEDULE_DELAY`).
    #[serde(default = "default_schedule_delay", with = "humantime_serde")]
    pub export_delay: Duration,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        toml::from_str("").expect("every field has a default")
    }
}

impl fmt::Debug for TelemetryConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TelemetryConfig")
            .field("otlp_endpoint", &mask_url_password(&self.otlp_endpoint))
            .field(
                "otlp_traces_endpoint",
                &mask_url_password(&self.otlp_traces_endpoint),
            )
            .field("otlp_protocol", &self.otlp_protocol)
            .field("service_name", &self.service_name)
            .field("traces_sampler", &self.traces_sampler)
            .field("traces_sampler_arg", &self.traces_sampler_arg)
            .field("sdk_disabled", &self.sdk_disabled)
            .finish_non_exhaustive()
    }
}

/// The OTLP protocols the exporter speaks.
pub const PROTOCOLS: [&str; 2] = ["http/protobuf", "grpc"];

/// The samplers of `OTEL_TRACES_SAMPLER` the worker knows.
pub const SAMPLERS: [&str; 6] = [
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
];

impl TelemetryConfig {
    /// True when traces are exported: an endpoint is set and the SDK is not disabled.
    pub fn enabled(&self) -> bool {
        !self.sdk_disabled && !self.traces_url().is_empty()
    }

    /// The URL spans are sent to: the traces endpoint as is, else the generic endpoint with
    /// `/v1/traces` appended for `http/protobuf` (OTLP exporter spec); empty when neither is set.
    pub fn traces_url(&self) -> String {
        if !self.otlp_traces_endpoint.trim().is_empty() {
            return self.otlp_traces_endpoint.trim().to_owned();
        }
        let base = self.otlp_endpoint.trim();
        match (base.is_empty(), self.otlp_protocol.as_str()) {
            (true, _) => String::new(),
            (false, "grpc") => base.to_owned(),
            (false, _) => format!("{}/v1/traces", base.trim_end_matches('/')),
        }
    }

    /// The resource attributes as pairs; `Err` names the entry that is not `key=value`.
    pub fn resource_pairs(&self) -> Result<Vec<(String, String)>, String> {
        self.resource_attributes
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(|e| match e.split_once('=') {
                Some((k, v)) if !k.trim().is_empty() => {
                    Ok((k.trim().to_owned(), v.trim().to_owned()))
                }
                _ => Err(format!("'{e}' is not key=value")),
            })
            .collect()
    }

    /// Every broken rule as `(key, rule)`.
    pub(super) fn violations(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if !PROTOCOLS.contains(&self.otlp_protocol.as_str()) {
            out.push((
                "telemetry.otlp_protocol",
                format!("must be one of {PROTOCOLS:?}"),
            ));
        }
        if !SAMPLERS.contains(&self.traces_sampler.as_str()) {
            out.push((
                "telemetry.traces_sampler",
                format!("must be one of {SAMPLERS:?}"),
            ));
        }
        if !(0.0..=1.0).contains(&self.traces_sampler_arg) {
            out.push(("telemetry.traces_sampler_arg", "must be from 0 to 1".into()));
        }
        for (key, url) in [
            ("telemetry.otlp_endpoint", &self.otlp_endpoint),
            ("telemetry.otlp_traces_endpoint", &self.otlp_traces_endpoint),
        ] {
            let url = url.trim();
            let ok = url.is_empty()
                || url::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "http" | "https"));
            if !ok {
                out.push((key, "must be an http(s) URL".into()));
            }
        }
        if let Err(e) = self.resource_pairs() {
            out.push(("telemetry.resource_attributes", e));
        }
        if self.service_name.trim().is_empty() {
            out.push(("telemetry.service_name", "must not be empty".into()));
        }
        for (key, n) in [
            ("telemetry.export_queue_size", self.export_queue_size),
            ("telemetry.export_batch_size", self.export_batch_size),
        ] {
            if n == 0 {
                out.push((key, "must be > 0".into()));
            }
        }
        for (key, d) in [
            ("telemetry.otlp_timeout", self.otlp_timeout),
            ("telemetry.export_delay", self.export_delay),
        ] {
            if d.is_zero() {
                out.push((key, "must be > 0".into()));
            }
        }
        out
    }
}

/// How an `OTEL_*` value becomes a `telemetry` key's value.
#[derive(Clone, Copy)]
enum Conv {
    Str,
    Bool,
    Float,
    Int,
    Millis,
}

/// The standard variables and the keys they set. The first of two variables naming one key
/// wins (the traces-specific protocol over the generic one).
const OTEL_VARS: [(&str, &str, Conv); 13] = [
    ("OTEL_EXPORTER_OTLP_ENDPOINT", "otlp_endpoint", Conv::Str),
    (
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "otlp_traces_endpoint",
        Conv::Str,
    ),
    (
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "otlp_protocol",
        Conv::Str,
    ),
    ("OTEL_EXPORTER_OTLP_PROTOCOL", "otlp_protocol", Conv::Str),
    ("OTEL_EXPORTER_OTLP_TIMEOUT", "otlp_timeout", Conv::Millis),
    ("OTEL_SERVICE_NAME", "service_name", Conv::Str),
    ("OTEL_RESOURCE_ATTRIBUTES", "resource_attributes", Conv::Str),
    ("OTEL_TRACES_SAMPLER", "traces_sampler", Conv::Str),
    ("OTEL_TRACES_SAMPLER_ARG", "traces_sampler_arg", Conv::Float),
    ("OTEL_SDK_DISABLED", "sdk_disabled", Conv::Bool),
    ("OTEL_BSP_MAX_QUEUE_SIZE", "export_queue_size", Conv::Int),
    (
        "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
        "export_batch_size",
        Conv::Int,
    ),
    ("OTEL_BSP_SCHEDULE_DELAY", "export_delay", Conv::Millis),
];

/// True for a variable [`overlay_otel_env`] reads.
pub(super) fn is_otel_var(name: &str) -> bool {
    OTEL_VARS.iter().any(|(v, _, _)| *v == name)
}

/// Sets the `telemetry` keys of `root` from the standard `OTEL_*` variables among `env` (empty
/// values are unset, as the specification says); the `SILENTAUTH__*` overlay runs after and wins.
pub(super) fn overlay_otel_env(
    root: &mut Table,
    env: &[(String, String)],
) -> Result<(), ConfigError> {
    let mut set = Vec::new();
    for (var, key, conv) in OTEL_VARS {
        let Some((_, raw)) = env.iter().find(|(n, _)| n == var) else {
            continue;
        };
        let raw = raw.trim();
        if raw.is_empty() || set.contains(&key) {
            continue;
        }
        let err = |problem: &str| ConfigError::Env {
            var: var.to_owned(),
            problem: problem.to_owned(),
        };
        let value = match conv {
            Conv::Str => Value::String(raw.to_owned()),
            Conv::Bool => Value::Boolean(raw.eq_ignore_ascii_case("true")),
            Conv::Float => Value::Float(raw.parse().map_err(|_| err("not a number"))?),
            Conv::Int => Value::Integer(raw.parse().map_err(|_| err("not an integer"))?),
            Conv::Millis => {
                let ms: u64 = raw
                    .parse()
                    .map_err(|_| err("not a number of milliseconds"))?;
                Value::String(format!("{ms}ms"))
            }
        };
        let section = root
            .entry("telemetry")
            .or_insert_with(|| Value::Table(Table::new()));
        let Value::Table(section) = section else {
            return Err(err("telemetry in the file is not a section"));
        };
        section.insert(key.to_owned(), value);
        set.push(key);
    }
    Ok(())
}

fn default_protocol() -> String {
    "http/protobuf".into()
}
fn default_export_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_service_name() -> String {
    "silentauth-worker".into()
}
fn default_sampler() -> String {
    "parentbased_always_on".into()
}
const fn default_sampler_arg() -> f64 {
    1.0
}
const fn default_queue_size() -> usize {
    2048
}
const fn default_batch_size() -> usize {
    512
}
fn default_schedule_delay() -> Duration {
    Duration::from_secs(1)
}

#[cfg(test)]
mod tests {
    use super::super::Config;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn off_unless_an_endpoint_is_set() {
        let c = Config::from_sources("", env(&[])).unwrap();
        assert!(!c.telemetry.enabled());
        let c = Config::from_sources("", env(&[("OTEL_SERVICE_NAME", "x")])).unwrap();
        assert!(!c.telemetry.enabled());
        assert_eq!(c.telemetry.service_name, "x");
    }

    #[test]
    fn the_generic_endpoint_gets_the_signal_path_for_http_only() {
        let c = Config::from_sources(
            "",
            env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")]),
        )
        .unwrap();
        assert!(c.telemetry.enabled());
        assert_eq!(c.telemetry.traces_url(), "http://collector:4318/v1/traces");
        let c = Config::from_sources(
            "",
            env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ]),
        )
        .unwrap();
        assert_eq!(c.telemetry.traces_url(), "http://collector:4317");
        let c = Config::from_sources(
            "",
            env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a:4318"),
                ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://b:9/x"),
            ]),
        )
        .unwrap();
        assert_eq!(c.telemetry.traces_url(), "http://b:9/x");
    }

    #[test]
    fn precedence_is_silentauth_env_then_otel_env_then_toml() {
        let toml = "[telemetry]\nservice_name = \"file\"\ntraces_sampler_arg = 0.5\n";
        let c = Config::from_sources(toml, env(&[])).unwrap();
        assert_eq!(c.telemetry.service_name, "file");
        let c = Config::from_sources(toml, env(&[("OTEL_SERVICE_NAME", "otel")])).unwrap();
        assert_eq!(c.telemetry.service_name, "otel");
        let c = Config::from_sources(
            toml,
            env(&[
                ("OTEL_SERVICE_NAME", "otel"),
                ("SILENTAUTH__TELEMETRY__SERVICE_NAME", "ours"),
                ("OTEL_TRACES_SAMPLER_ARG", "0.01"),
            ]),
        )
        .unwrap();
        assert_eq!(c.telemetry.service_name, "ours");
        assert_eq!(c.telemetry.traces_sampler_arg, 0.01);
    }

    #[test]
    fn bad_values_name_the_key_or_the_variable() {
        let e = Config::from_sources("", env(&[("OTEL_TRACES_SAMPLER", "sometimes")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("telemetry.traces_sampler"), "{e}");
        let e = Config::from_sources("", env(&[("OTEL_TRACES_SAMPLER_ARG", "half")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("OTEL_TRACES_SAMPLER_ARG"), "{e}");
        let e = Config::from_sources("", env(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("telemetry.otlp_protocol"), "{e}");
        let e = Config::from_sources("[telemetry]\nresource_attributes = \"a=1,b\"\n", env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("telemetry.resource_attributes"), "{e}");
    }

    #[test]
    fn sdk_disabled_turns_it_off() {
        let c = Config::from_sources(
            "",
            env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                ("OTEL_SDK_DISABLED", "TRUE"),
            ]),
        )
        .unwrap();
        assert!(!c.telemetry.enabled());
    }
}
