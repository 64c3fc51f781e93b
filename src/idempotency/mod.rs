//! The idempotency cache (docs/contract.md): `job_id` to its published result, so a redelivered job
//! is answered with its earlier result instead of spending its single-use code again. Jobs with
//! the same `job_id` in flight at once share one verification.
//!
//! Two tiers: the most recent results themselves, packed, in a least-recently-used cache bounded
//! in bytes (this instance's own answers and the newest of a warm-up), and the redelivery
//! [`index`] of where the result of every job seen within `worker.code_ttl` lies in the results
//! topic, read back on a hit that the first tier misses (contract A2). A job_id names one
//! verification: a job whose code or number differs from the one answered under its job_id (by
//! [`fingerprint`]) is told so instead of getting the earlier verdict.

use crate::contract::{Job, JobResult};
use lru::LruCache;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::OnceCell;

pub mod index;
mod packed;
use index::{Full, Indexed, ResultIndex, Stored};
use packed::{decode, encode};

/// The fingerprint of a job's code and number (SHA-256 over both, its first 8 bytes; never 0):
/// what tells a redelivery (the same code and number) from a job_id reused for another
/// verification, without keeping or publishing the code. The number is compared by its digits.
pub fn fingerprint(job: &Job) -> u64 {
    let mut h = Sha256::new();
    h.update(b"silentauth.fingerprint.v1\0");
    h.update(job.code.as_ref().map(|c| c.expose()).unwrap_or_default());
    h.update(b"\0");
    let digits: String = job
        .login_hint
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    h.update(digits.trim_start_matches("00"));
    let d = h.finalize();
    u64::from_be_bytes(d[..8].try_into().expect("8 bytes")).max(1)
}

/// A job as the cache tells it apart: its id, the delivery's `replay_count` and the
/// [`fingerprint`] of its code and number.
#[derive(Debug, Clone, Copy)]
pub struct JobKey<'a> {
    /// Its `job_id`.
    pub job_id: &'a str,
    /// From the `dlq.replay_count` header: a higher count than the answered one is a new attempt.
    pub replay_count: u32,
    /// See [`fingerprint`].
    pub fingerprint: u64,
}

/// How the cache answered a job.
#[derive(Debug)]
pub enum Answer {
    /// Verified here now.
    Verified(JobResult),
    /// Answered earlier: the earlier result (a redelivery or re-publication).
    Duplicate(JobResult),
    /// The job_id was answered for another code or number: not a redelivery.
    Reused,
    /// Answered earlier, but its result is no longer where the index says it lies (the results
    /// topic's retention removed it): its code was used, so nothing is presented again.
    Gone(Stored),
    /// Its code was recorded as presented (the ledger) and no result was seen: the instance
    /// that presented it stopped before publishing. It ends `interrupted`; nothing is
    /// presented again.
    Presented,
}

/// What the cache knows of a job before verifying it.
enum Seen {
    Result(Box<JobResult>),
    Stored(Stored),
    Presented,
    Reused,
    Unseen,
}

/// Bytes counted for one cached result on top of its key and its JSON: the LRU list node (key
/// and value headers, two links: 64 bytes), the allocator's header and rounding of its three
/// allocations (node, key, JSON: about 48 bytes) and its slot in the hash table (16 bytes at a
/// load factor between 7/16 and 7/8: up to 37 bytes), rounded up.
pub const ENTRY_OVERHEAD_BYTES: usize = 160;

/// Results by `job_id`, bounded by `worker.idempotency_cache_size` entries and by
/// `worker.idempotency_cache_bytes`: whichever bound is reached first evicts the least recently
/// used results. An entry counts its key, its packed JSON and [`ENTRY_OVERHEAD_BYTES`].
///
/// A result is kept as its JSON with its keys packed into single bytes ([`encode`]: about 300
/// bytes for a verified result, 500 as JSON) rather than as a [`JobResult`], whose strings and
/// attribute map take several small allocations (over 1 KB per result). Hits are rare
/// (redeliveries), so decoding on a hit costs nothing that matters.
#[derive(Debug)]
pub struct IdempotencyCache {
    done: Mutex<Lru>,
    index: Mutex<ResultIndex>,
    in_flight: Mutex<HashMap<String, Arc<OnceCell<JobResult>>>>,
    /// The bytes counted for the results held, shared with whoever reports them.
    bytes: Arc<AtomicU64>,
}

