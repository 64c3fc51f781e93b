//! The worker in its own process for `bench`: this binary run as `run --config <file>`, so its
//! CPU time and memory are measured apart from the embedded broker and the bench's producer and
//! reader. The configuration goes through a temporary TOML file (secrets serialize as `***`,
//! so they travel in `SILENTAUTH__CLIENTS__*` variables instead); the admin listener binds an
//! ephemeral port that the child logs and the bench reads, then `/readyz` tells when it has
//! partitions.

use anyhow::{bail, Context};
use silentauth_worker::config::Config;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStderr, Command};

/// How long the child may take to log its admin address and then to turn ready.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The log line the admin listener writes once bound (`silentauth_worker::telemetry::admin::start`).
const ADMIN_STARTED: &str = "admin listener started";

/// A running `silentauth-worker run` child process (killed when dropped).
pub struct WorkerProcess {
    child: Child,
    pid: u32,
    admin: SocketAddr,
    config_path: PathBuf,
    http: reqwest::Client,
}

/// What the worker's `/status.json` says right now (the few counters the bench shows).
#[derive(Debug, Clone, Copy, Default)]
pub struct Counters {
    /// Jobs in flight.
    pub in_flight: u64,
    /// HTTP requests sent.
    pub http_requests: u64,
}

/// A few values of the worker's `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MetricsSample {
    /// `silentauth_concurrency_limit` of the `default` client profile (the one the bench uses).
    pub concurrency_limit: u64,
    /// `silentauth_results_total`.
    pub results: u64,
    /// `silentauth_http_requests_total` answered 429 or 503.
    pub throttled: u64,
    /// `silentauth_jobs_in_flight`.
    pub in_flight: u64,
}

impl MetricsSample {
    /// Reads the Prometheus text format `text`.
    pub fn parse(text: &str) -> MetricsSample {
        let mut m = MetricsSample::default();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((name, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(v) = value.parse::<f64>() else {
                continue;
            };
            let v = v as u64;
            if name == "silentauth_concurrency_limit{client=\"default\"}" {
                m.concurrency_limit = v;
            } else if name == "silentauth_jobs_in_flight" {
                m.in_flight = v;
            } else if name.starts_with("silentauth_results_total{") {
                m.results += v;
            } else if name.starts_with("silentauth_http_requests_total{")
                && (name.contains("status=\"429\"") || name.contains("status=\"503\""))
            {
                m.throttled += v;
            }
        }
        m
    }
}

impl WorkerProcess {
    /// Writes `config` to a temporary file and starts the current executable on it; returns
    /// once its `/readyz` answers 200 (it joined the group and has partitions).
    pub async fn spawn(config: &Config) -> anyhow::Result<WorkerProcess> {
        let mut config = config.clone();
        // Port 0: the child logs the port it got, which avoids a race for a "free" port.
        config.admin.listen = "127.0.0.1:0".into();
        let config_path = write_config(&config)?;
        let mut child = match run_command(&config, &config_path)?.spawn() {
            Ok(c) => c,
            Err(e) => {
                let _ = std::fs::remove_file(&config_path);
                return Err(e).context("cannot spawn the worker process");
            }
        };
        let pid = child.id().context("the worker process has no pid")?;
        let stderr = child.stderr.take().context("the worker has no stderr")?;
        let mut lines = BufReader::new(stderr).lines();
        let admin = match tokio::time::timeout(READY_TIMEOUT, find_admin_addr(&mut lines)).await {
            Ok(Ok(addr)) => addr,
            Ok(Err(e)) => {
                let _ = std::fs::remove_file(&config_path);
                return Err(e);
            }
            Err(_) => {
                let _ = std::fs::remove_file(&config_path);
                bail!("the worker logged no admin address within {READY_TIMEOUT:?}");
            }
        };
        // Keep forwarding its (error-level) log so the child never blocks on a full pipe.
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("worker: {line}");
            }
        });
        let mut w = WorkerProcess {
            child,
            pid,
            admin,
            config_path,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(2))
                .build()
                .context("cannot build the HTTP client")?,
        };
        w.wait_ready().await?;
        Ok(w)
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let url = format!("http://{}/readyz", self.admin);
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("the worker exited before it was ready ({status})");
            }
            if let Ok(r) = self.http.get(&url).send().await {
                if r.status().is_success() {
                    return Ok(());
                }
            }
            if started.elapsed() > READY_TIMEOUT {
                bail!("the worker was not ready within {READY_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// User + system CPU seconds the worker used so far.
    pub fn cpu_seconds(&self) -> Option<f64> {
        super::usage::process_cpu_seconds(self.pid)
    }

    /// Its current (`VmRSS`) and peak (`VmHWM`) resident set size, in KiB.
    pub fn rss_kib(&self) -> Option<(u64, u64)> {
        super::usage::process_rss_kib(self.pid)
    }

    /// In-flight jobs and HTTP requests from its `/status.json`.
    pub async fn counters(&self) -> Option<Counters> {
        let url = format!("http://{}/status.json", self.admin);
        let v: serde_json::Value = self.http.get(url).send().await.ok()?.json().await.ok()?;
        let c = &v["counters"];
        Some(Counters {
            in_flight: c["in_flight"].as_u64()?,
            http_requests: c["http_requests"].as_u64().unwrap_or(0),
        })
    }

    /// What its `/metrics` says of the adaptive concurrency: the `default` profile's limit, and
    /// results and throttled answers (429 and 503) summed over their labels.
    pub async fn metrics(&self) -> Option<MetricsSample> {
        let url = format!("http://{}/metrics", self.admin);
        let text = self.http.get(url).send().await.ok()?.text().await.ok()?;
        Some(MetricsSample::parse(&text))
    }

    /// Sends SIGTERM and waits up to `within` for a graceful stop; kills it after that.
    pub async fn stop(mut self, within: Duration) {
        // SAFETY: kill(2) with a pid this process spawned and has not reaped yet.
        let rc = unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGTERM) };
        if rc == 0 {
            match tokio::time::timeout(within, self.child.wait()).await {
                Ok(Ok(s)) if s.success() => return,
                Ok(Ok(s)) => {
                    eprintln!("bench: the worker process stopped with {s}");
                    return;
                }
                Ok(Err(e)) => eprintln!("bench: cannot wait for the worker process: {e}"),
                Err(_) => eprintln!("bench: the worker process did not stop within {within:?}"),
            }
        }
        let _ = self.child.kill().await;
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.config_path);
    }
}

