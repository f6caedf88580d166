//! `Trust`: the admin replaces CRLs and reloads the trust directory at run
//! time. A change is effective for the very next verification.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::status::ApiError;
use super::{principal, App};
use crate::proto;
use crate::proto::trust_server::Trust;

/// A CRL larger than this is refused (a regulator's CRL is far smaller).
const MAX_CRL_BYTES: usize = 2 * 1024 * 1024;

pub struct TrustService {
    app: Arc<App>,
}

impl TrustService {
    pub fn new(app: Arc<App>) -> Self {
        Self { app }
    }

    fn status(&self) -> proto::TrustStatus {
        let s = self.app.trust.summary();
        proto::TrustStatus {
            version: s.version,
            roots: s.roots,
            crls: s.crls,
        }
    }
}

#[tonic::async_trait]
impl Trust for TrustService {
    async fn put_crl(
        &self,
        request: Request<proto::PutCrlRequest>,
    ) -> Result<Response<proto::TrustStatus>, Status> {
        let who = principal(&request)?;
        let proto::PutCrlRequest { crl } = request.into_inner();
        if crl.is_empty() {
            return Err(ApiError::invalid("crl", "required").into());
        }
        if crl.len() > MAX_CRL_BYTES {
            return Err(ApiError::invalid("crl", "larger than 2 MiB").into());
        }
        let app = self.app.clone();
        tokio::task::spawn_blocking(move || app.trust.put_crl(&crl))
            .await
            .map_err(|_| ApiError::Internal)?
            .map_err(|e| match e {
                crate::trust::PutCrlError::Invalid(m) => ApiError::invalid("crl", m),
                crate::trust::PutCrlError::Stale(m) => ApiError::FailedPrecondition(m),
                crate::trust::PutCrlError::Io(m) => {
                    tracing::error!(error = %m, "CRL could not be persisted");
                    ApiError::Unavailable
                }
            })?;
        tracing::info!(principal = %who.spiffe_id, "CRL installed");
        Ok(Response::new(self.status()))
    }

    async fn reload(
        &self,
        request: Request<proto::ReloadRequest>,
    ) -> Result<Response<proto::TrustStatus>, Status> {
        let who = principal(&request)?;
        let proto::ReloadRequest {} = request.into_inner();
        let app = self.app.clone();
        tokio::task::spawn_blocking(move || app.trust.reload())
            .await
            .map_err(|_| ApiError::Internal)?
            .map_err(ApiError::FailedPrecondition)?;
        tracing::info!(principal = %who.spiffe_id, "trust directory reloaded");
        Ok(Response::new(self.status()))
    }
}
