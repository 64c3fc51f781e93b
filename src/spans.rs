//! The spans a job's trace is made of, as `tracing` spans of one target ([`TARGET`]): only
//! that target reaches the OpenTelemetry exporter (and it never reaches the log lines), so a
//! trace holds exactly the spans and attributes named here and in `telemetry::traces`, nothing
//! a log event or a dependency adds. With traces off no subscriber enables the target and every
//! span here is a disabled one: a few atomic loads.
//!
//! Attribute names follow the OpenTelemetry semantic conventions (HTTP client spans, messaging
//! spans); the worker's own are under `silentauth.`. No span carries a code, token, key, secret
//! or an unmasked number: the spans take only the values passed here, and none of these is one.

use std::future::Future;
use tracing::{Instrument, Span};

/// The target of every span and event meant for the trace exporter.
pub const TARGET: &str = "silentauth_trace";

/// Span of one HTTP attempt of `stage` (`token`, `userinfo`, a network-signal check), the
/// `attempt`-th of its stage. The client records `server.address` and the retry loop the
/// status and the markers once the attempt ends ([`record_attempt`]).
pub fn http_attempt(stage: &'static str, method: &'static str, attempt: u32) -> Span {
    tracing::info_span!(
        target: TARGET,
        "http.attempt",
        otel.name = stage,
        otel.kind = "client",
        http.request.method = method,
        server.address = tracing::field::Empty,
        server.port = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
        error.type = tracing::field::Empty,
        silentauth.stage = stage,
        silentauth.attempt = attempt,
        silentauth.ambiguous = tracing::field::Empty,
        silentauth.code_spent = tracing::field::Empty,
    )
}

/// How an attempt ended: its status (`None`: no complete response), the error class it was
/// judged (`None`: a success), whether it may have used the code without an answer, and whether
/// the code is spent after it (a token attempt that was answered 2xx or may have been used).
pub struct AttemptEnd<'a> {
    pub status: Option<u16>,
    pub class: Option<&'a str>,
    pub ambiguous: bool,
    pub code_spent: bool,
}

/// Records how `span`'s attempt ended.
pub fn record_attempt(span: &Span, end: &AttemptEnd<'_>) {
    if span.is_disabled() {
        return;
    }
    if let Some(s) = end.status {
        span.record("http.response.status_code", i64::from(s));
    }
    if let Some(class) = end.class {
        span.record("error.type", class);
        span.record("otel.status_code", "error");
    }
    span.record("silentauth.ambiguous", end.ambiguous);
    span.record("silentauth.code_spent", end.code_spent);
}

/// Records the server of the current attempt span (a no-op outside one): host and port only,
/// never the URL's path, query or credentials.
pub fn record_server(url: &url::Url) {
    let span = Span::current();
    if span.is_disabled() {
        return;
    }
    if let Some(host) = url.host_str() {
        span.record("server.address", host);
    }
    if let Some(port) = url.port_or_known_default() {
        span.record("server.port", i64::from(port));
    }
}

/// An event on the current span: the stage paused for a `Retry-After` of `capped` (after the
/// policy's cap) before its next attempt.
pub fn retry_after(stage: &'static str, capped: std::time::Duration) {
    tracing::event!(
        target: TARGET,
        tracing::Level::INFO,
        silentauth.stage = stage,
        silentauth.retry_after_ms = capped.as_millis() as u64,
        "retry_after"
    );
}

/// Runs `fut`; when it does not finish at its first poll (it has to wait), the rest of it runs
/// in the span `make` returns, so a span exists only for a wait that happened.
pub async fn waited<F: Future>(fut: F, make: impl FnOnce() -> Span) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    if let Some(out) = futures::FutureExt::now_or_never(fut.as_mut()) {
        return out;
    }
    fut.instrument(make()).await
}

/// Span of a wait for a permit of the rate limiter.
pub fn rate_limit_wait(stage: &'static str) -> Span {
    tracing::info_span!(target: TARGET, "rate_limit.wait", silentauth.stage = stage)
}

/// Span of a wait for a slot of the concurrency limit.
pub fn concurrency_wait() -> Span {
    tracing::info_span!(target: TARGET, "concurrency.wait")
}

/// Span of a job answered from the idempotency cache (an event-like span: it starts and ends at
/// the hit).
pub fn idempotency_hit() {
    let _hit = tracing::info_span!(target: TARGET, "idempotency.hit").entered();
}

/// Span of publishing the result and the dead letter of a job (until acknowledged).
pub fn publish(result: bool, dead_letter: bool) -> Span {
    tracing::info_span!(
        target: TARGET,
        "publish",
        otel.kind = "producer",
        messaging.system = "kafka",
        messaging.operation.type = "send",
        silentauth.result = result,
        silentauth.dead_letter = dead_letter,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waited_makes_a_span_only_for_a_wait() {
        let made = std::cell::Cell::new(0);
        let v = waited(async { 1 }, || {
            made.set(made.get() + 1);
            Span::none()
        })
        .await;
        assert_eq!((v, made.get()), (1, 0));
        let v = waited(
            async {
                tokio::task::yield_now().await;
                2
            },
            || {
                made.set(made.get() + 1);
                Span::none()
            },
        )
        .await;
        assert_eq!((v, made.get()), (2, 1));
    }
}
