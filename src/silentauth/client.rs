//! The HTTP client for `POST /oauth2/token` and `GET /oauth2/userinfo`, and strict parsing of
//! their success bodies.

use super::classify::Transport;
use super::network_signals::SignalCall;
use crate::config::DEFAULT_SIGNALS_BASE_URL;
use crate::secret::Secret;
use serde::Deserialize;
use std::future::Future;
use std::time::{Duration, SystemTime};

/// The `User-Agent` every request carries.
pub const USER_AGENT: &str = concat!("silentauth-worker/", env!("CARGO_PKG_VERSION"));

/// An HTTP response, read whole.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Body bytes.
    pub body: Vec<u8>,
    /// The `Retry-After` header, resolved to a delay from now.
    pub retry_after: Option<Duration>,
}

/// The result of one request: a response of any status, a response whose body broke off, or a
/// transport failure.
#[derive(Debug, Clone)]
pub enum HttpOutcome {
    /// The server answered.
    Response(HttpResponse),
    /// The status line and headers arrived but the body did not arrive whole: cut off, reset or
    /// timed out mid-body, or shorter than its `Content-Length`. The server acted on the
    /// request; a token 2xx of this kind spent the code.
    Incomplete {
        /// The status the server answered.
        status: u16,
        /// How the body broke off ([`Transport::Timeout`] or [`Transport::Reset`]).
        cause: Transport,
    },
    /// No answer.
    Transport(Transport),
}

impl HttpOutcome {
    /// The status of a complete answer; `None` for a body that broke off or no answer at all.
    pub fn complete_status(&self) -> Option<u16> {
        match self {
            HttpOutcome::Response(r) => Some(r.status),
            HttpOutcome::Incomplete { .. } | HttpOutcome::Transport(_) => None,
        }
    }
}

/// The credentials of one client profile.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// OAuth client id.
    pub client_id: String,
    /// OAuth client secret.
    pub client_secret: Secret,
    /// The `apiKey` header.
    pub api_key: Secret,
}

/// The two Silent Auth calls. [`SilentAuthClient`] makes them over HTTP; tests may fake them.
pub trait Api: Send + Sync + 'static {
    /// `POST {base}/oauth2/token` with the code.
    fn token(
        &self,
        creds: &Credentials,
        code: &Secret,
        redirect_uri: &str,
    ) -> impl Future<Output = HttpOutcome> + Send;

    /// `GET {base}/oauth2/userinfo` with the access token.
    fn userinfo(&self, access_token: &Secret) -> impl Future<Output = HttpOutcome> + Send;

    /// `POST {signals_base}{call.path()}` with `apiKey` and the body of [`SignalCall::body`].
    /// An `Api` without Network Signals (a test fake of the two Silent Auth calls) answers that
    /// it cannot connect.
    fn signal(
        &self,
        api_key: &Secret,
        call: SignalCall,
        phone_number: &str,
        max_age_minutes: Option<u32>,
    ) -> impl Future<Output = HttpOutcome> + Send {
        let _ = (api_key, call, phone_number, max_age_minutes);
        async { HttpOutcome::Transport(Transport::Connect("no Network Signals API".into())) }
    }
}

/// Why the client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// `api.base_url` is not a usable URL.
    #[error("api.base_url is not a valid URL: {0}")]
    BaseUrl(String),
    /// `api.signals_base_url` is not a usable URL.
    #[error("api.signals_base_url is not a valid URL: {0}")]
    SignalsBaseUrl(String),
    /// The HTTP stack could not start.
    #[error("cannot build the HTTP client: {0}")]
    Build(String),
}

/// The reqwest-based client: rustls, one pooled connection set, `api.timeout` per request.
#[derive(Debug, Clone)]
pub struct SilentAuthClient {
    http: reqwest::Client,
    // Parsed once: a URL given as a string is parsed again on every request.
    token_url: reqwest::Url,
    userinfo_url: reqwest::Url,
    /// The URL of each [`SignalCall`], in the order of [`SignalCall::ALL`].
    signal_urls: Vec<reqwest::Url>,
}

