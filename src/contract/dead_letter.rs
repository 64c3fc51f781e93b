//! The dead-letter header set of CONTRACT.md §6.

/// The provenance of a dead letter, written as `dlq.*` headers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeadLetterHeaders {}
