//! API checks, without spending a code: every client profile's api key and client credentials
//! (a token request with a code that cannot exist answers 400 `invalid_request` when they are
//! accepted, 401 `invalid_client` — or 400 `invalid_client`/`unauthorized_client` — when not,
//! 403 when the key lacks the permission; seed B.2),
//! and, when signals are configured, that the Network Signals base URL accepts the profile's
//! api key (a request without a number answers 400 once the key is accepted).

use super::check::Check;
use crate::config::{mask_url_credentials, Config};
use crate::secret::Secret;
use crate::silentauth::{Api, HttpOutcome, SignalCall, SilentAuthClient};

/// The redirect_uri of the made-up token request (the `.invalid` TLD never resolves).
const REDIRECT_URI: &str = "https://doctor.silentauth-worker.invalid/callback";

/// True when Network Signals are in use: `api.signals_base_url` is not the built-in default,
/// or a profile sets `signals_requests_per_second`.
pub(super) fn signals_configured(config: &Config) -> bool {
    config.api.signals_base_url != crate::config::DEFAULT_SIGNALS_BASE_URL
        || config
            .clients
            .values()
            .any(|c| c.signals_requests_per_second.is_some())
}

/// Every API check, one per profile (and one more per profile for signals when configured).
pub(super) async fn checks(config: &Config) -> Vec<Check> {
    let client = SilentAuthClient::new(&config.api.base_url, config.api.timeout)
        .and_then(|c| c.with_signals_base_url(&config.api.signals_base_url));
    let client = match client {
        Ok(c) => c,
        Err(e) => {
            return vec![Check::fail(
                "api.base_url",
                format!("cannot build the HTTP client: {e}"),
                "correct api.base_url and api.signals_base_url",
            )]
        }
    };
    if config.clients.is_empty() {
        return vec![Check::fail(
            "clients",
            "no client profile is configured: every job would be an invalid_job",
            "add a [clients.default] table with client_id, client_secret and api_key",
        )];
    }
    let signals = signals_configured(config);
    let mut out = Vec::new();
    for (name, profile) in &config.clients {
        let creds = crate::silentauth::client::Credentials {
            client_id: profile.client_id.clone(),
            client_secret: profile.client_secret.clone(),
            api_key: profile.api_key.clone(),
        };
        let code = Secret::new(format!("doctor-{}", uuid::Uuid::new_v4().simple()));
        let answer = client.token(&creds, &code, REDIRECT_URI).await;
        out.push(token_check(config, name, answer));
        if signals {
            let answer = client
                .signal(&profile.api_key, SignalCall::SimSwapCheck, "", None)
                .await;
            out.push(signals_check(config, name, answer));
        }
    }
    out
}

/// The `error` (OAuth) or `code` (CAMARA) field of an error body, for the report; never the
/// rest of the body.
fn error_code(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.get("error")
                .or_else(|| v.get("code"))
                .and_then(|e| e.as_str())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "no error code".to_owned())
}

fn env_prefix(name: &str) -> String {
    format!("SILENTAUTH__CLIENTS__{}__", name.to_ascii_uppercase())
}

/// True when a token 400's `error` rejects the client, not the made-up code (RFC 6749 §5.2):
/// the credentials are wrong, as with a 401.
fn client_rejected(code: &str) -> bool {
    matches!(code, "invalid_client" | "unauthorized_client")
}

