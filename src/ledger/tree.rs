//! RFC 6962 / RFC 9162 Merkle tree math for warden's append-only ledger.
//!
//! This module is a faithful port of Go's `golang.org/x/mod/sumdb/tlog`
//! (`tlog.go`): record and node hashing, the dense *stored hash index*
//! layout (Crosby & Wallach §3.3) under which the ledger writes each tree
//! hash exactly once, root computation, and inclusion ("record") and
//! consistency ("tree") proof generation and verification.
//!
//! # What this module must never do
//!
//! * It performs **no I/O** and keeps no hidden state: every hash it needs
//!   comes through a caller-supplied [`HashReader`], and every hash it
//!   produces is returned to the caller, who decides where to write it.
//! * It must never panic on any input, including hostile proofs, sizes and
//!   indexes from the network (no `unwrap`/`expect`, no unchecked shifts or
//!   overflowing arithmetic on verifier paths). Where Go's tlog panics on an
//!   impossible internal state, this port returns [`TreeError::BadMath`].
//! * It must never change how a hash is computed or where it is stored: the
//!   stored hash layout is an on-disk format. `leaf_hash`, `node_hash` and
//!   `stored_hash_index` must stay byte-for-byte compatible with Go's tlog
//!   and RFC 6962, because stored hashes are write-once.
//!
//! # Conventions
//!
//! * Hashes are raw 32-byte SHA-256 outputs ([`Hash`](tyalias@Hash)). Leaf hash is
//!   `SHA-256(0x00 || data)`, interior node hash is `SHA-256(0x01 || l || r)`.
//! * The root of the empty tree is [`empty_root`] = `SHA-256("")`
//!   (RFC 6962 §2.1). **This differs from Go's tlog**, whose `TreeHash(0)`
//!   returns the all-zero hash; it matches RFC 6962, transparency-dev/merkle,
//!   ct-merkle and tlog_tiles.
//! * Record proofs (inclusion, RFC 9162 §2.1.3): `index >= tree_size` (and
//!   hence any proof in the empty tree) is an error
//!   ([`TreeError::InvalidInput`]) for both [`prove_record`] and
//!   [`check_record`]. A one-record tree has the empty proof.
//! * Tree proofs (consistency, RFC 9162 §2.1.4), argument order follows Go:
//!   `(new_size, old_size)`.
//!   * `old_size > new_size` is an error ([`TreeError::InvalidInput`]).
//!   * `old_size == new_size` (including `0 == 0`): the proof is empty, and
//!     [`check_tree`] accepts exactly when the proof is empty **and**
//!     `old_root == new_root`.
//!   * `old_size == 0 < new_size`: the proof is empty, and [`check_tree`]
//!     accepts an empty proof with **any** roots (every tree extends the
//!     empty tree); a non-empty proof is rejected.
//!   * Otherwise Go's algorithm applies unchanged.
//!     These match transparency-dev/merkle's `VerifyConsistency`.
//! * Record indexes and tree sizes passed to functions that compute stored
//!   hash indexes must be at most [`MAX_TREE_SIZE`] (2^62); this keeps all
//!   index arithmetic free of overflow. Verification functions
//!   ([`check_record`], [`check_tree`]) accept any `u64`.
//! * Proof hashes are ordered leaf-to-root (bottom-up), exactly as in
//!   RFC 9162, Go tlog and transparency-dev/merkle.
//!
//! # Batches
//!
//! A sequencer appending records `n, n+1, …` in one transaction must be able
//! to read, while computing record `n+1`'s hashes, the hashes produced for
//! record `n` that are not stored yet. [`Overlay`] layers a slice of pending
//! hashes (starting at stored index `start_index`) over any base
//! [`HashReader`]; [`stored_hashes_for_batch`] uses it to compute all hashes
//! for a batch in one call.

use base64::Engine as _;
use sha2::{Digest, Sha256};

/// Size of a [`Hash`](tyalias@Hash) in bytes.
pub const HASH_SIZE: usize = 32;

/// A SHA-256 hash identifying a record, an interior node or a tree root.
pub type Hash = [u8; HASH_SIZE];

/// Largest tree size (number of records) accepted by the functions that
/// compute stored hash indexes. Keeps every stored-index computation within
/// `u64` (a tree of `2^62` records has fewer than `2^63` stored hashes).
pub const MAX_TREE_SIZE: u64 = 1 << 62;

/// Errors from tree math, hash readers and proof verification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TreeError {
    /// The arguments are outside the function's domain (e.g. `index >= tree_size`,
    /// `old_size > new_size`, a size above [`MAX_TREE_SIZE`]).
    #[error("tree: invalid input: {0}")]
    InvalidInput(String),
    /// The proof does not prove the claim.
    #[error("tree: invalid transparency proof")]
    ProofFailed,
    /// A reader was asked for a stored hash it does not have.
    #[error("tree: stored hash {0} is not available")]
    MissingHash(u64),
    /// A reader returned the wrong number of hashes.
    #[error("tree: read_hashes({want} indexes) returned {got} hashes")]
    ShortRead {
        /// Number of indexes requested.
        want: usize,
        /// Number of hashes returned.
        got: usize,
    },
    /// An internal invariant failed (Go's tlog panics with "bad math" here).
    #[error("tree: internal math error in {0}")]
    BadMath(&'static str),
    /// A textual hash could not be decoded.
    #[error("tree: malformed hash")]
    MalformedHash,
    /// Error reported by a storage-backed [`HashReader`] implementation.
    #[error("tree: hash storage: {0}")]
    Storage(String),
}

// ---------------------------------------------------------------------------
// Hashing
// ---------------------------------------------------------------------------

/// Record (leaf) hash: `SHA-256(0x00 || data)` (RFC 6962 §2.1).
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00u8]);
    h.update(data);
    h.finalize().into()
}

/// Interior node hash: `SHA-256(0x01 || left || right)` (RFC 6962 §2.1).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut buf = [0u8; 1 + 2 * HASH_SIZE];
    buf[0] = 0x01;
    buf[1..1 + HASH_SIZE].copy_from_slice(left);
    buf[1 + HASH_SIZE..].copy_from_slice(right);
    Sha256::digest(buf).into()
}

/// Root hash of the empty tree: `SHA-256("")`.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// Standard base64 form of a hash (as Go tlog's `Hash.String`, used in checkpoints).
pub fn hash_to_base64(h: &Hash) -> String {
    base64::engine::general_purpose::STANDARD.encode(h)
}

/// Parses the standard base64 form of a hash (Go tlog's `ParseHash`).
pub fn parse_hash_base64(s: &str) -> Result<Hash, TreeError> {
    let v = base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(|_| TreeError::MalformedHash)?;
    Hash::try_from(v.as_slice()).map_err(|_| TreeError::MalformedHash)
}

/// Lower-case hex form of a hash.
pub fn hash_to_hex(h: &Hash) -> String {
    hex::encode(h)
}

/// Parses the hex form of a hash.
pub fn parse_hash_hex(s: &str) -> Result<Hash, TreeError> {
    let v = hex::decode(s).map_err(|_| TreeError::MalformedHash)?;
    Hash::try_from(v.as_slice()).map_err(|_| TreeError::MalformedHash)
}

// ---------------------------------------------------------------------------
// Stored hash index layout
// ---------------------------------------------------------------------------

/// Largest power of two `<= m`, for `m >= 1` (returns 1 for `m == 0`).
/// Go's `maxpow2(x)` (largest power of two strictly below `x`) is
/// `floor_pow2(x - 1)`.
fn floor_pow2(m: u64) -> u64 {
    if m == 0 {
        return 1;
    }
    1u64 << (63 - m.leading_zeros())
}

/// Maps tree coordinates `(level, n)` — the `n`th hash at `level`, level 0
/// being record hashes — to the dense linear index at which it is stored.
///
/// Domain: `(n + 1) << level <= MAX_TREE_SIZE`; outside it the result is
/// meaningless (wrapping arithmetic) but the function does not panic.
pub fn stored_hash_index(level: u32, n: u64) -> u64 {
    // Level L's n'th hash is written right after level L+1's 2n+1'th hash.
    // Work down to the level-0 ordering, then add back the level count.
    let mut n = n;
    for _ in 0..level {
        n = n.wrapping_mul(2).wrapping_add(1);
    }
    // Level 0's n'th hash is written at n + n/2 + n/4 + ...
    let mut i = 0u64;
    while n > 0 {
        i = i.wrapping_add(n);
        n >>= 1;
    }
    i.wrapping_add(u64::from(level))
}

/// Inverse of [`stored_hash_index`]: `split_stored_hash_index(stored_hash_index(l, n)) == (l, n)`.
pub fn split_stored_hash_index(index: u64) -> (u32, u64) {
    // StoredHashIndex(0, n) < 2n, so the record n that committed this hash is
    // in [index/2, index/2 + log2(index)].
    let mut n = index / 2;
    let mut index_n = stored_hash_index(0, n);
    loop {
        // Each new record n adds 1 + trailing_zeros(n) hashes.
        // (An overflowing sum is necessarily beyond `index`.)
        match index_n.checked_add(1 + u64::from(n.wrapping_add(1).trailing_zeros())) {
            Some(x) if x <= index => {
                n = n.wrapping_add(1);
                index_n = x;
            }
            _ => break,
        }
    }
    // The hash was committed with record n: it is one of (0, n), (1, n/2), ...
    let level = u32::try_from(index.wrapping_sub(index_n)).unwrap_or(u32::MAX);
    (level, n.checked_shr(level).unwrap_or(0))
}

/// Number of stored hashes for a tree of `n` records. Equals
/// `stored_hash_index(0, n)`, the index at which record `n`'s hashes start.
pub fn stored_hash_count(n: u64) -> u64 {
    if n == 0 {
        return 0;
    }
    // Hashes up to the last leaf hash, plus one per subtree that leaf completes.
    stored_hash_index(0, n - 1)
        .wrapping_add(1)
        .wrapping_add(u64::from((n - 1).trailing_ones()))
}

