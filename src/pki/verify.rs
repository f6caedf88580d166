//! Trust bundle (regulator roots + CRLs) and model-evaluation certificate
//! verification.
//!
//! All X.509 path validation — signatures, validity periods, basic
//! constraints, path length, EKU and CRL revocation/expiry — is done by
//! rustls-webpki with the ring signature algorithms. x509-parser is used for
//! metadata (names, CRL numbers, messages) and, only after webpki accepted the
//! chain, to read the claim extensions.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::pem::{PemObject, SectionKind};
use rustls_pki_types::{CertificateDer, SignatureVerificationAlgorithm, TrustAnchor, UnixTime};
use sha2::{Digest, Sha256};
use webpki::{
    CertRevocationList, EndEntityCert, ExpirationPolicy, KeyUsage, OwnedCertRevocationList,
    RevocationCheckDepth, RevocationOptionsBuilder, UnknownStatusPolicy,
};
use x509_parser::asn1_rs::FromDer;
use x509_parser::certificate::X509Certificate;
use x509_parser::num_bigint::BigUint;

use crate::pki::fsutil::{self, MODE_PUBLIC};
use crate::pki::profile::{oid_to_string, ClaimsBuilder, EvaluationClaims, Field, Profile};
use crate::pki::PkiError;

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
/// Limit on one CRL's size.
pub const MAX_CRL_BYTES: usize = 16 * 1024 * 1024;

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

// ---------------------------------------------------------------------------
// Trust bundle

/// A CRL held in the bundle.
#[derive(Clone, Debug)]
struct HeldCrl {
    der: Vec<u8>,
    info: CrlInfo,
    issuer_raw: Vec<u8>,
    number: Option<BigUint>,
    webpki: Arc<CertRevocationList<'static>>,
    /// File it was loaded from / persisted to, if any.
    source: Option<PathBuf>,
}

/// Public description of a held CRL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrlInfo {
    /// Issuer name, RFC 4514-style.
    pub issuer: String,
    /// Hex SHA-256 of the issuer name DER, truncated to 16 bytes; also the
    /// persisted file stem.
    pub issuer_hash: String,
    /// CRL number, decimal, if present.
    pub crl_number: Option<String>,
    pub this_update: i64,
    pub next_update: i64,
    pub revoked_count: usize,
    /// SHA-256 of the CRL DER, hex.
    pub sha256_hex: String,
}

/// Outcome of adding a CRL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrlUpdate {
    pub info: CrlInfo,
    /// The CRL it replaced, if any.
    pub replaced: Option<CrlInfo>,
    /// The identical CRL was already held; nothing changed.
    pub unchanged: bool,
    /// Bundle version after the update.
    pub version: u64,
}

/// Regulator roots and the CRLs in force. `version` increases on every change.
#[derive(Clone, Debug)]
pub struct TrustBundle {
    roots: Vec<CertificateDer<'static>>,
    anchors: Vec<TrustAnchor<'static>>,
    crls: Vec<HeldCrl>,
    version: u64,
}

impl TrustBundle {
    /// A bundle trusting `roots` (DER), with no CRLs.
    pub fn new(roots: Vec<CertificateDer<'static>>) -> Result<Self, PkiError> {
        if roots.is_empty() {
            return Err(PkiError::InvalidCertificate {
                context: "regulator roots".into(),
                reason: "no root certificates".into(),
            });
        }
        let mut anchors = Vec::with_capacity(roots.len());
        for (i, r) in roots.iter().enumerate() {
            let a =
                webpki::anchor_from_trusted_cert(r).map_err(|e| PkiError::InvalidCertificate {
                    context: format!("regulator root #{}", i + 1),
                    reason: format!("not usable as a trust anchor: {e}"),
                })?;
            anchors.push(a.to_owned());
        }
        Ok(TrustBundle {
            roots,
            anchors,
            crls: Vec::new(),
            version: 1,
        })
    }

