//! The sequencer: the only writer. Every state change travels here with the
//! ledger entry that records it, and the two are committed together, so no
//! state change exists without its entry.
//!
//! One task runs batches back to back (group commit):
//!
//! 1. take every append that is waiting (while a batch is on disk the next
//!    one gathers, so batches grow with load);
//! 2. in one sled transaction, check each append's preconditions, apply the
//!    accepted ones, write their entries and the tree's new stored hashes
//!    and size;
//! 3. flush;
//! 4. sign a checkpoint of the new, durable tree and persist it (flush);
//! 5. answer every waiter with its ledger index.
//!
//! It never signs a tree that is not durable, and never signs two roots for
//! one size: the only checkpoint for a size is made from the stored hashes
//! after they are on disk.

use std::sync::{Arc, RwLock};

use sled::transaction::{ConflictableTransactionError, TransactionalTree};
use sled::Transactional as _;
use tokio::sync::{mpsc, oneshot};

use super::codec::{decode, encode, encode_raw};
use super::{AdmitRecorded, DecisionRecord, StoreError};
use crate::domain::customer::Customer;
use crate::domain::deployment::Deployment;
use crate::ledger::checkpoint::Checkpoint;
use crate::ledger::entry::Entry;
use crate::ledger::note::Signer;
use crate::ledger::tree::{self, Hash, HashReader};

/// Indices into the tree slice every transaction spans.
pub(crate) mod t {
    pub const CUSTOMERS: usize = 0;
    pub const DEPLOYMENTS: usize = 1;
    pub const DECISIONS: usize = 2;
    pub const ADMIT_REQUESTS: usize = 3;
    pub const CHAINS: usize = 4;
    pub const ENTRIES: usize = 5;
    pub const HASHES: usize = 6;
    pub const META: usize = 7;
    pub const NAMES: [&str; 8] = [
        "customers",
        "deployments",
        "decisions",
        "admit_requests",
        "chains",
        "ledger_entries",
        "ledger_hashes",
        "ledger_meta",
    ];
}

pub(crate) const META_SIZE: &[u8] = b"size";
pub(crate) const META_CHECKPOINT: &[u8] = b"checkpoint";

/// A state change the sequencer applies if its preconditions hold.
// Moved once into the queue and consumed there; boxing would only add an
// allocation per call.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Mutation {
    /// A new customer version, exactly one past the newest stored.
    PutCustomer(Customer),
    /// An admission decision, and on allow its deployment and chain. A
    /// request id already used by the same principal replays the first
    /// decision and appends nothing.
    RecordAdmission {
        decision: DecisionRecord,
        deployment: Option<Deployment>,
        chain_pem: Option<String>,
    },
    /// Replace `before` with `after` if the stored deployment still equals
    /// `before`, and record the decision.
    UpdateDeployment {
        before: Deployment,
        after: Deployment,
        decision: DecisionRecord,
    },
}

/// What an append did.
#[derive(Debug)]
pub(crate) struct Applied {
    pub admission: Option<AdmitRecorded>,
    /// The entry's index; `None` when nothing was appended (a replay).
    pub ledger_index: Option<u64>,
}

struct Append {
    mutation: Mutation,
    entry: Entry,
    reply: oneshot::Sender<Result<Applied, StoreError>>,
}

/// The latest signed checkpoint, shared with readers.
#[derive(Debug, Clone)]
pub struct SignedCheckpoint {
    pub checkpoint: Checkpoint,
    pub note: String,
}

#[derive(Clone)]
pub(crate) struct Sequencer {
    tx: mpsc::Sender<Append>,
}

/// How many appends may wait before callers are made to wait for room.
const QUEUE: usize = 16_384;
/// The most appends one transaction takes.
const MAX_BATCH: usize = 4_096;

pub(crate) fn customer_key(id: &str, version: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(id.len() + 9);
    k.extend_from_slice(id.as_bytes());
    k.push(0);
    k.extend_from_slice(&version.to_be_bytes());
    k
}

fn admit_key(principal: &str, request_id: &str) -> Vec<u8> {
    format!("{principal}\0{request_id}").into_bytes()
}

/// Stored hashes already on disk, read outside the transaction: they are
/// write-once and only the sequencer writes them.
pub(crate) struct StoredHashes<'a>(pub &'a sled::Tree);

impl HashReader for StoredHashes<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tree::TreeError> {
        indexes
            .iter()
            .map(|i| match self.0.get(i.to_be_bytes()) {
                Ok(Some(v)) if v.len() == 32 => {
                    let mut h = [0u8; 32];
                    h.copy_from_slice(&v);
                    Ok(h)
                }
                Ok(Some(_)) => Err(tree::TreeError::Storage(format!(
                    "stored hash {i} is not 32 bytes"
                ))),
                Ok(None) => Err(tree::TreeError::Storage(format!(
                    "stored hash {i} is missing"
                ))),
                Err(e) => Err(tree::TreeError::Storage(e.to_string())),
            })
            .collect()
    }
}

/// Stored hashes read inside the batch transaction. sled deadlocks if a
/// transaction reads a tree it spans through the plain tree handle, so
/// inside the transaction every read goes through the transactional view.
struct TxHashes<'a>(&'a TransactionalTree);

