//! Configuration: a TOML file, validated as a whole so that every problem is
//! reported at once, each naming its field. Loading a config binds no socket
//! and opens no store; it only reads and checks.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// A configuration problem, naming the field the way the TOML file spells it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid configuration:\n{}", .0.iter().map(|(f, m)| format!("  {f}: {m}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<(String, String)>),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// gRPC listen address.
    #[serde(default = "defaults::listen")]
    pub listen: SocketAddr,
    /// Address of the Prometheus metrics endpoint (plain HTTP, `GET
    /// /metrics`); off when absent.
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
    /// Directory for the embedded store; created if missing.
    pub data_dir: PathBuf,
    /// How long SIGTERM waits for in-flight calls before closing them.
    #[serde(default = "defaults::shutdown_grace_seconds")]
    pub shutdown_grace_seconds: u64,
    pub tls: TlsConfig,
    pub trust: TrustConfig,
    #[serde(default)]
    pub admission: AdmissionConfig,
    pub licence: LicenceConfig,
    pub ledger: LedgerConfig,
    pub kyc: KycConfig,
    #[serde(default)]
    pub orders: OrdersConfig,
    #[serde(default)]
    pub limits: LimitsConfig,
}

/// Bounds on what callers can make warden hold: connections, handshakes,
/// idle time, streams. Every one has a default that suits a provider's
/// schedulers; raise them with the file-descriptor limit.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Open client connections at most, TLS handshakes in progress included.
    /// Keep it below the process's file-descriptor limit (`LimitNOFILE`).
    #[serde(default = "defaults::max_connections")]
    pub max_connections: usize,
    /// Open connections of one client identity (SPIFFE id) at most; callers
    /// without a valid identity share one allowance.
    #[serde(default = "defaults::max_connections_per_principal")]
    pub max_connections_per_principal: usize,
    /// TLS handshakes in progress at most; further connections are closed
    /// at once until one completes.
    #[serde(default = "defaults::max_handshakes")]
    pub max_handshakes: usize,
    /// How long a client may take to complete the TLS handshake.
    #[serde(default = "defaults::handshake_timeout_seconds")]
    pub handshake_timeout_seconds: u64,
    /// A connection with no call open for this long is closed.
    #[serde(default = "defaults::idle_timeout_seconds")]
    pub idle_timeout_seconds: u64,
    /// HTTP/2 keepalive: a PING after this long without frames from the
    /// client; the connection closes if it is not answered within
    /// `keepalive_timeout_seconds`.
    #[serde(default = "defaults::keepalive_interval_seconds")]
    pub keepalive_interval_seconds: u64,
    #[serde(default = "defaults::keepalive_timeout_seconds")]
    pub keepalive_timeout_seconds: u64,
    /// Concurrent calls (HTTP/2 streams) on one connection at most.
    #[serde(default = "defaults::max_streams_per_connection")]
    pub max_streams_per_connection: u32,
    /// Open `WatchOrders` streams of one client identity at most.
    #[serde(default = "defaults::max_watches_per_principal")]
    pub max_watches_per_principal: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_connections: defaults::max_connections(),
            max_connections_per_principal: defaults::max_connections_per_principal(),
            max_handshakes: defaults::max_handshakes(),
            handshake_timeout_seconds: defaults::handshake_timeout_seconds(),
            idle_timeout_seconds: defaults::idle_timeout_seconds(),
            keepalive_interval_seconds: defaults::keepalive_interval_seconds(),
            keepalive_timeout_seconds: defaults::keepalive_timeout_seconds(),
            max_streams_per_connection: defaults::max_streams_per_connection(),
            max_watches_per_principal: defaults::max_watches_per_principal(),
        }
    }
}

/// Approvals (by distinct operator or authority principals; the issuer
/// counts once) each order action needs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrdersConfig {
    #[serde(default = "defaults::suspend_quorum")]
    pub suspend_quorum: u32,
    #[serde(default = "defaults::terminate_quorum")]
    pub terminate_quorum: u32,
    #[serde(default = "defaults::lift_quorum")]
    pub lift_quorum: u32,
}

