//! `warden bench`: throughput and latency of warden's hot paths on this
//! machine, written to a results file the README links. Benchmarks, not
//! tests: they report numbers and never fail on them.
//!
//! `ledger` measures durable appends through the real store (sequencer,
//! sled transaction, RFC 6962 stored hashes, flush, signed checkpoint) and,
//! beside it, the floor of the same machine: the same bytes in the same
//! group-commit batches and the same layout written to sled and flushed,
//! with no checks, hashing, tree or signing.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Args, Subcommand};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use crate::domain::customer::{Customer, CustomerKind, CustomerStatus};
use crate::ledger::entry::Entry;
use crate::ledger::note::Signer;
use crate::store::{SledStore, Store};

mod activation;
mod admission;
mod attribution;
mod cold_start;
mod digest;
mod process;
mod verify;
pub use activation::ActivationBenchArgs;
pub use admission::AdmissionBenchArgs;
pub use attribution::AttributionBenchArgs;
pub use cold_start::ColdStartBenchArgs;
pub use digest::DigestBenchArgs;
pub use verify::VerifyBenchArgs;

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Durable ledger appends vs the sled flush floor.
    Ledger(LedgerBenchArgs),
    /// Sanctions screening: synthetic customers (with owners) against a
    /// synthetic list in the OFAC SDN format.
    Screening(ScreeningBenchArgs),
    /// Order propagation: from the approval that completes quorum
    /// returning, to the event at each of many watchers over mTLS.
    Orders(OrdersBenchArgs),
    /// Attribution over a large history: by deployment, by endpoint and
    /// time, by model over a day.
    Attribution(AttributionBenchArgs),
    /// Admission at scheduler speed: `warden serve` as a child process,
    /// driven over mTLS by concurrent callers (transport floor, admit with
    /// a cached and a fresh chain, renew, deny).
    Admission(AdmissionBenchArgs),
    /// Order activation in a large store (1,000,000 deployments): the
    /// commit time of an activation and the latency of the admissions
    /// running at the same time.
    Activation(ActivationBenchArgs),
    /// Model-evaluation chain verification, in-process: fresh chains and
    /// a cached one.
    Verify(VerifyBenchArgs),
    /// `warden digest` against `sha256sum` on a synthetic model directory
    /// (2 GiB by default) read from the page cache.
    Digest(DigestBenchArgs),
    /// Cold start: `warden serve` on a data directory holding a large
    /// history (1,000,000 deployments), from spawn to ready.
    ColdStart(ColdStartBenchArgs),
}

#[derive(Debug, Clone, Args)]
pub struct OrdersBenchArgs {
    /// Concurrent WatchOrders streams.
    #[arg(long, default_value_t = 1000)]
    pub watchers: usize,
    /// TLS connections the watchers share; 0 (the default) gives each
    /// watcher its own, as separate schedulers would have.
    #[arg(long, default_value_t = 0)]
    pub connections: usize,
    /// Orders activated, one after another.
    #[arg(long, default_value_t = 20)]
    pub rounds: usize,
    /// Results file (Markdown); a .json beside it holds the raw numbers.
    #[arg(long, default_value = "bench/results/orders.md")]
    pub out: PathBuf,
}

#[derive(Debug, Clone, Args)]
pub struct ScreeningBenchArgs {
    /// Entries in the synthetic sanctions list.
    #[arg(long, default_value_t = 20_000)]
    pub entries: usize,
    /// Synthetic customers, each with a legal name and 1-3 owners or
    /// key personnel.
    #[arg(long, default_value_t = 100_000)]
    pub customers: usize,
    /// Customers planted as near-copies of list names (recall check).
    #[arg(long, default_value_t = 100)]
    pub planted: usize,
    /// Hit threshold.
    #[arg(long, default_value_t = crate::screening::DEFAULT_THRESHOLD)]
    pub threshold: f64,
    /// Results file (Markdown); a .json beside it holds the raw numbers.
    #[arg(long, default_value = "bench/results/screening.md")]
    pub out: PathBuf,
}

