//! The client context of the doctor's Kafka checks, which keeps librdkafka's first error, and
//! how long one admin request may take.

use rdkafka::client::ClientContext;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaError;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long one admin request may take.
pub(super) const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);

/// A client context that keeps librdkafka's first error (an SSL handshake or SASL failure says
/// more than the metadata timeout that follows it) and keeps its logs out of the report.
#[derive(Clone, Default)]
pub(super) struct Capture(Arc<Mutex<Option<String>>>);

impl Capture {
    pub(super) fn first_error(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Capture {
    fn keep(&self, what: String) {
        let mut first = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if first.is_none() {
            *first = Some(what);
        }
    }
}

impl ClientContext for Capture {
    /// librdkafka logs connection, TLS and SASL failures (from its own threads) before a
    /// request times out: the first warning or worse is the cause worth showing.
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, _fac: &str, message: &str) {
        use rdkafka::config::RDKafkaLogLevel as L;
        if matches!(
            level,
            L::Emerg | L::Alert | L::Critical | L::Error | L::Warning
        ) {
            self.keep(message.to_owned());
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.keep(format!("{error}: {reason}"));
    }
}

impl ConsumerContext for Capture {}
