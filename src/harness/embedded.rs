//! An in-process Kafka cluster (librdkafka's MockCluster) for `demo` and tests.
//!
//! [`EmbeddedCluster`] wraps [`MockCluster`]: real brokers listening on loopback ports, so any
//! Kafka client (in this process or a child process) can connect to
//! [`EmbeddedCluster::bootstrap_servers`]. It supports consumer groups with offset commits,
//! idempotent and transactional producers, and fault injection through
//! [`EmbeddedCluster::mock`].
//!
//! Limits worth knowing:
//! - the admin API (`CreateTopics`) is not supported: create topics with
//!   [`EmbeddedCluster::create_topic`] (topics are also auto-created on first use, with the
//!   default partition count);
//! - each partition keeps only about 5 MB (or 100,000 records) of log; older records are
//!   dropped;
//! - a consumer group's first join waits about 3 s (the mock's
//!   `group.initial.rebalance.delay.ms`), so the first assignment is not instant;
//! - everything lives in memory and is gone when the cluster is dropped.

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;

/// An in-process Kafka cluster backed by librdkafka's mock broker.
///
/// Dropping it shuts the brokers down; clients still connected will see transport errors.
pub struct EmbeddedCluster {
    mock: MockCluster<'static, DefaultProducerContext>,
}

// SAFETY: `MockCluster` is `!Send`/`!Sync` only because it holds a raw pointer to the
// librdkafka mock cluster. The mock cluster runs on its own thread; every operation this type
// (and `MockCluster`'s API) performs on it is either a read of immutable data (the bootstrap
// string) or an op posted to that thread's queue and awaited, which librdkafka makes
// thread-safe. Destroying it from any thread is allowed. The owned client handle is
// `Send + Sync`.
unsafe impl Send for EmbeddedCluster {}
// SAFETY: see the `Send` impl above; all `&self` operations are thread-safe in librdkafka.
unsafe impl Sync for EmbeddedCluster {}

impl EmbeddedCluster {
    /// Starts a mock cluster with `brokers` brokers (at least 1), each listening on a free
    /// loopback port.
    pub fn start(brokers: i32) -> Result<Self, KafkaError> {
        let mock = MockCluster::new(brokers.max(1))?;
        Ok(Self { mock })
    }

    /// The `bootstrap.servers` list of the cluster, e.g. `127.0.0.1:40123,127.0.0.1:40125`.
    pub fn bootstrap_servers(&self) -> String {
        self.mock.bootstrap_servers()
    }

    /// Creates `name` with `partitions` partitions (replication factor 1).
    ///
    /// Creating a topic that already exists succeeds and leaves it unchanged.
    pub fn create_topic(&self, name: &str, partitions: i32) -> Result<(), KafkaError> {
        match self.mock.create_topic(name, partitions, 1) {
            Err(KafkaError::MockCluster(RDKafkaErrorCode::TopicAlreadyExists)) => Ok(()),
            other => other,
        }
    }

    /// The underlying mock cluster, for fault injection (request errors, broker down/up,
    /// round-trip delays, partition leaders).
    pub fn mock(&self) -> &MockCluster<'static, DefaultProducerContext> {
        &self.mock
    }
}

impl std::fmt::Debug for EmbeddedCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedCluster")
            .field("bootstrap_servers", &self.bootstrap_servers())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_and_creates_topics() {
        let cluster = EmbeddedCluster::start(3).expect("mock cluster");
        let bootstrap = cluster.bootstrap_servers();
        assert_eq!(bootstrap.split(',').count(), 3, "{bootstrap}");
        cluster.create_topic("jobs", 4).expect("create topic");
        cluster
            .create_topic("jobs", 4)
            .expect("create existing topic");
    }

    #[test]
    fn is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<EmbeddedCluster>();
    }
}
