//! `warden order …`: kill orders. Operators and authorities issue, approve
//! and lift them (each under the quorum the server's `[orders]` config sets);
//! schedulers watch them as a stream and acknowledge the workloads they
//! stopped.
//!
//! `order watch` is meant to run for as long as the scheduler does: it
//! prints each event as it arrives and, whenever the stream ends or the
//! connection drops, reconnects from the revision of the last event it
//! printed, so it neither misses nor repeats one.
//!
//! * this module — the arguments, and `run`, which sends each request.
//! * `render` — how an order, a list row and an event are printed (text and
//!   `--json`).
//! * `watch` — `order watch`: the reconnecting event stream.

use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use serde::Serialize;
use tonic::transport::Channel;

use super::commands::status_error;
use super::customer::parse_rfc3339;
use super::ClientArgs;
use crate::api::convert::timestamp;
use crate::proto;
use crate::proto::orders_client::OrdersClient;

mod render;
mod watch;

pub use render::{event_json, event_line, human_duration, render_order};
use render::{list_row, order_view, print_order, OrderView};
use watch::watch;
pub use watch::Backoff;

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
}
