//! Replays the committed fuzz corpus of the `decode_job` target (`fuzz/corpus/decode_job/`, plus
//! `fuzz/regressions/decode_job/` when present) and the schema corpus through the same invariant
//! checks as the fuzzer, on stable Rust: the shortened form of the fuzzing that CI runs.

use serde_json::Value;
use silentauth_worker::contract::fuzzing::check_decode;
use std::fs;
use std::path::{Path, PathBuf};

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
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
    let files = files_in(&dir);
    assert!(
        !files.is_empty(),
        "{} is empty; the committed corpus is missing",
        dir.display()
    );
    for path in &files {
        check_file(path);
    }
}

#[test]
fn fuzz_regressions_keep_every_decode_invariant() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions/decode_job");
    if dir.is_dir() {
        for path in files_in(&dir) {
            check_file(&path);
        }
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
