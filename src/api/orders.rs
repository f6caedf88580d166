//! `Orders`: operators and authorities issue, approve and lift kill orders
//! (with quorum); schedulers watch them and acknowledge. Every change is
//! one commit with its events and ledger entry; watchers are woken once it
//! is durable.

use std::pin::Pin;
use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::convert::{optional_request_millis, request_millis, timestamp};
use super::page::{self, List};
use super::status::ApiError;
use super::{principal, App};
use crate::auth::Principal;
use crate::domain::customer::{check_identifier, check_text, FieldViolation};
use crate::domain::order::{
    Ack, Action, Approval, EventKind, Order, OrderEvent, OrderState, Step, Target, TargetKind,
};
use crate::domain::UnixMillis;
use crate::ledger::entry::{Entry, Event};
use crate::proto;
use crate::proto::orders_server::Orders;
use crate::store::{
    conflict_apart, retry_on_conflict, Conflict, OrderChange, OrderFilter, StoreError,
    CONFLICT_ATTEMPTS,
};

pub struct OrdersService {
    app: Arc<App>,
}

impl OrdersService {
    pub fn new(app: Arc<App>) -> Self {
        Self { app }
    }
}

fn target_kind_str(k: TargetKind) -> &'static str {
    match k {
        TargetKind::Deployment => "DEPLOYMENT",
        TargetKind::ModelDigest => "MODEL_DIGEST",
        TargetKind::Customer => "CUSTOMER",
        TargetKind::Certificate => "CERTIFICATE",
        TargetKind::Evaluator => "EVALUATOR",
    }
}

/// Applies one change to an order and tells the watchers. `change` gets the
/// stored order (`None`: a new order) and returns the new one with its
/// events, or an error for the caller.
pub async fn apply(
    app: &App,
    who: &str,
    order_id: &str,
    change: impl Fn(Option<Order>) -> Result<(Order, Vec<EventKind>), ApiError>,
    ack: Option<String>,
    now: UnixMillis,
) -> Result<Order, ApiError> {
    let change = &change;
    let ack = &ack;
    // Another change to the same order got in first: apply this one to
    // what it left.
    let order_changed = |c: &Conflict| matches!(c, Conflict::OrderChanged { .. });
    let applied = retry_on_conflict(CONFLICT_ATTEMPTS, order_changed, |_| async move {
        let stored = app.store.order(order_id).await?;
        let was_active = stored
            .as_ref()
            .is_some_and(|o| o.state == OrderState::Active);
        let (order, events) = change(stored)?;
        let activate = events.contains(&EventKind::Activated);
        let release = order.action == Action::Suspend
            && was_active
            && matches!(order.state, OrderState::Lifted | OrderState::Expired);
        let entry = Entry::new(
            now,
            who,
            "",
            Event::Order {
                order_id: order.order_id.clone(),
                events: events.iter().map(|e| e.as_str().to_string()).collect(),
                action: order.action.as_str().to_string(),
                target_kind: target_kind_str(order.target.kind).to_string(),
                target: order.target.value.clone(),
                state: order.state.as_str().to_string(),
                reason_commitment: crate::ledger::entry::text_commitment(
                    &order.reason_salt,
                    &order.reason,
                ),
                deployment_ids: ack.iter().cloned().collect(),
            },
        );
        let result = app
            .store
            .change_order(
                OrderChange {
                    order,
                    events,
                    activate,
                    release,
                    ack: ack.clone(),
                    now,
                    revision: Arc::default(),
                },
                entry,
            )
            .await;
        Ok::<_, ApiError>(conflict_apart(result)?)
    })
    .await?;
    match applied {
        Ok(revision) => {
            // The change is committed: a failure to wake watchers must
            // not make it look failed (they catch up on the next one).
            if let Err(e) = notify(app, revision).await {
                tracing::error!(error = ?e, "waking order watchers failed");
            }
            app.store
                .order(order_id)
                .await?
                .ok_or_else(|| ApiError::NotFound(format!("order {order_id} not found")))
        }
        Err(c) if order_changed(&c) => Err(ApiError::Aborted(format!(
            "order {order_id} kept changing; retry"
        ))),
        Err(c) => Err(StoreError::Conflict(c).into()),
    }
}

