//! The worker's shared state: which partitions it owns and what each has in flight (the offset
//! tracker and a cancellation token per assignment), the idempotency cache, the counters, and a
//! wake-up for every finished job. The run loop, the job tasks, the transaction committer and
//! the rebalance callbacks all hold it.
//!
//! [`Assignments`] is the pure bookkeeping: no I/O and no lock, so tests drive it directly.
//! [`WorkerState`] puts it behind a mutex next to the cache and the counters.

use crate::config::Config;
use crate::idempotency::IdempotencyCache;
use crate::kafka::offsets::OffsetTracker;
use crate::telemetry::counters::WorkerCounters;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// The partitions this instance owns: their offsets (per assignment epoch) and the tokens that
/// cancel the in-flight jobs of one partition's assignment.
#[derive(Debug, Default)]
pub struct Assignments {
    tracker: OffsetTracker,
    tokens: HashMap<i32, CancellationToken>,
    /// Parent of every partition token: cancelled to abandon everything at shutdown.
    abandon_all: CancellationToken,
}

/// What a revoke leaves behind.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Revoked {
    /// The commit position of each revoked partition that has one.
    pub positions: Vec<(i32, i64)>,
    /// Jobs still in flight on the revoked partitions: abandoned, the next owner redoes them.
    pub abandoned: u64,
}

impl Assignments {
    /// Starts a fresh assignment of each partition; the in-flight jobs of an assignment it
    /// replaces are cancelled.
    pub fn assign(&mut self, partitions: &[i32]) {
        for &p in partitions {
            self.tracker.assign(p);
            if let Some(old) = self.tokens.insert(p, self.abandon_all.child_token()) {
                old.cancel();
            }
        }
    }

    /// Ends the assignment of each partition and cancels its in-flight jobs.
    pub fn revoke(&mut self, partitions: &[i32]) -> Revoked {
        let mut revoked = Revoked::default();
        for &p in partitions {
            if let Some(offsets) = self.tracker.revoke(p) {
                revoked.abandoned += offsets.in_flight() as u64;
                if let Some(pos) = offsets.committable() {
                    revoked.positions.push((p, pos));
                }
            }
            if let Some(tok) = self.tokens.remove(&p) {
                tok.cancel();
            }
        }
        revoked
    }

    /// The epoch of `partition`'s current assignment; `None` when it is not ours.
    pub fn epoch(&self, partition: i32) -> Option<u64> {
        self.tracker.epoch(partition)
    }

    /// Registers `offset` of `partition` as in flight under `epoch`; returns the token that
    /// abandons its job, or `None` when that assignment is gone.
    pub fn start(&mut self, partition: i32, epoch: u64, offset: i64) -> Option<CancellationToken> {
        if !self.tracker.start(partition, epoch, offset) {
            return None;
        }
        Some(self.tokens.get(&partition).cloned().unwrap_or_default())
    }

    /// Records that `offset` finished; returns the new commit position when it moved forward.
    pub fn finish(&mut self, partition: i32, epoch: u64, offset: i64) -> Option<i64> {
        self.tracker.finish(partition, epoch, offset)
    }

    /// In-flight jobs of `partitions`.
    pub fn in_flight(&self, partitions: &[i32]) -> usize {
        partitions.iter().map(|&p| self.tracker.in_flight(p)).sum()
    }

    /// The commit position of every owned partition that has one.
    pub fn positions(&self) -> Vec<(i32, i64)> {
        self.tracker.positions()
    }

    /// The partitions owned now.
    pub fn owned(&self) -> Vec<i32> {
        self.tracker.partitions()
    }

    /// Cancels every partition's in-flight jobs, those of later assignments included.
    pub fn abandon_all(&self) {
        self.abandon_all.cancel();
    }
}

/// The state shared by the run loop, the job tasks, the committer and the rebalance callbacks.
#[derive(Debug)]
pub struct WorkerState {
    /// The jobs topic.
    pub jobs_topic: String,
    assignments: Mutex<Assignments>,
    /// The idempotency cache, warmed on every assignment.
    pub cache: IdempotencyCache,
    /// Counters.
    pub stats: Arc<WorkerCounters>,
    /// Woken whenever a job finishes.
    pub finished: Notify,
}

impl WorkerState {
    /// Owning nothing yet, with an empty idempotency cache sized by `config`.
    pub fn new(config: &Config, stats: Arc<WorkerCounters>) -> WorkerState {
        WorkerState {
            jobs_topic: config.topics.jobs.clone(),
            assignments: Mutex::new(Assignments::default()),
            cache: IdempotencyCache::with_gauge(
                config.worker.idempotency_cache_size,
                config.worker.idempotency_cache_bytes,
                stats.idempotency_cache_bytes.clone(),
            ),
            stats,
            finished: Notify::new(),
        }
    }

