//! Model-evaluation certificate verification against a [`TrustBundle`].
//!
//! All X.509 path validation — signatures, validity periods, basic
//! constraints, path length, EKU and CRL revocation/expiry — is done by
//! rustls-webpki with the ring signature algorithms. x509-parser is used for
//! metadata (names, messages) and, only after webpki accepted the chain, to
//! read the claim extensions.
//!
//! * this module — the [`Verifier`] (input limits, the webpki call, turning
//!   webpki errors into [`CertProblem`]s with helpful messages) and the
//!   results it returns.
//! * `bundle` — the [`TrustBundle`]: regulator roots and the CRLs in force,
//!   with rollback protection and atomic persistence.
//! * `claims` — reading the claim extensions of a leaf webpki accepted.

use std::fmt;

use rustls_pki_types::pem::{PemObject, SectionKind};
use rustls_pki_types::{CertificateDer, SignatureVerificationAlgorithm, UnixTime};
use sha2::{Digest, Sha256};
use webpki::{
    CertRevocationList, EndEntityCert, ExpirationPolicy, KeyUsage, RevocationCheckDepth,
    RevocationOptions, RevocationOptionsBuilder, UnknownStatusPolicy, VerifiedPath,
};
use x509_parser::certificate::X509Certificate;

use crate::pki::profile::{oid_to_string, EvaluationClaims, Field, Profile};

mod bundle;
mod claims;

pub use bundle::{crl_der, list_files, CrlInfo, CrlUpdate, TrustBundle, MAX_CRL_BYTES};
pub use claims::certificate_claims;
use claims::read_claims;

/// Signature algorithms accepted on certificates and CRLs (ring only).
pub static SUPPORTED_SIG_ALGS: &[&dyn SignatureVerificationAlgorithm] = &[
    webpki::ring::ECDSA_P256_SHA256,
    webpki::ring::ECDSA_P256_SHA384,
    webpki::ring::ECDSA_P384_SHA256,
    webpki::ring::ECDSA_P384_SHA384,
    webpki::ring::ED25519,
];

/// Default limit on the PEM chain size.
pub const MAX_CHAIN_BYTES: usize = 64 * 1024;
/// Default limit on the number of certificates in a chain.
pub const MAX_CHAIN_CERTS: usize = 10;

// ---------------------------------------------------------------------------
// Problems and results

/// Why a certificate is not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CertProblemKind {
    /// Bad PEM/DER, empty chain, too many certificates, too large.
    Malformed,
    /// No valid path to a regulator root (unknown issuer, bad signature, ...).
    Untrusted,
    Expired,
    NotYetValid,
    Revoked,
    /// A CRL needed for the chain is past its nextUpdate.
    CrlExpired,
    /// No CRL for an issuer in the chain, and the policy requires one.
    CrlUnavailable,
    /// A held CRL for an issuer in the chain is unusable (bad signature,
    /// issuer not allowed to sign CRLs, unsupported CRL features).
    CrlInvalid,
    /// Missing or wrong extended key usage, or a CA/end-entity role mix-up.
    WrongUsage,
    ExtensionMissing(Field),
    ExtensionMalformed(Field),
}

impl CertProblemKind {
    /// Stable machine-readable code, e.g. for gRPC error details.
    pub fn code(&self) -> &'static str {
        match self {
            CertProblemKind::Malformed => "MALFORMED",
            CertProblemKind::Untrusted => "UNTRUSTED",
            CertProblemKind::Expired => "EXPIRED",
            CertProblemKind::NotYetValid => "NOT_YET_VALID",
            CertProblemKind::Revoked => "REVOKED",
            CertProblemKind::CrlExpired => "CRL_EXPIRED",
            CertProblemKind::CrlUnavailable => "CRL_UNAVAILABLE",
            CertProblemKind::CrlInvalid => "CRL_INVALID",
            CertProblemKind::WrongUsage => "WRONG_USAGE",
            CertProblemKind::ExtensionMissing(_) => "EXTENSION_MISSING",
            CertProblemKind::ExtensionMalformed(_) => "EXTENSION_MALFORMED",
        }
    }

    /// The claim field concerned, for the extension kinds.
    pub fn field(&self) -> Option<Field> {
        match self {
            CertProblemKind::ExtensionMissing(f) | CertProblemKind::ExtensionMalformed(f) => {
                Some(*f)
            }
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertProblem {
    pub kind: CertProblemKind,
    pub message: String,
}

impl CertProblem {
    fn new(kind: CertProblemKind, message: impl Into<String>) -> Self {
        CertProblem {
            kind,
            message: message.into(),
        }
    }
}

impl fmt::Display for CertProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind.field() {
            Some(field) => write!(
                f,
                "{} ({}): {}",
                self.kind.code(),
                field.name(),
                self.message
            ),
            None => write!(f, "{}: {}", self.kind.code(), self.message),
        }
    }
}

