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

use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};

use sled::transaction::ConflictableTransactionError;
use sled::Transactional as _;
use tokio::sync::{mpsc, oneshot};

use super::index;
use crate::domain::attribution::normalize_endpoint;
use crate::domain::deployment::{Deployment, DeploymentState};
use crate::domain::order::OrderState;
use crate::ledger::checkpoint::Checkpoint;
use crate::ledger::entry::Entry;
use crate::ledger::note::Signer;
use crate::ledger::tree::{self, Hash, HashReader};
use crate::metrics::Histogram;
use crate::store::codec::{decode, encode, encode_raw, push_entry};
use crate::store::sealed::{StoredCustomer, StoredScreening};
use crate::store::{AdmitRecorded, Conflict, DecisionRecord, StateCounts, StoreError};

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
    pub const SCREENINGS: usize = 8;
    pub const SANCTIONS: usize = 9;
    pub const ORDERS: usize = 10;
    pub const ORDER_EVENTS: usize = 11;
    pub const ACTIVE_ORDERS: usize = 12;
    pub const ORDER_META: usize = 13;
    /// Attribution indices and requests (see `store::index`).
    pub const ATTRIBUTION: usize = 14;
    pub const NAMES: [&str; 15] = [
        "customers",
        "deployments",
        "decisions",
        "admit_requests",
        "chains",
        "ledger_entries",
        "ledger_hashes",
        "ledger_meta",
        "screenings",
        "sanctions",
        "orders",
        "order_events",
        "active_orders",
        "order_meta",
        "attribution",
    ];
}

/// In [`t::ORDER_META`]: the revision of the last order event.
pub(crate) const ORDER_REVISION: &[u8] = b"revision";
/// In [`t::ORDER_META`]: the revision of the last event that changed which
/// orders are in force (activation, lift, expiry). Admissions decided
/// against an older set are refused and decided again.
pub(crate) const ORDER_SET_REVISION: &[u8] = b"set_revision";

/// The key of the loaded sanctions list in [`t::SANCTIONS`].
pub(crate) const SANCTIONS_LIST: &[u8] = b"list";
/// The key of the loaded list's SHA-256 (hex) in [`t::SANCTIONS`].
pub(crate) const SANCTIONS_SHA256: &[u8] = b"sha256";

pub(crate) const META_SIZE: &[u8] = b"size";
pub(crate) const META_CHECKPOINT: &[u8] = b"checkpoint";
/// In [`t::META`]: when the checkpoint under [`META_CHECKPOINT`] was signed
/// (Unix milliseconds, big endian), written with it.
pub(crate) const META_CHECKPOINT_AT: &[u8] = b"checkpoint_at";
/// In [`t::META`]: the [`StateCounts`], changed in the same commit as the
/// states they count.
pub(crate) const META_STATE_COUNTS: &[u8] = b"state_counts";

/// A state change the sequencer applies if its preconditions hold.
// Moved once into the queue and consumed there; boxing would only add an
// allocation per call.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Mutation {
    /// A new customer version, exactly one past the newest stored, and
    /// optionally its screening, one revision past the stored one.
    PutCustomer {
        customer: Encoded<StoredCustomer>,
        screening: Option<Encoded<StoredScreening>>,
    },
    /// Screening results, each one revision past the stored one and of the
    /// customer's newest version; all or nothing.
    PutScreenings(Vec<Encoded<StoredScreening>>),
    /// Replaces the sanctions list (encoded) and its SHA-256.
    PutSanctionsList { encoded: Vec<u8>, sha256: String },
    /// Replaces every version of a customer with its tombstone and removes
    /// its screening, if `latest_version` is still the newest.
    PurgeCustomer {
        tombstones: Vec<StoredCustomer>,
        latest_version: u64,
    },
    /// An admission decision, and on allow its deployment and chain. A
    /// request id already used by the same principal replays the first
    /// decision and appends nothing. Refused if the set of orders in force
    /// changed since `orders_seen`.
    RecordAdmission {
        decision: DecisionRecord,
        deployment: Option<Deployment>,
        chain_pem: Option<String>,
        orders_seen: u64,
    },
    /// Replace `before` with `after` if the stored deployment still equals
    /// `before` (and, for a renewal, the orders in force are still those of
    /// `orders_seen`), and record the decision.
    UpdateDeployment {
        before: Deployment,
        after: Deployment,
        decision: DecisionRecord,
        orders_seen: Option<u64>,
    },
    /// A change to an order (see [`OrderChange`]).
    Order(Box<OrderChange>),
    /// A new attribution request, keyed by its entry's index.
    PutAttributionRequest(crate::domain::attribution::AttributionRequest),
    /// What the answer to the request recorded at `request_index` disclosed.
    RecordDisclosure {
        request_index: u64,
        disclosure: crate::domain::attribution::Disclosure,
    },
}

