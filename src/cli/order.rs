//! `warden order …`: kill orders. Operators and authorities issue, approve
//! and lift them (each under the quorum the server's `[orders]` config sets);
//! schedulers watch them as a stream and acknowledge the workloads they
//! stopped.
//!
//! `order watch` is meant to run for as long as the scheduler does: it
//! prints each event as it arrives and, whenever the stream ends or the
//! connection drops, reconnects from the revision of the last event it
//! printed, so it neither misses nor repeats one.

use std::io::Write as _;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use serde::Serialize;
use tonic::transport::Channel;

use super::commands::status_error;
use super::customer::parse_rfc3339;
use super::ClientArgs;
use crate::api::convert::{millis, rfc3339, timestamp};
use crate::proto;
use crate::proto::orders_client::OrdersClient;

/// How targets are written, shown by `--help` of the commands that take one.
macro_rules! target_help {
    () => {
        "TARGET is KIND=VALUE (split at the first '='):

  deployment=dep-…              one deployment
  model=sha256:<64 hex>         every deployment of the model with this digest
  customer=acme-ai              every deployment of this customer
  certificate=<64 hex>          every deployment under this evaluation certificate
                                (SHA-256 of its DER, lower-case hex; `warden deployment
                                get` shows it as certificate_fingerprint)
  evaluator=<issuer subject>    every deployment certified by this evaluator CA, as
                                `warden deployment get` shows it (quote it)"
    };
}

const TARGET_HELP: &str = target_help!();

const ISSUE_HELP: &str = concat!(
    target_help!(),
    "

Actions:
  suspend     matched deployments are suspended (renewals denied) and new admissions
              matching the target are denied, until the order is lifted or expires
  terminate   matched deployments end for good; for targets other than a deployment,
              new admissions are also denied until the order is lifted or expires

The issuer's approval counts towards the action's quorum (the server's [orders]
suspend_quorum / terminate_quorum; by default 1 and 2). Below quorum the order is
PENDING until other operators or authorities run `warden order approve ORDER_ID`;
at quorum it is ACTIVE and every matched deployment changes state at that moment.

Examples:
  warden order issue --target customer=acme-ai --action suspend --reason \"abuse report 1142\"
  warden order issue --target model=sha256:3a94… --action terminate \\
      --reason \"evaluation withdrawn\" --legal-basis \"regulator notice 2026-17\" --expires-in 30d"
);

#[derive(Debug, Subcommand)]
pub enum OrderCommand {
    /// Issue a suspend or terminate order (operator; authority with
    /// `--role authority`).
    #[command(after_long_help = ISSUE_HELP)]
    Issue(IssueArgs),
    /// Approve a pending order; the approval that completes quorum makes it
    /// ACTIVE (operator or authority, distinct from earlier approvers).
    Approve { order_id: String },
    /// Request, or approve, lifting an active order; it is LIFTED once the
    /// lift quorum of distinct operators or authorities is met.
    Lift {
        order_id: String,
        /// Why (kept with the order; the first requester's reason counts).
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Show an order: state, quorum and approvals, matched deployments,
    /// acknowledgements and the deployments still unacknowledged.
    Get { order_id: String },
    /// List orders, by order id.
    #[command(after_long_help = TARGET_HELP)]
    List {
        #[arg(long, value_enum)]
        state: Option<StateArg>,
        /// Only orders on this target: KIND=VALUE, e.g. customer=acme-ai
        /// (`--help` lists the kinds).
        #[arg(long, value_parser = parse_target, value_name = "TARGET")]
        target: Option<TargetArg>,
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1000))]
        page_size: u32,
        /// Continue after this token (printed by the previous page).
        #[arg(long)]
        page_token: Option<String>,
        /// Follow the pages to the end.
        #[arg(long)]
        all: bool,
    },
    /// Report that a deployment an order matched has stopped (scheduler; only
    /// for deployments it admitted).
    Ack {
        order_id: String,
        deployment_id: String,
        /// When the workload stopped, RFC 3339 (default: now).
        #[arg(long, value_parser = parse_rfc3339, value_name = "RFC3339")]
        stopped_at: Option<i64>,
        /// What happened to it, e.g. stopped, drained, not-running.
        #[arg(long, default_value = "stopped")]
        outcome: String,
    },
    /// Print order events as they happen (scheduler). Replays the events
    /// after --since first. When the stream ends or the connection drops it
    /// reconnects from the last event printed (backing off up to 5 s,
    /// forever); Ctrl-C stops it (exit status 0).
    #[command(after_long_help = WATCH_HELP)]
    Watch {
        /// Start after this revision (0 replays every event).
        #[arg(long, default_value_t = 0)]
        since: u64,
    },
}

