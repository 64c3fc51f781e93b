//! Micro-benchmarks of the per-job hot path that needs no I/O: decoding and validating a job,
//! classifying a failed response, and encoding a result. Run with `cargo bench --bench hot_path`.

use chrono::Utc;
use criterion::{criterion_group, criterion_main, Criterion};
use silentauth_worker::contract::result::SCHEMA_VERSION;
use silentauth_worker::contract::{ErrorClass, ErrorInfo, Job, JobResult, Stage, Status};
use silentauth_worker::silentauth::classify;
use std::hint::black_box;

fn job_bytes() -> Vec<u8> {
    serde_json::json!({
        "job_id": "9b2c6f0e-7d1a-4c55-9a43-2f0c1d2e3f40",
        "login_hint": "381123456789",
        "code": "kgoV1pFxi1EIlocesrMcia6AhNyw6QyZ2mD0",
        "redirect_uri": "https://client.example.com/callback",
        "state": "xyz12345",
        "issued_at": "2026-11-25T10:00:00Z",
        "attributes": {"tenant": "acme", "channel": "web"}
    })
    .to_string()
    .into_bytes()
}

fn result() -> JobResult {
    JobResult {
        schema_version: SCHEMA_VERSION,
        job_id: "9b2c6f0e-7d1a-4c55-9a43-2f0c1d2e3f40".into(),
        status: Status::Failed,
        phone_number_verified: None,
        login_hint: Some("381123456789".into()),
        sub: None,
        mobile_id: None,
        state: Some("xyz12345".into()),
        attributes: [("tenant".to_owned(), "acme".to_owned())].into(),
        error: Some(
            ErrorInfo::new(
                ErrorClass::UpstreamUnavailable,
                Stage::Token,
                "token upstream answered HTTP 503",
            )
            .with_status(Some(503)),
        ),
        attempts: 4,
        duplicate: false,
        replay_count: 0,
        received_at: Utc::now(),
        completed_at: Utc::now(),
        duration_ms: 184,
        signals: None,
        risk_flags: None,
    }
}

fn hot_path(c: &mut Criterion) {
    let bytes = job_bytes();
    c.bench_function("decode a valid job", |b| {
        b.iter(|| Job::decode(black_box(&bytes)).unwrap())
    });
    let junk = vec![b'x'; 4096];
    c.bench_function("reject 4 KB of junk", |b| {
        b.iter(|| Job::decode(black_box(&junk)).unwrap_err())
    });
    let body = br#"{"error":"internal_server_error","error_description":"Request could not be processed."}"#;
    c.bench_function("classify a token 500", |b| {
        b.iter(|| {
            classify(
                Stage::Token,
                Some(black_box(500)),
                black_box(body),
                None,
                &[],
            )
        })
    });
    let r = result();
    c.bench_function("encode a result", |b| {
        b.iter(|| serde_json::to_vec(black_box(&r)).unwrap())
    });
}

criterion_group!(benches, hot_path);
criterion_main!(benches);
