//! The sled implementation of [`Store`]. sled 0.34 allows one process per
//! data directory; opening a directory another warden holds fails with
//! [`StoreError::Locked`].
//!
//! Reads go straight to sled: a point read on the caller's thread, a read
//! that scans on the blocking pool (see [`Store`] on blocking), each inside
//! [`engine`]. Writes go through the [`Sequencer`], which commits each
//! state change with its ledger entry.
//!
//! Opening runs inside [`engine`], so a panic in sled on a damaged file is
//! reported as corruption of the data directory; the ledger is checked
//! against its stored checkpoint and against the [`head`] kept beside the
//! store. The data directory is created readable by its owner only.
//!
//! | module | holds |
//! |---|---|
//! | `mod.rs` | [`SledStore`]: opening and checking a data directory; the trees read as a [`Kv`] |
//! | `commit` | the sequencer: the planner and committer threads, group commit, checkpoint signing |
//! | `engine` | a panic inside sled reported as corruption |
//! | `check` | the offline check of a data directory |
//!
//! What a batch writes, and every read, is the layout both engines share
//! ([`crate::store::kv`]).

pub mod check;
pub(crate) mod commit;
pub(crate) mod engine;

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;

use crate::domain::deployment::Deployment;
use crate::domain::order::Order;
use crate::ledger::entry::Entry;
use crate::ledger::note::Signer;
use crate::ledger::tree;
use crate::pii::Keyring;
use crate::store::codec::{decode, key_name};
use crate::store::head;
use crate::store::kv::index;
use crate::store::kv::keys::{
    t, META_CHECKPOINT, META_CHECKPOINT_AT, META_ORDER_INDEX, META_STATE_COUNTS,
};
use crate::store::kv::plan::Mutation;
use crate::store::kv::read::{check_keys, read_ledger, tampered, Reader, StoredLedger};
use crate::store::kv::store::{Engine, KvStore, Published, ReadKind};
use crate::store::kv::{Direction, Items, Kv};
use crate::store::SignedCheckpoint;
use crate::store::{AdmitRecorded, StateCounts, StoreError};
use commit::Sequencer;
use engine::engine;

/// sled reports damage it finds in its files (a page whose checksum does
/// not match, an internal inconsistency) apart from I/O errors; the first
/// are corruption, only the last may be transient.
impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        match e {
            sled::Error::Corruption { at, .. } => StoreError::Corrupt {
                key: crate::store::ENGINE_KEY.into(),
                detail: match at {
                    Some(at) => format!("sled found damaged data at {at:?}"),
                    None => "sled found damaged data".into(),
                },
            },
            sled::Error::ReportableBug(what) => StoreError::Corrupt {
                key: crate::store::ENGINE_KEY.into(),
                detail: format!("sled found its stored state inconsistent: {what}"),
            },
            e => StoreError::Io(e.to_string()),
        }
    }
}

/// The sled store: the shared [`KvStore`] over sled.
pub type SledStore = KvStore<SledEngine>;

/// What the store needs of sled: its trees, read as a [`Kv`], and the
/// sequencer that commits to them.
pub struct SledEngine {
    reader: Arc<Reader<Trees>>,
    sequencer: Sequencer,
    published: Published,
}

fn io(e: sled::Error) -> StoreError {
    StoreError::from(e)
}

/// A read or scan of `tree` failed: corruption names the tree.
fn scan_failed(tree: usize) -> impl Fn(sled::Error) -> StoreError {
    move |e| StoreError::from(e).in_tree(t::NAMES[tree])
}

/// A read of `key` in `tree` failed: corruption names both.
fn read_failed(tree: usize, key: &[u8]) -> impl FnOnce(sled::Error) -> StoreError + '_ {
    move |e| match StoreError::from(e) {
        StoreError::Corrupt { detail, .. } => StoreError::Corrupt {
            key: format!("{}/{}", t::NAMES[tree], key_name(key)),
            detail,
        },
        other => other,
    }
}

