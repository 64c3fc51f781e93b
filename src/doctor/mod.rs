//! `silentauth-worker doctor`: checks a configuration against the real Kafka cluster and the
//! real APIs, one line per check with what to do when it fails, and exits 0 only when every
//! check passes. Kafka (brokers with the configured TLS/SASL, topics, the ACLs the worker needs,
//! their retention, the consumer group) is in [`kafka`], risky security settings in
//! [`security`]; the API credentials of every client profile and Network
//! Signals are in [`api`]. No code is spent and no secret is printed.

mod api;
mod capture;
mod check;
mod kafka;
mod retention;
mod security;

use crate::config::Config;
pub use check::{Check, Grade};
use serde::Serialize;

/// Every check of one run, in order.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// True when no check failed or was skipped.
    pub ok: bool,
    /// The checks.
    pub checks: Vec<Check>,
}

impl Report {
    fn new(checks: Vec<Check>) -> Report {
        let ok = checks
            .iter()
            .all(|c| matches!(c.status, Grade::Pass | Grade::Warn));
        Report { ok, checks }
    }

    /// The process exit code: 0 when every check passed (warnings allowed), 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        if self.ok {
            0
        } else {
            1
        }
    }

    /// One line per check (`PASS  check  detail`, then `-> fix` when there is one), and a
    /// summary line.
    pub fn render_text(&self) -> String {
        let width = self.checks.iter().map(|c| c.check.len()).max().unwrap_or(0);
        let mut out = String::new();
        for c in &self.checks {
            out.push_str(&format!(
                "{}  {:width$}  {}",
                c.status.label(),
                c.check,
                c.detail
            ));
            if let Some(fix) = &c.fix {
                out.push_str(&format!(" -> {fix}"));
            }
            out.push('\n');
        }
        let count = |s: Grade| self.checks.iter().filter(|c| c.status == s).count();
        out.push_str(&format!(
            "{}: {} passed, {} warnings, {} failed, {} skipped\n",
            if self.ok { "ok" } else { "NOT OK" },
            count(Grade::Pass),
            count(Grade::Warn),
            count(Grade::Fail),
            count(Grade::Skip),
        ));
        out
    }

    /// The report as one JSON object (`{"ok": …, "checks": [...]}`) and a newline.
    pub fn render_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("a report always serializes");
        s.push('\n');
        s
    }
}

/// Runs every check for `config`: Kafka first (its security settings' warnings, then the
/// brokers, topics, ACLs, retention and group), then the APIs (which do not depend on Kafka).
pub async fn run(config: &Config) -> Report {
    let mut checks = security::warnings(config);
    checks.extend(kafka::checks(config).await);
    checks.extend(api::checks(config).await);
    Report::new(checks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_pass_and_failures_or_skips_do_not() {
        let ok = Report::new(vec![
            Check::pass("a", "fine"),
            Check::warn("b", "hm", "look"),
        ]);
        assert!(ok.ok);
        assert_eq!(ok.exit_code(), 0);
        for bad in [
            Check::fail("c", "broken", "fix it"),
            Check::skip("d", "c failed"),
        ] {
            let r = Report::new(vec![Check::pass("a", "fine"), bad]);
            assert!(!r.ok);
            assert_eq!(r.exit_code(), 1);
        }
    }

    #[test]
    fn text_has_one_line_per_check_with_its_fix() {
        let r = Report::new(vec![
            Check::pass("kafka.brokers", "1 broker answers"),
            Check::fail("topics.results", "topic 'x' does not exist", "create it"),
        ]);
        let text = r.render_text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert_eq!(lines[0], "PASS  kafka.brokers   1 broker answers");
        assert_eq!(
            lines[1],
            "FAIL  topics.results  topic 'x' does not exist -> create it"
        );
        assert_eq!(
            lines[2],
            "NOT OK: 1 passed, 0 warnings, 1 failed, 0 skipped"
        );
        let json: serde_json::Value = serde_json::from_str(&r.render_json()).unwrap();
        assert_eq!(json["ok"], false);
        assert_eq!(json["checks"][1]["status"], "fail");
        assert_eq!(json["checks"][1]["fix"], "create it");
        assert!(json["checks"][0].get("fix").is_none());
    }
}
