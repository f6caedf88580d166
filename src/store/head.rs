//! The ledger head: the latest signed checkpoint, kept in a small file
//! beside sled's (`DATA_DIR/ledger-head`) as well as inside the store. The
//! sequencer replaces it once each group commit is durable and before any
//! caller is answered, so it covers every acknowledged write.
//!
//! Why a file outside sled: sled takes a damaged record in its log for the
//! torn end of an interrupted write and discards the log from there on,
//! without an error. What is left is consistent — its ledger matches the
//! checkpoint stored with it — only older, so nothing inside the store can
//! tell. The head can: a store holding fewer entries than the head, or
//! another tree at the head's size, has lost acknowledged writes, and
//! warden refuses to start on it.
//!
//! The file is replaced atomically but without a sync
//! ([`Durability::Unsynced`]). After a power cut it may
//! be older than the store (it then covers less, which is harmless) or
//! missing or unreadable (the check is skipped with a warning); it is never
//! newer than the store, because it is written after the store's flush. It
//! is rewritten at every start. `warden restore` removes it: a restored
//! store is older on purpose.

use std::path::{Path, PathBuf};

use super::StoreError;
use crate::fsutil::{Durability, FileError, Mode};
use crate::ledger::checkpoint::Checkpoint;
use crate::ledger::note::Verifier;
use crate::ledger::tree::{self, Hash};

/// The head's file name in the data directory.
pub const FILE: &str = "ledger-head";

pub fn path(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

/// Replaces the head with `note` (a signed checkpoint). Unsynced: see
/// the module doc for why that is safe.
pub(crate) fn write(dir: &Path, note: &str) -> Result<(), FileError> {
    crate::fsutil::write_atomic(
        &path(dir),
        note.as_bytes(),
        Mode::Default,
        Durability::Unsynced,
    )
}

/// Removes the head, if there is one.
pub fn remove(dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path(dir)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The head's checkpoint: `Ok(None)` when there is no head, `Err` saying
/// why one that is there cannot be used.
pub fn read(dir: &Path, verifier: &Verifier) -> Result<Option<Checkpoint>, String> {
    let file = path(dir);
    let note = match std::fs::read_to_string(&file) {
        Ok(n) => n,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", file.display())),
    };
    Checkpoint::open(&note, verifier).map(Some).map_err(|e| {
        format!(
            "{} does not verify with the ledger key: {e}",
            file.display()
        )
    })
}

/// Checks the stored ledger (`size` entries, stored hashes `hashes`) against
/// the head read from `dir`.
pub(crate) fn check(
    dir: &Path,
    head: &Checkpoint,
    size: u64,
    hashes: &[Hash],
) -> Result<(), StoreError> {
    let lost = |detail: String| StoreError::Corrupt {
        key: "ledger".into(),
        detail,
    };
    if head.size > size {
        return Err(lost(format!(
            "the store holds {size} ledger entries, but {} were signed before (checkpoint in {}): \
             writes acknowledged after entry {size} are missing. sled discards the end of its log \
             when it finds a damaged record there, so the storage file is damaged",
            head.size,
            path(dir).display()
        )));
    }
    let root = tree::tree_hash(head.size, hashes).map_err(|e| lost(e.to_string()))?;
    if root != head.root {
        return Err(lost(format!(
            "the stored ledger at size {} does not have the root of the checkpoint signed before \
             (in {}); the ledger was damaged or altered",
            head.size,
            path(dir).display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::note::Signer;

    fn tree_of(n: u64) -> Vec<Hash> {
        let mut hashes = Vec::new();
        for i in 0..n {
            let leaf = tree::leaf_hash(format!("entry {i}").as_bytes());
            let more = tree::stored_hashes_for_record_hash(i, leaf, &hashes).unwrap();
            hashes.extend(more);
        }
        hashes
    }

    fn signed(signer: &Signer, hashes: &[Hash], size: u64) -> String {
        let hashes = hashes.to_vec();
        Checkpoint {
            origin: signer.name().into(),
            size,
            root: tree::tree_hash(size, &hashes).unwrap(),
        }
        .sign(signer)
        .unwrap()
    }

    #[test]
    fn a_store_behind_its_head_or_off_it_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let signer = Signer::generate("warden.test/ledger").unwrap();
        let v = signer.verifier();
        assert_eq!(read(dir.path(), &v), Ok(None));
        let hashes = tree_of(5);
        write(dir.path(), &signed(&signer, &hashes, 5)).unwrap();
        let head = read(dir.path(), &v).unwrap().unwrap();
        assert_eq!(head.size, 5);
        // The same store, or one that grew since: fine.
        check(dir.path(), &head, 5, &hashes).unwrap();
        let grown = tree_of(7);
        check(dir.path(), &head, 7, &grown).unwrap();
        // A store that lost its last two entries.
        let behind = tree_of(3);
        let e = check(dir.path(), &head, 3, &behind).unwrap_err();
        assert!(e.is_corruption());
        let text = e.to_string();
        assert!(text.contains("holds 3 ledger entries, but 5"), "{text}");
        assert!(text.contains(FILE), "{text}");
        // Another tree of the same size.
        let mut other = tree_of(5);
        // The last stored hash is entry 4's leaf, which the root covers.
        let last = other.len() - 1;
        other[last][0] ^= 1;
        let e = check(dir.path(), &head, 5, &other).unwrap_err();
        assert!(e.to_string().contains("does not have the root"), "{e}");
    }

    #[test]
    fn a_head_that_does_not_verify_is_reported_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let signer = Signer::generate("warden.test/ledger").unwrap();
        let other = Signer::generate("warden.test/ledger").unwrap();
        write(dir.path(), &signed(&other, &tree_of(2), 2)).unwrap();
        let e = read(dir.path(), &signer.verifier()).unwrap_err();
        assert!(e.contains("does not verify"), "{e}");
        remove(dir.path()).unwrap();
        remove(dir.path()).unwrap();
        assert_eq!(read(dir.path(), &signer.verifier()), Ok(None));
    }
}
