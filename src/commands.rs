//! Each subcommand as a function from its arguments to `Ok(())` or a [`CliError`] carrying its
//! exit code; `main` only dispatches.

use crate::cli::Command;
use crate::tools;
use silentauth_worker::config::{check_config, Config};
use silentauth_worker::telemetry::traces::Traces;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;
use tokio::runtime::Runtime;
use tokio_util::sync::CancellationToken;

/// How a command failed: its exit code, and what to print on stderr (nothing when the command
/// already said it, e.g. a demo whose summary shows the jobs that went wrong).
#[derive(Debug)]
pub struct CliError {
    code: u8,
    message: Option<String>,
}

impl CliError {
    /// Exit `code` after printing `error: {message}`.
    fn new(code: u8, message: impl std::fmt::Display) -> CliError {
        CliError {
            code,
            message: Some(message.to_string()),
        }
    }

    /// Exit `code` with nothing more to say.
    fn quiet(code: u8) -> CliError {
        CliError {
            code,
            message: None,
        }
    }

    /// Prints the message, if any, and gives the exit code.
    pub fn exit(self) -> ExitCode {
        if let Some(m) = &self.message {
            eprintln!("error: {m}");
        }
        ExitCode::from(self.code)
    }
}

/// Runs `command` on `runtime`.
pub fn dispatch(command: Command, runtime: &Runtime) -> Result<(), CliError> {
    match command {
        Command::Run { config } => run(runtime, config.as_deref()),
        Command::Demo {
            jobs,
            seed,
            timeout,
            latency,
            max_in_flight,
        } => demo(
            runtime,
            tools::demo::DemoOptions {
                jobs,
                seed,
                timeout,
                latency: std::time::Duration::from_millis(latency),
                max_in_flight,
            },
        ),
        Command::Simulate { listen, scenario } => {
            let served = runtime.block_on(silentauth_simulator::run_cli(listen, scenario));
            served.map_err(|e| CliError::new(1, format!("{e:#}")))
        }
        Command::ReplayDlq { config, args } => replay_dlq(runtime, config.as_deref(), args),
        Command::Bench {
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
            let scenarios = tools::bench::ScenarioId::parse_list(&scenario)
                .map_err(|e| CliError::new(2, format!("{e:#}")))?;
            bench(
                runtime,
                tools::bench::BenchOptions {
                    scenarios,
                    jobs,
                    partitions,
                    brokers,
                    skip_limits,
                    in_process,
                    max_in_flight,
                    concurrency: concurrency.into(),
                    ledger: ledger == crate::cli::Switch::On,
                },
            )
        }
        Command::Doctor { config, json } => doctor(runtime, config.as_deref(), json),
        Command::CheckConfig { config } => {
            let (text, code) = check_config(config.as_deref());
            if code == 0 {
                print!("{text}");
                return Ok(());
            }
            eprintln!("{text}");
            Err(CliError::quiet(code.clamp(1, 255) as u8))
        }
    }
}

/// `run`: the worker, until SIGINT or SIGTERM.
fn run(runtime: &Runtime, config: Option<&Path>) -> Result<(), CliError> {
    let config = load(config)?;
    let cancel = CancellationToken::new();
    let ran = runtime.block_on(async move {
        tokio::spawn(cancel_on_signal(cancel.clone()));
        silentauth_worker::worker::run(config, cancel).await
    });
    ran.map_err(|e| {
        tracing::error!(error = %e, "worker failed");
        CliError::new(e.exit_code(), e)
    })
}

/// `demo`: exit 0 only when every job ended as expected (the summary says which did not).
fn demo(runtime: &Runtime, opts: tools::demo::DemoOptions) -> Result<(), CliError> {
    match runtime.block_on(tools::demo::run(opts)) {
        Ok(report) if report.success() => Ok(()),
        Ok(_) => Err(CliError::quiet(1)),
        Err(e) => Err(CliError::new(1, format!("{e:#}"))),
    }
}

/// `replay-dlq`: prints its report; exit 130 when a signal stopped it.
fn replay_dlq(
    runtime: &Runtime,
    config: Option<&Path>,
    args: silentauth_worker::replay::ReplayArgs,
) -> Result<(), CliError> {
    use silentauth_worker::replay::{replay, ReplayOptions};
    let config = load(config)?;
    let opts = ReplayOptions::from_args(args).map_err(|e| CliError::new(e.exit_code(), &e))?;
    let cancel = CancellationToken::new();
    let replayed = runtime.block_on(async move {
        tokio::spawn(cancel_on_signal(cancel.clone()));
        replay(&config, &opts, cancel).await
    });
    let report = replayed.map_err(|e| {
        tracing::error!(error = %e, "replay failed");
        CliError::new(e.exit_code(), &e)
    })?;
    print!("{}", report.render_table());
    match report.interrupted {
        true => Err(CliError::quiet(130)),
        false => Ok(()),
    }
}

/// `bench`.
fn bench(runtime: &Runtime, opts: tools::bench::BenchOptions) -> Result<(), CliError> {
    runtime
        .block_on(tools::bench::run_scenarios(opts))
        .map_err(|e| CliError::new(1, format!("{e:#}")))
}

/// `doctor`: prints its report (text or JSON); exit 0 only when every check passed.
fn doctor(runtime: &Runtime, config: Option<&Path>, json: bool) -> Result<(), CliError> {
    let config = load(config)?;
    let report = runtime.block_on(silentauth_worker::doctor::run(&config));
    match json {
        true => print!("{}", report.render_json()),
        false => print!("{}", report.render_text()),
    }
    match report.exit_code() {
        0 => Ok(()),
        code => Err(CliError::quiet(code)),
    }
}

/// The configuration at `path` (or the default); a configuration error exits 2.
fn load(path: Option<&Path>) -> Result<Config, CliError> {
    Config::load(path).map_err(|e| CliError::new(2, e))
}

/// The multi-threaded runtime every command runs on.
pub fn runtime() -> Result<Runtime, CliError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::new(1, format!("cannot start the async runtime: {e}")))
}

/// The trace exporter of a command that runs jobs (`run`, `replay-dlq`, `demo`, `bench`), when
/// `telemetry` (or the `OTEL_*` variables) names an endpoint; with the time its flush may take at
/// exit. A config that does not load starts none: the command reports the error itself.
pub fn start_traces(command: &Command, runtime: &Runtime) -> Option<(Traces, Duration)> {
    let path = match command {
        Command::Run { config } | Command::ReplayDlq { config, .. } => config.as_deref(),
        Command::Demo { .. } | Command::Bench { .. } => None,
        _ => return None,
    };
    let config = Config::load(path).ok()?;
    let _entered = runtime.enter();
    match Traces::start(&config.telemetry) {
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