    /// A bundle trusting every CERTIFICATE in `pem`.
    pub fn from_roots_pem(pem: &str) -> Result<Self, PkiError> {
        let roots = CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| PkiError::InvalidCertificate {
                context: "regulator roots".into(),
                reason: format!("bad PEM: {e}"),
            })?;
        Self::new(roots)
    }

    /// Load a trust directory: `roots/*.pem` (regulator roots; each file may
    /// hold several) and `crls/*.{pem,der,crl}`. Files whose name starts with
    /// `.` are ignored (temp files). If several CRLs of one issuer are
    /// present the newest wins; two different CRLs claiming the same CRL
    /// number are an error.
    pub fn load_dir(dir: &Path) -> Result<Self, PkiError> {
        let roots_dir = dir.join("roots");
        let mut roots = Vec::new();
        for path in list_files(&roots_dir, &["pem", "crt"])? {
            let text = std::fs::read(&path).map_err(|e| PkiError::io(&path, e))?;
            let certs = CertificateDer::pem_slice_iter(&text)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| PkiError::TrustDir {
                    path: path.clone(),
                    reason: format!("bad PEM: {e}"),
                })?;
            if certs.is_empty() {
                return Err(PkiError::TrustDir {
                    path,
                    reason: "no CERTIFICATE in root file".into(),
                });
            }
            roots.extend(certs);
        }
        if roots.is_empty() {
            return Err(PkiError::TrustDir {
                path: roots_dir,
                reason: "no regulator root certificates (roots/*.pem)".into(),
            });
        }
        let mut bundle = Self::new(roots).map_err(|e| PkiError::TrustDir {
            path: dir.to_path_buf(),
            reason: e.to_string(),
        })?;
        let crls_dir = dir.join("crls");
        if crls_dir.exists() {
            for path in list_files(&crls_dir, &["pem", "der", "crl"])? {
                let bytes = std::fs::read(&path).map_err(|e| PkiError::io(&path, e))?;
                match bundle.prepare_crl(&bytes) {
                    Ok(mut p) => {
                        p.held.source = Some(path);
                        bundle.commit(p);
                    }
                    // An older CRL of an issuer we already hold a newer one for.
                    Err(PkiError::CrlRollback { .. }) => {}
                    Err(e) => {
                        return Err(PkiError::TrustDir {
                            path,
                            reason: e.to_string(),
                        })
                    }
                }
            }
        }
        bundle.version = 1;
        Ok(bundle)
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    /// Makes this bundle's version follow `previous`, so that a bundle
    /// re-read from disk to replace a live one never goes back in version
    /// (verification caches key on it).
    pub fn set_version_after(&mut self, previous: u64) {
        self.version = previous.saturating_add(1);
    }

    /// Whether a path this bundle accepted (its [`PathFacts`]) is still
    /// acceptable at `now`: every certificate inside its validity window
    /// (webpki's rule: notBefore <= now <= notAfter), and for every
    /// certificate whose issuer has a CRL here, that CRL current (now <
    /// nextUpdate, as webpki enforces) and not listing its serial. Only the
    /// bundle that verified the path may answer; a changed bundle means
    /// verifying again. False means "verify again", not "rejected".
    pub fn still_accepts(&self, facts: &PathFacts, now: UnixTime) -> bool {
        let Ok(now) = i64::try_from(now.as_secs()) else {
            return false;
        };
        facts.certs.iter().all(|c| {
            c.not_before <= now
                && now <= c.not_after
                && self
                    .crls
                    .iter()
                    .filter(|crl| crl.issuer_raw == c.issuer_raw)
                    .all(|crl| {
                        now < crl.info.next_update
                            && matches!(crl.webpki.find_serial(&c.serial), Ok(None))
                    })
        })
    }

    pub fn roots(&self) -> &[CertificateDer<'static>] {
        &self.roots
    }

    pub fn crls(&self) -> Vec<CrlInfo> {
        self.crls.iter().map(|c| c.info.clone()).collect()
    }

    /// File name a CRL of this issuer is persisted under in `crls/`.
    pub fn crl_file_name(issuer_name_der: &[u8]) -> String {
        format!("{}.crl", issuer_hash(issuer_name_der))
    }

    /// Parse and check a CRL (DER or PEM) without changing the bundle: the
    /// same checks as [`TrustBundle::add_crl`].
    pub fn check_crl(&self, bytes: &[u8]) -> Result<CrlInfo, PkiError> {
        self.prepare_crl(bytes).map(|p| p.held.info)
    }

    /// Add a CRL (DER or PEM). It replaces the held CRL of the same issuer
    /// unless it is older (lower CRL number, or earlier thisUpdate), which is
    /// rejected as a rollback. Takes effect for every later verification.
    ///
    /// The CRL's signature is checked by webpki when it is used: a CRL not
    /// signed by the issuing CA makes verification of that CA's certificates
    /// fail closed (`CrlInvalid`). Callers must therefore only accept CRLs
    /// from authenticated, authorised parties.
    pub fn add_crl(&mut self, bytes: &[u8]) -> Result<CrlUpdate, PkiError> {
        let p = self.prepare_crl(bytes)?;
        Ok(self.commit(p))
    }

    /// [`TrustBundle::add_crl`], persisting the CRL (DER) atomically as
    /// `trust_dir/crls/<issuer hash>.crl` before it takes effect in memory.
    /// A file previously loaded for the same issuer under another name is
    /// removed.
    pub fn add_crl_and_persist(
        &mut self,
        trust_dir: &Path,
        bytes: &[u8],
    ) -> Result<CrlUpdate, PkiError> {
        let mut p = self.prepare_crl(bytes)?;
        if p.unchanged {
            return Ok(self.commit(p));
        }
        let crls_dir = trust_dir.join("crls");
        fsutil::create_dir_all(&crls_dir)?;
        let path = crls_dir.join(Self::crl_file_name(&p.held.issuer_raw));
        fsutil::write_atomic(&path, &p.held.der, MODE_PUBLIC)?;
        if let Some(old) = p.replace.and_then(|i| self.crls[i].source.clone()) {
            if old != path && std::fs::remove_file(&old).is_ok() {
                fsutil::sync_dir(&crls_dir)?;
            }
        }
        p.held.source = Some(path);
        Ok(self.commit(p))
    }

    fn prepare_crl(&self, bytes: &[u8]) -> Result<PreparedCrl, PkiError> {
        let held = parse_crl(bytes)?;
        let replace = self
            .crls
            .iter()
            .position(|c| c.issuer_raw == held.issuer_raw);
        let mut unchanged = false;
        if let Some(i) = replace {
            let old = &self.crls[i];
            if old.der == held.der {
                unchanged = true;
            } else {
                let issuer = held.info.issuer.clone();
                if let (Some(o), Some(n)) = (&old.number, &held.number) {
                    if n < o {
                        return Err(PkiError::CrlRollback {
                            issuer,
                            what: "CRL number",
                            held: o.to_string(),
                            offered: n.to_string(),
                        });
                    }
                    if n == o {
                        return Err(PkiError::CrlConflict {
                            issuer,
                            reason: format!(
                                "a different CRL with the same CRL number {n} is already held"
                            ),
                        });
                    }
                }
                if held.info.this_update < old.info.this_update {
                    return Err(PkiError::CrlRollback {
                        issuer,
                        what: "thisUpdate",
                        held: fmt_time(old.info.this_update),
                        offered: fmt_time(held.info.this_update),
                    });
                }
                if held.number.is_none()
                    && old.number.is_none()
                    && held.info.this_update == old.info.this_update
                {
                    return Err(PkiError::CrlConflict {
                        issuer,
                        reason: "a different CRL with the same thisUpdate is already held".into(),
                    });
                }
            }
        }
        Ok(PreparedCrl {
            held,
            replace,
            unchanged,
        })
    }

    fn commit(&mut self, p: PreparedCrl) -> CrlUpdate {
        let info = p.held.info.clone();
        if p.unchanged {
            return CrlUpdate {
                info,
                replaced: None,
                unchanged: true,
                version: self.version,
            };
        }
        let replaced = match p.replace {
            Some(i) => Some(std::mem::replace(&mut self.crls[i], p.held).info),
            None => {
                self.crls.push(p.held);
                None
            }
        };
        self.version += 1;
        CrlUpdate {
            info,
            replaced,
            unchanged: false,
            version: self.version,
        }
    }
}

