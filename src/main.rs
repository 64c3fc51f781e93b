//! Entry point: parse the command line, start tracing, dispatch (`commands.rs`), exit with the
//! command's code.

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
    init_tracing(cli.log_format, cli.log_color);
    match commands::dispatch(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => e.exit(),
    }
}

/// Logs go to stderr: JSON lines, or text on a terminal; `RUST_LOG` filters (default `info`).
/// Text carries ANSI colours only on a terminal (or with `--log-color always`).
fn init_tracing(format: Option<cli::LogFormat>, color: cli::LogColor) {
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
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    if json {
        builder.json().with_current_span(true).init();
    } else {
        builder.init();
    }
}
