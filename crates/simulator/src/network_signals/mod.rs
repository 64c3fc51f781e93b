//! tyntec Network Signals, simulated under `/network-signal/v1`: SIM swap and device swap (check
//! and retrieve-date) and unconditional call forwarding, answered from the scenario's `[signals]`.
//!
//! Every request goes through the same pipeline as the Silent Auth endpoints (rate limit, fault
//! rules selected by the number, latency, stats); then `apiKey` is checked (401), the body (400),
//! whether the operator knows the number (404), and the answer comes from the number's profile
//! and the simulator's clock. Errors use the CAMARA shape. Numbers are never logged.

pub(crate) mod profile;
pub(crate) mod wire;

use crate::conn::ConnInfo;
use crate::endpoint::SimEndpoint;
use crate::faults::Subject;
use crate::pipeline::{admit, after, deliver, Reply};
use crate::state::{Active, SimState};
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use profile::digits;
use std::sync::Arc;
use wire::{Question, SignalRequest, SIGNALS_PATH_PREFIX};

/// The five `POST` routes, ready to merge into the simulator's router.
pub(crate) fn routes() -> Router<Arc<SimState>> {
    wire::PATHS
        .into_iter()
        .fold(Router::new(), |router, (endpoint, path)| {
            router.route(
                &format!("{SIGNALS_PATH_PREFIX}{path}"),
                post(
                    move |State(sim): State<Arc<SimState>>,
                          ConnectInfo(conn): ConnectInfo<ConnInfo>,
                          headers: HeaderMap,
                          body: Bytes| async move {
                        let reply = signal(&sim, endpoint, &headers, &body).await;
                        deliver(&sim, endpoint, &conn, reply).await
                    },
                ),
            )
        })
}

async fn signal(sim: &SimState, endpoint: SimEndpoint, headers: &HeaderMap, body: &[u8]) -> Reply {
    let active = sim.active();
    let request = wire::parse_request(endpoint, body);
    // Fault rules with `login_hints` select on the number; an invalid body has none.
    let subject = Subject {
        endpoint,
        login_hint: request.as_ref().ok().map(|r| digits(&r.number)),
        code_id: None,
    };
    let post = match admit(sim, &active, subject).await {
        Ok(post) => post,
        Err(reply) => return reply,
    };
    let response = answer(sim, &active, headers, request);
    after(post, response).await
}

/// The endpoint proper: `apiKey` (401, or 403 for a key without the permission), the body (400), a number the operator does not know
/// (404), then the number's signal as of the simulator's clock.
fn answer(
    sim: &SimState,
    active: &Active,
    headers: &HeaderMap,
    request: Result<SignalRequest, String>,
) -> Response {
    let api_key = headers.get("apikey").and_then(|v| v.to_str().ok());
    if api_key.is_some_and(|k| active.forbidden_api_keys.contains(k)) {
        return wire::permission_denied();
    }
    if !api_key.is_some_and(|k| active.api_keys.contains(k)) {
        return wire::unauthenticated();
    }
    let request = match request {
        Ok(r) => r,
        Err(message) => return wire::invalid_argument(&message),
    };
    let profile = active.signals.lookup(&request.number);
    if profile.unknown() {
        return wire::identifier_not_found();
    }
    let elapsed = sim.clock.now().saturating_duration_since(active.since);
    match request.question {
        Question::Swapped { swap, max_age } => {
            wire::swapped(profile.swapped_within(swap, elapsed, max_age))
        }
        Question::Date(swap) => {
            wire::date(swap, profile.swap_date(swap, elapsed, sim.clock.wall_now()))
        }
        Question::Forwarding => wire::forwarding(profile.call_forwarding()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Scenario;
    use axum::http::HeaderValue;
    use std::time::Duration;

    fn key() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("apiKey", HeaderValue::from_static("sim-api-key"));
        h
    }

    fn ask(sim: &SimState, headers: &HeaderMap, endpoint: SimEndpoint, body: &str) -> u16 {
        let active = sim.active();
        let request = wire::parse_request(endpoint, body.as_bytes());
        answer(sim, &active, headers, request).status().as_u16()
    }

    #[test]
    fn credentials_come_before_the_body_and_the_body_before_the_lookup() {
        let sim = SimState::new(
            Scenario::from_toml_str("[[signals.rules]]\nsuffix = \"0\"\nunknown = true").unwrap(),
        );
        let e = SimEndpoint::SimSwapCheck;
        assert_eq!(ask(&sim, &HeaderMap::new(), e, "nope"), 401);
        let mut wrong = HeaderMap::new();
        wrong.insert("apiKey", HeaderValue::from_static("other"));
        assert_eq!(
            ask(&sim, &wrong, e, r#"{"phoneNumber":"+4915100000000"}"#),
            401
        );
        assert_eq!(ask(&sim, &key(), e, "nope"), 400);
        assert_eq!(
            ask(&sim, &key(), e, r#"{"phoneNumber":"+4915100000000"}"#),
            404
        );
        assert_eq!(
            ask(&sim, &key(), e, r#"{"phoneNumber":"+4915100000001"}"#),
            200
        );
    }

    async fn swapped(sim: &SimState) -> serde_json::Value {
        let active = sim.active();
        let body = br#"{"phoneNumber":"+4915100000001","maxAge":240}"#;
        let request = wire::parse_request(SimEndpoint::SimSwapCheck, body);
        let r = answer(sim, &active, &key(), request);
        let bytes = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
        serde_json::from_slice::<serde_json::Value>(&bytes).unwrap()["swapped"].clone()
    }

    #[tokio::test]
    async fn ages_count_from_when_the_scenario_took_effect() {
        let toml = "[[signals.rules]]\nsuffix = \"1\"\nsim_swap_age = \"230m\"";
        let sim = SimState::new(Scenario::from_toml_str(toml).unwrap());
        assert_eq!(swapped(&sim).await, true);
        sim.clock.advance(Duration::from_secs(11 * 60));
        assert_eq!(swapped(&sim).await, false);
        sim.set_scenario(Scenario::from_toml_str(toml).unwrap());
        assert_eq!(
            swapped(&sim).await,
            true,
            "a new scenario starts its ages afresh"
        );
    }
}
