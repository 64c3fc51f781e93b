//! The admin listener (`admin.listen`): `GET /metrics` (Prometheus text), `GET /healthz`
//! (process alive), `GET /readyz` (brokers answer, every topic usable, assigned, able to
//! produce, circuit breaker closed; the reason when not), and a
//! live status page, `GET /` polling `GET /status.json`, fed by a ring of per-second samples.

use crate::contract::Status;
use crate::telemetry::counters::WorkerCounters;
use crate::telemetry::prometheus::Telemetry;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Json, Response};
use axum::routing::get;
use axum::Router;
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio_util::sync::CancellationToken;

/// Seconds of history the status page can draw (10 minutes).
pub const HISTORY_SECONDS: usize = 600;

const PAGE: &str = include_str!("status.html");

/// Cumulative counters at one second.
#[derive(Debug, Clone, Copy, Default, Serialize)]
struct Sample {
    /// Unix seconds.
    t: u64,
    consumed: u64,
    verified: u64,
    not_verified: u64,
    failed: u64,
    signals_only: u64,
    dead_letters: u64,
}

impl Sample {
    fn take(counters: &WorkerCounters) -> Sample {
        let mut s = Sample {
            t: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            consumed: WorkerCounters::get(&counters.consumed),
            dead_letters: WorkerCounters::get(&counters.dead_letters),
            ..Sample::default()
        };
        for ((status, _), n) in counters.outcomes() {
            match status {
                Status::Verified => s.verified += n,
                Status::NotVerified => s.not_verified += n,
                Status::Failed => s.failed += n,
                Status::SignalsOnly => s.signals_only += n,
            }
        }
        s
    }
}

#[derive(Debug)]
struct AdminState {
    counters: Arc<WorkerCounters>,
    telemetry: Telemetry,
    samples: Mutex<VecDeque<Sample>>,
}

/// Binds `listen` and serves the admin endpoints until `stop` fires; records the bound address
/// in [`WorkerCounters::admin_addr`]. A listener that cannot bind is logged and skipped: the
/// worker's job matters more than its dashboard.
pub async fn start(
    listen: &str,
    counters: Arc<WorkerCounters>,
    telemetry: Telemetry,
    stop: CancellationToken,
) -> Option<SocketAddr> {
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(listen, error = %e, "cannot bind the admin listener; running without /metrics");
            return None;
        }
    };
    let addr = listener.local_addr().ok()?;
    counters.set_admin_addr(addr);
    let state = Arc::new(AdminState {
        counters,
        telemetry,
        samples: Mutex::new(VecDeque::with_capacity(HISTORY_SECONDS + 1)),
    });
    tokio::spawn(sample_every_second(state.clone(), stop.clone()));
    let app = router(state);
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
        if let Err(e) = served {
            tracing::warn!(error = %e, "admin listener failed");
        }
    });
    tracing::info!(%addr, "admin listener started");
    Some(addr)
}

fn router(state: Arc<AdminState>) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/status.json", get(status))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state)
}

async fn sample_every_second(state: Arc<AdminState>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let sample = Sample::take(&state.counters);
        let mut ring = state.samples.lock().unwrap_or_else(|e| e.into_inner());
        if ring.len() > HISTORY_SECONDS {
            ring.pop_front();
        }
        ring.push_back(sample);
    }
}

async fn metrics(State(state): State<Arc<AdminState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.telemetry.render(),
    )
        .into_response()
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<Arc<AdminState>>) -> Response {
    match not_ready_reason(&state.counters) {
        None => (StatusCode::OK, "ready\n").into_response(),
        Some(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        )
            .into_response(),
    }
}

/// Why `/readyz` answers 503, or `None` when ready: [`WorkerCounters::not_ready_reason`].
fn not_ready_reason(s: &WorkerCounters) -> Option<String> {
    s.not_ready_reason()
}

async fn page() -> Html<&'static str> {
    Html(PAGE)
}

/// What `/status.json` answers: counters only, never a job's content.
#[derive(Debug, Serialize)]
struct StatusBody {
    ready: bool,
    /// What `/readyz` says when not ready (`null` while ready).
    not_ready_reason: Option<String>,
    counters: BTreeMap<&'static str, u64>,
    outcomes: Vec<OutcomeCount>,
    dead_letters_by_class: BTreeMap<&'static str, u64>,
    lag: BTreeMap<i32, i64>,
    breaker: BreakerStatus,
    /// Per-second increments, oldest first.
    series: Vec<Sample>,
}

