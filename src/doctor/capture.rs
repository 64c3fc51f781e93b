//! The client context of the doctor's Kafka checks after the first contact
//! ([`crate::kafka::connect`]), which keeps librdkafka's logs and errors out of the report, and
//! how long one admin request may take.

use rdkafka::client::ClientContext;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaError;
use std::time::Duration;

/// How long one admin request may take.
pub(super) const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);

/// A client context that keeps librdkafka's logs and errors out of the report: the checks say
/// what failed themselves.
#[derive(Clone, Default)]
pub(super) struct Capture;

impl ClientContext for Capture {
    fn log(&self, _level: rdkafka::config::RDKafkaLogLevel, _fac: &str, _message: &str) {}

    fn error(&self, _error: KafkaError, _reason: &str) {}
}

impl ConsumerContext for Capture {}
