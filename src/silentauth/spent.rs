//! Whether a job's single-use code is spent, shared by the verification that spends it and the
//! worker that publishes the job's result: the spent-code rule and the codes-at-risk gauge.
//!
//! A code is *spent* once a token call returned 2xx, or when the job finally failed after an
//! ambiguous token attempt (sent, no answer). From then on nothing may present it again, a failure
//! is final, and a crash before the result is acknowledged costs the user a login: the job is a
//! *code at risk* until every holder of its [`SpentCode`] is gone.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;

/// Why a code is spent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spent {
    /// A token call returned 2xx: the code was exchanged.
    Exchanged,
    /// The job finally failed after a token attempt that was sent and got no answer: the code
    /// may have been used, so it counts as spent.
    Ambiguous,
}

impl Spent {
    /// The sentence a failed result's description ends with.
    pub fn description(self) -> &'static str {
        match self {
            Spent::Exchanged => {
                "the authorization code was exchanged and cannot be presented again: the user has to authenticate again"
            }
            Spent::Ambiguous => {
                "the authorization code may have been used by an attempt that got no answer and cannot be presented again: the user has to authenticate again"
            }
        }
    }
}

const NOT_SPENT: u8 = 0;
const AMBIGUOUS: u8 = 1;
const EXCHANGED: u8 = 2;