fn token_check(config: &Config, name: &str, answer: HttpOutcome) -> Check {
    let check = format!("clients.{name}");
    let base = &mask_url_credentials(&config.api.base_url);
    let keys = format!(
        "check clients.{name}.api_key, client_id and client_secret ({}API_KEY, ...)",
        env_prefix(name)
    );
    match answer {
        HttpOutcome::Response(r) => {
            let code = error_code(&r.body);
            match r.status {
                400 if !client_rejected(&code) => Check::pass(
                    check,
                    format!(
                        "api key and client credentials accepted at {base} (a made-up code was \
                         refused with 400 {code})"
                    ),
                ),
                s @ (400 | 401) => Check::fail(
                    check,
                    format!("api key or client credentials rejected at {base} ({s} {code})"),
                    keys,
                ),
                403 => Check::fail(
                    check,
                    format!("the api key lacks the Silent Authentication permission (403 {code})"),
                    format!(
                        "ask tyntec to enable Silent Authentication for the api key of \
                         clients.{name}, or use another key"
                    ),
                ),
                s if (200..300).contains(&s) => Check::fail(
                    check,
                    format!("{base} accepted a code that cannot exist ({s})"),
                    "point api.base_url at the Silent Authentication API",
                ),
                s => Check::fail(
                    check,
                    format!("{base} answered {s} ({code}) to a token request"),
                    "check api.base_url; retry later if the API is having trouble",
                ),
            }
        }
        HttpOutcome::Incomplete { status, cause } => Check::fail(
            check,
            format!(
                "{base} answered {status} to a token request but its body broke off: {cause:?}"
            ),
            "check api.base_url and proxies; retry later if the API is having trouble",
        ),
        HttpOutcome::Transport(t) => Check::fail(
            check,
            format!("no answer from {base}: {t:?}"),
            "check api.base_url, DNS, proxies and TLS from this host",
        ),
    }
}

fn signals_check(config: &Config, name: &str, answer: HttpOutcome) -> Check {
    let check = format!("clients.{name} signals");
    let base = &mask_url_credentials(&config.api.signals_base_url);
    match answer {
        HttpOutcome::Response(r) => {
            let code = error_code(&r.body);
            match r.status {
                400 => Check::pass(
                    check,
                    format!(
                        "api key accepted at {base} (a request without a number was refused \
                         with 400 {code})"
                    ),
                ),
                401 => Check::fail(
                    check,
                    format!("api key rejected at {base} (401 {code})"),
                    format!("check clients.{name}.api_key ({}API_KEY)", env_prefix(name)),
                ),
                403 => Check::fail(
                    check,
                    format!("the api key lacks the Network Signals permission (403 {code})"),
                    format!(
                        "ask tyntec to enable Network Signals for the api key of clients.{name}"
                    ),
                ),
                s => Check::fail(
                    check,
                    format!("{base} answered {s} ({code}) to a SIM swap check"),
                    "check api.signals_base_url (it ends in /network-signal/v1)",
                ),
            }
        }
        HttpOutcome::Incomplete { status, cause } => Check::fail(
            check,
            format!(
                "{base} answered {status} to a SIM swap check but its body broke off: {cause:?}"
            ),
            "check api.signals_base_url and proxies; retry later if the API is having trouble",
        ),
        HttpOutcome::Transport(t) => Check::fail(
            check,
            format!("no answer from {base}: {t:?}"),
            "check api.signals_base_url, DNS, proxies and TLS from this host",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::check::Grade;
    use crate::silentauth::HttpResponse;

    fn answer(status: u16, error: &str) -> HttpOutcome {
        HttpOutcome::Response(HttpResponse {
            status,
            body: serde_json::json!({"error": error}).to_string().into_bytes(),
            retry_after: None,
        })
    }

    #[test]
    fn a_400_that_rejects_the_client_fails_like_a_401() {
        let mut config = Config::default();
        config.api.base_url = "https://user:s3cret@api.example.com/silent-auth/v1".into();
        for (status, error, expected) in [
            (400, "invalid_request", Grade::Pass),
            (400, "invalid_grant", Grade::Pass),
            (400, "invalid_client", Grade::Fail),
            (400, "unauthorized_client", Grade::Fail),
            (401, "invalid_client", Grade::Fail),
        ] {
            let c = token_check(&config, "default", answer(status, error));
            assert_eq!(c.status, expected, "{status} {error}: {c:?}");
            assert!(c.detail.contains(&format!("{status} {error}")), "{c:?}");
            assert!(c.detail.contains("https://***@api.example.com"), "{c:?}");
            assert!(
                !c.detail.contains("s3cret") && !c.detail.contains("user"),
                "{c:?}"
            );
        }
    }
}
