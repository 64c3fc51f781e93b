//! `POST /oauth2/token`: exchanges a single-use authorization code for tokens (seed A.2, B.2).

use crate::conn::ConnInfo;
use crate::endpoint::SimEndpoint;
use crate::faults::Subject;
use crate::pipeline::{admit, after, deliver, Reply};
use crate::responses::{invalid_client, invalid_request, permission_denied};
use crate::state::{random_string, Active, Presented, SimState};
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use std::sync::Arc;

/// The form fields (first occurrence of each wins).
#[derive(Debug, Default)]
struct TokenForm {
    grant_type: Option<String>,
    code: Option<String>,
    redirect_uri: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

impl TokenForm {
    fn parse(body: &[u8]) -> TokenForm {
        let mut f = TokenForm::default();
        for (k, v) in url::form_urlencoded::parse(body) {
            let slot = match k.as_ref() {
                "grant_type" => &mut f.grant_type,
                "code" => &mut f.code,
                "redirect_uri" => &mut f.redirect_uri,
                "client_id" => &mut f.client_id,
                "client_secret" => &mut f.client_secret,
                _ => continue,
            };
            if slot.is_none() {
                *slot = Some(v.into_owned());
            }
        }
        f
    }
}

/// The A.2 success body.
#[derive(Debug, Serialize)]
struct TokenResponse {
    access_token: String,
    refresh_token: String,
    id_token: String,
    scope: &'static str,
    token_type: &'static str,
    expires_in: u64,
}

/// The axum handler.
pub(crate) async fn handle(
    State(sim): State<Arc<SimState>>,
    ConnectInfo(conn): ConnectInfo<ConnInfo>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    sim.stats.api_arrival();
    let reply = token(&sim, &headers, &TokenForm::parse(&body)).await;
    deliver(&sim, SimEndpoint::Token, &conn, reply).await
}

async fn token(sim: &SimState, headers: &HeaderMap, form: &TokenForm) -> Reply {
    let active = sim.active();
    let grant = form.code.as_deref().and_then(|c| sim.peek_code(c));
    let subject = Subject {
        endpoint: SimEndpoint::Token,
        login_hint: grant.as_ref().map(|g| g.login_hint.as_ref()),
        code_id: grant.as_ref().map(|g| g.id),
    };
    let post = match admit(sim, &active, subject).await {
        Ok(post) => post,
        Err(reply) => return reply,
    };
    let response = exchange(sim, &active, headers, form);
    after(post, response).await
}

/// The exchange proper. The gateway's `apiKey` and the client credentials are checked before
/// the code is looked at (401, or 403 for a key without the permission, leave the code unused); a request with
/// `grant_type=authorization_code` then uses the code whatever happens next.
fn exchange(sim: &SimState, active: &Active, headers: &HeaderMap, form: &TokenForm) -> Response {
    let api_key = headers.get("apikey").and_then(|v| v.to_str().ok());
    let forbidden = api_key.is_some_and(|k| active.forbidden_api_keys.contains(k));
    let api_key_ok = forbidden || api_key.is_some_and(|k| active.api_keys.contains(k));
    let client = form
        .client_id
        .as_deref()
        .and_then(|c| active.clients.get(c));
    let client_ok = client.is_some_and(|c| form.client_secret.as_deref() == Some(&c.client_secret));
    if !api_key_ok || !client_ok {
        return invalid_client();
    }
    if forbidden {
        return permission_denied();
    }
    if form.grant_type.as_deref() != Some("authorization_code") {
        return invalid_request();
    }
    let Some(code) = form.code.as_deref() else {
        return invalid_request();
    };
    let grant = match sim.present_code(code) {
        Presented::Fresh(g) => g,
        Presented::Unknown | Presented::Reused => return invalid_request(),
    };
    let valid = grant.expires_at > sim.clock.now()
        && form.client_id.as_deref() == Some(grant.client_id.as_ref())
        && form.redirect_uri.as_deref() == Some(grant.redirect_uri.as_ref());
    if !valid {
        return invalid_request();
    }
    let ttl = active.scenario.token_ttl;
    let body = TokenResponse {
        access_token: sim.issue_token(&grant, ttl),
        refresh_token: random_string(32),
        id_token: format!("eyJ{}", random_string(80)),
        scope: "openid tt:mobile_id",
        token_type: "Bearer",
        expires_in: ttl.as_secs(),
    };
    let mut r = Json(body).into_response();
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Scenario;
    use std::time::Duration;

    const CB: &str = "https://cb.example/cb";

    fn form(code: &str) -> TokenForm {
        TokenForm::parse(
            format!(
                "grant_type=authorization_code&code={code}&redirect_uri=https%3A%2F%2Fcb.example%2Fcb&client_id=client&client_secret=12345"
            )
            .as_bytes(),
        )
    }

    fn key() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("apiKey", HeaderValue::from_static("sim-api-key"));
        h
    }