/// The circuit breaker in `/status.json`.
#[derive(Debug, Serialize)]
struct BreakerStatus {
    open: bool,
    /// Why it is open (`null` while closed).
    reason: Option<String>,
    /// Trips by trigger.
    trips: BTreeMap<&'static str, u64>,
}

/// Results of one (status, class) in `/status.json`.
#[derive(Debug, Serialize)]
struct OutcomeCount {
    status: &'static str,
    class: Option<&'static str>,
    count: u64,
}

async fn status(State(state): State<Arc<AdminState>>) -> Json<StatusBody> {
    let s = &*state.counters;
    let get = WorkerCounters::get;
    let counters = BTreeMap::from([
        ("consumed", get(&s.consumed)),
        ("results", get(&s.results)),
        ("dead_letters", get(&s.dead_letters)),
        ("duplicates", get(&s.duplicates)),
        ("abandoned", get(&s.abandoned)),
        ("interrupted", get(&s.interrupted)),
        ("http_requests", get(&s.http_requests)),
        ("retries", get(&s.retries)),
        ("produce_errors", get(&s.produce_errors)),
        ("commits", get(&s.commits)),
        ("in_flight", get(&s.in_flight)),
        ("paused_partitions", get(&s.paused_partitions)),
    ]);
    let outcomes = s
        .outcomes()
        .into_iter()
        .map(|((status, class), count)| OutcomeCount {
            status: status.as_str(),
            class: class.map(|c| c.as_str()),
            count,
        })
        .collect();
    let dead_letters_by_class = s
        .dead_letters_by_class()
        .into_iter()
        .map(|(c, n)| (c.as_str(), n))
        .collect();
    let series = {
        let ring = state.samples.lock().unwrap_or_else(|e| e.into_inner());
        ring.iter()
            .zip(ring.iter().skip(1))
            .map(|(a, b)| Sample {
                t: b.t,
                consumed: b.consumed.saturating_sub(a.consumed),
                verified: b.verified.saturating_sub(a.verified),
                not_verified: b.not_verified.saturating_sub(a.not_verified),
                failed: b.failed.saturating_sub(a.failed),
                signals_only: b.signals_only.saturating_sub(a.signals_only),
                dead_letters: b.dead_letters.saturating_sub(a.dead_letters),
            })
            .collect()
    };
    let not_ready_reason = not_ready_reason(s);
    Json(StatusBody {
        ready: not_ready_reason.is_none(),
        not_ready_reason,
        counters,
        outcomes,
        dead_letters_by_class,
        lag: s.lag(),
        breaker: BreakerStatus {
            open: s.breaker_open.load(std::sync::atomic::Ordering::Relaxed),
            reason: s.breaker_reason(),
            trips: s.breaker_trips(),
        },
        series,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering::Relaxed;

    fn up() -> WorkerCounters {
        let s = WorkerCounters::default();
        for flag in [&s.brokers_ok, &s.assigned, &s.producer_ok] {
            flag.store(true, Relaxed);
        }
        s
    }

    #[test]
    fn a_topic_that_cannot_be_used_is_the_reason_whatever_the_brokers_say() {
        let s = up();
        assert_eq!(not_ready_reason(&s), None);
        assert!(s.ready());
        s.set_unready(
            "publish",
            "topics.results",
            "cannot publish to topics.results 'r': denied".into(),
        );
        s.set_unready(
            "readiness",
            "topics.dead_letter",
            "topics.dead_letter: topic 'd' does not exist".into(),
        );
        assert!(!s.ready());
        assert_eq!(
            not_ready_reason(&s).unwrap(),
            "topics.dead_letter: topic 'd' does not exist; \
             cannot publish to topics.results 'r': denied"
        );
        // A probe finding the results topic does not withdraw a publish failure.
        assert!(!s.clear_unready("readiness", "topics.results"));
        assert!(!s.ready());
        assert!(s.clear_unready("publish", "topics.results"));
        assert!(s.clear_unready("readiness", "topics.dead_letter"));
        assert!(s.ready());
    }

    #[test]
    fn brokers_that_do_not_answer_come_first_and_topics_before_the_assignment() {
        let s = up();
        s.assigned.store(false, Relaxed);
        s.set_unready("preflight", "topics.results", "waiting".into());
        assert_eq!(not_ready_reason(&s).unwrap(), "waiting");
        s.brokers_ok.store(false, Relaxed);
        assert_eq!(
            not_ready_reason(&s).unwrap(),
            "the Kafka brokers do not answer"
        );
    }
}
