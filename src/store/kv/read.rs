//! Every read of the [`Store`](crate::store::Store), over any [`Kv`]: the
//! engines answer them with the same code, so they answer alike.

use std::ops::Bound;
use std::sync::Arc;

use super::index;
use super::keys::{
    customer_key, customer_prefix, hash_error, t, StoredHashes, META_CHECKPOINT,
    META_CHECKPOINT_AT, META_SIZE, ORDER_REVISION, ORDER_SET_REVISION, SANCTIONS_LIST,
};
use super::{Direction, Kv};
use crate::domain::attribution::AttributionRequest;
use crate::domain::customer::{Customer, Screening};
use crate::domain::deployment::Deployment;
use crate::domain::order::{Order, OrderEvent};
use crate::domain::UnixMillis;
use crate::ledger::checkpoint::Checkpoint;
use crate::ledger::note::Verifier;
use crate::ledger::tree::{self, Hash};
use crate::pii::Keyring;
use crate::screening::SanctionsList;
use crate::store::codec::{decode, decode_entries};
use crate::store::sealed::{StoredCustomer, StoredScreening};
use crate::store::{
    AdmittedBy, AdmittedPage, Cursor, CustomerFilter, DeploymentFilter, EndpointClaim, OrderFilter,
    SignedCheckpoint, StoreError,
};

fn be_u64(v: &[u8]) -> Option<u64> {
    v.try_into().ok().map(u64::from_be_bytes)
}

/// A stored ledger that does not check out.
pub(crate) fn tampered(detail: String) -> StoreError {
    StoreError::Corrupt {
        key: "ledger".into(),
        detail,
    }
}

/// Index keys one [`Store::admitted_in`] call examines at most: a long
/// history continues on the next page instead of holding a blocking thread
/// (and the caller) for the whole of it.
pub(crate) const ADMITTED_SCAN_BUDGET: usize = 5_000;

/// The index tag and subject of an admission-time scan.
pub(crate) fn admitted_index(by: AdmittedBy<'_>) -> (u8, &str) {
    match by {
        AdmittedBy::Model(m) => (index::MODEL, m),
        AdmittedBy::Customer(c) => (index::CUSTOMER, c),
    }
}

/// What every read needs, shared with the reads on the blocking pool.
pub(crate) struct Reader<K> {
    pub(crate) kv: K,
    pub(crate) keys: Arc<Keyring>,
}

impl<K: Kv> Reader<K> {
    pub(crate) fn open_customer(&self, key: &[u8], raw: &[u8]) -> Result<Customer, StoreError> {
        let stored: StoredCustomer = decode(key, raw)?;
        stored.open(&self.keys)
    }

    pub(crate) fn get<T: serde::de::DeserializeOwned>(
        &self,
        tree: usize,
        key: &[u8],
    ) -> Result<Option<T>, StoreError> {
        match self.kv.get(tree, key)? {
            Some(raw) => decode(key, &raw)
                .map(Some)
                .map_err(|e| e.in_tree(t::NAMES[tree])),
            None => Ok(None),
        }
    }
}

/// Start-up check: the newest stored customer version (if any) must open
/// with the configured keys, so a wrong or missing PII key file refuses
/// start instead of failing call by call.
pub(crate) fn check_keys(kv: &impl Kv, keys: &Keyring) -> Result<(), StoreError> {
    let all = kv.range(
        t::CUSTOMERS,
        Bound::Unbounded,
        Bound::Unbounded,
        Direction::Reverse,
    );
    if let Some(item) = all.into_iter().next() {
        let (k, v) = item?;
        let stored: StoredCustomer = decode(&k, &v)?;
        if stored.sealed.is_some() {
            stored.open(keys)?;
        }
    }
    Ok(())
}

/// The stored ledger, checked by [`read_ledger`].
pub(crate) struct StoredLedger {
    /// Entries stored.
    pub size: u64,
    /// Every stored hash, recomputed from the entries (and equal to those
    /// stored).
    pub hashes: Vec<Hash>,
    /// The last checkpoint persisted in the store, verified.
    pub last: Option<SignedCheckpoint>,
}

