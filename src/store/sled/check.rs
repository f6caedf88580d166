//! `warden store check`: reads a data directory no warden runs on, every
//! record of every tree, and reports every damaged one by tree and key.
//!
//! Each value must pass the check its tree's format allows: the checksum
//! and decoding of framed values (`codec`), the length of raw integers and
//! hashes, the UTF-8 of ids; with the PII keys, every sealed record must
//! open. The ledger is checked as `warden serve` checks it at start —
//! every stored hash recomputed from the entries, the tree at the stored
//! checkpoint's size against that signed checkpoint — and against the
//! [`head`](super::head) beside the store, which tells a store that lost
//! acknowledged writes.
//!
//! sled has no read-only mode: opening a store whose log ends in a damaged
//! record makes sled discard that end, as warden's own start would. Check a
//! copy (`cp -a`) if the damaged directory must be kept as it is.

use std::path::{Path, PathBuf};

use super::engine::engine;
use crate::domain::attribution::AttributionRequest;
use crate::domain::deployment::Deployment;
use crate::domain::order::{Order, OrderEvent};
use crate::ledger::entry::Entry;
use crate::ledger::note::Verifier;
use crate::pii::Keyring;
use crate::store::codec::{decode, decode_entries, key_name};
use crate::store::head;
use crate::store::kv::index;
use crate::store::kv::keys::is_decision_id;
use crate::store::kv::keys::{
    t, META_CHECKPOINT, META_CHECKPOINT_AT, META_SIZE, META_STATE_COUNTS,
};
use crate::store::kv::keys::{
    ORDER_REVISION, ORDER_SET_REVISION, SANCTIONS_LIST, SANCTIONS_SHA256,
};
use crate::store::sealed::{StoredCustomer, StoredScreening};
use crate::store::{DecisionRecord, StateCounts, StoreError};

/// A damaged record, or damage sled reports without naming one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// `tree/key` (printable bytes as they are, others escaped), or what
    /// else is damaged: the tree, `ledger`, `storage file`.
    pub key: String,
    pub detail: String,
}

/// What a check found.
#[derive(Debug, Clone)]
pub struct CheckReport {
    /// Records read, per tree.
    pub trees: Vec<(String, u64)>,
    /// Entries in the ledger, when it checks out.
    pub ledger_size: Option<u64>,
    /// The size of the stored signed checkpoint it was checked against.
    pub checkpoint_size: Option<u64>,
    /// Whether the store holds everything the ledger head beside it
    /// covers (false when there is no usable head, or it does not).
    pub head_matches: bool,
    pub problems: Vec<Problem>,
    /// What the check could not decide, which is not damage in itself.
    pub notes: Vec<String>,
}

impl CheckReport {
    pub fn records(&self) -> u64 {
        self.trees.iter().map(|(_, n)| n).sum()
    }

    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("{0} does not hold a warden store (no sled `conf` and `db` files in it)")]
    NotAStore(PathBuf),
    #[error(
        "a warden is running on {0}: stop it first (the check reads the directory while no \
         warden uses it)"
    )]
    Locked(PathBuf),
    #[error(transparent)]
    Store(StoreError),
}

fn problem(e: StoreError) -> Problem {
    match e {
        StoreError::Corrupt { key, detail } => Problem { key, detail },
        e => Problem {
            key: crate::store::ENGINE_KEY.into(),
            detail: e.to_string(),
        },
    }
}

/// Checks the store in `dir` (see the module docs). The ledger checkpoint
/// must verify with `verifier`; with `keys`, every sealed record must open.
/// Returns once sled has let go of the directory, so a warden may start on
/// it at once.
pub fn check(
    dir: &Path,
    verifier: &Verifier,
    keys: Option<&Keyring>,
) -> Result<CheckReport, CheckError> {
    let report = check_open(dir, verifier, keys);
    // Only a check that opened the store has a lock to let go of.
    if !matches!(
        report,
        Err(CheckError::Locked(_) | CheckError::NotAStore(_))
    ) {
        super::commit::wait_for_release(dir);
    }
    report
}

