//! The simulator in its own process for `bench`: the same binary run as `simulate`, its address
//! read from its stdout, and its scenario, counters and CPU time reached over HTTP and `/proc`.

use anyhow::{bail, Context};
use silentauth_simulator::{Scenario, SimStats};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A running `silentauth-worker simulate` child process (killed when dropped).
pub struct SimProcess {
    child: Child,
    control: String,
    base_url: String,
    http: reqwest::Client,
}

impl SimProcess {
    /// Spawns the current executable as `simulate --listen 127.0.0.1:0` and waits for the
    /// `listening on <addr>` and `base_url <url>` lines it prints.
    pub async fn spawn() -> anyhow::Result<SimProcess> {
        let exe = std::env::current_exe().context("cannot find the current executable")?;
        let mut child = Command::new(exe)
            .args(["simulate", "--listen", "127.0.0.1:0"])
            .env("RUST_LOG", "error")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("cannot spawn the simulator process")?;
        let stdout = child.stdout.take().context("the simulator has no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let (mut addr, mut base_url) = (None, None);
        let read = async {
            while addr.is_none() || base_url.is_none() {
                let Some(line) = lines.next_line().await? else {
                    bail!("the simulator exited before printing its address");
                };
                if let Some(a) = line.strip_prefix("listening on ") {
                    addr = Some(a.trim().to_owned());
                } else if let Some(u) = line.strip_prefix("base_url ") {
                    base_url = Some(u.trim().to_owned());
                }
            }
            Ok(())
        };
        tokio::time::timeout(Duration::from_secs(20), read)
            .await
            .context("the simulator did not print its address within 20 s")??;
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let (Some(addr), Some(base_url)) = (addr, base_url) else {
            bail!("the simulator did not print its address");
        };
        Ok(SimProcess {
            child,
            control: format!("http://{addr}/_sim"),
            base_url,
            http: reqwest::Client::new(),
        })
    }

    /// The API base URL (`http://127.0.0.1:PORT/silent-auth/v1`).
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Replaces the scenario (`PUT /_sim/scenario`).
    pub async fn set_scenario(&self, s: &Scenario) -> anyhow::Result<()> {
        let r = self
            .http
            .put(format!("{}/scenario", self.control))
            .body(s.to_toml_string())
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("the simulator refused the scenario: {}", r.text().await?);
        }
        Ok(())
    }

    /// Zeroes the counters (`POST /_sim/reset-stats`).
    pub async fn reset_stats(&self) -> anyhow::Result<()> {
        self.http
            .post(format!("{}/reset-stats", self.control))
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }

    /// The counters (`GET /_sim/stats`).
    pub async fn stats(&self) -> anyhow::Result<SimStats> {
        Ok(self
            .http
            .get(format!("{}/stats", self.control))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?)
    }

    /// CPU seconds (user + system) the simulator process used so far, from `/proc/<pid>/stat`.
    pub fn cpu_seconds(&self) -> Option<f64> {
        super::usage::process_cpu_seconds(self.child.id()?)
    }

    /// Kills the process and waits for it.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}
