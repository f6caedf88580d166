//! `warden verify-licence`: the offline check a node (or a person) makes of
//! a licence before serving, through [`crate::licence::verify`], the same
//! function the node agent uses. Exit 0 for a licence that holds here and
//! now, 3 for one that is refused, 1 when it cannot be checked at all.

use std::path::PathBuf;
use std::str::FromStr as _;
use std::time::Duration;

use anyhow::Context as _;
use serde_json::json;

use super::{ClientArgs, EXIT_DENIED};
use crate::digest::ModelDigest;
use crate::licence::{verify, Expectations, Licence};

#[derive(Debug, clap::Args)]
pub struct VerifyLicenceArgs {
    /// File holding the signed licence note.
    pub licence: PathBuf,
    /// Verifier key file or text (`name+id+key`), as `warden dev` prints.
    #[arg(long)]
    pub vkey: String,
    /// Refuse a licence for any other deployment.
    #[arg(long)]
    pub deployment: Option<String>,
    /// Refuse a licence for any other model (`sha256:<hex>`).
    #[arg(long)]
    pub model_digest: Option<String>,
    /// Refuse a licence that does not cover this region.
    #[arg(long)]
    pub region: Option<String>,
    /// Refuse a licence that grants fewer accelerators than this.
    #[arg(long)]
    pub accelerators: Option<u32>,
    /// Seconds an expired licence is still accepted, for the difference
    /// between this machine's clock and warden's.
    #[arg(long, default_value_t = 60)]
    pub skew: u64,
}

pub fn run(c: &ClientArgs, a: VerifyLicenceArgs) -> anyhow::Result<i32> {
    let note = std::fs::read_to_string(&a.licence)
        .with_context(|| format!("cannot read licence {}", a.licence.display()))?;
    let verifier = super::ledger::read_vkey(&a.vkey).context("--vkey")?;
    if let Some(d) = &a.model_digest {
        ModelDigest::from_str(d).context("--model-digest")?;
    }
    let expect = Expectations {
        deployment_id: a.deployment.as_deref(),
        model_digest: a.model_digest.as_deref(),
        region: a.region.as_deref(),
        accelerators: a.accelerators,
        certificate_fingerprint: None,
    };
    let now = crate::clock::now_millis();
    match verify(&note, &verifier, now, Duration::from_secs(a.skew), &expect) {
        Ok(licence) => {
            print_licence(c.json, verifier.name(), &licence);
            Ok(0)
        }
        Err(e) => {
            eprintln!("licence {} refused: {e}", a.licence.display());
            Ok(EXIT_DENIED)
        }
    }
}

fn print_licence(as_json: bool, signer: &str, l: &Licence) {
    let expires = crate::api::convert::rfc3339(l.expires_at);
    if as_json {
        let v = json!({
            "valid": true,
            "signed_by": signer,
            "version": crate::licence::VERSION,
            "deployment_id": l.deployment_id,
            "model_digest": l.model_digest,
            "customer_id": l.customer_id,
            "expires_at": expires,
            "region": l.region,
            "accelerators": l.accelerators,
            "certificate_fingerprint": l.certificate_fingerprint,
        });
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return;
    }
    println!("valid licence signed by {signer}");
    for (label, value) in [
        ("version", crate::licence::VERSION.to_string()),
        ("deployment", l.deployment_id.clone()),
        ("model", l.model_digest.clone()),
        ("customer", l.customer_id.clone()),
        ("expires", expires),
        ("region", l.region.clone()),
        ("accelerators", l.accelerators.to_string()),
        ("certificate", l.certificate_fingerprint.clone()),
    ] {
        println!("{label:<14}{value}");
    }
}
