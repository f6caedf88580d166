//! The TLS material warden serves with and the client trust it enforces:
//! the server certificate and key, the client CA bundle, the client CA's
//! CRLs and a deny-list of SPIFFE ids. All of it comes from files and is
//! reloaded while serving (SIGHUP, `warden trust reload`, or a change the
//! periodic check notices), so a stolen client key is cut off and a
//! short-lived server certificate rotated without a restart:
//!
//! - a new connection is accepted with the material in force at once;
//! - an open connection's client certificate is checked again, against the
//!   material in force, on its next call. Each connection remembers the
//!   material version it was last checked against, so while nothing changes
//!   a call costs one comparison.
//!
//! A reload that fails (a file missing, a CRL that does not parse) keeps the
//! material in force and says why; only a complete, consistent set of files
//! ever takes effect. This module never decides what a role may do: that is
//! [`auth`](crate::auth).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::ClientCertVerifier;
use sha2::{Digest as _, Sha256};
use x509_parser::extensions::GeneralName;

use crate::config::TlsConfig;

/// Longest deny-list file accepted.
const MAX_DENY_LIST_BYTES: u64 = 4 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{what} {path}: {message}")]
    Invalid {
        what: &'static str,
        path: PathBuf,
        message: String,
    },
}

impl TlsError {
    fn invalid(what: &'static str, path: &Path, message: impl ToString) -> Self {
        TlsError::Invalid {
            what,
            path: path.to_owned(),
            message: message.to_string(),
        }
    }
}

/// Why a client is refused after its certificate chained to the client CA.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerRefused {
    #[error("client certificate is no longer accepted: {0}")]
    Certificate(String),
    #[error("client identity {0} is on the deny-list")]
    Denied(String),
}

/// One consistent set of TLS files, parsed.
pub struct TlsMaterial {
    version: u64,
    /// SHA-256 over every input file's name and bytes: what a reload
    /// compares to tell whether anything changed.
    fingerprint: [u8; 32],
    acceptor: tokio_rustls::TlsAcceptor,
    verifier: Arc<dyn ClientCertVerifier>,
    deny: HashSet<String>,
    client_crls: usize,
}

impl TlsMaterial {
    /// The acceptor for new connections.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        self.acceptor.clone()
    }

    pub fn version(&self) -> u64 {
        self.version
    }
}

/// What a reload did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TlsSummary {
    /// Increases by one with every change that took effect.
    pub version: u64,
    /// Whether this reload found changed files and put them in force.
    pub changed: bool,
    pub client_crls: usize,
    pub denied_identities: usize,
}

/// The TLS material in force, replaceable while serving.
pub struct TlsState {
    config: TlsConfig,
    current: RwLock<Arc<TlsMaterial>>,
    /// Serialises reloads, so two never build from half-written files at
    /// once and versions stay consecutive.
    reload: Mutex<()>,
}

/// The client side of an established connection, as the handshake left it.
pub struct Peer {
    pub remote: SocketAddr,
    /// Leaf first, as the client sent them.
    certs: Vec<CertificateDer<'static>>,
    /// The leaf's URI SANs (a valid caller has exactly one SPIFFE id).
    pub uri_sans: Vec<String>,
    /// The leaf's notAfter, Unix seconds.
    not_after: u64,
    /// The material version this certificate was last found good against.
    checked: AtomicU64,
}

impl Peer {
    /// The identity a per-principal allowance is counted under: the one URI
    /// SAN, or `None` for a certificate without exactly one.
    pub fn identity(&self) -> Option<&str> {
        match self.uri_sans.as_slice() {
            [one] => Some(one),
            _ => None,
        }
    }
}

impl TlsState {
    /// Loads every file; an error names the file and what is wrong with it.
    pub fn load(config: &TlsConfig) -> Result<Self, TlsError> {
        let inputs = Inputs::read(config)?;
        let material = build(config, &inputs, 1)?;
        Ok(Self {
            config: config.clone(),
            current: RwLock::new(Arc::new(material)),
            reload: Mutex::new(()),
        })
    }

