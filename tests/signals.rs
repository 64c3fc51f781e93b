//! Network signals beside the verification: every outcome of every check against the simulator
//! over real HTTP, 404 as inconclusive, 429 and 5xx retries, a check failing while the number is
//! verified, jobs with only signals, and the whole pipeline through Kafka, also while the checks
//! answer 429 beside spent codes.

mod support;

use serde_json::{json, Value};
use silentauth_simulator::{Scenario, SimHandle};
use silentauth_worker::config::{Config, ProfileConfig};
use silentauth_worker::contract::network_signals::{ForwardingOutcome, RiskFlag, SwapOutcome};
use silentauth_worker::contract::{ErrorClass, Job, JobResult, Stage, Status};
use silentauth_worker::secret::Secret;
use silentauth_worker::silentauth::SilentAuthClient;
use silentauth_worker::verify::{JobContext, Verifier};
use std::time::{Duration, Instant};
use support::world::{admin_addr, read_topic, World};

const REDIRECT: &str = "https://client.example.com/callback";
const ALL: &str = r#"{"sim_swap": {}, "device_swap": {}, "call_forwarding": {}}"#;

const SCENARIO: &str = r#"
[signals]
# Everything at once: SIM 30 minutes ago, device 2 hours ago, calls forwarded.
[[signals.rules]]
numbers = ["4915100000001"]
sim_swap_age = "30m"
device_swap_age = "2h"
call_forwarding = true
# The operator knows nothing of this number.
[[signals.rules]]
numbers = ["4915100000003"]
unknown = true
# A SIM swap five hours ago: outside the default 240 minutes, inside 360.
[[signals.rules]]
numbers = ["4915100000008"]
sim_swap_age = "5h"

[[faults]]
endpoint = "sim_swap_check"
status = 500
login_hints = ["4915100000004"]
[[faults]]
endpoint = "device_swap_check"
status = 503
login_hints = ["4915100000004"]
[[faults]]
endpoint = "call_forwarding_check"
kind = "drop"
login_hints = ["4915100000004"]

[[faults]]
endpoint = "sim_swap_check"
status = 429
retry_after = "0"
first = 1
per_code = true
login_hints = ["4915100000005"]
[[faults]]
endpoint = "call_forwarding_check"
status = 503
first = 2
per_code = true
login_hints = ["4915100000005"]

[[faults]]
endpoint = "call_forwarding_check"
kind = "malformed"
login_hints = ["4915100000007"]
[[faults]]
endpoint = "device_swap_check"
status = 401
login_hints = ["4915100000007"]
"#;

struct Setup {
    sim: SimHandle,
    verifier: Verifier<SilentAuthClient>,
}

async fn setup(scenario: &str) -> Setup {
    let sim = SimHandle::start(
        "127.0.0.1:0".parse().unwrap(),
        Scenario::from_toml_str(scenario).unwrap(),
    )
    .await
    .unwrap();
    let mut config = Config::default();
    config.api.base_url = sim.base_url();
    config.api.signals_base_url = sim.signals_base_url();
    config.api.timeout = Duration::from_secs(2);
    config.retry.max_attempts = 3;
    config.retry.initial_backoff = Duration::from_millis(10);
    config.retry.max_backoff = Duration::from_millis(20);
    config.clients.insert(
        "default".into(),
        ProfileConfig {
            client_id: "client".into(),
            client_secret: Secret::new("12345"),
            api_key: Secret::new("sim-api-key"),
            requests_per_second: None,
            burst: 1,
            signals_requests_per_second: None,
        },
    );
    let api = SilentAuthClient::new(&config.api.base_url, config.api.timeout)
        .unwrap()
        .with_signals_base_url(&config.api.signals_base_url)
        .unwrap();
    Setup {
        verifier: Verifier::from_config(api, &config),
        sim,
    }
}

