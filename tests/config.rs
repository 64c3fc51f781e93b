//! Configuration through the public API: the shipped default file, the environment overlay,
//! unknown keys, validation messages and secret masking (docs/contract.md).

use silentauth_worker::config::{
    check_config, Config, ConfigError, Delivery, RateLimitScope, EMBEDDED_DEFAULT_TOML,
};
use std::time::Duration;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The embedded default file with `pairs` as environment.
fn with_env(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
    Config::from_sources(EMBEDDED_DEFAULT_TOML, env(pairs))
}

fn error_of(result: Result<Config, ConfigError>) -> String {
    match result {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn default_file_loads_validates_and_points_at_tyntec() {
    let config = with_env(&[]).expect("config/default.toml is valid");
    assert_eq!(config.kafka.brokers, "localhost:9092");
    assert_eq!(config.api.base_url, "https://api.tyntec.com/silent-auth/v1");
    assert_eq!(config.topics.jobs, "silentauth.jobs");
    assert_eq!(config.topics.results, "silentauth.results");
    assert_eq!(config.topics.dead_letter, "silentauth.jobs.dlq");
    assert_eq!(config.kafka.commit_interval, Duration::from_secs(1));
    assert_eq!(config.admin.listen, "127.0.0.1:9464");
    assert_eq!(config.rate_limit.scope, RateLimitScope::Instance);
    assert_eq!(config.worker.delivery, Delivery::AtLeastOnce);
    let default = &config.clients["default"];
    assert_eq!(default.client_id, "client");
    assert_eq!(default.client_secret.expose(), "12345");
    assert!(default.burst >= 1);
}

#[test]
fn every_contract_key_is_documented_in_the_default_file() {
    let keys = [
        "brokers",
        "group_id",
        "commit_interval",
        "connect_timeout",
        "[kafka.properties]",
        "jobs",
        "results",
        "dead_letter",
        "base_url",
        "timeout",
        "client_id",
        "client_secret",
        "api_key",
        "requests_per_second",
        "burst",
        "max_attempts",
        "initial_backoff",
        "max_backoff",
        "max_elapsed",
        "userinfo_max_elapsed",
        "max_retry_after",
        "max_in_flight",
        "code_ttl",
        "delivery",
        "revoke_grace",
        "shutdown_grace",
        "idempotency_cache_size",
        "idempotency_cache_bytes",
        "warmup_margin",
        "[worker.breaker]",
        "consecutive",
        "dead_letter_ratio",
        "window",
        "probe_interval",
        "scope",
        "listen",
    ];
    let lines: Vec<&str> = EMBEDDED_DEFAULT_TOML.lines().collect();
    for key in keys {
        let at = lines
            .iter()
            .position(|l| {
                let l = l.trim_start_matches("# ");
                l.starts_with(&format!("{key} =")) || l == key
            })
            .unwrap_or_else(|| panic!("{key} is not in config/default.toml"));
        assert!(
            at > 0 && lines[at - 1].starts_with('#'),
            "{key} has no comment above it"
        );
    }
}

#[test]
fn load_reads_the_given_file_and_names_a_missing_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("worker.toml");
    std::fs::write(
        &path,
        "[kafka]\nbrokers = \"b1:9092,b2:9092\"\n[worker]\nmax_in_flight = 8\n",
    )
    .unwrap();
    let config = Config::load(Some(&path)).unwrap();
    assert_eq!(config.kafka.brokers, "b1:9092,b2:9092");
    assert_eq!(config.worker.max_in_flight, 8);

    let missing = dir.path().join("nope.toml");
    let message = Config::load(Some(&missing)).unwrap_err().to_string();
    assert!(message.contains("nope.toml"), "{message}");
}

#[test]
fn load_without_a_path_uses_the_default_file() {
    // Tests run in the crate directory, where config/default.toml exists.
    let config = Config::load(None).unwrap();
    assert!(config.clients.contains_key("default"));
}

#[test]
fn env_values_land_with_the_type_of_their_key() {
    let config = with_env(&[
        ("SILENTAUTH__WORKER__MAX_IN_FLIGHT", "64"),
        ("SILENTAUTH__WORKER__IDEMPOTENCY_CACHE_SIZE", "500"),
        ("SILENTAUTH__RETRY__MAX_ATTEMPTS", "7"),
        ("SILENTAUTH__RETRY__INITIAL_BACKOFF", "250ms"),
        ("SILENTAUTH__RETRY__USERINFO_MAX_ELAPSED", "5m"),
        ("SILENTAUTH__WORKER__CODE_TTL", "2m"),
        ("SILENTAUTH__CLIENTS__DEFAULT__REQUESTS_PER_SECOND", "2.5"),
        ("SILENTAUTH__CLIENTS__DEFAULT__BURST", "3"),
        ("SILENTAUTH__KAFKA__GROUP_ID", "123"),
        ("SILENTAUTH__KAFKA__BROKERS", "127.0.0.1:9092"),
        (
            "SILENTAUTH__API__BASE_URL",
            "http://127.0.0.1:8080/silent-auth/v1",
        ),
        ("SILENTAUTH__WORKER__DELIVERY", "exactly_once"),
        ("SILENTAUTH__RATE_LIMIT__SCOPE", "partition_share"),
        ("SILENTAUTH__ADMIN__LISTEN", "0.0.0.0:9000"),
    ])
    .unwrap();
    assert_eq!(config.worker.max_in_flight, 64);
    assert_eq!(config.worker.idempotency_cache_size, 500);
    assert_eq!(config.retry.max_attempts, 7);
    assert_eq!(config.retry.initial_backoff, Duration::from_millis(250));
    assert_eq!(config.retry.userinfo_max_elapsed, Duration::from_secs(300));
    assert_eq!(config.worker.code_ttl, Duration::from_secs(120));
    assert_eq!(config.clients["default"].requests_per_second, Some(2.5));
    assert_eq!(config.clients["default"].burst, 3);
    assert_eq!(config.kafka.group_id, "123");
    assert_eq!(config.kafka.brokers, "127.0.0.1:9092");
    assert_eq!(config.api.base_url, "http://127.0.0.1:8080/silent-auth/v1");
    assert_eq!(config.worker.delivery, Delivery::ExactlyOnce);
    assert_eq!(config.rate_limit.scope, RateLimitScope::PartitionShare);
    assert_eq!(config.admin.listen, "0.0.0.0:9000");
}

#[test]
fn env_names_are_case_insensitive_and_integers_fit_float_keys() {
    let config = with_env(&[
        ("silentauth__worker__max_in_flight", "5"),
        ("SilentAuth__Clients__Default__Requests_Per_Second", "10"),
    ])
    .unwrap();
    assert_eq!(config.worker.max_in_flight, 5);
    assert_eq!(config.clients["default"].requests_per_second, Some(10.0));
}

#[test]
fn env_overrides_keys_set_in_the_file_and_keys_absent_from_it() {
    // The file has no [worker] and a burst; the environment supplies both kinds.
    let text =
        "[clients.default]\nclient_id = \"c\"\nclient_secret = \"s\"\napi_key = \"k\"\nburst = 2\n";
    let config = Config::from_sources(
        text,
        env(&[
            ("SILENTAUTH__CLIENTS__DEFAULT__BURST", "9"),
            ("SILENTAUTH__WORKER__MAX_IN_FLIGHT", "3"),
            ("SILENTAUTH__KAFKA__COMMIT_INTERVAL", "250ms"),
        ]),
    )
    .unwrap();
    assert_eq!(config.clients["default"].burst, 9);
    assert_eq!(config.worker.max_in_flight, 3);
    assert_eq!(config.kafka.commit_interval, Duration::from_millis(250));
}

#[test]
fn a_client_profile_can_be_created_from_env_alone() {
    let config = with_env(&[
        ("SILENTAUTH__CLIENTS__ACME_EU__CLIENT_ID", "acme"),
        ("SILENTAUTH__CLIENTS__ACME_EU__CLIENT_SECRET", "acme-secret"),
        ("SILENTAUTH__CLIENTS__ACME_EU__API_KEY", "acme-key"),
        ("SILENTAUTH__CLIENTS__ACME_EU__REQUESTS_PER_SECOND", "0.5"),
        ("SILENTAUTH__CLIENTS__ACME_EU__BURST", "4"),
    ])
    .unwrap();
    let acme = &config.clients["acme_eu"];
    assert_eq!(acme.client_id, "acme");
    assert_eq!(acme.client_secret.expose(), "acme-secret");
    assert_eq!(acme.api_key.expose(), "acme-key");
    assert_eq!(acme.requests_per_second, Some(0.5));
    assert_eq!(acme.burst, 4);
    assert!(config.clients.contains_key("default"));
}

#[test]
fn an_incomplete_env_profile_names_the_missing_key_and_its_variable() {
    let message = error_of(with_env(&[(
        "SILENTAUTH__CLIENTS__ACME__CLIENT_ID",
        "acme",
    )]));
    assert!(
        message.contains("missing key clients.acme.")
            && message.contains("SILENTAUTH__CLIENTS__ACME__"),
        "{message}"
    );
}

#[test]
fn env_sets_kafka_properties_with_dots() {
    let text =
        "[kafka.properties]\n\"queue.buffering.max.ms\" = 5\n\"enable.idempotence\" = true\n";
    let config = Config::from_sources(
        text,
        env(&[
            ("SILENTAUTH__KAFKA__PROPERTIES__SASL_MECHANISM", "PLAIN"),
            (
                "SILENTAUTH__KAFKA__PROPERTIES__SECURITY_PROTOCOL",
                "SASL_SSL",
            ),
            (
                "SILENTAUTH__KAFKA__PROPERTIES__QUEUE_BUFFERING_MAX_MS",
                "20",
            ),
        ]),
    )
    .unwrap();
    let props = &config.kafka.properties;
    assert_eq!(props["sasl.mechanism"], "PLAIN");
    assert_eq!(props["security.protocol"], "SASL_SSL");
    // A number in the environment stays the property's string; bare file values become strings.
    assert_eq!(props["queue.buffering.max.ms"], "20");
    assert_eq!(props["enable.idempotence"], "true");
    assert_eq!(props.len(), 4);
}

#[test]
fn env_overrides_a_file_property_spelled_with_underscores() {
    let text = "[kafka.properties]\n\"ssl_engine_id\" = \"a\"\n";
    let config = Config::from_sources(
        text,
        env(&[("SILENTAUTH__KAFKA__PROPERTIES__SSL_ENGINE_ID", "b")]),
    )
    .unwrap();
    assert_eq!(config.kafka.properties["ssl_engine_id"], "b");
    assert_eq!(config.kafka.properties.len(), 1);
}

#[test]
fn unrelated_variables_are_ignored() {
    let config = with_env(&[
        ("PATH", "/usr/bin"),
        ("SILENTAUTH_LOG", "debug"),
        ("SILENTAUTHX__WORKER__MAX_IN_FLIGHT", "x"),
    ])
    .unwrap();
    assert_eq!(config.worker.max_in_flight, 1024);
}

#[test]
fn unknown_keys_are_rejected_by_name() {
    let cases = [
        ("surprise = 1\n", "unknown key surprise"),
        ("[kafka]\nbrokerz = \"x\"\n", "unknown key kafka.brokerz"),
        ("[workers]\nmax_in_flight = 1\n", "unknown key workers"),
        (
            "[clients.acme]\nclient_id = \"a\"\nclient_secret = \"s\"\napi_key = \"k\"\nrps = 5\n",
            "unknown key clients.acme.rps",
        ),
    ];
    for (text, expected) in cases {
        let message = error_of(Config::from_sources(text, env(&[])));
        assert!(message.contains(expected), "{text:?}: {message}");
    }
    // The message lists what was expected instead.
    let message = error_of(Config::from_sources("[kafka]\nbrokerz = \"x\"\n", env(&[])));
    assert!(message.contains("`brokers`"), "{message}");
}

#[test]
fn an_unknown_key_from_env_names_the_variable() {
    let message = error_of(with_env(&[("SILENTAUTH__KAFKA__BROKERZ", "x")]));
    assert!(message.contains("unknown key kafka.brokerz"), "{message}");
    assert!(message.contains("SILENTAUTH__KAFKA__BROKERZ"), "{message}");
}

#[test]
fn bad_env_values_name_the_variable() {
    let cases = [
        (
            "SILENTAUTH__WORKER__MAX_IN_FLIGHT",
            "many",
            "SILENTAUTH__WORKER__MAX_IN_FLIGHT: not an integer",
        ),
        (
            "SILENTAUTH__RETRY__MAX_ATTEMPTS",
            "2.5",
            "SILENTAUTH__RETRY__MAX_ATTEMPTS: not an integer",
        ),
        (
            "SILENTAUTH__CLIENTS__DEFAULT__REQUESTS_PER_SECOND",
            "fast",
            "SILENTAUTH__CLIENTS__DEFAULT__REQUESTS_PER_SECOND: not a number",
        ),
        (
            "SILENTAUTH__CLIENTS__DEFAULT__BURST",
            "",
            "SILENTAUTH__CLIENTS__DEFAULT__BURST: not an integer",
        ),
        (
            "SILENTAUTH__WORKER__CODE_TTL",
            "ten minutes",
            "SILENTAUTH__WORKER__CODE_TTL",
        ),
        (
            "SILENTAUTH__WORKER__MAX_IN_FLIGHT",
            "-1",
            "SILENTAUTH__WORKER__MAX_IN_FLIGHT",
        ),
        (
            "SILENTAUTH__KAFKA",
            "x",
            "SILENTAUTH__KAFKA: names a section",
        ),
        (
            "SILENTAUTH__CLIENTS__DEFAULT",
            "x",
            "SILENTAUTH__CLIENTS__DEFAULT: names a section",
        ),
        (
            "SILENTAUTH__KAFKA__BROKERS__HOST",
            "x",
            "SILENTAUTH__KAFKA__BROKERS__HOST: kafka.brokers is a value",
        ),
        (
            "SILENTAUTH__KAFKA____BROKERS",
            "x",
            "SILENTAUTH__KAFKA____BROKERS: empty name segment",
        ),
    ];
    for (var, value, expected) in cases {
        let message = error_of(with_env(&[(var, value)]));
        assert!(message.contains(expected), "{var}={value:?}: {message}");
    }
    // The key is named too when the value reached the typed config.
    let message = error_of(with_env(&[("SILENTAUTH__WORKER__CODE_TTL", "ten minutes")]));
    assert!(message.starts_with("worker.code_ttl: "), "{message}");
}

#[test]
fn wrong_types_in_the_file_name_the_key() {
    let message = error_of(Config::from_sources(
        "[worker]\nmax_in_flight = \"lots\"\n",
        env(&[]),
    ));
    assert!(
        message.starts_with("worker.max_in_flight: invalid type"),
        "{message}"
    );
    let message = error_of(Config::from_sources(
        "[rate_limit]\nscope = \"global\"\n",
        env(&[]),
    ));
    assert!(message.starts_with("rate_limit.scope: "), "{message}");
}

#[test]
fn human_durations_are_accepted() {
    let text = "[retry]\ninitial_backoff = \"250ms\"\nmax_backoff = \"30s\"\nmax_elapsed = \"2m\"\n[worker]\ncode_ttl = \"1h 30m\"\n";
    let config = Config::from_sources(text, env(&[])).unwrap();
    assert_eq!(config.retry.initial_backoff, Duration::from_millis(250));
    assert_eq!(config.retry.max_backoff, Duration::from_secs(30));
    assert_eq!(config.retry.max_elapsed, Duration::from_secs(120));
    assert_eq!(config.worker.code_ttl, Duration::from_secs(5400));
}

#[test]
fn every_validation_rule_names_its_key() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "SILENTAUTH__KAFKA__BROKERS",
            " ",
            "kafka.brokers must not be empty",
        ),
        (
            "SILENTAUTH__KAFKA__BROKERS",
            "a:1,,b:2",
            "kafka.brokers must not have an empty entry",
        ),
        (
            "SILENTAUTH__KAFKA__GROUP_ID",
            "",
            "kafka.group_id must not be empty",
        ),
        (
            "SILENTAUTH__KAFKA__COMMIT_INTERVAL",
            "0s",
            "kafka.commit_interval must be > 0",
        ),
        (
            "SILENTAUTH__KAFKA__CONNECT_TIMEOUT",
            "0s",
            "kafka.connect_timeout must be > 0",
        ),
        (
            "SILENTAUTH__TOPICS__JOBS",
            "",
            "topics.jobs must be 1..249 characters",
        ),
        (
            "SILENTAUTH__TOPICS__DEAD_LETTER",
            "dead letters",
            "topics.dead_letter must be 1..249 characters",
        ),
        (
            "SILENTAUTH__TOPICS__RESULTS",
            "silentauth.jobs",
            "topics.results must differ from topics.jobs",
        ),
        (
            "SILENTAUTH__TOPICS__DEAD_LETTER",
            "silentauth.results",
            "topics.dead_letter must differ from topics.results",
        ),
        (
            "SILENTAUTH__API__BASE_URL",
            "ftp://example.com/v1",
            "api.base_url must be an absolute http(s) URL",
        ),
        (
            "SILENTAUTH__API__BASE_URL",
            "/silent-auth/v1",
            "api.base_url must be an absolute http(s) URL",
        ),
        (
            "SILENTAUTH__API__BASE_URL",
            "not a url",
            "api.base_url must be an absolute http(s) URL",
        ),
        ("SILENTAUTH__API__TIMEOUT", "0ms", "api.timeout must be > 0"),
        (
            "SILENTAUTH__CLIENTS__DEFAULT__CLIENT_ID",
            "",
            "clients.default.client_id must not be empty",
        ),
        (
            "SILENTAUTH__CLIENTS__DEFAULT__CLIENT_SECRET",
            "",
            "clients.default.client_secret must not be empty",
        ),
        (
            "SILENTAUTH__CLIENTS__DEFAULT__API_KEY",
            "",
            "clients.default.api_key must not be empty",
        ),
        (
            "SILENTAUTH__CLIENTS__DEFAULT__REQUESTS_PER_SECOND",
            "0",
            "clients.default.requests_per_second must be > 0",
        ),
        (
            "SILENTAUTH__CLIENTS__DEFAULT__REQUESTS_PER_SECOND",
            "-2",
            "clients.default.requests_per_second must be > 0",
        ),
        (
            "SILENTAUTH__CLIENTS__DEFAULT__REQUESTS_PER_SECOND",
            "NaN",
            "clients.default.requests_per_second must be a finite number",
        ),
        (
            "SILENTAUTH__CLIENTS__DEFAULT__REQUESTS_PER_SECOND",
            "inf",
            "clients.default.requests_per_second must be a finite number",
        ),
        (
            "SILENTAUTH__CLIENTS__DEFAULT__BURST",
            "0",
            "clients.default.burst must be >= 1",
        ),
        (
            "SILENTAUTH__RETRY__MAX_ATTEMPTS",
            "0",
            "retry.max_attempts must be >= 1",
        ),
        (
            "SILENTAUTH__RETRY__INITIAL_BACKOFF",
            "0s",
            "retry.initial_backoff must be > 0",
        ),
        (
            "SILENTAUTH__RETRY__INITIAL_BACKOFF",
            "6s",
            "retry.initial_backoff must be <= retry.max_backoff",
        ),
        (
            "SILENTAUTH__RETRY__MAX_ELAPSED",
            "0s",
            "retry.max_elapsed must be > 0",
        ),
        (
            "SILENTAUTH__RETRY__USERINFO_MAX_ELAPSED",
            "10s",
            "retry.userinfo_max_elapsed must be >= retry.max_elapsed",
        ),
        (
            "SILENTAUTH__RETRY__MAX_RETRY_AFTER",
            "31s",
            "retry.max_retry_after must be <= retry.max_elapsed",
        ),
        (
            "SILENTAUTH__RETRY__MAX_RETRY_AFTER",
            "forever",
            "retry.max_retry_after",
        ),
        (
            "SILENTAUTH__WORKER__MAX_IN_FLIGHT",
            "0",
            "worker.max_in_flight must be >= 1",
        ),
        (
            "SILENTAUTH__WORKER__CODE_TTL",
            "0s",
            "worker.code_ttl must be > 0",
        ),
        (
            "SILENTAUTH__WORKER__IDEMPOTENCY_CACHE_SIZE",
            "0",
            "worker.idempotency_cache_size must be >= 1",
        ),
        (
            "SILENTAUTH__WORKER__BREAKER__DEAD_LETTER_RATIO",
            "0",
            "worker.breaker.dead_letter_ratio must be > 0 and <= 1",
        ),
        (
            "SILENTAUTH__WORKER__BREAKER__DEAD_LETTER_RATIO",
            "1.5",
            "worker.breaker.dead_letter_ratio must be > 0 and <= 1",
        ),
        (
            "SILENTAUTH__WORKER__BREAKER__DEAD_LETTER_RATIO",
            "-0.5",
            "worker.breaker.dead_letter_ratio must be > 0 and <= 1",
        ),
        (
            "SILENTAUTH__WORKER__BREAKER__DEAD_LETTER_RATIO",
            "NaN",
            "worker.breaker.dead_letter_ratio must be > 0 and <= 1",
        ),
        (
            "SILENTAUTH__WORKER__BREAKER__WINDOW",
            "0",
            "worker.breaker.window must be >= 1",
        ),
        (
            "SILENTAUTH__WORKER__BREAKER__PROBE_INTERVAL",
            "0s",
            "worker.breaker.probe_interval must be > 0",
        ),
        (
            "SILENTAUTH__ADMIN__LISTEN",
            "localhost",
            "admin.listen must be a socket address",
        ),
        (
            "SILENTAUTH__ADMIN__LISTEN",
            "127.0.0.1",
            "admin.listen must be a socket address",
        ),
    ];
    for (var, value, expected) in cases {
        let message = error_of(with_env(&[(var, value)]));
        assert!(message.contains(expected), "{var}={value:?}: {message}");
    }
}

