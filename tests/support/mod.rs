//! Shared helpers for integration tests (`mod support;` in each test file).
//!
//! Not every test binary uses every helper, hence the blanket `dead_code` allowance.
#![allow(dead_code)]

pub mod broker;
pub mod process;
pub mod secured;
pub mod world;

#[allow(unused_imports)]
pub use broker::{BrokerKind, KafkaNodes, TestBroker};
pub mod load;
pub mod otlp;
pub mod tap;