impl SilentAuthClient {
    /// A client for `base_url` (e.g. `https://api.tyntec.com/silent-auth/v1`).
    /// Network Signals go to [`DEFAULT_SIGNALS_BASE_URL`] unless
    /// [`SilentAuthClient::with_signals_base_url`] says otherwise.
    pub fn new(base_url: &str, timeout: Duration) -> Result<Self, ClientError> {
        let base = http_base(base_url).map_err(ClientError::BaseUrl)?;
        let http = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .timeout(timeout)
            .connect_timeout(timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(1024)
            .tcp_nodelay(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ClientError::Build(e.to_string()))?;
        let url = |path: &str| parse(&format!("{base}{path}")).map_err(ClientError::BaseUrl);
        Ok(SilentAuthClient {
            http,
            token_url: url("/oauth2/token")?,
            userinfo_url: url("/oauth2/userinfo")?,
            signal_urls: signal_urls(DEFAULT_SIGNALS_BASE_URL).map_err(ClientError::BaseUrl)?,
        })
    }

    /// The same client, sending Network Signals requests under `signals_base_url`
    /// (e.g. `https://api.tyntec.com/network-signal/v1`).
    pub fn with_signals_base_url(mut self, signals_base_url: &str) -> Result<Self, ClientError> {
        let base = http_base(signals_base_url).map_err(ClientError::SignalsBaseUrl)?;
        self.signal_urls = signal_urls(&base).map_err(ClientError::SignalsBaseUrl)?;
        Ok(self)
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> HttpOutcome {
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => return HttpOutcome::Transport(transport_of(&e)),
        };
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        match resp.bytes().await {
            Ok(body) => HttpOutcome::Response(HttpResponse {
                status,
                body: body.to_vec(),
                retry_after,
            }),
            Err(e) => HttpOutcome::Incomplete {
                status,
                cause: if e.is_timeout() {
                    Transport::Timeout
                } else {
                    Transport::Reset(error_chain(&e))
                },
            },
        }
    }
}

impl Api for SilentAuthClient {
    async fn token(&self, creds: &Credentials, code: &Secret, redirect_uri: &str) -> HttpOutcome {
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code.expose()),
            ("redirect_uri", redirect_uri),
            ("client_id", creds.client_id.as_str()),
            ("client_secret", creds.client_secret.expose()),
        ];
        let req = self
            .http
            .post(self.token_url.clone())
            .header("apiKey", creds.api_key.expose())
            .form(&form);
        crate::spans::record_server(&self.token_url);
        self.send(req).await
    }

    async fn userinfo(&self, access_token: &Secret) -> HttpOutcome {
        let req = self
            .http
            .get(self.userinfo_url.clone())
            .bearer_auth(access_token.expose());
        crate::spans::record_server(&self.userinfo_url);
        self.send(req).await
    }

    async fn signal(
        &self,
        api_key: &Secret,
        call: SignalCall,
        phone_number: &str,
        max_age_minutes: Option<u32>,
    ) -> HttpOutcome {
        let index = SignalCall::ALL.iter().position(|c| *c == call).unwrap_or(0);
        let req = self
            .http
            .post(self.signal_urls[index].clone())
            .header("apiKey", api_key.expose())
            .json(&call.body(phone_number, max_age_minutes));
        crate::spans::record_server(&self.signal_urls[index]);
        self.send(req).await
    }
}

/// An http(s) URL without its trailing `/`, or why it is not one.
fn http_base(url: &str) -> Result<String, String> {
    let base = url::Url::parse(url).map_err(|e| e.to_string())?;
    if !matches!(base.scheme(), "http" | "https") {
        return Err("scheme must be http or https".into());
    }
    Ok(base.as_str().trim_end_matches('/').to_owned())
}

fn signal_urls(base: &str) -> Result<Vec<reqwest::Url>, String> {
    SignalCall::ALL
        .iter()
        .map(|c| parse(&format!("{base}{}", c.path())))
        .collect()
}

fn parse(url: &str) -> Result<reqwest::Url, String> {
    reqwest::Url::parse(url).map_err(|e| e.to_string())
}

/// Maps a reqwest error to what the retry rules need to know: was the request sent?
fn transport_of(e: &reqwest::Error) -> Transport {
    if e.is_connect() {
        Transport::Connect(error_chain(e))
    } else if e.is_timeout() {
        Transport::Timeout
    } else {
        Transport::Reset(error_chain(e))
    }
}

