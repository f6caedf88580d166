//! `warden bench cold-start`: how long `warden serve` takes to become
//! useful on a big data directory.
//!
//! A history (customers, then deployments admitted over many days, most
//! released) is loaded through the real store with the attribution bench's
//! loader, and the store is closed. Then `warden serve` is started on it as
//! a child process, several times: each launch is timed from spawn to the
//! health service answering SERVING and to a first authenticated RPC
//! (`Ledger.GetCheckpoint` as an auditor, over mTLS) succeeding, and the
//! server's RSS is read once it is ready.
//!
//! Loading a million deployments takes minutes, so `--data-dir` keeps the
//! loaded directory and reuses it on the next run.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use serde::{Deserialize, Serialize};

use super::attribution::{dir_size, load, History};
use super::process::{dev_client, prepare_dev, ServeProcess};

#[derive(Debug, Clone, Args)]
pub struct ColdStartBenchArgs {
    /// Deployments in the history.
    #[arg(long, default_value_t = 1_000_000)]
    pub deployments: usize,
    /// Customers (organisations with sealed identity records).
    #[arg(long, default_value_t = 100_000)]
    pub customers: usize,
    /// Launches of `warden serve` to time.
    #[arg(long, default_value_t = 3)]
    pub launches: usize,
    /// Concurrent writers while loading.
    #[arg(long, default_value_t = 256)]
    pub writers: usize,
    /// Keep the loaded directory here, or reuse it if an earlier run
    /// loaded it (its recorded sizes then win over --deployments and
    /// --customers). Without it, a temp dir is used and removed.
    #[arg(long, visible_alias = "keep")]
    pub data_dir: Option<PathBuf>,
    /// Before each launch, write back dirty pages and drop the page cache
    /// (needs root), so the server reads its data from disk as after a
    /// reboot. Without it the data is in the page cache.
    #[arg(long)]
    pub drop_caches: bool,
    /// Results file (Markdown); a .json beside it holds the raw numbers.
    #[arg(long, default_value = "bench/results/cold-start.md")]
    pub out: PathBuf,
}

/// What a loaded directory holds, written beside it when the load ends.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct LoadRecord {
    deployments: usize,
    customers: usize,
    ledger_entries: u64,
    load_customers_seconds: f64,
    load_deployments_seconds: f64,
}

const RECORD: &str = "cold-start-load.json";

#[derive(Debug, Serialize)]
struct Launch {
    serving_ms: f64,
    first_rpc_ms: f64,
    rss_mib: f64,
    peak_rss_mib: f64,
    ledger_size: u64,
    caches_dropped: bool,
}

pub async fn run(args: ColdStartBenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.launches > 0, "--launches must be at least 1");
    let (base, temporary) = match &args.data_dir {
        Some(d) => (d.clone(), false),
        None => (super::tempfile_dir()?, true),
    };
    let result = run_in(&args, &base).await;
    if temporary {
        let _ = std::fs::remove_dir_all(&base);
    }
    result
}

/// Loads the history into `base` unless an earlier run did; returns what
/// it holds.
async fn loaded(args: &ColdStartBenchArgs, base: &Path) -> anyhow::Result<LoadRecord> {
    let record_path = base.join(RECORD);
    if record_path.exists() {
        let record: LoadRecord = serde_json::from_slice(&std::fs::read(&record_path)?)
            .with_context(|| format!("cannot read {}", record_path.display()))?;
        eprintln!(
            "reusing {}: {} customers, {} deployments",
            base.display(),
            record.customers,
            record.deployments
        );
        return Ok(record);
    }
    let data = base.join("data");
    anyhow::ensure!(
        !data.exists(),
        "--data-dir {} holds a data directory but no {RECORD}: an unfinished or foreign \
         load; remove it or give another directory",
        base.display()
    );
    std::fs::create_dir_all(base)?;
    let (dev, config) = prepare_dev(base)?;
    let app = crate::server::build_app(&config).await?;
    let history = History {
        deployments: args.deployments,
        customers: args.customers,
        // As the attribution bench: 1,000 models, 200,000 endpoints, 100 days.
        models: 1_000,
        endpoints: 200_000,
        days: 100,
        writers: args.writers,
    };
    eprintln!(
        "loading {} customers and {} deployments ...",
        args.customers, args.deployments
    );
    let l = load(&app, &dev.dir, &history, crate::clock::now_millis()).await?;
    // Close the store: the server must open it as after a restart.
    let closed = app.store.closed();
    drop(app);
    closed.cancelled().await;
    let record = LoadRecord {
        deployments: args.deployments,
        customers: args.customers,
        ledger_entries: l.entries,
        load_customers_seconds: l.customers_time.as_secs_f64(),
        load_deployments_seconds: l.deployments_time.as_secs_f64(),
    };
    eprintln!(
        "loaded in {:.1} s + {:.1} s; ledger holds {} entries",
        record.load_customers_seconds, record.load_deployments_seconds, record.ledger_entries
    );
    std::fs::write(&record_path, serde_json::to_vec_pretty(&record)?)?;
    Ok(record)
}

/// Writes back dirty pages and drops the page cache; false if not allowed.
fn drop_caches() -> bool {
    let synced = std::process::Command::new("sync")
        .status()
        .is_ok_and(|s| s.success());
    synced && std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok()
}

