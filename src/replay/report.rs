//! What a replay did, counted per dead-letter class, and the table `replay-dlq` prints.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Counters of one class (or of all of them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClassCounts {
    /// Dead letters read (inside the end offsets captured at start).
    pub read: u64,
    /// Read but outside `--class`/`--since`/`--until`; left where they are.
    pub skipped: u64,
    /// Inside the filters (re-published, parked or held back).
    pub selected: u64,
    /// Re-published to the target topic and acknowledged (in a dry run: would have been).
    pub republished: u64,
    /// Reached `--max-replays` and moved to `--park` (in a dry run: would have been).
    pub parked: u64,
    /// Reached `--max-replays` with no `--park`: counted and left in the dead-letter topic.
    pub held: u64,
    /// Their code is spent (`dlq.code_spent`, or a failure after the token call): never
    /// re-published; left in the dead-letter topic,
    /// or moved to `--park` when given (counted here, not under parked or held).
    pub code_spent: u64,
    /// Had missing or garbled `dlq.*` headers (replayed as if their count were 0).
    pub garbled: u64,
}

impl ClassCounts {
    fn add(&mut self, o: &ClassCounts) {
        self.read += o.read;
        self.skipped += o.skipped;
        self.selected += o.selected;
        self.republished += o.republished;
        self.parked += o.parked;
        self.held += o.held;
        self.code_spent += o.code_spent;
        self.garbled += o.garbled;
    }
}

/// The outcome of [`super::replay`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// Counters by class label: the class name, `(missing)` or `(unknown)`.
    pub by_class: BTreeMap<String, ClassCounts>,
    /// Nothing was published or committed.
    pub dry_run: bool,
    /// Stopped because `--limit` selected records were handled.
    pub limit_reached: bool,
    /// Stopped early by the cancellation token (e.g. Ctrl-C); what was acknowledged is committed.
    pub interrupted: bool,
    /// `--max-replays` of the run, for the table's footnote.
    pub max_replays: u32,
    /// Whether `--park` was given (where spent codes went), for the table's footnote.
    pub parking: bool,
}

impl ReplayReport {
    /// The sum over every class.
    pub fn totals(&self) -> ClassCounts {
        let mut t = ClassCounts::default();
        for c in self.by_class.values() {
            t.add(c);
        }
        t
    }

    /// The counters of `class` (zero when none was read).
    pub fn class(&self, class: &str) -> ClassCounts {
        self.by_class.get(class).copied().unwrap_or_default()
    }

    pub(crate) fn entry(&mut self, class: &str) -> &mut ClassCounts {
        self.by_class.entry(class.to_owned()).or_default()
    }

    /// A plain-text table, one row per class and a total, plus footnotes.
    pub fn render_table(&self) -> String {
        let mut out = self.rows();
        self.footnotes(&mut out);
        out
    }

    /// The table: a header, one row per class, a rule and the total; columns as wide as their
    /// widest cell, numbers right-aligned.
    fn rows(&self) -> String {
        let mut rows: Vec<[String; 9]> = vec![HEAD.map(str::to_owned)];
        rows.extend(self.by_class.iter().map(|(k, c)| row(k, c)));
        rows.push(row("total", &self.totals()));
        let widths: Vec<usize> = (0..HEAD.len())
            .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
            .collect();
        let mut out = String::new();
        for (n, r) in rows.iter().enumerate() {
            if n + 1 == rows.len() {
                let rule: usize = widths.iter().sum::<usize>() + 2 * (widths.len() - 1);
                let _ = writeln!(out, "{}", "-".repeat(rule));
            }
            let mut line = format!("{:<w$}", r[0], w = widths[0]);
            for (cell, w) in r.iter().zip(&widths).skip(1) {
                let _ = write!(line, "  {cell:>w$}");
            }
            let _ = writeln!(out, "{}", line.trim_end());
        }
        out
    }

