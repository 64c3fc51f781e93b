//! Traces: the OpenTelemetry SDK under the `tracing` spans of [`crate::spans`], exported over
//! OTLP (docs/tracing.md). One trace per job: the job's span continues the record's W3C
//! `traceparent`/`tracestate` (a new trace without them), its children are the waits, the HTTP
//! attempts, the cache hit and the publish, and the result and dead letter carry the job span's
//! own context. Off unless `telemetry` names an endpoint; then a bounded queue
//! ([`super::span_queue`]) stands between the jobs and the collector.

use super::span_queue::{self, Flusher, QueueSettings};
use crate::config::TelemetryConfig;
use crate::contract::Publication;
use crate::spans::TARGET;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{Status, TraceContextExt, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use rdkafka::message::{BorrowedMessage, Headers, Message};
use std::time::Duration;
use tracing::subscriber::Interest;
use tracing::Metadata;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::DynFilterFn;
use tracing_subscriber::layer;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// The running exporter: the provider and the handle that flushes it.
#[derive(Debug)]
pub struct Traces {
    provider: SdkTracerProvider,
    flusher: Flusher,
    /// Where spans go, for the start-up log line.
    pub endpoint: String,
}

/// The spans (and events) of [`TARGET`] the exporter takes: every job and replay span (they
/// carry the sampling decision and the context the outputs propagate), their children only
/// inside a sampled one. A job that is not sampled makes no child span at all, so its cost is
/// one span, not one per wait and attempt.
fn sampled_only<S: tracing::Subscriber>() -> impl layer::Filter<S> {
    DynFilterFn::new(|meta: &Metadata<'_>, _: &layer::Context<'_, S>| {
        meta.target() == TARGET
            && (ROOTS.contains(&meta.name())
                || Context::current().span().span_context().is_sampled())
    })
    .with_callsite_filter(|meta| match meta.target() == TARGET {
        true => Interest::sometimes(),
        false => Interest::never(),
    })
}

/// The spans a trace of the worker starts with.
const ROOTS: [&str; 2] = ["job", "replay"];

impl Traces {
    /// Starts exporting as `c` says (on the current Tokio runtime); `Ok(None)` when traces are
    /// off (no endpoint, or `sdk_disabled`).
    pub fn start(c: &TelemetryConfig) -> Result<Option<Traces>, String> {
        if !c.enabled() {
            return Ok(None);
        }
        let endpoint = c.traces_url();
        let exporter = match c.otlp_protocol.as_str() {
            "grpc" => opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(&endpoint)
                .with_timeout(c.otlp_timeout)
                .build(),
            _ => opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_http_client(
                    reqwest::Client::builder()
                        .timeout(c.otlp_timeout)
                        .build()
                        .map_err(|e| e.to_string())?,
                )
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_endpoint(&endpoint)
                .with_timeout(c.otlp_timeout)
                .build(),
        }
        .map_err(|e| format!("telemetry: cannot build the OTLP exporter: {e}"))?;
        let mut exporter = exporter;
        let resource = resource(c)?;
        opentelemetry_sdk::trace::SpanExporter::set_resource(&mut exporter, &resource);
        let settings = QueueSettings {
            capacity: c.export_queue_size,
            batch: c.export_batch_size,
            delay: c.export_delay,
            timeout: c.otlp_timeout,
        };
        let (processor, flusher) = span_queue::start(exporter, settings);
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_sampler(sampler(c))
            .with_resource(resource)
            .build();
        Ok(Some(Traces {
            provider,
            flusher,
            endpoint,
        }))
    }

    /// The `tracing` layer that turns the spans of [`TARGET`] (and only those) into
    /// OpenTelemetry spans.
    pub fn layer<S>(&self) -> impl Layer<S>
    where
        S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    {
        let tracer = self.provider.tracer("silentauth-worker");
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_tracked_inactivity(false)
            .with_threads(false)
            .with_location(false)
            .with_target(false)
            .with_level(false)
            .with_filter(sampled_only())
    }

    /// Sends what the queue holds, within `grace`; logs what could not be sent.
    pub async fn shutdown(self, grace: Duration) {
        if !self.flusher.flush(grace).await {
            tracing::warn!(
                grace = ?grace,
                "traces: the export queue was not flushed within the shutdown grace"
            );
        }
        let _ = self.provider.shutdown();
    }
}

fn sampler(c: &TelemetryConfig) -> Sampler {
    let ratio = c.traces_sampler_arg;
    match c.traces_sampler.as_str() {
        "always_on" => Sampler::AlwaysOn,
        "always_off" => Sampler::AlwaysOff,
        "traceidratio" => Sampler::TraceIdRatioBased(ratio),
        "parentbased_always_off" => Sampler::ParentBased(Box::new(Sampler::AlwaysOff)),
        "parentbased_traceidratio" => {
            Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(ratio)))
        }
        _ => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
    }
}

