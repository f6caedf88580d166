//! The PostgreSQL engine: the layout of [`crate::store::kv`] as one table
//! of (key, value) per tree, read through the same code as sled
//! ([`kv::Tables`]), written by a sequencer that serialises every writer
//! of every warden process on one log-head row ([`commit`]). Several
//! wardens may share one database.
//!
//! The engine keeps a small runtime of its own for its connections: the
//! shared reads and planner are synchronous, so they run on blocking
//! threads and wait there for their queries, which that runtime drives
//! whatever runtime (or test) the caller is on.
//!
//! | module | holds |
//! |---|---|
//! | `mod.rs` | [`PgEngine`]: connecting, checking the stored ledger at start, reads |
//! | `schema` | versioned migrations, applied under an advisory lock |
//! | `kv` | the tables read as a [`Kv`](crate::store::kv::Kv) |
//! | `commit` | the sequencer |
//! | `restore` | a backup file into an empty database |

mod commit;
mod kv;
mod restore;
pub mod schema;

pub use restore::restore;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};

use crate::config::Database;
use crate::ledger::entry::Entry;
use crate::ledger::note::Signer;
use crate::ledger::tree;
use crate::pii::Keyring;
use crate::store::kv::keys::t;
use crate::store::kv::plan::Mutation;
use crate::store::kv::read::{check_keys, read_ledger, tampered, Reader, StoredLedger};
use crate::store::kv::store::{Engine, KvStore, Published, ReadKind};
use crate::store::{AdmitRecorded, SignedCheckpoint, StoreError};
use commit::{Committer, Sequencer};
use kv::Tables;

/// The PostgreSQL store: the shared [`KvStore`] over PostgreSQL.
pub type PgStore = KvStore<PgEngine>;

/// How long a call waits for a connection, or for a new one to open,
/// before it is answered UNAVAILABLE.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A database error: I/O to the caller (retry later), whatever the cause;
/// the message names what PostgreSQL said.
pub(crate) fn db_error(e: tokio_postgres::Error) -> StoreError {
    match e.as_db_error() {
        Some(db) => StoreError::Io(format!("database: {} ({})", db.message(), db.code().code())),
        None => {
            // The causes say what went wrong (a refused certificate, a
            // closed connection): name them all.
            let mut message = format!("database: {e}");
            let mut cause = std::error::Error::source(&e);
            while let Some(c) = cause {
                message.push_str(&format!(": {c}"));
                cause = c.source();
            }
            StoreError::Io(message)
        }
    }
}

pub(crate) fn pool_error(e: deadpool_postgres::PoolError) -> StoreError {
    match e {
        deadpool_postgres::PoolError::Backend(e) => db_error(e),
        e => StoreError::Io(format!("database connection: {e}")),
    }
}

/// The engine's own runtime, shut down without waiting when the engine
/// goes (which may be inside another runtime).
struct Runtime(Option<tokio::runtime::Runtime>);

impl Runtime {
    fn new() -> Result<Self, StoreError> {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("warden-postgres")
            .enable_all()
            .build()
            .map(|rt| Self(Some(rt)))
            .map_err(|e| StoreError::Io(format!("starting the database runtime: {e}")))
    }

