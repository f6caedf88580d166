//! The PostgreSQL sequencer: the only writer of one warden process, and
//! one that cannot fork the log however many processes share the
//! database. Appends gather while a batch commits (group commit); each
//! batch is one transaction that
//!
//! 1. locks the single log-head row, so writers of every process take
//!    turns, and reads the size the log has now;
//! 2. plans the batch over what is committed ([`plan_batch`], the planner
//!    the sled engine uses too), checking every precondition inside the
//!    lock;
//! 3. writes the batch's state changes, entries and stored hashes;
//! 4. signs the checkpoint of the new tree and stores it, and advances the
//!    head;
//! 5. commits, and only then answers the batch's callers and publishes the
//!    checkpoint.
//!
//! A checkpoint is signed before its commit, but no one sees it unless the
//! commit succeeds; a failed commit's signature is dropped, and the next
//! batch starts again from the size the head row holds.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use deadpool_postgres::Pool;
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot};

use super::db_error;
use super::kv::Tables;
use crate::ledger::entry::Entry;
use crate::ledger::note::Signer;
use crate::store::kv::keys::{t, META_CHECKPOINT, META_CHECKPOINT_AT};
use crate::store::kv::plan::{plan_batch, Append, KnownKeys, Layer, Mutation, Outcomes};
use crate::store::kv::store::Published;
use crate::store::{AdmitRecorded, SignedCheckpoint, StoreError};

/// How many appends may wait before callers are made to wait for room.
const QUEUE: usize = 16_384;

/// The most appends one transaction takes.
const MAX_BATCH: usize = 4_096;

type Reply = oneshot::Sender<Result<AdmitRecorded, StoreError>>;

#[derive(Clone)]
pub(crate) struct Sequencer {
    tx: mpsc::Sender<Append>,
    stopped: tokio_util::sync::CancellationToken,
}

/// What the sequencer thread works with.
pub(crate) struct Committer {
    pub(crate) pool: Pool,
    /// Kept alive until the sequencer has ended.
    pub(crate) runtime: Arc<super::Runtime>,
    pub(crate) signer: Arc<Signer>,
    pub(crate) published: Published,
}

impl Sequencer {
    /// Starts the sequencer thread.
    pub(crate) fn spawn(committer: Committer) -> Result<Self, StoreError> {
        let (tx, rx) = mpsc::channel::<Append>(QUEUE);
        let stopped = tokio_util::sync::CancellationToken::new();
        let done = stopped.clone();
        std::thread::Builder::new()
            .name("warden-pg-committer".into())
            .spawn(move || {
                let _done = done.drop_guard();
                commit_loop(rx, &committer);
            })
            .map_err(|e| StoreError::Io(format!("starting the sequencer: {e}")))?;
        Ok(Self { tx, stopped })
    }

    pub(crate) fn stopped(&self) -> tokio_util::sync::CancellationToken {
        self.stopped.clone()
    }

    /// Queues `mutation` with its `entry` and waits until both are
    /// committed (or refused).
    pub(crate) async fn submit(
        &self,
        mutation: Mutation,
        entry: Entry,
    ) -> Result<AdmitRecorded, StoreError> {
        crate::store::kv::plan::submit(&self.tx, mutation, entry).await
    }
}

fn commit_loop(mut rx: mpsc::Receiver<Append>, c: &Committer) {
    let mut known = KnownKeys::default();
    let mut batch: Vec<Append> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(a) => batch.push(a),
                Err(_) => break,
            }
        }
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            commit_batch(c, &mut known, &batch)
        }))
        .unwrap_or_else(|_| Err(StoreError::Invariant("sequencer batch panicked".into())));
        let replies: Vec<Reply> = batch.drain(..).map(|a| a.reply).collect();
        match result {
            Ok((outcomes, checkpoint)) => {
                if let Some(checkpoint) = checkpoint {
                    publish(&c.published.latest, checkpoint);
                }
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    let _ = reply.send(outcome);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "ledger batch failed; nothing in it was recorded");
                for reply in replies {
                    let _ = reply.send(Err(e.for_another_caller()));
                }
            }
        }
    }
}

