//! `warden attribute …`: an authority holding legal process asks who
//! deployed a model or ran an endpoint; anyone with the ledger's public key
//! checks a saved answer offline; auditors list every request ever made.
//!
//! The saved form of an answer is [`crate::attribution::Report`] as JSON
//! (`--json`, `--out FILE`); `--verify` reads exactly that and trusts only
//! the verifier key, never the server or the file. The readable report is
//! rendered from the same `Report`, so what is shown is what verifies.
//!
//! Flags are checked here with the server's own rules before connecting, so
//! a malformed request is refused naming the flag and is never recorded.
//!
//! * this module — the flags, their checks, the request and `--verify`.
//! * `report` — the readable report rendered from a [`Report`].
//! * `requests` — `attribute requests`, the auditors' list of every request.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{Args, Subcommand};
use serde::Serialize;

use super::ClientArgs;
use crate::api::convert::timestamp;
use crate::attribution::Report;
use crate::domain::attribution::{
    validate_legal_process, validate_selector, Instrument, LegalProcess, Selector, SelectorInput,
};
use crate::domain::customer::FieldViolation;
use crate::proto;
use crate::proto::attribution_client::AttributionClient;

use super::exit::{ERROR as EXIT_NOT_VERIFIED, USAGE as EXIT_USAGE};

mod report;
mod requests;

pub use report::render_report;
use requests::requests;

const ATTRIBUTE_HELP: &str = "Selectors (exactly one):

  --deployment ID                       that deployment
  --model sha256:<hex> --from T --to T  deployments of the model whose lifetime (admission to
                                        release or the end of its last lease) overlaps
                                        [--from, --to], newest admission first, paged
  --customer ID --from T --to T         the same for a customer's deployments
  --endpoint E --at T                   the deployment that last claimed endpoint E (host, IP or
                                        IP:port as the scheduler reported it; ASCII case ignored)
                                        at or before T, at admission or by a renewal that changed
                                        endpoints; the report says whether it still held E at T

Times are RFC 3339, e.g. 2026-11-23T10:00:00Z.

Every field of the legal process is required and is written to the ledger, with
who asked and what, before anything is read. EMERGENCY requests are answered and
flagged for review. Each page of a model or customer answer is a request of its
own, recorded and accounted for like the first.

Examples:
  warden attribute --deployment dep-… --case-ref CASE-2026-117 \\
      --authority \"Example Cyber Unit\" --jurisdiction DE-BE --instrument court-order \\
      --document order.pdf --out report.json
  warden attribute --verify report.json --vkey certs/dev/ledger.vkey
  warden attribute requests";

const HEADING_SELECTOR: &str = "Selector (exactly one)";
const HEADING_LEGAL: &str = "Legal process (all required)";
const HEADING_ANSWER: &str = "Answer";
const HEADING_VERIFY: &str = "Verify a saved report offline";

/// `warden attribute`: ask (authority), `--verify` a saved report (offline),
/// or `requests` (auditor, authority).
#[derive(Debug, Args)]
#[command(
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    after_long_help = ATTRIBUTE_HELP,
    group(
        clap::ArgGroup::new("selector")
            .required(true)
            .args(["deployment", "model", "customer", "endpoint", "verify"]),
    ),
)]
pub struct AttributeArgs {
    #[command(subcommand)]
    pub command: Option<AttributeCommand>,

