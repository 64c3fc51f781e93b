//! Entry point: parse the command line, start tracing, dispatch, map errors to exit codes.

mod cli;
mod tools;

use clap::Parser;
use silentauth_worker::config::{check_config, Config};
use std::io::IsTerminal;
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;

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
    let traces = start_traces(&cli.command, &runtime);
    init_tracing(cli.log_format, cli.log_color, traces.as_ref().map(|t| &t.0));
    if let Some((t, _)) = &traces {
        let endpoint = silentauth_worker::config::mask_url_credentials(&t.endpoint);
        tracing::info!(%endpoint, "traces are exported over OTLP");
    }
    let code = match cli.command {
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
                    ExitCode::from(e.exit_code())
                }
            }
        }
        cli::Command::Demo {
            jobs,
            seed,
            timeout,
            latency,
            max_in_flight,
        } => {
            let opts = tools::demo::DemoOptions {
                jobs,
                seed,
                timeout,
                latency: std::time::Duration::from_millis(latency),
                max_in_flight,
            };
            match runtime.block_on(tools::demo::run(opts)) {
                Ok(report) if report.success() => ExitCode::SUCCESS,
                Ok(_) => ExitCode::FAILURE,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        cli::Command::Simulate { listen, scenario } => {
            match runtime.block_on(silentauth_simulator::run_cli(listen, scenario)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        cli::Command::ReplayDlq { config, args } => {
            use silentauth_worker::replay::{replay, ReplayOptions};
            let config = match Config::load(config.as_deref()) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            let opts = match ReplayOptions::from_args(args) {
                Ok(o) => o,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(e.exit_code());
                }
            };
            let cancel = CancellationToken::new();
            runtime.spawn(cancel_on_signal(cancel.clone()));
            match runtime.block_on(replay(&config, &opts, cancel)) {
                Ok(report) => {
                    print!("{}", report.render_table());
                    if report.interrupted {
                        ExitCode::from(130)
                    } else {
                        ExitCode::SUCCESS
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "replay failed");
                    eprintln!("error: {e}");
                    ExitCode::from(e.exit_code())
                }
            }
        }
        cli::Command::Bench {
            scenario,
            jobs,
            partitions,
            brokers,
            skip_limits,
            in_process,
            max_in_flight,
            concurrency,
            ledger,
        } => {
            let scenarios = match tools::bench::ScenarioId::parse_list(&scenario) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    return ExitCode::from(2);
                }
            };
            let opts = tools::bench::BenchOptions {
                scenarios,
                jobs,
                partitions,
                brokers,
                skip_limits,
                in_process,
                max_in_flight,
                concurrency: match concurrency.as_str() {
                    "fixed" => silentauth_worker::config::ConcurrencyMode::Fixed,
                    _ => silentauth_worker::config::ConcurrencyMode::Adaptive,
                },
                ledger: ledger == "on",
            };
            match runtime.block_on(tools::bench::run_scenarios(opts)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        cli::Command::Doctor { config, json } => {
            let config = match Config::load(config.as_deref()) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            let report = runtime.block_on(silentauth_worker::doctor::run(&config));
            if json {
                print!("{}", report.render_json());
            } else {
                print!("{}", report.render_text());
            }
            ExitCode::from(report.exit_code())
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
    };
    if let Some((traces, grace)) = traces {
        runtime.block_on(traces.shutdown(grace));
    }
    code
}

/// The trace exporter of a command that runs jobs (`run`, `replay-dlq`, `demo`, `bench`), when
/// `telemetry` (or the `OTEL_*` variables) names an endpoint; with the time its flush may take at
/// exit. A config that does not load starts none: the command reports the error itself.
fn start_traces(
    command: &cli::Command,
    runtime: &tokio::runtime::Runtime,
) -> Option<(
    silentauth_worker::telemetry::traces::Traces,
    std::time::Duration,
)> {
    let path = match command {
        cli::Command::Run { config } | cli::Command::ReplayDlq { config, .. } => config.as_deref(),
        cli::Command::Demo { .. } | cli::Command::Bench { .. } => None,
        _ => return None,
    };
    let config = Config::load(path).ok()?;
    let _entered = runtime.enter();
    match silentauth_worker::telemetry::traces::Traces::start(&config.telemetry) {
        Ok(t) => t.map(|t| (t, config.worker.shutdown_grace)),
        Err(e) => {
            eprintln!("warning: traces are off: {e}");
            None
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