/// A change to a kill order, applied in one commit with its events.
pub struct OrderChange {
    /// The order after the change; its `revision` is the stored one it was
    /// computed from (0 for a new order) and is replaced by the last event's.
    pub order: crate::domain::order::Order,
    pub events: Vec<crate::domain::order::EventKind>,
    /// Suspend or terminate every matched active deployment (activation).
    pub activate: bool,
    /// Return the deployments this (suspending) order suspended to ACTIVE
    /// (lift or expiry).
    pub release: bool,
    /// The deployment an acknowledgement is about.
    pub ack: Option<String>,
    pub now: crate::domain::UnixMillis,
    /// Set by the sequencer: the revision of the change's last event.
    pub revision: Arc<std::sync::atomic::AtomicU64>,
}

struct Append {
    mutation: Mutation,
    entry: Entry,
    /// The entry serialised by the caller, so the planner (the one serial
    /// stage) does not.
    entry_bytes: Vec<u8>,
    reply: oneshot::Sender<Result<AdmitRecorded, StoreError>>,
}

/// A value with its stored encoding, made by the caller for the same
/// reason.
pub(crate) struct Encoded<T> {
    pub value: T,
    pub bytes: Vec<u8>,
}

impl<T: serde::Serialize> Encoded<T> {
    pub fn new(value: T) -> Result<Self, StoreError> {
        let bytes = encode(&value)?;
        Ok(Self { value, bytes })
    }
}

/// The latest signed checkpoint, shared with readers.
#[derive(Debug, Clone)]
pub struct SignedCheckpoint {
    pub checkpoint: Checkpoint,
    pub note: String,
    /// When it was signed (Unix milliseconds); for a store written before
    /// this was recorded, when it was verified at start.
    pub signed_at: crate::domain::UnixMillis,
}

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

/// Customer versions are keyed `id 0x00 version(u64 big endian)`, so the
/// versions of one customer are adjacent and ordered under this prefix.
pub(crate) fn customer_prefix(id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(id.len() + 9);
    k.extend_from_slice(id.as_bytes());
    k.push(0);
    k
}

pub(crate) fn customer_key(id: &str, version: u64) -> Vec<u8> {
    let mut k = customer_prefix(id);
    k.extend_from_slice(&version.to_be_bytes());
    k
}

/// Where the first decision under a request id is found: request ids are
/// scoped to their caller ([`crate::domain::idempotency`]).
fn admit_key(principal: &str, request_id: &str) -> Vec<u8> {
    format!("{principal}\0{request_id}").into_bytes()
}

/// Stored hashes on disk. Each batch writes the hashes it adds as one
/// value, keyed by the stored index of its first hash (big endian), so a
/// batch costs one key however many records it holds; a hash is found by
/// the last key at or below its index.
pub(crate) struct StoredHashes<'a>(pub &'a sled::Tree);

/// A stored hash the tree needs that cannot be read is damage to the
/// ledger (callers ask only for hashes inside the signed tree); other tree
/// errors are not.
pub(crate) fn hash_error(e: tree::TreeError) -> StoreError {
    match e {
        tree::TreeError::MissingHash(i) => StoreError::Corrupt {
            key: format!("{}/{i}", t::NAMES[t::HASHES]),
            detail: "a stored hash of the ledger is missing or unreadable".into(),
        },
        tree::TreeError::Storage(e) => StoreError::Io(e),
        e => StoreError::Invariant(e.to_string()),
    }
}

impl StoredHashes<'_> {
    /// The batch value holding stored hash `i`: its first index, its bytes.
    fn batch_of(&self, i: u64) -> Result<(u64, sled::IVec), tree::TreeError> {
        let (k, v) = self
            .0
            .range(..=i.to_be_bytes())
            .next_back()
            .transpose()
            .map_err(|e| match StoreError::from(e) {
                StoreError::Corrupt { detail, .. } => {
                    tracing::error!(index = i, %detail, "stored ledger hash unreadable");
                    tree::TreeError::MissingHash(i)
                }
                e => tree::TreeError::Storage(e.to_string()),
            })?
            .ok_or(tree::TreeError::MissingHash(i))?;
        let start = <[u8; 8]>::try_from(k.as_ref())
            .map(u64::from_be_bytes)
            .map_err(|_| tree::TreeError::Storage("malformed stored-hash key".into()))?;
        Ok((start, v))
    }
}

