//! A job that comes again after the in-memory cache forgot its result (contract A2): re-published
//! upstream after more results than the cache holds, or redelivered after the group's offsets
//! were set back behind 100,000 newer results. The redelivery index answers it with its earlier
//! result, read back from the results topic, and no code is presented twice (counted at the
//! simulator). A job_id reused for another code and number is not a redelivery.

mod support;

use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::FutureRecord;
use serde_json::Value;
use silentauth_simulator::Scenario;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use support::load::count;
use support::world::World;
use support::TestBroker;

/// Waits until every id in `ids` has `n` results; the results by id.
async fn until_each_has(
    w: &World,
    ids: &BTreeSet<String>,
    n: usize,
) -> BTreeMap<String, Vec<Value>> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let by_id = w.results_by_id().await;
        let short = ids
            .iter()
            .filter(|i| by_id.get(*i).map_or(0, Vec::len) < n)
            .count();
        if short == 0 {
            return by_id;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{short} of {} jobs have fewer than {n} results",
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Every id's second result is a duplicate of its first, and nothing anywhere was rejected.
fn assert_answered_again(by_id: &BTreeMap<String, Vec<Value>>, ids: &BTreeSet<String>) {
    for id in ids {
        let rs = &by_id[id];
        assert_eq!(rs[0]["status"], "verified", "{id}: {}", rs[0]);
        assert_eq!(rs[1]["status"], "verified", "{id}: {}", rs[1]);
        assert_eq!(rs[1]["duplicate"], true, "{id}: {}", rs[1]);
        assert_eq!(rs[1]["completed_at"], rs[0]["completed_at"], "{id}");
    }
    let rejected = by_id
        .values()
        .flatten()
        .filter(|r| r["error"]["class"] == "code_rejected")
        .count();
    assert_eq!(rejected, 0, "no code_rejected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_republished_after_more_results_than_the_cache_holds() {
    let w = World::new(Scenario::default(), 3).await;
    let mut config = w.config();
    // The cache of results holds 20: the 60 re-published jobs are answered through the index.
    config.worker.idempotency_cache_size = 20;
    let (cancel, handle) = w.start(config);
    let jobs: Vec<Value> = (0..300)
        .map(|i| w.job(&format!("rep-{i}"), &format!("3816{i:07}")))
        .collect();
    for j in &jobs {
        w.send_job(j).await;
    }
    let all: BTreeSet<String> = (0..300).map(|i| format!("rep-{i}")).collect();
    w.wait_until_all(&all, Duration::from_secs(120)).await;
    // The same jobs again, as an upstream producer's retry would send them.
    for j in &jobs[..60] {
        w.send_job(j).await;
    }
    let again: BTreeSet<String> = (0..60).map(|i| format!("rep-{i}")).collect();
    let by_id = until_each_has(&w, &again, 2).await;
    cancel.cancel();
    handle.await.unwrap();
    let stats = w.sim.stats();
    eprintln!(
        "re-published: token requests {}, codes reused {}",
        stats.endpoints["token"].total, stats.codes_reused
    );
    assert_eq!(stats.codes_reused, 0, "no code presented twice");
    assert_eq!(
        stats.endpoints["token"].total, 300,
        "one token request a job"
    );
    assert_answered_again(&by_id, &again);
}

/// Results of other jobs published after the 200 jobs' own.
const NEWER: usize = 100_000;

/// Deletes the worker group's committed offsets (the group itself), waiting until it is empty.
async fn forget_offsets(w: &World) {
    let admin: AdminClient<DefaultClientContext> = w.broker.client_config().create().unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let deleted = admin
            .delete_groups(&[w.group.as_str()], &AdminOptions::new())
            .await;
        match deleted {
            Ok(r) if r.iter().all(Result::is_ok) => return,
            other => assert!(
                tokio::time::Instant::now() < deadline,
                "cannot delete group {}: {other:?}",
                w.group
            ),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Produces `n` results of other jobs (copies of `template` under new ids) to the results topic.
async fn newer_results(w: &World, template: &Value, n: usize) {
    let producer = w.broker.producer();
    for chunk in (0..n).collect::<Vec<_>>().chunks(5_000) {
        let records: Vec<(String, String)> = chunk
            .iter()
            .map(|i| {
                let mut r = template.clone();
                r["job_id"] = format!("newer-{i}").into();
                (format!("newer-{i}"), r.to_string())
            })
            .collect();
        let sends = records.iter().map(|(k, v)| {
            producer.send(
                FutureRecord::to(&w.results).key(k).payload(v),
                Duration::from_secs(60),
            )
        });
        for r in futures::future::join_all(sends).await {
            r.expect("produce a result");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_set_back_to_zero_behind_100000_newer_results() {
    // 24 results partitions: the MockCluster keeps about 5 MB of log per partition, and the
    // 100,200 results must all stay.
    let w = World::with_topics(TestBroker::start().await, Scenario::default(), [3, 24, 1]).await;
    let mut config = w.config();
    config.worker.idempotency_cache_size = 1_000;
    let (cancel, handle) = w.start(config.clone());
    let ids = w.send_jobs("reset", "3817", 200).await;
    let first = w.wait_until_all(&ids, Duration::from_secs(120)).await;
    cancel.cancel();
    handle.await.unwrap();
    let template = first.values().next().unwrap()[0].clone();
    newer_results(&w, &template, NEWER).await;
    // The group's offsets back to 0: its committed offsets deleted once it is empty, so the
    // restarted worker (same group) reads every partition from the start, as after an
    // operator's `--reset-offsets --to-earliest`. (librdkafka has no call to alter a group's
    // offsets, and a client outside the group may not commit for it.)
    if w.broker.mock().is_some() {
        // librdkafka's MockCluster aborts the process on DeleteGroups (a double free): there
        // the restarted worker joins a group that committed nothing, which reads from 0 too.
        config.kafka.group_id = format!("{}.reset", w.group);
    } else {
        forget_offsets(&w).await;
    }
    let (cancel, handle) = w.start(config);
    let by_id = until_each_has(&w, &ids, 2).await;
    cancel.cancel();
    handle.await.unwrap();
    let stats = w.sim.stats();
    eprintln!(
        "offset reset: {} results in the topic, token requests {}, codes reused {}",
        count(&w.broker, &w.results).await,
        stats.endpoints["token"].total,
        stats.codes_reused
    );
    assert_eq!(stats.codes_reused, 0, "no code presented twice");
    assert_eq!(
        stats.endpoints["token"].total, 200,
        "one token request a job"
    );
    assert_answered_again(&by_id, &ids);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_job_id_is_an_invalid_job_and_makes_no_request() {
    let w = World::new(Scenario::default(), 1).await;
    let (cancel, handle) = w.start(w.config());
    w.send_job(&w.job("same-id", "381123456789")).await;
    let one: BTreeSet<String> = ["same-id".to_owned()].into();
    until_each_has(&w, &one, 1).await;
    let requests = w.sim.stats().total;
    // Another code for another number under the same job_id.
    w.send_job(&w.job("same-id", "381987654321")).await;
    let by_id = until_each_has(&w, &one, 2).await;
    cancel.cancel();
    handle.await.unwrap();
    let second = &by_id["same-id"][1];
    assert_eq!(second["status"], "failed", "{second}");
    assert_eq!(second["error"]["class"], "invalid_job", "{second}");
    assert_eq!(second["duplicate"], false, "{second}");
    assert_eq!(
        second["login_hint"], "381987654321",
        "not the earlier verdict"
    );
    assert!(
        second["error"]["description"]
            .as_str()
            .unwrap()
            .contains("job_id reused"),
        "{second}"
    );
    assert_eq!(w.sim.stats().total, requests, "no HTTP request for it");
    assert_eq!(count(&w.broker, &w.dlq).await, 1, "dead-lettered");
}
