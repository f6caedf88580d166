//! How warden lays out what it stores: the trees every commit spans, the
//! keys in them, and the stored ledger hashes read back for proofs.

use super::Kv;
use crate::ledger::tree::{self, Hash, HashReader};
use crate::store::StoreError;

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

/// In [`t::META`]: present once the index of deployments an order may act
/// on (see `index`) holds every such deployment; a store written before the
/// index existed gets it at open.
pub(crate) const META_ORDER_INDEX: &[u8] = b"order_index_4";

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
pub(crate) fn admit_key(principal: &str, request_id: &str) -> Vec<u8> {
    format!("{principal}\0{request_id}").into_bytes()
}

/// Whether a value under [`admit_key`] is the id of the decision (`dec-`
/// and hex, kept in [`t::DECISIONS`]: stores written before decisions
/// were kept under their request id) rather than the decision itself (a
/// framed record, see [`crate::store::codec`]).
pub(crate) fn is_decision_id(value: &[u8]) -> bool {
    value.starts_with(b"dec-") && crate::store::codec::decode_raw(&[], value).is_err()
}

/// Stored hashes. Each batch writes the hashes it adds as one value, keyed
/// by the stored index of its first hash (big endian), so a batch costs one
/// key however many records it holds; a hash is found by the last key at or
/// below its index.
pub(crate) struct StoredHashes<'a, K>(pub &'a K);

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

impl<K: Kv> StoredHashes<'_, K> {
    /// The batch value holding stored hash `i`: its first index, its bytes.
    fn batch_of(&self, i: u64) -> Result<(u64, K::Bytes), tree::TreeError> {
        let (k, v) = self
            .0
            .at_or_below(t::HASHES, &i.to_be_bytes())
            .map_err(|e| match e {
                StoreError::Corrupt { detail, .. } => {
                    tracing::error!(index = i, %detail, "stored ledger hash unreadable");
                    tree::TreeError::MissingHash(i)
                }
                e => tree::TreeError::Storage(e.to_string()),
            })?
            .ok_or(tree::TreeError::MissingHash(i))?;
        let start = <[u8; 8]>::try_from(&*k)
            .map(u64::from_be_bytes)
            .map_err(|_| tree::TreeError::Storage("malformed stored-hash key".into()))?;
        Ok((start, v))
    }
}

/// Stored hash `i` inside the batch value starting at `start`, if it is there.
pub(crate) fn hash_in(start: u64, value: &[u8], i: u64) -> Option<Hash> {
    let offset = usize::try_from(i.checked_sub(start)?)
        .ok()?
        .checked_mul(32)?;
    value.get(offset..offset.checked_add(32)?)?.try_into().ok()
}

impl<K: Kv> HashReader for StoredHashes<'_, K> {
    /// Hashes that share a batch value are read with one lookup (a proof's
    /// neighbouring nodes often sit in the same batch).
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tree::TreeError> {
        let mut out = Vec::with_capacity(indexes.len());
        let mut last: Option<(u64, K::Bytes)> = None;
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
