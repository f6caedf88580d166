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

use sled::transaction::ConflictableTransactionError;
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

struct Append {
    mutation: Mutation,
    entry: Entry,
    reply: oneshot::Sender<Result<AdmitRecorded, StoreError>>,
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
    /// Cancelled when the task has ended: every waiter answered, the last
    /// checkpoint persisted, and its handles on the database dropped.
    stopped: tokio_util::sync::CancellationToken,
}

/// How many appends may wait before callers are made to wait for room.
const QUEUE: usize = 16_384;
/// The most appends one transaction takes.
const MAX_BATCH: usize = 4_096;

/// Customer versions are keyed `id 0x00 version(u64 big endian)`, so the
/// versions of one customer are adjacent and ordered under this prefix.
pub(crate) fn customer_prefix(id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(id.len() + 9);
    k.extend_from_slice(id.as_bytes());
    k.push(0);
    k
}

fn customer_key(id: &str, version: u64) -> Vec<u8> {
    let mut k = customer_prefix(id);
    k.extend_from_slice(&version.to_be_bytes());
    k
}

fn admit_key(principal: &str, request_id: &str) -> Vec<u8> {
    format!("{principal}\0{request_id}").into_bytes()
}

/// Stored hashes on disk. Each batch writes the hashes it adds as one
/// value, keyed by the stored index of its first hash (big endian), so a
/// batch costs one key however many records it holds; a hash is found by
/// the last key at or below its index.
pub(crate) struct StoredHashes<'a>(pub &'a sled::Tree);

impl StoredHashes<'_> {
    fn one(&self, i: u64) -> Result<Hash, tree::TreeError> {
        let storage = |e: sled::Error| tree::TreeError::Storage(e.to_string());
        let (k, v) = self
            .0
            .range(..=i.to_be_bytes())
            .next_back()
            .transpose()
            .map_err(storage)?
            .ok_or(tree::TreeError::MissingHash(i))?;
        let start = k
            .as_ref()
            .try_into()
            .map(u64::from_be_bytes)
            .map_err(|_| tree::TreeError::Storage("malformed stored-hash key".into()))?;
        let offset = usize::try_from(i - start)
            .ok()
            .and_then(|o| o.checked_mul(32))
            .ok_or(tree::TreeError::MissingHash(i))?;
        v.get(offset..offset + 32)
            .and_then(|h| h.try_into().ok())
            .ok_or(tree::TreeError::MissingHash(i))
    }
}

impl HashReader for StoredHashes<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tree::TreeError> {
        indexes.iter().map(|&i| self.one(i)).collect()
    }
}

type TxResult<T> = Result<T, ConflictableTransactionError<StoreError>>;

/// A batch's view of the state while it is planned: what the batch itself
/// wrote so far, over what is stored. Only the sequencer writes, so plain
/// reads are consistent; the transaction that follows only writes, which
/// keeps it short (sled's commit cost grows with every key it touches).
struct Plan<'a> {
    trees: &'a [sled::Tree],
    writes: Vec<(usize, Vec<u8>, Vec<u8>)>,
    written: std::collections::HashMap<(usize, Vec<u8>), usize>,
}

impl<'a> Plan<'a> {
    fn new(trees: &'a [sled::Tree]) -> Self {
        Self {
            trees,
            writes: Vec::new(),
            written: std::collections::HashMap::new(),
        }
    }

    fn get(&self, tree: usize, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(&i) = self.written.get(&(tree, key.to_vec())) {
            return Ok(Some(self.writes[i].2.clone()));
        }
        self.trees[tree]
            .get(key)
            .map(|v| v.map(|v| v.to_vec()))
            .map_err(|e| StoreError::Io(e.to_string()))
    }

    fn get_decoded<T: serde::de::DeserializeOwned>(
        &self,
        tree: usize,
        key: &[u8],
    ) -> Result<Option<T>, StoreError> {
        self.get(tree, key)?
            .map(|raw| decode(key, &raw))
            .transpose()
    }

