//! `verify.rs` against a scripted fake API: no network, no broker, paused time. Includes every
//! path that spends a job's single-use code, and the priority its userinfo gets in the limiter.

use chrono::Utc;
use silentauth_worker::contract::{ErrorClass, Job, JobResult, Stage, Status};
use silentauth_worker::secret::Secret;
use silentauth_worker::silentauth::classify::Transport;
use silentauth_worker::silentauth::client::Credentials;
use silentauth_worker::silentauth::{
    Api, HttpOutcome, HttpResponse, Limiter, Priority, RetryPolicy, Spent, SpentCode,
};
use silentauth_worker::verify::{JobContext, Profile, Verifier};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default, Clone)]
struct FakeApi {
    token: Arc<Mutex<VecDeque<HttpOutcome>>>,
    userinfo: Arc<Mutex<VecDeque<HttpOutcome>>>,
    calls: Arc<Mutex<Vec<String>>>,
}

impl Api for FakeApi {
    async fn token(&self, c: &Credentials, code: &Secret, redirect_uri: &str) -> HttpOutcome {
        self.calls.lock().unwrap().push(format!(
            "token {} {} {}",
            c.client_id,
            code.expose(),
            redirect_uri
        ));
        self.token
            .lock()
            .unwrap()
            .pop_front()
            .expect("unexpected token call")
    }
    async fn userinfo(&self, t: &Secret) -> HttpOutcome {
        self.calls
            .lock()
            .unwrap()
            .push(format!("userinfo {}", t.expose()));
        self.userinfo
            .lock()
            .unwrap()
            .pop_front()
            .expect("unexpected userinfo call")
    }
}

fn ok(status: u16, body: serde_json::Value) -> HttpOutcome {
    HttpOutcome::Response(HttpResponse {
        status,
        body: body.to_string().into_bytes(),
        retry_after: None,
    })
}

fn token_ok() -> HttpOutcome {
    ok(
        200,
        serde_json::json!({"access_token":"AT-1","refresh_token":"RT","id_token":"IT","scope":"openid tt:mobile_id","token_type":"Bearer","expires_in":86399}),
    )
}

fn userinfo(hint: &str, verified: &str) -> HttpOutcome {
    ok(
        200,
        serde_json::json!({"sub":"99dd","mobile_id":"2d83","login_hint":hint,"phone_number_verified":verified}),
    )
}

fn verifier(api: FakeApi) -> Verifier<FakeApi> {
    verifier_with(api, Arc::new(Limiter::unlimited()))
}

fn verifier_with(api: FakeApi, limiter: Arc<Limiter>) -> Verifier<FakeApi> {
    let mut profiles = HashMap::new();
    profiles.insert(
        "default".to_owned(),
        Profile::new(
            Credentials {
                client_id: "client".into(),
                client_secret: Secret::new("12345"),
                api_key: Secret::new("key"),
            },
            limiter,
        ),
    );
    let policy = RetryPolicy {
        max_attempts: 3,
        initial_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_secs(1),
        max_elapsed: Duration::from_secs(30),
        max_retry_after: Duration::from_secs(30),
        jitter: false,
        userinfo_max_elapsed: Duration::from_secs(60),
        priority: Priority::Normal,
        spent: None,
    };
    Verifier::new(api, profiles, policy, Duration::from_secs(600))
}

fn job(extra: serde_json::Value) -> Job {
    let mut v = serde_json::json!({
        "job_id": "job-1",
        "login_hint": "381123456789",
        "code": "CODE-abc",
        "redirect_uri": "https://client.example.com/callback",
        "state": "xyz",
        "attributes": {"tenant": "acme"}
    });
    for (k, val) in extra.as_object().unwrap() {
        if val.is_null() {
            v.as_object_mut().unwrap().remove(k);
        } else {
            v[k] = val.clone();
        }
    }
    Job::decode(v.to_string().as_bytes()).expect("valid job")
}

fn script(api: &FakeApi, token: Vec<HttpOutcome>, info: Vec<HttpOutcome>) {
    api.token.lock().unwrap().extend(token);
    api.userinfo.lock().unwrap().extend(info);
}

