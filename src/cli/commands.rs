//! What each subcommand does. Client commands print a readable summary, or
//! the response as JSON with `--json`.

use std::io::IsTerminal as _;
use std::path::Path;

use anyhow::{bail, Context as _};
use serde_json::json;

use super::{
    AdmitArgs, CertsCommand, Cli, ClientArgs, Command, DeploymentCommand, EvaluatorCommand,
    ListFormatArg, PiiCommand, SanctionsCommand, TrustCommand, EXIT_DENIED,
};
use crate::api::convert::{millis, rfc3339};
use crate::digest::{digest_dir, DigestOptions};
use crate::proto;
use crate::proto::admission_client::AdmissionClient;
use crate::proto::trust_client::TrustClient;

/// Runs the command and returns the process exit status.
pub async fn run(cli: Cli) -> anyhow::Result<i32> {
    let c = &cli.client;
    match cli.command {
        Command::Dev(args) => super::dev::run(args).await.map(|_| 0),
        Command::Serve { config } => {
            let config = crate::config::Config::load(&config)?;
            let app = crate::server::build_app(&config).await?;
            let listener = tokio::net::TcpListener::bind(config.listen)
                .await
                .with_context(|| format!("cannot listen on {}", config.listen))?;
            let metrics = crate::server::bind_metrics(&config).await?;
            let shutdown = tokio_util::sync::CancellationToken::new();
            spawn_signal_handler(shutdown.clone());
            crate::server::run(config, app, listener, metrics, shutdown).await?;
            Ok(0)
        }
        Command::Certs(cmd) => certs(cmd).map(|_| 0),
        Command::Evaluator(cmd) => evaluator(cmd).map(|_| 0),
        Command::Digest { dir, threads } => {
            let d = measure(&dir, threads)?;
            println!("{d}");
            Ok(0)
        }
        Command::Admit(args) => admit(c, args).await,
        Command::Renew {
            deployment_id,
            endpoints,
        } => {
            let mut client = AdmissionClient::new(c.connect("scheduler").await?);
            let r = client
                .renew(proto::RenewRequest {
                    deployment_id,
                    endpoints,
                })
                .await
                .map_err(status_error)?
                .into_inner();
            let allowed = r.decision == proto::Decision::Allow as i32;
            if c.json {
                print_json(&json!({
                    "decision": decision_name(r.decision),
                    "reasons": reasons_json(&r.reasons),
                    "lease_expires_at": r.lease_expires_at.as_ref().map(fmt_ts),
                    "licence": r.licence,
                }));
            } else if allowed {
                println!(
                    "ALLOW  lease renewed until {}",
                    r.lease_expires_at.as_ref().map(fmt_ts).unwrap_or_default()
                );
            } else {
                println!("DENY");
                print_reasons(&r.reasons);
            }
            Ok(if allowed { 0 } else { EXIT_DENIED })
        }
        Command::Release { deployment_id } => {
            let mut client = AdmissionClient::new(c.connect("scheduler").await?);
            let r = client
                .release(proto::ReleaseRequest { deployment_id })
                .await
                .map_err(status_error)?
                .into_inner();
            if let Some(d) = r.deployment {
                print_deployment(c.json, &d);
            }
            Ok(0)
        }
        Command::Deployment(cmd) => deployment(c, cmd).await.map(|_| 0),
        Command::Customer(cmd) => super::customer::run(c, cmd).await.map(|_| 0),
        Command::Order(cmd) => super::order::run(c, cmd).await,
        Command::Sanctions(cmd) => sanctions(c, cmd).await,
        Command::Pii(cmd) => pii(c, cmd).map(|_| 0),
        Command::Trust(cmd) => trust(c, cmd).await.map(|_| 0),
        Command::Ledger(cmd) => super::ledger::run(c, cmd).await,
        Command::Attribute(args) => super::attribute::run(c, args).await,
        Command::Health(args) => super::health::run(c, args).await,
        Command::Backup(args) => super::backup::backup(c, args).await,
        Command::Restore(args) => super::backup::restore(c, args).await,
        Command::Store(cmd) => super::store::run(c, cmd).await,
        Command::Bench(cmd) => crate::bench::run(cmd).await.map(|_| 0),
        Command::VerifyLicence(args) => super::licence::run(c, args),
    }
}