    /// Select one deployment by id.
    #[arg(long, help_heading = HEADING_SELECTOR, value_name = "ID")]
    pub deployment: Option<String>,
    /// Select the deployments of a model (`sha256:<64 hex>`) that overlap
    /// --from..--to.
    #[arg(long, help_heading = HEADING_SELECTOR, value_name = "DIGEST", requires_all = ["from", "to"])]
    pub model: Option<String>,
    /// Select the deployments of a customer that overlap --from..--to.
    #[arg(long, help_heading = HEADING_SELECTOR, value_name = "ID", requires_all = ["from", "to"])]
    pub customer: Option<String>,
    /// Select the deployment that last claimed this endpoint at or before
    /// --at (host, IP or IP:port).
    #[arg(long, help_heading = HEADING_SELECTOR, value_name = "ENDPOINT", requires = "at")]
    pub endpoint: Option<String>,
    /// Start of the window (RFC 3339); with --model or --customer.
    #[arg(
        long,
        help_heading = HEADING_SELECTOR,
        value_parser = super::customer::parse_rfc3339,
        value_name = "RFC3339",
        conflicts_with_all = ["deployment", "endpoint"]
    )]
    pub from: Option<i64>,
    /// End of the window (RFC 3339); with --model or --customer.
    #[arg(
        long,
        help_heading = HEADING_SELECTOR,
        value_parser = super::customer::parse_rfc3339,
        value_name = "RFC3339",
        conflicts_with_all = ["deployment", "endpoint"]
    )]
    pub to: Option<i64>,
    /// The time asked about (RFC 3339); with --endpoint.
    #[arg(
        long,
        help_heading = HEADING_SELECTOR,
        value_parser = super::customer::parse_rfc3339,
        value_name = "RFC3339",
        conflicts_with_all = ["deployment", "model", "customer"]
    )]
    pub at: Option<i64>,

    /// The authority's case or docket reference.
    #[arg(long, help_heading = HEADING_LEGAL, value_name = "TEXT", required_unless_present = "verify")]
    pub case_ref: Option<String>,
    /// Who asks, e.g. "Example Cyber Unit".
    #[arg(long, help_heading = HEADING_LEGAL, value_name = "TEXT", required_unless_present = "verify")]
    pub authority: Option<String>,
    /// ISO 3166-1 alpha-2 country, optionally with a subdivision: US, US-CA.
    #[arg(long, help_heading = HEADING_LEGAL, value_name = "CODE", required_unless_present = "verify")]
    pub jurisdiction: Option<String>,
    /// The legal instrument; emergency requests are flagged for review.
    #[arg(long, help_heading = HEADING_LEGAL, value_enum, required_unless_present = "verify")]
    pub instrument: Option<InstrumentArg>,
    /// The instrument's document; its SHA-256 is computed here and sent
    /// (the document itself is not).
    #[arg(
        long,
        help_heading = HEADING_LEGAL,
        value_name = "FILE",
        required_unless_present_any = ["document_sha256", "verify"],
        conflicts_with = "document_sha256"
    )]
    pub document: Option<PathBuf>,
    /// The SHA-256 of the instrument's document (64 hex), instead of
    /// --document.
    #[arg(long, help_heading = HEADING_LEGAL, value_name = "HEX")]
    pub document_sha256: Option<String>,

    /// Deployments per answer, 1-50 (default 10); model and customer only.
    #[arg(long, help_heading = HEADING_ANSWER, value_parser = clap::value_parser!(u32).range(1..=50))]
    pub page_size: Option<u32>,
    /// Continue after this token (printed by the previous page); model and
    /// customer only. The next page is a new request, recorded as one.
    #[arg(long, help_heading = HEADING_ANSWER, conflicts_with_all = ["deployment", "endpoint"])]
    pub page_token: Option<String>,
    /// Also save the report as JSON (the form --verify reads) to FILE.
    #[arg(long, help_heading = HEADING_ANSWER, value_name = "FILE")]
    pub out: Option<PathBuf>,

    /// Check a saved report offline (no server): every entry's inclusion
    /// proof against the signed checkpoint, and every fact shown against
    /// the entries and the records they commit to.
    #[arg(
        long,
        help_heading = HEADING_VERIFY,
        value_name = "REPORT.json",
        requires = "vkey",
        conflicts_with_all = [
            "from", "to", "at", "case_ref", "authority", "jurisdiction", "instrument",
            "document", "document_sha256", "page_size", "page_token", "out",
        ]
    )]
    pub verify: Option<PathBuf>,
    /// Ledger verifier key (text `name+id+key`, or a file holding it, such
    /// as certs/dev/ledger.vkey); with --verify.
    #[arg(long, help_heading = HEADING_VERIFY, value_name = "KEY", requires = "verify")]
    pub vkey: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum AttributeCommand {
    /// Every attribution request ever made, newest first: principal, legal
    /// process, selector, how many deployments were disclosed (auditor,
    /// authority). Disclosed identities appear only as commitments.
    Requests {
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1000))]
        page_size: u32,
        /// Continue after this token (printed by the previous page).
        #[arg(long)]
        page_token: Option<String>,
        /// Follow the pages to the end.
        #[arg(long)]
        all: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum InstrumentArg {
    Subpoena,
    CourtOrder,
    Warrant,
    /// Answered at once and flagged for review.
    Emergency,
}

