//! The idempotency-cache warm-up reads only the results a redelivered job can have: from the
//! append time of the jobs record at the oldest committed offset, minus `worker.warmup_margin`,
//! never before `now - worker.code_ttl` — and with that, however far the committed offsets lag,
//! every redelivered job is answered from the cache without a second token request.
//!
//! Record timestamps stand in for the passing of minutes: jobs are produced stamped minutes ago,
//! as jobs appended while commits kept failing would be.

mod support;

use chrono::Utc;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};

use rdkafka::producer::FutureRecord;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use rdkafka::util::Timeout;
use serde_json::Value;
use silentauth_simulator::Scenario;
use silentauth_worker::config::Config;
use silentauth_worker::contract::{result::SCHEMA_VERSION, JobResult, Status};
use silentauth_worker::idempotency::IdempotencyCache;
use silentauth_worker::kafka::warmup::{Redelivery, ResultsReader};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use support::world::World;

const MINUTE: i64 = 60_000;

/// Produces `value` keyed by `key` to `topic`, stamped `ts_ms`; returns `(partition, offset)`.
async fn produce_at(
    w: &World,
    topic: &str,
    partition: Option<i32>,
    key: &str,
    value: &[u8],
    ts_ms: i64,
) -> (i32, i64) {
    let mut record = FutureRecord::<str, [u8]>::to(topic)
        .key(key)
        .payload(value)
        .timestamp(ts_ms);
    if let Some(p) = partition {
        record = record.partition(p);
    }
    let d = w
        .broker
        .producer()
        .send(record, Timeout::After(Duration::from_secs(30)))
        .await
        .map_err(|(e, _)| e)
        .expect("produce");
    (d.partition, d.offset)
}

/// A worker config with a 1 s warm-up margin and a short session (the MockCluster holds a
/// returning group's join for the session timeout).
fn quick(w: &World) -> Config {
    let mut config = w.config();
    config.worker.warmup_margin = Duration::from_secs(1);
    for (k, v) in [
        ("session.timeout.ms", "6000"),
        ("heartbeat.interval.ms", "500"),
    ] {
        config.kafka.properties.insert(k.into(), v.into());
    }
    config
}

/// The group's committed offset of each jobs partition (`None`: none).
fn committed(w: &World, partitions: i32) -> Vec<Option<i64>> {
    let consumer: BaseConsumer = w
        .broker
        .consumer_config(&w.group)
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(&w.jobs, p);
    }
    let c = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .expect("committed offsets");
    (0..partitions)
        .map(|p| match c.find_partition(&w.jobs, p).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => Some(o),
            _ => None,
        })
        .collect()
}

/// Commits `offsets` for the group from outside it (Apache Kafka accepts that while the group
/// has no member).
fn commit(w: &World, offsets: &[Option<i64>]) {
    let consumer: BaseConsumer = w
        .broker
        .consumer_config(&w.group)
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for (p, o) in offsets.iter().enumerate() {
        if let Some(o) = o {
            tpl.add_partition_offset(&w.jobs, p as i32, Offset::Offset(*o))
                .unwrap();
        }
    }
    consumer.commit(&tpl, CommitMode::Sync).expect("commit");
}

/// Produces `n` valid jobs `<prefix>-<i>` stamped `ts_ms`; returns their ids.
async fn send_stamped(w: &World, prefix: &str, n: usize, ts_ms: i64) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    for i in 0..n {
        let id = format!("{prefix}-{i}");
        let job = w.job(&id, &format!("38160{}{i:06}", prefix.len()));
        produce_at(w, &w.jobs, None, &id, job.to_string().as_bytes(), ts_ms).await;
        ids.insert(id);
    }
    ids
}

