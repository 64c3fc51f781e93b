//! The printed report of each scenario: its header, the rows every batch has, and the rows of
//! its own measure.

use super::batch::Batch;
use super::limits::Limits;
use std::fmt::Write as _;
use std::time::Duration;

pub(super) fn header(b: &Batch, what: &str) -> String {
    format!(
        "{} — {what}\n  jobs {} (results {}, dead letters {}), {} partitions, max_in_flight {}, concurrency {}{}\n",
        b.spec.name,
        b.spec.jobs,
        b.results,
        b.dead_letters,
        b.spec.partitions,
        b.spec.max_in_flight,
        match b.spec.concurrency {
            silentauth_worker::config::ConcurrencyMode::Adaptive => "adaptive",
            silentauth_worker::config::ConcurrencyMode::Fixed => "fixed",
        },
        if b.timed_out { ", TIMED OUT" } else { "" }
    )
}

fn row(out: &mut String, name: &str, value: String) {
    let _ = writeln!(out, "  {name:<42} {value}");
}

pub(super) fn common_rows(out: &mut String, b: &Batch) {
    row(
        out,
        "throughput (first to last result)",
        format!("{:.0} jobs/s", b.throughput()),
    );
    row(
        out,
        "job latency duration_ms p50 / p99 / max",
        b.duration_ms.render_ms(),
    );
    row(
        out,
        "publish -> result p50 / p99 / max",
        b.end_to_end.render_ms(),
    );
    if let (Some(per_1000), Some(cpu)) = (b.worker_cpu_per_1000(), b.worker_cpu) {
        row(
            out,
            "CPU s per 1,000 jobs (worker process)",
            format!(
                "{per_1000:.3} s ({:.1} s over the run, {:.0}% of one core)",
                cpu.as_secs_f64(),
                100.0 * cpu.as_secs_f64() / b.window.as_secs_f64().max(1e-9)
            ),
        );
    }
    row(
        out,
        if b.worker_cpu.is_some() {
            "CPU s per 1,000 jobs (bench process)"
        } else {
            "CPU s per 1,000 jobs (bench process + worker)"
        },
        format!(
            "{:.3} s ({:.1} s over the run)",
            b.cpu_per_1000(),
            b.cpu.as_secs_f64()
        ),
    );
    row(
        out,
        "simulator CPU s per 1,000 jobs",
        b.sim_cpu.map_or("n/a".into(), |c| {
            format!("{:.3} s", c * 1000.0 / b.results.max(1) as f64)
        }),
    );
    if b.worker_hwm_kib > 0 {
        row(
            out,
            "worker peak RSS (VmHWM)",
            format!("{:.0} MiB", b.worker_hwm_kib as f64 / 1024.0),
        );
    }
    row(
        out,
        "bench process peak RSS (ru_maxrss, so far)",
        format!("{:.0} MiB", b.max_rss_kib as f64 / 1024.0),
    );
    row(
        out,
        "simulator requests/s mean / peak / min",
        format!(
            "{:.0} / {} / {} (token+userinfo, full seconds)",
            b.sim.mean_per_second(),
            b.sim.peak_per_second(),
            b.sim.min_per_second()
        ),
    );
}

pub(super) fn render_s1(b: &Batch, limits: Option<Limits>) -> String {
    let mut out = header(b, "zero latency, no rate limit");
    common_rows(&mut out, b);
    if let Some(l) = limits {
        row(
            &mut out,
            "ratio to min(passthrough, capacity / 2)",
            format!(
                "{:.2} ({:.0} of {:.0} jobs/s)",
                b.throughput() / l.jobs_per_second(),
                b.throughput(),
                l.jobs_per_second()
            ),
        );
    }
    out
}

pub(super) fn render_s2(b: &Batch) -> String {
    let mut out = header(b, "100 ms per request");
    common_rows(&mut out, b);
    let bound = b.spec.max_in_flight as f64 / (2.0 * 0.1);
    row(
        &mut out,
        "bound: max_in_flight / (2 x 100 ms)",
        format!(
            "{bound:.0} jobs/s (measured {:.0}%)",
            100.0 * b.throughput() / bound
        ),
    );
    out
}