#[tokio::test(start_paused = true)]
async fn verified_end_to_end() {
    let api = FakeApi::default();
    script(
        &api,
        vec![token_ok()],
        vec![userinfo("381123456789", "true")],
    );
    let out = verifier(api.clone())
        .verify(&job(serde_json::json!({})), &JobContext::now())
        .await;
    let r = out.result;
    assert_eq!(r.status, Status::Verified);
    assert_eq!(r.phone_number_verified, Some(true));
    assert_eq!(
        (r.sub.as_deref(), r.mobile_id.as_deref()),
        (Some("99dd"), Some("2d83"))
    );
    assert_eq!(r.attempts, 2);
    assert_eq!(r.state.as_deref(), Some("xyz"));
    assert_eq!(r.attributes["tenant"], "acme");
    assert!(r.error.is_none());
    let calls = api.calls.lock().unwrap().clone();
    assert_eq!(
        calls,
        [
            "token client CODE-abc https://client.example.com/callback",
            "userinfo AT-1"
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn not_verified_and_mismatch() {
    let api = FakeApi::default();
    script(
        &api,
        vec![token_ok()],
        vec![userinfo("381123456789", "false")],
    );
    let r = verifier(api)
        .verify(&job(serde_json::json!({})), &JobContext::now())
        .await
        .result;
    assert_eq!(
        (r.status, r.phone_number_verified, r.error),
        (Status::NotVerified, Some(false), None)
    );

    let api = FakeApi::default();
    script(
        &api,
        vec![token_ok()],
        vec![userinfo("381999999999", "true")],
    );
    let r = verifier(api)
        .verify(&job(serde_json::json!({})), &JobContext::now())
        .await
        .result;
    assert_eq!(r.status, Status::NotVerified);
    let e = r.error.unwrap();
    assert_eq!(
        (e.class, e.stage, e.retryable),
        (ErrorClass::LoginHintMismatch, Stage::Userinfo, false)
    );

    // `+` and `00` prefixes are ignored.
    let api = FakeApi::default();
    script(
        &api,
        vec![token_ok()],
        vec![userinfo("00381123456789", "true")],
    );
    let r = verifier(api)
        .verify(
            &job(serde_json::json!({"login_hint": "+381123456789"})),
            &JobContext::now(),
        )
        .await
        .result;
    assert_eq!(r.status, Status::Verified);
}

#[tokio::test(start_paused = true)]
async fn authorize_error_makes_no_http_call() {
    let api = FakeApi::default();
    let j = job(serde_json::json!({"code": null, "redirect_uri": null, "error": "missing_scope"}));
    let r = verifier(api.clone())
        .verify(&j, &JobContext::now())
        .await
        .result;
    let e = r.error.unwrap();
    assert_eq!(
        (e.class, e.stage, e.code.as_deref()),
        (
            ErrorClass::AuthorizeRejected,
            Stage::Authorize,
            Some("missing_scope")
        )
    );
    assert_eq!(r.attempts, 0);
    assert!(api.calls.lock().unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn expired_code_makes_no_http_call() {
    let api = FakeApi::default();
    let issued = (Utc::now() - chrono::Duration::minutes(11)).to_rfc3339();
    let r = verifier(api.clone())
        .verify(
            &job(serde_json::json!({"issued_at": issued})),
            &JobContext::now(),
        )
        .await
        .result;
    let e = r.error.unwrap();
    assert_eq!((e.class, e.stage), (ErrorClass::Expired, Stage::Deadline));
    assert_eq!(r.attempts, 0);
    assert!(api.calls.lock().unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn an_issued_at_in_the_future_cannot_keep_an_old_code_alive() {
    // Received 11 minutes ago (code_ttl is 10), claiming to be issued next year.
    let api = FakeApi::default();
    let issued = (Utc::now() + chrono::Duration::days(365)).to_rfc3339();
    let ctx = JobContext {
        received_at: Utc::now() - chrono::Duration::minutes(11),
        ..JobContext::now()
    };
    let r = verifier(api.clone())
        .verify(&job(serde_json::json!({"issued_at": issued})), &ctx)
        .await
        .result;
    let e = r.error.unwrap();
    assert_eq!((e.class, e.stage), (ErrorClass::Expired, Stage::Deadline));
    assert!(api.calls.lock().unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn unknown_client_is_invalid_job() {
    let r = verifier(FakeApi::default())
        .verify(
            &job(serde_json::json!({"client": "other"})),
            &JobContext::now(),
        )
        .await
        .result;
    let e = r.error.unwrap();
    assert_eq!((e.class, e.stage), (ErrorClass::InvalidJob, Stage::Job));
}

#[tokio::test(start_paused = true)]
async fn classes_from_the_token_stage() {
    let cases = [
        (400, ErrorClass::CodeRejected, 1),
        (401, ErrorClass::CredentialsRejected, 1),
        (403, ErrorClass::PermissionDenied, 1),
        (429, ErrorClass::RateLimited, 3),
        (500, ErrorClass::UpstreamUnavailable, 3),
        (404, ErrorClass::ProtocolError, 1),
    ];
    for (status, class, attempts) in cases {
        let api = FakeApi::default();
        script(
            &api,
            (0..3)
                .map(|_| ok(status, serde_json::json!({"error": "x"})))
                .collect(),
            vec![],
        );
        let r = verifier(api)
            .verify(&job(serde_json::json!({})), &JobContext::now())
            .await
            .result;
        let e = r.error.unwrap();
        assert_eq!(
            (e.class, e.stage, e.http_status),
            (class, Stage::Token, Some(status)),
            "{status}"
        );
        assert_eq!(e.retryable, class.retryable());
        assert_eq!(r.attempts, attempts, "{status}");
        assert_eq!(r.phone_number_verified, None);
    }
}

#[tokio::test(start_paused = true)]
async fn malformed_success_bodies_are_protocol_errors() {
    let api = FakeApi::default();
    script(&api, vec![ok(200, serde_json::json!({"nope": 1}))], vec![]);
    let e = verifier(api)
        .verify(&job(serde_json::json!({})), &JobContext::now())
        .await
        .result
        .error
        .unwrap();
    assert_eq!(
        (e.class, e.stage),
        (ErrorClass::ProtocolError, Stage::Token)
    );

    let api = FakeApi::default();
    script(
        &api,
        vec![token_ok()],
        vec![ok(
            200,
            serde_json::json!({"login_hint": "381123456789", "phone_number_verified": "maybe"}),
        )],
    );
    let e = verifier(api)
        .verify(&job(serde_json::json!({})), &JobContext::now())
        .await
        .result
        .error
        .unwrap();
    assert_eq!(
        (e.class, e.stage),
        (ErrorClass::ProtocolError, Stage::Userinfo)
    );
}

#[tokio::test(start_paused = true)]
async fn userinfo_is_retried_then_verifies() {
    let api = FakeApi::default();
    script(
        &api,
        vec![token_ok()],
        vec![
            HttpOutcome::Transport(Transport::Timeout),
            ok(503, serde_json::json!({})),
            userinfo("381123456789", "true"),
        ],
    );
    let out = verifier(api)
        .verify(&job(serde_json::json!({})), &JobContext::now())
        .await;
    assert_eq!(out.result.status, Status::Verified);
    assert_eq!(out.result.attempts, 4);
    assert_eq!(out.retries, 2);
}

#[tokio::test(start_paused = true)]
async fn ambiguous_token_then_400_is_code_rejected_with_a_note() {
    let api = FakeApi::default();
    script(
        &api,
        vec![
            HttpOutcome::Transport(Transport::Reset("reset".into())),
            ok(400, serde_json::json!({"error": "invalid_request"})),
        ],
        vec![],
    );
    let e = verifier(api)
        .verify(&job(serde_json::json!({})), &JobContext::now())
        .await
        .result
        .error
        .unwrap();
    assert_eq!(e.class, ErrorClass::CodeRejected);
    assert!(
        e.description.contains("may have been used"),
        "{}",
        e.description
    );
}

#[tokio::test(start_paused = true)]
async fn descriptions_never_echo_the_code() {
    let api = FakeApi::default();
    script(
        &api,
        vec![ok(
            400,
            serde_json::json!({"error": "invalid_request", "error_description": "code CODE-abc was used"}),
        )],
        vec![],
    );
    let r = verifier(api)
        .verify(&job(serde_json::json!({})), &JobContext::now())
        .await
        .result;
    let text = serde_json::to_string(&r).unwrap();
    assert!(!text.contains("CODE-abc"), "{text}");
}

#[tokio::test(start_paused = true)]
async fn an_access_token_or_code_quoted_back_is_scrubbed_before_the_description_is_shortened() {
    const TOKEN: &str = "AT-9876543210fedcba";
    let api = FakeApi::default();
    let grant = ok(
        200,
        serde_json::json!({"access_token": TOKEN, "token_type": "Bearer", "expires_in": 60}),
    );
    // Results keep 200 characters of an upstream description: both secrets straddle the cut.
    let description = format!("{}{TOKEN} CODE-abc", "x".repeat(194));
    let rejected = ok(
        401,
        serde_json::json!({"error": "invalid_client", "error_description": description}),
    );
    script(&api, vec![grant], vec![rejected]);
    let (r, _) = run_job(api).await;
    let e = r.error.as_ref().unwrap();
    assert_eq!(
        (e.class, e.stage),
        (ErrorClass::CredentialsRejected, Stage::Userinfo)
    );
    let text = serde_json::to_string(&r).unwrap();
    assert!(!text.contains("AT-98"), "{text}");
    assert!(e.description.contains("***"), "{}", e.description);

    // The code cut in half by the shortening, at the token stage.
    let api = FakeApi::default();
    let description = format!("{}CODE-abc was used", "x".repeat(196));
    let used = ok(
        400,
        serde_json::json!({"error": "invalid_grant", "error_description": description}),
    );
    script(&api, vec![used], vec![]);
    let (r, _) = run_job(api).await;
    let text = serde_json::to_string(&r).unwrap();
    assert!(!text.contains("CODE"), "{text}");
}

// ---- the spent-code rule: every path that spends a code, and the ones that do not ----

/// Verifies the default job on a fresh context; returns the result and the job's spent state.
async fn run_job(api: FakeApi) -> (JobResult, SpentCode) {
    let ctx = JobContext::now();
    let r = verifier(api)
        .verify(&job(serde_json::json!({})), &ctx)
        .await
        .result;
    (r, ctx.spent)
}

/// The failure is final for the code: not retryable, `code_spent`, and the user is told to
/// authenticate again.
fn assert_final(r: &JobResult, class: ErrorClass, stage: Stage) {
    assert_eq!(r.status, Status::Failed);
    let e = r.error.as_ref().unwrap();
    assert_eq!((e.class, e.stage), (class, stage), "{e:?}");
    assert!(!e.retryable, "{e:?}");
    assert!(e.code_spent, "{e:?}");
    assert!(
        e.description.contains("the user has to authenticate again"),
        "{}",
        e.description
    );
    let text = serde_json::to_value(r).unwrap();
    assert_eq!(text["error"]["code_spent"], true);
}

fn token_ok_expiring_in(secs: u64) -> HttpOutcome {
    ok(
        200,
        serde_json::json!({"access_token":"AT-1","token_type":"Bearer","expires_in":secs}),
    )
}

#[tokio::test(start_paused = true)]
async fn token_2xx_then_userinfo_500_until_the_longer_budget_runs_out() {
    let api = FakeApi::default();
    let failures = (0..200).map(|_| ok(500, serde_json::json!({})));
    script(&api, vec![token_ok()], failures.collect());
    let start = tokio::time::Instant::now();
    let (r, spent) = run_job(api.clone()).await;
    assert_final(&r, ErrorClass::UpstreamUnavailable, Stage::Userinfo);
    assert_eq!(spent.get(), Some(Spent::Exchanged));
    assert!(r.error.unwrap().description.contains("was exchanged"));
    // retry.max_attempts (3) does not cut userinfo short: it ran for userinfo_max_elapsed (60 s).
    let took = start.elapsed();
    assert!(
        took >= Duration::from_secs(58) && took <= Duration::from_secs(60),
        "{took:?}"
    );
    assert!(r.attempts > 50, "{} attempts", r.attempts);
    let calls = api.calls.lock().unwrap().clone();
    assert_eq!(calls.iter().filter(|c| c.starts_with("token")).count(), 1);
}

#[tokio::test(start_paused = true)]
async fn the_userinfo_budget_never_outlives_the_access_token() {
    let api = FakeApi::default();
    let failures = (0..200).map(|_| ok(503, serde_json::json!({})));
    script(&api, vec![token_ok_expiring_in(5)], failures.collect());
    let start = tokio::time::Instant::now();
    let (r, _) = run_job(api).await;
    assert_final(&r, ErrorClass::UpstreamUnavailable, Stage::Userinfo);
    assert!(
        start.elapsed() <= Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    // Token, then userinfo at 0, 0.1, 0.3, 0.7, 1.5, 2.5, 3.5 and 4.5 s.
    assert_eq!(r.attempts, 9);
}

#[tokio::test(start_paused = true)]
async fn token_2xx_then_a_userinfo_rejection_is_final() {
    for (status, class) in [
        (401, ErrorClass::CredentialsRejected),
        (403, ErrorClass::PermissionDenied),
        (429, ErrorClass::RateLimited),
    ] {
        let api = FakeApi::default();
        let answers = (0..200).map(|_| ok(status, serde_json::json!({"error": "x"})));
        script(&api, vec![token_ok()], answers.collect());
        let (r, spent) = run_job(api).await;
        assert_final(&r, class, Stage::Userinfo);
        assert!(spent.is_spent(), "{status}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_token_2xx_with_a_bad_body_spends_the_code() {
    let api = FakeApi::default();
    script(&api, vec![ok(200, serde_json::json!({"nope": 1}))], vec![]);
    let (r, spent) = run_job(api).await;
    assert_final(&r, ErrorClass::ProtocolError, Stage::Token);
    assert_eq!(spent.get(), Some(Spent::Exchanged));

    let api = FakeApi::default();
    let bad_userinfo = ok(200, serde_json::json!({"login_hint": 5}));
    script(&api, vec![token_ok()], vec![bad_userinfo]);
    let (r, _) = run_job(api).await;
    assert_final(&r, ErrorClass::ProtocolError, Stage::Userinfo);
}

#[tokio::test(start_paused = true)]
async fn a_token_2xx_whose_body_broke_off_is_presented_once_and_spends_the_code() {
    for cause in [
        Transport::Timeout,
        Transport::Reset("closed mid-body".into()),
    ] {
        let api = FakeApi::default();
        let broken = HttpOutcome::Incomplete { status: 200, cause };
        // A second token answer is scripted: a retry would take it and verify the job.
        script(
            &api,
            vec![broken, token_ok()],
            vec![userinfo("381123456789", "true")],
        );
        let (r, spent) = run_job(api.clone()).await;
        assert_final(&r, ErrorClass::ProtocolError, Stage::Token);
        assert_eq!(spent.get(), Some(Spent::Exchanged));
        let e = r.error.as_ref().unwrap();
        assert_eq!(e.http_status, Some(200));
        assert!(
            e.description.ends_with(Spent::Exchanged.description()),
            "{}",
            e.description
        );
        assert_eq!(r.attempts, 1);
        assert_eq!(
            api.calls.lock().unwrap().len(),
            1,
            "one presentation, no userinfo"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn an_ambiguous_token_attempt_then_a_final_failure_spends_the_code() {
    // Timeout after sending, then 500 until the attempts run out.
    let api = FakeApi::default();
    script(
        &api,
        vec![
            HttpOutcome::Transport(Transport::Timeout),
            ok(500, serde_json::json!({})),
            ok(500, serde_json::json!({})),
        ],
        vec![],
    );
    let (r, spent) = run_job(api).await;
    assert_final(&r, ErrorClass::UpstreamUnavailable, Stage::Token);
    assert_eq!(spent.get(), Some(Spent::Ambiguous));
    assert!(r.error.unwrap().description.contains("may have been used"));

    // A reset after sending, then 400: code_rejected, and the code counts as spent.
    let api = FakeApi::default();
    script(
        &api,
        vec![
            HttpOutcome::Transport(Transport::Reset("reset".into())),
            ok(400, serde_json::json!({"error": "invalid_grant"})),
        ],
        vec![],
    );
    let (r, spent) = run_job(api).await;
    assert_final(&r, ErrorClass::CodeRejected, Stage::Token);
    assert_eq!(spent.get(), Some(Spent::Ambiguous));
}

#[tokio::test(start_paused = true)]
async fn a_gateway_520_or_524_on_token_is_retried_and_spends_the_code_when_the_job_fails() {
    for status in [520, 524] {
        let api = FakeApi::default();
        let answers = (0..3).map(|_| ok(status, serde_json::json!({})));
        script(&api, answers.collect(), vec![]);
        let (r, spent) = run_job(api.clone()).await;
        assert_final(&r, ErrorClass::UpstreamUnavailable, Stage::Token);
        assert_eq!(spent.get(), Some(Spent::Ambiguous), "{status}");
        assert_eq!(r.attempts, 3, "{status}: retried");
    }
}

#[tokio::test(start_paused = true)]
async fn an_ambiguous_attempt_that_ends_in_a_2xx_is_simply_exchanged() {
    let api = FakeApi::default();
    script(
        &api,
        vec![HttpOutcome::Transport(Transport::Timeout), token_ok()],
        vec![userinfo("381123456789", "true")],
    );
    let (r, spent) = run_job(api).await;
    assert_eq!((r.status, r.error), (Status::Verified, None));
    assert_eq!(spent.get(), Some(Spent::Exchanged));
}

#[tokio::test(start_paused = true)]
async fn failures_before_the_code_is_spent_stay_retryable() {
    let scripts: Vec<Vec<HttpOutcome>> = vec![
        (0..3).map(|_| ok(500, serde_json::json!({}))).collect(),
        (0..3).map(|_| ok(429, serde_json::json!({}))).collect(),
        (0..3)
            .map(|_| HttpOutcome::Transport(Transport::Connect("refused".into())))
            .collect(),
    ];
    for token in scripts {
        let api = FakeApi::default();
        script(&api, token, vec![]);
        let (r, spent) = run_job(api).await;
        let e = r.error.unwrap();
        assert!(e.retryable && !e.code_spent, "{e:?}");
        assert!(!e.description.contains("authenticate again"));
        assert_eq!(spent.get(), None);
        let text = serde_json::to_value(&e).unwrap();
        assert!(text.get("code_spent").is_none(), "written only when true");
    }
}

#[tokio::test(start_paused = true)]
async fn a_job_whose_code_is_spent_takes_the_next_permit_before_new_token_calls() {
    // One permit per second. Three jobs at once: the first exchanges its code at t=0; under a
    // first-come-first-served limiter the other two token calls (queued first) would go before
    // its userinfo. Its userinfo goes first instead, and so does each job's in turn.
    let api = FakeApi::default();
    script(
        &api,
        (0..3).map(|_| token_ok()).collect(),
        (0..3).map(|_| userinfo("381123456789", "true")).collect(),
    );
    let limiter = Arc::new(Limiter::new(Some(1.0), 1));
    let v = verifier_with(api.clone(), limiter);
    let (ctx, j) = (JobContext::now(), job(serde_json::json!({})));
    let (a, b, c) = tokio::join!(v.verify(&j, &ctx), v.verify(&j, &ctx), v.verify(&j, &ctx));
    for out in [a, b, c] {
        assert_eq!(out.result.status, Status::Verified);
    }
    let calls: Vec<String> = api
        .calls
        .lock()
        .unwrap()
        .iter()
        .map(|c| c.split(' ').next().unwrap().to_owned())
        .collect();
    assert_eq!(
        calls,
        ["token", "userinfo", "token", "userinfo", "token", "userinfo"]
    );
}

#[tokio::test(start_paused = true)]
async fn a_mismatch_names_the_verified_number_masked_to_three_digits() {
    let api = FakeApi::default();
    script(
        &api,
        vec![token_ok()],
        vec![userinfo("381999999321", "true")],
    );
    let r = verifier(api)
        .verify(&job(serde_json::json!({})), &JobContext::now())
        .await
        .result;
    let e = r.error.unwrap();
    assert_eq!(e.class, ErrorClass::LoginHintMismatch);
    assert!(e.description.contains("*********321"), "{}", e.description);
    assert!(!e.description.contains("999321"), "{}", e.description);
}

#[tokio::test(start_paused = true)]
async fn anonymous_sub_with_a_verified_number_is_a_protocol_error() {
    for verified in [serde_json::json!("true"), serde_json::json!(true)] {
        let api = FakeApi::default();
        let body = serde_json::json!({"sub":"anonymous","login_hint":"381123456789","phone_number_verified":verified});
        script(&api, vec![token_ok()], vec![ok(200, body)]);
        let r = verifier(api)
            .verify(&job(serde_json::json!({})), &JobContext::now())
            .await
            .result;
        assert_eq!(r.status, Status::Failed);
        let e = r.error.unwrap();
        assert_eq!(
            (e.class, e.stage),
            (ErrorClass::ProtocolError, Stage::Userinfo)
        );
        assert!(e.description.contains("anonymous"), "{}", e.description);
    }
    // "anonymous" with a number that is not verified is the seed's normal answer.
    let api = FakeApi::default();
    let body = serde_json::json!({"sub":"anonymous","login_hint":"381123456789","phone_number_verified":"false"});
    script(&api, vec![token_ok()], vec![ok(200, body)]);
    let r = verifier(api)
        .verify(&job(serde_json::json!({})), &JobContext::now())
        .await
        .result;
    assert_eq!(r.status, Status::NotVerified);
}

#[tokio::test(start_paused = true)]
async fn a_panic_during_verification_ends_the_job_internal_error() {
    // The fake panics on a call it has no answer for: here, a bug in the middle of the job,
    // after the token call.
    let api = FakeApi::default();
    script(&api, vec![token_ok()], vec![]);
    let r = verifier(api.clone())
        .verify(&job(serde_json::json!({})), &JobContext::now())
        .await
        .result;
    assert_eq!(r.status, Status::Failed);
    assert_eq!(r.phone_number_verified, None);
    let e = r.error.clone().unwrap();
    // The token call had succeeded: the code is spent, so even a bug's failure is final (§5:
    // internal_error is retryable "unless the code is spent").
    assert_eq!(
        (e.class, e.stage, e.retryable, e.code_spent),
        (ErrorClass::InternalError, Stage::Job, false, true)
    );
    assert!(e.description.contains("the user has to authenticate again"));
    assert!(!e.description.contains("CODE-abc") && !e.description.contains("AT-1"));
    assert!(
        !e.description.contains("unexpected"),
        "the panic message stays in the log"
    );
    assert_eq!(
        r.dead_letter_error(),
        Some(&e),
        "internal_error is dead-lettered"
    );
    assert_eq!(api.calls.lock().unwrap().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_panic_before_the_code_is_spent_stays_retryable() {
    // The fake panics on the token call itself (no answer scripted): nothing was exchanged.
    let api = FakeApi::default();
    script(&api, vec![], vec![]);
    let r = verifier(api)
        .verify(&job(serde_json::json!({})), &JobContext::now())
        .await
        .result;
    let e = r.error.clone().unwrap();
    assert_eq!(
        (e.class, e.retryable, e.code_spent),
        (ErrorClass::InternalError, true, false)
    );
    assert_eq!(r.dead_letter_error(), Some(&e));
}
