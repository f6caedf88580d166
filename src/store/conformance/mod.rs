//! The behavioural contract of [`Store`], written once and run against
//! every engine, so that an engine is plumbing and the contract lives in
//! one place: a state change and its ledger entry are committed together;
//! a write that returned survives closing and reopening; an admission is
//! recorded once per principal and request id; a write whose precondition
//! no longer holds is refused with the [`Conflict`] that names it and
//! changes nothing; order revisions have no gaps; `as_of` reads see the
//! version in force; pages cover every item once, in order; inclusion and
//! consistency proofs verify at every size, and one size has one root.
//!
//! An engine takes part by implementing [`Engine`] (a fresh, empty store
//! per check: sled a new directory, a database server a new schema) and
//! expanding [`store_conformance_tests!`](crate::store_conformance_tests)
//! in a test file, which makes one test per check, named after it. Each
//! check is a public async function that panics with a message naming what
//! broke, so it can also be called on its own.
//!
//! Compiled with the crate (not only under `cfg(test)`) so that the tests
//! of every engine, in `tests/`, can call it.

mod conflicts;
mod orders;
mod proofs;
mod reads;
mod values;
mod writes;

pub use conflicts::*;
pub use orders::*;
pub use proofs::*;
pub use reads::*;
pub use values::*;
pub use writes::*;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;

use super::{
    AdmitRecorded, AdmittedBy, Conflict, Cursor, CustomerFilter, DecisionKind, DecisionRecord,
    DeploymentFilter, OrderChange, OrderFilter, Store, StoreError,
};
use crate::domain::attribution::{
    AttributionRequest, Disclosure, Instrument, LegalProcess, Selector,
};
use crate::domain::customer::{Customer, CustomerKind, CustomerStatus, Screening, ScreeningStatus};
use crate::domain::deployment::{CertificateSummary, Deployment, DeploymentState, Workload};
use crate::domain::order::{Action, EventKind, Order, OrderState, Target, TargetKind};
use crate::domain::UnixMillis;
use crate::ledger::checkpoint::Checkpoint;
use crate::ledger::entry::{self, CustomerChange, CustomerRef, Entry, Event};
use crate::ledger::note::Verifier;
use crate::ledger::tree::{self, Hash, MemoryTree};
use crate::screening::{ListEntry, SanctionsList};

/// One storage engine under test.
#[async_trait]
pub trait Engine: Send + Sync {
    /// A new, empty store of its own, not yet opened: no other check sees
    /// it, and it goes away when the instance is dropped.
    async fn fresh(&self) -> Box<dyn Instance>;
}

/// One store of an [`Engine`], which a check opens, closes and opens again.
#[async_trait]
pub trait Instance: Send + Sync {
    /// Opens the store. Called again once every handle from the last call
    /// is dropped and [`Store::closed`] fired, it opens the same store.
    async fn open(&self) -> Arc<dyn Store>;
    /// The key that verifies the store's signed checkpoints.
    fn ledger_verifier(&self) -> Verifier;
}

/// Expands to one `#[tokio::test]` per conformance check, each running the
/// check against a fresh store of `$engine` (an expression of a type that
/// implements [`Engine`], evaluated once per test). A failure names the
/// check.
#[macro_export]
macro_rules! store_conformance_tests {
    ($engine:expr) => {
        $crate::store_conformance_tests!(@each $engine;
            every_write_commits_its_state_with_its_entry,
            a_returned_write_survives_closing_and_reopening,
            an_admission_is_recorded_once_per_principal_and_request_id,
            customer_writes_out_of_turn_are_refused_and_change_nothing,
            screening_writes_out_of_turn_are_refused_and_change_nothing,
            a_deployment_update_from_a_stale_record_is_refused,
            decisions_against_changed_orders_are_refused,
            order_changes_from_a_stale_revision_are_refused_and_revisions_have_no_gaps,
            a_disclosure_is_recorded_once_for_a_recorded_request,
            customer_as_of_reads_the_version_in_force,
            lists_page_through_every_item_once_in_order,
            admission_pages_cover_the_window_once_and_cursors_keep_to_their_selector,
            request_and_event_pages_cover_everything_once,
            proofs_verify_at_every_size_and_one_size_has_one_root,
            state_counts_follow_every_write,
            orders_act_on_every_deployment_their_target_names,
        );
    };
    (@each $engine:expr; $($check:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                $crate::store::conformance::$check(&$engine).await;
            }
        )+
    };
}

/// A store under test, with what it needs to close and reopen it.
pub struct Case {
    instance: Box<dyn Instance>,
    pub store: Arc<dyn Store>,
}

impl Case {
    /// Opens a fresh store of `engine`.
    pub async fn new<E: Engine + ?Sized>(engine: &E) -> Self {
        let instance = engine.fresh().await;
        let store = instance.open().await;
        Self { instance, store }
    }

