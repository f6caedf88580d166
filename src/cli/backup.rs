//! `warden backup` and `warden restore`.
//!
//! `backup --out FILE` asks a running warden for a consistent snapshot
//! (admin role) and writes it to FILE; `backup --data-dir DIR --out FILE`
//! reads a data directory no warden is running on. Either way the file is
//! written beside FILE first, checked completely (markers, checksum,
//! structure), and only then renamed to FILE, so FILE is never a partial
//! backup.
//!
//! `restore FILE` checks the file, then writes it into a new or empty data
//! directory (`--force` replaces a stopped warden's store). With `--config`
//! it then opens the restored store exactly as `warden serve` does: the
//! ledger is recomputed from its entries and checked against the last
//! signed checkpoint, and the PII key must open the stored records.
//!
//! Neither command touches keys: a backup holds sealed personal data and
//! the ledger, never the ledger, licence or PII keys.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use clap::Args;
use serde_json::json;

use super::ClientArgs;
use crate::proto;
use crate::proto::operations_client::OperationsClient;
use crate::store::backup::{self, BackupSummary};

#[derive(Debug, Clone, Args)]
pub struct BackupArgs {
    /// Where to write the backup file. It is written beside it first and
    /// renamed into place once checked complete.
    #[arg(long)]
    pub out: PathBuf,
    /// Read this data directory directly instead of asking a running warden
    /// (only while no warden runs on it; it is locked meanwhile).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Replace --out if it already exists.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Clone, Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["config", "data_dir"])))]
pub struct RestoreArgs {
    /// The backup file, as `warden backup` wrote it.
    pub file: PathBuf,
    /// The configuration warden will serve with: restore into its
    /// `data_dir`, then check the store with its ledger and PII keys as
    /// `warden serve` does at start.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Restore into this data directory without checking it against the
    /// keys (warden checks the ledger when it starts on it).
    #[arg(long, conflicts_with = "config")]
    pub data_dir: Option<PathBuf>,
    /// Replace the warden store already in the directory. Refused while a
    /// warden runs on it, and for a directory that holds anything else.
    #[arg(long)]
    pub force: bool,
}

/// The partial file a backup is written to before it is checked.
fn partial_path(out: &Path) -> PathBuf {
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    out.with_file_name(name)
}

pub async fn backup(c: &ClientArgs, args: BackupArgs) -> anyhow::Result<i32> {
    if args.out.exists() && !args.force {
        bail!(
            "{} exists; choose another --out or pass --force to replace it",
            args.out.display()
        );
    }
    let partial = partial_path(&args.out);
    let taken = match &args.data_dir {
        Some(dir) => offline(dir, &partial),
        None => online(c, &partial).await,
    };
    let written = taken.and_then(|paused| {
        let summary = backup::verify_file(&partial)
            .context("the backup just written does not check out; it was not kept")?;
        crate::fsutil::rename_durably(&partial, &args.out).with_context(|| {
            format!(
                "cannot rename {} to {}",
                partial.display(),
                args.out.display()
            )
        })?;
        Ok(BackupSummary { paused, ..summary })
    });
    let summary = match written {
        Ok(s) => s,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
    };
    let h = &summary.header;
    if c.json {
        println!(
            "{}",
            json!({
                "file": args.out.display().to_string(),
                "bytes": summary.bytes,
                "records": summary.records,
                "ledger_size": h.ledger_size,
                "checkpoint": h.checkpoint,
                "writes_paused_ms": summary.paused.as_secs_f64() * 1000.0,
            })
        );
    } else {
        println!(
            "backup written to {}: {} bytes, {} records, ledger size {}",
            args.out.display(),
            summary.bytes,
            summary.records,
            h.ledger_size
        );
        if args.data_dir.is_none() {
            println!(
                "writes were paused for {:.1} ms while the snapshot was read",
                summary.paused.as_secs_f64() * 1000.0
            );
        }
        println!(
            "keys are not in the backup: keep the ledger, licence and PII key files safe \
             separately (without the PII key the customer records in it do not open)"
        );
    }
    Ok(0)
}

/// Streams a snapshot from the server into `partial`; returns how long the
/// server paused writes.
async fn online(c: &ClientArgs, partial: &Path) -> anyhow::Result<std::time::Duration> {
    let mut client = OperationsClient::new(c.connect("admin").await?);
    let mut stream = client
        .backup(proto::BackupRequest {})
        .await
        .map_err(super::commands::status_error)?
        .into_inner();
    let mut file = std::fs::File::create(partial)
        .with_context(|| format!("cannot create {}", partial.display()))?;
    let (mut expected, mut paused, mut received) = (None, 0u64, 0u64);
    while let Some(message) = stream
        .message()
        .await
        .map_err(|s| super::commands::status_error(s).context("the backup stream broke off"))?
    {
        if expected.is_none() {
            expected = Some(message.total_bytes);
            paused = message.writes_paused_micros;
        }
        file.write_all(&message.chunk)
            .with_context(|| format!("cannot write {}", partial.display()))?;
        received += message.chunk.len() as u64;
    }
    if expected != Some(received) {
        bail!(
            "the backup stream ended after {received} of {} bytes; nothing was kept",
            expected.unwrap_or_default()
        );
    }
    file.sync_all()
        .with_context(|| format!("cannot write {}", partial.display()))?;
    Ok(std::time::Duration::from_micros(paused))
}

fn offline(dir: &Path, partial: &Path) -> anyhow::Result<std::time::Duration> {
    let mut file = std::fs::File::create(partial)
        .with_context(|| format!("cannot create {}", partial.display()))?;
    match backup::backup_offline(dir, &mut file) {
        Err(backup::BackupError::Store(crate::store::StoreError::Locked(_))) => bail!(
            "a warden is running on {}: take the backup through it with `warden backup --out \
             FILE` (admin role), without --data-dir",
            dir.display()
        ),
        other => other?,
    };
    file.sync_all()
        .with_context(|| format!("cannot write {}", partial.display()))?;
    Ok(std::time::Duration::ZERO)
}

pub async fn restore(c: &ClientArgs, args: RestoreArgs) -> anyhow::Result<i32> {
    let config = args
        .config
        .as_deref()
        .map(crate::config::Config::load)
        .transpose()?;
    let postgres = config
        .as_ref()
        .filter(|c| c.store.engine == crate::config::Engine::Postgres);
    let (summary, place) = match (postgres, &config, &args.data_dir) {
        (Some(cfg), _, _) => {
            let database = cfg
                .store
                .database()
                .map_err(crate::config::ConfigError::Invalid)?;
            let file = args.file.clone();
            let summary = tokio::task::spawn_blocking(move || {
                crate::store::postgres::restore(&file, &database)
            })
            .await
            .context("restore did not finish")??;
            (summary, "the database of store.url".to_string())
        }
        (None, Some(cfg), _) => restore_into_dir(&args, cfg.data_dir.clone()).await?,
        (None, None, Some(dir)) => restore_into_dir(&args, dir.clone()).await?,
        (None, None, None) => bail!("give --config or --data-dir"),
    };
    let verified = match &config {
        Some(cfg) => Some(check_restored(cfg).await?),
        None => None,
    };
    let h = &summary.header;
    if c.json {
        let data_dir = postgres.is_none().then_some(&place);
        println!(
            "{}",
            json!({
                "data_dir": data_dir,
                "restored_into": place,
                "records": summary.records,
                "ledger_size": h.ledger_size,
                "created_at": crate::api::convert::rfc3339(h.created_at),
                "verified_checkpoint": verified,
            })
        );
    } else {
        println!(
            "restored {} records (ledger size {}, backup taken {}) into {}",
            summary.records,
            h.ledger_size,
            crate::api::convert::rfc3339(h.created_at),
            place
        );
        match verified {
            Some(note) => print!(
                "the ledger verifies against its signed checkpoint and the PII key opens the \
                 records:\n{note}"
            ),
            None => println!(
                "not checked against the keys: warden checks the ledger when it starts on \
                 this directory (or restore with --config)"
            ),
        }
    }
    Ok(0)
}

/// Restores `args.file` into the data directory `dir`; the summary and
/// how to name the directory.
async fn restore_into_dir(
    args: &RestoreArgs,
    dir: PathBuf,
) -> anyhow::Result<(BackupSummary, String)> {
    let summary = {
        let (file, dir, force) = (args.file.clone(), dir.clone(), args.force);
        tokio::task::spawn_blocking(move || backup::restore(&file, &dir, force))
            .await
            .context("restore did not finish")?
    };
    match summary {
        Err(backup::BackupError::Store(crate::store::StoreError::Locked(_))) => bail!(
            "a warden is running on {}; stop it before restoring into its directory",
            dir.display()
        ),
        other => Ok((other?, dir.display().to_string())),
    }
}

/// Opens the restored store as `warden serve` would, then closes it;
/// returns the signed checkpoint it verified against.
async fn check_restored(config: &crate::config::Config) -> anyhow::Result<String> {
    let app = crate::server::build_app(config).await.context(
        "the restored store does not pass warden's start-up check (is this the config, with \
         the ledger and PII keys, of the warden the backup came from?)",
    )?;
    let note = app.store.checkpoint().await?.note;
    let closed = app.store.closed();
    drop(app);
    closed.cancelled().await;
    Ok(note)
}
