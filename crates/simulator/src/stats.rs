//! Request counters of the simulator (`GET /_sim/stats`): by endpoint and status, reused codes,
//! and a per-second series of API requests for benchmarks.

use crate::endpoint::SimEndpoint;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// Status recorded for a request whose connection was dropped without a response.
pub const DROPPED: u16 = 0;

/// The longest per-second series kept (one day); older seconds are discarded.
const MAX_SECONDS: usize = 86_400;

/// A snapshot of the simulator's counters; the JSON of `GET /_sim/stats`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SimStats {
    /// Requests to the API endpoints (Silent Auth and Network Signals).
    pub total: u64,
    /// Per endpoint name (`authorize`, `token`, `userinfo`, `sim_swap_check`,
    /// `sim_swap_retrieve_date`, `device_swap_check`, `device_swap_retrieve_date`,
    /// `call_forwarding_check`).
    pub endpoints: BTreeMap<String, EndpointStats>,
    /// Authorization codes issued (authorize redirects with a code, and `mint_code`).
    pub codes_issued: u64,
    /// Token requests that presented an already-used code.
    pub codes_reused: u64,
    /// Access tokens issued.
    pub tokens_issued: u64,
    /// Requests answered by a fault rule.
    pub faults_injected: u64,
    /// Requests refused by the simulator's own rate limit.
    pub rate_limited: u64,
    /// Token + userinfo requests per wall-clock second.
    pub api_per_second: PerSecond,
}

/// Counters of one endpoint.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EndpointStats {
    /// All requests.
    pub total: u64,
    /// Requests by response status; [`DROPPED`] (0) counts dropped connections.
    pub by_status: BTreeMap<u16, u64>,
}

/// Requests per second, aligned to Unix seconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PerSecond {
    /// Unix second of `counts[0]`; `None` before the first API request.
    pub start_unix: Option<u64>,
    /// Requests in each second from `start_unix` to the latest one (the last may be partial).
    pub counts: Vec<u64>,
}

impl SimStats {
    /// Requests to `endpoint` answered with `status` (0 = dropped).
    pub fn count(&self, endpoint: &str, status: u16) -> u64 {
        self.endpoints
            .get(endpoint)
            .and_then(|e| e.by_status.get(&status).copied())
            .unwrap_or(0)
    }

    /// All requests to `endpoint`.
    pub fn total(&self, endpoint: &str) -> u64 {
        self.endpoints.get(endpoint).map_or(0, |e| e.total)
    }

    /// All requests to the Network Signals endpoints.
    pub fn signals_total(&self) -> u64 {
        SimEndpoint::ALL
            .into_iter()
            .filter(|e| e.is_signal())
            .map(|e| self.total(e.as_str()))
            .sum()
    }

    /// The busiest second of token + userinfo requests.
    pub fn peak_per_second(&self) -> u64 {
        self.api_per_second
            .counts
            .iter()
            .copied()
            .max()
            .unwrap_or(0)
    }

    /// The quietest second of token + userinfo requests, leaving out the first and last second
    /// (usually partial) when there are more than two.
    pub fn min_per_second(&self) -> u64 {
        full_seconds(&self.api_per_second.counts)
            .iter()
            .copied()
            .min()
            .unwrap_or(0)
    }

    /// Mean token + userinfo requests per second, leaving out the first and last second
    /// (usually partial) when there are more than two.
    pub fn mean_per_second(&self) -> f64 {
        let c = full_seconds(&self.api_per_second.counts);
        if c.is_empty() {
            return 0.0;
        }
        c.iter().sum::<u64>() as f64 / c.len() as f64
    }
}

fn full_seconds(c: &[u64]) -> &[u64] {
    if c.len() > 2 {
        &c[1..c.len() - 1]
    } else {
        c
    }
}

/// Lock-free counters plus a briefly locked per-second series.
pub(crate) struct StatsRecorder {
    /// `[endpoint][status]`; index 0 counts dropped connections.
    by_status: Vec<[AtomicU64; 600]>,
    pub(crate) codes_issued: AtomicU64,
    pub(crate) codes_reused: AtomicU64,
    pub(crate) tokens_issued: AtomicU64,
    pub(crate) faults_injected: AtomicU64,
    pub(crate) rate_limited: AtomicU64,
    series: Mutex<Series>,
}

#[derive(Default)]
struct Series {
    start: u64,
    counts: VecDeque<u64>,
}

impl Series {
    fn add(&mut self, sec: u64) {
        if self.counts.is_empty() {
            self.start = sec;
        }
        // A clock that stepped back lands in the first second kept.
        let idx = sec.saturating_sub(self.start) as usize;
        if idx >= self.counts.len() {
            self.counts.resize(idx + 1, 0);
        }
        self.counts[idx] += 1;
        while self.counts.len() > MAX_SECONDS {
            self.counts.pop_front();
            self.start += 1;
        }
    }
}

