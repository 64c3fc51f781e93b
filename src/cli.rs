//! The command line: `run`, `demo`, `simulate`, `replay-dlq`, `check-config`, `doctor`, `bench`.

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
    /// Colours in text logs: `auto` (default) only when stderr is a terminal and `NO_COLOR` is
    /// unset, `always`, or `never`.
    #[arg(long, global = true, value_enum, default_value_t = LogColor::Auto)]
    pub log_color: LogColor,
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

/// When text logs carry ANSI colour codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogColor {
    /// On a terminal only (and not when `NO_COLOR` is set).
    Auto,
    /// Always, even into a pipe or a file.
    Always,
    /// Never.
    Never,
}

/// `worker.concurrency` on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Concurrency {
    /// The limit adapts to the upstream's latency.
    Adaptive,
    /// `worker.max_in_flight`, fixed.
    Fixed,
}

impl From<Concurrency> for silentauth_worker::config::ConcurrencyMode {
    fn from(c: Concurrency) -> Self {
        match c {
            Concurrency::Adaptive => silentauth_worker::config::ConcurrencyMode::Adaptive,
            Concurrency::Fixed => silentauth_worker::config::ConcurrencyMode::Fixed,
        }
    }
}

/// A setting turned on or off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Switch {
    /// On.
    On,
    /// Off.
    Off,
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
    /// Run the whole pipeline on an embedded Kafka cluster and the built-in simulator, with a
    /// seeded mix of jobs; print a summary and exit 0 only if every job ended as expected.
    Demo {
        /// Jobs to generate.
        #[arg(long, default_value_t = 2000)]
        jobs: usize,
        /// Seed of the job mix: the same seed gives the same jobs, numbers and faults.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// How long to wait for every result once publishing started (e.g. 120s, 5m).
        #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
        /// Fixed latency the simulator adds to every answer, in milliseconds.
        #[arg(long, default_value_t = 0)]
        latency: u64,
        /// Jobs the worker processes concurrently (worker.max_in_flight).
        #[arg(long, default_value_t = 1024)]
        max_in_flight: usize,
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
    /// Re-publish dead letters to the jobs topic (docs/contract.md), up to the end offsets seen at
    /// start, committing the replay group's position only after the broker acknowledged them.
    ReplayDlq {
        /// Config file (default config/default.toml, else the embedded default).
        #[arg(long)]
        config: Option<PathBuf>,
        /// What to replay and how.
        #[command(flatten)]
        args: silentauth_worker::replay::ReplayArgs,
    },
    /// Measure throughput, latency, CPU and memory: the worker and the simulator each in a child
    /// process (S6: the worker in this one), an embedded MockCluster (or --brokers), scenario by
    /// scenario, with the passthrough and simulator ceilings measured in the same run.
    Bench {
        /// S1..S6, warmup (time to ready against millions of results; not in all), a
        /// comma-separated list, or all.
        #[arg(long, default_value = "all")]
        scenario: String,
        /// Jobs per scenario (default: each scenario's own, e.g. 100,000 for S1).
        #[arg(long)]
        jobs: Option<usize>,
        /// Partitions of the jobs and results topics (default: one per 2,500 jobs, 8 to 64).
        #[arg(long)]
        partitions: Option<i32>,
        /// An external broker (HOST:PORT, e.g. tansu) instead of the embedded MockCluster;
        /// topics are created with the admin API.
        #[arg(long)]
        brokers: Option<String>,
        /// Skip the passthrough and simulator-capacity runs.
        #[arg(long)]
        skip_limits: bool,
        /// Run the worker inside the bench process for every scenario, as S6 always does (its
        /// CPU and memory then include the broker and the bench's producer and reader).
        #[arg(long)]
        in_process: bool,
        /// worker.max_in_flight for every scenario (default: each scenario's own, 1,024).
        #[arg(long)]
        max_in_flight: Option<usize>,
        /// worker.concurrency for every scenario: adaptive (the default) or fixed.
        #[arg(long, value_enum, default_value_t = Concurrency::Adaptive)]
        concurrency: Concurrency,
        /// worker.ledger for every scenario: on (the default) or off, to measure its cost.
        #[arg(long, value_enum, default_value_t = Switch::On)]
        ledger: Switch,
    },
    /// Print the effective configuration with secrets masked.
    CheckConfig {
        /// Config file (default config/default.toml, else the embedded default).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Check the configuration against Kafka and the APIs: brokers (with TLS/SASL), topics and
    /// their retention, the consumer group and its lag, every client profile's credentials
    /// (without spending a code) and Network Signals; one line per check with the fix; exit 0
    /// only when every check passes.
    Doctor {
        /// Config file (default config/default.toml, else the embedded default).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}
