//! The binary's exit codes for bad configuration and an unreachable broker.

use std::process::Command;
use std::time::{Duration, Instant};

fn worker() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_silentauth-worker"));
    c.env_remove("RUST_LOG");
    c
}

#[test]
fn a_bad_config_value_exits_2_naming_the_key() {
    let out = worker()
        .args(["run"])
        .env("SILENTAUTH__WORKER__MAX_IN_FLIGHT", "0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("worker.max_in_flight"), "{err}");
}

#[test]
fn an_unreachable_broker_is_a_clear_error_after_connect_timeout() {
    let start = Instant::now();
    let out = worker()
        .args(["--log-format", "json", "run"])
        .env("SILENTAUTH__KAFKA__BROKERS", "127.0.0.1:1")
        .env("SILENTAUTH__KAFKA__CONNECT_TIMEOUT", "2s")
        .output()
        .unwrap();
    let took = start.elapsed();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot reach Kafka at 127.0.0.1:1"), "{err}");
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(20),
        "{took:?}"
    );
}

#[test]
fn check_config_masks_every_secret() {
    let out = worker()
        .args(["check-config"])
        .env(
            "SILENTAUTH__CLIENTS__DEFAULT__CLIENT_SECRET",
            "s3cr3t-value-xyz",
        )
        .env("SILENTAUTH__CLIENTS__DEFAULT__API_KEY", "api-key-value-xyz")
        .env(
            "SILENTAUTH__KAFKA__PROPERTIES__SASL_PASSWORD",
            "sasl-pass-xyz",
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    for secret in ["s3cr3t-value-xyz", "api-key-value-xyz", "sasl-pass-xyz"] {
        assert!(!text.contains(secret), "{secret} printed:\n{text}");
    }
    assert!(text.contains("***"));
    assert!(text.contains("https://api.tyntec.com/silent-auth/v1"));
}