    /// What the table's numbers mean for this run: dry run, held back, spent codes, garbled
    /// headers, and why it stopped early.
    fn footnotes(&self, out: &mut String) {
        let totals = self.totals();
        if self.dry_run {
            let _ = writeln!(
                out,
                "dry run: nothing was published or committed; re-published and parked show what a real run would do"
            );
        }
        if totals.held > 0 {
            let _ = writeln!(
                out,
                "{} dead letter(s) reached --max-replays {} and stay in the dead-letter topic; --park TOPIC moves them",
                totals.held, self.max_replays
            );
        }
        if totals.code_spent > 0 {
            let place = match self.parking {
                true => "were moved to --park",
                false => "stay in the dead-letter topic",
            };
            let _ = writeln!(
                out,
                "{} dead letter(s) have a spent code (dlq.code_spent, or a failure after the token call): their single-use code cannot be presented again, so they are never re-published (the user has to authenticate again); they {place}",
                totals.code_spent
            );
        }
        if totals.garbled > 0 {
            let _ = writeln!(
                out,
                "{} dead letter(s) had missing or garbled dlq.* headers (replayed with a count of 0)",
                totals.garbled
            );
        }
        if self.limit_reached {
            let _ = writeln!(out, "stopped at --limit; run again to continue");
        }
        if self.interrupted {
            let _ = writeln!(
                out,
                "interrupted: acknowledged records are committed; run again to continue"
            );
        }
    }
}

/// The table's columns.
const HEAD: [&str; 9] = [
    "class",
    "read",
    "skipped",
    "selected",
    "re-published",
    "parked",
    "held",
    "code spent",
    "garbled headers",
];

/// One row of the table: `name` and the counters, in [`HEAD`]'s order.
fn row(name: &str, c: &ClassCounts) -> [String; 9] {
    [
        name.to_owned(),
        c.read.to_string(),
        c.skipped.to_string(),
        c.selected.to_string(),
        c.republished.to_string(),
        c.parked.to_string(),
        c.held.to_string(),
        c.code_spent.to_string(),
        c.garbled.to_string(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_a_row_per_class_and_a_total() {
        let mut r = ReplayReport {
            max_replays: 3,
            ..ReplayReport::default()
        };
        *r.entry("upstream_unavailable") = ClassCounts {
            read: 12,
            selected: 12,
            republished: 11,
            held: 1,
            ..ClassCounts::default()
        };
        *r.entry("(missing)") = ClassCounts {
            read: 1,
            skipped: 1,
            garbled: 1,
            ..ClassCounts::default()
        };
        let t = r.render_table();
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("class") && lines[0].ends_with("garbled headers"));
        assert!(lines[1].starts_with("(missing)"));
        assert!(lines[2].starts_with("upstream_unavailable"));
        assert!(lines[3].starts_with("----"));
        let total: Vec<&str> = lines[4].split_whitespace().collect();
        assert_eq!(total, ["total", "13", "1", "12", "11", "0", "1", "0", "1"]);
        assert!(t.contains("reached --max-replays 3"));
        assert!(!t.contains("dlq.code_spent"));
        assert!(t.contains("garbled"));
        assert_eq!(r.totals().read, 13);
        assert_eq!(r.class("rate_limited"), ClassCounts::default());
    }

    #[test]
    fn spent_codes_have_their_own_column_and_footnote() {
        let mut r = ReplayReport::default();
        *r.entry("upstream_unavailable") = ClassCounts {
            read: 5,
            selected: 5,
            republished: 3,
            code_spent: 2,
            ..ClassCounts::default()
        };
        let t = r.render_table();
        let lines: Vec<&str> = t.lines().collect();
        assert!(
            lines[0].contains("held  code spent  garbled headers"),
            "{t}"
        );
        let total: Vec<&str> = lines[3].split_whitespace().collect();
        assert_eq!(total, ["total", "5", "0", "5", "3", "0", "0", "2", "0"]);
        assert!(t.contains("2 dead letter(s) have a spent code"), "{t}");
        assert!(t.contains("stay in the dead-letter topic"), "{t}");
        r.parking = true;
        assert!(r.render_table().contains("were moved to --park"));
    }
}