/// The newest order events as sent to watchers, so a thousand watchers
/// woken by one event do not each read and convert it.
#[derive(Default)]
pub struct RecentEvents {
    /// Consecutive revisions, oldest first.
    events: std::sync::RwLock<std::collections::VecDeque<Arc<proto::OrderEvent>>>,
}

/// How many recent events are kept for watchers; a live watcher further
/// behind than this is disconnected and told where to resume.
pub const RECENT: usize = 4096;

type Recent = std::collections::VecDeque<Arc<proto::OrderEvent>>;

impl RecentEvents {
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Recent> {
        self.events
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Events `(after, up_to]` if all of them are cached.
    fn range(&self, after: u64, up_to: u64) -> Option<Vec<Arc<proto::OrderEvent>>> {
        let events = self
            .events
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let first = events.front()?.revision;
        if first > after + 1 {
            return None;
        }
        let start = usize::try_from(after + 1 - first).ok()?;
        let end = usize::try_from(up_to + 1 - first).ok()?.min(events.len());
        Some(events.range(start.min(end)..end).cloned().collect())
    }
}

/// Wakes the watchers up to `revision`, which must be durable with every
/// revision before it (the store may already hold later ones that are
/// not), caching the new events first.
pub async fn notify(app: &App, revision: u64) -> Result<(), ApiError> {
    let newest = |recent: &Recent| {
        recent
            .back()
            .map_or_else(|| *app.order_revision.borrow(), |e| e.revision)
    };
    let cached = newest(&app.recent_events.write());
    if revision > cached {
        // Read without holding the cache: another change may cache some of
        // these meanwhile, and only those past its newest are added, so the
        // cache stays consecutive.
        let events = app.store.order_events(cached, revision, RECENT).await?;
        let mut recent = app.recent_events.write();
        let cached = newest(&recent);
        for e in events.iter().filter(|e| e.revision > cached) {
            recent.push_back(Arc::new(event_to_proto(e)));
        }
        while recent.len() > RECENT {
            recent.pop_front();
        }
    }
    app.order_revision.send_if_modified(|r| {
        if revision > *r {
            *r = revision;
            true
        } else {
            false
        }
    });
    Ok(())
}

/// Marks every active order past its expiry EXPIRED (releasing what a
/// suspension suspended). Returns how many expired.
pub async fn expire_due(app: &App, who: &str) -> Result<usize, ApiError> {
    let now = app.clock.now();
    let mut n = 0;
    for o in app.store.active_orders().await? {
        if o.expires_at.is_some_and(|t| t <= now) {
            let id = o.order_id.clone();
            let expired = apply(
                app,
                who,
                &id,
                |stored| {
                    let mut o = stored
                        .ok_or_else(|| ApiError::NotFound(format!("order {id} not found")))?;
                    if o.state != OrderState::Active {
                        return Err(ApiError::FailedPrecondition("no longer active".into()));
                    }
                    o.state = OrderState::Expired;
                    o.ended_at = Some(now);
                    Ok((o, vec![EventKind::Expired]))
                },
                None,
                now,
            )
            .await;
            match expired {
                Ok(_) => n += 1,
                Err(ApiError::FailedPrecondition(_)) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(n)
}

fn target_from_proto(t: Option<proto::OrderTarget>, v: &mut Vec<FieldViolation>) -> Option<Target> {
    let Some(t) = t else {
        v.push(FieldViolation::new("target", "required"));
        return None;
    };
    let kind = match proto::OrderTargetKind::try_from(t.kind) {
        Ok(proto::OrderTargetKind::Deployment) => TargetKind::Deployment,
        Ok(proto::OrderTargetKind::ModelDigest) => TargetKind::ModelDigest,
        Ok(proto::OrderTargetKind::Customer) => TargetKind::Customer,
        Ok(proto::OrderTargetKind::Certificate) => TargetKind::Certificate,
        Ok(proto::OrderTargetKind::Evaluator) => TargetKind::Evaluator,
        _ => {
            v.push(FieldViolation::new(
                "target.kind",
                "DEPLOYMENT, MODEL_DIGEST, CUSTOMER, CERTIFICATE or EVALUATOR is required",
            ));
            return None;
        }
    };
    let value = t.value;
    let before = v.len();
    match kind {
        TargetKind::Deployment | TargetKind::Customer => {
            check_identifier("target.value", &value, v);
        }
        TargetKind::ModelDigest => {
            if let Err(e) = value.parse::<crate::digest::ModelDigest>() {
                v.push(FieldViolation::new("target.value", e.to_string()));
            }
        }
        TargetKind::Certificate => {
            crate::domain::customer::check_sha256("target.value", &value, v);
        }
        TargetKind::Evaluator => check_text("target.value", &value, 1024, v),
    }
    (v.len() == before).then_some(Target { kind, value })
}

fn target_to_proto(t: &Target) -> proto::OrderTarget {
    let kind = match t.kind {
        TargetKind::Deployment => proto::OrderTargetKind::Deployment,
        TargetKind::ModelDigest => proto::OrderTargetKind::ModelDigest,
        TargetKind::Customer => proto::OrderTargetKind::Customer,
        TargetKind::Certificate => proto::OrderTargetKind::Certificate,
        TargetKind::Evaluator => proto::OrderTargetKind::Evaluator,
    };
    proto::OrderTarget {
        kind: kind as i32,
        value: t.value.clone(),
    }
}

fn approvals(a: &[Approval]) -> Vec<proto::Approval> {
    a.iter()
        .map(|a| proto::Approval {
            principal: a.principal.clone(),
            at: Some(timestamp(a.at)),
        })
        .collect()
}

/// Who reads an order: schedulers need its target, state and deployments,
/// not the free text operators and authorities wrote (reasons, legal
/// basis, other schedulers' acknowledgement outcomes).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    Full,
    Scheduler,
}

impl Audience {
    fn of(who: &Principal) -> Self {
        if who.role == crate::auth::Role::Scheduler {
            Self::Scheduler
        } else {
            Self::Full
        }
    }
}

pub fn order_to_proto(o: &Order, now: UnixMillis, audience: Audience) -> proto::Order {
    let text = |t: &str| {
        if audience == Audience::Full {
            t.to_string()
        } else {
            String::new()
        }
    };
    let state = match o.state_at(now) {
        OrderState::Pending => proto::OrderState::Pending,
        OrderState::Active => proto::OrderState::Active,
        OrderState::Lifted => proto::OrderState::Lifted,
        OrderState::Expired => proto::OrderState::Expired,
    };
    let waiting_since = o.activated_at.unwrap_or(now);
    proto::Order {
        order_id: o.order_id.clone(),
        target: Some(target_to_proto(&o.target)),
        action: match o.action {
            Action::Suspend => proto::OrderAction::Suspend,
            Action::Terminate => proto::OrderAction::Terminate,
        } as i32,
        reason: text(&o.reason),
        legal_basis: text(&o.legal_basis),
        expires_at: o.expires_at.map(timestamp),
        state: state as i32,
        issued_by: o.issued_by.clone(),
        issued_at: Some(timestamp(o.issued_at)),
        approvals: approvals(&o.approvals),
        quorum: o.quorum,
        activated_at: o.activated_at.map(timestamp),
        matched_deployments: o.matched_deployments.clone(),
        acks: o
            .acks
            .iter()
            .map(|a| proto::Acknowledgement {
                deployment_id: a.deployment_id.clone(),
                principal: a.principal.clone(),
                stopped_at: Some(timestamp(a.stopped_at)),
                outcome: text(&a.outcome),
                at: Some(timestamp(a.at)),
            })
            .collect(),
        unacknowledged: if o.state == OrderState::Active {
            o.unacknowledged()
                .into_iter()
                .map(|d| proto::PendingAck {
                    deployment_id: d.to_string(),
                    waiting_seconds: u64::try_from((now - waiting_since) / 1000).unwrap_or(0),
                })
                .collect()
        } else {
            Vec::new()
        },
        lift_approvals: approvals(&o.lift_approvals),
        lift_quorum: o.lift_quorum,
        lift_reason: text(&o.lift_reason),
        ended_at: o.ended_at.map(timestamp),
    }
}

pub fn event_to_proto(e: &OrderEvent) -> proto::OrderEvent {
    let kind = match e.kind {
        EventKind::Issued => proto::OrderEventKind::Issued,
        EventKind::Approved => proto::OrderEventKind::Approved,
        EventKind::Activated => proto::OrderEventKind::Activated,
        EventKind::LiftRequested => proto::OrderEventKind::LiftRequested,
        EventKind::Lifted => proto::OrderEventKind::Lifted,
        EventKind::Expired => proto::OrderEventKind::Expired,
        EventKind::Acknowledged => proto::OrderEventKind::Acknowledged,
    };
    proto::OrderEvent {
        revision: e.revision,
        kind: kind as i32,
        // Only schedulers watch.
        order: Some(order_to_proto(&e.order, e.at, Audience::Scheduler)),
        deployment_ids: e.deployment_ids.clone(),
        at: Some(timestamp(e.at)),
    }
}

fn check_order_id(id: &str) -> Result<(), ApiError> {
    let mut v = Vec::new();
    check_identifier("order_id", id, &mut v);
    ApiError::check(v)
}

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("order {id} not found"))
}

type EventStream =
    Pin<Box<dyn tokio_stream::Stream<Item = Result<proto::OrderEvent, Status>> + Send>>;

#[tonic::async_trait]
impl Orders for OrdersService {
    async fn issue_order(
        &self,
        request: Request<proto::IssueOrderRequest>,
    ) -> Result<Response<proto::Order>, Status> {
        let who = principal(&request)?;
        let proto::IssueOrderRequest {
            target,
            action,
            reason,
            legal_basis,
            expires_at,
        } = request.into_inner();
        let now = self.app.clock.now();
        let mut v = Vec::new();
        let target = target_from_proto(target, &mut v);
        let action = match proto::OrderAction::try_from(action) {
            Ok(proto::OrderAction::Suspend) => Some(Action::Suspend),
            Ok(proto::OrderAction::Terminate) => Some(Action::Terminate),
            _ => {
                v.push(FieldViolation::new(
                    "action",
                    "SUSPEND or TERMINATE is required",
                ));
                None
            }
        };
        check_text("reason", &reason, 2048, &mut v);
        if !legal_basis.is_empty() {
            check_text("legal_basis", &legal_basis, 2048, &mut v);
        }
        let expires_at = optional_request_millis("expires_at", expires_at.as_ref(), &mut v);
        if expires_at.is_some_and(|t| t <= now) {
            v.push(FieldViolation::new("expires_at", "must be in the future"));
        }
        ApiError::check(v)?;
        let (Some(target), Some(action)) = (target, action) else {
            return Err(ApiError::Internal.into());
        };
        let order_id = format!("ord-{}", uuid::Uuid::new_v4().simple());
        let quorum = self.app.quorum.of(action).max(1);
        let issued = Order {
            order_id: order_id.clone(),
            target,
            action,
            reason,
            legal_basis,
            expires_at,
            state: OrderState::Pending,
            issued_by: who.spiffe_id.clone(),
            issued_at: now,
            approvals: Vec::new(),
            quorum,
            activated_at: None,
            matched_deployments: Vec::new(),
            acks: Vec::new(),
            lift_approvals: Vec::new(),
            lift_quorum: self.app.quorum.lift.max(1),
            lift_reason: String::new(),
            ended_at: None,
            revision: 0,
            reason_salt: crate::random::commitment_salt()?,
        };
        let order = apply(
            &self.app,
            &who.spiffe_id,
            &order_id,
            |stored| {
                if stored.is_some() {
                    return Err(ApiError::AlreadyExists(format!("order {order_id}")));
                }
                let mut o = issued.clone();
                // The issuer's approval counts once.
                let step = o.approve(&who.spiffe_id, now)?;
                let mut events = vec![EventKind::Issued];
                if step == Step::Activated {
                    events.push(EventKind::Activated);
                }
                Ok((o, events))
            },
            None,
            now,
        )
        .await?;
        tracing::info!(order_id = %order.order_id, action = order.action.as_str(), state = order.state.as_str(), principal = %who.spiffe_id, "order issued");
        Ok(Response::new(order_to_proto(
            &order,
            now,
            Audience::of(&who),
        )))
    }