/// Stored hash `i` inside the batch value starting at `start`, if it is there.
fn hash_in(start: u64, value: &[u8], i: u64) -> Option<Hash> {
    let offset = usize::try_from(i.checked_sub(start)?)
        .ok()?
        .checked_mul(32)?;
    value.get(offset..offset.checked_add(32)?)?.try_into().ok()
}

impl HashReader for StoredHashes<'_> {
    /// Hashes that share a batch value are read with one lookup (a proof's
    /// neighbouring nodes often sit in the same batch).
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tree::TreeError> {
        let mut out = Vec::with_capacity(indexes.len());
        let mut last: Option<(u64, sled::IVec)> = None;
        for &i in indexes {
            if let Some(h) = last.as_ref().and_then(|(start, v)| hash_in(*start, v, i)) {
                out.push(h);
                continue;
            }
            let (start, v) = self.batch_of(i)?;
            out.push(hash_in(start, &v, i).ok_or(tree::TreeError::MissingHash(i))?);
            last = Some((start, v));
        }
        Ok(out)
    }
}

type TxResult<T> = Result<T, ConflictableTransactionError<StoreError>>;

/// The writes one batch plans: state changes, entries, stored hashes and
/// size, in the order they are written. Shared (read-only) between the
/// committer, which writes them, and the planner, which reads through them
/// while it plans the next batch.
struct Layer {
    /// `None` removes the key.
    writes: Vec<(usize, Vec<u8>, Option<Vec<u8>>)>,
    /// Per tree, key to position in `writes`.
    written: [std::collections::HashMap<Vec<u8>, usize>; t::NAMES.len()],
    /// Stored index of `hashes[0]`.
    first_hash_index: u64,
    /// The stored hashes this batch adds.
    hashes: Vec<Hash>,
}

impl Layer {
    fn new(first_hash_index: u64) -> Self {
        Self {
            writes: Vec::new(),
            written: Default::default(),
            first_hash_index,
            hashes: Vec::new(),
        }
    }

    /// `Some(None)`: removed by this batch.
    fn get(&self, tree: usize, key: &[u8]) -> Option<Option<&[u8]>> {
        self.written[tree]
            .get(key)
            .map(|&i| self.writes[i].2.as_deref())
    }
}

/// A batch's view of the state while it is planned: its own writes, over
/// those of the batch before it (which may still be committing), over what
/// is stored. Only the sequencer writes, and a batch is planned only once
/// every batch but the previous one is committed, so plain reads are
/// consistent; the transaction that follows only writes, which keeps it
/// short (sled's commit cost grows with every key it touches).
struct Plan<'a> {
    trees: &'a [sled::Tree],
    previous: Option<&'a Layer>,
    layer: Layer,
    /// Set by an order change: the deployments it changed, for its entry.
    order_deployments: Option<Vec<String>>,
    /// How many deployments (by position in `DeploymentState::ALL`) and
    /// orders (in `OrderState::ALL`) this batch moved into (+) or out of
    /// (-) each state.
    deployment_moves: [i64; DeploymentState::ALL.len()],
    order_moves: [i64; OrderState::ALL.len()],
}

impl<'a> Plan<'a> {
    fn new(trees: &'a [sled::Tree], previous: Option<&'a Layer>, first_hash_index: u64) -> Self {
        Self {
            trees,
            previous,
            layer: Layer::new(first_hash_index),
            order_deployments: None,
            deployment_moves: Default::default(),
            order_moves: Default::default(),
        }
    }

    /// Writes a deployment that was in state `before` (`None`: new).
    fn put_deployment(
        &mut self,
        before: Option<&Deployment>,
        d: &Deployment,
    ) -> Result<(), StoreError> {
        self.put(
            t::DEPLOYMENTS,
            d.deployment_id.as_bytes().to_vec(),
            encode(d)?,
        );
        moved(
            &mut self.deployment_moves,
            &DeploymentState::ALL,
            before.map(|b| b.state),
            d.state,
        );
        record_end(self, before, d);
        Ok(())
    }

    /// Writes the batch's moves into the stored [`StateCounts`].
    fn put_state_counts(&mut self) -> Result<(), StoreError> {
        if self
            .deployment_moves
            .iter()
            .chain(&self.order_moves)
            .all(|&m| m == 0)
        {
            return Ok(());
        }
        let mut counts: StateCounts = self
            .get_decoded(t::META, META_STATE_COUNTS)?
            .unwrap_or_default();
        for (state, m) in DeploymentState::ALL.iter().zip(self.deployment_moves) {
            add_count(&mut counts.deployments, *state, m);
        }
        for (state, m) in OrderState::ALL.iter().zip(self.order_moves) {
            add_count(&mut counts.orders, *state, m);
        }
        self.deployment_moves = Default::default();
        self.order_moves = Default::default();
        self.put(t::META, META_STATE_COUNTS.to_vec(), encode(&counts)?);
        Ok(())
    }