    /// Closes the store (drops the only handle, waits for
    /// [`Store::closed`]) and opens it again.
    pub async fn reopen(self) -> Self {
        let Case { instance, store } = self;
        let closed = store.closed();
        drop(store);
        // Not a wait for time to pass: a bound on a store that never
        // closes, so the check fails instead of hanging.
        tokio::time::timeout(std::time::Duration::from_secs(60), closed.cancelled())
            .await
            .expect("the store did not close within 60 s of its last handle being dropped");
        let store = instance.open().await;
        Self { instance, store }
    }

    fn s(&self) -> &dyn Store {
        self.store.as_ref()
    }
}

// ---------------------------------------------------------------------------
// What the checks assert
// ---------------------------------------------------------------------------

/// Entries covered by the latest checkpoint.
pub async fn ledger_size(store: &dyn Store) -> u64 {
    store
        .checkpoint()
        .await
        .expect("checkpoint")
        .checkpoint
        .size
}

/// Every entry, `[0, size)`, as stored.
async fn all_entries(store: &dyn Store, size: u64) -> Vec<Vec<u8>> {
    let entries = store.entries(0, size).await.expect("entries");
    assert_eq!(
        entries.len() as u64,
        size,
        "entries(0, {size}) returned {} entries for a ledger of {size}",
        entries.len()
    );
    entries
}

fn memory_tree(entries: &[Vec<u8>]) -> MemoryTree {
    let mut t = MemoryTree::new();
    for e in entries {
        t.append_data(e).expect("append to a memory tree");
    }
    t
}

/// The write `what` returned `index`: its entry is stored there, exactly
/// as written (an order change's with the deployments it changed), and the
/// latest checkpoint covers it, is signed, and has the root of the stored
/// entries.
pub async fn assert_recorded(case: &Case, what: &str, index: u64, expected: &Entry) {
    let store = case.s();
    let at = store.entries_at(&[index]).await.expect("entries_at");
    let bytes = at
        .get(&index)
        .unwrap_or_else(|| panic!("{what}: no entry at the index it returned ({index})"));
    let stored = Entry::from_bytes(bytes)
        .unwrap_or_else(|e| panic!("{what}: the entry at {index} does not parse: {e}"));
    assert_eq!(
        &stored, expected,
        "{what}: the entry at {index} is not the one written with it"
    );
    let one = store.entries(index, 1).await.expect("entries");
    assert_eq!(
        one.first(),
        Some(bytes),
        "{what}: entries({index}, 1) and entries_at([{index}]) disagree"
    );
    let signed = store.checkpoint().await.expect("checkpoint");
    assert!(
        signed.checkpoint.size > index,
        "{what}: returned index {index} before a checkpoint covered it (size {})",
        signed.checkpoint.size
    );
    let opened = Checkpoint::open(&signed.note, &case.instance.ledger_verifier())
        .unwrap_or_else(|e| panic!("{what}: the checkpoint note does not verify: {e}"));
    assert_eq!(
        opened, signed.checkpoint,
        "{what}: the signed note says something else than the checkpoint"
    );
    let entries = all_entries(store, signed.checkpoint.size).await;
    let root = memory_tree(&entries).root().expect("root");
    assert_eq!(
        root, signed.checkpoint.root,
        "{what}: the checkpoint's root is not the root of the stored entries"
    );
}

/// A write refused with `conflict` (as `what`): nothing was appended.
async fn assert_conflict<T: std::fmt::Debug>(
    store: &dyn Store,
    what: &str,
    size_before: u64,
    got: Result<T, StoreError>,
    conflict: Conflict,
) {
    match got {
        Err(StoreError::Conflict(c)) if c == conflict => {}
        other => panic!("{what}: expected a conflict {conflict:?}, got {other:?}"),
    }
    let size = ledger_size(store).await;
    assert_eq!(
        size, size_before,
        "{what}: a refused write appended to the ledger"
    );
}

fn expect<T, E: std::fmt::Display>(what: &str, r: Result<T, E>) -> T {
    r.unwrap_or_else(|e| panic!("{what}: {e}"))
}

async fn stored_deployment(store: &dyn Store, id: &str) -> Deployment {
    expect("deployment", store.deployment(id).await)
        .unwrap_or_else(|| panic!("deployment {id} is not stored"))
}

async fn stored_order(store: &dyn Store, id: &str) -> Order {
    expect("order", store.order(id).await).unwrap_or_else(|| panic!("order {id} is not stored"))
}

/// The first answer to `principal`'s `request_id`, read by sending it
/// again (which must record nothing).
async fn replayed(store: &dyn Store, principal: &str, request_id: &str) -> DecisionRecord {
    let probe = admission(principal, request_id, None);
    let size = ledger_size(store).await;
    let seen = expect("order_revisions", store.order_revisions().await).1;
    let entry = admission_entry(&probe, None);
    let got = store
        .record_admission(&probe, None, None, seen, entry)
        .await;
    let first = match got {
        Ok(AdmitRecorded::Replay(first)) => *first,
        other => panic!("{principal} {request_id} sent again: expected a replay, got {other:?}"),
    };
    assert_eq!(
        ledger_size(store).await,
        size,
        "a replayed admission appended to the ledger"
    );
    first
}