    async fn approve_order(
        &self,
        request: Request<proto::ApproveOrderRequest>,
    ) -> Result<Response<proto::Order>, Status> {
        let who = principal(&request)?;
        let proto::ApproveOrderRequest { order_id } = request.into_inner();
        check_order_id(&order_id)?;
        let now = self.app.clock.now();
        let order = apply(
            &self.app,
            &who.spiffe_id,
            &order_id,
            |stored| {
                let mut o = stored.ok_or_else(|| not_found(&order_id))?;
                let step = o.approve(&who.spiffe_id, now)?;
                let mut events = vec![EventKind::Approved];
                if step == Step::Activated {
                    events.push(EventKind::Activated);
                }
                Ok((o, events))
            },
            None,
            now,
        )
        .await?;
        tracing::info!(%order_id, state = order.state.as_str(), principal = %who.spiffe_id, "order approved");
        Ok(Response::new(order_to_proto(
            &order,
            now,
            Audience::of(&who),
        )))
    }

    async fn lift_order(
        &self,
        request: Request<proto::LiftOrderRequest>,
    ) -> Result<Response<proto::Order>, Status> {
        let who = principal(&request)?;
        let proto::LiftOrderRequest { order_id, reason } = request.into_inner();
        check_order_id(&order_id)?;
        let mut v = Vec::new();
        if !reason.is_empty() {
            check_text("reason", &reason, 2048, &mut v);
        }
        ApiError::check(v)?;
        let now = self.app.clock.now();
        let order = apply(
            &self.app,
            &who.spiffe_id,
            &order_id,
            |stored| {
                let mut o = stored.ok_or_else(|| not_found(&order_id))?;
                let kind = match o.lift(&who.spiffe_id, &reason, now)? {
                    Step::Lifted => EventKind::Lifted,
                    _ => EventKind::LiftRequested,
                };
                Ok((o, vec![kind]))
            },
            None,
            now,
        )
        .await?;
        tracing::info!(%order_id, state = order.state.as_str(), principal = %who.spiffe_id, "order lift requested");
        Ok(Response::new(order_to_proto(
            &order,
            now,
            Audience::of(&who),
        )))
    }

