//! An in-process Kafka cluster (librdkafka's MockCluster) for `demo` and tests.
