//! `warden bench admission`: admission at scheduler speed, measured from
//! outside the server. This process starts `warden serve` as a child (dev
//! PKI, mutual TLS, sled on disk, durable ledger) and is its client over
//! loopback, with N concurrent callers, each a stream of calls one after
//! another:
//!
//! - `floor`: `grpc.health.v1.Health/Check`, the cheapest unary call on the
//!   same server, through the same TLS and the same auth layer (which reads
//!   the client certificate on every call, role-checked or not): the cost of
//!   the transport;
//! - `admit-cached`: `Admit` with the one chain every caller presents, so
//!   its verification is cached after the first call;
//! - `admit-cold`: `Admit` with a chain the server has never seen, every
//!   call (model certificates made with rcgen before timing);
//! - `renew`: `Renew` of a deployment each caller admitted before timing;
//! - `deny`: an `Admit` denied for a digest mismatch, recorded like any
//!   decision.
//!
//! Every answer is checked (allow, deny or SERVING as expected); a wrong one
//! stops the benchmark. Beside each row: the server's CPU time per call
//! and its peak RSS during that run (read from `/proc`). Client and server
//! share the machine's cores, so on a small machine the client's own work
//! is part of what limits throughput; the server CPU column says how much
//! of a core each call costs the server alone.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use futures_util::future::BoxFuture;
use rayon::prelude::*;
use serde::Serialize;
use tonic::transport::Channel;

use super::process::{dev_client, prepare_dev, ServeProcess};
use super::tempfile_dir;
use crate::proto::{self as p, admission_client::AdmissionClient};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Case {
    Floor,
    AdmitCached,
    AdmitCold,
    Renew,
    Deny,
}

impl Case {
    fn name(self) -> &'static str {
        match self {
            Case::Floor => "floor",
            Case::AdmitCached => "admit-cached",
            Case::AdmitCold => "admit-cold",
            Case::Renew => "renew",
            Case::Deny => "deny",
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct AdmissionBenchArgs {
    /// Concurrent callers to measure, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "1,16,128")]
    pub callers: Vec<usize>,
    /// Cases to run, comma separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "floor,admit-cached,admit-cold,renew,deny"
    )]
    pub cases: Vec<Case>,
    /// Seconds each (case, callers) run is timed, after the warm-up.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Seconds of calls before timing starts.
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// TLS connections the callers share; 0 (the default) gives each
    /// caller its own, as separate scheduler instances would have.
    #[arg(long, default_value_t = 0)]
    pub connections: usize,
    /// Fresh model certificates made before timing for admit-cold; a run
    /// that uses them all ends early (the row says how many calls it made).
    #[arg(long, default_value_t = 40_000)]
    pub cold_chains: usize,
    /// Fresh chains the verification micro-benchmark times.
    #[arg(long, default_value_t = 2_000)]
    pub verify_chains: usize,
    /// Results file (Markdown); a .json beside it holds the raw numbers.
    #[arg(long, default_value = "bench/results/admission.md")]
    pub out: PathBuf,
}

#[derive(Debug, Serialize)]
pub struct Row {
    pub case: &'static str,
    pub callers: usize,
    pub connections: usize,
    pub calls: usize,
    pub seconds: f64,
    pub calls_per_second: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    /// Server CPU (user + system) per call, microseconds.
    pub server_cpu_us_per_call: f64,
    /// Server peak RSS during this run, MiB (since start when the kernel
    /// would not reset the peak).
    pub server_peak_rss_mib: f64,
    /// The cold chains ran out before the time did.
    pub ended_early: bool,
}

/// What one call did.
enum Called {
    Done,
    /// Nothing left to call with (cold chains used up).
    Exhausted,
}

type CallFn =
    Arc<dyn Fn(usize, Channel) -> BoxFuture<'static, anyhow::Result<Called>> + Send + Sync>;

pub fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    super::percentile(sorted, p)
}

