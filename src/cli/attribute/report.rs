//! The readable attribution report. It is rendered from the same
//! [`Report`] that `--verify` checks, so what is shown is what verifies.

use crate::api::convert::rfc3339;
use crate::attribution::{AttributedDeployment, IdentityRecord, LifecycleEvent, Report};
use crate::domain::attribution::{LegalProcess, Selector};
use crate::domain::customer::{Customer, CustomerKind};
use crate::domain::deployment::DeploymentState;
use crate::domain::UnixMillis;
use crate::ledger::entry::{Entry, Event};

/// RFC 3339 in UTC with milliseconds, so times line up in columns.
pub(super) fn ts(ms: UnixMillis) -> String {
    use time::format_description::BorrowedFormatItem;
    const FORMAT: &[BorrowedFormatItem<'_>] = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|d| d.format(FORMAT).ok())
        .unwrap_or_else(|| rfc3339(ms))
}

fn state_name(s: DeploymentState) -> &'static str {
    match s {
        DeploymentState::Active => "ACTIVE",
        DeploymentState::Released => "RELEASED",
        DeploymentState::Expired => "EXPIRED",
        DeploymentState::Suspended => "SUSPENDED",
        DeploymentState::Terminated => "TERMINATED",
    }
}

/// The request entry's legal process and selector, as the ledger holds them.
fn request_of(report: &Report) -> Option<(LegalProcess, Selector)> {
    let proven = report
        .entries
        .iter()
        .find(|e| e.index == report.request_ledger_index)?;
    match Entry::from_bytes(proven.entry.as_bytes()).ok()?.event {
        Event::AttributionRequested {
            legal_process,
            selector,
            ..
        } => Some((legal_process, selector)),
        _ => None,
    }
}

/// The tree size of a checkpoint note: its second line.
fn checkpoint_size(note: &str) -> Option<u64> {
    note.lines().nth(1)?.trim().parse().ok()
}

/// `label  value` lines with the labels padded to one width.
struct Lines<'a> {
    out: &'a mut String,
    indent: usize,
    width: usize,
}

impl Lines<'_> {
    fn line(&mut self, label: &str, value: impl std::fmt::Display) {
        self.out.push_str(&format!(
            "{:indent$}{label:<width$}  {value}\n",
            "",
            indent = self.indent,
            width = self.width
        ));
    }

    /// A line only when the value is not empty.
    fn some(&mut self, label: &str, value: &str) {
        if !value.is_empty() {
            self.line(label, value);
        }
    }
}

