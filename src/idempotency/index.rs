//! The redelivery index: where the result of every job seen within `worker.code_ttl` lies in the
//! results topic, in 32 bytes a job (plus the hash table's slack: 37 to 75 bytes all told), so a
//! job that comes again within the code's lifetime — redelivered after a crash, a rebalance,
//! lagging commits or an offset reset, or re-published upstream — is answered with its earlier
//! result (read back from the topic) however many results came since (contract A2).
//!
//! A job is keyed by a 64-bit hash of its `job_id`; the result read back is checked against the
//! `job_id` itself, so a collision (about one in 10^7 among a million jobs) can only miss.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::time::Duration;

/// The hash a job is indexed by.
pub fn job_key(job_id: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    job_id.hash(&mut h);
    h.finish()
}

/// A hasher for keys that are hashes already. Its output only spreads the table's buckets:
/// any hash, a constant included, gives the same answers (only slower), so mutants of these
/// three methods are equivalent and no test can catch them.
#[derive(Debug, Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// Where a result lies in the results topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Stored {
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
}

/// What the index knows of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Indexed {
    /// The fingerprint of its code and number; `None` for a result published without one
    /// (before fingerprints were written).
    pub fingerprint: Option<u64>,
    /// The `replay_count` its result answers.
    pub replay_count: u32,
    /// Where its result lies; `None` when only its presentation was recorded (the ledger) and
    /// no result was seen.
    pub stored: Option<Stored>,
}

/// The partition an entry holds for a presentation without a result.
const PRESENTED: u16 = u16::MAX;

/// One job: 24 bytes, beside its 8-byte key.
#[derive(Debug, Clone, Copy)]
struct Entry {
    fingerprint: u64,
    offset: i64,
    /// When it was seen (Unix seconds).
    seen_s: u32,
    partition: u16,
    replay_count: u16,
}

/// The index was full of jobs still inside `worker.code_ttl`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full {
    /// Its bound.
    pub max_entries: usize,
}

/// `job_key` → where the result lies, for every job seen within the TTL, up to `max_entries`.
#[derive(Debug)]
pub struct ResultIndex {
    map: HashMap<u64, Entry, BuildHasherDefault<Prehashed>>,
    max_entries: usize,
    ttl_s: u32,
    last_sweep_s: u32,
}

/// Unix seconds of `ms`, clamped to what an entry holds. (`ms < 0` is read only when the
/// conversion failed, so never at 0: `<=` there is an equivalent mutant.)
fn seconds(ms: i64) -> u32 {
    u32::try_from(ms.div_euclid(1000)).unwrap_or(if ms < 0 { 0 } else { u32::MAX })
}

impl ResultIndex {
    /// An empty index of up to `max_entries` jobs (at least 1), each kept for `ttl` after it was
    /// seen.
    pub fn new(max_entries: usize, ttl: Duration) -> ResultIndex {
        ResultIndex {
            map: HashMap::default(),
            max_entries: max_entries.max(1),
            ttl_s: u32::try_from(ttl.as_secs()).unwrap_or(u32::MAX),
            last_sweep_s: 0,
        }
    }

    /// Records that `job_id`'s result (answering `replay_count`, for the code and number whose
    /// fingerprint is `fingerprint`) lies at `stored`, seen at `seen_ms`. A result answering a
    /// lower `replay_count` than the one held never replaces it. Fails only when the index is
    /// full of jobs still inside the TTL at `now_ms`.
    pub fn insert(
        &mut self,
        job_id: &str,
        indexed: Indexed,
        seen_ms: i64,
        now_ms: i64,
    ) -> Result<(), Full> {
        let key = job_key(job_id);
        let (partition, offset) = match indexed.stored {
            Some(at) => (
                u16::try_from(at.partition).unwrap_or(PRESENTED - 1),
                at.offset,
            ),
            // The offset of a presentation is never read (`get` sees `PRESENTED`).
            None => (PRESENTED, -1),
        };
        let entry = Entry {
            fingerprint: indexed.fingerprint.unwrap_or(0),
            offset,
            seen_s: seconds(seen_ms),
            partition,
            replay_count: u16::try_from(indexed.replay_count).unwrap_or(u16::MAX),
        };
        if let Some(old) = self.map.get_mut(&key) {
            // A higher replay count wins; between equals a result wins over a presentation
            // (in whatever order a warm-up reads them), and the later result over the earlier.
            let newer = match (old.partition == PRESENTED, entry.partition == PRESENTED) {
                (false, true) => old.replay_count < entry.replay_count,
                _ => old.replay_count <= entry.replay_count,
            };
            if newer {
                *old = entry;
            }
            return Ok(());
        }
        if !self.has_room(0, now_ms) {
            return Err(Full {
                max_entries: self.max_entries,
            });
        }
        self.map.insert(key, entry);
        Ok(())
    }

