//! The demo's verdict: every job's results and dead letters compared with what docs/contract.md
//! prescribes for it, plus the measurements (throughput, latency, HTTP) the summary prints.

use super::collect::{Published, Received};
use super::plan::{Kind, Plan, Record};
use silentauth_worker::contract::{ErrorClass, JobResult, Status};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// p50, p99 and max of a sample, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
}

impl Percentiles {
    fn of(mut v: Vec<f64>) -> Percentiles {
        if v.is_empty() {
            return Percentiles::default();
        }
        v.sort_by(f64::total_cmp);
        let at = |q: f64| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
        Percentiles {
            p50: at(0.50),
            p99: at(0.99),
            max: at(1.0),
        }
    }
}

/// HTTP traffic seen by the worker and by the simulator.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpCounts {
    /// Requests the worker sent (its `WorkerCounters`).
    pub worker_requests: u64,
    /// Retries among them.
    pub worker_retries: u64,
    /// Token requests the simulator answered.
    pub token: u64,
    /// Userinfo requests the simulator answered.
    pub userinfo: u64,
    /// Network Signals requests the simulator answered.
    pub signals: u64,
    /// Answers produced by a fault rule.
    pub faults_injected: u64,
    /// Token requests that presented an already used code.
    pub codes_reused: u64,
}

/// Per kind of job: how many, and how many ended exactly as expected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KindTally {
    /// Jobs of this kind.
    pub jobs: usize,
    /// Jobs whose results and dead letters all matched.
    pub ok: usize,
}

/// What a demo run measured and whether every job ended as the contract says.
#[derive(Debug, Clone, Default)]
pub struct DemoReport {
    /// Jobs generated (`--jobs`).
    pub jobs: usize,
    /// The seed.
    pub seed: u64,
    /// Records published (jobs plus redeliveries).
    pub records_published: usize,
    /// Results read.
    pub results: u64,
    /// Dead letters read.
    pub dead_letters: u64,
    /// Results by status and class, as read.
    pub outcomes: BTreeMap<(Status, Option<ErrorClass>), u64>,
    /// Results by status and class, as expected.
    pub expected_outcomes: BTreeMap<(Status, Option<ErrorClass>), u64>,
    /// Network-signal outcomes (`sim_swap=swapped`, …) and risk flags (`flag=…`), as read.
    pub signals: BTreeMap<String, u64>,
    /// Dead letters by `dlq.error.class`, as read.
    pub dead_letters_by_class: BTreeMap<String, u64>,
    /// Dead letters by class, as expected.
    pub expected_dead_letters: BTreeMap<String, u64>,
    /// Jobs by kind.
    pub kinds: BTreeMap<Kind, KindTally>,
    /// Results with `duplicate: true`.
    pub duplicates: u64,
    /// Results that took more HTTP attempts than planned (timeouts or connection errors under
    /// load), though the expected outcome.
    pub unplanned_retries: u64,
    /// Jobs whose `job_id` cannot be read (they produce only a dead letter).
    pub unreadable_jobs: usize,
    /// First job published to last result read.
    pub elapsed: Duration,
    /// `jobs / elapsed`.
    pub jobs_per_second: f64,
    /// How long publishing took (first send to last acknowledgement).
    pub publish_time: Duration,
    /// The results' `duration_ms` (the worker's own time per job).
    pub worker_latency: Percentiles,
    /// From publishing a job to reading its result.
    pub end_to_end_latency: Percentiles,
    /// HTTP counts.
    pub http: HttpCounts,
    /// Every way a job did not end as expected.
    pub mismatches: Vec<String>,
    /// True when `--timeout` ended the wait before everything arrived.
    pub timed_out: bool,
}

impl DemoReport {
    /// True when every job got its expected results and dead letters, and nothing else arrived.
    pub fn success(&self) -> bool {
        !self.timed_out && self.mismatches.is_empty()
    }

