//! The first contact with the brokers, made with the configured TLS and SASL settings: a
//! metadata request from a client of its own that stops at the first SASL authentication or TLS
//! failure librdkafka reports (retrying cannot fix a wrong password or an untrusted
//! certificate), naming it and the settings to check, instead of waiting out
//! `kafka.connect_timeout` with a bare timeout. Backs the start-up preflight and `doctor`.

use crate::config::Config;
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::metadata::Metadata;
use rdkafka::types::RDKafkaErrorCode;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long one metadata attempt waits before the reported errors are looked at again.
const SLICE: Duration = Duration::from_millis(250);

/// Why the brokers could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectError {
    /// The brokers refused this client's SASL credentials.
    Sasl(String),
    /// The TLS handshake failed (an untrusted, expired or mismatched certificate).
    Tls(String),
    /// No answer within the timeout; librdkafka's first reported error, when there was one.
    NoAnswer {
        /// The metadata request's error.
        error: String,
        /// librdkafka's first reported error (a refused connection, say).
        cause: Option<String>,
    },
    /// The client could not be created (a librdkafka setting it does not accept).
    Client(String),
}

impl ConnectError {
    /// What to check, naming the settings.
    pub fn fix(&self) -> &'static str {
        match self {
            ConnectError::Sasl(_) => {
                "check kafka.properties \"sasl.mechanism\", \"sasl.username\" and \"sasl.password\" \
                 (SILENTAUTH__KAFKA__PROPERTIES__SASL_PASSWORD)"
            }
            ConnectError::Tls(_) => {
                "check that kafka.properties \"ssl.ca.location\" holds the CA that signed the \
                 brokers' certificates, that they are valid now and name the host in kafka.brokers, \
                 and the client certificate (\"ssl.certificate.location\", \"ssl.key.location\")"
            }
            ConnectError::NoAnswer { .. } => {
                "check kafka.brokers and that they are reachable from here, and the TLS/SASL \
                 settings in kafka.properties (security.protocol, ssl.*, sasl.*)"
            }
            ConnectError::Client(_) => "fix the librdkafka settings in kafka.properties",
        }
    }
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::Sasl(why) => write!(f, "SASL authentication failed: {why}"),
            ConnectError::Tls(why) => {
                write!(
                    f,
                    "TLS handshake failed (broker or client certificate): {why}"
                )
            }
            ConnectError::NoAnswer { error, cause } => match cause {
                Some(cause) => write!(f, "{error} ({cause})"),
                None => write!(f, "{error}"),
            },
            ConnectError::Client(why) => write!(f, "cannot create a Kafka client: {why}"),
        }
    }
}

/// The settings of a client that only asks for metadata: the brokers and `kafka.properties`.
pub fn first_contact_config(config: &Config, client_id: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &config.kafka.brokers)
        .set("client.id", client_id)
        .set("allow.auto.create.topics", "false");
    for (k, v) in &config.kafka.properties {
        c.set(k, v);
    }
    c
}

/// Asks the brokers for the metadata of every topic, with the configured TLS and SASL, for at
/// most `timeout`; fails at once on a SASL authentication or TLS failure. Blocking.
pub fn connect(
    config: &Config,
    client_id: &str,
    timeout: Duration,
) -> Result<Metadata, ConnectError> {
    let ctx = Reported::default();
    let client: BaseConsumer<Reported> = first_contact_config(config, client_id)
        .create_with_context(ctx.clone())
        .map_err(|e| ConnectError::Client(e.to_string()))?;
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let attempt = client.fetch_metadata(None, left.min(SLICE));
        // Serve the error events, so `ctx` sees them.
        let _ = client.poll(Duration::ZERO);
        if let Some(fatal) = ctx.fatal() {
            return Err(fatal);
        }
        match attempt {
            Ok(m) => return Ok(m),
            Err(e) if Instant::now() >= deadline => {
                return Err(ConnectError::NoAnswer {
                    error: e.to_string(),
                    cause: ctx.first(),
                })
            }
            Err(_) => {}
        }
    }
}