impl InstrumentArg {
    fn domain(self) -> Instrument {
        match self {
            Self::Subpoena => Instrument::Subpoena,
            Self::CourtOrder => Instrument::CourtOrder,
            Self::Warrant => Instrument::Warrant,
            Self::Emergency => Instrument::Emergency,
        }
    }
}

pub async fn run(c: &ClientArgs, args: AttributeArgs) -> anyhow::Result<i32> {
    if let Some(AttributeCommand::Requests {
        page_size,
        page_token,
        all,
    }) = args.command
    {
        return requests(c, page_size, page_token, all).await;
    }
    if let Some(report) = &args.verify {
        // clap makes --vkey required with --verify.
        let vkey = args.vkey.as_deref().unwrap_or_default();
        return verify_file(c, report, vkey);
    }
    attribute(c, args).await
}

/// The request's flag names, for messages: the server's field names mapped
/// to the flags that carry them.
fn flag_of(field: &str) -> &str {
    match field {
        "legal_process" => "--case-ref, --authority, --jurisdiction, --instrument, --document",
        "legal_process.case_reference" => "--case-ref",
        "legal_process.requesting_authority" => "--authority",
        "legal_process.jurisdiction" => "--jurisdiction",
        "legal_process.instrument" => "--instrument",
        "legal_process.document_sha256" => "--document-sha256",
        "deployment_id" => "--deployment",
        "model.model_digest" => "--model",
        "customer.customer_id" => "--customer",
        "model.from" | "customer.from" => "--from",
        "model.to" | "customer.to" => "--to",
        "endpoint.endpoint" => "--endpoint",
        "endpoint.at" => "--at",
        "page_size" => "--page-size",
        "page_token" => "--page-token",
        "selector" => "--deployment, --model, --customer or --endpoint",
        other => other,
    }
}

fn violations_message(head: &str, v: &[FieldViolation]) -> String {
    let mut msg = head.to_string();
    for f in v {
        msg.push_str(&format!("\n  {}: {}", flag_of(&f.field), f.description));
    }
    msg
}

/// Like `status_error`, but naming flags instead of the API's fields.
fn status_error(s: tonic::Status) -> anyhow::Error {
    use tonic_types::StatusExt as _;
    match s.get_details_bad_request() {
        Some(bad) if !bad.field_violations.is_empty() => {
            let v: Vec<FieldViolation> = bad
                .field_violations
                .into_iter()
                .map(|f| FieldViolation::new(f.field, f.description))
                .collect();
            super::commands::refused(
                s.code(),
                violations_message("the server refused the request (INVALID_ARGUMENT):", &v),
            )
        }
        _ => super::commands::refused(s.code(), format!("{:?}: {}", s.code(), s.message())),
    }
}

