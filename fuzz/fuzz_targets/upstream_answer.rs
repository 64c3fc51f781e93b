//! Fuzzes the worker's handling of one upstream answer (token, userinfo or a Network Signals
//! call: status, `Retry-After`, body) through the whole verification of a job, and checks the
//! invariants of `silentauth_worker::fuzzing::upstream_answer` on every outcome.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    silentauth_worker::fuzzing::upstream_answer::check_answer(bytes);
});