/// Runs `call` from `callers` tasks, each on its channel, for `warmup` then
/// `run`; returns the latencies of the calls started after the warm-up and
/// the time actually measured.
async fn drive(
    channels: &[Channel],
    callers: usize,
    warmup: Duration,
    run: Duration,
    call: CallFn,
) -> anyhow::Result<(Vec<Duration>, Duration, bool)> {
    let start = Instant::now();
    let timed_from = start + warmup;
    let until = timed_from + run;
    let mut tasks = Vec::with_capacity(callers);
    for c in 0..callers {
        let channel = channels[c % channels.len()].clone();
        let call = call.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(4096);
            let mut exhausted_at = None;
            loop {
                let now = Instant::now();
                if now >= until {
                    break;
                }
                match call(c, channel.clone()).await? {
                    Called::Done => {}
                    Called::Exhausted => {
                        exhausted_at = Some(Instant::now());
                        break;
                    }
                }
                if now >= timed_from {
                    latencies.push(now.elapsed());
                }
            }
            anyhow::Ok((latencies, exhausted_at))
        }));
    }
    let mut all = Vec::new();
    let mut ended = None::<Instant>;
    for t in tasks {
        let (l, e) = t.await??;
        all.extend(l);
        if let Some(e) = e {
            ended = Some(ended.map_or(e, |x: Instant| x.max(e)));
        }
    }
    let measured = match ended {
        Some(e) => e.saturating_duration_since(timed_from),
        None => run,
    };
    all.sort_unstable();
    Ok((all, measured, ended.is_some()))
}

/// The admission request every admit case sends, apart from its chain and
/// digest.
pub(crate) fn admit_request(customer: &str, digest: &str, chain: &str) -> p::AdmitRequest {
    p::AdmitRequest {
        request_id: uuid::Uuid::new_v4().simple().to_string(),
        customer_id: customer.into(),
        model_digest: digest.into(),
        certificate_chain: chain.into(),
        workload: Some(p::Workload {
            cluster: "bench".into(),
            region: "eu-west-1".into(),
            node: "node-1".into(),
            accelerator_type: "h100".into(),
            accelerator_count: 4,
            endpoints: vec!["10.0.0.1:8000".into()],
        }),
    }
}

pub(crate) fn expect(r: &p::AdmitResponse, allow: bool) -> anyhow::Result<()> {
    let want = if allow {
        p::Decision::Allow
    } else {
        p::Decision::Deny
    };
    anyhow::ensure!(
        r.decision == want as i32,
        "expected {want:?}, the server answered {:?} with {:?}",
        p::Decision::try_from(r.decision),
        r.reasons
    );
    Ok(())
}

pub(crate) const CUSTOMER: &str = "bench-customer";

/// Registers a VERIFIED customer for admissions to name.
pub(crate) async fn register_customer(kyc: Channel, customer_id: &str) -> anyhow::Result<()> {
    let mut c = crate::proto::customers_client::CustomersClient::new(kyc);
    c.register_customer(p::RegisterCustomerRequest {
        customer_id: customer_id.into(),
        kind: p::CustomerKind::Organisation as i32,
        legal_name: "Benchmark Customer Ltd".into(),
        country: "DE".into(),
        status: p::CustomerStatus::Verified as i32,
        details: Some(p::CustomerDetails {
            registration_number: "HRB 1".into(),
            legal_form: "GmbH".into(),
            jurisdiction: "DE".into(),
            addresses: vec![p::Address {
                lines: vec!["Beispielstrasse 1".into()],
                city: "Berlin".into(),
                postal_code: "10115".into(),
                region: String::new(),
                country: "DE".into(),
            }],
            email: "kyc@example.com".into(),
            phone: "+4930123456".into(),
            declared_purpose: "benchmark".into(),
            ..Default::default()
        }),
    })
    .await
    .context("registering the benchmark customer")?;
    Ok(())
}

