//! `verify.rs` with network signals against a scripted fake API with latencies: no network, no
//! broker, paused time. A Network Signals `Retry-After` holds the profile's normal lane only: the
//! userinfo of a spent code and the checks its job sends after the exchange go on, a check that
//! retries before the exchange waits it out as any normal request.

use silentauth_worker::contract::network_signals::{ForwardingOutcome, SwapOutcome};
use silentauth_worker::contract::{Job, Status};
use silentauth_worker::secret::Secret;
use silentauth_worker::silentauth::client::Credentials;
use silentauth_worker::silentauth::{
    Api, HttpOutcome, HttpResponse, Limiter, Priority, RetryPolicy, SignalCall,
};
use silentauth_worker::verify::{JobContext, Profile, Verifier};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// Answers by endpoint, in order: (latency in ms, outcome).
type Scripts = HashMap<&'static str, VecDeque<(u64, HttpOutcome)>>;

/// Each endpoint answers its script in order, each answer after its latency; every request is
/// logged with the time it was sent.
#[derive(Clone)]
struct FakeApi {
    start: Instant,
    scripts: Arc<Mutex<Scripts>>,
    sent: Arc<Mutex<Vec<(&'static str, Duration)>>>,
}

impl FakeApi {
    fn new(scripts: Vec<(&'static str, Vec<(u64, HttpOutcome)>)>) -> FakeApi {
        let scripts = scripts
            .into_iter()
            .map(|(name, answers)| (name, answers.into()))
            .collect();
        FakeApi {
            start: Instant::now(),
            scripts: Arc::new(Mutex::new(scripts)),
            sent: Arc::default(),
        }
    }

    fn answer(&self, name: &'static str) -> impl std::future::Future<Output = HttpOutcome> {
        self.sent.lock().unwrap().push((name, self.start.elapsed()));
        let next = self
            .scripts
            .lock()
            .unwrap()
            .get_mut(name)
            .and_then(VecDeque::pop_front);
        let (latency_ms, outcome) = next.unwrap_or_else(|| panic!("unexpected {name} call"));
        async move {
            tokio::time::sleep(Duration::from_millis(latency_ms)).await;
            outcome
        }
    }

    /// When each request to `name` was sent, in order.
    fn sent(&self, name: &str) -> Vec<Duration> {
        let sent = self.sent.lock().unwrap();
        sent.iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, t)| *t)
            .collect()
    }
}

impl Api for FakeApi {
    async fn token(&self, _: &Credentials, _: &Secret, _: &str) -> HttpOutcome {
        self.answer("token").await
    }
    async fn userinfo(&self, _: &Secret) -> HttpOutcome {
        self.answer("userinfo").await
    }
    async fn signal(&self, _: &Secret, call: SignalCall, _: &str, _: Option<u32>) -> HttpOutcome {
        self.answer(call.path()).await
    }
}

fn answer(status: u16, body: serde_json::Value, retry_after_secs: Option<u64>) -> HttpOutcome {
    HttpOutcome::Response(HttpResponse {
        status,
        body: body.to_string().into_bytes(),
        retry_after: retry_after_secs.map(Duration::from_secs),
    })
}

fn verifier(api: FakeApi) -> Verifier<FakeApi> {
    let credentials = Credentials {
        client_id: "client".into(),
        client_secret: Secret::new("12345"),
        api_key: Secret::new("key"),
    };
    // One limiter for Silent Auth and Network Signals, as without `signals_requests_per_second`.
    let profile = Profile::new(credentials, Arc::new(Limiter::unlimited()));
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
    let profiles = HashMap::from([("default".to_owned(), profile)]);
    Verifier::new(api, profiles, policy, Duration::from_secs(600))
}

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

/// At t=0 the token call and three checks go out. The SIM swap check answers 429 with a 10 s
/// `Retry-After` at 50 ms: the normal lane is paused until 10.05 s. The device swap check answers
/// 500 at 20 ms and retries at 120 ms, before the exchange: held. The token call answers at
/// 200 ms and spends the code: userinfo goes at once. The call-forwarding check answers 500 at
/// 300 ms and retries at 400 ms, after the exchange: it goes at once too.
#[tokio::test(start_paused = true)]
async fn a_signals_retry_after_never_holds_the_requests_of_a_spent_code() {
    let token =
        serde_json::json!({"access_token": "AT-1", "token_type": "Bearer", "expires_in": 3600});
    let info = serde_json::json!({"sub": "99dd", "mobile_id": "2d83", "login_hint": "4915112345678", "phone_number_verified": "true"});
    let none = serde_json::json!({});
    let api = FakeApi::new(vec![
        ("token", vec![(200, answer(200, token, None))]),
        ("userinfo", vec![(10, answer(200, info, None))]),
        (
            "/sim-swap/check",
            vec![
                (50, answer(429, none.clone(), Some(10))),
                (0, answer(200, serde_json::json!({"swapped": false}), None)),
            ],
        ),
        (
            "/device-swap/check",
            vec![
                (20, answer(500, none.clone(), None)),
                (0, answer(200, serde_json::json!({"swapped": false}), None)),
            ],
        ),
        (
            "/call-forwarding/unconditional/check",
            vec![
                (300, answer(500, none, None)),
                (0, answer(200, serde_json::json!({"active": false}), None)),
            ],
        ),
    ]);
    let job = serde_json::json!({"job_id": "j-1", "login_hint": "4915112345678", "code": "CODE-abc",
        "redirect_uri": "https://client.example.com/callback",
        "signals": {"sim_swap": {}, "device_swap": {}, "call_forwarding": {}}});
    let job = Job::decode(job.to_string().as_bytes()).expect("valid job");
    let ctx = JobContext::now();
    let r = verifier(api.clone()).verify(&job, &ctx).await.result;

    assert_eq!(r.status, Status::Verified);
    assert!(ctx.spent.is_spent());
    let s = r.signals.as_ref().unwrap();
    assert_eq!(
        s.sim_swap.as_ref().unwrap().outcome,
        SwapOutcome::NotSwapped
    );
    assert_eq!(
        s.device_swap.as_ref().unwrap().outcome,
        SwapOutcome::NotSwapped
    );
    let forwarding = s.call_forwarding.as_ref().unwrap().outcome;
    assert_eq!(forwarding, ForwardingOutcome::Inactive);
    assert_eq!(r.attempts, 8);
    // Userinfo as soon as the token call answered, not when the signals pause ends.
    let userinfo = api.sent("userinfo");
    assert!(
        userinfo[0] >= ms(200) && userinfo[0] <= ms(201),
        "{userinfo:?}"
    );
    // A check retried after the exchange takes the high lane: only its backoff.
    let forwarding = api.sent("/call-forwarding/unconditional/check");
    assert!(
        forwarding[1] >= ms(400) && forwarding[1] <= ms(402),
        "{forwarding:?}"
    );
    // A check retried before the exchange is a normal request: the pause holds it, as it holds
    // token calls.
    let device = api.sent("/device-swap/check");
    assert!(device[1] >= ms(10_050), "{device:?}");
    // The check that got the 429 waits out its own Retry-After.
    let sim = api.sent("/sim-swap/check");
    assert!(sim[1] >= ms(10_050) && sim[1] <= ms(10_152), "{sim:?}");
}
