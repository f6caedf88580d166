//! Durable state behind one trait, so the engine can change without the API
//! layer noticing. Every write carries the ledger entry that records it;
//! the two are committed together by the sequencer, and the write returns
//! only after both are flushed and covered by a signed checkpoint. Speed
//! comes from group commit (many writers share one flush), never from
//! skipping the flush.
//!
//! Stored values carry an application-level checksum: a value that fails it
//! is reported as corruption and the call fails closed. So is damage the
//! storage engine finds itself, a panic inside it, and a store that lost
//! writes it had acknowledged (see [`head`]): corruption is never reported
//! as something a retry could fix.

pub mod backup;
mod codec;
mod conflict;
/// The behavioural contract of [`Store`], run against every engine.
#[doc(hidden)]
pub mod conformance;
mod guard;
pub mod head;
mod kv;
pub mod postgres;
mod sealed;
mod sled;

pub use conflict::{conflict_apart, retry_on_conflict, Conflict, CONFLICT_ATTEMPTS};
pub use guard::{CorruptionWatch, Guarded};
pub use postgres::PgStore;
pub use sled::check;
pub use sled::SledStore;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::domain::attribution::{AttributionRequest, Disclosure};
use crate::domain::customer::{Customer, CustomerStatus, Screening};
use crate::domain::deployment::{Deployment, DeploymentState};
use crate::domain::order::{Order, OrderEvent};
use crate::domain::reason::Reason;
use crate::domain::UnixMillis;
use crate::ledger::entry::Entry;
use crate::ledger::tree::Hash;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage I/O failed: {0}")]
    Io(String),
    #[error("{key} is damaged: {detail}")]
    Corrupt { key: String, detail: String },
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// A precondition of a write no longer holds; nothing was written.
    #[error("{0} was changed concurrently; retry")]
    Conflict(Conflict),
    #[error("store is locked by another process (one warden per data directory): {0}")]
    Locked(String),
    /// A state that cannot happen unless warden's code or its stored data
    /// is wrong (a value that does not encode, a proof asked beyond the
    /// tree, a panic): not I/O, so no retry helps. Damage a checksum or
    /// sled found is [`StoreError::Corrupt`] instead.
    #[error("broken invariant: {0}")]
    Invariant(String),
    /// Stored personal data that does not open with the configured keys.
    #[error(transparent)]
    Pii(#[from] crate::pii::PiiError),
}

impl StoreError {
    /// The same failure, for another caller of a batch that failed:
    /// corruption and broken invariants keep their kind, anything else is
    /// I/O (retry later).
    pub(crate) fn for_another_caller(&self) -> StoreError {
        match self {
            StoreError::Corrupt { key, detail } => StoreError::Corrupt {
                key: key.clone(),
                detail: detail.clone(),
            },
            StoreError::Invariant(what) => StoreError::Invariant(what.clone()),
            other => StoreError::Io(other.to_string()),
        }
    }

    /// Whether stored data is damaged: no retry will fix it.
    pub fn is_corruption(&self) -> bool {
        matches!(self, StoreError::Corrupt { .. })
    }

    /// Names the tree a corrupt record was found in (`tree/key`, or just
    /// the tree where sled did not say which record).
    pub(crate) fn in_tree(self, tree: &str) -> Self {
        match self {
            StoreError::Corrupt { key, detail } if key == ENGINE_KEY => StoreError::Corrupt {
                key: tree.to_string(),
                detail,
            },
            StoreError::Corrupt { key, detail } if !key.starts_with(tree) => StoreError::Corrupt {
                key: format!("{tree}/{key}"),
                detail,
            },
            other => other,
        }
    }
}

/// What a corruption error names when the engine did not say which
/// record.
pub(crate) const ENGINE_KEY: &str = "storage file";

