//! The tyntec Silent Authentication API: the HTTP client, the error-class table, the retry policy
//! (with the single-use-code rule), the per-profile rate limiter and concurrency limit and the spent-code state of a job.

pub mod classify;
pub mod client;
pub mod concurrency;
pub mod limiter;
pub mod network_signals;
pub mod retry;
pub mod spent;

pub use classify::{classify, Classification, Transport};
pub use client::{Api, HttpOutcome, HttpResponse, SilentAuthClient, TokenGrant, UserInfo};
pub use concurrency::Concurrency;
pub use limiter::{Limiter, Priority};
pub use network_signals::SignalCall;
pub use retry::RetryPolicy;
pub use spent::{Spent, SpentCode};
