//! The command line: `run`, `demo`, `simulate`, `replay-dlq`, `check-config`.

use clap::{Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;

/// Turns tyntec Silent Authentication callbacks into phone_number_verified verdicts.
#[derive(Debug, Parser)]
#[command(name = "silentauth-worker", version, about)]
pub struct Cli {
    /// Log format; default text on a terminal, json otherwise.
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormat>,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Log output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable lines.
    Text,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Consume jobs, verify them, publish results and dead letters (the product).
    Run {
        /// Config file (default config/default.toml, else the embedded default).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Serve the Silent Auth simulator for local stacks and tests.
    Simulate {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Scenario file (TOML); without it the seed's example credentials are accepted.
        #[arg(long)]
        scenario: Option<PathBuf>,
    },
    /// Print the effective configuration with secrets masked.
    CheckConfig {
        /// Config file (default config/default.toml, else the embedded default).
        #[arg(long)]
        config: Option<PathBuf>,
    },
}