/// `service.name` and the configured attributes; `service_name` wins over a `service.name`
/// among them unless it is the default.
fn resource(c: &TelemetryConfig) -> Result<Resource, String> {
    let pairs = c.resource_pairs()?;
    let named = pairs.iter().any(|(k, _)| k == "service.name");
    let mut b = Resource::builder_empty()
        .with_attributes(pairs.into_iter().map(|(k, v)| KeyValue::new(k, v)))
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")));
    if !named || c.service_name != TelemetryConfig::default().service_name {
        b = b.with_service_name(c.service_name.clone());
    }
    Ok(b.build())
}

/// The text of `m`'s header `name`, when it has one in UTF-8.
pub fn header_text(m: &BorrowedMessage<'_>, name: &str) -> Option<String> {
    let h = m.headers()?;
    let value = h.iter().find(|h| h.key == name)?.value?;
    std::str::from_utf8(value).ok().map(str::to_owned)
}

struct Carrier(Option<String>, Option<String>);

impl Extractor for Carrier {
    fn get(&self, key: &str) -> Option<&str> {
        match key {
            "traceparent" => self.0.as_deref(),
            "tracestate" => self.1.as_deref(),
            _ => None,
        }
    }
    fn keys(&self) -> Vec<&str> {
        vec!["traceparent", "tracestate"]
    }
}

/// The span of one job consumed from `topic` as `m` (messaging conventions, "process" of a
/// Kafka record): a child of the record's `traceparent` (and `tracestate`) when it has a valid
/// one, else the root of a new trace. The consumer group is recorded by [`record_group`].
pub fn job_span(topic: &str, m: &BorrowedMessage<'_>) -> Span {
    let span = tracing::info_span!(
        target: TARGET,
        "job",
        otel.name = format!("process {topic}"),
        otel.kind = "consumer",
        messaging.system = "kafka",
        messaging.operation.type = "process",
        messaging.destination.name = topic,
        messaging.destination.partition.id = m.partition().to_string(),
        messaging.kafka.offset = m.offset(),
        messaging.consumer.group.name = tracing::field::Empty,
    );
    if span.is_disabled() {
        return span;
    }
    let carrier = Carrier(header_text(m, "traceparent"), header_text(m, "tracestate"));
    if carrier.0.is_some() {
        let parent = TraceContextPropagator::new().extract(&carrier);
        if parent.span().span_context().is_valid() {
            let _ = span.set_parent(parent);
        }
    }
    span
}

/// Records the consumer group on a job span.
pub fn record_group(span: &Span, group: &str) {
    span.record("messaging.consumer.group.name", group);
}

/// The `traceparent` the result and dead letter of the job consumed as `m` carry: its job
/// span's own context when traces are on, else the record's header as consumed.
pub fn outgoing_traceparent(span: &Span, m: &BorrowedMessage<'_>) -> Option<String> {
    if !span.is_disabled() {
        let sc = span.context().span().span_context().clone();
        if sc.is_valid() {
            return Some(traceparent_of(&sc));
        }
    }
    header_text(m, "traceparent")
}

