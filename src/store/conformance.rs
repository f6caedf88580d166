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
// Values the checks write
// ---------------------------------------------------------------------------

/// When the checks' history starts.
pub const T0: UnixMillis = 1_700_000_000_000;
const LEASE: i64 = 5 * 60_000;
const KYC: &str = "spiffe://warden.test/kyc/a";
const SCHEDULER_A: &str = "spiffe://warden.test/scheduler/a";
const SCHEDULER_B: &str = "spiffe://warden.test/scheduler/b";
const OPERATOR: &str = "spiffe://warden.test/operator/a";
const AUTHORITY: &str = "spiffe://warden.test/attribution/a";
const MODEL: &str = "sha256:aaaa";
const OTHER_MODEL: &str = "sha256:bbbb";
const CHAIN_PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest as _, Sha256};
    hex::encode(Sha256::digest(bytes))
}

/// Version `version` of customer `id`, written at `at`.
pub fn customer(id: &str, version: u64, at: UnixMillis) -> Customer {
    Customer {
        customer_id: id.into(),
        kind: CustomerKind::Organisation,
        legal_name: format!("Customer {id} v{version} GmbH"),
        country: "DE".into(),
        status: CustomerStatus::Verified,
        status_reason: String::new(),
        version,
        updated_at: at,
        updated_by: KYC.into(),
        commitment_salt: sha256_hex(format!("{id}/{version}").as_bytes()),
        details: Default::default(),
        purged: false,
    }
}

fn customer_entry(c: &Customer, screening: Option<&Screening>) -> Entry {
    let change = if c.version == 1 {
        CustomerChange::Registered
    } else {
        CustomerChange::Updated
    };
    entry::customer_entry(c, change, screening, KYC, "")
}

/// A one-entry sanctions list called `version`.
pub fn sanctions_list(version: &str) -> SanctionsList {
    SanctionsList {
        name: "TEST".into(),
        version: version.into(),
        sha256: sha256_hex(version.as_bytes()),
        entries: vec![ListEntry {
            id: "1".into(),
            name: "Nobody In Particular".into(),
            aliases: Vec::new(),
            kind: "individual".into(),
            program: String::new(),
        }],
    }
}

fn list_entry(list: &SanctionsList) -> Entry {
    Entry::new(
        T0,
        KYC,
        "",
        Event::SanctionsListLoaded {
            name: list.name.clone(),
            version: list.version.clone(),
            sha256: list.sha256.clone(),
            entries: list.entries.len() as u64,
        },
    )
}

/// Revision `revision` of the screening of version `customer_version` of
/// customer `id` against `list`.
pub fn screening(
    id: &str,
    revision: u64,
    customer_version: u64,
    list: &SanctionsList,
) -> Screening {
    Screening {
        customer_id: id.into(),
        revision,
        status: ScreeningStatus::Clear,
        list_name: list.name.clone(),
        list_version: list.version.clone(),
        list_sha256: list.sha256.clone(),
        threshold: 0.9,
        screened_at: T0,
        hits: Vec::new(),
        customer_version,
        resolution_note: String::new(),
        resolution_salt: String::new(),
        resolved_by: String::new(),
        resolved_at: None,
    }
}

fn screenings_entry(list: &SanctionsList, changed: &[Screening]) -> Entry {
    Entry::new(
        T0,
        KYC,
        "",
        Event::CustomersScreened {
            list_sha256: list.sha256.clone(),
            screened: changed.len() as u64,
            changed: changed.iter().map(entry::ScreeningRef::of).collect(),
        },
    )
}

fn purge_entry(id: &str, versions: u64) -> Entry {
    Entry::new(
        T0,
        KYC,
        "",
        Event::CustomerPurged {
            customer_id: id.into(),
            versions,
        },
    )
}

/// An active deployment of `model` for `customer_id`, admitted at `at` by
/// scheduler A.
pub fn deployment(id: &str, customer_id: &str, model: &str, at: UnixMillis) -> Deployment {
    Deployment {
        deployment_id: id.into(),
        request_id: format!("req-{id}"),
        customer_id: customer_id.into(),
        customer_version: 1,
        model_digest: model.into(),
        workload: Workload {
            cluster: "c1".into(),
            region: "eu-west".into(),
            node: "n1".into(),
            accelerator_type: "h100".into(),
            accelerator_count: 8,
            endpoints: vec![format!("{id}.example.net:8000")],
        },
        state: DeploymentState::Active,
        admitted_at: at,
        lease_expires_at: at + LEASE,
        released_at: None,
        admitted_by: SCHEDULER_A.into(),
        certificate: CertificateSummary {
            fingerprint: "ff".repeat(32),
            serial: "01".into(),
            evaluator: "CN=Evaluator".into(),
            developer: "Developer".into(),
            model_name: "model".into(),
            model_version: "1".into(),
            not_after: at + 365 * 86_400_000,
        },
        chain_sha256: sha256_hex(CHAIN_PEM.as_bytes()),
        renewals: 0,
        order_id: None,
        facts: Vec::new(),
        last_renewal: None,
    }
}

/// The admission decision for `d` (allow) or for nothing (deny), sent by
/// `principal` as `request_id`.
pub fn admission(principal: &str, request_id: &str, d: Option<&Deployment>) -> DecisionRecord {
    DecisionRecord {
        decision_id: format!("dec-{}-{request_id}", principal.len()),
        kind: DecisionKind::Admit,
        request_id: request_id.into(),
        principal: principal.into(),
        at: d.map_or(T0, |d| d.admitted_at),
        customer_id: d.map_or("cust-x".into(), |d| d.customer_id.clone()),
        customer_version: d.map(|d| d.customer_version),
        model_digest: d.map_or(MODEL.into(), |d| d.model_digest.clone()),
        certificate_fingerprint: d.map(|d| d.certificate.fingerprint.clone()),
        allowed: d.is_some(),
        reasons: if d.is_some() {
            Vec::new()
        } else {
            vec![crate::domain::reason::Reason::new(
                crate::domain::reason::ReasonCode::CustomerUnknown,
                "no such customer",
            )]
        },
        deployment_id: d.map(|d| d.deployment_id.clone()),
        lease_expires_at: d.map(|d| d.lease_expires_at),
        licence: None,
        request_sha256: sha256_hex(request_id.as_bytes()),
        ledger_index: None,
    }
}

fn admission_entry(decision: &DecisionRecord, d: Option<&Deployment>) -> Entry {
    Entry::new(
        decision.at,
        &decision.principal,
        &decision.request_id,
        Event::Admission {
            decision_id: decision.decision_id.clone(),
            allowed: decision.allowed,
            reasons: decision.reasons.iter().map(|r| r.code).collect(),
            customer_id: decision.customer_id.clone(),
            customer: None,
            model_digest: decision.model_digest.clone(),
            certificate: None,
            deployment_id: decision.deployment_id.clone(),
            lease_expires_at: decision.lease_expires_at,
            workload: d.map(|d| d.workload.clone()).unwrap_or_default(),
        },
    )
}

/// Records the allowed admission of `d`, which must be new.
pub async fn admit(store: &dyn Store, d: &Deployment) -> (u64, Entry) {
    let decision = admission(&d.admitted_by, &d.request_id, Some(d));
    let entry = admission_entry(&decision, Some(d));
    let seen = store.order_revisions().await.expect("order_revisions").1;
    match store
        .record_admission(&decision, Some(d), Some(CHAIN_PEM), seen, entry.clone())
        .await
    {
        Ok(AdmitRecorded::New(index)) => (index, entry),
        other => panic!("admitting {} answered {other:?}", d.deployment_id),
    }
}

