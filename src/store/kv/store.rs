//! The [`Store`] over any engine that keeps the layout of this module: the
//! engine says how a read reaches its data and how a batch of writes is
//! committed; everything else, from sealing personal data before it is
//! stored to what each read returns, is written once here.

use std::sync::{Arc, RwLock};

use async_trait::async_trait;

use super::index;
use super::keys::{t, META_STATE_COUNTS};
use super::plan::{Encoded, Mutation};
use super::read::{admitted_index, Reader};
use super::Kv;
use crate::domain::attribution::{AttributionRequest, Disclosure};
use crate::domain::customer::{Customer, Screening};
use crate::domain::deployment::Deployment;
use crate::domain::order::{Order, OrderEvent};
use crate::domain::UnixMillis;
use crate::ledger::entry::Entry;
use crate::ledger::tree::Hash;
use crate::pii::Keyring;
use crate::screening::SanctionsList;
use crate::store::sealed::{StoredCustomer, StoredScreening};
use crate::store::{
    AdmitRecorded, AdmittedBy, AdmittedPage, Cursor, CustomerFilter, DecisionRecord,
    DeploymentFilter, EndpointClaim, OrderChange, OrderFilter, SignedCheckpoint, Store, StoreError,
};

/// How a read is run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ReadKind {
    /// A few keys: an engine that answers from memory-mapped pages may
    /// answer on the caller's thread.
    Point,
    /// A scan, which may read many keys.
    Scan,
}
use ReadKind::{Point, Scan};

/// What an engine provides to the [`KvStore`] over it.
#[async_trait]
pub(crate) trait Engine: Send + Sync + 'static {
    /// How the engine's data is read.
    type Kv: Kv;

    /// Runs `read` over the engine's data.
    async fn read<T: Send + 'static>(
        &self,
        kind: ReadKind,
        read: impl for<'r> FnOnce(&'r Reader<Self::Kv>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError>;

    /// Commits `mutation` with `entry` through the engine's sequencer and
    /// answers once both are durable and covered by a signed checkpoint.
    async fn submit(&self, mutation: Mutation, entry: Entry) -> Result<AdmitRecorded, StoreError>;

    /// The keys personal data is sealed with.
    fn keys(&self) -> &Keyring;

    /// What the engine's sequencer publishes.
    fn published(&self) -> &Published;

    /// See [`Store::closed`].
    fn closed(&self) -> tokio_util::sync::CancellationToken;

    /// See [`Store::reachability`].
    fn reachability(&self) -> Option<tokio::sync::watch::Receiver<bool>> {
        None
    }

    /// See [`Store::backup`].
    async fn backup(
        &self,
        out: std::fs::File,
    ) -> Result<(std::fs::File, crate::store::backup::BackupSummary), StoreError>;
}

/// What a sequencer publishes as it commits: the latest signed checkpoint
/// (always durable) and how long each commit took to become durable.
#[derive(Clone)]
pub(crate) struct Published {
    pub(crate) latest: Arc<RwLock<SignedCheckpoint>>,
    pub(crate) flush_seconds: Arc<crate::metrics::Histogram>,
}

impl Published {
    pub(crate) fn new(checkpoint: SignedCheckpoint) -> Self {
        Self {
            latest: Arc::new(RwLock::new(checkpoint)),
            flush_seconds: Arc::new(crate::metrics::Histogram::new(
                crate::metrics::FLUSH_BUCKETS,
            )),
        }
    }

    pub(crate) fn latest(&self) -> SignedCheckpoint {
        match self.latest.read() {
            Ok(c) => c.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }
}

/// A [`Store`] over an [`Engine`].
pub struct KvStore<E> {
    pub(crate) engine: E,
}

/// The index of an appended entry. Only admissions can be replays; a
/// replay here would mean a change went unrecorded, so it is an error.
fn appended(outcome: AdmitRecorded) -> Result<u64, StoreError> {
    match outcome {
        AdmitRecorded::New(index) => Ok(index),
        AdmitRecorded::Replay(_) => Err(StoreError::Invariant(
            "a state change was answered as a replay; nothing was recorded".into(),
        )),
    }
}

#[async_trait]
impl<E: Engine> Store for KvStore<E> {
    async fn customer(&self, customer_id: &str) -> Result<Option<Customer>, StoreError> {
        let customer_id = customer_id.to_owned();
        self.engine
            .read(Point, move |r| r.customer(&customer_id))
            .await
    }

    async fn customer_as_of(
        &self,
        customer_id: &str,
        as_of: UnixMillis,
    ) -> Result<Option<Customer>, StoreError> {
        let customer_id = customer_id.to_owned();
        self.engine
            .read(Point, move |r| r.customer_as_of(&customer_id, as_of))
            .await
    }

