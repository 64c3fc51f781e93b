//! Replays the committed fuzz corpus of the `decode_job` target (`fuzz/corpus/decode_job/`), its
//! regressions (`fuzz/regressions/decode_job/`) and the schema corpus through the same invariant
//! checks as the fuzzer, on stable Rust: the shortened form of the fuzzing that CI runs. A missing
//! or empty corpus or regressions directory fails, so nothing passes by replaying nothing.

use serde_json::Value;
use silentauth_worker::contract::fuzzing::check_decode;
use std::fs;
use std::path::{Path, PathBuf};

/// The files of `dir`, sorted; panics when `dir` is missing or holds no file (`what` names it).
fn files_in(dir: &Path, what: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {} ({what}): {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "{} holds no file: the committed {what} is missing",
        dir.display()
    );
    files
}

fn check_file(path: &Path) {
    let bytes = fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    if let Err(panic) = std::panic::catch_unwind(|| check_decode(&bytes)) {
        let message = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .unwrap_or("a panic without a message");
        panic!("{}: {message}", path.display());
    }
}

#[test]
fn fuzz_corpus_keeps_every_decode_invariant() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/decode_job");
    for path in &files_in(&dir, "fuzz corpus") {
        check_file(path);
    }
}

#[test]
fn fuzz_regressions_keep_every_decode_invariant() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions/decode_job");
    for path in &files_in(&dir, "fuzz regressions") {
        check_file(path);
    }
}

#[test]
fn schema_corpus_keeps_every_decode_invariant() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/jobs.jsonl");
    let text = fs::read_to_string(&path).expect("the schema corpus");
    let mut cases = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let case: Value = serde_json::from_str(line).expect("a corpus line is JSON");
        let bytes = if let Some(job) = case.get("job") {
            serde_json::to_vec(job).expect("a JSON value serializes")
        } else if let Some(raw) = case.get("raw").and_then(Value::as_str) {
            raw.as_bytes().to_vec()
        } else if let Some(hex) = case.get("raw_hex").and_then(Value::as_str) {
            (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("raw_hex is hex"))
                .collect()
        } else {
            panic!("a corpus case without job, raw or raw_hex: {line}");
        };
        check_decode(&bytes);
        cases += 1;
    }
    assert!(cases > 0, "{} has no cases", path.display());
}

#[test]
#[should_panic(expected = "fuzz regressions")]
fn a_missing_directory_fails_instead_of_replaying_nothing() {
    let missing = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions/no_such_target");
    files_in(&missing, "fuzz regressions");
}

#[test]
#[should_panic(expected = "holds no file")]
fn an_empty_directory_fails_instead_of_replaying_nothing() {
    let empty = tempfile::tempdir().expect("a temp dir");
    files_in(empty.path(), "fuzz corpus");
}