/// The decision and entry that turn `before` into `after` (a renewal if
/// it is still active, else a release).
fn update_decision(before: &Deployment, after: &Deployment, n: u32) -> (DecisionRecord, Entry) {
    let renewal = after.state == DeploymentState::Active;
    let decision = DecisionRecord {
        decision_id: format!("dec-{}-{n}", before.deployment_id),
        kind: if renewal {
            DecisionKind::Renew
        } else {
            DecisionKind::Release
        },
        request_id: format!("upd-{}-{n}", before.deployment_id),
        at: after.released_at.unwrap_or(after.admitted_at),
        lease_expires_at: renewal.then_some(after.lease_expires_at),
        ..admission(&before.admitted_by, "", Some(before))
    };
    let event = if renewal {
        Event::Renewal {
            decision_id: decision.decision_id.clone(),
            deployment_id: before.deployment_id.clone(),
            allowed: true,
            reasons: Vec::new(),
            customer: None,
            lease_expires_at: Some(after.lease_expires_at),
            endpoints: after.workload.endpoints.clone(),
        }
    } else {
        Event::Release {
            decision_id: decision.decision_id.clone(),
            deployment_id: before.deployment_id.clone(),
        }
    };
    let entry = Entry::new(
        decision.at,
        &before.admitted_by,
        &decision.request_id,
        event,
    );
    (decision, entry)
}

/// `d` renewed once, for a minute more.
fn renewed(d: &Deployment) -> Deployment {
    Deployment {
        lease_expires_at: d.lease_expires_at + 60_000,
        renewals: d.renewals + 1,
        ..d.clone()
    }
}

fn released(d: &Deployment, at: UnixMillis) -> Deployment {
    Deployment {
        state: DeploymentState::Released,
        released_at: Some(at),
        ..d.clone()
    }
}

/// A new suspending order of `target` (PENDING, quorum 1).
pub fn order(id: &str, target: Target, action: Action) -> Order {
    Order {
        order_id: id.into(),
        target,
        action,
        reason: "harm".into(),
        legal_basis: "statute".into(),
        expires_at: None,
        state: OrderState::Pending,
        issued_by: OPERATOR.into(),
        issued_at: T0,
        approvals: Vec::new(),
        quorum: 1,
        activated_at: None,
        matched_deployments: Vec::new(),
        acks: Vec::new(),
        lift_approvals: Vec::new(),
        lift_quorum: 1,
        lift_reason: String::new(),
        ended_at: None,
        revision: 0,
        reason_salt: "00".repeat(32),
    }
}

fn model_target(model: &str) -> Target {
    Target {
        kind: TargetKind::ModelDigest,
        value: model.into(),
    }
}

/// An order change and the entry the caller writes with it (the store
/// fills in the deployments it changed).
fn order_change(order: &Order, events: &[EventKind], ack: Option<&str>) -> (OrderChange, Entry) {
    let change = OrderChange {
        order: order.clone(),
        events: events.to_vec(),
        activate: events.contains(&EventKind::Activated),
        release: events.contains(&EventKind::Lifted) || events.contains(&EventKind::Expired),
        ack: ack.map(str::to_string),
        now: T0 + 1_000,
        revision: Default::default(),
    };
    let entry = Entry::new(
        T0 + 1_000,
        OPERATOR,
        "",
        Event::Order {
            order_id: order.order_id.clone(),
            events: events.iter().map(|e| e.as_str().to_string()).collect(),
            action: order.action.as_str().into(),
            target_kind: format!("{:?}", order.target.kind),
            target: order.target.value.clone(),
            state: order.state.as_str().into(),
            reason_commitment: entry::text_commitment(&order.reason_salt, &order.reason),
            deployment_ids: Vec::new(),
        },
    );
    (change, entry)
}

/// `order` (as stored) moved to `state` by `events`.
async fn change_order(
    store: &dyn Store,
    order: &Order,
    state: OrderState,
    events: &[EventKind],
    ack: Option<&str>,
) -> (u64, Entry, u64) {
    let next = Order {
        state,
        activated_at: (state == OrderState::Active)
            .then_some(T0 + 1_000)
            .or(order.activated_at),
        ended_at: matches!(state, OrderState::Lifted | OrderState::Expired).then_some(T0 + 1_000),
        ..order.clone()
    };
    let size = ledger_size(store).await;
    let (change, entry) = order_change(&next, events, ack);
    let revision = store
        .change_order(change, entry.clone())
        .await
        .unwrap_or_else(|e| panic!("change_order {events:?} of {}: {e}", order.order_id));
    (size, entry, revision)
}

fn legal_process() -> LegalProcess {
    LegalProcess {
        case_reference: "CR-1".into(),
        requesting_authority: "Example Unit".into(),
        jurisdiction: "US-CA".into(),
        instrument: Instrument::Subpoena,
        document_sha256: "ab".repeat(32),
    }
}

/// An attribution request for the deployments of `model`.
pub fn attribution_request(request_id: &str, model: &str) -> (AttributionRequest, Entry) {
    let selector = Selector::Model {
        model_digest: model.into(),
        from: T0,
        to: T0 + 86_400_000,
    };
    let request = AttributionRequest {
        request_id: request_id.into(),
        principal: AUTHORITY.into(),
        at: T0,
        legal_process: legal_process(),
        selector: selector.clone(),
        page_token: String::new(),
        flagged_for_review: false,
        ledger_index: 0,
        disclosure: None,
    };
    let entry = Entry::new(
        T0,
        AUTHORITY,
        request_id,
        Event::AttributionRequested {
            request_id: request_id.into(),
            legal_process: legal_process(),
            selector,
            page_token: String::new(),
            flagged_for_review: false,
        },
    );
    (request, entry)
}