#[derive(Debug, Default)]
struct Inner {
    state: AtomicU8,
    /// Token requests sent with the code (answered or not).
    presented: AtomicU32,
    /// A presentation-ledger record of the code was started: it may exist.
    recorded: AtomicBool,
    /// Counts the spent codes whose holders are still alive (the worker's gauge).
    at_risk: Option<Arc<AtomicU64>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let (Some(g), true) = (&self.at_risk, *self.state.get_mut() != NOT_SPENT) {
            g.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// The spent-code state of one job. Clones share it: the verifier marks it, the worker reads it
/// and keeps a clone until the job's result is acknowledged. With [`SpentCode::counted`], the
/// job adds one to a gauge from the moment its code is spent until the last clone is dropped.
#[derive(Debug, Clone, Default)]
pub struct SpentCode(Arc<Inner>);

impl SpentCode {
    /// A state that counts toward no gauge (tests, tools).
    pub fn new() -> SpentCode {
        SpentCode::default()
    }

    /// A state that adds one to `at_risk` while its code is spent and a clone is alive.
    pub fn counted(at_risk: Arc<AtomicU64>) -> SpentCode {
        SpentCode(Arc::new(Inner {
            state: AtomicU8::new(NOT_SPENT),
            presented: AtomicU32::new(0),
            recorded: AtomicBool::new(false),
            at_risk: Some(at_risk),
        }))
    }

    /// Records that a token request carrying the code is about to leave: from now on the code
    /// may be used, whatever the answer, so a job that is let go before its answer is known
    /// ends `interrupted` instead of being handed over (contract A2).
    pub fn presented(&self) {
        self.0.presented.fetch_add(1, Ordering::AcqRel);
    }

    /// How many token requests carried the code.
    pub fn presentations(&self) -> u32 {
        self.0.presented.load(Ordering::Acquire)
    }

    /// Records that a presentation-ledger record of the code is being written: once it may
    /// exist, the next owner of a job let go here would conclude it presented, so this owner
    /// concludes it too (see [`SpentCode::may_be_presented`]).
    pub fn recording(&self) {
        self.0.recorded.store(true, Ordering::Release);
    }

    /// Whether the code may have been presented, as a job let go must assume: a token request
    /// left, or a ledger record saying one would may exist.
    pub fn may_be_presented(&self) -> bool {
        self.presentations() > 0 || self.0.recorded.load(Ordering::Acquire)
    }

    /// Records that a token call returned 2xx.
    pub fn exchanged(&self) {
        self.mark(EXCHANGED);
    }

    /// Records that the job finally failed after an ambiguous token attempt.
    pub fn ambiguous(&self) {
        self.mark(AMBIGUOUS);
    }

    fn mark(&self, to: u8) {
        let before = self.0.state.fetch_max(to, Ordering::AcqRel);
        if before == NOT_SPENT {
            if let Some(g) = &self.0.at_risk {
                g.fetch_add(1, Ordering::AcqRel);
            }
        }
    }

    /// Whether, and why, the code is spent.
    pub fn get(&self) -> Option<Spent> {
        match self.0.state.load(Ordering::Acquire) {
            EXCHANGED => Some(Spent::Exchanged),
            AMBIGUOUS => Some(Spent::Ambiguous),
            _ => None,
        }
    }

    /// True once the code is spent.
    pub fn is_spent(&self) -> bool {
        self.get().is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_once_and_counts_until_the_last_holder_is_gone() {
        let gauge = Arc::new(AtomicU64::new(0));
        let worker = SpentCode::counted(gauge.clone());
        let verifier = worker.clone();
        assert_eq!(worker.get(), None);
        verifier.ambiguous();
        assert_eq!(gauge.load(Ordering::Relaxed), 1);
        verifier.exchanged();
        verifier.ambiguous();
        assert_eq!(
            worker.get(),
            Some(Spent::Exchanged),
            "the stronger reason wins"
        );
        assert_eq!(gauge.load(Ordering::Relaxed), 1, "counted once");
        drop(verifier);
        assert_eq!(
            gauge.load(Ordering::Relaxed),
            1,
            "the worker still holds it"
        );
        drop(worker);
        assert_eq!(gauge.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn presentations_are_counted_without_spending_the_code() {
        let gauge = Arc::new(AtomicU64::new(0));
        let code = SpentCode::counted(gauge.clone());
        assert_eq!(code.presentations(), 0);
        code.clone().presented();
        code.presented();
        assert_eq!(code.presentations(), 2, "clones share the count");
        assert!(!code.is_spent(), "a request sent is not an answer");
        assert_eq!(gauge.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn each_reason_has_its_own_sentence() {
        let exchanged = Spent::Exchanged.description();
        let ambiguous = Spent::Ambiguous.description();
        assert!(exchanged.contains("was exchanged"), "{exchanged}");
        assert!(ambiguous.contains("may have been used"), "{ambiguous}");
        for d in [exchanged, ambiguous] {
            assert!(d.ends_with("the user has to authenticate again"), "{d}");
        }
    }

    #[test]
    fn an_ambiguous_attempt_alone_is_spent_and_counted_once() {
        let gauge = Arc::new(AtomicU64::new(0));
        let code = SpentCode::counted(gauge.clone());
        code.ambiguous();
        code.ambiguous();
        assert_eq!(code.get(), Some(Spent::Ambiguous));
        assert!(code.is_spent());
        assert_eq!(gauge.load(Ordering::Relaxed), 1);
        let other = SpentCode::counted(gauge.clone());
        other.exchanged();
        assert_eq!(other.get(), Some(Spent::Exchanged));
        assert_eq!(gauge.load(Ordering::Relaxed), 2, "one a spent code");
        drop(code);
        assert_eq!(gauge.load(Ordering::Relaxed), 1);
        drop(other);
        assert_eq!(gauge.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn an_unspent_code_never_counts() {
        let gauge = Arc::new(AtomicU64::new(0));
        drop(SpentCode::counted(gauge.clone()));
        assert_eq!(gauge.load(Ordering::Relaxed), 0);
        let plain = SpentCode::new();
        plain.exchanged();
        assert!(plain.is_spent());
    }

    #[test]
    fn a_ledger_record_under_way_counts_as_a_possible_presentation() {
        let code = SpentCode::new();
        assert!(!code.may_be_presented());
        code.clone().recording();
        assert!(code.may_be_presented(), "a record may exist");
        assert_eq!(code.presentations(), 0, "no request left");
        let sent = SpentCode::new();
        sent.presented();
        assert!(sent.may_be_presented());
        assert!(!sent.is_spent());
    }
}