fn check_open(
    dir: &Path,
    verifier: &Verifier,
    keys: Option<&Keyring>,
) -> Result<CheckReport, CheckError> {
    if !crate::store::backup::is_store(dir) {
        return Err(CheckError::NotAStore(dir.to_path_buf()));
    }
    let mut report = CheckReport {
        trees: Vec::new(),
        ledger_size: None,
        checkpoint_size: None,
        head_matches: false,
        problems: Vec::new(),
        notes: Vec::new(),
    };
    let opened = engine(|| {
        let db = super::open_db(dir)?;
        let trees = super::open_trees(&db)?;
        Ok((db, trees))
    });
    let (_db, trees) = match opened {
        Ok(o) => o,
        Err(StoreError::Locked(_)) => return Err(CheckError::Locked(dir.to_path_buf())),
        Err(e) if e.is_corruption() => {
            report.problems.push(problem(e));
            return Ok(report);
        }
        Err(e) => return Err(CheckError::Store(e)),
    };
    for (i, tree) in trees.iter().enumerate() {
        let read = engine(|| Ok(check_tree(i, tree, keys, &mut report.problems)));
        let n = read.unwrap_or_else(|e| {
            report.problems.push(problem(e.in_tree(t::NAMES[i])));
            0
        });
        report.trees.push((t::NAMES[i].to_string(), n));
    }
    match engine(|| crate::store::kv::read::read_ledger(&trees, verifier)) {
        Ok(ledger) => {
            report.ledger_size = Some(ledger.size);
            report.checkpoint_size = ledger.last.as_ref().map(|c| c.checkpoint.size);
            match head::read(dir, verifier) {
                Ok(Some(h)) => match head::check(dir, &h, ledger.size, &ledger.hashes) {
                    Ok(()) => report.head_matches = true,
                    Err(e) => report.problems.push(problem(e)),
                },
                Ok(None) => report.notes.push(format!(
                    "no ledger head in {} (a restored store, or one an older warden wrote): \
                     whether the store lost acknowledged writes cannot be told",
                    dir.display()
                )),
                Err(why) => report.notes.push(format!("ledger head not used: {why}")),
            }
        }
        Err(e) => report.problems.push(problem(e)),
    }
    Ok(report)
}

/// Reads every record of tree `i`, recording each that does not check out;
/// returns how many were read. A read sled fails ends the tree: where its
/// records continue is not known.
fn check_tree(
    i: usize,
    tree: &sled::Tree,
    keys: Option<&Keyring>,
    problems: &mut Vec<Problem>,
) -> u64 {
    let name = t::NAMES[i];
    let mut n = 0u64;
    let mut last: Option<sled::IVec> = None;
    for item in tree.iter() {
        let (k, v) = match item {
            Ok(kv) => kv,
            Err(e) => {
                let mut p = problem(StoreError::from(e).in_tree(name));
                p.detail = match &last {
                    Some(k) => format!("{} (after key {})", p.detail, key_name(k)),
                    None => format!("{} (before its first record)", p.detail),
                };
                p.detail.push_str("; the rest of the tree was not read");
                problems.push(p);
                return n;
            }
        };
        n += 1;
        if let Err(e) = check_record(i, &k, &v, keys) {
            problems.push(problem(e.in_tree(name)));
        }
        last = Some(k);
    }
    n
}

fn malformed(key: &[u8], what: &str) -> StoreError {
    StoreError::Corrupt {
        key: key_name(key),
        detail: what.to_string(),
    }
}

fn be_u64(key: &[u8], v: &[u8]) -> Result<(), StoreError> {
    if v.len() == 8 {
        Ok(())
    } else {
        Err(malformed(key, "not an 8-byte number"))
    }
}

fn utf8(key: &[u8], v: &[u8]) -> Result<(), StoreError> {
    std::str::from_utf8(v)
        .map(drop)
        .map_err(|_| malformed(key, "not UTF-8"))
}

