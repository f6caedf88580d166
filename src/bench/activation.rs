//! `warden bench activation`: what activating an order costs in a large
//! store. Loads a history of deployments through the real store (as the
//! attribution benchmark does), then serves it over mTLS and, while
//! schedulers keep admitting, activates orders that each match a few
//! running deployments. Reports the activation's commit time (the approval
//! that completes quorum, which answers once the activation and every
//! deployment it stops are durable) and the admissions' latency before and
//! during the activations.
//!
//! Every activation is checked: the order must name exactly the running
//! deployments planted for it.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use tonic::transport::Channel;

use super::attribution::{load, History};
use super::{percentile, tempfile_dir};
use crate::proto::admission_client::AdmissionClient;
use crate::proto::orders_client::OrdersClient;
use crate::proto::{self as p};

#[derive(Debug, Clone, Args)]
pub struct ActivationBenchArgs {
    /// Deployments in the loaded history.
    #[arg(long, default_value_t = 1_000_000)]
    pub deployments: usize,
    /// Customers in the loaded history.
    #[arg(long, default_value_t = 100_000)]
    pub customers: usize,
    /// Distinct models in the loaded history.
    #[arg(long, default_value_t = 1_000)]
    pub models: usize,
    /// Orders activated, one after another.
    #[arg(long, default_value_t = 20)]
    pub rounds: usize,
    /// Running deployments each order matches.
    #[arg(long, default_value_t = 10)]
    pub matched: usize,
    /// Schedulers admitting all the while, each on its own connection.
    #[arg(long, default_value_t = 16)]
    pub schedulers: usize,
    /// Seconds the schedulers admit before the first activation, for the
    /// baseline.
    #[arg(long, default_value_t = 5)]
    pub baseline_seconds: u64,
    /// Results file (Markdown); a .json beside it holds the raw numbers.
    #[arg(long, default_value = "bench/results/activation.md")]
    pub out: PathBuf,
}

/// Latencies of admissions, each with when it started.
type Timed = Vec<(Instant, Duration)>;

pub async fn run(args: ActivationBenchArgs) -> anyhow::Result<()> {
    let base = tempfile_dir()?;
    let result = run_in(&args, &base).await;
    let _ = std::fs::remove_dir_all(&base);
    result
}

/// What one run measured.
struct Measured {
    load: Duration,
    entries: u64,
    commits: Vec<Duration>,
    before: Vec<Duration>,
    during: Vec<Duration>,
}