fn disclosure_entry(request_id: &str, request_index: u64, d: &Disclosure) -> Entry {
    Entry::new(
        T0,
        AUTHORITY,
        request_id,
        Event::AttributionDisclosed {
            request_id: request_id.into(),
            request_index,
            deployment_ids: d.deployment_ids.clone(),
            identities: d.identities.clone(),
        },
    )
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

// ---------------------------------------------------------------------------
// Every kind of write, checked as it goes
// ---------------------------------------------------------------------------

/// What [`write_each_kind`] wrote: each write's name, index and entry.
type Written = Vec<(&'static str, u64, Entry)>;

/// Writes once with every write method, checking after each that its
/// state is readable and its entry recorded, at consecutive indexes.
async fn write_each_kind(case: &Case) -> Written {
    let mut written = Written::new();
    write_kyc(case, &mut written).await;
    write_deployments(case, &mut written).await;
    write_orders(case, &mut written).await;
    write_attribution(case, &mut written).await;
    for (i, (what, index, _)) in written.iter().enumerate() {
        assert_eq!(
            *index, i as u64,
            "{what}: serial writes to a fresh store are recorded at 0, 1, 2, …"
        );
    }
    written
}

async fn note(case: &Case, written: &mut Written, what: &'static str, index: u64, expected: Entry) {
    assert_recorded(case, what, index, &expected).await;
    written.push((what, index, expected));
}

async fn write_kyc(case: &Case, written: &mut Written) {
    let store = case.s();
    let list = sanctions_list("v1");
    let e = list_entry(&list);
    let i = expect(
        "put_sanctions_list",
        store.put_sanctions_list(&list, e.clone()).await,
    );
    let loaded = expect("sanctions_list", store.sanctions_list().await);
    assert_eq!(
        loaded.as_ref(),
        Some(&list),
        "put_sanctions_list: not loaded"
    );
    note(case, written, "put_sanctions_list", i, e).await;

    let c1 = customer("cust-1", 1, T0);
    let s1 = screening("cust-1", 1, 1, &list);
    let e = customer_entry(&c1, Some(&s1));
    let i = expect(
        "put_customer",
        store.put_customer(&c1, Some(&s1), e.clone()).await,
    );
    assert_eq!(expect("customer", store.customer("cust-1").await), Some(c1));
    assert_eq!(
        expect("screening", store.screening("cust-1").await),
        Some(s1)
    );
    assert_eq!(
        expect(
            "customer_version_index",
            store.customer_version_index("cust-1", 1).await
        ),
        Some(i),
        "put_customer: customer_version_index is not the entry's index"
    );
    note(case, written, "put_customer (new, screened)", i, e).await;

    let c1v2 = customer("cust-1", 2, T0 + 10);
    let e = customer_entry(&c1v2, None);
    let i = expect(
        "put_customer",
        store.put_customer(&c1v2, None, e.clone()).await,
    );
    assert_eq!(
        expect("customer", store.customer("cust-1").await),
        Some(c1v2)
    );
    note(case, written, "put_customer (version 2)", i, e).await;

    let s2 = screening("cust-1", 2, 2, &list);
    let e = screenings_entry(&list, std::slice::from_ref(&s2));
    let i = expect(
        "put_screenings",
        store
            .put_screenings(std::slice::from_ref(&s2), e.clone())
            .await,
    );
    assert_eq!(
        expect("screening", store.screening("cust-1").await),
        Some(s2)
    );
    note(case, written, "put_screenings", i, e).await;

    let c2 = customer("cust-2", 1, T0);
    let s = screening("cust-2", 1, 1, &list);
    let e = customer_entry(&c2, Some(&s));
    let i = expect(
        "put_customer",
        store.put_customer(&c2, Some(&s), e.clone()).await,
    );
    note(case, written, "put_customer (to purge)", i, e).await;
    let e = purge_entry("cust-2", 1);
    let i = expect(
        "purge_customer",
        store.purge_customer("cust-2", 1, e.clone()).await,
    );
    let purged = expect("customer", store.customer("cust-2").await)
        .expect("purge_customer: a purged customer keeps its tombstone");
    assert!(
        purged.purged && purged.legal_name.is_empty(),
        "purge_customer: {purged:?}"
    );
    assert_eq!(
        expect("screening", store.screening("cust-2").await),
        None,
        "purge_customer: the screening was kept"
    );
    note(case, written, "purge_customer", i, e).await;
}

async fn write_deployments(case: &Case, written: &mut Written) {
    let store = case.s();
    let d1 = deployment("dep-1", "cust-1", MODEL, T0 + 100);
    let (i, e) = admit(store, &d1).await;
    let stored = stored_deployment(store, "dep-1").await;
    assert_eq!(
        (stored.state, &stored.facts),
        (DeploymentState::Active, &vec![i]),
        "record_admission: the deployment's admission fact"
    );
    assert_eq!(
        expect("chain", store.chain(&d1.chain_sha256).await).as_deref(),
        Some(CHAIN_PEM),
        "record_admission: the chain"
    );
    let first = replayed(store, SCHEDULER_A, &d1.request_id).await;
    assert_eq!(
        (first.allowed, first.ledger_index),
        (true, Some(i)),
        "record_admission: the decision"
    );
    note(case, written, "record_admission (allow)", i, e).await;

    let deny = admission(SCHEDULER_A, "req-deny", None);
    let e = admission_entry(&deny, None);
    let got = store
        .record_admission(&deny, None, None, 0, e.clone())
        .await;
    let Ok(AdmitRecorded::New(i)) = got else {
        panic!("record_admission (deny): {got:?}");
    };
    let first = replayed(store, SCHEDULER_A, "req-deny").await;
    assert_eq!(
        (first.allowed, first.ledger_index),
        (false, Some(i)),
        "record_admission (deny): the decision"
    );
    note(case, written, "record_admission (deny)", i, e).await;

    let before = stored_deployment(store, "dep-1").await;
    let after = renewed(&before);
    let (decision, e) = update_decision(&before, &after, 1);
    let i = expect(
        "update_deployment",
        store
            .update_deployment(&before, &after, &decision, Some(0), e.clone())
            .await,
    );
    let stored = stored_deployment(store, "dep-1").await;
    assert_eq!(
        (stored.lease_expires_at, stored.renewals),
        (after.lease_expires_at, 1),
        "update_deployment (renew): the lease"
    );
    assert!(
        stored.last_renewal == Some(i) || stored.facts.contains(&i),
        "update_deployment (renew): the renewal's index is not in the record: {stored:?}"
    );
    note(case, written, "update_deployment (renew)", i, e).await;

    let d2 = deployment("dep-2", "cust-1", OTHER_MODEL, T0 + 200);
    let (i, e) = admit(store, &d2).await;
    note(case, written, "record_admission (to release)", i, e).await;
    let before = stored_deployment(store, "dep-2").await;
    let after = released(&before, T0 + 300);
    let (decision, e) = update_decision(&before, &after, 1);
    let i = expect(
        "update_deployment",
        store
            .update_deployment(&before, &after, &decision, None, e.clone())
            .await,
    );
    let stored = stored_deployment(store, "dep-2").await;
    assert_eq!(
        (stored.state, stored.released_at, stored.facts.last()),
        (DeploymentState::Released, Some(T0 + 300), Some(&i)),
        "update_deployment (release)"
    );
    note(case, written, "update_deployment (release)", i, e).await;
}

async fn write_orders(case: &Case, written: &mut Written) {
    let store = case.s();
    let issued = order("ord-1", model_target(MODEL), Action::Suspend);
    let (i, e, revision) = change_order(
        store,
        &issued,
        OrderState::Pending,
        &[EventKind::Issued],
        None,
    )
    .await;
    let stored = stored_order(store, "ord-1").await;
    assert_eq!(
        (stored.state, stored.revision, revision),
        (OrderState::Pending, 1, 1),
        "change_order (issue)"
    );
    note(case, written, "change_order (issue)", i, e).await;

    let (i, mut e, revision) = change_order(
        store,
        &stored,
        OrderState::Active,
        &[EventKind::Approved, EventKind::Activated],
        None,
    )
    .await;
    let stored = stored_order(store, "ord-1").await;
    assert_eq!(
        (stored.state, stored.revision, &stored.matched_deployments),
        (OrderState::Active, 3, &vec!["dep-1".to_string()]),
        "change_order (activate)"
    );
    assert_eq!(
        revision, 3,
        "change_order returns its last event's revision"
    );
    let d1 = stored_deployment(store, "dep-1").await;
    assert_eq!(
        (d1.state, d1.order_id.as_deref(), d1.facts.last()),
        (DeploymentState::Suspended, Some("ord-1"), Some(&i)),
        "change_order (activate): the matched deployment is suspended in the same commit"
    );
    let active = expect("active_orders", store.active_orders().await);
    assert_eq!(
        active,
        vec![stored.clone()],
        "change_order (activate): active_orders"
    );
    e.set_order_deployments(vec!["dep-1".into()]);
    note(case, written, "change_order (activate)", i, e).await;

    let (i, mut e, _) = change_order(
        store,
        &stored,
        OrderState::Active,
        &[EventKind::Acknowledged],
        Some("dep-1"),
    )
    .await;
    let d1 = stored_deployment(store, "dep-1").await;
    assert_eq!(
        d1.facts.last(),
        Some(&i),
        "change_order (acknowledge): the deployment's fact"
    );
    e.set_order_deployments(vec!["dep-1".into()]);
    note(case, written, "change_order (acknowledge)", i, e).await;

    let stored = stored_order(store, "ord-1").await;
    let (i, mut e, _) = change_order(
        store,
        &stored,
        OrderState::Lifted,
        &[EventKind::LiftRequested, EventKind::Lifted],
        None,
    )
    .await;
    let d1 = stored_deployment(store, "dep-1").await;
    assert_eq!(
        (d1.state, d1.order_id.as_deref(), d1.facts.last()),
        (DeploymentState::Active, None, Some(&i)),
        "change_order (lift): the suspended deployment resumes in the same commit"
    );
    assert_eq!(
        expect("active_orders", store.active_orders().await),
        Vec::<Order>::new(),
        "change_order (lift): active_orders"
    );
    e.set_order_deployments(vec!["dep-1".into()]);
    note(case, written, "change_order (lift)", i, e).await;
}

async fn write_attribution(case: &Case, written: &mut Written) {
    let store = case.s();
    let (request, e) = attribution_request("attr-1", MODEL);
    let i = expect(
        "put_attribution_request",
        store.put_attribution_request(&request, e.clone()).await,
    );
    let stored = expect(
        "attribution_requests",
        store.attribution_requests(None, 10).await,
    );
    assert_eq!(
        stored,
        vec![AttributionRequest {
            ledger_index: i,
            ..request
        }],
        "put_attribution_request: the request with its entry's index"
    );
    note(case, written, "put_attribution_request", i, e).await;

    let disclosure = Disclosure {
        ledger_index: 0,
        deployment_ids: vec!["dep-1".into()],
        identities: vec![CustomerRef::of(&customer("cust-1", 2, T0 + 10))],
    };
    let request_index = i;
    let e = disclosure_entry("attr-1", request_index, &disclosure);
    let i = expect(
        "record_disclosure",
        store
            .record_disclosure(request_index, &disclosure, e.clone())
            .await,
    );
    let stored = expect(
        "attribution_requests",
        store.attribution_requests(None, 10).await,
    );
    assert_eq!(
        stored.first().and_then(|r| r.disclosure.clone()),
        Some(Disclosure {
            ledger_index: i,
            ..disclosure
        }),
        "record_disclosure: the disclosure with its entry's index"
    );
    note(case, written, "record_disclosure", i, e).await;
}

/// The state [`write_each_kind`] leaves, read back whole.
async fn assert_state_after_each_kind(store: &dyn Store) {
    let c1 = expect("customer", store.customer("cust-1").await).expect("cust-1 is stored");
    assert_eq!(c1.version, 2, "cust-1's newest version");
    let s1 = expect("screening", store.screening("cust-1").await).expect("cust-1's screening");
    assert_eq!(s1.revision, 2, "cust-1's screening revision");
    let c2 = expect("customer", store.customer("cust-2").await).expect("cust-2's tombstone");
    assert!(c2.purged, "cust-2 is purged");
    assert_eq!(
        expect("sanctions_list", store.sanctions_list().await).map(|l| l.version),
        Some("v1".into())
    );
    let d1 = stored_deployment(store, "dep-1").await;
    assert_eq!((d1.state, d1.renewals), (DeploymentState::Active, 1));
    let d2 = stored_deployment(store, "dep-2").await;
    assert_eq!(d2.state, DeploymentState::Released);
    let o = stored_order(store, "ord-1").await;
    assert_eq!((o.state, o.revision), (OrderState::Lifted, 6));
    assert_eq!(
        expect("order_revisions", store.order_revisions().await),
        (6, 6)
    );
    let r = expect(
        "attribution_requests",
        store.attribution_requests(None, 10).await,
    );
    assert!(
        r.len() == 1 && r[0].disclosure.is_some(),
        "the attribution request and its disclosure: {r:?}"
    );
    assert!(
        !replayed(store, SCHEDULER_A, "req-deny").await.allowed,
        "the denied admission's decision"
    );
}

// ---------------------------------------------------------------------------
// The checks
// ---------------------------------------------------------------------------

/// After each kind of write the state it made is readable, and its entry
/// is stored at the index it returned, covered by a signed checkpoint
/// whose root is that of the stored entries.
pub async fn every_write_commits_its_state_with_its_entry<E: Engine + ?Sized>(engine: &E) {
    let case = Case::new(engine).await;
    write_each_kind(&case).await;
    assert_state_after_each_kind(case.s()).await;
}

/// Whatever a write returned is durable: closed and reopened, the store
/// holds every state and every entry, under a checkpoint of the same root.
pub async fn a_returned_write_survives_closing_and_reopening<E: Engine + ?Sized>(engine: &E) {
    let case = Case::new(engine).await;
    let written = write_each_kind(&case).await;
    let before = expect("checkpoint", case.s().checkpoint().await).checkpoint;
    let case = case.reopen().await;
    let after = expect("checkpoint", case.s().checkpoint().await).checkpoint;
    assert_eq!(
        (after.size, after.root),
        (before.size, before.root),
        "reopened, the store has another checkpoint"
    );
    for (what, index, entry) in &written {
        assert_recorded(&case, &format!("{what}, reopened"), *index, entry).await;
    }
    assert_state_after_each_kind(case.s()).await;
}

/// A request id sent again by the same principal is answered with the
/// first decision and records nothing, even after reopening; the same id
/// from another principal is a new request.
pub async fn an_admission_is_recorded_once_per_principal_and_request_id<E: Engine + ?Sized>(
    engine: &E,
) {
    let case = Case::new(engine).await;
    let store = case.s();
    let d = deployment("dep-1", "cust-1", MODEL, T0);
    let (first, _) = admit(store, &d).await;
    let size = ledger_size(store).await;
    // The same request again, decided differently this time: another
    // deployment id and a denial.
    let again = deployment("dep-other", "cust-1", MODEL, T0 + 5);
    let mut decision = admission(SCHEDULER_A, &d.request_id, Some(&again));
    decision.decision_id = "dec-second".into();
    let e = admission_entry(&decision, Some(&again));
    let got = store
        .record_admission(&decision, Some(&again), Some(CHAIN_PEM), 0, e)
        .await;
    match got {
        Ok(AdmitRecorded::Replay(f)) => assert_eq!(
            (f.decision_id.as_str(), f.ledger_index),
            (
                admission(SCHEDULER_A, &d.request_id, Some(&d))
                    .decision_id
                    .as_str(),
                Some(first)
            ),
            "a replay answers with the first decision"
        ),
        other => {
            panic!("the same principal and request id again: expected a replay, got {other:?}")
        }
    }
    assert_eq!(
        ledger_size(store).await,
        size,
        "a replay appended to the ledger"
    );
    assert_eq!(
        expect("deployment", store.deployment("dep-other").await),
        None,
        "a replay stored the second deployment"
    );
    let case = case.reopen().await;
    let store = case.s();
    let after_reopen = replayed(store, SCHEDULER_A, &d.request_id).await;
    assert_eq!(
        after_reopen.ledger_index,
        Some(first),
        "reopened, the request id answers with the first decision"
    );
    let from_b = Deployment {
        deployment_id: "dep-b".into(),
        admitted_by: SCHEDULER_B.into(),
        ..d.clone()
    };
    let (index_b, _) = admit(store, &from_b).await;
    assert_eq!(
        index_b, size,
        "the same request id from another principal is a new admission at the next index"
    );
    assert!(
        expect("deployment", store.deployment("dep-b").await).is_some(),
        "the other principal's deployment"
    );
}

/// A customer version that is not exactly one past the newest is refused:
/// version 1 again with [`StoreError::AlreadyExists`], any other with
/// [`Conflict::CustomerChanged`]; nothing is written.
pub async fn customer_writes_out_of_turn_are_refused_and_change_nothing<E: Engine + ?Sized>(
    engine: &E,
) {
    let case = Case::new(engine).await;
    let store = case.s();
    let c1 = customer("cust-1", 1, T0);
    expect(
        "put_customer",
        store
            .put_customer(&c1, None, customer_entry(&c1, None))
            .await,
    );
    let size = ledger_size(store).await;
    let again = customer("cust-1", 1, T0 + 1);
    match store
        .put_customer(&again, None, customer_entry(&again, None))
        .await
    {
        Err(StoreError::AlreadyExists(_)) => {}
        other => panic!("version 1 of a stored customer: expected AlreadyExists, got {other:?}"),
    }
    assert_eq!(
        ledger_size(store).await,
        size,
        "a refused registration appended"
    );
    let changed = || Conflict::CustomerChanged {
        customer_id: "cust-1".into(),
    };
    let v3 = customer("cust-1", 3, T0 + 2);
    let got = store
        .put_customer(&v3, None, customer_entry(&v3, None))
        .await;
    assert_conflict(
        store,
        "put_customer skipping a version",
        size,
        got,
        changed(),
    )
    .await;
    let v2 = customer("cust-1", 2, T0 + 3);
    expect(
        "put_customer",
        store
            .put_customer(&v2, None, customer_entry(&v2, None))
            .await,
    );
    let size = ledger_size(store).await;
    let v2b = customer("cust-1", 2, T0 + 4);
    let got = store
        .put_customer(&v2b, None, customer_entry(&v2b, None))
        .await;
    assert_conflict(
        store,
        "put_customer of a stored version",
        size,
        got,
        changed(),
    )
    .await;
    assert_eq!(
        expect("customer", store.customer("cust-1").await),
        Some(v2),
        "a refused version replaced the stored one"
    );
    let got = store
        .purge_customer("cust-1", 1, purge_entry("cust-1", 1))
        .await;
    assert_conflict(
        store,
        "purge_customer of an older version",
        size,
        got,
        changed(),
    )
    .await;
    assert!(
        !expect("customer", store.customer("cust-1").await)
            .expect("cust-1")
            .purged,
        "a refused purge purged"
    );
}

/// A screening must be one revision past the stored one, of the
/// customer's newest version, and made against the loaded list.
pub async fn screening_writes_out_of_turn_are_refused_and_change_nothing<E: Engine + ?Sized>(
    engine: &E,
) {
    let case = Case::new(engine).await;
    let store = case.s();
    let v1 = sanctions_list("v1");
    expect(
        "put_sanctions_list",
        store.put_sanctions_list(&v1, list_entry(&v1)).await,
    );
    let c = customer("cust-1", 1, T0);
    let s1 = screening("cust-1", 1, 1, &v1);
    expect(
        "put_customer",
        store
            .put_customer(&c, Some(&s1), customer_entry(&c, Some(&s1)))
            .await,
    );
    let size = ledger_size(store).await;
    let screening_changed = Conflict::ScreeningChanged {
        customer_id: "cust-1".into(),
    };
    for (what, s) in [
        (
            "put_screenings of the stored revision",
            screening("cust-1", 1, 1, &v1),
        ),
        (
            "put_screenings skipping a revision",
            screening("cust-1", 3, 1, &v1),
        ),
    ] {
        let got = store
            .put_screenings(std::slice::from_ref(&s), screenings_entry(&v1, &[]))
            .await;
        assert_conflict(store, what, size, got, screening_changed.clone()).await;
    }
    let stale_version = screening("cust-1", 2, 7, &v1);
    let got = store
        .put_screenings(
            std::slice::from_ref(&stale_version),
            screenings_entry(&v1, &[]),
        )
        .await;
    let customer_changed = Conflict::CustomerChanged {
        customer_id: "cust-1".into(),
    };
    assert_conflict(
        store,
        "put_screenings of a version that is not the newest",
        size,
        got,
        customer_changed,
    )
    .await;
    // All or nothing: one good screening with a bad one writes neither.
    let c2 = customer("cust-2", 1, T0);
    expect(
        "put_customer",
        store
            .put_customer(&c2, None, customer_entry(&c2, None))
            .await,
    );
    let size = ledger_size(store).await;
    let good = screening("cust-2", 1, 1, &v1);
    let bad = screening("cust-1", 5, 1, &v1);
    let got = store
        .put_screenings(&[good, bad], screenings_entry(&v1, &[]))
        .await;
    assert_conflict(
        store,
        "put_screenings with one bad",
        size,
        got,
        screening_changed,
    )
    .await;
    assert_eq!(
        expect("screening", store.screening("cust-2").await),
        None,
        "put_screenings wrote part of a refused batch"
    );
    let v2 = sanctions_list("v2");
    expect(
        "put_sanctions_list",
        store.put_sanctions_list(&v2, list_entry(&v2)).await,
    );
    let size = ledger_size(store).await;
    let c2v2 = customer("cust-2", 2, T0 + 1);
    let against_v1 = screening("cust-2", 1, 2, &v1);
    let got = store
        .put_customer(
            &c2v2,
            Some(&against_v1),
            customer_entry(&c2v2, Some(&against_v1)),
        )
        .await;
    assert_conflict(
        store,
        "put_customer screened against a replaced list",
        size,
        got,
        Conflict::ListReplaced,
    )
    .await;
    assert_eq!(
        expect("customer", store.customer("cust-2").await).map(|c| c.version),
        Some(1),
        "a refused put_customer wrote its version"
    );
}

/// A renewal or release decided on a record that has changed since is
/// refused with [`Conflict::DeploymentChanged`] and changes nothing.
pub async fn a_deployment_update_from_a_stale_record_is_refused<E: Engine + ?Sized>(engine: &E) {
    let case = Case::new(engine).await;
    let store = case.s();
    admit(store, &deployment("dep-1", "cust-1", MODEL, T0)).await;
    let first = stored_deployment(store, "dep-1").await;
    let after = renewed(&first);
    let (decision, e) = update_decision(&first, &after, 1);
    expect(
        "update_deployment",
        store
            .update_deployment(&first, &after, &decision, None, e)
            .await,
    );
    let current = stored_deployment(store, "dep-1").await;
    let size = ledger_size(store).await;
    // Decided on the record as it was before the renewal.
    let stale_after = released(&first, T0 + 50);
    let (decision, e) = update_decision(&first, &stale_after, 2);
    let got = store
        .update_deployment(&first, &stale_after, &decision, None, e)
        .await;
    let changed = Conflict::DeploymentChanged {
        deployment_id: "dep-1".into(),
    };
    assert_conflict(
        store,
        "update_deployment from a stale before",
        size,
        got,
        changed.clone(),
    )
    .await;
    assert_eq!(
        stored_deployment(store, "dep-1").await,
        current,
        "a refused update changed the deployment"
    );
    let missing = deployment("dep-none", "cust-1", MODEL, T0);
    let (decision, e) = update_decision(&missing, &released(&missing, T0 + 1), 1);
    let got = store
        .update_deployment(&missing, &released(&missing, T0 + 1), &decision, None, e)
        .await;
    let missing_changed = Conflict::DeploymentChanged {
        deployment_id: "dep-none".into(),
    };
    assert_conflict(
        store,
        "update_deployment of no deployment",
        size,
        got,
        missing_changed,
    )
    .await;
}

/// An admission or renewal decided against the orders in force before an
/// order came into force (or was lifted) is refused with
/// [`Conflict::OrdersChanged`]; decided again against the new revision it
/// is recorded. Issuing an order that is not yet in force changes nothing
/// for them.
pub async fn decisions_against_changed_orders_are_refused<E: Engine + ?Sized>(engine: &E) {
    let case = Case::new(engine).await;
    let store = case.s();
    admit(store, &deployment("dep-1", "cust-1", OTHER_MODEL, T0)).await;
    let (_, seen) = expect("order_revisions", store.order_revisions().await);
    let issued = order("ord-1", model_target(MODEL), Action::Suspend);
    change_order(
        store,
        &issued,
        OrderState::Pending,
        &[EventKind::Issued],
        None,
    )
    .await;
    assert_eq!(
        expect("order_revisions", store.order_revisions().await),
        (1, seen),
        "issuing an order changed the orders in force"
    );
    let pending = stored_order(store, "ord-1").await;
    change_order(
        store,
        &pending,
        OrderState::Active,
        &[EventKind::Approved, EventKind::Activated],
        None,
    )
    .await;
    let (_, now_seen) = expect("order_revisions", store.order_revisions().await);
    assert_eq!(
        now_seen, 3,
        "the activation's revision is the orders in force"
    );
    let size = ledger_size(store).await;

    let d = deployment("dep-2", "cust-1", OTHER_MODEL, T0 + 10);
    let decision = admission(SCHEDULER_A, &d.request_id, Some(&d));
    let e = admission_entry(&decision, Some(&d));
    let got = store
        .record_admission(&decision, Some(&d), Some(CHAIN_PEM), seen, e.clone())
        .await;
    assert_conflict(
        store,
        "record_admission against old orders",
        size,
        got,
        Conflict::OrdersChanged,
    )
    .await;
    assert_eq!(
        expect("deployment", store.deployment("dep-2").await),
        None,
        "a refused admission stored its deployment"
    );
    let got = store
        .record_admission(&decision, Some(&d), Some(CHAIN_PEM), now_seen, e)
        .await;
    assert!(
        matches!(got, Ok(AdmitRecorded::New(i)) if i == size),
        "record_admission decided again: {got:?}"
    );

    let before = stored_deployment(store, "dep-1").await;
    let after = renewed(&before);
    let (decision, e) = update_decision(&before, &after, 1);
    let size = ledger_size(store).await;
    let got = store
        .update_deployment(&before, &after, &decision, Some(seen), e.clone())
        .await;
    assert_conflict(
        store,
        "renewal against old orders",
        size,
        got,
        Conflict::OrdersChanged,
    )
    .await;
    expect(
        "update_deployment decided again",
        store
            .update_deployment(&before, &after, &decision, Some(now_seen), e)
            .await,
    );
}

/// A change computed from an order revision that is no longer the stored
/// one is refused with [`Conflict::OrderChanged`]; accepted changes number
/// their events 1, 2, 3, … with no gaps, across orders.
pub async fn order_changes_from_a_stale_revision_are_refused_and_revisions_have_no_gaps<
    E: Engine + ?Sized,
>(
    engine: &E,
) {
    let case = Case::new(engine).await;
    let store = case.s();
    let mut returned = Vec::new();
    for id in ["ord-1", "ord-2"] {
        let o = order(id, model_target(MODEL), Action::Suspend);
        returned.push(
            change_order(store, &o, OrderState::Pending, &[EventKind::Issued], None)
                .await
                .2,
        );
    }
    let size = ledger_size(store).await;
    let conflict = || Conflict::OrderChanged {
        order_id: "ord-1".into(),
    };
    // Issued again from nothing: the stored order is at revision 1.
    let fresh = order("ord-1", model_target(MODEL), Action::Terminate);
    let (change, e) = order_change(&fresh, &[EventKind::Issued], None);
    let got = store.change_order(change, e).await;
    assert_conflict(
        store,
        "change_order issuing a stored order",
        size,
        got,
        conflict(),
    )
    .await;
    let stored = stored_order(store, "ord-1").await;
    let (_, _, r) = change_order(
        store,
        &stored,
        OrderState::Active,
        &[EventKind::Approved, EventKind::Activated],
        None,
    )
    .await;
    returned.push(r);
    let size = ledger_size(store).await;
    // `stored` is the revision before the activation.
    let lifted = Order {
        state: OrderState::Lifted,
        ..stored.clone()
    };
    let (change, e) = order_change(&lifted, &[EventKind::Lifted], None);
    let got = store.change_order(change, e).await;
    assert_conflict(
        store,
        "change_order from a stale revision",
        size,
        got,
        conflict(),
    )
    .await;
    assert_eq!(
        stored_order(store, "ord-1").await.state,
        OrderState::Active,
        "a refused change changed the order"
    );
    let ord2 = stored_order(store, "ord-2").await;
    returned.push(
        change_order(
            store,
            &ord2,
            OrderState::Pending,
            &[EventKind::Approved],
            None,
        )
        .await
        .2,
    );
    let active = stored_order(store, "ord-1").await;
    returned.push(
        change_order(
            store,
            &active,
            OrderState::Lifted,
            &[EventKind::LiftRequested, EventKind::Lifted],
            None,
        )
        .await
        .2,
    );
    assert_eq!(
        returned,
        vec![1, 2, 4, 5, 7],
        "change_order's returned revisions"
    );
    let events = expect("order_events", store.order_events(0, 100, 100).await);
    let revisions: Vec<u64> = events.iter().map(|e| e.revision).collect();
    assert_eq!(
        revisions,
        (1..=7).collect::<Vec<u64>>(),
        "order event revisions are consecutive from 1"
    );
    let kinds: Vec<EventKind> = events.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            EventKind::Issued,
            EventKind::Issued,
            EventKind::Approved,
            EventKind::Activated,
            EventKind::Approved,
            EventKind::LiftRequested,
            EventKind::Lifted,
        ],
        "order events in revision order"
    );
    assert_eq!(
        expect("order_revisions", store.order_revisions().await),
        (7, 7),
        "order_revisions: the last event, the last change to the orders in force"
    );
    for o in ["ord-1", "ord-2"] {
        let last = events
            .iter()
            .rfind(|e| e.order.order_id == o)
            .map(|e| e.revision);
        assert_eq!(
            Some(stored_order(store, o).await.revision),
            last,
            "{o}'s revision is its last event's"
        );
    }
}