/// The error and its sources on one line; reqwest errors carry the URL, which holds no secret
/// (codes and tokens travel in the body and headers).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = String::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = e.source();
    while let Some(err) = cur {
        if !s.is_empty() {
            s.push_str(": ");
        }
        s.push_str(&err.to_string());
        cur = err.source();
    }
    if s.is_empty() {
        s = "request failed".into();
    }
    s
}

/// Parses `Retry-After`: delta-seconds or an HTTP-date (RFC 9110 §10.2.3), as a delay from `now`.
/// The value is untrusted: digits too many for a `u64` saturate, a date in the past is zero,
/// anything else (negative, fractional, garbled) is `None`. The retry policy caps the result
/// ([`super::RetryPolicy::clamp_retry_after`]).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let v = value.trim();
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        return Some(Duration::from_secs(v.parse::<u64>().unwrap_or(u64::MAX)));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// A successful token response: only what the worker needs, strictly checked.
#[derive(Debug)]
pub struct TokenGrant {
    /// The access token for userinfo.
    pub access_token: Secret,
    /// How long the access token stays valid (`expires_in`), when the response says so as a
    /// non-negative number of seconds; it bounds the userinfo retries.
    pub expires_in: Option<Duration>,
}

#[derive(Deserialize)]
struct RawToken {
    access_token: Option<serde_json::Value>,
    token_type: Option<serde_json::Value>,
    expires_in: Option<serde_json::Value>,
}

impl TokenGrant {
    /// Parses a 2xx token body; the error says which field is wrong and never echoes a token.
    pub fn parse(body: &[u8]) -> Result<TokenGrant, String> {
        let raw: RawToken = serde_json::from_slice(body)
            .map_err(|_| "token response is not a JSON object".to_owned())?;
        let access_token = match raw.access_token {
            Some(serde_json::Value::String(s)) if !s.is_empty() => s,
            Some(_) => return Err("token response: access_token is not a non-empty string".into()),
            None => return Err("token response lacks access_token".into()),
        };
        match raw.token_type {
            Some(serde_json::Value::String(t)) if t.eq_ignore_ascii_case("bearer") => {}
            Some(_) => return Err("token response: token_type is not Bearer".into()),
            None => return Err("token response lacks token_type".into()),
        }
        // Lenient: the code is already spent, so a missing or odd `expires_in` only means the
        // userinfo budget is `retry.userinfo_max_elapsed` alone.
        let expires_in = raw
            .expires_in
            .and_then(|v| v.as_f64())
            .and_then(|secs| Duration::try_from_secs_f64(secs).ok());
        Ok(TokenGrant {
            access_token: Secret::new(access_token),
            expires_in,
        })
    }
}

/// The `sub` of a userinfo answer for a number that was not verified.
pub const ANONYMOUS: &str = "anonymous";

/// A successful userinfo response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    /// A UUID, or `"anonymous"` when not verified.
    pub sub: Option<String>,
    /// The network's stable device id.
    pub mobile_id: Option<String>,
    /// The number the verification was for.
    pub login_hint: String,
    /// The verdict.
    pub phone_number_verified: bool,
}

#[derive(Deserialize)]
struct RawUserInfo {
    sub: Option<serde_json::Value>,
    mobile_id: Option<serde_json::Value>,
    login_hint: Option<serde_json::Value>,
    phone_number_verified: Option<serde_json::Value>,
}