    async fn get_order(
        &self,
        request: Request<proto::GetOrderRequest>,
    ) -> Result<Response<proto::Order>, Status> {
        let who = principal(&request)?;
        let proto::GetOrderRequest { order_id } = request.into_inner();
        check_order_id(&order_id)?;
        let o = self
            .app
            .store
            .order(&order_id)
            .await
            .map_err(ApiError::from)?
            .ok_or_else(|| not_found(&order_id))?;
        Ok(Response::new(order_to_proto(
            &o,
            self.app.clock.now(),
            Audience::of(&who),
        )))
    }

    async fn list_orders(
        &self,
        request: Request<proto::ListOrdersRequest>,
    ) -> Result<Response<proto::ListOrdersResponse>, Status> {
        let audience = Audience::of(&principal(&request)?);
        let proto::ListOrdersRequest {
            state,
            target,
            page_size,
            page_token,
        } = request.into_inner();
        let mut v = Vec::new();
        let limit = page::limit(page_size, &mut v);
        let after = page::parse_id_token(List::Orders, &page_token, &mut v);
        let state = match proto::OrderState::try_from(state) {
            Ok(proto::OrderState::Unspecified) => None,
            Ok(proto::OrderState::Pending) => Some(OrderState::Pending),
            Ok(proto::OrderState::Active) => Some(OrderState::Active),
            Ok(proto::OrderState::Lifted) => Some(OrderState::Lifted),
            Ok(proto::OrderState::Expired) => Some(OrderState::Expired),
            Err(_) => {
                v.push(FieldViolation::new("state", "unknown state"));
                None
            }
        };
        let target = match target {
            Some(t) if t.kind != 0 || !t.value.is_empty() => target_from_proto(Some(t), &mut v),
            _ => None,
        };
        ApiError::check(v)?;
        let now = self.app.clock.now();
        let filter = OrderFilter { state, target, now };
        let (store, filter) = (&self.app.store, &filter);
        let (orders, next) = page::fill(
            limit,
            after,
            |after: Option<String>, n| async move {
                Ok(store.list_orders(filter, after.as_deref(), n).await?)
            },
            |o| o.order_id.clone(),
            |o| Ok(order_to_proto(o, now, audience)),
        )
        .await?;
        Ok(Response::new(proto::ListOrdersResponse {
            orders,
            next_page_token: next
                .map(|id| page::id_token(List::Orders, &id))
                .unwrap_or_default(),
        }))
    }