    async fn list_customers(
        &self,
        filter: &CustomerFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Customer>, StoreError> {
        let (filter, after) = (filter.clone(), after.map(str::to_owned));
        self.engine
            .read(Scan, move |r| {
                r.list_customers(&filter, after.as_deref(), limit)
            })
            .await
    }

    async fn put_customer(
        &self,
        customer: &Customer,
        screening: Option<&Screening>,
        entry: Entry,
    ) -> Result<u64, StoreError> {
        let customer = Encoded::new(StoredCustomer::seal(customer, self.engine.keys())?)?;
        let screening = screening
            .map(|s| Encoded::new(StoredScreening::seal(s, self.engine.keys())?))
            .transpose()?;
        let applied = self
            .engine
            .submit(
                Mutation::PutCustomer {
                    customer,
                    screening,
                },
                entry,
            )
            .await?;
        appended(applied)
    }

    async fn screening(&self, customer_id: &str) -> Result<Option<Screening>, StoreError> {
        let customer_id = customer_id.to_owned();
        self.engine
            .read(Point, move |r| r.screening(&customer_id))
            .await
    }

    async fn put_screenings(
        &self,
        screenings: &[Screening],
        entry: Entry,
    ) -> Result<u64, StoreError> {
        let sealed = screenings
            .iter()
            .map(|s| Encoded::new(StoredScreening::seal(s, self.engine.keys())?))
            .collect::<Result<Vec<_>, _>>()?;
        let applied = self
            .engine
            .submit(Mutation::PutScreenings(sealed), entry)
            .await?;
        appended(applied)
    }

    async fn sanctions_list(&self) -> Result<Option<SanctionsList>, StoreError> {
        // One value, but a large one to decode.
        self.engine.read(Scan, |r| r.sanctions_list()).await
    }

    async fn put_sanctions_list(
        &self,
        list: &SanctionsList,
        entry: Entry,
    ) -> Result<u64, StoreError> {
        let encoded = crate::store::codec::encode(list)?;
        let applied = self
            .engine
            .submit(
                Mutation::PutSanctionsList {
                    encoded,
                    sha256: list.sha256.clone(),
                },
                entry,
            )
            .await?;
        appended(applied)
    }

    async fn purge_customer(
        &self,
        customer_id: &str,
        latest_version: u64,
        entry: Entry,
    ) -> Result<u64, StoreError> {
        let id = customer_id.to_owned();
        let tombstones = self.engine.read(Point, move |r| r.tombstones(&id)).await?;
        let applied = self
            .engine
            .submit(
                Mutation::PurgeCustomer {
                    tombstones,
                    latest_version,
                },
                entry,
            )
            .await?;
        appended(applied)
    }

    async fn record_admission(
        &self,
        decision: &DecisionRecord,
        deployment: Option<&Deployment>,
        chain_pem: Option<&str>,
        orders_seen: u64,
        entry: Entry,
    ) -> Result<AdmitRecorded, StoreError> {
        let applied = self
            .engine
            .submit(
                Mutation::RecordAdmission {
                    decision: decision.clone(),
                    deployment: deployment.cloned(),
                    chain_pem: chain_pem.map(str::to_string),
                    orders_seen,
                },
                entry,
            )
            .await?;
        Ok(applied)
    }

    async fn update_deployment(
        &self,
        before: &Deployment,
        after: &Deployment,
        decision: &DecisionRecord,
        orders_seen: Option<u64>,
        entry: Entry,
    ) -> Result<u64, StoreError> {
        let applied = self
            .engine
            .submit(
                Mutation::UpdateDeployment {
                    before: before.clone(),
                    after: after.clone(),
                    decision: decision.clone(),
                    orders_seen,
                },
                entry,
            )
            .await?;
        appended(applied)
    }

    async fn change_order(&self, change: OrderChange, entry: Entry) -> Result<u64, StoreError> {
        let revision = change.revision.clone();
        let applied = self
            .engine
            .submit(Mutation::Order(Box::new(change)), entry)
            .await?;
        appended(applied)?;
        Ok(revision.load(std::sync::atomic::Ordering::SeqCst))
    }

    async fn order(&self, order_id: &str) -> Result<Option<Order>, StoreError> {
        let order_id = order_id.to_owned();
        self.engine.read(Point, move |r| r.order(&order_id)).await
    }

    async fn list_orders(
        &self,
        filter: &OrderFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Order>, StoreError> {
        let (filter, after) = (filter.clone(), after.map(str::to_owned));
        self.engine
            .read(Scan, move |r| {
                r.list_orders(&filter, after.as_deref(), limit)
            })
            .await
    }

    async fn active_orders(&self) -> Result<Vec<Order>, StoreError> {
        self.engine.read(Point, move |r| r.active_orders()).await
    }

    async fn order_events(
        &self,
        after: u64,
        up_to: u64,
        limit: usize,
    ) -> Result<Vec<OrderEvent>, StoreError> {
        self.engine
            .read(Scan, move |r| r.order_events(after, up_to, limit))
            .await
    }

    async fn order_revisions(&self) -> Result<(u64, u64), StoreError> {
        self.engine.read(Point, move |r| r.order_revisions()).await
    }

    async fn deployment(&self, deployment_id: &str) -> Result<Option<Deployment>, StoreError> {
        let deployment_id = deployment_id.to_owned();
        self.engine
            .read(Point, move |r| r.deployment(&deployment_id))
            .await
    }

    async fn list_deployments(
        &self,
        filter: &DeploymentFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Deployment>, StoreError> {
        let (filter, after) = (filter.clone(), after.map(str::to_owned));
        self.engine
            .read(Scan, move |r| {
                r.list_deployments(&filter, after.as_deref(), limit)
            })
            .await
    }

    async fn chain(&self, chain_sha256: &str) -> Result<Option<String>, StoreError> {
        let chain_sha256 = chain_sha256.to_owned();
        self.engine
            .read(Point, move |r| r.chain(&chain_sha256))
            .await
    }

    fn closed(&self) -> tokio_util::sync::CancellationToken {
        self.engine.closed()
    }

    fn reachability(&self) -> Option<tokio::sync::watch::Receiver<bool>> {
        self.engine.reachability()
    }

    async fn customer_version(
        &self,
        customer_id: &str,
        version: u64,
    ) -> Result<Option<Customer>, StoreError> {
        let customer_id = customer_id.to_owned();
        self.engine
            .read(Point, move |r| r.customer_version(&customer_id, version))
            .await
    }

    async fn customer_version_index(
        &self,
        customer_id: &str,
        version: u64,
    ) -> Result<Option<u64>, StoreError> {
        let customer_id = customer_id.to_owned();
        self.engine
            .read(Point, move |r| {
                r.customer_version_index(&customer_id, version)
            })
            .await
    }

    async fn admitted_in(
        &self,
        by: AdmittedBy<'_>,
        from: UnixMillis,
        to: UnixMillis,
        after: Option<&Cursor>,
        limit: usize,
    ) -> Result<AdmittedPage, StoreError> {
        let (tag, subject) = admitted_index(by);
        let subject = subject.to_string();
        let after = after.map(|c| c.as_bytes().to_vec());
        self.engine
            .read(Scan, move |r| {
                r.admitted_in((tag, &subject), from, to, after.as_deref(), limit)
            })
            .await
    }

    async fn admitted_cursor_valid(&self, by: AdmittedBy<'_>, cursor: &Cursor) -> bool {
        let (tag, subject) = admitted_index(by);
        cursor.as_bytes().starts_with(&index::prefix(tag, subject))
    }

    async fn endpoint_claim(
        &self,
        endpoint: &str,
        at: UnixMillis,
    ) -> Result<Option<EndpointClaim>, StoreError> {
        let endpoint = endpoint.to_owned();
        self.engine
            .read(Point, move |r| r.endpoint_claim(&endpoint, at))
            .await
    }

    async fn put_attribution_request(
        &self,
        request: &AttributionRequest,
        entry: Entry,
    ) -> Result<u64, StoreError> {
        let applied = self
            .engine
            .submit(Mutation::PutAttributionRequest(request.clone()), entry)
            .await?;
        appended(applied)
    }

    async fn record_disclosure(
        &self,
        request_index: u64,
        disclosure: &Disclosure,
        entry: Entry,
    ) -> Result<u64, StoreError> {
        let applied = self
            .engine
            .submit(
                Mutation::RecordDisclosure {
                    request_index,
                    disclosure: disclosure.clone(),
                },
                entry,
            )
            .await?;
        appended(applied)
    }

    async fn attribution_requests(
        &self,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<AttributionRequest>, StoreError> {
        self.engine
            .read(Scan, move |r| r.attribution_requests(before, limit))
            .await
    }

    async fn backup(
        &self,
        out: std::fs::File,
    ) -> Result<(std::fs::File, crate::store::backup::BackupSummary), StoreError> {
        self.engine.backup(out).await
    }

    async fn checkpoint(&self) -> Result<SignedCheckpoint, StoreError> {
        Ok(self.engine.published().latest())
    }

    async fn stats(&self) -> Result<crate::store::StoreStats, StoreError> {
        let latest = self.engine.published().latest();
        let states = self
            .engine
            .read(Point, |r| r.get(t::META, META_STATE_COUNTS))
            .await?
            .unwrap_or_default();
        Ok(crate::store::StoreStats {
            ledger_size: latest.checkpoint.size,
            checkpoint_signed_at: latest.signed_at,
            states,
            flush_seconds: self.engine.published().flush_seconds.snapshot(),
        })
    }

    async fn entries(&self, start: u64, count: u64) -> Result<Vec<Vec<u8>>, StoreError> {
        self.engine
            .read(Scan, move |r| r.entries(start, count))
            .await
    }

    async fn entries_at(
        &self,
        indexes: &[u64],
    ) -> Result<std::collections::BTreeMap<u64, Vec<u8>>, StoreError> {
        let indexes = indexes.to_vec();
        self.engine
            .read(Scan, move |r| r.entries_at(&indexes))
            .await
    }

    async fn inclusion_proof(&self, index: u64, tree_size: u64) -> Result<Vec<Hash>, StoreError> {
        self.engine
            .read(Scan, move |r| r.inclusion_proof(index, tree_size))
            .await
    }

    async fn consistency_proof(&self, from: u64, to: u64) -> Result<Vec<Hash>, StoreError> {
        self.engine
            .read(Scan, move |r| r.consistency_proof(from, to))
            .await
    }
}