    /// What the index holds for `job_id`.
    pub fn get(&self, job_id: &str) -> Option<Indexed> {
        self.map.get(&job_key(job_id)).map(|e| Indexed {
            fingerprint: (e.fingerprint != 0).then_some(e.fingerprint),
            replay_count: u32::from(e.replay_count),
            stored: (e.partition != PRESENTED).then_some(Stored {
                partition: i32::from(e.partition),
                offset: e.offset,
            }),
        })
    }

    /// Whether `more` jobs beyond those held fit, once the jobs past the TTL at `now_ms` are
    /// dropped (at most once a second).
    pub fn has_room(&mut self, more: usize, now_ms: i64) -> bool {
        if self.map.len() + more < self.max_entries {
            return true;
        }
        self.sweep(now_ms);
        self.map.len() + more < self.max_entries
    }

    /// Drops the jobs seen longer than the TTL before `now_ms` (at most once a second).
    pub fn sweep(&mut self, now_ms: i64) {
        let now = seconds(now_ms);
        if now == self.last_sweep_s {
            return;
        }
        self.last_sweep_s = now;
        let oldest = now.saturating_sub(self.ttl_s);
        self.map.retain(|_, e| e.seen_s >= oldest);
    }

    /// Jobs held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The bound.
    pub fn max_entries(&self) -> usize {
        self.max_entries
    }