    type WatchOrdersStream = EventStream;

    async fn watch_orders(
        &self,
        request: Request<proto::WatchOrdersRequest>,
    ) -> Result<Response<Self::WatchOrdersStream>, Status> {
        let who = principal(&request)?;
        let proto::WatchOrdersRequest { since_revision } = request.into_inner();
        let newest = *self.app.order_revision.borrow();
        if since_revision > newest {
            return Err(ApiError::invalid(
                "since_revision",
                format!("{since_revision} is beyond the newest revision, {newest}"),
            )
            .into());
        }
        let slot = self.app.watchers.claim(&who.spiffe_id).ok_or_else(|| {
            ApiError::ResourceExhausted(format!(
                "{} already holds {} open order watches (limits.max_watches_per_principal); \
                 close one first",
                who.spiffe_id,
                self.app.watchers.limit()
            ))
        })?;
        Ok(Response::new(Box::pin(watch(
            self.app.clone(),
            since_revision,
            slot,
        ))))
    }

    async fn ack_order(
        &self,
        request: Request<proto::AckOrderRequest>,
    ) -> Result<Response<proto::Order>, Status> {
        let who = principal(&request)?;
        let proto::AckOrderRequest {
            order_id,
            deployment_id,
            stopped_at,
            outcome,
        } = request.into_inner();
        let now = self.app.clock.now();
        let mut v = Vec::new();
        check_identifier("order_id", &order_id, &mut v);
        check_identifier("deployment_id", &deployment_id, &mut v);
        check_text("outcome", &outcome, 256, &mut v);
        let stopped_at = match stopped_at.as_ref().map(|t| request_millis("stopped_at", t)) {
            None => {
                v.push(FieldViolation::new("stopped_at", "required"));
                0
            }
            Some(Err(e)) => {
                v.push(e);
                0
            }
            Some(Ok(t)) if t > now + 60_000 => {
                v.push(FieldViolation::new(
                    "stopped_at",
                    "must not be in the future",
                ));
                t
            }
            Some(Ok(t)) => t,
        };
        ApiError::check(v)?;
        own_deployment(&self.app, &who, &deployment_id).await?;
        let order = apply(
            &self.app,
            &who.spiffe_id,
            &order_id,
            |stored| {
                let mut o = stored.ok_or_else(|| not_found(&order_id))?;
                if !o.matched_deployments.contains(&deployment_id) {
                    return Err(ApiError::FailedPrecondition(format!(
                        "deployment {deployment_id} is not one order {order_id} matched"
                    )));
                }
                if o.acks.iter().any(|a| a.deployment_id == deployment_id) {
                    return Err(ApiError::FailedPrecondition(format!(
                        "deployment {deployment_id} was already acknowledged for order {order_id}"
                    )));
                }
                o.acks.push(Ack {
                    deployment_id: deployment_id.clone(),
                    principal: who.spiffe_id.clone(),
                    stopped_at,
                    outcome: outcome.clone(),
                    at: now,
                });
                Ok((o, vec![EventKind::Acknowledged]))
            },
            Some(deployment_id.clone()),
            now,
        )
        .await?;
        tracing::info!(%order_id, %deployment_id, principal = %who.spiffe_id, "order acknowledged");
        Ok(Response::new(order_to_proto(
            &order,
            now,
            Audience::of(&who),
        )))
    }
}

/// A scheduler acknowledges only deployments it admitted.
async fn own_deployment(app: &App, who: &Principal, id: &str) -> Result<(), ApiError> {
    match app.store.deployment(id).await? {
        Some(d) if d.admitted_by == who.spiffe_id => Ok(()),
        _ => Err(ApiError::NotFound(format!("deployment {id} not found"))),
    }
}

/// One watcher's stream: stored events after `since`, then each durable
/// revision as it is announced. The stream is polled by the connection
/// itself, so an event costs one wake-up per watcher, and events are read
/// only as fast as the client takes them: nothing is ever skipped. It ends
/// on shutdown (UNAVAILABLE, with where to resume) and, once it has caught
/// up, if the client falls more than [`RECENT`] events behind (ABORTED,
/// with where to resume).
/// Open order watches by principal, each at most the configured limit.
pub struct Watchers {
    limit: usize,
    open: std::sync::Mutex<std::collections::HashMap<String, usize>>,
}

/// One open watch, counted until the stream is dropped.
pub struct WatchSlot {
    watchers: Arc<Watchers>,
    spiffe_id: String,
}

impl Watchers {
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            limit,
            open: std::sync::Mutex::default(),
        })
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    fn open(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, usize>> {
        // Plain counts, consistent after any panic.
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A slot for one more watch of `spiffe_id`, unless it holds the limit.
    pub fn claim(self: &Arc<Self>, spiffe_id: &str) -> Option<WatchSlot> {
        let mut open = self.open();
        let n = open.entry(spiffe_id.to_string()).or_insert(0);
        if *n >= self.limit {
            return None;
        }
        *n += 1;
        Some(WatchSlot {
            watchers: self.clone(),
            spiffe_id: spiffe_id.to_string(),
        })
    }
}

impl Drop for WatchSlot {
    fn drop(&mut self) {
        let mut open = self.watchers.open();
        if let Some(n) = open.get_mut(&self.spiffe_id) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.spiffe_id);
            }
        }
    }
}