/// A change to a kill order, applied in one commit with its events.
pub struct OrderChange {
    /// The order after the change; its `revision` is the stored one it was
    /// computed from (0 for a new order) and is replaced by the last event's.
    pub order: crate::domain::order::Order,
    pub events: Vec<crate::domain::order::EventKind>,
    /// Suspend or terminate every matched active deployment (activation).
    pub activate: bool,
    /// Return the deployments this (suspending) order suspended to ACTIVE
    /// (lift or expiry).
    pub release: bool,
    /// The deployment an acknowledgement is about.
    pub ack: Option<String>,
    pub now: crate::domain::UnixMillis,
    /// Set by the store: the revision of the change's last event.
    pub revision: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

/// The latest signed checkpoint, shared with readers.
#[derive(Debug, Clone)]
pub struct SignedCheckpoint {
    pub checkpoint: crate::ledger::checkpoint::Checkpoint,
    pub note: String,
    /// When it was signed (Unix milliseconds); for a store written before
    /// this was recorded, when it was verified at start.
    pub signed_at: crate::domain::UnixMillis,
}

impl SignedCheckpoint {
    /// Signs the tree of `size` entries with `root`, now. Only a tree that
    /// is durable (or commits with its checkpoint) may be signed.
    pub(crate) fn sign(
        signer: &crate::ledger::note::Signer,
        size: u64,
        root: Hash,
    ) -> Result<Self, StoreError> {
        let checkpoint = crate::ledger::checkpoint::Checkpoint {
            origin: signer.name().to_string(),
            size,
            root,
        };
        let note = checkpoint
            .sign(signer)
            .map_err(|e| StoreError::Invariant(format!("signing checkpoint: {e}")))?;
        Ok(Self {
            checkpoint,
            note,
            signed_at: crate::clock::now_millis(),
        })
    }
}

/// What kind of call a decision answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DecisionKind {
    Admit,
    Renew,
    Release,
}

/// A recorded decision, allow or deny. Holds no personal data: customers are
/// named by id and record version only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionRecord {
    pub decision_id: String,
    pub kind: DecisionKind,
    pub request_id: String,
    /// SPIFFE id of the caller.
    pub principal: String,
    pub at: UnixMillis,
    pub customer_id: String,
    pub customer_version: Option<u64>,
    pub model_digest: String,
    pub certificate_fingerprint: Option<String>,
    pub allowed: bool,
    pub reasons: Vec<Reason>,
    pub deployment_id: Option<String>,
    pub lease_expires_at: Option<UnixMillis>,
    /// The signed licence returned on allow, kept so that a retried request
    /// gets the very same answer.
    pub licence: Option<String>,
    /// SHA-256 of the request as received, to detect a request id reused for
    /// a different request.
    pub request_sha256: String,
    /// Index of the ledger entry that records this decision.
    #[serde(default)]
    pub ledger_index: Option<u64>,
}

/// Result of recording an admission.
#[derive(Debug)]
pub enum AdmitRecorded {
    /// The decision is new and durable, recorded at this ledger index.
    New(u64),
    /// The same caller already sent this request id: here is the first
    /// answer.
    Replay(Box<DecisionRecord>),
}

/// Which deployments [`Store::list_deployments`] returns: every field set
/// must match. Data, so that an engine can turn it into a query;
/// [`DeploymentFilter::matches`] is what each engine must agree with.
#[derive(Debug, Default, Clone)]
pub struct DeploymentFilter {
    pub customer_id: Option<String>,
    pub model_digest: Option<String>,
    /// Compared with the state as of `now`.
    pub state: Option<DeploymentState>,
    /// Only deployments admitted by this principal (schedulers see their own).
    pub admitted_by: Option<String>,
    pub now: UnixMillis,
}

impl DeploymentFilter {
    pub fn matches(&self, d: &Deployment) -> bool {
        self.customer_id
            .as_ref()
            .is_none_or(|c| *c == d.customer_id)
            && self
                .model_digest
                .as_ref()
                .is_none_or(|m| *m == d.model_digest)
            && self
                .admitted_by
                .as_ref()
                .is_none_or(|p| *p == d.admitted_by)
            && self.state.is_none_or(|s| s == d.state_at(self.now))
    }
}