fn check_size(what: &str, size: u64) -> Result<(), TreeError> {
    if size > MAX_TREE_SIZE {
        return Err(TreeError::InvalidInput(format!(
            "{what} {size} exceeds MAX_TREE_SIZE {MAX_TREE_SIZE}"
        )));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Hash readers
// ---------------------------------------------------------------------------

/// Source of previously stored hashes, addressed by stored hash index.
pub trait HashReader {
    /// Returns the hashes at the given stored hash indexes, in the same
    /// order, or an error. Must return exactly `indexes.len()` hashes on
    /// success. Callers in this module always pass indexes in increasing order
    /// except where noted.
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, TreeError>;
}

/// In-memory stored hashes: element `i` is the hash with stored index `i`.
impl HashReader for [Hash] {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, TreeError> {
        indexes
            .iter()
            .map(|&i| {
                usize::try_from(i)
                    .ok()
                    .and_then(|u| self.get(u))
                    .copied()
                    .ok_or(TreeError::MissingHash(i))
            })
            .collect()
    }
}

impl HashReader for Vec<Hash> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, TreeError> {
        self.as_slice().read_hashes(indexes)
    }
}

impl<R: HashReader + ?Sized> HashReader for &R {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, TreeError> {
        (**self).read_hashes(indexes)
    }
}

/// Adapts a closure into a [`HashReader`] (Go's `HashReaderFunc`).
pub struct HashReaderFn<F>(pub F);

impl<F> HashReader for HashReaderFn<F>
where
    F: Fn(&[u64]) -> Result<Vec<Hash>, TreeError>,
{
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, TreeError> {
        (self.0)(indexes)
    }
}

/// A reader that serves stored indexes `start_index..start_index + pending.len()`
/// from `pending` (hashes computed but not yet written) and every index below
/// `start_index` from `base`. Indexes at or beyond the end of `pending` are
/// [`TreeError::MissingHash`].
///
/// `base` is called at most once per `read_hashes`, with the base indexes in
/// the caller's order (so sorted input stays sorted).
pub struct Overlay<'a, R: HashReader + ?Sized> {
    /// Reader for already-stored hashes (indexes `< start_index`).
    pub base: &'a R,
    /// Stored index of `pending[0]`; normally `stored_hash_count(committed_size)`.
    pub start_index: u64,
    /// Hashes produced in the current batch, in stored-index order.
    pub pending: &'a [Hash],
}

impl<'a, R: HashReader + ?Sized> Overlay<'a, R> {
    /// Layers `pending` (starting at stored index `start_index`) over `base`.
    pub fn new(base: &'a R, start_index: u64, pending: &'a [Hash]) -> Self {
        Overlay {
            base,
            start_index,
            pending,
        }
    }
}

impl<R: HashReader + ?Sized> HashReader for Overlay<'_, R> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, TreeError> {
        let mut out = vec![[0u8; HASH_SIZE]; indexes.len()];
        let mut base_indexes = Vec::new();
        let mut base_positions = Vec::new();
        for (pos, &i) in indexes.iter().enumerate() {
            if i < self.start_index {
                base_indexes.push(i);
                base_positions.push(pos);
            } else {
                let h = usize::try_from(i - self.start_index)
                    .ok()
                    .and_then(|off| self.pending.get(off))
                    .ok_or(TreeError::MissingHash(i))?;
                out[pos] = *h;
            }
        }
        if !base_indexes.is_empty() {
            let got = read_exact(self.base, &base_indexes)?;
            for (pos, h) in base_positions.into_iter().zip(got) {
                out[pos] = h;
            }
        }
        Ok(out)
    }
}

fn read_exact<R: HashReader + ?Sized>(r: &R, indexes: &[u64]) -> Result<Vec<Hash>, TreeError> {
    let hashes = r.read_hashes(indexes)?;
    if hashes.len() != indexes.len() {
        return Err(TreeError::ShortRead {
            want: indexes.len(),
            got: hashes.len(),
        });
    }
    Ok(hashes)
}

// ---------------------------------------------------------------------------
// Appending
// ---------------------------------------------------------------------------

/// The hashes to store when appending record `n` with record hash `leaf`:
/// the leaf hash followed by the hashes of every subtree it completes, to be
/// written at stored indexes `stored_hash_index(0, n)..`. Reads up to
/// `log2(n)` earlier hashes (in increasing index order) through `reader`.
pub fn stored_hashes_for_record_hash<R: HashReader + ?Sized>(
    n: u64,
    leaf: Hash,
    reader: &R,
) -> Result<Vec<Hash>, TreeError> {
    if n >= MAX_TREE_SIZE {
        return Err(TreeError::InvalidInput(format!(
            "record index {n} must be below MAX_TREE_SIZE"
        )));
    }
    // Each trailing 1 bit of n completes a subtree and consumes the hash of
    // the adjacent (left) subtree. n < 2^62 so n + 1 cannot overflow.
    let m = (n + 1).trailing_zeros();
    let mut indexes = Vec::with_capacity(m as usize);
    // Sorted order: the highest level's left sibling was stored first.
    for i in (0..m).rev() {
        // n >> i is odd for i < m, so the subtraction cannot underflow.
        indexes.push(stored_hash_index(i, (n >> i) - 1));
    }
    let old = read_exact(reader, &indexes)?;
    let mut hashes = Vec::with_capacity(1 + old.len());
    let mut h = leaf;
    hashes.push(h);
    for left in old.iter().rev() {
        h = node_hash(left, &h);
        hashes.push(h);
    }
    Ok(hashes)
}

/// Like [`stored_hashes_for_record_hash`] but takes the record data.
pub fn stored_hashes<R: HashReader + ?Sized>(
    n: u64,
    data: &[u8],
    reader: &R,
) -> Result<Vec<Hash>, TreeError> {
    stored_hashes_for_record_hash(n, leaf_hash(data), reader)
}

/// The hashes to store when appending `leaves` as records
/// `start, start + 1, …` to a tree whose first `start` records' hashes are
/// readable through `reader`. The result is to be written at stored indexes
/// `stored_hash_count(start)..` (= `stored_hash_index(0, start)`), and has
/// length `stored_hash_count(start + leaves.len()) - stored_hash_count(start)`.
/// Hashes produced earlier in the batch are read from memory via [`Overlay`].
pub fn stored_hashes_for_batch<R: HashReader + ?Sized>(
    start: u64,
    leaves: &[Hash],
    reader: &R,
) -> Result<Vec<Hash>, TreeError> {
    let count = u64::try_from(leaves.len())
        .map_err(|_| TreeError::InvalidInput("batch too large".into()))?;
    let end = start
        .checked_add(count)
        .ok_or_else(|| TreeError::InvalidInput("batch end overflows".into()))?;
    check_size("batch end", end)?;
    let start_index = stored_hash_index(0, start);
    let mut pending: Vec<Hash> = Vec::with_capacity(leaves.len().saturating_mul(2));
    for (n, leaf) in (start..end).zip(leaves) {
        let overlay = Overlay::new(reader, start_index, &pending);
        let new = stored_hashes_for_record_hash(n, *leaf, &overlay)?;
        pending.extend_from_slice(&new);
    }
    Ok(pending)
}

// ---------------------------------------------------------------------------
// Tree hash
// ---------------------------------------------------------------------------

/// Root hash of the tree with `n` records ([`empty_root`] for `n == 0`).
/// Makes a single `read_hashes` call for at most `1 + log2(n)` hashes.
pub fn tree_hash<R: HashReader + ?Sized>(n: u64, reader: &R) -> Result<Hash, TreeError> {
    if n == 0 {
        return Ok(empty_root());
    }
    check_size("tree size", n)?;
    let mut indexes = Vec::new();
    sub_tree_index(0, n, &mut indexes)?;
    let hashes = read_exact(reader, &indexes)?;
    let (h, rest) = sub_tree_hash(0, n, &hashes)?;
    if !rest.is_empty() {
        return Err(TreeError::BadMath("tree_hash"));
    }
    Ok(h)
}

/// Appends the stored indexes needed to compute the hash of records `[lo, hi)`.
fn sub_tree_index(mut lo: u64, hi: u64, need: &mut Vec<u64>) -> Result<(), TreeError> {
    while lo < hi {
        let k = floor_pow2(hi - lo);
        if lo & (k - 1) != 0 {
            return Err(TreeError::BadMath("sub_tree_index"));
        }
        let level = k.trailing_zeros();
        need.push(stored_hash_index(level, lo >> level));
        lo += k;
    }
    Ok(())
}

/// Computes the hash of records `[lo, hi)` from hashes read for
/// `sub_tree_index(lo, hi)`, returning the leftover hashes.
fn sub_tree_hash(mut lo: u64, hi: u64, hashes: &[Hash]) -> Result<(Hash, &[Hash]), TreeError> {
    // Partition into maximal complete subtrees, left to right; the left ones
    // are stored directly, the right fringe is combined from the right.
    let mut num_tree = 0usize;
    while lo < hi {
        let k = floor_pow2(hi - lo);
        if lo & (k - 1) != 0 {
            return Err(TreeError::BadMath("sub_tree_hash"));
        }
        num_tree += 1;
        lo += k;
    }
    if num_tree == 0 || hashes.len() < num_tree {
        return Err(TreeError::BadMath("sub_tree_hash"));
    }
    let (used, rest) = hashes.split_at(num_tree);
    let mut iter = used.iter().rev();
    let mut h = *iter.next().ok_or(TreeError::BadMath("sub_tree_hash"))?;
    for left in iter {
        h = node_hash(left, &h);
    }
    Ok((h, rest))
}

// ---------------------------------------------------------------------------
// Record (inclusion) proofs
// ---------------------------------------------------------------------------