async fn run_in(args: &ActivationBenchArgs, base: &std::path::Path) -> anyhow::Result<()> {
    let (dev, config) = super::process::prepare_dev(base)?;
    let app = crate::server::build_app(&config).await?;
    let now = crate::clock::now_millis();
    let history = History {
        deployments: args.deployments,
        customers: args.customers,
        models: args.models,
        endpoints: (args.deployments / 5).max(1),
        days: 100,
        writers: 256,
    };
    let loaded = load(&app, &dev.dir, &history, now).await?;
    eprintln!(
        "{} deployments loaded in {:.1} s; ledger holds {} entries",
        args.deployments,
        loaded.deployments_time.as_secs_f64(),
        loaded.entries
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn({
        let (config, shutdown) = (config.clone(), shutdown.clone());
        async move { crate::server::serve(&config, app, listener, shutdown).await }
    });
    let measured = measure(args, &dev.dir, addr.port()).await;
    shutdown.cancel();
    server.await??;
    let mut m = measured?;
    m.load = loaded.deployments_time;
    m.entries = loaded.entries;
    write(args, &mut m)
}

async fn measure(
    args: &ActivationBenchArgs,
    dev_dir: &std::path::Path,
    port: u16,
) -> anyhow::Result<Measured> {
    let client = |role: &str| super::process::dev_client(dev_dir, port, role);
    let chain = std::fs::read_to_string(dev_dir.join("sample-model.chain.pem"))?;
    let digest =
        crate::digest::digest_dir(&dev_dir.join("sample-model"), &Default::default())?.to_string();
    let kyc = client("kyc").connect("kyc").await?;
    let scheduler = client("scheduler").connect("scheduler").await?;
    super::admission::register_customer(kyc.clone(), super::admission::CUSTOMER).await?;
    // The deployments each round's order will stop, admitted beforehand.
    let mut planted = Vec::with_capacity(args.rounds);
    for round in 0..args.rounds {
        let customer = format!("activation-{round}");
        super::admission::register_customer(kyc.clone(), &customer).await?;
        let mut ids = Vec::with_capacity(args.matched);
        for _ in 0..args.matched {
            ids.push(admit(scheduler.clone(), &customer, &digest, &chain).await?);
        }
        ids.sort();
        planted.push((customer, ids));
    }

    let mut channels = Vec::with_capacity(args.schedulers);
    for _ in 0..args.schedulers.max(1) {
        channels.push(client("scheduler").connect("scheduler").await?);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for channel in channels {
        let (stop, digest, chain) = (stop.clone(), digest.clone(), chain.clone());
        tasks.push(tokio::spawn(async move {
            let mut timed: Timed = Vec::with_capacity(8192);
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                admit(channel.clone(), super::admission::CUSTOMER, &digest, &chain).await?;
                timed.push((started, started.elapsed()));
            }
            anyhow::Ok(timed)
        }));
    }
    tokio::time::sleep(Duration::from_secs(args.baseline_seconds)).await;
    let activations_from = Instant::now();
    let commits = activate_all(
        &client("operator").connect("operator").await?,
        &client("authority").connect("authority").await?,
        &planted,
    )
    .await;
    let activations_until = Instant::now();
    stop.store(true, Ordering::Relaxed);
    let mut before = Vec::new();
    let mut during = Vec::new();
    for t in tasks {
        for (started, latency) in t.await?? {
            if started < activations_from {
                before.push(latency);
            } else if started < activations_until {
                during.push(latency);
            }
        }
    }
    before.sort_unstable();
    during.sort_unstable();
    Ok(Measured {
        load: Duration::ZERO,
        entries: 0,
        commits: commits?,
        before,
        during,
    })
}

/// Activates one TERMINATE order per planted customer (issued by the
/// operator, approved by the authority: quorum 2) and times each approval.
async fn activate_all(
    operator: &Channel,
    authority: &Channel,
    planted: &[(String, Vec<String>)],
) -> anyhow::Result<Vec<Duration>> {
    let mut operator = OrdersClient::new(operator.clone());
    let mut authority = OrdersClient::new(authority.clone());
    let mut commits = Vec::with_capacity(planted.len());
    for (customer, ids) in planted {
        let order = operator
            .issue_order(p::IssueOrderRequest {
                target: Some(p::OrderTarget {
                    kind: p::OrderTargetKind::Customer as i32,
                    value: customer.clone(),
                }),
                action: p::OrderAction::Terminate as i32,
                reason: "benchmark".into(),
                legal_basis: String::new(),
                expires_at: None,
            })
            .await?
            .into_inner();
        let started = Instant::now();
        let approved = authority
            .approve_order(p::ApproveOrderRequest {
                order_id: order.order_id.clone(),
            })
            .await?
            .into_inner();
        commits.push(started.elapsed());
        let mut matched = approved.matched_deployments.clone();
        matched.sort();
        anyhow::ensure!(
            approved.state == p::OrderState::Active as i32 && &matched == ids,
            "order {} for {customer} is {:?} and stopped {matched:?}, not {ids:?}",
            order.order_id,
            p::OrderState::try_from(approved.state)
        );
    }
    Ok(commits)
}

/// Admits one deployment of `customer`; it must be allowed.
async fn admit(
    channel: Channel,
    customer: &str,
    digest: &str,
    chain: &str,
) -> anyhow::Result<String> {
    let r = AdmissionClient::new(channel)
        .admit(super::admission::admit_request(customer, digest, chain))
        .await
        .context("admit")?
        .into_inner();
    super::admission::expect(&r, true)?;
    Ok(r.deployment_id)
}

fn write(args: &ActivationBenchArgs, m: &mut Measured) -> anyhow::Result<()> {
    m.commits.sort_unstable();
    let ms = |d: Option<&Duration>| d.map_or(0.0, |d| d.as_secs_f64() * 1e3);
    let stat = |v: &[Duration]| {
        (
            v.len(),
            percentile(v, 0.50),
            percentile(v, 0.99),
            ms(v.last()),
        )
    };
    let (n_c, c50, c99, cmax) = stat(&m.commits);
    let (n_b, b50, b99, bmax) = stat(&m.before);
    let (n_d, d50, d99, dmax) = stat(&m.during);
    eprintln!("activation commit: p50 {c50:.2} ms, p99 {c99:.2} ms, max {cmax:.2} ms");
    eprintln!("admissions before: {n_b}, p50 {b50:.2} ms, p99 {b99:.2} ms");
    eprintln!("admissions during: {n_d}, p50 {d50:.2} ms, p99 {d99:.2} ms");
    let info = super::RunInfo::now();
    let (cores, when, command) = (info.cores, &info.when, &info.command);
    let md = format!(
        "# Order activation benchmark\n\n\
         A history loaded through the real store ({deployments} deployments of {models} \
         models for {customers} customers, admitted over 100 days, most released; \
         {entries} ledger entries). Then a real server (dev PKI, mTLS) where {schedulers} \
         schedulers keep admitting, each on its own connection, while {rounds} TERMINATE \
         orders are activated one after another, each matching {matched} running \
         deployments of its own customer. The commit time is the approval that completes \
         quorum: it answers once the order, the deployments it stops and their ledger \
         entries are durable. Every order is checked to have stopped exactly its \
         deployments.\n\n\
         - machine: {cores} cores\n- run: {when}\n- command: `{command}`\n\
         - history loaded in {load:.1} s\n\n\
         | measured | count | p50 ms | p99 ms | max ms |\n|---|---:|---:|---:|---:|\n\
         | activation commit | {n_c} | {c50:.2} | {c99:.2} | {cmax:.2} |\n\
         | admissions before the activations | {n_b} | {b50:.2} | {b99:.2} | {bmax:.2} |\n\
         | admissions during the activations | {n_d} | {d50:.2} | {d99:.2} | {dmax:.2} |\n",
        deployments = args.deployments,
        models = args.models,
        customers = args.customers,
        entries = m.entries,
        schedulers = args.schedulers,
        rounds = args.rounds,
        matched = args.matched,
        load = m.load.as_secs_f64(),
    );
    let json = serde_json::json!({
    "deployments": args.deployments, "customers": args.customers, "models": args.models,
    "rounds": args.rounds, "matched": args.matched, "schedulers": args.schedulers,
    "ledger_entries": m.entries, "load_seconds": m.load.as_secs_f64(),
    "commit_ms": m.commits.iter().map(|d| ms(Some(d))).collect::<Vec<_>>(),
    "admissions_before": n_b, "admissions_before_p50_ms": b50, "admissions_before_p99_ms": b99,
    "admissions_during": n_d, "admissions_during_p50_ms": d50, "admissions_during_p99_ms": d99,
    });
    super::write_results_pair(&args.out, &md, json, &info)?;
    println!("results written to {}", args.out.display());
    Ok(())
}