/// The results and their bounds.
#[derive(Debug)]
struct Lru {
    entries: LruCache<String, Cached>,
    max_entries: usize,
    max_bytes: usize,
    bytes: usize,
}

/// One remembered result: the `replay_count` it answers, the [`fingerprint`] of the job it
/// answers (0: unknown) and its [`encode`]d form.
#[derive(Debug)]
struct Cached {
    replay_count: u32,
    fingerprint: u64,
    packed: Box<[u8]>,
}

/// The bytes counted for a result under `key`.
fn entry_bytes(key: &str, cached: &Cached) -> usize {
    key.len() + cached.packed.len() + ENTRY_OVERHEAD_BYTES
}

impl Lru {
    /// Inserts or replaces `key`, then evicts the least recently used until both bounds hold
    /// (the new entry stays, even alone past `max_bytes`).
    fn put(&mut self, key: String, cached: Cached) {
        self.bytes += entry_bytes(&key, &cached);
        if let Some((old_key, old)) = self.entries.push(key, cached) {
            self.bytes -= entry_bytes(&old_key, &old);
        }
        while self.entries.len() > 1
            && (self.entries.len() > self.max_entries || self.bytes > self.max_bytes)
        {
            match self.entries.pop_lru() {
                Some((k, v)) => self.bytes -= entry_bytes(&k, &v),
                None => break,
            }
        }
    }
}

impl IdempotencyCache {
    /// A cache holding up to `max_entries` results and up to `max_bytes` bytes of them (each
    /// bound at least 1; at least one result is always kept), and an index of up to
    /// `index_entries` jobs seen within `code_ttl`.
    pub fn new(max_entries: usize, max_bytes: usize) -> Self {
        Self::with_gauge(
            max_entries,
            max_bytes,
            Arc::default(),
            (1_000_000, std::time::Duration::from_secs(600)),
        )
    }

    /// As [`IdempotencyCache::new`], keeping `bytes` equal to the bytes counted for the results
    /// held (the `silentauth_idempotency_cache_bytes` gauge); `index` is the index's bound and
    /// how long it keeps a job (`worker.code_ttl`).
    pub fn with_gauge(
        max_entries: usize,
        max_bytes: usize,
        bytes: Arc<AtomicU64>,
        index: (usize, std::time::Duration),
    ) -> Self {
        bytes.store(0, Ordering::Relaxed);
        IdempotencyCache {
            done: Mutex::new(Lru {
                entries: LruCache::unbounded(),
                max_entries: max_entries.max(1),
                max_bytes: max_bytes.max(1),
                bytes: 0,
            }),
            index: Mutex::new(ResultIndex::new(index.0, index.1)),
            in_flight: Mutex::new(HashMap::new()),
            bytes,
        }
    }

