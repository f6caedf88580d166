//! `warden bench verify`: the cost of checking a model-evaluation chain,
//! in-process, one call at a time:
//!
//! - `pki verify`: [`Verifier::verify`](crate::pki::Verifier::verify) on a
//!   chain never seen before (PEM and DER decoding, path building and
//!   signature checks by webpki, CRL lookups, reading the claims);
//! - `check, cold`: what an admission of a new chain pays,
//!   [`TrustState::check`](crate::trust::TrustState::check) on a fresh chain
//!   (the above, plus the verification cache's key and insert);
//! - `check, cached`: the same chain again (cache hit; validity and
//!   revocation re-checked).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;
use serde::Serialize;

use super::tempfile_dir;
use crate::config::Config;
use crate::pki::{Profile, TrustBundle, UnixTime, Verifier};
use crate::trust::TrustState;

#[derive(Debug, Clone, Args)]
pub struct VerifyBenchArgs {
    /// Fresh chains to verify.
    #[arg(long, default_value_t = 5_000)]
    pub chains: usize,
    /// Results file (Markdown); a .json beside it holds the raw numbers.
    #[arg(long, default_value = "bench/results/verify.md")]
    pub out: PathBuf,
}

#[derive(Debug, Serialize)]
pub struct VerifyRow {
    pub what: &'static str,
    pub calls: usize,
    pub p50_us: f64,
    pub p99_us: f64,
    pub mean_us: f64,
}

#[derive(Debug, Serialize)]
pub struct VerifyReport {
    pub rows: Vec<VerifyRow>,
}

impl VerifyReport {
    pub fn markdown(&self) -> String {
        let mut md = String::from(
            "One call at a time on one thread, in-process. `pki verify` is the chain check \
             itself on a chain never seen before; `check, cold` is what an admission of a new \
             chain pays (the same, plus the cache key and insert); `check, cached` is the same \
             chain again (validity and revocation re-checked, no signatures).\n\n\
             | what | calls | p50 µs | p99 µs | mean µs |\n|---|---:|---:|---:|---:|\n",
        );
        for r in &self.rows {
            md.push_str(&format!(
                "| {} | {} | {:.1} | {:.1} | {:.1} |\n",
                r.what, r.calls, r.p50_us, r.p99_us, r.mean_us
            ));
        }
        md
    }
}

impl std::fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for r in &self.rows {
            writeln!(
                f,
                "{:<16} {:>6} calls  p50 {:>7.1} µs  p99 {:>7.1} µs  mean {:>7.1} µs",
                r.what, r.calls, r.p50_us, r.p99_us, r.mean_us
            )?;
        }
        Ok(())
    }
}

fn row(what: &'static str, mut t: Vec<Duration>) -> VerifyRow {
    t.sort_unstable();
    let us = |p: f64| super::percentile(&t, p) * 1e3;
    VerifyRow {
        what,
        calls: t.len(),
        p50_us: us(0.50),
        p99_us: us(0.99),
        mean_us: t.iter().sum::<Duration>().as_secs_f64() * 1e6 / t.len().max(1) as f64,
    }
}

/// Times the three measures over `fresh` (chains not seen before; half go
/// to `pki verify`, half to `check, cold`) and `cached` (one chain, checked
/// once untimed first). Every chain must verify.
pub fn measure(config: &Config, fresh: &[String], cached: &str) -> anyhow::Result<VerifyReport> {
    let profile = Profile::from_oid_str(&config.trust.oid_base_arc)?;
    let bundle = TrustBundle::load_dir(&config.trust.dir)?;
    let verifier = Verifier::new(config.trust.require_crls);
    let trust = TrustState::load(&config.trust).map_err(anyhow::Error::msg)?;
    let (for_verify, for_check) = fresh.split_at(fresh.len() / 2);
    let secs = crate::clock::now_millis() / 1000;
    let now = UnixTime::since_unix_epoch(Duration::from_secs(u64::try_from(secs)?));

    let mut verify = Vec::with_capacity(for_verify.len());
    for chain in for_verify {
        let started = Instant::now();
        let c = verifier.verify(&bundle, chain, now, &profile);
        verify.push(started.elapsed());
        anyhow::ensure!(
            c.is_valid(),
            "a fresh chain did not verify: {:?}",
            c.problems
        );
    }
    let check = |chain: &str| -> anyhow::Result<Duration> {
        let started = Instant::now();
        let outcome = trust
            .check(chain, secs * 1000)
            .map_err(anyhow::Error::msg)?;
        let took = started.elapsed();
        anyhow::ensure!(
            outcome.problems.is_empty() && outcome.model.is_some(),
            "a chain did not verify: {:?}",
            outcome.problems
        );
        Ok(took)
    };
    let cold = for_check
        .iter()
        .map(|c| check(c))
        .collect::<anyhow::Result<Vec<_>>>()?;
    check(cached)?;
    let hits = (0..fresh.len().max(100))
        .map(|_| check(cached))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(VerifyReport {
        rows: vec![
            row("pki verify", verify),
            row("check, cold", cold),
            row("check, cached", hits),
        ],
    })
}

pub fn run(args: &VerifyBenchArgs) -> anyhow::Result<()> {
    let base = tempfile_dir()?;
    let result = (|| {
        let (dev, config) = super::process::prepare_dev(&base)?;
        let fresh = super::admission::fresh_chains(&dev.dir, args.chains)?;
        let cached = std::fs::read_to_string(dev.dir.join("sample-model.chain.pem"))?;
        measure(&config, &fresh, &cached)
    })();
    let _ = std::fs::remove_dir_all(&base);
    let report = result?;
    print!("{report}");
    let info = super::RunInfo::now();
    let (cores, when, command) = (info.cores, &info.when, &info.command);
    let md = format!(
        "# Chain verification benchmark\n\n- machine: {cores} cores\n- run: {when}\n\
         - command: `{command}`\n\n{}",
        report.markdown()
    );
    let json = serde_json::json!({
    "rows": report.rows,
           });
    super::write_results_pair(&args.out, &md, json, &info)?;
    println!("results written to {}", args.out.display());
    Ok(())
}