/// A disclosure is recorded for a recorded request, once:
/// [`Conflict::RequestNotRecorded`] for another index,
/// [`Conflict::RequestAnswered`] the second time.
pub async fn a_disclosure_is_recorded_once_for_a_recorded_request<E: Engine + ?Sized>(engine: &E) {
    let case = Case::new(engine).await;
    let store = case.s();
    let (request, e) = attribution_request("attr-1", MODEL);
    let index = expect(
        "put_attribution_request",
        store.put_attribution_request(&request, e).await,
    );
    let disclosure = Disclosure {
        ledger_index: 0,
        deployment_ids: Vec::new(),
        identities: Vec::new(),
    };
    let size = ledger_size(store).await;
    let got = store
        .record_disclosure(
            index + 1,
            &disclosure,
            disclosure_entry("attr-1", index + 1, &disclosure),
        )
        .await;
    assert_conflict(
        store,
        "record_disclosure for no request",
        size,
        got,
        Conflict::RequestNotRecorded {
            request_index: index + 1,
        },
    )
    .await;
    expect(
        "record_disclosure",
        store
            .record_disclosure(
                index,
                &disclosure,
                disclosure_entry("attr-1", index, &disclosure),
            )
            .await,
    );
    let size = ledger_size(store).await;
    let got = store
        .record_disclosure(
            index,
            &disclosure,
            disclosure_entry("attr-1", index, &disclosure),
        )
        .await;
    assert_conflict(
        store,
        "record_disclosure a second time",
        size,
        got,
        Conflict::RequestAnswered {
            request_index: index,
        },
    )
    .await;
}