#[derive(Debug, Clone, Args)]
pub struct LedgerBenchArgs {
    /// Concurrent writers to measure, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "1,16,256")]
    pub writers: Vec<usize>,
    /// Seconds each configuration runs (after a short warm-up).
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
    /// Directory for the benchmark's stores (default: a temp dir, removed after).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Results file (Markdown); a .json beside it holds the raw numbers.
    #[arg(long, default_value = "bench/results/ledger.md")]
    pub out: PathBuf,
}

#[derive(Debug, Serialize)]
struct Row {
    target: &'static str,
    writers: usize,
    appends: u64,
    seconds: f64,
    appends_per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)].as_secs_f64() * 1e3
}

/// A salt of the real length for benchmark records: they hold no personal
/// data, so it need not be secret, and the benchmark needs no randomness.
pub(crate) fn synthetic_salt(n: u64) -> String {
    format!("{n:064x}")
}

/// One customer version and its entry: the bytes both targets write.
fn sample(writer: usize, seq: u64) -> (Customer, Entry) {
    let c = Customer {
        customer_id: format!("bench-{writer}-{seq}"),
        kind: CustomerKind::Organisation,
        legal_name: format!("Benchmark Customer {writer} {seq} Ltd"),
        country: "DE".into(),
        status: CustomerStatus::Verified,
        status_reason: String::new(),
        version: 1,
        updated_at: crate::clock::now_millis(),
        updated_by: "spiffe://warden.bench/kyc/bench".into(),
        commitment_salt: synthetic_salt(seq),
        details: Default::default(),
        purged: false,
    };
    let e = crate::ledger::entry::customer_entry(
        &c,
        crate::ledger::entry::CustomerChange::Registered,
        None,
        &c.updated_by,
        "",
    );
    (c, e)
}

/// Something that durably appends one customer version and its entry.
trait Target: Send + Sync + 'static {
    fn append(
        &self,
        c: Customer,
        e: Entry,
    ) -> impl std::future::Future<Output = anyhow::Result<()>> + Send;
}

struct Ledger(SledStore);

impl Target for Ledger {
    async fn append(&self, c: Customer, e: Entry) -> anyhow::Result<()> {
        self.0.put_customer(&c, None, e).await?;
        Ok(())
    }
}

/// The floor: the same group commit (drain the queue, one transaction for
/// the batch, flush, answer) writing the same bytes, with no hashing,
/// tree or signing.
/// Key, customer value, entry bytes, and who to tell when it is durable.
type FloorAppend = (Vec<u8>, Vec<u8>, Vec<u8>, oneshot::Sender<()>);

struct Floor {
    tx: mpsc::Sender<FloorAppend>,
}

impl Floor {
    fn open(dir: &Path) -> anyhow::Result<Self> {
        let db = sled::Config::new()
            .path(dir)
            .mode(sled::Mode::HighThroughput)
            .open()?;
        let trees: Arc<[sled::Tree]> =
            vec![db.open_tree("customers")?, db.open_tree("entries")?].into();
        let (tx, mut rx) =
            mpsc::channel::<(Vec<u8>, Vec<u8>, Vec<u8>, oneshot::Sender<()>)>(16_384);
        tokio::spawn(async move {
            let mut next_index: u64 = 0;
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                while batch.len() < 4096 {
                    match rx.try_recv() {
                        Ok(a) => batch.push(a),
                        Err(_) => break,
                    }
                }
                let db = db.clone();
                let trees = trees.clone();
                let start = next_index;
                next_index += batch.len() as u64;
                let done = tokio::task::spawn_blocking(move || {
                    use sled::Transactional as _;
                    // The ledger's layout: a key per customer, one value
                    // for the batch's entries.
                    let mut entries = Vec::new();
                    for (_, _, entry, _) in &batch {
                        entries.extend_from_slice(&(entry.len() as u32).to_le_bytes());
                        entries.extend_from_slice(entry);
                    }
                    let r = trees.transaction(|txs| {
                        for (key, value, _, _) in &batch {
                            txs[0].insert(key.as_slice(), value.as_slice())?;
                        }
                        txs[1].insert(&start.to_be_bytes(), entries.as_slice())?;
                        Ok::<_, sled::transaction::ConflictableTransactionError<()>>(())
                    });
                    let ok = r.is_ok() && db.flush().is_ok();
                    (batch, ok)
                })
                .await;
                if let Ok((batch, true)) = done {
                    for (.., reply) in batch {
                        let _ = reply.send(());
                    }
                }
            }
        });
        Ok(Self { tx })
    }
}