/// Reads the stored ledger and checks it: every stored hash recomputed from
/// the entries and compared, the tree at the last checkpoint's size against
/// that checkpoint (which must verify with `verifier`). Writes nothing.
// One pass over the stored evidence in the order it depends on itself
// (size, checkpoint, entries, hashes, root); split, each part would take
// the half-checked state of the one before.
pub(crate) fn read_ledger(kv: &impl Kv, verifier: &Verifier) -> Result<StoredLedger, StoreError> {
    let size = match kv.get(t::META, META_SIZE)? {
        Some(v) => be_u64(&v).ok_or_else(|| tampered("stored ledger size is malformed".into()))?,
        None => 0,
    };
    let last = match kv.get(t::META, META_CHECKPOINT)? {
        Some(note) => {
            let note = String::from_utf8(note.to_vec())
                .map_err(|_| tampered("stored checkpoint is not UTF-8".into()))?;
            let cp = Checkpoint::open(&note, verifier).map_err(|e| {
                tampered(format!(
                    "stored checkpoint does not verify with the ledger key: {e}"
                ))
            })?;
            let signed_at = kv
                .get(t::META, META_CHECKPOINT_AT)?
                .and_then(|v| be_u64(&v))
                .and_then(|at| UnixMillis::try_from(at).ok())
                .unwrap_or_else(crate::clock::now_millis);
            Some(SignedCheckpoint {
                checkpoint: cp,
                note,
                signed_at,
            })
        }
        None => None,
    };
    if let Some(last) = &last {
        if size < last.checkpoint.size {
            return Err(tampered(format!(
                "stored ledger has {size} entries but its last signed checkpoint covers {}; \
                 refusing to serve a rolled-back log",
                last.checkpoint.size
            )));
        }
    }

    // Recompute every stored hash from the entries, batch by batch: each
    // batch value starts exactly where the previous one ended.
    let mut computed: Vec<Hash> = Vec::new();
    let mut next = 0u64;
    for item in kv.range(
        t::ENTRIES,
        Bound::Unbounded,
        Bound::Unbounded,
        Direction::Forward,
    ) {
        let (k, v) = item?;
        let start = be_u64(&k).ok_or_else(|| tampered("malformed ledger entry key".into()))?;
        if start != next {
            return Err(tampered(format!(
                "ledger entries are not contiguous at index {start} (expected {next}); \
                 the ledger was altered"
            )));
        }
        let batch =
            decode_entries(&k, &v).map_err(|e| tampered(format!("ledger entry {start}: {e}")))?;
        for bytes in batch {
            let hashes =
                tree::stored_hashes_for_record_hash(next, tree::leaf_hash(bytes), &computed)
                    .map_err(|e| tampered(e.to_string()))?;
            computed.extend(hashes);
            next += 1;
        }
    }
    if next != size {
        return Err(if next < size {
            tampered(format!(
                "ledger entry {next} is missing: {next} entries stored, size {size}"
            ))
        } else {
            tampered(format!(
                "{next} ledger entries stored but the stored size is {size}; the ledger was altered"
            ))
        });
    }
    // The stored hashes, batch by batch: each value continues exactly where
    // the previous one ended.
    let mut stored: Vec<Hash> = Vec::with_capacity(computed.len());
    for item in kv.range(
        t::HASHES,
        Bound::Unbounded,
        Bound::Unbounded,
        Direction::Forward,
    ) {
        let (k, v) = item?;
        let start = be_u64(&k).ok_or_else(|| tampered("malformed stored-hash key".into()))?;
        if start != stored.len() as u64 || v.len() % 32 != 0 {
            return Err(tampered(format!(
                "stored hashes are not contiguous at index {start}; the ledger was altered"
            )));
        }
        stored.extend(v.chunks_exact(32).filter_map(|c| <Hash>::try_from(c).ok()));
    }
    if stored.len() != computed.len() {
        return Err(tampered(format!(
            "{} stored hashes for {size} entries, expected {}",
            stored.len(),
            computed.len()
        )));
    }
    if let Some(i) = (0..computed.len()).find(|&i| stored[i] != computed[i]) {
        return Err(tampered(format!(
            "stored hash {i} does not match the entries; the ledger was altered"
        )));
    }
    if let Some(last) = &last {
        let root = tree::tree_hash(last.checkpoint.size, &computed)
            .map_err(|e| tampered(e.to_string()))?;
        if root != last.checkpoint.root {
            return Err(tampered(format!(
                "the stored tree at size {} does not have the root of the signed checkpoint; \
                 the ledger was altered",
                last.checkpoint.size
            )));
        }
    }
    Ok(StoredLedger {
        size,
        hashes: computed,
        last,
    })
}

impl<K: Kv> Reader<K> {
    pub(crate) fn customer(&self, customer_id: &str) -> Result<Option<Customer>, StoreError> {
        let prefix = customer_prefix(customer_id);
        match self
            .kv
            .prefix(t::CUSTOMERS, &prefix, Direction::Reverse)
            .next()
        {
            Some(item) => {
                let (k, v) = item?;
                self.open_customer(&k, &v).map(Some)
            }
            None => Ok(None),
        }
    }

