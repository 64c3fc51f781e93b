//! Black-box tests of the Silent Auth simulator over HTTP: the seed's A/B tables, single-use codes,
//! expiry, devices, every fault kind, the rate limit, stats and runtime scenario changes.

use serde_json::Value;
use silentauth_simulator::{self as simulator, Scenario, SimHandle, SimStats};
use std::time::{Duration, Instant};

const CB: &str = "https://client.example.com/callback";
const KEY: &str = "sim-api-key";
const B1_INVALID_CLIENT_ID: &str = "A required OAuth 2.0 parameter is missing or invalid.";
const B2_INVALID_REQUEST: &str =
    "Client specified an invalid argument, request body or query param.";
const B2_INVALID_CLIENT: &str = "Request not authenticated due to missing, invalid, or expired credentials. A new authentication is required.";

async fn start(toml: &str) -> SimHandle {
    let scenario = Scenario::from_toml_str(toml).expect("scenario");
    SimHandle::start("127.0.0.1:0".parse().unwrap(), scenario)
        .await
        .expect("start simulator")
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// The token form with the seed's credentials; `edit` changes fields before sending.
async fn token_with(
    sim: &SimHandle,
    api_key: Option<&str>,
    edit: impl FnOnce(&mut Vec<(&'static str, String)>),
) -> reqwest::Result<reqwest::Response> {
    token_form(&http(), sim, api_key, edit).await
}

async fn token_form(
    http: &reqwest::Client,
    sim: &SimHandle,
    api_key: Option<&str>,
    edit: impl FnOnce(&mut Vec<(&'static str, String)>),
) -> reqwest::Result<reqwest::Response> {
    let mut form = vec![
        ("grant_type", "authorization_code".to_owned()),
        ("redirect_uri", CB.to_owned()),
        ("client_id", "client".to_owned()),
        ("client_secret", "12345".to_owned()),
    ];
    edit(&mut form);
    let mut req = http
        .post(format!("{}/oauth2/token", sim.base_url()))
        .form(&form);
    if let Some(k) = api_key {
        req = req.header("apiKey", k);
    }
    req.send().await
}

async fn exchange(sim: &SimHandle, code: &str) -> reqwest::Result<reqwest::Response> {
    let code = code.to_owned();
    token_with(sim, Some(KEY), |f| f.push(("code", code))).await
}

async fn json(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    (status, r.json().await.expect("JSON body"))
}

async fn userinfo(sim: &SimHandle, token: &str) -> reqwest::Response {
    http()
        .get(format!("{}/oauth2/userinfo", sim.base_url()))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

/// Code -> token -> userinfo body.
async fn verify(sim: &SimHandle, login_hint: &str) -> Value {
    let code = sim.mint_code("client", login_hint, CB);
    let (status, tok) = json(exchange(sim, &code).await.unwrap()).await;
    assert_eq!(status, 200, "{tok}");
    let (status, info) = json(userinfo(sim, tok["access_token"].as_str().unwrap()).await).await;
    assert_eq!(status, 200, "{info}");
    info
}

fn assert_error(body: &Value, error: &str, description: &str) {
    assert_eq!(body["error"], error, "{body}");
    assert_eq!(body["error_description"], description, "{body}");
}

async fn device(sim: &SimHandle, login_hint: &str) -> simulator::AuthorizeRedirect {
    simulator::authorize(
        &http(),
        &sim.base_url(),
        "client",
        CB,
        login_hint,
        "xyz12345",
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn authorize_redirects_with_a_url_safe_code_and_the_state() {
    let sim = start("").await;
    let r = device(&sim, "301234567890").await;
    let code = r.code.expect("code");
    assert!(code.len() >= 32, "{code}");
    assert!(code
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c)));
    assert_eq!((r.error, r.state.as_deref()), (None, Some("xyz12345")));
    assert_ne!(device(&sim, "301234567890").await.code.unwrap(), code);
    let (status, body) = json(exchange(&sim, &code).await.unwrap()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(sim.stats().codes_issued, 2);
}

#[tokio::test]
async fn authorize_errors_are_the_b1_table() {
    let sim = start("").await;
    let base = "response_type=code&client_id=client&state=s1&redirect_uri=https%3A%2F%2Fclient.example.com%2Fcallback%3Fkeep%3D1";
    let cases = [
        (
            "&response_type=token&scope=openid%20tt%3Aphone_verify&login_hint=1",
            "invalid_client_id_request",
            B1_INVALID_CLIENT_ID,
        ),
        (
            "&client_id=nobody&scope=openid%20tt%3Aphone_verify&login_hint=1",
            "invalid_client_id_request",
            B1_INVALID_CLIENT_ID,
        ),
        (
            "&login_hint=1",
            "missing_scope",
            "A required OAuth 2.0 scope parameter is missing",
        ),
        (
            "&scope=openid&login_hint=1",
            "insufficient_scope",
            "Only openid scope requested, while custom scope is also required",
        ),
        (
            "&scope=openid%20tt%3Aphone_verify%20email&login_hint=1",
            "unsupported_scope",
            "The requested scope is unknown, malformed, or exceeds permitted scope.",
        ),
        (
            "&scope=openid%20tt%3Aphone_verify",
            "missing_login_hint",
            "Scope requires login_hint but not provided",
        ),
    ];
    for (extra, error, description) in cases {
        // Parameters given twice: the first occurrence wins, so put overrides first.
        let url = format!("{}/oauth2/authorize?{}&{base}", sim.base_url(), &extra[1..]);
        let r = http().get(url).send().await.unwrap();
        assert_eq!(r.status(), 302, "{extra}");
        let loc = url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
        assert_eq!(loc.host_str(), Some("client.example.com"));
        let q: std::collections::HashMap<_, _> = loc.query_pairs().into_owned().collect();
        assert_eq!(q.get("error").map(String::as_str), Some(error), "{extra}");
        assert_eq!(
            q.get("error_description").map(String::as_str),
            Some(description)
        );
        assert_eq!(q.get("state").map(String::as_str), Some("s1"));
        assert_eq!(q.get("keep").map(String::as_str), Some("1"));
        assert!(!q.contains_key("code"));
    }
    assert_eq!(sim.stats().count("authorize", 302), cases.len() as u64);
    assert_eq!(sim.stats().codes_issued, 0);
}

#[tokio::test]
async fn unusable_redirect_uri_is_a_400_json_not_a_redirect() {
    let sim = start(
        "[[clients]]\nclient_id = \"client\"\nclient_secret = \"12345\"\nredirect_uris = [\"https://client.example.com/callback\"]",
    )
    .await;
    for uri in [
        "",
        "&redirect_uri=%2Frelative",
        "&redirect_uri=https%3A%2F%2Fevil.example%2Fcb",
    ] {
        let url = format!(
            "{}/oauth2/authorize?response_type=code&client_id=client&scope=openid&login_hint=1{uri}",
            sim.base_url()
        );
        let (status, body) = json(http().get(url).send().await.unwrap()).await;
        assert_eq!(status, 400, "{uri}");
        assert_eq!(body["error"], "invalid_request");
        assert!(body["error_description"]
            .as_str()
            .unwrap()
            .contains("redirect_uri"));
    }
    let err = simulator::authorize(
        &http(),
        &sim.base_url(),
        "client",
        "https://evil.example/cb",
        "1",
        "s",
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("400"), "{err}");
    assert!(device(&sim, "381").await.code.is_some());
}

#[tokio::test]
async fn token_and_userinfo_have_the_a2_a3_shapes() {
    let sim = start("").await;
    let code = device(&sim, "381123456789").await.code.unwrap();
    let r = exchange(&sim, &code).await.unwrap();
    assert_eq!(r.headers()["cache-control"], "no-store");
    let (status, tok) = json(r).await;
    assert_eq!(status, 200);
    for k in ["access_token", "refresh_token", "id_token"] {
        assert!(tok[k].as_str().is_some_and(|s| s.len() >= 20), "{k}: {tok}");
    }
    assert_eq!(tok["scope"], "openid tt:mobile_id");
    assert_eq!(tok["token_type"], "Bearer");
    assert_eq!(tok["expires_in"], 86399);
    let (status, info) = json(userinfo(&sim, tok["access_token"].as_str().unwrap()).await).await;
    assert_eq!(status, 200);
    assert_eq!(info.as_object().unwrap().len(), 4, "{info}");
    assert!(
        uuid::Uuid::parse_str(info["sub"].as_str().unwrap()).is_ok(),
        "{info}"
    );
    let mobile_id = info["mobile_id"].as_str().unwrap();
    assert!(mobile_id.len() >= 32 && mobile_id.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(info["login_hint"], "381123456789");
    assert_eq!(info["phone_number_verified"], "true");
    // Stable per device number.
    assert_eq!(verify(&sim, "381123456789").await["mobile_id"], mobile_id);
    assert_ne!(verify(&sim, "381000000000").await["mobile_id"], mobile_id);
}

#[tokio::test]
async fn a_code_is_single_use_and_reuse_is_counted() {
    let sim = start("").await;
    let code = sim.mint_code("client", "381", CB);
    assert_eq!(exchange(&sim, &code).await.unwrap().status(), 200);
    let (status, body) = json(exchange(&sim, &code).await.unwrap()).await;
    assert_eq!(status, 400);
    assert_error(&body, "invalid_request", B2_INVALID_REQUEST);
    let (status, _) = json(exchange(&sim, "never-issued").await.unwrap()).await;
    assert_eq!(status, 400);
    let stats = sim.stats();
    assert_eq!(stats.codes_reused, 1);
    assert_eq!(
        (stats.count("token", 200), stats.count("token", 400)),
        (1, 2)
    );
}

#[tokio::test]
async fn codes_expire_after_code_ttl() {
    let sim = start("code_ttl = \"30s\"").await;
    let early = sim.mint_code("client", "381", CB);
    let late = sim.mint_code("client", "381", CB);
    sim.advance_clock(Duration::from_secs(29));
    assert_eq!(exchange(&sim, &early).await.unwrap().status(), 200);
    sim.advance_clock(Duration::from_secs(2));
    let (status, body) = json(exchange(&sim, &late).await.unwrap()).await;
    assert_eq!(status, 400);
    assert_error(&body, "invalid_request", B2_INVALID_REQUEST);
}

#[tokio::test]
async fn a_mismatched_redirect_uri_or_client_is_refused_and_uses_the_code() {
    let sim = start(
        "[[clients]]\nclient_id = \"client\"\nclient_secret = \"12345\"\n\
         [[clients]]\nclient_id = \"other\"\nclient_secret = \"s2\"",
    )
    .await;
    let code = sim.mint_code("client", "381", CB);
    let c = code.clone();
    let r = token_with(&sim, Some(KEY), |f| {
        f[1].1 = "https://client.example.com/elsewhere".into();
        f.push(("code", c));
    });
    let (status, body) = json(r.await.unwrap()).await;
    assert_eq!(status, 400);
    assert_error(&body, "invalid_request", B2_INVALID_REQUEST);
    assert_eq!(exchange(&sim, &code).await.unwrap().status(), 400);
    assert_eq!(sim.stats().codes_reused, 1);

    let code = sim.mint_code("client", "381", CB);
    let r = token_with(&sim, Some(KEY), |f| {
        f[2].1 = "other".into();
        f[3].1 = "s2".into();
        f.push(("code", code));
    });
    assert_eq!(r.await.unwrap().status(), 400);

    let code = sim.mint_code("client", "381", CB);
    let r = token_with(&sim, Some(KEY), |f| {
        f[0].1 = "client_credentials".into();
        f.push(("code", code));
    });
    let (status, body) = json(r.await.unwrap()).await;
    assert_eq!(status, 400);
    assert_error(&body, "invalid_request", B2_INVALID_REQUEST);
}

#[tokio::test]
async fn bad_credentials_are_401_and_leave_the_code_unused() {
    let sim = start("").await;
    let code = sim.mint_code("client", "381", CB);
    let with = |key: Option<&'static str>, field: usize, value: &'static str| {
        let code = code.clone();
        let sim = &sim;
        async move {
            token_with(sim, key, |f| {
                f[field].1 = value.into();
                f.push(("code", code));
            })
            .await
            .unwrap()
        }
    };
    for r in [
        with(None, 0, "authorization_code").await,
        with(Some("wrong"), 0, "authorization_code").await,
        with(Some(KEY), 3, "wrong-secret").await,
        with(Some(KEY), 2, "unknown-client").await,
    ] {
        let (status, body) = json(r).await;
        assert_eq!(status, 401);
        assert_error(&body, "invalid_client", B2_INVALID_CLIENT);
    }
    assert_eq!(exchange(&sim, &code).await.unwrap().status(), 200);
    assert_eq!(sim.stats().count("token", 401), 4);
}

#[tokio::test]
async fn userinfo_refuses_unknown_and_expired_tokens() {
    let sim = start("token_ttl = \"60s\"").await;
    let (status, body) = json(userinfo(&sim, "not-a-token").await).await;
    assert_eq!(status, 401);
    assert_error(&body, "invalid_client", B2_INVALID_CLIENT);
    let url = format!("{}/oauth2/userinfo", sim.base_url());
    assert_eq!(http().get(url).send().await.unwrap().status(), 401);

    let code = sim.mint_code("client", "381", CB);
    let (_, tok) = json(exchange(&sim, &code).await.unwrap()).await;
    assert_eq!(tok["expires_in"], 60);
    let token = tok["access_token"].as_str().unwrap();
    assert_eq!(userinfo(&sim, token).await.status(), 200);
    sim.advance_clock(Duration::from_secs(61));
    assert_eq!(userinfo(&sim, token).await.status(), 401);
}

#[tokio::test]
async fn devices_seen_as_another_number_are_not_verified() {
    let sim = start("[devices]\n\"381111111111\" = \"381999999999\"").await;
    let info = verify(&sim, "381111111111").await;
    assert_eq!(info["sub"], "anonymous");
    assert_eq!(info["phone_number_verified"], "false");
    assert_eq!(info["login_hint"], "381111111111");
    // The mobile_id is the device's, i.e. that of the number the network sees.
    assert_eq!(
        verify(&sim, "381999999999").await["mobile_id"],
        info["mobile_id"]
    );
    assert_eq!(
        verify(&sim, "381222222222").await["phone_number_verified"],
        "true"
    );
}

#[tokio::test]
async fn status_faults_follow_login_hints_and_heal_per_code() {
    let sim = start(
        "[[faults]]\nendpoint = \"token\"\nstatus = 403\nlogin_hints = [\"381222222222\"]\n\
         [[faults]]\nendpoint = \"token\"\nstatus = 500\nfirst = 1\nper_code = true\nlogin_hints = [\"381333333333\"]",
    )
    .await;
    let denied = sim.mint_code("client", "381222222222", CB);
    for _ in 0..2 {
        let (status, body) = json(exchange(&sim, &denied).await.unwrap()).await;
        assert_eq!(status, 403);
        assert_error(
            &body,
            "permission_denied",
            "Client does not have sufficient permissions to perform this action.",
        );
    }
    for _ in 0..2 {
        // Each code fails once with 500 (without being used), then succeeds.
        let code = sim.mint_code("client", "381333333333", CB);
        let (status, body) = json(exchange(&sim, &code).await.unwrap()).await;
        assert_eq!(status, 500);
        assert_error(
            &body,
            "internal_server_error",
            "Request could not be processed.",
        );
        assert_eq!(exchange(&sim, &code).await.unwrap().status(), 200);
    }
    assert_eq!(
        verify(&sim, "381444444444").await["phone_number_verified"],
        "true"
    );
    let stats = sim.stats();
    assert_eq!((stats.faults_injected, stats.codes_reused), (4, 0));
}

#[tokio::test]
async fn throttling_faults_send_retry_after_and_heal_after_first() {
    let sim = start(
        "[[faults]]\nendpoint = \"userinfo\"\nstatus = 429\nretry_after = \"2\"\nfirst = 1\n\
         [[faults]]\nendpoint = \"token\"\nstatus = 503\nretry_after = 3\nfirst = 1\n\
         [[faults]]\nendpoint = \"token\"\nstatus = 502\nfirst = 1\n\
         [[faults]]\nendpoint = \"token\"\nstatus = 500\nbody = '{\"error\":\"custom\"}'\nfirst = 1",
    )
    .await;
    let code = sim.mint_code("client", "381", CB);
    let r = exchange(&sim, &code).await.unwrap();
    assert_eq!(
        (
            r.status().as_u16(),
            r.headers()["retry-after"].to_str().unwrap()
        ),
        (503, "3")
    );
    assert_eq!(json(r).await.1["error"], "service_unavailable");
    let r = exchange(&sim, &code).await.unwrap();
    assert_eq!(r.status(), 502);
    assert!(r.headers().get("retry-after").is_none());
    assert_eq!(r.text().await.unwrap(), "Bad Gateway");
    let (status, body) = json(exchange(&sim, &code).await.unwrap()).await;
    assert_eq!(
        (status, body),
        (500, serde_json::json!({"error": "custom"}))
    );
    let (status, tok) = json(exchange(&sim, &code).await.unwrap()).await;
    assert_eq!(status, 200);
    let token = tok["access_token"].as_str().unwrap();
    let r = userinfo(&sim, token).await;
    assert_eq!(
        (
            r.status().as_u16(),
            r.headers()["retry-after"].to_str().unwrap()
        ),
        (429, "2")
    );
    assert_eq!(json(r).await.1["error"], "too_many_requests");
    assert_eq!(userinfo(&sim, token).await.status(), 200);
}

#[tokio::test]
async fn drop_closes_the_connection_before_or_after_using_the_code() {
    let sim = start(
        "[[faults]]\nendpoint = \"token\"\nkind = \"drop\"\nfirst = 1\nlogin_hints = [\"381000000001\"]\n\
         [[faults]]\nendpoint = \"token\"\nkind = \"drop\"\nafter_processing = true\nfirst = 1\nlogin_hints = [\"381000000002\"]\n\
         [[faults]]\nendpoint = \"userinfo\"\nkind = \"drop\"\nfirst = 1",
    )
    .await;
    let before = sim.mint_code("client", "381000000001", CB);
    let err = exchange(&sim, &before).await.unwrap_err();
    assert!(!err.is_status() && !err.is_timeout(), "{err:?}");
    assert_eq!(
        exchange(&sim, &before).await.unwrap().status(),
        200,
        "code not used"
    );

    let after = sim.mint_code("client", "381000000002", CB);
    assert!(exchange(&sim, &after).await.is_err());
    let (status, body) = json(exchange(&sim, &after).await.unwrap()).await;
    assert_eq!(status, 400, "the dropped request used the code: {body}");
    assert_eq!(sim.stats().codes_reused, 1);

    let code = sim.mint_code("client", "381", CB);
    let (_, tok) = json(exchange(&sim, &code).await.unwrap()).await;
    let url = format!("{}/oauth2/userinfo", sim.base_url());
    let token = tok["access_token"].as_str().unwrap();
    assert!(http().get(&url).bearer_auth(token).send().await.is_err());
    assert_eq!(userinfo(&sim, token).await.status(), 200);
    let stats = sim.stats();
    assert_eq!(
        (stats.count("token", 0), stats.count("userinfo", 0)),
        (2, 1)
    );
}

#[tokio::test]
async fn slow_faults_and_latency_delay_the_answer() {
    let sim = start(
        "[[faults]]\nendpoint = \"token\"\nkind = \"slow\"\ndelay = \"500ms\"\nlogin_hints = [\"381000000001\"]\n\
         [latency.userinfo]\nfixed = \"200ms\"",
    )
    .await;
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let code = sim.mint_code("client", "381000000001", CB);
    let c = code.clone();
    let err = token_form(&impatient, &sim, Some(KEY), |f| f.push(("code", c)))
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err:?}");

    let fresh = sim.mint_code("client", "381000000001", CB);
    let t0 = Instant::now();
    assert_eq!(exchange(&sim, &fresh).await.unwrap().status(), 200);
    assert!(
        t0.elapsed() >= Duration::from_millis(500),
        "{:?}",
        t0.elapsed()
    );

    let other = sim.mint_code("client", "381000000002", CB);
    let (_, tok) = json(exchange(&sim, &other).await.unwrap()).await;
    let t0 = Instant::now();
    assert_eq!(
        userinfo(&sim, tok["access_token"].as_str().unwrap())
            .await
            .status(),
        200
    );
    assert!(
        t0.elapsed() >= Duration::from_millis(200),
        "{:?}",
        t0.elapsed()
    );
}

#[tokio::test]
async fn malformed_answers_do_not_parse_or_lack_fields() {
    let sim = start(
        "[[faults]]\nendpoint = \"token\"\nkind = \"malformed\"\nfirst = 1\n\
         [[faults]]\nendpoint = \"token\"\nkind = \"malformed\"\nbody = '{\"token_type\":\"Bearer\"}'\nfirst = 1\n\
         [[faults]]\nendpoint = \"authorize\"\nkind = \"malformed\"\nfirst = 1",
    )
    .await;
    let code = sim.mint_code("client", "381", CB);
    let r = exchange(&sim, &code).await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(serde_json::from_str::<Value>(&r.text().await.unwrap()).is_err());
    let code = sim.mint_code("client", "381", CB);
    let (status, body) = json(exchange(&sim, &code).await.unwrap()).await;
    assert_eq!((status, body.get("access_token")), (200, None));
    assert_eq!(
        exchange(&sim, &code).await.unwrap().status(),
        400,
        "processed: code used"
    );
    let r = device(&sim, "381").await;
    assert_eq!(
        (r.code, r.error, r.state.as_deref()),
        (None, None, Some("xyz12345"))
    );
    assert!(device(&sim, "381").await.code.is_some());
}

#[tokio::test]
async fn authorize_server_error_can_be_injected_for_one_number() {
    let sim = start(
        "[[faults]]\nendpoint = \"authorize\"\nkind = \"redirect_error\"\nlogin_hints = [\"381444444444\"]\n\
         [[faults]]\nendpoint = \"authorize\"\nstatus = 503\nlogin_hints = [\"381555555555\"]",
    )
    .await;
    let r = device(&sim, "381444444444").await;
    assert_eq!(r.error.as_deref(), Some("server_error"));
    assert_eq!(
        r.error_description.as_deref(),
        Some("Unexpected server error")
    );
    assert_eq!(r.state.as_deref(), Some("xyz12345"));
    let err = simulator::authorize(&http(), &sim.base_url(), "client", CB, "381555555555", "s")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("503"), "{err}");
    assert!(device(&sim, "381123123123").await.code.is_some());
}

#[tokio::test]
async fn the_simulators_own_rate_limit_answers_429_with_retry_after() {
    // One token per 100 s after a burst of 2: the third request cannot be admitted in time.
    let sim = start("[rate_limit]\nrequests_per_second = 0.01\nburst = 2").await;
    for _ in 0..2 {
        assert_eq!(exchange(&sim, "x").await.unwrap().status(), 400);
    }
    let r = exchange(&sim, "x").await.unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "1");
    assert_eq!(userinfo(&sim, "t").await.status(), 429);
    assert!(
        device(&sim, "381").await.code.is_some(),
        "authorize is not limited by default"
    );
    let stats = sim.stats();
    assert_eq!((stats.rate_limited, stats.count("token", 429)), (2, 1));
}

#[tokio::test]
async fn stats_count_requests_and_match_the_http_view() {
    let sim = start("").await;
    let _ = verify(&sim, "381").await;
    let _ = device(&sim, "381").await;
    assert_eq!(exchange(&sim, "nope").await.unwrap().status(), 400);
    assert_eq!(userinfo(&sim, "nope").await.status(), 401);
    let stats = sim.stats();
    assert_eq!(stats.count("authorize", 302), 1);
    assert_eq!(
        (stats.count("token", 200), stats.count("token", 400)),
        (1, 1)
    );
    assert_eq!(
        (stats.count("userinfo", 200), stats.count("userinfo", 401)),
        (1, 1)
    );
    assert_eq!(
        (stats.total("token"), stats.total("userinfo"), stats.total),
        (2, 2, 5)
    );
    assert_eq!(stats.tokens_issued, 1);
    assert_eq!(stats.api_per_second.counts.iter().sum::<u64>(), 4);
    assert!(stats.peak_per_second() >= 1);
    let over_http: SimStats = http()
        .get(format!("http://{}/_sim/stats", sim.addr()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(over_http, stats);
    let r = http()
        .post(format!("http://{}/_sim/reset-stats", sim.addr()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        sim.stats(),
        SimStats {
            endpoints: sim.stats().endpoints,
            ..SimStats::default()
        }
    );
    assert_eq!(sim.stats().total, 0);
}

#[tokio::test]
async fn scenarios_can_be_replaced_in_process_and_over_http() {
    let sim = start("").await;
    let outage = "[[faults]]\nendpoint = \"token\"\nstatus = 500";
    sim.set_scenario(Scenario::from_toml_str(outage).unwrap());
    let code = sim.mint_code("client", "381", CB);
    assert_eq!(exchange(&sim, &code).await.unwrap().status(), 500);
    sim.set_scenario(Scenario::default());
    assert_eq!(exchange(&sim, &code).await.unwrap().status(), 200);

    let url = format!("http://{}/_sim/scenario", sim.addr());
    let r = http().put(&url).body(outage).send().await.unwrap();
    assert_eq!(r.status(), 204);
    let code = sim.mint_code("client", "381", CB);
    assert_eq!(exchange(&sim, &code).await.unwrap().status(), 500);
    let current = http().get(&url).send().await.unwrap().text().await.unwrap();
    assert_eq!(Scenario::from_toml_str(&current).unwrap().faults.len(), 1);
    let r = http()
        .put(&url)
        .body("[[faults]]\nendpoint = \"nowhere\"")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("nowhere"));
    let r = http().put(&url).body("").send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(exchange(&sim, &code).await.unwrap().status(), 200);
}

#[tokio::test]
async fn the_example_scenario_file_is_valid() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/simulator.toml");
    let s = Scenario::from_file(&path).unwrap();
    assert!(!s.faults.is_empty());
    assert!(s.rate_limit.is_some());
}

#[tokio::test]
async fn shutdown_stops_serving() {
    let sim = start("").await;
    let addr = sim.addr();
    assert_eq!(sim.base_url(), format!("http://{addr}/silent-auth/v1"));
    sim.shutdown().await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_double_spends_succeed_exactly_once_per_code() {
    let sim = std::sync::Arc::new(start("").await);
    let codes: Vec<String> = (0..200)
        .map(|i| sim.mint_code("client", &format!("3810000{i:05}"), CB))
        .collect();
    let http = http();
    let t0 = Instant::now();
    let tasks: Vec<_> = codes
        .iter()
        .chain(codes.iter())
        .map(|code| {
            let (sim, http, code) = (sim.clone(), http.clone(), code.clone());
            tokio::spawn(async move {
                token_form(&http, &sim, Some(KEY), |f| f.push(("code", code)))
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        if t.await.unwrap() == 200 {
            ok += 1;
        }
    }
    eprintln!("400 exchanges in {:?}", t0.elapsed());
    assert_eq!(ok, 200);
    let stats = sim.stats();
    assert_eq!((stats.count("token", 400), stats.codes_reused), (200, 200));
}
