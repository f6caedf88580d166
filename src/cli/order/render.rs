//! How `warden order` prints orders, list rows and events: aligned text
//! for people, and one stable JSON shape (`--json`) for programs.

use serde::Serialize;

use super::kind_word;
use crate::api::convert::{millis, rfc3339};
use crate::proto;

fn enum_name(name: Option<&'static str>, prefix: &str) -> &'static str {
    name.map_or("UNKNOWN", |n| n.strip_prefix(prefix).unwrap_or(n))
}

fn state_name(s: i32) -> &'static str {
    enum_name(
        proto::OrderState::try_from(s).ok().map(|s| s.as_str_name()),
        "ORDER_STATE_",
    )
}

fn action_name(a: i32) -> &'static str {
    enum_name(
        proto::OrderAction::try_from(a)
            .ok()
            .map(|a| a.as_str_name()),
        "ORDER_ACTION_",
    )
}

fn event_name(k: i32) -> &'static str {
    enum_name(
        proto::OrderEventKind::try_from(k)
            .ok()
            .map(|k| k.as_str_name()),
        "ORDER_EVENT_KIND_",
    )
}

/// RFC 3339 in UTC, always with milliseconds, so times line up in columns.
fn ts(t: Option<&prost_types::Timestamp>) -> Option<String> {
    use time::format_description::BorrowedFormatItem;
    const FORMAT: &[BorrowedFormatItem<'_>] = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    t.map(|t| {
        let ms = millis(t);
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
            .ok()
            .and_then(|d| d.format(FORMAT).ok())
            .unwrap_or_else(|| rfc3339(ms))
    })
}

/// `customer acme-ai`.
fn target_text(t: Option<&proto::OrderTarget>) -> String {
    t.map_or_else(
        || "-".to_string(),
        |t| format!("{} {}", kind_word(t.kind), t.value),
    )
}

/// A waiting time as people read it: `45s`, `3m 12s`, `2h 5m`, `3d 4h`.
pub fn human_duration(secs: u64) -> String {
    let (d, h, m, s) = (
        secs / 86_400,
        secs % 86_400 / 3_600,
        secs % 3_600 / 60,
        secs % 60,
    );
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else if m > 0 {
        format!("{m}m {s}s")
    } else {
        format!("{s}s")
    }
}

/// An order as `--json` prints it.
#[derive(Debug, Serialize)]
pub(super) struct OrderView {
    order_id: String,
    state: &'static str,
    action: &'static str,
    target: TargetView,
    reason: String,
    legal_basis: String,
    expires_at: Option<String>,
    issued_by: String,
    issued_at: Option<String>,
    quorum: u32,
    approvals: Vec<ApprovalView>,
    activated_at: Option<String>,
    matched_deployments: Vec<String>,
    acks: Vec<AckView>,
    unacknowledged: Vec<PendingView>,
    lift_quorum: u32,
    lift_approvals: Vec<ApprovalView>,
    lift_reason: String,
    ended_at: Option<String>,
}

#[derive(Debug, Serialize)]
struct TargetView {
    /// As `--target` takes it: deployment, model, customer, certificate,
    /// evaluator.
    kind: &'static str,
    value: String,
}

#[derive(Debug, Serialize)]
struct ApprovalView {
    principal: String,
    at: Option<String>,
}

#[derive(Debug, Serialize)]
struct AckView {
    deployment_id: String,
    principal: String,
    stopped_at: Option<String>,
    outcome: String,
    at: Option<String>,
}

#[derive(Debug, Serialize)]
struct PendingView {
    deployment_id: String,
    waiting_seconds: u64,
}

fn approvals_view(a: &[proto::Approval]) -> Vec<ApprovalView> {
    a.iter()
        .map(|a| ApprovalView {
            principal: a.principal.clone(),
            at: ts(a.at.as_ref()),
        })
        .collect()
}