    fn get(&self, tree: usize, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(v) = self.layer.get(tree, key) {
            return Ok(v.map(<[u8]>::to_vec));
        }
        if let Some(v) = self.previous.and_then(|p| p.get(tree, key)) {
            return Ok(v.map(<[u8]>::to_vec));
        }
        self.trees[tree]
            .get(key)
            .map(|v| v.map(|v| v.to_vec()))
            .map_err(|e| StoreError::from(e).in_tree(t::NAMES[tree]))
    }

    fn get_decoded<T: serde::de::DeserializeOwned>(
        &self,
        tree: usize,
        key: &[u8],
    ) -> Result<Option<T>, StoreError> {
        self.get(tree, key)?
            .map(|raw| decode(key, &raw).map_err(|e| e.in_tree(t::NAMES[tree])))
            .transpose()
    }

    fn put(&mut self, tree: usize, key: Vec<u8>, value: Vec<u8>) {
        self.write(tree, key, Some(value));
    }

    fn remove(&mut self, tree: usize, key: Vec<u8>) {
        self.write(tree, key, None);
    }

    fn write(&mut self, tree: usize, key: Vec<u8>, value: Option<Vec<u8>>) {
        let layer = &mut self.layer;
        match layer.written[tree].get(&key) {
            Some(&i) => layer.writes[i].2 = value,
            None => {
                layer.written[tree].insert(key.clone(), layer.writes.len());
                layer.writes.push((tree, key, value));
            }
        }
    }
}

/// Records that one item left state `before` (if any) for `after`.
fn moved<S: PartialEq + Copy>(moves: &mut [i64], all: &[S], before: Option<S>, after: S) {
    if before == Some(after) {
        return;
    }
    let position = |s: S| all.iter().position(|x| *x == s);
    if let Some(i) = before.and_then(position) {
        moves[i] -= 1;
    }
    if let Some(i) = position(after) {
        moves[i] += 1;
    }
}

fn add_count<S: PartialEq>(counts: &mut Vec<(S, u64)>, state: S, delta: i64) {
    if delta == 0 {
        return;
    }
    let i = match counts.iter().position(|(s, _)| *s == state) {
        Some(i) => i,
        None => {
            counts.push((state, 0));
            counts.len() - 1
        }
    };
    let n = &mut counts[i].1;
    *n = n.saturating_add_signed(delta);
}

/// A screening write must be exactly one revision past the stored one.
fn check_screening(
    plan: &Plan<'_>,
    s: &StoredScreening,
) -> Result<Result<(), StoreError>, StoreError> {
    let key = s.customer_id.as_bytes();
    let stored: Option<StoredScreening> = plan.get_decoded(t::SCREENINGS, key)?;
    let current = stored.map_or(0, |x| x.revision);
    Ok(if s.revision == current + 1 {
        Ok(())
    } else {
        Err(StoreError::Conflict(Conflict::ScreeningChanged {
            customer_id: s.customer_id.clone(),
        }))
    })
}

