//! The sequencer: the only writer. Every state change travels here with the
//! ledger entry that records it, and the two are committed together, so no
//! state change exists without its entry.
//!
//! Batches run back to back (group commit) through two threads:
//!
//! 1. the planner takes every append that is waiting (while a batch is on
//!    disk the next one gathers, so batches grow with load), checks each
//!    one's preconditions, and computes the accepted ones' state changes,
//!    entries, stored hashes, the new size and root, reading through the
//!    previous batch's writes;
//! 2. the committer writes the batch and the previous batch's checkpoint in
//!    one sled transaction and flushes;
//! 3. it signs a checkpoint of the new, durable tree; the next batch's
//!    transaction (or, when idle, one of its own) persists it;
//! 4. once that checkpoint is on disk, it answers every waiter it covers
//!    with its ledger index.
//!
//! It never signs a tree that is not durable, and never signs two roots for
//! one size: the only checkpoint for a size is made from the stored hashes
//! after they are on disk.
//!
//! This module runs the two threads and the commit; what a batch writes is
//! planned in [`super::plan`], under the keys of [`super::keys`].

use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};

use sled::transaction::ConflictableTransactionError;
use sled::Transactional as _;
use tokio::sync::{mpsc, oneshot};

use super::Trees;
use crate::ledger::entry::Entry;
use crate::ledger::note::Signer;
use crate::ledger::tree::Hash;
use crate::metrics::Histogram;
use crate::store::kv::keys::{t, META_CHECKPOINT, META_CHECKPOINT_AT};
use crate::store::kv::plan::{empty, plan_batch, Append, KnownKeys, Layer, Mutation, Outcomes};
use crate::store::{AdmitRecorded, SignedCheckpoint, StoreError};

#[derive(Clone)]
pub(crate) struct Sequencer {
    tx: mpsc::Sender<Append>,
    /// Held by the committer while a batch's transaction goes in, and by
    /// [`Sequencer::paused`]: whoever holds it sees every tree at one
    /// point between two commits.
    gate: Arc<CommitGate>,
    /// Cancelled when the task has ended: every waiter answered, the last
    /// checkpoint persisted, and its handles on the database dropped.
    stopped: tokio_util::sync::CancellationToken,
}

/// See [`Sequencer::gate`].
#[derive(Default)]
pub(crate) struct CommitGate(std::sync::Mutex<()>);

