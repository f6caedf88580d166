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
    /// Directory for the embedded store (`store.engine = "sled"`, the
    /// default); created if missing. Not used with PostgreSQL; empty when
    /// not given.
    #[serde(default)]
    pub data_dir: PathBuf,
    #[serde(default)]
    pub store: StoreConfig,
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

/// Which engine keeps warden's state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// Embedded, in `data_dir`: one warden process per directory.
    #[default]
    Sled,
    /// A PostgreSQL database, which several warden processes may share.
    Postgres,
}

/// `[store]`: the engine, and for PostgreSQL how to reach the database.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    #[serde(default)]
    pub engine: Engine,
    /// `postgresql://user@host:port/database?sslmode=verify-full`. It holds
    /// no password (give `password_file`). `sslmode` is `verify-full` (the
    /// default; `require` means the same: warden always checks the
    /// database's certificate against `ca` and its host name) or `disable`,
    /// for a database on this machine only.
    pub url: Option<String>,
    /// File whose first line is the database password.
    pub password_file: Option<PathBuf>,
    /// Connections warden keeps open to the database at most.
    #[serde(default = "defaults::pool_size")]
    pub pool_size: usize,
    /// CA certificates (PEM) that issued the database's certificate.
    pub ca: Option<PathBuf>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            engine: Engine::default(),
            url: None,
            password_file: None,
            pool_size: defaults::pool_size(),
            ca: None,
        }
    }
}

/// How warden reaches its PostgreSQL database, checked from `[store]`.
#[derive(Debug, Clone)]
pub struct Database {
    /// Where and as whom to connect, without a password.
    pub connect: tokio_postgres::Config,
    /// The CA the database's certificate must chain to; `None` only for a
    /// database on this machine with `sslmode=disable`.
    pub ca: Option<PathBuf>,
    pub password_file: Option<PathBuf>,
    pub pool_size: usize,
}

impl StoreConfig {
    /// The database `[store]` names, or what is wrong with it (field,
    /// message), every problem at once.
    pub fn database(&self) -> Result<Database, Vec<(String, String)>> {
        let mut errors = Vec::new();
        let mut err = |f: &str, m: String| errors.push((format!("store.{f}"), m));
        if self.pool_size == 0 || self.pool_size > 1_024 {
            err("pool_size", "must be between 1 and 1024".into());
        }
        let Some(url) = &self.url else {
            err("url", "is required with engine = \"postgres\"".into());
            return Err(errors);
        };
        let (connect, tls) = match parse_database_url(url) {
            Ok(parsed) => parsed,
            Err(m) => {
                err("url", m);
                return Err(errors);
            }
        };
        if tls && self.ca.is_none() {
            err(
                "ca",
                "is required: the database's certificate is checked against it \
                 (or use sslmode=disable for a database on this machine)"
                    .into(),
            );
        }
        if !tls && self.ca.is_some() {
            err("ca", "is not used with sslmode=disable".into());
        }
        for (field, p) in [("ca", &self.ca), ("password_file", &self.password_file)] {
            if let Some(p) = p {
                if !p.is_file() {
                    err(field, format!("{} is not a readable file", p.display()));
                }
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Database {
            connect,
            ca: self.ca.clone().filter(|_| tls),
            password_file: self.password_file.clone(),
            pool_size: self.pool_size,
        })
    }

    fn validate(&self, data_dir: &Path, err: &mut impl FnMut(&str, String)) {
        match self.engine {
            Engine::Sled => {
                if data_dir.as_os_str().is_empty() {
                    err(
                        "data_dir",
                        "is required with the sled engine (the default)".into(),
                    );
                }
                for (field, given) in [
                    ("store.url", self.url.is_some()),
                    ("store.password_file", self.password_file.is_some()),
                    ("store.ca", self.ca.is_some()),
                ] {
                    if given {
                        err(field, "is only used with engine = \"postgres\"".into());
                    }
                }
            }
            Engine::Postgres => {
                if let Err(problems) = self.database() {
                    for (f, m) in problems {
                        err(&f, m);
                    }
                }
            }
        }
    }
}

/// Parses a `postgresql://` URL: the connection settings, and whether TLS
/// (always verified) is required. `sslmode` is read here, since warden's
/// modes are stricter than the client library's.
fn parse_database_url(url: &str) -> Result<(tokio_postgres::Config, bool), String> {
    if !url.starts_with("postgresql://") && !url.starts_with("postgres://") {
        return Err("must be a postgresql:// URL".into());
    }
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut kept = Vec::new();
    let mut mode = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("sslmode", m)) => mode = Some(m.to_string()),
            _ => kept.push(pair),
        }
    }
    let tls = match mode.as_deref() {
        None | Some("verify-full" | "require") => true,
        Some("disable") => false,
        Some(m) => {
            return Err(format!(
                "sslmode={m} is not accepted: use verify-full (the default) or, for a \
                 database on this machine, disable"
            ))
        }
    };
    let rebuilt = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    let connect: tokio_postgres::Config = rebuilt
        .parse()
        .map_err(|e| format!("is not a valid database URL: {e}"))?;
    if connect.get_password().is_some() {
        return Err("must not hold a password; put it in store.password_file".into());
    }
    if connect.get_user().is_none() {
        return Err("names no user (postgresql://USER@host/database)".into());
    }
    if connect.get_dbname().is_none() {
        return Err("names no database (postgresql://user@host/DATABASE)".into());
    }
    if !tls && !connect.get_hosts().iter().all(is_this_machine) {
        return Err(
            "sslmode=disable is only accepted for a database on this machine \
             (localhost, a loopback address or a Unix socket)"
                .into(),
        );
    }
    Ok((connect, tls))
}

