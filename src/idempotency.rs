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
/// used results. An entry counts its key, its packed JSON and [`ENTRY_OVERHEAD_BYTES`].
///
/// A result is kept as its JSON with its keys packed into single bytes ([`encode`]: about 300
/// bytes for a verified result, 500 as JSON) rather than as a [`JobResult`], whose strings and
/// attribute map take several small allocations (over 1 KB per result). Hits are rare
/// (redeliveries), so decoding on a hit costs nothing that matters.
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
    /// The latest `completed_at` (epoch milliseconds) of a result evicted to keep the bounds.
    newest_evicted_ms: Option<i64>,
}

/// One remembered result: the `replay_count` it answers, when it was completed (epoch
/// milliseconds) and its [`encode`]d form.
#[derive(Debug)]
struct Cached {
    replay_count: u32,
    completed_ms: i64,
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
                Some((k, v)) => {
                    self.bytes -= entry_bytes(&k, &v);
                    self.newest_evicted_ms = self.newest_evicted_ms.max(Some(v.completed_ms));
                }
                None => break,
            }
        }
    }
}

/// The keys of a result (and of its `error`) as they appear in its JSON, each with the byte that
/// stands for it once packed (see [`encode`]): they are about half of a result's JSON. The bytes
/// are control characters other than JSON's whitespace, which compact JSON never contains raw
/// (serde_json escapes them inside strings).
const PACKED_KEYS: [(u8, &[u8]); 24] = [
    (0x01, b"\"schema_version\":"),
    (0x02, b"\"job_id\":"),
    (0x03, b"\"status\":"),
    (0x04, b"\"phone_number_verified\":"),
    (0x05, b"\"login_hint\":"),
    (0x06, b"\"sub\":"),
    (0x07, b"\"mobile_id\":"),
    (0x08, b"\"state\":"),
    (0x0b, b"\"attributes\":"),
    (0x0c, b"\"error\":"),
    (0x0e, b"\"attempts\":"),
    (0x0f, b"\"duplicate\":"),
    (0x10, b"\"replay_count\":"),
    (0x11, b"\"received_at\":"),
    (0x12, b"\"completed_at\":"),
    (0x13, b"\"duration_ms\":"),
    (0x14, b"\"signals\":"),
    (0x15, b"\"risk_flags\":"),
    (0x16, b"\"class\":"),
    (0x17, b"\"stage\":"),
    (0x18, b"\"code\":"),
    (0x19, b"\"http_status\":"),
    (0x1a, b"\"description\":"),
    (0x1b, b"\"retryable\":"),
];

/// The key `byte` stands for, if it stands for one.
fn key_of(byte: u8) -> Option<&'static [u8]> {
    PACKED_KEYS
        .iter()
        .find_map(|&(b, key)| (b == byte).then_some(key))
}

/// `result` as compact JSON with each of [`PACKED_KEYS`] replaced by its byte, in one allocation
/// of its exact size: a verified result from the simulator takes 307 bytes instead of 491.
/// (Encoding into a growing `Vec` and shrinking it also left a trail of freed buffers between
/// the long-lived entries.)
fn encode(result: &JobResult) -> serde_json::Result<Box<[u8]>> {
    thread_local! {
        static SCRATCH: std::cell::RefCell<(Vec<u8>, Vec<u8>)> =
            const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
    }
    SCRATCH.with_borrow_mut(|(json, packed)| {
        json.clear();
        serde_json::to_writer(&mut *json, result)?;
        packed.clear();
        let mut rest = json.as_slice();
        while let Some((&first, tail)) = rest.split_first() {
            debug_assert!(first >= 0x20, "compact JSON holds no raw control character");
            let key = (first == b'"')
                .then(|| PACKED_KEYS.iter().find(|(_, k)| rest.starts_with(k)))
                .flatten();
            match key {
                Some(&(byte, k)) => {
                    packed.push(byte);
                    rest = &rest[k.len()..];
                }
                None => {
                    packed.push(first);
                    rest = tail;
                }
            }
        }
        Ok(Box::from(packed.as_slice()))
    })
}

