//! The binary's `simulate` subcommand: it serves the simulator (from a scenario file or the
//! default one), prints the addresses to use, and stops on SIGTERM. The simulator's own
//! behaviour is tested in `crates/simulator/tests/`.

use serde_json::{json, Value};
use silentauth_simulator as simulator;
use std::time::Duration;

const CB: &str = "https://client.example.com/callback";
const KEY: &str = "sim-api-key";
const FORWARDING: &str = "/call-forwarding/unconditional/check";
const FORWARDED: &str = "+4915100000003";

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn json_of(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    (status, r.json().await.expect("JSON body"))
}

fn number(n: &str) -> Value {
    json!({ "phoneNumber": n })
}

#[cfg(unix)]
#[tokio::test]
async fn the_simulate_command_serves_until_sigterm() {
    use tokio::io::AsyncBufReadExt;
    let scenario = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/simulator.toml");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_silentauth-worker"))
        .args(["simulate", "--listen", "127.0.0.1:0", "--scenario"])
        .arg(&scenario)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next = async || {
        tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("simulator prints its address")
            .unwrap()
            .unwrap()
    };
    let addr = next()
        .await
        .strip_prefix("listening on ")
        .unwrap()
        .to_owned();
    let base_url = next().await.strip_prefix("base_url ").unwrap().to_owned();
    assert_eq!(base_url, format!("http://{addr}/silent-auth/v1"));
    let r = simulator::authorize(&http(), &base_url, "client", CB, "381999999999", "s")
        .await
        .unwrap();
    assert!(r.code.is_some());
    let health = http()
        .get(format!("http://{addr}/_sim/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.text().await.unwrap(), "ok");

    let pid = child.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("exits on SIGTERM")
        .unwrap();
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn the_simulate_command_prints_the_signals_base_url() {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_silentauth-worker"))
        .args(["simulate", "--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut printed = Vec::new();
    while printed.len() < 3 {
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("the simulator prints its addresses")
            .unwrap()
            .expect("a line");
        printed.push(line);
    }
    let addr = printed[0].strip_prefix("listening on ").unwrap();
    assert_eq!(printed[1], format!("base_url http://{addr}/silent-auth/v1"));
    let signals = printed[2].strip_prefix("signals_base_url ").unwrap();
    assert_eq!(signals, format!("http://{addr}/network-signal/v1"));
    let r = http()
        .post(format!("{signals}{FORWARDING}"))
        .header("apiKey", KEY)
        .json(&number(FORWARDED))
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(r).await, (200, json!({"active": false})));
    child.kill().await.unwrap();
}