impl UserInfo {
    /// Parses a 2xx userinfo body: `phone_number_verified` must be `"true"`/`"false"` or a JSON
    /// boolean, `login_hint` a string; `sub` and `mobile_id` strings when present; and a
    /// verified number never has `sub: "anonymous"` (that contradiction is an error).
    pub fn parse(body: &[u8]) -> Result<UserInfo, String> {
        use serde_json::Value;
        let raw: RawUserInfo = serde_json::from_slice(body)
            .map_err(|_| "userinfo response is not a JSON object".to_owned())?;
        let phone_number_verified =
            match raw.phone_number_verified {
                Some(Value::Bool(b)) => b,
                Some(Value::String(s)) if s == "true" => true,
                Some(Value::String(s)) if s == "false" => false,
                Some(_) => return Err(
                    "userinfo: phone_number_verified is neither \"true\"/\"false\" nor a boolean"
                        .into(),
                ),
                None => return Err("userinfo response lacks phone_number_verified".into()),
            };
        let login_hint = match raw.login_hint {
            Some(Value::String(s)) => s,
            Some(_) => return Err("userinfo: login_hint is not a string".into()),
            None => return Err("userinfo response lacks login_hint".into()),
        };
        let opt = |v: Option<Value>, name: &str| match v {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(format!("userinfo: {name} is not a string")),
        };
        let sub = opt(raw.sub, "sub")?;
        if phone_number_verified && sub.as_deref() == Some(ANONYMOUS) {
            // The seed's `sub` is "anonymous" exactly when the number is not verified: an answer
            // that says both cannot be trusted either way.
            return Err("userinfo: sub is \"anonymous\" but phone_number_verified is true".into());
        }
        Ok(UserInfo {
            sub,
            mobile_id: opt(raw.mobile_id, "mobile_id")?,
            login_hint,
            phone_number_verified,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// How the one-shot server ends its connection after writing its answer.
    #[derive(Clone, Copy)]
    enum End {
        /// Close it (FIN).
        Close,
        /// Reset it (RST).
        Reset,
        /// Keep it open, sending nothing more.
        Stall,
    }

    /// Serves one request on 127.0.0.1:0: reads it whole, writes `answer` as raw bytes, then
    /// ends as `end` says. Returns the API base URL.
    async fn serve_once(answer: &'static [u8], end: End) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let body_at = loop {
                let n = s.read(&mut chunk).await.unwrap();
                buf.extend_from_slice(&chunk[..n]);
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break i + 4;
                }
            };
            let head = String::from_utf8_lossy(&buf[..body_at]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            while buf.len() < body_at + length {
                let n = s.read(&mut chunk).await.unwrap();
                buf.extend_from_slice(&chunk[..n]);
            }
            s.write_all(answer).await.unwrap();
            s.flush().await.unwrap();
            match end {
                End::Close => drop(s),
                End::Reset => {
                    s.set_zero_linger().unwrap();
                    drop(s);
                }
                End::Stall => std::future::pending::<()>().await,
            }
        });
        format!("http://{addr}/silent-auth/v1")
    }

    async fn token_answer(answer: &'static [u8], end: End, timeout: Duration) -> HttpOutcome {
        let base = serve_once(answer, end).await;
        let creds = Credentials {
            client_id: "client".into(),
            client_secret: Secret::new("12345"),
            api_key: Secret::new("key"),
        };
        let client = SilentAuthClient::new(&base, timeout).unwrap();
        client
            .token(&creds, &Secret::new("CODE"), "https://cb.example/cb")
            .await
    }

