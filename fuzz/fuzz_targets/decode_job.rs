//! Fuzzes `Job::decode` with arbitrary bytes and checks the invariants of
//! `silentauth_worker::fuzzing::decode_job` on every outcome (not only that it does not panic).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    silentauth_worker::fuzzing::decode_job::check_decode(bytes);
});