const WATCH_HELP: &str = "Each event is one line:

  REVISION  TIME  KIND  ORDER_ID  ACTION  TARGET  deployments: IDS

KIND is ISSUED, APPROVED, ACTIVATED, LIFT_REQUESTED, LIFTED, EXPIRED or ACKNOWLEDGED.
The deployments are those the event affects: ACTIVATED, those suspended or
terminated (stop them, then `warden order ack ORDER_ID DEPLOYMENT_ID`); LIFTED and
EXPIRED, those released; ACKNOWLEDGED, the one acknowledged. With --json each event
is one JSON object per line, with the whole order under \"order\".

Reconnection notices go to stderr. A watcher that stops can continue later with
--since set to the last revision it handled.";

#[derive(Debug, Args)]
pub struct IssueArgs {
    /// What to stop: KIND=VALUE, KIND one of deployment, model, customer,
    /// certificate, evaluator; e.g. customer=acme-ai (`--help` explains each).
    #[arg(long, value_parser = parse_target, value_name = "TARGET")]
    pub target: TargetArg,
    #[arg(long, value_enum)]
    pub action: ActionArg,
    /// Why (required; kept with the order, its hash goes to the ledger).
    #[arg(long)]
    pub reason: String,
    /// The legal instrument or policy the order rests on.
    #[arg(long, default_value = "")]
    pub legal_basis: String,
    /// The order ends by itself at this time (RFC 3339).
    #[arg(
        long,
        value_parser = parse_rfc3339,
        value_name = "RFC3339",
        conflicts_with = "expires_in"
    )]
    pub expires_at: Option<i64>,
    /// The order ends by itself this long from now: e.g. 90m, 2h, 7d, 1h30m.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub expires_in: Option<Duration>,
    /// Print only the order id.
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ActionArg {
    /// Stop matched deployments and deny new admissions until lifted.
    Suspend,
    /// End matched deployments for good (broad targets also deny new
    /// admissions until lifted).
    Terminate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StateArg {
    Pending,
    Active,
    Lifted,
    Expired,
}

/// `--target KIND=VALUE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetArg {
    pub kind: proto::OrderTargetKind,
    pub value: String,
}

impl TargetArg {
    fn to_proto(&self) -> proto::OrderTarget {
        proto::OrderTarget {
            kind: self.kind as i32,
            value: self.value.clone(),
        }
    }
}

/// The word `--target` uses for a target kind.
fn kind_word(kind: i32) -> &'static str {
    match proto::OrderTargetKind::try_from(kind) {
        Ok(proto::OrderTargetKind::Deployment) => "deployment",
        Ok(proto::OrderTargetKind::ModelDigest) => "model",
        Ok(proto::OrderTargetKind::Customer) => "customer",
        Ok(proto::OrderTargetKind::Certificate) => "certificate",
        Ok(proto::OrderTargetKind::Evaluator) => "evaluator",
        _ => "unknown",
    }
}

/// Parses `KIND=VALUE`, splitting at the first `=` (an evaluator's subject
/// has `=` in it).
pub fn parse_target(s: &str) -> Result<TargetArg, String> {
    const EXPECTED: &str = "expected KIND=VALUE with KIND one of deployment, model, customer, \
                            certificate, evaluator (e.g. customer=acme-ai)";
    let Some((kind, value)) = s.split_once('=') else {
        return Err(format!("{s:?}: {EXPECTED}"));
    };
    let kind = match kind.trim().to_ascii_lowercase().as_str() {
        "deployment" => proto::OrderTargetKind::Deployment,
        "model" | "model-digest" | "model_digest" => proto::OrderTargetKind::ModelDigest,
        "customer" => proto::OrderTargetKind::Customer,
        "certificate" | "cert" => proto::OrderTargetKind::Certificate,
        "evaluator" => proto::OrderTargetKind::Evaluator,
        other => return Err(format!("unknown target kind {other:?}: {EXPECTED}")),
    };
    if value.is_empty() {
        return Err(format!("{s:?}: the VALUE after '=' is empty; {EXPECTED}"));
    }
    Ok(TargetArg {
        kind,
        value: value.to_string(),
    })
}

