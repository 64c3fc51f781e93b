//! `silentauth-worker demo` end to end: embedded Kafka, the simulator and the real worker. A
//! small run must end with every job as the contract prescribes, and its numbers must add up.

use super::kind::Kind;
use super::{run, DemoOptions};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_demo_succeeds_and_its_numbers_add_up() {
    let opts = DemoOptions {
        jobs: 300,
        seed: 7,
        timeout: Duration::from_secs(90),
        ..DemoOptions::default()
    };
    let report = tokio::time::timeout(Duration::from_secs(180), run(opts))
        .await
        .expect("the demo finishes")
        .expect("the demo runs");
    let summary = report.render();
    assert!(report.success(), "{summary}");

    // Every job is accounted for, and every kind of job was exercised.
    assert_eq!(report.jobs, 300);
    assert_eq!(report.kinds.len(), Kind::ALL.len(), "{summary}");
    assert_eq!(report.kinds.values().map(|t| t.jobs).sum::<usize>(), 300);
    assert_eq!(report.kinds.values().map(|t| t.ok).sum::<usize>(), 300);

    // One result per readable job, one more per redelivery (answered from the cache).
    let redelivered = report.records_published - report.jobs;
    assert!(redelivered > 0 && report.unreadable_jobs > 0, "{summary}");
    assert_eq!(
        report.results as usize,
        report.jobs - report.unreadable_jobs + redelivered
    );
    assert_eq!(report.outcomes.values().sum::<u64>(), report.results);
    assert_eq!(report.outcomes, report.expected_outcomes);
    assert_eq!(report.duplicates as usize, redelivered);

    // Dead letters: exactly the expected ones.
    assert_eq!(
        report.dead_letters_by_class.values().sum::<u64>(),
        report.dead_letters
    );
    assert_eq!(report.dead_letters_by_class, report.expected_dead_letters);

    // The worker's HTTP count is the simulator's, and the summary has its measurements.
    assert_eq!(
        report.http.worker_requests,
        report.http.token + report.http.userinfo + report.http.signals
    );
    assert!(report.http.signals > 0, "{summary}");
    assert!(report.http.worker_retries > 0 && report.http.faults_injected > 0);
    assert!(report.jobs_per_second > 0.0);
    assert!(report.end_to_end_latency.p50 > 0.0);
    assert!(summary.contains("jobs/s"), "{summary}");
}