#[test]
fn validation_reports_every_broken_rule() {
    let result = with_env(&[
        ("SILENTAUTH__WORKER__MAX_IN_FLIGHT", "0"),
        ("SILENTAUTH__RETRY__MAX_ATTEMPTS", "0"),
    ]);
    match result {
        Err(ConfigError::Invalid(violations)) => {
            let keys: Vec<&str> = violations.iter().map(|v| v.key.as_str()).collect();
            assert_eq!(keys, ["retry.max_attempts", "worker.max_in_flight"]);
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn the_built_in_defaults_are_valid_without_a_file() {
    let config = Config::from_sources("", env(&[])).unwrap();
    assert_eq!(config.api.base_url, "https://api.tyntec.com/silent-auth/v1");
    assert!(config.clients.is_empty());
    Config::default().validate().unwrap();
}

const SECRETS: [&str; 5] = [
    "Zq7-client-secret-XX",
    "Zq7-api-key-YY",
    "Zq7-sasl-password-ZZ",
    "Zq7-ssl-key-password-WW",
    "Zq7-url-password-VV",
];

fn config_with_secrets() -> Config {
    with_env(&[
        ("SILENTAUTH__CLIENTS__DEFAULT__CLIENT_SECRET", SECRETS[0]),
        ("SILENTAUTH__CLIENTS__DEFAULT__API_KEY", SECRETS[1]),
        ("SILENTAUTH__KAFKA__PROPERTIES__SASL_PASSWORD", SECRETS[2]),
        (
            "SILENTAUTH__KAFKA__PROPERTIES__SSL_KEY_PASSWORD",
            SECRETS[3],
        ),
        (
            "SILENTAUTH__KAFKA__PROPERTIES__SASL_USERNAME",
            "worker-user",
        ),
        (
            "SILENTAUTH__API__BASE_URL",
            "https://user:Zq7-url-password-VV@api.example.com/silent-auth/v1",
        ),
    ])
    .unwrap()
}

#[test]
fn debug_and_render_never_show_a_secret() {
    let config = config_with_secrets();
    // The values did arrive.
    assert_eq!(config.clients["default"].api_key.expose(), SECRETS[1]);
    assert_eq!(config.kafka.properties["sasl.password"], SECRETS[2]);

    let debug = format!("{config:?}");
    let pretty = format!("{config:#?}");
    let rendered = config.render_masked();
    for text in [&debug, &pretty, &rendered] {
        for secret in SECRETS {
            assert!(!text.contains(secret), "{secret} leaked:\n{text}");
        }
        assert!(text.contains("worker-user"), "non-secrets stay visible");
    }
    assert!(
        rendered.contains("\"sasl.password\" = \"***\""),
        "{rendered}"
    );
    assert!(
        rendered.contains("\"ssl.key.password\" = \"***\""),
        "{rendered}"
    );
    assert!(rendered.contains("client_secret = \"***\""), "{rendered}");
    assert!(rendered.contains("api_key = \"***\""), "{rendered}");
}

#[test]
fn the_rendered_config_is_valid_toml_with_the_same_settings() {
    let config = with_env(&[
        ("SILENTAUTH__WORKER__MAX_IN_FLIGHT", "64"),
        ("SILENTAUTH__CLIENTS__DEFAULT__REQUESTS_PER_SECOND", "2.5"),
        ("SILENTAUTH__KAFKA__PROPERTIES__LINGER_MS", "5"),
    ])
    .unwrap();
    let again = Config::from_sources(&config.render_masked(), env(&[])).unwrap();
    assert_eq!(again.worker.max_in_flight, 64);
    assert_eq!(again.clients["default"].requests_per_second, Some(2.5));
    assert_eq!(again.kafka.properties["linger.ms"], "5");
    assert_eq!(again.retry.initial_backoff, config.retry.initial_backoff);
    assert_eq!(again.worker.code_ttl, config.worker.code_ttl);
    assert_eq!(again.clients["default"].client_secret.expose(), "***");
}

#[test]
fn errors_never_quote_a_secret() {
    // A secret of the wrong type.
    let text = "[clients.a]\nclient_id = \"a\"\nclient_secret = 918273645\napi_key = \"k\"\n";
    let message = error_of(Config::from_sources(text, env(&[])));
    assert!(message.contains("clients.a.client_secret"), "{message}");
    assert!(!message.contains("918273645"), "{message}");
    // A syntax error on a secret's line.
    let text =
        "[clients.a]\nclient_id = \"a\"\nclient_secret = \"Zq7-unterminated\napi_key = \"k\"\n";
    let message = error_of(Config::from_sources(text, env(&[])));
    assert!(message.contains("line 3"), "{message}");
    assert!(message.contains("clients.a.client_secret"), "{message}");
    assert!(!message.contains("Zq7"), "{message}");
}

#[test]
fn check_config_prints_masked_config_or_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        EMBEDDED_DEFAULT_TOML.replace("\"12345\"", "\"Zq7-file-secret\""),
    )
    .unwrap();
    let (out, code) = check_config(Some(&good));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("client_secret = \"***\""), "{out}");
    assert!(!out.contains("Zq7-file-secret"), "{out}");

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[worker]\nmax_in_flight = 0\n").unwrap();
    let (out, code) = check_config(Some(&bad));
    assert_eq!(code, 2);
    assert!(out.contains("worker.max_in_flight must be >= 1"), "{out}");

    let (out, code) = check_config(Some(&dir.path().join("missing.toml")));
    assert_eq!(code, 2);
    assert!(out.contains("missing.toml"), "{out}");
}

