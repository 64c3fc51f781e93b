//! The reliability suite: the worker binary SIGKILLed and restarted under load, an upstream outage
//! followed by `replay-dlq`, connection resets, slow answers and 429 storms, and instances joining
//! and leaving while jobs flow. Each test is a function of its size: a short form runs in
//! `cargo test`, the full form (`--ignored`) is the one the README's figures come from. Each
//! prints one `reliability:` line with the figures.

mod support;

use rand::Rng;
use rdkafka::message::Message;
use serde_json::{json, Value};
use silentauth_simulator::{FaultKind, FaultRule, RetryAfter, Scenario, SimEndpoint};
use silentauth_worker::config::Config;
use silentauth_worker::replay::{replay, ReplayOptions};
use silentauth_worker::telemetry::counters::WorkerCounters;
use silentauth_worker::worker::Worker;
use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use support::load::{by_id, count, publish, wait_all, wait_count};
use support::tap::HttpTap;
use support::world::{header, read_topic, World};
use support::{BrokerKind, TestBroker};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const BIN: &str = env!("CARGO_BIN_EXE_silentauth-worker");

// ---- helpers ----

/// A world on the test broker whose results spread over `result_partitions`.
async fn world(scenario: Scenario, job_partitions: i32, result_partitions: i32) -> World {
    let partitions = [job_partitions, result_partitions, 2];
    World::with_topics(TestBroker::start().await, scenario, partitions).await
}

fn fault(endpoint: SimEndpoint, hints: &[String]) -> FaultRule {
    FaultRule {
        endpoint: Some(endpoint),
        login_hints: Some(hints.to_vec()),
        ..FaultRule::default()
    }
}

fn class(r: &Value) -> &str {
    r["error"]["class"].as_str().unwrap_or("none")
}

/// Writes `config` for the binary; secrets come back through the environment.
fn binary_config(dir: &std::path::Path, config: &Config) -> std::path::PathBuf {
    let path = dir.join("worker.toml");
    std::fs::write(&path, toml::to_string(config).unwrap()).unwrap();
    path
}

fn spawn_binary(config: &std::path::Path) -> Child {
    Command::new(BIN)
        .args(["run", "--config"])
        .arg(config)
        .env("SILENTAUTH__CLIENTS__DEFAULT__CLIENT_SECRET", "12345")
        .env("SILENTAUTH__CLIENTS__DEFAULT__API_KEY", "sim-api-key")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the worker binary")
}

// ---- 1. SIGKILL and restart under load ----