fn watch(
    app: Arc<App>,
    since: u64,
    slot: WatchSlot,
) -> impl tokio_stream::Stream<Item = Result<proto::OrderEvent, Status>> + Send {
    struct State {
        _slot: WatchSlot,
        app: Arc<App>,
        announced: tokio::sync::watch::Receiver<u64>,
        last: u64,
        pending: std::collections::VecDeque<Arc<proto::OrderEvent>>,
        live: bool,
        done: bool,
    }
    let announced = app.order_revision.subscribe();
    let state = State {
        _slot: slot,
        app,
        announced,
        last: since,
        pending: std::collections::VecDeque::new(),
        live: false,
        done: false,
    };
    futures_util::stream::unfold(state, |mut st| async move {
        if st.done {
            return None;
        }
        loop {
            if let Some(e) = st.pending.pop_front() {
                st.last = e.revision;
                return Some((Ok(Arc::unwrap_or_clone(e)), st));
            }
            let up_to = *st.announced.borrow_and_update();
            if st.last < up_to {
                let fetched = match st.app.recent_events.range(st.last, up_to) {
                    Some(cached) => Ok(cached),
                    // A live watcher whose next event has left the window
                    // of recent events is too slow to follow live: end it,
                    // telling it where to resume (a resumed watch replays
                    // from the store).
                    None if st.live => {
                        st.done = true;
                        let last = st.last;
                        return Some((
                            Err(Status::aborted(format!(
                                "watcher fell more than {RECENT} events behind; reconnect \
                                 with since_revision={last}"
                            ))),
                            st,
                        ));
                    }
                    None => st
                        .app
                        .store
                        .order_events(st.last, up_to, 256)
                        .await
                        .map(|events| events.iter().map(|e| Arc::new(event_to_proto(e))).collect()),
                };
                match fetched {
                    Ok(events) if !events.is_empty() => {
                        st.pending.extend(events);
                        continue;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        st.done = true;
                        let last = st.last;
                        let status = super::status::resumable(e, || {
                            format!(
                                "order events cannot be read now; reconnect with \
                                 since_revision={last}"
                            )
                        });
                        return Some((Err(status), st));
                    }
                }
            }
            st.live = true;
            tokio::select! {
                () = st.app.shutdown.cancelled() => {
                    st.done = true;
                    let last = st.last;
                    return Some((
                        Err(Status::unavailable(format!(
                            "warden is shutting down; reconnect with since_revision={last}"
                        ))),
                        st,
                    ));
                }
                changed = st.announced.changed() => if changed.is_err() { return None },
            }
        }
    })
}