pub(super) fn render_s3(b: &Batch) -> String {
    let mut out = header(b, "requests_per_second 500, burst 50, backlog, 30 s");
    common_rows(&mut out, b);
    let full = b.sim_full_seconds();
    let mean = full.iter().sum::<u64>() as f64 / full.len().max(1) as f64;
    row(
        &mut out,
        "achieved rate over the run (full seconds)",
        format!(
            "{mean:.1} requests/s over {} s ({:.0}% of 500)",
            full.len(),
            mean / 5.0
        ),
    );
    row(
        &mut out,
        "worst 1-second windows: highest / lowest",
        format!(
            "{} / {} requests (limit + burst = 550)",
            full.iter().max().copied().unwrap_or(0),
            full.iter().min().copied().unwrap_or(0)
        ),
    );
    out
}

pub(super) fn render_s4(b: &Batch) -> String {
    let mut out = format!("S4 — idle on an empty topic for {} s\n", b.window.as_secs());
    let pct = |cpu: Duration| 100.0 * cpu.as_secs_f64() / b.window.as_secs_f64().max(1e-9);
    if let Some(cpu) = b.worker_cpu {
        row(
            &mut out,
            "CPU of one core (worker process)",
            format!("{:.2}% ({:.3} s of CPU)", pct(cpu), cpu.as_secs_f64()),
        );
        row(
            &mut out,
            "worker RSS when ready / peak (VmHWM)",
            format!(
                "{:.0} MiB / {:.0} MiB",
                b.worker_rss_ready_kib as f64 / 1024.0,
                b.worker_hwm_kib as f64 / 1024.0
            ),
        );
    }
    row(
        &mut out,
        "CPU of one core (bench process)",
        format!(
            "{:.2}% ({:.2} s of CPU; the idle embedded broker{})",
            pct(b.cpu),
            b.cpu.as_secs_f64(),
            if b.worker_cpu.is_some() {
                ""
            } else {
                " and the worker"
            }
        ),
    );
    row(
        &mut out,
        "simulator requests during the idle window",
        format!("{}", b.sim.total),
    );
    out
}

pub(super) fn render_s5(b: &Batch) -> String {
    let mut out = header(b, "1,024 in flight (100 ms per request) over a backlog");
    common_rows(&mut out, b);
    if b.worker_cpu.is_some() {
        row(
            &mut out,
            "worker RSS ready / sampled peak / VmHWM",
            format!(
                "{:.0} MiB / {:.0} MiB / {:.0} MiB (VmRSS sampled every 100 ms)",
                b.worker_rss_ready_kib as f64 / 1024.0,
                b.rss_peak_kib as f64 / 1024.0,
                b.worker_hwm_kib as f64 / 1024.0
            ),
        );
    } else {
        row(
            &mut out,
            "RSS before the worker / peak while running",
            format!(
                "{:.0} MiB / {:.0} MiB (+{:.0} MiB; sampled VmRSS every 100 ms)",
                b.rss_before_kib as f64 / 1024.0,
                b.rss_peak_kib as f64 / 1024.0,
                b.rss_peak_kib.saturating_sub(b.rss_before_kib) as f64 / 1024.0
            ),
        );
    }
    row(
        &mut out,
        "most jobs in flight at a sample",
        format!("{}", b.in_flight_peak),
    );
    out
}

pub(super) fn render_s6(b: &Batch, s1_rate: f64) -> String {
    let mut out = header(
        b,
        &format!(
            "paced at {:.0} jobs/s (half of S1's {s1_rate:.0})",
            b.spec.publish_rate.unwrap_or(0.0)
        ),
    );
    common_rows(&mut out, b);
    row(
        &mut out,
        "publish -> result minus HTTP time p50/p99/max",
        b.overhead.render_ms(),
    );
    row(
        &mut out,
        "duration_ms minus HTTP time p50/p99/max",
        b.worker_overhead.render_ms(),
    );
    out
}
