//! `GET /oauth2/userinfo`: whether the network saw the device's number as the authorize
//! login_hint (seed A.3, B.3).

use crate::conn::ConnInfo;
use crate::endpoint::SimEndpoint;
use crate::faults::Subject;
use crate::pipeline::{admit, after, deliver, Reply};
use crate::responses::invalid_client;
use crate::state::SimState;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use std::sync::Arc;

/// The A.3 body; `phone_number_verified` is a string, as in the seed.
#[derive(Debug, Serialize)]
struct UserInfo {
    sub: String,
    mobile_id: String,
    login_hint: String,
    phone_number_verified: &'static str,
}

/// The axum handler.
pub(crate) async fn handle(
    State(sim): State<Arc<SimState>>,
    ConnectInfo(conn): ConnectInfo<ConnInfo>,
    headers: HeaderMap,
) -> Response {
    sim.stats.api_arrival();
    let reply = userinfo(&sim, &headers).await;
    deliver(&sim, SimEndpoint::Userinfo, &conn, reply).await
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

async fn userinfo(sim: &SimState, headers: &HeaderMap) -> Reply {
    let active = sim.active();
    let grant = bearer(headers).and_then(|t| sim.lookup_token(t));
    let subject = Subject {
        endpoint: SimEndpoint::Userinfo,
        login_hint: grant.as_ref().map(|g| g.login_hint.as_ref()),
        code_id: grant.as_ref().map(|g| g.code_id),
    };
    let post = match admit(sim, &active, subject).await {
        Ok(post) => post,
        Err(reply) => return reply,
    };
    let response = match grant {
        None => invalid_client(),
        Some(g) => {
            let seen = active.network_number(&g.login_hint);
            let verified = seen == g.login_hint.as_ref();
            let (hash, sub_bytes) = device_identity(seen);
            Json(UserInfo {
                sub: if verified {
                    uuid::Builder::from_random_bytes(sub_bytes)
                        .into_uuid()
                        .to_string()
                } else {
                    "anonymous".to_owned()
                },
                mobile_id: hash,
                login_hint: g.login_hint.to_string(),
                phone_number_verified: if verified { "true" } else { "false" },
            })
            .into_response()
        }
    };
    after(post, response).await
}

/// A stable identity for the number the network sees: a 64-hex-digit `mobile_id` and 16 bytes
/// for `sub`. FNV-1a with four bases: stable across runs and builds, not cryptographic.
fn device_identity(number: &str) -> (String, [u8; 16]) {
    const BASES: [u64; 4] = [
        0xcbf2_9ce4_8422_2325,
        0x6c62_272e_07bb_0142,
        0x9e37_79b9_7f4a_7c15,
        0xd6e8_feb8_6659_fd93,
    ];
    let words = BASES.map(|base| {
        number.bytes().fold(base, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        })
    });
    let hex = words.iter().map(|w| format!("{w:016x}")).collect();
    let mut sub = [0u8; 16];
    sub[..8].copy_from_slice(&words[0].to_be_bytes());
    sub[8..].copy_from_slice(&words[1].to_be_bytes());
    (hex, sub)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn identity_is_stable_and_distinct() {
        let (a, sa) = device_identity("381123456789");
        let (b, sb) = device_identity("381123456789");
        let (c, _) = device_identity("381123456780");
        assert_eq!((a.clone(), sa), (b, sb));
        assert_ne!(a, c);
        assert_eq!(a.len(), 64);
        assert!(a.chars().all(|ch| ch.is_ascii_hexdigit()));
    }

    #[test]
    fn bearer_parsing() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer abc"),
        );
        assert_eq!(bearer(&h), Some("abc"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer  xyz "),
        );
        assert_eq!(bearer(&h), Some("xyz"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer(&h), None);
    }
}