    /// Compares what arrived with the plan.
    pub(super) fn build(
        plan: &Plan,
        records: &[Record],
        published: &Published,
        mut received: Received,
        max_attempts: u32,
    ) -> DemoReport {
        let mut r = DemoReport {
            jobs: plan.jobs.len(),
            records_published: published.records,
            results: received.result_count,
            dead_letters: received.dead_letter_count,
            timed_out: received.timed_out,
            publish_time: published.last_ack.duration_since(published.first),
            ..DemoReport::default()
        };
        let payloads: HashMap<&str, &[u8]> = records
            .iter()
            .map(|rec| (rec.key.as_str(), rec.payload.as_slice()))
            .collect();
        let mut worker_ms = Vec::new();
        let mut e2e_ms = Vec::new();
        for job in &plan.jobs {
            let expected = job.kind.expected(max_attempts);
            let tally = r.kinds.entry(job.kind).or_default();
            tally.jobs += 1;
            let before = r.mismatches.len();
            let what = format!("job {} ({})", job.job_id, job.kind.label());
            let results = received.results.remove(&job.job_id).unwrap_or_default();
            let sent = published.sent_at.get(&job.job_id).copied();
            for seen in &results {
                let res = &seen.result;
                let class = res.error.as_ref().map(|e| e.class);
                *r.outcomes.entry((res.status, class)).or_default() += 1;
                if !res.duplicate {
                    count_signals(&mut r.signals, res);
                }
                r.duplicates += u64::from(res.duplicate);
                if !res.duplicate {
                    worker_ms.push(res.duration_ms as f64);
                    if let Some(sent) = sent {
                        e2e_ms.push(seen.at.duration_since(sent).as_secs_f64() * 1000.0);
                    }
                }
            }
            match expected.result {
                None => {
                    r.unreadable_jobs += 1;
                    if !results.is_empty() {
                        r.mismatches
                            .push(format!("{what}: expected no result, got {}", results.len()));
                    }
                }
                Some(want) => {
                    *r.expected_outcomes
                        .entry((want.status, want.class))
                        .or_default() += u64::from(expected.copies);
                    if results.len() != expected.copies as usize {
                        r.mismatches.push(format!(
                            "{what}: expected {} result(s), got {}",
                            expected.copies,
                            results.len()
                        ));
                    }
                    for seen in &results {
                        let res = &seen.result;
                        let class = res.error.as_ref().map(|e| e.class);
                        if res.status != want.status || class != want.class {
                            r.mismatches.push(format!(
                                "{what}: expected {}, got {}",
                                outcome_name(want.status, want.class),
                                outcome_name(res.status, class)
                            ));
                        } else if res.attempts > want.attempts
                            && want.attempts > 0
                            && job.kind != Kind::Outage
                        {
                            // Timeouts or connection errors under load: retries the contract
                            // allows, but not part of the plan.
                            r.unplanned_retries += 1;
                        } else if res.attempts != want.attempts {
                            r.mismatches.push(format!(
                                "{what}: expected {} HTTP attempt(s), got {}",
                                want.attempts, res.attempts
                            ));
                        }
                        let signals = res.signals.as_ref().map(|_| signals_summary(res));
                        if signals.as_deref() != want.signals {
                            r.mismatches.push(format!(
                                "{what}: expected signals {:?}, got {signals:?}",
                                want.signals
                            ));
                        }
                        if job.traceparent.is_some() && seen.traceparent != job.traceparent {
                            r.mismatches
                                .push(format!("{what}: result lacks the job's traceparent"));
                        }
                    }
                    let dups = results.iter().filter(|s| s.result.duplicate).count();
                    if results.len() == expected.copies as usize
                        && dups + 1 != expected.copies as usize
                    {
                        r.mismatches.push(format!(
                            "{what}: expected {} duplicate result(s), got {dups}",
                            expected.copies - 1
                        ));
                    }
                }
            }
            let letters = received
                .dead_letters
                .remove(&job.job_id)
                .unwrap_or_default();
            for dl in &letters {
                let class = dl.class.clone().unwrap_or_else(|| "<none>".into());
                *r.dead_letters_by_class.entry(class).or_default() += 1;
            }
            if let Some(class) = expected.dead_letter {
                *r.expected_dead_letters
                    .entry(class.as_str().to_owned())
                    .or_default() += 1;
            }
            match (expected.dead_letter, letters.as_slice()) {
                (None, []) => {}
                (None, got) => r.mismatches.push(format!(
                    "{what}: unexpected dead letter(s) of class {}",
                    got.iter()
                        .map(|d| d.class.as_deref().unwrap_or("<none>"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
                (Some(class), [dl]) => {
                    if dl.class.as_deref() != Some(class.as_str()) {
                        r.mismatches.push(format!(
                            "{what}: dead letter of class {}, expected {class}",
                            dl.class.as_deref().unwrap_or("<none>")
                        ));
                    }
                    if payloads.get(job.job_id.as_str()).copied() != Some(dl.value.as_slice()) {
                        r.mismatches
                            .push(format!("{what}: dead letter value differs from the job"));
                    }
                    if job.traceparent.is_some() && dl.traceparent != job.traceparent {
                        r.mismatches
                            .push(format!("{what}: dead letter lacks the job's traceparent"));
                    }
                }
                (Some(class), got) => r.mismatches.push(format!(
                    "{what}: expected one {class} dead letter, got {}",
                    got.len()
                )),
            }
            if r.mismatches.len() == before {
                tally.ok += 1;
            }
        }
        for (id, results) in &received.results {
            r.mismatches.push(format!(
                "{} result(s) for unknown job_id {id}",
                results.len()
            ));
        }
        for (key, letters) in &received.dead_letters {
            r.mismatches.push(format!(
                "{} dead letter(s) for unknown key {key:?}",
                letters.len()
            ));
        }
        if received.unreadable_results > 0 {
            r.mismatches.push(format!(
                "{} record(s) on the results topic are not Result v1",
                received.unreadable_results
            ));
        }
        if let Some(last) = received.last_result.take() {
            r.elapsed = last.saturating_duration_since(published.first);
        }
        if !r.elapsed.is_zero() {
            r.jobs_per_second = r.jobs as f64 / r.elapsed.as_secs_f64();
        }
        r.worker_latency = Percentiles::of(worker_ms);
        r.end_to_end_latency = Percentiles::of(e2e_ms);
        r
    }
}

/// A result's checks (`sim_swap=swapped`, `call_forwarding=failed/<class>`; checks the job did
/// not ask for are left out) and its risk flags.
fn signal_parts(res: &JobResult) -> (Vec<String>, Vec<&'static str>) {
    let mut checks = Vec::new();
    if let Some(s) = &res.signals {
        let outcome =
            |name: &str, outcome: &str, e: Option<&silentauth_worker::contract::ErrorInfo>| match e
            {
                Some(e) => format!("{name}={outcome}/{}", e.class),
                None => format!("{name}={outcome}"),
            };
        if let Some(x) = &s.sim_swap {
            checks.push(outcome("sim_swap", x.outcome.as_str(), x.error.as_ref()));
        }
        if let Some(x) = &s.device_swap {
            checks.push(outcome("device_swap", x.outcome.as_str(), x.error.as_ref()));
        }
        if let Some(x) = &s.call_forwarding {
            checks.push(outcome(
                "call_forwarding",
                x.outcome.as_str(),
                x.error.as_ref(),
            ));
        }
    }
    let flags = res
        .risk_flags
        .iter()
        .flatten()
        .map(|f| f.as_str())
        .collect();
    (checks, flags)
}

/// A result's signals and flags on one line: `sim_swap=swapped call_forwarding=failed/<class>
/// flags=recent_sim_swap`.
pub(super) fn signals_summary(res: &JobResult) -> String {
    let (mut parts, flags) = signal_parts(res);
    parts.push(format!("flags={}", flags.join(",")));
    parts.join(" ")
}

/// Counts each check's outcome and each risk flag of one result.
fn count_signals(counts: &mut BTreeMap<String, u64>, res: &JobResult) {
    if res.signals.is_none() {
        return;
    }
    let (checks, flags) = signal_parts(res);
    for check in checks {
        *counts.entry(check.replacen('=', " ", 1)).or_default() += 1;
    }
    for flag in flags {
        *counts.entry(format!("risk flag {flag}")).or_default() += 1;
    }
}

pub(super) fn outcome_name(status: Status, class: Option<ErrorClass>) -> String {
    match class {
        Some(c) => format!("{}/{c}", status.as_str()),
        None => status.as_str().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_ranks() {
        let p = Percentiles::of((1..=100).map(f64::from).collect());
        assert_eq!((p.p50, p.p99, p.max), (50.0, 99.0, 100.0));
        assert_eq!(Percentiles::of(Vec::new()), Percentiles::default());
        assert_eq!(Percentiles::of(vec![7.0]).p99, 7.0);
    }
}