/// Parses a duration such as `90s`, `30m`, `2h`, `7d` or `1h30m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let err = || format!("{s:?} is not a duration such as 90s, 30m, 2h, 7d or 1h30m");
    let mut total: u64 = 0;
    let mut digits = String::new();
    for ch in s.trim().chars() {
        if ch.is_ascii_digit() {
            digits.push(ch);
            continue;
        }
        let unit: u64 = match ch {
            's' => 1,
            'm' => 60,
            'h' => 3_600,
            'd' => 86_400,
            'w' => 7 * 86_400,
            _ => return Err(err()),
        };
        let n: u64 = digits.parse().map_err(|_| err())?;
        digits.clear();
        total = n
            .checked_mul(unit)
            .and_then(|x| total.checked_add(x))
            .ok_or_else(err)?;
    }
    if !digits.is_empty() || total == 0 {
        return Err(err());
    }
    Ok(Duration::from_secs(total))
}

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
struct OrderView {
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

fn order_view(o: &proto::Order) -> OrderView {
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
fn list_row(o: &proto::Order) -> String {
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

fn print_order(as_json: bool, o: &proto::Order) -> anyhow::Result<()> {
    if as_json {
        println!("{}", serde_json::to_string_pretty(&order_view(o))?);
    } else {
        print!("{}", render_order(o));
    }
    Ok(())
}

async fn connect(c: &ClientArgs, default_role: &str) -> anyhow::Result<OrdersClient<Channel>> {
    Ok(OrdersClient::new(c.connect(default_role).await?))
}

/// Runs `warden order …` and returns the exit status.
pub async fn run(c: &ClientArgs, cmd: OrderCommand) -> anyhow::Result<i32> {
    let order = match cmd {
        OrderCommand::Issue(a) => {
            let now = crate::clock::now_millis();
            let expires_at = match (a.expires_at, a.expires_in) {
                (Some(t), _) => Some(t),
                (None, Some(d)) => {
                    let ms = i64::try_from(d.as_millis()).context("--expires-in is too long")?;
                    Some(now.checked_add(ms).context("--expires-in is too long")?)
                }
                (None, None) => None,
            };
            let o = connect(c, "operator")
                .await?
                .issue_order(proto::IssueOrderRequest {
                    target: Some(a.target.to_proto()),
                    action: match a.action {
                        ActionArg::Suspend => proto::OrderAction::Suspend,
                        ActionArg::Terminate => proto::OrderAction::Terminate,
                    } as i32,
                    reason: a.reason,
                    legal_basis: a.legal_basis,
                    expires_at: expires_at.map(timestamp),
                })
                .await
                .map_err(status_error)?
                .into_inner();
            if a.quiet && !c.json {
                println!("{}", o.order_id);
                return Ok(0);
            }
            o
        }
        OrderCommand::Approve { order_id } => connect(c, "operator")
            .await?
            .approve_order(proto::ApproveOrderRequest { order_id })
            .await
            .map_err(status_error)?
            .into_inner(),
        OrderCommand::Lift { order_id, reason } => connect(c, "operator")
            .await?
            .lift_order(proto::LiftOrderRequest { order_id, reason })
            .await
            .map_err(status_error)?
            .into_inner(),
        OrderCommand::Get { order_id } => connect(c, "operator")
            .await?
            .get_order(proto::GetOrderRequest { order_id })
            .await
            .map_err(status_error)?
            .into_inner(),
        OrderCommand::List {
            state,
            target,
            page_size,
            page_token,
            all,
        } => {
            list(c, state, target, page_size, page_token, all).await?;
            return Ok(0);
        }
        OrderCommand::Ack {
            order_id,
            deployment_id,
            stopped_at,
            outcome,
        } => connect(c, "scheduler")
            .await?
            .ack_order(proto::AckOrderRequest {
                order_id,
                deployment_id,
                stopped_at: Some(timestamp(
                    stopped_at.unwrap_or_else(crate::clock::now_millis),
                )),
                outcome,
            })
            .await
            .map_err(status_error)?
            .into_inner(),
        OrderCommand::Watch { since } => return watch(c, since).await,
    };
    print_order(c.json, &order)?;
    Ok(0)
}

async fn list(
    c: &ClientArgs,
    state: Option<StateArg>,
    target: Option<TargetArg>,
    page_size: u32,
    page_token: Option<String>,
    all: bool,
) -> anyhow::Result<()> {
    let mut client = connect(c, "operator").await?;
    let state = match state {
        None => proto::OrderState::Unspecified,
        Some(StateArg::Pending) => proto::OrderState::Pending,
        Some(StateArg::Active) => proto::OrderState::Active,
        Some(StateArg::Lifted) => proto::OrderState::Lifted,
        Some(StateArg::Expired) => proto::OrderState::Expired,
    };
    let mut orders = Vec::new();
    let mut token = page_token.unwrap_or_default();
    loop {
        let r = client
            .list_orders(proto::ListOrdersRequest {
                state: state as i32,
                target: target.as_ref().map(TargetArg::to_proto),
                page_size,
                page_token: token,
            })
            .await
            .map_err(status_error)?
            .into_inner();
        orders.extend(r.orders);
        token = r.next_page_token;
        if !all || token.is_empty() {
            break;
        }
    }
    if c.json {
        #[derive(Serialize)]
        struct Page {
            orders: Vec<OrderView>,
            next_page_token: String,
        }
        let page = Page {
            orders: orders.iter().map(order_view).collect(),
            next_page_token: token,
        };
        println!("{}", serde_json::to_string_pretty(&page)?);
    } else {
        for o in &orders {
            println!("{}", list_row(o));
        }
        if !token.is_empty() {
            println!("more: --page-token {token} (or --all)");
        }
    }
    Ok(())
}

/// Delays between reconnection attempts: doubling from 250 ms up to 5 s,
/// back to the start once an event arrives.
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(250);
    const MAX: Duration = Duration::from_secs(5);

    pub fn new() -> Self {
        Self { next: Self::FIRST }
    }

    /// The delay before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        d
    }

    pub fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

/// Why one watch stream ended.
enum Ended {
    /// Retrying cannot help (a local file, the caller's identity or role,
    /// a refused argument, or stdout failing).
    Fatal(anyhow::Error),
    /// Nobody reads stdout any more: the watch is done.
    OutputClosed,
    /// The stream ended or the connection failed; reconnect.
    Retry(String),
}

/// Status codes that reconnecting does not cure.
fn fatal_code(code: tonic::Code) -> bool {
    matches!(
        code,
        tonic::Code::PermissionDenied
            | tonic::Code::Unauthenticated
            | tonic::Code::InvalidArgument
            | tonic::Code::Unimplemented
    )
}

fn describe_status(s: &tonic::Status) -> String {
    format!("{:?}: {}", s.code(), s.message())
}

/// Follows the order stream until Ctrl-C (or SIGTERM): exit status 0.
async fn watch(c: &ClientArgs, since: u64) -> anyhow::Result<i32> {
    tokio::select! {
        r = follow(c, since) => r,
        () = stop_requested() => Ok(0),
        () = stdout_closed() => Ok(0),
    }
}

async fn stop_requested() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {},
                _ = tokio::signal::ctrl_c() => {},
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// Resolves once nobody reads stdout any more (`warden order watch | head
/// -1` after `head` exited): the watch has no one left to tell, even while
/// no event arrives to fail a write. Only a pipe is watched; for anything
/// else this never resolves, and a failed write still ends the watch.
async fn stdout_closed() {
    #[cfg(unix)]
    if let Some(pipe) = stdout_pipe() {
        // A pipe reports error readiness to its writer once the read end
        // is closed. Only readiness is awaited: nothing is written through
        // this registration, so stdout keeps its blocking mode.
        if pipe.ready(tokio::io::Interest::ERROR).await.is_ok() {
            return;
        }
    }
    std::future::pending::<()>().await;
}

/// A second handle on stdout, registered for readiness, when stdout is a
/// pipe.
#[cfg(unix)]
fn stdout_pipe() -> Option<tokio::net::unix::pipe::Sender> {
    use std::os::fd::AsFd as _;
    use std::os::unix::fs::FileTypeExt as _;
    let out = std::fs::File::from(std::io::stdout().as_fd().try_clone_to_owned().ok()?);
    if !out.metadata().ok()?.file_type().is_fifo() {
        return None;
    }
    tokio::net::unix::pipe::Sender::from_file_unchecked(out).ok()
}

/// Watches, reconnecting forever; returns only on a fatal error or when
/// stdout is closed.
async fn follow(c: &ClientArgs, since: u64) -> anyhow::Result<i32> {
    let mut last = since;
    let mut backoff = Backoff::new();
    let mut attempt: u64 = 0;
    loop {
        let why = match watch_once(c, &mut last, &mut backoff, attempt).await {
            Ended::Fatal(e) => return Err(e),
            Ended::OutputClosed => return Ok(0),
            Ended::Retry(why) => why,
        };
        attempt += 1;
        let delay = backoff.next_delay();
        eprintln!(
            "watch: {why}; reconnecting in {:.2}s to resume after revision {last}",
            delay.as_secs_f64()
        );
        tokio::time::sleep(delay).await;
    }
}

/// One connection's stream. Prints each event and advances `last` to its
/// revision, so a reconnect resumes after the last event printed.
async fn watch_once(c: &ClientArgs, last: &mut u64, backoff: &mut Backoff, attempt: u64) -> Ended {
    let endpoint = match c.endpoint("scheduler") {
        // Keepalive pings notice a connection that died silently, so the
        // watch reconnects instead of waiting forever.
        Ok(e) => e
            .http2_keep_alive_interval(Duration::from_secs(15))
            .keep_alive_timeout(Duration::from_secs(10))
            .keep_alive_while_idle(true),
        Err(e) => return Ended::Fatal(e),
    };
    let channel = match endpoint.connect().await {
        Ok(ch) => ch,
        Err(e) => {
            return Ended::Retry(format!("cannot connect to {}: {}", c.addr, error_chain(&e)))
        }
    };
    let mut client = OrdersClient::new(channel);
    let mut stream = match client
        .watch_orders(proto::WatchOrdersRequest {
            since_revision: *last,
        })
        .await
    {
        Ok(r) => r.into_inner(),
        Err(s) if fatal_code(s.code()) => return Ended::Fatal(status_error(s)),
        Err(s) => return Ended::Retry(describe_status(&s)),
    };
    if attempt > 0 {
        eprintln!("watch: reconnected; resuming after revision {last}");
    }
    loop {
        match stream.message().await {
            Ok(Some(e)) => {
                let line = if c.json {
                    match event_json(&e) {
                        Ok(l) => l,
                        Err(err) => return Ended::Fatal(err),
                    }
                } else {
                    event_line(&e)
                };
                let mut out = std::io::stdout().lock();
                match writeln!(out, "{line}").and_then(|()| out.flush()) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                        return Ended::OutputClosed
                    }
                    Err(e) => return Ended::Fatal(anyhow::anyhow!("cannot write to stdout: {e}")),
                }
                *last = e.revision;
                backoff.reset();
            }
            Ok(None) => return Ended::Retry("the server ended the stream".into()),
            Err(s) if fatal_code(s.code()) => return Ended::Fatal(status_error(s)),
            Err(s) => return Ended::Retry(format!("the stream ended ({})", describe_status(&s))),
        }
    }
}