    #[tokio::test]
    async fn a_2xx_whose_body_breaks_off_is_incomplete_with_its_status() {
        const CUT: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 120\r\n\r\n{\"access_token\":\"ab";
        for end in [End::Close, End::Reset] {
            let outcome = token_answer(CUT, end, Duration::from_secs(5)).await;
            assert!(
                matches!(
                    &outcome,
                    HttpOutcome::Incomplete {
                        status: 200,
                        cause: Transport::Reset(_)
                    }
                ),
                "{outcome:?}"
            );
            assert_eq!(outcome.complete_status(), None);
        }
        let stalled = token_answer(CUT, End::Stall, Duration::from_millis(300)).await;
        assert!(
            matches!(
                stalled,
                HttpOutcome::Incomplete {
                    status: 200,
                    cause: Transport::Timeout
                }
            ),
            "{stalled:?}"
        );
    }

    #[tokio::test]
    async fn no_status_at_all_is_a_transport_failure_not_an_incomplete_answer() {
        let outcome = token_answer(b"", End::Close, Duration::from_secs(5)).await;
        assert!(
            matches!(outcome, HttpOutcome::Transport(Transport::Reset(_))),
            "{outcome:?}"
        );
    }

    #[tokio::test]
    async fn a_content_length_shorter_than_the_body_reads_a_prefix_that_does_not_parse() {
        const SHORT: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n{\"access_token\":\"abc\",\"token_type\":\"Bearer\"}";
        let outcome = token_answer(SHORT, End::Close, Duration::from_secs(5)).await;
        let HttpOutcome::Response(r) = outcome else {
            panic!("{outcome:?}")
        };
        assert_eq!((r.status, r.body.len()), (200, 20));
        assert!(TokenGrant::parse(&r.body).is_err());
    }

    #[test]
    fn retry_after_seconds_and_http_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(
            parse_retry_after(&later, now),
            Some(Duration::from_secs(30))
        );
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(parse_retry_after(&earlier, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-1", now), None);
    }

    #[test]
    fn hostile_retry_after_values_never_panic() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let max = Some(Duration::from_secs(u64::MAX));
        assert_eq!(parse_retry_after("18446744073709551615", now), max);
        assert_eq!(parse_retry_after("99999999999999999999999999", now), max);
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        for garbage in [
            "",
            " ",
            "-5",
            "+5",
            "1.5",
            "1e9",
            "0x10",
            "NaN",
            "5 s",
            "Retry-After: 5",
        ] {
            assert_eq!(parse_retry_after(garbage, now), None, "{garbage:?}");
        }
        let far = parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", now).unwrap();
        assert!(far > Duration::from_secs(86_400 * 365 * 7000));
        assert_eq!(
            parse_retry_after("Thu, 01 Jan 1970 00:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(
            parse_retry_after("Fri, 32 Dec 9999 25:00:00 GMT", now),
            None
        );
    }

    #[test]
    fn token_parsing_is_strict() {
        let ok = br#"{"access_token":"eyJ","refresh_token":"r","id_token":"i","scope":"openid tt:mobile_id","token_type":"Bearer","expires_in":86399}"#;
        let grant = TokenGrant::parse(ok).unwrap();
        assert_eq!(grant.access_token.expose(), "eyJ");
        assert_eq!(grant.expires_in, Some(Duration::from_secs(86399)));
        for (odd, expected) in [
            (r#""expires_in":-5"#, None),
            (r#""expires_in":"3600""#, None),
            (r#""expires_in":1e300"#, None),
            (r#""expires_in":90.5"#, Some(Duration::from_secs_f64(90.5))),
            (r#""scope":"openid""#, None),
        ] {
            let body = format!(r#"{{"access_token":"a","token_type":"Bearer",{odd}}}"#);
            let grant = TokenGrant::parse(body.as_bytes()).unwrap();
            assert_eq!(grant.expires_in, expected, "{odd}");
        }
        for bad in [
            &br#"{"token_type":"Bearer"}"#[..],
            br#"{"access_token":"","token_type":"Bearer"}"#,
            br#"{"access_token":5,"token_type":"Bearer"}"#,
            br#"{"access_token":"a","token_type":"mac"}"#,
            br#"{"access_token":"a"}"#,
            b"[]",
            b"garbage",
        ] {
            let e = TokenGrant::parse(bad).unwrap_err();
            assert!(!e.contains("eyJ"));
        }
    }

    #[test]
    fn userinfo_accepts_strings_and_booleans_only() {
        let u = UserInfo::parse(br#"{"sub":"99dd","mobile_id":"2d83","login_hint":"381123456789","phone_number_verified":"true"}"#).unwrap();
        assert!(u.phone_number_verified);
        assert_eq!(u.sub.as_deref(), Some("99dd"));
        let u = UserInfo::parse(
            br#"{"sub":"anonymous","login_hint":"381123456789","phone_number_verified":false}"#,
        )
        .unwrap();
        assert!(!u.phone_number_verified);
        assert_eq!(u.mobile_id, None);
        for bad in [
            &br#"{"login_hint":"1","phone_number_verified":"yes"}"#[..],
            br#"{"login_hint":"1","phone_number_verified":1}"#,
            br#"{"login_hint":"1","phone_number_verified":"TRUE"}"#,
            br#"{"login_hint":"1"}"#,
            br#"{"phone_number_verified":"true"}"#,
            br#"{"login_hint":1,"phone_number_verified":"true"}"#,
            br#"{"login_hint":"1","phone_number_verified":"true","sub":5}"#,
            br#"{"sub":"anonymous","login_hint":"1","phone_number_verified":"true"}"#,
            br#"{"sub":"anonymous","login_hint":"1","phone_number_verified":true}"#,
            b"<html>",
        ] {
            assert!(
                UserInfo::parse(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