impl Setup {
    /// Verifies `hint` (a fresh code unless `code` is false) asking for `signals`.
    async fn run(&self, hint: &str, signals: &str, code: bool) -> JobResult {
        let mut job = json!({"job_id": format!("j-{}", hint.trim_start_matches('+')), "login_hint": hint,
            "signals": serde_json::from_str::<Value>(signals).unwrap()});
        if code {
            job["code"] = self.sim.mint_code("client", hint, REDIRECT).into();
            job["redirect_uri"] = REDIRECT.into();
        }
        let job = Job::decode(job.to_string().as_bytes()).expect("valid job");
        self.verifier.verify(&job, &JobContext::now()).await.result
    }
}

/// What a number with nothing to report answers.
const QUIET: (SwapOutcome, SwapOutcome, ForwardingOutcome) = (
    SwapOutcome::NotSwapped,
    SwapOutcome::NotSwapped,
    ForwardingOutcome::Inactive,
);

fn outcomes(r: &JobResult) -> (SwapOutcome, SwapOutcome, ForwardingOutcome) {
    let s = r.signals.as_ref().expect("signals reported");
    (
        s.sim_swap.as_ref().unwrap().outcome,
        s.device_swap.as_ref().unwrap().outcome,
        s.call_forwarding.as_ref().unwrap().outcome,
    )
}

#[tokio::test]
async fn every_positive_outcome_and_every_risk_flag() {
    let s = setup(SCENARIO).await;
    let r = s.run("4915100000001", ALL, true).await;
    assert_eq!(r.status, Status::Verified);
    assert_eq!(r.phone_number_verified, Some(true));
    assert_eq!(
        outcomes(&r),
        (
            SwapOutcome::Swapped,
            SwapOutcome::Swapped,
            ForwardingOutcome::Active
        )
    );
    assert_eq!(
        r.risk_flags.as_deref(),
        Some(
            &[
                RiskFlag::RecentSimSwap,
                RiskFlag::RecentDeviceSwap,
                RiskFlag::CallForwardingActive
            ][..]
        )
    );
    let sig = r.signals.as_ref().unwrap();
    let now = chrono::Utc::now();
    let sim_age = now - sig.sim_swap.as_ref().unwrap().latest_change.unwrap();
    let device_age = now - sig.device_swap.as_ref().unwrap().latest_change.unwrap();
    assert!((29..=31).contains(&sim_age.num_minutes()), "{sim_age}");
    assert!(
        (119..=121).contains(&device_age.num_minutes()),
        "{device_age}"
    );
    // token + userinfo + two checks with their date calls + forwarding.
    assert_eq!(r.attempts, 7);
    let stats = s.sim.stats();
    assert_eq!(stats.total("sim_swap_retrieve_date"), 1);
    assert_eq!(stats.total("call_forwarding_check"), 1);
}

#[tokio::test]
async fn a_quiet_number_has_no_flags_and_no_dates() {
    let s = setup(SCENARIO).await;
    let r = s.run("4915100000002", ALL, true).await;
    assert_eq!(r.status, Status::Verified);
    assert_eq!(outcomes(&r), QUIET);
    assert_eq!(r.risk_flags.as_deref(), Some(&[][..]));
    let sig = r.signals.unwrap();
    assert!(sig.sim_swap.unwrap().latest_change.is_none());
    // No date is asked for when the check found no swap.
    assert_eq!(s.sim.stats().total("sim_swap_retrieve_date"), 0);
}