pub(crate) fn spawn_signal_handler(shutdown: tokio_util::sync::CancellationToken) {
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let Ok(mut term) = signal(SignalKind::terminate()) else {
                return;
            };
            tokio::select! {
                _ = term.recv() => {},
                _ = tokio::signal::ctrl_c() => {},
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutdown requested; draining");
        shutdown.cancel();
    });
}

fn measure(dir: &Path, threads: Option<usize>) -> anyhow::Result<crate::digest::ModelDigest> {
    let opts = DigestOptions {
        progress: std::io::stderr().is_terminal(),
        threads,
    };
    digest_dir(dir, &opts).with_context(|| format!("cannot digest {}", dir.display()))
}

/// Turns a gRPC error into a message that says the code and every field
/// violation.
pub(super) fn status_error(s: tonic::Status) -> anyhow::Error {
    use tonic_types::StatusExt as _;
    match s.get_details_bad_request() {
        Some(bad) if !bad.field_violations.is_empty() => {
            let mut msg = String::from("the server refused the request (INVALID_ARGUMENT):");
            for v in bad.field_violations {
                match v.field.as_str() {
                    // How many more the server left out.
                    "" => msg.push_str(&format!("\n  {}", v.description)),
                    field => msg.push_str(&format!("\n  {field}: {}", v.description)),
                }
            }
            refused(s.code(), msg)
        }
        _ => refused(s.code(), format!("{:?}: {}", s.code(), s.message())),
    }
}

/// A server's error answer, keeping its code for the exit status
/// ([`super::exit::for_error`]).
pub(super) fn refused(code: tonic::Code, message: String) -> anyhow::Error {
    anyhow::Error::new(super::exit::ServerRefused { code, message })
}

fn print_json(v: &serde_json::Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

fn fmt_ts(ts: &prost_types::Timestamp) -> String {
    rfc3339(millis(ts))
}

fn decision_name(d: i32) -> &'static str {
    proto::Decision::try_from(d)
        .map(|d| d.as_str_name().trim_start_matches("DECISION_"))
        .unwrap_or("UNKNOWN")
}

fn reason_name(code: i32) -> &'static str {
    proto::ReasonCode::try_from(code)
        .map(|c| c.as_str_name().trim_start_matches("REASON_CODE_"))
        .unwrap_or("UNKNOWN")
}

fn reasons_json(rs: &[proto::Reason]) -> serde_json::Value {
    rs.iter()
        .map(|r| json!({"code": reason_name(r.code), "message": r.message}))
        .collect()
}

fn print_reasons(rs: &[proto::Reason]) {
    for r in rs {
        println!("  {:<40} {}", reason_name(r.code), r.message);
    }
}

async fn admit(c: &ClientArgs, a: AdmitArgs) -> anyhow::Result<i32> {
    let model_digest = match (a.model_digest, &a.model_dir) {
        (Some(d), _) => d,
        (None, Some(dir)) => measure(dir, None)?.to_string(),
        (None, None) => bail!("give --model-digest or --model-dir"),
    };
    let chain = std::fs::read_to_string(&a.chain)
        .with_context(|| format!("cannot read certificate chain {}", a.chain.display()))?;
    let request = proto::AdmitRequest {
        request_id: a
            .request_id
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
        customer_id: a.customer,
        model_digest,
        certificate_chain: chain,
        workload: Some(proto::Workload {
            cluster: a.cluster,
            region: a.region,
            node: a.node,
            accelerator_type: a.accelerator_type,
            accelerator_count: a.accelerators,
            endpoints: a.endpoints,
        }),
    };
    let mut client = AdmissionClient::new(c.connect("scheduler").await?);
    let r = client
        .admit(request)
        .await
        .map_err(status_error)?
        .into_inner();
    let allowed = r.decision == proto::Decision::Allow as i32;
    if let (true, Some(path)) = (allowed, &a.licence_out) {
        std::fs::write(path, &r.licence)
            .with_context(|| format!("cannot write licence to {}", path.display()))?;
    }
    if c.json {
        print_json(&json!({
            "decision": decision_name(r.decision),
            "reasons": reasons_json(&r.reasons),
            "deployment_id": r.deployment_id,
            "decision_id": r.decision_id,
            "lease_expires_at": r.lease_expires_at.as_ref().map(fmt_ts),
            "licence": r.licence,
            "ledger_index": r.ledger_index,
        }));
    } else if a.quiet {
        if allowed {
            println!("{}", r.deployment_id);
        } else {
            eprintln!("DENY");
            for x in &r.reasons {
                eprintln!("  {} {}", reason_name(x.code), x.message);
            }
        }
    } else if allowed {
        println!("ALLOW  deployment {}", r.deployment_id);
        println!(
            "lease expires {}",
            r.lease_expires_at.as_ref().map(fmt_ts).unwrap_or_default()
        );
        println!("licence:\n{}", r.licence);
    } else {
        println!("DENY   (decision {})", r.decision_id);
        print_reasons(&r.reasons);
    }
    Ok(if allowed { 0 } else { EXIT_DENIED })
}