fn address_text(a: &crate::domain::customer::Address) -> String {
    let mut parts: Vec<String> = a.lines.iter().filter(|l| !l.is_empty()).cloned().collect();
    let city = [a.postal_code.as_str(), a.city.as_str()]
        .iter()
        .filter(|s| !s.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(" ");
    for p in [city.as_str(), a.region.as_str(), a.country.as_str()] {
        if !p.is_empty() {
            parts.push(p.to_string());
        }
    }
    parts.join(", ")
}

fn render_identity(out: &mut String, heading: &str, identity: Option<&IdentityRecord>) {
    let Some(i) = identity else {
        out.push_str(&format!(
            "  {heading}  not disclosed (no recorded version)\n"
        ));
        return;
    };
    out.push_str(&format!(
        "  {heading}  version {}, ledger entry {}\n",
        i.version, i.ledger_index
    ));
    let mut l = Lines {
        out,
        indent: 4,
        width: 20,
    };
    let c: &Customer = &i.record;
    if i.purged {
        l.line(
            "purged",
            "retention removed the personal data; only the commitment remains",
        );
    }
    l.some("legal name", &c.legal_name);
    l.line(
        "kind",
        match c.kind {
            CustomerKind::Individual => "individual",
            CustomerKind::Organisation => "organisation",
        },
    );
    l.some("country", &c.country);
    let status = c.status.as_str().to_ascii_lowercase();
    if c.status_reason.is_empty() {
        l.line("status", status);
    } else {
        l.line("status", format!("{status} ({})", c.status_reason));
    }
    let d = &c.details;
    match c.kind {
        CustomerKind::Organisation => {
            l.some("registration number", &d.registration_number);
            l.some("legal form", &d.legal_form);
        }
        CustomerKind::Individual => l.some("date of birth", &d.date_of_birth),
    }
    for (n, a) in d.addresses.iter().enumerate() {
        l.line(if n == 0 { "addresses" } else { "" }, address_text(a));
    }
    l.some("email", &d.email);
    l.some("phone", &d.phone);
    let owners: Vec<&str> = d
        .beneficial_owners
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    l.some("beneficial owners", &owners.join("; "));
    if let Some(v) = &d.verification {
        let at = v.verified_at.map(ts).unwrap_or_default();
        l.some(
            "verification",
            format!("{} by {} {at}", v.method, v.verified_by).trim(),
        );
    }
    l.line(
        "recorded",
        format!("{} by {}", ts(c.updated_at), c.updated_by),
    );
    l.line("commitment", &i.commitment);
}

fn render_lifecycle(out: &mut String, events: &[LifecycleEvent]) {
    let rows: Vec<[String; 6]> = events
        .iter()
        .map(|e| {
            [
                ts(e.at),
                e.kind.as_str().to_string(),
                if e.endpoints.is_empty() {
                    "-".into()
                } else {
                    e.endpoints.join(",")
                },
                e.lease_expires_at.map_or_else(|| "-".into(), ts),
                e.order_id.clone().unwrap_or_else(|| "-".into()),
                e.ledger_index.to_string(),
            ]
        })
        .collect();
    let head = ["TIME", "KIND", "ENDPOINTS", "LEASE UNTIL", "ORDER", "ENTRY"];
    let mut width = head.map(str::len);
    for r in &rows {
        for (w, cell) in width.iter_mut().zip(r) {
            *w = (*w).max(cell.len());
        }
    }
    for r in std::iter::once(head.map(String::from)).chain(rows) {
        let mut line = String::from("   ");
        for (i, cell) in r.iter().enumerate() {
            if i + 1 == r.len() {
                line.push_str(&format!(" {cell:>w$}", w = width[i]));
            } else {
                line.push_str(&format!(" {cell:<w$} ", w = width[i]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
}

fn render_deployment(out: &mut String, d: &AttributedDeployment, endpoint_asked: bool) {
    out.push_str(&format!("\ndeployment {}\n", d.deployment_id));
    let mut l = Lines {
        out: &mut *out,
        indent: 2,
        width: 14,
    };
    l.line("customer", &d.customer_id);
    l.line("model digest", &d.model_digest);
    l.line("admitted by", &d.admitted_by);
    l.line("state", state_name(d.state));
    let w = &d.workload;
    l.line(
        "workload",
        format!(
            "region {}, cluster {}, node {}, {} accelerator(s){}",
            w.region,
            w.cluster,
            w.node,
            w.accelerator_count,
            if w.accelerator_type.is_empty() {
                String::new()
            } else {
                format!(" {}", w.accelerator_type)
            }
        ),
    );
    if endpoint_asked {
        out.push_str(&format!(
            "  held endpoint at the time asked: {}\n",
            if d.held_endpoint { "yes" } else { "no" }
        ));
    }
    out.push_str("  certificate\n");
    let cert = &d.certificate;
    let mut l = Lines {
        out: &mut *out,
        indent: 4,
        width: 13,
    };
    l.line("developer", &cert.developer);
    l.line("model name", &cert.model_name);
    l.line("model version", &cert.model_version);
    l.line("evaluator", &cert.evaluator);
    l.line("serial", &cert.serial);
    l.line("fingerprint", &cert.fingerprint);
    render_identity(
        out,
        "identity at admission",
        d.identity_at_admission.as_ref(),
    );
    match (&d.identity_at_admission, &d.identity_current) {
        (Some(then), Some(now)) if then.version == now.version => out.push_str(&format!(
            "  identity now  version {}, unchanged since admission\n",
            now.version
        )),
        (_, now) => render_identity(out, "identity now", now.as_ref()),
    }
    out.push_str("  lifecycle\n");
    render_lifecycle(out, &d.lifecycle);
}

/// The report as people read it. Everything shown comes from the report,
/// the request's legal process and selector from its ledger entry.
pub fn render_report(report: &Report) -> String {
    let mut out = String::new();
    let request = request_of(report);
    let mut l = Lines {
        out: &mut out,
        indent: 0,
        width: 16,
    };
    l.line("request", &report.request_id);
    l.line("request entry", report.request_ledger_index);
    if report.flagged_for_review {
        out.push_str("FLAGGED FOR REVIEW (emergency)\n");
    }
    let mut l = Lines {
        out: &mut out,
        indent: 0,
        width: 16,
    };
    if let Some((lp, selector)) = &request {
        l.line("asked", selector.describe(rfc3339));
        l.line("instrument", lp.instrument.as_str());
        l.line("case reference", &lp.case_reference);
        l.line("authority", &lp.requesting_authority);
        l.line("jurisdiction", &lp.jurisdiction);
        l.line("document sha256", &lp.document_sha256);
    }
    l.line("answered", ts(report.answered_at));
    l.line("disclosure entry", report.disclosure_ledger_index);
    if report.deployments.is_empty() {
        match &request {
            Some((_, selector)) => out.push_str(&format!(
                "\nno deployment matched: {}\n",
                selector.describe(rfc3339)
            )),
            None => out.push_str("\nno deployment matched\n"),
        }
    }
    let endpoint_asked = matches!(request, Some((_, Selector::Endpoint { .. })));
    for d in &report.deployments {
        render_deployment(&mut out, d, endpoint_asked);
    }
    out.push('\n');
    match checkpoint_size(&report.checkpoint) {
        Some(size) => out.push_str(&format!(
            "evidence: {} ledger entries proved against checkpoint size {size}\n",
            report.entries.len()
        )),
        None => out.push_str(&format!(
            "evidence: {} ledger entries; the checkpoint is unreadable\n",
            report.entries.len()
        )),
    }
    if !report.next_page_token.is_empty() {
        out.push_str(&format!(
            "more: --page-token {} (the next page is a request of its own)\n",
            report.next_page_token
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checkpoint_size_is_its_second_line() {
        assert_eq!(
            checkpoint_size("warden.dev/ledger\n42\nabc=\n\n— sig\n"),
            Some(42)
        );
        assert_eq!(checkpoint_size("origin only"), None);
    }
}