/// Whether `version` is the newest stored version of customer `id`.
fn is_newest(plan: &Plan<'_>, id: &str, version: u64) -> Result<bool, StoreError> {
    Ok(plan
        .get(t::CUSTOMERS, &customer_key(id, version))?
        .is_some()
        && plan
            .get(t::CUSTOMERS, &customer_key(id, version + 1))?
            .is_none())
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
        Mutation::PutCustomer {
            customer: encoded,
            screening,
        } => {
            let c = &encoded.value;
            let key = customer_key(&c.customer_id, c.version);
            if plan.get(t::CUSTOMERS, &key)?.is_some() {
                return Ok(Err(if c.version == 1 {
                    StoreError::AlreadyExists(format!("customer {}", c.customer_id))
                } else {
                    StoreError::Conflict(Conflict::CustomerChanged {
                        customer_id: c.customer_id.clone(),
                    })
                }));
            }
            if c.version > 1
                && plan
                    .get(t::CUSTOMERS, &customer_key(&c.customer_id, c.version - 1))?
                    .is_none()
            {
                return Ok(Err(StoreError::Conflict(Conflict::CustomerChanged {
                    customer_id: c.customer_id.clone(),
                })));
            }
            if let Some(s) = screening {
                if let Err(e) = check_screening(plan, &s.value)? {
                    return Ok(Err(e));
                }
                // Screened against a list that has since been replaced: the
                // caller screens again against the loaded one.
                let loaded = plan
                    .get(t::SANCTIONS, SANCTIONS_SHA256)?
                    .unwrap_or_default();
                if s.value.list_sha256.as_bytes() != loaded.as_slice() {
                    return Ok(Err(StoreError::Conflict(Conflict::ListReplaced)));
                }
                plan.put(
                    t::SCREENINGS,
                    s.value.customer_id.as_bytes().to_vec(),
                    s.bytes.clone(),
                );
            }
            plan.put(t::CUSTOMERS, key, encoded.bytes.clone());
            plan.put(
                t::ATTRIBUTION,
                index::version(&c.customer_id, c.version),
                index.to_be_bytes().to_vec(),
            );
            Ok(Ok(None))
        }
        Mutation::PutScreenings(screenings) => {
            for Encoded { value: s, .. } in screenings {
                if let Err(e) = check_screening(plan, s)? {
                    return Ok(Err(e));
                }
                if !is_newest(plan, &s.customer_id, s.customer_version)? {
                    return Ok(Err(StoreError::Conflict(Conflict::CustomerChanged {
                        customer_id: s.customer_id.clone(),
                    })));
                }
            }
            for s in screenings {
                plan.put(
                    t::SCREENINGS,
                    s.value.customer_id.as_bytes().to_vec(),
                    s.bytes.clone(),
                );
            }
            Ok(Ok(None))
        }
        Mutation::PutSanctionsList { encoded, sha256 } => {
            plan.put(t::SANCTIONS, SANCTIONS_LIST.to_vec(), encoded.clone());
            plan.put(
                t::SANCTIONS,
                SANCTIONS_SHA256.to_vec(),
                sha256.as_bytes().to_vec(),
            );
            Ok(Ok(None))
        }
        Mutation::PurgeCustomer {
            tombstones,
            latest_version,
        } => {
            let Some(id) = tombstones.first().map(|c| c.customer_id.clone()) else {
                return Ok(Err(StoreError::Conflict(Conflict::NothingToPurge)));
            };
            if !is_newest(plan, &id, *latest_version)? {
                return Ok(Err(StoreError::Conflict(Conflict::CustomerChanged {
                    customer_id: id,
                })));
            }
            for c in tombstones {
                plan.put(
                    t::CUSTOMERS,
                    customer_key(&c.customer_id, c.version),
                    encode(c)?,
                );
            }
            plan.remove(t::SCREENINGS, id.into_bytes());
            Ok(Ok(None))
        }
        Mutation::RecordAdmission {
            decision,
            deployment,
            chain_pem,
            orders_seen,
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
            if meta_u64(plan, ORDER_SET_REVISION)? != *orders_seen {
                return Ok(Err(StoreError::Conflict(Conflict::OrdersChanged)));
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
                let d = Deployment {
                    facts: vec![index],
                    last_renewal: None,
                    ..d.clone()
                };
                plan.put_deployment(None, &d)?;
                for tag in [index::MODEL, index::CUSTOMER] {
                    let subject = if tag == index::MODEL {
                        &d.model_digest
                    } else {
                        &d.customer_id
                    };
                    plan.put(
                        t::ATTRIBUTION,
                        index::admitted(tag, subject, d.admitted_at, &d.deployment_id),
                        Vec::new(),
                    );
                }
                claim_endpoints(plan, &d, d.admitted_at, index);
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
            orders_seen,
        } => {
            let key = after.deployment_id.as_bytes();
            let current: Option<Deployment> = plan.get_decoded(t::DEPLOYMENTS, key)?;
            if current.as_ref() != Some(before) {
                return Ok(Err(StoreError::Conflict(Conflict::DeploymentChanged {
                    deployment_id: after.deployment_id.clone(),
                })));
            }
            if let Some(seen) = orders_seen {
                if meta_u64(plan, ORDER_SET_REVISION)? != *seen {
                    return Ok(Err(StoreError::Conflict(Conflict::OrdersChanged)));
                }
            }
            let mut decision = decision.clone();
            decision.ledger_index = Some(index);
            let mut after = after.clone();
            let allowed_renewal =
                decision.kind == crate::store::DecisionKind::Renew && decision.allowed;
            if after.note_decision(before, allowed_renewal, index) {
                claim_endpoints(plan, &after, decision.at, index);
            }
            plan.put_deployment(Some(before), &after)?;
            plan.put(
                t::DECISIONS,
                decision.decision_id.as_bytes().to_vec(),
                encode(&decision)?,
            );
            Ok(Ok(None))
        }
        Mutation::Order(change) => apply_order(plan, change, index),
        Mutation::PutAttributionRequest(request) => {
            let mut request = request.clone();
            request.ledger_index = index;
            plan.put(t::ATTRIBUTION, index::request(index), encode(&request)?);
            Ok(Ok(None))
        }
        Mutation::RecordDisclosure {
            request_index,
            disclosure,
        } => {
            let key = index::request(*request_index);
            let Some(mut request) = plan
                .get_decoded::<crate::domain::attribution::AttributionRequest>(
                    t::ATTRIBUTION,
                    &key,
                )?
            else {
                return Ok(Err(StoreError::Conflict(Conflict::RequestNotRecorded {
                    request_index: *request_index,
                })));
            };
            if request.disclosure.is_some() {
                return Ok(Err(StoreError::Conflict(Conflict::RequestAnswered {
                    request_index: *request_index,
                })));
            }
            let mut disclosure = disclosure.clone();
            disclosure.ledger_index = index;
            request.disclosure = Some(disclosure);
            plan.put(t::ATTRIBUTION, key, encode(&request)?);
            Ok(Ok(None))
        }
    }
}

