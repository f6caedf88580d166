//! `warden store check`: the offline check of a data directory (see
//! [`crate::store::check`]). It runs where the directory is, with no server
//! (a running warden holds the directory, and the check is refused).
//!
//! The ledger's checkpoint is verified with the ledger verifier key: from
//! `--vkey` (the `ledger.vkey` text or file, as for `warden ledger verify`),
//! or derived from `ledger.key` with `--config`, which also names the data
//! directory and the PII key file, so that every sealed record is opened
//! too.
//!
//! Exit status: 0 when every record and the ledger check out, 1 when
//! anything is damaged (each problem printed) or the check could not run.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use serde_json::json;

use super::ClientArgs;
use crate::store::check::{self, CheckReport};

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Read every record of a data directory no warden runs on, check
    /// every checksum and the ledger against its signed checkpoint, and
    /// list whatever is damaged (exit 1 if anything is).
    Check(CheckArgs),
    /// Copy everything a store holds into an empty store of either engine
    /// (no warden may be writing to the source), then check that the
    /// target holds exactly the same records and ledger.
    Copy(CopyArgs),
}

#[derive(Debug, Clone, Args)]
pub struct CopyArgs {
    /// The store to copy: `sled:DIR` or `postgres:URL`.
    #[arg(long)]
    pub from: String,
    /// The empty store to copy into: `sled:DIR` (a new or empty directory)
    /// or `postgres:URL` (a database with no warden data).
    #[arg(long)]
    pub to: String,
    /// File whose first line is the database password (for a postgres:
    /// store on either side).
    #[arg(long)]
    pub password_file: Option<PathBuf>,
    /// CA (PEM) of the database's certificate (for a postgres: store
    /// reached over TLS).
    #[arg(long)]
    pub ca: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
#[command(group(clap::ArgGroup::new("store").required(true).args(["config", "data_dir"])))]
pub struct CheckArgs {
    /// The configuration of the warden that uses the directory: its
    /// `data_dir`, ledger key and PII key file.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// The data directory to check; needs --vkey.
    #[arg(long, conflicts_with = "config", requires = "vkey")]
    pub data_dir: Option<PathBuf>,
    /// Ledger verifier key, as text (`name+id+key`) or a file holding it
    /// (such as certs/dev/ledger.vkey).
    #[arg(long, conflicts_with = "config")]
    pub vkey: Option<String>,
}

pub async fn run(c: &ClientArgs, cmd: StoreCommand) -> anyhow::Result<i32> {
    match cmd {
        StoreCommand::Check(args) => check_store(c, args).await,
        StoreCommand::Copy(args) => {
            let json = c.json;
            tokio::task::spawn_blocking(move || super::store_copy::copy(&args, json))
                .await
                .context("the copy did not finish")?
        }
    }
}

async fn check_store(c: &ClientArgs, args: CheckArgs) -> anyhow::Result<i32> {
    let (dir, verifier, keys) = match (&args.config, &args.data_dir, &args.vkey) {
        (Some(path), _, _) => {
            let config = crate::config::Config::load(path)?;
            let key = std::fs::read_to_string(&config.ledger.key)
                .with_context(|| format!("cannot read {}", config.ledger.key.display()))?;
            let verifier = crate::ledger::note::Signer::from_text(&key)
                .with_context(|| format!("ledger key {}", config.ledger.key.display()))?
                .verifier();
            let keys = crate::pii::Keyring::load(&config.kyc.pii_key_file)?;
            (config.data_dir, verifier, Some(keys))
        }
        (None, Some(dir), Some(vkey)) => {
            let verifier = super::ledger::read_vkey(vkey).context("--vkey")?;
            (dir.clone(), verifier, None)
        }
        _ => anyhow::bail!("give --config, or --data-dir with --vkey"),
    };
    let report = {
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || check::check(&dir, &verifier, keys.as_ref()))
            .await
            .context("the check did not finish")??
    };
    if c.json {
        print_json(&dir, &report);
    } else {
        print_text(&dir, &report);
    }
    Ok(if report.is_clean() { 0 } else { 1 })
}

fn print_json(dir: &std::path::Path, r: &CheckReport) {
    println!(
        "{}",
        json!({
            "data_dir": dir.display().to_string(),
            "clean": r.is_clean(),
            "records": r.records(),
            "trees": r.trees.iter().map(|(t, n)| json!({"tree": t, "records": n})).collect::<Vec<_>>(),
            "ledger_size": r.ledger_size,
            "checkpoint_size": r.checkpoint_size,
            "head_matches": r.head_matches,
            "problems": r.problems.iter().map(|p| json!({"key": p.key, "detail": p.detail})).collect::<Vec<_>>(),
            "notes": r.notes,
        })
    );
}

fn print_text(dir: &std::path::Path, r: &CheckReport) {
    println!(
        "read {} records in {} trees of {}",
        r.records(),
        r.trees.len(),
        dir.display()
    );
    match (r.ledger_size, r.checkpoint_size) {
        (Some(size), Some(cp)) => println!(
            "ledger: {size} entries; every stored hash recomputed; the tree at size {cp} matches \
             its signed checkpoint{}",
            if r.head_matches {
                ", and the store holds everything the ledger head beside it covers"
            } else {
                ""
            }
        ),
        (Some(size), None) => println!("ledger: {size} entries; no signed checkpoint stored yet"),
        _ => {}
    }
    for note in &r.notes {
        println!("note: {note}");
    }
    if r.is_clean() {
        println!("no damage found");
        return;
    }
    println!("DAMAGED: {} problem(s):", r.problems.len());
    for p in &r.problems {
        println!("  {}: {}", p.key, p.detail);
    }
    println!(
        "restore the data directory from a backup (`warden restore FILE --config CONFIG`); \
         writes made after that backup are lost"
    );
}