impl CommitGate {
    fn hold(&self) -> std::sync::MutexGuard<'_, ()> {
        // The guarded value is `()`: a panic while holding it leaves
        // nothing inconsistent behind.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// How many appends may wait before callers are made to wait for room.
const QUEUE: usize = 16_384;

/// The most appends one transaction takes.
const MAX_BATCH: usize = 4_096;

type TxResult<T> = Result<T, ConflictableTransactionError<StoreError>>;

type Reply = oneshot::Sender<Result<AdmitRecorded, StoreError>>;

/// Waiters whose entries are durable and covered by `checkpoint`, which is
/// signed but not yet persisted: they are answered once it is.
struct Unpersisted {
    checkpoint: SignedCheckpoint,
    waiters: Vec<(Reply, Result<AdmitRecorded, StoreError>)>,
}

/// A planned batch, handed from the planner to the committer.
struct Planned {
    replies: Vec<Reply>,
    outcomes: Outcomes,
    /// The ledger size the batch was planned on.
    base_size: u64,
    /// The size after it, and the root of that tree if it grew.
    size: u64,
    root: Option<Hash>,
    layer: Arc<Layer>,
}

/// What the planner and the committer tell each other besides batches.
struct Shared {
    /// Set by the committer when a batch failed: the size actually
    /// committed. The planner then drops what it planned on top of the
    /// failed batch.
    reset: std::sync::Mutex<Option<u64>>,
    /// True while the planner is planning a batch: the committer then waits
    /// for it (its transaction will persist the pending checkpoint) instead
    /// of spending a flush on the checkpoint alone.
    planning: std::sync::atomic::AtomicBool,
    /// Where the committer records how long each flush took.
    flush_seconds: Arc<Histogram>,
}

impl Sequencer {
    /// Starts the sequencer over `trees` (in [`t::NAMES`] order): two
    /// threads, a planner and a committer, so that one batch is planned
    /// while the one before it commits and flushes.
    ///
    /// - The planner takes every waiting append, checks preconditions and
    ///   computes entries, stored hashes and the new root, reading through
    ///   the previous batch's writes. It hands a batch over only once the
    ///   committer has finished the one before it, so at most one planned
    ///   batch is not yet on disk.
    /// - The committer writes the batch in one transaction together with
    ///   the checkpoint signed after the previous flush, flushes, signs the
    ///   new tree, and answers the previous batch's waiters (their
    ///   checkpoint is on disk now). When nothing else is waiting, it
    ///   persists the checkpoint on its own right away, so a lone caller
    ///   waits for two flushes.
    ///
    /// With `head_dir`, each checkpoint is also written to the ledger head
    /// there ([`crate::store::head`]) before its waiters are answered.
    pub(crate) fn spawn(
        db: sled::Db,
        trees: Trees,
        signer: Arc<Signer>,
        size: u64,
        latest: Arc<RwLock<SignedCheckpoint>>,
        flush_seconds: Arc<Histogram>,
        head_dir: Option<std::path::PathBuf>,
    ) -> Result<Self, StoreError> {
        let (tx, rx) = mpsc::channel::<Append>(QUEUE);
        let stopped = tokio_util::sync::CancellationToken::new();
        let done = stopped.clone();
        // A rendezvous: `send` returns once the committer has taken the
        // batch, which it does only after finishing the previous one.
        let (planned_tx, planned_rx) = std::sync::mpsc::sync_channel::<Planned>(0);
        let shared = Arc::new(Shared {
            reset: std::sync::Mutex::default(),
            planning: std::sync::atomic::AtomicBool::default(),
            flush_seconds,
        });
        let gate: Arc<CommitGate> = Arc::default();
        let spawn_err = |e: std::io::Error| StoreError::Io(format!("starting the sequencer: {e}"));
        let planner = {
            let trees = trees.clone();
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("warden-planner".into())
                .spawn(move || plan_loop(rx, &trees, size, &planned_tx, &shared))
                .map_err(spawn_err)?
        };
        let committer_gate = gate.clone();
        std::thread::Builder::new()
            .name("warden-committer".into())
            .spawn(move || {
                // Declared first so it is dropped last, after the database
                // handles: signals the store is closed.
                let _done = done.drop_guard();
                let (db, trees, signer, latest) = (db, trees, signer, latest);
                commit_loop(
                    &db,
                    &trees,
                    &signer,
                    size,
                    &latest,
                    &planned_rx,
                    &shared,
                    &committer_gate,
                    head_dir.as_deref(),
                );
                // The planner has ended (its sender is gone); wait for it
                // to drop its handles too.
                let _ = planner.join();
                drop((db, trees, signer, latest));
                if let Some(dir) = head_dir.as_deref() {
                    wait_for_release(dir);
                }
            })
            .map_err(spawn_err)?;
        Ok(Self { tx, stopped, gate })
    }

    /// Runs `read` with commits paused: no transaction goes in until it
    /// returns, so it sees every tree at one point between two batches.
    /// Callers keep queueing meanwhile (and the next batch is planned); they
    /// are answered, late, once it returns. Blocking.
    pub(crate) fn paused<R>(&self, read: impl FnOnce() -> R) -> R {
        let _held = self.gate.hold();
        read()
    }

    /// Resolves once the task has ended (all handles to it were dropped and
    /// everything it held was persisted).
    pub(crate) fn stopped(&self) -> tokio_util::sync::CancellationToken {
        self.stopped.clone()
    }

    /// Applies `mutation` and appends `entry` atomically; returns once both
    /// are durable and covered by a signed checkpoint.
    pub(crate) async fn submit(
        &self,
        mutation: Mutation,
        entry: Entry,
    ) -> Result<AdmitRecorded, StoreError> {
        crate::store::kv::plan::submit(&self.tx, mutation, entry).await
    }
}

fn plan_loop(
    mut rx: mpsc::Receiver<Append>,
    trees: &Trees,
    mut size: u64,
    planned_tx: &std::sync::mpsc::SyncSender<Planned>,
    shared: &Shared,
) {
    // The previous batch's writes; it may still be committing.
    let mut previous: Option<Arc<Layer>> = None;
    // Reused from batch to batch: appends are large, and a fresh buffer
    // each time costs page faults.
    let mut batch: Vec<Append> = Vec::with_capacity(MAX_BATCH);
    let mut known = KnownKeys::default();
    while let Some(first) = rx.blocking_recv() {
        shared.planning.store(true, Ordering::SeqCst);
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(a) => batch.push(a),
                Err(_) => break,
            }
        }
        if let Some(committed) = lock(shared).take() {
            // A batch failed: what was planned on it never reached disk.
            size = committed;
            previous = None;
        }
        let planned = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            super::engine::engine(|| {
                plan_batch(trees, previous.as_deref(), &mut known, size, &batch)
            })
        }));
        let mut replies: Vec<Reply> = batch.drain(..).map(|a| a.reply).collect();
        shared.planning.store(false, Ordering::SeqCst);
        // A batch that failed to plan is answered now and handed over
        // empty, so a committer waiting for it persists its checkpoint.
        let planned = match planned {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "ledger batch failed; nothing in it was recorded");
                fail(None, std::mem::take(&mut replies), &e);
                empty(size)
            }
            Err(_) => {
                tracing::error!("sequencer batch panicked; appends in it were not recorded");
                fail(
                    None,
                    std::mem::take(&mut replies),
                    &StoreError::Invariant("sequencer batch panicked".into()),
                );
                empty(size)
            }
        };
        let layer = Arc::new(planned.layer);
        let next = Planned {
            replies,
            outcomes: planned.outcomes,
            base_size: size,
            size: planned.size,
            root: planned.root,
            layer: layer.clone(),
        };
        size = planned.size;
        // Once the committer has taken this batch, every batch before it is
        // on disk; this one is read from memory until the next is handed
        // over.
        previous = Some(layer);
        if planned_tx.send(next).is_err() {
            break;
        }
    }
}

fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, Option<u64>> {
    shared
        .reset
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

// The committer's whole state, passed once at spawn. Over a hundred lines
// because its states (idle, a checkpoint waiting to be persisted, a batch
// that failed, one written but unconfirmed) are one loop, so that every
// waiter is answered on exactly one path.
#[allow(clippy::too_many_arguments)]
fn commit_loop(
    db: &sled::Db,
    trees: &[sled::Tree],
    signer: &Signer,
    mut size: u64,
    latest: &RwLock<SignedCheckpoint>,
    planned_rx: &std::sync::mpsc::Receiver<Planned>,
    shared: &Shared,
    gate: &CommitGate,
    head_dir: Option<&std::path::Path>,
) {
    use std::sync::mpsc::TryRecvError;
    let mut unpersisted: Option<Unpersisted> = None;
    loop {
        let next = if unpersisted.is_some() {
            match planned_rx.try_recv() {
                Ok(p) => Some(p),
                // A batch is being planned: its commit will persist the
                // checkpoint. (If planning fails, `recv` still returns once
                // the planner offers its next batch or ends.)
                Err(TryRecvError::Empty) if shared.planning.load(Ordering::SeqCst) => {
                    planned_rx.recv().ok()
                }
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => None,
            }
        } else {
            match planned_rx.recv() {
                Ok(p) => Some(p),
                Err(_) => break,
            }
        };
        let mut next = match next {
            Some(p) if p.base_size != size => {
                // Planned on a batch that failed; nothing of it is stored.
                fail(
                    None,
                    p.replies,
                    &StoreError::Io("an earlier batch failed; retry".into()),
                );
                continue;
            }
            other => other,
        };
        let previous_checkpoint = unpersisted.as_ref().map(|u| u.checkpoint.clone());
        let mut written = false;
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            super::engine::engine(|| {
                commit(
                    db,
                    trees,
                    signer,
                    next.as_ref(),
                    previous_checkpoint.as_ref(),
                    &mut written,
                    gate,
                    &shared.flush_seconds,
                )
            })
        }))
        .unwrap_or_else(|_| Err(StoreError::Invariant("sequencer commit panicked".into())));
        match result {
            Ok(checkpoint) => {
                // The previous checkpoint is on disk now: publish it (to
                // readers and in the ledger head) and answer the waiters it
                // covers.
                if let Some(done) = unpersisted.take() {
                    if let Some(dir) = head_dir {
                        if let Err(e) = crate::store::head::write(dir, &done.checkpoint.note) {
                            tracing::warn!(error = %e, "cannot write the ledger head");
                        }
                    }
                    publish(latest, done.checkpoint);
                    for (reply, outcome) in done.waiters {
                        let _ = reply.send(outcome);
                    }
                }
                let Some(batch) = next.take() else { continue };
                size = batch.size;
                // Anything that reports recorded data, including a replay
                // whose original is in this very batch, waits for the
                // checkpoint that covers it. Refusals changed nothing and
                // are answered now, as is everything when this batch signed
                // nothing new.
                let mut waiting = Vec::new();
                for (reply, outcome) in batch.replies.into_iter().zip(batch.outcomes) {
                    if checkpoint.is_some() && outcome.is_ok() {
                        waiting.push((reply, outcome));
                    } else {
                        let _ = reply.send(outcome);
                    }
                }
                if let Some(checkpoint) = checkpoint {
                    unpersisted = Some(Unpersisted {
                        checkpoint,
                        waiters: waiting,
                    });
                }
            }
            Err(e) if written => {
                // The transaction went in, so the batch's state and its
                // entries are in the store together (the next flush makes
                // them durable, the next checkpoint covers them), but they
                // were not confirmed: the callers are told to retry, and
                // the batches after it follow on from it.
                tracing::error!(error = %e, "ledger batch written but not confirmed durable");
                if let Some(batch) = &next {
                    size = batch.size;
                }
                fail(
                    unpersisted.take(),
                    next.map(|b| b.replies).unwrap_or_default(),
                    &e,
                );
            }
            Err(e) => {
                tracing::error!(error = %e, "ledger batch failed; nothing in it was recorded");
                *lock(shared) = Some(size);
                fail(
                    unpersisted.take(),
                    next.map(|b| b.replies).unwrap_or_default(),
                    &e,
                );
            }
        }
    }
}