/// `n` fresh model-evaluation chains (leaf, then the evaluator CA) with the
/// claims of the dev sample certificate, made in parallel.
pub fn fresh_chains(dev_dir: &std::path::Path, n: usize) -> anyhow::Result<Vec<String>> {
    let profile = crate::pki::Profile::default();
    let ca_pem = std::fs::read_to_string(dev_dir.join("evaluator/ca.pem"))?;
    let ca_key = std::fs::read_to_string(dev_dir.join("evaluator/ca.key"))?;
    let sample = std::fs::read(dev_dir.join("sample-model.chain.pem"))?;
    let leaf = rustls_pemfile::certs(&mut sample.as_slice())
        .next()
        .context("the sample chain holds no certificate")??;
    let claims =
        crate::pki::verify::certificate_claims(&leaf, &profile).map_err(anyhow::Error::msg)?;
    let now = time::OffsetDateTime::now_utc();
    (0..n)
        .into_par_iter()
        .map(|_| {
            let issued = crate::pki::issue_evaluation_certificate(
                &ca_pem,
                &ca_key,
                &claims,
                now - time::Duration::minutes(5),
                now + time::Duration::days(30),
                &profile,
            )?;
            Ok(format!("{}{}", issued.cert_pem, ca_pem))
        })
        .collect()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

pub async fn run(args: AdmissionBenchArgs) -> anyhow::Result<()> {
    let base = tempfile_dir()?;
    let result = run_in(&args, &base).await;
    let _ = std::fs::remove_dir_all(&base);
    result
}

// A benchmark script: start the server, warm up, run each case in turn,
// print the table; it reads in the order of the report it prints.
async fn run_in(args: &AdmissionBenchArgs, base: &std::path::Path) -> anyhow::Result<()> {
    let (dev, config) = prepare_dev(base)?;
    let sample_chain = std::fs::read_to_string(dev.dir.join("sample-model.chain.pem"))?;
    let digest =
        crate::digest::digest_dir(&dev.dir.join("sample-model"), &Default::default())?.to_string();

    // Made before the server starts, so the two do not compete for cores.
    let want_cold = args.cases.contains(&Case::AdmitCold);
    let made = Instant::now();
    let chains = fresh_chains(
        &dev.dir,
        args.verify_chains + if want_cold { args.cold_chains } else { 0 },
    )?;
    eprintln!(
        "made {} fresh model certificates in {:.1} s",
        chains.len(),
        made.elapsed().as_secs_f64()
    );
    let (verify_chains, cold_chains) = chains.split_at(args.verify_chains.min(chains.len()));
    let verify = super::verify::measure(&config, verify_chains, &sample_chain)?;
    eprintln!("{verify}");
    let cold_chains: Arc<Vec<String>> = Arc::new(cold_chains.to_vec());

    let launched = Instant::now();
    let mut server = ServeProcess::spawn(&dev.dir.join("warden.toml"), &base.join("serve.log"))?;
    let ready = server
        .wait_ready(
            &dev_client(&dev.dir, dev.listen.port(), "auditor"),
            launched,
            Duration::from_secs(60),
        )
        .await?;
    eprintln!(
        "warden serve (pid {}) ready in {:.0} ms",
        server.pid(),
        ms(ready)
    );
    let scheduler = dev_client(&dev.dir, dev.listen.port(), "scheduler");
    register_customer(
        dev_client(&dev.dir, dev.listen.port(), "kyc")
            .connect("kyc")
            .await?,
        CUSTOMER,
    )
    .await?;

    let warmup = Duration::from_secs_f64(args.warmup);
    let run = Duration::from_secs_f64(args.seconds);
    let next_cold = Arc::new(AtomicUsize::new(0));
    let mut rows = Vec::new();
    let mut peak_reset_ok = true;
    for &case in &args.cases {
        for &callers in &args.callers {
            let connections = if args.connections == 0 {
                callers
            } else {
                args.connections.min(callers)
            }
            .max(1);
            let mut channels = Vec::with_capacity(connections);
            for _ in 0..connections {
                channels.push(scheduler.connect("scheduler").await?);
            }
            let call: CallFn = match case {
                Case::Floor => Arc::new(|_, ch| {
                    Box::pin(async move {
                        let r = tonic_health::pb::health_client::HealthClient::new(ch)
                            .check(tonic_health::pb::HealthCheckRequest {
                                service: "warden.v1.Admission".into(),
                            })
                            .await?
                            .into_inner();
                        anyhow::ensure!(r.status == 1, "health answered {}", r.status);
                        Ok(Called::Done)
                    })
                }),
                Case::AdmitCached | Case::Deny => {
                    let allow = case == Case::AdmitCached;
                    let request = Arc::new(admit_request(
                        CUSTOMER,
                        if allow {
                            digest.clone()
                        } else {
                            format!("sha256:{}", "0".repeat(64))
                        }
                        .as_str(),
                        &sample_chain,
                    ));
                    Arc::new(move |_, ch| {
                        let mut request = (*request).clone();
                        request.request_id = uuid::Uuid::new_v4().simple().to_string();
                        Box::pin(async move {
                            let r = AdmissionClient::new(ch).admit(request).await?.into_inner();
                            expect(&r, allow)?;
                            Ok(Called::Done)
                        })
                    })
                }
                Case::AdmitCold => {
                    let (chains, next, digest) =
                        (cold_chains.clone(), next_cold.clone(), digest.clone());
                    Arc::new(move |_, ch| {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let request = chains
                            .get(i)
                            .map(|chain| admit_request(CUSTOMER, &digest, chain));
                        Box::pin(async move {
                            let Some(request) = request else {
                                return Ok(Called::Exhausted);
                            };
                            let r = AdmissionClient::new(ch).admit(request).await?.into_inner();
                            expect(&r, true)?;
                            Ok(Called::Done)
                        })
                    })
                }
                Case::Renew => {
                    // One deployment per caller, admitted before timing.
                    let mut ids = Vec::with_capacity(callers);
                    for c in 0..callers {
                        let r = AdmissionClient::new(channels[c % channels.len()].clone())
                            .admit(admit_request(CUSTOMER, &digest, &sample_chain))
                            .await?
                            .into_inner();
                        expect(&r, true)?;
                        ids.push(r.deployment_id);
                    }
                    let ids = Arc::new(ids);
                    Arc::new(move |c, ch| {
                        let request = p::RenewRequest {
                            deployment_id: ids[c].clone(),
                            endpoints: Vec::new(),
                        };
                        Box::pin(async move {
                            let r = AdmissionClient::new(ch).renew(request).await?.into_inner();
                            anyhow::ensure!(
                                r.decision == p::Decision::Allow as i32,
                                "renewal denied: {:?}",
                                r.reasons
                            );
                            Ok(Called::Done)
                        })
                    })
                }
            };
            peak_reset_ok &= server.reset_peak_rss();
            let cpu_before = server.cpu_time();
            let (latencies, measured, ended_early) =
                drive(&channels, callers, warmup, run, call).await?;
            let cpu = match (cpu_before, server.cpu_time()) {
                (Some(a), Some(b)) => b.saturating_sub(a),
                _ => Duration::ZERO,
            };
            // CPU is counted over warm-up and timing alike; so are calls.
            let seconds = measured.as_secs_f64().max(1e-9);
            let calls_per_second = latencies.len() as f64 / seconds;
            let all_calls = calls_per_second * (seconds + args.warmup);
            let row = Row {
                case: case.name(),
                callers,
                connections,
                calls: latencies.len(),
                seconds,
                calls_per_second,
                p50_ms: percentile_ms(&latencies, 0.50),
                p90_ms: percentile_ms(&latencies, 0.90),
                p99_ms: percentile_ms(&latencies, 0.99),
                p999_ms: percentile_ms(&latencies, 0.999),
                max_ms: latencies.last().map_or(0.0, |d| ms(*d)),
                server_cpu_us_per_call: cpu.as_secs_f64() * 1e6 / all_calls.max(1.0),
                server_peak_rss_mib: server.peak_rss_kib().unwrap_or(0) as f64 / 1024.0,
                ended_early,
            };
            eprintln!(
                "{:<13} {:>4} callers: {:>7} calls {:>8.0}/s  p50 {:.2} p90 {:.2} p99 {:.2} p99.9 {:.2} max {:.2} ms  server {:.0} µs CPU/call, peak RSS {:.0} MiB{}",
                row.case, row.callers, row.calls, row.calls_per_second, row.p50_ms, row.p90_ms,
                row.p99_ms, row.p999_ms, row.max_ms, row.server_cpu_us_per_call,
                row.server_peak_rss_mib,
                if row.ended_early { " (cold chains used up)" } else { "" }
            );
            rows.push(row);
        }
    }
    let log = server.log.clone();
    server
        .stop(Duration::from_secs(15))
        .with_context(|| format!("see {}", log.display()))?;

    print_table(&rows);
    write_results(args, &rows, &verify, ready, peak_reset_ok)?;
    println!("results written to {}", args.out.display());
    Ok(())
}

/// A row's cells, as the table and the Markdown show them.
fn cells(r: &Row) -> [String; 11] {
    [
        format!(
            "{}{}",
            r.case,
            if r.ended_early {
                " (chains used up)"
            } else {
                ""
            }
        ),
        r.callers.to_string(),
        r.calls.to_string(),
        format!("{:.0}", r.calls_per_second),
        format!("{:.2}", r.p50_ms),
        format!("{:.2}", r.p90_ms),
        format!("{:.2}", r.p99_ms),
        format!("{:.2}", r.p999_ms),
        format!("{:.2}", r.max_ms),
        format!("{:.0}", r.server_cpu_us_per_call),
        format!("{:.0}", r.server_peak_rss_mib),
    ]
}

const HEADERS: [&str; 11] = [
    "case",
    "callers",
    "calls",
    "calls/s",
    "p50 ms",
    "p90 ms",
    "p99 ms",
    "p99.9 ms",
    "max ms",
    "server CPU µs/call",
    "server peak RSS MiB",
];

fn print_table(rows: &[Row]) {
    let line = |c: &[String]| {
        let mut s = format!("{:<30}", c[0]);
        for x in &c[1..] {
            s.push_str(&format!(" {x:>9}"));
        }
        println!("{s}");
    };
    line(
        &[
            "case", "callers", "calls", "calls/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms",
            "max ms", "srv µs", "srv MiB",
        ]
        .map(String::from),
    );
    for r in rows {
        line(&cells(r));
    }
}

fn write_results(
    args: &AdmissionBenchArgs,
    rows: &[Row],
    verify: &super::verify::VerifyReport,
    ready: Duration,
    peak_reset_ok: bool,
) -> anyhow::Result<()> {
    let info = super::RunInfo::now();
    let (cores, when, command) = (info.cores, &info.when, &info.command);
    let mut md = format!(
        "# Admission benchmark\n\n\
         `warden serve` runs as a child process (dev PKI, mutual TLS, sled on disk, durable \
         ledger); the benchmark process is its client over loopback, each caller a stream of \
         calls one after another, each caller on its own TLS connection unless \
         `--connections` says otherwise. `floor` is `grpc.health.v1.Health/Check` through the \
         same TLS and auth layer: the transport's cost. `admit-cached` presents one chain \
         (verified once, then served from the verification cache, time and revocation \
         re-checked); `admit-cold` presents a chain the server has never seen on every call; \
         `renew` renews a deployment per caller; `deny` is an Admit denied for a digest \
         mismatch. Every admission, renewal and denial is committed to the ledger before it \
         is answered. Server CPU per call is the server process's user + system time over \
         the run divided by its calls; peak RSS is the server's VmHWM during the run. Client \
         and server share the machine's {cores} cores.\n\n\
         - machine: {cores} cores\n- run: {when}\n- command: `{command}`\n\
         - seconds per run: {seconds} (after {warmup} s warm-up)\n\
         - `warden serve` launch to first SERVING health answer (empty data dir): {ready:.0} ms\n\n\
         | {headers} |\n|---{align}|\n",
        headers = HEADERS.join(" | "),
        align = "|---:".repeat(HEADERS.len() - 1),
        seconds = args.seconds,
        warmup = args.warmup,
        ready = ms(ready),
    );
    for r in rows {
        md.push_str(&format!("| {} |\n", cells(r).join(" | ")));
    }
    if !peak_reset_ok {
        md.push_str(
            "\nThe kernel refused to reset the peak RSS between runs: each peak is since the \
             server started.\n",
        );
    }
    md.push_str(&format!("\n## Chain verification\n\n{}", verify.markdown()));
    md.push_str(
        "\nCold start (time to ready over a large data directory) and model digest speed \
         have their own results: [cold-start.md](cold-start.md), [digest.md](digest.md).\n",
    );
    let json = serde_json::json!({
    "seconds": args.seconds, "warmup_seconds": args.warmup,
    "ready_ms": ms(ready), "peak_rss_reset": peak_reset_ok,
    "rows": rows, "verify": verify,
    });
    super::write_results_pair(&args.out, &md, json, &info)?;
    Ok(())
}
