//! `verify.rs` against the simulator over real HTTP on 127.0.0.1:0: every class of the contract
//! and both verified outcomes, with no broker.

use chrono::Utc;
use serde_json::json;
use silentauth_simulator::{Scenario, SimHandle};
use silentauth_worker::config::{Config, ProfileConfig};
use silentauth_worker::contract::{ErrorClass, Job, JobResult, Stage, Status};
use silentauth_worker::secret::Secret;
use silentauth_worker::silentauth::SilentAuthClient;
use silentauth_worker::verify::{JobContext, Verifier};
use std::time::Duration;

const REDIRECT: &str = "https://client.example.com/callback";

const SCENARIO: &str = r#"
[devices]
"381200000002" = "381299999999"

[[faults]]
endpoint = "token"
status = 403
login_hints = ["381200000003"]

[[faults]]
endpoint = "token"
status = 429
retry_after = "0"
login_hints = ["381200000004"]

[[faults]]
endpoint = "token"
status = 500
login_hints = ["381200000005"]

[[faults]]
endpoint = "userinfo"
kind = "malformed"
login_hints = ["381200000006"]

[[faults]]
endpoint = "token"
status = 503
first = 2
per_code = true
login_hints = ["381200000007"]

[[faults]]
endpoint = "token"
kind = "drop"
after_processing = true
first = 1
per_code = true
login_hints = ["381200000008"]

[[faults]]
endpoint = "token"
kind = "slow"
delay = "3s"
login_hints = ["381200000009"]

[[faults]]
endpoint = "userinfo"
status = 502
first = 1
per_code = true
login_hints = ["381200000010"]

[[faults]]
endpoint = "token"
kind = "truncated_body"
login_hints = ["381200000011"]

[[faults]]
endpoint = "token"
kind = "stalled_body"
delay = "3s"
login_hints = ["381200000012"]

[[faults]]
endpoint = "token"
kind = "wrong_length"
login_hints = ["381200000013"]

[[faults]]
endpoint = "token"
kind = "malformed"
login_hints = ["381200000014"]

[[faults]]
endpoint = "userinfo"
kind = "truncated_body"
first = 1
per_code = true
login_hints = ["381200000015"]

[[faults]]
endpoint = "userinfo"
kind = "stalled_body"
delay = "3s"
first = 1
per_code = true
login_hints = ["381200000016"]
"#;

struct Setup {
    sim: SimHandle,
    verifier: Verifier<SilentAuthClient>,
}

async fn setup() -> Setup {
    let sim = SimHandle::start(
        "127.0.0.1:0".parse().unwrap(),
        Scenario::from_toml_str(SCENARIO).unwrap(),
    )
    .await
    .unwrap();
    let mut config = Config::default();
    config.api.base_url = sim.base_url();
    config.api.timeout = Duration::from_millis(800);
    config.retry.max_attempts = 3;
    config.retry.initial_backoff = Duration::from_millis(10);
    config.retry.max_backoff = Duration::from_millis(20);
    for (name, secret, key) in [
        ("default", "12345", "sim-api-key"),
        ("badsecret", "nope", "sim-api-key"),
        ("badkey", "12345", "nope"),
    ] {
        config.clients.insert(
            name.into(),
            ProfileConfig {
                client_id: "client".into(),
                client_secret: Secret::new(secret),
                api_key: Secret::new(key),
                requests_per_second: None,
                burst: 1,
                signals_requests_per_second: None,
            },
        );
    }
    let api = SilentAuthClient::new(&config.api.base_url, config.api.timeout).unwrap();
    Setup {
        verifier: Verifier::from_config(api, &config),
        sim,
    }
}

impl Setup {
    async fn run(&self, hint: &str, change: serde_json::Value) -> JobResult {
        let code = self.sim.mint_code("client", hint, REDIRECT);
        let mut job = json!({"job_id": format!("j-{hint}"), "login_hint": hint, "code": code, "redirect_uri": REDIRECT});
        for (k, v) in change.as_object().unwrap() {
            if v.is_null() {
                job.as_object_mut().unwrap().remove(k);
            } else {
                job[k] = v.clone();
            }
        }
        let job = Job::decode(job.to_string().as_bytes()).unwrap();
        self.verifier.verify(&job, &JobContext::now()).await.result
    }
}