/// Every tree warden keeps, in [`t::NAMES`] order: what a transaction
/// spans, and what reads go through as a [`Kv`].
#[derive(Clone)]
pub(crate) struct Trees(Arc<[sled::Tree]>);

impl std::ops::Deref for Trees {
    type Target = [sled::Tree];

    fn deref(&self) -> &[sled::Tree] {
        &self.0
    }
}

impl Kv for Trees {
    type Bytes = sled::IVec;

    fn get(&self, tree: usize, key: &[u8]) -> Result<Option<sled::IVec>, StoreError> {
        self.0[tree].get(key).map_err(read_failed(tree, key))
    }

    fn contains(&self, tree: usize, key: &[u8]) -> Result<bool, StoreError> {
        self.0[tree]
            .contains_key(key)
            .map_err(read_failed(tree, key))
    }

    fn range(
        &self,
        tree: usize,
        from: std::ops::Bound<&[u8]>,
        to: std::ops::Bound<&[u8]>,
        direction: Direction,
    ) -> Items<'_, sled::IVec> {
        let walk =
            self.0[tree].range::<Vec<u8>, _>((from.map(<[u8]>::to_vec), to.map(<[u8]>::to_vec)));
        let failed = scan_failed(tree);
        match direction {
            Direction::Forward => Box::new(walk.map(move |item| item.map_err(&failed))),
            Direction::Reverse => Box::new(walk.rev().map(move |item| item.map_err(&failed))),
        }
    }
}

impl KvStore<SledEngine> {
    /// Opens (creating if needed) the store in `dir`, verifies the ledger
    /// against its last signed checkpoint, checks that `keys` open the
    /// stored personal data, and starts the sequencer. Must be called
    /// inside a tokio runtime.
    pub fn open(dir: &Path, ledger_signer: Signer, keys: Keyring) -> Result<Self, StoreError> {
        let signer = Arc::new(ledger_signer);
        let keys = Arc::new(keys);
        let (db, trees, size, checkpoint) = engine(|| {
            let db = open_db(dir)?;
            let trees = open_trees(&db)?;
            let (size, checkpoint) = verify_ledger(&db, &trees, &signer, dir)?;
            check_keys(&trees, &keys)?;
            count_states(&trees)?;
            index_open_deployments(&trees)?;
            Ok((db, trees, size, checkpoint))
        })?;
        keep_private(dir);
        if let Err(e) = head::write(dir, &checkpoint.note) {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot write the ledger head");
        }
        let published = Published::new(checkpoint);
        let sequencer = Sequencer::spawn(
            db.clone(),
            trees.clone(),
            signer,
            size,
            published.latest.clone(),
            published.flush_seconds.clone(),
            Some(dir.to_path_buf()),
        )?;
        Ok(Self {
            engine: SledEngine {
                reader: Arc::new(Reader { kv: trees, keys }),
                sequencer,
                published,
            },
        })
    }
}

#[async_trait]
impl Engine for SledEngine {
    type Kv = Trees;

    /// A point read is answered on the caller's thread (see [`Store`] on
    /// blocking), a scan on the blocking pool; a panic in sled is
    /// reported as corruption.
    async fn read<T: Send + 'static>(
        &self,
        kind: ReadKind,
        read: impl for<'r> FnOnce(&'r Reader<Trees>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        match kind {
            ReadKind::Point => engine(|| read(&self.reader)),
            ReadKind::Scan => {
                let reader = self.reader.clone();
                blocking(move || read(&reader)).await
            }
        }
    }

    async fn submit(&self, mutation: Mutation, entry: Entry) -> Result<AdmitRecorded, StoreError> {
        self.sequencer.submit(mutation, entry).await
    }

    fn keys(&self) -> &Keyring {
        &self.reader.keys
    }

    fn published(&self) -> &Published {
        &self.published
    }

    fn closed(&self) -> tokio_util::sync::CancellationToken {
        self.sequencer.stopped()
    }

    async fn backup(
        &self,
        mut out: std::fs::File,
    ) -> Result<(std::fs::File, crate::store::backup::BackupSummary), StoreError> {
        let created_at = crate::clock::now_millis();
        let (reader, sequencer) = (self.reader.clone(), self.sequencer.clone());
        blocking(move || {
            let summary = sequencer.paused(|| {
                let start = std::time::Instant::now();
                let mut summary =
                    crate::store::backup::write_snapshot(&reader.kv, &mut out, created_at)?;
                summary.paused = start.elapsed();
                Ok::<_, StoreError>(summary)
            })?;
            Ok((out, summary))
        })
        .await
    }
}