/// Once a deployment has a final end, its model and customer index entries
/// carry it, so a time window skips it without reading the record.
fn record_end(plan: &mut Plan<'_>, before: Option<&Deployment>, after: &Deployment) {
    let end = after.final_end();
    if end.is_none() || end == before.and_then(Deployment::final_end) {
        return;
    }
    for (tag, subject) in [
        (index::MODEL, &after.model_digest),
        (index::CUSTOMER, &after.customer_id),
    ] {
        plan.put(
            t::ATTRIBUTION,
            index::admitted(tag, subject, after.admitted_at, &after.deployment_id),
            index::ended_at_value(end),
        );
    }
}

/// Records that `d` claimed each of its endpoints at `at`: whoever claimed
/// an endpoint last is the one running it.
fn claim_endpoints(plan: &mut Plan<'_>, d: &Deployment, at: crate::domain::UnixMillis, index: u64) {
    for e in &d.workload.endpoints {
        plan.put(
            t::ATTRIBUTION,
            index::endpoint(&normalize_endpoint(e), at, index),
            d.deployment_id.as_bytes().to_vec(),
        );
    }
}

fn meta_u64(plan: &Plan<'_>, key: &[u8]) -> Result<u64, StoreError> {
    Ok(plan
        .get(t::ORDER_META, key)?
        .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
        .map_or(0, u64::from_be_bytes))
}

/// Every key of `tree`, including those the batches in memory write (a
/// key they remove reads as absent through `Plan::get`).
fn keys_in(plan: &Plan<'_>, tree: usize) -> Result<Vec<Vec<u8>>, StoreError> {
    let mut ids: std::collections::BTreeSet<Vec<u8>> = std::collections::BTreeSet::new();
    for item in plan.trees[tree].iter().keys() {
        ids.insert(item.map_err(StoreError::from)?.to_vec());
    }
    for layer in plan
        .previous
        .into_iter()
        .chain(std::iter::once(&plan.layer))
    {
        ids.extend(layer.written[tree].keys().cloned());
    }
    Ok(ids.into_iter().collect())
}