    /// The assignments, locked (a poisoned lock is taken over: the data stays consistent).
    pub fn assignments(&self) -> MutexGuard<'_, Assignments> {
        self.assignments.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// See [`Assignments::epoch`].
    pub fn epoch(&self, partition: i32) -> Option<u64> {
        self.assignments().epoch(partition)
    }

    /// See [`Assignments::start`].
    pub fn start(&self, partition: i32, epoch: u64, offset: i64) -> Option<CancellationToken> {
        self.assignments().start(partition, epoch, offset)
    }

    /// See [`Assignments::finish`].
    pub fn finish(&self, partition: i32, epoch: u64, offset: i64) -> Option<i64> {
        self.assignments().finish(partition, epoch, offset)
    }

    /// Finishes a batch of `(partition, epoch, offset)` jobs under one lock; returns their
    /// partitions.
    pub fn finish_all(&self, jobs: impl IntoIterator<Item = (i32, u64, i64)>) -> BTreeSet<i32> {
        let mut a = self.assignments();
        let mut partitions = BTreeSet::new();
        for (partition, epoch, offset) in jobs {
            a.finish(partition, epoch, offset);
            partitions.insert(partition);
        }
        partitions
    }

    /// The commit positions of those of `partitions` that have one.
    pub fn positions_of(&self, partitions: &BTreeSet<i32>) -> Vec<(i32, i64)> {
        let mut positions = self.assignments().positions();
        positions.retain(|(p, _)| partitions.contains(p));
        positions
    }

    /// See [`Assignments::positions`].
    pub fn positions(&self) -> Vec<(i32, i64)> {
        self.assignments().positions()
    }

    /// See [`Assignments::owned`].
    pub fn owned(&self) -> Vec<i32> {
        self.assignments().owned()
    }

    /// See [`Assignments::abandon_all`].
    pub fn abandon_all(&self) {
        self.assignments().abandon_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_revoke_returns_positions_counts_abandoned_jobs_and_cancels_them() {
        let mut a = Assignments::default();
        a.assign(&[0, 1]);
        let e0 = a.epoch(0).unwrap();
        let t10 = a.start(0, e0, 10).unwrap();
        let t11 = a.start(0, e0, 11).unwrap();
        assert_eq!(a.finish(0, e0, 10), Some(11));
        assert_eq!(a.in_flight(&[0, 1]), 1);
        let revoked = a.revoke(&[0]);
        assert_eq!(
            revoked,
            Revoked {
                positions: vec![(0, 11)],
                abandoned: 1
            }
        );
        assert!(t10.is_cancelled() && t11.is_cancelled());
        assert_eq!(a.owned(), vec![1]);
        assert_eq!(a.start(0, e0, 12), None, "revoked: nothing starts");
    }

    #[test]
    fn a_new_assignment_cancels_the_old_one_and_fences_its_epoch() {
        let mut a = Assignments::default();
        a.assign(&[3]);
        let old = a.epoch(3).unwrap();
        let token = a.start(3, old, 5).unwrap();
        a.assign(&[3]);
        assert!(token.is_cancelled());
        assert_eq!(a.finish(3, old, 5), None, "a stale epoch stores nothing");
        let new = a.epoch(3).unwrap();
        assert!(!a.start(3, new, 5).unwrap().is_cancelled());
    }

    #[test]
    fn abandon_all_reaches_every_partition() {
        let mut a = Assignments::default();
        a.assign(&[0]);
        let t0 = a.start(0, a.epoch(0).unwrap(), 1).unwrap();
        a.abandon_all();
        a.assign(&[1]);
        let t1 = a.start(1, a.epoch(1).unwrap(), 1).unwrap();
        assert!(t0.is_cancelled() && t1.is_cancelled());
    }

    #[test]
    fn the_holder_finishes_batches_and_filters_positions() {
        let state = WorkerState::new(&Config::default(), Arc::new(WorkerCounters::default()));
        state.assignments().assign(&[0, 1, 2]);
        let e: Vec<u64> = (0..3).map(|p| state.epoch(p).unwrap()).collect();
        for p in 0..3 {
            state.start(p, e[p as usize], 7).unwrap();
        }
        let parts = state.finish_all([(0, e[0], 7), (2, e[2], 7)]);
        assert_eq!(parts, BTreeSet::from([0, 2]));
        let mut positions = state.positions_of(&parts);
        positions.sort();
        assert_eq!(positions, vec![(0, 8), (2, 8)]);
        assert_eq!(
            state.positions().len(),
            3,
            "partition 1 sits at its in-flight offset"
        );
    }
}