/// The address in the admin listener's JSON log line, if `line` is that line.
fn admin_addr(line: &str) -> Option<SocketAddr> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    let fields = &v["fields"];
    if fields["message"].as_str()? != ADMIN_STARTED {
        return None;
    }
    fields["addr"].as_str()?.parse().ok()
}

/// Writes `config` to a fresh temporary TOML file (secrets as `***`) and returns its path.
fn write_config(config: &Config) -> anyhow::Result<PathBuf> {
    let text = toml::to_string(config).context("cannot serialize the worker config")?;
    let config_path = std::env::temp_dir().join(format!(
        "silentauth-bench-{}.toml",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::write(&config_path, text)
        .with_context(|| format!("cannot write {}", config_path.display()))?;
    Ok(config_path)
}

/// `<this executable> run --config <config_path>`, logging errors and the admin address as
/// JSON on a piped stderr, with the secrets in `SILENTAUTH__CLIENTS__*` variables and nothing
/// else of the bench's own `SILENTAUTH__` environment.
fn run_command(config: &Config, config_path: &Path) -> anyhow::Result<Command> {
    let exe = std::env::current_exe().context("cannot find the current executable")?;
    let mut cmd = Command::new(exe);
    cmd.args(["--log-format", "json", "run", "--config"])
        .arg(config_path)
        // Errors only, plus the one line that carries the admin address.
        .env("RUST_LOG", "error,silentauth_worker::telemetry::admin=info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    // The file is the whole configuration: nothing from the bench's own environment.
    for (name, _) in std::env::vars_os() {
        if name
            .to_str()
            .is_some_and(|n| n.to_ascii_uppercase().starts_with("SILENTAUTH__"))
        {
            cmd.env_remove(name);
        }
    }
    for (name, profile) in &config.clients {
        let var = |key: &str| format!("SILENTAUTH__CLIENTS__{}__{key}", name.to_uppercase());
        cmd.env(var("CLIENT_SECRET"), profile.client_secret.expose())
            .env(var("API_KEY"), profile.api_key.expose());
    }
    Ok(cmd)
}

/// Reads the child's log until the admin listener's line, echoing the lines before it.
async fn find_admin_addr(lines: &mut Lines<BufReader<ChildStderr>>) -> anyhow::Result<SocketAddr> {
    loop {
        let Some(line) = lines.next_line().await? else {
            bail!("the worker exited before starting its admin listener");
        };
        match admin_addr(&line) {
            Some(addr) => return Ok(addr),
            None => eprintln!("worker: {line}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_admin_address_from_the_json_log() {
        let line = r#"{"timestamp":"2025-01-01T00:00:00Z","level":"INFO","fields":{"message":"admin listener started","addr":"127.0.0.1:40123"},"target":"silentauth_worker::admin"}"#;
        assert_eq!(admin_addr(line), Some("127.0.0.1:40123".parse().unwrap()));
        assert_eq!(
            admin_addr(r#"{"fields":{"message":"worker started"}}"#),
            None
        );
        assert_eq!(admin_addr("not json"), None);
    }

    #[test]
    fn metrics_are_read_over_their_labels() {
        let text = "# TYPE silentauth_concurrency_limit gauge\n\
            silentauth_concurrency_limit{client=\"default\"} 16\n\
            silentauth_concurrency_limit{client=\"other\"} 64\n\
            silentauth_results_total{status=\"verified\",class=\"none\"} 10\n\
            silentauth_results_total{status=\"failed\",class=\"expired\"} 2\n\
            silentauth_http_requests_total{endpoint=\"token\",status=\"429\"} 3\n\
            silentauth_http_requests_total{endpoint=\"userinfo\",status=\"503\"} 1\n\
            silentauth_http_requests_total{endpoint=\"token\",status=\"200\"} 99\n\
            silentauth_jobs_in_flight 7\n";
        assert_eq!(
            MetricsSample::parse(text),
            MetricsSample {
                concurrency_limit: 16,
                results: 12,
                throttled: 4,
                in_flight: 7,
            }
        );
    }
}
