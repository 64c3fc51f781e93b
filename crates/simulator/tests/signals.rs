//! Black-box tests of the simulator's Network Signals endpoints over HTTP: every answer of SIM
//! swap, device swap and call forwarding, the CAMARA errors, the scenario's `[signals]` rules, and
//! the shared machinery (faults, latency, rate limit, stats, clock, runtime scenario changes).

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use silentauth_simulator::{Scenario, SimHandle, SimStats};
use std::time::{Duration, Instant};

const KEY: &str = "sim-api-key";
const SIM_CHECK: &str = "/sim-swap/check";
const SIM_DATE: &str = "/sim-swap/retrieve-date";
const DEVICE_CHECK: &str = "/device-swap/check";
const DEVICE_DATE: &str = "/device-swap/retrieve-date";
const FORWARDING: &str = "/call-forwarding/unconditional/check";
const ALL: [&str; 5] = [SIM_CHECK, SIM_DATE, DEVICE_CHECK, DEVICE_DATE, FORWARDING];

/// Numbers of the scenario below.
const SIM_30M: &str = "+4915100000001";
const DEVICE_2H: &str = "+4915100000002";
const FORWARDED: &str = "+4915100000003";
const UNKNOWN: &str = "+4915100000004";
const NOTHING: &str = "+4915100000005";

const SCENARIO: &str = r#"
[[signals.rules]]
numbers = ["+4915100000001"]
sim_swap_age = "30m"

[[signals.rules]]
numbers = ["4915100000002"]
device_swap_age = "2h"

[[signals.rules]]
numbers = ["4915100000003"]
call_forwarding = true

[[signals.rules]]
numbers = ["+4915100000004"]
unknown = true
"#;

