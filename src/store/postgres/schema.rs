//! The database schema, as versioned migrations embedded in the binary.
//! They are applied at start under an advisory lock, so two wardens
//! starting together apply each one once; a database whose schema is newer
//! than this warden knows is refused, naming both versions.

use tokio_postgres::Client;

use crate::store::kv::keys::t;
use crate::store::StoreError;

/// Key of the advisory lock migrations run under (an arbitrary constant,
/// "warden" in ASCII).
const MIGRATION_LOCK: i64 = 0x0000_7761_7264_656e;

/// The schema version each migration brings the database to is its
/// position in this list, from 1.
fn migrations() -> Vec<String> {
    // 1: the log head every commit locks, and one table of (key, value)
    // per tree of the layout.
    let mut first = String::from(
        "CREATE TABLE warden_schema (version integer NOT NULL);\n\
         INSERT INTO warden_schema VALUES (0);\n\
         CREATE TABLE log_head (\n\
             id smallint PRIMARY KEY CHECK (id = 1),\n\
             size bigint NOT NULL\n\
         );\n\
         INSERT INTO log_head VALUES (1, 0);\n",
    );
    for name in t::NAMES {
        first.push_str(&format!(
            "CREATE TABLE {name} (key bytea PRIMARY KEY, value bytea NOT NULL);\n"
        ));
    }
    vec![first]
}

/// The newest schema version this warden knows.
pub fn known_version() -> i32 {
    i32::try_from(migrations().len()).unwrap_or(i32::MAX)
}

/// Brings the database to [`known_version`], or refuses one that is newer.
pub(crate) async fn migrate(client: &mut Client) -> Result<(), StoreError> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(super::db_error)?;
    let result = apply(client).await;
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(super::db_error);
    result.and(unlocked.map(drop))
}

async fn apply(client: &mut Client) -> Result<(), StoreError> {
    let known = known_version();
    let current = current_version(client).await?;
    if current > known {
        return Err(StoreError::Invariant(format!(
            "the database's schema is version {current}, newer than the version {known} \
             this warden knows; run a warden at least as new as the one that wrote it"
        )));
    }
    for (i, sql) in migrations()
        .iter()
        .enumerate()
        .skip(usize::try_from(current).unwrap_or(0))
    {
        let version = i32::try_from(i + 1).unwrap_or(i32::MAX);
        let tx = client.transaction().await.map_err(super::db_error)?;
        tx.batch_execute(sql).await.map_err(super::db_error)?;
        tx.execute("UPDATE warden_schema SET version = $1", &[&version])
            .await
            .map_err(super::db_error)?;
        tx.commit().await.map_err(super::db_error)?;
        tracing::info!(version, "database schema migrated");
    }
    Ok(())
}

/// The database's schema version; 0 for an empty database.
pub(crate) async fn current_version(client: &Client) -> Result<i32, StoreError> {
    let exists: bool = client
        .query_one("SELECT to_regclass('warden_schema') IS NOT NULL", &[])
        .await
        .map_err(super::db_error)?
        .get(0);
    if !exists {
        return Ok(0);
    }
    let row = client
        .query_one("SELECT version FROM warden_schema", &[])
        .await
        .map_err(super::db_error)?;
    Ok(row.get(0))
}