    /// Remembers a result seen on the results topic (cache warm-up) or concluded here, for the
    /// job whose [`fingerprint`] is `fingerprint` (`None`: unknown). The record with the higher
    /// `replay_count` wins; between equals, the later one.
    pub fn remember(&self, result: &JobResult, fingerprint: Option<u64>) {
        let packed = match encode(result) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode a result for the idempotency cache");
                return;
            }
        };
        let cached = Cached {
            replay_count: result.replay_count,
            fingerprint: fingerprint.unwrap_or(0),
            packed,
        };
        let mut done = self.done.lock().unwrap_or_else(|e| e.into_inner());
        match done.entries.peek(&result.job_id) {
            Some(old) if old.replay_count > result.replay_count => {}
            _ => {
                done.put(result.job_id.clone(), cached);
                self.bytes.store(done.bytes as u64, Ordering::Relaxed);
            }
        }
    }

    /// Records where `job_id`'s result lies in the results topic, seen at `seen_ms` (a result
    /// just acknowledged, or one read by a warm-up). Fails only when the index is full of jobs
    /// still inside `worker.code_ttl`.
    pub fn index(&self, job_id: &str, indexed: Indexed, seen_ms: i64) -> Result<(), Full> {
        let now = chrono::Utc::now().timestamp_millis();
        self.lock_index().insert(job_id, indexed, seen_ms, now)
    }

    /// Whether the index has room for `more` jobs beyond those it holds (the run loop starts a
    /// job only while there is room for every job in flight to be indexed).
    pub fn has_room(&self, more: usize) -> bool {
        let now = chrono::Utc::now().timestamp_millis();
        self.lock_index().has_room(more, now)
    }

    /// About how many results the cache itself holds at most (500 bytes counted a result).
    pub fn result_capacity(&self) -> usize {
        let done = self.done.lock().unwrap_or_else(|e| e.into_inner());
        done.max_entries.min(done.max_bytes / 500).max(1)
    }

    /// Jobs indexed, and the bytes the index holds.
    pub fn index_size(&self) -> (usize, usize) {
        let index = self.lock_index();
        (index.len(), index.bytes())
    }

    fn lock_in_flight(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, Arc<OnceCell<JobResult>>>> {
        self.in_flight.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_index(&self) -> std::sync::MutexGuard<'_, ResultIndex> {
        self.index.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The earlier result of `job_id`, if one is cached that answers a delivery with
    /// `replay_count`: a replay (a higher count than the cached result's) is a new attempt.
    pub fn lookup(&self, job_id: &str, replay_count: u32) -> Option<JobResult> {
        let (packed, _, answers) = self.cached(job_id)?;
        (answers >= replay_count)
            .then(|| decode_cached(&packed))
            .flatten()
    }

    /// The packed result cached for `job_id`, the fingerprint of the job it answers and the
    /// `replay_count` it answers.
    fn cached(&self, job_id: &str) -> Option<(Box<[u8]>, u64, u32)> {
        let mut done = self.done.lock().unwrap_or_else(|e| e.into_inner());
        let c = done.entries.get(job_id)?;
        Some((c.packed.clone(), c.fingerprint, c.replay_count))
    }

    /// What the cache and the index know of `key`'s job.
    fn seen(&self, key: &JobKey<'_>) -> Seen {
        let differs = |fp: u64| fp != 0 && fp != key.fingerprint;
        if let Some((packed, fp, answers)) = self.cached(key.job_id) {
            if differs(fp) {
                return Seen::Reused;
            }
            // A replay (a higher count than the cached result's) is a new attempt.
            let answered = (answers >= key.replay_count).then(|| decode_cached(&packed));
            if let Some(r) = answered.flatten() {
                return Seen::Result(Box::new(r));
            }
        }
        let Some(i) = self.lock_index().get(key.job_id) else {
            return Seen::Unseen;
        };
        if i.fingerprint.is_some_and(differs) {
            return Seen::Reused;
        }
        match i.stored {
            _ if i.replay_count < key.replay_count => Seen::Unseen,
            Some(at) => Seen::Stored(at),
            None => Seen::Presented,
        }
    }

    /// Answers `key`'s job: from the cache, from its earlier result read back with `read_back`
    /// from where the index says it lies, or by running `verify` (unless the same job is already
    /// being verified, whose result it then shares). A job_id answered for another code or
    /// number is [`Answer::Reused`] and runs nothing.
    pub async fn run<F, Fut, R, RFut>(&self, key: &JobKey<'_>, verify: F, read_back: R) -> Answer
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = JobResult>,
        R: FnOnce(Stored) -> RFut,
        RFut: Future<Output = Option<JobResult>>,
    {
        // A replay (higher count) in flight beside a redelivered original is another attempt.
        let in_flight = format!(
            "{}\u{0}{}\u{0}{}",
            key.job_id, key.replay_count, key.fingerprint
        );
        // A copy of a job in flight here shares its verification, whatever the ledger says of
        // it (this instance's own presentation).
        let sharing = self.lock_in_flight().contains_key(&in_flight);
        let seen = if sharing {
            Seen::Unseen
        } else {
            self.seen(key)
        };
        match seen {
            Seen::Presented => return Answer::Presented,
            Seen::Result(r) => return Answer::Duplicate(*r),
            Seen::Reused => return Answer::Reused,
            Seen::Stored(at) => match read_back(at).await {
                Some(r) if r.job_id == key.job_id => {
                    self.remember(&r, Some(key.fingerprint));
                    return Answer::Duplicate(r);
                }
                // Another job's result: two job_ids share a hash, and this one was not seen.
                Some(_) => {}
                None => return Answer::Gone(at),
            },
            Seen::Unseen => {}
        }
        let cell = self
            .lock_in_flight()
            .entry(in_flight.clone())
            .or_default()
            .clone();
        let mut ran = false;
        let result = cell
            .get_or_init(|| {
                ran = true;
                verify()
            })
            .await
            .clone();
        if !ran {
            return Answer::Duplicate(result);
        }
        // Cached before the in-flight entry goes, so a concurrent copy finds one or the other.
        self.remember(&result, Some(key.fingerprint));
        self.lock_in_flight().remove(&in_flight);
        Answer::Verified(result)
    }

    /// Results held.
    pub fn len(&self) -> usize {
        self.done
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entries
            .len()
    }

    /// The bytes counted for the results held (see [`ENTRY_OVERHEAD_BYTES`]).
    pub fn bytes(&self) -> usize {
        self.done.lock().unwrap_or_else(|e| e.into_inner()).bytes
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A result [`encode`] stored (only this cache wrote these bytes, from a valid result).
fn decode_cached(packed: &[u8]) -> Option<JobResult> {
    match decode(packed) {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::error!(error = %e, "cannot decode a result from the idempotency cache");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::{result::SCHEMA_VERSION, Status};
    use chrono::{TimeZone, Utc};
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn job_with(code: &str, number: &str) -> Job {
        let json = format!(
            r#"{{"job_id":"j-1","login_hint":"{number}","code":"{code}","redirect_uri":"https://client.example.com/cb"}}"#
        );
        Job::decode(json.as_bytes()).expect("a valid job")
    }

    #[test]
    fn the_fingerprint_tells_codes_and_numbers_apart_and_reads_the_number_by_its_digits() {
        let a = fingerprint(&job_with("code-a", "+381123456789"));
        assert_eq!(a, fingerprint(&job_with("code-a", "+381123456789")));
        assert_eq!(
            a,
            fingerprint(&job_with("code-a", "00381123456789")),
            "00 is +"
        );
        assert_ne!(
            a,
            fingerprint(&job_with("code-b", "+381123456789")),
            "another code"
        );
        assert_ne!(
            a,
            fingerprint(&job_with("code-a", "+381123456788")),
            "another number"
        );
        assert!(a > 1, "a real hash, not the floor of 1");
    }

    /// A verified result of `id` answering `replay_count` (also the packing tests').
    pub(super) fn result(id: &str, replay_count: u32) -> JobResult {
        JobResult {
            schema_version: SCHEMA_VERSION,
            job_id: id.into(),
            status: Status::Verified,
            phone_number_verified: Some(true),
            login_hint: Some("381123456789".into()),
            sub: None,
            mobile_id: None,
            state: None,
            attributes: Default::default(),
            error: None,
            attempts: 2,
            duplicate: false,
            replay_count,
            // Fixed, so that every result of the same id length encodes to the same length.
            received_at: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
            completed_at: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 1).unwrap(),
            duration_ms: 1,
            signals: None,
            risk_flags: None,
        }
    }

    const INDEX: (usize, std::time::Duration) = (100, std::time::Duration::from_secs(600));

    /// Runs `verify` for job `id` (fingerprint 1) through the cache, which reads nothing back;
    /// the result and whether it was a duplicate.
    async fn run_it<F, Fut>(
        c: &IdempotencyCache,
        id: &str,
        replay: u32,
        verify: F,
    ) -> (JobResult, bool)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = JobResult>,
    {
        let key = JobKey {
            job_id: id,
            replay_count: replay,
            fingerprint: 1,
        };
        match c.run(&key, verify, |_| async { None }).await {
            Answer::Verified(r) => (r, false),
            Answer::Duplicate(r) => (r, true),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_job_id_answered_for_another_code_or_number_is_reused_and_runs_nothing() {
        let c = IdempotencyCache::new(10, 1 << 20);
        run_it(&c, "a", 0, || async { result("a", 0) }).await;
        let other = JobKey {
            job_id: "a",
            replay_count: 0,
            fingerprint: 2,
        };
        let verify = || async { panic!("a reused job_id is never verified") };
        let answer = c.run(&other, verify, |_| async { None }).await;
        assert!(matches!(answer, Answer::Reused), "{answer:?}");
        // Also when only the index remembers the job.
        let tiny = IdempotencyCache::new(1, 1 << 20);
        let at = Stored {
            partition: 0,
            offset: 9,
        };
        let indexed = Indexed {
            fingerprint: Some(1),
            replay_count: 0,
            stored: Some(at),
        };
        tiny.index("a", indexed, chrono::Utc::now().timestamp_millis())
            .unwrap();
        let answer = tiny.run(&other, verify, |_| async { None }).await;
        assert!(matches!(answer, Answer::Reused), "{answer:?}");
    }

    #[tokio::test]
    async fn a_job_only_the_index_remembers_is_read_back_never_verified() {
        let c = IdempotencyCache::new(10, 1 << 20);
        let at = Stored {
            partition: 2,
            offset: 41,
        };
        let indexed = Indexed {
            fingerprint: Some(1),
            replay_count: 0,
            stored: Some(at),
        };
        c.index("a", indexed, chrono::Utc::now().timestamp_millis())
            .unwrap();
        let key = JobKey {
            job_id: "a",
            replay_count: 0,
            fingerprint: 1,
        };
        let verify = || async { panic!("an indexed job is never verified") };
        let read = c.run(&key, verify, |s| async move {
            assert_eq!(s, at);
            Some(result("a", 0))
        });
        assert!(matches!(read.await, Answer::Duplicate(r) if r.job_id == "a"));
        assert!(c.lookup("a", 0).is_some(), "cached once read back");
        // A result gone from the topic: nothing runs.
        let c = IdempotencyCache::new(10, 1 << 20);
        c.index("a", indexed, chrono::Utc::now().timestamp_millis())
            .unwrap();
        let answer = c.run(&key, verify, |_| async { None }).await;
        assert!(matches!(answer, Answer::Gone(s) if s == at), "{answer:?}");
        // A replay (higher count than the indexed result) is a new attempt.
        let replay = JobKey {
            replay_count: 1,
            ..key
        };
        let answer = c.run(&replay, || async { result("a", 1) }, |_| async { None });
        assert!(matches!(answer.await, Answer::Verified(_)));
    }

    #[tokio::test]
    async fn a_presentation_without_a_result_is_never_presented_again_unless_in_flight_here() {
        let c = Arc::new(IdempotencyCache::new(10, 1 << 20));
        let now = chrono::Utc::now().timestamp_millis();
        let presented = Indexed {
            fingerprint: Some(1),
            replay_count: 0,
            stored: None,
        };
        c.index("a", presented, now).unwrap();
        let key = JobKey {
            job_id: "a",
            replay_count: 0,
            fingerprint: 1,
        };
        let verify = || async { panic!("a recorded presentation is never presented again") };
        let answer = c.run(&key, verify, |_| async { None }).await;
        assert!(matches!(answer, Answer::Presented), "{answer:?}");
        // This instance's own job, still in flight when a warm-up reads its presentation, is
        // shared with a copy, not concluded.
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let first = {
            let c = c.clone();
            tokio::spawn(async move {
                run_it(&c, "b", 0, || async move {
                    rx.await.ok();
                    result("b", 0)
                })
                .await
            })
        };
        tokio::task::yield_now().await;
        c.index("b", presented, now).unwrap();
        let copy = {
            let c = c.clone();
            tokio::spawn(async move {
                let key = JobKey {
                    job_id: "b",
                    replay_count: 0,
                    fingerprint: 1,
                };
                c.run(&key, || async { result("b", 0) }, |_| async { None })
                    .await
            })
        };
        tokio::task::yield_now().await;
        tx.send(()).unwrap();
        assert!(!first.await.unwrap().1);
        let copy = copy.await.unwrap();
        assert!(matches!(copy, Answer::Duplicate(_)), "{copy:?}");
    }

    #[tokio::test]
    async fn second_delivery_is_a_duplicate_and_runs_nothing() {
        let c = IdempotencyCache::new(10, 1 << 20);
        let runs = AtomicUsize::new(0);
        let (r, dup) = run_it(&c, "a", 0, || async {
            runs.fetch_add(1, Ordering::SeqCst);
            result("a", 0)
        })
        .await;
        assert!(!dup && r.job_id == "a");
        let (_, dup) = run_it(&c, "a", 0, || async {
            runs.fetch_add(1, Ordering::SeqCst);
            result("a", 0)
        })
        .await;
        assert!(dup);
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_replay_is_not_a_duplicate() {
        let c = IdempotencyCache::new(10, 1 << 20);
        c.remember(&result("a", 0), None);
        let (r, dup) = run_it(&c, "a", 1, || async { result("a", 1) }).await;
        assert!(!dup);
        assert_eq!(r.replay_count, 1);
        assert!(c.lookup("a", 0).is_some() && c.lookup("a", 1).is_some());
        // An older record seen later during warm-up does not replace the replayed one.
        c.remember(&result("a", 0), None);
        assert_eq!(c.lookup("a", 0).unwrap().replay_count, 1);
    }

    #[tokio::test]
    async fn concurrent_copies_share_one_verification() {
        let c = Arc::new(IdempotencyCache::new(10, 1 << 20));
        let runs = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let first = {
            let (c, runs) = (c.clone(), runs.clone());
            tokio::spawn(async move {
                run_it(&c, "a", 0, || async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    rx.await.ok();
                    result("a", 0)
                })
                .await
            })
        };
        tokio::task::yield_now().await;
        let second = {
            let (c, runs) = (c.clone(), runs.clone());
            tokio::spawn(async move {
                run_it(&c, "a", 0, || async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    result("a", 0)
                })
                .await
            })
        };
        tokio::task::yield_now().await;
        tx.send(()).unwrap();
        let (a, b) = (first.await.unwrap(), second.await.unwrap());
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert!(!a.1 && b.1);
    }

    #[test]
    fn a_cached_result_comes_back_unchanged() {
        let c = IdempotencyCache::new(10, 1 << 20);
        let mut r = result("a", 0);
        r.status = Status::Failed;
        r.phone_number_verified = None;
        r.attributes.insert("tenant".into(), "t-1".into());
        r.error = Some(crate::contract::ErrorInfo::new(
            crate::contract::ErrorClass::CodeRejected,
            crate::contract::Stage::Token,
            "invalid_grant",
        ));
        c.remember(&r.clone(), None);
        assert_eq!(c.lookup("a", 0), Some(r));
    }

    /// The bytes one result of `result(id, 0)` counts.
    fn one(id: &str) -> usize {
        id.len() + encode(&result(id, 0)).unwrap().len() + ENTRY_OVERHEAD_BYTES
    }

    #[test]
    fn bounded_by_entries() {
        let c = IdempotencyCache::new(2, 1 << 20);
        for id in ["a", "b", "c"] {
            c.remember(&result(id, 0), None);
        }
        assert_eq!(c.len(), 2);
        assert!(c.lookup("a", 0).is_none());
        assert!(c.lookup("b", 0).is_some() && c.lookup("c", 0).is_some());
    }

    #[test]
    fn bounded_by_bytes_evicting_the_least_recently_used() {
        let gauge = Arc::new(AtomicU64::new(7));
        // Room for three results but not four (same-length ids count the same).
        let c = IdempotencyCache::with_gauge(100, 4 * one("a") - 1, gauge.clone(), INDEX);
        assert_eq!(gauge.load(Ordering::Relaxed), 0);
        for id in ["a", "b", "c"] {
            c.remember(&result(id, 0), None);
        }
        assert_eq!((c.len(), c.bytes()), (3, 3 * one("a")));
        assert_eq!(gauge.load(Ordering::Relaxed), 3 * one("a") as u64);
        // "a" used last, so "b" is the least recently used when "d" comes.
        assert!(c.lookup("a", 0).is_some());
        c.remember(&result("d", 0), None);
        assert_eq!(c.len(), 3);
        assert!(c.lookup("b", 0).is_none());
        assert!(["a", "c", "d"].iter().all(|id| c.lookup(id, 0).is_some()));
        assert_eq!(gauge.load(Ordering::Relaxed), 3 * one("a") as u64);
    }

    #[test]
    fn a_replaced_result_is_counted_once_and_one_result_always_stays() {
        let c = IdempotencyCache::new(10, 1 << 20);
        c.remember(&result("a", 0), None);
        c.remember(&result("a", 1), None);
        assert_eq!((c.len(), c.bytes()), (1, one("a")));
        // A bound below one result keeps the newest result alone.
        let tiny = IdempotencyCache::new(10, 1);
        tiny.remember(&result("a", 0), None);
        tiny.remember(&result("b", 0), None);
        assert_eq!(tiny.len(), 1);
        assert!(tiny.lookup("b", 0).is_some());
    }

    #[test]
    fn bytes_exactly_at_the_bound_stay() {
        let c = IdempotencyCache::new(10, one("a") + one("b"));
        c.remember(&result("a", 0), None);
        c.remember(&result("b", 0), None);
        assert_eq!((c.len(), c.bytes()), (2, one("a") + one("b")));
        c.remember(&result("c", 0), None);
        assert_eq!(c.len(), 2, "one byte past the bound evicts");
    }

    #[test]
    fn between_equal_replay_counts_the_later_result_wins() {
        let c = IdempotencyCache::new(10, 1 << 20);
        assert!(c.is_empty());
        c.remember(&result("a", 0), None);
        assert!(!c.is_empty());
        let later = JobResult {
            phone_number_verified: Some(false),
            ..result("a", 0)
        };
        c.remember(&later, None);
        let held = c.lookup("a", 0).unwrap();
        assert_eq!(held.phone_number_verified, Some(false));
        // A lower count never replaces a higher one.
        c.remember(&result("a", 1), None);
        c.remember(&later, None);
        assert_eq!(c.lookup("a", 1).unwrap().phone_number_verified, Some(true));
    }

    #[test]
    fn capacity_and_sizes_follow_the_bounds() {
        // 500 bytes counted a result: 10 by bytes, beneath 100 by entries.
        assert_eq!(IdempotencyCache::new(100, 5_000).result_capacity(), 10);
        assert_eq!(IdempotencyCache::new(3, 5_000).result_capacity(), 3);
        let c = IdempotencyCache::with_gauge(
            10,
            1 << 20,
            Arc::default(),
            (3, std::time::Duration::from_secs(600)),
        );
        assert!(c.has_room(2), "two of three free");
        let now = Utc::now().timestamp_millis();
        for id in ["a", "b"] {
            let stored = Some(index::Stored {
                partition: 0,
                offset: 1,
            });
            let indexed = Indexed {
                fingerprint: Some(9),
                replay_count: 0,
                stored,
            };
            c.index(id, indexed, now).unwrap();
        }
        assert!(
            !c.has_room(1),
            "the third place is kept free for nothing: full"
        );
        let (jobs, bytes) = c.index_size();
        assert_eq!(jobs, 2);
        assert!(bytes >= 2 * 32, "{bytes}");
    }

    #[tokio::test]
    async fn another_jobs_result_read_back_is_no_answer() {
        // Two job_ids whose index keys collide: the result read back belongs to "b", so "a" is
        // treated as unseen and verified.
        let c = IdempotencyCache::new(10, 1 << 20);
        let at = index::Stored {
            partition: 0,
            offset: 3,
        };
        let indexed = Indexed {
            fingerprint: Some(1),
            replay_count: 0,
            stored: Some(at),
        };
        c.index("a", indexed, Utc::now().timestamp_millis())
            .unwrap();
        let key = JobKey {
            job_id: "a",
            replay_count: 0,
            fingerprint: 1,
        };
        let answer = c.run(
            &key,
            || async { result("a", 0) },
            |_| async { Some(result("b", 0)) },
        );
        assert!(matches!(answer.await, Answer::Verified(r) if r.job_id == "a"));
    }
}
