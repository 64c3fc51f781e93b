//! Device emulation: what a phone does at authorize, for tests, `demo` and load generators.

use anyhow::{bail, Context};
use url::Url;

/// What the authorize redirect carried (seed A.1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthorizeRedirect {
    /// The authorization code, on success.
    pub code: Option<String>,
    /// The B.1 error code, on failure.
    pub error: Option<String>,
    /// The B.1 error description, on failure.
    pub error_description: Option<String>,
    /// The echoed `state`.
    pub state: Option<String>,
}

impl AuthorizeRedirect {
    /// Reads `code`, `error`, `error_description` and `state` from a redirect URL.
    pub fn from_url(url: &Url) -> AuthorizeRedirect {
        let mut r = AuthorizeRedirect::default();
        for (k, v) in url.query_pairs() {
            let slot = match k.as_ref() {
                "code" => &mut r.code,
                "error" => &mut r.error,
                "error_description" => &mut r.error_description,
                "state" => &mut r.state,
                _ => continue,
            };
            if slot.is_none() {
                *slot = Some(v.into_owned());
            }
        }
        r
    }
}

/// Calls `GET {base_url}/oauth2/authorize` as a device would, with the seed's scope, and reads the
/// redirect's `Location` without following it.
///
/// Pass a client built with `reqwest::redirect::Policy::none()`. With a client that follows
/// redirects, the followed URL is read instead (when the callback host answers or fails to connect).
/// A non-redirect answer (400 for a bad redirect_uri, an injected 5xx, a dropped connection) is an
/// error naming the status.
pub async fn authorize(
    http: &reqwest::Client,
    base_url: &str,
    client_id: &str,
    redirect_uri: &str,
    login_hint: &str,
    state: &str,
) -> anyhow::Result<AuthorizeRedirect> {
    let mut url = Url::parse(&format!(
        "{}/oauth2/authorize",
        base_url.trim_end_matches('/')
    ))
    .context("invalid simulator base URL")?;
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("state", state)
        .append_pair("scope", "openid tt:phone_verify")
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("login_hint", login_hint);
    let response = match http.get(url.clone()).send().await {
        Ok(r) => r,
        // A redirect-following client failed to reach the callback: the URL it tried is the redirect.
        Err(e) => match e.url() {
            Some(target) if target.as_str().starts_with(redirect_uri) => {
                return Ok(AuthorizeRedirect::from_url(target))
            }
            _ => return Err(anyhow::Error::new(e).context("authorize request failed")),
        },
    };
    let status = response.status();
    if status.is_redirection() {
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .context("authorize redirect without Location")?
            .to_str()
            .context("authorize Location is not text")?;
        let target = url
            .join(location)
            .context("authorize Location is not a URL")?;
        return Ok(AuthorizeRedirect::from_url(&target));
    }
    if response.url().as_str().starts_with(redirect_uri) {
        return Ok(AuthorizeRedirect::from_url(response.url()));
    }
    let body = response.text().await.unwrap_or_default();
    bail!("authorize answered {status} instead of a redirect: {body}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_redirect_query() {
        let u = Url::parse(
            "https://cb.example/cb?x=1&error=missing_scope&error_description=A+required+OAuth+2.0+scope+parameter+is+missing&state=s%201",
        )
        .unwrap();
        let r = AuthorizeRedirect::from_url(&u);
        assert_eq!(r.code, None);
        assert_eq!(r.error.as_deref(), Some("missing_scope"));
        assert_eq!(
            r.error_description.as_deref(),
            Some("A required OAuth 2.0 scope parameter is missing")
        );
        assert_eq!(r.state.as_deref(), Some("s 1"));
    }
}
