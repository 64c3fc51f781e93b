//! The demo's verdict: every job's results and dead letters compared with what docs/contract.md
//! prescribes for it, plus the measurements (throughput, latency, HTTP) the summary prints.

use super::collect::{Published, Received, SeenDeadLetter, SeenResult};
use super::kind::{Expected, ExpectedResult};
use super::plan::{JobSpec, Kind, Plan, Record};
use silentauth_worker::contract::{ErrorClass, JobResult, Status};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

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
        let mut check = Check {
            report: DemoReport {
                jobs: plan.jobs.len(),
                records_published: published.records,
                results: received.result_count,
                dead_letters: received.dead_letter_count,
                timed_out: received.timed_out,
                publish_time: published.last_ack.duration_since(published.first),
                ..DemoReport::default()
            },
            payloads: records
                .iter()
                .map(|rec| (rec.key.as_str(), rec.payload.as_slice()))
                .collect(),
            worker_ms: Vec::new(),
            e2e_ms: Vec::new(),
        };
        for job in &plan.jobs {
            let arrived = Arrived {
                results: received.results.remove(&job.job_id).unwrap_or_default(),
                dead_letters: received
                    .dead_letters
                    .remove(&job.job_id)
                    .unwrap_or_default(),
                sent: published.sent_at.get(&job.job_id).copied(),
            };
            check.job(job, job.kind.expected(max_attempts), &arrived);
        }
        check.unclaimed(&received);
        check.finish(published.first, received.last_result.take())
    }
}

/// What arrived for one job of the plan.
struct Arrived {
    results: Vec<SeenResult>,
    dead_letters: Vec<SeenDeadLetter>,
    /// When the job was handed to the producer.
    sent: Option<Instant>,
}

/// A report being built job by job, with the latency samples it ends with.
struct Check<'a> {
    report: DemoReport,
    /// The published job bytes by key (a dead letter must carry them unchanged).
    payloads: HashMap<&'a str, &'a [u8]>,
    /// The results' `duration_ms`.
    worker_ms: Vec<f64>,
    /// From publishing a job to reading its result.
    e2e_ms: Vec<f64>,
}