fn apply_order(
    plan: &mut Plan<'_>,
    change: &OrderChange,
    index: u64,
) -> Result<Result<Option<Box<DecisionRecord>>, StoreError>, StoreError> {
    use crate::domain::order::{EventKind, OrderEvent};
    let mut order = change.order.clone();
    let key = order.order_id.as_bytes().to_vec();
    let stored: Option<crate::domain::order::Order> = plan.get_decoded(t::ORDERS, &key)?;
    if stored.as_ref().map_or(0, |o| o.revision) != order.revision
        || (stored.is_none() && order.revision != 0)
    {
        return Ok(Err(StoreError::Conflict(Conflict::OrderChanged {
            order_id: order.order_id.clone(),
        })));
    }
    let mut changed: Vec<String> = Vec::new();
    if change.activate {
        for id in keys_in(plan, t::DEPLOYMENTS)? {
            let Some(d) = plan.get_decoded::<Deployment>(t::DEPLOYMENTS, &id)? else {
                continue;
            };
            if let Some(mut after) = order.stop(&d, change.now) {
                changed.push(d.deployment_id.clone());
                after.facts.push(index);
                plan.put_deployment(Some(&d), &after)?;
            }
        }
        order.matched_deployments.clone_from(&changed);
    }
    if change.release {
        // Other orders in force keep what they match stopped.
        let mut others = Vec::new();
        for key in keys_in(plan, t::ACTIVE_ORDERS)? {
            if let Some(o) =
                plan.get_decoded::<crate::domain::order::Order>(t::ACTIVE_ORDERS, &key)?
            {
                if o.in_force(change.now) {
                    others.push(o);
                }
            }
        }
        for id in keys_in(plan, t::DEPLOYMENTS)? {
            let Some(d) = plan.get_decoded::<Deployment>(t::DEPLOYMENTS, &id)? else {
                continue;
            };
            if let Some(release) = order.release(&d, &others) {
                let mut after = release.after;
                if release.resumed {
                    changed.push(d.deployment_id.clone());
                    after.facts.push(index);
                }
                plan.put_deployment(Some(&d), &after)?;
            }
        }
    }
    if let Some(id) = &change.ack {
        if let Some(mut d) = plan.get_decoded::<Deployment>(t::DEPLOYMENTS, id.as_bytes())? {
            d.facts.push(index);
            plan.put(t::DEPLOYMENTS, id.as_bytes().to_vec(), encode(&d)?);
        }
    }
    let mut revision = meta_u64(plan, ORDER_REVISION)?;
    let first = revision + 1;
    revision += change.events.len() as u64;
    order.revision = revision;
    for (i, kind) in change.events.iter().enumerate() {
        let deployment_ids = match kind {
            EventKind::Activated | EventKind::Lifted | EventKind::Expired => changed.clone(),
            EventKind::Acknowledged => change.ack.iter().cloned().collect(),
            _ => Vec::new(),
        };
        let event = OrderEvent {
            revision: first + i as u64,
            kind: *kind,
            order: order.clone(),
            deployment_ids,
            at: change.now,
        };
        plan.put(
            t::ORDER_EVENTS,
            event.revision.to_be_bytes().to_vec(),
            encode(&event)?,
        );
    }
    plan.put(
        t::ORDER_META,
        ORDER_REVISION.to_vec(),
        revision.to_be_bytes().to_vec(),
    );
    let set_changed = change.events.iter().any(|k| {
        matches!(
            k,
            EventKind::Activated | EventKind::Lifted | EventKind::Expired
        )
    });
    if set_changed {
        plan.put(
            t::ORDER_META,
            ORDER_SET_REVISION.to_vec(),
            revision.to_be_bytes().to_vec(),
        );
    }
    moved(
        &mut plan.order_moves,
        &OrderState::ALL,
        stored.as_ref().map(|o| o.state),
        order.state,
    );
    let encoded = encode(&order)?;
    if order.state == OrderState::Active {
        plan.put(t::ACTIVE_ORDERS, key.clone(), encoded.clone());
    } else if stored.is_some_and(|o| o.state == OrderState::Active) {
        plan.remove(t::ACTIVE_ORDERS, key.clone());
    }
    plan.put(t::ORDERS, key, encoded);
    // The entry names the deployments the change affected: those it
    // changed, or the one acknowledged.
    plan.order_deployments = Some(if change.activate || change.release {
        changed
    } else {
        change.ack.iter().cloned().collect()
    });
    change.revision.store(revision, Ordering::SeqCst);
    Ok(Ok(None))
}

type Reply = oneshot::Sender<Result<AdmitRecorded, StoreError>>;
type Outcomes = Vec<Result<AdmitRecorded, StoreError>>;

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
        trees: Arc<[sled::Tree]>,
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
        let (reply, rx) = oneshot::channel();
        let entry_bytes = entry.to_bytes();
        self.tx
            .send(Append {
                mutation,
                entry,
                entry_bytes,
                reply,
            })
            .await
            .map_err(|_| StoreError::Io("sequencer stopped".into()))?;
        rx.await
            .map_err(|_| StoreError::Io("sequencer stopped".into()))?
    }
}

fn plan_loop(
    mut rx: mpsc::Receiver<Append>,
    trees: &[sled::Tree],
    mut size: u64,
    planned_tx: &std::sync::mpsc::SyncSender<Planned>,
    shared: &Shared,
) {
    // The previous batch's writes; it may still be committing.
    let mut previous: Option<Arc<Layer>> = None;
    // Reused from batch to batch: appends are large, and a fresh buffer
    // each time costs page faults.
    let mut batch: Vec<Append> = Vec::with_capacity(MAX_BATCH);
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
            super::engine::engine(|| plan_batch(trees, previous.as_deref(), size, &batch))
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

// The committer's whole state, passed once at spawn.
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
        let e = match why {
            StoreError::Corrupt { key, detail } => StoreError::Corrupt {
                key: key.clone(),
                detail: detail.clone(),
            },
            StoreError::Invariant(what) => StoreError::Invariant(what.clone()),
            other => StoreError::Io(other.to_string()),
        };
        let _ = reply.send(Err(e));
    }
}

