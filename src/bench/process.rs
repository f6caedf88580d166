//! A `warden serve` child process for benchmarks that must measure the
//! server from outside: its own address space, its own runtime, its peak
//! memory and CPU time read from `/proc`, and the time it takes to answer
//! its first health check.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use crate::cli::client::ClientArgs;

/// A free port on 127.0.0.1, for a config file that names its listen
/// address before the server starts. Another process could take it in
/// between; the server then fails to start and the benchmark says so.
pub fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// A dev PKI, keys and config in `base/dev`, data in `base/data`, listening
/// on a free loopback port. The config is what `warden serve` is given.
pub fn prepare_dev(
    base: &Path,
) -> anyhow::Result<(crate::cli::dev::DevArgs, crate::config::Config)> {
    let dev = crate::cli::dev::DevArgs {
        dir: base.join("dev"),
        data_dir: base.join("data"),
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], free_port()?)),
        metrics_listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        prepare_only: true,
    };
    let config = crate::cli::dev::prepare(&dev)?;
    Ok((dev, config))
}

/// A client, as `role`, of a server on loopback `port` that uses the dev
/// PKI in `dev_dir`.
pub fn dev_client(dev_dir: &Path, port: u16, role: &str) -> ClientArgs {
    ClientArgs {
        addr: format!("https://localhost:{port}"),
        role: Some(role.to_string()),
        dev_dir: dev_dir.to_path_buf(),
        cert: None,
        key: None,
        ca: None,
        json: false,
    }
}

/// `warden serve --config <config>` running as a child of this process.
/// Dropping it kills the child.
pub struct ServeProcess {
    child: Child,
    pub log: PathBuf,
}

impl ServeProcess {
    /// Starts this very binary as `warden serve`, logging to `log`.
    pub fn spawn(config: &Path, log: &Path) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("cannot find this program's path")?;
        let log_file = std::fs::File::create(log)
            .with_context(|| format!("cannot create {}", log.display()))?;
        let child = Command::new(exe)
            .arg("serve")
            .arg("--config")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log_file))
            .spawn()
            .context("cannot start warden serve")?;
        Ok(Self {
            child,
            log: log.to_path_buf(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Polls the health service until it answers SERVING; returns how long
    /// that took from `since`. Fails if the child exits or `limit` passes.
    pub async fn wait_ready(
        &mut self,
        client: &ClientArgs,
        since: Instant,
        limit: Duration,
    ) -> anyhow::Result<Duration> {
        loop {
            if let Some(status) = self.child.try_wait()? {
                anyhow::bail!(
                    "warden serve exited ({status}) before it was ready; see {}",
                    self.log.display()
                );
            }
            if serving(client).await {
                return Ok(since.elapsed());
            }
            if since.elapsed() > limit {
                anyhow::bail!(
                    "warden serve was not ready within {} s; see {}",
                    limit.as_secs(),
                    self.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Peak resident set size (VmHWM) in KiB.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        self.status_kib("VmHWM:")
    }

    /// Current resident set size (VmRSS) in KiB.
    pub fn rss_kib(&self) -> Option<u64> {
        self.status_kib("VmRSS:")
    }

    /// A `kB` field of `/proc/<pid>/status`.
    fn status_kib(&self, field: &str) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// Resets the peak RSS to the current RSS (Linux `clear_refs` 5), so the
    /// next [`Self::peak_rss_kib`] covers only what follows. False when the
    /// kernel refuses.
    pub fn reset_peak_rss(&self) -> bool {
        std::fs::write(format!("/proc/{}/clear_refs", self.pid()), "5").is_ok()
    }

    /// User + system CPU time the server has used so far.
    pub fn cpu_time(&self) -> Option<Duration> {
        cpu_time_of(&format!("/proc/{}/stat", self.pid()))
    }

    /// Asks the server to stop (SIGTERM through `kill`, as an operator
    /// would) and waits up to `limit`; kills it after that.
    pub fn stop(mut self, limit: Duration) -> anyhow::Result<()> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status();
        let until = Instant::now() + limit;
        while Instant::now() < until {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        anyhow::bail!("warden serve did not stop within {} s", limit.as_secs())
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// CPU time (user + system) of the process whose `/proc/<pid>/stat` this is.
pub fn cpu_time_of(stat_path: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(stat_path).ok()?;
    // Fields after the command name, which is in parentheses and may hold
    // spaces: state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_secs_f64(ticks as f64 / clock_ticks() as f64))
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on every common Linux).
fn clock_ticks() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100)
    })
}

/// One health check with a short time limit; true when SERVING.
async fn serving(client: &ClientArgs) -> bool {
    let attempt = async {
        let channel = client.endpoint("auditor")?.connect().await?;
        let answer = HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await?;
        anyhow::Ok(answer.into_inner().status() == ServingStatus::Serving)
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(2), attempt).await,
        Ok(Ok(true))
    )
}