    /// Bytes the table holds now (its buckets, each a key, an entry and a control byte). (The
    /// buckets are a power of two above the capacity, which is 7/8 of them, so
    /// `capacity + 8 / 7`, that is capacity + 1, in place of `capacity * 8 / 7` rounds to the
    /// same power: an equivalent mutant.)
    pub fn bytes(&self) -> usize {
        let bucket = std::mem::size_of::<(u64, Entry)>() + 1;
        let buckets = (self.map.capacity() * 8 / 7).next_power_of_two();
        buckets * bucket
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;
    const TTL: Duration = Duration::from_secs(600);

    fn at(partition: i32, offset: i64, replay_count: u32, fp: Option<u64>) -> Indexed {
        Indexed {
            fingerprint: fp,
            replay_count,
            stored: Some(Stored { partition, offset }),
        }
    }

    fn presented(replay_count: u32) -> Indexed {
        Indexed {
            fingerprint: Some(7),
            replay_count,
            stored: None,
        }
    }

    #[test]
    fn a_result_wins_over_a_presentation_of_the_same_delivery_in_either_order() {
        let mut i = ResultIndex::new(10, TTL);
        i.insert("a", presented(0), NOW, NOW).unwrap();
        assert_eq!(i.get("a"), Some(presented(0)));
        i.insert("a", at(1, 5, 0, Some(7)), NOW, NOW).unwrap();
        assert_eq!(i.get("a"), Some(at(1, 5, 0, Some(7))));
        i.insert("a", presented(0), NOW, NOW).unwrap();
        assert_eq!(
            i.get("a"),
            Some(at(1, 5, 0, Some(7))),
            "read after its result"
        );
        i.insert("a", presented(1), NOW, NOW).unwrap();
        assert_eq!(i.get("a"), Some(presented(1)), "a replay presented again");
    }

    #[test]
    fn an_entry_is_32_bytes_with_its_key() {
        assert_eq!(std::mem::size_of::<(u64, Entry)>(), 32);
    }

    #[test]
    fn holds_where_each_result_lies_and_a_lower_replay_never_replaces_it() {
        let mut i = ResultIndex::new(10, TTL);
        i.insert("a", at(2, 40, 1, Some(7)), NOW, NOW).unwrap();
        assert_eq!(i.get("a"), Some(at(2, 40, 1, Some(7))));
        i.insert("a", at(0, 3, 0, Some(7)), NOW, NOW).unwrap();
        assert_eq!(i.get("a"), Some(at(2, 40, 1, Some(7))), "replay 0 < 1");
        i.insert("a", at(1, 9, 1, Some(7)), NOW, NOW).unwrap();
        assert_eq!(
            i.get("a"),
            Some(at(1, 9, 1, Some(7))),
            "the later of equals"
        );
        i.insert("b", at(0, 1, 0, None), NOW, NOW).unwrap();
        assert_eq!(i.get("b").unwrap().fingerprint, None);
        assert_eq!(i.get("c"), None);
        assert_eq!(i.len(), 2);
    }

    #[test]
    fn full_of_live_jobs_it_refuses_and_forgets_only_what_the_ttl_let_go() {
        let mut i = ResultIndex::new(3, TTL);
        i.insert("old", at(0, 0, 0, None), NOW - 601_000, NOW)
            .unwrap();
        i.insert("a", at(0, 1, 0, None), NOW, NOW).unwrap();
        i.insert("b", at(0, 2, 0, None), NOW, NOW).unwrap();
        assert_eq!(i.len(), 3);
        // Full: the job past the TTL makes room, no other.
        i.insert("c", at(0, 3, 0, None), NOW, NOW).unwrap();
        assert_eq!(i.get("old"), None, "past the TTL: swept to make room");
        assert_eq!(
            i.insert("d", at(0, 4, 0, None), NOW, NOW + 1_000),
            Err(Full { max_entries: 3 }),
            "every job held is live"
        );
        assert!(
            i.get("a").is_some() && i.get("b").is_some(),
            "nothing live forgotten"
        );
        assert!(i.get("c").is_some());
        i.insert("a", at(0, 5, 0, None), NOW, NOW + 1_000).unwrap();
        assert_eq!(
            i.get("a").unwrap().stored.unwrap().offset,
            5,
            "a job held updates in place"
        );
        assert!(i.has_room(0, NOW + 601_000 + 1_000), "the TTL frees them");
        assert!(i.is_empty());
    }

    /// Resident memory of this process (bytes), from `/proc/self/statm`.
    fn resident() -> usize {
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
        let pages: usize = statm
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        pages * 4096
    }

    /// The memory a job costs in a full index, measured as resident memory: run with
    /// `cargo test --lib memory_per_job -- --ignored --nocapture`.
    #[test]
    #[ignore = "measures resident memory; run alone"]
    fn memory_per_job() {
        const N: usize = 1_000_000;
        let ids: Vec<String> = (0..N).map(|i| format!("job-{i}")).collect();
        let before = resident();
        let mut i = ResultIndex::new(N + 1, TTL);
        for (n, id) in ids.iter().enumerate() {
            i.insert(
                id,
                at(n as i32 % 12, n as i64, 0, Some(n as u64 + 1)),
                NOW,
                NOW,
            )
            .unwrap();
        }
        let used = resident().saturating_sub(before);
        eprintln!(
            "redelivery index: {N} jobs, {} MB resident, {:.1} bytes a job (table {} MB)",
            used / 1_000_000,
            used as f64 / N as f64,
            i.bytes() / 1_000_000
        );
        assert_eq!(i.len(), N);
        assert!(used / N <= 80, "{} bytes a job", used / N);
    }

    #[test]
    fn seconds_clamp_to_what_an_entry_holds() {
        assert_eq!(seconds(1_500), 1);
        assert_eq!(seconds(-5_000), 0);
        assert_eq!(seconds(i64::MAX), u32::MAX);
    }

    #[test]
    fn a_partition_past_what_an_entry_holds_is_still_a_result() {
        let mut i = ResultIndex::new(10, TTL);
        i.insert("a", at(70_000, 5, 0, Some(7)), NOW, NOW).unwrap();
        let got = i
            .get("a")
            .unwrap()
            .stored
            .expect("a result, not a presentation");
        assert_eq!(got.partition, i32::from(PRESENTED - 1));
        assert_eq!(got.offset, 5);
    }

    #[test]
    fn room_counts_the_jobs_to_come_and_the_bytes_count_the_buckets() {
        let mut i = ResultIndex::new(3, TTL);
        assert!(i.is_empty());
        assert_eq!(i.max_entries(), 3);
        i.insert("a", at(0, 1, 0, Some(7)), NOW, NOW).unwrap();
        assert!(!i.is_empty());
        assert!(i.has_room(1, NOW), "1 held + 1 to come < 3");
        assert!(!i.has_room(2, NOW), "1 held + 2 to come fill the bound");
        // std's table: 2,048 buckets for 1,000 keys (at most 7/8 full), each a key, an entry
        // and a control byte.
        let mut big = ResultIndex::new(10_000, TTL);
        for n in 0..1_000 {
            big.insert(&format!("job-{n}"), at(0, n, 0, Some(7)), NOW, NOW)
                .unwrap();
        }
        assert_eq!(big.bytes(), 2_048 * 33);
    }
}