/// A batch that writes nothing.
fn empty(size: u64) -> PlannedBatch {
    PlannedBatch {
        outcomes: Vec::new(),
        size,
        root: None,
        layer: Layer::new(tree::stored_hash_count(size)),
    }
}

/// What planning a batch produced.
struct PlannedBatch {
    outcomes: Outcomes,
    size: u64,
    root: Option<Hash>,
    layer: Layer,
}

/// Plans one batch on top of `previous` (the batch before, possibly still
/// committing) and what is stored: checks each append's preconditions,
/// encodes the accepted ones with their entries, computes their stored
/// hashes, the new size and root. Writes nothing.
fn plan_batch(
    trees: &[sled::Tree],
    previous: Option<&Layer>,
    size: u64,
    batch: &[Append],
) -> Result<PlannedBatch, StoreError> {
    let io = hash_error;
    let first_hash_index = tree::stored_hash_count(size);
    let stored = StoredHashes(&trees[t::HASHES]);
    // Hashes of the previous batch are read from memory: it may not be
    // committed yet.
    let (base_index, base_pending): (u64, &[Hash]) = match previous {
        Some(p) => (p.first_hash_index, &p.hashes),
        None => (first_hash_index, &[]),
    };
    let base = tree::Overlay::new(&stored, base_index, base_pending);
    let mut plan = Plan::new(trees, previous, first_hash_index);
    let mut pending: Vec<Hash> = Vec::new();
    // The batch's entries, stored as one value keyed by the index of the
    // first (see `SledStore::entries`): one key per batch instead of one
    // per entry, which roughly halves what sled's commit costs.
    let mut packed: Vec<u8> = Vec::new();
    let mut n = size;
    let mut outcomes: Outcomes = Vec::with_capacity(batch.len());
    for Append {
        mutation,
        entry,
        entry_bytes,
        ..
    } in batch
    {
        match apply(&mut plan, mutation, n)? {
            Ok(Some(first)) => outcomes.push(Ok(AdmitRecorded::Replay(first))),
            Ok(None) => {
                let patched = plan.order_deployments.take().map(|ids| {
                    let mut entry = entry.clone();
                    entry.set_order_deployments(ids);
                    entry.to_bytes()
                });
                let bytes = patched.as_deref().unwrap_or(entry_bytes);
                let overlay = tree::Overlay::new(&base, first_hash_index, &pending);
                let hashes =
                    tree::stored_hashes_for_record_hash(n, tree::leaf_hash(bytes), &overlay)
                        .map_err(io)?;
                pending.extend(hashes);
                push_entry(&mut packed, bytes)?;
                outcomes.push(Ok(AdmitRecorded::New(n)));
                n += 1;
            }
            Err(e) => outcomes.push(Err(e)),
        }
    }
    plan.put_state_counts()?;
    let root = if n > size {
        plan.put(t::ENTRIES, size.to_be_bytes().to_vec(), encode_raw(&packed));
        plan.put(
            t::HASHES,
            first_hash_index.to_be_bytes().to_vec(),
            pending.concat(),
        );
        plan.put(t::META, META_SIZE.to_vec(), n.to_be_bytes().to_vec());
        let overlay = tree::Overlay::new(&base, first_hash_index, &pending);
        Some(tree::tree_hash(n, &overlay).map_err(io)?)
    } else {
        None
    };
    let mut layer = plan.layer;
    layer.hashes = pending;
    Ok(PlannedBatch {
        outcomes,
        size: n,
        root,
        layer,
    })
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
    let checkpoint = Checkpoint {
        origin: signer.name().to_string(),
        size,
        root,
    };
    let note = checkpoint
        .sign(signer)
        .map_err(|e| StoreError::Invariant(format!("signing checkpoint: {e}")))?;
    Ok(Some(SignedCheckpoint {
        checkpoint,
        note,
        signed_at: crate::clock::now_millis(),
    }))
}

/// Waits, for up to 10 s, until nothing holds the lock on the store in
/// `dir`: sled's own threads let go of the file a moment after its last
/// handle is dropped, and a closed store must mean a directory that opens
/// again at once.
fn wait_for_release(dir: &std::path::Path) {
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