/// A certificate that passed every check, with its claims.
#[derive(Clone, Debug, PartialEq)]
pub struct VerifiedCertificate {
    /// SHA-256 of the leaf DER, lowercase hex.
    pub fingerprint_sha256_hex: String,
    /// Lowercase hex of the leaf serial's DER content octets.
    pub serial_hex: String,
    /// Issuer (evaluator CA subject), RFC 4514-style.
    pub issuer: String,
    pub subject: String,
    /// Licence period, unix seconds.
    pub not_before: i64,
    pub not_after: i64,
    pub claims: EvaluationClaims,
    /// What the verdict depended on that time alone can change.
    pub path: PathFacts,
}

/// The facts of a verified path that can change while the chain and the
/// trust bundle stay the same: each certificate's validity window, and its
/// revocation status (its issuer's CRL can expire). A verdict kept for a
/// chain is only reused once [`TrustBundle::still_accepts`] has re-checked
/// these at the time of use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathFacts {
    /// One per certificate on the verified path (leaf, then intermediates;
    /// not the trust anchor, which webpki does not time-check).
    certs: Vec<PathCert>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct PathCert {
    not_before: i64,
    not_after: i64,
    /// Issuer name DER, as CRLs are matched to certificates.
    issuer_raw: Vec<u8>,
    /// Serial number content octets, as CRLs list them.
    serial: Vec<u8>,
}

impl PathCert {
    fn of(c: &X509Certificate<'_>) -> Self {
        PathCert {
            not_before: c.validity().not_before.timestamp(),
            not_after: c.validity().not_after.timestamp(),
            issuer_raw: c.issuer().as_raw().to_vec(),
            serial: c.raw_serial().to_vec(),
        }
    }
}

/// Result of [`Verifier::verify`]: `verified` is `Some` exactly when
/// `problems` is empty.
#[derive(Clone, Debug, PartialEq)]
pub struct CertificateCheck {
    pub verified: Option<VerifiedCertificate>,
    pub problems: Vec<CertProblem>,
}

impl CertificateCheck {
    pub fn is_valid(&self) -> bool {
        self.verified.is_some() && self.problems.is_empty()
    }

    fn fail(problems: Vec<CertProblem>) -> Self {
        CertificateCheck {
            verified: None,
            problems,
        }
    }

    fn one(kind: CertProblemKind, message: impl Into<String>) -> Self {
        Self::fail(vec![CertProblem::new(kind, message)])
    }
}

/// A `certificate_chain` argument that is unusable before any verification
/// (the server maps this to INVALID_ARGUMENT).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    #[error("certificate_chain is empty")]
    Empty,
    #[error("certificate_chain is {len} bytes; the limit is {max}")]
    TooLarge { len: usize, max: usize },
    #[error("certificate_chain holds {count} certificates; the limit is {max}")]
    TooManyCertificates { count: usize, max: usize },
    #[error("certificate_chain is not valid PEM: {0}")]
    BadPem(String),
    #[error("certificate_chain contains a PEM section other than CERTIFICATE: {0}")]
    UnexpectedSection(String),
    #[error("certificate_chain certificate #{index} is not a valid DER certificate: {reason}")]
    BadDer { index: usize, reason: String },
}

impl InputError {
    /// The request field the error is about.
    pub fn field(&self) -> &'static str {
        "certificate_chain"
    }
}

/// A unix time as RFC 3339 for messages (`@secs` if out of range).
fn fmt_time(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("@{unix}"))
}

// ---------------------------------------------------------------------------
// Verifier

/// Verification policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verifier {
    /// Require a current CRL from every CA in the chain (regulator root for
    /// the evaluator CA, evaluator CA for the leaf). Default true: fail
    /// closed with `CrlUnavailable`. When false, a CA without a CRL is
    /// treated as revoking nothing, but a CRL that *is* held is still
    /// enforced (signature, expiry, serials).
    pub require_crl_for_every_ca: bool,
    pub max_chain_bytes: usize,
    pub max_chain_certs: usize,
}

impl Default for Verifier {
    fn default() -> Self {
        Verifier {
            require_crl_for_every_ca: true,
            max_chain_bytes: MAX_CHAIN_BYTES,
            max_chain_certs: MAX_CHAIN_CERTS,
        }
    }
}

impl Verifier {
    pub fn new(require_crl_for_every_ca: bool) -> Self {
        Verifier {
            require_crl_for_every_ca,
            ..Self::default()
        }
    }

