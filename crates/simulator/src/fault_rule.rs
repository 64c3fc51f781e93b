//! One `[[faults]]` rule of a scenario: what it does to a request and which requests it selects.

use crate::endpoint::SimEndpoint;
use crate::error::ScenarioError;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// What a fault rule does to a request it selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// Answer `status` (implied when `status` is set without `kind`).
    Status,
    /// Close the connection without a response.
    Drop,
    /// Wait `delay`, then answer normally.
    Slow,
    /// Answer 200 with a body that does not parse (or `body`); at authorize, a redirect with
    /// neither `code` nor `error`.
    Malformed,
    /// Authorize only: redirect with `error` (default `server_error`), as seed B.1.
    RedirectError,
    /// Process, then answer with a `Content-Length` for the whole body, send half of it and
    /// close the connection (at token: the code is used, its 200 cut off).
    TruncatedBody,
    /// Process, then send the headers and half the body, nothing more for `delay`, then close.
    StalledBody,
    /// Process, then answer with a `Content-Length` of half the body, send all of it and close.
    WrongLength,
}

/// A `Retry-After` value: seconds or any header text (e.g. an HTTP-date).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RetryAfter {
    /// Whole seconds.
    Seconds(u64),
    /// The header value verbatim.
    Value(String),
}

impl RetryAfter {
    /// The header value.
    pub fn header_value(&self) -> String {
        match self {
            RetryAfter::Seconds(s) => s.to_string(),
            RetryAfter::Value(v) => v.clone(),
        }
    }
}

/// One fault-injection rule (`[[faults]]`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultRule {
    /// The endpoint the rule watches.
    pub endpoint: Option<SimEndpoint>,
    /// What happens; `status` alone implies [`FaultKind::Status`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<FaultKind>,
    /// HTTP status answered by a status fault (100..=599).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// `Retry-After` header sent with a status fault.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<RetryAfter>,
    /// Response body replacing the default (JSON when it parses as JSON, else text/plain).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Delay of a slow fault; how long a stalled body stalls.
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub delay: Option<Duration>,
    /// Drop/slow after the request was processed (at token: the code is consumed first).
    pub after_processing: bool,
    /// `error` of a redirect_error fault (a seed B.1 code; default `server_error`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// `error_description` of a redirect_error fault (default: the B.1 text).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_description: Option<String>,
    /// Probability (0..=1) that a matching request is selected; seeded by the scenario's `seed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    /// Only the first N matching requests are selected, then the fault heals.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first: Option<u64>,
    /// Count `first` per code (token, userinfo) or per number (authorize, signals) instead of
    /// overall.
    pub per_code: bool,
    /// Only requests for codes/tokens issued to these login_hints (authorize: that login_hint;
    /// signals: the number asked about). Compared on digits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub login_hints: Option<Vec<String>>,
}

impl FaultRule {
    /// The effective kind (`status` without `kind` is a status fault).
    pub fn effective_kind(&self) -> Option<FaultKind> {
        match (self.kind, self.status) {
            (Some(k), _) => Some(k),
            (None, Some(_)) => Some(FaultKind::Status),
            (None, None) => None,
        }
    }
}

impl FaultRule {
    /// Checks the rule's combinations; the error names `faults[i].<key>`.
    pub(crate) fn validate(&self, i: usize) -> Result<(), ScenarioError> {
        let bad = |m: &str| Err(ScenarioError::Invalid(format!("faults[{i}].{m}")));
        let Some(endpoint) = self.endpoint else {
            return bad(
                "endpoint is required (authorize, token, userinfo, sim_swap_check, \
                 sim_swap_retrieve_date, device_swap_check, device_swap_retrieve_date or \
                 call_forwarding_check)",
            );
        };
        let Some(kind) = self.effective_kind() else {
            return bad("kind or status is required");
        };
        match kind {
            FaultKind::Status => match self.status {
                None => return bad("status is required for kind = \"status\""),
                Some(s) if !(100..=599).contains(&s) => return bad("status must be 100..=599"),
                Some(_) => {}
            },
            _ if self.status.is_some() => {
                return bad("status is only allowed with kind = \"status\"")
            }
            FaultKind::Slow if self.delay.is_none() => {
                return bad("delay is required for kind = \"slow\"")
            }
            FaultKind::StalledBody if self.delay.is_none() => {
                return bad("delay is required for kind = \"stalled_body\"")
            }
            FaultKind::RedirectError if endpoint != SimEndpoint::Authorize => {
                return bad("kind = \"redirect_error\" is only valid for endpoint = \"authorize\"")
            }
            FaultKind::RedirectError => {
                let code = self.error.as_deref().unwrap_or("server_error");
                if crate::responses::AuthorizeError::parse(code).is_none() {
                    return bad("error must be one of the seed's B.1 codes");
                }
            }
            _ => {}
        }
        if let Some(rate) = self.rate {
            if !(0.0..=1.0).contains(&rate) {
                return bad("rate must be between 0 and 1");
            }
        }
        if self.per_code && self.first.is_none() {
            return bad("per_code needs first");
        }
        if matches!(&self.login_hints, Some(h) if h.is_empty()) {
            return bad("login_hints must not be empty when present");
        }
        Ok(())
    }
}
