//! Answers whose body does not arrive whole: the endpoint's real answer, written as raw bytes
//! past the HTTP server (which would refuse to send a body that disagrees with its
//! `Content-Length`), then the connection closed.

use axum::http::{header, HeaderMap, StatusCode};
use std::time::Duration;

/// How an answer's body is broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyShape {
    /// `Content-Length` announces the whole body; half of it is sent, then the connection closes.
    Truncated,
    /// The headers and half the body are sent, then nothing for the duration, then the
    /// connection closes.
    Stalled(Duration),
    /// `Content-Length` announces half the body; the whole body is sent, then the connection
    /// closes. A client reads a prefix that does not parse.
    WrongLength,
}

impl BodyShape {
    /// How long the connection stays open, silent, after the bytes are written.
    pub(crate) fn hold(self) -> Duration {
        match self {
            BodyShape::Stalled(d) => d,
            BodyShape::Truncated | BodyShape::WrongLength => Duration::ZERO,
        }
    }
}

/// The bytes of an HTTP/1.1 answer with `status`, `headers` and `body`, broken as `shape` says.
/// `Content-Length`, `Transfer-Encoding` and `Connection` are replaced; the other headers kept.
pub(crate) fn raw_answer(
    shape: BodyShape,
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
) -> Vec<u8> {
    let half = body.len() / 2;
    let (announced, sent) = match shape {
        BodyShape::Truncated | BodyShape::Stalled(_) => (body.len(), &body[..half]),
        BodyShape::WrongLength => (half, body),
    };
    let reason = status.canonical_reason().unwrap_or("");
    let mut out = format!("HTTP/1.1 {} {reason}\r\n", status.as_u16()).into_bytes();
    let replaced = [
        header::CONTENT_LENGTH,
        header::TRANSFER_ENCODING,
        header::CONNECTION,
    ];
    for (name, value) in headers.iter().filter(|(n, _)| !replaced.contains(n)) {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(
        format!("content-length: {announced}\r\nconnection: close\r\n\r\n").as_bytes(),
    );
    out.extend_from_slice(sent);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn split(raw: &[u8]) -> (String, &[u8]) {
        let at = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        (String::from_utf8(raw[..at].to_vec()).unwrap(), &raw[at..])
    }

    fn headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("10"));
        h
    }

    #[test]
    fn truncated_and_stalled_announce_the_whole_body_and_send_half() {
        for shape in [
            BodyShape::Truncated,
            BodyShape::Stalled(Duration::from_secs(3)),
        ] {
            let raw = raw_answer(shape, StatusCode::OK, &headers(), b"0123456789");
            let (head, body) = split(&raw);
            assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
            assert!(
                head.contains("content-type: application/json\r\n"),
                "{head}"
            );
            assert!(head.contains("content-length: 10\r\n"), "{head}");
            assert_eq!(head.matches("content-length").count(), 1, "{head}");
            assert_eq!(body, b"01234");
        }
        assert_eq!(BodyShape::Truncated.hold(), Duration::ZERO);
        assert_eq!(
            BodyShape::Stalled(Duration::from_secs(3)).hold(),
            Duration::from_secs(3)
        );
    }

    #[test]
    fn wrong_length_announces_half_and_sends_the_whole_body() {
        let raw = raw_answer(
            BodyShape::WrongLength,
            StatusCode::OK,
            &headers(),
            b"0123456789",
        );
        let (head, body) = split(&raw);
        assert!(head.contains("content-length: 5\r\n"), "{head}");
        assert!(head.contains("connection: close\r\n"), "{head}");
        assert_eq!(body, b"0123456789");
    }
}
