//! How client subcommands reach a warden server: mutual TLS with a
//! certificate per principal. `--role R` is the development shortcut for
//! the certificates `warden dev` writes under certs/dev/clients/.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// Server address.
    #[arg(
        long,
        global = true,
        env = "WARDEN_ADDR",
        default_value = "https://localhost:50051"
    )]
    pub addr: String,
    /// Use the development client certificate of this role from --dev-dir
    /// (scheduler, kyc, authority, operator, auditor, admin).
    #[arg(long, global = true, env = "WARDEN_ROLE")]
    pub role: Option<String>,
    /// Directory written by `warden dev`.
    #[arg(
        long,
        global = true,
        env = "WARDEN_DEV_DIR",
        default_value = "certs/dev"
    )]
    pub dev_dir: PathBuf,
    /// Client certificate (PEM); overrides --role.
    #[arg(long, global = true, env = "WARDEN_CERT")]
    pub cert: Option<PathBuf>,
    /// Client private key (PEM); overrides --role.
    #[arg(long, global = true, env = "WARDEN_KEY")]
    pub key: Option<PathBuf>,
    /// CA that issued the server certificate (PEM).
    #[arg(long, global = true, env = "WARDEN_CA")]
    pub ca: Option<PathBuf>,
    /// Print machine-readable JSON.
    #[arg(long, global = true)]
    pub json: bool,
}

impl ClientArgs {
    /// Connects with the identity for `default_role` unless the user chose
    /// another with --role, --cert and --key.
    pub async fn connect(&self, default_role: &str) -> anyhow::Result<Channel> {
        self.endpoint(default_role)?
            .connect()
            .await
            .with_context(|| format!("cannot connect to {}", self.addr))
    }

    /// The server endpoint with the TLS identity for `default_role` (see
    /// [`Self::connect`]), not yet connected. Errors here are local (a
    /// missing or unreadable certificate, a bad --addr) and retrying does
    /// not fix them; connecting may fail for reasons that pass.
    pub fn endpoint(&self, default_role: &str) -> anyhow::Result<Endpoint> {
        let role = self.role.as_deref().unwrap_or(default_role);
        let clients = self.dev_dir.join("mtls/clients");
        let cert = self
            .cert
            .clone()
            .unwrap_or_else(|| clients.join(format!("{role}.pem")));
        let key = self
            .key
            .clone()
            .unwrap_or_else(|| clients.join(format!("{role}.key")));
        let ca = self
            .ca
            .clone()
            .unwrap_or_else(|| self.dev_dir.join("mtls/ca.pem"));
        let read = |p: &PathBuf, what: &str| {
            std::fs::read(p).with_context(|| format!("cannot read {what} {}", p.display()))
        };
        crate::server::install_crypto_provider();
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(read(&ca, "server CA")?))
            .identity(Identity::from_pem(
                read(&cert, "client certificate")?,
                read(&key, "client key")?,
            ));
        Ok(Endpoint::from_shared(self.addr.clone())
            .with_context(|| format!("invalid --addr {}", self.addr))?
            .connect_timeout(Duration::from_secs(5))
            .tls_config(tls)?)
    }
}