/// Which orders [`Store::list_orders`] returns: every field set must
/// match. Data, like [`DeploymentFilter`].
#[derive(Debug, Default, Clone)]
pub struct OrderFilter {
    /// Compared with the state as of `now` (an active order past its
    /// expiry reads EXPIRED).
    pub state: Option<crate::domain::order::OrderState>,
    /// Exactly this target.
    pub target: Option<crate::domain::order::Target>,
    pub now: UnixMillis,
}

impl OrderFilter {
    pub fn matches(&self, o: &Order) -> bool {
        self.state.is_none_or(|s| s == o.state_at(self.now))
            && self.target.as_ref().is_none_or(|t| *t == o.target)
    }
}

/// Whose deployments to find by admission time.
#[derive(Debug, Clone, Copy)]
pub enum AdmittedBy<'a> {
    Model(&'a str),
    Customer(&'a str),
}

/// A position in a scan, minted by the store and opaque to everyone else:
/// callers carry its bytes in a page token and hand them back unchanged.
/// Each engine puts its own keyset there (sled: the index key), and checks
/// a cursor handed back before it uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor(Vec<u8>);

impl Cursor {
    /// A cursor as a page token carried it; it means nothing until the
    /// store has checked it ([`Store::admitted_cursor_valid`]).
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// One page of [`Store::admitted_in`].
#[derive(Debug, Clone, Default)]
pub struct AdmittedPage {
    /// Newest admission first, each with the cursor a page starting after
    /// it would continue from.
    pub deployments: Vec<(Deployment, Cursor)>,
    /// Where the next page starts; `None` when the scan is complete. Set
    /// when the page is full, and when the engine's scan budget ran out
    /// first (the page may then be short, even empty).
    pub next: Option<Cursor>,
}

/// A deployment claiming an endpoint (at admission, or at a renewal that
/// changed its endpoints).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointClaim {
    pub at: UnixMillis,
    pub ledger_index: u64,
    pub deployment_id: String,
}

/// How many deployments and orders are in each stored state. The
/// sequencer keeps it in the store, changed in the same commit as the
/// states it counts, so reading it costs one lookup, never a scan.
///
/// A deployment counts in the state last written for it: one whose lease
/// ran out without a renewal or release stays ACTIVE here, although
/// `ListDeployments` reports it EXPIRED (lapsing is a reading of the clock,
/// not a change anyone writes).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateCounts {
    pub deployments: Vec<(DeploymentState, u64)>,
    pub orders: Vec<(crate::domain::order::OrderState, u64)>,
}

impl StateCounts {
    pub fn deployments_in(&self, state: DeploymentState) -> u64 {
        count_of(&self.deployments, state)
    }

    pub fn orders_in(&self, state: crate::domain::order::OrderState) -> u64 {
        count_of(&self.orders, state)
    }
}

fn count_of<S: PartialEq>(counts: &[(S, u64)], state: S) -> u64 {
    counts
        .iter()
        .find(|(s, _)| *s == state)
        .map_or(0, |(_, n)| *n)
}

/// What the store reports about itself for metrics; every field is cheap
/// to read.
#[derive(Debug, Clone)]
pub struct StoreStats {
    /// Entries covered by the latest signed checkpoint.
    pub ledger_size: u64,
    /// When that checkpoint was signed (Unix milliseconds).
    pub checkpoint_signed_at: UnixMillis,
    pub states: StateCounts,
    /// How long each group commit's flush took.
    pub flush_seconds: crate::metrics::HistogramSnapshot,
}

#[derive(Debug, Default, Clone)]
pub struct CustomerFilter {
    pub status: Option<CustomerStatus>,
    pub country: Option<String>,
}

