//! The live trust bundle: regulator roots and CRLs, replaceable while
//! serving. Readers take a snapshot (an `Arc`) and never block a writer for
//! longer than a pointer swap; a change is visible to the very next call.
//!
//! This module turns [`pki`](crate::pki) verification results into the facts
//! and reasons the admission policy works with. It never caches a verdict:
//! every call re-checks time and revocation.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use crate::config::TrustConfig;
use crate::domain::decision::{CertificateOutcome, EvaluatedModel};
use crate::domain::deployment::CertificateSummary;
use crate::domain::reason::{Reason, ReasonCode};
use crate::domain::UnixMillis;
use crate::pki::{
    CertProblemKind, EvaluationResult, Profile, Regions, TrustBundle, UnixTime, Verifier,
};

pub struct TrustState {
    dir: PathBuf,
    profile: Profile,
    verifier: Verifier,
    bundle: RwLock<Arc<TrustBundle>>,
    /// Serialises writers (PutCrl, Reload) so that persisting and swapping
    /// happen as one step.
    write: std::sync::Mutex<()>,
}

#[derive(Debug, thiserror::Error)]
pub enum PutCrlError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Stale(String),
    #[error("{0}")]
    Io(String),
}

pub struct TrustSummary {
    pub version: u64,
    pub roots: u32,
    pub crls: u32,
}

fn reason_code(kind: CertProblemKind) -> ReasonCode {
    match kind {
        CertProblemKind::Malformed => ReasonCode::CertMalformed,
        CertProblemKind::Untrusted => ReasonCode::CertUntrusted,
        CertProblemKind::Expired => ReasonCode::CertExpired,
        CertProblemKind::NotYetValid => ReasonCode::CertNotYetValid,
        CertProblemKind::Revoked => ReasonCode::CertRevoked,
        CertProblemKind::CrlExpired => ReasonCode::CrlExpired,
        CertProblemKind::CrlUnavailable => ReasonCode::CrlUnavailable,
        CertProblemKind::CrlInvalid => ReasonCode::CrlInvalid,
        CertProblemKind::WrongUsage => ReasonCode::CertWrongUsage,
        CertProblemKind::ExtensionMissing(_) => ReasonCode::CertExtensionMissing,
        CertProblemKind::ExtensionMalformed(_) => ReasonCode::CertExtensionMalformed,
    }
}

impl TrustState {
    /// The certificate profile deployments are checked under.
    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    pub fn load(config: &TrustConfig) -> Result<Self, String> {
        let profile = Profile::from_oid_str(&config.oid_base_arc).map_err(|e| e.to_string())?;
        let bundle = TrustBundle::load_dir(&config.dir).map_err(|e| e.to_string())?;
        Ok(Self {
            dir: config.dir.clone(),
            profile,
            verifier: Verifier::new(config.require_crls),
            bundle: RwLock::new(Arc::new(bundle)),
            write: std::sync::Mutex::new(()),
        })
    }

    fn snapshot(&self) -> Arc<TrustBundle> {
        // A poisoned lock only means a writer panicked mid-swap; the Arc
        // inside is still a complete bundle.
        match self.bundle.read() {
            Ok(b) => b.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn replace(&self, bundle: TrustBundle) {
        match self.bundle.write() {
            Ok(mut b) => *b = Arc::new(bundle),
            Err(p) => *p.into_inner() = Arc::new(bundle),
        }
    }

    /// Verifies a PEM chain at `now` and returns the model facts or every
    /// certificate problem. The chain is decoded once; if it cannot be
    /// decoded at all (size, count, PEM or DER form) that is the caller's
    /// input error, returned as `Err` with a description, not a denial.
    pub fn check(&self, chain_pem: &str, now: UnixMillis) -> Result<CertificateOutcome, String> {
        let certs = self
            .verifier
            .parse_chain(chain_pem)
            .map_err(|e| e.to_string())?;
        let Ok(secs) = u64::try_from(now.div_euclid(1000)) else {
            return Ok(CertificateOutcome {
                model: None,
                problems: vec![Reason::new(
                    ReasonCode::CertMalformed,
                    "clock is before the Unix epoch",
                )],
            });
        };
        let time = UnixTime::since_unix_epoch(std::time::Duration::from_secs(secs));
        let bundle = self.snapshot();
        let check = self
            .verifier
            .verify_der(&bundle, &certs, time, &self.profile);
        let problems = check
            .problems
            .iter()
            .map(|p| {
                let message = match p.kind.field() {
                    Some(field) => format!("{}: {}", field.name(), p.message),
                    None => p.message.clone(),
                };
                Reason::new(reason_code(p.kind), message)
            })
            .collect();
        let model = check.verified.map(|v| EvaluatedModel {
            summary: CertificateSummary {
                fingerprint: v.fingerprint_sha256_hex,
                serial: v.serial_hex,
                evaluator: v.issuer,
                developer: v.claims.developer.clone(),
                model_name: v.claims.model_name.clone(),
                model_version: v.claims.model_version.clone(),
                not_after: v.not_after.saturating_mul(1000),
            },
            model_digest: v.claims.model_digest.clone(),
            evaluation_passed: v.claims.result == EvaluationResult::Pass,
            regions: match &v.claims.regions {
                Regions::Any => None,
                Regions::List(list) => Some(list.clone()),
            },
            max_accelerators: v.claims.max_accelerators,
        });
        Ok(CertificateOutcome { model, problems })
    }

    /// Installs a CRL: persisted to the trust directory first, then swapped
    /// in. An older CRL than the one held for the same issuer is refused.
    pub fn put_crl(&self, bytes: &[u8]) -> Result<(), PutCrlError> {
        let _guard = self
            .write
            .lock()
            .map_err(|_| PutCrlError::Io("trust writer lock poisoned".into()))?;
        let mut next = (*self.snapshot()).clone();
        next.add_crl_and_persist(&self.dir, bytes).map_err(|e| {
            use crate::pki::PkiError;
            match e {
                PkiError::Io { .. } => PutCrlError::Io(e.to_string()),
                PkiError::CrlRollback { .. } | PkiError::CrlConflict { .. } => {
                    PutCrlError::Stale(e.to_string())
                }
                other => PutCrlError::Invalid(other.to_string()),
            }
        })?;
        self.replace(next);
        Ok(())
    }

    /// Re-reads the trust directory; on error the current bundle stays.
    pub fn reload(&self) -> Result<(), String> {
        let _guard = self
            .write
            .lock()
            .map_err(|_| "trust writer lock poisoned".to_string())?;
        let current = self.snapshot().version();
        let mut next = TrustBundle::load_dir(&self.dir).map_err(|e| e.to_string())?;
        next.set_version_after(current);
        self.replace(next);
        Ok(())
    }

    pub fn summary(&self) -> TrustSummary {
        let b = self.snapshot();
        TrustSummary {
            version: b.version(),
            roots: u32::try_from(b.roots().len()).unwrap_or(u32::MAX),
            crls: u32::try_from(b.crls().len()).unwrap_or(u32::MAX),
        }
    }
}