/// SHA-256 of a file, lower-case hex, read in a stream.
fn sha256_file(path: &Path) -> anyhow::Result<String> {
    use sha2::Digest as _;
    let mut file = std::fs::File::open(path)
        .with_context(|| format!("--document: cannot read {}", path.display()))?;
    let mut hasher = sha2::Sha256::new();
    std::io::copy(&mut file, &mut hasher)
        .with_context(|| format!("--document: cannot read {}", path.display()))?;
    Ok(hex::encode(hasher.finalize()))
}

/// The request the flags describe, checked by the rules the server applies;
/// `Err` holds every violation, named by flag.
fn build_request(
    args: &AttributeArgs,
    document_sha256: String,
) -> Result<proto::AttributeRequest, Vec<FieldViolation>> {
    use proto::attribute_request::Selector as S;
    let mut v = Vec::new();
    let instrument = args.instrument.map(InstrumentArg::domain);
    let legal = LegalProcess {
        case_reference: args.case_ref.clone().unwrap_or_default(),
        requesting_authority: args.authority.clone().unwrap_or_default(),
        jurisdiction: args.jurisdiction.clone().unwrap_or_default(),
        instrument: instrument.unwrap_or(Instrument::Subpoena),
        document_sha256,
    };
    validate_legal_process(&legal, &mut v);
    if instrument.is_none() {
        v.push(FieldViolation::new("legal_process.instrument", "required"));
    }
    let input = match (
        &args.deployment,
        &args.model,
        &args.customer,
        &args.endpoint,
    ) {
        (Some(d), ..) => SelectorInput::Deployment(d.clone()),
        (_, Some(m), ..) => SelectorInput::Model {
            model_digest: m.clone(),
            from: args.from,
            to: args.to,
        },
        (_, _, Some(c), _) => SelectorInput::Customer {
            customer_id: c.clone(),
            from: args.from,
            to: args.to,
        },
        (.., Some(e)) => SelectorInput::Endpoint {
            endpoint: e.clone(),
            at: args.at,
        },
        _ => SelectorInput::None,
    };
    let selector = validate_selector(input, &mut v);
    if !v.is_empty() {
        return Err(v);
    }
    let ts = |ms: i64| Some(timestamp(ms));
    let selector = selector.map(|s| match s {
        // The endpoint as typed: the server normalises it the same way.
        Selector::Deployment { deployment_id } => S::DeploymentId(deployment_id),
        Selector::Model {
            model_digest,
            from,
            to,
        } => S::Model(proto::ModelSelector {
            model_digest,
            from: ts(from),
            to: ts(to),
        }),
        Selector::Customer {
            customer_id,
            from,
            to,
        } => S::Customer(proto::CustomerSelector {
            customer_id,
            from: ts(from),
            to: ts(to),
        }),
        Selector::Endpoint { endpoint, at } => S::Endpoint(proto::EndpointSelector {
            endpoint,
            at: ts(at),
        }),
    });
    Ok(proto::AttributeRequest {
        legal_process: Some(proto::LegalProcess {
            case_reference: legal.case_reference,
            requesting_authority: legal.requesting_authority,
            jurisdiction: legal.jurisdiction,
            instrument: crate::api::attribution::instrument_to_proto(legal.instrument) as i32,
            document_sha256: legal.document_sha256,
        }),
        selector,
        page_size: args.page_size.unwrap_or(0),
        page_token: args.page_token.clone().unwrap_or_default(),
    })
}

