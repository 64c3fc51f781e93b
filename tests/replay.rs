//! Black-box tests of `replay-dlq` (`silentauth_worker::replay`): filters, the end-offset bound,
//! the max-replays guard, dry runs, interrupted runs, bad arguments, the whole loop from an
//! upstream outage to verified results, and a spent code that no replay presents again, on the
//! broker chosen by `tests/support`.

mod support;

use chrono::{DateTime, Duration as ChronoDuration, SecondsFormat, Utc};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message, OwnedMessage};
use serde_json::{json, Value};
use silentauth_simulator::{Scenario, SimHandle};
use silentauth_worker::config::Config;
use silentauth_worker::contract::DeadLetterHeaders;
use silentauth_worker::replay::{replay, ReplayArgs, ReplayError, ReplayOptions, ReplayReport};
use std::collections::{BTreeSet, HashMap};
use std::time::Duration;
use support::world::client;
use support::TestBroker;
use tokio_util::sync::CancellationToken;

const REDIRECT: &str = "https://client.example.com/callback";
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
/// Upper bound of one replay run in these tests.
const RUN_TIMEOUT: Duration = Duration::from_secs(90);

/// A broker with a jobs topic and a dead-letter topic of their own.
struct World {
    broker: TestBroker,
    jobs: String,
    dlq: String,
    /// The presentation ledger of the workers some tests run.
    ledger: String,
    group: String,
}

/// One dead letter to write: its class, failure time, replay count and original timestamp.
struct Dl {
    class: &'static str,
    failed_at: DateTime<Utc>,
    replay_count: u32,
    original_ms: Option<i64>,
    code_spent: bool,
}

impl Dl {
    fn new(class: &'static str, failed_at: DateTime<Utc>, replay_count: u32) -> Dl {
        Dl {
            class,
            failed_at,
            replay_count,
            original_ms: None,
            code_spent: false,
        }
    }

    fn headers(&self, jobs: &str) -> Vec<(&'static str, String)> {
        DeadLetterHeaders {
            original_topic: jobs.to_owned(),
            original_partition: 0,
            original_offset: 42,
            original_timestamp: self.original_ms,
            error_class: self.class.to_owned(),
            error_stage: "token".into(),
            error_message: "HTTP 500".into(),
            error_http_status: Some(500),
            attempts: 2,
            failed_at: self.failed_at,
            consumer_group: "silentauth-worker".into(),
            worker_version: "0.1.0".into(),
            replay_count: self.replay_count,
            code_spent: self.code_spent,
            traceparent: Some(TRACEPARENT.into()),
        }
        .to_headers()
    }
}

impl World {
    async fn new() -> World {
        let broker = TestBroker::start().await;
        let jobs = TestBroker::unique_topic("jobs");
        let dlq = TestBroker::unique_topic("dlq");
        let ledger = TestBroker::unique_topic("ledger");
        broker.create_topic(&jobs, 2).await;
        broker.create_topic(&dlq, 2).await;
        broker.create_topic(&ledger, 1).await;
        World {
            broker,
            jobs,
            dlq,
            ledger,
            group: TestBroker::unique_group("replay"),
        }
    }

    fn config(&self) -> Config {
        let mut c = Config::default();
        c.kafka.brokers = self.broker.bootstrap();
        c.kafka.group_id = self.group.clone();
        c.kafka.connect_timeout = Duration::from_secs(10);
        c.topics.jobs = self.jobs.clone();
        c.topics.dead_letter = self.dlq.clone();
        c.topics.ledger = self.ledger.clone();
        c
    }

    async fn topic(&self, prefix: &str) -> String {
        let t = TestBroker::unique_topic(prefix);
        self.broker.create_topic(&t, 1).await;
        t
    }

    /// Writes a dead letter keyed `key` whose value is `value-<key>`.
    async fn dead_letter(&self, key: &str, dl: Option<&Dl>) {
        let headers = dl.map(|d| d.headers(&self.jobs)).unwrap_or_default();
        let raw: Vec<(&str, &[u8])> = headers.iter().map(|(k, v)| (*k, v.as_bytes())).collect();
        let value = format!("value-{key}");
        self.broker
            .produce(&self.dlq, Some(key.as_bytes()), value.as_bytes(), &raw)
            .await;
    }