/// The crash setting: a rate limit of 400 requests/s with a burst of 40, 1,024 jobs in flight and
/// an upstream that answers at once, so hundreds of jobs wait for permits at any moment. Only the
/// codes spent and not yet answered by an acknowledged result can be lost to a kill.
async fn crash(n: usize, kills: usize) {
    let started = std::time::Instant::now();
    let hint = |i: usize| format!("38190{i:07}");
    // Every 20th job's token exchange fails with 500 (upstream_unavailable) and the next one's
    // with 403 (permission_denied): both end failed and dead-lettered.
    let unavailable: Vec<String> = (0..n).step_by(20).map(hint).collect();
    let denied: Vec<String> = (1..n).step_by(20).map(hint).collect();
    // The upstream answers at once (no latency).
    let scenario = Scenario {
        faults: vec![
            FaultRule {
                status: Some(500),
                ..fault(SimEndpoint::Token, &unavailable)
            },
            FaultRule {
                status: Some(403),
                ..fault(SimEndpoint::Token, &denied)
            },
        ],
        ..Scenario::default()
    };
    let w = world(scenario, 8, 12).await;
    let max_in_flight = 1024;
    let mut config = w.config();
    config.clients.retain(|name, _| name == "default");
    if let Some(profile) = config.clients.get_mut("default") {
        profile.requests_per_second = Some(400.0);
        profile.burst = 40;
    }
    config.worker.max_in_flight = max_in_flight;
    config.kafka.commit_interval = Duration::from_millis(100);
    config.retry.max_attempts = 2;
    for (k, v) in [
        ("session.timeout.ms", "6000"),
        ("heartbeat.interval.ms", "500"),
    ] {
        config.kafka.properties.insert(k.into(), v.into());
    }
    // A fixed admin port, so every restarted process can be scraped.
    let admin = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    config.admin.listen = admin.to_string();
    let dir = tempfile::tempdir().unwrap();
    let path = binary_config(dir.path(), &config);

    let jobs: Vec<Value> = (0..n)
        .map(|i| w.job(&format!("crash-{i}"), &hint(i)))
        .collect();
    let ids: BTreeSet<String> = jobs
        .iter()
        .map(|j| j["job_id"].as_str().unwrap().to_owned())
        .collect();
    publish(&w, &jobs).await;

    // Where each job lies on the jobs topic, to tell which results a kill leaves uncommitted.
    let placed: BTreeMap<String, (i32, i64)> = read_topic(&w.broker, &w.jobs)
        .await
        .iter()
        .map(|m| {
            let v: Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
            let id = v["job_id"].as_str().unwrap().to_owned();
            (id, (m.partition(), m.offset()))
        })
        .collect();
    assert_eq!(placed.len(), n);

    // Each kill: once the running process has published a random share of the work as first
    // answers (its own /metrics: results minus those republished from the cache, so a restarted
    // process's duplicates do not count), and then at the first moment its
    // `silentauth_codes_at_risk` gauge shows spent codes without an acknowledged result. Restart
    // at once.
    let per_round = n / (kills + 1);
    let http = reqwest::Client::new();
    let mut child = spawn_binary(&path);
    let sampler = CancellationToken::new();
    let at_risk = tokio::spawn(sample_codes_at_risk(admin, sampler.clone()));
    let mut done_at_kill = Vec::new();
    let mut risk_at_kill = Vec::new();
    let mut uncommitted_at_kill = Vec::new();
    for _ in 0..kills {
        let step = rand::rng().random_range(per_round / 2..=per_round) as u64;
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let fresh = scrape(&http, admin).await.map_or(0, |s| s.fresh);
            if fresh >= step {
                break;
            }
            assert!(Instant::now() < deadline, "{fresh} of {step} first answers");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let risk = loop {
            let risk = scrape(&http, admin).await.map_or(0, |s| s.at_risk);
            if risk > 0 {
                break risk;
            }
            assert!(Instant::now() < deadline, "no code ever at risk");
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        risk_at_kill.push(risk);
        // What this kill leaves to redeliver: jobs with a result on the topic whose offset is
        // at or past the group's committed offset of their partition.
        let committed = committed_offsets(&w, 8).await;
        let records = read_topic(&w.broker, &w.results).await;
        let answered = by_id(&records);
        done_at_kill.push(answered.len());
        uncommitted_at_kill.push(
            answered
                .keys()
                .filter(|id| {
                    let (p, o) = placed[*id];
                    o >= committed[p as usize]
                })
                .count(),
        );
        child = spawn_binary(&path);
    }
    let records = wait_all(&w, &ids, Duration::from_secs(300)).await;
    sampler.cancel();
    let at_risk = at_risk.await.unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    // Results published after the last read are duplicates of what was read; read once more
    // now that nothing writes.
    let records = if count(&w.broker, &w.results).await > records.len() as i64 {
        read_topic(&w.broker, &w.results).await
    } else {
        records
    };
    let results = by_id(&records);
    let lost = ids.iter().filter(|i| !results.contains_key(*i)).count();
    let unavailable: BTreeSet<&String> = unavailable.iter().collect();
    let denied: BTreeSet<&String> = denied.iter().collect();

    let mut duplicates = 0;
    let mut interrupted = BTreeSet::new();
    for (id, rs) in &results {
        duplicates += rs.len() - 1;
        let h = rs[0]["login_hint"].as_str().unwrap().to_owned();
        // A job whose code a killed process had recorded as presented (the ledger) and left
        // without a result is concluded interrupted by the next process, never presented again.
        if rs.iter().all(|r| class(r) == "interrupted") {
            assert!(
                rs.iter().all(|r| r["status"] == "failed"
                    && r["error"]["code_spent"] == true
                    && r["error"]["retryable"] == false),
                "{id}: {rs:?}"
            );
            interrupted.insert(id.clone());
            continue;
        }
        let expected = if unavailable.contains(&h) {
            "upstream_unavailable"
        } else if denied.contains(&h) {
            "permission_denied"
        } else {
            "none"
        };
        if expected != "none" {
            assert!(
                rs.iter()
                    .all(|r| r["status"] == "failed" && class(r) == expected),
                "{id}: {rs:?}"
            );
        } else {
            // A published verdict is never overridden by a later result, and nothing else
            // (a code_rejected above all) is ever published for it.
            assert!(rs.iter().all(|r| r["status"] == "verified"), "{id}: {rs:?}");
        }
    }
    // Every dead letter matches a failed result of the same class; every failing and every
    // interrupted job has one. One exception, counted and bounded: a kill that lands after a
    // failing job's dead letter was acknowledged and before its result was leaves that dead
    // letter (its own class) beside the `interrupted` result the next process concludes (the
    // ledger recorded the presentation, no result exists), with a second, `interrupted` dead
    // letter. Only an interrupted failing job can have one, and only one whose code was at
    // risk at the kill (spent, outputs not acknowledged): at most what the gauge read at the
    // kills. Not one per kill: several failing jobs can sit between their two acknowledgements
    // when the kill lands (seen: 8 in 5 kills on a loaded 2-core machine).
    let dead = read_topic(&w.broker, &w.dlq).await;
    let mut dead_ids = BTreeSet::new();
    let mut orphaned = BTreeSet::new();
    for m in &dead {
        let key = std::str::from_utf8(m.key().unwrap()).unwrap();
        let dl_class = header(m, "dlq.error.class").unwrap();
        let matched = results[key]
            .iter()
            .any(|r| r["status"] == "failed" && class(r) == dl_class);
        if !matched && interrupted.contains(key) {
            orphaned.insert(key.to_owned());
        } else {
            assert!(
                matched,
                "dead letter {key} ({dl_class}) without a matching failed result"
            );
        }
        dead_ids.insert(key.to_owned());
    }
    let risked: u64 = risk_at_kill.iter().sum();
    assert!(
        orphaned.len() as u64 <= risked,
        "{orphaned:?}: more than the {risked} codes at risk at the kills"
    );
    for id in &orphaned {
        let h = results[id][0]["login_hint"].as_str().unwrap().to_owned();
        assert!(
            unavailable.contains(&h) || denied.contains(&h),
            "{id}: a dead letter beside an interrupted result, but the job was not a failing one"
        );
    }
    let failing = (unavailable.len() + denied.len()) as i64;
    let failing_ids = failing as usize
        - interrupted
            .iter()
            .filter(|id| {
                let h = &results[*id][0]["login_hint"];
                unavailable
                    .iter()
                    .chain(denied.iter())
                    .any(|u| h == u.as_str())
            })
            .count();
    assert_eq!(
        dead_ids.len(),
        failing_ids + interrupted.len(),
        "every failing and every interrupted job dead-lettered"
    );
    let sim = w.sim.stats();
    let per_kill = duplicates as f64 / kills as f64;
    let codes_per_kill = (interrupted.len() as u64 + sim.codes_reused) as f64 / kills as f64;
    // The bound on what one kill can leave published and uncommitted. The stored offset of a
    // partition is its lowest unfinished job's (`src/kafka/offsets.rs`), so a kill redelivers
    // (a) the jobs finished since the last commit: at most `commit_interval` x the rate (each
    // first answer takes at least one permit); (b) the jobs finished behind an unfinished one.
    // Permits are first come first served, so while a job waits for one, only jobs whose
    // requests are queued ahead of it (at most the rest of the window, `max_in_flight - 1`)
    // finish; a job queues at most `max_attempts` token requests (its userinfo request takes
    // the high-priority lane, behind no token request). So per kill:
    // max_attempts x max_in_flight + rate x commit_interval.
    let rate = 400.0;
    let bound_per_kill = config.retry.max_attempts as usize * max_in_flight
        + (rate * config.kafka.commit_interval.as_secs_f64()).ceil() as usize;
    let uncommitted: usize = uncommitted_at_kill.iter().sum();
    eprintln!(
        "reliability: crash: {n} jobs sent, {lost} lost, {codes_per_kill:.1} codes lost per kill \
         ({} interrupted, {} presented twice at the simulator), {duplicates} duplicated results \
         ({per_kill:.1} per kill; left uncommitted at the kills {uncommitted_at_kill:?}, bound \
         {bound_per_kill} per kill), code_rejected 0, {} dead letters for {failing} failing jobs \
         ({} of them beside an interrupted result: killed between dead letter and result), \
         {kills} kills (at {done_at_kill:?} jobs answered, codes at risk at each kill \
         {risk_at_kill:?}), 400 requests/s burst 40, silentauth_codes_at_risk sampled every \
         20 ms: mean {:.1}, max {}, {:.0} s",
        interrupted.len(),
        sim.codes_reused,
        dead.len(),
        orphaned.len(),
        at_risk.iter().sum::<u64>() as f64 / at_risk.len().max(1) as f64,
        at_risk.iter().max().copied().unwrap_or(0),
        started.elapsed().as_secs_f64()
    );
    assert_eq!(lost, 0, "jobs lost");
    assert!(kills >= 1 && done_at_kill.len() == kills);
    assert!(
        risk_at_kill.iter().all(|&r| r > 0),
        "a kill without codes at risk"
    );
    // Zero at a crash (contract A2): the ledger records every presentation before the token
    // request leaves, so no code is ever presented twice.
    assert_eq!(sim.codes_reused, 0, "codes presented twice");
    // What a kill costs: the jobs between their ledger record and their acknowledged result.
    // Token calls are paced at `rate` a second (no burst), and a job spends about 50 ms there on
    // this loaded 2-core machine (the ledger record's produce, the token and userinfo calls, the
    // result's produce, each with `acks=all`), so a kill finds at most rate x 50 ms of them.
    // `silentauth_codes_at_risk` counts a job only once its token request left, so it reads
    // lower than this at the kill.
    let codes_bound = rate * 0.05;
    assert!(
        codes_per_kill <= codes_bound,
        "{codes_per_kill:.1} codes lost per kill (interrupted or presented twice), bound \
         {codes_bound:.0}"
    );
    // Every duplicate is a job a kill left published and uncommitted (each such job is
    // redelivered once and answered from the cache), and no kill left more than the bound.
    assert!(
        duplicates <= uncommitted,
        "{duplicates} duplicates, {uncommitted} left uncommitted by the kills"
    );
    assert!(
        uncommitted_at_kill.iter().all(|&u| u <= bound_per_kill),
        "{uncommitted_at_kill:?} left uncommitted, bound {bound_per_kill} per kill"
    );
    // Dead letters are written once per failure, and a redelivered failed job is answered from
    // the cache without a new one, so there are at most as many extra as duplicates.
    assert!(dead.len() <= failing as usize + interrupted.len() + duplicates);
}

/// What the worker's `/metrics` says now.
struct Scrape {
    /// Results published as first answers (all results minus those from the idempotency cache).
    fresh: u64,
    /// `silentauth_codes_at_risk`.
    at_risk: u64,
}

/// Scrapes the worker's `/metrics` at `admin`; `None` while no process answers (a restart).
async fn scrape(http: &reqwest::Client, admin: std::net::SocketAddr) -> Option<Scrape> {
    let text = http
        .get(format!("http://{admin}/metrics"))
        .timeout(Duration::from_secs(1))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let value = |l: &str| l.rsplit(' ').next()?.trim().parse::<f64>().ok();
    let sum = |prefix: &str| -> u64 {
        text.lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(value)
            .sum::<f64>() as u64
    };
    Some(Scrape {
        fresh: sum("silentauth_results_total{")
            .saturating_sub(sum("silentauth_idempotency_hits_total ")),
        at_risk: sum("silentauth_codes_at_risk "),
    })
}

/// The group's committed offset of each of the first `partitions` jobs partitions (0 for none).
async fn committed_offsets(w: &World, partitions: i32) -> Vec<i64> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = w.broker.consumer_config(&w.group).create().unwrap();
    let jobs = w.jobs.clone();
    tokio::task::spawn_blocking(move || {
        let mut tpl = rdkafka::TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition(&jobs, p);
        }
        consumer
            .committed_offsets(tpl, Duration::from_secs(10))
            .unwrap()
            .elements()
            .iter()
            .map(|e| e.offset().to_raw().unwrap_or(0).max(0))
            .collect()
    })
    .await
    .unwrap()
}