impl Target for Floor {
    async fn append(&self, c: Customer, e: Entry) -> anyhow::Result<()> {
        let mut key = c.customer_id.as_bytes().to_vec();
        key.push(0);
        key.extend_from_slice(&1u64.to_be_bytes());
        let value = serde_json::to_vec(&c)?;
        let (reply, rx) = oneshot::channel();
        self.tx
            .send((key, value, e.to_bytes(), reply))
            .await
            .map_err(|_| anyhow::anyhow!("floor stopped"))?;
        rx.await
            .map_err(|_| anyhow::anyhow!("floor write failed"))?;
        Ok(())
    }
}

async fn drive<T: Target>(
    target: Arc<T>,
    writers: usize,
    run: Duration,
    name: &'static str,
) -> anyhow::Result<Row> {
    // Warm-up: let sled create its files and the first batches settle.
    let warm = Instant::now() + Duration::from_millis(300);
    let measure_until = warm + run;
    let mut tasks = Vec::with_capacity(writers);
    for w in 0..writers {
        let target = target.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut seq = 0u64;
            loop {
                let now = Instant::now();
                if now >= measure_until {
                    break;
                }
                let (c, e) = sample(w, seq);
                seq += 1;
                target.append(c, e).await?;
                if now >= warm {
                    latencies.push(now.elapsed());
                }
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    all.sort_unstable();
    let seconds = run.as_secs_f64();
    Ok(Row {
        target: name,
        writers,
        appends: all.len() as u64,
        seconds,
        appends_per_second: all.len() as f64 / seconds,
        p50_ms: percentile(&all, 0.50),
        p99_ms: percentile(&all, 0.99),
        max_ms: all.last().map_or(0.0, |d| d.as_secs_f64() * 1e3),
    })
}

pub async fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Ledger(args) => ledger(args).await,
        BenchCommand::Orders(args) => orders(args).await,
        BenchCommand::Attribution(args) => attribution::run(args).await,
        BenchCommand::Admission(args) => admission::run(args).await,
        BenchCommand::Activation(args) => activation::run(args).await,
        BenchCommand::Verify(args) => {
            tokio::task::spawn_blocking(move || verify::run(&args)).await?
        }
        BenchCommand::ColdStart(args) => cold_start::run(args).await,
        BenchCommand::Digest(args) => {
            tokio::task::spawn_blocking(move || digest::run(&args)).await?
        }
        BenchCommand::Screening(args) => {
            tokio::task::spawn_blocking(move || screening(&args)).await?
        }
    }
}