/// The store's contract, the same for every engine.
///
/// **Writes** (`put_*`, `record_*`, `update_deployment`, `change_order`,
/// `purge_customer`) each carry the ledger [`Entry`] that records them. The
/// state change and its entry are committed together or not at all, and a
/// write returns only once both are durable and covered by a signed
/// checkpoint ([`Store::checkpoint`]); the index it returns is the entry's.
/// A write refused by a precondition ([`StoreError::Conflict`],
/// [`StoreError::AlreadyExists`]) changed nothing and appended nothing. An
/// I/O error may leave the write committed but unconfirmed: every write is
/// safe to send again with the same ids.
///
/// **Reads** see every write that has returned. Lists are ordered as each
/// method says and page by position (an id, an index), so a page continues
/// where the last ended even while writes go on.
///
/// **Blocking.** Every method is async, so that an engine that talks over
/// the network never holds a runtime thread. An embedded engine may answer
/// a point read (one key, or the few versions of one record) on the
/// caller's thread; anything that scans (lists, the admission index,
/// ledger entries and proofs, a backup) runs on the blocking pool.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The newest version of a customer record.
    async fn customer(&self, customer_id: &str) -> Result<Option<Customer>, StoreError>;
    /// The version in force at `as_of`: the newest written at or before it.
    async fn customer_as_of(
        &self,
        customer_id: &str,
        as_of: UnixMillis,
    ) -> Result<Option<Customer>, StoreError>;
    /// Newest versions that match `filter`, in id order after `after`, at
    /// most `limit`.
    async fn list_customers(
        &self,
        filter: &CustomerFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Customer>, StoreError>;
    /// Writes a new customer version, and its screening if given, with
    /// `entry`. The version must be exactly one past the newest stored (1
    /// for a new customer: [`StoreError::AlreadyExists`] if there is one),
    /// the screening's revision one past the stored one, and the screening
    /// made against the loaded sanctions list; otherwise a conflict, and
    /// the caller reads again and decides again.
    async fn put_customer(
        &self,
        customer: &Customer,
        screening: Option<&Screening>,
        entry: Entry,
    ) -> Result<u64, StoreError>;
    /// The current screening result of a customer.
    async fn screening(&self, customer_id: &str) -> Result<Option<Screening>, StoreError>;
    /// Writes screening results with one entry, all or nothing: each must
    /// be one revision past the stored one and of the customer's newest
    /// version, or nothing is written (a conflict naming the customer).
    async fn put_screenings(
        &self,
        screenings: &[Screening],
        entry: Entry,
    ) -> Result<u64, StoreError>;
    /// The loaded sanctions list, if any.
    async fn sanctions_list(&self) -> Result<Option<crate::screening::SanctionsList>, StoreError>;
    /// Replaces the loaded sanctions list with `entry`. Screenings made
    /// against the list it replaces are refused from then on.
    async fn put_sanctions_list(
        &self,
        list: &crate::screening::SanctionsList,
        entry: Entry,
    ) -> Result<u64, StoreError>;
    /// Replaces every version of a customer with its purged tombstone and
    /// removes its screening, with `entry`; `latest_version` must still be
    /// the newest (a conflict otherwise). Nothing is opened, so a purge
    /// works whatever keys remain.
    async fn purge_customer(
        &self,
        customer_id: &str,
        latest_version: u64,
        entry: Entry,
    ) -> Result<u64, StoreError>;

    /// Records an admission decision and, on allow, the new deployment and
    /// its certificate chain, with `entry`, atomically. A request id seen
    /// before from the same principal returns the stored decision instead
    /// and records nothing (durable, like the first answer).
    /// Refused with a conflict if the orders in force changed since
    /// `orders_seen` (see [`Store::order_revisions`]): decide again.
    async fn record_admission(
        &self,
        decision: &DecisionRecord,
        deployment: Option<&Deployment>,
        chain_pem: Option<&str>,
        orders_seen: u64,
        entry: Entry,
    ) -> Result<AdmitRecorded, StoreError>;

    /// Records a renewal or release with `entry`: replaces `before` with
    /// `after` only if the stored deployment still equals `before` (a
    /// conflict naming the deployment otherwise). With `orders_seen`,
    /// refused like `record_admission` if the orders in force changed
    /// since.
    async fn update_deployment(
        &self,
        before: &Deployment,
        after: &Deployment,
        decision: &DecisionRecord,
        orders_seen: Option<u64>,
        entry: Entry,
    ) -> Result<u64, StoreError>;

    /// Applies an order change with its events and `entry` in one commit
    /// (see [`OrderChange`]): on activation every matched active deployment
    /// is suspended or terminated in the same commit. Refused with a
    /// conflict naming the order if it changed since the revision the
    /// change was computed from. Returns the revision of the change's last
    /// event, durable now with every revision before it.
    async fn change_order(&self, change: OrderChange, entry: Entry) -> Result<u64, StoreError>;
    async fn order(&self, order_id: &str) -> Result<Option<Order>, StoreError>;
    /// Orders that match `filter`, in id order after `after`, at most
    /// `limit`.
    async fn list_orders(
        &self,
        filter: &OrderFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Order>, StoreError>;
    /// The orders in state ACTIVE (some may have passed their expiry), in
    /// id order. There are few: a point read.
    async fn active_orders(&self) -> Result<Vec<Order>, StoreError>;
    /// Events with revisions in `(after, up_to]`, at most `limit`, oldest
    /// first.
    async fn order_events(
        &self,
        after: u64,
        up_to: u64,
        limit: usize,
    ) -> Result<Vec<OrderEvent>, StoreError>;
    /// (last event revision, revision of the last change to the orders in
    /// force).
    async fn order_revisions(&self) -> Result<(u64, u64), StoreError>;

    async fn deployment(&self, deployment_id: &str) -> Result<Option<Deployment>, StoreError>;
    /// Deployments that match `filter`, in id order after `after`, at most
    /// `limit`.
    async fn list_deployments(
        &self,
        filter: &DeploymentFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Deployment>, StoreError>;
    /// A certificate chain by the SHA-256 of its PEM text.
    async fn chain(&self, chain_sha256: &str) -> Result<Option<String>, StoreError>;

    /// A customer record version (opened), if stored.
    async fn customer_version(
        &self,
        customer_id: &str,
        version: u64,
    ) -> Result<Option<Customer>, StoreError>;
    /// The index of the entry that recorded a customer version.
    async fn customer_version_index(
        &self,
        customer_id: &str,
        version: u64,
    ) -> Result<Option<u64>, StoreError>;
    /// Deployments of a model or customer admitted at or before `to` and
    /// not ended before `from` ([`Deployment::end`]), newest admission
    /// first, at most `limit`, continuing after `after`. The engine
    /// examines a bounded number of candidates per call, so one call never
    /// scans a long history: a page can end short (even empty) with a
    /// `next` cursor, and the caller pages on.
    async fn admitted_in(
        &self,
        by: AdmittedBy<'_>,
        from: UnixMillis,
        to: UnixMillis,
        after: Option<&Cursor>,
        limit: usize,
    ) -> Result<AdmittedPage, StoreError>;
    /// Whether `cursor` is one [`Store::admitted_in`] minted for `by`, so a
    /// page token of another selector is refused before anything is
    /// recorded. Reads nothing.
    async fn admitted_cursor_valid(&self, by: AdmittedBy<'_>, cursor: &Cursor) -> bool;
    /// The last claim of `endpoint` (normalised) at or before `at`.
    async fn endpoint_claim(
        &self,
        endpoint: &str,
        at: UnixMillis,
    ) -> Result<Option<EndpointClaim>, StoreError>;
    /// Records an attribution request with `entry`; its `ledger_index`
    /// becomes the entry's, which is returned.
    async fn put_attribution_request(
        &self,
        request: &AttributionRequest,
        entry: Entry,
    ) -> Result<u64, StoreError>;
    /// Records what the answer to a request disclosed, with `entry`, once
    /// per request: a conflict if the request is not recorded or was
    /// answered already.
    async fn record_disclosure(
        &self,
        request_index: u64,
        disclosure: &Disclosure,
        entry: Entry,
    ) -> Result<u64, StoreError>;
    /// Attribution requests newest first, recorded before entry `before`,
    /// at most `limit`.
    async fn attribution_requests(
        &self,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<AttributionRequest>, StoreError>;

    /// Cancelled once the store is closed: its writer has answered every
    /// waiter, persisted its last checkpoint and released the database.
    /// Drop every handle to the store, then wait on this before reopening
    /// the same directory. (A handle, not a read: not async.)
    fn closed(&self) -> tokio_util::sync::CancellationToken;

    /// Whether the database behind the store can be reached, as it
    /// changes; `None` for an embedded store, which always can.
    fn reachability(&self) -> Option<tokio::sync::watch::Receiver<bool>> {
        None
    }

    /// Writes a backup file ([`backup`]) of everything stored to `out`, as
    /// of one point between two commits: commits pause while the stored
    /// data is read (callers wait, nothing fails), then resume. `out`
    /// should be a local file so the pause lasts only as long as reading
    /// the store; it is handed back, written, with the summary.
    async fn backup(
        &self,
        out: std::fs::File,
    ) -> Result<(std::fs::File, backup::BackupSummary), StoreError>;

    /// The latest signed checkpoint (always durable).
    async fn checkpoint(&self) -> Result<SignedCheckpoint, StoreError>;
    /// Sizes, state counts and flush times, for metrics. Scans nothing.
    async fn stats(&self) -> Result<StoreStats, StoreError>;
    /// Entries `[start, start + count)` that exist, as stored bytes, in
    /// index order.
    async fn entries(&self, start: u64, count: u64) -> Result<Vec<Vec<u8>>, StoreError>;
    /// The entries at `indexes` that exist, as stored bytes, by index; each
    /// stored batch they share is read once.
    async fn entries_at(
        &self,
        indexes: &[u64],
    ) -> Result<std::collections::BTreeMap<u64, Vec<u8>>, StoreError>;
    /// RFC 9162 inclusion proof of entry `index` in the tree of `tree_size`.
    async fn inclusion_proof(&self, index: u64, tree_size: u64) -> Result<Vec<Hash>, StoreError>;
    /// RFC 9162 consistency proof from `from` to `to` (empty from size 0).
    async fn consistency_proof(&self, from: u64, to: u64) -> Result<Vec<Hash>, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::order::{Action, OrderState, Target, TargetKind};

    fn order(target: &str, state: OrderState, expires_at: Option<UnixMillis>) -> Order {
        Order {
            order_id: "ord-1".into(),
            target: Target {
                kind: TargetKind::Customer,
                value: target.into(),
            },
            action: Action::Suspend,
            reason: "harm".into(),
            legal_basis: String::new(),
            expires_at,
            state,
            issued_by: "op-a".into(),
            issued_at: 0,
            approvals: vec![],
            quorum: 1,
            activated_at: None,
            matched_deployments: vec![],
            acks: vec![],
            lift_approvals: vec![],
            lift_quorum: 1,
            lift_reason: String::new(),
            ended_at: None,
            revision: 0,
            reason_salt: String::new(),
        }
    }

    #[test]
    fn an_order_filter_compares_the_state_as_of_now_and_the_exact_target() {
        let target = |v: &str| Target {
            kind: TargetKind::Customer,
            value: v.into(),
        };
        let lapsed = order("c1", OrderState::Active, Some(100));
        let filter = |state, t: Option<&str>| OrderFilter {
            state,
            target: t.map(target),
            now: 200,
        };
        for (f, want) in [
            (filter(None, None), true),
            (filter(Some(OrderState::Expired), None), true),
            (filter(Some(OrderState::Active), None), false),
            (filter(None, Some("c1")), true),
            (filter(None, Some("c2")), false),
            (filter(Some(OrderState::Expired), Some("c2")), false),
        ] {
            assert_eq!(f.matches(&lapsed), want, "{f:?}");
        }
        let active = order("c1", OrderState::Active, None);
        assert!(filter(Some(OrderState::Active), Some("c1")).matches(&active));
    }
}