/// Runs a worker on `config` until every id of `ids` has `per_id` results and every id of
/// `fresh` (which has an older result on the topic) a second one; returns the results by id.
async fn run_until(
    w: &World,
    config: Config,
    ids: &BTreeSet<String>,
    per_id: usize,
    fresh: &BTreeSet<String>,
) -> BTreeMap<String, Vec<Value>> {
    let (cancel, handle) = w.start(config);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    let by_id = loop {
        let by_id = w.results_by_id().await;
        let has = |i: &String, n: usize| by_id.get(i).is_some_and(|r| r.len() >= n);
        if ids.iter().all(|i| has(i, per_id)) && fresh.iter().all(|i| has(i, 2)) {
            break by_id;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not every job has its results after 90 s"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    cancel.cancel();
    handle.await.expect("worker task");
    by_id
}

/// The second worker answers every job of `ids` as a duplicate, from the cache, and verifies
/// every job of `fresh` anew: one token request for each of those, none for the others.
async fn every_redelivery_is_a_duplicate(
    w: &World,
    config: Config,
    ids: &BTreeSet<String>,
    fresh: &BTreeSet<String>,
) {
    let tokens = w.sim.stats().total("token");
    // The results are older than the 1 s margin now: only the jobs' own timestamps can bound
    // the warm-up correctly.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let second = run_until(w, config, ids, 2, fresh).await;
    for id in ids {
        let rs = &second[id];
        assert_eq!(rs.len(), 2, "{id}: {rs:?}");
        assert_eq!(rs[0]["duplicate"], false, "{id}: {rs:?}");
        assert_eq!(
            rs[1]["duplicate"], true,
            "{id} answered from the cache: {rs:?}"
        );
        assert_eq!(rs[1]["status"], rs[0]["status"], "{id}");
    }
    for id in fresh {
        let last = second[id].last().unwrap();
        assert_eq!(last["duplicate"], false, "{id} verified anew: {last}");
        assert_eq!(last["state"], "st", "{id} answered by this worker: {last}");
    }
    assert_eq!(
        w.sim.stats().total("token"),
        tokens + fresh.len() as u64,
        "no second token request for a redelivered job"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lagging_commits_still_answer_every_redelivered_job_from_the_cache() {
    let w = World::new(Scenario::default(), 2).await;
    let config = quick(&w);
    let now = Utc::now().timestamp_millis();
    // Jobs appended 8 minutes ago, verified and committed.
    let early = send_stamped(&w, "early", 5, now - 8 * MINUTE).await;
    run_until(&w, config.clone(), &early, 1, &BTreeSet::new()).await;
    let after_early = committed(&w, 2);
    assert_eq!(
        after_early.iter().flatten().sum::<i64>(),
        5,
        "{after_early:?}"
    );
    // From here on every commit fails; jobs appended 5 minutes ago are verified, their results
    // published just now, and their offsets never committed.
    let mock = w.broker.mock().map(|m| m.mock());
    if let Some(m) = mock {
        m.request_errors(
            RDKafkaApiKey::OffsetCommit,
            &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_OFFSET_METADATA_TOO_LARGE; 1_000],
        );
    }
    let late = send_stamped(&w, "late", 20, now - 5 * MINUTE).await;
    run_until(&w, config.clone(), &late, 1, &BTreeSet::new()).await;
    match mock {
        Some(m) => m.clear_request_errors(RDKafkaApiKey::OffsetCommit),
        // A real broker accepts the commits: put the committed offsets back where the failing
        // commits left them.
        None => tokio::task::block_in_place(|| commit(&w, &after_early)),
    }
    assert_eq!(committed(&w, 2), after_early, "the commits lag behind");
    assert_eq!(
        w.sim.stats().total("token"),
        25,
        "one token request per job"
    );

    // A result stamped 7 minutes ago, older than anything the lagging offsets can redeliver,
    // and a new job with the same id: the bound leaves that result out (reading all of
    // code_ttl, as a worker that could not read the offsets does, would answer it).
    let stale = BTreeSet::from(["stale-0".to_owned()]);
    produce_at(
        &w,
        &w.results,
        None,
        "stale-0",
        &result("stale-0"),
        now - 7 * MINUTE,
    )
    .await;
    let job = w.job("stale-0", "381609000000");
    produce_at(
        &w,
        &w.jobs,
        None,
        "stale-0",
        job.to_string().as_bytes(),
        now,
    )
    .await;
    every_redelivery_is_a_duplicate(&w, config, &late, &stale).await;
    let by_id = w.results_by_id().await;
    assert!(
        early.iter().all(|id| by_id[id].len() == 1),
        "only what lagged came again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_group_without_committed_offsets_warms_over_code_ttl() {
    let w = World::new(Scenario::default(), 2).await;
    let mut config = quick(&w);
    let ids = send_stamped(&w, "old", 20, Utc::now().timestamp_millis() - 5 * MINUTE).await;
    run_until(&w, config.clone(), &ids, 1, &BTreeSet::new()).await;
    // A new group: `auto.offset.reset = earliest` redelivers the whole jobs log.
    config.kafka.group_id = format!("{}-new", config.kafka.group_id);
    every_redelivery_is_a_duplicate(&w, config, &ids, &BTreeSet::new()).await;
}

fn result(id: &str) -> Vec<u8> {
    let now = Utc::now();
    serde_json::to_vec(&JobResult {
        schema_version: SCHEMA_VERSION,
        job_id: id.into(),
        status: Status::Verified,
        phone_number_verified: Some(true),
        login_hint: Some("381600000001".into()),
        sub: None,
        mobile_id: None,
        state: None,
        attributes: Default::default(),
        error: None,
        attempts: 2,
        duplicate: false,
        replay_count: 0,
        received_at: now,
        completed_at: now,
        duration_ms: 1,
        signals: None,
        risk_flags: None,
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_only_what_the_committed_offsets_can_redeliver() {
    let w = World::new(Scenario::default(), 2).await;
    let now = Utc::now().timestamp_millis();
    // Results stamped 11, 9 and 4 minutes ago, in that order, over the 3 results partitions.
    for (name, age) in [("ancient", 11), ("before", 9), ("after", 4)] {
        for i in 0..30 {
            let id = format!("{name}-{i}");
            produce_at(&w, &w.results, None, &id, &result(&id), now - age * MINUTE).await;
        }
    }
    // Jobs: partition 0 holds one stamped 5 minutes ago, then one 1 minute ago; partition 1
    // one 1 minute ago.
    let job = b"{}";
    assert_eq!(
        produce_at(&w, &w.jobs, Some(0), "j0", job, now - 5 * MINUTE).await,
        (0, 0)
    );
    assert_eq!(
        produce_at(&w, &w.jobs, Some(0), "j1", job, now - MINUTE).await,
        (0, 1)
    );
    assert_eq!(
        produce_at(&w, &w.jobs, Some(1), "j2", job, now - MINUTE).await,
        (1, 0)
    );

    let config = w.config(); // code_ttl 10 min, warmup_margin 10 s
    let has = |c: &IdempotencyCache, name: &str| {
        (0..30).all(|i| c.lookup(&format!("{name}-{i}"), 0).is_some())
    };
    let none = |c: &IdempotencyCache, name: &str| {
        (0..30).all(|i| c.lookup(&format!("{name}-{i}"), 0).is_none())
    };
    let warm = |committed: Vec<(i32, Option<i64>)>| {
        let config = config.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                let mut reader = ResultsReader::new(&config).unwrap();
                let cache = IdempotencyCache::new(1_000, 1 << 20);
                let warmed = reader.warm_from(&committed, &cache).unwrap();
                (reader, cache, warmed)
            })
            .await
            .unwrap()
        }
    };

    // Lagging: from the job 5 minutes old, minus the margin.
    let (_, cache, warmed) = warm(vec![(0, Some(0)), (1, Some(0))]).await;
    assert_eq!(warmed.redelivery, Redelivery::From(now - 5 * MINUTE));
    assert_eq!(warmed.since_ms, now - 5 * MINUTE - 10_000);
    assert_eq!(warmed.results, 30);
    assert!(has(&cache, "after") && none(&cache, "before") && none(&cache, "ancient"));

    // Up to date: the oldest job left is 1 minute old, and every result is older.
    let (mut reader, cache, warmed) = warm(vec![(0, Some(1)), (1, Some(0))]).await;
    assert_eq!(warmed.redelivery, Redelivery::From(now - MINUTE));
    assert_eq!((warmed.results, cache.len()), (0, 0));
    // A later assignment of a partition whose commits lag reads further back.
    let cache = tokio::task::spawn_blocking(move || {
        let w = reader.warm_from(&[(0, Some(0))], &cache).unwrap();
        assert_eq!(w.results, 30);
        cache
    })
    .await
    .unwrap();
    assert!(has(&cache, "after") && none(&cache, "before"));

    // No committed offset on one partition: everything inside code_ttl.
    let (_, cache, warmed) = warm(vec![(0, None), (1, Some(1))]).await;
    assert_eq!(warmed.redelivery, Redelivery::Unbounded);
    assert_eq!(warmed.results, 60);
    assert!(has(&cache, "after") && has(&cache, "before") && none(&cache, "ancient"));

    // Every committed offset at its end: nothing to redeliver, only the margin is read.
    let (_, cache, warmed) = warm(vec![(0, Some(2)), (1, Some(1))]).await;
    assert_eq!(warmed.redelivery, Redelivery::Nothing);
    assert_eq!((warmed.results, cache.len()), (0, 0));
}
