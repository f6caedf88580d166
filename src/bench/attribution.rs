//! `warden bench attribution`: loads a large history (customers, then
//! deployments admitted over many days, most of them released) through the
//! real store, then times `Attribution.Attribute` over mTLS by deployment,
//! by endpoint and time, and by model over a one-day window.
//!
//! Every answer is also checked: a deployment query must return that
//! deployment, and an endpoint query at a time inside a deployment's
//! lifetime must name that deployment as holding the endpoint.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;

use super::{percentile, tempfile_dir};
use crate::domain::customer::{Customer, CustomerKind, CustomerStatus};
use crate::domain::deployment::{CertificateSummary, Deployment, DeploymentState, Workload};
use crate::domain::UnixMillis;
use crate::ledger::entry::{CertificateRef, CustomerRef, Entry, Event};
use crate::store::{DecisionKind, DecisionRecord};

#[derive(Debug, Clone, Args)]
pub struct AttributionBenchArgs {
    /// Deployments in the history.
    #[arg(long, default_value_t = 1_000_000)]
    pub deployments: usize,
    /// Customers (organisations with sealed identity records).
    #[arg(long, default_value_t = 100_000)]
    pub customers: usize,
    /// Distinct models deployed.
    #[arg(long, default_value_t = 1_000)]
    pub models: usize,
    /// Distinct endpoints, reused over time (so endpoints change hands).
    #[arg(long, default_value_t = 200_000)]
    pub endpoints: usize,
    /// Days the history spans, ending now.
    #[arg(long, default_value_t = 100)]
    pub days: u64,
    /// Queries timed per selector.
    #[arg(long, default_value_t = 300)]
    pub queries: usize,
    /// Concurrent writers while loading.
    #[arg(long, default_value_t = 256)]
    pub writers: usize,
    /// Results file (Markdown); a .json beside it holds the raw numbers.
    #[arg(long, default_value = "bench/results/attribution.md")]
    pub out: PathBuf,
}

const DAY: i64 = 86_400_000;
const HOUR: i64 = 3_600_000;
const SCHEDULER: &str = "spiffe://warden.bench/scheduler/bench";

/// A fixed pseudo-random function (splitmix64), so a run is repeatable.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// What the history holds for deployment `i`; derived, never stored here.
struct Planned {
    id: String,
    customer: usize,
    model: String,
    endpoint: String,
    admitted_at: UnixMillis,
    /// `None` for the newest ones, which stay unreleased.
    released_at: Option<UnixMillis>,
}

struct Shape {
    n: usize,
    customers: usize,
    models: usize,
    endpoints: usize,
    start: UnixMillis,
    span: i64,
    now: UnixMillis,
}

impl Shape {
    fn planned(&self, i: usize) -> Planned {
        let r = mix(i as u64);
        let admitted_at = self.start + (self.span as i128 * i as i128 / self.n as i128) as i64;
        // One to ten hours, unless that runs past now.
        let released = admitted_at + HOUR + (r % (9 * HOUR as u64)) as i64;
        Planned {
            id: format!("dep-{i:08}"),
            customer: (mix(r) % self.customers as u64) as usize,
            model: format!("sha256:{:064x}", (r >> 20) % self.models as u64),
            endpoint: format!(
                "10.{}.{}.{}:8000",
                (i % self.endpoints) >> 16,
                ((i % self.endpoints) >> 8) & 255,
                (i % self.endpoints) & 255
            ),
            admitted_at,
            released_at: (released < self.now).then_some(released),
        }
    }
}

fn customer(i: usize, now: UnixMillis) -> Customer {
    use crate::domain::customer::{Address, CustomerDetails};
    Customer {
        customer_id: format!("cust-{i:07}"),
        kind: CustomerKind::Organisation,
        legal_name: format!("Benchmark Customer {i} GmbH"),
        country: "DE".into(),
        status: CustomerStatus::Verified,
        status_reason: String::new(),
        version: 1,
        updated_at: now,
        updated_by: "spiffe://warden.bench/kyc/bench".into(),
        commitment_salt: super::synthetic_salt(i as u64),
        details: CustomerDetails {
            registration_number: format!("HRB {i}"),
            legal_form: "GmbH".into(),
            jurisdiction: "DE".into(),
            addresses: vec![Address {
                lines: vec![format!("Beispielstrasse {i}")],
                city: "Berlin".into(),
                postal_code: "10115".into(),
                region: String::new(),
                country: "DE".into(),
            }],
            email: format!("kyc{i}@example.com"),
            phone: "+4930123456".into(),
            declared_purpose: "hosted inference".into(),
            ..Default::default()
        },
        purged: false,
    }
}