struct PreparedCrl {
    held: HeldCrl,
    replace: Option<usize>,
    unchanged: bool,
}

fn issuer_hash(name_der: &[u8]) -> String {
    hex::encode(&Sha256::digest(name_der)[..16])
}

fn fmt_time(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("@{unix}"))
}

/// The files in `dir` with one of these extensions, sorted, hidden ones
/// (`.name`) left out.
pub fn list_files(dir: &Path, exts: &[&str]) -> Result<Vec<PathBuf>, PkiError> {
    let rd = std::fs::read_dir(dir).map_err(|e| PkiError::io(dir, e))?;
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| PkiError::io(dir, e))?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || !path.is_file() {
            continue;
        }
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        if exts.contains(&ext) {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

/// A CRL file's bytes, DER or one PEM "X509 CRL" section, as DER: the
/// one place CRL input is unwrapped and size-checked.
pub fn crl_der(bytes: &[u8]) -> Result<Vec<u8>, PkiError> {
    if bytes.len() > MAX_CRL_BYTES {
        return Err(PkiError::InvalidCrl(format!(
            "{} bytes exceeds the {MAX_CRL_BYTES}-byte limit",
            bytes.len()
        )));
    }
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let der: Vec<u8> = if bytes[start..].starts_with(b"-----BEGIN") {
        let sections = <(SectionKind, Vec<u8>)>::pem_slice_iter(bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| PkiError::InvalidCrl(format!("bad PEM: {e}")))?;
        match sections.as_slice() {
            [(SectionKind::Crl, der)] => der.clone(),
            [] => return Err(PkiError::InvalidCrl("no PEM \"X509 CRL\" section".into())),
            [(kind, _)] => {
                return Err(PkiError::InvalidCrl(format!(
                    "PEM section is {kind:?}, expected \"X509 CRL\""
                )))
            }
            _ => {
                return Err(PkiError::InvalidCrl(
                    "more than one PEM section; send one CRL at a time".into(),
                ))
            }
        }
    } else {
        bytes.to_vec()
    };
    if der.is_empty() {
        return Err(PkiError::InvalidCrl("empty".into()));
    }
    Ok(der)
}

/// DER or PEM → a CRL that both webpki and x509-parser accept.
fn parse_crl(bytes: &[u8]) -> Result<HeldCrl, PkiError> {
    let der = crl_der(bytes)?;
    let owned = OwnedCertRevocationList::from_der(&der)
        .map_err(|e| PkiError::InvalidCrl(format!("not a usable X.509 v2 CRL: {e}")))?;
    let (rest, x) = x509_parser::parse_x509_crl(&der)
        .map_err(|e| PkiError::InvalidCrl(format!("not a valid X.509 CRL: {e}")))?;
    if !rest.is_empty() {
        return Err(PkiError::InvalidCrl("trailing data after the CRL".into()));
    }
    let next_update = x
        .next_update()
        .ok_or_else(|| PkiError::InvalidCrl("no nextUpdate".into()))?
        .timestamp();
    let issuer_raw = x.issuer().as_raw().to_vec();
    let number = x.crl_number().cloned();
    let info = CrlInfo {
        issuer: x.issuer().to_string(),
        issuer_hash: issuer_hash(&issuer_raw),
        crl_number: number.as_ref().map(ToString::to_string),
        this_update: x.last_update().timestamp(),
        next_update,
        revoked_count: x.iter_revoked_certificates().count(),
        sha256_hex: hex::encode(Sha256::digest(&der)),
    };
    Ok(HeldCrl {
        webpki: Arc::new(CertRevocationList::from(owned)),
        der,
        info,
        issuer_raw,
        number,
        source: None,
    })
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
        let status_policy = if self.require_crl_for_every_ca {
            UnknownStatusPolicy::Deny
        } else {
            UnknownStatusPolicy::Allow
        };
        // The builder is Copy: every `with_*` result is assigned.
        let revocation = match RevocationOptionsBuilder::new(&crl_refs) {
            Ok(builder) => {
                let builder = builder.with_depth(RevocationCheckDepth::Chain);
                let builder = builder.with_status_policy(status_policy);
                let builder = builder.with_expiration_policy(ExpirationPolicy::Enforce);
                Some(builder.build())
            }
            // No CRLs at all: webpki cannot be given revocation options.
            // Path-validate without them; if the policy requires CRLs the
            // result is CrlUnavailable below.
            Err(_) => None,
        };

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
            Ok(path) => {
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

/// The claims of a model-evaluation certificate (DER) under `profile`,
/// read without checking the chain: for showing what a certificate that is
/// already bound by other means (its fingerprint in the ledger) says.
pub fn certificate_claims(der: &[u8], profile: &Profile) -> Result<EvaluationClaims, String> {
    let (_, leaf) =
        x509_parser::parse_x509_certificate(der).map_err(|e| format!("certificate: {e}"))?;
    read_claims(&leaf, profile).map_err(|problems| {
        problems
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    })
}

/// Read every claim extension; report every missing or malformed field.
fn read_claims(
    leaf: &X509Certificate<'_>,
    profile: &Profile,
) -> Result<EvaluationClaims, Vec<CertProblem>> {
    let mut builder = ClaimsBuilder::default();
    let mut problems = Vec::new();
    for field in Field::ALL {
        let arcs = profile.field_oid(field);
        let oid_s = oid_to_string(&arcs);
        let oid = match x509_parser::asn1_rs::Oid::from(&arcs) {
            Ok(o) => o,
            Err(_) => {
                problems.push(CertProblem::new(
                    CertProblemKind::ExtensionMalformed(field),
                    format!("profile OID {oid_s} cannot be encoded"),
                ));
                continue;
            }
        };
        match leaf.get_extension_unique(&oid) {
            Err(_) => problems.push(CertProblem::new(
                CertProblemKind::ExtensionMalformed(field),
                format!(
                    "extension {} ({oid_s}) appears more than once",
                    field.name()
                ),
            )),
            Ok(None) => problems.push(CertProblem::new(
                CertProblemKind::ExtensionMissing(field),
                format!("extension {} ({oid_s}) is missing", field.name()),
            )),
            Ok(Some(ext)) => match <&str>::from_der(ext.value) {
                Ok(([], value)) => {
                    if let Err(reason) = builder.set(field, value) {
                        problems.push(CertProblem::new(
                            CertProblemKind::ExtensionMalformed(field),
                            format!("extension {} ({oid_s}): {reason}", field.name()),
                        ));
                    }
                }
                Ok(_) => problems.push(CertProblem::new(
                    CertProblemKind::ExtensionMalformed(field),
                    format!(
                        "extension {} ({oid_s}): trailing data after the UTF8String",
                        field.name()
                    ),
                )),
                Err(_) => problems.push(CertProblem::new(
                    CertProblemKind::ExtensionMalformed(field),
                    format!(
                        "extension {} ({oid_s}) is not a DER UTF8String",
                        field.name()
                    ),
                )),
            },
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    builder.finish().map_err(|missing| {
        missing
            .into_iter()
            .map(|f| CertProblem::new(CertProblemKind::ExtensionMissing(f), format!("{f} missing")))
            .collect()
    })
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
    fn each_field_missing_and_malformed() {
        let pki = TestPki::new().unwrap();
        let bundle = pki.bundle().unwrap();
        let malformed: Vec<(Field, &str)> = vec![
            (Field::ModelDigest, "sha256:ABCDEF"),
            (Field::ModelName, ""),
            (Field::ModelVersion, " 1.0"),
            (Field::Developer, "Acme\nEvil"),
            (Field::SuiteId, ""),
            (Field::SuiteVersion, ""),
            (Field::Result, "PASS"),
            (Field::ReportSha256, "abc"),
            (Field::RiskTier, "256"),
            (Field::TrainingComputeFlop, "inf"),
            (Field::ScopeRegions, "eu,,us"),
            (Field::ScopeMaxAccelerators, "-1"),
        ];
        for (field, bad) in malformed {
            let leaf = pki
                .evaluator
                .issue_leaf(&LeafSpec::new(&pki.profile, sample_claims()).omit(field))
                .unwrap();
            let c = check(&pki, &bundle, &pki.chain(&leaf));
            assert_eq!(
                kinds(&c),
                vec![CertProblemKind::ExtensionMissing(field)],
                "{field}"
            );
            assert!(c.verified.is_none());

            let leaf = pki
                .evaluator
                .issue_leaf(&LeafSpec::new(&pki.profile, sample_claims()).text(field, bad))
                .unwrap();
            let c = check(&pki, &bundle, &pki.chain(&leaf));
            assert_eq!(
                kinds(&c),
                vec![CertProblemKind::ExtensionMalformed(field)],
                "{field} {bad:?}: {:?}",
                c.problems
            );
        }
        // More malformed values for the key fields.
        for (field, bad) in [
            (Field::ModelDigest, "sha512:0123"),
            (Field::ModelDigest, &*format!("sha256:{}", "g".repeat(64))),
            (Field::ScopeRegions, ""),
            (Field::ScopeRegions, "*,eu"),
            (Field::ScopeRegions, "eu,eu"),
            (Field::ScopeRegions, "eu west"),
            (Field::ScopeMaxAccelerators, "4294967296"),
            (Field::ScopeMaxAccelerators, "007"),
            (Field::ScopeMaxAccelerators, "+5"),
            (Field::RiskTier, "-1"),
            (Field::RiskTier, "1.5"),
            (Field::Result, "passed"),
            (Field::TrainingComputeFlop, "-3e25"),
            (Field::TrainingComputeFlop, "NaN"),
        ] {
            let leaf = pki
                .evaluator
                .issue_leaf(&LeafSpec::new(&pki.profile, sample_claims()).text(field, bad))
                .unwrap();
            let c = check(&pki, &bundle, &pki.chain(&leaf));
            assert_eq!(
                kinds(&c),
                vec![CertProblemKind::ExtensionMalformed(field)],
                "{field} {bad:?}"
            );
        }
        // Not a UTF8String at all: PrintableString, INTEGER, garbage, trailing data.
        for raw in [
            vec![0x13, 0x04, b'p', b'a', b's', b's'],
            vec![0x02, 0x01, 0x05],
            vec![0xff, 0x00, 0x13],
            vec![0x0c, 0x04, b'p', b'a', b's', b's', 0x00],
        ] {
            let leaf = pki
                .evaluator
                .issue_leaf(
                    &LeafSpec::new(&pki.profile, sample_claims()).raw(Field::Result, raw.clone()),
                )
                .unwrap();
            let c = check(&pki, &bundle, &pki.chain(&leaf));
            assert_eq!(
                kinds(&c),
                vec![CertProblemKind::ExtensionMalformed(Field::Result)],
                "{raw:02x?}"
            );
        }
        // Accepted edge values.
        for (field, ok) in [
            (Field::ScopeRegions, "*"),
            (Field::RiskTier, "0"),
            (Field::RiskTier, "255"),
            (Field::ScopeMaxAccelerators, "4294967295"),
            (Field::TrainingComputeFlop, "1000"),
            (Field::TrainingComputeFlop, "0"),
        ] {
            let leaf = pki
                .evaluator
                .issue_leaf(&LeafSpec::new(&pki.profile, sample_claims()).text(field, ok))
                .unwrap();
            let c = check(&pki, &bundle, &pki.chain(&leaf));
            assert!(c.is_valid(), "{field} {ok:?}: {:?}", c.problems);
        }
    }

    #[test]
    fn multiple_problems_all_reported() {
        let pki = TestPki::new().unwrap();
        let leaf = pki
            .evaluator
            .issue_leaf(
                &LeafSpec::new(&pki.profile, sample_claims())
                    .omit(Field::ModelDigest)
                    .omit(Field::ScopeRegions)
                    .text(Field::ScopeMaxAccelerators, "lots")
                    .text(Field::RiskTier, "high")
                    .omit(Field::Result),
            )
            .unwrap();
        let c = check(&pki, &pki.bundle().unwrap(), &pki.chain(&leaf));
        assert_eq!(
            kinds(&c),
            vec![
                CertProblemKind::ExtensionMissing(Field::ModelDigest),
                CertProblemKind::ExtensionMissing(Field::Result),
                CertProblemKind::ExtensionMalformed(Field::RiskTier),
                CertProblemKind::ExtensionMissing(Field::ScopeRegions),
                CertProblemKind::ExtensionMalformed(Field::ScopeMaxAccelerators),
            ]
        );
        for p in &c.problems {
            assert!(p.message.contains(p.kind.field().unwrap().name()), "{p}");
        }
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
    fn crl_add_rejects_garbage_and_rollback() {
        let pki = TestPki::new().unwrap();
        let mut bundle = pki.bundle().unwrap();
        for junk in [
            &b""[..],
            b"garbage",
            b"-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n",
        ] {
            let e = bundle.add_crl(junk).unwrap_err();
            assert!(matches!(e, PkiError::InvalidCrl(_)), "{e}");
        }
        let e = bundle.add_crl(pki.root.cert_pem().as_bytes()).unwrap_err();
        assert!(e.to_string().contains("expected \"X509 CRL\""), "{e}");

        // Newer (number 5) in PEM form accepted.
        let pem5 = pki.evaluator.crl_pem(&CrlSpec::empty(5)).unwrap();
        let u = bundle.add_crl(pem5.as_bytes()).unwrap();
        assert_eq!(u.info.crl_number.as_deref(), Some("5"));
        // Older number rejected, saying so.
        let e = bundle
            .add_crl(&pki.evaluator.crl(&CrlSpec::empty(4)).unwrap())
            .unwrap_err();
        match &e {
            PkiError::CrlRollback {
                what,
                held,
                offered,
                ..
            } => {
                assert_eq!(
                    (*what, held.as_str(), offered.as_str()),
                    ("CRL number", "5", "4")
                )
            }
            other => panic!("{other}"),
        }
        assert!(
            e.to_string()
                .contains("CRL number 4 is older than the held CRL number 5"),
            "{e}"
        );
        // Same number, different content: conflict.
        let e = bundle
            .add_crl(&pki.evaluator.crl(&CrlSpec::empty(5)).unwrap())
            .unwrap_err();
        assert!(matches!(e, PkiError::CrlConflict { .. }), "{e}");
        // Higher number but older thisUpdate: rejected on thisUpdate.
        let t = OffsetDateTime::now_utc();
        let e = bundle
            .add_crl(
                &pki.evaluator
                    .crl(&CrlSpec::empty(6).times(t - Duration::days(3), t + Duration::days(3)))
                    .unwrap(),
            )
            .unwrap_err();
        match e {
            PkiError::CrlRollback { what, .. } => assert_eq!(what, "thisUpdate"),
            other => panic!("{other}"),
        }
        assert_eq!(bundle.crls().len(), 2);
    }

    #[test]
    fn trust_dir_load_persist_and_reload() {
        let pki = TestPki::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let trust = dir.path();
        std::fs::create_dir_all(trust.join("roots")).unwrap();
        std::fs::create_dir_all(trust.join("crls")).unwrap();
        std::fs::write(trust.join("roots/root.pem"), pki.root.cert_pem()).unwrap();
        std::fs::write(
            trust.join("crls/root.der"),
            pki.root.crl(&CrlSpec::empty(1)).unwrap(),
        )
        .unwrap();
        std::fs::write(
            trust.join("crls/eval-old.crl"),
            pki.evaluator.crl(&CrlSpec::empty(1)).unwrap(),
        )
        .unwrap();
        // A newer CRL of the same issuer sorts *before* the older one: newest wins.
        std::fs::write(
            trust.join("crls/a-eval-new.der"),
            pki.evaluator.crl(&CrlSpec::empty(2)).unwrap(),
        )
        .unwrap();
        let mut bundle = TrustBundle::load_dir(trust).unwrap();
        let numbers: Vec<_> = bundle
            .crls()
            .into_iter()
            .map(|c| c.crl_number.unwrap())
            .collect();
        assert_eq!(numbers.len(), 2);
        assert!(numbers.contains(&"2".to_string()), "{numbers:?}");

        let leaf = pki.leaf().unwrap();
        assert!(check(&pki, &bundle, &pki.chain(&leaf)).is_valid());
        let crl = pki
            .evaluator
            .crl(&CrlSpec::empty(3).revoking(&leaf.serial))
            .unwrap();
        let upd = bundle.add_crl_and_persist(trust, &crl).unwrap();
        assert_eq!(
            check(&pki, &bundle, &pki.chain(&leaf)).problems[0].kind,
            CertProblemKind::Revoked
        );
        // The file is named after the issuer hash and the superseded file is gone.
        let name = format!("{}.crl", upd.info.issuer_hash);
        assert_eq!(std::fs::read(trust.join("crls").join(&name)).unwrap(), crl);
        assert!(!trust.join("crls/a-eval-new.der").exists());
        let leftovers: Vec<_> = std::fs::read_dir(trust.join("crls"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        // A reload sees the revocation.
        let reloaded = TrustBundle::load_dir(trust).unwrap();
        assert_eq!(
            check(&pki, &reloaded, &pki.chain(&leaf)).problems[0].kind,
            CertProblemKind::Revoked
        );
        // Rollback through persist is refused and leaves the file alone.
        assert!(bundle
            .add_crl_and_persist(trust, &pki.evaluator.crl(&CrlSpec::empty(2)).unwrap())
            .is_err());
        assert_eq!(std::fs::read(trust.join("crls").join(&name)).unwrap(), crl);

        // Garbage in crls/ or no roots: clear errors.
        std::fs::write(trust.join("crls/junk.pem"), "junk").unwrap();
        let e = TrustBundle::load_dir(trust).unwrap_err();
        assert!(e.to_string().contains("junk.pem"), "{e}");
        let empty = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(empty.path().join("roots")).unwrap();
        assert!(TrustBundle::load_dir(empty.path())
            .unwrap_err()
            .to_string()
            .contains("no regulator root"));
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
