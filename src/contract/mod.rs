//! The wire formats of the public contract (docs/contract.md): jobs, results and dead-letter
//! headers. No I/O lives here.

pub mod dead_letter;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod job;
pub mod result;
pub mod signals;
pub mod syntax;

pub use dead_letter::{
    header, replay_count_from_headers, DeadLetterHeaders, ParsedDeadLetter, SourceRecord,
};
pub use job::{DecodeFailure, Job, JobError};
pub use result::{ErrorClass, ErrorInfo, JobResult, Stage, Status};
pub use signals::{RiskFlag, SignalsReport, SignalsRequest};