/// Reads `silentauth_codes_at_risk` from the worker's `/metrics` at `admin` every 20 ms until
/// `stop`, skipping the moments no process answers (restarts).
async fn sample_codes_at_risk(admin: std::net::SocketAddr, stop: CancellationToken) -> Vec<u64> {
    let http = reqwest::Client::new();
    let url = format!("http://{admin}/metrics");
    let mut samples = Vec::new();
    while !stop.is_cancelled() {
        let text = http
            .get(&url)
            .timeout(Duration::from_secs(1))
            .send()
            .await
            .ok();
        let text = match text {
            Some(r) => r.text().await.unwrap_or_default(),
            None => String::new(),
        };
        let value = text
            .lines()
            .find_map(|l| l.strip_prefix("silentauth_codes_at_risk "))
            .and_then(|v| v.trim().parse::<u64>().ok());
        samples.extend(value);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    samples
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_sigkill_and_restart() {
    crash(2_000, 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "full size: 20,000 jobs, 5 kills (minutes)"]
async fn crash_sigkill_and_restart_full() {
    crash(20_000, 5).await;
}

// ---- 2. upstream faults ----

/// An outage of `outage` (every token and userinfo request answered 500), jobs arriving all the
/// while, then the API heals and `replay-dlq` puts the dead letters back.
async fn outage_then_replay(outage: Duration, per_tick: usize) {
    let started = std::time::Instant::now();
    let w = world(Scenario::default(), 4, 3).await;
    let mut config = w.config();
    config.retry.max_attempts = 5;
    config.retry.initial_backoff = Duration::from_millis(300);
    config.retry.max_backoff = Duration::from_millis(600);
    // This test is about dead letters and their replay: every job that arrives during the outage
    // must end dead-lettered while the upstream is still down. With the default breaker, more
    // than half of 100 jobs dead-lettered opens it and the rest would wait for the heal instead
    // (tests/breaker.rs covers that), so its dead-letter trigger is off here.
    config.worker.breaker.dead_letter_ratio = 1.0;
    let worker = Worker::new(config.clone());
    let stats = worker.counters();
    let cancel = CancellationToken::new();
    let handle = tokio::spawn(worker.run(cancel.clone()));
    // The worker is up and verifying before the outage starts.
    w.send_job(&w.job("warm-0", "381910000000")).await;
    wait_count(&w.broker, &w.results, 1, Duration::from_secs(60)).await;

    let down = Scenario {
        faults: [SimEndpoint::Token, SimEndpoint::Userinfo]
            .into_iter()
            .map(|e| FaultRule {
                endpoint: Some(e),
                status: Some(500),
                ..FaultRule::default()
            })
            .collect(),
        ..Scenario::default()
    };
    w.sim.set_scenario(down);
    w.sim.reset_stats();
    let outage_started = Instant::now();
    // Jobs keep arriving during the outage: plain ones (they must dead-letter as
    // upstream_unavailable), ones whose code is a second from its deadline (retries stop at the
    // deadline, or no request can be sent at all: expired), ones whose code is long dead
    // (expired, no HTTP call) and authorize errors (no HTTP call).
    let ttl = chrono::Duration::from_std(config.worker.code_ttl).unwrap();
    let mut kinds: BTreeMap<String, &str> = BTreeMap::new();
    let mut i = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    while outage_started.elapsed() < outage {
        tick.tick().await;
        let mut batch = Vec::new();
        for _ in 0..per_tick {
            let id = format!("out-{i}");
            let hint = format!("38191{i:07}");
            let mut job = w.job(&id, &hint);
            let kind = match i % 10 {
                0 => {
                    let issued = chrono::Utc::now() - ttl + chrono::Duration::seconds(1);
                    job["issued_at"] = json!(issued.to_rfc3339());
                    "near_deadline"
                }
                1 => {
                    job["issued_at"] = json!("2020-01-01T00:00:00Z");
                    "expired"
                }
                2 => {
                    job = json!({"job_id": id, "login_hint": hint, "error": "server_error"});
                    "authorize_rejected"
                }
                _ => "plain",
            };
            kinds.insert(id, kind);
            batch.push(job);
            i += 1;
        }
        publish(&w, &batch).await;
    }
    let ids: BTreeSet<String> = kinds.keys().cloned().collect();
    // The outage lasts until every job that arrived during it has its result.
    let during = by_id(&wait_all(&w, &ids, Duration::from_secs(120)).await);
    let outage_len = outage_started.elapsed();
    let sim_during = w.sim.stats();
    let mut dead_expected = BTreeSet::new();
    let mut requests = 0;
    let mut tally: BTreeMap<String, usize> = BTreeMap::new();
    for (id, kind) in &kinds {
        let rs = &during[id];
        assert_eq!(rs.len(), 1, "{id}: {rs:?}");
        let r = &rs[0];
        assert_eq!(r["status"], "failed", "{id}: {r}");
        let attempts = r["attempts"].as_u64().unwrap();
        requests += attempts;
        let c = class(r).to_owned();
        match *kind {
            "plain" => {
                assert_eq!(c, "upstream_unavailable", "{id}: {r}");
                assert_eq!(r["error"]["stage"], "token", "{id}: {r}");
                assert_eq!(r["error"]["retryable"], true, "{id}: {r}");
                assert_eq!(attempts, 5, "{id}: every attempt made: {r}");
                dead_expected.insert(id.clone());
            }
            "near_deadline" if attempts == 0 => assert_eq!(c, "expired", "{id}: {r}"),
            "near_deadline" => {
                assert_eq!(c, "upstream_unavailable", "{id}: {r}");
                let d = r["error"]["description"].as_str().unwrap();
                assert!(d.contains("deadline"), "{id}: {r}");
                assert!(attempts < 5, "{id}: stopped at the deadline: {r}");
                dead_expected.insert(id.clone());
            }
            "expired" => {
                assert_eq!((c.as_str(), attempts), ("expired", 0), "{id}: {r}");
            }
            _ => {
                assert_eq!(
                    (c.as_str(), attempts),
                    ("authorize_rejected", 0),
                    "{id}: {r}"
                );
            }
        }
        *tally.entry(format!("{kind}:{c}")).or_default() += 1;
    }
    // Every request the results count was answered 500 by the simulator, and nothing else.
    assert_eq!(sim_during.count("token", 500), requests);
    assert_eq!(sim_during.total("token"), requests);
    assert_eq!(sim_during.total("userinfo"), 0, "no code was exchanged");
    let dead = read_topic(&w.broker, &w.dlq).await;
    let dead_ids: BTreeSet<String> = dead
        .iter()
        .map(|m| String::from_utf8(m.key().unwrap().to_vec()).unwrap())
        .collect();
    assert_eq!(
        dead.len(),
        dead_expected.len(),
        "one dead letter per failure"
    );
    assert_eq!(dead_ids, dead_expected);
    for m in &dead {
        assert_eq!(header(m, "dlq.error.class"), Some("upstream_unavailable"));
        assert_eq!(header(m, "dlq.replay_count"), Some("0"));
    }

    // Healthy again: new jobs verify at once, without a restart.
    w.sim.set_scenario(Scenario::default());
    let fresh = w.send_jobs("after", "38192", 10).await;
    let now = by_id(&wait_all(&w, &fresh, Duration::from_secs(60)).await);
    for id in &fresh {
        assert!(now[id].iter().all(|r| r["status"] == "verified"), "{id}");
    }

    // replay-dlq recovers every dead letter: verified, or expired when its code's deadline passed.
    // Gently, as after a real outage: a burst of replays all at once can make token answers
    // slower than api.timeout, and a timed-out exchange may have spent its code.
    let gently = ReplayOptions {
        rate: Some(100.0),
        ..ReplayOptions::default()
    };
    let report = tokio::time::timeout(
        Duration::from_secs(300),
        replay(&config, &gently, CancellationToken::new()),
    )
    .await
    .expect("replay in time")
    .expect("replay");
    assert_eq!(report.totals().republished, dead.len() as u64);
    let all_ids: BTreeSet<String> = ids.iter().chain(&fresh).cloned().collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    let after = loop {
        let rs = by_id(&read_topic(&w.broker, &w.results).await);
        let pending = dead_expected
            .iter()
            .filter(|id| !rs[*id].iter().any(|r| r["replay_count"] == 1))
            .count();
        if pending == 0 {
            break rs;
        }
        assert!(
            Instant::now() < deadline,
            "{pending} replayed jobs without a result"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let (mut recovered, mut expired_on_replay) = (0, 0);
    for id in &dead_expected {
        let last = after[id].last().unwrap();
        assert_eq!(last["replay_count"], 1, "{id}: {last}");
        assert_eq!(last["duplicate"], false, "{id}: {last}");
        match kinds[id] {
            "plain" => {
                assert_eq!(last["status"], "verified", "{id}: {last}");
                recovered += 1;
            }
            _ => {
                // Its code's deadline passed during the outage: expired, no HTTP call.
                assert_eq!(
                    (class(last), &last["attempts"]),
                    ("expired", &json!(0)),
                    "{id}"
                );
                expired_on_replay += 1;
            }
        }
    }
    assert_eq!(
        count(&w.broker, &w.dlq).await,
        dead.len() as i64,
        "nothing dead-lettered again"
    );
    let lost = all_ids.iter().filter(|id| !after.contains_key(*id)).count();
    cancel.cancel();
    handle.await.unwrap().unwrap();
    eprintln!(
        "reliability: outage: {} jobs sent during a {:.0} s outage of 100% 500, {lost} lost, \
         {} duplicated, {} dead-lettered, {recovered} recovered by replay-dlq, \
         {expired_on_replay} expired on replay (deadline passed), outcomes {tally:?}, \
         {} worker duplicates, {:.0} s",
        ids.len(),
        outage_len.as_secs_f64(),
        WorkerCounters::get(&stats.duplicates),
        dead.len(),
        WorkerCounters::get(&stats.duplicates),
        started.elapsed().as_secs_f64()
    );
    assert_eq!(lost, 0);
    assert!(recovered > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_then_heal_then_replay() {
    outage_then_replay(Duration::from_secs(5), 4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "full size: a 60 s outage"]
async fn outage_then_heal_then_replay_full() {
    outage_then_replay(Duration::from_secs(60), 10).await;
}

/// Connection resets and answers slower than `api.timeout`, each on its own group of `per_group`
/// numbers; 429 storms with `Retry-After` on two groups of `storm` numbers (each 429 pauses the
/// whole client profile for a second, so these stay small); and `10 * per_group` clean jobs,
/// all under a worker rate limit of `rate` requests/s.
async fn fault_kinds(per_group: usize, storm: usize, rate: f64) {
    let started = std::time::Instant::now();
    // Groups by login_hint: (name, fault rule, expected status, class, attempts, dead letter).
    let groups = [
        "reset_token",
        "reset_userinfo",
        "slow_token",
        "slow_userinfo",
        "storm_429",
        "limit_429",
        "clean",
    ];
    let size = |g: usize| match g {
        4 | 5 => storm,
        6 => 10 * per_group,
        _ => per_group,
    };
    let hints =
        |g: usize| -> Vec<String> { (0..size(g)).map(|i| format!("381930{g}{i:06}")).collect() };
    let slow = Duration::from_millis(1500);
    let once = |e: SimEndpoint, g: usize| FaultRule {
        first: Some(1),
        per_code: true,
        ..fault(e, &hints(g))
    };
    let faults = vec![
        // The connection drops after the code was used: the retry is refused.
        FaultRule {
            kind: Some(FaultKind::Drop),
            after_processing: true,
            ..once(SimEndpoint::Token, 0)
        },
        // userinfo drops once: idempotent, retried.
        FaultRule {
            kind: Some(FaultKind::Drop),
            ..once(SimEndpoint::Userinfo, 1)
        },
        // The code is used, then the answer comes after api.timeout.
        FaultRule {
            kind: Some(FaultKind::Slow),
            delay: Some(slow),
            after_processing: true,
            ..once(SimEndpoint::Token, 2)
        },
        FaultRule {
            kind: Some(FaultKind::Slow),
            delay: Some(slow),
            ..once(SimEndpoint::Userinfo, 3)
        },
        // Two 429s per code with Retry-After: 1, then the exchange succeeds.
        FaultRule {
            status: Some(429),
            retry_after: Some(RetryAfter::Seconds(1)),
            first: Some(2),
            per_code: true,
            ..fault(SimEndpoint::Token, &hints(4))
        },
        // 429 every time: rate_limited once the attempts run out.
        FaultRule {
            status: Some(429),
            retry_after: Some(RetryAfter::Seconds(1)),
            ..fault(SimEndpoint::Token, &hints(5))
        },
    ];
    let scenario = Scenario {
        faults,
        ..Scenario::default()
    };
    let w = world(scenario, 4, 3).await;
    let mut config = w.config();
    config.api.timeout = Duration::from_millis(500);
    config.retry.max_attempts = 3;
    config.retry.max_elapsed = Duration::from_secs(60);
    let profile = config.clients.get_mut("default").unwrap();
    profile.requests_per_second = Some(rate);
    profile.burst = 5;
    let worker = Worker::new(config);
    let stats = worker.counters();
    let cancel = CancellationToken::new();
    let handle = tokio::spawn(worker.run(cancel.clone()));

    let mut group_of = BTreeMap::new();
    let mut jobs = Vec::new();
    for (g, name) in groups.iter().enumerate() {
        for (i, hint) in hints(g).iter().enumerate() {
            let id = format!("{name}-{i}");
            jobs.push(w.job(&id, hint));
            group_of.insert(id, *name);
        }
    }
    // Spread the groups over the run.
    jobs.sort_by_key(|j| {
        j["login_hint"]
            .as_str()
            .unwrap()
            .chars()
            .rev()
            .collect::<String>()
    });
    let ids: BTreeSet<String> = group_of.keys().cloned().collect();
    publish(&w, &jobs).await;
    let results = by_id(&wait_all(&w, &ids, Duration::from_secs(300)).await);
    let sim = w.sim.stats();
    let mut tally: BTreeMap<String, usize> = BTreeMap::new();
    for (id, g) in &group_of {
        let rs = &results[id];
        assert_eq!(rs.len(), 1, "{id}: {rs:?}");
        let r = &rs[0];
        let got = (
            r["status"].as_str().unwrap(),
            class(r),
            r["attempts"].as_u64().unwrap(),
        );
        let want = match *g {
            "reset_token" | "slow_token" => ("failed", "code_rejected", 2),
            "reset_userinfo" | "slow_userinfo" => ("verified", "none", 3),
            "storm_429" => ("verified", "none", 4),
            "limit_429" => ("failed", "rate_limited", 3),
            _ => ("verified", "none", 2),
        };
        assert_eq!(got, want, "{id}: {r}");
        if *g == "storm_429" {
            // Two 429s, each with Retry-After: 1, were waited out.
            let took = r["duration_ms"].as_u64().unwrap();
            assert!(took >= 2000, "{id}: Retry-After not honoured ({took} ms)");
        }
        if want.1 == "code_rejected" {
            let d = r["error"]["description"].as_str().unwrap();
            assert!(d.contains("may have been used"), "{id}: {r}");
        }
        *tally.entry(format!("{g}:{}", want.1)).or_default() += 1;
    }
    let (n, s) = (per_group as u64, storm as u64);
    // The simulator saw exactly the faults the scenario injects.
    assert_eq!(sim.count("token", 0), n, "token resets");
    assert_eq!(sim.count("userinfo", 0), n, "userinfo resets");
    assert_eq!(sim.count("token", 429), 2 * s + 3 * s, "429s");
    assert_eq!(sim.count("token", 400), 2 * n, "retries after a spent code");
    assert_eq!(sim.codes_reused, 2 * n);
    // Only rate_limited is dead-lettered here.
    let dead = read_topic(&w.broker, &w.dlq).await;
    assert_eq!(dead.len(), storm);
    assert!(dead
        .iter()
        .all(|m| header(m, "dlq.error.class") == Some("rate_limited")));
    // The worker's own limit held in every wall-clock second: a token bucket lets through at
    // most rate + burst in any one second.
    let per_second = &sim.api_per_second.counts;
    let busiest = sim.peak_per_second();
    assert!(
        busiest as f64 <= rate + 5.0,
        "{busiest} requests in one second over a limit of {rate}/s burst 5: {per_second:?}"
    );
    cancel.cancel();
    handle.await.unwrap().unwrap();
    eprintln!(
        "reliability: upstream faults: {} jobs sent, 0 lost, {} duplicated, outcomes {tally:?}, \
         {} requests ({} token resets, {} userinfo resets, {} 429s), busiest second {busiest} \
         of a {rate}/s limit, {} retries, {:.0} s",
        ids.len(),
        WorkerCounters::get(&stats.duplicates),
        sim.total("token") + sim.total("userinfo"),
        sim.count("token", 0),
        sim.count("userinfo", 0),
        sim.count("token", 429),
        WorkerCounters::get(&stats.retries),
        started.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resets_slow_answers_and_429_storms() {
    fault_kinds(20, 3, 100.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "full size: 5,640 jobs under a 200/s limit"]
async fn resets_slow_answers_and_429_storms_full() {
    fault_kinds(400, 20, 200.0).await;
}

// ---- 3. rebalance under load ----

/// One in-process worker instance with its own api key and its own tap in front of the
/// simulator, so every token request is attributed to it.
struct Instance {
    name: &'static str,
    tap: HttpTap,
    stats: std::sync::Arc<WorkerCounters>,
    cancel: CancellationToken,
    handle: tokio::task::JoinHandle<Result<(), silentauth_worker::worker::WorkerError>>,
}

async fn instance(w: &World, config: &Config, name: &'static str) -> Instance {
    let tap = HttpTap::start(w.sim.addr()).await;
    let mut config = config.clone();
    config.api.base_url = tap.base_url();
    config.worker.instance_id = name.into();
    config.clients.get_mut("default").unwrap().api_key =
        silentauth_worker::secret::Secret::new(format!("key-{name}"));
    let worker = Worker::new(config);
    let stats = worker.counters();
    let cancel = CancellationToken::new();
    let handle = tokio::spawn(worker.run(cancel.clone()));
    Instance {
        name,
        tap,
        stats,
        cancel,
        handle,
    }
}

/// Waits until `i` has taken work.
async fn taking_work(i: &Instance) {
    let start = Instant::now();
    while WorkerCounters::get(&i.stats.consumed) == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{} took no work",
            i.name
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("instance {} took work after {:?}", i.name, start.elapsed());
}

async fn rebalance(n: usize) {
    let started = std::time::Instant::now();
    let mut scenario = Scenario::default();
    // 50 ms per request and 8 jobs in flight: an instance does ~80 jobs/s.
    scenario.latency.fixed = Duration::from_millis(50);
    scenario.api_keys = vec!["key-a".into(), "key-b".into(), "key-c".into()];
    let w = world(scenario, 6, 12).await;
    let max_in_flight = 8;
    let mut config = w.config();
    config.worker.max_in_flight = max_in_flight;
    config.worker.revoke_grace = Duration::from_secs(5);
    for (k, v) in [
        ("session.timeout.ms", "6000"),
        ("heartbeat.interval.ms", "500"),
    ] {
        config.kafka.properties.insert(k.into(), v.into());
    }
    let jobs: Vec<Value> = (0..n)
        .map(|i| w.job(&format!("reb-{i}"), &format!("38194{i:07}")))
        .collect();
    let ids: BTreeSet<String> = jobs
        .iter()
        .map(|j| j["job_id"].as_str().unwrap().to_owned())
        .collect();

    let a = instance(&w, &config, "a").await;
    // Jobs keep arriving while instances come and go: a wave of 100 whenever fewer than 400
    // are waiting, so there is work to hand over at every membership change.
    let publisher = async {
        let mut sent = 0;
        for wave in jobs.chunks(100) {
            while sent - count(&w.broker, &w.results).await >= 400 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            publish(&w, wave).await;
            sent += wave.len() as i64;
        }
    };
    let choreography = async {
        let step = |k: i64| (n as i64) * k / 5;
        let long = Duration::from_secs(300);
        wait_count(&w.broker, &w.results, step(1).max(1), long).await;
        let b = instance(&w, &config, "b").await;
        taking_work(&b).await;
        wait_count(&w.broker, &w.results, step(2), long).await;
        let c = instance(&w, &config, "c").await;
        taking_work(&c).await;
        wait_count(&w.broker, &w.results, step(3), long).await;
        b.cancel.cancel();
        wait_count(&w.broker, &w.results, step(4), long).await;
        c.cancel.cancel();
        (b, c)
    };
    let ((), (b, c)) = tokio::join!(publisher, choreography);
    let records = wait_all(&w, &ids, Duration::from_secs(300)).await;
    a.cancel.cancel();
    let instances = [a, b, c];
    let mut abandoned = 0;
    let mut consumed = Vec::new();
    let mut taps = Vec::new();
    for i in instances {
        i.handle.await.unwrap().unwrap();
        abandoned += WorkerCounters::get(&i.stats.abandoned);
        consumed.push((i.name, WorkerCounters::get(&i.stats.consumed)));
        taps.push((i.name, i.tap));
    }
    let records = if count(&w.broker, &w.results).await > records.len() as i64 {
        read_topic(&w.broker, &w.results).await
    } else {
        records
    };
    let results = by_id(&records);
    let lost = ids.iter().filter(|i| !results.contains_key(*i)).count();
    let duplicates: usize = results.values().map(|rs| rs.len() - 1).sum();
    let not_verified: Vec<&String> = results
        .iter()
        .filter(|(_, rs)| !rs.iter().any(|r| r["status"] == "verified"))
        .map(|(id, _)| id)
        .collect();

    // Attribution: no instance presented a code twice; each sent only its own api key.
    let mut by_code: BTreeMap<String, usize> = BTreeMap::new();
    let mut per_instance = Vec::new();
    for (name, tap) in &taps {
        let codes = tap.codes_presented();
        let twice: Vec<_> = codes.iter().filter(|(_, n)| **n > 1).collect();
        assert!(
            twice.is_empty(),
            "instance {name} exchanged {} codes more than once",
            twice.len()
        );
        let key = format!("key-{name}");
        assert!(tap.api_keys_sent().iter().all(|k| *k == key));
        for code in codes.keys() {
            *by_code.entry(code.clone()).or_default() += 1;
        }
        per_instance.push((*name, codes.len()));
    }
    let across = by_code.values().filter(|n| **n > 1).count();
    let sim = w.sim.stats();
    // A later result that is not the cached verdict republished comes from a second exchange
    // of the job's code by another instance (the new owner did not find the result the old
    // owner had just published); the taps must account for each one.
    let overridden = results
        .values()
        .filter(|rs| rs[1..].iter().any(|r| r["duplicate"] != true))
        .count();
    assert_eq!(
        overridden, across,
        "every second verification seen at a tap"
    );
    let rebalances = 4;
    // At most three instances (a, b and c) hold partitions at once.
    let instances_max = 3;
    let kind = w.broker.kind();
    eprintln!(
        "reliability: rebalance on {kind:?}: {n} jobs sent, {lost} lost, {duplicates} duplicated results, \
         {} not verified, {rebalances} membership changes (b and c join, then leave), \
         codes exchanged per instance {per_instance:?}, 0 exchanged twice by one instance, \
         {across} exchanged by two instances ({overridden} jobs got a second, non-cached \
         result), {abandoned} abandoned at revoke, \
         consumed {consumed:?}, {:.0} s",
        not_verified.len(),
        started.elapsed().as_secs_f64()
    );
    assert_eq!(lost, 0);
    assert!(
        consumed.iter().all(|(_, c)| *c > 0),
        "every instance took work"
    );
    assert_eq!(
        sim.codes_reused as usize, across,
        "reuse only across instances"
    );
    // Duplicates come from jobs finished but not committed when their partition moved.
    let bound = match kind {
        // Offset commits fail with RebalanceInProgress throughout tansu's rebalances, so the
        // window is the rebalance's length: up to 241 of 2,000 seen.
        BrokerKind::Tansu => n / 4,
        // MockCluster redelivers far more than Apache Kafka around its rebalances, and more the
        // busier the machine (70 and 288 of 2,000, 464 of 20,000 seen), every one answered from
        // the cache (checked below).
        BrokerKind::Mock => n / 4,
        // Apache Kafka: the revoke's commit lands (cooperative-sticky; the group is stable when
        // the revoke runs), so a membership change redelivers at most what the revoke abandoned
        // after its grace, or what a member had in flight: 0 of 2,000 and 0 of 20,000 seen.
        _ => abandoned as usize + rebalances * instances_max * max_in_flight,
    };
    assert!(
        duplicates <= bound,
        "{duplicates} duplicates on {kind:?} (bound {bound})"
    );
    if kind == BrokerKind::Tansu {
        // A tansu finding, not the worker's guarantee (README, "Found on tansu"): tansu answers
        // JoinGroup without the barrier, so a new owner can take a job whose result the old
        // owner publishes a moment later and exchange its code a second time (14-17 of 2,000
        // seen). Bounded by the redelivered work those come with.
        assert!(across <= duplicates, "{across} codes re-exchanged");
        assert!(not_verified.len() <= across, "{not_verified:?}");
    } else {
        // Apache Kafka and MockCluster hold JoinGroup until every member has rejoined: no code
        // is exchanged twice because of a rebalance, and every duplicate is the cached verdict.
        assert_eq!(across, 0, "codes re-exchanged by a rebalance on {kind:?}");
        assert_eq!(
            overridden, 0,
            "results not answered from the idempotency cache"
        );
        assert!(not_verified.is_empty(), "{not_verified:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_join_and_leave_under_load() {
    rebalance(2_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "full size: 20,000 jobs"]
async fn instances_join_and_leave_under_load_full() {
    rebalance(20_000).await;
}
