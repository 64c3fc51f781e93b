//! The wire formats of the public contract (docs/contract.md): jobs, results and dead-letter
//! headers. No I/O lives here.

pub mod dead_letter;
pub mod error;
pub mod job;
pub mod network_signals;
pub mod publication;
pub mod record;
pub mod result;
pub mod syntax;

pub use dead_letter::{header, replay_count_from_headers, DeadLetterHeaders, ParsedDeadLetter};
pub use error::{ErrorClass, ErrorInfo, Stage};
pub use job::{DecodeFailure, Job, JobError};
pub use network_signals::{RiskFlag, SignalsReport, SignalsRequest};
pub use publication::{DeadLetterRecord, Publication, ResultRecord};
pub use record::{JobRecord, Origin};
pub use result::{JobResult, Status};