fn deployment_json(d: &proto::Deployment) -> serde_json::Value {
    let w = d.workload.clone().unwrap_or_default();
    json!({
        "deployment_id": d.deployment_id,
        "state": proto::DeploymentState::try_from(d.state)
            .map(|s| s.as_str_name().trim_start_matches("DEPLOYMENT_STATE_"))
            .unwrap_or("?"),
        "customer_id": d.customer_id,
        "model_digest": d.model_digest,
        "model_name": d.model_name,
        "model_version": d.model_version,
        "developer": d.developer,
        "evaluator": d.evaluator,
        "certificate_serial": d.certificate_serial,
        "certificate_fingerprint": d.certificate_fingerprint,
        "admitted_by": d.admitted_by,
        "admitted_at": d.admitted_at.as_ref().map(fmt_ts),
        "lease_expires_at": d.lease_expires_at.as_ref().map(fmt_ts),
        "released_at": d.released_at.as_ref().map(fmt_ts),
        "renewals": d.renewals,
        "workload": {
            "cluster": w.cluster, "region": w.region, "node": w.node,
            "accelerator_type": w.accelerator_type, "accelerator_count": w.accelerator_count,
            "endpoints": w.endpoints,
        },
    })
}

fn print_deployment(as_json: bool, d: &proto::Deployment) {
    if as_json {
        print_json(&deployment_json(d));
        return;
    }
    let v = deployment_json(d);
    if let Some(map) = v.as_object() {
        for (k, val) in map {
            println!(
                "{k:<24} {}",
                val.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| val.to_string())
            );
        }
    }
}

async fn deployment(c: &ClientArgs, cmd: DeploymentCommand) -> anyhow::Result<()> {
    let mut client = AdmissionClient::new(c.connect("operator").await?);
    match cmd {
        DeploymentCommand::Get { deployment_id } => {
            let d = client
                .get_deployment(proto::GetDeploymentRequest { deployment_id })
                .await
                .map_err(status_error)?
                .into_inner();
            print_deployment(c.json, &d);
        }
        DeploymentCommand::List {
            customer,
            model_digest,
            state,
            page_size,
            page_token,
        } => {
            let state = match state {
                None => proto::DeploymentState::Unspecified,
                Some(s) => proto::DeploymentState::from_str_name(&format!(
                    "DEPLOYMENT_STATE_{}",
                    s.to_ascii_uppercase()
                ))
                .with_context(|| format!("unknown state {s:?}"))?,
            };
            let r = client
                .list_deployments(proto::ListDeploymentsRequest {
                    customer_id: customer.unwrap_or_default(),
                    model_digest: model_digest.unwrap_or_default(),
                    state: state as i32,
                    page_size,
                    page_token: page_token.unwrap_or_default(),
                })
                .await
                .map_err(status_error)?
                .into_inner();
            if c.json {
                print_json(&json!({
                    "deployments": r.deployments.iter().map(deployment_json).collect::<Vec<_>>(),
                    "next_page_token": r.next_page_token,
                }));
            } else {
                for d in &r.deployments {
                    println!(
                        "{}  {:<10} {}  {}",
                        d.deployment_id,
                        proto::DeploymentState::try_from(d.state)
                            .map(|s| s.as_str_name().trim_start_matches("DEPLOYMENT_STATE_"))
                            .unwrap_or("?"),
                        d.customer_id,
                        d.model_digest
                    );
                }
                if !r.next_page_token.is_empty() {
                    println!("more: --page-token {}", r.next_page_token);
                }
            }
        }
    }
    Ok(())
}

use super::exit::USAGE as EXIT_USAGE;