impl Default for OrdersConfig {
    fn default() -> Self {
        Self {
            suspend_quorum: defaults::suspend_quorum(),
            terminate_quorum: defaults::terminate_quorum(),
            lift_quorum: defaults::lift_quorum(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Server certificate chain (PEM).
    pub cert: PathBuf,
    /// Server private key (PEM).
    pub key: PathBuf,
    /// The provider's client CA (PEM): every caller presents a certificate
    /// issued by it.
    pub client_ca: PathBuf,
    /// SPIFFE trust domain of client identities: `spiffe://<domain>/<role>/<name>`.
    pub trust_domain: String,
    /// Directory of CRLs (DER or PEM) issued by the client CA. When set,
    /// every client certificate's revocation status must be known from
    /// them, and a CRL past its nextUpdate refuses every client it covers.
    #[serde(default)]
    pub client_crls: Option<PathBuf>,
    /// File of refused client identities: one SPIFFE id per line, `#`
    /// comments. A listed caller is refused whatever its certificate.
    #[serde(default)]
    pub deny_list: Option<PathBuf>,
    /// How often the TLS files (server certificate and key, client CA,
    /// client CRLs, deny-list) are checked for changes and reloaded; 0
    /// reloads only on SIGHUP or `warden trust reload`.
    #[serde(default = "defaults::tls_reload_interval_seconds")]
    pub reload_interval_seconds: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustConfig {
    /// Directory holding `roots/*.pem` (regulator roots) and `crls/`
    /// (revocation lists, DER or PEM).
    pub dir: PathBuf,
    /// Deny when a CA in the chain has no CRL loaded (fail closed).
    #[serde(default = "defaults::yes")]
    pub require_crls: bool,
    /// Base arc of the certificate profile's OIDs (see certs/PROFILE.md).
    #[serde(default = "defaults::oid_base_arc")]
    pub oid_base_arc: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdmissionConfig {
    /// Lease length granted on allow and on each renewal.
    #[serde(default = "defaults::lease_seconds")]
    pub lease_seconds: u64,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        Self {
            lease_seconds: defaults::lease_seconds(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LicenceConfig {
    /// Ed25519 signer key in the signed-note format
    /// (`PRIVATE+KEY+<name>+<id>+<base64>`), written by `warden dev` or
    /// `warden keygen`.
    pub key: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerConfig {
    /// Ed25519 signer key for checkpoints, signed-note format; its name is
    /// the log's origin. Auditors verify with the matching verifier key.
    pub key: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KycConfig {
    /// PII key file: one AES-256 key per line, `<key-id> <64 hex digits>`;
    /// the last seals new records (`warden dev` writes one; `warden pii
    /// rotate` appends a key).
    pub pii_key_file: PathBuf,
    /// Sanctions screening: a name scoring at or above this (0-1,
    /// token-based Jaro-Winkler) is a potential match.
    #[serde(default = "defaults::screening_threshold")]
    pub screening_threshold: f64,
    /// Customers CLOSED for longer than this have their personal data
    /// purged (versions remain as tombstones with their commitments).
    #[serde(default = "defaults::retention_days")]
    pub retention_days: u64,
    /// How often the retention purge runs.
    #[serde(default = "defaults::purge_interval_seconds")]
    pub purge_interval_seconds: u64,
    /// A customer's verification (`details.verification.verified_at`)
    /// older than this many days denies admission and renewal with
    /// `KYC_STALE` until the record is verified again; a VERIFIED customer
    /// without a verification time counts as stale. 0 (the default): no
    /// limit.
    #[serde(default)]
    pub max_verification_age_days: u64,
}

mod defaults {
    pub fn suspend_quorum() -> u32 {
        1
    }
    pub fn terminate_quorum() -> u32 {
        2
    }
    pub fn lift_quorum() -> u32 {
        2
    }
    pub fn screening_threshold() -> f64 {
        crate::screening::DEFAULT_THRESHOLD
    }
    pub fn retention_days() -> u64 {
        5 * 365
    }
    pub fn purge_interval_seconds() -> u64 {
        3_600
    }
    pub fn max_connections() -> usize {
        1024
    }
    pub fn max_connections_per_principal() -> usize {
        256
    }
    pub fn max_handshakes() -> usize {
        128
    }
    pub fn handshake_timeout_seconds() -> u64 {
        10
    }
    pub fn idle_timeout_seconds() -> u64 {
        300
    }
    pub fn keepalive_interval_seconds() -> u64 {
        60
    }
    pub fn keepalive_timeout_seconds() -> u64 {
        20
    }
    pub fn max_streams_per_connection() -> u32 {
        128
    }
    pub fn max_watches_per_principal() -> usize {
        16
    }
    pub fn tls_reload_interval_seconds() -> u64 {
        10
    }
    use std::net::SocketAddr;

    pub fn listen() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 50051))
    }
    pub fn shutdown_grace_seconds() -> u64 {
        10
    }
    pub fn lease_seconds() -> u64 {
        300
    }
    pub fn yes() -> bool {
        true
    }
    pub fn oid_base_arc() -> String {
        crate::pki::profile::oid_to_string(crate::pki::profile::DEFAULT_BASE_ARC)
    }
}

impl Config {
    /// Reads and validates a config file. Relative paths inside it are
    /// resolved against the file's directory, so a config works from any
    /// working directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml_str(&text, path)
    }

    /// Parses and validates the text of the config file at `path` (which
    /// names it in errors and anchors its relative paths).
    pub fn from_toml_str(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        if let Some(base) = path.parent() {
            config.resolve_relative_to(base);
        }
        config.validate()?;
        Ok(config)
    }

    fn resolve_relative_to(&mut self, base: &Path) {
        for p in [
            &mut self.data_dir,
            &mut self.tls.cert,
            &mut self.tls.key,
            &mut self.tls.client_ca,
            &mut self.trust.dir,
            &mut self.licence.key,
            &mut self.ledger.key,
            &mut self.kyc.pii_key_file,
        ] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        for p in [&mut self.tls.client_crls, &mut self.tls.deny_list]
            .into_iter()
            .flatten()
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
    }

    /// Checks every field and reports all problems together.
    // A list of rules, one short check per config field, all problems
    // collected so every mistake is reported at once.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut errors = Vec::new();
        let mut err = |f: &str, m: String| errors.push((f.to_string(), m));
        if self.admission.lease_seconds == 0 || self.admission.lease_seconds > 86_400 {
            err(
                "admission.lease_seconds",
                "must be between 1 and 86400".into(),
            );
        }
        let t = self.kyc.screening_threshold;
        if !(t > 0.5 && t <= 1.0) {
            err(
                "kyc.screening_threshold",
                "must be above 0.5 and at most 1".into(),
            );
        }
        for (field, q) in [
            ("orders.suspend_quorum", self.orders.suspend_quorum),
            ("orders.terminate_quorum", self.orders.terminate_quorum),
            ("orders.lift_quorum", self.orders.lift_quorum),
        ] {
            if q == 0 || q > 16 {
                err(field, "must be between 1 and 16".into());
            }
        }
        if self.kyc.purge_interval_seconds == 0 {
            err("kyc.purge_interval_seconds", "must be at least 1".into());
        }
        // Beyond the latest time a record may carry, a limit limits nothing.
        if self.kyc.max_verification_age_days > 3_660_000 {
            err(
                "kyc.max_verification_age_days",
                "must be at most 3660000 (0: no limit)".into(),
            );
        }
        if let Some(m) = self.metrics_listen {
            let l = self.listen;
            let same_host = m.ip() == l.ip() || m.ip().is_unspecified() || l.ip().is_unspecified();
            if m.port() != 0 && m.port() == l.port() && same_host {
                err(
                    "metrics_listen",
                    format!("{m} takes the port of listen ({l}); give metrics a port of its own"),
                );
            }
        }
        if self.shutdown_grace_seconds > 3_600 {
            err("shutdown_grace_seconds", "must be at most 3600".into());
        }
        let td = &self.tls.trust_domain;
        if td.is_empty()
            || !td
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        {
            err(
                "tls.trust_domain",
                "must be a lower-case SPIFFE trust domain such as \"warden.example\"".into(),
            );
        }
        if let Err(e) = crate::pki::profile::Profile::from_oid_str(&self.trust.oid_base_arc) {
            err("trust.oid_base_arc", e.to_string());
        }
        for (field, p) in [
            ("tls.cert", &self.tls.cert),
            ("tls.key", &self.tls.key),
            ("tls.client_ca", &self.tls.client_ca),
            ("licence.key", &self.licence.key),
            ("ledger.key", &self.ledger.key),
            ("kyc.pii_key_file", &self.kyc.pii_key_file),
        ] {
            if !p.is_file() {
                err(field, format!("{} is not a readable file", p.display()));
            }
        }
        if let Some(dir) = &self.tls.client_crls {
            if !dir.is_dir() {
                err(
                    "tls.client_crls",
                    format!("{} is not a directory", dir.display()),
                );
            }
        }
        if let Some(p) = &self.tls.deny_list {
            if !p.is_file() {
                err(
                    "tls.deny_list",
                    format!("{} is not a readable file", p.display()),
                );
            }
        }
        self.limits.validate(&mut err);
        if !self.trust.dir.join("roots").is_dir() {
            err(
                "trust.dir",
                format!(
                    "{} has no roots/ directory of regulator root certificates",
                    self.trust.dir.display()
                ),
            );
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(errors))
        }
    }
}

impl LimitsConfig {
    fn validate(&self, err: &mut impl FnMut(&str, String)) {
        let l = self;
        for (field, value, max) in [
            ("limits.max_connections", l.max_connections, 1_000_000),
            (
                "limits.max_connections_per_principal",
                l.max_connections_per_principal,
                l.max_connections,
            ),
            ("limits.max_handshakes", l.max_handshakes, l.max_connections),
            (
                "limits.max_watches_per_principal",
                l.max_watches_per_principal,
                100_000,
            ),
        ] {
            if value == 0 || value > max {
                err(field, format!("must be between 1 and {max}"));
            }
        }
        for (field, value) in [
            (
                "limits.handshake_timeout_seconds",
                l.handshake_timeout_seconds,
            ),
            ("limits.idle_timeout_seconds", l.idle_timeout_seconds),
            (
                "limits.keepalive_interval_seconds",
                l.keepalive_interval_seconds,
            ),
            (
                "limits.keepalive_timeout_seconds",
                l.keepalive_timeout_seconds,
            ),
        ] {
            if value == 0 || value > 86_400 {
                err(field, "must be between 1 and 86400".into());
            }
        }
        if l.max_streams_per_connection == 0 || l.max_streams_per_connection > 10_000 {
            err(
                "limits.max_streams_per_connection",
                "must be between 1 and 10000".into(),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_are_refused_with_their_name() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("w.toml");
        std::fs::write(&p, "data_dir = \"d\"\nlisten_addr = \"x\"\n").unwrap();
        let e = Config::load(&p).unwrap_err().to_string();
        assert!(e.contains("listen_addr"), "{e}");
    }

    #[test]
    fn the_example_config_parses_and_shows_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/warden.example.toml");
        let c: Config = toml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let o = OrdersConfig::default();
        assert_eq!(
            (
                c.orders.suspend_quorum,
                c.orders.terminate_quorum,
                c.orders.lift_quorum
            ),
            (o.suspend_quorum, o.terminate_quorum, o.lift_quorum)
        );
        assert_eq!(c.admission.lease_seconds, defaults::lease_seconds());
        assert_eq!(c.kyc.retention_days, defaults::retention_days());
        assert_eq!(c.kyc.max_verification_age_days, 0, "no limit by default");
        assert_eq!(c.trust.oid_base_arc, defaults::oid_base_arc());
        assert_eq!(c.metrics_listen, None, "metrics are off by default");
        let l = LimitsConfig::default();
        assert_eq!(
            (
                c.limits.max_connections,
                c.limits.max_connections_per_principal,
                c.limits.max_handshakes,
                c.limits.handshake_timeout_seconds,
                c.limits.idle_timeout_seconds,
                c.limits.keepalive_interval_seconds,
                c.limits.keepalive_timeout_seconds,
                c.limits.max_streams_per_connection,
                c.limits.max_watches_per_principal,
            ),
            (
                l.max_connections,
                l.max_connections_per_principal,
                l.max_handshakes,
                l.handshake_timeout_seconds,
                l.idle_timeout_seconds,
                l.keepalive_interval_seconds,
                l.keepalive_timeout_seconds,
                l.max_streams_per_connection,
                l.max_watches_per_principal,
            )
        );
        assert_eq!(
            c.tls.reload_interval_seconds,
            defaults::tls_reload_interval_seconds()
        );
        assert_eq!(
            (c.tls.client_crls.as_ref(), c.tls.deny_list.as_ref()),
            (None, None)
        );
    }

    #[test]
    fn limits_out_of_range_are_refused_naming_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("w.toml");
        std::fs::write(
            &p,
            minimal("")
                + "[limits]\nmax_connections = 10\nmax_connections_per_principal = 11\n\
                   idle_timeout_seconds = 0\nmax_watches_per_principal = 0\n",
        )
        .unwrap();
        let e = Config::load(&p).unwrap_err().to_string();
        for f in [
            "limits.max_connections_per_principal: must be between 1 and 10",
            "limits.max_handshakes: must be between 1 and 10",
            "limits.idle_timeout_seconds",
            "limits.max_watches_per_principal",
        ] {
            assert!(e.contains(f), "{f} missing from: {e}");
        }
    }

    fn minimal(extra: &str) -> String {
        format!(
            r#"{extra}
data_dir = "d"
[tls]
cert = "c"
key = "k"
client_ca = "ca"
trust_domain = "warden.example"
[trust]
dir = "t"
[licence]
key = "l"
[ledger]
key = "g"
[kyc]
pii_key_file = "p"
"#
        )
    }

    #[test]
    fn metrics_are_off_unless_an_address_is_given() {
        let c: Config = toml::from_str(&minimal("")).unwrap();
        assert_eq!(c.metrics_listen, None);
        let c: Config = toml::from_str(&minimal("metrics_listen = \"127.0.0.1:9464\"")).unwrap();
        assert_eq!(
            c.metrics_listen,
            Some(SocketAddr::from(([127, 0, 0, 1], 9464)))
        );
    }

    #[test]
    fn a_bad_metrics_address_is_refused_naming_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("w.toml");
        std::fs::write(&p, minimal("metrics_listen = \"localhost\"")).unwrap();
        let e = Config::load(&p).unwrap_err().to_string();
        assert!(e.contains("metrics_listen"), "{e}");
        std::fs::write(
            &p,
            minimal("listen = \"0.0.0.0:50051\"\nmetrics_listen = \"127.0.0.1:50051\""),
        )
        .unwrap();
        let e = Config::load(&p).unwrap_err().to_string();
        assert!(
            e.contains("metrics_listen: 127.0.0.1:50051 takes the port of listen"),
            "{e}"
        );
    }

    #[test]
    fn every_invalid_field_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("w.toml");
        std::fs::write(
            &p,
            r#"
data_dir = "d"
[tls]
cert = "nope.pem"
key = "nope.key"
client_ca = "ca.pem"
trust_domain = "Bad Domain"
[trust]
dir = "trust"
oid_base_arc = "1.x"
[admission]
lease_seconds = 0
[licence]
key = "licence.key"
[ledger]
key = "ledger.key"
[kyc]
pii_key_file = "pii.keys"
screening_threshold = 2.0
max_verification_age_days = 3660001
"#,
        )
        .unwrap();
        let e = Config::load(&p).unwrap_err().to_string();
        for f in [
            "admission.lease_seconds",
            "tls.trust_domain",
            "trust.oid_base_arc",
            "tls.cert",
            "tls.key",
            "tls.client_ca",
            "licence.key",
            "ledger.key",
            "trust.dir",
            "kyc.pii_key_file",
            "kyc.screening_threshold",
            "kyc.max_verification_age_days",
        ] {
            assert!(e.contains(f), "{f} missing from: {e}");
        }
    }
}
