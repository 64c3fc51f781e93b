//! Entry point: parse the command line, start the runtime, traces and logs, dispatch
//! (`commands.rs`), flush the traces, exit with the command's code.

mod cli;
mod commands;
mod tools;

use clap::Parser;
use std::io::IsTerminal;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    if matches!(
        cli.command,
        cli::Command::Demo { .. } | cli::Command::Bench { .. } | cli::Command::Doctor { .. }
    ) && std::env::var_os("RUST_LOG").is_none()
    {
        // The demo's own output is the point: keep the worker's logs (and the warnings about
        // its deliberate poison messages) out of it. Set before any thread exists.
        std::env::set_var("RUST_LOG", "error");
    }
    let runtime = match commands::runtime() {
        Ok(rt) => rt,
        Err(e) => return e.exit(),
    };
    let traces = commands::start_traces(&cli.command, &runtime);
    init_tracing(cli.log_format, cli.log_color, traces.as_ref().map(|t| &t.0));
    if let Some((t, _)) = &traces {
        let endpoint = silentauth_worker::config::mask_url_credentials(&t.endpoint);
        tracing::info!(%endpoint, "traces are exported over OTLP");
    }
    let done = commands::dispatch(cli.command, &runtime);
    if let Some((traces, grace)) = traces {
        runtime.block_on(traces.shutdown(grace));
    }
    match done {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => e.exit(),
    }
}

/// Logs go to stderr: JSON lines, or text on a terminal; `RUST_LOG` filters (default `info`).
/// Text carries ANSI colours only on a terminal (or with `--log-color always`). With `traces`,
/// the spans of a job are exported beside them (docs/tracing.md).
fn init_tracing(
    format: Option<cli::LogFormat>,
    color: cli::LogColor,
    traces: Option<&silentauth_worker::telemetry::traces::Traces>,
) {
    use silentauth_worker::telemetry::logging::{init, LogStyle};
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = match format {
        Some(cli::LogFormat::Json) => true,
        Some(cli::LogFormat::Text) => false,
        None => !std::io::stderr().is_terminal(),
    };
    let ansi = match color {
        cli::LogColor::Always => true,
        cli::LogColor::Never => false,
        cli::LogColor::Auto => {
            std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
        }
    };
    init(LogStyle { json, ansi }, filter, traces);
}
