//! The per-partition offset tracker: jobs finish in any order, and the offset stored for a
//! partition is always the lowest one not yet finished, so nothing unfinished is ever skipped.

use std::collections::{BTreeSet, HashMap};

/// One taken record's place in the tracker: its partition, the assignment epoch it was taken
/// under, and its offset. A job carries its ticket from [`OffsetTracker::start`] to
/// [`OffsetTracker::finish`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    /// The partition.
    pub partition: i32,
    /// The epoch of the partition's assignment the record was taken under.
    pub epoch: u64,
    /// The record's offset.
    pub offset: i64,
}

/// Offsets of one partition that were taken and are not finished yet.
#[derive(Debug, Default, Clone)]
pub struct PartitionOffsets {
    pending: BTreeSet<i64>,
    /// One past the highest offset taken: the commit position once nothing is pending.
    next: Option<i64>,
    /// The last position handed out by [`PartitionOffsets::finish`] (never goes back).
    stored: Option<i64>,
}

impl PartitionOffsets {
    /// Records that `offset` was taken for processing.
    pub fn start(&mut self, offset: i64) {
        if self.next.is_none() {
            // Nothing taken yet (only `start` sets `next`, and nothing is stored or pending
            // before it): the assignment's starting position, storing it again would change
            // nothing.
            self.stored = Some(offset);
        }
        self.pending.insert(offset);
        self.next = Some(self.next.map_or(offset + 1, |n| n.max(offset + 1)));
    }

    /// Records that `offset` finished; returns the new commit position (the offset to resume
    /// from) when it moved forward.
    pub fn finish(&mut self, offset: i64) -> Option<i64> {
        if !self.pending.remove(&offset) {
            return None;
        }
        let position = self.committable()?;
        if self.stored.is_some_and(|s| s >= position) {
            return None;
        }
        self.stored = Some(position);
        Some(position)
    }

    /// The position a commit may use now: the lowest pending offset, or one past the highest
    /// taken offset when nothing is pending.
    pub fn committable(&self) -> Option<i64> {
        self.pending.first().copied().or(self.next)
    }

    /// Offsets taken and not finished.
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }
}

/// The trackers of every assigned partition, keyed by partition number. Each assignment gets an
/// epoch, so a job that outlives its partition's revocation can never store an offset for the
/// next owner's assignment.
#[derive(Debug, Default)]
pub struct OffsetTracker {
    partitions: HashMap<i32, (u64, PartitionOffsets)>,
    epoch: u64,
}

impl OffsetTracker {
    /// Starts tracking `partition` for a new assignment; returns its epoch.
    pub fn assign(&mut self, partition: i32) -> u64 {
        self.epoch += 1;
        self.partitions
            .insert(partition, (self.epoch, PartitionOffsets::default()));
        self.epoch
    }

    /// Stops tracking `partition`; returns what was tracked.
    pub fn revoke(&mut self, partition: i32) -> Option<PartitionOffsets> {
        self.partitions.remove(&partition).map(|(_, p)| p)
    }

    /// The epoch of `partition`'s current assignment.
    pub fn epoch(&self, partition: i32) -> Option<u64> {
        self.partitions.get(&partition).map(|(e, _)| *e)
    }

    /// Records that `ticket`'s offset was taken; false if its assignment is gone.
    pub fn start(&mut self, ticket: Ticket) -> bool {
        match self.partitions.get_mut(&ticket.partition) {
            Some((e, p)) if *e == ticket.epoch => {
                p.start(ticket.offset);
                true
            }
            _ => false,
        }
    }

    /// Records that `ticket`'s offset finished; returns the new commit position of its
    /// partition when it moved forward (never under an epoch that is gone).
    pub fn finish(&mut self, ticket: Ticket) -> Option<i64> {
        match self.partitions.get_mut(&ticket.partition) {
            Some((e, p)) if *e == ticket.epoch => p.finish(ticket.offset),
            _ => None,
        }
    }