pub(super) fn order_view(o: &proto::Order) -> OrderView {
    let target = o.target.clone().unwrap_or_default();
    OrderView {
        order_id: o.order_id.clone(),
        state: state_name(o.state),
        action: action_name(o.action),
        target: TargetView {
            kind: kind_word(target.kind),
            value: target.value,
        },
        reason: o.reason.clone(),
        legal_basis: o.legal_basis.clone(),
        expires_at: ts(o.expires_at.as_ref()),
        issued_by: o.issued_by.clone(),
        issued_at: ts(o.issued_at.as_ref()),
        quorum: o.quorum,
        approvals: approvals_view(&o.approvals),
        activated_at: ts(o.activated_at.as_ref()),
        matched_deployments: o.matched_deployments.clone(),
        acks: o
            .acks
            .iter()
            .map(|a| AckView {
                deployment_id: a.deployment_id.clone(),
                principal: a.principal.clone(),
                stopped_at: ts(a.stopped_at.as_ref()),
                outcome: a.outcome.clone(),
                at: ts(a.at.as_ref()),
            })
            .collect(),
        unacknowledged: o
            .unacknowledged
            .iter()
            .map(|p| PendingView {
                deployment_id: p.deployment_id.clone(),
                waiting_seconds: p.waiting_seconds,
            })
            .collect(),
        lift_quorum: o.lift_quorum,
        lift_approvals: approvals_view(&o.lift_approvals),
        lift_reason: o.lift_reason.clone(),
        ended_at: ts(o.ended_at.as_ref()),
    }
}

/// Readable text of an order: one labelled line per fact, lists indented
/// under their label.
// One labelled line per fact of an order, in display order: a table, not
// logic.
pub fn render_order(o: &proto::Order) -> String {
    let mut lines: Vec<(String, String)> = Vec::new();
    let mut add = |label: &str, value: String| lines.push((label.to_string(), value));
    let state = state_name(o.state);
    add("order", o.order_id.clone());
    add("state", state.to_string());
    add("action", action_name(o.action).to_string());
    add("target", target_text(o.target.as_ref()));
    add("reason", o.reason.clone());
    if !o.legal_basis.is_empty() {
        add("legal basis", o.legal_basis.clone());
    }
    add(
        "expires",
        ts(o.expires_at.as_ref()).unwrap_or_else(|| {
            if matches!(state, "PENDING" | "ACTIVE") {
                "never (until lifted)".into()
            } else {
                "never".into()
            }
        }),
    );
    add(
        "issued",
        format!(
            "{} by {}",
            ts(o.issued_at.as_ref()).unwrap_or_default(),
            o.issued_by
        ),
    );
    let approved = o.approvals.len();
    let quorum = o.quorum as usize;
    let mut summary = format!("{approved} of {quorum}");
    if state == "PENDING" && approved < quorum {
        summary.push_str(&format!(
            "; needs {} more: `warden order approve {}` by another operator or authority",
            quorum - approved,
            o.order_id
        ));
    }
    add("approvals", summary);
    for a in &o.approvals {
        add(
            "",
            format!("{}  {}", a.principal, ts(a.at.as_ref()).unwrap_or_default()),
        );
    }
    if let Some(at) = ts(o.activated_at.as_ref()) {
        add("activated", at);
    }
    if o.activated_at.is_some() {
        add(
            "matched",
            match o.matched_deployments.len() {
                0 => "no deployments (none matching was running)".to_string(),
                1 => "1 deployment".to_string(),
                n => format!("{n} deployments"),
            },
        );
        for d in &o.matched_deployments {
            add("", d.clone());
        }
    }
    if !o.acks.is_empty() {
        add("acknowledged", o.acks.len().to_string());
        for a in &o.acks {
            add(
                "",
                format!(
                    "{}  {} at {} by {}",
                    a.deployment_id,
                    a.outcome,
                    ts(a.stopped_at.as_ref()).unwrap_or_default(),
                    a.principal
                ),
            );
        }
    }
    if !o.unacknowledged.is_empty() {
        add("unacknowledged", o.unacknowledged.len().to_string());
        for p in &o.unacknowledged {
            add(
                "",
                format!(
                    "{}  waiting {}",
                    p.deployment_id,
                    human_duration(p.waiting_seconds)
                ),
            );
        }
    }
    if state == "ACTIVE" || !o.lift_approvals.is_empty() {
        let lifted = o.lift_approvals.len();
        let lq = o.lift_quorum as usize;
        let mut summary = format!("{lifted} of {lq} approvals");
        if state == "ACTIVE" && lifted > 0 && lifted < lq {
            summary.push_str(&format!(
                "; needs {} more: `warden order lift {}` by another operator or authority",
                lq - lifted,
                o.order_id
            ));
        }
        add("lift", summary);
        for a in &o.lift_approvals {
            add(
                "",
                format!("{}  {}", a.principal, ts(a.at.as_ref()).unwrap_or_default()),
            );
        }
        if !o.lift_reason.is_empty() {
            add("lift reason", o.lift_reason.clone());
        }
    }
    if let Some(at) = ts(o.ended_at.as_ref()) {
        add("ended", at);
    }
    let width = lines.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
    let mut out = String::new();
    for (label, value) in lines {
        if label.is_empty() {
            out.push_str(&format!("{:width$}    {value}\n", ""));
        } else {
            out.push_str(&format!("{label:<width$}  {value}\n"));
        }
    }
    out
}

