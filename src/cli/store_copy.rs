//! `warden store copy --from sled:DIR|postgres:URL --to sled:DIR|postgres:URL`:
//! moves a store between engines. The source is read as one backup
//! snapshot, restored into the target (which must be empty), and the
//! target is then read back the same way: both must hold the same records,
//! byte for byte, and so the same ledger.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use serde_json::json;

use super::store::CopyArgs;
use crate::config::{Database, Engine, StoreConfig};
use crate::store::backup::{self, BackupSummary};

/// One side of a copy.
enum Place {
    Sled(PathBuf),
    Postgres(Box<Database>),
}

impl Place {
    fn parse(text: &str, what: &str, args: &CopyArgs) -> anyhow::Result<Self> {
        if let Some(dir) = text.strip_prefix("sled:") {
            return Ok(Place::Sled(PathBuf::from(dir)));
        }
        if text.starts_with("postgres:") || text.starts_with("postgresql:") {
            let url = text
                .strip_prefix("postgres:")
                .filter(|u| u.starts_with("//"))
                .map_or_else(|| text.to_string(), |u| format!("postgresql:{u}"));
            let store = StoreConfig {
                engine: Engine::Postgres,
                url: Some(url),
                password_file: args.password_file.clone(),
                ca: args.ca.clone(),
                ..StoreConfig::default()
            };
            return store
                .database()
                .map(|db| Place::Postgres(Box::new(db)))
                .map_err(|problems| {
                    let all: Vec<String> =
                        problems.iter().map(|(f, m)| format!("{f}: {m}")).collect();
                    anyhow::anyhow!("--{what}: {}", all.join("; "))
                });
        }
        bail!("--{what} must be sled:DIR or postgres://USER@HOST/DATABASE, not {text:?}")
    }

    fn name(&self) -> String {
        match self {
            Place::Sled(dir) => format!("sled:{}", dir.display()),
            Place::Postgres(db) => format!(
                "postgres database {}",
                db.connect.get_dbname().unwrap_or_default()
            ),
        }
    }

    /// A backup of the place written to `file`.
    fn snapshot(&self, file: &Path) -> anyhow::Result<BackupSummary> {
        let mut out = std::fs::File::create(file)
            .with_context(|| format!("cannot create {}", file.display()))?;
        let summary = match self {
            Place::Sled(dir) => backup::backup_offline(dir, &mut out)?,
            Place::Postgres(db) => crate::store::postgres::snapshot(db, &mut out)?,
        };
        out.sync_all()?;
        Ok(summary)
    }

    fn restore(&self, file: &Path) -> anyhow::Result<()> {
        match self {
            Place::Sled(dir) => backup::restore(file, dir, false).map(drop)?,
            Place::Postgres(db) => crate::store::postgres::restore(file, db).map(drop)?,
        }
        Ok(())
    }
}

pub fn copy(args: &CopyArgs, json: bool) -> anyhow::Result<i32> {
    let from = Place::parse(&args.from, "from", args)?;
    let to = Place::parse(&args.to, "to", args)?;
    let work = tempfile::tempdir().context("cannot make a temporary directory")?;
    let (source_file, target_file) = (work.path().join("from"), work.path().join("to"));
    let source = from
        .snapshot(&source_file)
        .with_context(|| format!("reading {}", from.name()))?;
    to.restore(&source_file)
        .with_context(|| format!("writing {}", to.name()))?;
    to.snapshot(&target_file)
        .with_context(|| format!("reading back {}", to.name()))?;
    let (records, digest) = backup::content_digest(&source_file)?;
    let (copied, copied_digest) = backup::content_digest(&target_file)?;
    if (records, digest) != (copied, copied_digest) {
        bail!(
            "the copy in {} does not match {}: {copied} records against {records}; \
             do not use it",
            to.name(),
            from.name()
        );
    }
    let h = &source.header;
    if json {
        println!(
            "{}",
            json!({
                "from": from.name(),
                "to": to.name(),
                "records": records,
                "ledger_size": h.ledger_size,
                "checkpoint": h.checkpoint,
                "sha256": hex::encode(digest),
            })
        );
    } else {
        println!(
            "copied {records} records (ledger size {}) from {} to {}; read back, the \
             target holds the same records (SHA-256 {})",
            h.ledger_size,
            from.name(),
            to.name(),
            hex::encode(digest)
        );
    }
    Ok(0)
}
