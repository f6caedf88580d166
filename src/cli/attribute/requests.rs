//! `warden attribute requests`: the accounting of every attribution request
//! ever made, for auditors, as text lines or `--json` pages.

use serde::Serialize;

use super::report::ts;
use super::status_error;
use crate::api::convert::millis;
use crate::cli::ClientArgs;
use crate::domain::attribution::Instrument;
use crate::proto;
use crate::proto::attribution_client::AttributionClient;

/// A request as `attribute requests --json` prints it.
#[derive(Debug, Serialize)]
struct RequestView {
    request_id: String,
    requested_at: Option<String>,
    principal: String,
    case_reference: String,
    requesting_authority: String,
    jurisdiction: String,
    instrument: &'static str,
    document_sha256: String,
    selector: String,
    flagged_for_review: bool,
    request_ledger_index: u64,
    answered: bool,
    disclosure_ledger_index: u64,
    deployments_disclosed: u32,
    identities_disclosed: Vec<IdentityView>,
}

#[derive(Debug, Serialize)]
struct IdentityView {
    customer_id: String,
    version: u64,
    commitment: String,
}

fn instrument_name(i: i32) -> &'static str {
    crate::api::attribution::instrument_from_proto(i).map_or("UNKNOWN", Instrument::as_str)
}

fn request_view(r: &proto::AttributionRequestRecord) -> RequestView {
    let lp = r.legal_process.clone().unwrap_or_default();
    RequestView {
        request_id: r.request_id.clone(),
        requested_at: r.requested_at.as_ref().map(|t| ts(millis(t))),
        principal: r.principal.clone(),
        case_reference: lp.case_reference,
        requesting_authority: lp.requesting_authority,
        jurisdiction: lp.jurisdiction,
        instrument: instrument_name(lp.instrument),
        document_sha256: lp.document_sha256,
        selector: r.selector.clone(),
        flagged_for_review: r.flagged_for_review,
        request_ledger_index: r.request_ledger_index,
        answered: r.answered,
        disclosure_ledger_index: r.disclosure_ledger_index,
        deployments_disclosed: r.deployments_disclosed,
        identities_disclosed: r
            .identities_disclosed
            .iter()
            .map(|i| IdentityView {
                customer_id: i.customer_id.clone(),
                version: i.version,
                commitment: i.commitment.clone(),
            })
            .collect(),
    }
}

/// One line: time, id, principal, instrument, case, selector, disclosed,
/// flag.
fn request_line(r: &RequestView) -> String {
    let disclosed = if r.answered {
        format!("disclosed {}", r.deployments_disclosed)
    } else {
        "unanswered".to_string()
    };
    let mut line = format!(
        "{}  {}  {}  {:<11}  {:?}  {}  {disclosed}",
        r.requested_at.as_deref().unwrap_or("-"),
        r.request_id,
        r.principal,
        r.instrument,
        r.case_reference,
        r.selector,
    );
    if r.flagged_for_review {
        line.push_str("  FLAGGED");
    }
    line
}

pub(super) async fn requests(
    c: &ClientArgs,
    page_size: u32,
    page_token: Option<String>,
    all: bool,
) -> anyhow::Result<i32> {
    let mut client = AttributionClient::new(c.connect("auditor").await?);
    let mut records = Vec::new();
    let mut token = page_token.unwrap_or_default();
    loop {
        let r = client
            .list_attribution_requests(proto::ListAttributionRequestsRequest {
                page_size,
                page_token: token,
            })
            .await
            .map_err(status_error)?
            .into_inner();
        records.extend(r.requests);
        token = r.next_page_token;
        if !all || token.is_empty() {
            break;
        }
    }
    let views: Vec<RequestView> = records.iter().map(request_view).collect();
    if c.json {
        #[derive(Serialize)]
        struct Page {
            requests: Vec<RequestView>,
            next_page_token: String,
        }
        let page = Page {
            requests: views,
            next_page_token: token,
        };
        println!("{}", serde_json::to_string_pretty(&page)?);
    } else {
        for v in &views {
            println!("{}", request_line(v));
        }
        if !token.is_empty() {
            println!("more: --page-token {token} (or --all)");
        }
    }
    Ok(0)
}