/// Runs `f`, which calls into sled, on the blocking pool, inside
/// [`engine`]. A panic outside sled goes on unwinding in the caller.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    match tokio::task::spawn_blocking(move || engine(f)).await {
        Ok(r) => r,
        Err(e) => match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(_) => Err(StoreError::Io("a store read was cancelled".into())),
        },
    }
}

/// Creates the data directory (not its parents) readable by its owner
/// only: it holds the ledger and sealed personal data.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
        builder.mode(0o700);
        builder.create(dir)?;
        // Exactly 0700, whatever the umask.
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
    }
    #[cfg(not(unix))]
    builder.create(dir)
}

/// Narrows a data directory others can enter (one an older warden created,
/// or someone widened) to 0700, or warns where that is not allowed.
fn keep_private(dir: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let Ok(m) = std::fs::metadata(dir) else {
            return;
        };
        let mode = m.permissions().mode() & 0o777;
        if mode & 0o077 == 0 {
            return;
        }
        match std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)) {
            Ok(()) => tracing::warn!(
                dir = %dir.display(),
                was = format!("{mode:04o}"),
                "the data directory was open to group or others; it is 0700 now"
            ),
            Err(e) => tracing::warn!(
                dir = %dir.display(),
                mode = format!("{mode:04o}"),
                error = %e,
                "the data directory is open to group or others; run `chmod 700` on it"
            ),
        }
    }
    #[cfg(not(unix))]
    let _ = dir;
}

/// Opens (creating if needed) the sled database in `dir`, as warden always
/// opens it; refused with [`StoreError::Locked`] while another process
/// holds it.
pub(crate) fn open_db(dir: &Path) -> Result<sled::Db, StoreError> {
    create_private_dir(dir).map_err(|e| StoreError::Io(format!("{}: {e}", dir.display())))?;
    sled::Config::new()
        .path(dir)
        .mode(sled::Mode::HighThroughput)
        .open()
        .map_err(|e| match e {
            sled::Error::Io(ref io) if io.kind() == std::io::ErrorKind::WouldBlock => {
                StoreError::Locked(dir.display().to_string())
            }
            e if e.to_string().contains("lock") => StoreError::Locked(e.to_string()),
            e => io(e),
        })
}

/// Every tree warden keeps, in [`t::NAMES`] order.
pub(crate) fn open_trees(db: &sled::Db) -> Result<Trees, StoreError> {
    Ok(Trees(
        t::NAMES
            .iter()
            .map(|n| db.open_tree(n).map_err(io))
            .collect::<Result<Vec<_>, _>>()?
            .into(),
    ))
}

/// Counts deployments and orders by state once, for a store written before
/// the sequencer kept [`StateCounts`]; from then on every commit keeps them
/// current. Runs before the sequencer starts, so nothing changes meanwhile.
fn count_states(trees: &[sled::Tree]) -> Result<(), StoreError> {
    if trees[t::META].contains_key(META_STATE_COUNTS).map_err(io)? {
        return Ok(());
    }
    let mut counts = StateCounts::default();
    for item in trees[t::DEPLOYMENTS].iter() {
        let (k, v) = item.map_err(io)?;
        let d: Deployment = decode(&k, &v)?;
        bump(&mut counts.deployments, d.state);
    }
    for item in trees[t::ORDERS].iter() {
        let (k, v) = item.map_err(io)?;
        let o: Order = decode(&k, &v)?;
        bump(&mut counts.orders, o.state);
    }
    trees[t::META]
        .insert(META_STATE_COUNTS, crate::store::codec::encode(&counts)?)
        .map_err(io)?;
    Ok(())
}

