//! The sled implementation of [`Store`]. sled 0.34 allows one process per
//! data directory; opening a directory another warden holds fails with
//! [`StoreError::Locked`].

use std::path::Path;

use async_trait::async_trait;
use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};

use super::codec::{decode, encode};
use super::flusher::Flusher;
use super::{AdmitRecorded, DecisionRecord, DeploymentFilter, Store, StoreError};
use crate::domain::customer::Customer;
use crate::domain::deployment::Deployment;

pub struct SledStore {
    db: sled::Db,
    customers: sled::Tree,
    deployments: sled::Tree,
    decisions: sled::Tree,
    admit_requests: sled::Tree,
    chains: sled::Tree,
    flusher: Flusher,
}

fn io(e: sled::Error) -> StoreError {
    StoreError::Io(e.to_string())
}

fn tx_err(e: TransactionError<StoreError>) -> StoreError {
    match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => io(e),
    }
}

fn abort(e: StoreError) -> ConflictableTransactionError<StoreError> {
    ConflictableTransactionError::Abort(e)
}

/// Customer versions are keyed `id 0x00 version(u64 big endian)`, so the
/// versions of one customer are adjacent and ordered.
fn customer_key(id: &str, version: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(id.len() + 9);
    k.extend_from_slice(id.as_bytes());
    k.push(0);
    k.extend_from_slice(&version.to_be_bytes());
    k
}

fn customer_prefix(id: &str) -> Vec<u8> {
    let mut k = id.as_bytes().to_vec();
    k.push(0);
    k
}

fn admit_key(principal: &str, request_id: &str) -> Vec<u8> {
    format!("{principal}\0{request_id}").into_bytes()
}

impl SledStore {
    /// Opens (creating if needed) the store in `dir`. Must be called inside
    /// a tokio runtime: it starts the flusher task.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Io(e.to_string()))?;
        let db = sled::Config::new()
            .path(dir)
            .mode(sled::Mode::HighThroughput)
            .open()
            .map_err(|e| match e {
                sled::Error::Io(ref io) if io.kind() == std::io::ErrorKind::WouldBlock => {
                    StoreError::Locked(dir.display().to_string())
                }
                e if e.to_string().contains("lock") => StoreError::Locked(e.to_string()),
                e => io(e),
            })?;
        let tree = |name: &str| db.open_tree(name).map_err(io);
        Ok(Self {
            customers: tree("customers")?,
            deployments: tree("deployments")?,
            decisions: tree("decisions")?,
            admit_requests: tree("admit_requests")?,
            chains: tree("chains")?,
            flusher: Flusher::spawn(db.clone()),
            db,
        })
    }

    fn get<T: serde::de::DeserializeOwned>(
        tree: &sled::Tree,
        key: &[u8],
    ) -> Result<Option<T>, StoreError> {
        match tree.get(key).map_err(io)? {
            Some(raw) => decode(key, &raw).map(Some),
            None => Ok(None),
        }
    }

    /// Total bytes on disk, for diagnostics.
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        self.db.size_on_disk().map_err(io)
    }
}

#[async_trait]
impl Store for SledStore {
    fn customer(&self, customer_id: &str) -> Result<Option<Customer>, StoreError> {
        match self
            .customers
            .scan_prefix(customer_prefix(customer_id))
            .next_back()
        {
            Some(Ok((k, v))) => decode(&k, &v).map(Some),
            Some(Err(e)) => Err(io(e)),
            None => Ok(None),
        }
    }

    async fn put_customer(&self, customer: &Customer) -> Result<(), StoreError> {
        let key = customer_key(&customer.customer_id, customer.version);
        let value = encode(customer)?;
        let prev = customer
            .version
            .checked_sub(1)
            .map(|v| customer_key(&customer.customer_id, v));
        let id = customer.customer_id.clone();
        self.customers
            .transaction(|t| {
                if t.get(&key)?.is_some() {
                    return Err(abort(if customer.version == 1 {
                        StoreError::AlreadyExists(format!("customer {id}"))
                    } else {
                        StoreError::Conflict(format!("customer {id}"))
                    }));
                }
                if let Some(prev) = &prev {
                    if customer.version > 1 && t.get(prev)?.is_none() {
                        return Err(abort(StoreError::Conflict(format!("customer {id}"))));
                    }
                }
                t.insert(key.as_slice(), value.as_slice())?;
                Ok(())
            })
            .map_err(tx_err)?;
        self.flusher.flush().await
    }