    /// The material in force.
    pub fn current(&self) -> Arc<TlsMaterial> {
        // A poisoned lock only means a reload panicked mid-swap; the Arc
        // inside is still a complete set.
        match self.current.read() {
            Ok(m) => m.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// What is in force now.
    pub fn current_summary(&self) -> TlsSummary {
        summary(&self.current(), false)
    }

    /// Reads the files again and, if any changed, puts them in force. On
    /// error nothing changes.
    pub fn reload(&self) -> Result<TlsSummary, TlsError> {
        let _one_at_a_time = self.reload.lock().unwrap_or_else(|p| p.into_inner());
        let old = self.current();
        let inputs = Inputs::read(&self.config)?;
        if inputs.fingerprint == old.fingerprint {
            return Ok(summary(&old, false));
        }
        let material = Arc::new(build(&self.config, &inputs, old.version + 1)?);
        match self.current.write() {
            Ok(mut m) => *m = material.clone(),
            Err(p) => *p.into_inner() = material.clone(),
        }
        tracing::info!(
            version = material.version,
            client_crls = material.client_crls,
            denied_identities = material.deny.len(),
            "TLS material reloaded"
        );
        Ok(summary(&material, true))
    }

    /// Reads what the handshake established about a client.
    pub fn peer(
        &self,
        remote: SocketAddr,
        certs: &[CertificateDer<'_>],
        accepted_at_version: u64,
    ) -> Peer {
        let certs: Vec<CertificateDer<'static>> =
            certs.iter().map(|c| c.clone().into_owned()).collect();
        let (uri_sans, not_after) = certs
            .first()
            .and_then(|leaf| leaf_facts(leaf.as_ref()))
            .unwrap_or_default();
        Peer {
            remote,
            certs,
            uri_sans,
            not_after,
            checked: AtomicU64::new(accepted_at_version),
        }
    }

    /// Whether `peer` is still accepted by the material in force at `now`:
    /// its chain verified again (client CA, CRLs and their nextUpdate,
    /// validity) when the material changed since its last check, its
    /// identity against the deny-list, and its notAfter on every call.
    pub fn check(&self, peer: &Peer, now: UnixTime) -> Result<(), PeerRefused> {
        let material = self.current();
        if peer.checked.load(Ordering::Acquire) == material.version {
            return if now.as_secs() < peer.not_after {
                Ok(())
            } else {
                Err(PeerRefused::Certificate("it has expired".into()))
            };
        }
        let (leaf, intermediates) = peer
            .certs
            .split_first()
            .ok_or_else(|| PeerRefused::Certificate("none was presented".into()))?;
        material
            .verifier
            .verify_client_cert(leaf, intermediates, now)
            .map_err(|e| PeerRefused::Certificate(e.to_string()))?;
        material.refuses(peer)?;
        peer.checked.store(material.version, Ordering::Release);
        Ok(())
    }
}

impl TlsMaterial {
    /// The deny-list check alone (the handshake has just verified the chain
    /// against this very material).
    pub fn refuses(&self, peer: &Peer) -> Result<(), PeerRefused> {
        match peer.uri_sans.iter().find(|id| self.deny.contains(*id)) {
            Some(id) => Err(PeerRefused::Denied(id.clone())),
            None => Ok(()),
        }
    }
}

fn summary(m: &TlsMaterial, changed: bool) -> TlsSummary {
    TlsSummary {
        version: m.version,
        changed,
        client_crls: m.client_crls,
        denied_identities: m.deny.len(),
    }
}

/// The URI SANs and notAfter of a leaf certificate.
fn leaf_facts(der: &[u8]) -> Option<(Vec<String>, u64)> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let uris = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::URI(u) => Some((*u).to_string()),
                _ => None,
            })
            .collect(),
        Ok(None) => Vec::new(),
        Err(_) => return None,
    };
    let not_after = u64::try_from(cert.validity().not_after.timestamp()).unwrap_or(0);
    Some((uris, not_after))
}

/// Every input file's bytes, read once per reload.
struct Inputs {
    cert: Vec<u8>,
    key: Vec<u8>,
    client_ca: Vec<u8>,
    crls: Vec<(PathBuf, Vec<u8>)>,
    deny: Option<Vec<u8>>,
    fingerprint: [u8; 32],
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_owned(),
        source,
    })
}

impl Inputs {
    fn read(config: &TlsConfig) -> Result<Self, TlsError> {
        let cert = read("server certificate", &config.cert)?;
        let key = read("server key", &config.key)?;
        let client_ca = read("client CA", &config.client_ca)?;
        let mut crls = Vec::new();
        if let Some(dir) = &config.client_crls {
            let files = crate::pki::verify::list_files(dir, &["pem", "der", "crl"])
                .map_err(|e| TlsError::invalid("client CRL directory", dir, e))?;
            for path in files {
                let bytes = read("client CRL", &path)?;
                crls.push((path, bytes));
            }
        }
        let deny = match &config.deny_list {
            Some(path) => {
                let len = std::fs::metadata(path)
                    .map_err(|source| TlsError::Read {
                        what: "deny-list",
                        path: path.clone(),
                        source,
                    })?
                    .len();
                if len > MAX_DENY_LIST_BYTES {
                    return Err(TlsError::invalid("deny-list", path, "larger than 4 MiB"));
                }
                Some(read("deny-list", path)?)
            }
            None => None,
        };
        let mut h = Sha256::new();
        let mut add = |name: &[u8], bytes: &[u8]| {
            for part in [name, bytes] {
                h.update((part.len() as u64).to_be_bytes());
                h.update(part);
            }
        };
        add(b"cert", &cert);
        add(b"key", &key);
        add(b"client_ca", &client_ca);
        for (path, bytes) in &crls {
            add(path.as_os_str().as_encoded_bytes(), bytes);
        }
        if let Some(d) = &deny {
            add(b"deny", d);
        }
        let fingerprint = h.finalize().into();
        Ok(Self {
            cert,
            key,
            client_ca,
            crls,
            deny,
            fingerprint,
        })
    }
}