async fn attribute(c: &ClientArgs, args: AttributeArgs) -> anyhow::Result<i32> {
    let document_sha256 = match (&args.document, &args.document_sha256) {
        (Some(path), _) => sha256_file(path)?,
        (None, Some(hex)) => hex.trim().to_ascii_lowercase(),
        (None, None) => String::new(),
    };
    let request = match build_request(&args, document_sha256) {
        Ok(r) => r,
        Err(v) => {
            eprintln!(
                "{}",
                violations_message("error: invalid arguments (nothing was sent):", &v)
            );
            return Ok(EXIT_USAGE);
        }
    };
    let mut client = AttributionClient::new(c.connect("authority").await?);
    let answer = client
        .attribute(request)
        .await
        .map_err(status_error)?
        .into_inner();
    let report = crate::api::attribution::report_from_proto(answer)
        .map_err(|e| anyhow::anyhow!("the server's answer is not a valid report: {e}"))?;
    let json = serde_json::to_string_pretty(&report)?;
    if let Some(out) = &args.out {
        std::fs::write(out, format!("{json}\n"))
            .with_context(|| format!("--out: cannot write {}", out.display()))?;
    }
    if c.json {
        println!("{json}");
    } else {
        print!("{}", render_report(&report));
        if let Some(out) = &args.out {
            println!(
                "saved to {}; check it offline with `warden attribute --verify {} --vkey KEY`",
                out.display(),
                out.display()
            );
        }
    }
    Ok(0)
}