    fn put(&mut self, tree: usize, key: Vec<u8>, value: Vec<u8>) {
        match self.written.get(&(tree, key.clone())) {
            Some(&i) => self.writes[i].2 = value,
            None => {
                self.written.insert((tree, key.clone()), self.writes.len());
                self.writes.push((tree, key, value));
            }
        }
    }
}

/// Checks an append's preconditions and, if they hold, plans its state
/// change, to be recorded at ledger `index`. `Ok(Ok(Some(first)))` is a
/// replay of an earlier admission (nothing planned); `Ok(Err(_))` refuses
/// this append alone; `Err(_)` (storage or corruption) fails the batch.
fn apply(
    plan: &mut Plan<'_>,
    m: &Mutation,
    index: u64,
) -> Result<Result<Option<Box<DecisionRecord>>, StoreError>, StoreError> {
    match m {
        Mutation::PutCustomer(c) => {
            let key = customer_key(&c.customer_id, c.version);
            if plan.get(t::CUSTOMERS, &key)?.is_some() {
                return Ok(Err(if c.version == 1 {
                    StoreError::AlreadyExists(format!("customer {}", c.customer_id))
                } else {
                    StoreError::Conflict(format!("customer {}", c.customer_id))
                }));
            }
            if c.version > 1
                && plan
                    .get(t::CUSTOMERS, &customer_key(&c.customer_id, c.version - 1))?
                    .is_none()
            {
                return Ok(Err(StoreError::Conflict(format!(
                    "customer {}",
                    c.customer_id
                ))));
            }
            plan.put(t::CUSTOMERS, key, encode(c)?);
            Ok(Ok(None))
        }
        Mutation::RecordAdmission {
            decision,
            deployment,
            chain_pem,
        } => {
            let idem = admit_key(&decision.principal, &decision.request_id);
            if let Some(existing) = plan.get(t::ADMIT_REQUESTS, &idem)? {
                let first: DecisionRecord =
                    plan.get_decoded(t::DECISIONS, &existing)?.ok_or_else(|| {
                        StoreError::Corrupt {
                            key: String::from_utf8_lossy(&existing).into_owned(),
                            detail: "request id points at a missing decision".into(),
                        }
                    })?;
                return Ok(Ok(Some(Box::new(first))));
            }
            let mut decision = decision.clone();
            decision.ledger_index = Some(index);
            plan.put(
                t::ADMIT_REQUESTS,
                idem,
                decision.decision_id.as_bytes().to_vec(),
            );
            plan.put(
                t::DECISIONS,
                decision.decision_id.as_bytes().to_vec(),
                encode(&decision)?,
            );
            if let Some(d) = deployment {
                plan.put(
                    t::DEPLOYMENTS,
                    d.deployment_id.as_bytes().to_vec(),
                    encode(d)?,
                );
                if let Some(pem) = chain_pem {
                    let k = d.chain_sha256.as_bytes().to_vec();
                    if plan.get(t::CHAINS, &k)?.is_none() {
                        plan.put(t::CHAINS, k, encode(pem)?);
                    }
                }
            }
            Ok(Ok(None))
        }
        Mutation::UpdateDeployment {
            before,
            after,
            decision,
        } => {
            let key = after.deployment_id.as_bytes();
            let current: Option<Deployment> = plan.get_decoded(t::DEPLOYMENTS, key)?;
            if current.as_ref() != Some(before) {
                return Ok(Err(StoreError::Conflict(format!(
                    "deployment {}",
                    after.deployment_id
                ))));
            }
            let mut decision = decision.clone();
            decision.ledger_index = Some(index);
            plan.put(t::DEPLOYMENTS, key.to_vec(), encode(after)?);
            plan.put(
                t::DECISIONS,
                decision.decision_id.as_bytes().to_vec(),
                encode(&decision)?,
            );
            Ok(Ok(None))
        }
    }
}

type Reply = oneshot::Sender<Result<AdmitRecorded, StoreError>>;

/// Waiters whose entries are durable and covered by `checkpoint`, which is
/// signed but not yet persisted: they are answered once it is.
struct Unpersisted {
    checkpoint: SignedCheckpoint,
    waiters: Vec<(Reply, Result<AdmitRecorded, StoreError>)>,
}