/// One line of `order list`.
pub(super) fn list_row(o: &proto::Order) -> String {
    let mut row = format!(
        "{}  {:<7}  {:<9}  {}  approvals {}/{}",
        o.order_id,
        state_name(o.state),
        action_name(o.action),
        target_text(o.target.as_ref()),
        o.approvals.len(),
        o.quorum
    );
    if o.activated_at.is_some() {
        row.push_str(&format!("  matched {}", o.matched_deployments.len()));
    }
    if !o.unacknowledged.is_empty() {
        row.push_str(&format!("  unacknowledged {}", o.unacknowledged.len()));
    }
    if !o.lift_approvals.is_empty() {
        row.push_str(&format!(
            "  lift {}/{}",
            o.lift_approvals.len(),
            o.lift_quorum
        ));
    }
    row
}

/// One line of `order watch`.
pub fn event_line(e: &proto::OrderEvent) -> String {
    let order = e.order.clone().unwrap_or_default();
    let deployments = if e.deployment_ids.is_empty() {
        "-".to_string()
    } else {
        e.deployment_ids.join(" ")
    };
    format!(
        "{}  {}  {:<14}  {}  {:<9}  {}  deployments: {deployments}",
        e.revision,
        ts(e.at.as_ref()).unwrap_or_default(),
        event_name(e.kind),
        order.order_id,
        action_name(order.action),
        target_text(order.target.as_ref()),
    )
}

/// One event as `order watch --json` prints it (one line).
pub fn event_json(e: &proto::OrderEvent) -> anyhow::Result<String> {
    #[derive(Serialize)]
    struct EventView {
        revision: u64,
        kind: &'static str,
        at: Option<String>,
        order_id: String,
        action: &'static str,
        target: TargetView,
        state: &'static str,
        deployment_ids: Vec<String>,
        order: OrderView,
    }
    let order = order_view(&e.order.clone().unwrap_or_default());
    let view = EventView {
        revision: e.revision,
        kind: event_name(e.kind),
        at: ts(e.at.as_ref()),
        order_id: order.order_id.clone(),
        action: order.action,
        target: TargetView {
            kind: order.target.kind,
            value: order.target.value.clone(),
        },
        state: order.state,
        deployment_ids: e.deployment_ids.clone(),
        order,
    };
    Ok(serde_json::to_string(&view)?)
}