    async fn record_admission(
        &self,
        decision: &DecisionRecord,
        deployment: Option<&Deployment>,
        chain_pem: Option<&str>,
    ) -> Result<AdmitRecorded, StoreError> {
        let idem_key = admit_key(&decision.principal, &decision.request_id);
        let decision_value = encode(decision)?;
        let deployment_value = deployment.map(encode).transpose()?;
        let chain = match (deployment, chain_pem) {
            (Some(d), Some(pem)) => Some((d.chain_sha256.as_bytes(), encode(&pem)?)),
            _ => None,
        };
        let outcome = (
            &self.admit_requests,
            &self.decisions,
            &self.deployments,
            &self.chains,
        )
            .transaction(|(reqs, decisions, deployments, chains)| {
                if let Some(existing) = reqs.get(&idem_key)? {
                    let existing_id = String::from_utf8_lossy(&existing).into_owned();
                    let raw = decisions.get(existing_id.as_bytes())?.ok_or_else(|| {
                        abort(StoreError::Corrupt {
                            key: existing_id.clone(),
                            detail: "request id points at a missing decision".into(),
                        })
                    })?;
                    let first: DecisionRecord =
                        decode(existing_id.as_bytes(), &raw).map_err(abort)?;
                    return Ok(AdmitRecorded::Replay(Box::new(first)));
                }
                reqs.insert(idem_key.as_slice(), decision.decision_id.as_bytes())?;
                decisions.insert(decision.decision_id.as_bytes(), decision_value.as_slice())?;
                if let (Some(d), Some(v)) = (deployment, &deployment_value) {
                    deployments.insert(d.deployment_id.as_bytes(), v.as_slice())?;
                }
                if let Some((k, v)) = &chain {
                    if chains.get(k)?.is_none() {
                        chains.insert(*k, v.as_slice())?;
                    }
                }
                Ok(AdmitRecorded::New)
            })
            .map_err(tx_err)?;
        if let AdmitRecorded::New = outcome {
            self.flusher.flush().await?;
        }
        Ok(outcome)
    }

    async fn update_deployment(
        &self,
        before: &Deployment,
        after: &Deployment,
        decision: &DecisionRecord,
    ) -> Result<(), StoreError> {
        let key = after.deployment_id.as_bytes();
        let after_value = encode(after)?;
        let decision_value = encode(decision)?;
        (&self.deployments, &self.decisions)
            .transaction(|(deployments, decisions)| {
                let current: Option<Deployment> = match deployments.get(key)? {
                    Some(raw) => Some(decode(key, &raw).map_err(abort)?),
                    None => None,
                };
                if current.as_ref() != Some(before) {
                    return Err(abort(StoreError::Conflict(format!(
                        "deployment {}",
                        after.deployment_id
                    ))));
                }
                deployments.insert(key, after_value.as_slice())?;
                decisions.insert(decision.decision_id.as_bytes(), decision_value.as_slice())?;
                Ok(())
            })
            .map_err(tx_err)?;
        self.flusher.flush().await
    }

    fn deployment(&self, deployment_id: &str) -> Result<Option<Deployment>, StoreError> {
        Self::get(&self.deployments, deployment_id.as_bytes())
    }

    fn list_deployments(
        &self,
        filter: &DeploymentFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Deployment>, StoreError> {
        let start = match after {
            Some(a) => std::ops::Bound::Excluded(a.as_bytes().to_vec()),
            None => std::ops::Bound::Unbounded,
        };
        let mut out = Vec::new();
        for item in self.deployments.range((start, std::ops::Bound::Unbounded)) {
            let (k, v) = item.map_err(io)?;
            let d: Deployment = decode(&k, &v)?;
            let keep = filter
                .customer_id
                .as_ref()
                .is_none_or(|c| *c == d.customer_id)
                && filter
                    .model_digest
                    .as_ref()
                    .is_none_or(|m| *m == d.model_digest)
                && filter
                    .admitted_by
                    .as_ref()
                    .is_none_or(|p| *p == d.admitted_by)
                && filter.state.is_none_or(|s| s == d.state_at(filter.now));
            if keep {
                out.push(d);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    fn decision(&self, decision_id: &str) -> Result<Option<DecisionRecord>, StoreError> {
        Self::get(&self.decisions, decision_id.as_bytes())
    }

    fn chain(&self, chain_sha256: &str) -> Result<Option<String>, StoreError> {
        Self::get(&self.chains, chain_sha256.as_bytes())
    }
}
