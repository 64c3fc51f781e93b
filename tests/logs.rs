//! The binary's logs: `--log-format` works before and after the subcommand, text into a pipe
//! carries no ANSI codes (unless `--log-color always`), and a full mixed
//! run at `RUST_LOG=debug` never writes a secret, a code, an access token or a whole number.

mod support;

use serde_json::{json, Value};
use silentauth_simulator::{Scenario, SimClient};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use support::world::{World, REDIRECT};

const BIN: &str = env!("CARGO_BIN_EXE_silentauth-worker");

// Distinctive values, so finding one in the logs cannot be a coincidence.
const CLIENT_SECRET: &str = "Cl1entS3cret-qx7Wv";
const WRONG_SECRET: &str = "Wr0ngS3cret-pz4Kt";
const API_KEY: &str = "Ap1K3y-Dm8sLr2";
const SASL_PASSWORD: &str = "SaslPassw0rd-Jk5Qe";

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_debug_run_logs_no_secret_code_token_or_number() {
    let scenario = Scenario {
        clients: vec![SimClient {
            client_id: "client".into(),
            client_secret: CLIENT_SECRET.into(),
            redirect_uris: None,
        }],
        api_keys: vec![API_KEY.into()],
        ..Scenario::default()
    };
    let w = World::new(scenario, 2).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_file(
        dir.path(),
        &format!(
            r#"
[kafka]
brokers = "{brokers}"
group_id = "{group}"
connect_timeout = "10s"
commit_interval = "200ms"
[kafka.properties]
"sasl.password" = "{SASL_PASSWORD}"
[topics]
jobs = "{jobs}"
results = "{results}"
dead_letter = "{dlq}"
ledger = "{ledger}"
[api]
base_url = "{base}"
timeout = "2s"
[clients.default]
client_id = "client"
client_secret = "{CLIENT_SECRET}"
api_key = "{API_KEY}"
[clients.wrong]
client_id = "client"
client_secret = "{WRONG_SECRET}"
api_key = "{API_KEY}"
[retry]
initial_backoff = "10ms"
max_backoff = "50ms"
[worker]
shutdown_grace = "5s"
[admin]
listen = "127.0.0.1:0"
"#,
            brokers = w.broker.bootstrap(),
            group = w.group,
            jobs = w.jobs,
            results = w.results,
            dlq = w.dlq,
            ledger = w.ledger,
            base = w.sim.base_url(),
        ),
    );
    let stderr_path = dir.path().join("stderr.log");
    let child = Command::new(BIN)
        .args(["--log-format", "json", "run", "--config"])
        .arg(&cfg)
        .env("RUST_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .expect("start the worker");

    let mut codes = Vec::new();
    let mut numbers = Vec::new();
    let mut jobs = Vec::new();
    for i in 0..8 {
        let n = format!("38155512{i:04}");
        jobs.push(w.job(&format!("ok-{i}"), &n));
        numbers.push(n);
    }
    // credentials_rejected, login_hint_mismatch, code_rejected, and an undecodable job that
    // still carries a number and a code.
    let mut creds = w.job("creds", "381555129001");
    creds["client"] = json!("wrong");
    numbers.push("381555129001".into());
    jobs.push(creds);
    let mut mismatch = w.job("mismatch", "381555129002");
    mismatch["login_hint"] = json!("381555129003");
    numbers.extend(["381555129002".into(), "381555129003".into()]);
    jobs.push(mismatch);
    let mut rejected = w.job("rejected", "381555129004");
    rejected["code"] = json!("NeverIssuedCode-Hh3");
    numbers.push("381555129004".into());
    jobs.push(rejected);
    for j in &jobs {
        codes.push(j["code"].as_str().unwrap().to_owned());
        w.send_job(j).await;
    }
    let poison_code = w.sim.mint_code("client", "381555129005", REDIRECT);
    numbers.push("381555129005".into());
    codes.push(poison_code.clone());
    let poison = json!({"job_id": 17, "login_hint": "381555129005", "code": poison_code, "redirect_uri": REDIRECT});
    w.send(Some("poison"), poison.to_string().as_bytes(), &[])
        .await;
    assert_eq!(w.results(jobs.len()).await.len(), jobs.len());
    assert!(
        w.sim.stats().tokens_issued >= 9,
        "access tokens were issued"
    );

    // SIGTERM: a graceful stop logs its shutdown too.
    support::process::sigterm(child);

    let logs = std::fs::read_to_string(&stderr_path).unwrap();
    let lines: Vec<&str> = logs.lines().collect();
    assert!(lines.len() > 10, "{logs}");
    for l in &lines {
        assert!(serde_json::from_str::<Value>(l).is_ok(), "not JSON: {l}");
    }
    // The per-job debug line is there, with the number masked and the job's span.
    assert!(
        logs.contains("*********000") && logs.contains("\"job_id\":\"ok-0\""),
        "{logs}"
    );
    for secret in [CLIENT_SECRET, WRONG_SECRET, API_KEY, SASL_PASSWORD] {
        assert!(!logs.contains(secret), "secret {secret} logged");
    }
    for code in &codes {
        assert!(!logs.contains(code.as_str()), "code {code} logged");
    }
    for n in &numbers {
        assert!(!logs.contains(n.as_str()), "number {n} logged");
    }
    // The simulator cannot list the access tokens it issued; they are 64 random alphanumeric
    // characters, so no such run may appear.
    let longest_run = logs
        .split(|c: char| !c.is_ascii_alphanumeric())
        .map(str::len)
        .max()
        .unwrap_or(0);
    assert!(
        longest_run < 64,
        "a token-like string was logged ({longest_run} chars)"
    );
}