async fn sanctions(c: &ClientArgs, cmd: SanctionsCommand) -> anyhow::Result<i32> {
    let SanctionsCommand::Load {
        file,
        format,
        name,
        list_version,
        alt,
    } = cmd;
    if format == ListFormatArg::Csv && alt.is_some() {
        eprintln!("error: --alt is only for --format ofac-sdn");
        return Ok(EXIT_USAGE);
    }
    let (_, content) = super::customer::read_input(&file)?;
    let alt_content = match &alt {
        Some(p) => super::customer::read_input(p)?.1,
        None => Vec::new(),
    };
    // The server takes messages up to this size; say so before sending.
    let max = crate::api::trust::MAX_LIST_BYTES - 64 * 1024;
    if content.len() + alt_content.len() > max {
        bail!(
            "the list is {} bytes; warden accepts lists up to {max} bytes",
            content.len() + alt_content.len()
        );
    }
    let mut client = TrustClient::new(c.connect("admin").await?);
    let r = client
        .load_sanctions_list(proto::LoadSanctionsListRequest {
            name,
            version: list_version,
            format: match format {
                ListFormatArg::OfacSdn => proto::SanctionsListFormat::OfacSdn,
                ListFormatArg::Csv => proto::SanctionsListFormat::Csv,
            } as i32,
            content,
            alt_content,
        })
        .await
        .map_err(status_error)?
        .into_inner();
    if c.json {
        print_json(&json!({
            "name": r.name,
            "version": r.version,
            "sha256": r.sha256,
            "entries": r.entries,
            "customers_screened": r.customers_screened,
            "potential_matches": r.potential_matches,
        }));
    } else {
        println!(
            "loaded sanctions list {:?} version {:?}: {} entries, sha256 {}",
            r.name, r.version, r.entries, r.sha256
        );
        println!(
            "screened {} customer(s): {} potential match(es)",
            r.customers_screened, r.potential_matches
        );
        if r.potential_matches > 0 {
            println!(
                "a potential match denies admission until resolved: see `warden customer list`, \
                 then `warden customer resolve ID false-positive|confirmed --note TEXT`"
            );
        }
    }
    Ok(0)
}

fn pii(c: &ClientArgs, cmd: PiiCommand) -> anyhow::Result<()> {
    let PiiCommand::Rotate { key_file, id } = cmd;
    crate::pii::Keyring::rotate(&key_file, &id)?;
    // Read it back: the new key must now be the one that seals.
    let ring = crate::pii::Keyring::load(&key_file)?;
    if ring.active_id() != id {
        bail!(
            "{} was written but its sealing key is {:?}, not {id:?}",
            key_file.display(),
            ring.active_id()
        );
    }
    if c.json {
        print_json(&json!({"key_file": key_file.display().to_string(), "active_key": id}));
    } else {
        println!(
            "appended PII key {id:?} to {}: it seals every record written once warden restarts \
             (the key file is read at start); the earlier keys stay in the file and still open \
             the records they sealed, so keep them",
            key_file.display()
        );
    }
    Ok(())
}

async fn trust(c: &ClientArgs, cmd: TrustCommand) -> anyhow::Result<()> {
    // Local files first: a missing one is reported as such, whether or not
    // the server is reachable.
    let crl = match &cmd {
        TrustCommand::PutCrl { file } => Some(
            std::fs::read(file).with_context(|| format!("cannot read CRL {}", file.display()))?,
        ),
        TrustCommand::Reload => None,
    };
    let mut client = TrustClient::new(c.connect("admin").await?);
    let s = match crl {
        Some(crl) => client.put_crl(proto::PutCrlRequest { crl }).await,
        None => client.reload(proto::ReloadRequest {}).await,
    }
    .map_err(status_error)?
    .into_inner();
    if c.json {
        print_json(
            &json!({"version": s.version, "roots": s.roots, "crls": s.crls,
            "tls_version": s.tls_version, "client_crls": s.client_crls,
            "denied_identities": s.denied_identities}),
        );
    } else {
        println!(
            "trust bundle version {}: {} root(s), {} CRL(s)\n\
             TLS files version {}: {} client CRL(s), {} denied identit{}",
            s.version,
            s.roots,
            s.crls,
            s.tls_version,
            s.client_crls,
            s.denied_identities,
            if s.denied_identities == 1 { "y" } else { "ies" }
        );
    }
    Ok(())
}

