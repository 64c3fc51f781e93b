//! Why a configuration was refused: every message names the key or the environment variable
//! and never quotes a secret.

use super::origin::ENV_PREFIX;
use super::redact::is_secret_property;
use std::fmt;
use std::path::PathBuf;

/// Why a configuration was refused. Every message names the key or the environment variable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The text is not valid TOML.
    #[error("{origin}: invalid TOML at line {line}, column {column}{}: {message}", near.as_ref().map(|k| format!(" (near key {k})")).unwrap_or_default())]
    Syntax {
        /// The file (or `<config>` for text given directly).
        origin: String,
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// The key written on that line, when one could be read.
        near: Option<String>,
        /// The parser's message.
        message: String,
    },
    /// An environment variable could not be applied.
    #[error("{var}: {problem}")]
    Env {
        /// The variable's name.
        var: String,
        /// What is wrong, e.g. `not an integer`.
        problem: String,
    },
    /// A key that the configuration does not have (often a typo).
    #[error("unknown key {key}{}{}", expected.as_ref().map(|e| format!("; expected {e}")).unwrap_or_default(), from_env(env_var))]
    UnknownKey {
        /// The dotted path, e.g. `kafka.brokerz`.
        key: String,
        /// The keys allowed there, as serde lists them.
        expected: Option<String>,
        /// The environment variable that set it, if one did.
        env_var: Option<String>,
    },
    /// A required key is absent.
    #[error("missing key {key} (set it in the file or as {})", env_var_for(key))]
    MissingKey {
        /// The dotted path, e.g. `clients.acme.api_key`.
        key: String,
    },
    /// A value of the wrong type or form.
    #[error("{key}: {message}{}", from_env(env_var))]
    InvalidValue {
        /// The dotted path, e.g. `worker.max_in_flight`.
        key: String,
        /// What is wrong (never the value of a secret).
        message: String,
        /// The environment variable that set it, if one did.
        env_var: Option<String>,
    },
    /// Values that parse but break a rule of [`Config::validate`].
    #[error("invalid configuration: {}", join_violations(.0))]
    Invalid(Vec<Violation>),
}

/// One broken rule: the key and the rule, displayed as `worker.max_in_flight must be >= 1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The dotted path of the key.
    pub key: String,
    /// The rule it breaks, e.g. `must be >= 1`.
    pub rule: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.key, self.rule)
    }
}

pub(super) fn from_env(var: &Option<String>) -> String {
    var.as_ref()
        .map(|v| format!(" (set by {v})"))
        .unwrap_or_default()
}

/// The environment variable that sets a dotted key: `clients.acme.api_key` →
/// `SILENTAUTH__CLIENTS__ACME__API_KEY`.
pub fn env_var_for(key: &str) -> String {
    format!(
        "{ENV_PREFIX}__{}",
        key.replace('.', "__").to_ascii_uppercase()
    )
}

pub(super) fn join_violations(v: &[Violation]) -> String {
    v.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// A TOML syntax error located without quoting the offending line, which may hold a secret.
pub(super) fn syntax_error(origin: &str, text: &str, e: &toml::de::Error) -> ConfigError {
    let offset = e.span().map_or(0, |s| s.start).min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    let mut table = String::new();
    for l in text.lines().take(line - 1) {
        let l = l.trim();
        if l.starts_with('[') {
            table = l.trim_matches(|c| c == '[' || c == ']').trim().to_owned();
        }
    }
    let near = text
        .lines()
        .nth(line - 1)
        .and_then(|l| l.split_once('='))
        .map(|(k, _)| k.trim())
        .filter(|k| !k.is_empty() && !k.starts_with('#') && !k.starts_with('['))
        .map(|k| {
            if table.is_empty() {
                k.to_owned()
            } else {
                format!("{table}.{k}")
            }
        });
    ConfigError::Syntax {
        origin: origin.to_owned(),
        line,
        column,
        near,
        message: e.message().trim().to_owned(),
    }
}

pub(super) fn deserialize_error(
    e: serde_path_to_error::Error<toml::de::Error>,
    sources: &[(String, String)],
) -> ConfigError {
    let segments: Vec<String> = e.path().iter().map(ToString::to_string).collect();
    let key = segments.join(".");
    let message = e.inner().message().trim().to_owned();
    let env_var = sources
        .iter()
        .find(|(p, _)| key == *p || key.starts_with(&format!("{p}.")))
        .map(|(_, var)| var.clone());
    if let Some(rest) = message.strip_prefix("unknown field") {
        let expected = rest
            .split_once("expected ")
            .map(|(_, exp)| exp.to_owned())
            .or_else(|| {
                rest.contains("there are no fields")
                    .then(|| "no keys".into())
            });
        return ConfigError::UnknownKey {
            key,
            expected,
            env_var,
        };
    }
    if let Some(rest) = message.strip_prefix("missing field `") {
        let field = rest.split('`').next().unwrap_or(rest);
        let key = if key.is_empty() {
            field.to_owned()
        } else {
            format!("{key}.{field}")
        };
        return ConfigError::MissingKey { key };
    }
    let secret = match segments.as_slice() {
        [.., field] if matches!(field.as_str(), "client_secret" | "api_key") => true,
        [kafka, props, name, ..] if kafka == "kafka" && props == "properties" => {
            is_secret_property(name)
        }
        _ => false,
    };
    let message = if secret {
        "invalid value (not shown: the key holds a secret); expected a string".to_owned()
    } else {
        message
    };
    ConfigError::InvalidValue {
        key: if key.is_empty() { "<root>".into() } else { key },
        message,
        env_var,
    }
}