    async fn replay(&self, opts: &ReplayOptions) -> Result<ReplayReport, ReplayError> {
        self.replay_with(&self.config(), opts).await
    }

    async fn replay_with(
        &self,
        config: &Config,
        opts: &ReplayOptions,
    ) -> Result<ReplayReport, ReplayError> {
        tokio::time::timeout(RUN_TIMEOUT, replay(config, opts, CancellationToken::new()))
            .await
            .expect("replay finished in time")
    }

    /// Records in `topic` now (sum of high minus low watermarks): exact, no waiting.
    async fn count(&self, topic: &str) -> i64 {
        let consumer: BaseConsumer = self.broker.client_config().create().unwrap();
        let topic = topic.to_owned();
        tokio::task::spawn_blocking(move || {
            let t = Duration::from_secs(10);
            let meta = consumer.fetch_metadata(Some(&topic), t).unwrap();
            let parts: Vec<i32> = meta.topics()[0]
                .partitions()
                .iter()
                .map(|p| p.id())
                .collect();
            parts
                .into_iter()
                .map(|p| {
                    let (low, high) = support::load::watermarks(&consumer, &topic, p);
                    high - low
                })
                .sum()
        })
        .await
        .unwrap()
    }

    /// Every record of `topic` (the count is known exactly first).
    async fn records(&self, topic: &str) -> Vec<OwnedMessage> {
        let n = self.count(topic).await as usize;
        let got = self
            .broker
            .consume_all(topic, n, Duration::from_secs(30))
            .await;
        assert_eq!(got.len(), n, "read every record of {topic}");
        got
    }