/// `customer_as_of(t)` is the newest version written at or before `t`;
/// `customer_version` and `customer_version_index` find each version and
/// the entry that recorded it.
pub async fn customer_as_of_reads_the_version_in_force<E: Engine + ?Sized>(engine: &E) {
    let case = Case::new(engine).await;
    let store = case.s();
    let mut indexes = Vec::new();
    for (v, at) in [(1, T0), (2, T0 + 1_000), (3, T0 + 2_000)] {
        let c = customer("cust-1", v, at);
        indexes.push(expect(
            "put_customer",
            store.put_customer(&c, None, customer_entry(&c, None)).await,
        ));
    }
    for (as_of, version) in [
        (T0 - 1, None),
        (T0, Some(1)),
        (T0 + 999, Some(1)),
        (T0 + 1_000, Some(2)),
        (T0 + 1_999, Some(2)),
        (T0 + 2_000, Some(3)),
        (i64::MAX, Some(3)),
    ] {
        let got = expect(
            "customer_as_of",
            store.customer_as_of("cust-1", as_of).await,
        );
        assert_eq!(
            got.as_ref().map(|c| c.version),
            version,
            "customer_as_of(T0 {:+})",
            as_of.saturating_sub(T0)
        );
        if let (Some(c), Some(v)) = (got, version) {
            assert_eq!(
                c,
                customer("cust-1", v, c.updated_at),
                "the version as written"
            );
        }
    }
    assert_eq!(
        expect(
            "customer_as_of",
            store.customer_as_of("cust-none", i64::MAX).await
        ),
        None
    );
    for (v, index) in (1..=3).zip(&indexes) {
        let c = expect(
            "customer_version",
            store.customer_version("cust-1", v).await,
        );
        assert_eq!(c.map(|c| c.version), Some(v), "customer_version {v}");
        assert_eq!(
            expect(
                "customer_version_index",
                store.customer_version_index("cust-1", v).await
            ),
            Some(*index),
            "customer_version_index {v}"
        );
    }
    assert_eq!(
        expect(
            "customer_version",
            store.customer_version("cust-1", 4).await
        ),
        None
    );
}

