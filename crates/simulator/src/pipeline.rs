//! The steps every API request goes through around its endpoint logic: the simulator's own rate
//! limit, fault selection, latency, post-processing faults, and counting the outcome.

use crate::broken::{raw_answer, BodyShape};
use crate::conn::ConnInfo;
use crate::endpoint::SimEndpoint;
use crate::faults::{Action, Subject};
use crate::network_signals::wire;
use crate::responses;
use crate::state::{Active, SimState};
use crate::stats::DROPPED;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

/// How an API request ends.
pub(crate) enum Reply {
    /// Send this response.
    Respond(Response),
    /// Close the connection without a response.
    Drop,
    /// Write these bytes past the HTTP server (an answer of `status` whose body does not
    /// arrive whole), keep the connection open and silent for `hold`, then close it.
    Raw {
        status: u16,
        bytes: Vec<u8>,
        hold: Duration,
    },
}

/// Runs the rate limit, the fault rules and the latency before the endpoint logic.
///
/// `Err` ends the request now (429, an injected status, a drop). `Ok` may carry a fault the
/// endpoint applies after processing (a drop or delay after processing, a malformed body, an
/// authorize redirect error).
pub(crate) async fn admit(
    sim: &SimState,
    active: &Active,
    subject: Subject<'_>,
) -> Result<Option<Action>, Reply> {
    if let Some((bucket, endpoints)) = &active.limiter {
        if endpoints.contains(&subject.endpoint) && !bucket.try_acquire(sim.clock.now()) {
            sim.stats.rate_limited.fetch_add(1, Relaxed);
            let r = if subject.endpoint.is_signal() {
                wire::rate_limited()
            } else {
                responses::rate_limited()
            };
            return Err(Reply::Respond(r));
        }
    }
    let action = active.faults.pick(subject);
    if action.is_some() {
        sim.stats.faults_injected.fetch_add(1, Relaxed);
    }
    let post = match action {
        Some(Action::Status {
            status,
            retry_after,
            body,
        }) => {
            let (retry_after, body) = (retry_after.as_deref(), body.as_deref());
            let r = if subject.endpoint.is_signal() {
                wire::status_fault(status, retry_after, body)
            } else {
                responses::status_fault(status, retry_after, body)
            };
            return Err(Reply::Respond(r));
        }
        Some(Action::Drop {
            after_processing: false,
        }) => return Err(Reply::Drop),
        Some(Action::Slow {
            delay,
            after_processing: false,
        }) => {
            tokio::time::sleep(delay).await;
            None
        }
        other => other,
    };
    let latency = active.scenario.latency.for_endpoint(subject.endpoint);
    let wait = latency.fixed
        + latency
            .jitter
            .mul_f64(jitter_factor(active, latency.jitter));
    if !wait.is_zero() {
        tokio::time::sleep(wait).await;
    }
    Ok(post)
}

fn jitter_factor(active: &Active, jitter: Duration) -> f64 {
    if jitter.is_zero() {
        0.0
    } else {
        active.faults.random()
    }
}

/// Applies a fault that comes after processing to the endpoint's response.
pub(crate) async fn after(post: Option<Action>, response: Response) -> Reply {
    match post {
        Some(Action::Drop { .. }) => Reply::Drop,
        Some(Action::Slow { delay, .. }) => {
            tokio::time::sleep(delay).await;
            Reply::Respond(response)
        }
        Some(Action::Malformed { body }) => Reply::Respond(responses::malformed(body.as_deref())),
        Some(Action::BrokenBody(shape)) => broken(shape, response).await,
        _ => Reply::Respond(response),
    }
}

/// The endpoint's `response`, broken as `shape` says.
async fn broken(shape: BodyShape, response: Response) -> Reply {
    let (parts, body) = response.into_parts();
    // The endpoints' bodies are small JSON documents, built in memory.
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    Reply::Raw {
        status: parts.status.as_u16(),
        bytes: raw_answer(shape, parts.status, &parts.headers, &body),
        hold: shape.hold(),
    }
}

/// Counts the outcome and turns it into what axum sends; a drop or a raw answer closes the
/// connection first, so the response returned here never reaches the client.
pub(crate) async fn deliver(
    sim: &SimState,
    endpoint: SimEndpoint,
    conn: &ConnInfo,
    reply: Reply,
) -> Response {
    match reply {
        Reply::Respond(r) => {
            sim.stats.record(endpoint, r.status().as_u16());
            r
        }
        Reply::Drop => {
            sim.stats.record(endpoint, DROPPED);
            conn.kill();
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
        Reply::Raw {
            status,
            bytes,
            hold,
        } => {
            // Where the socket cannot be written the client sees a drop.
            let written = conn.write_raw(&bytes).await;
            sim.stats
                .record(endpoint, if written { status } else { DROPPED });
            if written && !hold.is_zero() {
                tokio::time::sleep(hold).await;
            }
            conn.kill();
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}