fn screening(args: &ScreeningBenchArgs) -> anyhow::Result<()> {
    use crate::screening::bench::{run_bench, BenchConfig};
    let cfg = BenchConfig {
        list_entries: args.entries,
        customers: args.customers,
        planted: args.planted,
        threshold: args.threshold,
        ..BenchConfig::default()
    };
    let r = run_bench(&cfg)?;
    eprintln!("{r}");
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let info = RunInfo::now();
    let (cores, when, command) = (info.cores, &info.when, &info.command);
    let mut md = format!(
        "# Sanctions screening benchmark\n\n\
         A synthetic list in the OFAC SDN CSV format (invented names, some with aliases) is \
         parsed and indexed; then every synthetic customer's legal name, owners and key \
         personnel are screened (token-based Jaro-Winkler over candidates from the \
         deletion-variant index, customers spread over all cores). Single-customer latency \
         is one registration's screening, measured one at a time on one thread. Planted \
         customers are near-copies of list names (reordered, accented, one-letter typos): \
         recall.\n\n\
         - machine: {cores} cores\n- run: {when}\n- command: `{command}`\n\n\
         | measure | value |\n|---|---:|\n\
         | list entries / names | {} / {} |\n\
         | parse + index build | {:.2} s + {:.2} s |\n\
         | customers / names screened | {} / {} |\n\
         | **all customers screened in** | **{:.2} s** ({:.0} customers/s, {} threads) |\n\
         | single customer p50 / p99 / max | {:.3} / **{:.3}** / {:.3} ms |\n\
         | list names scored per query name (mean) | {:.1} |\n\
         | planted recall | {}/{} |\n\
         | unplanted customers hit at {:.2} | {} |\n",
        r.list_entries,
        r.list_names,
        r.parse_secs,
        r.build_secs,
        r.customers,
        r.customer_names,
        r.total_secs,
        r.customers as f64 / r.total_secs.max(1e-9),
        r.threads,
        ms(r.latency_p50),
        ms(r.latency_p99),
        ms(r.latency_max),
        r.mean_candidates,
        r.planted_found,
        r.planted,
        args.threshold,
        r.unplanted_customers_hit,
    );
    md.push_str(
        "\nUnplanted hits are mostly genuine collisions: list and customers are drawn from \
         the same small syllable generator, so some customer names are one edit from a \
         list name.\n\nBy threshold:\n\n| threshold | unplanted customers hit | planted found |\n|---:|---:|---:|\n",
    );
    for (t, fp, found) in &r.by_threshold {
        md.push_str(&format!("| {t:.2} | {fp} | {found}/{} |\n", r.planted));
    }
    let json = serde_json::json!({
    "list_entries": r.list_entries, "list_names": r.list_names,
    "parse_seconds": r.parse_secs, "build_seconds": r.build_secs,
    "customers": r.customers, "customer_names": r.customer_names,
    "total_seconds": r.total_secs, "threads": r.threads,
    "single_p50_ms": ms(r.latency_p50), "single_p99_ms": ms(r.latency_p99),
    "single_max_ms": ms(r.latency_max),
    "planted": r.planted, "planted_found": r.planted_found,
    "unplanted_customers_hit": r.unplanted_customers_hit,
    });
    write_results_pair(&args.out, &md, json, &info)?;
    println!("results written to {}", args.out.display());
    Ok(())
}

async fn ledger(args: LedgerBenchArgs) -> anyhow::Result<()> {
    let tmp;
    let base = match &args.dir {
        Some(d) => d.clone(),
        None => {
            tmp = tempfile_dir()?;
            tmp.clone()
        }
    };
    let run = Duration::from_secs(args.seconds);
    let mut rows = Vec::new();
    for &writers in &args.writers {
        let dir = base.join(format!("ledger-{writers}"));
        let signer = Signer::generate("warden.bench/ledger")?;
        let keys =
            crate::pii::Keyring::parse("bench", &crate::pii::Keyring::new_key_line("bench")?)?;
        let store = Arc::new(Ledger(SledStore::open(&dir, signer, keys)?));
        let row = drive(store, writers, run, "ledger").await?;
        eprintln!("{row:?}");
        rows.push(row);
        let floor = Arc::new(Floor::open(&base.join(format!("floor-{writers}")))?);
        let row = drive(floor, writers, run, "floor").await?;
        eprintln!("{row:?}");
        rows.push(row);
    }
    write_results(&args.out, &rows)?;
    if args.dir.is_none() {
        let _ = std::fs::remove_dir_all(&base);
    }
    println!("results written to {}", args.out.display());
    Ok(())
}

/// Where a benchmark ran and how it was started: every results file says.
struct RunInfo {
    cores: usize,
    when: String,
    command: String,
}

impl RunInfo {
    fn now() -> Self {
        Self {
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            when: crate::api::convert::rfc3339(crate::clock::now_millis()),
            command: std::env::args().collect::<Vec<_>>().join(" "),
        }
    }
}

