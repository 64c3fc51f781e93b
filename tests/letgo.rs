//! Letting go of jobs whose code was presented (contract A2): a revoke or a shutdown whose
//! grace runs out while jobs sit in a slow userinfo. Each such job is concluded by the worker
//! that presented its code, with a final `interrupted` result and a dead letter carrying
//! `dlq.code_spent: true`; jobs whose code was never presented are handed over untouched and
//! end verified by the next owner. Both tests check at the simulator that no code was presented
//! twice, that every job has exactly one final result, that nothing ended `code_rejected`, and
//! that the let-go path really ran. Each prints one `letgo:` line with its figures.

mod support;

use rdkafka::message::Message;
use serde_json::Value;
use silentauth_simulator::{FaultKind, FaultRule, Scenario, SimEndpoint};
use silentauth_worker::config::Config;
use silentauth_worker::telemetry::counters::WorkerCounters;
use silentauth_worker::worker::{Worker, WorkerError};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use support::world::{header, read_topic, World};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// One in-process worker of the test's group.
struct Instance {
    name: &'static str,
    stats: Arc<WorkerCounters>,
    cancel: CancellationToken,
    handle: tokio::task::JoinHandle<Result<(), WorkerError>>,
}

impl Instance {
    fn start(config: &Config, name: &'static str) -> Instance {
        let mut config = config.clone();
        config.worker.instance_id = name.into();
        let worker = Worker::new(config);
        let stats = worker.counters();
        let cancel = CancellationToken::new();
        let handle = tokio::spawn(worker.run(cancel.clone()));
        Instance {
            name,
            stats,
            cancel,
            handle,
        }
    }

    fn get(&self, counter: impl Fn(&WorkerCounters) -> &std::sync::atomic::AtomicU64) -> u64 {
        counter(&self.stats).load(Ordering::Acquire)
    }

    /// The counters that tell what happened to this instance's jobs.
    fn figures(&self) -> String {
        format!(
            "{}: consumed {}, results {}, interrupted {}, abandoned {}, duplicates {}, \
             in flight {}, codes at risk {}",
            self.name,
            self.get(|s| &s.consumed),
            self.get(|s| &s.results),
            self.get(|s| &s.interrupted),
            self.get(|s| &s.abandoned),
            self.get(|s| &s.duplicates),
            self.get(|s| &s.in_flight),
            self.stats.codes_at_risk.load(Ordering::Acquire),
        )
    }

    /// Cancels the instance (the in-process SIGTERM) and waits for its run to return.
    async fn stop(self, within: Duration) -> Arc<WorkerCounters> {
        self.cancel.cancel();
        let name = self.name;
        match tokio::time::timeout(within, self.handle).await {
            Ok(joined) => joined
                .expect("worker task")
                .unwrap_or_else(|e| panic!("instance {name} stopped with an error: {e}")),
            Err(_) => panic!("instance {name} did not stop within {within:?}"),
        }
        self.stats
    }
}

