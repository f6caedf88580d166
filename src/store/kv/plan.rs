//! Planning a batch: the one place an engine checks a write's
//! preconditions and turns it into the keys it writes. Each batch is
//! planned on top of the one before it (which may still be committing) and
//! what is stored, computing the entries, stored hashes, size and root;
//! nothing here writes. The rules it applies (what an order
//! activates or releases, renewal bookkeeping, idempotency) come from the
//! domain.

use std::sync::atomic::Ordering;

use tokio::sync::oneshot;

use super::index;
use super::keys::{
    admit_key, customer_key, hash_error, is_decision_id, t, StoredHashes, META_SIZE,
    META_STATE_COUNTS, ORDER_REVISION, ORDER_SET_REVISION, SANCTIONS_LIST, SANCTIONS_SHA256,
};
use super::{Direction, Kv};
use crate::domain::attribution::normalize_endpoint;
use crate::domain::deployment::{Deployment, DeploymentState};
use crate::domain::order::OrderState;
use crate::ledger::entry::Entry;
use crate::ledger::tree::{self, Hash};
use crate::store::codec::{decode, encode, encode_raw, push_entry};
use crate::store::sealed::{StoredCustomer, StoredScreening};
use crate::store::{AdmitRecorded, Conflict, DecisionRecord, OrderChange, StateCounts, StoreError};

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

pub(crate) struct Append {
    pub(crate) mutation: Mutation,
    pub(crate) entry: Entry,
    /// The entry serialised by the caller, so the planner (the one serial
    /// stage) does not.
    pub(crate) entry_bytes: Vec<u8>,
    pub(crate) reply: oneshot::Sender<Result<AdmitRecorded, StoreError>>,
}

