//! The worker's shared state: which partitions it owns and what each has in flight (the offset
//! tracker and a cancellation token per assignment), the idempotency cache, the counters, and a
//! wake-up for every finished job. The run loop, the job tasks, the transaction committer and
//! the rebalance callbacks all hold it.
//!
//! [`Assignments`] is the pure bookkeeping: no I/O and no lock, so tests drive it directly.
//! [`WorkerState`] puts it behind a mutex next to the cache and the counters.

use crate::config::Config;
use crate::idempotency::IdempotencyCache;
use crate::kafka::consumer::store_offset;
use crate::kafka::offsets::{OffsetTracker, Ticket};
use crate::telemetry::counters::WorkerCounters;
use rdkafka::consumer::{Consumer, ConsumerContext};
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// How long a revoke or a stop waits, after letting jobs go, for those whose code was
/// presented to publish their `interrupted` result (the others stop at once).
pub const LET_GO_LIMIT: Duration = Duration::from_secs(10);

/// The partitions this instance owns: their offsets (per assignment epoch), the tokens that
/// let go of the in-flight jobs of one partition's assignment, and how many of its job tasks
/// are still alive.
#[derive(Debug, Default)]
pub struct Assignments {
    tracker: OffsetTracker,
    tokens: HashMap<i32, Assignment>,
    /// Parent of every partition token: cancelled to let go of everything at shutdown.
    abandon_all: CancellationToken,
}

/// One partition's current assignment: the token its jobs are let go with, and a count of its
/// live job tasks (every task holds a clone of `live`).
#[derive(Debug, Default)]
struct Assignment {
    token: CancellationToken,
    live: Arc<()>,
}

/// What a started job holds: the token that tells it to let go, and its place among its
/// partition's live tasks (until dropped).
#[derive(Debug, Clone, Default)]
pub struct JobHold {
    /// Cancelled when the job must be let go (revoke, shutdown).
    pub token: CancellationToken,
    _live: Arc<()>,
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
            let fresh = Assignment {
                token: self.abandon_all.child_token(),
                live: Arc::default(),
            };
            if let Some(old) = self.tokens.insert(p, fresh) {
                old.token.cancel();
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
            if let Some(a) = self.tokens.remove(&p) {
                a.token.cancel();
            }
        }
        revoked
    }

    /// Tells the in-flight jobs of `partitions` to let go (a job whose code was presented
    /// concludes itself `interrupted` and finishes its offset; the others stop unpublished),
    /// keeping the assignments so those conclusions can still be finished and committed.
    pub fn let_go(&self, partitions: &[i32]) {
        for p in partitions {
            if let Some(a) = self.tokens.get(p) {
                a.token.cancel();
            }
        }
    }

    /// Job tasks of `partitions` still alive (those let go included, until they end).
    pub fn live(&self, partitions: &[i32]) -> usize {
        partitions
            .iter()
            .filter_map(|p| self.tokens.get(p))
            .map(|a| Arc::strong_count(&a.live) - 1)
            .sum()
    }

    /// The ticket of `offset` of `partition` under its current assignment; `None` when the
    /// partition is not ours.
    pub fn ticket(&self, partition: i32, offset: i64) -> Option<Ticket> {
        let epoch = self.tracker.epoch(partition)?;
        Some(Ticket {
            partition,
            epoch,
            offset,
        })
    }

    /// Registers `ticket`'s offset as in flight; returns what its job holds (the token that
    /// lets it go), or `None` when its assignment is gone.
    pub fn start(&mut self, ticket: Ticket) -> Option<JobHold> {
        if !self.tracker.start(ticket) {
            return None;
        }
        Some(
            self.tokens
                .get(&ticket.partition)
                .map(|a| JobHold {
                    token: a.token.clone(),
                    _live: a.live.clone(),
                })
                .unwrap_or_default(),
        )
    }

    /// Records that `ticket`'s offset finished; returns the new commit position when it moved
    /// forward.
    pub fn finish(&mut self, ticket: Ticket) -> Option<i64> {
        self.tracker.finish(ticket)
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
    pub counters: Arc<WorkerCounters>,
    /// Woken whenever a job finishes.
    pub finished: Notify,
    /// Set once the worker stops: a job let go from now on was let go by the shutdown.
    pub stopping: AtomicBool,
    /// Stops the run loop when the worker cannot go on safely (see [`WorkerState::halt`]).
    stop: CancellationToken,
    /// Why it halted.
    halted: Mutex<Option<String>>,
}

impl WorkerState {
    /// Owning nothing yet, with an empty idempotency cache sized by `config`; [`halt`] cancels
    /// `stop`.
    ///
    /// [`halt`]: WorkerState::halt
    pub fn with_stop(
        config: &Config,
        counters: Arc<WorkerCounters>,
        stop: CancellationToken,
    ) -> WorkerState {
        WorkerState {
            stop,
            ..WorkerState::new(config, counters)
        }
    }

    /// Stops the worker with a configuration error (exit 2): it cannot go on without presenting
    /// codes again (the redelivery index cannot hold what the assigned partitions can
    /// redeliver).
    pub fn halt(&self, why: String) {
        tracing::error!("{why}");
        self.halted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert(why);
        self.stop.cancel();
    }

