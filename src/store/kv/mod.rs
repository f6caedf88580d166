//! The layout both engines store: named trees of ordered keys and values,
//! and the one planner that turns a batch of writes into the keys they
//! set. The sled engine keeps each tree as a sled tree; the PostgreSQL
//! engine as a table of (key, value). What an engine adds is how it reads
//! ([`Kv`]) and how it commits a planned batch with its ledger entries.
//!
//! | module | holds |
//! |---|---|
//! | `keys` | the trees, their keys, the stored ledger hashes |
//! | `index` | keys of the attribution and order indices |
//! | `plan` | planning a batch: preconditions, conflicts, the keys each write sets |
//! | `read` | every read of the [`Store`](crate::store::Store), over any [`Kv`] |
//! | `store` | the [`Store`](crate::store::Store) over any engine that keeps this layout |

pub(crate) mod index;
pub(crate) mod keys;
pub(crate) mod plan;
pub(crate) mod read;
pub(crate) mod store;

use std::ops::Bound;

use crate::store::StoreError;

/// Which way a range is walked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Direction {
    Forward,
    Reverse,
}

/// A key and its value.
pub(crate) type Pair<B> = (B, B);

/// A key and its value, or why they could not be read.
pub(crate) type Item<B> = Result<Pair<B>, StoreError>;

/// The pairs of a range, in the order asked for.
pub(crate) type Items<'a, B> = Box<dyn Iterator<Item = Item<B>> + 'a>;

/// Reads of the stored trees (indices in [`keys::t`]). Corruption an
/// engine finds names the tree, and the key where it knows it.
pub(crate) trait Kv {
    /// Bytes as the engine hands them out (sled's own shared buffers, so a
    /// read copies nothing).
    type Bytes: std::ops::Deref<Target = [u8]> + AsRef<[u8]>;

    fn get(&self, tree: usize, key: &[u8]) -> Result<Option<Self::Bytes>, StoreError>;

    /// The pairs of `tree` with keys between `from` and `to`.
    fn range(
        &self,
        tree: usize,
        from: Bound<&[u8]>,
        to: Bound<&[u8]>,
        direction: Direction,
    ) -> Items<'_, Self::Bytes>;

    fn contains(&self, tree: usize, key: &[u8]) -> Result<bool, StoreError> {
        Ok(self.get(tree, key)?.is_some())
    }

    /// The pairs of `tree` whose keys start with `prefix`.
    fn prefix(&self, tree: usize, prefix: &[u8], direction: Direction) -> Items<'_, Self::Bytes> {
        let end = prefix_end(prefix);
        let to = match &end {
            Some(end) => Bound::Excluded(end.as_slice()),
            None => Bound::Unbounded,
        };
        self.range(tree, Bound::Included(prefix), to, direction)
    }

    /// The pair with the greatest key at or below `key`.
    fn at_or_below(
        &self,
        tree: usize,
        key: &[u8],
    ) -> Result<Option<Pair<Self::Bytes>>, StoreError> {
        self.range(
            tree,
            Bound::Unbounded,
            Bound::Included(key),
            Direction::Reverse,
        )
        .next()
        .transpose()
    }
}

/// The least key greater than every key starting with `prefix`; `None`
/// when there is none (the prefix is all 0xFF, or empty).
pub(crate) fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_ends_at_the_next_key_that_does_not_start_with_it() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff\xff"), None);
        assert_eq!(prefix_end(b""), None);
    }
}