/// Inclusion proof (RFC 9162 §2.1.3) that the tree of size `tree_size`
/// contains the record at `index`. Errors if `index >= tree_size`.
pub fn prove_record<R: HashReader + ?Sized>(
    tree_size: u64,
    index: u64,
    reader: &R,
) -> Result<Vec<Hash>, TreeError> {
    if index >= tree_size {
        return Err(TreeError::InvalidInput(format!(
            "record index {index} not in tree of size {tree_size}"
        )));
    }
    check_size("tree size", tree_size)?;
    let mut indexes = Vec::new();
    leaf_proof_index(0, tree_size, index, &mut indexes)?;
    if indexes.is_empty() {
        return Ok(Vec::new());
    }
    let hashes = read_exact(reader, &indexes)?;
    let (p, rest) = leaf_proof(0, tree_size, index, &hashes)?;
    if !rest.is_empty() {
        return Err(TreeError::BadMath("prove_record"));
    }
    Ok(p)
}

fn leaf_proof_index(lo: u64, hi: u64, n: u64, need: &mut Vec<u64>) -> Result<(), TreeError> {
    if !(lo <= n && n < hi) {
        return Err(TreeError::BadMath("leaf_proof_index"));
    }
    if lo + 1 == hi {
        return Ok(());
    }
    let k = floor_pow2(hi - lo - 1);
    if n < lo + k {
        leaf_proof_index(lo, lo + k, n, need)?;
        sub_tree_index(lo + k, hi, need)
    } else {
        sub_tree_index(lo, lo + k, need)?;
        leaf_proof_index(lo + k, hi, n, need)
    }
}

fn leaf_proof(
    lo: u64,
    hi: u64,
    n: u64,
    hashes: &[Hash],
) -> Result<(Vec<Hash>, &[Hash]), TreeError> {
    if !(lo <= n && n < hi) {
        return Err(TreeError::BadMath("leaf_proof"));
    }
    if lo + 1 == hi {
        // The verifier knows the leaf hash.
        return Ok((Vec::new(), hashes));
    }
    let k = floor_pow2(hi - lo - 1);
    let (mut p, th, rest) = if n < lo + k {
        let (p, rest) = leaf_proof(lo, lo + k, n, hashes)?;
        let (th, rest) = sub_tree_hash(lo + k, hi, rest)?;
        (p, th, rest)
    } else {
        let (th, rest) = sub_tree_hash(lo, lo + k, hashes)?;
        let (p, rest) = leaf_proof(lo + k, hi, n, rest)?;
        (p, th, rest)
    };
    p.push(th);
    Ok((p, rest))
}

/// Verifies that `proof` proves that the tree of size `tree_size` with root
/// `root` has record hash `leaf` at `index`. Errors with
/// [`TreeError::InvalidInput`] if `index >= tree_size`, and with
/// [`TreeError::ProofFailed`] if the proof does not verify.
pub fn check_record(
    proof: &[Hash],
    tree_size: u64,
    root: Hash,
    index: u64,
    leaf: Hash,
) -> Result<(), TreeError> {
    if index >= tree_size {
        return Err(TreeError::InvalidInput(format!(
            "record index {index} not in tree of size {tree_size}"
        )));
    }
    let th = run_record_proof(proof, 0, tree_size, index, leaf)?;
    if th == root {
        Ok(())
    } else {
        Err(TreeError::ProofFailed)
    }
}

fn run_record_proof(p: &[Hash], lo: u64, hi: u64, n: u64, leaf: Hash) -> Result<Hash, TreeError> {
    if !(lo <= n && n < hi) {
        return Err(TreeError::BadMath("run_record_proof"));
    }
    if lo + 1 == hi {
        // The proof must not have unnecessary hashes.
        if !p.is_empty() {
            return Err(TreeError::ProofFailed);
        }
        return Ok(leaf);
    }
    let Some((last, rest)) = p.split_last() else {
        return Err(TreeError::ProofFailed);
    };
    let k = floor_pow2(hi - lo - 1);
    if n < lo + k {
        let th = run_record_proof(rest, lo, lo + k, n, leaf)?;
        Ok(node_hash(&th, last))
    } else {
        let th = run_record_proof(rest, lo + k, hi, n, leaf)?;
        Ok(node_hash(last, &th))
    }
}

// ---------------------------------------------------------------------------
// Tree (consistency) proofs
// ---------------------------------------------------------------------------

/// Consistency proof (RFC 9162 §2.1.4) that the tree of size `new_size`
/// contains the tree of size `old_size` as a prefix. Empty when
/// `old_size == 0` or `old_size == new_size`; errors if `old_size > new_size`.
pub fn prove_tree<R: HashReader + ?Sized>(
    new_size: u64,
    old_size: u64,
    reader: &R,
) -> Result<Vec<Hash>, TreeError> {
    if old_size > new_size {
        return Err(TreeError::InvalidInput(format!(
            "old size {old_size} exceeds new size {new_size}"
        )));
    }
    check_size("tree size", new_size)?;
    if old_size == 0 {
        return Ok(Vec::new());
    }
    let mut indexes = Vec::new();
    tree_proof_index(0, new_size, old_size, &mut indexes)?;
    if indexes.is_empty() {
        return Ok(Vec::new());
    }
    let hashes = read_exact(reader, &indexes)?;
    let (p, rest) = tree_proof(0, new_size, old_size, &hashes)?;
    if !rest.is_empty() {
        return Err(TreeError::BadMath("prove_tree"));
    }
    Ok(p)
}

fn tree_proof_index(lo: u64, hi: u64, n: u64, need: &mut Vec<u64>) -> Result<(), TreeError> {
    if !(lo < n && n <= hi) {
        return Err(TreeError::BadMath("tree_proof_index"));
    }
    if n == hi {
        if lo == 0 {
            return Ok(());
        }
        return sub_tree_index(lo, hi, need);
    }
    let k = floor_pow2(hi - lo - 1);
    if n <= lo + k {
        tree_proof_index(lo, lo + k, n, need)?;
        sub_tree_index(lo + k, hi, need)
    } else {
        sub_tree_index(lo, lo + k, need)?;
        tree_proof_index(lo + k, hi, n, need)
    }
}

fn tree_proof(
    lo: u64,
    hi: u64,
    n: u64,
    hashes: &[Hash],
) -> Result<(Vec<Hash>, &[Hash]), TreeError> {
    if !(lo < n && n <= hi) {
        return Err(TreeError::BadMath("tree_proof"));
    }
    if n == hi {
        if lo == 0 {
            // This subtree is exactly the old tree; the verifier knows its hash.
            return Ok((Vec::new(), hashes));
        }
        let (th, rest) = sub_tree_hash(lo, hi, hashes)?;
        return Ok((vec![th], rest));
    }
    let k = floor_pow2(hi - lo - 1);
    let (mut p, th, rest) = if n <= lo + k {
        let (p, rest) = tree_proof(lo, lo + k, n, hashes)?;
        let (th, rest) = sub_tree_hash(lo + k, hi, rest)?;
        (p, th, rest)
    } else {
        let (th, rest) = sub_tree_hash(lo, lo + k, hashes)?;
        let (p, rest) = tree_proof(lo + k, hi, n, rest)?;
        (p, th, rest)
    };
    p.push(th);
    Ok((p, rest))
}

/// Verifies that `proof` proves the tree of size `new_size` with root
/// `new_root` contains as a prefix the tree of size `old_size` with root
/// `old_root`. See the module docs for the `old_size == 0` and
/// `old_size == new_size` conventions.
pub fn check_tree(
    proof: &[Hash],
    new_size: u64,
    new_root: Hash,
    old_size: u64,
    old_root: Hash,
) -> Result<(), TreeError> {
    if old_size > new_size {
        return Err(TreeError::InvalidInput(format!(
            "old size {old_size} exceeds new size {new_size}"
        )));
    }
    if old_size == new_size {
        return if proof.is_empty() && old_root == new_root {
            Ok(())
        } else {
            Err(TreeError::ProofFailed)
        };
    }
    if old_size == 0 {
        return if proof.is_empty() {
            Ok(())
        } else {
            Err(TreeError::ProofFailed)
        };
    }
    let (oh, th) = run_tree_proof(proof, 0, new_size, old_size, old_root)?;
    if th == new_root && oh == old_root {
        Ok(())
    } else {
        Err(TreeError::ProofFailed)
    }
}

/// Runs the sub-proof for records `[lo, hi)` where the old tree has `n`
/// records and root `old`, returning the implied (old, new) subtree hashes.
fn run_tree_proof(
    p: &[Hash],
    lo: u64,
    hi: u64,
    n: u64,
    old: Hash,
) -> Result<(Hash, Hash), TreeError> {
    if !(lo < n && n <= hi) {
        return Err(TreeError::BadMath("run_tree_proof"));
    }
    if n == hi {
        if lo == 0 {
            if !p.is_empty() {
                return Err(TreeError::ProofFailed);
            }
            return Ok((old, old));
        }
        return match p {
            [h] => Ok((*h, *h)),
            _ => Err(TreeError::ProofFailed),
        };
    }
    let Some((last, rest)) = p.split_last() else {
        return Err(TreeError::ProofFailed);
    };
    let k = floor_pow2(hi - lo - 1);
    if n <= lo + k {
        let (oh, th) = run_tree_proof(rest, lo, lo + k, n, old)?;
        Ok((oh, node_hash(&th, last)))
    } else {
        let (oh, th) = run_tree_proof(rest, lo + k, hi, n, old)?;
        Ok((node_hash(last, &oh), node_hash(last, &th)))
    }
}

// ---------------------------------------------------------------------------
// In-memory tree
// ---------------------------------------------------------------------------

/// An in-memory tree: stored hashes kept in a `Vec` in stored-index order.
/// For tests, batch staging and benchmark floors; not a ledger.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryTree {
    stored: Vec<Hash>,
    size: u64,
}