fn certs(cmd: CertsCommand) -> anyhow::Result<()> {
    match cmd {
        CertsCommand::Init { out } => {
            crate::pki::dev::generate_dev_pki(
                &out,
                &crate::pki::Profile::default(),
                &crate::auth::Role::ALL.map(crate::auth::Role::as_str),
                false,
            )?;
            println!("development PKI written to {}", out.display());
        }
        CertsCommand::Revoke {
            ca,
            ca_key,
            certs,
            previous,
            days,
            out,
        } => {
            let crl = revoke_files(&ca, &ca_key, &certs, previous.as_deref(), days)?;
            std::fs::write(&out, &crl.pem)
                .with_context(|| format!("cannot write {}", out.display()))?;
            println!(
                "CRL number {} revoking [{}] written to {}",
                crl.crl_number,
                crl.revoked_serials_hex.join(", "),
                out.display()
            );
        }
    }
    Ok(())
}

fn evaluator(cmd: EvaluatorCommand) -> anyhow::Result<()> {
    match cmd {
        EvaluatorCommand::Issue {
            ca,
            ca_key,
            model_dir,
            results,
            days,
            out,
            oid_base_arc,
        } => {
            let digest = issue_from_files(
                &ca,
                &ca_key,
                &model_dir,
                &results,
                days,
                oid_base_arc.as_deref(),
                &out,
            )?;
            println!(
                "model-evaluation certificate for {digest} written to {}",
                out.display()
            );
        }
    }
    Ok(())
}

fn read_text(path: &Path, what: &str) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {what} {}", path.display()))
}

/// `warden evaluator issue`: measures the model directory and issues its
/// certificate; writes the chain (leaf, then the evaluator CA). Returns the
/// digest.
pub(crate) fn issue_from_files(
    ca: &Path,
    ca_key: &Path,
    model_dir: &Path,
    results: &Path,
    days: u32,
    oid_base_arc: Option<&str>,
    out: &Path,
) -> anyhow::Result<crate::digest::ModelDigest> {
    let profile = match oid_base_arc {
        Some(arc) => crate::pki::Profile::from_oid_str(arc)?,
        None => crate::pki::Profile::default(),
    };
    let ca_pem = read_text(ca, "evaluator CA certificate")?;
    let ca_key_pem = read_text(ca_key, "evaluator CA key")?;
    let results = crate::pki::EvaluationResults::load(results)?;
    let digest = measure(model_dir, None)?;
    let claims = results.into_claims(digest.to_string())?;
    let now = time::OffsetDateTime::now_utc();
    let issued = crate::pki::issue_evaluation_certificate(
        &ca_pem,
        &ca_key_pem,
        &claims,
        now - time::Duration::minutes(5),
        now + time::Duration::days(i64::from(days)),
        &profile,
    )?;
    std::fs::write(out, format!("{}{}", issued.cert_pem, ca_pem))
        .with_context(|| format!("cannot write {}", out.display()))?;
    Ok(digest)
}

/// `warden certs revoke`: a CRL from the issuing CA revoking the serials of
/// the given certificates (and everything the previous CRL revoked).
fn revoke_files(
    ca: &Path,
    ca_key: &Path,
    certs: &[std::path::PathBuf],
    previous: Option<&Path>,
    days: u32,
) -> anyhow::Result<crate::pki::dev::RevocationList> {
    let ca_pem = read_text(ca, "CA certificate")?;
    let ca_key_pem = read_text(ca_key, "CA key")?;
    let mut serials = Vec::new();
    for c in certs {
        let pem = std::fs::read(c).with_context(|| format!("cannot read {}", c.display()))?;
        let der = rustls_pemfile::certs(&mut pem.as_slice())
            .next()
            .with_context(|| format!("{} holds no PEM certificate", c.display()))??;
        let (_, cert) = x509_parser::parse_x509_certificate(&der)
            .map_err(|e| anyhow::anyhow!("{}: {e}", c.display()))?;
        serials.push(hex::encode(cert.raw_serial()));
    }
    let previous = previous
        .map(|p| std::fs::read(p).with_context(|| format!("cannot read {}", p.display())))
        .transpose()?;
    let now = time::OffsetDateTime::now_utc();
    Ok(crate::pki::dev::revoke(
        &ca_pem,
        &ca_key_pem,
        previous.as_deref(),
        &serials,
        now - time::Duration::minutes(1),
        now + time::Duration::days(i64::from(days)),
    )?)
}