/// The result [`encode`] stored.
fn decode(packed: &[u8]) -> serde_json::Result<JobResult> {
    let mut json = Vec::with_capacity(packed.len() * 2);
    for &b in packed {
        match key_of(b) {
            Some(key) => json.extend_from_slice(key),
            None => json.push(b),
        }
    }
    serde_json::from_slice(&json)
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
                newest_evicted_ms: None,
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
        let packed = match encode(result) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode a result for the idempotency cache");
                return;
            }
        };
        let cached = Cached {
            replay_count: result.replay_count,
            completed_ms: result.completed_at.timestamp_millis(),
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

    /// The earlier result of `job_id`, if it answers a delivery with `replay_count`: a replay
    /// (a higher count than the cached result's) is a new attempt, not a duplicate.
    pub fn lookup(&self, job_id: &str, replay_count: u32) -> Option<JobResult> {
        let packed = {
            let mut done = self.done.lock().unwrap_or_else(|e| e.into_inner());
            done.entries
                .get(job_id)
                .filter(|r| r.replay_count >= replay_count)?
                .packed
                .clone()
        };
        match decode(&packed) {
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

    /// The latest `completed_at` (epoch milliseconds) of the results evicted so far to keep the
    /// bounds; `None` while nothing was evicted. A redelivered job whose result was evicted
    /// spends its code again, so a warm-up compares this with where redelivery can start.
    pub fn newest_evicted_ms(&self) -> Option<i64> {
        self.done
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .newest_evicted_ms
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
        id.len() + encode(&result(id, 0)).unwrap().len() + ENTRY_OVERHEAD_BYTES
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
    fn the_newest_evicted_result_is_remembered_and_a_replacement_is_no_eviction() {
        let at = |id: &str, secs: i64| {
            let mut r = result(id, 0);
            r.completed_at = Utc.timestamp_opt(secs, 0).unwrap();
            r
        };
        let c = IdempotencyCache::new(2, 1 << 20);
        c.remember(at("a", 30));
        c.remember(at("a", 40));
        c.remember(at("b", 10));
        assert_eq!(c.newest_evicted_ms(), None);
        // Warm-up order is not completion order: "a" (40 s) goes first, then "b" (10 s).
        c.remember(at("c", 20));
        assert_eq!(c.newest_evicted_ms(), Some(40_000));
        c.remember(at("d", 50));
        assert_eq!(c.newest_evicted_ms(), Some(40_000));
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

    /// A result using every key, with strings that look like keys, quotes, escapes and control
    /// characters, and a nested error and signals.
    fn full_result() -> JobResult {
        use crate::contract::network_signals::{
            ForwardingOutcome, ForwardingSignal, RiskFlag, SignalsReport, SwapOutcome, SwapSignal,
        };
        use crate::contract::{ErrorClass, ErrorInfo, Stage};
        let error = ErrorInfo::new(
            ErrorClass::LoginHintMismatch,
            Stage::Userinfo,
            "said \"status\": \u{1}\n\t\\ \"job_id\":",
        )
        .with_code(Some("\"code\":".into()))
        .with_status(Some(200));
        let mut r = result("9b2c6f0e-\"sub\":-\u{1f}", 3);
        r.status = Status::NotVerified;
        r.phone_number_verified = Some(false);
        r.sub = Some("\"error\":null".into());
        r.mobile_id = Some("\u{7f}é日本".into());
        r.state = Some(String::new());
        r.attributes = [
            ("status".to_string(), "\"status\":".to_string()),
            ("\u{2}".to_string(), "\\\"".to_string()),
        ]
        .into();
        r.error = Some(
            error
                .clone()
                .with_code_spent("the token request was answered"),
        );
        r.signals = Some(SignalsReport {
            sim_swap: Some(SwapSignal {
                outcome: SwapOutcome::Failed,
                latest_change: Some(Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()),
                max_age_minutes: 60,
                error: Some(error),
            }),
            device_swap: None,
            call_forwarding: Some(ForwardingSignal {
                outcome: ForwardingOutcome::Inactive,
                error: None,
            }),
        });
        r.risk_flags = Some(vec![RiskFlag::SimSwapUnchecked]);
        r
    }

    #[test]
    fn each_key_has_its_own_control_byte_outside_json_whitespace() {
        let bytes: std::collections::BTreeSet<u8> = PACKED_KEYS.iter().map(|&(b, _)| b).collect();
        assert_eq!(bytes.len(), PACKED_KEYS.len());
        assert!(bytes
            .iter()
            .all(|&b| b != 0 && b < 0x20 && !b"\t\n\r".contains(&b)));
    }

    #[test]
    fn a_packed_result_decodes_to_the_same_result() {
        for r in [result("a", 0), full_result()] {
            let packed = encode(&r).unwrap();
            assert!(
                packed.iter().all(|&b| b >= 0x20 || key_of(b).is_some()),
                "only key bytes below 0x20"
            );
            assert_eq!(decode(&packed).unwrap(), r);
        }
    }

    #[test]
    fn packing_halves_a_plain_result() {
        let r = result("9b2c6f0e-7a44-4d7e-9a53-5b3c2f1e0d9a", 0);
        let (json, packed) = (serde_json::to_vec(&r).unwrap(), encode(&r).unwrap());
        assert!(
            packed.len() * 100 <= json.len() * 60,
            "{} bytes packed, {} as JSON",
            packed.len(),
            json.len()
        );
    }
}