impl MemoryTree {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty tree with room for `records` records' hashes.
    pub fn with_capacity(records: usize) -> Self {
        MemoryTree {
            stored: Vec::with_capacity(records.saturating_mul(2)),
            size: 0,
        }
    }

    /// Number of records.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// All stored hashes, in stored-index order
    /// (`len == stored_hash_count(self.size())`).
    pub fn stored_hashes(&self) -> &[Hash] {
        &self.stored
    }

    /// Appends a record by its leaf hash; returns the record's index.
    pub fn append(&mut self, leaf: Hash) -> Result<u64, TreeError> {
        let n = self.size;
        let new = stored_hashes_for_record_hash(n, leaf, self.stored.as_slice())?;
        self.stored.extend_from_slice(&new);
        self.size = n + 1;
        Ok(n)
    }

    /// Appends a record by its data; returns the record's index.
    pub fn append_data(&mut self, data: &[u8]) -> Result<u64, TreeError> {
        self.append(leaf_hash(data))
    }

    /// Appends several records (by leaf hash) via [`stored_hashes_for_batch`].
    pub fn append_batch(&mut self, leaves: &[Hash]) -> Result<(), TreeError> {
        let new = stored_hashes_for_batch(self.size, leaves, self.stored.as_slice())?;
        self.stored.extend_from_slice(&new);
        self.size += leaves.len() as u64;
        Ok(())
    }

    /// The leaf hash of record `index`, if present.
    pub fn leaf(&self, index: u64) -> Option<Hash> {
        if index >= self.size {
            return None;
        }
        usize::try_from(stored_hash_index(0, index))
            .ok()
            .and_then(|i| self.stored.get(i))
            .copied()
    }

    /// Current root hash.
    pub fn root(&self) -> Result<Hash, TreeError> {
        tree_hash(self.size, self)
    }

    /// Root hash of the prefix of `size` records.
    pub fn root_at(&self, size: u64) -> Result<Hash, TreeError> {
        self.check_prefix(size)?;
        tree_hash(size, self)
    }

    /// Inclusion proof of record `index` in the prefix of `tree_size` records.
    pub fn prove_record(&self, tree_size: u64, index: u64) -> Result<Vec<Hash>, TreeError> {
        self.check_prefix(tree_size)?;
        prove_record(tree_size, index, self)
    }

    /// Consistency proof between prefixes of `old_size` and `new_size` records.
    pub fn prove_tree(&self, new_size: u64, old_size: u64) -> Result<Vec<Hash>, TreeError> {
        self.check_prefix(new_size)?;
        prove_tree(new_size, old_size, self)
    }

    fn check_prefix(&self, size: u64) -> Result<(), TreeError> {
        if size > self.size {
            return Err(TreeError::InvalidInput(format!(
                "size {size} exceeds tree size {}",
                self.size
            )));
        }
        Ok(())
    }
}

impl HashReader for MemoryTree {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, TreeError> {
        self.stored.as_slice().read_hashes(indexes)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_arguments)]
mod tests {
    //! Vector sources (all from github.com/transparency-dev/merkle unless noted):
    //! * `testonly/constants.go`: `LeafInputs`, `NodeHashes`, `RootHashes`.
    //! * `proof/verify_test.go`: `inclusionProofs`, `consistencyProofs`,
    //!   `roots`, the corruption generators and the edge-case tables.
    //! * `testonly/reference_test.go`: reference proofs and the naive
    //!   reference algorithms ported below as `ref_*`.
    //! * `rfc6962/rfc6962_test.go`: hasher known answers.
    //! * `proof/proof_test.go`: node-id structure of proofs for the RFC 6962
    //!   §2.1.3 seven-leaf example tree and larger "rehash" cases.
    //! * `testdata/{inclusion,consistency}/…/*.json`: a sample of the
    //!   serialized probes, embedded verbatim.
    use super::*;
    use proptest::prelude::*;

    fn h(s: &str) -> Hash {
        parse_hash_hex(s).unwrap()
    }

    fn hs(v: &[&str]) -> Vec<Hash> {
        v.iter().map(|s| h(s)).collect()
    }

    // testonly/constants.go LeafInputs()
    const LEAF_INPUTS: [&str; 8] = [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ];

    fn leaf_inputs() -> Vec<Vec<u8>> {
        LEAF_INPUTS
            .iter()
            .map(|s| hex::decode(s).unwrap())
            .collect()
    }

    // testonly/constants.go NodeHashes()
    const NODE_HASHES: [&[&str]; 4] = [
        &[
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
            "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
        ],
        &[
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        ],
        &[
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
        &["5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"],
    ];

    fn nh(level: usize, i: usize) -> Hash {
        h(NODE_HASHES[level][i])
    }

    // testonly/constants.go RootHashes(), indexed by tree size 0..=8.
    const ROOT_HASHES: [&str; 9] = [
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    fn root(size: usize) -> Hash {
        h(ROOT_HASHES[size])
    }

    // proof/verify_test.go sha256SomeHash / sha256EmptyTreeHash.
    const SOME_HASH: &str = "abacaba000000000000000000000000000000000000000000060061e00123456";
    const EMPTY_TREE_HASH: &str =
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    /// Go's tests use short byte strings ("WrongLeaf", []byte{}) where a hash
    /// is expected; our `Hash` is fixed-size, so pad them with zeros.
    fn padded(s: &[u8]) -> Hash {
        let mut out = [0u8; HASH_SIZE];
        out[..s.len()].copy_from_slice(s);
        out
    }

    fn tree8() -> MemoryTree {
        let mut t = MemoryTree::new();
        for d in leaf_inputs() {
            t.append_data(&d).unwrap();
        }
        t
    }

    fn gen_leaves(seed: u64, n: u64) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| format!("warden leaf {seed}/{i}").into_bytes())
            .collect()
    }

    // ---- naive RFC 6962 reference (port of testonly/reference_test.go) ----

    fn down_pow2(x: usize) -> usize {
        assert!(x >= 2);
        1usize << (usize::BITS - (x - 1).leading_zeros() - 1)
    }

