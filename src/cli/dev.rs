//! `warden dev`: one command on a fresh machine. It creates what is missing
//! under `certs/dev` (a dev PKI, a licence key, a sample model directory and
//! its evaluation certificate, a config file), registers a sample VERIFIED
//! customer, then serves on 127.0.0.1:50051 (Prometheus metrics on
//! 127.0.0.1:9464) and prints commands to try.
//!
//! Everything it generates is for development only and is gitignored.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Args;
use sha2::{Digest as _, Sha256};

use tokio::net::TcpListener;

use crate::config::Config;
use crate::domain::customer::{Customer, CustomerKind, CustomerStatus};
use crate::ledger::note::Signer;
use crate::pki::{EvaluationResult, EvaluationResults, Profile, Regions};

/// The sample customer `warden dev` registers.
pub const SAMPLE_CUSTOMER: &str = "acme-ai";
/// Name of the dev licence key (and of the signatures on licences).
pub const LICENCE_KEY_NAME: &str = "warden.dev/licence";
/// Name of the dev ledger key: the origin of its checkpoints.
pub const LEDGER_KEY_NAME: &str = "warden.dev/ledger";

#[derive(Debug, Clone, Args)]
pub struct DevArgs {
    /// Where the dev PKI, keys, sample model and config live.
    #[arg(long, default_value = "certs/dev")]
    pub dir: PathBuf,
    /// Where the store lives.
    #[arg(long, default_value = "data/dev")]
    pub data_dir: PathBuf,
    #[arg(long, default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,
    /// Where the Prometheus metrics endpoint listens (plain HTTP).
    #[arg(long, default_value = "127.0.0.1:9464")]
    pub metrics_listen: SocketAddr,
    /// Prepare everything and exit without serving.
    #[arg(long)]
    pub prepare_only: bool,
}

/// Paths `warden dev` writes, relative to its directory.
pub struct DevLayout {
    pub dir: PathBuf,
}

impl DevLayout {
    pub fn licence_key(&self) -> PathBuf {
        self.dir.join("licence.key")
    }
    pub fn licence_vkey(&self) -> PathBuf {
        self.dir.join("licence.vkey")
    }
    pub fn ledger_key(&self) -> PathBuf {
        self.dir.join("ledger.key")
    }
    pub fn ledger_vkey(&self) -> PathBuf {
        self.dir.join("ledger.vkey")
    }
    pub fn sample_model(&self) -> PathBuf {
        self.dir.join("sample-model")
    }
    pub fn sample_results(&self) -> PathBuf {
        self.dir.join("sample-model.results.toml")
    }
    pub fn sample_chain(&self) -> PathBuf {
        self.dir.join("sample-model.chain.pem")
    }
    pub fn config(&self) -> PathBuf {
        self.dir.join("warden.toml")
    }
    pub fn pii_keys(&self) -> PathBuf {
        self.dir.join("pii.keys")
    }
}