    /// Why the worker halted, if it did.
    pub fn halted(&self) -> Option<String> {
        self.halted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Owning nothing yet, with an empty idempotency cache sized by `config`.
    pub fn new(config: &Config, counters: Arc<WorkerCounters>) -> WorkerState {
        WorkerState {
            jobs_topic: config.topics.jobs.clone(),
            assignments: Mutex::new(Assignments::default()),
            cache: IdempotencyCache::with_gauge(
                config.worker.idempotency_cache_size,
                config.worker.idempotency_cache_bytes,
                counters.idempotency_cache_bytes.clone(),
                (config.worker.idempotency_index_size, config.worker.code_ttl),
            ),
            counters,
            finished: Notify::new(),
            stopping: AtomicBool::new(false),
            stop: CancellationToken::new(),
            halted: Mutex::new(None),
        }
    }

    /// The assignments, locked (a poisoned lock is taken over: the data stays consistent).
    pub fn assignments(&self) -> MutexGuard<'_, Assignments> {
        self.assignments.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// See [`Assignments::ticket`].
    pub fn ticket(&self, partition: i32, offset: i64) -> Option<Ticket> {
        self.assignments().ticket(partition, offset)
    }

    /// See [`Assignments::start`].
    pub fn start(&self, ticket: Ticket) -> Option<JobHold> {
        self.assignments().start(ticket)
    }

    /// Finishes `ticket`'s offset and, when its partition's commit position moved forward,
    /// stores that position with `consumer` (committed with its next commit: at-least-once).
    pub fn finish<C: ConsumerContext>(&self, ticket: Ticket, consumer: &impl Consumer<C>) {
        let position = self.assignments().finish(ticket);
        if let Some(position) = position {
            store_offset(consumer, &self.jobs_topic, ticket.partition, position);
        }
    }

    /// Finishes a batch of tickets under one lock (their positions go with a transaction, not
    /// the offset store); returns their partitions.
    pub fn finish_all(&self, tickets: impl IntoIterator<Item = Ticket>) -> BTreeSet<i32> {
        let mut a = self.assignments();
        let mut partitions = BTreeSet::new();
        for ticket in tickets {
            a.finish(ticket);
            partitions.insert(ticket.partition);
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

    fn ticket(partition: i32, epoch: u64, offset: i64) -> Ticket {
        Ticket {
            partition,
            epoch,
            offset,
        }
    }

    #[test]
    fn a_revoke_returns_positions_counts_abandoned_jobs_and_cancels_them() {
        let mut a = Assignments::default();
        a.assign(&[0, 1]);
        let e0 = a.ticket(0, 0).unwrap().epoch;
        let t10 = a.start(ticket(0, e0, 10)).unwrap();
        let t11 = a.start(ticket(0, e0, 11)).unwrap();
        assert_eq!(a.finish(ticket(0, e0, 10)), Some(11));
        assert_eq!(a.in_flight(&[0, 1]), 1);
        let revoked = a.revoke(&[0]);
        assert_eq!(
            revoked,
            Revoked {
                positions: vec![(0, 11)],
                abandoned: 1
            }
        );
        assert!(t10.token.is_cancelled() && t11.token.is_cancelled());
        assert_eq!(a.owned(), vec![1]);
        assert!(
            a.start(ticket(0, e0, 12)).is_none(),
            "revoked: nothing starts"
        );
    }

    #[test]
    fn a_new_assignment_cancels_the_old_one_and_fences_its_epoch() {
        let mut a = Assignments::default();
        a.assign(&[3]);
        let old = a.ticket(3, 0).unwrap().epoch;
        let token = a.start(ticket(3, old, 5)).unwrap();
        a.assign(&[3]);
        assert!(token.token.is_cancelled());
        assert_eq!(
            a.finish(ticket(3, old, 5)),
            None,
            "a stale epoch stores nothing"
        );
        let new = a.ticket(3, 0).unwrap().epoch;
        assert!(!a.start(ticket(3, new, 5)).unwrap().token.is_cancelled());
    }

    #[test]
    fn abandon_all_reaches_every_partition() {
        let mut a = Assignments::default();
        a.assign(&[0]);
        let t0 = a.start(a.ticket(0, 1).unwrap()).unwrap();
        a.abandon_all();
        a.assign(&[1]);
        let t1 = a.start(a.ticket(1, 1).unwrap()).unwrap();
        assert!(t0.token.is_cancelled() && t1.token.is_cancelled());
    }

    #[test]
    fn letting_go_cancels_but_keeps_the_assignment_until_its_tasks_end() {
        let mut a = Assignments::default();
        a.assign(&[0, 1]);
        let (e0, e1) = (a.ticket(0, 0).unwrap().epoch, a.ticket(1, 0).unwrap().epoch);
        let j5 = a.start(ticket(0, e0, 5)).unwrap();
        let j6 = a.start(ticket(0, e0, 6)).unwrap();
        let other = a.start(ticket(1, e1, 1)).unwrap();
        assert_eq!(a.live(&[0]), 2);
        a.let_go(&[0]);
        assert!(j5.token.is_cancelled() && j6.token.is_cancelled());
        assert!(!other.token.is_cancelled(), "only the partitions let go");
        // A job that concluded itself still finishes its offset under the same epoch.
        assert_eq!(a.finish(ticket(0, e0, 5)), Some(6));
        drop(j5);
        assert_eq!(a.live(&[0]), 1, "a task counts until it ends");
        drop(j6);
        assert_eq!(a.live(&[0]), 0);
        assert_eq!(a.live(&[0, 1]), 1);
        let revoked = a.revoke(&[0]);
        assert_eq!(revoked.positions, vec![(0, 6)]);
        assert_eq!(revoked.abandoned, 1, "offset 6 was let go unfinished");
    }

    #[test]
    fn the_holder_finishes_batches_and_filters_positions() {
        let state = WorkerState::new(&Config::default(), Arc::new(WorkerCounters::default()));
        state.assignments().assign(&[0, 1, 2]);
        let e: Vec<u64> = (0..3).map(|p| state.ticket(p, 0).unwrap().epoch).collect();
        for p in 0..3 {
            state.start(ticket(p, e[p as usize], 7)).unwrap();
        }
        let parts = state.finish_all([ticket(0, e[0], 7), ticket(2, e[2], 7)]);
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