/// `--verify`: offline; the saved report against the verifier key alone.
fn verify_file(c: &ClientArgs, path: &Path, vkey: &str) -> anyhow::Result<i32> {
    let verifier = super::ledger::read_vkey(vkey).context("--vkey")?;
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("--verify: cannot read {}", path.display()))?;
    let outcome = serde_json::from_str::<Report>(&text)
        .map_err(|e| format!("{} is not a saved attribution report: {e}", path.display()))
        .and_then(|report| crate::attribution::verify(&report, &verifier));
    if c.json {
        #[derive(Serialize)]
        struct Outcome<'a> {
            verified: bool,
            summary: Option<&'a str>,
            reason: Option<&'a str>,
        }
        let (summary, reason) = match &outcome {
            Ok(s) => (Some(s.as_str()), None),
            Err(e) => (None, Some(e.as_str())),
        };
        println!(
            "{}",
            serde_json::to_string_pretty(&Outcome {
                verified: outcome.is_ok(),
                summary,
                reason,
            })?
        );
    }
    match outcome {
        Ok(summary) => {
            if !c.json {
                println!("{summary}");
            }
            Ok(0)
        }
        Err(reason) => {
            eprintln!("NOT VERIFIED: {reason}");
            Ok(EXIT_NOT_VERIFIED)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    fn parse(args: &[&str]) -> Result<AttributeArgs, clap::Error> {
        let cli = super::super::Cli::try_parse_from(
            std::iter::once("warden")
                .chain(std::iter::once("attribute"))
                .chain(args.iter().copied()),
        )?;
        match cli.command {
            super::super::Command::Attribute(a) => Ok(a),
            other => panic!("parsed as {other:?}"),
        }
    }

    const LEGAL: [&str; 9] = [
        "--case-ref",
        "CASE-1",
        "--authority",
        "Example Cyber Unit",
        "--jurisdiction",
        "DE-BE",
        "--instrument",
        "court-order",
        "--document-sha256",
    ];

    fn with_legal(extra: &[&'static str]) -> Vec<&'static str> {
        let mut v = LEGAL.to_vec();
        v.push("AB");
        v.extend_from_slice(extra);
        v
    }

    #[test]
    fn exactly_one_selector_with_its_times_is_accepted() {
        assert!(parse(&with_legal(&["--deployment", "dep-1"])).is_ok());
        let window = [
            "--from",
            "2026-01-01T00:00:00Z",
            "--to",
            "2026-02-01T00:00:00Z",
        ];
        let mut model = vec!["--model", "sha256:00"];
        model.extend_from_slice(&window);
        assert!(parse(&with_legal(&model)).is_ok());
        let both = parse(&with_legal(&["--deployment", "d", "--endpoint", "e"])).unwrap_err();
        assert_eq!(both.kind(), clap::error::ErrorKind::ArgumentConflict);
        let e = parse(&with_legal(&["--model", "sha256:00"])).unwrap_err();
        assert!(e.to_string().contains("--from"), "{e}");
        let e = parse(&with_legal(&["--endpoint", "10.0.0.1"])).unwrap_err();
        assert!(e.to_string().contains("--at"), "{e}");
        let e = parse(&with_legal(&[
            "--deployment",
            "d",
            "--at",
            "2026-01-01T00:00:00Z",
        ]))
        .unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::ArgumentConflict);
        let e = parse(&with_legal(&["--endpoint", "e", "--at", "yesterday"])).unwrap_err();
        assert!(e.to_string().contains("RFC 3339"), "{e}");
        let e = parse(&with_legal(&[])).unwrap_err();
        assert!(e.to_string().contains("--deployment"), "{e}");
    }

    #[test]
    fn legal_process_is_required_and_the_document_given_once() {
        let e = parse(&["--deployment", "d"]).unwrap_err();
        let text = e.to_string();
        for flag in [
            "--case-ref",
            "--authority",
            "--jurisdiction",
            "--instrument",
        ] {
            assert!(text.contains(flag), "{flag}: {text}");
        }
        let e = parse(&with_legal(&["--deployment", "d", "--document", "x.pdf"])).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::ArgumentConflict);
        let e = parse(&with_legal(&["--deployment", "d", "--instrument", "fax"]));
        assert!(e.is_err());
    }

    #[test]
    fn verify_and_requests_need_no_legal_process() {
        let a = parse(&["--verify", "r.json", "--vkey", "k"]).unwrap();
        assert_eq!(a.verify.as_deref(), Some(Path::new("r.json")));
        let e = parse(&["--verify", "r.json"]).unwrap_err();
        assert!(e.to_string().contains("--vkey"), "{e}");
        let e = parse(&with_legal(&["--verify", "r.json", "--vkey", "k"])).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::ArgumentConflict);
        let a = parse(&["requests", "--page-size", "5"]).unwrap();
        assert!(matches!(
            a.command,
            Some(AttributeCommand::Requests { page_size: 5, .. })
        ));
        let cli = super::super::Cli::try_parse_from([
            "warden",
            "--json",
            "attribute",
            "requests",
            "--all",
        ])
        .unwrap();
        assert!(cli.client.json);
    }

    #[test]
    fn malformed_values_are_named_by_flag_before_anything_is_sent() {
        let mut args = parse(&with_legal(&[
            "--endpoint",
            " ",
            "--at",
            "2026-01-01T00:00:00Z",
        ]))
        .unwrap();
        args.jurisdiction = Some("Germany".into());
        let v = build_request(&args, "AB".into()).unwrap_err();
        let text = violations_message("error:", &v);
        assert!(text.contains("\n  --jurisdiction: "), "{text}");
        assert!(text.contains("\n  --document-sha256: "), "{text}");
        assert!(text.contains("\n  --endpoint: required"), "{text}");

        let args = parse(&with_legal(&[
            "--endpoint",
            "API.Example.test:443",
            "--at",
            "2026-01-01T00:00:00Z",
        ]))
        .unwrap();
        let r = build_request(&args, "ab".repeat(32)).unwrap();
        let lp = r.legal_process.unwrap();
        assert_eq!(lp.instrument, proto::Instrument::CourtOrder as i32);
        assert_eq!(lp.jurisdiction, "DE-BE");
        match r.selector {
            Some(proto::attribute_request::Selector::Endpoint(e)) => {
                assert_eq!(e.endpoint, "api.example.test:443");
                assert_eq!(e.at.map(|t| t.seconds), Some(1_767_225_600));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_document_is_sent_as_its_sha256() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("order.pdf");
        std::fs::write(&path, b"abc").unwrap();
        assert_eq!(
            sha256_file(&path).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let e = sha256_file(&dir.path().join("missing.pdf")).unwrap_err();
        assert!(
            format!("{e:#}").starts_with("--document: cannot read"),
            "{e:#}"
        );
    }
}
