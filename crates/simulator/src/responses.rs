//! The seed's error vocabulary (tables B.1, B.2, B.3) and the HTTP responses built from it.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// B.2/B.3 description of 400 `invalid_request`.
pub const INVALID_REQUEST: &str =
    "Client specified an invalid argument, request body or query param.";
/// B.2/B.3 description of 401 `invalid_client`.
pub const INVALID_CLIENT: &str = "Request not authenticated due to missing, invalid, or expired credentials. A new authentication is required.";
/// B.2/B.3 description of 403 `permission_denied`.
pub const PERMISSION_DENIED: &str =
    "Client does not have sufficient permissions to perform this action.";
/// B.2/B.3 description of 500 `internal_server_error`.
pub const INTERNAL_SERVER_ERROR: &str = "Request could not be processed.";

/// The authorize redirect's error codes (seed table B.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthorizeError {
    /// Unknown `client_id`, or `response_type` is not `code`.
    InvalidClientIdRequest,
    /// No `scope`.
    MissingScope,
    /// Only `openid` was requested.
    InsufficientScope,
    /// A scope token the server does not know.
    UnsupportedScope,
    /// `tt:phone_verify` without `login_hint`.
    MissingLoginHint,
    /// The server failed.
    ServerError,
}

impl AuthorizeError {
    /// Every B.1 code.
    pub const ALL: [AuthorizeError; 6] = [
        Self::InvalidClientIdRequest,
        Self::MissingScope,
        Self::InsufficientScope,
        Self::UnsupportedScope,
        Self::MissingLoginHint,
        Self::ServerError,
    ];

    /// The `error` value.
    pub fn code(self) -> &'static str {
        match self {
            Self::InvalidClientIdRequest => "invalid_client_id_request",
            Self::MissingScope => "missing_scope",
            Self::InsufficientScope => "insufficient_scope",
            Self::UnsupportedScope => "unsupported_scope",
            Self::MissingLoginHint => "missing_login_hint",
            Self::ServerError => "server_error",
        }
    }

    /// The `error_description` value, verbatim from B.1.
    pub fn description(self) -> &'static str {
        match self {
            Self::InvalidClientIdRequest => "A required OAuth 2.0 parameter is missing or invalid.",
            Self::MissingScope => "A required OAuth 2.0 scope parameter is missing",
            Self::InsufficientScope => {
                "Only openid scope requested, while custom scope is also required"
            }
            Self::UnsupportedScope => {
                "The requested scope is unknown, malformed, or exceeds permitted scope."
            }
            Self::MissingLoginHint => "Scope requires login_hint but not provided",
            Self::ServerError => "Unexpected server error",
        }
    }

    /// The variant whose code is `code`.
    pub fn parse(code: &str) -> Option<AuthorizeError> {
        Self::ALL.into_iter().find(|e| e.code() == code)
    }
}

/// A JSON response `{"error": …, "error_description": …}`.
pub fn error_json(status: StatusCode, error: &str, description: &str) -> Response {
    let body = serde_json::json!({ "error": error, "error_description": description });
    (status, axum::Json(body)).into_response()
}

/// 400 `invalid_request` with the B.2 text.
pub fn invalid_request() -> Response {
    error_json(StatusCode::BAD_REQUEST, "invalid_request", INVALID_REQUEST)
}

/// 401 `invalid_client` with the B.2/B.3 text.
pub fn invalid_client() -> Response {
    error_json(StatusCode::UNAUTHORIZED, "invalid_client", INVALID_CLIENT)
}

/// 403 `permission_denied` with the B.2/B.3 text.
pub fn permission_denied() -> Response {
    error_json(
        StatusCode::FORBIDDEN,
        "permission_denied",
        PERMISSION_DENIED,
    )
}