/// An error and its sources, `: `-separated, without the repeats that
/// come from errors which print their source themselves.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        match parts.last_mut() {
            Some(last) if last.contains(&text) => {}
            Some(last) if text.starts_with(last.as_str()) => *last = text,
            _ => parts.push(text),
        }
        source = s.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_split_at_the_first_equals_sign() {
        let t = parse_target("customer=acme-ai").unwrap();
        assert_eq!(t.kind, proto::OrderTargetKind::Customer);
        assert_eq!(t.value, "acme-ai");
        let t = parse_target("evaluator=CN=Dev Evaluator CA,O=Example").unwrap();
        assert_eq!(t.kind, proto::OrderTargetKind::Evaluator);
        assert_eq!(t.value, "CN=Dev Evaluator CA,O=Example");
        let t = parse_target("model=sha256:00").unwrap();
        assert_eq!(t.kind, proto::OrderTargetKind::ModelDigest);
        assert!(parse_target("acme-ai").unwrap_err().contains("KIND=VALUE"));
        assert!(parse_target("tenant=x").unwrap_err().contains("\"tenant\""));
        assert!(parse_target("customer=").unwrap_err().contains("empty"));
    }

    #[test]
    fn durations_take_units_and_combinations() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(604_800)));
        for bad in ["", "2", "h", "2x", "0s", "-1h", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn backoff_doubles_to_five_seconds_and_resets() {
        let mut b = Backoff::new();
        let ms: Vec<u128> = (0..7).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(ms, [250, 500, 1000, 2000, 4000, 5000, 5000]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(250));
    }

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

    #[test]
    fn error_chains_do_not_repeat_themselves() {
        #[derive(Debug)]
        struct E(&'static str, Option<Box<E>>);
        impl std::fmt::Display for E {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.0)
            }
        }
        impl std::error::Error for E {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                self.1.as_deref().map(|e| e as _)
            }
        }
        let e = E(
            "transport error",
            Some(Box::new(E(
                "tcp connect error",
                Some(Box::new(E(
                    "tcp connect error: Connection refused",
                    Some(Box::new(E("Connection refused", None))),
                ))),
            ))),
        );
        assert_eq!(
            error_chain(&e),
            "transport error: tcp connect error: Connection refused"
        );
    }

    #[test]
    fn only_identity_and_argument_errors_stop_a_watch() {
        assert!(fatal_code(tonic::Code::PermissionDenied));
        assert!(fatal_code(tonic::Code::InvalidArgument));
        assert!(!fatal_code(tonic::Code::Aborted));
        assert!(!fatal_code(tonic::Code::Unavailable));
        assert!(!fatal_code(tonic::Code::Unknown));
    }
}
