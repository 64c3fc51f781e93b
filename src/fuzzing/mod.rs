//! The fuzzing oracles: the invariants the fuzz targets (`fuzz/`) check on every outcome, and
//! `tests/fuzz_corpus.rs` replays on the committed corpora with stable Rust. Compiled only with
//! feature `fuzzing` (the fuzz crate and this crate's own tests enable it), never into the
//! worker's binary.

pub mod decode_job;
pub mod upstream_answer;
