//! Where damage to the store is noticed, whoever runs into it.
//!
//! Every call into the store goes through [`Guarded`]: a corruption error
//! (a record failing its checksum or not decoding, damage sled reports, a
//! panic inside sled, a ledger that does not match its checkpoint) is
//! counted in the [`CorruptionWatch`]. The server waits on it to stop
//! reporting SERVING, and the metrics endpoint reports the count. Nothing
//! here decides what a caller is told; `api::status` maps the error.
//!
//! What counts as corruption is the engine's to report; the sled engine,
//! for one, reports a panic inside sled as corruption of the call that hit
//! it.

use async_trait::async_trait;

use super::backup::BackupSummary;
use super::{
    AdmitRecorded, AdmittedBy, AdmittedPage, Cursor, CustomerFilter, DecisionRecord,
    DeploymentFilter, EndpointClaim, OrderChange, OrderFilter, SignedCheckpoint, Store, StoreError,
    StoreStats,
};
use crate::domain::attribution::{AttributionRequest, Disclosure};
use crate::domain::customer::{Customer, Screening};
use crate::domain::deployment::Deployment;
use crate::domain::order::{Order, OrderEvent};
use crate::domain::UnixMillis;
use crate::ledger::entry::Entry;
use crate::ledger::tree::Hash;

/// How often this process found the store damaged; wakes whoever waits for
/// the first time.
#[derive(Debug)]
pub struct CorruptionWatch {
    found: tokio::sync::watch::Sender<u64>,
}

impl Default for CorruptionWatch {
    fn default() -> Self {
        Self {
            found: tokio::sync::watch::Sender::new(0),
        }
    }
}

impl CorruptionWatch {
    /// Counts `e` if it is corruption.
    pub fn record(&self, e: &StoreError) {
        if e.is_corruption() {
            self.found.send_modify(|n| *n += 1);
        }
    }

    /// Corruption errors seen since start.
    pub fn count(&self) -> u64 {
        *self.found.borrow()
    }

    /// Resolves once corruption has been seen (at once if it already was).
    pub async fn found(&self) {
        let mut seen = self.found.subscribe();
        // The sender lives in `self`, so waiting cannot fail.
        let _ = seen.wait_for(|&n| n > 0).await;
    }
}

/// A store whose every call is watched for corruption (see the module
/// docs).
pub struct Guarded<S> {
    inner: S,
    watch: std::sync::Arc<CorruptionWatch>,
}

impl<S: Store> Guarded<S> {
    pub fn new(inner: S, watch: std::sync::Arc<CorruptionWatch>) -> Self {
        Self { inner, watch }
    }

    /// Awaits one call into the inner store, counting the corruption it
    /// reports: every method below is this around the same method of
    /// `inner`.
    async fn guard<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let r = call.await;
        if let Err(e) = &r {
            self.watch.record(e);
        }
        r
    }
}

#[async_trait]
impl<S: Store> Store for Guarded<S> {
    async fn customer(&self, customer_id: &str) -> Result<Option<Customer>, StoreError> {
        self.guard(self.inner.customer(customer_id)).await
    }

    async fn customer_as_of(
        &self,
        customer_id: &str,
        as_of: UnixMillis,
    ) -> Result<Option<Customer>, StoreError> {
        self.guard(self.inner.customer_as_of(customer_id, as_of))
            .await
    }

