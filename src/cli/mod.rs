//! Subcommands. Server-side commands (`dev`, `serve`, `certs`, `evaluator`,
//! `digest`) run locally; the rest are gRPC clients of a running warden.
//!
//! Exit statuses are decided in [`exit`]: 0 success or allow; 1 error (the
//! message says what to do); 2 usage error; 3 the server answered DENY, or
//! a licence was refused; 4 the ledger is proven inconsistent (evidence
//! printed).

pub mod attribute;
pub mod backup;
pub mod client;
mod commands;
pub mod customer;
pub mod dev;
pub mod exit;
pub mod health;
pub mod ledger;
pub mod licence;
pub mod order;
pub mod store;
mod store_copy;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

pub use client::ClientArgs;
pub use commands::run;
pub use customer::CustomerCommand;

/// Exit status for a DENY answer.
pub const EXIT_DENIED: i32 = exit::DENIED;

/// An error and its causes, `: `-separated, as the CLI prints it; a cause
/// that an error already quoted in its own message is not repeated.
pub fn error_report(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

#[derive(Debug, Parser)]
#[command(
    name = "warden",
    version,
    about = "Licence-before-serving for AI models: evaluation certificates, KYC, leases",
    long_about = "warden answers a scheduler's question \"may this model serve here, for this customer?\" \
                  by verifying the model's evaluation certificate, the weights' digest and the customer's \
                  standing, and records every decision durably.\n\nQuick start: `warden dev`, then paste the \
                  commands it prints."
)]
pub struct Cli {
    /// Log format for server commands.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "WARDEN_LOG_FORMAT"
    )]
    pub log_format: LogFormatArg,
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LogFormatArg {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Development server: generate a dev PKI, a sample model and customer
    /// if absent, then serve on 127.0.0.1:50051.
    Dev(dev::DevArgs),
    /// Serve with a configuration file.
    Serve {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Certificate tooling.
    #[command(subcommand)]
    Certs(CertsCommand),
    /// The evaluator's tools.
    #[command(subcommand)]
    Evaluator(EvaluatorCommand),
    /// Print the OMS v1.0 digest (`sha256:<hex>`) of a model directory.
    Digest {
        dir: PathBuf,
        /// Worker threads (default: all cores).
        #[arg(long)]
        threads: Option<usize>,
    },
    /// Ask whether a model may serve (scheduler).
    Admit(AdmitArgs),
    /// Renew a deployment's lease (scheduler).
    Renew {
        deployment_id: String,
        /// Replace the endpoints the workload serves.
        #[arg(long = "endpoint")]
        endpoints: Vec<String>,
    },
    /// Report that a deployment stopped (scheduler).
    Release { deployment_id: String },
    /// Read deployments.
    #[command(subcommand)]
    Deployment(DeploymentCommand),
    /// Customer records (kyc).
    #[command(subcommand)]
    Customer(CustomerCommand),
    /// Kill orders: issue, approve, lift, read (operator, authority); watch
    /// and acknowledge (scheduler).
    #[command(subcommand)]
    Order(order::OrderCommand),
    /// Sanctions lists customers are screened against (admin).
    #[command(subcommand)]
    Sanctions(SanctionsCommand),
    /// Keys that encrypt customers' personal data at rest (local; no server).
    #[command(subcommand)]
    Pii(PiiCommand),
    /// Trust bundle administration (admin).
    #[command(subcommand)]
    Trust(TrustCommand),
    /// Benchmarks; results go to bench/results/.
    #[command(subcommand)]
    Bench(crate::bench::BenchCommand),
    /// Read and verify the tamper-evident ledger (auditor).
    #[command(subcommand)]
    Ledger(ledger::LedgerCommand),
    /// Who deployed a model or ran an endpoint, with the deployer's identity
    /// and ledger proofs (authority, under legal process); `--verify` checks
    /// a saved report offline; `requests` lists every request (auditor).
    Attribute(attribute::AttributeArgs),
    /// Write a consistent backup of the store to a file: from a running
    /// warden (admin), or with --data-dir from a directory no warden runs
    /// on. Keys are not included: back them up separately.
    Backup(backup::BackupArgs),
    /// Restore a backup file into a new or empty data directory, checking
    /// the file completely first (and with --config, the restored ledger
    /// against its signed checkpoint).
    Restore(backup::RestoreArgs),
    /// Check a data directory no warden runs on: every record, every
    /// checksum, the ledger against its signed checkpoint (local; no server).
    #[command(subcommand)]
    Store(store::StoreCommand),
    /// Ask a running warden whether it is serving (gRPC health over mTLS);
    /// exit 0 if SERVING, 1 otherwise. For container and Kubernetes probes.
    Health(health::HealthArgs),
    /// Check a licence offline: signed by the licence key, a current
    /// warden licence, not expired, and (when asked) for this deployment,
    /// model, region and accelerator count. Exit 3 if it is refused.
    VerifyLicence(licence::VerifyLicenceArgs),
}

#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// Write a development PKI: regulator root, evaluator CA, CRLs, mTLS CA,
    /// server certificate, one client certificate per role.
    Init {
        #[arg(long)]
        out: PathBuf,
    },
    /// Issue a CRL revoking certificates (run by the CA that issued them).
    Revoke {
        /// The issuing CA's certificate (PEM).
        #[arg(long)]
        ca: PathBuf,
        /// The issuing CA's private key (PEM).
        #[arg(long)]
        ca_key: PathBuf,
        /// Certificates to revoke (PEM files; the first certificate in each,
        /// so a chain file names its leaf).
        #[arg(long = "revoke", required = true)]
        certs: Vec<PathBuf>,
        /// The CRL this one replaces: its entries are kept and its number
        /// increased. Without it the CRL revokes only the given certificates
        /// and is numbered by the current time.
        #[arg(long)]
        previous: Option<PathBuf>,
        /// Days until the CRL's nextUpdate.
        #[arg(long, default_value_t = 7)]
        days: u32,
        /// Where to write the CRL (PEM).
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum EvaluatorCommand {
    /// Hash a model directory and issue its model-evaluation certificate.
    Issue {
        /// Evaluator CA certificate (PEM).
        #[arg(long)]
        ca: PathBuf,
        /// Evaluator CA private key (PEM).
        #[arg(long)]
        ca_key: PathBuf,
        #[arg(long)]
        model_dir: PathBuf,
        /// Evaluation results (TOML or JSON); see certs/PROFILE.md.
        #[arg(long)]
        results: PathBuf,
        /// Licence period in days from now.
        #[arg(long, default_value_t = 365)]
        days: u32,
        /// Where to write the certificate chain (PEM: leaf, then the CA).
        #[arg(long)]
        out: PathBuf,
        /// OID base arc of the profile (default: the documented development arc).
        #[arg(long)]
        oid_base_arc: Option<String>,
    },
}

#[derive(Debug, clap::Args)]
pub struct AdmitArgs {
    #[arg(long)]
    pub customer: String,
    /// Certificate chain (PEM, model-evaluation certificate first).
    #[arg(long)]
    pub chain: PathBuf,
    /// Digest the scheduler measured (`sha256:<hex>`).
    #[arg(
        long,
        conflicts_with = "model_dir",
        required_unless_present = "model_dir"
    )]
    pub model_digest: Option<String>,
    /// Measure the digest of this model directory.
    #[arg(long)]
    pub model_dir: Option<PathBuf>,
    #[arg(long)]
    pub region: String,
    #[arg(long, default_value = "dev-cluster")]
    pub cluster: String,
    #[arg(long, default_value = "node-1")]
    pub node: String,
    #[arg(long, default_value = "")]
    pub accelerator_type: String,
    #[arg(long, default_value_t = 1)]
    pub accelerators: u32,
    #[arg(long = "endpoint")]
    pub endpoints: Vec<String>,
    /// Idempotency key (default: a fresh random id).
    #[arg(long)]
    pub request_id: Option<String>,
    /// Print only the deployment id on allow.
    #[arg(long)]
    pub quiet: bool,
    /// Also write the signed licence to this file on allow.
    #[arg(long)]
    pub licence_out: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum DeploymentCommand {
    Get {
        deployment_id: String,
    },
    List {
        #[arg(long)]
        customer: Option<String>,
        #[arg(long)]
        model_digest: Option<String>,
        /// active, released, expired, suspended, terminated
        #[arg(long)]
        state: Option<String>,
        #[arg(long, default_value_t = 100)]
        page_size: u32,
        #[arg(long)]
        page_token: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum SanctionsCommand {
    /// Replace the sanctions list and re-screen every customer against it.
    Load {
        /// The list (`-` reads stdin): OFAC's sdn.csv for `--format
        /// ofac-sdn`, or a CSV with the header `name,aliases,type,program,id`
        /// (aliases separated by `;`) for `--format csv`.
        file: PathBuf,
        #[arg(long, value_enum)]
        format: ListFormatArg,
        /// Name of the list, e.g. "OFAC SDN".
        #[arg(long)]
        name: String,
        /// Version of the list, e.g. its publication date.
        #[arg(long)]
        list_version: String,
        /// OFAC's alt.csv (aliases); only with `--format ofac-sdn`.
        #[arg(long)]
        alt: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ListFormatArg {
    /// OFAC SDN legacy CSV (sdn.csv, optionally alt.csv).
    OfacSdn,
    /// CSV with the header `name,aliases,type,program,id`.
    Csv,
}

#[derive(Debug, Subcommand)]
pub enum PiiCommand {
    /// Append a fresh AES-256 key to the PII key file. Once warden restarts
    /// it seals every record written; the earlier keys stay in the file and
    /// still open what they sealed.
    Rotate {
        /// The key file (`kyc.pii_key_file` in the config).
        #[arg(long)]
        key_file: PathBuf,
        /// Id of the new key: 1-64 of letters, digits, '-', '_' and '.'.
        #[arg(long)]
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum TrustCommand {
    /// Install a CRL (DER or PEM); effective immediately.
    PutCrl { file: PathBuf },
    /// Re-read the trust directory.
    Reload,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_report_names_each_cause_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        #[derive(Debug, thiserror::Error)]
        #[error("cannot read config.toml: {0}")]
        struct Quoting(#[source] std::io::Error);
        let e = anyhow::Error::new(Quoting(io)).context("cannot start");
        assert_eq!(
            error_report(&e),
            "cannot start: cannot read config.toml: no such file"
        );
    }

    #[test]
    fn command_line_definition_is_consistent() {
        use clap::CommandFactory as _;
        Cli::command().debug_assert();
    }
}