#[tokio::test]
async fn max_age_is_sent_in_minutes() {
    let s = setup(SCENARIO).await;
    let within = |m: u32| format!(r#"{{"sim_swap": {{"max_age_minutes": {m}}}}}"#);
    let r = s.run("4915100000008", &within(240), false).await;
    let sim = r.signals.unwrap().sim_swap.unwrap();
    assert_eq!(
        (sim.outcome, sim.max_age_minutes),
        (SwapOutcome::NotSwapped, 240)
    );
    let r = s.run("4915100000008", &within(360), false).await;
    let sim = r.signals.unwrap().sim_swap.unwrap();
    assert_eq!(
        (sim.outcome, sim.max_age_minutes),
        (SwapOutcome::Swapped, 360)
    );
}

#[tokio::test]
async fn not_found_is_inconclusive_not_failed() {
    let s = setup(SCENARIO).await;
    let r = s.run("4915100000003", ALL, true).await;
    assert_eq!(r.status, Status::Verified);
    assert_eq!(
        outcomes(&r),
        (
            SwapOutcome::Inconclusive,
            SwapOutcome::Inconclusive,
            ForwardingOutcome::Inconclusive
        )
    );
    assert!(r.signals.as_ref().unwrap().errors().next().is_none());
    // Inconclusive is not clean: a consumer of the flags alone sees that nothing was checked.
    assert_eq!(
        r.risk_flags.as_deref(),
        Some(
            &[
                RiskFlag::SimSwapUnchecked,
                RiskFlag::DeviceSwapUnchecked,
                RiskFlag::CallForwardingUnchecked
            ][..]
        )
    );
    assert!(r.dead_letter_error().is_none());
    // A 404 is an answer: not retried.
    assert_eq!(s.sim.stats().total("sim_swap_check"), 1);
}

#[tokio::test]
async fn failing_checks_never_fail_a_verified_number() {
    let s = setup(SCENARIO).await;
    let r = s.run("4915100000004", ALL, true).await;
    assert_eq!(
        (r.status, r.phone_number_verified),
        (Status::Verified, Some(true))
    );
    assert!(r.error.is_none());
    assert_eq!(
        outcomes(&r),
        (
            SwapOutcome::Failed,
            SwapOutcome::Failed,
            ForwardingOutcome::Failed
        )
    );
    let sig = r.signals.as_ref().unwrap();
    let e = sig.sim_swap.as_ref().unwrap().error.as_ref().unwrap();
    assert_eq!(
        (e.class, e.stage, e.http_status, e.retryable),
        (
            ErrorClass::UpstreamUnavailable,
            Stage::SimSwap,
            Some(500),
            true
        )
    );
    let e = sig.device_swap.as_ref().unwrap().error.as_ref().unwrap();
    assert_eq!((e.stage, e.http_status), (Stage::DeviceSwap, Some(503)));
    let e = sig
        .call_forwarding
        .as_ref()
        .unwrap()
        .error
        .as_ref()
        .unwrap();
    assert_eq!(
        (e.class, e.stage, e.http_status),
        (ErrorClass::UpstreamUnavailable, Stage::CallForwarding, None)
    );
    // Retried as the contract says, three attempts each; the verdict stands, no dead letter.
    let stats = s.sim.stats();
    assert_eq!(stats.total("sim_swap_check"), 3);
    assert_eq!(stats.total("device_swap_check"), 3);
    assert_eq!(stats.total("call_forwarding_check"), 3);
    assert_eq!(r.attempts, 2 + 9);
    assert!(r.dead_letter_error().is_none());
    // Failed checks are not clean ones.
    assert_eq!(
        r.risk_flags.as_deref(),
        Some(
            &[
                RiskFlag::SimSwapUnchecked,
                RiskFlag::DeviceSwapUnchecked,
                RiskFlag::CallForwardingUnchecked
            ][..]
        )
    );
}

#[tokio::test]
async fn rate_limits_and_unavailability_are_retried() {
    let s = setup(SCENARIO).await;
    let r = s.run("4915100000005", ALL, true).await;
    assert_eq!(r.status, Status::Verified);
    assert_eq!(outcomes(&r), QUIET);
    let stats = s.sim.stats();
    assert_eq!(stats.count("sim_swap_check", 429), 1);
    assert_eq!(stats.total("sim_swap_check"), 2);
    assert_eq!(stats.count("call_forwarding_check", 503), 2);
    assert_eq!(stats.total("call_forwarding_check"), 3);
}

#[tokio::test]
async fn unusable_answers_and_rejected_keys_have_their_classes() {
    let s = setup(SCENARIO).await;
    let r = s.run("4915100000007", ALL, true).await;
    assert_eq!(r.status, Status::Verified);
    let sig = r.signals.unwrap();
    assert_eq!(
        r.risk_flags.as_deref(),
        Some(
            &[
                RiskFlag::DeviceSwapUnchecked,
                RiskFlag::CallForwardingUnchecked
            ][..]
        )
    );
    let fwd = sig.call_forwarding.unwrap();
    assert_eq!(fwd.outcome, ForwardingOutcome::Failed);
    assert_eq!(fwd.error.unwrap().class, ErrorClass::ProtocolError);
    let dev = sig.device_swap.unwrap();
    let e = dev.error.unwrap();
    assert_eq!(
        (dev.outcome, e.class, e.code.as_deref()),
        (
            SwapOutcome::Failed,
            ErrorClass::CredentialsRejected,
            Some("UNAUTHENTICATED")
        )
    );
    assert_eq!(s.sim.stats().total("device_swap_check"), 1, "401 is final");
}

#[tokio::test]
async fn a_job_with_only_signals_spends_no_code() {
    let s = setup(SCENARIO).await;
    let r = s.run("4915100000001", ALL, false).await;
    assert_eq!(r.status, Status::SignalsOnly);
    assert_eq!(r.phone_number_verified, None);
    assert!(r.error.is_none() && r.sub.is_none());
    assert_eq!(r.risk_flags.as_ref().map(Vec::len), Some(3));
    assert_eq!(r.attempts, 5);
    let stats = s.sim.stats();
    assert_eq!(stats.total("token") + stats.total("userinfo"), 0);
    assert!(r.dead_letter_error().is_none());
    // Only signals, and one failed: a replay could help and spends no code, so it is
    // dead-lettered with the check's class.
    let r = s
        .run("4915100000004", r#"{"call_forwarding": {}}"#, false)
        .await;
    assert_eq!(r.status, Status::SignalsOnly);
    let e = r.dead_letter_error().expect("dead-lettered");
    assert_eq!(
        (e.class, e.stage),
        (ErrorClass::UpstreamUnavailable, Stage::CallForwarding)
    );
}

#[tokio::test]
async fn checks_run_concurrently_with_the_exchange() {
    let latency = r#"
[latency]
fixed = "600ms"
"#;
    let s = setup(latency).await;
    let started = Instant::now();
    let r = s.run("4915100000002", ALL, true).await;
    let took = started.elapsed();
    assert_eq!(r.status, Status::Verified);
    assert_eq!(r.attempts, 5);
    // Concurrently: token + userinfo, 1.2 s. In sequence the 5 requests cannot take less than
    // 3 s whatever the machine's load, so that is the bound: a loaded machine has 1.8 s of slack
    // (and each request 1.4 s before its 2 s timeout).
    assert!(
        took < Duration::from_secs(3),
        "took {took:?}: checks ran in sequence"
    );
}

#[tokio::test]
async fn e164_numbers_go_out_whatever_the_login_hint_looks_like() {
    let s = setup(SCENARIO).await;
    // The simulator answers 400 to a number without '+': these would fail.
    for hint in ["+4915100000001", "004915100000001"] {
        let r = s.run(hint, r#"{"call_forwarding": {}}"#, false).await;
        let fwd = r.signals.unwrap().call_forwarding.unwrap();
        assert_eq!(fwd.outcome, ForwardingOutcome::Active, "{hint}");
    }
}

#[tokio::test]
async fn a_separate_signals_rate_gets_its_own_limiter() {
    let mut config = Config::default();
    let mut client = ProfileConfig {
        client_id: "client".into(),
        client_secret: Secret::new("12345"),
        api_key: Secret::new("k"),
        requests_per_second: Some(10.0),
        burst: 1,
        signals_requests_per_second: None,
    };
    config.clients.insert("default".into(), client.clone());
    let api = SilentAuthClient::new(&config.api.base_url, config.api.timeout).unwrap();
    assert_eq!(
        Verifier::from_config(api.clone(), &config)
            .limiters()
            .count(),
        1
    );
    client.signals_requests_per_second = Some(2.0);
    config.clients.insert("default".into(), client);
    let v = Verifier::from_config(api, &config);
    let rates: Vec<_> = v.limiters().map(|l| l.rate()).collect();
    assert_eq!(rates.len(), 2);
    assert!(rates.contains(&Some(2.0)) && rates.contains(&Some(10.0)));
}

/// The whole pipeline: a job with a code and all three signals gives one result with the
/// verdict, three outcomes and the flags; a job with only signals is `signals_only`; a bad
/// `signals` is an invalid job and a dead letter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_kafka_one_result_carries_verdict_signals_and_flags() {
    let w = World::new(Scenario::from_toml_str(SCENARIO).unwrap(), 2).await;
    let (cancel, handle) = w.start(w.config());
    let signals: Value = serde_json::from_str(ALL).unwrap();
    let mut full = w.job("full", "4915100000001");
    full["signals"] = signals.clone();
    let only = json!({"job_id": "only", "login_hint": "+4915100000003", "signals": signals});
    let bad = json!({"job_id": "bad", "login_hint": "4915100000002",
        "signals": {"sim_swap": {"max_age_minutes": 2401}}});
    for job in [&full, &only, &bad] {
        w.send_job(job).await;
    }
    let by_id = w
        .wait_until_all(
            &["full", "only", "bad"].map(String::from).into(),
            Duration::from_secs(60),
        )
        .await;
    let r = &by_id["full"][0];
    assert_eq!(by_id["full"].len(), 1);
    assert_eq!(r["status"], "verified");
    assert_eq!(r["phone_number_verified"], true);
    assert_eq!(r["signals"]["sim_swap"]["outcome"], "swapped");
    assert!(r["signals"]["sim_swap"]["latest_change"].is_string());
    assert_eq!(r["signals"]["device_swap"]["outcome"], "swapped");
    assert_eq!(r["signals"]["call_forwarding"]["outcome"], "active");
    assert_eq!(
        r["risk_flags"],
        json!([
            "recent_sim_swap",
            "recent_device_swap",
            "call_forwarding_active"
        ])
    );
    let r = &by_id["only"][0];
    assert_eq!(r["status"], "signals_only");
    assert!(r["phone_number_verified"].is_null());
    assert_eq!(r["signals"]["call_forwarding"]["outcome"], "inconclusive");
    assert_eq!(
        r["risk_flags"],
        json!([
            "sim_swap_unchecked",
            "device_swap_unchecked",
            "call_forwarding_unchecked"
        ])
    );
    let r = &by_id["bad"][0];
    assert_eq!(r["error"]["class"], "invalid_job");
    assert!(r["error"]["description"]
        .as_str()
        .unwrap()
        .contains("signals.sim_swap.max_age_minutes"));
    let dlq = read_topic(&w.broker, &w.dlq).await;
    assert_eq!(dlq.len(), 1, "only the bad job is dead-lettered");
    cancel.cancel();
    handle.await.unwrap();
}

/// `/metrics` labels each Network Signals request with its own endpoint, never as `token`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_label_signal_requests_with_their_own_endpoints() {
    let w = World::new(Scenario::from_toml_str(SCENARIO).unwrap(), 1).await;
    let worker = silentauth_worker::worker::Worker::new(w.config());
    let stats = worker.counters();
    let cancel = tokio_util::sync::CancellationToken::new();
    let c = cancel.clone();
    let handle = tokio::spawn(async move { worker.run(c).await.expect("worker run") });
    let mut job = w.job("metrics", "4915100000001");
    job["signals"] = serde_json::from_str(ALL).unwrap();
    w.send_job(&job).await;
    let r = w.results(1).await;
    assert_eq!(r[0].0["status"], "verified");
    let addr = admin_addr(&stats, Duration::from_secs(30)).await;
    // token, userinfo, both swap checks with their date calls, forwarding: 7 requests.
    let expected = [
        ("token", 1),
        ("userinfo", 1),
        ("sim_swap", 2),
        ("device_swap", 2),
        ("call_forwarding", 1),
    ];
    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for (endpoint, n) in expected {
        let line = format!(
            "silentauth_http_requests_total{{endpoint=\"{endpoint}\",status=\"200\"}} {n}\n"
        );
        assert!(text.contains(&line), "missing {line} in\n{text}");
        let count = format!(
            "silentauth_http_request_duration_seconds_count{{endpoint=\"{endpoint}\"}} {n}\n"
        );
        assert!(text.contains(&count), "missing {count} in\n{text}");
    }
    cancel.cancel();
    handle.await.unwrap();
}

/// Every check answers its first request for a number 429 with an 8 s `Retry-After`; token calls
/// take 1 s and an access token lives 3 s. So each job's code is spent while the profile's
/// signals pause holds, and its userinfo succeeds only if it is not held behind that pause
/// (held, it would go out after the token expired and get 401).
const SIGNALS_429: &str = r#"
token_ttl = "3s"
[latency.token]
fixed = "1s"
[[faults]]
endpoint = "sim_swap_check"
status = 429
retry_after = "8"
first = 1
per_code = true
[[faults]]
endpoint = "device_swap_check"
status = 429
retry_after = "8"
first = 1
per_code = true
[[faults]]
endpoint = "call_forwarding_check"
status = 429
retry_after = "8"
first = 1
per_code = true
"#;

/// The whole worker, while the Network Signals endpoints answer 429 with a `Retry-After` of
/// several seconds: every job gets one verified result, no code is presented twice, and the
/// userinfo of every spent code is answered within its token's 3 s, well before the 8 s pause
/// that holds the profile's token calls and unspent checks runs out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_429_beside_spent_codes_never_holds_their_userinfo() {
    const JOBS: u64 = 4;
    let w = World::new(Scenario::from_toml_str(SIGNALS_429).unwrap(), 1).await;
    let mut ids = std::collections::BTreeSet::new();
    for i in 0..JOBS {
        let id = format!("pause-{i}");
        let mut job = w.job(&id, &format!("49151200000{i}"));
        job["signals"] = serde_json::from_str(ALL).unwrap();
        w.send_job(&job).await;
        ids.insert(id);
    }
    let started = Instant::now();
    let (cancel, handle) = w.start(w.config());
    w.wait_until_all(&ids, Duration::from_secs(120)).await;
    // The checks waited out their Retry-After before answering.
    assert!(started.elapsed() >= Duration::from_secs(8));
    cancel.cancel();
    handle.await.unwrap();

    let by_id = w.results_by_id().await;
    for id in &ids {
        let results = &by_id[id];
        assert_eq!(results.len(), 1, "{id}: one final result, {results:?}");
        let r = &results[0];
        assert_eq!(r["status"], "verified", "{id}: {r}");
        assert!(
            r["error"].is_null(),
            "{id}: no code_rejected, no failure: {r}"
        );
        assert_eq!(r["signals"]["sim_swap"]["outcome"], "not_swapped", "{id}");
        assert_eq!(
            r["signals"]["device_swap"]["outcome"], "not_swapped",
            "{id}"
        );
        assert_eq!(
            r["signals"]["call_forwarding"]["outcome"], "inactive",
            "{id}"
        );
        assert_eq!(r["risk_flags"], json!([]), "{id}");
    }
    let stats = sim_stats(&w).await;
    assert_eq!(stats.codes_reused, 0);
    for check in [
        "sim_swap_check",
        "device_swap_check",
        "call_forwarding_check",
    ] {
        assert_eq!(
            stats.count(check, 429),
            JOBS,
            "{check}: every job met the 429"
        );
        assert_eq!(stats.total(check), 2 * JOBS, "{check}");
    }
    // No userinfo was sent with an expired token: each went within 3 s of its token call's answer.
    assert_eq!(stats.count("userinfo", 200), JOBS);
    assert_eq!(stats.total("userinfo"), JOBS);
    assert_eq!(stats.total("token"), JOBS);
}

/// The simulator's counters as `GET /_sim/stats` serves them.
async fn sim_stats(w: &World) -> silentauth_simulator::SimStats {
    let url = format!("http://{}/_sim/stats", w.sim.addr());
    reqwest::get(url).await.unwrap().json().await.unwrap()
}
