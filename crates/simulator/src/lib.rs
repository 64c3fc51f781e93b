//! The Silent Auth simulator (axum): the seed's endpoints, Network Signals, scenarios and fault
//! injection.
//!
//! A faithful stand-in for `https://api.tyntec.com/silent-auth/v1` and
//! `https://api.tyntec.com/network-signal/v1` used by tests, `demo`, the benchmark and
//! docker-compose. [`SimHandle::start`] serves:
//! - `GET /silent-auth/v1/oauth2/authorize`: 302 to `redirect_uri` with a single-use `code`, or
//!   with a seed B.1 `error` (400 JSON when `redirect_uri` itself is unusable);
//! - `POST /silent-auth/v1/oauth2/token`: the code exchange (A.2, B.2); a code is used by the
//!   first request that presents it, and later presentations are counted as `codes_reused`;
//! - `GET /silent-auth/v1/oauth2/userinfo`: the verdict (A.3, B.3), `"true"` when the number the
//!   network sees for the device ([`Scenario::devices`]) equals the authorize login_hint;
//! - `POST /network-signal/v1/sim-swap/check|retrieve-date`, `…/device-swap/check|retrieve-date`
//!   and `…/call-forwarding/unconditional/check`: answered from [`Scenario::signals`], with
//!   swap ages that grow with the simulator's clock and CAMARA error bodies;
//! - `GET /_sim/stats`, `GET|PUT /_sim/scenario` (TOML), `POST /_sim/reset-stats`, `GET /_sim/health`.
//!
//! A [`Scenario`] adds latency, fault rules (statuses with `Retry-After`, dropped connections,
//! slow and malformed answers, bodies cut off, stalled or longer than their `Content-Length`;
//! `rate`, `first`, `per_code`, `login_hints` selection) and a rate limit, for the signal
//! endpoints too. `config/simulator.toml` documents every key. Codes, tokens and numbers are
//! never logged.
//!
//! Modules import from the file that defines a name, never through a re-export, and depend in
//! one direction only: leaves (`endpoint`, `error`, `conn`, `broken`, `responses`, `limiter`,
//! `device`), then the scenario model (`fault_rule`, `network_signals::profile`, `scenario`),
//! then the serving state (`stats`, `faults`, `state`), the request `pipeline`, the handlers
//! (`authorize`, `token`, `userinfo`, `network_signals`, `control`) and last `server`.

mod authorize;
mod broken;
mod conn;
mod control;
mod device;
mod endpoint;
mod error;
mod fault_rule;
mod faults;
mod limiter;
mod network_signals;
mod pipeline;
pub mod responses;
mod scenario;
mod server;
mod state;
mod stats;
mod token;
mod userinfo;

pub use device::{authorize, AuthorizeRedirect};
pub use endpoint::SimEndpoint;
pub use error::ScenarioError;
pub use fault_rule::{FaultKind, FaultRule, RetryAfter};
pub use network_signals::profile::{SignalRule, SignalsConfig};
pub use network_signals::wire::SIGNALS_PATH_PREFIX;
pub use scenario::{Latency, LatencyConfig, Scenario, SimClient, SimRateLimit};
pub use server::{SimHandle, PATH_PREFIX};
pub use stats::{EndpointStats, PerSecond, SimStats, DROPPED};

use anyhow::Context;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Serves the simulator on `listen` until SIGINT or SIGTERM, printing the listen address and the
/// base URL on stdout at start.
pub async fn run_cli(listen: SocketAddr, scenario: Option<PathBuf>) -> anyhow::Result<()> {
    let scenario = match &scenario {
        Some(path) => Scenario::from_file(path)?,
        None => Scenario::default(),
    };
    let sim = SimHandle::start(listen, scenario)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {}", sim.addr())?;
        writeln!(out, "base_url {}", sim.base_url())?;
        writeln!(out, "signals_base_url {}", sim.signals_base_url())?;
        out.flush()?;
    }
    tracing::info!(addr = %sim.addr(), "simulator started");
    shutdown_signal().await?;
    tracing::info!("simulator stopping");
    sim.shutdown().await;
    Ok(())
}

async fn shutdown_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.context("cannot watch SIGINT")?,
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c()
        .await
        .context("cannot watch Ctrl-C")?;
    Ok(())
}