fn is_this_machine(host: &tokio_postgres::config::Host) -> bool {
    match host {
        tokio_postgres::config::Host::Tcp(h) => {
            h == "localhost"
                || h.parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        tokio_postgres::config::Host::Unix(_) => true,
    }
}

mod defaults {
    pub fn pool_size() -> usize {
        16
    }
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
        // An empty data_dir is one not given (PostgreSQL needs none).
        if !self.data_dir.as_os_str().is_empty() && self.data_dir.is_relative() {
            self.data_dir = base.join(&self.data_dir);
        }
        for p in [
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
        for p in [
            &mut self.tls.client_crls,
            &mut self.tls.deny_list,
            &mut self.store.password_file,
            &mut self.store.ca,
        ]
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
        self.store.validate(&self.data_dir, &mut err);
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

    /// The problems `[store]` (and `data_dir`) of `text` have, by field.
    fn store_problems(text: &str) -> Vec<(String, String)> {
        let c: Config = toml::from_str(text).unwrap();
        let mut errors = Vec::new();
        c.store.validate(&c.data_dir, &mut |f: &str, m: String| {
            errors.push((f.to_string(), m))
        });
        errors
    }

    fn fields(problems: &[(String, String)]) -> Vec<&str> {
        problems.iter().map(|(f, _)| f.as_str()).collect()
    }

    #[test]
    fn sled_is_the_default_and_needs_a_data_dir() {
        let c: Config = toml::from_str(&minimal("")).unwrap();
        assert_eq!(c.store.engine, Engine::Sled);
        assert!(store_problems(&minimal("")).is_empty());
        let without = minimal("").replace("data_dir = \"d\"\n", "");
        assert_eq!(fields(&store_problems(&without)), ["data_dir"]);
        let with_url = minimal("") + "[store]\nurl = \"postgresql://w@localhost/w\"\n";
        assert_eq!(fields(&store_problems(&with_url)), ["store.url"]);
    }

    #[test]
    fn a_postgres_store_needs_no_data_dir_and_a_checked_url() {
        let pg = |store: &str| {
            minimal("").replace("data_dir = \"d\"\n", "")
                + "[store]\nengine = \"postgres\"\n"
                + store
        };
        let ok = pg(
            "url = \"postgresql://warden@localhost:5433/warden?sslmode=disable\"\npool_size = 4\n",
        );
        assert!(store_problems(&ok).is_empty(), "{:?}", store_problems(&ok));
        let c: Config = toml::from_str(&ok).unwrap();
        let db = c.store.database().unwrap();
        assert_eq!(db.connect.get_dbname(), Some("warden"));
        assert_eq!(db.connect.get_ports(), [5433]);
        assert_eq!((db.ca, db.pool_size), (None, 4));
        for (store, field, says) in [
            ("", "store.url", "is required"),
            ("url = \"mysql://w@h/w\"\n", "store.url", "postgresql://"),
            ("url = \"postgresql://w:secret@localhost/w?sslmode=disable\"\n", "store.url", "password_file"),
            ("url = \"postgresql://w@localhost/w?sslmode=prefer\"\n", "store.url", "sslmode=prefer"),
            ("url = \"postgresql://w@db.example/w?sslmode=disable\"\n", "store.url", "this machine"),
            ("url = \"postgresql://localhost/w?sslmode=disable\"\n", "store.url", "no user"),
            ("url = \"postgresql://w@db.example/w\"\n", "store.ca", "is required"),
            ("url = \"postgresql://w@db.example/w?sslmode=verify-full\"\nca = \"/nonexistent/ca.pem\"\n", "store.ca", "not a readable file"),
            ("url = \"postgresql://w@localhost/w?sslmode=disable\"\npool_size = 0\n", "store.pool_size", "between 1 and 1024"),
        ] {
            let problems = store_problems(&pg(store));
            assert_eq!(fields(&problems), [field], "{store}: {problems:?}");
            assert!(problems[0].1.contains(says), "{store}: {problems:?}");
            assert!(!problems[0].1.contains("secret"), "a password was echoed");
        }
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
