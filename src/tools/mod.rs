//! The binary's tools: `demo` (the whole pipeline on an embedded cluster with a seeded mix of
//! jobs) and `bench` (throughput, latency and resource use against the simulator).
//!
//! They belong to the binary, not to the product library: the library is what `run` needs, and
//! its public API should not carry load generators and reports. They are not a crate of their
//! own either, because the binary would then depend on a tools crate that depends on the
//! library, a cycle Cargo refuses inside one package; the binary would have to leave the root
//! package, and `cargo run --release -- demo` at the repository root would stop working.

pub mod bench;
pub mod demo;
