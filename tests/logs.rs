//! The binary's logs: `--log-format` works before and after the subcommand, and text into a pipe
//! carries no ANSI codes (unless `--log-color always`). That no log line carries a secret, a
//! code, a token or a whole number is `tests/secrets.rs`.

use serde_json::Value;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_silentauth-worker");

fn config_file(dir: &Path, body: &str) -> std::path::PathBuf {
    let path = dir.join("worker.toml");
    std::fs::File::create(&path)
        .and_then(|mut f| f.write_all(body.as_bytes()))
        .expect("config file");
    path
}

/// A config whose brokers are unreachable: `run` logs its failure and exits 1 within a second.
fn unreachable_config(dir: &Path) -> std::path::PathBuf {
    config_file(
        dir,
        r#"
[kafka]
brokers = "127.0.0.1:1"
connect_timeout = "1s"
[admin]
listen = "127.0.0.1:0"
"#,
    )
}

fn run_stderr(args: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .output()
        .expect("run the binary");
    assert!(!out.status.success(), "unreachable brokers must fail");
    String::from_utf8(out.stderr).unwrap()
}

fn json_lines(stderr: &str) -> usize {
    stderr
        .lines()
        .filter(|l| serde_json::from_str::<Value>(l).is_ok_and(|v| v.get("level").is_some()))
        .count()
}

#[test]
fn log_format_is_a_global_flag() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = unreachable_config(dir.path());
    let cfg = cfg.to_str().unwrap();
    for args in [
        vec!["--log-format", "json", "run", "--config", cfg],
        vec!["run", "--config", cfg, "--log-format", "json"],
    ] {
        let err = run_stderr(&args);
        assert!(json_lines(&err) >= 1, "{args:?}: {err}");
    }
    for args in [
        vec!["--log-format", "text", "run", "--config", cfg],
        vec!["run", "--log-format", "text", "--config", cfg],
    ] {
        let err = run_stderr(&args);
        assert_eq!(json_lines(&err), 0, "{args:?}: {err}");
        assert!(err.contains("worker failed"), "{args:?}: {err}");
    }
}

#[test]
fn text_logs_into_a_pipe_carry_no_colour_codes_unless_asked() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = unreachable_config(dir.path());
    let cfg = cfg.to_str().unwrap();
    // stderr is a pipe here: the default and `never` write plain text.
    for args in [
        vec!["--log-format", "text", "run", "--config", cfg],
        vec![
            "--log-format",
            "text",
            "--log-color",
            "never",
            "run",
            "--config",
            cfg,
        ],
        vec![
            "--log-format",
            "text",
            "--log-color",
            "auto",
            "run",
            "--config",
            cfg,
        ],
    ] {
        let err = run_stderr(&args);
        assert!(err.contains("worker failed"), "{args:?}: {err}");
        assert!(
            !err.contains('\u{1b}'),
            "{args:?} wrote ANSI codes: {err:?}"
        );
    }
    let err = run_stderr(&[
        "--log-format",
        "text",
        "--log-color",
        "always",
        "run",
        "--config",
        cfg,
    ]);
    assert!(
        err.contains("\u{1b}["),
        "--log-color always wrote no colour: {err:?}"
    );
}