fn publish(latest: &RwLock<SignedCheckpoint>, checkpoint: SignedCheckpoint) {
    match latest.write() {
        Ok(mut l) => *l = checkpoint,
        Err(p) => *p.into_inner() = checkpoint,
    }
}

/// Answers everyone affected by a failed step with an error. Waiters of an
/// unpersisted checkpoint get one too: their data is durable, but nothing
/// signed and persisted covers it yet, and an idempotent retry is safe.
/// Unless the store is damaged: then everyone is told so, never to retry.
fn fail(unpersisted: Option<Unpersisted>, replies: Vec<Reply>, why: &StoreError) {
    let waiters = unpersisted.map(|u| u.waiters).unwrap_or_default();
    for reply in waiters.into_iter().map(|(r, _)| r).chain(replies) {
        let _ = reply.send(Err(why.for_another_caller()));
    }
}

/// One group commit: writes the planned batch (if any) and persists
/// `previous_checkpoint` (signed over a tree already durable) in one
/// transaction, flushes, then signs the new tree, if it grew.
// The committer's state for one commit, passed from its loop.
#[allow(clippy::too_many_arguments)]
fn commit(
    db: &sled::Db,
    trees: &[sled::Tree],
    signer: &Signer,
    batch: Option<&Planned>,
    previous_checkpoint: Option<&SignedCheckpoint>,
    written: &mut bool,
    gate: &CommitGate,
    flush_seconds: &Histogram,
) -> Result<Option<SignedCheckpoint>, StoreError> {
    let writes = batch.map_or(&[][..], |b| b.layer.writes.as_slice());
    if writes.is_empty() && previous_checkpoint.is_none() {
        // Every append was refused and nothing waits to be persisted.
        return Ok(None);
    }
    // Only the transaction is gated: a snapshot taken before the flush
    // below holds the batch, which is on disk once the flush returns.
    let held = gate.hold();
    trees
        .transaction(|txs| -> TxResult<()> {
            for (tree, key, value) in writes {
                match value {
                    Some(v) => txs[*tree].insert(key.as_slice(), v.as_slice())?,
                    None => txs[*tree].remove(key.as_slice())?,
                };
            }
            if let Some(c) = previous_checkpoint {
                txs[t::META].insert(META_CHECKPOINT, c.note.as_bytes())?;
                txs[t::META].insert(META_CHECKPOINT_AT, &c.signed_at.to_be_bytes())?;
            }
            Ok(())
        })
        .map_err(|e| match e {
            sled::transaction::TransactionError::Abort(e) => e,
            sled::transaction::TransactionError::Storage(e) => StoreError::from(e),
        })?;
    drop(held);
    *written = true;
    let flush_started = std::time::Instant::now();
    db.flush().map_err(StoreError::from)?;
    flush_seconds.observe(flush_started.elapsed());
    let Some((size, root)) = batch.and_then(|b| b.root.map(|r| (b.size, r))) else {
        return Ok(None);
    };
    // Only now, with the tree durable, is it signed.
    SignedCheckpoint::sign(signer, size, root).map(Some)
}

/// Waits, for up to 10 s, until nothing holds the lock on the store in
/// `dir`: sled's own threads let go of the file a moment after its last
/// handle is dropped, and a closed store must mean a directory that opens
/// again at once.
pub(crate) fn wait_for_release(dir: &std::path::Path) {
    use fs2::FileExt as _;
    let Ok(file) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(dir.join("db"))
    else {
        return;
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while file.try_lock_exclusive().is_err() {
        if std::time::Instant::now() >= deadline {
            tracing::warn!(dir = %dir.display(), "the store's file is still locked 10 s after closing");
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let _ = fs2::FileExt::unlock(&file);
}