    /// In-flight jobs of `partition`.
    pub fn in_flight(&self, partition: i32) -> usize {
        self.partitions
            .get(&partition)
            .map_or(0, |(_, p)| p.in_flight())
    }

    /// The commit position of every tracked partition that has one.
    pub fn positions(&self) -> Vec<(i32, i64)> {
        self.partitions
            .iter()
            .filter_map(|(&part, (_, p))| p.committable().map(|o| (part, o)))
            .collect()
    }

    /// Partitions tracked now.
    pub fn partitions(&self) -> Vec<i32> {
        self.partitions.keys().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ticket(partition: i32, epoch: u64, offset: i64) -> Ticket {
        Ticket {
            partition,
            epoch,
            offset,
        }
    }

    #[test]
    fn stores_the_lowest_unfinished_offset() {
        let mut p = PartitionOffsets::default();
        for o in 10..15 {
            p.start(o);
        }
        assert_eq!(p.finish(12), None);
        assert_eq!(p.finish(11), None);
        assert_eq!(p.finish(10), Some(13));
        assert_eq!(p.finish(14), None);
        assert_eq!(p.finish(13), Some(15));
        assert_eq!(p.finish(13), None, "finishing twice changes nothing");
        assert_eq!(p.committable(), Some(15));
    }

    #[test]
    fn a_stale_epoch_cannot_store() {
        let mut t = OffsetTracker::default();
        let e1 = t.assign(0);
        assert!(t.start(ticket(0, e1, 5)));
        t.revoke(0);
        let e2 = t.assign(0);
        assert!(t.start(ticket(0, e2, 7)));
        assert_eq!(t.finish(ticket(0, e1, 5)), None);
        assert_eq!(t.finish(ticket(0, e2, 7)), Some(8));
        assert!(!t.start(ticket(3, e2, 1)), "unassigned partition");
    }

    #[test]
    fn a_redelivered_offset_belongs_to_the_new_assignment_only() {
        let mut t = OffsetTracker::default();
        let old = t.assign(0);
        assert!(t.start(ticket(0, old, 5)));
        t.revoke(0);
        let new = t.assign(0);
        // The next owner redelivers 5 and takes 6; the old job of offset 5 ends late.
        assert!(t.start(ticket(0, new, 5)));
        assert!(t.start(ticket(0, new, 6)));
        assert!(!t.start(ticket(0, old, 7)), "a stale epoch takes nothing");
        assert_eq!(t.in_flight(0), 2);
        assert_eq!(
            t.finish(ticket(0, old, 5)),
            None,
            "the old job stores nothing"
        );
        assert_eq!(t.in_flight(0), 2, "nor finishes the new one's offset");
        assert_eq!(t.finish(ticket(0, new, 6)), None);
        assert_eq!(t.finish(ticket(0, new, 5)), Some(7));
    }

    #[test]
    fn the_first_offset_taken_is_where_the_assignment_starts() {
        let mut p = PartitionOffsets::default();
        p.start(10);
        p.start(11);
        // The position is still 10, where consumption began: nothing new to store.
        assert_eq!(p.finish(11), None);
        assert_eq!(p.in_flight(), 1);
        assert_eq!(p.committable(), Some(10));
        assert_eq!(p.finish(10), Some(12));
        assert_eq!(p.in_flight(), 0);
    }

    #[test]
    fn a_single_offset_moves_the_position_one_past_it() {
        let mut p = PartitionOffsets::default();
        p.start(0);
        assert_eq!(p.committable(), Some(0));
        assert_eq!(p.finish(0), Some(1));
        assert_eq!(p.committable(), Some(1));
    }

    #[test]
    fn offsets_after_a_gap_move_the_stored_position_forward() {
        // Everything up to 10 finished; the next records are 12 and 13 (11 was never taken:
        // a transaction marker or a compacted record).
        let mut p = PartitionOffsets::default();
        p.start(10);
        assert_eq!(p.finish(10), Some(11));
        p.start(12);
        p.start(13);
        assert_eq!(p.committable(), Some(12));
        assert_eq!(
            p.finish(13),
            Some(12),
            "12 is the lowest unfinished, past 11"
        );
        assert_eq!(p.finish(12), Some(14));
    }

    #[test]
    fn an_offset_never_taken_stores_nothing() {
        let mut p = PartitionOffsets::default();
        assert_eq!(p.committable(), None);
        assert_eq!(p.finish(3), None);
        p.start(5);
        assert_eq!(p.finish(4), None);
        assert_eq!(p.finish(6), None);
        assert_eq!(p.in_flight(), 1);
    }

    #[test]
    fn the_tracker_reports_each_partition_apart() {
        let mut t = OffsetTracker::default();
        assert!(t.partitions().is_empty());
        assert!(t.positions().is_empty());
        let e0 = t.assign(0);
        let e2 = t.assign(2);
        assert_ne!(e0, e2, "each assignment has its own epoch");
        assert_eq!(t.epoch(0), Some(e0));
        assert_eq!(t.epoch(2), Some(e2));
        assert_eq!(t.epoch(1), None);
        let mut parts = t.partitions();
        parts.sort_unstable();
        assert_eq!(parts, [0, 2]);
        assert!(t.positions().is_empty(), "nothing taken yet");
        for o in [7, 8, 9] {
            assert!(t.start(ticket(2, e2, o)));
        }
        assert!(t.start(ticket(0, e0, 3)));
        assert_eq!(t.in_flight(2), 3);
        assert_eq!(t.in_flight(0), 1);
        assert_eq!(t.in_flight(5), 0);
        assert_eq!(t.finish(ticket(2, e2, 7)), Some(8));
        let mut positions = t.positions();
        positions.sort_unstable();
        assert_eq!(positions, [(0, 3), (2, 8)]);
        let revoked = t.revoke(2).expect("partition 2 was tracked");
        assert_eq!(revoked.in_flight(), 2);
        assert_eq!(revoked.committable(), Some(8));
        assert!(t.revoke(2).is_none());
        assert_eq!(t.epoch(2), None);
        assert_eq!(t.in_flight(2), 0);
        assert_eq!(
            t.finish(ticket(2, e2, 8)),
            None,
            "revoked: nothing to store"
        );
        assert_eq!(t.partitions(), [0]);
        // A later assignment of the same partition gets a newer epoch and starts afresh.
        let again = t.assign(2);
        assert!(again > e2);
        assert_eq!(t.in_flight(2), 0);
    }

    proptest! {
        /// No completion order ever stores a position past an unfinished offset, and once all
        /// are finished the position is one past the highest.
        #[test]
        fn never_past_an_unfinished_offset(
            base in 0i64..1_000_000,
            gaps in proptest::collection::vec(1i64..4, 1..200),
            order in any::<proptest::sample::Index>(),
            seed in any::<u64>(),
        ) {
            let mut offsets = Vec::new();
            let mut o = base;
            for g in gaps { offsets.push(o); o += g; }
            let mut p = PartitionOffsets::default();
            for &o in &offsets { p.start(o); }
            // A deterministic shuffle driven by the inputs.
            let mut shuffled = offsets.clone();
            let mut s = seed ^ order.index(offsets.len()) as u64;
            for i in (1..shuffled.len()).rev() {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                shuffled.swap(i, (s >> 33) as usize % (i + 1));
            }
            let mut unfinished: BTreeSet<i64> = offsets.iter().copied().collect();
            let mut last = None;
            for o in shuffled {
                unfinished.remove(&o);
                if let Some(pos) = p.finish(o) {
                    if let Some(&low) = unfinished.first() {
                        prop_assert!(pos <= low, "stored {pos} past unfinished {low}");
                    }
                    prop_assert!(last.is_none_or(|l| pos > l), "position went back");
                    last = Some(pos);
                }
            }
            prop_assert_eq!(last, Some(offsets.last().unwrap() + 1));
        }
    }
}