    fn handle(&self) -> &tokio::runtime::Handle {
        match &self.0 {
            Some(rt) => rt.handle(),
            None => unreachable!("the runtime is only taken on drop"),
        }
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// What the store needs of PostgreSQL: a pool of connections, read as a
/// [`Kv`](crate::store::kv::Kv), and the sequencer that commits through them.
pub struct PgEngine {
    runtime: Arc<Runtime>,
    /// Whether the database answered its last probe ([`probe`]).
    reachable: tokio::sync::watch::Receiver<bool>,
    pool: Pool,
    keys: Arc<Keyring>,
    sequencer: Sequencer,
    published: Published,
}

impl KvStore<PgEngine> {
    /// Connects to the database, brings its schema up to date, checks the
    /// stored ledger against its last signed checkpoint and that `keys`
    /// open the stored personal data, and starts the sequencer.
    pub async fn connect(
        database: &Database,
        ledger_signer: Signer,
        keys: Keyring,
    ) -> Result<Self, StoreError> {
        let runtime = Arc::new(Runtime::new()?);
        let pool = pool(database)?;
        let signer = Arc::new(ledger_signer);
        let keys = Arc::new(keys);
        let (pool_, signer_, keys_) = (pool.clone(), signer.clone(), keys.clone());
        let handle = runtime.handle().clone();
        let checkpoint = runtime
            .handle()
            .spawn_blocking(move || prepare(&handle, &pool_, &signer_, &keys_))
            .await
            .map_err(|e| StoreError::Invariant(format!("opening the database: {e}")))??;
        let published = Published::new(checkpoint);
        let (reachable_tx, reachable) = tokio::sync::watch::channel(true);
        runtime.handle().spawn(probe(pool.clone(), reachable_tx));
        let sequencer = Sequencer::spawn(Committer {
            pool: pool.clone(),
            runtime: runtime.clone(),
            signer,
            published: published.clone(),
        })?;
        Ok(Self {
            engine: PgEngine {
                runtime,
                reachable,
                pool,
                keys,
                sequencer,
                published,
            },
        })
    }
}

/// How often the database is asked whether it answers, and how long an
/// answer may take.
const PROBE_EVERY: Duration = Duration::from_secs(1);
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Asks the database every [`PROBE_EVERY`] whether it answers, and says
/// so on `reachable` when that changes; ends with the engine's runtime.
async fn probe(pool: Pool, reachable: tokio::sync::watch::Sender<bool>) {
    loop {
        let answered = tokio::time::timeout(PROBE_TIMEOUT, async {
            let client = pool.get().await.ok()?;
            client.simple_query("SELECT 1").await.ok()
        })
        .await
        .ok()
        .flatten()
        .is_some();
        reachable.send_if_modified(|was| std::mem::replace(was, answered) != answered);
        tokio::time::sleep(PROBE_EVERY).await;
    }
}

/// A pool of connections to `database`, each over TLS checked against its
/// CA unless the database is on this machine with TLS off.
fn pool(database: &Database) -> Result<Pool, StoreError> {
    let mut connect = database.connect.clone();
    if let Some(file) = &database.password_file {
        let text = std::fs::read_to_string(file).map_err(|e| {
            StoreError::Io(format!(
                "cannot read store.password_file {}: {e}",
                file.display()
            ))
        })?;
        connect.password(text.lines().next().unwrap_or_default().trim_end());
    }
    connect.connect_timeout(CONNECT_TIMEOUT);
    let manager_config = ManagerConfig {
        recycling_method: RecyclingMethod::Fast,
    };
    let manager = match &database.ca {
        Some(ca) => {
            connect.ssl_mode(tokio_postgres::config::SslMode::Require);
            Manager::from_config(connect, tls(ca)?, manager_config)
        }
        None => {
            connect.ssl_mode(tokio_postgres::config::SslMode::Disable);
            Manager::from_config(connect, tokio_postgres::NoTls, manager_config)
        }
    };
    Pool::builder(manager)
        .max_size(database.pool_size)
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .wait_timeout(Some(CONNECT_TIMEOUT))
        .create_timeout(Some(CONNECT_TIMEOUT))
        .build()
        .map_err(|e| StoreError::Invariant(format!("building the connection pool: {e}")))
}

/// TLS to the database with rustls (ring): its certificate must chain to
/// `ca` and name the host connected to.
fn tls(ca: &std::path::Path) -> Result<tokio_postgres_rustls::MakeRustlsConnect, StoreError> {
    let bad = |why: String| StoreError::Io(format!("store.ca {}: {why}", ca.display()));
    let pem = std::fs::read(ca).map_err(|e| bad(e.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots
            .add(cert.map_err(|e| bad(e.to_string()))?)
            .map_err(|e| bad(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(bad("no PEM certificate in it".into()));
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| bad(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// At start, on a blocking thread of the engine's runtime: migrations, the
/// stored ledger checked, the keys checked. The latest checkpoint.
fn prepare(
    rt: &tokio::runtime::Handle,
    pool: &Pool,
    signer: &Signer,
    keys: &Keyring,
) -> Result<SignedCheckpoint, StoreError> {
    let mut client = rt.block_on(pool.get()).map_err(pool_error)?;
    rt.block_on(schema::migrate(&mut client))?;
    let mut tables = Tables {
        client,
        runtime: rt.clone(),
    };
    check_keys(&tables, keys)?;
    verify_ledger(&mut tables, signer)
}

/// Checks the stored ledger against its last signed checkpoint (see
/// [`read_ledger`]); signs the stored tree if it has grown past it (a
/// first start), under the log-head lock so no other process appends
/// meanwhile.
fn verify_ledger(
    tables: &mut Tables<deadpool_postgres::Object>,
    signer: &Signer,
) -> Result<SignedCheckpoint, StoreError> {
    let StoredLedger { size, hashes, last } = read_ledger(&*tables, &signer.verifier())?;
    if let Some(last) = last.filter(|l| l.checkpoint.size == size) {
        return Ok(last);
    }
    let root = tree::tree_hash(size, &hashes).map_err(|e| tampered(e.to_string()))?;
    let signed = SignedCheckpoint::sign(signer, size, root)?;
    let rt = tables.runtime.clone();
    let tx = rt.block_on(tables.client.transaction()).map_err(db_error)?;
    let head: i64 = rt
        .block_on(tx.query_one("SELECT size FROM log_head WHERE id = 1 FOR UPDATE", &[]))
        .map_err(db_error)?
        .get(0);
    // Another process may have appended since the ledger was read: then
    // its checkpoint stands, and this one is only kept in memory.
    if u64::try_from(head).ok() == Some(size) {
        commit::checkpoint_writes(&signed).apply(&tx, &rt, t::META)?;
    }
    rt.block_on(tx.commit()).map_err(db_error)?;
    Ok(signed)
}

/// Writes a backup of the database to `out` from one snapshot (a
/// read-only REPEATABLE READ transaction): writers are not held up.
fn snapshot_with(
    rt: &tokio::runtime::Handle,
    pool: &Pool,
    out: &mut dyn std::io::Write,
) -> Result<crate::store::backup::BackupSummary, StoreError> {
    let created_at = crate::clock::now_millis();
    let mut client = rt.block_on(pool.get()).map_err(pool_error)?;
    let snapshot = rt
        .block_on(
            client
                .build_transaction()
                .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start(),
        )
        .map_err(db_error)?;
    let tables = Tables {
        client: snapshot,
        runtime: rt.clone(),
    };
    let summary = crate::store::backup::write_snapshot(&tables, out, created_at)?;
    rt.block_on(tables.client.commit()).map_err(db_error)?;
    Ok(summary)
}

/// A backup of `database` written to `out`, with no warden running on it
/// needed (as `warden store copy` reads its source). Blocking.
pub fn snapshot(
    database: &Database,
    out: &mut dyn std::io::Write,
) -> Result<crate::store::backup::BackupSummary, StoreError> {
    let runtime = Runtime::new()?;
    let pool = pool(database)?;
    let client = runtime.handle().block_on(pool.get()).map_err(pool_error)?;
    let version = runtime
        .handle()
        .block_on(schema::current_version(&client))?;
    if version == 0 {
        return Err(StoreError::Io(
            "the database holds no warden store (no schema)".into(),
        ));
    }
    drop(client);
    snapshot_with(runtime.handle(), &pool, out)
}

#[async_trait]
impl Engine for PgEngine {
    type Kv = Tables<deadpool_postgres::Object>;

    /// Every read runs on a blocking thread of the engine's runtime, with
    /// a connection of its own.
    async fn read<T: Send + 'static>(
        &self,
        _kind: ReadKind,
        read: impl for<'r> FnOnce(&'r Reader<Self::Kv>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (pool, keys) = (self.pool.clone(), self.keys.clone());
        let handle = self.runtime.handle().clone();
        self.runtime
            .handle()
            .spawn_blocking(move || {
                let client = handle.block_on(pool.get()).map_err(pool_error)?;
                let reader = Reader {
                    kv: Tables {
                        client,
                        runtime: handle,
                    },
                    keys,
                };
                read(&reader)
            })
            .await
            .map_err(|e| match e.try_into_panic() {
                Ok(panic) => std::panic::resume_unwind(panic),
                Err(_) => StoreError::Io("a store read was cancelled".into()),
            })?
    }

    async fn submit(&self, mutation: Mutation, entry: Entry) -> Result<AdmitRecorded, StoreError> {
        self.sequencer.submit(mutation, entry).await
    }

    fn keys(&self) -> &Keyring {
        &self.keys
    }

    fn published(&self) -> &Published {
        &self.published
    }

    fn closed(&self) -> tokio_util::sync::CancellationToken {
        self.sequencer.stopped()
    }

    fn reachability(&self) -> Option<tokio::sync::watch::Receiver<bool>> {
        Some(self.reachable.clone())
    }

    /// Reads one snapshot of the database (a read-only REPEATABLE READ
    /// transaction), so writers go on meanwhile and nothing waits.
    async fn backup(
        &self,
        mut out: std::fs::File,
    ) -> Result<(std::fs::File, crate::store::backup::BackupSummary), StoreError> {
        let pool = self.pool.clone();
        let handle = self.runtime.handle().clone();
        self.runtime
            .handle()
            .spawn_blocking(move || {
                let summary = snapshot_with(&handle, &pool, &mut out)?;
                Ok((out, summary))
            })
            .await
            .map_err(|e| StoreError::Io(format!("the backup stopped: {e}")))?
    }
}
