//! The export queue of finished spans: a bounded channel the job path never waits on (a full
//! queue drops the span and counts it), drained by one task that sends batches to the exporter.
//! An unreachable collector only makes that task wait (each export bounded by its timeout)
//! while the queue fills and spans are dropped; jobs never notice.

use opentelemetry::Context;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter, SpanProcessor};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// What became of finished spans, for `/metrics`: process-wide, like the tracer provider.
#[derive(Debug, Default)]
pub struct SpanCounts {
    /// Dropped because the queue was full (or the export task had stopped).
    pub dropped: AtomicU64,
    /// Accepted by the collector.
    pub exported: AtomicU64,
    /// Sent in an export request that failed or timed out.
    pub failed: AtomicU64,
}

/// The counts of this process.
pub static SPAN_COUNTS: SpanCounts = SpanCounts {
    dropped: AtomicU64::new(0),
    exported: AtomicU64::new(0),
    failed: AtomicU64::new(0),
};

/// How the queue is sized and drained.
#[derive(Debug, Clone, Copy)]
pub struct QueueSettings {
    /// Finished spans the queue holds.
    pub capacity: usize,
    /// Spans per export request.
    pub batch: usize,
    /// The longest a span waits for its batch to fill.
    pub delay: Duration,
    /// The longest one export request may take.
    pub timeout: Duration,
}

/// The span processor: hands finished sampled spans to the queue.
#[derive(Debug)]
pub struct QueueProcessor {
    spans: mpsc::Sender<SpanData>,
}

/// Asks the export task to send what it holds.
#[derive(Debug, Clone)]
pub struct Flusher {
    flushes: mpsc::UnboundedSender<oneshot::Sender<()>>,
}

impl Flusher {
    /// Sends every queued span, waiting at most `within`; false when that was not enough (the
    /// rest is dropped with the process).
    pub async fn flush(&self, within: Duration) -> bool {
        let (done, flushed) = oneshot::channel();
        if self.flushes.send(done).is_err() {
            return false;
        }
        matches!(tokio::time::timeout(within, flushed).await, Ok(Ok(())))
    }
}

/// Starts the export task on the current runtime; the processor for the provider and the
/// handle that flushes at shutdown.
pub fn start<E: SpanExporter + 'static>(
    exporter: E,
    s: QueueSettings,
) -> (QueueProcessor, Flusher) {
    let (spans, rx) = mpsc::channel(s.capacity.max(1));
    let (flushes, flush_rx) = mpsc::unbounded_channel();
    tokio::spawn(export_loop(exporter, rx, flush_rx, s));
    (QueueProcessor { spans }, Flusher { flushes })
}

impl SpanProcessor for QueueProcessor {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        if self.spans.try_send(span).is_err() {
            SPAN_COUNTS.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Flushing waits (asynchronously) in [`Flusher::flush`]; the provider's own call returns at
    /// once rather than block a runtime thread.
    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

async fn export_loop<E: SpanExporter>(
    exporter: E,
    mut spans: mpsc::Receiver<SpanData>,
    mut flushes: mpsc::UnboundedReceiver<oneshot::Sender<()>>,
    s: QueueSettings,
) {
    let mut batch: Vec<SpanData> = Vec::with_capacity(s.batch);
    let mut tick = tokio::time::interval(s.delay);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            Some(done) = flushes.recv() => {
                while let Ok(span) = spans.try_recv() {
                    batch.push(span);
                    if batch.len() >= s.batch {
                        export(&exporter, &mut batch, s.timeout).await;
                    }
                }
                export(&exporter, &mut batch, s.timeout).await;
                let _ = done.send(());
            }
            span = spans.recv() => match span {
                Some(span) => {
                    batch.push(span);
                    if batch.len() >= s.batch {
                        export(&exporter, &mut batch, s.timeout).await;
                    }
                }
                None => {
                    export(&exporter, &mut batch, s.timeout).await;
                    return;
                }
            },
            _ = tick.tick() => export(&exporter, &mut batch, s.timeout).await,
        }
    }
}

/// Sends `batch` (emptying it), bounded by `timeout`, and counts the outcome.
async fn export<E: SpanExporter>(exporter: &E, batch: &mut Vec<SpanData>, timeout: Duration) {
    if batch.is_empty() {
        return;
    }
    let spans = std::mem::take(batch);
    let n = spans.len() as u64;
    let sent = tokio::time::timeout(timeout, exporter.export(spans)).await;
    let counter = match sent {
        Ok(Ok(())) => &SPAN_COUNTS.exported,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, spans = n, "span export failed");
            &SPAN_COUNTS.failed
        }
        Err(_) => {
            tracing::debug!(spans = n, "span export timed out");
            &SPAN_COUNTS.failed
        }
    };
    counter.fetch_add(n, Ordering::Relaxed);
}