#[test]
fn breaker_keys_default_load_from_the_file_and_the_environment() {
    let defaults = with_env(&[]).unwrap().worker.breaker;
    assert_eq!(defaults.consecutive, 20);
    assert_eq!(defaults.dead_letter_ratio, 0.5);
    assert_eq!(defaults.window, 100);
    assert_eq!(defaults.probe_interval, Duration::from_secs(30));
    let built_in = Config::from_sources("", env(&[])).unwrap().worker.breaker;
    assert_eq!(
        (
            built_in.consecutive,
            built_in.window,
            built_in.probe_interval
        ),
        (20, 100, Duration::from_secs(30))
    );

    let file = "[worker.breaker]\nconsecutive = 5\ndead_letter_ratio = 0.8\nwindow = 10\nprobe_interval = \"300ms\"\n";
    let b = Config::from_sources(file, env(&[])).unwrap().worker.breaker;
    assert_eq!(b.consecutive, 5);
    assert_eq!(b.dead_letter_ratio, 0.8);
    assert_eq!(b.window, 10);
    assert_eq!(b.probe_interval, Duration::from_millis(300));

    // Each trigger can be turned off: consecutive = 0, dead_letter_ratio = 1 (an integer fits).
    let b = with_env(&[
        ("SILENTAUTH__WORKER__BREAKER__CONSECUTIVE", "0"),
        ("SILENTAUTH__WORKER__BREAKER__DEAD_LETTER_RATIO", "1"),
        ("SILENTAUTH__WORKER__BREAKER__WINDOW", "7"),
        ("silentauth__worker__breaker__probe_interval", "2m"),
    ])
    .unwrap()
    .worker
    .breaker;
    assert_eq!(b.consecutive, 0);
    assert_eq!(b.dead_letter_ratio, 1.0);
    assert_eq!(b.window, 7);
    assert_eq!(b.probe_interval, Duration::from_secs(120));

    let message = error_of(with_env(&[(
        "SILENTAUTH__WORKER__BREAKER__CONSECUTIVE",
        "many",
    )]));
    assert!(
        message.contains("SILENTAUTH__WORKER__BREAKER__CONSECUTIVE"),
        "{message}"
    );
    let message = error_of(Config::from_sources(
        "[worker.breaker]\nconsecutiv = 5\n",
        env(&[]),
    ));
    assert!(message.contains("worker.breaker.consecutiv"), "{message}");
}