/// Polls `check` every 50 ms until it returns `Ok`; panics after `within` with what it last
/// saw.
async fn until<T>(what: &str, within: Duration, mut check: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + within;
    loop {
        match check() {
            Ok(v) => return v,
            Err(seen) if Instant::now() >= deadline => {
                panic!("{what}: not within {within:?}; last seen: {seen}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Every userinfo request answered after `delay`.
fn slow_userinfo(delay: Duration) -> FaultRule {
    FaultRule {
        endpoint: Some(SimEndpoint::Userinfo),
        kind: Some(FaultKind::Slow),
        delay: Some(delay),
        ..FaultRule::default()
    }
}

/// The world's config for these tests: one request may take `api_timeout` (longer than the slow
/// userinfo, so nothing times out or is retried), every job of the test in flight at once, and
/// a group that notices a new member within a second.
fn config(w: &World, api_timeout: Duration) -> Config {
    let mut c = w.config();
    c.api.timeout = api_timeout;
    c.worker.max_in_flight = 64;
    for (k, v) in [
        ("session.timeout.ms", "6000"),
        ("heartbeat.interval.ms", "500"),
    ] {
        c.kafka.properties.insert(k.into(), v.into());
    }
    c
}

/// What the results and dead-letter topics say once every worker has stopped.
#[derive(Debug, Default)]
struct Outcome {
    /// Final (latest) result status or error class per job: `verified`, `interrupted`, ...
    finals: BTreeMap<String, usize>,
    /// Jobs whose final result is `interrupted`.
    interrupted: BTreeSet<String>,
    /// The `error.description` of every `interrupted` result (it names the grace that ran out).
    descriptions: Vec<String>,
    /// Jobs whose final result is `verified`.
    verified: BTreeSet<String>,
    /// Result records in all.
    records: usize,
    /// Result records republished from the idempotency cache.
    duplicates: usize,
    /// Dead letters in all.
    dead_letters: usize,
}

/// Reads both topics and checks what holds in every let-go scenario: every job has a result;
/// exactly one of each job's results is not a cached copy, and every cached copy repeats it; no
/// result is `code_rejected`; every `interrupted` result is final (`code_spent`, not retryable)
/// and its job has a dead letter with `dlq.code_spent: true`; nothing else is dead-lettered.
async fn outcome(w: &World, ids: &BTreeSet<String>) -> Outcome {
    let mut by_id: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    let records = read_topic(&w.broker, &w.results).await;
    for m in &records {
        let v: Value = serde_json::from_slice(m.payload().expect("a result")).unwrap();
        let id = v["job_id"].as_str().expect("job_id").to_owned();
        by_id.entry(id).or_default().push(v);
    }
    let mut out = Outcome {
        records: records.len(),
        ..Outcome::default()
    };
    let without: Vec<&String> = ids.iter().filter(|i| !by_id.contains_key(*i)).collect();
    assert!(without.is_empty(), "jobs without a result: {without:?}");
    let strangers: Vec<&String> = by_id.keys().filter(|i| !ids.contains(*i)).collect();
    assert!(
        strangers.is_empty(),
        "results for unknown jobs: {strangers:?}"
    );
    for (id, rs) in &by_id {
        let rejected: Vec<&Value> = rs
            .iter()
            .filter(|r| r["error"]["class"] == "code_rejected")
            .collect();
        assert!(rejected.is_empty(), "{id}: code_rejected: {rejected:?}");
        let fresh: Vec<&Value> = rs.iter().filter(|r| r["duplicate"] != true).collect();
        assert_eq!(
            fresh.len(),
            1,
            "{id}: {} results that are not cached copies: {rs:?}",
            fresh.len()
        );
        let verdict = |r: &Value| (r["status"].clone(), r["error"]["class"].clone());
        for copy in rs.iter().filter(|r| r["duplicate"] == true) {
            assert_eq!(verdict(copy), verdict(fresh[0]), "{id}: {rs:?}");
            out.duplicates += 1;
        }
        let last = rs.last().unwrap();
        let class = last["error"]["class"].as_str();
        let key = class.unwrap_or_else(|| last["status"].as_str().unwrap());
        *out.finals.entry(key.to_owned()).or_default() += 1;
        if class == Some("interrupted") {
            assert_eq!(last["status"], "failed", "{id}: {last}");
            assert_eq!(last["phone_number_verified"], Value::Null, "{id}: {last}");
            assert_eq!(last["error"]["code_spent"], true, "{id}: {last}");
            assert_eq!(last["error"]["retryable"], false, "{id}: {last}");
            out.interrupted.insert(id.clone());
            let description = last["error"]["description"].as_str().unwrap_or_default();
            out.descriptions.push(description.to_owned());
        } else if last["status"] == "verified" {
            out.verified.insert(id.clone());
        }
    }
    let dead = read_topic(&w.broker, &w.dlq).await;
    out.dead_letters = dead.len();
    let mut dead_ids = BTreeSet::new();
    for m in &dead {
        let key = m
            .key()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .unwrap_or_default();
        assert_eq!(
            header(m, "dlq.error.class"),
            Some("interrupted"),
            "dead letter of {key}: only interrupted jobs are dead-lettered here"
        );
        assert_eq!(
            header(m, "dlq.code_spent"),
            Some("true"),
            "dead letter of {key}"
        );
        dead_ids.insert(key);
    }
    assert_eq!(
        dead_ids, out.interrupted,
        "one dead letter (dlq.code_spent: true) for every interrupted job, none for the others"
    );
    out
}

/// The simulator's counters: no code presented twice, and no more token requests than codes.
fn no_code_presented_twice(w: &World, jobs: usize) -> silentauth_simulator::SimStats {
    let sim = w.sim.stats();
    assert_eq!(
        sim.codes_reused,
        0,
        "codes presented twice at the simulator ({} token requests for {jobs} codes, {:?})",
        sim.total("token"),
        sim.endpoints.get("token")
    );
    assert!(
        sim.total("token") <= jobs as u64,
        "{} token requests for {jobs} codes",
        sim.total("token")
    );
    assert_eq!(sim.count("token", 400), 0, "token 400s: {sim:?}");
    sim
}

/// Instance A takes every job of a 6-partition topic and exchanges every code; userinfo answers
/// after 15 s (a rebalance took 0.3 s on Apache Kafka, 5 s on MockCluster). Instance B joins:
/// the partitions A gives up are revoked while their jobs sit in userinfo, A's `revoke_grace`
/// (1 s) runs out, and those jobs end `interrupted` by A, published and committed before B owns
/// the partitions. A finishes the jobs of the partitions it keeps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebalance_while_userinfo_is_slow() {
    let started = std::time::Instant::now();
    let n = 60;
    let delay = Duration::from_secs(15);
    let scenario = Scenario {
        faults: vec![slow_userinfo(delay)],
        ..Scenario::default()
    };
    let w = World::new(scenario, 6).await;
    let mut config = config(&w, Duration::from_secs(30));
    config.worker.revoke_grace = Duration::from_secs(1);
    let ids = w.send_jobs("letgo-reb", "38197", n).await;

    let a = Instance::start(&config, "a");
    // Every code exchanged and every job waiting for its userinfo answer.
    let in_userinfo = until(
        "A exchanges every code",
        Duration::from_secs(30),
        || match a.stats.codes_at_risk.load(Ordering::Acquire) {
            at_risk if at_risk == n as u64 => Ok(started.elapsed()),
            _ => Err(a.figures()),
        },
    )
    .await;
    assert_eq!(
        w.sim.stats().total("token"),
        n as u64,
        "one token call a job"
    );
    let b = Instance::start(&config, "b");
    let joined = std::time::Instant::now();
    // The revoke lets go of A's jobs in the partitions B takes.
    let interrupted_after = until(
        "A concludes the jobs of its revoked partitions interrupted",
        delay,
        || match a.get(|s| &s.interrupted) {
            0 => Err(format!("{}; {}", a.figures(), b.figures())),
            _ => Ok(joined.elapsed()),
        },
    )
    .await;
    until(
        "B is assigned partitions",
        Duration::from_secs(30),
        || match b.stats.assigned.load(Ordering::Acquire) {
            true => Ok(()),
            false => Err(b.figures()),
        },
    )
    .await;
    let got = w.wait_until_all(&ids, Duration::from_secs(40)).await;
    assert_eq!(got.len(), n);
    let (a, b) = tokio::join!(
        a.stop(Duration::from_secs(20)),
        b.stop(Duration::from_secs(20))
    );

    let out = outcome(&w, &ids).await;
    let sim = no_code_presented_twice(&w, n);
    let a_interrupted = WorkerCounters::get(&a.interrupted);
    let b_interrupted = WorkerCounters::get(&b.interrupted);
    eprintln!(
        "letgo: rebalance on {:?}: {n} jobs, all in userinfo after {in_userinfo:.1?}, A's first \
         interrupted job {interrupted_after:.1?} after B started; finals {:?}; interrupted by A \
         {a_interrupted}, by B {b_interrupted}; abandoned A {} B {}; {} result records \
         ({} cached copies), {} dead letters; simulator: {} token requests, {} userinfo, \
         codes_reused {}; {:.1} s",
        w.broker.kind(),
        out.finals,
        WorkerCounters::get(&a.abandoned),
        WorkerCounters::get(&b.abandoned),
        out.records,
        out.duplicates,
        out.dead_letters,
        sim.total("token"),
        sim.total("userinfo"),
        sim.codes_reused,
        started.elapsed().as_secs_f64()
    );
    // The let-go path ran, and only A ran it (B never held a job whose code was presented).
    assert!(a_interrupted > 0, "nothing was interrupted");
    assert_eq!(b_interrupted, 0, "B had nothing to let go");
    assert_eq!(out.interrupted.len() as u64, a_interrupted);
    assert!(
        out.descriptions.iter().all(|d| d.contains("revoke_grace")),
        "interrupted by the revoke: {:?}",
        out.descriptions
    );
    // Every other job ended verified (the jobs A kept; B redid none: their codes were spent).
    assert_eq!(
        out.verified.len() + out.interrupted.len(),
        n,
        "{:?}",
        out.finals
    );
    assert_eq!(
        sim.total("token"),
        n as u64,
        "every code presented exactly once"
    );
}

/// A worker with a rate limit of 4 requests/s and a `shutdown_grace` of 1 s is cancelled (the
/// in-process SIGTERM) while the jobs it exchanged wait 6 s for userinfo and the rest of its
/// jobs wait for a rate-limit permit. The first end `interrupted` before its run returns; the
/// others are handed over untouched, and a second worker of the same group verifies them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_userinfo_is_slow() {
    let started = std::time::Instant::now();
    let n = 30;
    let delay = Duration::from_secs(6);
    let scenario = Scenario {
        faults: vec![slow_userinfo(delay)],
        ..Scenario::default()
    };
    let w = World::new(scenario, 3).await;
    let config = config(&w, Duration::from_secs(30));
    let mut slow = config.clone();
    slow.worker.shutdown_grace = Duration::from_secs(1);
    // Each job needs two permits (token, userinfo): A presents a few codes a second while the
    // rest of its jobs wait in flight for a permit, their codes never presented.
    let profile = slow.clients.get_mut("default").unwrap();
    profile.requests_per_second = Some(4.0);
    profile.burst = 1;
    let ids = w.send_jobs("letgo-term", "38198", n).await;

    let a = Instance::start(&slow, "a");
    let in_userinfo = until(
        "A exchanges codes while other jobs wait in flight",
        Duration::from_secs(30),
        || {
            let at_risk = a.stats.codes_at_risk.load(Ordering::Acquire);
            let in_flight = a.get(|s| &s.in_flight);
            match at_risk >= 3 && in_flight > at_risk {
                true => Ok(started.elapsed()),
                false => Err(a.figures()),
            }
        },
    )
    .await;
    let at_cancel = a.figures();
    let cancelled = std::time::Instant::now();
    let a = a.stop(Duration::from_secs(20)).await;
    let a_stopped = cancelled.elapsed();
    let presented_by_a = w.sim.stats().total("token");
    let a_interrupted = WorkerCounters::get(&a.interrupted);
    let a_abandoned = WorkerCounters::get(&a.abandoned);
    let a_results = WorkerCounters::get(&a.results);
    // The let-go path ran both ways: presented jobs concluded, unpresented ones handed over.
    assert!(a_interrupted > 0, "A interrupted nothing ({at_cancel})");
    assert!(a_abandoned > 0, "A handed nothing over ({at_cancel})");
    assert_eq!(
        a_results, a_interrupted,
        "A published only its interrupted results: its userinfo never answered within the grace"
    );
    assert!(
        presented_by_a <= a_interrupted,
        "{presented_by_a} token requests reached the simulator, {a_interrupted} jobs interrupted: \
         a job whose code was presented was handed over"
    );
    let partial = w.results_by_id().await;
    assert_eq!(
        partial.len() as u64,
        a_interrupted,
        "results on the topic when A stopped"
    );

    // The second worker: no rate limit and a userinfo that answers at once.
    w.sim.set_scenario(Scenario::default());
    let b = Instance::start(&config, "b");
    let got = w.wait_until_all(&ids, Duration::from_secs(40)).await;
    assert_eq!(got.len(), n);
    let b = b.stop(Duration::from_secs(20)).await;

    let out = outcome(&w, &ids).await;
    let sim = no_code_presented_twice(&w, n);
    let b_interrupted = WorkerCounters::get(&b.interrupted);
    eprintln!(
        "letgo: sigterm on {:?}: {n} jobs; A cancelled {in_userinfo:.1?} after the start ({at_cancel}), \
         its run returned {a_stopped:.1?} later: interrupted {a_interrupted}, abandoned \
         {a_abandoned}, {presented_by_a} token requests; B: consumed {}, results {}, \
         duplicates {}, interrupted {b_interrupted}; finals {:?}; {} result records ({} cached \
         copies), {} dead letters; simulator: {} token requests, codes_reused {}; {:.1} s",
        w.broker.kind(),
        WorkerCounters::get(&b.consumed),
        WorkerCounters::get(&b.results),
        WorkerCounters::get(&b.duplicates),
        out.finals,
        out.records,
        out.duplicates,
        out.dead_letters,
        sim.total("token"),
        sim.codes_reused,
        started.elapsed().as_secs_f64()
    );
    assert_eq!(b_interrupted, 0, "B let nothing go");
    assert_eq!(out.interrupted.len() as u64, a_interrupted);
    assert!(
        out.descriptions
            .iter()
            .all(|d| d.contains("shutdown_grace")),
        "interrupted by the shutdown: {:?}",
        out.descriptions
    );
    // Every job whose code A never presented ended verified, by B.
    assert_eq!(
        out.verified.len() as u64,
        n as u64 - a_interrupted,
        "{:?}",
        out.finals
    );
    let interrupted_ids: BTreeSet<String> = partial.keys().cloned().collect();
    assert_eq!(out.interrupted, interrupted_ids, "A's results stayed final");
    assert!(WorkerCounters::get(&b.results) >= out.verified.len() as u64);
    assert_eq!(
        sim.total("token"),
        presented_by_a + out.verified.len() as u64,
        "B presented each code A had not presented, once"
    );
}
