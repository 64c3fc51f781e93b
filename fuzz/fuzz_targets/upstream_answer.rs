//! Fuzzes the worker's handling of one upstream answer (token, userinfo or a Network Signals
//! call: status, `Retry-After`, body) through the whole verification of a job, and checks the
//! invariants of `silentauth_worker::silentauth::fuzzing` on every outcome.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    silentauth_worker::silentauth::fuzzing::check_answer(bytes);
});