impl Sequencer {
    /// Starts the sequencer task over `trees` (in [`t::NAMES`] order).
    ///
    /// The loop is pipelined so that a busy log needs one flush per batch:
    /// the checkpoint signed after batch k's flush is persisted in batch
    /// k+1's transaction and flush, and batch k's waiters are answered then.
    /// When nothing else is waiting, the checkpoint is persisted on its own
    /// right away, so a lone caller waits for two flushes, as before.
    pub(crate) fn spawn(
        db: sled::Db,
        trees: Arc<[sled::Tree]>,
        signer: Arc<Signer>,
        size: u64,
        latest: Arc<RwLock<SignedCheckpoint>>,
    ) -> Self {
        let (tx, mut rx) = mpsc::channel::<Append>(QUEUE);
        let stopped = tokio_util::sync::CancellationToken::new();
        let done = stopped.clone();
        tokio::spawn(async move {
            // Declared first so it is dropped last, after the database
            // handles below: signals the store is closed.
            let _done = done.drop_guard();
            let (db, trees, signer, latest) = (db, trees, signer, latest);
            let mut size = size;
            let mut unpersisted: Option<Unpersisted> = None;
            loop {
                let mut batch = Vec::new();
                if unpersisted.is_none() {
                    match rx.recv().await {
                        Some(a) => batch.push(a),
                        None => break,
                    }
                }
                while batch.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(a) => batch.push(a),
                        Err(_) => break,
                    }
                }
                let previous_note = unpersisted.as_ref().map(|u| u.checkpoint.note.clone());
                let db = db.clone();
                let trees = trees.clone();
                let signer = signer.clone();
                let joined = tokio::task::spawn_blocking(move || {
                    let mutations: Vec<(&Mutation, &Entry)> =
                        batch.iter().map(|a| (&a.mutation, &a.entry)).collect();
                    let result = commit_batch(
                        &db,
                        &trees,
                        &signer,
                        size,
                        &mutations,
                        previous_note.as_deref(),
                    );
                    (batch, result)
                })
                .await;
                let Ok((batch, result)) = joined else {
                    tracing::error!("sequencer batch panicked; appends in it were not recorded");
                    fail(unpersisted.take(), Vec::new(), "sequencer batch panicked");
                    continue;
                };
                match result {
                    Ok(step) => {
                        // The previous checkpoint is on disk now: publish it
                        // and answer the waiters it covers.
                        if let Some(done) = unpersisted.take() {
                            publish(&latest, done.checkpoint);
                            for (reply, outcome) in done.waiters {
                                let _ = reply.send(outcome);
                            }
                        }
                        size = step.size;
                        // Anything that reports recorded data, including a
                        // replay whose original is in this very batch, waits
                        // for the checkpoint that covers it. Refusals changed
                        // nothing and are answered now, as is everything
                        // when this step signed nothing new.
                        let mut waiting = Vec::new();
                        for (a, outcome) in batch.into_iter().zip(step.outcomes) {
                            if step.checkpoint.is_some() && outcome.is_ok() {
                                waiting.push((a.reply, outcome));
                            } else {
                                let _ = a.reply.send(outcome);
                            }
                        }
                        if let Some(checkpoint) = step.checkpoint {
                            unpersisted = Some(Unpersisted {
                                checkpoint,
                                waiters: waiting,
                            });
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "ledger batch failed; nothing in it was recorded");
                        fail(
                            unpersisted.take(),
                            batch.into_iter().map(|a| a.reply).collect(),
                            &e.to_string(),
                        );
                    }
                }
            }
        });
        Self { tx, stopped }
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

type Outcomes = Vec<Result<AdmitRecorded, StoreError>>;

fn publish(latest: &RwLock<SignedCheckpoint>, checkpoint: SignedCheckpoint) {
    match latest.write() {
        Ok(mut l) => *l = checkpoint,
        Err(p) => *p.into_inner() = checkpoint,
    }
}

