//! The summary `demo` prints: outcome tables (actual next to expected), throughput, latency,
//! HTTP counts, and the mismatches, if any.

use super::report::{outcome_name, DemoReport};
use silentauth_worker::contract::ErrorClass;
use std::fmt::Write as _;

/// Mismatches listed in the summary; the rest are counted.
const MAX_LISTED: usize = 25;

impl DemoReport {
    /// The summary, as printed at the end of `demo`.
    pub fn render(&self) -> String {
        let mut o = String::new();
        let _ = self.render_into(&mut o);
        o
    }

    fn render_into(&self, o: &mut String) -> std::fmt::Result {
        self.render_outcomes(o)?;
        self.render_dead_letters(o)?;
        self.render_signals(o)?;
        self.render_kinds(o)?;
        self.render_measurements(o)?;
        self.render_verdict(o)
    }

    /// Results by status and class, actual next to expected.
    fn render_outcomes(&self, o: &mut String) -> std::fmt::Result {
        writeln!(o)?;
        writeln!(
            o,
            "Results by status and class                      count   expected"
        )?;
        let mut keys: Vec<_> = self
            .outcomes
            .keys()
            .chain(self.expected_outcomes.keys())
            .copied()
            .collect();
        keys.sort();
        keys.dedup();
        for k in keys {
            let got = self.outcomes.get(&k).copied().unwrap_or(0);
            let want = self.expected_outcomes.get(&k).copied().unwrap_or(0);
            let flag = if got == want { "" } else { "   <-- differs" };
            writeln!(
                o,
                "  {:<13} {:<30} {got:>8} {want:>10}{flag}",
                k.0.as_str(),
                k.1.map_or("", ErrorClass::as_str)
            )?;
        }
        writeln!(
            o,
            "  {:<44} {:>8} {:>10}",
            "total",
            self.results,
            self.expected_outcomes.values().sum::<u64>()
        )?;
        Ok(())
    }

    /// Dead letters by class, actual next to expected.
    fn render_dead_letters(&self, o: &mut String) -> std::fmt::Result {
        writeln!(o)?;
        writeln!(
            o,
            "Dead letters by class                            count   expected"
        )?;
        let mut classes: Vec<&String> = self
            .dead_letters_by_class
            .keys()
            .chain(self.expected_dead_letters.keys())
            .collect();
        classes.sort();
        classes.dedup();
        for c in classes {
            let got = self.dead_letters_by_class.get(c).copied().unwrap_or(0);
            let want = self.expected_dead_letters.get(c).copied().unwrap_or(0);
            let flag = if got == want { "" } else { "   <-- differs" };
            writeln!(o, "  {c:<44} {got:>8} {want:>10}{flag}")?;
        }
        Ok(())
    }

    /// Network-signal outcomes and risk flags, when any job asked for signals.
    fn render_signals(&self, o: &mut String) -> std::fmt::Result {
        if !self.signals.is_empty() {
            writeln!(o)?;
            writeln!(o, "Network signals                                  count")?;
            for (what, n) in &self.signals {
                writeln!(o, "  {what:<44} {n:>8}")?;
            }
        }
        Ok(())
    }

    /// Jobs by scenario: the outcome each must get, and how many got it.
    fn render_kinds(&self, o: &mut String) -> std::fmt::Result {
        writeln!(o)?;
        writeln!(
            o,
            "Jobs by scenario                   expected outcome                jobs  as expected"
        )?;
        for (kind, t) in &self.kinds {
            let e = kind.expected(0);
            let outcome = match e.result {
                Some(w) => outcome_name(w.status, w.class),
                None => "no result".to_owned(),
            };
            let dl = if e.dead_letter.is_some() {
                " + DLQ"
            } else {
                ""
            };
            writeln!(
                o,
                "  {:<33} {:<27} {:>8} {:>12}",
                kind.label(),
                format!("{}{dl}", short(&outcome)),
                t.jobs,
                t.ok
            )?;
        }
        Ok(())
    }

    /// Throughput, latency, HTTP counts and duplicates.
    fn render_measurements(&self, o: &mut String) -> std::fmt::Result {
        writeln!(o)?;
        writeln!(
            o,
            "Throughput    {} jobs in {:.2} s = {:.0} jobs/s (first job published -> last result read)",
            self.jobs,
            self.elapsed.as_secs_f64(),
            self.jobs_per_second
        )?;
        writeln!(
            o,
            "Publishing    {} records in {:.2} s",
            self.records_published,
            self.publish_time.as_secs_f64()
        )?;
        let w = self.worker_latency;
        let e = self.end_to_end_latency;
        writeln!(
            o,
            "Latency       worker (duration_ms): p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
            w.p50, w.p99, w.max
        )?;
        writeln!(
            o,
            "              end to end (publish -> result read, incl. queueing): p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
            e.p50, e.p99, e.max
        )?;
        let h = &self.http;
        writeln!(
            o,
            "HTTP          worker: {} requests, {} retries; simulator: {} token + {} userinfo + {} signals, {} faults injected, {} codes presented twice",
            h.worker_requests, h.worker_retries, h.token, h.userinfo, h.signals, h.faults_injected, h.codes_reused
        )?;
        if self.unplanned_retries > 0 {
            writeln!(
                o,
                "              {} job(s) needed more attempts than planned (timeouts or connection errors under load)",
                self.unplanned_retries
            )?;
        }
        writeln!(
            o,
            "Duplicates    {} result(s) answered from the idempotency cache",
            self.duplicates
        )?;
        writeln!(o)?;
        Ok(())
    }

    /// Timed out, OK, or the mismatches (the first [`MAX_LISTED`]).
    fn render_verdict(&self, o: &mut String) -> std::fmt::Result {
        if self.timed_out {
            writeln!(
                o,
                "TIMED OUT: {} of {} results and {} of {} dead letters arrived",
                self.results,
                self.expected_outcomes.values().sum::<u64>(),
                self.dead_letters,
                self.expected_dead_letters.values().sum::<u64>()
            )?;
        }
        if self.mismatches.is_empty() {
            if !self.timed_out {
                writeln!(
                    o,
                    "OK: all {} jobs ended as the contract prescribes ({} results, {} dead letters).",
                    self.jobs, self.results, self.dead_letters
                )?;
            }
        } else {
            writeln!(
                o,
                "FAILED: {} mismatch(es) between expected and actual outcomes:",
                self.mismatches.len()
            )?;
            for m in self.mismatches.iter().take(MAX_LISTED) {
                writeln!(o, "  - {m}")?;
            }
            if self.mismatches.len() > MAX_LISTED {
                writeln!(o, "  ... and {} more", self.mismatches.len() - MAX_LISTED)?;
            }
        }
        Ok(())
    }
}

/// `failed/upstream_unavailable` -> `upstream_unavailable`: the class says it all.
fn short(outcome: &str) -> &str {
    outcome.split_once('/').map_or(outcome, |(_, class)| class)
}