/// One of the lists that page by id.
enum Listing {
    Customers(CustomerFilter),
    Deployments(DeploymentFilter),
    Orders(OrderFilter),
}

impl Listing {
    /// The ids of one page.
    async fn page(&self, store: &dyn Store, after: Option<&str>, limit: usize) -> Vec<String> {
        match self {
            Listing::Customers(f) => expect(
                "list_customers",
                store.list_customers(f, after, limit).await,
            )
            .into_iter()
            .map(|c| c.customer_id)
            .collect(),
            Listing::Deployments(f) => expect(
                "list_deployments",
                store.list_deployments(f, after, limit).await,
            )
            .into_iter()
            .map(|d| d.deployment_id)
            .collect(),
            Listing::Orders(f) => expect("list_orders", store.list_orders(f, after, limit).await)
                .into_iter()
                .map(|o| o.order_id)
                .collect(),
        }
    }

    /// Every page of at most `limit`, each after the last id of the one
    /// before, until a short page.
    async fn all(&self, store: &dyn Store, limit: usize) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for _ in 0..100 {
            let page = self
                .page(store, out.last().map(String::as_str), limit)
                .await;
            assert!(
                page.len() <= limit,
                "a page of limit {limit} has {} items",
                page.len()
            );
            let full = page.len() == limit;
            out.extend(page);
            if !full {
                return out;
            }
        }
        panic!("paging with limit {limit} did not end after 100 pages");
    }
}