    async fn list_customers(
        &self,
        filter: &CustomerFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Customer>, StoreError> {
        self.guard(self.inner.list_customers(filter, after, limit))
            .await
    }

    async fn put_customer(
        &self,
        customer: &Customer,
        screening: Option<&Screening>,
        entry: Entry,
    ) -> Result<u64, StoreError> {
        self.guard(self.inner.put_customer(customer, screening, entry))
            .await
    }

    async fn screening(&self, customer_id: &str) -> Result<Option<Screening>, StoreError> {
        self.guard(self.inner.screening(customer_id)).await
    }

    async fn put_screenings(
        &self,
        screenings: &[Screening],
        entry: Entry,
    ) -> Result<u64, StoreError> {
        self.guard(self.inner.put_screenings(screenings, entry))
            .await
    }

    async fn sanctions_list(&self) -> Result<Option<crate::screening::SanctionsList>, StoreError> {
        self.guard(self.inner.sanctions_list()).await
    }

    async fn put_sanctions_list(
        &self,
        list: &crate::screening::SanctionsList,
        entry: Entry,
    ) -> Result<u64, StoreError> {
        self.guard(self.inner.put_sanctions_list(list, entry)).await
    }

    async fn purge_customer(
        &self,
        customer_id: &str,
        latest_version: u64,
        entry: Entry,
    ) -> Result<u64, StoreError> {
        self.guard(
            self.inner
                .purge_customer(customer_id, latest_version, entry),
        )
        .await
    }

    async fn record_admission(
        &self,
        decision: &DecisionRecord,
        deployment: Option<&Deployment>,
        chain_pem: Option<&str>,
        orders_seen: u64,
        entry: Entry,
    ) -> Result<AdmitRecorded, StoreError> {
        self.guard(
            self.inner
                .record_admission(decision, deployment, chain_pem, orders_seen, entry),
        )
        .await
    }

    async fn update_deployment(
        &self,
        before: &Deployment,
        after: &Deployment,
        decision: &DecisionRecord,
        orders_seen: Option<u64>,
        entry: Entry,
    ) -> Result<u64, StoreError> {
        self.guard(
            self.inner
                .update_deployment(before, after, decision, orders_seen, entry),
        )
        .await
    }

    async fn change_order(&self, change: OrderChange, entry: Entry) -> Result<u64, StoreError> {
        self.guard(self.inner.change_order(change, entry)).await
    }

    async fn order(&self, order_id: &str) -> Result<Option<Order>, StoreError> {
        self.guard(self.inner.order(order_id)).await
    }

    async fn list_orders(
        &self,
        filter: &OrderFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Order>, StoreError> {
        self.guard(self.inner.list_orders(filter, after, limit))
            .await
    }

    async fn active_orders(&self) -> Result<Vec<Order>, StoreError> {
        self.guard(self.inner.active_orders()).await
    }

    async fn order_events(
        &self,
        after: u64,
        up_to: u64,
        limit: usize,
    ) -> Result<Vec<OrderEvent>, StoreError> {
        self.guard(self.inner.order_events(after, up_to, limit))
            .await
    }

    async fn order_revisions(&self) -> Result<(u64, u64), StoreError> {
        self.guard(self.inner.order_revisions()).await
    }

    async fn deployment(&self, deployment_id: &str) -> Result<Option<Deployment>, StoreError> {
        self.guard(self.inner.deployment(deployment_id)).await
    }

    async fn list_deployments(
        &self,
        filter: &DeploymentFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Deployment>, StoreError> {
        self.guard(self.inner.list_deployments(filter, after, limit))
            .await
    }

    async fn chain(&self, chain_sha256: &str) -> Result<Option<String>, StoreError> {
        self.guard(self.inner.chain(chain_sha256)).await
    }

    async fn customer_version(
        &self,
        customer_id: &str,
        version: u64,
    ) -> Result<Option<Customer>, StoreError> {
        self.guard(self.inner.customer_version(customer_id, version))
            .await
    }

    async fn customer_version_index(
        &self,
        customer_id: &str,
        version: u64,
    ) -> Result<Option<u64>, StoreError> {
        self.guard(self.inner.customer_version_index(customer_id, version))
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
        self.guard(self.inner.admitted_in(by, from, to, after, limit))
            .await
    }

    async fn admitted_cursor_valid(&self, by: AdmittedBy<'_>, cursor: &Cursor) -> bool {
        self.inner.admitted_cursor_valid(by, cursor).await
    }

    async fn endpoint_claim(
        &self,
        endpoint: &str,
        at: UnixMillis,
    ) -> Result<Option<EndpointClaim>, StoreError> {
        self.guard(self.inner.endpoint_claim(endpoint, at)).await
    }

    async fn put_attribution_request(
        &self,
        request: &AttributionRequest,
        entry: Entry,
    ) -> Result<u64, StoreError> {
        self.guard(self.inner.put_attribution_request(request, entry))
            .await
    }

    async fn record_disclosure(
        &self,
        request_index: u64,
        disclosure: &Disclosure,
        entry: Entry,
    ) -> Result<u64, StoreError> {
        self.guard(
            self.inner
                .record_disclosure(request_index, disclosure, entry),
        )
        .await
    }

    async fn attribution_requests(
        &self,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<AttributionRequest>, StoreError> {
        self.guard(self.inner.attribution_requests(before, limit))
            .await
    }

    fn closed(&self) -> tokio_util::sync::CancellationToken {
        self.inner.closed()
    }

    fn reachability(&self) -> Option<tokio::sync::watch::Receiver<bool>> {
        self.inner.reachability()
    }

    async fn backup(
        &self,
        out: std::fs::File,
    ) -> Result<(std::fs::File, BackupSummary), StoreError> {
        self.guard(self.inner.backup(out)).await
    }

    async fn checkpoint(&self) -> Result<SignedCheckpoint, StoreError> {
        self.guard(self.inner.checkpoint()).await
    }

    async fn stats(&self) -> Result<StoreStats, StoreError> {
        self.guard(self.inner.stats()).await
    }

    async fn entries(&self, start: u64, count: u64) -> Result<Vec<Vec<u8>>, StoreError> {
        self.guard(self.inner.entries(start, count)).await
    }

    async fn entries_at(
        &self,
        indexes: &[u64],
    ) -> Result<std::collections::BTreeMap<u64, Vec<u8>>, StoreError> {
        self.guard(self.inner.entries_at(indexes)).await
    }

    async fn inclusion_proof(&self, index: u64, tree_size: u64) -> Result<Vec<Hash>, StoreError> {
        self.guard(self.inner.inclusion_proof(index, tree_size))
            .await
    }

    async fn consistency_proof(&self, from: u64, to: u64) -> Result<Vec<Hash>, StoreError> {
        self.guard(self.inner.consistency_proof(from, to)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corruption_is_counted_and_wakes_the_waiter() {
        let watch = CorruptionWatch::default();
        watch.record(&StoreError::Io("disk busy".into()));
        assert_eq!(watch.count(), 0);
        watch.record(&StoreError::Corrupt {
            key: "deployments/d-1".into(),
            detail: "checksum mismatch".into(),
        });
        assert_eq!(watch.count(), 1);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(watch.found());
    }
}