/// 429 from the simulator's own rate limit, with `Retry-After: 1`.
pub fn rate_limited() -> Response {
    let mut r = error_json(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_requests",
        "Too many requests; retry later.",
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

/// A body with a content type guessed from it: JSON when it parses, else text/plain.
pub fn raw_body(status: StatusCode, body: String) -> Response {
    let ct = if serde_json::from_str::<serde_json::Value>(&body).is_ok() {
        "application/json"
    } else {
        "text/plain; charset=utf-8"
    };
    (status, [(header::CONTENT_TYPE, ct)], body).into_response()
}

/// The response of a status fault: `body` or the table's default for `status`, plus `Retry-After`.
pub fn status_fault(status: u16, retry_after: Option<&str>, body: Option<&str>) -> Response {
    status_fault_with(status, retry_after, body, default_error_body)
}

/// A status fault whose default body (when the rule has no `body`) comes from `default`.
pub(crate) fn status_fault_with(
    status: u16,
    retry_after: Option<&str>,
    body: Option<&str>,
    default: impl FnOnce(StatusCode) -> Response,
) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut r = match body {
        Some(b) => raw_body(status, b.to_owned()),
        None => default(status),
    };
    if let Some(v) = retry_after.and_then(|v| HeaderValue::from_str(v).ok()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

/// The default body of an injected status: the seed's JSON where it has one, plain text where
/// gateways typically answer in plain text (502, 504).
fn default_error_body(status: StatusCode) -> Response {
    let json = |e: &str, d: &str| error_json(status, e, d);
    match status.as_u16() {
        400 => json("invalid_request", INVALID_REQUEST),
        401 => json("invalid_client", INVALID_CLIENT),
        403 => json("permission_denied", PERMISSION_DENIED),
        429 => json("too_many_requests", "Too many requests; retry later."),
        500 => json("internal_server_error", INTERNAL_SERVER_ERROR),
        503 => json(
            "service_unavailable",
            "The service is temporarily unavailable.",
        ),
        502 | 504 => raw_body(
            status,
            status.canonical_reason().unwrap_or("error").to_owned(),
        ),
        _ => json(
            "error",
            status.canonical_reason().unwrap_or("Unexpected status"),
        ),
    }
}

/// The default body of a malformed 200: not JSON at all.
pub const MALFORMED_BODY: &str = "<html><body>Service temporarily unavailable</body></html>";

/// A 200 whose body does not parse (or the rule's `body`).
pub fn malformed(body: Option<&str>) -> Response {
    match body {
        Some(b) => raw_body(StatusCode::OK, b.to_owned()),
        None => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            MALFORMED_BODY,
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_of(r: Response) -> String {
        let bytes = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[test]
    fn b1_codes_round_trip() {
        for e in AuthorizeError::ALL {
            assert_eq!(AuthorizeError::parse(e.code()), Some(e));
        }
        assert_eq!(AuthorizeError::parse("nope"), None);
    }

    #[tokio::test]
    async fn status_fault_defaults_follow_the_tables() {
        let r = status_fault(403, None, None);
        assert_eq!(r.status(), 403);
        let v: serde_json::Value = serde_json::from_str(&body_of(r).await).unwrap();
        assert_eq!(v["error"], "permission_denied");
        assert_eq!(v["error_description"], PERMISSION_DENIED);

        let r = status_fault(429, Some("2"), None);
        assert_eq!(r.headers()[header::RETRY_AFTER], "2");
        let v: serde_json::Value = serde_json::from_str(&body_of(r).await).unwrap();
        assert_eq!(v["error"], "too_many_requests");

        let r = status_fault(502, None, None);
        assert!(r.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/plain"));
        assert_eq!(body_of(r).await, "Bad Gateway");
    }

    #[tokio::test]
    async fn body_override_and_malformed() {
        let r = status_fault(500, None, Some("{\"error\":\"x\"}"));
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
        assert_eq!(body_of(r).await, "{\"error\":\"x\"}");
        let r = malformed(None);
        assert_eq!(r.status(), 200);
        assert!(serde_json::from_str::<serde_json::Value>(&body_of(r).await).is_err());
    }
}
