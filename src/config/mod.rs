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

mod env;
mod error;
mod load;
mod origin;
mod redact;
mod sections;
mod telemetry;

pub use error::{env_var_for, ConfigError, Violation};
pub use load::check_config;
pub use origin::{DEFAULT_CONFIG_PATH, EMBEDDED_DEFAULT_TOML, ENV_PREFIX};
pub use redact::{is_secret_property, mask_url_credentials};
pub use sections::*;
pub use telemetry::{TelemetryConfig, PROTOCOLS, SAMPLERS};

#[cfg(test)]
mod tests {
    use super::env::*;
    use super::error::*;
    use super::load::valid_topic_name;
    use super::redact::mask_url_password;
    use super::sections::{default_base_url, default_brokers};
    use super::*;
    use toml::Table;

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

    #[test]
    fn acks_other_than_all_are_refused_naming_the_key() {
        for (acks, ok) in [("all", true), ("-1", true), ("1", false), ("0", false)] {
            let mut config = Config::from_sources(EMBEDDED_DEFAULT_TOML, Vec::new()).unwrap();
            config.kafka.properties.insert("acks".into(), acks.into());
            match config.validate() {
                Ok(()) => assert!(ok, "acks = {acks} accepted"),
                Err(e) => {
                    assert!(!ok, "acks = {acks}: {e}");
                    assert!(e.to_string().contains("kafka.properties.\"acks\""), "{e}");
                }
            }
        }
    }

    #[test]
    fn concurrency_is_adaptive_unless_fixed() {
        let config = Config::from_sources(EMBEDDED_DEFAULT_TOML, Vec::new()).unwrap();
        assert_eq!(config.worker.concurrency, ConcurrencyMode::Adaptive);
        let text =
            EMBEDDED_DEFAULT_TOML.replace("concurrency = \"adaptive\"", "concurrency = \"fixed\"");
        let config = Config::from_sources(&text, Vec::new()).unwrap();
        assert_eq!(config.worker.concurrency, ConcurrencyMode::Fixed);
        let text = text.replace("concurrency = \"fixed\"", "concurrency = \"auto\"");
        let e = Config::from_sources(&text, Vec::new())
            .unwrap_err()
            .to_string();
        assert!(e.contains("worker.concurrency"), "{e}");
    }
}
