//! The simulator's control endpoints under `/_sim`: stats, scenario replacement, stats reset.

use crate::scenario::Scenario;
use crate::state::SimState;
use crate::stats::SimStats;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::sync::Arc;

/// `GET /_sim/stats`: the counters as JSON ([`SimStats`]).
pub(crate) async fn stats(State(sim): State<Arc<SimState>>) -> Json<SimStats> {
    Json(sim.stats.snapshot())
}

/// `PUT /_sim/scenario` with a TOML body: replaces the scenario (204), or 400 naming the problem.
pub(crate) async fn put_scenario(State(sim): State<Arc<SimState>>, body: String) -> Response {
    match Scenario::from_toml_str(&body) {
        Ok(s) => {
            sim.set_scenario(s);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    }
}

/// `GET /_sim/scenario`: the scenario in force, as TOML.
pub(crate) async fn get_scenario(State(sim): State<Arc<SimState>>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/toml")],
        sim.active().scenario.to_toml_string(),
    )
        .into_response()
}

/// `POST /_sim/reset-stats`: zeroes the counters (204).
pub(crate) async fn reset_stats(State(sim): State<Arc<SimState>>) -> StatusCode {
    sim.stats.reset();
    StatusCode::NO_CONTENT
}