fn class(r: &JobResult) -> Option<(ErrorClass, Stage)> {
    r.error.as_ref().map(|e| (e.class, e.stage))
}

#[tokio::test]
async fn verified_and_not_verified() {
    let s = setup().await;
    let r = s.run("381200000001", json!({})).await;
    assert_eq!(
        (r.status, r.phone_number_verified, r.attempts),
        (Status::Verified, Some(true), 2)
    );
    assert!(r.sub.is_some() && r.mobile_id.is_some());
    // The network sees another number for this device.
    let r = s.run("381200000002", json!({})).await;
    assert_eq!(
        (r.status, r.phone_number_verified),
        (Status::NotVerified, Some(false))
    );
    assert_eq!(r.sub.as_deref(), Some("anonymous"));
    assert!(r.error.is_none());
}

#[tokio::test]
async fn classes_without_http() {
    let s = setup().await;
    let r = s
        .run(
            "381200000001",
            json!({"code": null, "redirect_uri": null, "error": "invalid_client_id_request"}),
        )
        .await;
    assert_eq!(
        class(&r),
        Some((ErrorClass::AuthorizeRejected, Stage::Authorize))
    );
    let old = (Utc::now() - chrono::Duration::minutes(30)).to_rfc3339();
    let r = s.run("381200000001", json!({"issued_at": old})).await;
    assert_eq!(class(&r), Some((ErrorClass::Expired, Stage::Deadline)));
    let r = s.run("381200000001", json!({"client": "ghost"})).await;
    assert_eq!(class(&r), Some((ErrorClass::InvalidJob, Stage::Job)));
    assert_eq!(s.sim.stats().total("token"), 0);
}

#[tokio::test]
async fn classes_from_the_token_exchange() {
    let s = setup().await;
    let r = s.run("381200000003", json!({})).await;
    assert_eq!(
        class(&r),
        Some((ErrorClass::PermissionDenied, Stage::Token))
    );
    let r = s.run("381200000004", json!({})).await;
    assert_eq!(class(&r), Some((ErrorClass::RateLimited, Stage::Token)));
    assert_eq!(r.attempts, 3);
    let r = s.run("381200000005", json!({})).await;
    assert_eq!(
        class(&r),
        Some((ErrorClass::UpstreamUnavailable, Stage::Token))
    );
    assert_eq!(
        r.error.as_ref().unwrap().code.as_deref(),
        Some("internal_server_error")
    );
    let r = s.run("381200000001", json!({"client": "badsecret"})).await;
    assert_eq!(
        class(&r),
        Some((ErrorClass::CredentialsRejected, Stage::Token))
    );
    let r = s.run("381200000001", json!({"client": "badkey"})).await;
    assert_eq!(
        class(&r),
        Some((ErrorClass::CredentialsRejected, Stage::Token))
    );
    // A code presented twice.
    let code = s.sim.mint_code("client", "381200000001", REDIRECT);
    let job = Job::decode(json!({"job_id": "twice", "login_hint": "381200000001", "code": code, "redirect_uri": REDIRECT}).to_string().as_bytes()).unwrap();
    let first = s.verifier.verify(&job, &JobContext::now()).await.result;
    assert_eq!(first.status, Status::Verified);
    let second = s.verifier.verify(&job, &JobContext::now()).await.result;
    assert_eq!(
        class(&second),
        Some((ErrorClass::CodeRejected, Stage::Token))
    );
    // A redirect_uri other than the code's.
    let r = s
        .run(
            "381200000001",
            json!({"redirect_uri": "https://other.example.com/cb"}),
        )
        .await;
    assert_eq!(class(&r), Some((ErrorClass::CodeRejected, Stage::Token)));
}

