//! The trust bundle: regulator roots and the CRLs in force.
//!
//! A CRL replaces the held CRL of its issuer only if it is newer (CRL number,
//! then thisUpdate), so an old CRL cannot be replayed to un-revoke a
//! certificate; persisted CRLs are written atomically before they take effect.
//! CRL signatures are checked by webpki when a CRL is used, in the
//! [`Verifier`](super::Verifier).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::pem::{PemObject, SectionKind};
use rustls_pki_types::{CertificateDer, TrustAnchor, UnixTime};
use sha2::{Digest, Sha256};
use webpki::{CertRevocationList, OwnedCertRevocationList};
use x509_parser::num_bigint::BigUint;

use super::{fmt_time, PathFacts};
use crate::pki::fsutil::{self, MODE_PUBLIC};
use crate::pki::PkiError;

/// Limit on one CRL's size.
pub const MAX_CRL_BYTES: usize = 16 * 1024 * 1024;

/// A CRL held in the bundle.
#[derive(Clone, Debug)]
pub(super) struct HeldCrl {
    der: Vec<u8>,
    info: CrlInfo,
    pub(super) issuer_raw: Vec<u8>,
    number: Option<BigUint>,
    pub(super) webpki: Arc<CertRevocationList<'static>>,
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
    pub(super) anchors: Vec<TrustAnchor<'static>>,
    pub(super) crls: Vec<HeldCrl>,
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::{CertProblemKind, CertificateCheck, Verifier};
    use super::*;
    use crate::pki::dev::{CrlSpec, TestPki};
    use time::{Duration, OffsetDateTime};

    fn check(pki: &TestPki, bundle: &TrustBundle, chain: &str) -> CertificateCheck {
        Verifier::default().verify(bundle, chain, UnixTime::now(), &pki.profile)
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
}