/// Checks one record as its tree stores it.
fn check_record(tree: usize, k: &[u8], v: &[u8], keys: Option<&Keyring>) -> Result<(), StoreError> {
    match tree {
        t::CUSTOMERS => {
            let c: StoredCustomer = decode(k, v)?;
            if let (Some(keys), Some(_)) = (keys, &c.sealed) {
                c.open(keys)?;
            }
            Ok(())
        }
        t::SCREENINGS => {
            let s: StoredScreening = decode(k, v)?;
            if let Some(keys) = keys {
                s.open(keys)?;
            }
            Ok(())
        }
        t::DEPLOYMENTS => decode::<Deployment>(k, v).map(drop),
        t::DECISIONS => decode::<DecisionRecord>(k, v).map(drop),
        t::ADMIT_REQUESTS if is_decision_id(v) => utf8(k, v),
        t::ADMIT_REQUESTS => decode::<DecisionRecord>(k, v).map(drop),
        t::CHAINS => decode::<String>(k, v).map(drop),
        t::ENTRIES => {
            be_u64(k, k)?;
            for e in decode_entries(k, v)? {
                Entry::from_bytes(e).map_err(|e| malformed(k, &format!("ledger entry: {e}")))?;
            }
            Ok(())
        }
        t::HASHES => {
            be_u64(k, k)?;
            if v.len() % 32 == 0 {
                Ok(())
            } else {
                Err(malformed(k, "not a whole number of hashes"))
            }
        }
        t::META => match k {
            _ if k == META_SIZE || k == META_CHECKPOINT_AT => be_u64(k, v),
            _ if k == META_CHECKPOINT => utf8(k, v),
            _ if k == META_STATE_COUNTS => decode::<StateCounts>(k, v).map(drop),
            _ => Ok(()),
        },
        t::SANCTIONS => match k {
            _ if k == SANCTIONS_LIST => decode::<crate::screening::SanctionsList>(k, v).map(drop),
            _ if k == SANCTIONS_SHA256 => utf8(k, v),
            _ => Ok(()),
        },
        t::ORDERS | t::ACTIVE_ORDERS => decode::<Order>(k, v).map(drop),
        t::ORDER_EVENTS => decode::<OrderEvent>(k, v).map(drop),
        t::ORDER_META if k == ORDER_REVISION || k == ORDER_SET_REVISION => be_u64(k, v),
        t::ATTRIBUTION => match k.first() {
            Some(&index::MODEL | &index::CUSTOMER) if !v.is_empty() => be_u64(k, v),
            Some(
                &index::OPEN_CERTIFICATE
                | &index::MODEL_CERTIFICATE
                | &index::EVALUATOR_CERTIFICATE
                | &index::CUSTOMER_CERTIFICATE,
            ) if !v.is_empty() => Err(malformed(k, "an order index key holds a value")),
            Some(&index::ENDPOINT) => utf8(k, v),
            Some(&index::VERSION) => be_u64(k, v),
            Some(&index::REQUEST) => decode::<AttributionRequest>(k, v).map(drop),
            _ => Ok(()),
        },
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::note::Signer;
    use crate::store::{CorruptionWatch, Guarded, SledStore, Store};
    use std::sync::Arc;

    fn keys() -> Keyring {
        Keyring::parse("test", &Keyring::new_key_line("test-1").unwrap()).unwrap()
    }

    fn copy(signer: &Signer) -> Signer {
        Signer::from_text(&signer.to_text()).unwrap()
    }

    async fn close(store: impl Store) {
        let closed = store.closed();
        drop(store);
        closed.cancelled().await;
    }

    /// A store in `dir` opened once and closed (its ledger signed at size 0).
    async fn fresh(dir: &Path, signer: &Signer) {
        close(SledStore::open(dir, copy(signer), keys()).unwrap()).await;
    }

    /// Writes `value` under `key` in `tree`, past warden, as damage would;
    /// returns once sled has let go of the directory.
    fn poke(dir: &Path, tree: &str, key: &[u8], value: &[u8]) {
        let db = sled::open(dir).unwrap();
        db.open_tree(tree).unwrap().insert(key, value).unwrap();
        db.flush().unwrap();
        drop(db);
        super::super::commit::wait_for_release(dir);
    }

    #[tokio::test]
    async fn a_record_failing_its_checksum_is_named_counted_and_found_by_the_check() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let signer = Signer::generate("warden.test/ledger").unwrap();
        fresh(&dir, &signer).await;
        let mut raw = crate::store::codec::encode(&"a deployment".to_string()).unwrap();
        let last = raw.len() - 2;
        raw[last] ^= 0x01;
        poke(&dir, "deployments", b"dep-1", &raw);

        let watch = Arc::new(CorruptionWatch::default());
        let store = Guarded::new(
            SledStore::open(&dir, copy(&signer), keys()).unwrap(),
            watch.clone(),
        );
        match store.deployment("dep-1").await {
            Err(StoreError::Corrupt { key, detail }) => {
                assert_eq!(key, "deployments/dep-1");
                assert_eq!(detail, "checksum mismatch");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(watch.count(), 1);
        // Other records, and other errors, are not corruption.
        assert!(store.deployment("dep-2").await.unwrap().is_none());
        assert_eq!(watch.count(), 1);
        close(store).await;

        let report = check(&dir, &signer.verifier(), Some(&keys())).unwrap();
        assert_eq!(
            report.problems,
            vec![Problem {
                key: "deployments/dep-1".into(),
                detail: "checksum mismatch".into()
            }]
        );
        assert_eq!(report.ledger_size, Some(0));
        assert!(report.head_matches);
        assert_eq!(report.trees.len(), t::NAMES.len());
        assert!(!report.is_clean());
    }

    #[tokio::test]
    async fn a_value_of_the_wrong_shape_is_reported_by_tree_and_key() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let signer = Signer::generate("warden.test/ledger").unwrap();
        fresh(&dir, &signer).await;
        // A checksum that matches, over JSON that is not a deployment.
        let raw = crate::store::codec::encode(&vec![1, 2, 3]).unwrap();
        poke(&dir, "deployments", b"dep-1", &raw);
        poke(&dir, "order_meta", b"revision", b"\x01");
        let report = check(&dir, &signer.verifier(), None).unwrap();
        let keys: Vec<&str> = report.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["deployments/dep-1", "order_meta/revision"]);
        assert!(report.problems[1].detail.contains("8-byte"));
    }

    #[tokio::test]
    async fn a_store_behind_its_ledger_head_refuses_to_open_and_fails_the_check() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let signer = Signer::generate("warden.test/ledger").unwrap();
        fresh(&dir, &signer).await;
        assert!(head::path(&dir).is_file());
        // A head three entries ahead of the store: writes were lost.
        let ahead = crate::ledger::checkpoint::Checkpoint {
            origin: signer.name().into(),
            size: 3,
            root: [7; 32],
        }
        .sign(&signer)
        .unwrap();
        head::write(&dir, &ahead).unwrap();
        let e = SledStore::open(&dir, copy(&signer), keys()).err().unwrap();
        assert!(e.is_corruption());
        assert!(
            e.to_string().contains("holds 0 ledger entries, but 3"),
            "{e}"
        );
        let report = check(&dir, &signer.verifier(), None).unwrap();
        assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
        assert_eq!(report.problems[0].key, "ledger");
        assert!(!report.head_matches);
    }

    #[tokio::test]
    async fn the_check_refuses_a_directory_in_use_or_without_a_store() {
        let tmp = tempfile::tempdir().unwrap();
        let signer = Signer::generate("warden.test/ledger").unwrap();
        assert!(matches!(
            check(tmp.path(), &signer.verifier(), None),
            Err(CheckError::NotAStore(_))
        ));
        let dir = tmp.path().join("data");
        let store = SledStore::open(&dir, copy(&signer), keys()).unwrap();
        assert!(matches!(
            check(&dir, &signer.verifier(), None),
            Err(CheckError::Locked(_))
        ));
        close(store).await;
        assert!(check(&dir, &signer.verifier(), None).unwrap().is_clean());
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn the_data_directory_is_created_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt as _;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("var/data");
        let signer = Signer::generate("warden.test/ledger").unwrap();
        fresh(&dir, &signer).await;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        // Its parents are left as the umask makes them.
        assert_ne!(mode(&tmp.path().join("var")), 0o700);
        // One opened to others (as an older warden created it) is narrowed.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        fresh(&dir, &signer).await;
        assert_eq!(mode(&dir), 0o700);
    }
}