/// Builds the index orders find their deployments by (see [`index`]) in a
/// store written before it existed, or before its keys took their present
/// form: open keys of any earlier form go, then every deployment an order
/// may act on is keyed, then a flush, then the mark that the index is
/// complete, then a flush, so a crash in between only means it is built
/// again.
fn index_open_deployments(trees: &[sled::Tree]) -> Result<(), StoreError> {
    if trees[t::META].contains_key(META_ORDER_INDEX).map_err(io)? {
        return Ok(());
    }
    let attribution = &trees[t::ATTRIBUTION];
    for key in attribution.scan_prefix([index::OPEN_CERTIFICATE]).keys() {
        attribution.remove(key.map_err(io)?).map_err(io)?;
    }
    let mut batch = sled::Batch::default();
    let mut in_batch = 0;
    for item in trees[t::DEPLOYMENTS].iter() {
        let (k, v) = item.map_err(io)?;
        let d: Deployment = decode(&k, &v)?;
        if d.state.order_may_act_on() {
            for key in std::iter::once(index::open_key(&d)).chain(index::certificate_keys(&d)) {
                batch.insert(key, Vec::new());
            }
            in_batch += 1;
        }
        // Bounded memory however many deployments are open.
        if in_batch == 10_000 {
            trees[t::ATTRIBUTION]
                .apply_batch(std::mem::take(&mut batch))
                .map_err(io)?;
            in_batch = 0;
        }
    }
    trees[t::ATTRIBUTION].apply_batch(batch).map_err(io)?;
    trees[t::ATTRIBUTION].flush().map_err(io)?;
    trees[t::META]
        .insert(META_ORDER_INDEX, Vec::new())
        .map_err(io)?;
    trees[t::META].flush().map_err(io)?;
    Ok(())
}

fn bump<S: PartialEq>(counts: &mut Vec<(S, u64)>, state: S) {
    match counts.iter_mut().find(|(s, _)| *s == state) {
        Some((_, n)) => *n += 1,
        None => counts.push((state, 1)),
    }
}