fn index(e: SimEndpoint) -> usize {
    SimEndpoint::ALL.iter().position(|x| *x == e).unwrap_or(0)
}

impl StatsRecorder {
    pub(crate) fn new() -> Self {
        StatsRecorder {
            by_status: SimEndpoint::ALL
                .iter()
                .map(|_| std::array::from_fn(|_| AtomicU64::new(0)))
                .collect(),
            codes_issued: AtomicU64::new(0),
            codes_reused: AtomicU64::new(0),
            tokens_issued: AtomicU64::new(0),
            faults_injected: AtomicU64::new(0),
            rate_limited: AtomicU64::new(0),
            series: Mutex::new(Series::default()),
        }
    }

    /// Counts a token or userinfo request in the per-second series (on arrival).
    pub(crate) fn api_arrival(&self) {
        let sec = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.series
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .add(sec);
    }

    /// Counts a finished request (`status` 0 = dropped).
    pub(crate) fn record(&self, endpoint: SimEndpoint, status: u16) {
        let s = usize::from(status).min(599);
        self.by_status[index(endpoint)][s].fetch_add(1, Relaxed);
    }

    /// Zeroes every counter.
    pub(crate) fn reset(&self) {
        for row in &self.by_status {
            for c in row {
                c.store(0, Relaxed);
            }
        }
        for c in [
            &self.codes_issued,
            &self.codes_reused,
            &self.tokens_issued,
            &self.faults_injected,
            &self.rate_limited,
        ] {
            c.store(0, Relaxed);
        }
        *self.series.lock().unwrap_or_else(|p| p.into_inner()) = Series::default();
    }

    pub(crate) fn snapshot(&self) -> SimStats {
        let mut stats = SimStats::default();
        for e in SimEndpoint::ALL {
            let mut es = EndpointStats::default();
            for (status, c) in self.by_status[index(e)].iter().enumerate() {
                let n = c.load(Relaxed);
                if n > 0 {
                    es.by_status.insert(status as u16, n);
                    es.total += n;
                }
            }
            stats.total += es.total;
            stats.endpoints.insert(e.as_str().to_owned(), es);
        }
        stats.codes_issued = self.codes_issued.load(Relaxed);
        stats.codes_reused = self.codes_reused.load(Relaxed);
        stats.tokens_issued = self.tokens_issued.load(Relaxed);
        stats.faults_injected = self.faults_injected.load(Relaxed);
        stats.rate_limited = self.rate_limited.load(Relaxed);
        let series = self.series.lock().unwrap_or_else(|p| p.into_inner());
        if !series.counts.is_empty() {
            stats.api_per_second = PerSecond {
                start_unix: Some(series.start),
                counts: series.counts.iter().copied().collect(),
            };
        }
        stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_endpoint_and_status() {
        let r = StatsRecorder::new();
        r.record(SimEndpoint::Token, 200);
        r.record(SimEndpoint::Token, 200);
        r.record(SimEndpoint::Token, DROPPED);
        r.record(SimEndpoint::Userinfo, 401);
        r.record(SimEndpoint::SimSwapCheck, 200);
        r.record(SimEndpoint::CallForwardingCheck, 404);
        let s = r.snapshot();
        assert_eq!(s.count("sim_swap_check", 200), 1);
        assert_eq!(s.count("call_forwarding_check", 404), 1);
        assert_eq!(s.total("device_swap_check"), 0);
        assert_eq!(s.signals_total(), 2);
        assert_eq!(s.count("token", 200), 2);
        assert_eq!(s.count("token", 0), 1);
        assert_eq!(s.total("token"), 3);
        assert_eq!(s.total("userinfo"), 1);
        assert_eq!(s.total("authorize"), 0);
        assert_eq!(s.total, 6);
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<SimStats>(&json).unwrap(), s);
        r.reset();
        assert_eq!(r.snapshot().total, 0);
    }

    #[test]
    fn series_fills_gaps_and_summarises() {
        let mut s = Series::default();
        for sec in [100, 101, 101, 101, 103, 104] {
            s.add(sec);
        }
        assert_eq!(s.start, 100);
        assert_eq!(Vec::from(s.counts.clone()), vec![1, 3, 0, 1, 1]);
        let stats = SimStats {
            api_per_second: PerSecond {
                start_unix: Some(s.start),
                counts: s.counts.into(),
            },
            ..SimStats::default()
        };
        assert_eq!(stats.peak_per_second(), 3);
        assert_eq!(stats.min_per_second(), 0);
        assert!((stats.mean_per_second() - 4.0 / 3.0).abs() < 1e-9);
    }
}