/// `list_customers`, `list_deployments` and `list_orders` return, page
/// after page, every item that matches once, in id order, for any limit.
pub async fn lists_page_through_every_item_once_in_order<E: Engine + ?Sized>(engine: &E) {
    let case = Case::new(engine).await;
    let store = case.s();
    // A customer, a deployment and an order under each id, written out of
    // order; every other one is PENDING.
    let ids = ["c-3", "c-0", "c-6", "c-1", "c-5", "c-2", "c-4"];
    for (n, id) in ids.iter().enumerate() {
        let mut c = customer(id, 1, T0 + n as i64);
        if n % 2 == 0 {
            c.status = CustomerStatus::Pending;
        }
        expect(
            "put_customer",
            store.put_customer(&c, None, customer_entry(&c, None)).await,
        );
        admit(store, &deployment(id, id, MODEL, T0 + n as i64)).await;
        let o = order(id, model_target(id), Action::Suspend);
        change_order(store, &o, OrderState::Pending, &[EventKind::Issued], None).await;
    }
    // A second version: the newest is listed, once.
    let c = customer("c-1", 2, T0 + 100);
    expect(
        "put_customer",
        store.put_customer(&c, None, customer_entry(&c, None)).await,
    );
    let newest = expect(
        "list_customers",
        store
            .list_customers(&Default::default(), Some("c-0"), 1)
            .await,
    );
    assert_eq!(
        newest
            .iter()
            .map(|c| (c.customer_id.as_str(), c.version))
            .collect::<Vec<_>>(),
        vec![("c-1", 2)],
        "list_customers lists the newest version"
    );
    let mut sorted: Vec<String> = ids.map(String::from).to_vec();
    sorted.sort();
    let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let cases = [
        (
            "list_customers",
            Listing::Customers(Default::default()),
            sorted.clone(),
        ),
        (
            "list_customers of PENDING",
            Listing::Customers(CustomerFilter {
                status: Some(CustomerStatus::Pending),
                country: None,
            }),
            strings(&["c-3", "c-4", "c-5", "c-6"]),
        ),
        (
            "list_deployments",
            Listing::Deployments(DeploymentFilter {
                now: T0,
                ..Default::default()
            }),
            sorted.clone(),
        ),
        (
            "list_deployments of one customer",
            Listing::Deployments(DeploymentFilter {
                customer_id: Some("c-5".into()),
                now: T0,
                ..Default::default()
            }),
            strings(&["c-5"]),
        ),
        (
            "list_orders",
            Listing::Orders(OrderFilter {
                now: T0,
                ..Default::default()
            }),
            sorted.clone(),
        ),
        (
            "list_orders of ACTIVE",
            Listing::Orders(OrderFilter {
                state: Some(OrderState::Active),
                now: T0,
                ..Default::default()
            }),
            Vec::new(),
        ),
    ];
    for (what, listing, expected) in &cases {
        for limit in 1..=8 {
            assert_eq!(
                &listing.all(store, limit).await,
                expected,
                "{what}, limit {limit}"
            );
        }
    }
}

/// Every page of `admitted_in(by, from, to)` with `limit`, following
/// `next` until the scan is complete: the deployment ids in order.
async fn admitted_pages(
    store: &dyn Store,
    by: AdmittedBy<'_>,
    (from, to): (UnixMillis, UnixMillis),
    limit: usize,
) -> Vec<String> {
    let mut out = Vec::new();
    let mut after: Option<Cursor> = None;
    for _ in 0..100 {
        let page = expect(
            "admitted_in",
            store.admitted_in(by, from, to, after.as_ref(), limit).await,
        );
        assert!(
            page.deployments.len() <= limit,
            "admitted_in returned more than {limit}"
        );
        out.extend(
            page.deployments
                .iter()
                .map(|(d, _)| d.deployment_id.clone()),
        );
        match page.next {
            Some(next) => {
                assert!(
                    store.admitted_cursor_valid(by, &next).await,
                    "a cursor admitted_in minted for {by:?} is not valid for it"
                );
                after = Some(next);
            }
            None => return out,
        }
    }
    panic!("admitted_in with limit {limit} did not end after 100 pages");
}

/// `admitted_in` pages, newest admission first, through every deployment
/// of a model or customer that was admitted by the end of the window and
/// had not ended before its start, once, for any limit; each item's cursor
/// continues after it; a cursor is valid only for the selector that minted
/// it.
pub async fn admission_pages_cover_the_window_once_and_cursors_keep_to_their_selector<
    E: Engine + ?Sized,
>(
    engine: &E,
) {
    let case = Case::new(engine).await;
    let store = case.s();
    let step = 10 * 60_000;
    let mut all = Vec::new();
    for i in 0..9i64 {
        let customer_id = if i % 3 == 0 { "cust-a" } else { "cust-b" };
        let model = if i == 4 { OTHER_MODEL } else { MODEL };
        let d = deployment(&format!("dep-{i}"), customer_id, model, T0 + i * step);
        admit(store, &d).await;
        if i % 4 == 1 {
            let before = stored_deployment(store, &d.deployment_id).await;
            let after = released(&before, d.admitted_at + 60_000);
            let (decision, e) = update_decision(&before, &after, 1);
            expect(
                "update_deployment",
                store
                    .update_deployment(&before, &after, &decision, None, e)
                    .await,
            );
        }
        all.push(stored_deployment(store, &d.deployment_id).await);
    }
    let window = (T0 + 2 * step, T0 + 7 * step);
    let expected = |keep: &dyn Fn(&Deployment) -> bool| -> Vec<String> {
        let mut v: Vec<&Deployment> = all
            .iter()
            .filter(|d| keep(d) && d.admitted_at <= window.1 && d.end() >= window.0)
            .collect();
        v.sort_by_key(|d| std::cmp::Reverse(d.admitted_at));
        v.iter().map(|d| d.deployment_id.clone()).collect()
    };
    let of_model = expected(&|d| d.model_digest == MODEL);
    let of_customer = expected(&|d| d.customer_id == "cust-b");
    assert!(
        of_model.len() >= 3 && of_customer.len() >= 3,
        "the window holds a few"
    );
    for limit in 1..=8 {
        assert_eq!(
            admitted_pages(store, AdmittedBy::Model(MODEL), window, limit).await,
            of_model,
            "admitted_in by model, limit {limit}"
        );
        assert_eq!(
            admitted_pages(store, AdmittedBy::Customer("cust-b"), window, limit).await,
            of_customer,
            "admitted_in by customer, limit {limit}"
        );
    }
    let by = AdmittedBy::Model(MODEL);
    let page = expect(
        "admitted_in",
        store.admitted_in(by, window.0, window.1, None, 100).await,
    );
    for (k, (_, cursor)) in page.deployments.iter().enumerate() {
        let rest = expect(
            "admitted_in",
            store
                .admitted_in(by, window.0, window.1, Some(cursor), 100)
                .await,
        );
        let ids: Vec<String> = rest
            .deployments
            .iter()
            .map(|(d, _)| d.deployment_id.clone())
            .collect();
        assert_eq!(
            ids,
            of_model[k + 1..],
            "admitted_in after item {k}'s cursor"
        );
        assert!(
            store.admitted_cursor_valid(by, cursor).await,
            "item {k}'s cursor"
        );
        for other in [
            AdmittedBy::Model(OTHER_MODEL),
            AdmittedBy::Customer(MODEL),
            AdmittedBy::Customer("cust-b"),
        ] {
            assert!(
                !store.admitted_cursor_valid(other, cursor).await,
                "a cursor minted for {by:?} is valid for {other:?}"
            );
        }
    }
    assert!(
        !store
            .admitted_cursor_valid(by, &Cursor::from_bytes(b"not a cursor".to_vec()))
            .await,
        "bytes no store minted are a valid cursor"
    );
}