/// Writes the Markdown results to `out` and the raw numbers beside it
/// (`.json`), with the machine's cores, the time and the command added.
fn write_results_pair(
    out: &Path,
    md: &str,
    mut json: serde_json::Value,
    info: &RunInfo,
) -> anyhow::Result<()> {
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    std::fs::write(out, md).with_context(|| format!("cannot write {}", out.display()))?;
    if let Some(map) = json.as_object_mut() {
        map.insert("cores".into(), info.cores.into());
        map.insert("run".into(), info.when.clone().into());
        map.insert("command".into(), info.command.clone().into());
    }
    let path = out.with_extension("json");
    std::fs::write(&path, serde_json::to_string_pretty(&json)?)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("warden-bench-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

fn write_results(out: &Path, rows: &[Row]) -> anyhow::Result<()> {
    let info = RunInfo::now();
    let (cores, when, command) = (info.cores, &info.when, &info.command);
    let mut md = format!(
        "# Ledger append benchmark\n\n\
         Durable appends through the sequencer. A planner thread checks each batch, \
         encodes it and computes its RFC 6962 stored hashes and root while the batch \
         before it commits; a committer thread writes the batch (state changes, the \
         entries as one value, the stored hashes as one value, and the previous batch's \
         checkpoint) in one sled transaction, flushes, then signs the new tree. A caller is \
         answered once the checkpoint covering its entry is persisted (by the next batch's \
         flush, or at once when idle). The floor: the same bytes in the same group-commit \
         batches and the same layout (a key per customer, one value for the batch's \
         entries), one transaction and one flush per batch, answered at once, with no \
         checks, hashing, tree or signing.\n\n\
         - machine: {cores} cores\n- run: {when}\n- command: `{command}`\n\n\
         | target | writers | appends | appends/s | p50 ms | p99 ms | max ms |\n\
         |---|---:|---:|---:|---:|---:|---:|\n"
    );
    for r in rows {
        md.push_str(&format!(
            "| {} | {} | {} | {:.0} | {:.2} | {:.2} | {:.2} |\n",
            r.target, r.writers, r.appends, r.appends_per_second, r.p50_ms, r.p99_ms, r.max_ms
        ));
    }
    md.push_str("\nLedger throughput as a share of the floor:\n\n");
    for pair in rows.chunks(2) {
        if let [l, f] = pair {
            md.push_str(&format!(
                "- {} writers: {:.0}%\n",
                l.writers,
                100.0 * l.appends_per_second / f.appends_per_second.max(1.0)
            ));
        }
    }
    write_results_pair(out, &md, serde_json::json!({ "rows": rows }), &info)
}

/// Starts a dev server in a temp dir, opens the watchers, and for each
/// round issues a TERMINATE order (quorum 2) as the operator and approves it
/// as the authority; the latency of a watcher is from the approval's
/// response to that watcher receiving the ACTIVATED event.
// A benchmark script (setup, rounds, report), in the order it runs.
async fn orders(args: OrdersBenchArgs) -> anyhow::Result<()> {
    use crate::proto::orders_client::OrdersClient;
    use crate::proto::{self as p};
    let base = tempfile_dir()?;
    let (dev, config) = process::prepare_dev(&base)?;
    let app = crate::server::build_app(&config).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn({
        let (config, shutdown) = (config.clone(), shutdown.clone());
        async move { crate::server::serve(&config, app, listener, shutdown).await }
    });
    let client = |role: &str| process::dev_client(&dev.dir, addr.port(), role);
    let connections = if args.connections == 0 {
        args.watchers
    } else {
        args.connections
    };
    let mut channels = Vec::new();
    for _ in 0..connections.max(1) {
        channels.push(client("scheduler").connect("scheduler").await?);
    }
    // Each watcher reports (order id, arrival) for every ACTIVATED event.
    let (arrivals_tx, mut arrivals_rx) = mpsc::unbounded_channel::<(usize, String, Instant)>();
    let mut watchers = Vec::new();
    for w in 0..args.watchers {
        let mut c = OrdersClient::new(channels[w % channels.len()].clone());
        let mut stream = c
            .watch_orders(p::WatchOrdersRequest { since_revision: 0 })
            .await?
            .into_inner();
        let tx = arrivals_tx.clone();
        watchers.push(tokio::spawn(async move {
            while let Ok(Some(e)) = stream.message().await {
                if e.kind == p::OrderEventKind::Activated as i32 {
                    let id = e.order.map(|o| o.order_id).unwrap_or_default();
                    let _ = tx.send((w, id, Instant::now()));
                }
            }
        }));
    }
    drop(arrivals_tx);
    let mut operator = OrdersClient::new(client("operator").connect("operator").await?);
    let mut authority = OrdersClient::new(client("authority").connect("authority").await?);
    let mut latencies: Vec<Duration> = Vec::new();
    let mut per_round = Vec::new();
    for round in 0..args.rounds {
        let order = operator
            .issue_order(p::IssueOrderRequest {
                target: Some(p::OrderTarget {
                    kind: p::OrderTargetKind::Customer as i32,
                    value: format!("bench-customer-{round}"),
                }),
                action: p::OrderAction::Terminate as i32,
                reason: "benchmark".into(),
                legal_basis: String::new(),
                expires_at: None,
            })
            .await?
            .into_inner();
        authority
            .approve_order(p::ApproveOrderRequest {
                order_id: order.order_id.clone(),
            })
            .await?;
        let approved = Instant::now();
        let mut got = 0;
        let mut round_max = Duration::ZERO;
        while got < args.watchers {
            let (_, id, at) = tokio::time::timeout(Duration::from_secs(30), arrivals_rx.recv())
                .await
                .context("a watcher did not receive the event within 30 s")?
                .context("watchers ended")?;
            if id == order.order_id {
                let l = at.saturating_duration_since(approved);
                round_max = round_max.max(l);
                latencies.push(l);
                got += 1;
            }
        }
        per_round.push(round_max);
    }
    shutdown.cancel();
    let _ = server.await;
    for w in watchers {
        let _ = w.await;
    }
    let _ = std::fs::remove_dir_all(&base);
    latencies.sort_unstable();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let (p50, p99, max) = (
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        latencies.last().map_or(0.0, |d| ms(*d)),
    );
    eprintln!(
        "{} deliveries: p50 {p50:.2} ms, p99 {p99:.2} ms, max {max:.2} ms",
        latencies.len()
    );
    let info = RunInfo::now();
    let (cores, when, command) = (info.cores, &info.when, &info.command);
    let md = format!(
        "# Order propagation benchmark\n\n\
         A real server (dev PKI, mTLS, sled store in a temp dir) and, in the same process, \
         {watchers} WatchOrders streams over {connections} TLS connections. Each round the \
         operator issues a TERMINATE order (quorum 2) and the authority approves it; the \
         latency of one delivery is from the approval's response reaching the authority to \
         the ACTIVATED event reaching one watcher.\n\n\
         - machine: {cores} cores\n- run: {when}\n- command: `{command}`\n\n\
         | watchers | rounds | deliveries | p50 ms | p99 ms | max ms |\n\
         |---:|---:|---:|---:|---:|---:|\n\
         | {watchers} | {rounds} | {n} | {p50:.2} | {p99:.2} | {max:.2} |\n",
        watchers = args.watchers,
        rounds = args.rounds,
        n = latencies.len(),
    );
    let json = serde_json::json!({
    "watchers": args.watchers, "connections": connections, "rounds": args.rounds,
    "deliveries": latencies.len(), "p50_ms": p50, "p99_ms": p99, "max_ms": max,
    "round_max_ms": per_round.iter().map(|d| ms(*d)).collect::<Vec<_>>(),
    });
    write_results_pair(&args.out, &md, json, &info)?;
    println!("results written to {}", args.out.display());
    Ok(())
}