    #[test]
    fn credentials_fail_before_the_code_is_used() {
        let sim = SimState::new(Scenario::default());
        let active = sim.active();
        let code = sim.mint_code("client", "381", CB);
        let r = exchange(&sim, &active, &HeaderMap::new(), &form(&code));
        assert_eq!(r.status(), 401);
        let mut bad_secret = form(&code);
        bad_secret.client_secret = Some("nope".into());
        assert_eq!(exchange(&sim, &active, &key(), &bad_secret).status(), 401);
        assert_eq!(exchange(&sim, &active, &key(), &form(&code)).status(), 200);
        assert_eq!(exchange(&sim, &active, &key(), &form(&code)).status(), 400);
        assert_eq!(sim.stats.snapshot().codes_reused, 1);
    }

    #[test]
    fn a_key_without_permission_is_403_after_the_credentials_and_keeps_the_code() {
        let sim = SimState::new(Scenario {
            forbidden_api_keys: vec!["no-perm".into()],
            ..Scenario::default()
        });
        let active = sim.active();
        let code = sim.mint_code("client", "381", CB);
        let mut h = HeaderMap::new();
        h.insert("apiKey", HeaderValue::from_static("no-perm"));
        let mut bad_secret = form(&code);
        bad_secret.client_secret = Some("nope".into());
        assert_eq!(exchange(&sim, &active, &h, &bad_secret).status(), 401);
        assert_eq!(exchange(&sim, &active, &h, &form(&code)).status(), 403);
        assert_eq!(exchange(&sim, &active, &key(), &form(&code)).status(), 200);
    }

    #[test]
    fn a_failed_validation_still_uses_the_code() {
        let sim = SimState::new(Scenario::default());
        let active = sim.active();
        let code = sim.mint_code("client", "381", "https://other.example/cb");
        assert_eq!(exchange(&sim, &active, &key(), &form(&code)).status(), 400);
        assert!(matches!(sim.present_code(&code), Presented::Reused));
    }

    #[test]
    fn expiry_follows_the_clock() {
        let sim = SimState::new(Scenario::default());
        let active = sim.active();
        let live = sim.mint_code("client", "381", CB);
        let dead = sim.mint_code("client", "381", CB);
        sim.clock.advance(Duration::from_secs(599));
        assert_eq!(exchange(&sim, &active, &key(), &form(&live)).status(), 200);
        sim.clock.advance(Duration::from_secs(2));
        assert_eq!(exchange(&sim, &active, &key(), &form(&dead)).status(), 400);
    }

    #[test]
    fn wrong_grant_type_is_invalid_request() {
        let sim = SimState::new(Scenario::default());
        let active = sim.active();
        let code = sim.mint_code("client", "381", CB);
        let mut f = form(&code);
        f.grant_type = Some("refresh_token".into());
        assert_eq!(exchange(&sim, &active, &key(), &f).status(), 400);
        assert_eq!(exchange(&sim, &active, &key(), &form(&code)).status(), 200);
    }
}