/// `attribution_requests` pages newest first by `before`, and
/// `order_events` pages oldest first by revision, covering each once.
pub async fn request_and_event_pages_cover_everything_once<E: Engine + ?Sized>(engine: &E) {
    let case = Case::new(engine).await;
    let store = case.s();
    let mut indexes = Vec::new();
    for n in 0..7 {
        let (r, e) = attribution_request(&format!("attr-{n}"), MODEL);
        indexes.push(expect(
            "put_attribution_request",
            store.put_attribution_request(&r, e).await,
        ));
        let o = order(&format!("ord-{n}"), model_target(MODEL), Action::Suspend);
        change_order(store, &o, OrderState::Pending, &[EventKind::Issued], None).await;
    }
    indexes.reverse();
    for limit in 1..=8 {
        let mut got = Vec::new();
        let mut before = None;
        loop {
            let page = expect(
                "attribution_requests",
                store.attribution_requests(before, limit).await,
            );
            assert!(page.len() <= limit);
            got.extend(page.iter().map(|r| r.ledger_index));
            if page.len() < limit {
                break;
            }
            before = page.last().map(|r| r.ledger_index);
        }
        assert_eq!(got, indexes, "attribution_requests, limit {limit}");

        let mut revisions = Vec::new();
        let mut after = 0;
        loop {
            let page = expect("order_events", store.order_events(after, 7, limit).await);
            assert!(page.len() <= limit);
            revisions.extend(page.iter().map(|e| e.revision));
            match page.last() {
                Some(last) if page.len() == limit => after = last.revision,
                _ => break,
            }
        }
        assert_eq!(
            revisions,
            (1..=7).collect::<Vec<u64>>(),
            "order_events, limit {limit}"
        );
    }
    let some = expect("order_events", store.order_events(2, 5, 100).await);
    assert_eq!(
        some.iter().map(|e| e.revision).collect::<Vec<_>>(),
        vec![3, 4, 5],
        "order_events(2, 5) is (2, 5]"
    );
    assert!(
        expect("order_events", store.order_events(5, 5, 100).await).is_empty(),
        "order_events(5, 5) is empty"
    );
}

/// For a ledger of [`PROOF_SIZE`] entries, written one by one and then
/// concurrently (so batches hold several): every checkpoint seen for a
/// size has the root computed from the stored entries (one root per
/// size, before and after reopening); inclusion proofs verify for every
/// index in every size and consistency proofs between every two sizes.
pub async fn proofs_verify_at_every_size_and_one_size_has_one_root<E: Engine + ?Sized>(engine: &E) {
    let case = Case::new(engine).await;
    let mut roots: BTreeMap<u64, Vec<Hash>> = BTreeMap::new();
    let seen = |roots: &mut BTreeMap<u64, Vec<Hash>>, c: &Checkpoint| {
        roots.entry(c.size).or_default().push(c.root);
    };
    for n in 0..PROOF_SIZE / 2 {
        let (r, e) = attribution_request(&format!("attr-{n}"), MODEL);
        expect(
            "put_attribution_request",
            case.s().put_attribution_request(&r, e).await,
        );
        seen(
            &mut roots,
            &expect("checkpoint", case.s().checkpoint().await).checkpoint,
        );
    }
    let mut tasks = tokio::task::JoinSet::new();
    for n in PROOF_SIZE / 2..PROOF_SIZE {
        let store = case.store.clone();
        tasks.spawn(async move {
            let (r, e) = attribution_request(&format!("attr-{n}"), MODEL);
            expect(
                "put_attribution_request",
                store.put_attribution_request(&r, e).await,
            );
            expect("checkpoint", store.checkpoint().await).checkpoint
        });
    }
    while let Some(c) = tasks.join_next().await {
        seen(&mut roots, &c.expect("a writer panicked"));
    }
    let case = case.reopen().await;
    let store = case.s();
    seen(
        &mut roots,
        &expect("checkpoint", store.checkpoint().await).checkpoint,
    );
    let size = ledger_size(store).await;
    assert_eq!(
        size, PROOF_SIZE,
        "the ledger size after {PROOF_SIZE} writes"
    );
    let entries = all_entries(store, size).await;
    let tree = memory_tree(&entries);
    let root_at = |s: u64| {
        if s == 0 {
            tree::empty_root()
        } else {
            tree.root_at(s).expect("root_at")
        }
    };
    for (s, rs) in &roots {
        for r in rs {
            assert_eq!(
                *r,
                root_at(*s),
                "a checkpoint of size {s} has another root than its entries"
            );
        }
    }
    let past_end = expect("entries", store.entries(size, 5).await);
    assert!(past_end.is_empty(), "entries past the end exist");
    let at = expect(
        "entries_at",
        store.entries_at(&[size - 1, size, size + 7]).await,
    );
    assert_eq!(
        at.keys().copied().collect::<Vec<_>>(),
        vec![size - 1],
        "entries_at returns only the entries that exist"
    );
    for to in 1..=size {
        for i in 0..to {
            let proof = expect("inclusion_proof", store.inclusion_proof(i, to).await);
            let leaf = tree::leaf_hash(&entries[i as usize]);
            tree::check_record(&proof, to, root_at(to), i, leaf).unwrap_or_else(|e| {
                panic!("inclusion proof of entry {i} in the tree of size {to} does not verify: {e}")
            });
        }
    }
    for to in 0..=size {
        for from in 0..=to {
            let proof = expect("consistency_proof", store.consistency_proof(from, to).await);
            tree::check_tree(&proof, to, root_at(to), from, root_at(from)).unwrap_or_else(|e| {
                panic!("consistency proof from size {from} to {to} does not verify: {e}")
            });
        }
    }
}

/// The ledger size [`proofs_verify_at_every_size_and_one_size_has_one_root`]
/// builds: proofs of every shape (left and right subtrees, perfect and
/// ragged trees) occur below it.
pub const PROOF_SIZE: u64 = 20;

/// `stats` reports the ledger size of the latest checkpoint and, in its
/// state counts, every deployment and order in the state last written for
/// it.
pub async fn state_counts_follow_every_write<E: Engine + ?Sized>(engine: &E) {
    use DeploymentState as D;
    let case = Case::new(engine).await;
    let store = case.s();
    let counts = |deployments: [(D, u64); 3], orders: [(OrderState, u64); 3]| (deployments, orders);
    let read = || async move {
        let stats = expect("stats", store.stats().await);
        assert_eq!(
            stats.ledger_size,
            ledger_size(store).await,
            "stats and the checkpoint disagree on the ledger size"
        );
        let s = &stats.states;
        counts(
            [D::Active, D::Released, D::Suspended].map(|d| (d, s.deployments_in(d))),
            [OrderState::Pending, OrderState::Active, OrderState::Lifted]
                .map(|o| (o, s.orders_in(o))),
        )
    };
    let want = |a, r, s, op, oa, ol| {
        counts(
            [(D::Active, a), (D::Released, r), (D::Suspended, s)],
            [
                (OrderState::Pending, op),
                (OrderState::Active, oa),
                (OrderState::Lifted, ol),
            ],
        )
    };
    assert_eq!(read().await, want(0, 0, 0, 0, 0, 0), "an empty store");
    for i in 0..3 {
        admit(
            store,
            &deployment(&format!("dep-{i}"), "cust-1", MODEL, T0 + i),
        )
        .await;
    }
    admit(store, &deployment("dep-x", "cust-1", OTHER_MODEL, T0)).await;
    assert_eq!(
        read().await,
        want(4, 0, 0, 0, 0, 0),
        "after four admissions"
    );
    let before = stored_deployment(store, "dep-0").await;
    let (decision, e) = update_decision(&before, &released(&before, T0 + 5), 1);
    expect(
        "update_deployment",
        store
            .update_deployment(&before, &released(&before, T0 + 5), &decision, None, e)
            .await,
    );
    assert_eq!(read().await, want(3, 1, 0, 0, 0, 0), "after a release");
    let o = order("ord-1", model_target(MODEL), Action::Suspend);
    change_order(store, &o, OrderState::Pending, &[EventKind::Issued], None).await;
    assert_eq!(
        read().await,
        want(3, 1, 0, 1, 0, 0),
        "after an order is issued"
    );
    let o = stored_order(store, "ord-1").await;
    change_order(
        store,
        &o,
        OrderState::Active,
        &[EventKind::Approved, EventKind::Activated],
        None,
    )
    .await;
    assert_eq!(
        read().await,
        want(1, 1, 2, 0, 1, 0),
        "after it suspends two"
    );
    let o = stored_order(store, "ord-1").await;
    change_order(store, &o, OrderState::Lifted, &[EventKind::Lifted], None).await;
    assert_eq!(read().await, want(3, 1, 0, 0, 0, 1), "after it is lifted");
    let case = case.reopen().await;
    let store = case.s();
    let stats = expect("stats", store.stats().await);
    assert_eq!(
        (
            stats.states.deployments_in(D::Active),
            stats.states.orders_in(OrderState::Lifted)
        ),
        (3, 1),
        "reopened, the counts are the same"
    );
}