/// The W3C `traceparent` of `sc` (version 00).
fn traceparent_of(sc: &opentelemetry::trace::SpanContext) -> String {
    format!(
        "00-{}-{}-{:02x}",
        sc.trace_id(),
        sc.span_id(),
        sc.trace_flags().to_u8()
    )
}

/// Records how the current job ended on its span: `job_id`, the status, the error class (also
/// the span's status), whether it was a duplicate, and its replay count.
pub fn record_job_end(publication: &Publication, replay_count: u32) {
    let cx = Context::current();
    let span = cx.span();
    if !span.span_context().is_valid() {
        return;
    }
    let mut attrs = vec![KeyValue::new(
        "silentauth.replay_count",
        i64::from(replay_count),
    )];
    if let Some(r) = publication.result() {
        attrs.push(KeyValue::new("silentauth.job_id", r.job_id.clone()));
        attrs.push(KeyValue::new("silentauth.status", r.status.as_str()));
        attrs.push(KeyValue::new("silentauth.duplicate", r.duplicate));
    }
    match publication.class() {
        Some(class) => {
            attrs.push(KeyValue::new("silentauth.error_class", class.as_str()));
            attrs.push(KeyValue::new("error.type", class.as_str()));
            span.set_status(Status::error(class.as_str()));
        }
        None => span.set_status(Status::Ok),
    }
    span.set_attributes(attrs);
}

/// The W3C ids of the active span, for a log line: `(trace_id, span_id)`.
pub fn current_ids() -> Option<(String, String)> {
    let cx = Context::current();
    let sc = cx.span().span_context().clone();
    sc.is_valid()
        .then(|| (sc.trace_id().to_string(), sc.span_id().to_string()))
}

/// The span context `traceparent` names, for a link (`replay-dlq` to a dead letter's trace).
pub fn remote_context(traceparent: &str) -> Option<opentelemetry::trace::SpanContext> {
    struct One<'a>(&'a str);
    impl Extractor for One<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            (key == "traceparent").then_some(self.0)
        }
        fn keys(&self) -> Vec<&str> {
            vec!["traceparent"]
        }
    }
    let cx = TraceContextPropagator::new().extract(&One(traceparent));
    let sc = cx.span().span_context().clone();
    sc.is_valid().then_some(sc)
}

/// The span of `replay-dlq` re-publishing one dead letter (at `partition`/`offset` of the
/// dead-letter topic): a new trace linked to the dead letter's (its `traceparent`, the failed
/// job's span), whose context replaces the `traceparent` of the re-published `headers`, so the
/// replayed job's span is its child. Traces off: the headers stay as they are.
pub fn replay_span(
    headers: &mut Vec<(String, Option<Vec<u8>>)>,
    partition: i32,
    offset: i64,
) -> Span {
    let span = tracing::info_span!(
        target: TARGET,
        "replay",
        otel.kind = "producer",
        messaging.system = "kafka",
        messaging.operation.type = "send",
        silentauth.dead_letter.partition = partition,
        silentauth.dead_letter.offset = offset,
    );
    if span.is_disabled() {
        return span;
    }
    let earlier = headers
        .iter()
        .find(|(k, _)| k == "traceparent")
        .and_then(|(_, v)| std::str::from_utf8(v.as_deref()?).ok())
        .and_then(remote_context);
    if let Some(sc) = earlier {
        span.add_link(sc);
    }
    let sc = span.context().span().span_context().clone();
    if sc.is_valid() {
        headers.retain(|(k, _)| k != "traceparent" && k != "tracestate");
        headers.push((
            "traceparent".to_owned(),
            Some(traceparent_of(&sc).into_bytes()),
        ));
    }
    span
}
