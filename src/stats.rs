//! Counters the worker keeps while it runs: what `demo` summarises and `/metrics` will export.

use crate::contract::{ErrorClass, Status};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

/// Live counters, shared by every task of a run.
#[derive(Debug, Default)]
pub struct Stats {
    /// Jobs taken from the jobs topic.
    pub consumed: AtomicU64,
    /// Results published.
    pub results: AtomicU64,
    /// Dead letters published.
    pub dead_letters: AtomicU64,
    /// Results republished from the idempotency cache.
    pub duplicates: AtomicU64,
    /// Jobs given up on a revoke or at shutdown (the next owner redoes them).
    pub abandoned: AtomicU64,
    /// HTTP requests sent.
    pub http_requests: AtomicU64,
    /// HTTP retries.
    pub retries: AtomicU64,
    /// Failed produce attempts (retried).
    pub produce_errors: AtomicU64,
    /// Offset commits that succeeded.
    pub commits: AtomicU64,
    /// Jobs in flight now.
    pub in_flight: AtomicU64,
    /// True while the partitions are paused because the in-flight window stayed full.
    pub paused: AtomicBool,
    /// True while partitions are assigned.
    pub assigned: AtomicBool,
    /// False while results cannot be produced.
    pub producer_ok: AtomicBool,
    by_outcome: Mutex<BTreeMap<(Status, Option<ErrorClass>), u64>>,
    dead_letters_by_class: Mutex<BTreeMap<ErrorClass, u64>>,
}

impl Stats {
    /// Counts one published result.
    pub fn result(&self, status: Status, class: Option<ErrorClass>) {
        self.results.fetch_add(1, Ordering::Relaxed);
        *self
            .by_outcome
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((status, class))
            .or_default() += 1;
    }

    /// Counts one published dead letter.
    pub fn dead_letter(&self, class: ErrorClass) {
        self.dead_letters.fetch_add(1, Ordering::Relaxed);
        *self
            .dead_letters_by_class
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(class)
            .or_default() += 1;
    }

    /// Results by (status, class).
    pub fn outcomes(&self) -> BTreeMap<(Status, Option<ErrorClass>), u64> {
        self.by_outcome
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Dead letters by class.
    pub fn dead_letters_by_class(&self) -> BTreeMap<ErrorClass, u64> {
        self.dead_letters_by_class
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Reads a counter.
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }

    /// True when the worker can take and publish jobs (`/readyz`).
    pub fn ready(&self) -> bool {
        self.assigned.load(Ordering::Relaxed) && self.producer_ok.load(Ordering::Relaxed)
    }
}