#[test]
fn check_config_shows_the_breaker() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("breaker.toml");
    std::fs::write(
        &path,
        "[worker.breaker]\nconsecutive = 5\nprobe_interval = \"1s\"\n",
    )
    .unwrap();
    let (out, code) = check_config(Some(&path));
    assert_eq!(code, 0, "{out}");
    let section = out
        .split("[worker.breaker]")
        .nth(1)
        .unwrap_or_else(|| panic!("no [worker.breaker] in\n{out}"));
    for line in [
        "consecutive = 5",
        "dead_letter_ratio = 0.5",
        "window = 100",
        "probe_interval = \"1s\"",
    ] {
        assert!(section.contains(line), "{line} missing in\n{out}");
    }
    let again = Config::from_sources(&out, env(&[])).unwrap();
    assert_eq!(again.worker.breaker.consecutive, 5);

    std::fs::write(&path, "[worker.breaker]\nwindow = 0\n").unwrap();
    let (out, code) = check_config(Some(&path));
    assert_eq!(code, 2);
    assert!(out.contains("worker.breaker.window must be >= 1"), "{out}");
}

/// Every default is written twice, as the code's (`Config::default()` and the serde defaults) and
/// in config/default.toml; they must agree, section by section. The file's `[clients.default]`
/// is an example profile, not a default, so it is left out.
#[test]
fn the_default_file_and_the_code_defaults_agree() {
    let file = toml::Value::try_from(with_env(&[]).expect("the default file loads")).unwrap();
    let code = toml::Value::try_from(Config::default()).unwrap();
    let (toml::Value::Table(file), toml::Value::Table(code)) = (file, code) else {
        panic!("a config serialises to a table");
    };
    let sections: Vec<&String> = code.keys().filter(|k| *k != "clients").collect();
    assert!(sections.len() >= 6, "{sections:?}");
    for section in sections {
        assert_eq!(
            file.get(section),
            code.get(section),
            "[{section}] differs between config/default.toml and the code's defaults"
        );
    }
}