    pub(crate) fn customer_as_of(
        &self,
        customer_id: &str,
        as_of: UnixMillis,
    ) -> Result<Option<Customer>, StoreError> {
        let prefix = customer_prefix(customer_id);
        for item in self.kv.prefix(t::CUSTOMERS, &prefix, Direction::Reverse) {
            let (k, v) = item?;
            let stored: StoredCustomer = decode(&k, &v)?;
            if stored.updated_at <= as_of {
                return stored.open(&self.keys).map(Some);
            }
        }
        Ok(None)
    }

    pub(crate) fn list_customers(
        &self,
        filter: &CustomerFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Customer>, StoreError> {
        // Keys are `id 0x00 version`: the newest version of an id is the
        // last key before the next id. Filters read the fields kept in the
        // clear; only the versions returned are opened.
        let start = match after {
            Some(a) => {
                let mut k = customer_prefix(a);
                k.extend_from_slice(&u64::MAX.to_be_bytes());
                Bound::Excluded(k)
            }
            None => Bound::Unbounded,
        };
        let mut out = Vec::new();
        let mut newest: Option<StoredCustomer> = None;
        let keep = |c: &StoredCustomer| {
            filter.status.is_none_or(|s| s == c.status)
                && filter.country.as_ref().is_none_or(|x| *x == c.country)
        };
        for item in self.kv.range(
            t::CUSTOMERS,
            start.as_ref().map(Vec::as_slice),
            Bound::Unbounded,
            Direction::Forward,
        ) {
            let (k, v) = item?;
            let stored: StoredCustomer = decode(&k, &v)?;
            if let Some(prev) = newest.take() {
                if prev.customer_id != stored.customer_id && keep(&prev) {
                    out.push(prev.open(&self.keys)?);
                    if out.len() >= limit {
                        return Ok(out);
                    }
                }
            }
            newest = Some(stored);
        }
        if let Some(prev) = newest {
            if keep(&prev) && out.len() < limit {
                out.push(prev.open(&self.keys)?);
            }
        }
        Ok(out)
    }

    pub(crate) fn screening(&self, customer_id: &str) -> Result<Option<Screening>, StoreError> {
        match self.get::<StoredScreening>(t::SCREENINGS, customer_id.as_bytes())? {
            Some(s) => s.open(&self.keys).map(Some),
            None => Ok(None),
        }
    }

    /// Up to `limit` records of `tree`, keyed by their id, after the id
    /// `after`, that `keep` accepts, in id order.
    fn page<T: serde::de::DeserializeOwned>(
        &self,
        tree: usize,
        after: Option<&str>,
        limit: usize,
        keep: impl Fn(&T) -> bool,
    ) -> Result<Vec<T>, StoreError> {
        let from = after.map_or(Bound::Unbounded, |a| Bound::Excluded(a.as_bytes()));
        let mut out = Vec::new();
        for item in self
            .kv
            .range(tree, from, Bound::Unbounded, Direction::Forward)
        {
            let (k, v) = item?;
            let record: T = decode(&k, &v)?;
            if keep(&record) {
                out.push(record);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    pub(crate) fn sanctions_list(&self) -> Result<Option<SanctionsList>, StoreError> {
        self.get(t::SANCTIONS, SANCTIONS_LIST)
    }

    pub(crate) fn order(&self, order_id: &str) -> Result<Option<Order>, StoreError> {
        self.get(t::ORDERS, order_id.as_bytes())
    }

    pub(crate) fn list_orders(
        &self,
        filter: &OrderFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Order>, StoreError> {
        self.page(t::ORDERS, after, limit, |r: &Order| filter.matches(r))
    }

    pub(crate) fn active_orders(&self) -> Result<Vec<Order>, StoreError> {
        self.kv
            .range(
                t::ACTIVE_ORDERS,
                Bound::Unbounded,
                Bound::Unbounded,
                Direction::Forward,
            )
            .map(|item| {
                let (k, v) = item?;
                decode(&k, &v)
            })
            .collect()
    }

    pub(crate) fn order_events(
        &self,
        after: u64,
        up_to: u64,
        limit: usize,
    ) -> Result<Vec<OrderEvent>, StoreError> {
        if up_to <= after {
            return Ok(Vec::new());
        }
        let (from, to) = ((after + 1).to_be_bytes(), up_to.to_be_bytes());
        self.kv
            .range(
                t::ORDER_EVENTS,
                Bound::Included(&from),
                Bound::Included(&to),
                Direction::Forward,
            )
            .take(limit)
            .map(|item| {
                let (k, v) = item?;
                decode(&k, &v)
            })
            .collect()
    }

    pub(crate) fn order_revisions(&self) -> Result<(u64, u64), StoreError> {
        let read = |key: &[u8]| -> Result<u64, StoreError> {
            Ok(self
                .kv
                .get(t::ORDER_META, key)?
                .and_then(|v| be_u64(&v))
                .unwrap_or(0))
        };
        Ok((read(ORDER_REVISION)?, read(ORDER_SET_REVISION)?))
    }

    pub(crate) fn deployment(&self, deployment_id: &str) -> Result<Option<Deployment>, StoreError> {
        self.get(t::DEPLOYMENTS, deployment_id.as_bytes())
    }

    pub(crate) fn list_deployments(
        &self,
        filter: &DeploymentFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Deployment>, StoreError> {
        self.page(t::DEPLOYMENTS, after, limit, |r: &Deployment| {
            filter.matches(r)
        })
    }

    pub(crate) fn chain(&self, chain_sha256: &str) -> Result<Option<String>, StoreError> {
        self.get(t::CHAINS, chain_sha256.as_bytes())
    }

    pub(crate) fn customer_version(
        &self,
        customer_id: &str,
        version: u64,
    ) -> Result<Option<Customer>, StoreError> {
        let key = customer_key(customer_id, version);
        match self.kv.get(t::CUSTOMERS, &key)? {
            Some(raw) => self.open_customer(&key, &raw).map(Some),
            None => Ok(None),
        }
    }

    pub(crate) fn customer_version_index(
        &self,
        customer_id: &str,
        version: u64,
    ) -> Result<Option<u64>, StoreError> {
        let key = index::version(customer_id, version);
        match self.kv.get(t::ATTRIBUTION, &key)? {
            Some(v) => be_u64(&v).map(Some).ok_or_else(|| StoreError::Corrupt {
                key: hex::encode(&key),
                detail: "malformed ledger index".into(),
            }),
            None => Ok(None),
        }
    }

    /// See [`Store::admitted_in`]: walks the model or customer index
    /// down from `to` (or from `after`), skipping by the end recorded in
    /// the index what ended before `from` without reading it, and stops at
    /// a full page or after [`ADMITTED_SCAN_BUDGET`] index keys.
    pub(crate) fn admitted_in(
        &self,
        (tag, subject): (u8, &str),
        from: UnixMillis,
        to: UnixMillis,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<AdmittedPage, StoreError> {
        let prefix = index::prefix(tag, subject);
        let mut end = index::prefix_at(tag, subject, to.saturating_add(1));
        if let Some(c) = after {
            if c < end.as_slice() {
                end = c.to_vec();
            }
        }
        let mut page = AdmittedPage::default();
        if end <= prefix {
            return Ok(page);
        }
        let walk = self.kv.range(
            t::ATTRIBUTION,
            Bound::Included(&prefix),
            Bound::Excluded(&end),
            Direction::Reverse,
        );
        for (scanned, item) in (1..).zip(walk) {
            let (k, v) = item?;
            let id = index::admitted_id(&prefix, &k).ok_or_else(|| StoreError::Corrupt {
                key: hex::encode(&k),
                detail: "malformed admission index key".into(),
            })?;
            let cursor = Cursor::from_bytes(k.to_vec());
            // Most of a window's scan is deployments that ended before it:
            // their end is in the index.
            let ended_before = index::ended_at(&v).is_some_and(|end| end < from);
            if !ended_before {
                if let Some(d) = self.get::<Deployment>(t::DEPLOYMENTS, id.as_bytes())? {
                    if d.end() >= from {
                        page.deployments.push((d, cursor.clone()));
                    }
                }
            }
            if page.deployments.len() >= limit || scanned >= ADMITTED_SCAN_BUDGET {
                page.next = Some(cursor);
                return Ok(page);
            }
        }
        Ok(page)
    }

    pub(crate) fn endpoint_claim(
        &self,
        endpoint: &str,
        at: UnixMillis,
    ) -> Result<Option<EndpointClaim>, StoreError> {
        let prefix = index::prefix(index::ENDPOINT, endpoint);
        let end = index::prefix_at(index::ENDPOINT, endpoint, at.saturating_add(1));
        let Some(item) = self
            .kv
            .range(
                t::ATTRIBUTION,
                Bound::Included(&prefix),
                Bound::Excluded(&end),
                Direction::Reverse,
            )
            .next()
        else {
            return Ok(None);
        };
        let (k, v) = item?;
        let corrupt = || StoreError::Corrupt {
            key: hex::encode(&k),
            detail: "malformed endpoint index entry".into(),
        };
        let (at, ledger_index) = index::endpoint_parts(&prefix, &k).ok_or_else(corrupt)?;
        let deployment_id = String::from_utf8(v.to_vec()).map_err(|_| corrupt())?;
        Ok(Some(EndpointClaim {
            at,
            ledger_index,
            deployment_id,
        }))
    }

    pub(crate) fn attribution_requests(
        &self,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<AttributionRequest>, StoreError> {
        let start = index::request(0);
        let end = match before {
            Some(b) => index::request(b),
            None => vec![index::REQUEST + 1],
        };
        let mut out = Vec::new();
        let walk = self.kv.range(
            t::ATTRIBUTION,
            Bound::Included(&start),
            Bound::Excluded(&end),
            Direction::Reverse,
        );
        for item in walk.take(limit) {
            let (k, v) = item?;
            out.push(decode(&k, &v)?);
        }
        Ok(out)
    }

    pub(crate) fn entries(&self, start: u64, count: u64) -> Result<Vec<Vec<u8>>, StoreError> {
        // Entries are stored one value per batch, keyed by the index of the
        // batch's first entry: start from the batch holding `start`.
        let end = start.saturating_add(count);
        let first = match self.kv.at_or_below(t::ENTRIES, &start.to_be_bytes())? {
            Some((k, _)) => k,
            None => return Ok(Vec::new()),
        };
        let mut out = Vec::new();
        let walk = self.kv.range(
            t::ENTRIES,
            Bound::Included(&first),
            Bound::Unbounded,
            Direction::Forward,
        );
        for item in walk {
            let (k, v) = item?;
            let first = be_u64(&k).ok_or_else(|| StoreError::Corrupt {
                key: hex::encode(&k),
                detail: "malformed ledger entry key".into(),
            })?;
            if first >= end {
                break;
            }
            for (index, bytes) in (first..).zip(decode_entries(&k, &v)?) {
                if (start..end).contains(&index) {
                    out.push(bytes.to_vec());
                }
            }
        }
        Ok(out)
    }

    pub(crate) fn entries_at(
        &self,
        indexes: &[u64],
    ) -> Result<std::collections::BTreeMap<u64, Vec<u8>>, StoreError> {
        let mut wanted = indexes.to_vec();
        wanted.sort_unstable();
        wanted.dedup();
        let mut out = std::collections::BTreeMap::new();
        let mut rest = wanted.as_slice();
        while let Some(&i) = rest.first() {
            // The batch holding `i` is keyed by its first index, at or below.
            let Some((k, v)) = self.kv.at_or_below(t::ENTRIES, &i.to_be_bytes())? else {
                rest = &rest[1..];
                continue;
            };
            let first = be_u64(&k).ok_or_else(|| StoreError::Corrupt {
                key: hex::encode(&k),
                detail: "malformed ledger entry key".into(),
            })?;
            let batch = decode_entries(&k, &v)?;
            let end = first.saturating_add(batch.len() as u64);
            let inside = rest.iter().take_while(|&&j| j < end).count();
            for &j in &rest[..inside] {
                let at = usize::try_from(j - first).map_err(|_| StoreError::Corrupt {
                    key: hex::encode(&k),
                    detail: "ledger entry index out of range".into(),
                })?;
                out.insert(j, batch[at].to_vec());
            }
            // An index past the end of its batch does not exist.
            rest = &rest[inside.max(1)..];
        }
        Ok(out)
    }

    pub(crate) fn inclusion_proof(
        &self,
        index: u64,
        tree_size: u64,
    ) -> Result<Vec<Hash>, StoreError> {
        tree::prove_record(tree_size, index, &StoredHashes(&self.kv)).map_err(hash_error)
    }

    pub(crate) fn consistency_proof(&self, from: u64, to: u64) -> Result<Vec<Hash>, StoreError> {
        tree::prove_tree(to, from, &StoredHashes(&self.kv)).map_err(hash_error)
    }

    /// A customer's versions as purged tombstones, made from the stored
    /// records: their commitment is the stored one, and nothing needs
    /// opening.
    pub(crate) fn tombstones(&self, customer_id: &str) -> Result<Vec<StoredCustomer>, StoreError> {
        self.kv
            .prefix(
                t::CUSTOMERS,
                &customer_prefix(customer_id),
                Direction::Forward,
            )
            .map(|item| {
                let (k, v) = item?;
                decode::<StoredCustomer>(&k, &v).map(|c| c.tombstone())
            })
            .collect()
    }
}
