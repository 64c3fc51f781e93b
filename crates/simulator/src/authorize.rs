//! `GET /oauth2/authorize`: validates the request as seed A.1/B.1 describe and redirects to
//! `redirect_uri` with a fresh code or with an error.

use crate::conn::ConnInfo;
use crate::endpoint::SimEndpoint;
use crate::faults::{Action, Subject};
use crate::pipeline::{admit, after, deliver, Reply};
use crate::responses::{error_json, AuthorizeError};
use crate::state::{Active, SimState};
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use url::Url;

/// The scope tokens the simulator knows.
const OPENID: &str = "openid";
const PHONE_VERIFY: &str = "tt:phone_verify";

/// The query parameters (first occurrence of each wins).
#[derive(Debug, Default)]
struct Params {
    response_type: Option<String>,
    client_id: Option<String>,
    state: Option<String>,
    scope: Option<String>,
    redirect_uri: Option<String>,
    login_hint: Option<String>,
}

impl Params {
    fn parse(query: &str) -> Params {
        let mut p = Params::default();
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            let slot = match k.as_ref() {
                "response_type" => &mut p.response_type,
                "client_id" => &mut p.client_id,
                "state" => &mut p.state,
                "scope" => &mut p.scope,
                "redirect_uri" => &mut p.redirect_uri,
                "login_hint" => &mut p.login_hint,
                _ => continue,
            };
            if slot.is_none() {
                *slot = Some(v.into_owned());
            }
        }
        p
    }
}

/// The axum handler.
pub(crate) async fn handle(
    State(sim): State<Arc<SimState>>,
    ConnectInfo(conn): ConnectInfo<ConnInfo>,
    RawQuery(query): RawQuery,
) -> Response {
    let reply = authorize(&sim, &Params::parse(query.as_deref().unwrap_or(""))).await;
    deliver(&sim, SimEndpoint::Authorize, &conn, reply).await
}

/// An absolute http(s) URL without a fragment, as OAuth requires of a redirect_uri.
fn redirect_target(raw: Option<&str>) -> Option<Url> {
    let url = Url::parse(raw?).ok()?;
    let ok = matches!(url.scheme(), "http" | "https") && url.has_host() && url.fragment().is_none();
    ok.then_some(url)
}

fn bad_redirect(description: &str) -> Reply {
    Reply::Respond(error_json(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        description,
    ))
}

async fn authorize(sim: &SimState, p: &Params) -> Reply {
    let active = sim.active();
    let Some(mut target) = redirect_target(p.redirect_uri.as_deref()) else {
        return bad_redirect("redirect_uri is missing or not an absolute http(s) URL");
    };
    let client = p.client_id.as_deref().and_then(|c| active.clients.get(c));
    if let Some(allowed) = client.and_then(|c| c.redirect_uris.as_ref()) {
        if !allowed.iter().any(|u| Some(u) == p.redirect_uri.as_ref()) {
            return bad_redirect("redirect_uri is not registered for this client");
        }
    }
    let subject = Subject {
        endpoint: SimEndpoint::Authorize,
        login_hint: p.login_hint.as_deref(),
        code_id: None,
    };
    let post = match admit(sim, &active, subject).await {
        Ok(post) => post,
        Err(reply) => return reply,
    };
    {
        let mut q = target.query_pairs_mut();
        match &post {
            Some(Action::RedirectError { error, description }) => {
                q.append_pair("error", error.code());
                q.append_pair("error_description", description);
            }
            // A broken redirect: neither code nor error.
            Some(Action::Malformed { .. }) => {}
            _ => match validate(&active, p) {
                Ok(login_hint) => {
                    let client_id = p.client_id.as_deref().unwrap_or_default();
                    let redirect_uri = p.redirect_uri.as_deref().unwrap_or_default();
                    let code = sim.mint_code(client_id, login_hint, redirect_uri);
                    q.append_pair("code", &code);
                }
                Err(e) => {
                    q.append_pair("error", e.code());
                    q.append_pair("error_description", e.description());
                }
            },
        }
        if let Some(state) = &p.state {
            q.append_pair("state", state);
        }
    }
    let response = (
        StatusCode::FOUND,
        [(header::LOCATION, target.as_str().to_owned())],
    )
        .into_response();
    // Only drops and delays remain to apply; the redirect itself carried the other faults.
    let post = post.filter(|a| matches!(a, Action::Drop { .. } | Action::Slow { .. }));
    after(post, response).await
}