/// Queues `mutation` with its `entry` on a sequencer's `queue` and waits
/// for its answer: the entry's index once both are durable, a replay, or
/// why nothing was recorded.
pub(crate) async fn submit(
    queue: &tokio::sync::mpsc::Sender<Append>,
    mutation: Mutation,
    entry: Entry,
) -> Result<AdmitRecorded, StoreError> {
    let (reply, rx) = oneshot::channel();
    let entry_bytes = entry.to_bytes();
    queue
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

/// The writes one batch plans: state changes, entries, stored hashes and
/// size, in the order they are written. Shared (read-only) between the
/// committer, which writes them, and the planner, which reads through them
/// while it plans the next batch.
pub(crate) struct Layer {
    /// `None` removes the key.
    pub(crate) writes: Vec<(usize, Vec<u8>, Option<Vec<u8>>)>,
    /// Per tree, key to position in `writes`.
    pub(crate) written: [std::collections::HashMap<Vec<u8>, usize>; t::NAMES.len()],
    /// Stored index of `hashes[0]`.
    pub(crate) first_hash_index: u64,
    /// The stored hashes this batch adds.
    pub(crate) hashes: Vec<Hash>,
}

impl Layer {
    pub(crate) fn new(first_hash_index: u64) -> Self {
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

/// Certificate-index keys (`G`, `W`, `K`; see [`index`]) the planner has
/// read from disk, so that an admission with a certificate and customer
/// seen before reads none of them. Those keys are never removed while the
/// store is open, so a key read from disk stays there; keys only planned
/// are not remembered (their batch may yet fail). Bounded: past
/// [`KnownKeys::MAX`] it starts again from empty.
#[derive(Default)]
pub(crate) struct KnownKeys(std::collections::HashSet<Vec<u8>>);

impl KnownKeys {
    const MAX: usize = 65_536;

    fn insert(&mut self, key: Vec<u8>) {
        if self.0.len() >= Self::MAX {
            self.0.clear();
        }
        self.0.insert(key);
    }
}

/// A batch's view of the state while it is planned: its own writes, over
/// those of the batch before it (which may still be committing), over what
/// is stored. Only the sequencer writes, and a batch is planned only once
/// every batch but the previous one is committed, so plain reads are
/// consistent; the transaction that follows only writes, which keeps it
/// short (an engine's commit cost grows with every key it touches).
struct Plan<'a, K: Kv> {
    kv: &'a K,
    previous: Option<&'a Layer>,
    layer: Layer,
    known: &'a mut KnownKeys,
    /// Set by an order change: the deployments it changed, for its entry.
    order_deployments: Option<Vec<String>>,
    /// How many deployments (by position in `DeploymentState::ALL`) and
    /// orders (in `OrderState::ALL`) this batch moved into (+) or out of
    /// (-) each state.
    deployment_moves: [i64; DeploymentState::ALL.len()],
    order_moves: [i64; OrderState::ALL.len()],
}

impl<'a, K: Kv> Plan<'a, K> {
    fn new(
        kv: &'a K,
        previous: Option<&'a Layer>,
        known: &'a mut KnownKeys,
        first_hash_index: u64,
    ) -> Self {
        Self {
            kv,
            previous,
            layer: Layer::new(first_hash_index),
            known,
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
        let was_open = before.is_some_and(|b| b.state.order_may_act_on());
        if was_open != d.state.order_may_act_on() {
            self.write(
                t::ATTRIBUTION,
                index::open_key(d),
                (!was_open).then(Vec::new),
            );
        }
        if !was_open && d.state.order_may_act_on() {
            self.put_certificate_keys(d)?;
        }
        Ok(())
    }

    /// Writes those of `d`'s certificate-index keys that are neither stored
    /// nor planned. Most deployments use a certificate and customer seen
    /// before: then nothing is written, which keeps the commit small, and
    /// nothing read once the planner knows the keys are on disk.
    fn put_certificate_keys(&mut self, d: &Deployment) -> Result<(), StoreError> {
        let tree = t::ATTRIBUTION;
        for key in index::certificate_keys(d) {
            if self.known.0.contains(&key) {
                continue;
            }
            let present = match self.planned(tree, &key) {
                Some(value) => value.is_some(),
                None => {
                    let stored = self.kv.contains(tree, &key)?;
                    if stored {
                        self.known.insert(key.clone());
                    }
                    stored
                }
            };
            if !present {
                self.put(tree, key, Vec::new());
            }
        }
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

    /// The value of `key` as this batch or the one before it wrote it, if
    /// either did (`Some(None)`: removed).
    fn planned(&self, tree: usize, key: &[u8]) -> Option<Option<&[u8]>> {
        self.layer
            .get(tree, key)
            .or_else(|| self.previous.and_then(|p| p.get(tree, key)))
    }

    fn get(&self, tree: usize, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(v) = self.planned(tree, key) {
            return Ok(v.map(<[u8]>::to_vec));
        }
        Ok(self.kv.get(tree, key)?.map(|v| v.to_vec()))
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
fn check_screening<K: Kv>(
    plan: &Plan<'_, K>,
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
fn is_newest<K: Kv>(plan: &Plan<'_, K>, id: &str, version: u64) -> Result<bool, StoreError> {
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
// One arm per mutation, each a precondition check and the keys it writes:
// long as a whole, but every precondition the engine checks (and so every
// conflict it reports) reads in one place, and each arm stays short.
fn apply<K: Kv>(
    plan: &mut Plan<'_, K>,
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
                let first = first_decision(plan, &idem, &existing)?;
                return Ok(Ok(Some(Box::new(first))));
            }
            if meta_u64(plan, ORDER_SET_REVISION)? != *orders_seen {
                return Ok(Err(StoreError::Conflict(Conflict::OrdersChanged)));
            }
            let mut decision = decision.clone();
            decision.ledger_index = Some(index);
            // The decision is kept under its request id, the one key a
            // repeat looks up.
            plan.put(t::ADMIT_REQUESTS, idem, encode(&decision)?);
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
fn record_end<K: Kv>(plan: &mut Plan<'_, K>, before: Option<&Deployment>, after: &Deployment) {
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
fn claim_endpoints<K: Kv>(
    plan: &mut Plan<'_, K>,
    d: &Deployment,
    at: crate::domain::UnixMillis,
    index: u64,
) {
    for e in &d.workload.endpoints {
        plan.put(
            t::ATTRIBUTION,
            index::endpoint(&normalize_endpoint(e), at, index),
            d.deployment_id.as_bytes().to_vec(),
        );
    }
}

/// The first decision under a request id, from the value stored under it:
/// the decision itself, or, in a store written before decisions were kept
/// there, the id of the decision in [`t::DECISIONS`].
fn first_decision<K: Kv>(
    plan: &Plan<'_, K>,
    key: &[u8],
    value: &[u8],
) -> Result<DecisionRecord, StoreError> {
    if !is_decision_id(value) {
        return decode(key, value);
    }
    plan.get_decoded(t::DECISIONS, value)?
        .ok_or_else(|| StoreError::Corrupt {
            key: String::from_utf8_lossy(value).into_owned(),
            detail: "request id points at a missing decision".into(),
        })
}

fn meta_u64<K: Kv>(plan: &Plan<'_, K>, key: &[u8]) -> Result<u64, StoreError> {
    Ok(plan
        .get(t::ORDER_META, key)?
        .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
        .map_or(0, u64::from_be_bytes))
}

/// The deployments an order with `target` may act on, as the domain
/// defines them ([`DeploymentState::order_may_act_on`]), found through the
/// index the planner keeps with them (the one deployment a deployment
/// target names is read by its id). The order's own rules
/// (`Order::stop`, `Order::release`) still decide each one, so a
/// deployment offered here that the target does not match is left alone.
fn offered<K: Kv>(
    plan: &Plan<'_, K>,
    target: &crate::domain::order::Target,
) -> Result<Vec<Deployment>, StoreError> {
    let under = |tag: u8, subject: &str| -> Result<Vec<String>, StoreError> {
        let prefix = index::prefix(tag, subject);
        Ok(keys_with_prefix(plan, t::ATTRIBUTION, &prefix)?
            .into_iter()
            .map(|k| String::from_utf8_lossy(&k[prefix.len()..]).into_owned())
            .collect())
    };
    let open = |fingerprint: &str, customer: Option<&str>| -> Result<Vec<String>, StoreError> {
        let prefix = index::open_prefix(fingerprint, customer);
        Ok(keys_with_prefix(plan, t::ATTRIBUTION, &prefix)?
            .iter()
            .filter_map(|k| index::open_id(&prefix, k, customer.is_some()))
            .collect())
    };
    let ids: std::collections::BTreeSet<String> = match index::lookup(target.kind) {
        index::Lookup::Id => std::iter::once(target.value.clone()).collect(),
        index::Lookup::Certificate => open(&target.value, None)?.into_iter().collect(),
        index::Lookup::ThroughCertificates { tag, of_customer } => {
            let customer = of_customer.then_some(target.value.as_str());
            let mut ids = std::collections::BTreeSet::new();
            for fingerprint in under(tag, &target.value)? {
                ids.extend(open(&fingerprint, customer)?);
            }
            ids
        }
    };
    let mut found = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(d) = plan.get_decoded::<Deployment>(t::DEPLOYMENTS, id.as_bytes())? {
            if d.state.order_may_act_on() {
                found.push(d);
            }
        }
    }
    Ok(found)
}

/// The keys of `tree` under `prefix` that are present as this batch sees
/// them: stored, or written by the batches in memory, less those they
/// remove.
fn keys_with_prefix<K: Kv>(
    plan: &Plan<'_, K>,
    tree: usize,
    prefix: &[u8],
) -> Result<Vec<Vec<u8>>, StoreError> {
    let mut keys = std::collections::BTreeSet::new();
    for item in plan.kv.prefix(tree, prefix, Direction::Forward) {
        keys.insert(item?.0.to_vec());
    }
    for layer in plan
        .previous
        .into_iter()
        .chain(std::iter::once(&plan.layer))
    {
        keys.extend(
            layer.written[tree]
                .keys()
                .filter(|k| k.starts_with(prefix))
                .cloned(),
        );
    }
    let mut present = Vec::with_capacity(keys.len());
    for k in keys {
        if plan.get(tree, &k)?.is_some() {
            present.push(k);
        }
    }
    Ok(present)
}

/// Plans an order change: the revision check, then activation (the
/// deployments the order stops, as `Order::stop` decides), release (what a
/// lifted or expired suspension gives back, unless another order in force
/// holds it), an acknowledgement, the events and the order itself.
// Over a hundred lines because the steps share the plan and the list of
// changed deployments, which the events and the entry name; the decisions
// are the domain's, what is left here is reading and writing keys in order.
fn apply_order<K: Kv>(
    plan: &mut Plan<'_, K>,
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
        for d in offered(plan, &order.target)? {
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
        for key in keys_with_prefix(plan, t::ACTIVE_ORDERS, b"")? {
            if let Some(o) =
                plan.get_decoded::<crate::domain::order::Order>(t::ACTIVE_ORDERS, &key)?
            {
                if o.in_force(change.now) {
                    others.push(o);
                }
            }
        }
        for d in offered(plan, &order.target)? {
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

pub(crate) type Outcomes = Vec<Result<AdmitRecorded, StoreError>>;

/// A batch that writes nothing.
pub(crate) fn empty(size: u64) -> PlannedBatch {
    PlannedBatch {
        outcomes: Vec::new(),
        size,
        root: None,
        layer: Layer::new(tree::stored_hash_count(size)),
    }
}

/// What planning a batch produced.
pub(crate) struct PlannedBatch {
    pub(crate) outcomes: Outcomes,
    pub(crate) size: u64,
    pub(crate) root: Option<Hash>,
    pub(crate) layer: Layer,
}

/// Plans one batch on top of `previous` (the batch before, possibly still
/// committing) and what is stored: checks each append's preconditions,
/// encodes the accepted ones with their entries, computes their stored
/// hashes, the new size and root. Writes nothing.
pub(crate) fn plan_batch<K: Kv>(
    kv: &K,
    previous: Option<&Layer>,
    known: &mut KnownKeys,
    size: u64,
    batch: &[Append],
) -> Result<PlannedBatch, StoreError> {
    let io = hash_error;
    let first_hash_index = tree::stored_hash_count(size);
    let stored = StoredHashes(kv);
    // Hashes of the previous batch are read from memory: it may not be
    // committed yet.
    let (base_index, base_pending): (u64, &[Hash]) = match previous {
        Some(p) => (p.first_hash_index, &p.hashes),
        None => (first_hash_index, &[]),
    };
    let base = tree::Overlay::new(&stored, base_index, base_pending);
    let mut plan = Plan::new(kv, previous, known, first_hash_index);
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