/// Start-up check: recomputes every stored hash from the stored entries,
/// compares them with what is stored, and checks the root at the last
/// checkpoint's size against that checkpoint, and the store against the
/// [`head`] beside it. A stored tree behind its checkpoint or head, an
/// edited entry or hash, or a checkpoint that does not verify, refuses
/// start. If the log grew after the last checkpoint (a crash between commit
/// and signing), the durable tree is signed now.
fn verify_ledger(
    db: &sled::Db,
    trees: &Trees,
    signer: &Signer,
    dir: &Path,
) -> Result<(u64, SignedCheckpoint), StoreError> {
    let StoredLedger { size, hashes, last } = read_ledger(trees, &signer.verifier())?;
    match head::read(dir, &signer.verifier()) {
        Ok(Some(h)) => head::check(dir, &h, size, &hashes)?,
        Ok(None) if size > 0 => tracing::info!(
            dir = %dir.display(),
            "no ledger head beside the store (a restored store, or one from an older warden); \
             it is written now"
        ),
        Ok(None) => {}
        Err(why) => tracing::warn!(%why, "ledger head ignored; it is written again now"),
    }
    if let Some(last) = &last {
        if last.checkpoint.size == size {
            return Ok((size, last.clone()));
        }
    }
    // Sign the durable tree (first start, or growth since the last checkpoint).
    let root = tree::tree_hash(size, &hashes).map_err(|e| tampered(e.to_string()))?;
    let signed = SignedCheckpoint::sign(signer, size, root)?;
    let meta = &trees[t::META];
    meta.insert(META_CHECKPOINT, signed.note.as_bytes())
        .map_err(io)?;
    meta.insert(META_CHECKPOINT_AT, &signed.signed_at.to_be_bytes())
        .map_err(io)?;
    db.flush().map_err(io)?;
    Ok((size, signed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::kv::read::ADMITTED_SCAN_BUDGET;
    use crate::store::{AdmittedBy, DecisionRecord, Store};

    /// Damage sled reports is corruption (DATA_LOSS to callers, never
    /// "retry"); its I/O errors stay I/O (UNAVAILABLE).
    #[test]
    fn damage_sled_reports_is_corruption_and_io_stays_io() {
        let e = StoreError::from(sled::Error::Corruption { at: None, bt: () });
        assert!(e.is_corruption(), "{e:?}");
        let e = StoreError::from(sled::Error::ReportableBug("no page".into()));
        assert!(e.is_corruption(), "{e:?}");
        let e = StoreError::from(sled::Error::Io(std::io::Error::other("disk busy")));
        assert!(matches!(e, StoreError::Io(_)), "{e:?}");
    }

    fn open(dir: &Path) -> SledStore {
        let keys = Keyring::parse("test", &Keyring::new_key_line("test-1").unwrap()).unwrap();
        let signer = Signer::generate("warden.test/ledger").unwrap();
        SledStore::open(dir, signer, keys).unwrap()
    }

    /// A long history of deployments that ended before the window is read
    /// in budgeted steps: each call stops after the budget with a cursor,
    /// the last one says the scan is complete, and a cursor of one
    /// selector is refused by another.
    #[tokio::test]
    async fn an_admission_scan_stops_at_its_budget_and_continues_from_its_cursor() {
        let tmp = tempfile::tempdir().unwrap();
        let store = open(&tmp.path().join("data"));
        let digest = "sha256:aa";
        let index = &store.engine.reader.kv[t::ATTRIBUTION];
        for i in 0..=ADMITTED_SCAN_BUDGET {
            let at = i64::try_from(i).unwrap();
            let key = index::admitted(index::MODEL, digest, at, &format!("dep-{i}"));
            index
                .insert(key, index::ended_at_value(Some(at + 1)))
                .unwrap();
        }
        let by = AdmittedBy::Model(digest);
        let from = 1_000_000;
        let first = store
            .admitted_in(by, from, i64::MAX, None, 10)
            .await
            .unwrap();
        assert!(first.deployments.is_empty());
        let next = first
            .next
            .expect("the budget ran out before the history did");
        assert!(store.admitted_cursor_valid(by, &next).await);
        assert!(
            !store
                .admitted_cursor_valid(AdmittedBy::Customer(digest), &next)
                .await
        );
        assert!(
            !store
                .admitted_cursor_valid(AdmittedBy::Model("sha256:bb"), &next)
                .await
        );
        let rest = store
            .admitted_in(by, from, i64::MAX, Some(&next), 10)
            .await
            .unwrap();
        assert!(rest.deployments.is_empty());
        assert_eq!(rest.next, None, "one key was left, and then none");
    }

    /// A store written before orders found their deployments by index gets
    /// the index when it opens: an order then stops the deployments stored
    /// before, and a store opened again with the index does not build it
    /// twice.
    /// Stores written before decisions were kept under their request id
    /// hold the decision's id there, and the decision in `decisions`: a
    /// repeat still answers with that first decision, and the offline
    /// check accepts both forms.
    #[tokio::test]
    async fn a_request_id_stored_in_the_earlier_form_still_replays() {
        use crate::store::conformance::{admission, admission_entry, admit, deployment, T0};
        use crate::store::kv::keys::admit_key;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let signer = Signer::generate("warden.test/ledger").unwrap();
        let copy = || Signer::from_text(&signer.to_text()).unwrap();
        let keys = || Keyring::parse("test", &Keyring::new_key_line("test-1").unwrap()).unwrap();
        let d = deployment("dep-1", "cust-1", "sha256:aaaa", T0);
        let store = SledStore::open(&dir, copy(), keys()).unwrap();
        let (index, _) = admit(&store, &d).await;
        let closed = store.closed();
        drop(store);
        closed.cancelled().await;
        {
            let db = open_db(&dir).unwrap();
            let trees = open_trees(&db).unwrap();
            let key = admit_key(&d.admitted_by, &d.request_id);
            let record = trees[t::ADMIT_REQUESTS].get(&key).unwrap().unwrap();
            let first: DecisionRecord = decode(&key, &record).unwrap();
            let id = first.decision_id.as_bytes();
            trees[t::DECISIONS].insert(id, record).unwrap();
            trees[t::ADMIT_REQUESTS].insert(&key, id).unwrap();
            db.flush().unwrap();
        }
        commit::wait_for_release(&dir);
        let report = check::check(&dir, &signer.verifier(), Some(&keys())).unwrap();
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        let store = SledStore::open(&dir, copy(), keys()).unwrap();
        let again = admission(&d.admitted_by, &d.request_id, None);
        let seen = store.order_revisions().await.unwrap().1;
        let entry = admission_entry(&again, None);
        match store
            .record_admission(&again, None, None, seen, entry)
            .await
        {
            Ok(AdmitRecorded::Replay(first)) => assert_eq!(first.ledger_index, Some(index)),
            other => panic!("expected the first decision, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_store_without_the_order_index_or_with_an_earlier_form_gets_it_at_open() {
        use crate::domain::order::{Action, EventKind, OrderState, Target, TargetKind};
        use crate::store::conformance::{admit, deployment, order, order_change, T0};
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let signer = Signer::generate("warden.test/ledger").unwrap();
        let copy = || Signer::from_text(&signer.to_text()).unwrap();
        let keys = || Keyring::parse("test", &Keyring::new_key_line("test-1").unwrap()).unwrap();
        let store = SledStore::open(&dir, copy(), keys()).unwrap();
        for (id, customer) in [
            ("dep-1", "cust-1"),
            ("dep-2", "cust-1"),
            ("dep-3", "cust-2"),
        ] {
            admit(&store, &deployment(id, customer, "sha256:aaaa", T0)).await;
        }
        // As a store written before the index: no index keys, no mark.
        let index_tree = &store.engine.reader.kv[t::ATTRIBUTION];
        for key in index_tree.iter().keys() {
            let key = key.unwrap();
            if key.first() == Some(&index::OPEN_CERTIFICATE)
                || key.first() == Some(&index::CUSTOMER_CERTIFICATE)
            {
                index_tree.remove(key).unwrap();
            }
        }
        // An open key of an earlier form (no admission time) names a
        // deployment that is not open: the rebuild must drop it.
        let earlier = deployment("dep-gone", "cust-1", "sha256:aaaa", T0);
        let mut stale = index::open_prefix(&earlier.certificate.fingerprint, Some("cust-1"));
        stale.extend_from_slice(b"dep-gone-of-an-earlier-form");
        index_tree.insert(stale.clone(), Vec::new()).unwrap();
        store.engine.reader.kv[t::META]
            .remove(META_ORDER_INDEX)
            .unwrap();
        let closed = store.closed();
        drop(store);
        closed.cancelled().await;

        let store = SledStore::open(&dir, copy(), keys()).unwrap();
        let index_tree = &store.engine.reader.kv[t::ATTRIBUTION];
        assert!(!index_tree.contains_key(&stale).unwrap());
        let open_keys = index_tree.scan_prefix([index::OPEN_CERTIFICATE]).count();
        assert_eq!(open_keys, 3, "one open key per open deployment");
        let suspend = Order {
            state: OrderState::Active,
            ..order(
                "ord-1",
                Target {
                    kind: TargetKind::Customer,
                    value: "cust-1".into(),
                },
                Action::Suspend,
            )
        };
        let (change, entry) =
            order_change(&suspend, &[EventKind::Issued, EventKind::Activated], None);
        store.change_order(change, entry).await.unwrap();
        let mut matched = store
            .order("ord-1")
            .await
            .unwrap()
            .unwrap()
            .matched_deployments;
        matched.sort();
        assert_eq!(matched, ["dep-1", "dep-2"]);
        assert!(store.engine.reader.kv[t::META]
            .contains_key(META_ORDER_INDEX)
            .unwrap());
    }
}
