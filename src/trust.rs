//! The live trust bundle: regulator roots and CRLs, replaceable while
//! serving. Readers take a snapshot (an `Arc`) and never block a writer for
//! longer than a pointer swap; a change is visible to the very next call.
//!
//! This module turns [`pki`](crate::pki) verification results into the facts
//! and reasons the admission policy works with. Successful verifications
//! are kept (see [`pki::cache`](crate::pki::cache)) by chain fingerprint and
//! bundle version, so a chain schedulers present again costs no signature
//! checks; but every call re-checks the validity windows, CRL expiry and
//! revocation of the kept path at its own time, rejections are never kept,
//! and any change to the bundle starts afresh. The admission policy runs on
//! every call whatever this module answers.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use sha2::Digest as _;

use crate::config::TrustConfig;
use crate::domain::decision::{CertificateOutcome, EvaluatedModel};
use crate::domain::deployment::CertificateSummary;
use crate::domain::reason::{Reason, ReasonCode};
use crate::domain::UnixMillis;
use crate::pki::cache::{Source, VerificationCache};
use crate::pki::{
    CertProblemKind, EvaluationResult, PathFacts, PkiError, Profile, Regions, TrustBundle,
    UnixTime, Verifier,
};

/// A verdict worth keeping: the chain verified, with what it depended on.
struct Accepted {
    outcome: CertificateOutcome,
    path: PathFacts,
}

/// Why a verification is not kept.
enum NotKept {
    /// The chain could not be decoded: the caller's input error.
    Input(String),
    /// Verified and rejected, with every problem.
    Rejected(Box<CertificateOutcome>),
}

pub struct TrustState {
    dir: PathBuf,
    profile: Profile,
    verifier: Verifier,
    bundle: RwLock<Arc<TrustBundle>>,
    /// Serialises writers (PutCrl, Reload) so that persisting and swapping
    /// happen as one step.
    write: std::sync::Mutex<()>,
    cache: VerificationCache<Accepted>,
}

