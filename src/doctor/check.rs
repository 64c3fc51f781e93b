//! One check of `doctor` and how it went.

use serde::Serialize;

/// How a check went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Grade {
    /// Fine.
    Pass,
    /// Worth a look, but the worker can run (does not fail `doctor`).
    Warn,
    /// The worker will not work as configured.
    Fail,
    /// Not run, because a check it depends on failed.
    Skip,
}

impl Grade {
    pub(super) fn label(self) -> &'static str {
        match self {
            Grade::Pass => "PASS",
            Grade::Warn => "WARN",
            Grade::Fail => "FAIL",
            Grade::Skip => "SKIP",
        }
    }
}

/// One check's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// What was checked, usually the configuration key (e.g. `topics.results`).
    pub check: String,
    /// How it went.
    pub status: Grade,
    /// What was found (never a secret).
    pub detail: String,
    /// What to do about it (absent when it passed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    pub(super) fn pass(check: impl Into<String>, detail: impl Into<String>) -> Check {
        Check {
            check: check.into(),
            status: Grade::Pass,
            detail: detail.into(),
            fix: None,
        }
    }

    pub(super) fn fail(
        check: impl Into<String>,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Check {
        Check {
            check: check.into(),
            status: Grade::Fail,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }

    pub(super) fn warn(
        check: impl Into<String>,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Check {
        Check {
            status: Grade::Warn,
            ..Check::fail(check, detail, fix)
        }
    }

    pub(super) fn skip(check: impl Into<String>, because: &str) -> Check {
        Check {
            check: check.into(),
            status: Grade::Skip,
            detail: format!("not checked: {because}"),
            fix: None,
        }
    }
}