    fn ref_root(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let k = down_pow2(n);
                node_hash(&ref_root(&leaves[..k]), &ref_root(&leaves[k..]))
            }
        }
    }

    fn ref_inclusion(leaves: &[Hash], index: usize) -> Vec<Hash> {
        let size = leaves.len();
        if size == 1 || index >= size {
            return vec![];
        }
        let k = down_pow2(size);
        if index < k {
            let mut p = ref_inclusion(&leaves[..k], index);
            p.push(ref_root(&leaves[k..]));
            p
        } else {
            let mut p = ref_inclusion(&leaves[k..], index - k);
            p.push(ref_root(&leaves[..k]));
            p
        }
    }

    fn ref_consistency(leaves: &[Hash], size2: usize, size1: usize, have_root1: bool) -> Vec<Hash> {
        if size1 == 0 || size1 > size2 {
            return vec![];
        }
        if size1 == size2 {
            return if have_root1 {
                vec![]
            } else {
                vec![ref_root(&leaves[..size1])]
            };
        }
        let k = down_pow2(size2);
        if size1 <= k {
            let mut p = ref_consistency(&leaves[..k], k, size1, have_root1);
            p.push(ref_root(&leaves[k..size2]));
            p
        } else {
            let mut p = ref_consistency(&leaves[k..size2], size2 - k, size1 - k, false);
            p.push(ref_root(&leaves[..k]));
            p
        }
    }

    // ---- corruption generators (port of proof/verify_test.go) ----

    struct InclusionProbe {
        index: u64,
        size: u64,
        root: Hash,
        leaf: Hash,
        proof: Vec<Hash>,
        desc: String,
    }

    fn with(proof: &[Hash], front: &[Hash], back: &[Hash]) -> Vec<Hash> {
        front.iter().chain(proof).chain(back).copied().collect()
    }

    fn corrupt_inclusion(
        index: u64,
        size: u64,
        proof: &[Hash],
        root: Hash,
        leaf: Hash,
    ) -> Vec<InclusionProbe> {
        let some = h(SOME_HASH);
        let garbage = padded(b"");
        let p = |index, size, root, leaf, proof: Vec<Hash>, desc: &str| InclusionProbe {
            index,
            size,
            root,
            leaf,
            proof,
            desc: desc.to_string(),
        };
        let mut ret = vec![
            p(
                index.wrapping_sub(1),
                size,
                root,
                leaf,
                proof.to_vec(),
                "leafIndex - 1",
            ),
            p(index + 1, size, root, leaf, proof.to_vec(), "leafIndex + 1"),
            p(index ^ 2, size, root, leaf, proof.to_vec(), "leafIndex ^ 2"),
            p(index, size * 2, root, leaf, proof.to_vec(), "treeSize * 2"),
            p(index, size / 2, root, leaf, proof.to_vec(), "treeSize / 2"),
            p(
                index,
                size,
                root,
                padded(b"WrongLeaf"),
                proof.to_vec(),
                "wrong leaf",
            ),
            p(
                index,
                size,
                h(EMPTY_TREE_HASH),
                leaf,
                proof.to_vec(),
                "empty root",
            ),
            p(index, size, some, leaf, proof.to_vec(), "random root"),
            p(
                index,
                size,
                root,
                leaf,
                with(proof, &[], &[garbage]),
                "trailing garbage",
            ),
            p(
                index,
                size,
                root,
                leaf,
                with(proof, &[], &[root]),
                "trailing root",
            ),
            p(
                index,
                size,
                root,
                leaf,
                with(proof, &[garbage], &[]),
                "preceding garbage",
            ),
            p(
                index,
                size,
                root,
                leaf,
                with(proof, &[root], &[]),
                "preceding root",
            ),
        ];
        for i in 0..proof.len() {
            let mut w = proof.to_vec();
            w[i][0] ^= 8;
            ret.push(p(
                index,
                size,
                root,
                leaf,
                w,
                &format!("modified proof[{i}] bit 3"),
            ));
        }
        if !proof.is_empty() {
            ret.push(p(
                index,
                size,
                root,
                leaf,
                proof[..proof.len() - 1].to_vec(),
                "removed component",
            ));
        }
        if proof.len() > 1 {
            let w = with(&proof[1..], &[proof[0], some], &[]);
            ret.push(p(index, size, root, leaf, w, "inserted component"));
        }
        ret
    }

    struct ConsistencyProbe {
        size1: u64,
        size2: u64,
        root1: Hash,
        root2: Hash,
        proof: Vec<Hash>,
        desc: String,
    }

    fn corrupt_consistency(
        size1: u64,
        size2: u64,
        root1: Hash,
        root2: Hash,
        proof: &[Hash],
    ) -> Vec<ConsistencyProbe> {
        let garbage = padded(b"");
        let wrong = padded(b"WrongRoot");
        let p = |size1, size2, root1, root2, proof: Vec<Hash>, desc: &str| ConsistencyProbe {
            size1,
            size2,
            root1,
            root2,
            proof,
            desc: desc.to_string(),
        };
        let mut ret = vec![
            p(
                size1.wrapping_sub(1),
                size2,
                root1,
                root2,
                proof.to_vec(),
                "size1 - 1",
            ),
            p(size1 + 1, size2, root1, root2, proof.to_vec(), "size1 + 1"),
            p(size1 ^ 2, size2, root1, root2, proof.to_vec(), "size1 ^ 2"),
            p(size1, size2 * 2, root1, root2, proof.to_vec(), "size2 * 2"),
            p(size1, size2 / 2, root1, root2, proof.to_vec(), "size2 / 2"),
            p(size1, size2, wrong, root2, proof.to_vec(), "wrong root1"),
            p(size1, size2, root1, wrong, proof.to_vec(), "wrong root2"),
            p(size1, size2, root2, root1, proof.to_vec(), "swapped roots"),
            p(size1, size2, root1, root2, vec![], "empty proof"),
            p(
                size1,
                size2,
                root1,
                root2,
                with(proof, &[], &[garbage]),
                "trailing garbage",
            ),
            p(
                size1,
                size2,
                root1,
                root2,
                with(proof, &[], &[root1]),
                "trailing root1",
            ),
            p(
                size1,
                size2,
                root1,
                root2,
                with(proof, &[], &[root2]),
                "trailing root2",
            ),
            p(
                size1,
                size2,
                root1,
                root2,
                with(proof, &[garbage], &[]),
                "preceding garbage",
            ),
            p(
                size1,
                size2,
                root1,
                root2,
                with(proof, &[root1], &[]),
                "preceding root1",
            ),
            p(
                size1,
                size2,
                root1,
                root2,
                with(proof, &[root2], &[]),
                "preceding root2",
            ),
            p(
                size1,
                size2,
                root1,
                root2,
                with(proof, &[proof[0]], &[]),
                "preceding proof[0]",
            ),
        ];
        if !proof.is_empty() {
            ret.push(p(
                size1,
                size2,
                root1,
                root2,
                proof[..proof.len() - 1].to_vec(),
                "truncated proof",
            ));
        }
        for i in 0..proof.len() {
            let mut w = proof.to_vec();
            w[i][0] ^= 16;
            ret.push(p(
                size1,
                size2,
                root1,
                root2,
                w,
                &format!("modified proof[{i}] bit 4"),
            ));
        }
        ret
    }

    fn verifier_check(index: u64, size: u64, proof: &[Hash], root: Hash, leaf: Hash) -> usize {
        check_record(proof, size, root, index, leaf).unwrap();
        let probes = corrupt_inclusion(index, size, proof, root, leaf);
        for p in &probes {
            assert!(
                check_record(&p.proof, p.size, p.root, p.index, p.leaf).is_err(),
                "incorrectly verified {} for index {index} size {size}",
                p.desc
            );
        }
        probes.len()
    }

    fn verifier_consistency_check(
        size1: u64,
        size2: u64,
        proof: &[Hash],
        root1: Hash,
        root2: Hash,
    ) -> Result<usize, TreeError> {
        check_tree(proof, size2, root2, size1, root1)?;
        if proof.is_empty() {
            return Ok(0);
        }
        let probes = corrupt_consistency(size1, size2, root1, root2, proof);
        for p in &probes {
            assert!(
                check_tree(&p.proof, p.size2, p.root2, p.size1, p.root1).is_err(),
                "incorrectly verified {} for {size1}->{size2}",
                p.desc
            );
        }
        Ok(probes.len())
    }

    // ======================= known-answer tests =======================

    #[test]
    fn hasher_known_answers() {
        // rfc6962/rfc6962_test.go
        assert_eq!(
            empty_root(),
            h("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        );
        assert_eq!(
            leaf_hash(b""),
            h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d")
        );
        assert_eq!(
            leaf_hash(b"L123456"),
            h("395aa064aa4c29f7010acfe3f25db9485bbd4b91897b6ad7ad547639252b4d56")
        );
        // ("RFC6962 Node" uses 4-byte children, not representable as Hash.)
        assert_ne!(empty_root(), leaf_hash(b""));
        let (a, b) = (leaf_hash(b"Hello"), leaf_hash(b"World"));
        assert_ne!(node_hash(&a, &b), node_hash(&b, &a));
        assert_ne!(node_hash(&a, &b), leaf_hash(&[a, b].concat()));
        // base64/hex helpers round-trip.
        assert_eq!(parse_hash_base64(&hash_to_base64(&a)).unwrap(), a);
        assert_eq!(parse_hash_hex(&hash_to_hex(&a)).unwrap(), a);
        assert_eq!(parse_hash_base64("AAAA"), Err(TreeError::MalformedHash));
        assert_eq!(parse_hash_hex("zz"), Err(TreeError::MalformedHash));
    }

    #[test]
    fn roots_and_stored_node_hashes_for_standard_leaves() {
        let t = tree8();
        for size in 0..=8u64 {
            assert_eq!(
                tree_hash(size, &t).unwrap(),
                root(size as usize),
                "root of size {size}"
            );
            assert_eq!(t.root_at(size).unwrap(), root(size as usize));
        }
        // Every complete subtree hash is stored at its stored_hash_index.
        for (level, row) in NODE_HASHES.iter().enumerate() {
            for i in 0..row.len() {
                let idx = stored_hash_index(level as u32, i as u64) as usize;
                assert_eq!(t.stored_hashes()[idx], nh(level, i), "node ({level},{i})");
            }
        }
        assert_eq!(t.stored_hashes().len() as u64, stored_hash_count(8));
        assert_eq!(t.stored_hashes().len(), 15);
    }

    #[test]
    fn verify_test_inclusion_vectors_and_corruptions() {
        // proof/verify_test.go inclusionProofs: (1-based leaf, size, proof).
        let vectors: Vec<(u64, u64, Vec<Hash>)> = vec![
            (1, 1, vec![]),
            (
                1,
                8,
                hs(&[
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ]),
            ),
            (
                6,
                8,
                hs(&[
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ]),
            ),
            (
                3,
                3,
                hs(&["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
            ),
            (
                2,
                5,
                hs(&[
                    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ]),
            ),
        ];
        let t = tree8();
        let inputs = leaf_inputs();
        let mut probes = 0;
        for (leaf1, size, proof) in vectors {
            let index = leaf1 - 1;
            let lh = leaf_hash(&inputs[index as usize]);
            assert_eq!(
                t.prove_record(size, index).unwrap(),
                proof,
                "prove_record({size},{index})"
            );
            probes += verifier_check(index, size, &proof, root(size as usize), lh);
        }
        assert!(probes > 60, "ran {probes} corrupted probes");
    }

    #[test]
    fn reference_test_inclusion_vectors() {
        // testonly/reference_test.go TestRefInclusionProof: (index, size, proof).
        let a = "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d";
        let b = "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7";
        let g = "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125";
        let h_ = "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e";
        let e = "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b";
        let l8 = "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4";
        let j = "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0";
        let k = "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7";
        let cases: Vec<(u64, u64, Vec<&str>)> = vec![
            (0, 1, vec![]),
            (0, 2, vec![b]),
            (1, 2, vec![a]),
            (2, 3, vec![g]),
            (1, 5, vec![a, h_, e]),
            (0, 8, vec![b, h_, l8]),
            (5, 8, vec![e, j, k]),
        ];
        let t = tree8();
        for (index, size, want) in cases {
            assert_eq!(
                t.prove_record(size, index).unwrap(),
                hs(&want),
                "({index},{size})"
            );
        }
    }

    #[test]
    fn verify_test_consistency_vectors_and_corruptions() {
        // proof/verify_test.go consistencyProofs: (size1, size2, proof).
        let vectors: Vec<(u64, u64, Vec<Hash>)> = vec![
            (1, 1, vec![]),
            (
                1,
                8,
                hs(&[
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ]),
            ),
            (
                6,
                8,
                hs(&[
                    "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ]),
            ),
            (
                2,
                5,
                hs(&[
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ]),
            ),
            (
                6,
                7,
                hs(&[
                    "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                    "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ]),
            ),
        ];
        let t = tree8();
        let mut probes = 0;
        for (size1, size2, proof) in vectors {
            assert_eq!(
                t.prove_tree(size2, size1).unwrap(),
                proof,
                "prove_tree({size2},{size1})"
            );
            probes += verifier_consistency_check(
                size1,
                size2,
                &proof,
                root(size1 as usize),
                root(size2 as usize),
            )
            .unwrap();
        }
        assert!(probes > 60, "ran {probes} corrupted probes");
    }

    #[test]
    fn verify_test_consistency_edge_table() {
        // proof/verify_test.go TestVerifyConsistency table.
        let root1 = padded(b"don't care 1");
        let root2 = padded(b"don't care 2");
        let e = h(EMPTY_TREE_HASH);
        let p1: Vec<Hash> = vec![];
        let p2: Vec<Hash> = vec![e];
        type Case<'a> = (u64, u64, Hash, Hash, &'a Vec<Hash>, bool);
        let cases: Vec<Case> = vec![
            (0, 0, root1, root2, &p1, true),
            (1, 1, root1, root2, &p1, true),
            // Sizes that are always consistent.
            (0, 0, root1, root1, &p1, false),
            (0, 1, root1, root2, &p1, false),
            (1, 1, root2, root2, &p1, false),
            // Time travel to the past.
            (1, 0, root1, root2, &p1, true),
            (2, 1, root1, root2, &p1, true),
            // Empty proof.
            (1, 2, root1, root2, &p1, true),
            // Roots don't match.
            (0, 0, e, root2, &p1, true),
            (1, 1, e, root2, &p1, true),
            // Roots match but the proof is not empty.
            (0, 0, e, e, &p2, true),
            (0, 1, e, e, &p2, true),
            (1, 1, e, e, &p2, true),
        ];
        for (i, (s1, s2, r1, r2, proof, want_err)) in cases.into_iter().enumerate() {
            let got = verifier_consistency_check(s1, s2, proof, r1, r2);
            assert_eq!(got.is_err(), want_err, "case {i}: {s1}->{s2}: {got:?}");
        }
        // Our prove side of the same conventions.
        let t = tree8();
        assert_eq!(t.prove_tree(0, 0).unwrap(), Vec::<Hash>::new());
        assert_eq!(t.prove_tree(5, 0).unwrap(), Vec::<Hash>::new());
        assert_eq!(t.prove_tree(5, 5).unwrap(), Vec::<Hash>::new());
        assert!(matches!(
            t.prove_tree(1, 2),
            Err(TreeError::InvalidInput(_))
        ));
        assert!(matches!(
            check_tree(&[], 1, root1, 2, root1),
            Err(TreeError::InvalidInput(_))
        ));
    }

    #[test]
    fn verify_test_inclusion_edge_probes() {
        // proof/verify_test.go TestVerifyInclusion: bad sizes with empty proofs.
        let some = h(SOME_HASH);
        let e = h(EMPTY_TREE_HASH);
        let empty = padded(b"");
        for (index, size) in [(0u64, 0u64), (0, 1), (1, 0), (2, 1)] {
            assert!(check_record(&[], size, empty, index, some).is_err());
            assert!(check_record(&[], size, e, index, empty).is_err());
            assert!(check_record(&[], size, e, index, some).is_err());
        }
        // TestVerifyInclusionSingleEntry.
        let hd = leaf_hash(b"data");
        check_record(&[], 1, hd, 0, hd).unwrap();
        assert_eq!(
            check_record(&[], 1, hd, 0, empty),
            Err(TreeError::ProofFailed)
        );
        assert_eq!(
            check_record(&[], 1, empty, 0, hd),
            Err(TreeError::ProofFailed)
        );
        // Index out of range is an input error, on both sides.
        let t = tree8();
        assert!(matches!(
            t.prove_record(3, 3),
            Err(TreeError::InvalidInput(_))
        ));
        assert!(matches!(
            prove_record(0, 0, &t),
            Err(TreeError::InvalidInput(_))
        ));
        assert!(matches!(
            check_record(&[], 3, hd, 3, hd),
            Err(TreeError::InvalidInput(_))
        ));
        // Hostile sizes never panic.
        assert!(check_record(&[some; 70], u64::MAX, some, u64::MAX - 1, some).is_err());
        assert!(check_tree(&[some; 70], u64::MAX, some, u64::MAX - 1, some).is_err());
        assert!(check_tree(&[some; 3], u64::MAX, some, 1, some).is_err());
        assert!(prove_record(u64::MAX, 5, &t).is_err());
        assert!(prove_tree(u64::MAX, 5, &t).is_err());
        assert!(tree_hash(u64::MAX, &t).is_err());
        assert!(stored_hashes_for_record_hash(u64::MAX, some, &t).is_err());
        let _ = split_stored_hash_index(u64::MAX);
        let _ = stored_hash_index(200, u64::MAX);
    }

    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct InclusionJson {
        leaf_idx: u64,
        tree_size: u64,
        root: String,
        leaf_hash: String,
        proof: Vec<String>,
        want_err: bool,
    }

    #[derive(serde::Deserialize)]
    struct ConsistencyJson {
        size1: u64,
        size2: u64,
        root1: String,
        root2: String,
        proof: Vec<String>,
        #[serde(rename = "wantErr")]
        want_err: bool,
    }

    fn b64s(v: &[String]) -> Vec<Hash> {
        v.iter().map(|s| parse_hash_base64(s).unwrap()).collect()
    }

    #[test]
    fn transparency_dev_testdata_json_samples() {
        // Verbatim from transparency-dev/merkle testdata/inclusion/…
        let inclusion = [
            // testdata/inclusion/1/happy-path.json
            r#"{"leafIdx":0,"treeSize":8,"root":"XcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=","leafHash":"bjQLnP+zepicpUTmu3gKLHiQHT+zNzh2hRGjBhevoB0=","proof":["lqKW0iTyhcZ77pPDD4owkVfw2qNdxbh+QQt4YwoJz8c=","Xwg/ChozygdqlSeYMlgNs+DvRYS9/x9UyKNg9Q3jAx4=","a0eq8p7jwq+a+Im8H7klTavTEXfxYjLdaqsDXKOb9uQ="],"desc":"happy path","wantErr":false}"#,
            // testdata/inclusion/1/leafIdx-+-1.json
            r#"{"leafIdx":1,"treeSize":8,"root":"XcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=","leafHash":"bjQLnP+zepicpUTmu3gKLHiQHT+zNzh2hRGjBhevoB0=","proof":["lqKW0iTyhcZ77pPDD4owkVfw2qNdxbh+QQt4YwoJz8c=","Xwg/ChozygdqlSeYMlgNs+DvRYS9/x9UyKNg9Q3jAx4=","a0eq8p7jwq+a+Im8H7klTavTEXfxYjLdaqsDXKOb9uQ="],"desc":"leafIdx + 1","wantErr":true}"#,
            // testdata/inclusion/2/modified-proof[2]-bit-3.json
            r#"{"leafIdx":5,"treeSize":8,"root":"XcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=","leafHash":"QnGia+DYqE8L1UyMMC58s6O10fpngKQLzOKHNHfatlg=","proof":["vBoGQ7EuTS18d5GPROD095qDi2z57FtcKD4fTYhZnms=","yoVOoSjtBQtBs1/8G4e46yveRh6eO1WW7Oa51ZdaCuA=","237kGJdt2VdTwcc4Yrk5j6Kiz5tP8P3+izDNlSCWFLc="],"desc":"modified proof[2] bit 3","wantErr":true}"#,
        ];
        for s in inclusion {
            let c: InclusionJson = serde_json::from_str(s).unwrap();
            let got = check_record(
                &b64s(&c.proof),
                c.tree_size,
                parse_hash_base64(&c.root).unwrap(),
                c.leaf_idx,
                parse_hash_base64(&c.leaf_hash).unwrap(),
            );
            assert_eq!(got.is_err(), c.want_err, "{s}");
        }
        let consistency = [
            // testdata/consistency/1/happy-path.json
            r#"{"size1":1,"size2":8,"root1":"bjQLnP+zepicpUTmu3gKLHiQHT+zNzh2hRGjBhevoB0=","root2":"XcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=","proof":["lqKW0iTyhcZ77pPDD4owkVfw2qNdxbh+QQt4YwoJz8c=","Xwg/ChozygdqlSeYMlgNs+DvRYS9/x9UyKNg9Q3jAx4=","a0eq8p7jwq+a+Im8H7klTavTEXfxYjLdaqsDXKOb9uQ="],"desc":"happy path","wantErr":false}"#,
            // testdata/consistency/1/modified-proof[1]-bit-4.json
            r#"{"size1":1,"size2":8,"root1":"bjQLnP+zepicpUTmu3gKLHiQHT+zNzh2hRGjBhevoB0=","root2":"XcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=","proof":["lqKW0iTyhcZ77pPDD4owkVfw2qNdxbh+QQt4YwoJz8c=","Twg/ChozygdqlSeYMlgNs+DvRYS9/x9UyKNg9Q3jAx4=","a0eq8p7jwq+a+Im8H7klTavTEXfxYjLdaqsDXKOb9uQ="],"desc":"modified proof[1] bit 4","wantErr":true}"#,
            // testdata/consistency/1/preceding-proof[0].json
            r#"{"size1":1,"size2":8,"root1":"bjQLnP+zepicpUTmu3gKLHiQHT+zNzh2hRGjBhevoB0=","root2":"XcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=","proof":["lqKW0iTyhcZ77pPDD4owkVfw2qNdxbh+QQt4YwoJz8c=","lqKW0iTyhcZ77pPDD4owkVfw2qNdxbh+QQt4YwoJz8c=","Xwg/ChozygdqlSeYMlgNs+DvRYS9/x9UyKNg9Q3jAx4=","a0eq8p7jwq+a+Im8H7klTavTEXfxYjLdaqsDXKOb9uQ="],"desc":"preceding proof[0]","wantErr":true}"#,
        ];
        for s in consistency {
            let c: ConsistencyJson = serde_json::from_str(s).unwrap();
            let got = check_tree(
                &b64s(&c.proof),
                c.size2,
                parse_hash_base64(&c.root2).unwrap(),
                c.size1,
                parse_hash_base64(&c.root1).unwrap(),
            );
            assert_eq!(got.is_err(), c.want_err, "{s}");
        }
    }

    #[test]
    fn rfc6962_seven_leaf_example() {
        // RFC 6962 §2.1.3 tree of 7 leaves d0..d6 (leaf data = LeafInputs()[..7]),
        // node naming and proof shapes from proof/proof_test.go.
        let mut t = MemoryTree::new();
        for d in &leaf_inputs()[..7] {
            t.append_data(d).unwrap();
        }
        let [a, b, c, d, e, f, j] = [0, 1, 2, 3, 4, 5, 6].map(|i| nh(0, i));
        let [g, h_, i] = [0, 1, 2].map(|x| nh(1, x));
        let k = nh(2, 0);
        let l = node_hash(&i, &j);
        let r7 = node_hash(&k, &l);
        assert_eq!(r7, root(7));
        assert_eq!(t.root().unwrap(), r7);

        // Inclusion in the size-7 tree (RFC: a:[b,h,l], d:[c,g,l], j:[i,k]).
        let incl = [
            (0, vec![b, h_, l]),
            (1, vec![a, h_, l]),
            (2, vec![d, g, l]),
            (3, vec![c, g, l]),
            (4, vec![f, j, k]),
            (5, vec![e, j, k]),
            (6, vec![i, k]),
        ];
        let leaves = [a, b, c, d, e, f, j];
        for (idx, want) in incl {
            assert_eq!(t.prove_record(7, idx).unwrap(), want, "inclusion of {idx}");
            check_record(&want, 7, r7, idx, leaves[idx as usize]).unwrap();
        }
        // Consistency to size 7 (RFC: 3->7 [c,d,g,l], 4->7 [l], 6->7 [i,j,k]).
        let cons = [
            (1, vec![b, h_, l]),
            (3, vec![c, d, g, l]),
            (4, vec![l]),
            (5, vec![e, f, j, k]),
            (6, vec![i, j, k]),
            (7, vec![]),
        ];
        for (old, want) in cons {
            assert_eq!(t.prove_tree(7, old).unwrap(), want, "consistency {old}->7");
            check_tree(&want, 7, r7, old, root(old as usize)).unwrap();
        }
        // Smaller trees within the stored tree (proof/proof_test.go).
        let small_incl = [
            (1, 0, vec![]),
            (2, 0, vec![b]),
            (2, 1, vec![a]),
            (3, 1, vec![a, c]),
            (4, 2, vec![d, g]),
            (5, 3, vec![c, g, e]),
            (6, 3, vec![c, g, i]),
            (6, 4, vec![f, k]),
        ];
        for (size, idx, want) in small_incl {
            assert_eq!(
                t.prove_record(size, idx).unwrap(),
                want,
                "inclusion {idx} in {size}"
            );
        }
        let small_cons = [
            (1, 2, vec![b]),
            (1, 4, vec![b, h_]),
            (1, 6, vec![b, h_, i]),
            (2, 3, vec![c]),
            (2, 4, vec![h_]),
            (3, 5, vec![c, d, g, e]),
            (3, 6, vec![c, d, g, i]),
            (4, 6, vec![i]),
        ];
        for (s1, s2, want) in small_cons {
            assert_eq!(
                t.prove_tree(s2, s1).unwrap(),
                want,
                "consistency {s1}->{s2}"
            );
            check_tree(&want, s2, root(s2 as usize), s1, root(s1 as usize)).unwrap();
        }
        // With the 8th leaf: 7->8 is [j, leaf#7, i, k]; 2->8 is [h, l8].
        let t8 = tree8();
        assert_eq!(t8.prove_tree(8, 7).unwrap(), vec![j, nh(0, 7), i, k]);
        assert_eq!(t8.prove_tree(8, 2).unwrap(), vec![h_, nh(2, 1)]);
        // Error cases from proof_test.go.
        for (size, idx) in [(0, 0), (0, 1), (1, 2), (0, 3), (7, 8)] {
            assert!(t.prove_record(size, idx).is_err());
        }
        assert!(t8.prove_tree(0, 5).is_err());
        assert!(t8.prove_tree(8, 9).is_err());
    }

    #[test]
    fn rehash_cases_match_reference() {
        // proof/proof_test.go "rehashes in the middle" sizes, against the
        // naive reference on generated leaves.
        let data = gen_leaves(7, 95);
        let lh: Vec<Hash> = data.iter().map(|d| leaf_hash(d)).collect();
        let mut t = MemoryTree::new();
        for l in &lh {
            t.append(*l).unwrap();
        }
        for (size, idx) in [(15usize, 10usize), (31, 24), (95, 81)] {
            let want = ref_inclusion(&lh[..size], idx);
            assert_eq!(t.prove_record(size as u64, idx as u64).unwrap(), want);
        }
        for (s1, s2) in [(10usize, 15usize), (24, 31), (81, 95)] {
            let want = ref_consistency(&lh[..s2], s2, s1, true);
            assert_eq!(t.prove_tree(s2 as u64, s1 as u64).unwrap(), want);
        }
    }

    // ======================= stored index layout =======================

    #[test]
    fn stored_hash_index_layout() {
        // Layout for the first records (Go tlog_test.go: TestStoredHashIndex
        // round trip; explicit small values from the layout definition).
        let want = [
            (0u32, 0u64, 0u64),
            (0, 1, 1),
            (1, 0, 2),
            (0, 2, 3),
            (0, 3, 4),
            (1, 1, 5),
            (2, 0, 6),
            (0, 4, 7),
        ];
        for (level, n, idx) in want {
            assert_eq!(stored_hash_index(level, n), idx);
            assert_eq!(split_stored_hash_index(idx), (level, n));
        }
        for index in 0..20_000u64 {
            let (level, n) = split_stored_hash_index(index);
            assert_eq!(stored_hash_index(level, n), index);
            let (tl, tn) = tlog_tiles::split_stored_hash_index(index);
            assert_eq!((u32::from(tl), tn), (level, n));
        }
        for level in 0..20u32 {
            for n in 0..500u64 {
                let idx = stored_hash_index(level, n);
                assert_eq!(split_stored_hash_index(idx), (level, n));
                assert_eq!(idx, tlog_tiles::stored_hash_index(level as u8, n));
            }
        }
        let mut t = MemoryTree::new();
        for n in 0..3000u64 {
            assert_eq!(stored_hash_count(n), tlog_tiles::stored_hash_count(n));
            assert_eq!(stored_hash_count(n), stored_hash_index(0, n));
            assert_eq!(t.stored_hashes().len() as u64, stored_hash_count(n));
            t.append_data(&n.to_le_bytes()).unwrap();
        }
        // Largest supported size stays in range.
        let last = MAX_TREE_SIZE - 1;
        assert_eq!(
            split_stored_hash_index(stored_hash_index(0, last)),
            (0, last)
        );
        assert_eq!(split_stored_hash_index(stored_hash_index(62, 0)), (62, 0));
        assert!(stored_hash_count(MAX_TREE_SIZE) < u64::MAX / 2 + 64);
    }

    // ======================= overlay / batches =======================

    #[test]
    fn overlay_reads_pending_over_base() {
        let base: Vec<Hash> = (0..10u8).map(|i| [i; 32]).collect();
        let pending: Vec<Hash> = (10..13u8).map(|i| [i; 32]).collect();
        let o = Overlay::new(base.as_slice(), 10, &pending);
        assert_eq!(o.read_hashes(&[]).unwrap(), Vec::<Hash>::new());
        assert_eq!(
            o.read_hashes(&[3, 11, 0, 12, 10]).unwrap(),
            vec![[3; 32], [11; 32], [0; 32], [12; 32], [10; 32]]
        );
        assert_eq!(o.read_hashes(&[1, 13]), Err(TreeError::MissingHash(13)));
        // Base errors propagate; base is asked only for indexes below start.
        let failing = HashReaderFn(|idx: &[u64]| {
            assert!(idx.iter().all(|&i| i < 10));
            Err(TreeError::Storage("disk on fire".into()))
        });
        let o = Overlay::new(&failing, 10, &pending);
        assert_eq!(o.read_hashes(&[10, 11]).unwrap(), vec![[10; 32], [11; 32]]);
        assert_eq!(
            o.read_hashes(&[2, 11]),
            Err(TreeError::Storage("disk on fire".into()))
        );
        // Short reads from a broken base are detected.
        let short = HashReaderFn(|_: &[u64]| Ok(vec![]));
        let o = Overlay::new(&short, 10, &pending);
        assert_eq!(
            o.read_hashes(&[2]),
            Err(TreeError::ShortRead { want: 1, got: 0 })
        );
        assert_eq!(
            tree_hash(3, &short),
            Err(TreeError::ShortRead { want: 2, got: 0 })
        );
    }

    #[test]
    fn batch_append_matches_one_by_one() {
        let data = gen_leaves(3, 600);
        let lh: Vec<Hash> = data.iter().map(|d| leaf_hash(d)).collect();
        let mut one = MemoryTree::new();
        for l in &lh {
            one.append(*l).unwrap();
        }
        for (start, len) in [
            (0usize, 0usize),
            (0, 1),
            (0, 600),
            (1, 1),
            (5, 27),
            (127, 2),
            (255, 345),
            (511, 89),
            (600, 0),
        ] {
            let mut base = MemoryTree::new();
            for l in &lh[..start] {
                base.append(*l).unwrap();
            }
            // Sequencer style: stored hashes for the whole batch, computed
            // through an overlay over the committed base.
            let new = stored_hashes_for_batch(
                start as u64,
                &lh[start..start + len],
                base.stored_hashes(),
            )
            .unwrap();
            let from = stored_hash_count(start as u64) as usize;
            let to = stored_hash_count((start + len) as u64) as usize;
            assert_eq!(
                new.as_slice(),
                &one.stored_hashes()[from..to],
                "batch {start}+{len}"
            );
            base.append_batch(&lh[start..start + len]).unwrap();
            assert_eq!(base.stored_hashes(), &one.stored_hashes()[..to]);
            assert_eq!(
                base.root().unwrap(),
                one.root_at((start + len) as u64).unwrap()
            );
        }
        // Without the overlay, record n+1 cannot see record n's pending hashes.
        let base = MemoryTree::new();
        let first = stored_hashes_for_record_hash(0, lh[0], base.stored_hashes()).unwrap();
        assert_eq!(
            stored_hashes_for_record_hash(1, lh[1], base.stored_hashes()),
            Err(TreeError::MissingHash(0))
        );
        let o = Overlay::new(base.stored_hashes(), 0, &first);
        let second = stored_hashes_for_record_hash(1, lh[1], &o).unwrap();
        assert_eq!(second, vec![lh[1], node_hash(&lh[0], &lh[1])]);
    }

    // ======================= cross-implementation checks =======================

    type CtTree = ct_merkle::mem_backed_tree::MemoryBackedTree<sha2_011::Sha256, Vec<u8>>;

    struct TlogReader<'a>(&'a [Hash]);

    impl tlog_tiles::HashReader for TlogReader<'_> {
        fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<tlog_tiles::Hash>, tlog_tiles::Error> {
            indexes
                .iter()
                .map(|&i| {
                    self.0
                        .get(i as usize)
                        .map(|h| tlog_tiles::Hash(*h))
                        .ok_or(tlog_tiles::Error::IndexesNotInTree)
                })
                .collect()
        }
    }

    fn to_tlog(p: &[Hash]) -> Vec<tlog_tiles::Hash> {
        p.iter().map(|h| tlog_tiles::Hash(*h)).collect()
    }

    fn flat(p: &[Hash]) -> Vec<u8> {
        p.concat()
    }

    fn ct_root(ct: &CtTree) -> Hash {
        ct.root().as_bytes().as_slice().try_into().unwrap()
    }

    /// Checks one inclusion proof of ours against ct-merkle, tlog_tiles and our verifier.
    fn cross_check_inclusion(
        t: &MemoryTree,
        ct: &CtTree,
        data: &[Vec<u8>],
        n: u64,
        index: u64,
        root: Hash,
    ) {
        let p = t.prove_record(n, index).unwrap();
        let ctp = ct.prove_inclusion(index as usize);
        assert_eq!(flat(&p), ctp.as_bytes(), "inclusion bytes n={n} i={index}");
        ct.root()
            .verify_inclusion(&data[index as usize], index, &ctp)
            .unwrap();
        let leaf = leaf_hash(&data[index as usize]);
        check_record(&p, n, root, index, leaf).unwrap();
        let tr = TlogReader(t.stored_hashes());
        assert_eq!(
            tlog_tiles::prove_record(n, index, &tr).unwrap(),
            to_tlog(&p)
        );
        tlog_tiles::check_record(
            &to_tlog(&p),
            n,
            tlog_tiles::Hash(root),
            index,
            tlog_tiles::Hash(leaf),
        )
        .unwrap();
    }

    /// Checks one consistency proof of ours against ct-merkle, tlog_tiles and our verifier.
    fn cross_check_consistency(t: &MemoryTree, ct: &CtTree, n: u64, old: u64, root: Hash) {
        let p = t.prove_tree(n, old).unwrap();
        let old_root = t.root_at(old).unwrap();
        check_tree(&p, n, root, old, old_root).unwrap();
        if old >= 1 {
            let ctp = ct.prove_consistency((n - old) as usize);
            assert_eq!(flat(&p), ctp.as_bytes(), "consistency bytes {old}->{n}");
            let ct_old = ct_merkle::RootHash::<sha2_011::Sha256>::new(old_root.into(), old);
            ct.root().verify_consistency(&ct_old, &ctp).unwrap();
            let tr = TlogReader(t.stored_hashes());
            assert_eq!(tlog_tiles::prove_tree(n, old, &tr).unwrap(), to_tlog(&p));
            tlog_tiles::check_tree(
                &to_tlog(&p),
                n,
                tlog_tiles::Hash(root),
                old,
                tlog_tiles::Hash(old_root),
            )
            .unwrap();
        }
    }

    #[test]
    fn deterministic_sweep_0_to_300() {
        const MAX: u64 = 300;
        const FULL: u64 = 64; // all (index, old) pairs and naive proofs up to here
        let data = gen_leaves(1, MAX);
        let lh: Vec<Hash> = data.iter().map(|d| leaf_hash(d)).collect();
        let mut t = MemoryTree::new();
        let mut ct = CtTree::new();
        let mut checked = 0usize;
        for n in 0..=MAX {
            if n > 0 {
                t.append(lh[(n - 1) as usize]).unwrap();
                ct.push(data[(n - 1) as usize].clone());
            }
            let r = t.root().unwrap();
            let tr = TlogReader(t.stored_hashes());
            assert_eq!(r, ref_root(&lh[..n as usize]), "naive MTH n={n}");
            assert_eq!(r, ct_root(&ct), "ct-merkle root n={n}");
            assert_eq!(
                r,
                tlog_tiles::tree_hash(n, &tr).unwrap().0,
                "tlog_tiles root n={n}"
            );
            if n > 0 {
                let ours = stored_hashes_for_record_hash(n - 1, lh[(n - 1) as usize], &t).unwrap();
                let theirs = tlog_tiles::stored_hashes_for_record_hash(
                    n - 1,
                    tlog_tiles::Hash(lh[(n - 1) as usize]),
                    &tr,
                )
                .unwrap();
                assert_eq!(to_tlog(&ours), theirs);
            }
            let sample = |n: u64| -> Vec<u64> {
                if n <= FULL {
                    (0..n).collect()
                } else {
                    let mut v = vec![0, 1, n / 3, n / 2, n - 2, n - 1];
                    v.extend((0..63).map(|b| 1u64 << b).filter(|&p| p < n));
                    v
                }
            };
            for index in sample(n) {
                cross_check_inclusion(&t, &ct, &data, n, index, r);
                if n <= FULL {
                    assert_eq!(
                        t.prove_record(n, index).unwrap(),
                        ref_inclusion(&lh[..n as usize], index as usize)
                    );
                }
                checked += 1;
            }
            let mut olds = sample(n);
            olds.push(n);
            for old in olds {
                cross_check_consistency(&t, &ct, n, old, r);
                if n <= FULL {
                    assert_eq!(
                        t.prove_tree(n, old).unwrap(),
                        ref_consistency(&lh[..n as usize], n as usize, old as usize, true)
                    );
                }
                checked += 1;
            }
        }
        assert!(checked > 10_000, "{checked}");
    }

    fn build(seed: u64, size: u64) -> (Vec<Vec<u8>>, MemoryTree, CtTree) {
        let data = gen_leaves(seed, size);
        let mut t = MemoryTree::with_capacity(size as usize);
        let mut ct = CtTree::new();
        for d in &data {
            t.append_data(d).unwrap();
            ct.push(d.clone());
        }
        (data, t, ct)
    }

    proptest! {
        // Few cases: each builds up to three 10k-leaf trees in a debug build.
        #![proptest_config(ProptestConfig::with_cases(8))]

        #[test]
        fn prop_large_trees_match_references(
            (size, index, old) in (1u64..=10_000).prop_flat_map(|s| (Just(s), 0..s, 0..=s)),
            seed in any::<u64>(),
            flip in any::<(usize, u8)>(),
        ) {
            let (data, t, ct) = build(seed, size);
            let lh: Vec<Hash> = data.iter().map(|d| leaf_hash(d)).collect();
            let r = t.root().unwrap();
            prop_assert_eq!(r, ref_root(&lh));
            prop_assert_eq!(r, ct_root(&ct));
            cross_check_inclusion(&t, &ct, &data, size, index, r);
            cross_check_consistency(&t, &ct, size, old, r);

            // A single flipped bit anywhere in a non-empty proof is rejected.
            let bit = 1u8 << (flip.1 % 8);
            let mut p = t.prove_record(size, index).unwrap();
            if !p.is_empty() {
                let at = flip.0 % p.len();
                p[at][flip.0 % HASH_SIZE] ^= bit;
                prop_assert_eq!(check_record(&p, size, r, index, lh[index as usize]), Err(TreeError::ProofFailed));
            }
            let mut p = t.prove_tree(size, old).unwrap();
            if !p.is_empty() {
                let at = flip.0 % p.len();
                p[at][flip.0 % HASH_SIZE] ^= bit;
                let old_root = t.root_at(old).unwrap();
                prop_assert_eq!(check_tree(&p, size, r, old, old_root), Err(TreeError::ProofFailed));
            }
        }

        #[test]
        fn prop_stored_index_round_trip(index in 0u64..(1u64 << 62), level in 0u32..40, n in 0u64..(1u64 << 20)) {
            let (l, m) = split_stored_hash_index(index);
            prop_assert_eq!(stored_hash_index(l, m), index);
            let (tl, tn) = tlog_tiles::split_stored_hash_index(index);
            prop_assert_eq!((u32::from(tl), tn), (l, m));
            let idx = stored_hash_index(level, n);
            prop_assert_eq!(split_stored_hash_index(idx), (level, n));
            prop_assert_eq!(idx, tlog_tiles::stored_hash_index(level as u8, n));
            prop_assert_eq!(stored_hash_count(index >> 1), tlog_tiles::stored_hash_count(index >> 1));
        }

        #[test]
        fn prop_batches_equal_single_appends(start in 0u64..1500, len in 0usize..300, seed in any::<u64>()) {
            let data = gen_leaves(seed, start + len as u64);
            let lh: Vec<Hash> = data.iter().map(|d| leaf_hash(d)).collect();
            let mut one = MemoryTree::new();
            for l in &lh { one.append(*l).unwrap(); }
            let mut base = MemoryTree::new();
            for l in &lh[..start as usize] { base.append(*l).unwrap(); }
            let new = stored_hashes_for_batch(start, &lh[start as usize..], &base).unwrap();
            let from = stored_hash_count(start) as usize;
            prop_assert_eq!(new.as_slice(), &one.stored_hashes()[from..]);
        }
    }
}
