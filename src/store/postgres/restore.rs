//! Restoring a backup file into an empty PostgreSQL database: the schema
//! is created, then every record goes in within one transaction that
//! holds the log-head row, so the database is either the whole backup or
//! untouched.

use std::path::Path;

use super::commit::TreeWrites;
use super::{db_error, pool, pool_error, schema, Runtime};
use crate::config::Database;
use crate::store::backup::{self, BackupError, BackupSummary, Item};
use crate::store::kv::keys::{t, META_SIZE};
use crate::store::StoreError;

/// Records sent to the database per statement while restoring.
const BATCH: usize = 5_000;

/// Restores the backup at `from` into `database`, which must hold no
/// warden data (a new database, or one whose tables are all empty).
pub fn restore(from: &Path, database: &Database) -> Result<BackupSummary, BackupError> {
    let checked = backup::verify_file(from)?;
    let runtime = Runtime::new()?;
    let rt = runtime.handle();
    let pool = pool(database)?;
    let mut client = rt.block_on(pool.get()).map_err(pool_error)?;
    rt.block_on(schema::migrate(&mut client))?;
    let tx = rt.block_on(client.transaction()).map_err(db_error)?;
    let size: i64 = rt
        .block_on(tx.query_one("SELECT size FROM log_head WHERE id = 1 FOR UPDATE", &[]))
        .map_err(db_error)?
        .get(0);
    for name in t::NAMES {
        let sql = format!("SELECT EXISTS (SELECT 1 FROM {name})");
        let any: bool = rt
            .block_on(tx.query_one(sql.as_str(), &[]))
            .map_err(db_error)?
            .get(0);
        if any || size != 0 {
            return Err(BackupError::Store(StoreError::AlreadyExists(format!(
                "warden data in the database (table {name}); restore into a new database"
            ))));
        }
    }
    let mut tree: Option<usize> = None;
    let mut writes = TreeWrites::default();
    let mut ledger_size = 0u64;
    backup::parse(from, checked.bytes, |item| {
        match item {
            Item::Tree(name) => {
                if let Some(done) = tree {
                    std::mem::take(&mut writes).apply(&tx, rt, done)?;
                }
                tree = Some(t::NAMES.iter().position(|n| *n == name).ok_or_else(|| {
                    StoreError::Invariant(format!("the backup holds an unknown tree {name}"))
                })?);
            }
            Item::Record(k, v) => {
                if tree == Some(t::META) && k == META_SIZE {
                    ledger_size = <[u8; 8]>::try_from(v.as_slice())
                        .map(u64::from_be_bytes)
                        .unwrap_or(0);
                }
                writes.put(k, v);
                if writes.len() >= BATCH {
                    if let Some(current) = tree {
                        std::mem::take(&mut writes).apply(&tx, rt, current)?;
                    }
                }
            }
        }
        Ok(())
    })?;
    if let Some(last) = tree {
        writes.apply(&tx, rt, last)?;
    }
    let size = i64::try_from(ledger_size)
        .map_err(|_| StoreError::Invariant("ledger size beyond i64".into()))?;
    rt.block_on(tx.execute("UPDATE log_head SET size = $1 WHERE id = 1", &[&size]))
        .map_err(db_error)?;
    rt.block_on(tx.commit()).map_err(db_error)?;
    Ok(checked)
}