async fn start(toml: &str) -> SimHandle {
    let scenario = Scenario::from_toml_str(toml).expect("scenario");
    SimHandle::start("127.0.0.1:0".parse().unwrap(), scenario)
        .await
        .expect("start simulator")
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// `POST {signals_base_url}{path}` with `body` as is and `apiKey` when given.
async fn send(
    sim: &SimHandle,
    path: &str,
    api_key: Option<&str>,
    body: &str,
) -> reqwest::Result<reqwest::Response> {
    let mut req = http()
        .post(format!("{}{path}", sim.signals_base_url()))
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(k) = api_key {
        req = req.header("apiKey", k);
    }
    req.send().await
}

/// Status and JSON body of a request with the scenario's api key.
async fn ask(sim: &SimHandle, path: &str, body: Value) -> (u16, Value) {
    let r = send(sim, path, Some(KEY), &body.to_string()).await.unwrap();
    json_of(r).await
}

async fn json_of(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    (status, r.json().await.expect("JSON body"))
}

fn number(n: &str) -> Value {
    json!({ "phoneNumber": n })
}

fn with_max_age(n: &str, max_age: u64) -> Value {
    json!({ "phoneNumber": n, "maxAge": max_age })
}

/// The `swapped` of a 200 check.
async fn swapped(sim: &SimHandle, path: &str, body: Value) -> bool {
    let (status, b) = ask(sim, path, body).await;
    assert_eq!(status, 200, "{b}");
    b["swapped"].as_bool().expect("swapped is a boolean")
}

/// The date field of a 200 retrieve-date, parsed; `None` for null.
async fn date(sim: &SimHandle, path: &str, field: &str, n: &str) -> Option<DateTime<Utc>> {
    let (status, b) = ask(sim, path, number(n)).await;
    assert_eq!(status, 200, "{b}");
    let obj = b.as_object().unwrap();
    assert_eq!(obj.len(), 1, "{b}");
    match &obj[field] {
        Value::Null => None,
        Value::String(s) => {
            assert!(s.ends_with('Z'), "UTC: {s}");
            Some(DateTime::parse_from_rfc3339(s).expect("RFC 3339").into())
        }
        other => panic!("{field} is {other}"),
    }
}

/// `at` is `age` before now, give or take a few seconds of test run time.
fn assert_about(at: DateTime<Utc>, age: Duration) {
    let expected = Utc::now() - chrono::Duration::from_std(age).unwrap();
    let off = (at - expected).num_seconds().abs();
    assert!(off <= 5, "{at} is {off}s away from {expected}");
}

fn assert_camara(body: &Value, status: u16, code: &str) {
    assert_eq!(body["status"], status, "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

#[tokio::test]
async fn sim_swap_check_is_true_only_within_max_age() {
    let sim = start(SCENARIO).await;
    assert!(
        swapped(&sim, SIM_CHECK, number(SIM_30M)).await,
        "default 240"
    );
    assert!(swapped(&sim, SIM_CHECK, with_max_age(SIM_30M, 31)).await);
    assert!(!swapped(&sim, SIM_CHECK, with_max_age(SIM_30M, 29)).await);
    assert!(!swapped(&sim, SIM_CHECK, with_max_age(SIM_30M, 1)).await);
    assert!(swapped(&sim, SIM_CHECK, with_max_age(SIM_30M, 2400)).await);
    for n in [DEVICE_2H, FORWARDED, NOTHING] {
        assert!(
            !swapped(&sim, SIM_CHECK, with_max_age(n, 2400)).await,
            "{n}"
        );
    }
    assert!(!swapped(&sim, DEVICE_CHECK, with_max_age(SIM_30M, 2400)).await);
}

#[tokio::test]
async fn device_swap_check_is_true_only_within_max_age() {
    let sim = start(SCENARIO).await;
    assert!(
        swapped(&sim, DEVICE_CHECK, number(DEVICE_2H)).await,
        "default 240"
    );
    assert!(swapped(&sim, DEVICE_CHECK, with_max_age(DEVICE_2H, 121)).await);
    assert!(!swapped(&sim, DEVICE_CHECK, with_max_age(DEVICE_2H, 119)).await);
    for n in [SIM_30M, FORWARDED, NOTHING] {
        assert!(
            !swapped(&sim, DEVICE_CHECK, with_max_age(n, 2400)).await,
            "{n}"
        );
    }
}

#[tokio::test]
async fn retrieve_date_reports_the_change_or_null() {
    let sim = start(SCENARIO).await;
    let at = date(&sim, SIM_DATE, "latestSimChange", SIM_30M).await;
    assert_about(at.expect("a SIM change"), Duration::from_secs(30 * 60));
    let at = date(&sim, DEVICE_DATE, "latestDeviceChange", DEVICE_2H).await;
    assert_about(at.expect("a device change"), Duration::from_secs(2 * 3600));
    assert_eq!(
        date(&sim, SIM_DATE, "latestSimChange", DEVICE_2H).await,
        None
    );
    assert_eq!(
        date(&sim, DEVICE_DATE, "latestDeviceChange", SIM_30M).await,
        None
    );
    assert_eq!(date(&sim, SIM_DATE, "latestSimChange", NOTHING).await, None);
}

#[tokio::test]
async fn call_forwarding_is_active_or_not() {
    let sim = start(SCENARIO).await;
    let (status, body) = ask(&sim, FORWARDING, number(FORWARDED)).await;
    assert_eq!((status, body), (200, json!({"active": true})));
    for n in [SIM_30M, DEVICE_2H, NOTHING] {
        let (status, body) = ask(&sim, FORWARDING, number(n)).await;
        assert_eq!((status, body), (200, json!({"active": false})), "{n}");
    }
}

#[tokio::test]
async fn without_a_signals_section_no_number_has_a_signal() {
    let sim = start("").await;
    let n = SIM_30M;
    assert!(!swapped(&sim, SIM_CHECK, with_max_age(n, 2400)).await);
    assert!(!swapped(&sim, DEVICE_CHECK, with_max_age(n, 2400)).await);
    assert_eq!(date(&sim, SIM_DATE, "latestSimChange", n).await, None);
    assert_eq!(date(&sim, DEVICE_DATE, "latestDeviceChange", n).await, None);
    assert_eq!(ask(&sim, FORWARDING, number(n)).await.1["active"], false);
}

#[tokio::test]
async fn suffix_rules_cover_generated_numbers_in_rule_order() {
    let sim = start(
        "[[signals.rules]]\nnumbers = [\"+381600000013\"]\n\
         [[signals.rules]]\nsuffix = \"13\"\nsim_swap_age = \"10m\"\ncall_forwarding = true\n\
         [[signals.rules]]\nsuffix = \"3\"\nunknown = true",
    )
    .await;
    for i in 0..20u64 {
        let n = format!("+3816{:07}13", i * 7919);
        assert!(swapped(&sim, SIM_CHECK, number(&n)).await, "{n}");
        assert_eq!(ask(&sim, FORWARDING, number(&n)).await.1["active"], true);
    }
    // An exact rule listed first shadows the suffix rule.
    assert!(!swapped(&sim, SIM_CHECK, number("+381600000013")).await);
    // Other numbers ending in 3 are unknown; the rest have nothing.
    let (status, body) = ask(&sim, SIM_CHECK, number("+381600000023")).await;
    assert_eq!(status, 404);
    assert_camara(&body, 404, "IDENTIFIER_NOT_FOUND");
    assert!(!swapped(&sim, SIM_CHECK, number("+381600000014")).await);
}

#[tokio::test]
async fn an_unknown_number_is_404_on_every_endpoint() {
    let sim = start(SCENARIO).await;
    for path in ALL {
        let (status, body) = ask(&sim, path, with_max_age(UNKNOWN, 60)).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert_camara(&body, 404, "IDENTIFIER_NOT_FOUND");
    }
    assert_eq!(sim.stats().signals_total(), 5);
}

#[tokio::test]
async fn bad_input_is_400_invalid_argument() {
    let sim = start(SCENARIO).await;
    let common = [
        "not json".to_owned(),
        "[\"+4915100000001\"]".to_owned(),
        "{}".to_owned(),
        json!({"phoneNumber": 4915100000001u64}).to_string(),
        json!({"phoneNumber": "4915100000001"}).to_string(),
        json!({"phoneNumber": "+04915100000001"}).to_string(),
        json!({"phoneNumber": "+123456"}).to_string(),
        json!({"phoneNumber": "+1234567890123456"}).to_string(),
        json!({"phoneNumber": "+49 151 00000001"}).to_string(),
    ];
    for path in ALL {
        for body in &common {
            let r = send(&sim, path, Some(KEY), body).await.unwrap();
            let (status, b) = json_of(r).await;
            assert_eq!(status, 400, "{path} {body}: {b}");
            assert_camara(&b, 400, "INVALID_ARGUMENT");
            assert!(!b["message"].as_str().unwrap().contains("4915100000001"));
        }
    }
    let bad_max_age = [
        json!(0),
        json!(2401),
        json!(-1),
        json!(2.5),
        json!("240"),
        json!(null),
    ];
    for path in [SIM_CHECK, DEVICE_CHECK] {
        for max_age in &bad_max_age {
            let body = json!({"phoneNumber": SIM_30M, "maxAge": max_age});
            let (status, b) = ask(&sim, path, body).await;
            assert_eq!(status, 400, "{path} maxAge {max_age}: {b}");
            assert_camara(&b, 400, "INVALID_ARGUMENT");
            assert!(b["message"].as_str().unwrap().contains("maxAge"), "{b}");
        }
    }
    let stats = sim.stats();
    assert_eq!(stats.count("sim_swap_check", 400), 9 + 6);
    assert_eq!(stats.count("call_forwarding_check", 400), 9);
}

#[tokio::test]
async fn a_missing_or_unknown_api_key_is_401() {
    let sim = start(&format!("api_keys = [\"k1\", \"k2\"]\n{SCENARIO}")).await;
    let body = number(SIM_30M).to_string();
    for path in ALL {
        for key in [None, Some("sim-api-key"), Some("")] {
            let (status, b) = json_of(send(&sim, path, key, &body).await.unwrap()).await;
            assert_eq!(status, 401, "{path} {key:?}: {b}");
            assert_camara(&b, 401, "UNAUTHENTICATED");
        }
        for key in ["k1", "k2"] {
            let r = send(&sim, path, Some(key), &body).await.unwrap();
            assert_eq!(r.status(), 200, "{path} {key}");
        }
    }
    // Credentials are checked before the body.
    let r = send(&sim, SIM_CHECK, None, "not json").await.unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn the_rate_limit_answers_429_with_retry_after() {
    let sim = start(
        "[rate_limit]\nrequests_per_second = 0.01\nburst = 2\n\
         endpoints = [\"sim_swap_check\", \"call_forwarding_check\"]",
    )
    .await;
    assert_eq!(ask(&sim, SIM_CHECK, number(NOTHING)).await.0, 200);
    assert_eq!(ask(&sim, FORWARDING, number(NOTHING)).await.0, 200);
    for path in [SIM_CHECK, FORWARDING] {
        let r = send(&sim, path, Some(KEY), &number(NOTHING).to_string())
            .await
            .unwrap();
        assert_eq!(r.headers()["retry-after"], "1");
        let (status, body) = json_of(r).await;
        assert_eq!(status, 429, "{path}: {body}");
        assert_camara(&body, 429, "TOO_MANY_REQUESTS");
    }
    assert_eq!(
        ask(&sim, DEVICE_CHECK, number(NOTHING)).await.0,
        200,
        "not listed, not limited"
    );
    let stats = sim.stats();
    assert_eq!(stats.rate_limited, 2);
    assert_eq!(
        (
            stats.count("sim_swap_check", 429),
            stats.count("call_forwarding_check", 429)
        ),
        (1, 1)
    );
}

#[tokio::test]
async fn status_faults_use_camara_bodies_and_heal() {
    let sim = start(&format!(
        "[[faults]]\nendpoint = \"sim_swap_check\"\nstatus = 503\nretry_after = \"7\"\nfirst = 1\n\
         [[faults]]\nendpoint = \"device_swap_retrieve_date\"\nstatus = 500\n\
         login_hints = [\"4915100000002\"]\n\
         [[faults]]\nendpoint = \"call_forwarding_check\"\nstatus = 429\nretry_after = \"3\"\n\
         first = 1\nper_code = true\n\
         [[faults]]\nendpoint = \"sim_swap_retrieve_date\"\nkind = \"malformed\"\nfirst = 1\n\
         {SCENARIO}"
    ))
    .await;
    let r = send(&sim, SIM_CHECK, Some(KEY), &number(SIM_30M).to_string())
        .await
        .unwrap();
    assert_eq!(r.headers()["retry-after"], "7");
    let (status, body) = json_of(r).await;
    assert_eq!(status, 503);
    assert_camara(&body, 503, "UNAVAILABLE");
    assert!(swapped(&sim, SIM_CHECK, number(SIM_30M)).await, "healed");

    // Only the listed number fails, every time.
    for _ in 0..2 {
        let (status, body) = ask(&sim, DEVICE_DATE, number(DEVICE_2H)).await;
        assert_eq!(status, 500);
        assert_camara(&body, 500, "INTERNAL");
    }
    assert_eq!(
        date(&sim, DEVICE_DATE, "latestDeviceChange", NOTHING).await,
        None
    );

    // Throttled once per number.
    for n in [FORWARDED, NOTHING] {
        let r = send(&sim, FORWARDING, Some(KEY), &number(n).to_string())
            .await
            .unwrap();
        assert_eq!(
            (
                r.status().as_u16(),
                r.headers()["retry-after"].to_str().unwrap()
            ),
            (429, "3")
        );
        assert_camara(&r.json::<Value>().await.unwrap(), 429, "TOO_MANY_REQUESTS");
        assert_eq!(ask(&sim, FORWARDING, number(n)).await.0, 200);
    }

    let r = send(&sim, SIM_DATE, Some(KEY), &number(SIM_30M).to_string())
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(serde_json::from_str::<Value>(&r.text().await.unwrap()).is_err());
    assert!(date(&sim, SIM_DATE, "latestSimChange", SIM_30M)
        .await
        .is_some());
    assert_eq!(sim.stats().faults_injected, 1 + 2 + 2 + 1);
}

#[tokio::test]
async fn a_drop_fault_closes_the_connection_without_an_answer() {
    let sim = start(&format!(
        "[[faults]]\nendpoint = \"device_swap_check\"\nkind = \"drop\"\nfirst = 1\n\
         login_hints = [\"+4915100000002\"]\n{SCENARIO}"
    ))
    .await;
    let err = send(
        &sim,
        DEVICE_CHECK,
        Some(KEY),
        &number(DEVICE_2H).to_string(),
    )
    .await
    .unwrap_err();
    assert!(!err.is_status() && !err.is_timeout(), "{err:?}");
    assert!(swapped(&sim, DEVICE_CHECK, number(DEVICE_2H)).await);
    let stats = sim.stats();
    assert_eq!(
        (
            stats.count("device_swap_check", 0),
            stats.count("device_swap_check", 200)
        ),
        (1, 1)
    );
}

#[tokio::test]
async fn latency_applies_per_endpoint() {
    let sim = start(&format!(
        "[latency]\nfixed = \"150ms\"\n[latency.sim_swap_check]\nfixed = \"400ms\"\n{SCENARIO}"
    ))
    .await;
    let t0 = Instant::now();
    assert!(swapped(&sim, SIM_CHECK, number(SIM_30M)).await);
    assert!(
        t0.elapsed() >= Duration::from_millis(400),
        "{:?}",
        t0.elapsed()
    );
    let t0 = Instant::now();
    assert_eq!(ask(&sim, FORWARDING, number(FORWARDED)).await.0, 200);
    assert!(
        t0.elapsed() >= Duration::from_millis(150),
        "{:?}",
        t0.elapsed()
    );
}

#[tokio::test]
async fn stats_count_each_signal_endpoint() {
    let sim = start(SCENARIO).await;
    for (i, path) in ALL.into_iter().enumerate() {
        for _ in 0..=i {
            assert_eq!(ask(&sim, path, number(NOTHING)).await.0, 200);
        }
    }
    assert_eq!(ask(&sim, FORWARDING, number(UNKNOWN)).await.0, 404);
    let stats = sim.stats();
    let names = [
        "sim_swap_check",
        "sim_swap_retrieve_date",
        "device_swap_check",
        "device_swap_retrieve_date",
        "call_forwarding_check",
    ];
    for (i, name) in names.into_iter().enumerate() {
        assert_eq!(stats.count(name, 200), i as u64 + 1, "{name}");
    }
    assert_eq!(stats.count("call_forwarding_check", 404), 1);
    assert_eq!(stats.total("call_forwarding_check"), 6);
    assert_eq!((stats.signals_total(), stats.total), (16, 16));
    assert_eq!(stats.total("token"), 0);
    assert!(
        stats.api_per_second.counts.is_empty(),
        "token + userinfo only"
    );
    let over_http: SimStats = http()
        .get(format!("http://{}/_sim/stats", sim.addr()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(over_http, stats);
    sim.reset_stats();
    assert_eq!(sim.stats().signals_total(), 0);
}

#[tokio::test]
async fn the_clock_moves_a_swap_out_of_max_age() {
    let sim = start(SCENARIO).await;
    let before = date(&sim, SIM_DATE, "latestSimChange", SIM_30M)
        .await
        .unwrap();
    assert!(swapped(&sim, SIM_CHECK, with_max_age(SIM_30M, 60)).await);
    sim.advance_clock(Duration::from_secs(29 * 60));
    assert!(swapped(&sim, SIM_CHECK, with_max_age(SIM_30M, 60)).await);
    sim.advance_clock(Duration::from_secs(2 * 60));
    assert!(!swapped(&sim, SIM_CHECK, with_max_age(SIM_30M, 60)).await);
    assert!(
        swapped(&sim, SIM_CHECK, number(SIM_30M)).await,
        "within 240"
    );
    sim.advance_clock(Duration::from_secs(4 * 3600));
    assert!(!swapped(&sim, SIM_CHECK, number(SIM_30M)).await);
    assert!(!swapped(&sim, DEVICE_CHECK, number(DEVICE_2H)).await);
    // The change itself stays where it was; only now moved.
    let after = date(&sim, SIM_DATE, "latestSimChange", SIM_30M)
        .await
        .unwrap();
    assert!(
        (after - before).num_seconds().abs() <= 2,
        "{before} -> {after}"
    );
}

#[tokio::test]
async fn scenarios_load_from_toml_files_and_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("signals.toml");
    std::fs::write(&path, SCENARIO).unwrap();
    let sim = SimHandle::start(
        "127.0.0.1:0".parse().unwrap(),
        Scenario::from_file(&path).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(
        sim.signals_base_url(),
        format!("http://{}/network-signal/v1", sim.addr())
    );
    assert!(swapped(&sim, SIM_CHECK, number(SIM_30M)).await);

    let url = format!("http://{}/_sim/scenario", sim.addr());
    let swap_all = "[[signals.rules]]\nsuffix = \"5\"\nsim_swap_age = \"0s\"";
    let r = http().put(&url).body(swap_all).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert!(swapped(&sim, SIM_CHECK, with_max_age(NOTHING, 1)).await);
    assert!(!swapped(&sim, SIM_CHECK, number(SIM_30M)).await, "replaced");
    let current = http().get(&url).send().await.unwrap().text().await.unwrap();
    let rules = Scenario::from_toml_str(&current).unwrap().signals.rules;
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0].suffix.as_deref(), Some("5"));

    let r = http()
        .put(&url)
        .body("[[signals.rules]]\nsuffix = \"x\"")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("signals.rules[0].suffix"));
    assert!(
        swapped(&sim, SIM_CHECK, with_max_age(NOTHING, 1)).await,
        "kept"
    );
}

#[tokio::test]
async fn the_example_scenario_behaves_as_documented() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/simulator.toml");
    let mut scenario = Scenario::from_file(&path).unwrap();
    scenario.latency = Default::default();
    scenario.rate_limit = None;
    scenario
        .faults
        .retain(|f| f.endpoint.is_some_and(|e| e.is_signal()));
    let sim = SimHandle::start("127.0.0.1:0".parse().unwrap(), scenario)
        .await
        .unwrap();
    assert!(swapped(&sim, SIM_CHECK, number("+381777777771")).await);
    assert_eq!(
        ask(&sim, FORWARDING, number("+381777777771")).await.1["active"],
        true
    );
    assert!(!swapped(&sim, DEVICE_CHECK, with_max_age("+381777777772", 2400)).await);
    let at = date(&sim, DEVICE_DATE, "latestDeviceChange", "+381777777772").await;
    assert_about(at.unwrap(), Duration::from_secs(3 * 24 * 3600));
    assert_eq!(ask(&sim, SIM_CHECK, number("+381777777773")).await.0, 404);
    assert!(swapped(&sim, DEVICE_CHECK, with_max_age("+381123456713", 11)).await);
    assert_eq!(ask(&sim, SIM_CHECK, number("+381777777774")).await.0, 503);
    assert!(!swapped(&sim, SIM_CHECK, number("+381777777774")).await);
}
