//! The log subscriber: text or JSON lines on stderr filtered by `RUST_LOG`, beside the trace
//! exporter's layer when traces are on. The two never mix: the spans of [`crate::spans`] stay
//! out of the log lines, log events stay out of the traces. A JSON line written while a traced
//! span is active carries its `trace_id` and `span_id`.

use super::traces::{current_ids, Traces};
use crate::spans::TARGET;
use std::fmt;
use tracing::{Event, Subscriber};
use tracing_subscriber::filter::{filter_fn, EnvFilter};
use tracing_subscriber::fmt::format::{Format, Json, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// How log lines look.
#[derive(Debug, Clone, Copy)]
pub struct LogStyle {
    /// JSON lines (else text).
    pub json: bool,
    /// ANSI colours in text.
    pub ansi: bool,
}

/// Installs the process's subscriber: the log lines (`filter`) and, with `traces`, the exporter.
pub fn init(style: LogStyle, filter: EnvFilter, traces: Option<&Traces>) {
    let not_trace = filter_fn(|m| m.target() != TARGET);
    let base = tracing_subscriber::fmt::layer()
        .with_ansi(style.ansi)
        .with_writer(std::io::stderr);
    let logs = if style.json {
        let format = tracing_subscriber::fmt::format()
            .json()
            .with_current_span(true);
        base.json()
            .event_format(WithTraceIds(format))
            .with_filter(filter)
            .with_filter(not_trace)
            .boxed()
    } else {
        base.with_filter(filter).with_filter(not_trace).boxed()
    };
    let registry = tracing_subscriber::registry().with(logs);
    match traces {
        Some(t) => registry.with(t.layer()).init(),
        None => registry.init(),
    }
}

/// The JSON format with `trace_id` and `span_id` added while a traced span is active.
struct WithTraceIds(Format<Json>);

impl<S, N> FormatEvent<S, N> for WithTraceIds
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let Some((trace_id, span_id)) = current_ids() else {
            return self.0.format_event(ctx, writer, event);
        };
        let mut line = String::new();
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        let body = line.trim_end();
        match body.strip_suffix('}') {
            Some(open) => {
                let sep = if open.ends_with('{') { "" } else { "," };
                writeln!(
                    writer,
                    "{open}{sep}\"trace_id\":\"{trace_id}\",\"span_id\":\"{span_id}\"}}"
                )
            }
            None => writer.write_str(&line),
        }
    }
}
