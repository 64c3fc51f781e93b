//! The idempotency cache (docs/contract.md): `job_id` to its published result, so a redelivered job
//! is answered with its earlier result instead of spending its single-use code again. Jobs with
//! the same `job_id` in flight at once share one verification.

use crate::contract::JobResult;
use lru::LruCache;
use std::collections::HashMap;
use std::future::Future;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use tokio::sync::OnceCell;

/// Results by `job_id`, bounded by `worker.idempotency_cache_size`.
///
/// A result is kept as its JSON encoding (about 400 bytes) rather than as a [`JobResult`], whose
/// strings and attribute map take several small allocations (over 1 KB per result): with the
/// default 100,000 results that is the difference between about 50 and over 120 MB. Hits are
/// rare (redeliveries), so decoding on a hit costs nothing that matters.
#[derive(Debug)]
pub struct IdempotencyCache {
    done: Mutex<LruCache<String, Cached>>,
    in_flight: Mutex<HashMap<String, Arc<OnceCell<JobResult>>>>,
}

/// One remembered result: the `replay_count` it answers and its JSON encoding.
#[derive(Debug)]
struct Cached {
    replay_count: u32,
    json: Box<[u8]>,
}

impl IdempotencyCache {
    /// A cache holding up to `capacity` results.
    pub fn new(capacity: usize) -> Self {
        IdempotencyCache {
            done: Mutex::new(LruCache::new(
                NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN),
            )),
            in_flight: Mutex::new(HashMap::new()),
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
        match done.peek(&result.job_id) {
            Some(old) if old.replay_count > result.replay_count => {}
            _ => {
                done.put(result.job_id.clone(), cached);
            }
        }
    }

    /// The earlier result of `job_id`, if it answers a delivery with `replay_count`: a replay
    /// (a higher count than the cached result's) is a new attempt, not a duplicate.
    pub fn lookup(&self, job_id: &str, replay_count: u32) -> Option<JobResult> {
        let json = {
            let mut done = self.done.lock().unwrap_or_else(|e| e.into_inner());
            done.get(job_id)
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
        self.done.lock().unwrap_or_else(|e| e.into_inner()).len()
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
    use chrono::Utc;
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
            received_at: Utc::now(),
            completed_at: Utc::now(),
            duration_ms: 1,
            signals: None,
            risk_flags: None,
        }
    }

    #[tokio::test]
    async fn second_delivery_is_a_duplicate_and_runs_nothing() {
        let c = IdempotencyCache::new(10);
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
        let c = IdempotencyCache::new(10);
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
        let c = Arc::new(IdempotencyCache::new(10));
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
        let c = IdempotencyCache::new(10);
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

    #[test]
    fn bounded_by_capacity() {
        let c = IdempotencyCache::new(2);
        for id in ["a", "b", "c"] {
            c.remember(result(id, 0));
        }
        assert_eq!(c.len(), 2);
        assert!(c.lookup("a", 0).is_none());
    }
}
