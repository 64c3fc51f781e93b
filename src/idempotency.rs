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
#[derive(Debug)]
pub struct IdempotencyCache {
    done: Mutex<LruCache<String, JobResult>>,
    in_flight: Mutex<HashMap<String, Arc<OnceCell<JobResult>>>>,
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
        let mut done = self.done.lock().unwrap_or_else(|e| e.into_inner());
        match done.peek(&result.job_id) {
            Some(old) if old.replay_count > result.replay_count => {}
            _ => {
                done.put(result.job_id.clone(), result);
            }
        }
    }

    /// The earlier result of `job_id`, if it answers a delivery with `replay_count`: a replay
    /// (a higher count than the cached result's) is a new attempt, not a duplicate.
    pub fn lookup(&self, job_id: &str, replay_count: u32) -> Option<JobResult> {
        let mut done = self.done.lock().unwrap_or_else(|e| e.into_inner());
        done.get(job_id)
            .filter(|r| r.replay_count >= replay_count)
            .cloned()
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
            self.in_flight
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&key);
            self.remember(result.clone());
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
    fn bounded_by_capacity() {
        let c = IdempotencyCache::new(2);
        for id in ["a", "b", "c"] {
            c.remember(result(id, 0));
        }
        assert_eq!(c.len(), 2);
        assert!(c.lookup("a", 0).is_none());
    }
}
