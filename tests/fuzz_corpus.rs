//! Replays the committed fuzz corpora of the `decode_job` and `upstream_answer` targets
//! (`fuzz/corpus/<target>/`), their regressions (`fuzz/regressions/<target>/`) and the schema
//! corpus through the same invariant checks as the fuzzer, on stable Rust: the shortened form of
//! the fuzzing that CI runs. A missing or empty corpus or regressions directory fails, so nothing
//! passes by replaying nothing.

use serde_json::Value;
use silentauth_worker::fuzzing::decode_job::check_decode;
use silentauth_worker::fuzzing::upstream_answer::check_answer;
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
    check_file_with(path, check_decode)
}

fn check_file_with(path: &Path, check: fn(&[u8])) {
    let bytes = fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    if let Err(panic) = std::panic::catch_unwind(|| check(&bytes)) {
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
fn upstream_answer_corpus_keeps_every_invariant() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/upstream_answer");
    let files = files_in(&dir, "fuzz corpus");
    assert!(
        files.len() >= 100,
        "{} holds {} inputs; the committed corpus is missing",
        dir.display(),
        files.len()
    );
    for path in &files {
        check_file_with(path, check_answer);
    }
}

#[test]
fn upstream_answer_regressions_keep_every_invariant() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions/upstream_answer");
    for path in &files_in(&dir, "fuzz regressions") {
        check_file_with(path, check_answer);
    }
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

/// Writes the seed corpus of `upstream_answer` (`cargo test --test fuzz_corpus -- --ignored`):
/// a seeded generator combining each call with statuses, hostile `Retry-After` values and bodies
/// (valid, malformed, mistyped, contradictory, echoing the harness's secrets). It stands in for
/// `cargo +nightly fuzz run upstream_answer` where cargo-fuzz is not installed; the fuzzer's own
/// finds are added beside these.
#[test]
#[ignore = "writes fuzz/corpus/upstream_answer; run on purpose"]
fn write_upstream_answer_seed_corpus() {
    use silentauth_worker::fuzzing::upstream_answer::{API_KEY, CALLS, CLIENT_SECRET, CODE};
    let statuses = [
        200, 201, 204, 301, 400, 401, 403, 404, 409, 422, 429, 500, 501, 502, 503, 504, 599,
    ];
    let retry_after = [
        None,
        Some("0"),
        Some("1"),
        Some("18446744073709551615"),
        Some("99999999999999999999999999"),
        Some("-1"),
        Some("garbage"),
        Some("1.5"),
        Some(""),
        Some("Fri, 31 Dec 9999 23:59:59 GMT"),
        Some("Thu, 01 Jan 1970 00:00:00 GMT"),
        Some("Sun, 06 Nov 1994 08:49:37 GMT"),
        Some("Mon, 32 Foo 2026 99:99:99 GMT"),
    ];
    let echo = format!(
        r#"{{"error":"invalid_request","error_description":"bad code {CODE} key {API_KEY} secret {CLIENT_SECRET}"}}"#
    );
    let camara_echo = format!(
        r#"{{"status":400,"code":"INVALID_ARGUMENT","message":"apiKey {API_KEY} rejected"}}"#
    );
    let long = format!(
        r#"{{"error":"x","error_description":"{}"}}"#,
        "é".repeat(600)
    );
    let bodies: Vec<String> = [
        r#"{"access_token":"eyJhbGciOi-issued-token","token_type":"Bearer","expires_in":3600}"#,
        r#"{"access_token":"eyJhbGciOi-issued-token","token_type":"mac"}"#,
        r#"{"access_token":5,"token_type":"Bearer"}"#,
        r#"{"access_token":"","token_type":"Bearer"}"#,
        r#"{"sub":"99dd","mobile_id":"2d83","login_hint":"4915100000001","phone_number_verified":"true"}"#,
        r#"{"sub":"anonymous","login_hint":"4915100000001","phone_number_verified":"true"}"#,
        r#"{"sub":"anonymous","login_hint":"4915100000001","phone_number_verified":false}"#,
        r#"{"sub":"99dd","login_hint":"4915100000999","phone_number_verified":true}"#,
        r#"{"login_hint":"4915100000001","phone_number_verified":"TRUE"}"#,
        r#"{"login_hint":4915100000001,"phone_number_verified":"true"}"#,
        r#"{"swapped":true}"#,
        r#"{"swapped":"yes"}"#,
        r#"{"active":true}"#,
        r#"{"active":null}"#,
        r#"{"latestSimChange":"2026-11-26T10:00:00Z"}"#,
        r#"{"latestDeviceChange":null}"#,
        r#"{"latestSimChange":"yesterday"}"#,
        r#"{"status":404,"code":"IDENTIFIER_NOT_FOUND","message":"unknown"}"#,
        r#"{"status":422,"code":"SERVICE_NOT_APPLICABLE","message":"n/a"}"#,
        r#"{"status":429,"code":"TOO_MANY_REQUESTS","message":"slow down"}"#,
        r#"{"error":"invalid_grant","error_description":"used"}"#,
        r#"{"error":"invalid_client","error_description":"Request not authenticated"}"#,
        r#"{"error":"internal_server_error"}"#,
        r#"{"error":{"nested":true}}"#,
        "<html><body>Bad Gateway</body></html>",
        "",
        "null",
        "[]",
        "{",
        "\u{0}\u{ff}",
    ]
    .iter()
    .map(|b| b.to_string())
    .chain([echo, camara_echo, long])
    .collect();
    let mut seed: u64 = 0x5eed_a115;
    let mut next = |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    };
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/upstream_answer");
    fs::create_dir_all(&dir).unwrap();
    let mut written = 0;
    // Every call with every status once, then random combinations.
    let mut inputs: Vec<(usize, u16, Option<&str>, &str)> = Vec::new();
    // The healthy body of each call, in the order of CALLS.
    let healthy = [0, 4, 10, 14, 10, 15, 12];
    for call in 0..CALLS.len() {
        for &status in &statuses {
            inputs.push((call, status, None, bodies[healthy[call]].as_str()));
        }
    }
    for _ in 0..160 {
        let call = next(CALLS.len());
        let status = statuses[next(statuses.len())];
        let ra = retry_after[next(retry_after.len())];
        let body = bodies[next(bodies.len())].as_str();
        inputs.push((call, status, ra, body));
    }
    for (call, status, ra, body) in inputs {
        let mut text = format!("{} {status}\n", CALLS[call]);
        if let Some(v) = ra {
            text.push_str(&format!("Retry-After: {v}\n"));
        }
        text.push('\n');
        text.push_str(body);
        // FNV-1a of the content names the file, as a fuzzer names its finds by a hash.
        let hash = text.bytes().fold(0xcbf29ce484222325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x100000001b3)
        });
        fs::write(dir.join(format!("seed-{hash:016x}")), text).unwrap();
        written += 1;
    }
    assert!(written >= 100);
}
