//! Why the worker stopped with an error, and the process exit code each reason maps to.

use crate::kafka::transactions::TxnError;
use rdkafka::error::KafkaError;
use std::time::Duration;

/// Why the worker stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The brokers did not answer within `kafka.connect_timeout`.
    #[error(
        "cannot reach Kafka at {brokers} within kafka.connect_timeout ({timeout:?}): {source}"
    )]
    Unreachable {
        /// `kafka.brokers`.
        brokers: String,
        /// `kafka.connect_timeout`.
        timeout: Duration,
        /// The client's error.
        source: KafkaError,
    },
    /// The brokers refused this client's SASL credentials or the TLS handshake failed, or did
    /// not answer within `kafka.connect_timeout`.
    #[error(
        "cannot reach Kafka at {brokers} within kafka.connect_timeout ({timeout:?}): {error}; {}",
        error.fix()
    )]
    Connect {
        /// `kafka.brokers`.
        brokers: String,
        /// `kafka.connect_timeout`.
        timeout: Duration,
        /// What went wrong.
        error: crate::kafka::connect::ConnectError,
    },
    /// This client's principal lacks ACLs the worker needs: a configuration error.
    #[error("missing ACLs at {brokers}: {}", problems.join("; "))]
    Acls {
        /// `kafka.brokers`.
        brokers: String,
        /// One line per missing ACL, naming its key, the resource and the operation.
        problems: Vec<String>,
    },
    /// A configured topic does not exist (or cannot be used), and `worker.wait_for_topics` is
    /// off: a configuration error.
    #[error(
        "{} (brokers {brokers}); or set worker.wait_for_topics = true to wait for them",
        problems.join("; ")
    )]
    Topics {
        /// `kafka.brokers`.
        brokers: String,
        /// One line per topic, naming its key and the fix.
        problems: Vec<String>,
    },
    /// A Kafka client could not be created or used.
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    /// The HTTP client could not be built.
    #[error(transparent)]
    Http(#[from] crate::silentauth::client::ClientError),
    /// The transactional producer was fenced or failed fatally (`exactly_once`).
    #[error(transparent)]
    Transaction(#[from] TxnError),
    /// The worker could not go on without presenting codes again: a configuration error,
    /// naming the key.
    #[error("{0}")]
    Halted(String),
}

impl WorkerError {
    /// The process exit code: 2 for a configuration error (a missing topic or ACL), 1
    /// otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            WorkerError::Topics { .. } | WorkerError::Acls { .. } | WorkerError::Halted(_) => 2,
            _ => 1,
        }
    }
}