#[tokio::test]
async fn protocol_error_and_login_hint_mismatch() {
    let s = setup().await;
    let r = s.run("381200000006", json!({})).await;
    assert_eq!(
        class(&r),
        Some((ErrorClass::ProtocolError, Stage::Userinfo))
    );
    // The code was issued for another number than the job claims.
    let code = s.sim.mint_code("client", "381200000001", REDIRECT);
    let job = Job::decode(json!({"job_id": "mm", "login_hint": "381200000099", "code": code, "redirect_uri": REDIRECT}).to_string().as_bytes()).unwrap();
    let r = s.verifier.verify(&job, &JobContext::now()).await.result;
    assert_eq!(r.status, Status::NotVerified);
    assert_eq!(
        class(&r),
        Some((ErrorClass::LoginHintMismatch, Stage::Userinfo))
    );
}

#[tokio::test]
async fn retries_heal_transient_faults() {
    let s = setup().await;
    // Two 503s, then the exchange succeeds: the code was never used by the failures.
    let r = s.run("381200000007", json!({})).await;
    assert_eq!((r.status, r.attempts), (Status::Verified, 4));
    // userinfo is idempotent: a 502 is retried.
    let r = s.run("381200000010", json!({})).await;
    assert_eq!((r.status, r.attempts), (Status::Verified, 3));
}

#[tokio::test]
async fn ambiguous_attempts_spend_the_code() {
    let s = setup().await;
    // The connection drops after the server used the code: the retry gets 400.
    let r = s.run("381200000008", json!({})).await;
    let e = r.error.expect("code_rejected");
    assert_eq!((e.class, e.stage), (ErrorClass::CodeRejected, Stage::Token));
    assert!(
        e.description.contains("may have been used"),
        "{}",
        e.description
    );
    // Slower than api.timeout: retried, then gives up as upstream_unavailable.
    let r = s.run("381200000009", json!({})).await;
    assert_eq!(
        class(&r),
        Some((ErrorClass::UpstreamUnavailable, Stage::Token))
    );
}

/// Runs the job of a fresh code for `hint`: the result, and how many token requests the
/// simulator saw for it.
async fn run_counting_token_requests(s: &Setup, hint: &str) -> (JobResult, u64) {
    let before = s.sim.stats().total("token");
    let r = s.run(hint, json!({})).await;
    (r, s.sim.stats().total("token") - before)
}

#[tokio::test]
async fn a_token_200_whose_body_cannot_be_read_is_presented_once_and_final() {
    let s = setup().await;
    for (hint, shape) in [
        (
            "381200000011",
            "cut off (Content-Length larger than sent, then closed)",
        ),
        ("381200000012", "stalled mid-body past api.timeout"),
        (
            "381200000013",
            "wrong length (Content-Length shorter than the body)",
        ),
        ("381200000014", "not JSON"),
    ] {
        let (r, token_requests) = run_counting_token_requests(&s, hint).await;
        assert_eq!(token_requests, 1, "{shape}: one presentation of the code");
        assert_eq!(r.status, Status::Failed, "{shape}");
        let e = r.error.expect("an error");
        assert_eq!(
            (e.class, e.stage),
            (ErrorClass::ProtocolError, Stage::Token),
            "{shape}: {e:?}"
        );
        assert_eq!(e.http_status, Some(200), "{shape}");
        assert!(!e.retryable && e.code_spent, "{shape}: {e:?}");
        assert!(
            e.description.contains("was exchanged"),
            "{shape}: {}",
            e.description
        );
    }
    let stats = s.sim.stats();
    assert_eq!(stats.codes_reused, 0, "no code presented twice");
    assert_eq!(
        stats.count("token", 200),
        4,
        "the simulator answered 200 each time"
    );
}

#[tokio::test]
async fn a_userinfo_200_whose_body_cannot_be_read_is_retried() {
    let s = setup().await;
    for hint in ["381200000015", "381200000016"] {
        let (r, token_requests) = run_counting_token_requests(&s, hint).await;
        assert_eq!((r.status, r.attempts), (Status::Verified, 3), "{hint}");
        assert_eq!(token_requests, 1);
    }
    assert_eq!(s.sim.stats().codes_reused, 0);
}