pub(super) fn print_order(as_json: bool, o: &proto::Order) -> anyhow::Result<()> {
    if as_json {
        println!("{}", serde_json::to_string_pretty(&order_view(o))?);
    } else {
        print!("{}", render_order(o));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::convert::timestamp;

    #[test]
    fn waiting_times_read_naturally() {
        assert_eq!(human_duration(45), "45s");
        assert_eq!(human_duration(192), "3m 12s");
        assert_eq!(human_duration(7_500), "2h 5m");
        assert_eq!(human_duration(3 * 86_400 + 4 * 3_600 + 59), "3d 4h");
    }

    fn at(ms: i64) -> Option<prost_types::Timestamp> {
        Some(timestamp(ms))
    }

    fn active_order() -> proto::Order {
        proto::Order {
            order_id: "ord-1".into(),
            target: Some(proto::OrderTarget {
                kind: proto::OrderTargetKind::Customer as i32,
                value: "acme-ai".into(),
            }),
            action: proto::OrderAction::Suspend as i32,
            reason: "abuse report".into(),
            state: proto::OrderState::Active as i32,
            issued_by: "spiffe://warden.dev/operator/dev".into(),
            issued_at: at(0),
            approvals: vec![proto::Approval {
                principal: "spiffe://warden.dev/operator/dev".into(),
                at: at(0),
            }],
            quorum: 1,
            activated_at: at(0),
            matched_deployments: vec!["dep-a".into(), "dep-b".into()],
            acks: vec![proto::Acknowledgement {
                deployment_id: "dep-a".into(),
                principal: "spiffe://warden.dev/scheduler/dev".into(),
                stopped_at: at(1_000),
                outcome: "stopped".into(),
                at: at(2_000),
            }],
            unacknowledged: vec![proto::PendingAck {
                deployment_id: "dep-b".into(),
                waiting_seconds: 192,
            }],
            lift_approvals: vec![proto::Approval {
                principal: "spiffe://warden.dev/operator/dev".into(),
                at: at(3_000),
            }],
            lift_quorum: 2,
            lift_reason: "resolved".into(),
            ..proto::Order::default()
        }
    }

    #[test]
    fn an_order_reads_with_its_quorum_deployments_acks_and_lift() {
        let text = render_order(&active_order());
        assert!(
            text.starts_with("order           ord-1\nstate           ACTIVE\n"),
            "{text}"
        );
        assert!(
            text.contains("\ntarget          customer acme-ai\n"),
            "{text}"
        );
        assert!(text.contains("\napprovals       1 of 1\n"), "{text}");
        assert!(text.contains("\nmatched         2 deployments\n"), "{text}");
        assert!(text.contains("\n                  dep-a\n"), "{text}");
        assert!(
            text.contains("dep-a  stopped at 1970-01-01T00:00:01.000Z by spiffe://"),
            "{text}"
        );
        assert!(
            text.contains("\nunacknowledged  1\n                  dep-b  waiting 3m 12s\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "\nlift            1 of 2 approvals; needs 1 more: `warden order lift ord-1` by \
                 another operator or authority\n"
            ),
            "{text}"
        );
        assert!(
            text.ends_with(
                "\n                  spiffe://warden.dev/operator/dev  1970-01-01T00:00:03.000Z\n\
                 lift reason     resolved\n"
            ),
            "{text}"
        );
        assert!(text.contains("expires         never"), "{text}");

        let pending = proto::Order {
            state: proto::OrderState::Pending as i32,
            action: proto::OrderAction::Terminate as i32,
            quorum: 2,
            activated_at: None,
            matched_deployments: vec![],
            acks: vec![],
            unacknowledged: vec![],
            lift_approvals: vec![],
            ..active_order()
        };
        let text = render_order(&pending);
        assert!(text.contains("state      PENDING\n"), "{text}");
        assert!(
            text.contains("approvals  1 of 2; needs 1 more: `warden order approve ord-1`"),
            "{text}"
        );
        assert!(!text.contains("matched"), "{text}");
        assert!(!text.contains("\nlift"), "{text}");
    }

    #[test]
    fn an_event_is_one_line_or_one_json_object() {
        let e = proto::OrderEvent {
            revision: 7,
            kind: proto::OrderEventKind::Activated as i32,
            order: Some(active_order()),
            deployment_ids: vec!["dep-a".into(), "dep-b".into()],
            at: at(0),
        };
        let line = event_line(&e);
        assert_eq!(
            line,
            "7  1970-01-01T00:00:00.000Z  ACTIVATED       ord-1  SUSPEND    customer acme-ai  \
             deployments: dep-a dep-b"
        );
        let json = event_json(&e).unwrap();
        assert!(!json.contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["revision"], 7);
        assert_eq!(v["kind"], "ACTIVATED");
        assert_eq!(v["target"]["kind"], "customer");
        assert_eq!(v["deployment_ids"][1], "dep-b");
        assert_eq!(v["order"]["unacknowledged"][0]["waiting_seconds"], 192);
    }
}