    /// Waits (bounded) until `topic` holds at least `n` records.
    async fn wait_for(&self, topic: &str, n: i64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while self.count(topic).await < n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{topic}: < {n} records"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn header<'a>(m: &'a OwnedMessage, name: &str) -> Option<&'a str> {
    m.headers()?
        .iter()
        .filter(|h| h.key == name)
        .last()
        .and_then(|h| h.value)
        .map(|v| std::str::from_utf8(v).unwrap())
}

fn header_names(m: &OwnedMessage) -> Vec<String> {
    m.headers()
        .map(|h| h.iter().map(|h| h.key.to_owned()).collect())
        .unwrap_or_default()
}

fn key(m: &OwnedMessage) -> String {
    String::from_utf8(m.key().unwrap().to_vec()).unwrap()
}

fn keys(ms: &[OwnedMessage]) -> BTreeSet<String> {
    ms.iter().map(key).collect()
}

fn opts() -> ReplayOptions {
    ReplayOptions::default()
}

fn bad_argument(r: Result<ReplayReport, ReplayError>) -> String {
    match r {
        Err(e @ ReplayError::BadArgument { .. }) => {
            assert_eq!(e.exit_code(), 2);
            match e {
                ReplayError::BadArgument { argument, .. } => argument,
                _ => unreachable!(),
            }
        }
        other => panic!("expected a bad argument, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_by_class_and_time_and_rewrites_headers() {
    let w = World::new().await;
    let now = Utc::now();
    let original_ms = (now - ChronoDuration::minutes(40)).timestamp_millis();
    let mut b = Dl::new("upstream_unavailable", now - ChronoDuration::minutes(30), 1);
    b.original_ms = Some(original_ms);
    w.dead_letter(
        "a-too-old",
        Some(&Dl::new(
            "upstream_unavailable",
            now - ChronoDuration::hours(3),
            0,
        )),
    )
    .await;
    w.dead_letter("b-selected", Some(&b)).await;
    w.dead_letter(
        "c-other-class",
        Some(&Dl::new(
            "rate_limited",
            now - ChronoDuration::minutes(30),
            0,
        )),
    )
    .await;
    w.dead_letter(
        "d-too-new",
        Some(&Dl::new(
            "upstream_unavailable",
            now + ChronoDuration::hours(2),
            0,
        )),
    )
    .await;
    w.dead_letter("e-no-headers", None).await;
    // failed_at garbled: the dead letter's own timestamp (now) is used instead.
    w.broker
        .produce(
            &w.dlq,
            Some(b"f-garbled-time"),
            b"value-f-garbled-time",
            &[
                ("dlq.error.class", b"upstream_unavailable"),
                ("dlq.failed_at", b"yesterday"),
                ("dlq.replay_count", b"one"),
            ],
        )
        .await;

    let until = (now + ChronoDuration::hours(1)).to_rfc3339_opts(SecondsFormat::Secs, true);
    let o = ReplayOptions::from_args(ReplayArgs {
        classes: vec!["upstream_unavailable".into()],
        since: Some("2h".into()),
        until: Some(until),
        ..ReplayArgs::default()
    })
    .unwrap();
    let report = w.replay(&o).await.unwrap();
    let t = report.totals();
    assert_eq!(
        (
            t.read,
            t.skipped,
            t.selected,
            t.republished,
            t.parked,
            t.held
        ),
        (6, 4, 2, 2, 0, 0),
        "{}",
        report.render_table()
    );
    assert_eq!(t.garbled, 2);
    let uu = report.class("upstream_unavailable");
    assert_eq!((uu.read, uu.skipped, uu.selected, uu.garbled), (4, 2, 2, 1));
    assert_eq!(report.class("rate_limited").skipped, 1);
    assert_eq!(report.class("(missing)").skipped, 1);
    let table = report.render_table();
    assert!(table.contains("garbled headers") && table.contains("upstream_unavailable"));

    let out = w.records(&w.jobs).await;
    assert_eq!(
        keys(&out),
        BTreeSet::from(["b-selected".into(), "f-garbled-time".into()])
    );
    for m in &out {
        assert_eq!(m.payload().unwrap(), format!("value-{}", key(m)).as_bytes());
        assert!(
            header_names(m).iter().all(|h| h == "traceparent"
                || h == "dlq.replay_count"
                || h.starts_with("dlq.previous.")),
            "{:?}",
            header_names(m)
        );
    }
    let b = out.iter().find(|m| key(m) == "b-selected").unwrap();
    assert_eq!(header(b, "dlq.replay_count"), Some("2"));
    assert_eq!(header(b, "traceparent"), Some(TRACEPARENT));
    assert_eq!(
        header(b, "dlq.previous.error.class"),
        Some("upstream_unavailable")
    );
    assert_eq!(header(b, "dlq.previous.original.offset"), Some("42"));
    assert_eq!(header(b, "dlq.previous.error.http_status"), Some("500"));
    assert_eq!(b.timestamp().to_millis(), Some(original_ms));
    let f = out.iter().find(|m| key(m) == "f-garbled-time").unwrap();
    assert_eq!(header(f, "dlq.replay_count"), Some("1"));
    assert_eq!(header(f, "dlq.previous.failed_at"), Some("yesterday"));

    // The group's position moved past everything read: a second run reads nothing.
    let again = w.replay(&o).await.unwrap();
    assert_eq!(again.totals().read, 0);
    assert_eq!(w.count(&w.jobs).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stops_at_the_end_offsets_seen_at_start() {
    let w = World::new().await;
    let dl = Dl::new("upstream_unavailable", Utc::now(), 0);
    for i in 0..5 {
        w.dead_letter(&format!("first-{i}"), Some(&dl)).await;
    }
    let config = w.config();
    let slow = ReplayOptions {
        rate: Some(4.0),
        ..opts()
    };
    let run = tokio::spawn({
        let slow = slow.clone();
        async move {
            tokio::time::timeout(
                RUN_TIMEOUT,
                replay(&config, &slow, CancellationToken::new()),
            )
            .await
            .expect("replay in time")
        }
    });
    // The replay has captured its end offsets once it re-published something.
    w.wait_for(&w.jobs, 1).await;
    for i in 0..3 {
        w.dead_letter(&format!("later-{i}"), Some(&dl)).await;
    }
    let report = run.await.unwrap().unwrap();
    assert_eq!(report.totals().read, 5);
    assert_eq!(report.totals().republished, 5);
    let out = w.records(&w.jobs).await;
    assert!(keys(&out).iter().all(|k| k.starts_with("first-")));
    assert_eq!(out.len(), 5);

    // The next run resumes from the group's position: only the later ones.
    let report = w.replay(&opts()).await.unwrap();
    assert_eq!(report.totals().read, 3);
    assert_eq!(w.count(&w.jobs).await, 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_replays_guard_holds_back_or_parks() {
    let w = World::new().await;
    let park = w.topic("park").await;
    let now = Utc::now();
    w.dead_letter("at-max", Some(&Dl::new("rate_limited", now, 3)))
        .await;
    w.dead_letter("over-max", Some(&Dl::new("rate_limited", now, 7)))
        .await;
    w.dead_letter("young", Some(&Dl::new("rate_limited", now, 1)))
        .await;

    let report = w.replay(&opts()).await.unwrap();
    let t = report.totals();
    assert_eq!((t.selected, t.republished, t.held, t.parked), (3, 1, 2, 0));
    assert!(report.render_table().contains("--max-replays 3"));
    let out = w.records(&w.jobs).await;
    assert_eq!(keys(&out), BTreeSet::from(["young".into()]));
    assert_eq!(header(&out[0], "dlq.replay_count"), Some("2"));

    // Parking moves them unchanged; a higher --max-replays would have let "at-max" through.
    let o = ReplayOptions {
        park: Some(park.clone()),
        from_beginning: true,
        ..opts()
    };
    let report = w.replay(&o).await.unwrap();
    let t = report.totals();
    assert_eq!((t.selected, t.republished, t.held, t.parked), (3, 1, 0, 2));
    let parked = w.records(&park).await;
    assert_eq!(
        keys(&parked),
        BTreeSet::from(["at-max".into(), "over-max".into()])
    );
    let originals: HashMap<String, OwnedMessage> = w
        .records(&w.dlq)
        .await
        .into_iter()
        .map(|m| (key(&m), m))
        .collect();
    for m in &parked {
        let o = &originals[&key(m)];
        assert_eq!(m.payload(), o.payload());
        let all = |m: &OwnedMessage| -> Vec<(String, Vec<u8>)> {
            m.headers()
                .unwrap()
                .iter()
                .map(|h| (h.key.to_owned(), h.value.unwrap().to_vec()))
                .collect()
        };
        assert_eq!(all(m), all(o), "parked headers unchanged");
        assert_eq!(m.timestamp(), o.timestamp());
    }
    assert_eq!(w.count(&w.jobs).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_publishes_and_commits_nothing() {
    let w = World::new().await;
    let park = w.topic("park").await;
    let now = Utc::now();
    for i in 0..4 {
        w.dead_letter(
            &format!("j{i}"),
            Some(&Dl::new("permission_denied", now, 0)),
        )
        .await;
    }
    w.dead_letter("tired", Some(&Dl::new("permission_denied", now, 3)))
        .await;
    let dry = ReplayOptions {
        dry_run: true,
        park: Some(park.clone()),
        ..opts()
    };
    for _ in 0..2 {
        let report = w.replay(&dry).await.unwrap();
        let t = report.totals();
        assert!(report.dry_run);
        assert_eq!((t.read, t.selected, t.republished, t.parked), (5, 5, 4, 1));
        assert!(report.render_table().contains("dry run"));
        assert_eq!(w.count(&w.jobs).await, 0, "nothing published");
        assert_eq!(w.count(&park).await, 0, "nothing parked");
    }
    // Nothing was committed either: a real run replays everything.
    let real = ReplayOptions {
        park: Some(park.clone()),
        ..opts()
    };
    let report = w.replay(&real).await.unwrap();
    assert_eq!(report.totals().republished, 4);
    assert_eq!(w.count(&w.jobs).await, 4);
    assert_eq!(w.count(&park).await, 1);
    assert_eq!(w.replay(&real).await.unwrap().totals().read, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_replay_resumes_without_skipping() {
    let w = World::new().await;
    let dl = Dl::new("upstream_unavailable", Utc::now(), 0);
    for i in 0..10 {
        w.dead_letter(&format!("a{i}"), Some(&dl)).await;
    }
    // Stopped by --limit: the rest stays for the next run.
    let limited = ReplayOptions {
        limit: Some(3),
        ..opts()
    };
    let report = w.replay(&limited).await.unwrap();
    assert!(report.limit_reached);
    assert_eq!(report.totals().republished, 3);
    assert_eq!(w.count(&w.jobs).await, 3);
    let report = w.replay(&opts()).await.unwrap();
    assert_eq!(report.totals().republished, 7);
    let expected: BTreeSet<String> = (0..10).map(|i| format!("a{i}")).collect();
    let out = w.records(&w.jobs).await;
    assert_eq!(out.len(), 10);
    assert_eq!(keys(&out), expected);

    // Killed: the replay future is dropped mid-way, with nothing committed since it started.
    for i in 0..10 {
        w.dead_letter(&format!("b{i}"), Some(&dl)).await;
    }
    let config = w.config();
    // One record a second: a loaded machine still sees the first few land with seconds to
    // spare before the run could finish on its own.
    let slow = ReplayOptions {
        rate: Some(1.0),
        ..opts()
    };
    tokio::select! {
        r = replay(&config, &slow, CancellationToken::new()) => panic!("finished before the kill: {r:?}"),
        _ = w.wait_for(&w.jobs, 13) => {}
    }
    // Cancelled: the token stops it; what was acknowledged is committed.
    let cancel = CancellationToken::new();
    let run = tokio::spawn({
        let (config, slow, cancel) = (config.clone(), slow.clone(), cancel.clone());
        async move { replay(&config, &slow, cancel).await }
    });
    let before = w.count(&w.jobs).await;
    w.wait_for(&w.jobs, before + 2).await;
    cancel.cancel();
    let report = tokio::time::timeout(RUN_TIMEOUT, run)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(report.interrupted);
    assert!(report.render_table().contains("interrupted"));
    // The last run gets the rest: every b-record re-published at least once.
    w.replay(&opts()).await.unwrap();
    assert_eq!(w.replay(&opts()).await.unwrap().totals().read, 0);
    let out = w.records(&w.jobs).await;
    let b: BTreeSet<String> = keys(&out)
        .into_iter()
        .filter(|k| k.starts_with('b'))
        .collect();
    assert_eq!(b, (0..10).map(|i| format!("b{i}")).collect());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_arguments_are_refused_before_reading() {
    let w = World::new().await;
    w.dead_letter(
        "only",
        Some(&Dl::new("upstream_unavailable", Utc::now(), 0)),
    )
    .await;
    let unknown = |args: ReplayArgs| match ReplayOptions::from_args(args) {
        Err(e) => {
            assert_eq!(e.exit_code(), 2);
            e.to_string()
        }
        Ok(o) => panic!("accepted {o:?}"),
    };
    assert!(unknown(ReplayArgs {
        classes: vec!["upstream_down".into()],
        ..ReplayArgs::default()
    })
    .starts_with("--class"));
    assert!(unknown(ReplayArgs {
        since: Some("1h".into()),
        until: Some("2h".into()),
        ..ReplayArgs::default()
    })
    .starts_with("--since"));
    assert!(unknown(ReplayArgs {
        max_replays: Some(0),
        ..ReplayArgs::default()
    })
    .starts_with("--max-replays"));
    // Hand-built options are checked by replay() too.
    let zero = ReplayOptions {
        max_replays: 0,
        ..opts()
    };
    assert_eq!(bad_argument(w.replay(&zero).await), "--max-replays");

    let missing = TestBroker::unique_topic("missing");
    let mut config = w.config();
    config.topics.dead_letter = missing.clone();
    assert_eq!(
        bad_argument(w.replay_with(&config, &opts()).await),
        "topics.dead_letter"
    );
    let mut config = w.config();
    config.topics.jobs = missing.clone();
    assert_eq!(
        bad_argument(w.replay_with(&config, &opts()).await),
        "topics.jobs"
    );
    let to = ReplayOptions {
        to: Some(missing.clone()),
        ..opts()
    };
    assert_eq!(bad_argument(w.replay(&to).await), "--to");
    let park = ReplayOptions {
        park: Some(missing.clone()),
        ..opts()
    };
    assert_eq!(bad_argument(w.replay(&park).await), "--park");
    let onto_itself = ReplayOptions {
        to: Some(w.dlq.clone()),
        ..opts()
    };
    assert_eq!(bad_argument(w.replay(&onto_itself).await), "--to");

    // Nothing was read, written or committed by the refused runs.
    assert_eq!(w.count(&w.jobs).await, 0);
    let report = w.replay(&opts()).await.unwrap();
    assert_eq!(report.totals().republished, 1);
}

// ---- end to end: outage, dead letters, heal, replay, verified ----

/// A worker's config against `sim` (an upstream in an outage) writing to `results`: short
/// retries, so jobs dead-letter quickly, and quick commits.
fn outage_config(w: &World, sim: &SimHandle, results: &str) -> Config {
    let mut config = w.config();
    config.topics.results = results.to_owned();
    config.kafka.commit_interval = Duration::from_millis(200);
    config.api.base_url = sim.base_url();
    config.api.timeout = Duration::from_secs(2);
    config.retry.max_attempts = 2;
    config.retry.initial_backoff = Duration::from_millis(5);
    config.retry.max_backoff = Duration::from_millis(10);
    config.worker.shutdown_grace = Duration::from_secs(5);
    config
        .clients
        .insert("default".into(), client("client", "12345"));
    config
}

// ---- end to end: a spent code is never presented again ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_code_is_final_and_replay_never_presents_it_again() {
    let w = World::new().await;
    let results = w.topic("results").await;
    let park = w.topic("park").await;
    // Token answers; userinfo answers 500 until the upstream heals.
    let outage =
        Scenario::from_toml_str("[[faults]]\nendpoint = \"userinfo\"\nstatus = 500").unwrap();
    let sim = SimHandle::start("127.0.0.1:0".parse().unwrap(), outage)
        .await
        .expect("simulator");
    let mut config = outage_config(&w, &sim, &results);
    config.retry.max_backoff = Duration::from_millis(20);
    config.retry.max_elapsed = Duration::from_millis(100);
    config.retry.userinfo_max_elapsed = Duration::from_millis(300);
    let cancel = CancellationToken::new();
    let worker = tokio::spawn({
        let (config, cancel) = (config.clone(), cancel.clone());
        async move { silentauth_worker::worker::run(config, cancel).await }
    });

    let hint = "381123456700";
    let code = sim.mint_code("client", hint, REDIRECT);
    let job =
        json!({"job_id": "spent-1", "login_hint": hint, "code": code, "redirect_uri": REDIRECT});
    w.broker
        .produce(&w.jobs, Some(b"spent-1"), job.to_string().as_bytes(), &[])
        .await;
    w.wait_for(&w.dlq, 1).await;
    w.wait_for(&results, 1).await;

    // The result: failed, final, and the user is told to authenticate again.
    let r: Value = serde_json::from_slice(w.records(&results).await[0].payload().unwrap()).unwrap();
    assert_eq!(r["status"], "failed", "{r}");
    let e = &r["error"];
    assert_eq!(
        (&e["class"], &e["stage"]),
        (&json!("upstream_unavailable"), &json!("userinfo"))
    );
    assert_eq!(e["retryable"], false, "{r}");
    assert_eq!(e["code_spent"], true, "{r}");
    assert!(
        e["description"]
            .as_str()
            .unwrap()
            .contains("authenticate again"),
        "{r}"
    );
    // Userinfo got the longer budget: more attempts than retry.max_attempts.
    assert!(r["attempts"].as_u64().unwrap() > 3, "{r}");
    // The dead letter is kept for audit, marked spent.
    let dead = w.records(&w.dlq).await;
    assert_eq!(
        header(&dead[0], "dlq.error.class"),
        Some("upstream_unavailable")
    );
    assert_eq!(header(&dead[0], "dlq.code_spent"), Some("true"));
    let stats = sim.stats();
    assert_eq!(stats.total("token"), 1, "one token exchange");

    // The upstream heals; a replay of its class re-publishes nothing and no request is made.
    sim.set_scenario(Scenario::default());
    let jobs_before = w.count(&w.jobs).await;
    let o = ReplayOptions {
        classes: vec![silentauth_worker::contract::ErrorClass::UpstreamUnavailable],
        ..opts()
    };
    let report = w.replay_with(&config, &o).await.unwrap();
    let t = report.totals();
    assert_eq!(
        (t.selected, t.republished, t.code_spent, t.held, t.parked),
        (1, 0, 1, 0, 0),
        "{}",
        report.render_table()
    );
    assert!(report.render_table().contains("dlq.code_spent"));
    assert_eq!(w.count(&w.jobs).await, jobs_before, "nothing re-published");
    // With --park it moves, unchanged, instead of staying; still never to the jobs topic.
    let o = ReplayOptions {
        park: Some(park.clone()),
        from_beginning: true,
        max_replays: 100,
        ..o
    };
    let report = w.replay_with(&config, &o).await.unwrap();
    assert_eq!(report.totals().code_spent, 1);
    let parked = w.records(&park).await;
    assert_eq!(keys(&parked), BTreeSet::from(["spent-1".into()]));
    assert_eq!(header(&parked[0], "dlq.code_spent"), Some("true"));
    assert_eq!(w.count(&w.jobs).await, jobs_before, "nothing re-published");

    // Nothing reached the simulator: no second token request, no request at all.
    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(30), worker)
        .await
        .expect("worker stops")
        .unwrap()
        .unwrap();
    let after = sim.stats();
    assert_eq!(
        after.total("token"),
        1,
        "the spent code was never presented again"
    );
    assert_eq!(
        after.total, stats.total,
        "no HTTP request after the failure"
    );
    assert_eq!(w.count(&results).await, 1, "one result");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_prints_the_table_and_maps_exit_codes() {
    let w = World::new().await;
    w.dead_letter("cli", Some(&Dl::new("upstream_unavailable", Utc::now(), 0)))
        .await;
    let run = |args: &'static [&'static str]| {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_silentauth-worker"));
        cmd.args(["--log-format", "json", "replay-dlq"])
            .args(args)
            .env("SILENTAUTH__KAFKA__BROKERS", w.broker.bootstrap())
            .env("SILENTAUTH__KAFKA__GROUP_ID", &w.group)
            .env("SILENTAUTH__KAFKA__CONNECT_TIMEOUT", "10s")
            .env("SILENTAUTH__TOPICS__JOBS", &w.jobs)
            .env("SILENTAUTH__TOPICS__DEAD_LETTER", &w.dlq)
            .kill_on_drop(true);
        async move {
            let out = tokio::time::timeout(RUN_TIMEOUT, cmd.output())
                .await
                .expect("the command finished in time")
                .expect("the command ran");
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        }
    };
    let (code, _, err) = run(&["--park", "no-such-topic"]).await;
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("--park: topic \"no-such-topic\" does not exist"),
        "{err}"
    );
    let (code, _, err) = run(&["--class", "upstream_unavailable,nope"]).await;
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--class"), "{err}");

    let (code, out, err) = run(&["--dry-run"]).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("dry run"), "{out}");
    let (code, out, err) = run(&["--class", "upstream_unavailable", "--since", "1h"]).await;
    assert_eq!(code, Some(0), "{err}");
    let total: Vec<&str> = out
        .lines()
        .find(|l| l.starts_with("total"))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(
        total,
        ["total", "1", "0", "1", "1", "0", "0", "0", "0"],
        "{out}"
    );
    assert_eq!(w.count(&w.jobs).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_runs_commit_every_batch_and_a_kill_loses_at_most_the_tail() {
    let w = World::new().await;
    let dl = Dl::new("rate_limited", Utc::now(), 0);
    let n = 1200;
    futures::future::join_all((0..n).map(|i| {
        let dl = &dl;
        let w = &w;
        async move { w.dead_letter(&format!("k{i:04}"), Some(dl)).await }
    }))
    .await;
    let config = w.config();
    let slow = ReplayOptions {
        rate: Some(400.0),
        ..opts()
    };
    // Killed after the first commit (at 500 records) but before the end.
    tokio::select! {
        r = replay(&config, &slow, CancellationToken::new()) => panic!("finished before the kill: {r:?}"),
        _ = w.wait_for(&w.jobs, 600) => {}
    }
    let report = w.replay(&opts()).await.unwrap();
    let rest = report.totals().read;
    assert!(
        rest <= (n - 500) as u64,
        "resumed from a committed batch: {rest}"
    );
    let out = w.records(&w.jobs).await;
    let expected: BTreeSet<String> = (0..n).map(|i| format!("k{i:04}")).collect();
    assert_eq!(
        keys(&out),
        expected,
        "every record re-published at least once"
    );
}