impl HashReader for TxHashes<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tree::TreeError> {
        indexes
            .iter()
            .map(|i| match self.0.get(i.to_be_bytes()) {
                Ok(Some(v)) => v.as_ref().try_into().map_err(|_| {
                    tree::TreeError::Storage(format!("stored hash {i} is not 32 bytes"))
                }),
                Ok(None) => Err(tree::TreeError::MissingHash(*i)),
                Err(e) => Err(tree::TreeError::Storage(format!("{e:?}"))),
            })
            .collect()
    }
}

type TxResult<T> = Result<T, ConflictableTransactionError<StoreError>>;

fn abort(e: StoreError) -> ConflictableTransactionError<StoreError> {
    ConflictableTransactionError::Abort(e)
}

fn tx_get<T: serde::de::DeserializeOwned>(
    tree: &TransactionalTree,
    key: &[u8],
) -> TxResult<Option<T>> {
    match tree.get(key)? {
        Some(raw) => decode(key, &raw).map(Some).map_err(abort),
        None => Ok(None),
    }
}

/// Checks an append's preconditions and, if they hold, writes its state
/// change. Returns the per-append outcome; storage failures abort the
/// whole transaction.
fn apply(
    txs: &[TransactionalTree],
    m: &Mutation,
    index: u64,
) -> TxResult<Result<Option<AdmitRecorded>, StoreError>> {
    match m {
        Mutation::PutCustomer(c) => {
            let key = customer_key(&c.customer_id, c.version);
            let tree = &txs[t::CUSTOMERS];
            if tree.get(&key)?.is_some() {
                return Ok(Err(if c.version == 1 {
                    StoreError::AlreadyExists(format!("customer {}", c.customer_id))
                } else {
                    StoreError::Conflict(format!("customer {}", c.customer_id))
                }));
            }
            if c.version > 1
                && tree
                    .get(customer_key(&c.customer_id, c.version - 1))?
                    .is_none()
            {
                return Ok(Err(StoreError::Conflict(format!(
                    "customer {}",
                    c.customer_id
                ))));
            }
            tree.insert(key, encode(c).map_err(abort)?)?;
            Ok(Ok(None))
        }
        Mutation::RecordAdmission {
            decision,
            deployment,
            chain_pem,
        } => {
            let idem = admit_key(&decision.principal, &decision.request_id);
            if let Some(existing) = txs[t::ADMIT_REQUESTS].get(&idem)? {
                let first: DecisionRecord =
                    tx_get(&txs[t::DECISIONS], &existing)?.ok_or_else(|| {
                        abort(StoreError::Corrupt {
                            key: String::from_utf8_lossy(&existing).into_owned(),
                            detail: "request id points at a missing decision".into(),
                        })
                    })?;
                return Ok(Ok(Some(AdmitRecorded::Replay(Box::new(first)))));
            }
            let mut decision = decision.clone();
            decision.ledger_index = Some(index);
            txs[t::ADMIT_REQUESTS].insert(idem, decision.decision_id.as_bytes())?;
            txs[t::DECISIONS].insert(
                decision.decision_id.as_bytes(),
                encode(&decision).map_err(abort)?,
            )?;
            if let Some(d) = deployment {
                txs[t::DEPLOYMENTS]
                    .insert(d.deployment_id.as_bytes(), encode(d).map_err(abort)?)?;
                if let Some(pem) = chain_pem {
                    let k = d.chain_sha256.as_bytes();
                    if txs[t::CHAINS].get(k)?.is_none() {
                        txs[t::CHAINS].insert(k, encode(pem).map_err(abort)?)?;
                    }
                }
            }
            Ok(Ok(Some(AdmitRecorded::New(index))))
        }
        Mutation::UpdateDeployment {
            before,
            after,
            decision,
        } => {
            let key = after.deployment_id.as_bytes();
            let current: Option<Deployment> = tx_get(&txs[t::DEPLOYMENTS], key)?;
            if current.as_ref() != Some(before) {
                return Ok(Err(StoreError::Conflict(format!(
                    "deployment {}",
                    after.deployment_id
                ))));
            }
            let mut decision = decision.clone();
            decision.ledger_index = Some(index);
            txs[t::DEPLOYMENTS].insert(key, encode(after).map_err(abort)?)?;
            txs[t::DECISIONS].insert(
                decision.decision_id.as_bytes(),
                encode(&decision).map_err(abort)?,
            )?;
            Ok(Ok(None))
        }
    }
}

/// The sequencer's own view of the log.
struct LogState {
    size: u64,
}

