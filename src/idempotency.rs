//! The idempotency cache (docs/contract.md): `job_id` to its published result, so a redelivered job
//! is answered with its earlier result instead of spending its single-use code again. Jobs with
//! the same `job_id` in flight at once share one verification.

use crate::contract::JobResult;
use lru::LruCache;
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::OnceCell;

/// Bytes counted for one cached result on top of its key and its JSON: the LRU list node (key
/// and value headers, two links: 64 bytes), the allocator's header and rounding of its three
/// allocations (node, key, JSON: about 48 bytes) and its slot in the hash table (16 bytes at a
/// load factor between 7/16 and 7/8: up to 37 bytes), rounded up.
pub const ENTRY_OVERHEAD_BYTES: usize = 160;

/// Results by `job_id`, bounded by `worker.idempotency_cache_size` entries and by
/// `worker.idempotency_cache_bytes`: whichever bound is reached first evicts the least recently
/// used results. An entry counts its key, its JSON and [`ENTRY_OVERHEAD_BYTES`].
///
/// A result is kept as its JSON encoding (about 400 bytes) rather than as a [`JobResult`], whose
/// strings and attribute map take several small allocations (over 1 KB per result). Hits are
/// rare (redeliveries), so decoding on a hit costs nothing that matters.
#[derive(Debug)]
pub struct IdempotencyCache {
    done: Mutex<Lru>,
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

/// One remembered result: the `replay_count` it answers and its JSON encoding.
#[derive(Debug)]
struct Cached {
    replay_count: u32,
    json: Box<[u8]>,
}

/// The bytes counted for a result under `key`.
fn entry_bytes(key: &str, cached: &Cached) -> usize {
    key.len() + cached.json.len() + ENTRY_OVERHEAD_BYTES
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
    /// bound at least 1; at least one result is always kept).
    pub fn new(max_entries: usize, max_bytes: usize) -> Self {
        Self::with_gauge(max_entries, max_bytes, Arc::default())
    }

    /// As [`IdempotencyCache::new`], keeping `bytes` equal to the bytes counted for the results
    /// held (the `silentauth_idempotency_cache_bytes` gauge).
    pub fn with_gauge(max_entries: usize, max_bytes: usize, bytes: Arc<AtomicU64>) -> Self {
        bytes.store(0, Ordering::Relaxed);
        IdempotencyCache {
            done: Mutex::new(Lru {
                entries: LruCache::unbounded(),
                max_entries: max_entries.max(1),
                max_bytes: max_bytes.max(1),
                bytes: 0,
            }),
            in_flight: Mutex::new(HashMap::new()),
            bytes,
        }
    }

    /// Remembers a result seen on the results topic (cache warm-up). The record with the higher
    /// `replay_count` wins; between equals, the later one.
    pub fn remember(&self, result: JobResult) {
        self.store(&result);
    }

    fn store(&self, result: &JobResult) {
        let json = match serde_json::to_vec(result) {
            Ok(j) => j.into_boxed_slice(),
            Err(e) => {
                tracing::error!(error = %e, "cannot encode a result for the idempotency cache");
                return;
            }
        };
        let cached = Cached {
            replay_count: result.replay_count,
            json,
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

    /// The earlier result of `job_id`, if it answers a delivery with `replay_count`: a replay
    /// (a higher count than the cached result's) is a new attempt, not a duplicate.
    pub fn lookup(&self, job_id: &str, replay_count: u32) -> Option<JobResult> {
        let json = {
            let mut done = self.done.lock().unwrap_or_else(|e| e.into_inner());
            done.entries
                .get(job_id)
                .filter(|r| r.replay_count >= replay_count)?
                .json
                .clone()
        };
        match serde_json::from_slice(&json) {
            Ok(r) => Some(r),
            Err(e) => {
                // Only this cache wrote these bytes, from a valid result.
                tracing::error!(error = %e, "cannot decode a result from the idempotency cache");
                None
            }
        }
    }

    /// Runs `verify` for `job_id` unless a result is cached or the same job is already being
    /// verified, in which case that result is returned. The bool is true when the result is a
    /// duplicate (no verification ran here).
    pub async fn run<F, Fut>(&self, job_id: &str, replay_count: u32, verify: F) -> (JobResult, bool)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = JobResult>,
    {
        if let Some(r) = self.lookup(job_id, replay_count) {
            return (r, true);
        }
        // A replay (higher count) in flight beside a redelivered original is another attempt.
        let key = format!("{job_id}\u{0}{replay_count}");
        let cell = {
            let mut map = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
            map.entry(key.clone()).or_default().clone()
        };
        let mut ran = false;
        let result = cell
            .get_or_init(|| {
                ran = true;
                verify()
            })
            .await
            .clone();
        if ran {
            // Cached before the in-flight entry goes, so a concurrent copy finds one or the other.
            self.store(&result);
            self.in_flight
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&key);
        }
        (result, !ran)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::{result::SCHEMA_VERSION, Status};
    use chrono::{TimeZone, Utc};
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn result(id: &str, replay_count: u32) -> JobResult {
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

    #[tokio::test]
    async fn second_delivery_is_a_duplicate_and_runs_nothing() {
        let c = IdempotencyCache::new(10, 1 << 20);
        let runs = AtomicUsize::new(0);
        let (r, dup) = c
            .run("a", 0, || async {
                runs.fetch_add(1, Ordering::SeqCst);
                result("a", 0)
            })
            .await;
        assert!(!dup && r.job_id == "a");
        let (_, dup) = c
            .run("a", 0, || async {
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
        c.remember(result("a", 0));
        let (r, dup) = c.run("a", 1, || async { result("a", 1) }).await;
        assert!(!dup);
        assert_eq!(r.replay_count, 1);
        assert!(c.lookup("a", 0).is_some() && c.lookup("a", 1).is_some());
        // An older record seen later during warm-up does not replace the replayed one.
        c.remember(result("a", 0));
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
                c.run("a", 0, || async move {
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
                c.run("a", 0, || async move {
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
        c.remember(r.clone());
        assert_eq!(c.lookup("a", 0), Some(r));
    }

    /// The bytes one result of `result(id, 0)` counts.
    fn one(id: &str) -> usize {
        id.len() + serde_json::to_vec(&result(id, 0)).unwrap().len() + ENTRY_OVERHEAD_BYTES
    }

    #[test]
    fn bounded_by_entries() {
        let c = IdempotencyCache::new(2, 1 << 20);
        for id in ["a", "b", "c"] {
            c.remember(result(id, 0));
        }
        assert_eq!(c.len(), 2);
        assert!(c.lookup("a", 0).is_none());
        assert!(c.lookup("b", 0).is_some() && c.lookup("c", 0).is_some());
    }

    #[test]
    fn bounded_by_bytes_evicting_the_least_recently_used() {
        let gauge = Arc::new(AtomicU64::new(7));
        // Room for three results but not four (same-length ids count the same).
        let c = IdempotencyCache::with_gauge(100, 4 * one("a") - 1, gauge.clone());
        assert_eq!(gauge.load(Ordering::Relaxed), 0);
        for id in ["a", "b", "c"] {
            c.remember(result(id, 0));
        }
        assert_eq!((c.len(), c.bytes()), (3, 3 * one("a")));
        assert_eq!(gauge.load(Ordering::Relaxed), 3 * one("a") as u64);
        // "a" used last, so "b" is the least recently used when "d" comes.
        assert!(c.lookup("a", 0).is_some());
        c.remember(result("d", 0));
        assert_eq!(c.len(), 3);
        assert!(c.lookup("b", 0).is_none());
        assert!(["a", "c", "d"].iter().all(|id| c.lookup(id, 0).is_some()));
        assert_eq!(gauge.load(Ordering::Relaxed), 3 * one("a") as u64);
    }

    #[test]
    fn a_replaced_result_is_counted_once_and_one_result_always_stays() {
        let c = IdempotencyCache::new(10, 1 << 20);
        c.remember(result("a", 0));
        c.remember(result("a", 1));
        assert_eq!((c.len(), c.bytes()), (1, one("a")));
        // A bound below one result keeps the newest result alone.
        let tiny = IdempotencyCache::new(10, 1);
        tiny.remember(result("a", 0));
        tiny.remember(result("b", 0));
        assert_eq!(tiny.len(), 1);
        assert!(tiny.lookup("b", 0).is_some());
    }
}
