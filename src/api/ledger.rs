//! `Ledger`: read access for auditors, authorities, operators and admins.
//! Everything served is covered by a signed checkpoint: entries and proofs
//! beyond the latest signed size are not served.

use std::sync::Arc;

use prost::Message as _;
use tonic::{Request, Response, Status};

use super::page::{element_bytes, Budget};
use super::status::ApiError;
use super::App;
use crate::ledger::tree::leaf_hash;
use crate::proto;
use crate::proto::ledger_server::Ledger;

const MAX_ENTRIES: u32 = 1000;

pub struct LedgerService {
    app: Arc<App>,
}

impl LedgerService {
    pub fn new(app: Arc<App>) -> Self {
        Self { app }
    }

    /// Resolves a requested size (0 = latest) against the latest signed
    /// checkpoint.
    async fn signed_size(&self, field: &str, requested: u64) -> Result<(u64, String), ApiError> {
        let latest = self.app.store.checkpoint().await?;
        let size = if requested == 0 {
            latest.checkpoint.size
        } else {
            requested
        };
        if size > latest.checkpoint.size {
            return Err(ApiError::invalid(
                field,
                format!(
                    "{size} is beyond the latest signed tree size {}",
                    latest.checkpoint.size
                ),
            ));
        }
        Ok((size, latest.note))
    }
}

fn hashes(v: Vec<[u8; 32]>) -> Vec<Vec<u8>> {
    v.into_iter().map(|h| h.to_vec()).collect()
}

#[tonic::async_trait]
impl Ledger for LedgerService {
    async fn get_checkpoint(
        &self,
        request: Request<proto::GetCheckpointRequest>,
    ) -> Result<Response<proto::GetCheckpointResponse>, Status> {
        let proto::GetCheckpointRequest { first_size } = request.into_inner();
        let latest = self.app.store.checkpoint().await?;
        if first_size > latest.checkpoint.size {
            return Err(ApiError::invalid(
                "first_size",
                format!(
                    "{first_size} is beyond the latest signed tree size {}; \
                     a log never shrinks, so a larger size seen before is evidence of a fork",
                    latest.checkpoint.size
                ),
            )
            .into());
        }
        let consistency_proof = if first_size == 0 {
            Vec::new()
        } else {
            self.app
                .store
                .consistency_proof(first_size, latest.checkpoint.size)
                .await?
        };
        Ok(Response::new(proto::GetCheckpointResponse {
            size: latest.checkpoint.size,
            root_hash: latest.checkpoint.root.to_vec(),
            checkpoint: latest.note,
            consistency_proof: hashes(consistency_proof),
        }))
    }

    async fn get_entries(
        &self,
        request: Request<proto::GetEntriesRequest>,
    ) -> Result<Response<proto::GetEntriesResponse>, Status> {
        let proto::GetEntriesRequest { start, count } = request.into_inner();
        if count == 0 || count > MAX_ENTRIES {
            return Err(ApiError::invalid("count", format!("1 to {MAX_ENTRIES}")).into());
        }
        let signed = self.app.store.checkpoint().await?.checkpoint.size;
        if start >= signed {
            return Err(ApiError::invalid(
                "start",
                format!("must be below the latest signed tree size {signed}"),
            )
            .into());
        }
        let count = u64::from(count).min(signed - start);
        // The one paging rule's byte bound: the caller continues from the
        // index after the last entry served.
        let mut budget = Budget::new(MAX_ENTRIES as usize);
        let entries = self
            .app
            .store
            .entries(start, count)
            .await?
            .into_iter()
            .zip(start..)
            .map(|(data, index)| proto::LedgerEntry { index, data })
            .take_while(|e| budget.take(element_bytes(e.encoded_len())))
            .collect();
        Ok(Response::new(proto::GetEntriesResponse { entries }))
    }

    async fn get_inclusion_proof(
        &self,
        request: Request<proto::GetInclusionProofRequest>,
    ) -> Result<Response<proto::GetInclusionProofResponse>, Status> {
        let proto::GetInclusionProofRequest { index, tree_size } = request.into_inner();
        let (tree_size, checkpoint) = self.signed_size("tree_size", tree_size).await?;
        if index >= tree_size {
            return Err(ApiError::invalid(
                "index",
                format!("must be below the tree size {tree_size}"),
            )
            .into());
        }
        let data = self
            .app
            .store
            .entries(index, 1)
            .await?
            .pop()
            .ok_or_else(|| ApiError::NotFound(format!("ledger entry {index} not found")))?;
        let proof = self.app.store.inclusion_proof(index, tree_size).await?;
        Ok(Response::new(proto::GetInclusionProofResponse {
            index,
            tree_size,
            leaf_hash: leaf_hash(&data).to_vec(),
            proof: hashes(proof),
            checkpoint,
        }))
    }

    async fn get_consistency_proof(
        &self,
        request: Request<proto::GetConsistencyProofRequest>,
    ) -> Result<Response<proto::GetConsistencyProofResponse>, Status> {
        let proto::GetConsistencyProofRequest {
            first_size,
            second_size,
        } = request.into_inner();
        let (second_size, checkpoint) = self.signed_size("second_size", second_size).await?;
        if first_size > second_size {
            return Err(ApiError::invalid(
                "first_size",
                format!("must not exceed second_size {second_size}"),
            )
            .into());
        }
        let proof = if first_size == 0 {
            Vec::new()
        } else {
            self.app
                .store
                .consistency_proof(first_size, second_size)
                .await?
        };
        Ok(Response::new(proto::GetConsistencyProofResponse {
            first_size,
            second_size,
            proof: hashes(proof),
            checkpoint,
        }))
    }
}