/// Loads in parallel: `work(i)` for every i in 0..n over `writers` tasks.
async fn parallel<F, Fut>(n: usize, writers: usize, work: F) -> anyhow::Result<Duration>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let work = Arc::new(work);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers.max(1) {
        let work = work.clone();
        let writers = writers.max(1);
        tasks.push(tokio::spawn(async move {
            let mut i = w;
            while i < n {
                work(i).await?;
                i += writers;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(started.elapsed())
}

pub(crate) fn dir_size(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => total += dir_size(&e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

#[derive(Debug, serde::Serialize)]
struct Row {
    selector: &'static str,
    queries: usize,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    mean_deployments: f64,
    mean_entries: f64,
    checked_ok: usize,
}

/// The size and shape of a history to load, and how many writers load it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct History {
    pub deployments: usize,
    pub customers: usize,
    pub models: usize,
    pub endpoints: usize,
    pub days: u64,
    pub writers: usize,
}

/// What [`load`] did.
pub(crate) struct Loaded {
    shape: Arc<Shape>,
    pub customers_time: Duration,
    pub deployments_time: Duration,
    /// Ledger entries after the load.
    pub entries: u64,
}

/// Loads `h` through the real store of `app` (a dev server's, with the dev
/// PKI in `dev_dir`): customers first, then deployments admitted over
/// `h.days` days ending at `now`, most of them released, each with its
/// decision and ledger entries, as admission and release record them.
// A benchmark's load script: each kind of record is written in the order
// the real system writes it, top to bottom, with the timings it reports.
pub(crate) async fn load(
    app: &crate::api::App,
    dev_dir: &std::path::Path,
    h: &History,
    now: UnixMillis,
) -> anyhow::Result<Loaded> {
    let args = *h;
    let chain = std::fs::read_to_string(dev_dir.join("sample-model.chain.pem"))?;
    let summary: CertificateSummary = app
        .trust
        .check(&chain, now)
        .map_err(anyhow::Error::msg)?
        .model
        .context("the dev sample certificate did not verify")?
        .summary;
    let shape = Arc::new(Shape {
        n: args.deployments,
        customers: args.customers,
        models: args.models,
        endpoints: args.endpoints,
        start: now - args.days as i64 * DAY,
        span: args.days as i64 * DAY - 2 * HOUR,
        now,
    });

    // Customers first: admissions name the version they relied on.
    eprintln!("loading {} customers ...", args.customers);
    let refs: Arc<std::sync::Mutex<Vec<Option<CustomerRef>>>> =
        Arc::new(std::sync::Mutex::new(vec![None; args.customers]));
    let customers_time = {
        let (store, refs) = (app.store.clone(), refs.clone());
        parallel(args.customers, args.writers, move |i| {
            let (store, refs) = (store.clone(), refs.clone());
            async move {
                let c = customer(i, now - args.days as i64 * DAY - DAY);
                let e = crate::ledger::entry::customer_entry(
                    &c,
                    crate::ledger::entry::CustomerChange::Registered,
                    None,
                    &c.updated_by,
                    "",
                );
                store.put_customer(&c, None, e).await?;
                if let Ok(mut r) = refs.lock() {
                    r[i] = Some(CustomerRef::of(&c));
                }
                Ok(())
            }
        })
        .await?
    };
    let refs: Arc<Vec<CustomerRef>> = Arc::new(
        std::mem::take(&mut *refs.lock().map_err(|_| anyhow::anyhow!("poisoned"))?)
            .into_iter()
            .map(|r| r.context("a customer was not loaded"))
            .collect::<anyhow::Result<_>>()?,
    );
    eprintln!("customers loaded in {:.1} s", customers_time.as_secs_f64());

    eprintln!(
        "loading {} deployments over {} days ...",
        args.deployments, args.days
    );
    let deployments_time = {
        let (store, refs, shape, summary, chain) = (
            app.store.clone(),
            refs.clone(),
            shape.clone(),
            Arc::new(summary.clone()),
            Arc::new(chain.clone()),
        );
        let lease = 5 * 60_000;
        parallel(args.deployments, args.writers, move |i| {
            let (store, refs, shape, summary, chain) = (
                store.clone(),
                refs.clone(),
                shape.clone(),
                summary.clone(),
                chain.clone(),
            );
            async move {
                let plan = shape.planned(i);
                let cref = refs[plan.customer].clone();
                let d = Deployment {
                    deployment_id: plan.id.clone(),
                    request_id: format!("req-{i}"),
                    customer_id: cref.customer_id.clone(),
                    customer_version: 1,
                    model_digest: plan.model.clone(),
                    workload: Workload {
                        cluster: "bench".into(),
                        region: "eu-west".into(),
                        node: format!("node-{}", i % 5_000),
                        accelerator_type: "h100".into(),
                        accelerator_count: 8,
                        endpoints: vec![plan.endpoint.clone()],
                    },
                    state: DeploymentState::Active,
                    admitted_at: plan.admitted_at,
                    lease_expires_at: plan.admitted_at + lease,
                    released_at: None,
                    admitted_by: SCHEDULER.into(),
                    certificate: (*summary).clone(),
                    chain_sha256: crate::clock::sha256_hex(chain.as_bytes()),
                    renewals: 0,
                    order_id: None,
                    facts: Vec::new(),
                    last_renewal: None,
                };
                let decision = DecisionRecord {
                    decision_id: format!("dec-a-{i}"),
                    kind: DecisionKind::Admit,
                    request_id: d.request_id.clone(),
                    principal: SCHEDULER.into(),
                    at: plan.admitted_at,
                    customer_id: d.customer_id.clone(),
                    customer_version: Some(1),
                    model_digest: d.model_digest.clone(),
                    certificate_fingerprint: Some(summary.fingerprint.clone()),
                    allowed: true,
                    reasons: Vec::new(),
                    deployment_id: Some(d.deployment_id.clone()),
                    lease_expires_at: Some(d.lease_expires_at),
                    licence: None,
                    request_sha256: String::new(),
                    ledger_index: None,
                };
                let entry = Entry::new(
                    plan.admitted_at,
                    SCHEDULER,
                    &d.request_id,
                    Event::Admission {
                        decision_id: decision.decision_id.clone(),
                        allowed: true,
                        reasons: Vec::new(),
                        customer_id: d.customer_id.clone(),
                        customer: Some(cref),
                        model_digest: d.model_digest.clone(),
                        certificate: Some(CertificateRef {
                            fingerprint: summary.fingerprint.clone(),
                            serial: summary.serial.clone(),
                            evaluator: summary.evaluator.clone(),
                        }),
                        deployment_id: Some(d.deployment_id.clone()),
                        lease_expires_at: Some(d.lease_expires_at),
                        workload: d.workload.clone(),
                    },
                );
                store
                    .record_admission(&decision, Some(&d), Some(&chain), 0, entry)
                    .await?;
                let Some(released_at) = plan.released_at else {
                    return Ok(());
                };
                let before = store
                    .deployment(&d.deployment_id)
                    .await?
                    .context("an admitted deployment is missing")?;
                let after = Deployment {
                    state: DeploymentState::Released,
                    released_at: Some(released_at),
                    ..before.clone()
                };
                let release = DecisionRecord {
                    decision_id: format!("dec-r-{i}"),
                    kind: DecisionKind::Release,
                    at: released_at,
                    lease_expires_at: None,
                    ..decision
                };
                let entry = Entry::new(
                    released_at,
                    SCHEDULER,
                    "",
                    Event::Release {
                        decision_id: release.decision_id.clone(),
                        deployment_id: d.deployment_id.clone(),
                    },
                );
                store
                    .update_deployment(&before, &after, &release, None, entry)
                    .await?;
                Ok(())
            }
        })
        .await?
    };
    let entries = app.store.checkpoint().await?.checkpoint.size;
    Ok(Loaded {
        shape,
        customers_time,
        deployments_time,
        entries,
    })
}

// A benchmark script: set up, run each case in turn, print the table; it
// reads in the order of the report it prints.
pub async fn run(args: AttributionBenchArgs) -> anyhow::Result<()> {
    use crate::proto::{self as p, attribute_request::Selector as S};
    let base = tempfile_dir()?;
    let (dev, config) = super::process::prepare_dev(&base)?;
    let app = crate::server::build_app(&config).await?;
    let now = crate::clock::now_millis();
    let history = History {
        deployments: args.deployments,
        customers: args.customers,
        models: args.models,
        endpoints: args.endpoints,
        days: args.days,
        writers: args.writers,
    };
    let Loaded {
        shape,
        customers_time,
        deployments_time,
        entries,
    } = load(&app, &dev.dir, &history, now).await?;
    eprintln!(
        "deployments loaded in {:.1} s; ledger holds {entries} entries",
        deployments_time.as_secs_f64()
    );
    // Serve, and ask as an authority over mTLS.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn({
        let (config, shutdown, app) = (config.clone(), shutdown.clone(), app.clone());
        async move { crate::server::serve(&config, app, listener, shutdown).await }
    });
    let backup_store = app.store.clone();
    drop(app);
    let client = super::process::dev_client(&dev.dir, addr.port(), "authority");
    let mut authority = crate::proto::attribution_client::AttributionClient::new(
        client.connect("authority").await?,
    );
    let legal = p::LegalProcess {
        case_reference: "BENCH-1".into(),
        requesting_authority: "Benchmark Authority".into(),
        jurisdiction: "DE".into(),
        instrument: p::Instrument::CourtOrder as i32,
        document_sha256: "ab".repeat(32),
    };
    let ts = crate::api::convert::timestamp;
    let mut rows = Vec::new();
    for selector in ["deployment", "endpoint_at_time", "model_1_day"] {
        let mut latencies = Vec::with_capacity(args.queries);
        let (mut deployments, mut entries, mut ok) = (0usize, 0usize, 0usize);
        for q in 0..args.queries {
            let i = (mix(0xA77 + q as u64) % args.deployments as u64) as usize;
            let plan = shape.planned(i);
            let request = p::AttributeRequest {
                legal_process: Some(legal.clone()),
                selector: Some(match selector {
                    "deployment" => S::DeploymentId(plan.id.clone()),
                    "endpoint_at_time" => S::Endpoint(p::EndpointSelector {
                        endpoint: plan.endpoint.clone(),
                        // Inside its lease: admitted, not yet released.
                        at: Some(ts(plan.admitted_at + 60_000)),
                    }),
                    _ => {
                        let from =
                            shape.start + (mix(q as u64) % (args.days.max(2) - 1)) as i64 * DAY;
                        S::Model(p::ModelSelector {
                            model_digest: plan.model.clone(),
                            from: Some(ts(from)),
                            to: Some(ts(from + DAY)),
                        })
                    }
                }),
                page_size: 0,
                page_token: String::new(),
            };
            let started = Instant::now();
            let r = authority.attribute(request).await?.into_inner();
            latencies.push(started.elapsed());
            deployments += r.deployments.len();
            entries += r.entries.len();
            let good = match selector {
                "deployment" => r
                    .deployments
                    .first()
                    .is_some_and(|d| d.deployment_id == plan.id),
                "endpoint_at_time" => r
                    .deployments
                    .first()
                    .is_some_and(|d| d.deployment_id == plan.id && d.held_endpoint),
                _ => r.deployments.iter().all(|d| d.model_digest == plan.model),
            };
            ok += usize::from(good);
        }
        latencies.sort_unstable();
        let row = Row {
            selector,
            queries: args.queries,
            p50_ms: percentile(&latencies, 0.50),
            p99_ms: percentile(&latencies, 0.99),
            max_ms: latencies.last().map_or(0.0, |d| d.as_secs_f64() * 1e3),
            mean_deployments: deployments as f64 / args.queries.max(1) as f64,
            mean_entries: entries as f64 / args.queries.max(1) as f64,
            checked_ok: ok,
        };
        eprintln!(
            "{selector}: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, {:.1} deployments and {:.1} entries per answer, {ok}/{} checked",
            row.p50_ms, row.p99_ms, row.max_ms, row.mean_deployments, row.mean_entries, row.queries
        );
        rows.push(row);
    }
    // What a backup of this store costs the writers: how long commits are
    // paused while every tree is copied to a local file. Taken after the
    // queries, so its writes do not disturb their timings.
    let backup = {
        let file = tempfile::tempfile()?;
        backup_store.backup(file).await?.1
    };
    eprintln!(
        "backup of the loaded store: {} records, {:.1} MB, writes paused {:.0} ms",
        backup.records,
        backup.bytes as f64 / 1e6,
        backup.paused.as_secs_f64() * 1000.0
    );

    shutdown.cancel();
    server.await??;
    let disk = dir_size(&dev.data_dir);
    let _ = std::fs::remove_dir_all(&base);

    let info = super::RunInfo::now();
    let (cores, when, command) = (info.cores, &info.when, &info.command);
    let mut md = format!(
        "# Attribution benchmark\n\n\
         A history loaded through the real store (sequencer, sled, durable ledger): \
         {customers} customers with sealed identity records, then {deployments} deployments \
         of {models} models admitted evenly over {days} days, each serving one of {endpoints} \
         endpoints (so endpoints change hands), most released one to ten hours after admission; \
         every admission and release is a ledger entry. Then a real server (dev PKI, mTLS) \
         answers `Attribution.Attribute` to one authority client, one request at a time. Each \
         answer writes two ledger entries (the request, before anything is read, and the \
         disclosure) and proves every entry it shows against one signed checkpoint.\n\n\
         - machine: {cores} cores\n- run: {when}\n- command: `{command}`\n\n\
         | load | time | |\n|---|---:|---|\n\
         | customers | {ct:.1} s | {cps:.0}/s |\n\
         | deployments (admission + release entries) | {dt:.1} s | {dps:.0} deployments/s |\n\
         | ledger entries | {entries} | |\n\
         | data directory | {gib:.2} GiB | |\n\n\
         | selector | queries | p50 ms | p99 ms | max ms | deployments/answer | proved entries/answer | answers checked |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|\n",
        customers = args.customers,
        deployments = args.deployments,
        models = args.models,
        days = args.days,
        endpoints = args.endpoints,
        ct = customers_time.as_secs_f64(),
        cps = args.customers as f64 / customers_time.as_secs_f64().max(1e-9),
        dt = deployments_time.as_secs_f64(),
        dps = args.deployments as f64 / deployments_time.as_secs_f64().max(1e-9),
        gib = disk as f64 / (1u64 << 30) as f64,
    );
    for r in &rows {
        md.push_str(&format!(
            "| {} | {} | {:.2} | {:.2} | {:.2} | {:.1} | {:.1} | {}/{} |\n",
            r.selector,
            r.queries,
            r.p50_ms,
            r.p99_ms,
            r.max_ms,
            r.mean_deployments,
            r.mean_entries,
            r.checked_ok,
            r.queries
        ));
    }
    md.push_str(
        "\nChecks: a deployment query must return that deployment; an endpoint query one \
         minute after a deployment's admission must name it as holding the endpoint; a model \
         query must return only that model's deployments. The model window answers the first \
         page (10 deployments).\n",
    );
    md.push_str(&format!(
        "\nA backup of the loaded store (`Store::backup`, taken after the queries): {} records, \
         {:.1} MB, writes paused for {:.1} s while every tree was copied.\n",
        backup.records,
        backup.bytes as f64 / 1e6,
        backup.paused.as_secs_f64()
    ));
    let json = serde_json::json!({
    "customers": args.customers, "deployments": args.deployments, "models": args.models,
    "endpoints": args.endpoints, "days": args.days,
    "load_customers_seconds": customers_time.as_secs_f64(),
    "load_deployments_seconds": deployments_time.as_secs_f64(),
    "ledger_entries": entries, "data_dir_bytes": disk, "rows": rows,
    "backup_records": backup.records, "backup_bytes": backup.bytes,
    "backup_paused_seconds": backup.paused.as_secs_f64(),
    });
    super::write_results_pair(&args.out, &md, json, &info)?;
    println!("results written to {}", args.out.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The loader writes every customer and deployment through the store,
    /// with one ledger entry per customer, admission and release.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn load_writes_the_planned_history() {
        let base = tempfile_dir().unwrap();
        let (dev, config) = super::super::process::prepare_dev(&base).unwrap();
        let app = crate::server::build_app(&config).await.unwrap();
        let before = app.store.checkpoint().await.unwrap().checkpoint.size;
        let h = History {
            deployments: 60,
            customers: 7,
            models: 3,
            endpoints: 20,
            days: 2,
            writers: 4,
        };
        let now = crate::clock::now_millis();
        let l = load(&app, &dev.dir, &h, now).await.unwrap();
        let released = (0..h.deployments)
            .filter(|&i| l.shape.planned(i).released_at.is_some())
            .count();
        assert!(released > 0 && released < h.deployments);
        let expected = before + (h.customers + h.deployments + released) as u64;
        assert_eq!(l.entries, expected);
        assert_eq!(
            app.store.checkpoint().await.unwrap().checkpoint.size,
            expected
        );
        for i in [0, 59] {
            let plan = l.shape.planned(i);
            let d = app.store.deployment(&plan.id).await.unwrap().unwrap();
            assert_eq!(d.model_digest, plan.model);
            assert_eq!(
                d.state,
                if plan.released_at.is_some() {
                    DeploymentState::Released
                } else {
                    DeploymentState::Active
                }
            );
        }
        let _ = std::fs::remove_dir_all(&base);
    }
}