/// What a [`connect`] client heard from librdkafka: its first error, and the first SASL or TLS
/// failure. Its logs stay out of the worker's (the producer's context logs the same errors).
#[derive(Clone, Default)]
struct Reported(Arc<Mutex<Heard>>);

#[derive(Default)]
struct Heard {
    first: Option<String>,
    fatal: Option<ConnectError>,
}

impl Reported {
    fn first(&self) -> Option<String> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .first
            .clone()
    }

    fn fatal(&self) -> Option<ConnectError> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .fatal
            .clone()
    }

    fn hear(&self, what: String, fatal: Option<ConnectError>) {
        let mut heard = self.0.lock().unwrap_or_else(|e| e.into_inner());
        heard.first.get_or_insert(what);
        if heard.fatal.is_none() {
            heard.fatal = fatal;
        }
    }
}

/// The SASL or TLS failure `error` reports, if it is one.
pub fn classify(code: Option<RDKafkaErrorCode>, reason: &str) -> Option<ConnectError> {
    match code {
        Some(RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SaslAuthenticationFailed) => {
            Some(ConnectError::Sasl(reason.to_owned()))
        }
        Some(RDKafkaErrorCode::SSL) => Some(ConnectError::Tls(reason.to_owned())),
        // A handshake failure is sometimes reported as a transport failure with the reason.
        _ if reason.contains("SSL handshake failed") => Some(ConnectError::Tls(reason.to_owned())),
        _ if reason.contains("SASL authentication error") => {
            Some(ConnectError::Sasl(reason.to_owned()))
        }
        _ => None,
    }
}

impl ClientContext for Reported {
    fn log(&self, level: RDKafkaLogLevel, _fac: &str, message: &str) {
        if matches!(
            level,
            RDKafkaLogLevel::Emerg
                | RDKafkaLogLevel::Alert
                | RDKafkaLogLevel::Critical
                | RDKafkaLogLevel::Error
                | RDKafkaLogLevel::Warning
        ) {
            self.hear(message.to_owned(), classify(None, message));
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let fatal = classify(error.rdkafka_error_code(), reason);
        self.hear(format!("{error}: {reason}"), fatal);
    }
}

impl ConsumerContext for Reported {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sasl_and_tls_failures_are_told_apart_from_the_rest() {
        let sasl = classify(
            Some(RDKafkaErrorCode::Authentication),
            "SASL authentication error: Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512",
        );
        assert!(matches!(sasl, Some(ConnectError::Sasl(_))), "{sasl:?}");
        let tls = classify(
            Some(RDKafkaErrorCode::SSL),
            "SSL handshake failed: error:0A000086:SSL routines::certificate verify failed",
        );
        assert!(matches!(tls, Some(ConnectError::Tls(_))), "{tls:?}");
        let logged = classify(None, "ssl://127.0.0.1:1/bootstrap: SSL handshake failed: x");
        assert!(matches!(logged, Some(ConnectError::Tls(_))), "{logged:?}");
        assert_eq!(
            classify(
                Some(RDKafkaErrorCode::BrokerTransportFailure),
                "Connection refused"
            ),
            None
        );
        assert_eq!(
            classify(
                Some(RDKafkaErrorCode::AllBrokersDown),
                "1/1 brokers are down"
            ),
            None
        );
    }

    #[test]
    fn messages_name_the_failure_and_the_settings() {
        let sasl = ConnectError::Sasl("invalid credentials".into());
        assert!(sasl.to_string().starts_with("SASL authentication failed"));
        assert!(sasl.fix().contains("sasl.password"));
        let tls = ConnectError::Tls("certificate verify failed".into());
        assert!(tls.to_string().contains("certificate"));
        assert!(tls.fix().contains("ssl.ca.location"));
    }
}