fn pem_certs(
    what: &'static str,
    path: &Path,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = rustls_pemfile::certs(&mut &pem[..])
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::invalid(what, path, e))?;
    if certs.is_empty() {
        return Err(TlsError::invalid(what, path, "no PEM certificate in it"));
    }
    Ok(certs)
}

/// Parses one set of inputs into material of `version`.
fn build(config: &TlsConfig, inputs: &Inputs, version: u64) -> Result<TlsMaterial, TlsError> {
    let chain = pem_certs("server certificate", &config.cert, &inputs.cert)?;
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut &inputs.key[..])
        .map_err(|e| TlsError::invalid("server key", &config.key, e))?
        .ok_or_else(|| TlsError::invalid("server key", &config.key, "no PEM private key in it"))?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in pem_certs("client CA", &config.client_ca, &inputs.client_ca)? {
        roots
            .add(ca)
            .map_err(|e| TlsError::invalid("client CA", &config.client_ca, e))?;
    }
    let verifier = client_verifier(config, inputs, roots)?;
    let mut tls = rustls::ServerConfig::builder()
        .with_client_cert_verifier(verifier.clone())
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::invalid("server certificate and key", &config.cert, e))?;
    tls.alpn_protocols = vec![b"h2".to_vec()];
    let deny = match (&config.deny_list, &inputs.deny) {
        (Some(path), Some(bytes)) => parse_deny_list(path, bytes)?,
        _ => HashSet::new(),
    };
    Ok(TlsMaterial {
        version,
        fingerprint: inputs.fingerprint,
        acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(tls)),
        verifier,
        deny,
        client_crls: inputs.crls.len(),
    })
}

/// The client CA as webpki sees it, with the client CRLs when configured:
/// then every client certificate's status must be known from them, and a
/// CRL past its nextUpdate counts as unknown (fail closed).
fn client_verifier(
    config: &TlsConfig,
    inputs: &Inputs,
    roots: rustls::RootCertStore,
) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let mut builder = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots));
    if let Some(dir) = &config.client_crls {
        let mut crls = Vec::new();
        for (path, bytes) in &inputs.crls {
            let der = crate::pki::verify::crl_der(bytes)
                .map_err(|e| TlsError::invalid("client CRL", path, e))?;
            // Checked one by one, so an error names its file.
            webpki::OwnedCertRevocationList::from_der(&der).map_err(|e| {
                TlsError::invalid(
                    "client CRL",
                    path,
                    format!("not a usable X.509 v2 CRL: {e}"),
                )
            })?;
            crls.push(CertificateRevocationListDer::from(der));
        }
        if crls.is_empty() {
            return Err(TlsError::invalid(
                "client CRL directory",
                dir,
                "holds no CRL (*.pem, *.der, *.crl); with tls.client_crls set, every client CA needs one",
            ));
        }
        builder = builder.with_crls(crls).enforce_revocation_expiration();
    }
    builder
        .build()
        .map_err(|e| TlsError::invalid("client CA and CRLs", &config.client_ca, e))
}

/// One SPIFFE id per line; blank lines and `#` comments ignored.
fn parse_deny_list(path: &Path, bytes: &[u8]) -> Result<HashSet<String>, TlsError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| TlsError::invalid("deny-list", path, "is not UTF-8"))?;
    let mut out = HashSet::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        if !line.starts_with("spiffe://") || line.chars().any(char::is_whitespace) {
            return Err(TlsError::invalid(
                "deny-list",
                path,
                format!("line {}: {line:?} is not a SPIFFE id", n + 1),
            ));
        }
        out.insert(line.to_string());
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn deny_lists_take_one_spiffe_id_a_line_with_comments() {
        let p = Path::new("deny.txt");
        let set = parse_deny_list(
            p,
            b"# stolen 2026-12-01\nspiffe://td/scheduler/a\n\n  spiffe://td/admin/b  # laptop\n",
        )
        .unwrap();
        assert_eq!(set.len(), 2);
        assert!(set.contains("spiffe://td/admin/b"));
        let e = parse_deny_list(p, b"spiffe://td/a\nscheduler/b\n").unwrap_err();
        assert!(e.to_string().contains("line 2"), "{e}");
    }
}