/// The B.1 checks, in order; on success the login_hint to bind the code to.
///
/// Scope handling: any token other than `openid` and `tt:phone_verify` is `unsupported_scope`;
/// a scope without `openid` is `missing_scope`; `openid` alone is `insufficient_scope`.
fn validate<'a>(active: &Active, p: &'a Params) -> Result<&'a str, AuthorizeError> {
    let known_client = p
        .client_id
        .as_deref()
        .is_some_and(|c| active.clients.contains_key(c));
    if p.response_type.as_deref() != Some("code") || !known_client {
        return Err(AuthorizeError::InvalidClientIdRequest);
    }
    let scope = p.scope.as_deref().unwrap_or("");
    let tokens: Vec<&str> = scope.split_whitespace().collect();
    if tokens.is_empty() {
        return Err(AuthorizeError::MissingScope);
    }
    if tokens.iter().any(|t| *t != OPENID && *t != PHONE_VERIFY) {
        return Err(AuthorizeError::UnsupportedScope);
    }
    if !tokens.contains(&OPENID) {
        return Err(AuthorizeError::MissingScope);
    }
    if !tokens.contains(&PHONE_VERIFY) {
        return Err(AuthorizeError::InsufficientScope);
    }
    match p.login_hint.as_deref() {
        Some(h) if !h.trim().is_empty() => Ok(h),
        _ => Err(AuthorizeError::MissingLoginHint),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Scenario;

    fn check(query: &str) -> Result<String, AuthorizeError> {
        let sim = SimState::new(Scenario::default());
        let p = Params::parse(query);
        validate(&sim.active(), &p).map(str::to_owned)
    }

    const OK: &str = "response_type=code&client_id=client&scope=openid%20tt%3Aphone_verify";

    #[test]
    fn b1_checks_in_order() {
        use AuthorizeError::*;
        assert_eq!(check(&format!("{OK}&login_hint=381")), Ok("381".into()));
        assert_eq!(
            check("response_type=token&client_id=client"),
            Err(InvalidClientIdRequest)
        );
        assert_eq!(
            check("response_type=code&client_id=x&scope=openid"),
            Err(InvalidClientIdRequest)
        );
        assert_eq!(
            check("response_type=code&client_id=client"),
            Err(MissingScope)
        );
        assert_eq!(
            check("response_type=code&client_id=client&scope=+"),
            Err(MissingScope)
        );
        assert_eq!(
            check("response_type=code&client_id=client&scope=tt%3Aphone_verify"),
            Err(MissingScope)
        );
        assert_eq!(
            check("response_type=code&client_id=client&scope=openid"),
            Err(InsufficientScope)
        );
        assert_eq!(
            check("response_type=code&client_id=client&scope=openid+tt%3Aphone_verify+email"),
            Err(UnsupportedScope)
        );
        assert_eq!(check(OK), Err(MissingLoginHint));
        assert_eq!(check(&format!("{OK}&login_hint=")), Err(MissingLoginHint));
    }

    #[test]
    fn first_parameter_occurrence_wins() {
        let p = Params::parse("state=a&state=b&login_hint=%2B381");
        assert_eq!(p.state.as_deref(), Some("a"));
        assert_eq!(p.login_hint.as_deref(), Some("+381"));
    }

    #[test]
    fn redirect_uri_must_be_absolute_http() {
        assert!(redirect_target(Some("https://cb.example/x?y=1")).is_some());
        assert!(redirect_target(Some("http://127.0.0.1:9/cb")).is_some());
        assert!(redirect_target(Some("/relative")).is_none());
        assert!(redirect_target(Some("ftp://cb.example/")).is_none());
        assert!(redirect_target(Some("https://cb.example/#frag")).is_none());
        assert!(redirect_target(None).is_none());
    }
}