#[test]
fn a_grace_shorter_than_a_request_is_a_warning_naming_the_key() {
    let quiet = with_env(&[]).unwrap();
    assert_eq!(
        quiet.warnings(),
        Vec::<String>::new(),
        "the defaults warn of nothing"
    );
    let short = with_env(&[
        ("SILENTAUTH__API__TIMEOUT", "5s"),
        ("SILENTAUTH__WORKER__REVOKE_GRACE", "1s"),
    ])
    .unwrap();
    let warnings = short.warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with("worker.revoke_grace (1s)"),
        "{warnings:?}"
    );
    assert!(warnings[0].contains("api.timeout = 5s"), "{warnings:?}");
    let both = with_env(&[
        ("SILENTAUTH__API__TIMEOUT", "60s"),
        ("SILENTAUTH__WORKER__REVOKE_GRACE", "1s"),
        ("SILENTAUTH__WORKER__SHUTDOWN_GRACE", "59s"),
    ])
    .unwrap();
    let keys: Vec<&str> = both
        .warnings()
        .iter()
        .map(|w| w.split(' ').next().unwrap().to_owned())
        .map(|k| {
            if k == "worker.revoke_grace" {
                "revoke"
            } else {
                "shutdown"
            }
        })
        .collect();
    assert_eq!(keys, ["revoke", "shutdown"]);
}
