//! The Silent Auth simulator (axum): the seed's endpoints, scenarios and fault injection.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Serves the simulator on `listen` until SIGINT or SIGTERM.
pub async fn run_cli(_listen: SocketAddr, _scenario: Option<PathBuf>) -> anyhow::Result<()> {
    anyhow::bail!("the simulator is not built yet")
}