/// Commits one batch in one transaction; the outcome of each append, and
/// the checkpoint of the new tree if it grew.
fn commit_batch(
    c: &Committer,
    known: &mut KnownKeys,
    batch: &[Append],
) -> Result<(Outcomes, Option<SignedCheckpoint>), StoreError> {
    let rt = c.runtime.handle();
    let mut client = rt.block_on(c.pool.get()).map_err(super::pool_error)?;
    let tx = rt.block_on(client.transaction()).map_err(db_error)?;
    let size: i64 = rt
        .block_on(tx.query_one("SELECT size FROM log_head WHERE id = 1 FOR UPDATE", &[]))
        .map_err(db_error)?
        .get(0);
    let size = u64::try_from(size).map_err(|_| StoreError::Corrupt {
        key: "log_head".into(),
        detail: format!("negative log size {size}"),
    })?;
    let tables = Tables {
        client: tx,
        runtime: rt.clone(),
    };
    let planned = plan_batch(&tables, None, known, size, batch)?;
    let tx = tables.client;
    let checkpoint = match planned.root {
        Some(root) if planned.size > size => {
            Some(SignedCheckpoint::sign(&c.signer, planned.size, root)?)
        }
        _ => None,
    };
    let mut writes = by_tree(planned.layer);
    if let Some(signed) = &checkpoint {
        let meta = writes.entry(t::META).or_default();
        for (key, value) in checkpoint_writes(signed).into_pairs() {
            meta.put(key, value);
        }
    }
    for (tree, w) in &writes {
        w.apply(&tx, rt, *tree)?;
    }
    if checkpoint.is_some() {
        let new_size = i64::try_from(planned.size)
            .map_err(|_| StoreError::Invariant("log size beyond i64".into()))?;
        rt.block_on(tx.execute("UPDATE log_head SET size = $1 WHERE id = 1", &[&new_size]))
            .map_err(db_error)?;
    }
    let started = std::time::Instant::now();
    rt.block_on(tx.commit()).map_err(db_error)?;
    c.published.flush_seconds.observe(started.elapsed());
    Ok((planned.outcomes, checkpoint))
}

/// The writes of one tree: values to set and keys to remove.
#[derive(Default)]
pub(crate) struct TreeWrites {
    keys: Vec<Vec<u8>>,
    values: Vec<Vec<u8>>,
    removed: Vec<Vec<u8>>,
}

impl TreeWrites {
    pub(crate) fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.keys.push(key);
        self.values.push(value);
    }

    fn into_pairs(self) -> impl Iterator<Item = (Vec<u8>, Vec<u8>)> {
        self.keys.into_iter().zip(self.values)
    }

    pub(crate) fn len(&self) -> usize {
        self.keys.len() + self.removed.len()
    }

    /// Two statements at most, however many keys: one upsert of every
    /// value, one delete of every removed key.
    pub(crate) fn apply(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        rt: &Handle,
        tree: usize,
    ) -> Result<(), StoreError> {
        let name = t::NAMES[tree];
        if !self.keys.is_empty() {
            let sql = format!(
                "INSERT INTO {name} (key, value) SELECT * FROM unnest($1::bytea[], $2::bytea[]) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value"
            );
            rt.block_on(async {
                let statement = tx.prepare_cached(&sql).await?;
                tx.execute(&statement, &[&self.keys, &self.values]).await
            })
            .map_err(|e| db_error(e).in_tree(name))?;
        }
        if !self.removed.is_empty() {
            let sql = format!("DELETE FROM {name} WHERE key = ANY($1::bytea[])");
            rt.block_on(async {
                let statement = tx.prepare_cached(&sql).await?;
                tx.execute(&statement, &[&self.removed]).await
            })
            .map_err(|e| db_error(e).in_tree(name))?;
        }
        Ok(())
    }
}

/// A batch's writes grouped by tree (each key appears once in a layer),
/// taken out of the layer, which is not needed once planned.
fn by_tree(layer: Layer) -> BTreeMap<usize, TreeWrites> {
    let mut out: BTreeMap<usize, TreeWrites> = BTreeMap::new();
    for (tree, key, value) in layer.writes {
        let w = out.entry(tree).or_default();
        match value {
            Some(v) => w.put(key, v),
            None => w.removed.push(key),
        }
    }
    out
}

/// The writes of [`t::META`] that store `signed` as the latest checkpoint.
pub(crate) fn checkpoint_writes(signed: &SignedCheckpoint) -> TreeWrites {
    let mut w = TreeWrites::default();
    w.put(META_CHECKPOINT.to_vec(), signed.note.as_bytes().to_vec());
    w.put(
        META_CHECKPOINT_AT.to_vec(),
        signed.signed_at.to_be_bytes().to_vec(),
    );
    w
}

fn publish(latest: &RwLock<SignedCheckpoint>, checkpoint: SignedCheckpoint) {
    let mut l = match latest.write() {
        Ok(l) => l,
        Err(p) => p.into_inner(),
    };
    // Another process may have published a larger tree already (read at
    // start); never go back.
    if checkpoint.checkpoint.size >= l.checkpoint.size {
        *l = checkpoint;
    }
}