async fn run_in(args: &ColdStartBenchArgs, base: &Path) -> anyhow::Result<()> {
    let record = loaded(args, base).await?;
    // Again: keys and PKI are kept, the config gets a free port.
    let (dev, config) = prepare_dev(base)?;
    let config_path = dev.dir.join("warden.toml");
    let data_bytes = dir_size(&config.data_dir);
    let auditor = dev_client(&dev.dir, dev.listen.port(), "auditor");
    let mut launches = Vec::new();
    for n in 0..args.launches {
        let caches_dropped = args.drop_caches && drop_caches();
        if args.drop_caches && !caches_dropped {
            eprintln!("could not drop the page cache (not root?); the data stays cached");
        }
        let log = base.join(format!("serve-{n}.log"));
        let started = Instant::now();
        let mut server = ServeProcess::spawn(&config_path, &log)?;
        let serving = server
            .wait_ready(&auditor, started, Duration::from_secs(600))
            .await?;
        let ledger_size = first_rpc(&auditor).await?;
        let first_rpc = started.elapsed();
        anyhow::ensure!(
            ledger_size >= record.ledger_entries,
            "the server's ledger has {ledger_size} entries, the load wrote {}",
            record.ledger_entries
        );
        let kib = |v: Option<u64>| v.unwrap_or(0) as f64 / 1024.0;
        let launch = Launch {
            serving_ms: serving.as_secs_f64() * 1e3,
            first_rpc_ms: first_rpc.as_secs_f64() * 1e3,
            rss_mib: kib(server.rss_kib()),
            peak_rss_mib: kib(server.peak_rss_kib()),
            ledger_size,
            caches_dropped,
        };
        eprintln!(
            "launch {}: SERVING after {:.0} ms, GetCheckpoint after {:.0} ms, RSS {:.0} MiB \
             (peak {:.0} MiB)",
            n + 1,
            launch.serving_ms,
            launch.first_rpc_ms,
            launch.rss_mib,
            launch.peak_rss_mib
        );
        launches.push(launch);
        server.stop(Duration::from_secs(30))?;
    }
    write(args, &record, data_bytes, &launches)
}

/// `Ledger.GetCheckpoint` as an auditor on a new connection; the tree size.
async fn first_rpc(auditor: &crate::cli::client::ClientArgs) -> anyhow::Result<u64> {
    let mut ledger =
        crate::proto::ledger_client::LedgerClient::new(auditor.connect("auditor").await?);
    let r = ledger
        .get_checkpoint(crate::proto::GetCheckpointRequest { first_size: 0 })
        .await
        .context("GetCheckpoint after SERVING")?
        .into_inner();
    Ok(r.size)
}

fn write(
    args: &ColdStartBenchArgs,
    record: &LoadRecord,
    data_bytes: u64,
    launches: &[Launch],
) -> anyhow::Result<()> {
    let info = super::RunInfo::now();
    let (cores, when, command) = (info.cores, &info.when, &info.command);
    let cache = if launches.iter().all(|l| l.caches_dropped) {
        "dropped before each launch (the server reads its data from disk)"
    } else {
        "warm (the data was just written or read by the previous launch)"
    };
    let mut md = format!(
        "# Cold start benchmark\n\n\
         {customers} customers and {deployments} deployments (admitted over 100 days, most \
         released; {entries} ledger entries) are loaded through the real store with the \
         attribution bench's loader, and the store is closed. Then `warden serve` is started \
         on that data directory as a child process, {launches} times. Each launch is timed \
         from spawn to the health service answering SERVING over mTLS, and to a first \
         authenticated RPC (`Ledger.GetCheckpoint` as an auditor, on a new connection) \
         returning the whole ledger; RSS is the server's resident memory right after that. \
         Page cache: {cache}.\n\n\
         - machine: {cores} cores\n- run: {when}\n- command: `{command}`\n\
         - data directory: {:.1} MiB\n\
         - load (when this directory was filled): customers {:.1} s, deployments {:.1} s\n\n\
         | launch | SERVING ms | first RPC ms | RSS MiB | peak RSS MiB |\n\
         |---:|---:|---:|---:|---:|\n",
        data_bytes as f64 / (1 << 20) as f64,
        record.load_customers_seconds,
        record.load_deployments_seconds,
        customers = record.customers,
        deployments = record.deployments,
        entries = record.ledger_entries,
        launches = launches.len(),
    );
    for (i, l) in launches.iter().enumerate() {
        md.push_str(&format!(
            "| {} | {:.0} | {:.0} | {:.0} | {:.0} |\n",
            i + 1,
            l.serving_ms,
            l.first_rpc_ms,
            l.rss_mib,
            l.peak_rss_mib
        ));
    }
    let json = serde_json::json!({
        "customers": record.customers,
        "deployments": record.deployments,
        "ledger_entries": record.ledger_entries,
        "load_customers_seconds": record.load_customers_seconds,
        "load_deployments_seconds": record.load_deployments_seconds,
        "data_dir_bytes": data_bytes,
        "drop_caches": args.drop_caches,
        "launches": launches,
    });
    super::write_results_pair(&args.out, &md, json, &info)?;
    println!("results written to {}", args.out.display());
    Ok(())
}
