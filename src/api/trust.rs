//! `Trust`: the admin replaces CRLs and reloads the trust directory at run
//! time. A change is effective for the very next verification.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::status::{blocking, ApiError};
use super::{principal, App};
use crate::proto;
use crate::proto::trust_server::Trust;

/// A CRL larger than this is refused (a regulator's CRL is far smaller).
const MAX_CRL_BYTES: usize = 2 * 1024 * 1024;

/// The largest sanctions list accepted (the OFAC SDN files together are a
/// few MiB); the Trust service's message limit is set to match.
pub const MAX_LIST_BYTES: usize = 64 * 1024 * 1024;

pub struct TrustService {
    app: Arc<App>,
}

impl TrustService {
    pub fn new(app: Arc<App>) -> Self {
        Self { app }
    }

    fn status(&self) -> proto::TrustStatus {
        let s = self.app.trust.summary();
        let t = self.app.tls.current_summary();
        proto::TrustStatus {
            version: s.version,
            roots: s.roots,
            crls: s.crls,
            tls_version: t.version,
            client_crls: u32::try_from(t.client_crls).unwrap_or(u32::MAX),
            denied_identities: u32::try_from(t.denied_identities).unwrap_or(u32::MAX),
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
        blocking(move || app.trust.put_crl(&crl)).await??;
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
        let tls = blocking(move || {
            app.trust.reload()?;
            Ok::<_, ApiError>(app.tls.reload()?)
        })
        .await??;
        tracing::info!(principal = %who.spiffe_id, tls_changed = tls.changed, "trust directory and TLS files reloaded");
        Ok(Response::new(self.status()))
    }

    async fn load_sanctions_list(
        &self,
        request: Request<proto::LoadSanctionsListRequest>,
    ) -> Result<Response<proto::LoadSanctionsListResponse>, Status> {
        use crate::screening::{ListFormat, ListSource, SanctionsList};
        let who = principal(&request)?;
        let proto::LoadSanctionsListRequest {
            name,
            version,
            format,
            content,
            alt_content,
        } = request.into_inner();
        let mut v = Vec::new();
        for (field, value) in [("name", &name), ("version", &version)] {
            crate::domain::customer::check_text(field, value, 128, &mut v);
        }
        let format = match proto::SanctionsListFormat::try_from(format) {
            Ok(proto::SanctionsListFormat::OfacSdn) => Some(ListFormat::OfacSdn),
            Ok(proto::SanctionsListFormat::Csv) => Some(ListFormat::Csv),
            _ => {
                v.push(crate::domain::customer::FieldViolation::new(
                    "format",
                    "OFAC_SDN or CSV is required",
                ));
                None
            }
        };
        if content.is_empty() {
            v.push(crate::domain::customer::FieldViolation::new(
                "content", "required",
            ));
        }
        if format == Some(ListFormat::Csv) && !alt_content.is_empty() {
            v.push(crate::domain::customer::FieldViolation::new(
                "alt_content",
                "only for the OFAC_SDN format",
            ));
        }
        ApiError::check(v)?;
        let Some(format) = format else {
            return Err(ApiError::Internal.into());
        };
        let parsed = blocking(move || {
            let alt = (!alt_content.is_empty()).then(|| ListSource {
                file_name: "alt_content",
                bytes: &alt_content,
            });
            SanctionsList::from_sources(
                format,
                &name,
                &version,
                ListSource {
                    file_name: "content",
                    bytes: &content,
                },
                alt,
            )
        })
        .await??;
        let (name, version, sha256) = (
            parsed.name.clone(),
            parsed.version.clone(),
            parsed.sha256.clone(),
        );
        let loaded = crate::kyc::load_list(
            &*self.app.store,
            &self.app.screening,
            parsed,
            &who.spiffe_id,
            "",
            self.app.clock.now(),
        )
        .await?;
        tracing::info!(principal = %who.spiffe_id, list = %name, %version, entries = loaded.entries, screened = loaded.screened, potential_matches = loaded.potential_matches, "sanctions list loaded");
        let n = |x: u64| u32::try_from(x).unwrap_or(u32::MAX);
        Ok(Response::new(proto::LoadSanctionsListResponse {
            name,
            version,
            sha256,
            entries: n(loaded.entries as u64),
            customers_screened: n(loaded.screened),
            potential_matches: n(loaded.potential_matches),
        }))
    }
}
