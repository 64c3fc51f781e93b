//! Entry point: parse the command line, start tracing, dispatch, map errors to exit codes.

mod cli;

use clap::Parser;
use silentauth_worker::config::{check_config, Config};
use std::io::IsTerminal;
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    init_tracing(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        cli::Command::Run { config } => {
            let config = match Config::load(config.as_deref()) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            let cancel = CancellationToken::new();
            runtime.spawn(cancel_on_signal(cancel.clone()));
            match runtime.block_on(silentauth_worker::worker::run(config, cancel)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %e, "worker failed");
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        cli::Command::Simulate { listen, scenario } => {
            match runtime.block_on(silentauth_worker::simulator::run_cli(listen, scenario)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        cli::Command::CheckConfig { config } => {
            let (text, code) = check_config(config.as_deref());
            if code == 0 {
                print!("{text}");
            } else {
                eprintln!("{text}");
            }
            ExitCode::from(code.clamp(0, 255) as u8)
        }
    }
}

/// Cancels `token` on SIGINT or SIGTERM.
async fn cancel_on_signal(token: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    token.cancel();
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("signal received: shutting down");
    token.cancel();
}

/// Logs go to stderr: JSON lines, or text on a terminal; `RUST_LOG` filters (default `info`).
fn init_tracing(format: Option<cli::LogFormat>) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = match format {
        Some(cli::LogFormat::Json) => true,
        Some(cli::LogFormat::Text) => false,
        None => !std::io::stderr().is_terminal(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().with_current_span(true).init();
    } else {
        builder.init();
    }
}