/// Why the trust bundle could not be loaded, changed or used. Each names
/// what is at fault: the configuration field, the file in the trust
/// directory, or the request's input. Mapped to a status once, in
/// `api::status`.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// `trust.oid_base_arc` in the configuration is not a usable OID.
    #[error("trust.oid_base_arc: {0}")]
    OidBaseArc(#[source] PkiError),
    /// The trust directory does not load (the error names the file).
    #[error(transparent)]
    Directory(PkiError),
    /// The bytes offered as a CRL are not a usable CRL.
    #[error(transparent)]
    InvalidCrl(PkiError),
    /// The CRL offered is older than, or conflicts with, the one held for
    /// its issuer.
    #[error(transparent)]
    StaleCrl(PkiError),
    /// The CRL could not be written to the trust directory (the error
    /// names the file).
    #[error(transparent)]
    PersistCrl(PkiError),
    /// A certificate chain that cannot be decoded at all (size, count, PEM
    /// or DER form): the caller's input, not a verdict.
    #[error("{0}")]
    Chain(String),
    /// A writer panicked while it held the writer lock: a bug, not
    /// something a retry cures.
    #[error("the trust bundle's writer lock is poisoned (a writer panicked)")]
    Poisoned,
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

    pub fn load(config: &TrustConfig) -> Result<Self, TrustError> {
        let profile =
            Profile::from_oid_str(&config.oid_base_arc).map_err(TrustError::OidBaseArc)?;
        let bundle = TrustBundle::load_dir(&config.dir).map_err(TrustError::Directory)?;
        Ok(Self {
            dir: config.dir.clone(),
            profile,
            verifier: Verifier::new(config.require_crls),
            bundle: RwLock::new(Arc::new(bundle)),
            write: std::sync::Mutex::new(()),
            cache: VerificationCache::new(crate::pki::cache::DEFAULT_CAPACITY),
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
        // Entries of the old version can no longer be hit; free them now.
        self.cache.clear();
    }

    /// The verification cache's counters.
    pub fn cache_stats(&self) -> crate::pki::cache::CacheStats {
        self.cache.stats()
    }

    /// Verifies a PEM chain at `now` and returns the model facts or every
    /// certificate problem. The chain is decoded once; if it cannot be
    /// decoded at all (size, count, PEM or DER form) that is the caller's
    /// input error, returned as [`TrustError::Chain`], not a denial.
    pub fn check(
        &self,
        chain_pem: &str,
        now: UnixMillis,
    ) -> Result<CertificateOutcome, TrustError> {
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
        let key = (
            sha2::Sha256::digest(chain_pem.as_bytes()).into(),
            bundle.version(),
        );
        match self
            .cache
            .get_or_verify(key, || self.verify(&bundle, chain_pem, time).map(Arc::new))
        {
            Ok((accepted, Source::Verified)) => Ok(accepted.outcome.clone()),
            Ok((accepted, Source::Kept)) if bundle.still_accepts(&accepted.path, time) => {
                Ok(accepted.outcome.clone())
            }
            // Something time changes no longer holds (a certificate or CRL
            // expired, or the chain is not yet valid): verify again, for
            // the exact problems.
            Ok((_, Source::Kept)) => match self.verify(&bundle, chain_pem, time) {
                Ok(accepted) => Ok(accepted.outcome),
                Err(NotKept::Rejected(outcome)) => Ok(*outcome),
                Err(NotKept::Input(description)) => Err(TrustError::Chain(description)),
            },
            Err(NotKept::Rejected(outcome)) => Ok(*outcome),
            Err(NotKept::Input(description)) => Err(TrustError::Chain(description)),
        }
    }

    /// Verifies a chain against `bundle` at `time`, uncached.
    fn verify(
        &self,
        bundle: &TrustBundle,
        chain_pem: &str,
        time: UnixTime,
    ) -> Result<Accepted, NotKept> {
        let certs = self
            .verifier
            .parse_chain(chain_pem)
            .map_err(|e| NotKept::Input(e.to_string()))?;
        let check = self
            .verifier
            .verify_der(bundle, &certs, time, &self.profile);
        let problems: Vec<Reason> = check
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
        let Some(v) = check.verified.filter(|_| problems.is_empty()) else {
            return Err(NotKept::Rejected(Box::new(CertificateOutcome {
                model: None,
                problems,
            })));
        };
        let model = EvaluatedModel {
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
        };
        Ok(Accepted {
            outcome: CertificateOutcome {
                model: Some(model),
                problems: Vec::new(),
            },
            path: v.path,
        })
    }

    /// Installs a CRL: persisted to the trust directory first, then swapped
    /// in. An older CRL than the one held for the same issuer is refused.
    pub fn put_crl(&self, bytes: &[u8]) -> Result<(), TrustError> {
        let _guard = self.write.lock().map_err(|_| TrustError::Poisoned)?;
        let mut next = (*self.snapshot()).clone();
        next.add_crl_and_persist(&self.dir, bytes)
            .map_err(|e| match e {
                PkiError::Io { .. } => TrustError::PersistCrl(e),
                PkiError::CrlRollback { .. } | PkiError::CrlConflict { .. } => {
                    TrustError::StaleCrl(e)
                }
                other => TrustError::InvalidCrl(other),
            })?;
        self.replace(next);
        Ok(())
    }

    /// Re-reads the trust directory; on error the current bundle stays.
    pub fn reload(&self) -> Result<(), TrustError> {
        let _guard = self.write.lock().map_err(|_| TrustError::Poisoned)?;
        let current = self.snapshot().version();
        let mut next = TrustBundle::load_dir(&self.dir).map_err(TrustError::Directory)?;
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::pki::dev::{CrlSpec, TestPki};

    fn state(pki: &TestPki, dir: &std::path::Path) -> TrustState {
        std::fs::create_dir_all(dir.join("roots")).unwrap();
        std::fs::create_dir_all(dir.join("crls")).unwrap();
        std::fs::write(dir.join("roots/root.pem"), pki.root.cert_pem()).unwrap();
        std::fs::write(
            dir.join("crls/root.crl"),
            pki.root.crl(&CrlSpec::empty(1)).unwrap(),
        )
        .unwrap();
        std::fs::write(
            dir.join("crls/evaluator.crl"),
            pki.evaluator.crl(&CrlSpec::empty(1)).unwrap(),
        )
        .unwrap();
        TrustState::load(&TrustConfig {
            dir: dir.to_path_buf(),
            require_crls: true,
            oid_base_arc: crate::pki::profile::oid_to_string(pki.profile.base_arc()),
        })
        .unwrap()
    }

    #[test]
    fn a_chain_checked_again_is_not_verified_again_and_gets_the_same_answer() {
        let pki = TestPki::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let trust = state(&pki, dir.path());
        let chain = pki.chain(&pki.leaf().unwrap());
        let now = crate::clock::now_millis();
        let first = trust.check(&chain, now).unwrap();
        assert!(first.problems.is_empty() && first.model.is_some());
        let again = trust.check(&chain, now).unwrap();
        assert_eq!(again, first);
        let s = trust.cache_stats();
        assert_eq!((s.misses, s.hits, s.entries), (1, 1, 1));
        // Rejections are decided every time and take no entry.
        let other = TestPki::new().unwrap();
        let foreign = other.chain(&other.leaf().unwrap());
        for _ in 0..2 {
            let r = trust.check(&foreign, now).unwrap();
            assert_eq!(r.problems[0].code, ReasonCode::CertUntrusted);
        }
        let s = trust.cache_stats();
        assert_eq!((s.misses, s.hits, s.entries), (3, 1, 1));
        // Input errors are not verdicts and are not kept either.
        assert!(trust.check("not a chain", now).is_err());
        assert_eq!(trust.cache_stats().entries, 1);
        // A reload empties the cache: the next check verifies again.
        trust.reload().unwrap();
        assert_eq!(trust.cache_stats().entries, 0);
        assert_eq!(trust.check(&chain, now).unwrap(), first);
        assert_eq!(trust.cache_stats().misses, 5);
    }
}