/// Answers everyone affected by a failed step with an error. Waiters of an
/// unpersisted checkpoint get one too: their data is durable, but nothing
/// signed and persisted covers it yet, and an idempotent retry is safe.
fn fail(unpersisted: Option<Unpersisted>, replies: Vec<Reply>, why: &str) {
    let waiters = unpersisted.map(|u| u.waiters).unwrap_or_default();
    for reply in waiters.into_iter().map(|(r, _)| r).chain(replies) {
        let _ = reply.send(Err(StoreError::Io(why.to_string())));
    }
}

/// What one step did.
struct Step {
    size: u64,
    outcomes: Outcomes,
    /// The checkpoint of the new tree, signed after the flush made it
    /// durable; persisted by the next step.
    checkpoint: Option<SignedCheckpoint>,
}

/// One group commit: applies the batch with its entries and stored hashes
/// and persists `previous_checkpoint` (signed over a tree already durable)
/// in the same transaction, flushes, then signs the new tree.
fn commit_batch(
    db: &sled::Db,
    trees: &[sled::Tree],
    signer: &Signer,
    size: u64,
    batch: &[(&Mutation, &Entry)],
    previous_checkpoint: Option<&str>,
) -> Result<Step, StoreError> {
    let io = |e: tree::TreeError| StoreError::Io(e.to_string());
    let first_hash_index = tree::stored_hash_count(size);
    let stored = StoredHashes(&trees[t::HASHES]);
    let mut plan = Plan::new(trees);
    let mut pending: Vec<Hash> = Vec::new();
    let mut n = size;
    let mut outcomes: Outcomes = Vec::with_capacity(batch.len());
    for (mutation, entry) in batch {
        match apply(&mut plan, mutation, n)? {
            Ok(Some(first)) => outcomes.push(Ok(AdmitRecorded::Replay(first))),
            Ok(None) => {
                let bytes = entry.to_bytes();
                let overlay = tree::Overlay::new(&stored, first_hash_index, &pending);
                let hashes =
                    tree::stored_hashes_for_record_hash(n, tree::leaf_hash(&bytes), &overlay)
                        .map_err(io)?;
                pending.extend(hashes);
                plan.put(t::ENTRIES, n.to_be_bytes().to_vec(), encode_raw(&bytes));
                outcomes.push(Ok(AdmitRecorded::New(n)));
                n += 1;
            }
            Err(e) => outcomes.push(Err(e)),
        }
    }
    if let Some(note) = previous_checkpoint {
        plan.put(t::META, META_CHECKPOINT.to_vec(), note.as_bytes().to_vec());
    }
    let new_size = n;
    let root = if n > size {
        plan.put(
            t::HASHES,
            first_hash_index.to_be_bytes().to_vec(),
            pending.concat(),
        );
        plan.put(t::META, META_SIZE.to_vec(), n.to_be_bytes().to_vec());
        let overlay = tree::Overlay::new(&stored, first_hash_index, &pending);
        Some(tree::tree_hash(n, &overlay).map_err(io)?)
    } else {
        None
    };
    if !plan.writes.is_empty() {
        trees
            .transaction(|txs| -> TxResult<()> {
                for (tree, key, value) in &plan.writes {
                    txs[*tree].insert(key.as_slice(), value.as_slice())?;
                }
                Ok(())
            })
            .map_err(|e| match e {
                sled::transaction::TransactionError::Abort(e) => e,
                sled::transaction::TransactionError::Storage(e) => StoreError::Io(e.to_string()),
            })?;
    }

    if root.is_none() && previous_checkpoint.is_none() {
        // Every append was refused and nothing waits to be persisted.
        return Ok(Step {
            size,
            outcomes,
            checkpoint: None,
        });
    }
    db.flush().map_err(|e| StoreError::Io(e.to_string()))?;
    let Some(root) = root else {
        return Ok(Step {
            size,
            outcomes,
            checkpoint: None,
        });
    };
    // Only now, with the tree durable, is it signed.
    let checkpoint = Checkpoint {
        origin: signer.name().to_string(),
        size: new_size,
        root,
    };
    let note = checkpoint
        .sign(signer)
        .map_err(|e| StoreError::Io(format!("signing checkpoint: {e}")))?;
    Ok(Step {
        size: new_size,
        outcomes,
        checkpoint: Some(SignedCheckpoint { checkpoint, note }),
    })
}