    /// Decode a PEM chain (leaf first, then intermediates; a root may be
    /// included and is ignored as an intermediate candidate).
    pub fn parse_chain(&self, chain_pem: &str) -> Result<Vec<CertificateDer<'static>>, InputError> {
        if chain_pem.len() > self.max_chain_bytes {
            return Err(InputError::TooLarge {
                len: chain_pem.len(),
                max: self.max_chain_bytes,
            });
        }
        if chain_pem.trim().is_empty() {
            return Err(InputError::Empty);
        }
        let mut certs = Vec::new();
        for section in <(SectionKind, Vec<u8>)>::pem_slice_iter(chain_pem.as_bytes()) {
            let (kind, der) = section.map_err(|e| InputError::BadPem(e.to_string()))?;
            if kind != SectionKind::Certificate {
                return Err(InputError::UnexpectedSection(format!("{kind:?}")));
            }
            certs.push(CertificateDer::from(der));
            if certs.len() > self.max_chain_certs {
                break;
            }
        }
        if certs.is_empty() {
            return Err(InputError::BadPem("no PEM CERTIFICATE section".into()));
        }
        self.check_ders(&certs)?;
        Ok(certs)
    }

    fn check_ders(&self, certs: &[CertificateDer<'_>]) -> Result<(), InputError> {
        if certs.is_empty() {
            return Err(InputError::Empty);
        }
        if certs.len() > self.max_chain_certs {
            return Err(InputError::TooManyCertificates {
                count: certs.len(),
                max: self.max_chain_certs,
            });
        }
        for (i, c) in certs.iter().enumerate() {
            match x509_parser::parse_x509_certificate(c) {
                Ok(([], _)) => {}
                Ok(_) => {
                    return Err(InputError::BadDer {
                        index: i + 1,
                        reason: "trailing data".into(),
                    })
                }
                Err(e) => {
                    return Err(InputError::BadDer {
                        index: i + 1,
                        reason: e.to_string(),
                    })
                }
            }
        }
        Ok(())
    }

    /// Verify a PEM chain at time `now` against `bundle` under `profile`.
    pub fn verify(
        &self,
        bundle: &TrustBundle,
        chain_pem: &str,
        now: UnixTime,
        profile: &Profile,
    ) -> CertificateCheck {
        match self.parse_chain(chain_pem) {
            Ok(certs) => self.verify_der(bundle, &certs, now, profile),
            Err(e) => CertificateCheck::one(CertProblemKind::Malformed, e.to_string()),
        }
    }

    /// Verify a DER chain (leaf first).
    pub fn verify_der(
        &self,
        bundle: &TrustBundle,
        certs: &[CertificateDer<'_>],
        now: UnixTime,
        profile: &Profile,
    ) -> CertificateCheck {
        if let Err(e) = self.check_ders(certs) {
            return CertificateCheck::one(CertProblemKind::Malformed, e.to_string());
        }
        let parsed: Vec<X509Certificate<'_>> = certs
            .iter()
            .filter_map(|c| x509_parser::parse_x509_certificate(c).ok().map(|(_, x)| x))
            .collect();
        let eku = match profile.eku_der_static() {
            Ok(d) => d,
            Err(e) => return CertificateCheck::one(CertProblemKind::WrongUsage, e.to_string()),
        };
        let ee = match EndEntityCert::try_from(&certs[0]) {
            Ok(ee) => ee,
            Err(e) => {
                return CertificateCheck::one(
                    CertProblemKind::Malformed,
                    format!("leaf certificate rejected by the X.509 parser: {e}"),
                )
            }
        };

        let crl_refs: Vec<&CertRevocationList<'_>> =
            bundle.crls.iter().map(|c| c.webpki.as_ref()).collect();
        let revocation = self.revocation(&crl_refs);

        let result = ee.verify_for_usage(
            SUPPORTED_SIG_ALGS,
            &bundle.anchors,
            &certs[1..],
            now,
            KeyUsage::required(eku),
            revocation,
            None,
        );
        let path = match result {
            Ok(path) => path_facts(&path, certs, &parsed),
            Err(e) => {
                return CertificateCheck::fail(
                    vec![self.explain(&e, bundle, &parsed, now, profile)],
                )
            }
        };
        if revocation.is_none() && self.require_crl_for_every_ca {
            return CertificateCheck::one(
                CertProblemKind::CrlUnavailable,
                format!(
                    "no CRLs are loaded; required for: {}",
                    missing_crl_issuers(bundle, &parsed).join("; ")
                ),
            );
        }

        // webpki accepted the chain: now, and only now, read the claims.
        let leaf = &parsed[0];
        match read_claims(leaf, profile) {
            Ok(claims) => CertificateCheck {
                verified: Some(VerifiedCertificate {
                    fingerprint_sha256_hex: hex::encode(Sha256::digest(&certs[0])),
                    serial_hex: hex::encode(leaf.raw_serial()),
                    issuer: leaf.issuer().to_string(),
                    subject: leaf.subject().to_string(),
                    not_before: leaf.validity().not_before.timestamp(),
                    not_after: leaf.validity().not_after.timestamp(),
                    claims,
                    path,
                }),
                problems: Vec::new(),
            },
            Err(problems) => CertificateCheck::fail(problems),
        }
    }

    /// The revocation options for webpki: every held CRL, checked for the
    /// whole chain, expired CRLs refused, and an issuer without a CRL
    /// refused or allowed as the policy says.
    fn revocation<'a>(
        &self,
        crl_refs: &'a [&'a CertRevocationList<'a>],
    ) -> Option<RevocationOptions<'a>> {
        let status_policy = if self.require_crl_for_every_ca {
            UnknownStatusPolicy::Deny
        } else {
            UnknownStatusPolicy::Allow
        };
        // The builder is Copy: every `with_*` result is assigned.
        match RevocationOptionsBuilder::new(crl_refs) {
            Ok(builder) => {
                let builder = builder.with_depth(RevocationCheckDepth::Chain);
                let builder = builder.with_status_policy(status_policy);
                let builder = builder.with_expiration_policy(ExpirationPolicy::Enforce);
                Some(builder.build())
            }
            // No CRLs at all: webpki cannot be given revocation options.
            // Path-validate without them; if the policy requires CRLs the
            // result is CrlUnavailable (see `verify_der`).
            Err(_) => None,
        }
    }

    /// Map a webpki error to a problem with a helpful message.
    fn explain(
        &self,
        e: &webpki::Error,
        bundle: &TrustBundle,
        chain: &[X509Certificate<'_>],
        now: UnixTime,
        profile: &Profile,
    ) -> CertProblem {
        use webpki::Error as E;
        use CertProblemKind as K;
        let now_s = now.as_secs() as i64;
        let kind = classify(e);
        let message = match kind {
            K::Expired => {
                let names: Vec<String> = chain
                    .iter()
                    .filter(|c| c.validity().not_after.timestamp() < now_s)
                    .map(|c| {
                        format!(
                            "{} (notAfter {})",
                            c.subject(),
                            fmt_time(c.validity().not_after.timestamp())
                        )
                    })
                    .collect();
                format!("certificate expired: {}", names.join("; "))
            }
            K::NotYetValid => {
                let names: Vec<String> = chain
                    .iter()
                    .filter(|c| c.validity().not_before.timestamp() > now_s)
                    .map(|c| {
                        format!(
                            "{} (notBefore {})",
                            c.subject(),
                            fmt_time(c.validity().not_before.timestamp())
                        )
                    })
                    .collect();
                format!("certificate not yet valid: {}", names.join("; "))
            }
            K::Revoked => "a certificate in the chain is revoked by its issuer's CRL".to_string(),
            K::CrlExpired => match e {
                E::CrlExpired { next_update, .. } => format!(
                    "a CRL needed for this chain expired (nextUpdate {}); a newer CRL must be \
                     installed",
                    fmt_time(next_update.as_secs() as i64)
                ),
                _ => "a CRL needed for this chain expired".to_string(),
            },
            K::CrlUnavailable => format!(
                "no CRL held for: {}",
                missing_crl_issuers(bundle, chain).join("; ")
            ),
            K::CrlInvalid => format!("a held CRL for this chain is unusable: {e}"),
            K::WrongUsage => {
                let eku = profile.eku_oid();
                let lacking: Vec<String> = chain
                    .iter()
                    .filter(|c| !has_eku(c, &eku))
                    .map(|c| c.subject().to_string())
                    .collect();
                if matches!(
                    e,
                    E::CaUsedAsEndEntity | E::EndEntityUsedAsCa | E::PathLenConstraintViolated
                ) {
                    format!("certificate used in the wrong role: {e}")
                } else {
                    format!(
                        "missing the model-evaluation extended key usage {} on: {}",
                        oid_to_string(&eku),
                        if lacking.is_empty() {
                            "(unknown)".into()
                        } else {
                            lacking.join("; ")
                        }
                    )
                }
            }
            K::Malformed => format!("certificate rejected as malformed: {e}"),
            _ => format!(
                "no valid chain to a trusted regulator root ({e}); chain issuers: {}",
                chain
                    .iter()
                    .map(|c| c.issuer().to_string())
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        };
        CertProblem::new(kind, message)
    }
}

/// The time-dependent facts of the path webpki verified: the leaf, then
/// the intermediates it used.
fn path_facts(
    path: &VerifiedPath<'_>,
    certs: &[CertificateDer<'_>],
    parsed: &[X509Certificate<'_>],
) -> PathFacts {
    let mut on_path = vec![PathCert::of(&parsed[0])];
    for i in path.intermediate_certificates() {
        let der = i.der();
        let x = certs
            .iter()
            .position(|c| c.as_ref() == der.as_ref())
            .and_then(|at| parsed.get(at));
        on_path.push(match x {
            Some(x) => PathCert::of(x),
            // Not one of ours (cannot happen: webpki only uses
            // the certificates it was given): never reuse.
            None => PathCert {
                not_before: i64::MAX,
                not_after: i64::MIN,
                issuer_raw: Vec::new(),
                serial: Vec::new(),
            },
        });
    }
    PathFacts { certs: on_path }
}

#[allow(deprecated)]
fn classify(e: &webpki::Error) -> CertProblemKind {
    use webpki::Error as E;
    use CertProblemKind as K;
    match e {
        E::CertExpired { .. } => K::Expired,
        E::CertNotValidYet { .. } => K::NotYetValid,
        E::CertRevoked => K::Revoked,
        E::CrlExpired { .. } => K::CrlExpired,
        E::UnknownRevocationStatus => K::CrlUnavailable,
        E::InvalidCrlSignatureForPublicKey
        | E::IssuerNotCrlSigner
        | E::InvalidCrlNumber
        | E::UnsupportedCrlVersion
        | E::UnsupportedDeltaCrl
        | E::UnsupportedIndirectCrl
        | E::UnsupportedRevocationReason
        | E::UnsupportedRevocationReasonsPartitioning
        | E::UnsupportedCrlIssuingDistributionPoint
        | E::UnsupportedCrlSignatureAlgorithm
        | E::UnsupportedCrlSignatureAlgorithmContext(_)
        | E::UnsupportedCrlSignatureAlgorithmForPublicKey
        | E::UnsupportedCrlSignatureAlgorithmForPublicKeyContext(_) => K::CrlInvalid,
        E::RequiredEkuNotFound
        | E::RequiredEkuNotFoundContext(_)
        | E::EmptyEkuExtension
        | E::CaUsedAsEndEntity
        | E::EndEntityUsedAsCa
        | E::PathLenConstraintViolated => K::WrongUsage,
        E::BadDer
        | E::BadDerTime
        | E::TrailingData(_)
        | E::MalformedExtensions
        | E::ExtensionValueInvalid
        | E::InvalidSerialNumber
        | E::InvalidCertValidity
        | E::UnsupportedCertVersion
        | E::UnsupportedCriticalExtension => K::Malformed,
        _ => K::Untrusted,
    }
}

fn has_eku(c: &X509Certificate<'_>, eku: &[u64]) -> bool {
    match c.extended_key_usage() {
        Ok(Some(ext)) => ext
            .value
            .other
            .iter()
            .any(|o| o.iter().map(|i| i.collect::<Vec<u64>>()).as_deref() == Some(eku)),
        _ => false,
    }
}

/// Issuers of non-self-issued chain certificates for which no CRL is held.
fn missing_crl_issuers(bundle: &TrustBundle, chain: &[X509Certificate<'_>]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for c in chain {
        if c.issuer().as_raw() == c.subject().as_raw() {
            continue;
        }
        let raw = c.issuer().as_raw();
        if !bundle.crls.iter().any(|h| h.issuer_raw == raw) {
            let name = c.issuer().to_string();
            if !out.contains(&name) {
                out.push(name);
            }
        }
    }
    if out.is_empty() {
        out.push("(an issuer in the chain)".into());
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::pki::dev::{sample_claims, CrlSpec, LeafSpec, TestCa, TestPki};
    use crate::pki::profile::Regions;
    use std::time::Duration as StdDuration;
    use time::{Duration, OffsetDateTime};

    fn now() -> UnixTime {
        UnixTime::now()
    }

    fn at(t: OffsetDateTime) -> UnixTime {
        UnixTime::since_unix_epoch(StdDuration::from_secs(t.unix_timestamp() as u64))
    }

    fn kinds(c: &CertificateCheck) -> Vec<CertProblemKind> {
        c.problems.iter().map(|p| p.kind).collect()
    }

    fn check(pki: &TestPki, bundle: &TrustBundle, chain: &str) -> CertificateCheck {
        Verifier::default().verify(bundle, chain, now(), &pki.profile)
    }

    #[test]
    fn valid_chain_accepted_with_claims() {
        let pki = TestPki::new().unwrap();
        let leaf = pki.leaf().unwrap();
        let c = check(&pki, &pki.bundle().unwrap(), &pki.chain(&leaf));
        assert!(c.is_valid(), "{:?}", c.problems);
        let v = c.verified.unwrap();
        assert_eq!(v.claims, sample_claims());
        assert_eq!(v.serial_hex, leaf.serial_hex);
        assert_eq!(
            v.fingerprint_sha256_hex,
            hex::encode(Sha256::digest(&leaf.cert_der))
        );
        assert!(v.issuer.contains("Test Evaluator CA"), "{}", v.issuer);
        assert!(v.not_before < v.not_after);
        // Including the root in the chain is harmless.
        let with_root = format!("{}{}", pki.chain(&leaf), pki.root.cert_pem());
        assert!(check(&pki, &pki.bundle().unwrap(), &with_root).is_valid());
    }

    #[test]
    fn issued_by_issue_module_verifies_with_custom_arc() {
        let profile = Profile::from_oid_str("1.3.6.1.4.1.99999.7").unwrap();
        let pki = TestPki::with_profile(profile.clone()).unwrap();
        let mut claims = sample_claims();
        claims.regions = Regions::Any;
        claims.training_compute_flop = 0.0;
        let t = OffsetDateTime::now_utc();
        let issued = crate::pki::issue_evaluation_certificate(
            &pki.evaluator.cert_pem(),
            &pki.evaluator.key_pem(),
            &claims,
            t - Duration::minutes(5),
            t + Duration::days(90),
            &profile,
        )
        .unwrap();
        let chain = format!("{}{}", issued.cert_pem, pki.evaluator.cert_pem());
        let c = check(&pki, &pki.bundle().unwrap(), &chain);
        assert!(c.is_valid(), "{:?}", c.problems);
        let v = c.verified.unwrap();
        assert_eq!(v.claims, claims);
        assert_eq!(v.serial_hex, issued.serial_hex);
        assert_eq!(v.fingerprint_sha256_hex, issued.fingerprint_sha256_hex);
        // Under the default arc the same certificate has the wrong EKU.
        let c =
            Verifier::default().verify(&pki.bundle().unwrap(), &chain, now(), &Profile::default());
        assert_eq!(kinds(&c), vec![CertProblemKind::WrongUsage]);
    }

    #[test]
    fn untrusted_root() {
        let pki = TestPki::new().unwrap();
        let other = TestPki::new().unwrap();
        let leaf = pki.leaf().unwrap();
        let c = check(&pki, &other.bundle().unwrap(), &pki.chain(&leaf));
        assert_eq!(
            kinds(&c),
            vec![CertProblemKind::Untrusted],
            "{:?}",
            c.problems
        );
        assert!(c.verified.is_none());
        // Leaf alone, without its evaluator CA: no path either.
        let c = check(&pki, &pki.bundle().unwrap(), &leaf.cert_pem);
        assert_eq!(kinds(&c), vec![CertProblemKind::Untrusted]);
    }

    #[test]
    fn expired_and_not_yet_valid() {
        let pki = TestPki::new().unwrap();
        let t = OffsetDateTime::now_utc();
        let bundle = pki.bundle().unwrap();
        let expired = pki
            .evaluator
            .issue_leaf(
                &LeafSpec::new(&pki.profile, sample_claims())
                    .validity(t - Duration::days(10), t - Duration::days(1)),
            )
            .unwrap();
        let c = check(&pki, &bundle, &pki.chain(&expired));
        assert_eq!(
            kinds(&c),
            vec![CertProblemKind::Expired],
            "{:?}",
            c.problems
        );
        assert!(
            c.problems[0].message.contains("example-llm"),
            "{}",
            c.problems[0].message
        );

        let future = pki
            .evaluator
            .issue_leaf(
                &LeafSpec::new(&pki.profile, sample_claims())
                    .validity(t + Duration::days(1), t + Duration::days(10)),
            )
            .unwrap();
        let c = check(&pki, &bundle, &pki.chain(&future));
        assert_eq!(
            kinds(&c),
            vec![CertProblemKind::NotYetValid],
            "{:?}",
            c.problems
        );
        // ... and valid once its time comes (CRLs still current then).
        let c = Verifier::default().verify(
            &bundle,
            &pki.chain(&future),
            at(t + Duration::days(2)),
            &pki.profile,
        );
        assert!(c.is_valid(), "{:?}", c.problems);
    }

    #[test]
    fn revoked_by_crl_and_put_crl_takes_effect_immediately() {
        let pki = TestPki::new().unwrap();
        let leaf = pki.leaf().unwrap();
        let other = pki.leaf().unwrap();
        let mut bundle = pki.bundle().unwrap();
        assert!(check(&pki, &bundle, &pki.chain(&leaf)).is_valid());
        let v0 = bundle.version();
        let crl = pki
            .evaluator
            .crl(&CrlSpec::empty(2).revoking(&leaf.serial))
            .unwrap();
        let upd = bundle.add_crl(&crl).unwrap();
        assert!(upd.version > v0);
        assert_eq!(upd.replaced.unwrap().crl_number.as_deref(), Some("1"));
        let c = check(&pki, &bundle, &pki.chain(&leaf));
        assert_eq!(
            kinds(&c),
            vec![CertProblemKind::Revoked],
            "{:?}",
            c.problems
        );
        // Other certificates of the same CA are unaffected.
        assert!(check(&pki, &bundle, &pki.chain(&other)).is_valid());
        // Re-adding the same CRL is a no-op.
        let again = bundle.add_crl(&crl).unwrap();
        assert!(again.unchanged);
        assert_eq!(again.version, upd.version);
    }

    #[test]
    fn revoked_evaluator_ca() {
        let pki = TestPki::new().unwrap();
        let leaf = pki.leaf().unwrap();
        let mut bundle = pki.bundle().unwrap();
        let serial = x509_parser::parse_x509_certificate(&pki.evaluator.cert_der())
            .unwrap()
            .1
            .raw_serial()
            .to_vec();
        bundle
            .add_crl(&pki.root.crl(&CrlSpec::empty(2).revoking(&serial)).unwrap())
            .unwrap();
        let c = check(&pki, &bundle, &pki.chain(&leaf));
        assert_eq!(
            kinds(&c),
            vec![CertProblemKind::Revoked],
            "{:?}",
            c.problems
        );
    }

    #[test]
    fn expired_crl() {
        let pki = TestPki::new().unwrap();
        let leaf = pki.leaf().unwrap();
        let t = OffsetDateTime::now_utc();
        let mut bundle = pki.bundle_without_crls().unwrap();
        bundle
            .add_crl(&pki.root.crl(&CrlSpec::empty(1)).unwrap())
            .unwrap();
        bundle
            .add_crl(
                &pki.evaluator
                    .crl(&CrlSpec::empty(1).times(t - Duration::days(10), t - Duration::days(1)))
                    .unwrap(),
            )
            .unwrap();
        let c = check(&pki, &bundle, &pki.chain(&leaf));
        assert_eq!(
            kinds(&c),
            vec![CertProblemKind::CrlExpired],
            "{:?}",
            c.problems
        );
        // Current CRLs, but verified after their nextUpdate: expired too.
        let long = pki
            .evaluator
            .issue_leaf(
                &LeafSpec::new(&pki.profile, sample_claims()).validity(t, t + Duration::days(90)),
            )
            .unwrap();
        let c = Verifier::default().verify(
            &pki.bundle().unwrap(),
            &pki.chain(&long),
            at(t + Duration::days(31)),
            &pki.profile,
        );
        assert_eq!(
            kinds(&c),
            vec![CertProblemKind::CrlExpired],
            "{:?}",
            c.problems
        );
    }

    #[test]
    fn missing_crl() {
        let pki = TestPki::new().unwrap();
        let leaf = pki.leaf().unwrap();
        // No CRLs at all.
        let none = pki.bundle_without_crls().unwrap();
        let c = check(&pki, &none, &pki.chain(&leaf));
        assert_eq!(
            kinds(&c),
            vec![CertProblemKind::CrlUnavailable],
            "{:?}",
            c.problems
        );
        // Only the root's CRL: the evaluator CA's is missing, and named.
        let mut partial = pki.bundle_without_crls().unwrap();
        partial
            .add_crl(&pki.root.crl(&CrlSpec::empty(1)).unwrap())
            .unwrap();
        let c = check(&pki, &partial, &pki.chain(&leaf));
        assert_eq!(
            kinds(&c),
            vec![CertProblemKind::CrlUnavailable],
            "{:?}",
            c.problems
        );
        assert!(
            c.problems[0].message.contains("Test Evaluator CA"),
            "{}",
            c.problems[0].message
        );
        // Only the evaluator's CRL: the root's (for the evaluator CA) is missing.
        let mut partial = pki.bundle_without_crls().unwrap();
        partial
            .add_crl(&pki.evaluator.crl(&CrlSpec::empty(1)).unwrap())
            .unwrap();
        let c = check(&pki, &partial, &pki.chain(&leaf));
        assert_eq!(
            kinds(&c),
            vec![CertProblemKind::CrlUnavailable],
            "{:?}",
            c.problems
        );
        assert!(
            c.problems[0].message.contains("Test Regulator Root"),
            "{}",
            c.problems[0].message
        );
        // Policy not requiring CRLs: accepted, but a held CRL is still enforced.
        let lax = Verifier::new(false);
        assert!(lax
            .verify(&none, &pki.chain(&leaf), now(), &pki.profile)
            .is_valid());
        assert!(lax
            .verify(&partial, &pki.chain(&leaf), now(), &pki.profile)
            .is_valid());
        partial
            .add_crl(
                &pki.evaluator
                    .crl(&CrlSpec::empty(2).revoking(&leaf.serial))
                    .unwrap(),
            )
            .unwrap();
        let c = lax.verify(&partial, &pki.chain(&leaf), now(), &pki.profile);
        assert_eq!(kinds(&c), vec![CertProblemKind::Revoked]);
    }

    #[test]
    fn crl_signed_by_wrong_key_is_invalid() {
        let pki = TestPki::new().unwrap();
        let leaf = pki.leaf().unwrap();
        // An impostor CA with the same name as the evaluator CA.
        let impostor = pki
            .root
            .evaluator("Test Evaluator CA", &pki.profile, true)
            .unwrap();
        let mut bundle = pki.bundle_without_crls().unwrap();
        bundle
            .add_crl(&pki.root.crl(&CrlSpec::empty(1)).unwrap())
            .unwrap();
        bundle
            .add_crl(&impostor.crl(&CrlSpec::empty(1)).unwrap())
            .unwrap();
        let c = check(&pki, &bundle, &pki.chain(&leaf));
        assert_eq!(
            kinds(&c),
            vec![CertProblemKind::CrlInvalid],
            "{:?}",
            c.problems
        );
    }

    #[test]
    fn wrong_usage_eku() {
        let pki = TestPki::new().unwrap();
        // Evaluator CA without the EKU.
        let no_eku_ca = pki
            .root
            .evaluator("EKU-less Evaluator CA", &pki.profile, false)
            .unwrap();
        let leaf = no_eku_ca
            .issue_leaf(&LeafSpec::new(&pki.profile, sample_claims()))
            .unwrap();
        let mut bundle = pki.bundle().unwrap();
        bundle
            .add_crl(&no_eku_ca.crl(&CrlSpec::empty(1)).unwrap())
            .unwrap();
        let chain = format!("{}{}", leaf.cert_pem, no_eku_ca.cert_pem());
        let c = check(&pki, &bundle, &chain);
        assert_eq!(
            kinds(&c),
            vec![CertProblemKind::WrongUsage],
            "{:?}",
            c.problems
        );
        assert!(
            c.problems[0].message.contains("EKU-less Evaluator CA"),
            "{}",
            c.problems[0].message
        );
        // Leaf without the EKU.
        let leaf = pki
            .evaluator
            .issue_leaf(&LeafSpec::new(&pki.profile, sample_claims()).without_eku())
            .unwrap();
        let c = check(&pki, &pki.bundle().unwrap(), &pki.chain(&leaf));
        assert_eq!(
            kinds(&c),
            vec![CertProblemKind::WrongUsage],
            "{:?}",
            c.problems
        );
        assert!(
            c.problems[0].message.contains("example-llm"),
            "{}",
            c.problems[0].message
        );
    }

    #[test]
    fn malformed_inputs() {
        let pki = TestPki::new().unwrap();
        let bundle = pki.bundle().unwrap();
        let v = Verifier::default();
        let leaf = pki.leaf().unwrap();
        let garbage = "-----BEGIN CERTIFICATE-----\n!!!not base64!!!\n-----END CERTIFICATE-----\n";
        let not_der = "-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n";
        let eleven = leaf.cert_pem.repeat(11);
        let ten = leaf.cert_pem.repeat(10);
        let huge = format!("{}{}", pki.chain(&leaf), " ".repeat(64 * 1024));
        let with_key = format!("{}{}", pki.chain(&leaf), leaf.key_pem);
        for (name, input) in [
            ("garbage", "hello world"),
            ("bad base64", garbage),
            ("not DER", not_der),
            ("empty", ""),
            ("blank", "  \n"),
            ("11 certs", &eleven),
            (">64KiB", &huge),
            ("private key", &with_key),
        ] {
            let err = v.parse_chain(input).unwrap_err();
            assert_eq!(err.field(), "certificate_chain");
            let c = v.verify(&bundle, input, now(), &pki.profile);
            assert_eq!(
                kinds(&c),
                vec![CertProblemKind::Malformed],
                "{name}: {:?}",
                c.problems
            );
            assert!(
                c.problems[0].message.contains("certificate_chain"),
                "{name}"
            );
        }
        assert!(matches!(
            v.parse_chain(&eleven),
            Err(InputError::TooManyCertificates { count: 11, max: 10 })
        ));
        assert!(matches!(
            v.parse_chain(&huge),
            Err(InputError::TooLarge { .. })
        ));
        assert!(matches!(v.parse_chain(""), Err(InputError::Empty)));
        // Ten is within the limit (then fails path building, not input checks).
        assert_eq!(v.parse_chain(&ten).unwrap().len(), 10);
    }

    #[test]
    fn leaf_ca_role_confusion() {
        let pki = TestPki::new().unwrap();
        // The evaluator CA presented as the leaf: CA used as end entity.
        let c = check(&pki, &pki.bundle().unwrap(), &pki.evaluator.cert_pem());
        assert_eq!(
            kinds(&c),
            vec![CertProblemKind::WrongUsage],
            "{:?}",
            c.problems
        );
        // A second-level CA under the evaluator CA violates pathLen 0.
        let sub = pki
            .evaluator
            .evaluator("Sub CA", &pki.profile, true)
            .unwrap();
        let leaf = sub
            .issue_leaf(&LeafSpec::new(&pki.profile, sample_claims()))
            .unwrap();
        let mut bundle = pki.bundle().unwrap();
        bundle
            .add_crl(&sub.crl(&CrlSpec::empty(1)).unwrap())
            .unwrap();
        let chain = format!(
            "{}{}{}",
            leaf.cert_pem,
            sub.cert_pem(),
            pki.evaluator.cert_pem()
        );
        let c = check(&pki, &bundle, &chain);
        assert!(!c.is_valid());
        assert!(
            matches!(
                kinds(&c)[0],
                CertProblemKind::WrongUsage | CertProblemKind::Untrusted
            ),
            "{:?}",
            c.problems
        );
        let _ = TestCa::root("x").unwrap();
    }
}