impl Check<'_> {
    /// Counts what arrived for `job` and notes every way it differs from `expected`.
    fn job(&mut self, job: &JobSpec, expected: Expected, arrived: &Arrived) {
        let before = self.report.mismatches.len();
        let what = format!("job {} ({})", job.job_id, job.kind.label());
        self.count_results(&arrived.results, arrived.sent);
        match expected.result {
            None => {
                self.report.unreadable_jobs += 1;
                if !arrived.results.is_empty() {
                    self.mismatch(format!(
                        "{what}: expected no result, got {}",
                        arrived.results.len()
                    ));
                }
            }
            Some(want) => self.check_results(job, &what, (want, expected.copies), &arrived.results),
        }
        self.check_dead_letters(job, &what, expected.dead_letter, &arrived.dead_letters);
        let tally = self.report.kinds.entry(job.kind).or_default();
        tally.jobs += 1;
        if self.report.mismatches.len() == before {
            tally.ok += 1;
        }
    }

    fn mismatch(&mut self, what: String) {
        self.report.mismatches.push(what);
    }

    /// Counts the results by outcome and their signals, and samples the latencies of the
    /// first copies (duplicates are answered from the cache).
    fn count_results(&mut self, results: &[SeenResult], sent: Option<Instant>) {
        let r = &mut self.report;
        for seen in results {
            let res = &seen.result;
            let class = res.error.as_ref().map(|e| e.class);
            *r.outcomes.entry((res.status, class)).or_default() += 1;
            if !res.duplicate {
                count_signals(&mut r.signals, res);
            }
            r.duplicates += u64::from(res.duplicate);
            if !res.duplicate {
                self.worker_ms.push(res.duration_ms as f64);
                if let Some(sent) = sent {
                    self.e2e_ms
                        .push(seen.at.duration_since(sent).as_secs_f64() * 1000.0);
                }
            }
        }
    }

    /// Checks the results of a job with a readable `job_id`: `copies` of them, each as `want`,
    /// all but the first duplicates.
    fn check_results(
        &mut self,
        job: &JobSpec,
        what: &str,
        (want, copies): (ExpectedResult, u32),
        results: &[SeenResult],
    ) {
        *self
            .report
            .expected_outcomes
            .entry((want.status, want.class))
            .or_default() += u64::from(copies);
        if results.len() != copies as usize {
            self.mismatch(format!(
                "{what}: expected {copies} result(s), got {}",
                results.len()
            ));
        }
        for seen in results {
            self.check_result(job, what, want, seen);
        }
        let dups = results.iter().filter(|s| s.result.duplicate).count();
        if results.len() == copies as usize && dups + 1 != copies as usize {
            self.mismatch(format!(
                "{what}: expected {} duplicate result(s), got {dups}",
                copies - 1
            ));
        }
    }

    /// Checks one result's outcome, attempts, signals and trace context.
    fn check_result(&mut self, job: &JobSpec, what: &str, want: ExpectedResult, seen: &SeenResult) {
        let res = &seen.result;
        let class = res.error.as_ref().map(|e| e.class);
        if res.status != want.status || class != want.class {
            self.mismatch(format!(
                "{what}: expected {}, got {}",
                outcome_name(want.status, want.class),
                outcome_name(res.status, class)
            ));
        } else if res.attempts > want.attempts && want.attempts > 0 && job.kind != Kind::Outage {
            // Timeouts or connection errors under load: retries the contract allows, but not
            // part of the plan.
            self.report.unplanned_retries += 1;
        } else if res.attempts != want.attempts {
            self.mismatch(format!(
                "{what}: expected {} HTTP attempt(s), got {}",
                want.attempts, res.attempts
            ));
        }
        let signals = res.signals.as_ref().map(|_| signals_summary(res));
        if signals.as_deref() != want.signals {
            self.mismatch(format!(
                "{what}: expected signals {:?}, got {signals:?}",
                want.signals
            ));
        }
        if job.traceparent.is_some() && seen.traceparent != job.traceparent {
            self.mismatch(format!("{what}: result lacks the job's traceparent"));
        }
    }

    /// Counts a job's dead letters by class and checks them against the one expected (its
    /// class, the job's bytes unchanged, its trace context).
    fn check_dead_letters(
        &mut self,
        job: &JobSpec,
        what: &str,
        expected: Option<ErrorClass>,
        letters: &[SeenDeadLetter],
    ) {
        let r = &mut self.report;
        for dl in letters {
            let class = dl.class.clone().unwrap_or_else(|| "<none>".into());
            *r.dead_letters_by_class.entry(class).or_default() += 1;
        }
        if let Some(class) = expected {
            *r.expected_dead_letters
                .entry(class.as_str().to_owned())
                .or_default() += 1;
        }
        match (expected, letters) {
            (None, []) => {}
            (None, got) => self.mismatch(format!(
                "{what}: unexpected dead letter(s) of class {}",
                got.iter()
                    .map(|d| d.class.as_deref().unwrap_or("<none>"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            (Some(class), [dl]) => {
                if dl.class.as_deref() != Some(class.as_str()) {
                    self.mismatch(format!(
                        "{what}: dead letter of class {}, expected {class}",
                        dl.class.as_deref().unwrap_or("<none>")
                    ));
                }
                if self.payloads.get(job.job_id.as_str()).copied() != Some(dl.value.as_slice()) {
                    self.mismatch(format!("{what}: dead letter value differs from the job"));
                }
                if job.traceparent.is_some() && dl.traceparent != job.traceparent {
                    self.mismatch(format!("{what}: dead letter lacks the job's traceparent"));
                }
            }
            (Some(class), got) => self.mismatch(format!(
                "{what}: expected one {class} dead letter, got {}",
                got.len()
            )),
        }
    }

    /// Notes what arrived for no job of the plan (left in `received` once every job took its
    /// own), and records that are not Result v1.
    fn unclaimed(&mut self, received: &Received) {
        for (id, results) in &received.results {
            self.mismatch(format!(
                "{} result(s) for unknown job_id {id}",
                results.len()
            ));
        }
        for (key, letters) in &received.dead_letters {
            self.mismatch(format!(
                "{} dead letter(s) for unknown key {key:?}",
                letters.len()
            ));
        }
        if received.unreadable_results > 0 {
            self.mismatch(format!(
                "{} record(s) on the results topic are not Result v1",
                received.unreadable_results
            ));
        }
    }

    /// The report with its rates and latencies: from the first job published to the last
    /// result read.
    fn finish(self, first_sent: Instant, last_result: Option<Instant>) -> DemoReport {
        let mut r = self.report;
        if let Some(last) = last_result {
            r.elapsed = last.saturating_duration_since(first_sent);
        }
        if !r.elapsed.is_zero() {
            r.jobs_per_second = r.jobs as f64 / r.elapsed.as_secs_f64();
        }
        r.worker_latency = Percentiles::of(self.worker_ms);
        r.end_to_end_latency = Percentiles::of(self.e2e_ms);
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