impl Sequencer {
    /// Starts the sequencer task over `trees` (in [`t::NAMES`] order).
    pub(crate) fn spawn(
        db: sled::Db,
        trees: Arc<[sled::Tree]>,
        signer: Arc<Signer>,
        size: u64,
        latest: Arc<RwLock<SignedCheckpoint>>,
    ) -> Self {
        let (tx, mut rx) = mpsc::channel::<Append>(QUEUE);
        tokio::spawn(async move {
            let mut state = LogState { size };
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(a) => batch.push(a),
                        Err(_) => break,
                    }
                }
                let db = db.clone();
                let trees = trees.clone();
                let signer = signer.clone();
                let latest = latest.clone();
                let size = state.size;
                let joined = tokio::task::spawn_blocking(move || {
                    let mutations: Vec<(&Mutation, &Entry)> =
                        batch.iter().map(|a| (&a.mutation, &a.entry)).collect();
                    let result = commit_batch(&db, &trees, &signer, &latest, size, &mutations);
                    (batch, result)
                })
                .await;
                let Ok((batch, result)) = joined else {
                    tracing::error!("sequencer batch panicked; appends in it were not recorded");
                    continue;
                };
                match result {
                    Ok((new_size, outcomes)) => {
                        state.size = new_size;
                        for (a, outcome) in batch.into_iter().zip(outcomes) {
                            let _ = a.reply.send(outcome);
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "ledger batch failed; nothing in it was recorded");
                        for a in batch {
                            let _ = a.reply.send(Err(StoreError::Io(e.to_string())));
                        }
                    }
                }
            }
        });
        Self { tx }
    }

    /// Applies `mutation` and appends `entry` atomically; returns once both
    /// are durable and covered by a signed checkpoint.
    pub(crate) async fn submit(
        &self,
        mutation: Mutation,
        entry: Entry,
    ) -> Result<Applied, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Append {
                mutation,
                entry,
                reply,
            })
            .await
            .map_err(|_| StoreError::Io("sequencer stopped".into()))?;
        rx.await
            .map_err(|_| StoreError::Io("sequencer stopped".into()))?
    }
}

type Outcomes = Vec<Result<Applied, StoreError>>;

/// One group commit. Returns the new size and each append's outcome.
fn commit_batch(
    db: &sled::Db,
    trees: &[sled::Tree],
    signer: &Signer,
    latest: &RwLock<SignedCheckpoint>,
    size: u64,
    batch: &[(&Mutation, &Entry)],
) -> Result<(u64, Outcomes), StoreError> {
    let first_hash_index = tree::stored_hash_count(size);
    let (new_size, outcomes, root) = trees
        .transaction(|txs| {
            let stored = TxHashes(&txs[t::HASHES]);
            let mut pending: Vec<Hash> = Vec::new();
            let mut n = size;
            let mut outcomes: Outcomes = Vec::with_capacity(batch.len());
            for (mutation, entry) in batch {
                match apply(txs, mutation, n)? {
                    Ok(Some(AdmitRecorded::Replay(first))) => {
                        outcomes.push(Ok(Applied {
                            admission: Some(AdmitRecorded::Replay(first)),
                            ledger_index: None,
                        }));
                    }
                    Ok(admission) => {
                        let bytes = entry.to_bytes();
                        let overlay = tree::Overlay::new(&stored, first_hash_index, &pending);
                        let hashes = tree::stored_hashes_for_record_hash(
                            n,
                            tree::leaf_hash(&bytes),
                            &overlay,
                        )
                        .map_err(|e| abort(StoreError::Io(e.to_string())))?;
                        pending.extend(hashes);
                        txs[t::ENTRIES].insert(&n.to_be_bytes(), encode_raw(&bytes))?;
                        outcomes.push(Ok(Applied {
                            admission,
                            ledger_index: Some(n),
                        }));
                        n += 1;
                    }
                    Err(e) => outcomes.push(Err(e)),
                }
            }
            for (i, h) in pending.iter().enumerate() {
                txs[t::HASHES].insert(&(first_hash_index + i as u64).to_be_bytes(), &h[..])?;
            }
            let root = if n > size {
                txs[t::META].insert(META_SIZE, &n.to_be_bytes())?;
                let overlay = tree::Overlay::new(&stored, first_hash_index, &pending);
                Some(
                    tree::tree_hash(n, &overlay)
                        .map_err(|e| abort(StoreError::Io(e.to_string())))?,
                )
            } else {
                None
            };
            Ok((n, outcomes, root))
        })
        .map_err(|e| match e {
            sled::transaction::TransactionError::Abort(e) => e,
            sled::transaction::TransactionError::Storage(e) => StoreError::Io(e.to_string()),
        })?;

    let Some(root) = root else {
        // Every append was refused: nothing changed, nothing to flush.
        return Ok((size, outcomes));
    };
    db.flush().map_err(|e| StoreError::Io(e.to_string()))?;
    let checkpoint = Checkpoint {
        origin: signer.name().to_string(),
        size: new_size,
        root,
    };
    let note = checkpoint
        .sign(signer)
        .map_err(|e| StoreError::Io(format!("signing checkpoint: {e}")))?;
    trees[t::META]
        .insert(META_CHECKPOINT, note.as_bytes())
        .map_err(|e| StoreError::Io(e.to_string()))?;
    db.flush().map_err(|e| StoreError::Io(e.to_string()))?;
    match latest.write() {
        Ok(mut l) => *l = SignedCheckpoint { checkpoint, note },
        Err(p) => *p.into_inner() = SignedCheckpoint { checkpoint, note },
    }
    Ok((new_size, outcomes))
}
