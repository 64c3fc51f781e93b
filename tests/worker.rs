//! Black-box tests of `silentauth-worker run`'s pipeline: jobs in, results and dead letters out,
//! on the broker chosen by `tests/support` and the built-in simulator.

mod support;

use rdkafka::message::Message;
use serde_json::{json, Value};
use silentauth_simulator::Scenario;
use std::collections::HashMap;
use std::time::Duration;
use support::load::{assert_never_written, count};
use support::world::{header, World, REDIRECT};
use support::TestBroker;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verifies_jobs_and_copies_traceparent() {
    let w = World::new(Scenario::default(), 4).await;
    let (cancel, handle) = w.start(w.config());
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    for i in 0..40 {
        let job = w.job(&format!("job-{i}"), &format!("3811234567{i:02}"));
        if i == 0 {
            w.send(
                Some("job-0"),
                job.to_string().as_bytes(),
                &[("traceparent", tp.as_bytes())],
            )
            .await;
        } else {
            w.send_job(&job).await;
        }
    }
    let results = w.results(40).await;
    assert_eq!(results.len(), 40);
    for (r, m) in &results {
        assert_eq!(r["status"], "verified", "{r}");
        assert_eq!(r["phone_number_verified"], true);
        assert_eq!(r["attempts"], 2);
        assert_eq!(r["duplicate"], false);
        assert_eq!(r["attributes"]["t"], "acme");
        assert_eq!(m.key(), Some(r["job_id"].as_str().unwrap().as_bytes()));
        if r["job_id"] == "job-0" {
            assert_eq!(header(m, "traceparent"), Some(tp));
        }
    }
    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(30), handle)
        .await
        .expect("shutdown within grace")
        .unwrap();
    // The worker has stopped and flushed: one result per job, and no dead letter was ever
    // written.
    assert_eq!(count(&w.broker, &w.results).await, 40, "one result per job");
    assert_never_written(&w.broker, &w.dlq, "no dead letters expected").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_messages_become_dead_letters_and_never_stop_the_worker() {
    let w = World::new(Scenario::default(), 2).await;
    let (cancel, handle) = w.start(w.config());
    let junk = vec![b'x'; 200 * 1024];
    let poison: Vec<(&str, Vec<u8>)> = vec![
        ("not-utf8", vec![0xff, 0xfe, 0x00, 0x80]),
        ("not-json", b"hello".to_vec()),
        ("wrong-shape", b"[1,2,3]".to_vec()),
        ("empty", Vec::new()),
        ("junk", junk),
        (
            "bad-field",
            json!({"job_id": "poison-1", "login_hint": "12", "code": "c", "redirect_uri": REDIRECT})
                .to_string()
                .into_bytes(),
        ),
    ];
    for (key, value) in &poison {
        w.send(Some(key), value, &[("traceparent", b"00-aa-bb-01")])
            .await;
    }
    w.send_job(&w.job("after-poison", "381123456789")).await;
    // One result for the job with a readable job_id, one for the valid job.
    let results = w.results(2).await;
    let by_id: HashMap<String, Value> = results
        .into_iter()
        .map(|(r, _)| (r["job_id"].as_str().unwrap().to_owned(), r))
        .collect();
    assert_eq!(by_id["after-poison"]["status"], "verified");
    let bad = &by_id["poison-1"];
    assert_eq!(bad["status"], "failed");
    assert_eq!(bad["error"]["class"], "invalid_job");
    assert_eq!(bad["error"]["stage"], "job");
    assert!(bad["error"]["description"]
        .as_str()
        .unwrap()
        .contains("login_hint"));
    let dl = w
        .broker
        .consume_all(&w.dlq, poison.len(), Duration::from_secs(30))
        .await;
    assert_eq!(dl.len(), poison.len());
    for m in &dl {
        let key = std::str::from_utf8(m.key().unwrap()).unwrap();
        let original = &poison.iter().find(|(k, _)| *k == key).unwrap().1;
        assert_eq!(
            m.payload().unwrap_or_default(),
            original.as_slice(),
            "value unchanged"
        );
        assert_eq!(header(m, "dlq.error.class"), Some("invalid_job"));
        assert_eq!(header(m, "dlq.error.stage"), Some("job"));
        assert_eq!(header(m, "dlq.original.topic"), Some(w.jobs.as_str()));
        assert_eq!(header(m, "dlq.replay_count"), Some("0"));
        assert_eq!(header(m, "dlq.consumer_group"), Some(w.group.as_str()));
        assert_eq!(header(m, "traceparent"), Some("00-aa-bb-01"));
        for h in [
            "dlq.original.partition",
            "dlq.original.offset",
            "dlq.error.message",
            "dlq.attempts",
            "dlq.failed_at",
            "dlq.worker_version",
        ] {
            assert!(header(m, h).is_some(), "{h} missing");
        }
    }
    cancel.cancel();
    handle.await.unwrap();
    // Stopped and flushed: exactly one dead letter per poison record, nothing more.
    assert_eq!(count(&w.broker, &w.dlq).await, poison.len() as i64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_class_reaches_its_result() {
    let w = World::new(Scenario::default(), 2).await;
    let (cancel, handle) = w.start(w.config());
    let mut expect: Vec<(String, &str, Option<&str>, bool)> = Vec::new();

    // authorize_rejected: no HTTP call.
    let j = json!({"job_id": "authz", "login_hint": "381123456789", "error": "missing_scope"});
    w.send_job(&j).await;
    expect.push(("authz".into(), "failed", Some("authorize_rejected"), false));
    // expired
    let mut j = w.job("expired", "381123456789");
    j["issued_at"] = json!("2020-01-01T00:00:00Z");
    w.send_job(&j).await;
    expect.push(("expired".into(), "failed", Some("expired"), false));
    // code_rejected: a code that was never issued.
    let mut j = w.job("rejected", "381123456789");
    j["code"] = json!("never-issued-code");
    w.send_job(&j).await;
    expect.push(("rejected".into(), "failed", Some("code_rejected"), false));
    // credentials_rejected: a profile with a wrong secret.
    let mut j = w.job("creds", "381123456789");
    j["client"] = json!("wrong");
    w.send_job(&j).await;
    expect.push(("creds".into(), "failed", Some("credentials_rejected"), true));
    // invalid_job: unknown client profile.
    let mut j = w.job("noclient", "381123456789");
    j["client"] = json!("nobody");
    w.send_job(&j).await;
    expect.push(("noclient".into(), "failed", Some("invalid_job"), true));
    // login_hint_mismatch: the code was issued for another number.
    let mut j = w.job("mismatch", "381999999999");
    j["login_hint"] = json!("381123456789");
    w.send_job(&j).await;
    expect.push((
        "mismatch".into(),
        "not_verified",
        Some("login_hint_mismatch"),
        false,
    ));
    // verified
    w.send_job(&w.job("ok", "381123456789")).await;
    expect.push(("ok".into(), "verified", None, false));

    let results = w.results(expect.len()).await;
    let by_id: HashMap<String, Value> = results
        .into_iter()
        .map(|(r, _)| (r["job_id"].as_str().unwrap().to_owned(), r))
        .collect();
    let mut dead = 0;
    for (id, status, class, dlq) in &expect {
        let r = by_id
            .get(id)
            .unwrap_or_else(|| panic!("no result for {id}"));
        assert_eq!(r["status"], *status, "{id}: {r}");
        match class {
            Some(c) => assert_eq!(r["error"]["class"], *c, "{id}: {r}"),
            None => assert!(r["error"].is_null(), "{id}: {r}"),
        }
        dead += *dlq as usize;
    }
    assert_eq!(by_id["authz"]["attempts"], 0);
    assert_eq!(by_id["expired"]["attempts"], 0);
    let dl = w
        .broker
        .consume_all(&w.dlq, dead, Duration::from_secs(30))
        .await;
    assert_eq!(dl.len(), dead);
    cancel.cancel();
    handle.await.unwrap();
    // Stopped and flushed: no other job was dead-lettered, and each got one result.
    assert_eq!(count(&w.broker, &w.dlq).await, dead as i64);
    assert_eq!(count(&w.broker, &w.results).await, expect.len() as i64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivered_and_restarted_jobs_never_spend_a_code_twice() {
    let w = World::new(Scenario::default(), 2).await;
    let jobs: Vec<Value> = (0..10)
        .map(|i| w.job(&format!("once-{i}"), &format!("3816000000{i:02}")))
        .collect();
    let (cancel, handle) = w.start(w.config());
    for j in &jobs {
        w.send_job(j).await;
    }
    assert_eq!(w.results(10).await.len(), 10);
    // Redelivery while running: answered from the cache.
    w.send_job(&jobs[0]).await;
    let all = w.results(11).await;
    let dups: Vec<_> = all.iter().filter(|(r, _)| r["duplicate"] == true).collect();
    assert_eq!(dups.len(), 1);
    assert_eq!(dups[0].0["status"], "verified");
    cancel.cancel();
    handle.await.unwrap();

    // A new worker in a new group (its offsets lost) warms its cache from the results topic.
    let mut config = w.config();
    config.kafka.group_id = TestBroker::unique_group("restarted");
    let tokens_before = token_requests(&w);
    let cancel = CancellationToken::new();
    let c = cancel.clone();
    let handle =
        tokio::spawn(async move { silentauth_worker::worker::run(config, c).await.unwrap() });
    let all = w.results(22).await;
    assert_eq!(all.len(), 22);
    let dup_count = all.iter().filter(|(r, _)| r["duplicate"] == true).count();
    assert_eq!(
        dup_count, 12,
        "every redelivered job answered from the warmed cache"
    );
    assert!(all.iter().all(|(r, _)| r["status"] == "verified"));
    assert_eq!(token_requests(&w), tokens_before, "no code spent twice");
    cancel.cancel();
    handle.await.unwrap();
}

fn token_requests(w: &World) -> u64 {
    w.sim.stats().total("token")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_job_that_fails_again_keeps_its_audit_trail() {
    let w = World::new(Scenario::default(), 1).await;
    let (cancel, handle) = w.start(w.config());
    let mut job = w.job("again", "381123456789");
    job["client"] = json!("wrong");
    w.send(
        Some("again"),
        job.to_string().as_bytes(),
        &[
            ("dlq.replay_count", b"1"),
            ("dlq.previous.error.class", b"upstream_unavailable"),
            ("dlq.previous.original.offset", b"7"),
        ],
    )
    .await;
    let results = w.results(1).await;
    assert_eq!(results[0].0["replay_count"], 1);
    assert_eq!(results[0].0["error"]["class"], "credentials_rejected");
    let dl = w
        .broker
        .consume_all(&w.dlq, 1, Duration::from_secs(30))
        .await;
    assert_eq!(dl.len(), 1);
    assert_eq!(
        header(&dl[0], "dlq.error.class"),
        Some("credentials_rejected")
    );
    assert_eq!(header(&dl[0], "dlq.replay_count"), Some("1"));
    assert_eq!(
        header(&dl[0], "dlq.previous.error.class"),
        Some("upstream_unavailable")
    );
    assert_eq!(header(&dl[0], "dlq.previous.original.offset"), Some("7"));
    cancel.cancel();
    handle.await.unwrap();
    assert_eq!(count(&w.broker, &w.dlq).await, 1, "one dead letter");
}