fn write_secret(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(data)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Deterministic filler so the sample model has the same digest everywhere.
fn sample_weights(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut block = Sha256::digest(b"warden sample model").to_vec();
    while out.len() < len {
        out.extend_from_slice(&block);
        block = Sha256::digest(&block).to_vec();
    }
    out.truncate(len);
    out
}

fn write_sample_model(dir: &Path) -> anyhow::Result<()> {
    let tokenizer = dir.join("tokenizer");
    std::fs::create_dir_all(&tokenizer)
        .with_context(|| format!("cannot create {}", tokenizer.display()))?;
    for (name, content) in [
        (
            "config.json",
            b"{\"architecture\": \"sample-transformer\", \"layers\": 2}\n".to_vec(),
        ),
        ("model.safetensors", sample_weights(1 << 20)),
        (
            "tokenizer.json",
            b"{\"vocab\": \"tokenizer/vocab.txt\"}\n".to_vec(),
        ),
        ("tokenizer/vocab.txt", b"<s>\n</s>\nwarden\n".to_vec()),
    ] {
        write_file(&dir.join(name), content)?;
    }
    Ok(())
}

/// Writes a file, naming it if that fails.
fn write_file(path: &Path, content: impl AsRef<[u8]>) -> anyhow::Result<()> {
    std::fs::write(path, content).with_context(|| format!("cannot write {}", path.display()))
}

fn sample_results() -> EvaluationResults {
    EvaluationResults {
        model_name: "sample-llm".into(),
        model_version: "1.0.0".into(),
        developer: "Sample Model Developer Ltd".into(),
        suite_id: "frontier-safety-suite".into(),
        suite_version: "2026.1".into(),
        result: EvaluationResult::Pass,
        report_sha256: hex::encode(Sha256::digest(b"sample evaluation report")),
        risk_tier: 2,
        training_compute_flop: 3.2e24,
        regions: Regions::List(vec!["eu-west-1".into(), "us-east-1".into()]),
        max_accelerators: 8,
    }
}

/// Creates whatever is missing and returns the config to serve with.
pub fn prepare(args: &DevArgs) -> anyhow::Result<Config> {
    let layout = DevLayout {
        dir: args.dir.clone(),
    };
    std::fs::create_dir_all(&layout.dir)
        .with_context(|| format!("cannot create {}", layout.dir.display()))?;
    let profile = Profile::default();
    if !layout.dir.join("trust").exists() {
        crate::pki::dev::generate_dev_pki(
            &layout.dir,
            &profile,
            &crate::auth::Role::ALL.map(crate::auth::Role::as_str),
            false,
        )?;
        eprintln!("generated a development PKI in {}", layout.dir.display());
    }
    for (name, key, vkey) in [
        (
            LICENCE_KEY_NAME,
            layout.licence_key(),
            layout.licence_vkey(),
        ),
        (LEDGER_KEY_NAME, layout.ledger_key(), layout.ledger_vkey()),
    ] {
        if !key.exists() {
            let signer = Signer::generate(name)?;
            write_secret(&key, signer.to_text().as_bytes())?;
            write_file(&vkey, signer.verifier().to_text() + "\n")?;
        }
    }
    if !layout.pii_keys().exists() {
        crate::pii::Keyring::generate(&layout.pii_keys(), "dev-1")?;
    }
    if !layout.sample_model().exists() {
        write_sample_model(&layout.sample_model())?;
    }
    if !layout.sample_results().exists() {
        let text = toml::to_string(&sample_results())?;
        write_file(&layout.sample_results(), text)?;
    }
    if !layout.sample_chain().exists() {
        super::commands::issue_from_files(
            &layout.dir.join("evaluator/ca.pem"),
            &layout.dir.join("evaluator/ca.key"),
            &layout.sample_model(),
            &layout.sample_results(),
            365,
            None,
            &layout.sample_chain(),
        )?;
    }
    let data_dir = std::path::absolute(&args.data_dir)?;
    let config_text = format!(
        r#"# Written by `warden dev`; development only.
listen = "{listen}"
metrics_listen = "{metrics_listen}"
data_dir = "{data}"
shutdown_grace_seconds = 5

[tls]
cert = "mtls/server.pem"
key = "mtls/server.key"
client_ca = "mtls/ca.pem"
trust_domain = "{domain}"

[trust]
dir = "trust"
require_crls = true

[admission]
lease_seconds = 300

[licence]
key = "licence.key"

[ledger]
key = "ledger.key"

[kyc]
pii_key_file = "pii.keys"
screening_threshold = 0.9
retention_days = 1825
"#,
        listen = args.listen,
        metrics_listen = args.metrics_listen,
        data = data_dir.display(),
        domain = crate::pki::dev::DEV_TRUST_DOMAIN,
    );
    write_file(&layout.config(), config_text)?;
    Ok(Config::load(&layout.config())?)
}

/// The sample customer's identity record (invented).
fn sample_details(now: crate::domain::UnixMillis) -> crate::domain::customer::CustomerDetails {
    use crate::domain::customer::{Address, CustomerDetails, Person, RiskRating, Verification};
    CustomerDetails {
        aliases: vec!["Acme AI".into()],
        registration_number: "00000000".into(),
        legal_form: "private limited company".into(),
        jurisdiction: "GB".into(),
        addresses: vec![Address {
            lines: vec!["1 Example Street".into()],
            city: "London".into(),
            postal_code: "EC1A 1AA".into(),
            region: String::new(),
            country: "GB".into(),
        }],
        email: "compliance@acme-ai.example".into(),
        phone: "+442000000000".into(),
        beneficial_owners: vec![Person {
            name: "Ada Example".into(),
            nationality: "GB".into(),
            date_of_birth: "1980-01-01".into(),
            ownership_percent: 60.0,
            ..Person::default()
        }],
        declared_purpose: "inference for a sample chat assistant".into(),
        verification: Some(Verification {
            method: "registry-extract".into(),
            evidence_sha256: "0".repeat(64),
            verified_by: "warden-dev".into(),
            verified_at: Some(now),
        }),
        risk_rating: RiskRating::Low,
        ..CustomerDetails::default()
    }
}

pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    let config = prepare(&args)?;
    let app = crate::server::build_app(&config).await?;
    if app.store.customer(SAMPLE_CUSTOMER).await?.is_none() {
        let now = crate::clock::now_millis();
        let customer = Customer {
            customer_id: SAMPLE_CUSTOMER.into(),
            kind: CustomerKind::Organisation,
            legal_name: "Acme AI Ltd".into(),
            country: "GB".into(),
            status: CustomerStatus::Verified,
            status_reason: "sample customer created by warden dev".into(),
            version: 1,
            updated_at: now,
            updated_by: "warden-dev".into(),
            commitment_salt: crate::random::commitment_salt()?,
            details: sample_details(now),
            purged: false,
        };
        let screening = app.screening.screen(&customer, None, now);
        let entry = crate::ledger::entry::customer_entry(
            &customer,
            crate::ledger::entry::CustomerChange::Registered,
            Some(&screening),
            &customer.updated_by,
            "",
        );
        app.store
            .put_customer(&customer, Some(&screening), entry)
            .await?;
    }
    if args.prepare_only {
        println!(
            "prepared {}; serve with: warden serve --config {}",
            args.dir.display(),
            args.dir.join("warden.toml").display()
        );
        return Ok(());
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let metrics = crate::server::bind_metrics(&config).await?;
    let metrics_addr = metrics.as_ref().map(TcpListener::local_addr).transpose()?;
    print_instructions(&args, listener.local_addr()?, metrics_addr);
    let shutdown = tokio_util::sync::CancellationToken::new();
    super::commands::spawn_signal_handler(shutdown.clone());
    crate::server::run(config, app, listener, metrics, shutdown).await?;
    Ok(())
}

fn print_instructions(args: &DevArgs, listen: SocketAddr, metrics: Option<SocketAddr>) {
    let bin = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.display().to_string()))
        .unwrap_or_else(|| ".".into());
    let d = args.dir.display();
    let vkey = std::fs::read_to_string(args.dir.join("licence.vkey")).unwrap_or_default();
    let ledger_vkey = std::fs::read_to_string(args.dir.join("ledger.vkey")).unwrap_or_default();
    println!(
        r#"
warden dev is serving on {listen} (mTLS; client certificates in {d}/mtls/clients).
Licence verifier key: {vkey}
Ledger verifier key:  {ledger_vkey}
In another terminal, from this directory:

  export PATH={bin}:$PATH

  # a scheduler asks to serve the sample model for the sample customer (ALLOW)
  warden admit --customer {customer} --chain {d}/sample-model.chain.pem \
      --model-dir {d}/sample-model --region eu-west-1 --accelerators 4

  # the same model measured with other weights, in a region out of scope (DENY, every reason)
  warden admit --customer {customer} --chain {d}/sample-model.chain.pem \
      --model-digest sha256:{zeros} --region ap-south-1 --accelerators 16

  warden deployment list
  warden customer get {customer}
{metrics}"#,
        listen = listen,
        bin = bin,
        customer = SAMPLE_CUSTOMER,
        vkey = vkey.trim(),
        ledger_vkey = ledger_vkey.trim(),
        zeros = "0".repeat(64),
        metrics = metrics
            .map(|m| format!(
                "\n  # Prometheus metrics (plain HTTP, loopback only)\n  curl -s http://{m}/metrics | grep ^warden_\n"
            ))
            .unwrap_or_default(),
    );
    if let Some(m) = metrics {
        println!("warden dev metrics are at http://{m}/metrics");
    }
}
