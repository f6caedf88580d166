//! Kill orders: who may stop which deployments, with what quorum, what an
//! active order denies, and what activating or ending one does to the
//! deployments it matches. Pure rules; the store applies what they return
//! atomically, so every engine stops and resumes deployments alike.
//!
//! A stopped deployment is held by exactly one order (`order_id`): the one
//! that stopped it, or the one it was handed to when that order ended. Only
//! the holder's end can resume it, and only if no other order in force
//! matches it; a termination is never undone.

use serde::{Deserialize, Serialize};

use super::deployment::{Deployment, DeploymentState};
use super::UnixMillis;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TargetKind {
    Deployment,
    ModelDigest,
    Customer,
    Certificate,
    Evaluator,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    pub kind: TargetKind,
    pub value: String,
}

/// What admission knows about a request, to match against orders.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// Set for a renewal.
    pub deployment_id: Option<&'a str>,
    pub customer_id: &'a str,
    pub model_digest: &'a str,
    /// Empty when the certificate did not verify.
    pub certificate_fingerprint: &'a str,
    pub evaluator: &'a str,
}

impl Target {
    pub fn matches(&self, s: &Subject<'_>) -> bool {
        let v = self.value.as_str();
        match self.kind {
            TargetKind::Deployment => s.deployment_id == Some(v),
            TargetKind::ModelDigest => s.model_digest == v,
            TargetKind::Customer => s.customer_id == v,
            TargetKind::Certificate => !v.is_empty() && s.certificate_fingerprint == v,
            TargetKind::Evaluator => !v.is_empty() && s.evaluator == v,
        }
    }

    pub fn matches_deployment(&self, d: &Deployment) -> bool {
        self.matches(&Subject {
            deployment_id: Some(&d.deployment_id),
            customer_id: &d.customer_id,
            model_digest: &d.model_digest,
            certificate_fingerprint: &d.certificate.fingerprint,
            evaluator: &d.certificate.evaluator,
        })
    }

    pub fn describe(&self) -> String {
        let kind = match self.kind {
            TargetKind::Deployment => "deployment",
            TargetKind::ModelDigest => "model",
            TargetKind::Customer => "customer",
            TargetKind::Certificate => "certificate",
            TargetKind::Evaluator => "evaluator",
        };
        format!("{kind} {}", self.value)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Action {
    Suspend,
    Terminate,
}

impl Action {
    pub const ALL: [Action; 2] = [Self::Suspend, Self::Terminate];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Suspend => "SUSPEND",
            Self::Terminate => "TERMINATE",
        }
    }

    /// The state an order with this action leaves the deployments it stops
    /// (or holds) in.
    pub fn stopped_state(self) -> DeploymentState {
        match self {
            Self::Suspend => DeploymentState::Suspended,
            Self::Terminate => DeploymentState::Terminated,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderState {
    Pending,
    Active,
    Lifted,
    Expired,
}

impl OrderState {
    pub const ALL: [OrderState; 4] = [Self::Pending, Self::Active, Self::Lifted, Self::Expired];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Active => "ACTIVE",
            Self::Lifted => "LIFTED",
            Self::Expired => "EXPIRED",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    pub principal: String,
    pub at: UnixMillis,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    pub deployment_id: String,
    pub principal: String,
    pub stopped_at: UnixMillis,
    pub outcome: String,
    pub at: UnixMillis,
}

/// Quorum per action, from the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quorum {
    pub suspend: u32,
    pub terminate: u32,
    pub lift: u32,
}

impl Quorum {
    pub fn of(&self, action: Action) -> u32 {
        match action {
            Action::Suspend => self.suspend,
            Action::Terminate => self.terminate,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    pub order_id: String,
    pub target: Target,
    pub action: Action,
    pub reason: String,
    pub legal_basis: String,
    pub expires_at: Option<UnixMillis>,
    pub state: OrderState,
    pub issued_by: String,
    pub issued_at: UnixMillis,
    pub approvals: Vec<Approval>,
    pub quorum: u32,
    pub activated_at: Option<UnixMillis>,
    pub matched_deployments: Vec<String>,
    pub acks: Vec<Ack>,
    pub lift_approvals: Vec<Approval>,
    pub lift_quorum: u32,
    pub lift_reason: String,
    pub ended_at: Option<UnixMillis>,
    /// Revision of the last event about this order (0 before the first):
    /// a change applies only if nothing else changed the order since.
    pub revision: u64,
    /// Random salt (hex) of the ledger's commitment to the reason.
    #[serde(default)]
    pub reason_salt: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EventKind {
    Issued,
    Approved,
    Activated,
    LiftRequested,
    Lifted,
    Expired,
    Acknowledged,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Issued => "ISSUED",
            Self::Approved => "APPROVED",
            Self::Activated => "ACTIVATED",
            Self::LiftRequested => "LIFT_REQUESTED",
            Self::Lifted => "LIFTED",
            Self::Expired => "EXPIRED",
            Self::Acknowledged => "ACKNOWLEDGED",
        }
    }
}

/// One stored event: the order as of the event and the deployments it
/// affected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderEvent {
    pub revision: u64,
    pub kind: EventKind,
    pub order: Order,
    pub deployment_ids: Vec<String>,
    pub at: UnixMillis,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    #[error("order {0} is {1}; only a PENDING order can be approved")]
    NotPending(String, &'static str),
    #[error("order {0} is {1}; only an ACTIVE order can be lifted")]
    NotActive(String, &'static str),
    #[error("{principal} has already approved {what} of order {order}; approvals must come from distinct principals")]
    AlreadyApproved {
        principal: String,
        order: String,
        what: &'static str,
    },
}

/// A deployment that an order's end changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    pub after: Deployment,
    /// True when it runs again: a fact of the ending order (named in its
    /// event and ledger entry). False when it was handed to another order
    /// in force, which changes nothing but the order that holds it.
    pub resumed: bool,
}

/// What applying a decision to an order did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// An approval was recorded; quorum not yet met.
    Approved,
    /// Quorum met: the order is ACTIVE now.
    Activated,
    /// A lift was requested or approved; lift quorum not yet met.
    LiftRequested,
    /// Lift quorum met: the order is LIFTED now.
    Lifted,
}

impl Order {
    /// Whether the order is in force at `now`.
    pub fn in_force(&self, now: UnixMillis) -> bool {
        self.state == OrderState::Active && self.expires_at.is_none_or(|t| now < t)
    }

    /// The state as seen at `now`: an active order past its expiry reads
    /// as expired even before the expiry task records it.
    pub fn state_at(&self, now: UnixMillis) -> OrderState {
        if self.state == OrderState::Active && !self.in_force(now) {
            OrderState::Expired
        } else {
            self.state
        }
    }

    /// Whether a new admission matching `s` must be denied: an active
    /// suspension of anything it matches, or an active termination of a
    /// broader target than one deployment.
    pub fn denies(&self, s: &Subject<'_>, now: UnixMillis) -> bool {
        self.in_force(now) && self.target.matches(s)
    }

    /// Records `principal`'s approval; activates at quorum.
    pub fn approve(&mut self, principal: &str, now: UnixMillis) -> Result<Step, OrderError> {
        if self.state != OrderState::Pending {
            return Err(OrderError::NotPending(
                self.order_id.clone(),
                self.state.as_str(),
            ));
        }
        if self.approvals.iter().any(|a| a.principal == principal) {
            return Err(OrderError::AlreadyApproved {
                principal: principal.to_string(),
                order: self.order_id.clone(),
                what: "the issue",
            });
        }
        self.approvals.push(Approval {
            principal: principal.to_string(),
            at: now,
        });
        if self.approvals.len() >= self.quorum as usize {
            self.state = OrderState::Active;
            self.activated_at = Some(now);
            Ok(Step::Activated)
        } else {
            Ok(Step::Approved)
        }
    }

    /// Records `principal`'s request or approval to lift; lifts at quorum.
    pub fn lift(
        &mut self,
        principal: &str,
        reason: &str,
        now: UnixMillis,
    ) -> Result<Step, OrderError> {
        if self.state != OrderState::Active {
            return Err(OrderError::NotActive(
                self.order_id.clone(),
                self.state.as_str(),
            ));
        }
        if self.lift_approvals.iter().any(|a| a.principal == principal) {
            return Err(OrderError::AlreadyApproved {
                principal: principal.to_string(),
                order: self.order_id.clone(),
                what: "the lift",
            });
        }
        if self.lift_approvals.is_empty() {
            self.lift_reason = reason.to_string();
        }
        self.lift_approvals.push(Approval {
            principal: principal.to_string(),
            at: now,
        });
        if self.lift_approvals.len() >= self.lift_quorum as usize {
            self.state = OrderState::Lifted;
            self.ended_at = Some(now);
            Ok(Step::Lifted)
        } else {
            Ok(Step::LiftRequested)
        }
    }

    /// What activating this order at `now` does to `d`: the deployment
    /// stopped and held by this order, or `None` when the order leaves it
    /// alone. It stops a running deployment its target matches, and a
    /// termination also ends what another order only suspended.
    ///
    /// The engine offers every deployment the target matches; the ones it
    /// changes are the order's matched deployments, each a fact of the
    /// activation.
    pub fn stop(&self, d: &Deployment, now: UnixMillis) -> Option<Deployment> {
        let stoppable = d.state_at(now) == DeploymentState::Active
            || (self.action == Action::Terminate && d.state == DeploymentState::Suspended);
        (stoppable && self.target.matches_deployment(d)).then(|| Deployment {
            state: self.action.stopped_state(),
            order_id: Some(self.order_id.clone()),
            ..d.clone()
        })
    }

    /// What ending this order (lift or expiry) does to `d`, given `others`,
    /// the other orders in force at that moment: `None` unless this order
    /// holds `d` suspended. A held deployment passes to the first other
    /// order that matches it (it stays stopped), else it runs again.
    ///
    /// The engine offers every deployment this order may hold: those its
    /// target matches suffice, since an order only ever holds deployments
    /// it matches (its matched deployments alone do not: a deployment handed
    /// over from another order is not among them).
    pub fn release(&self, d: &Deployment, others: &[Order]) -> Option<Release> {
        let held = d.state == DeploymentState::Suspended
            && d.order_id.as_deref() == Some(self.order_id.as_str());
        if !held {
            return None;
        }
        let next = others
            .iter()
            .filter(|o| o.order_id != self.order_id)
            .find(|o| o.target.matches_deployment(d));
        Some(match next {
            Some(o) => Release {
                after: Deployment {
                    state: o.action.stopped_state(),
                    order_id: Some(o.order_id.clone()),
                    ..d.clone()
                },
                resumed: false,
            },
            None => Release {
                after: Deployment {
                    state: DeploymentState::Active,
                    order_id: None,
                    ..d.clone()
                },
                resumed: true,
            },
        })
    }

    /// Matched deployments not yet acknowledged.
    pub fn unacknowledged(&self) -> Vec<&str> {
        self.matched_deployments
            .iter()
            .filter(|d| !self.acks.iter().any(|a| &a.deployment_id == *d))
            .map(String::as_str)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(quorum: u32, lift_quorum: u32) -> Order {
        Order {
            order_id: "ord-1".into(),
            target: Target {
                kind: TargetKind::Customer,
                value: "c1".into(),
            },
            action: Action::Terminate,
            reason: "harm".into(),
            legal_basis: String::new(),
            expires_at: None,
            state: OrderState::Pending,
            issued_by: "op-a".into(),
            issued_at: 0,
            approvals: vec![],
            quorum,
            activated_at: None,
            matched_deployments: vec![],
            acks: vec![],
            lift_approvals: vec![],
            lift_quorum,
            lift_reason: String::new(),
            ended_at: None,
            revision: 0,
            reason_salt: String::new(),
        }
    }

    #[test]
    fn quorum_needs_distinct_principals_and_the_issuer_counts_once() {
        let mut o = order(2, 2);
        assert_eq!(o.approve("op-a", 1), Ok(Step::Approved));
        assert!(matches!(
            o.approve("op-a", 2),
            Err(OrderError::AlreadyApproved { .. })
        ));
        assert_eq!(o.state, OrderState::Pending);
        assert_eq!(o.approve("auth-b", 3), Ok(Step::Activated));
        assert_eq!(o.state, OrderState::Active);
        assert!(matches!(
            o.approve("op-c", 4),
            Err(OrderError::NotPending(..))
        ));
    }

    #[test]
    fn lifting_needs_its_own_quorum() {
        let mut o = order(1, 2);
        assert_eq!(o.approve("op-a", 1), Ok(Step::Activated));
        assert_eq!(o.lift("op-a", "fixed", 2), Ok(Step::LiftRequested));
        assert!(o.in_force(3));
        assert!(o.lift("op-a", "again", 3).is_err());
        assert_eq!(o.lift("auth-b", "", 4), Ok(Step::Lifted));
        assert!(!o.in_force(5));
        assert_eq!(o.lift_reason, "fixed");
    }

    #[test]
    fn expiry_ends_force_and_targets_match_their_kind() {
        let mut o = order(1, 1);
        o.expires_at = Some(100);
        o.approve("op-a", 1).unwrap();
        let s = Subject {
            deployment_id: None,
            customer_id: "c1",
            model_digest: "sha256:00",
            certificate_fingerprint: "",
            evaluator: "",
        };
        assert!(o.denies(&s, 99));
        assert!(!o.denies(&s, 100));
        assert!(!o.denies(
            &Subject {
                customer_id: "c2",
                ..s
            },
            50
        ));
        o.target = Target {
            kind: TargetKind::Certificate,
            value: String::new(),
        };
        assert!(!o.denies(&s, 50), "an empty value never matches");
    }

    fn deployment(id: &str, customer: &str, state: DeploymentState) -> Deployment {
        Deployment {
            deployment_id: id.into(),
            request_id: String::new(),
            customer_id: customer.into(),
            customer_version: 1,
            model_digest: format!("sha256:{id}"),
            workload: Default::default(),
            state,
            admitted_at: 0,
            lease_expires_at: 1_000,
            released_at: None,
            admitted_by: String::new(),
            certificate: Default::default(),
            chain_sha256: String::new(),
            renewals: 0,
            order_id: None,
            facts: Vec::new(),
            last_renewal: None,
        }
    }

    fn active_order(id: &str, kind: TargetKind, value: &str, action: Action) -> Order {
        let mut o = order(1, 1);
        o.order_id = id.into();
        o.target = Target {
            kind,
            value: value.into(),
        };
        o.action = action;
        o.state = OrderState::Active;
        o
    }

    #[test]
    fn each_action_stops_in_its_own_state() {
        assert_eq!(
            Action::ALL.map(Action::stopped_state),
            [DeploymentState::Suspended, DeploymentState::Terminated]
        );
    }

    #[test]
    fn activation_stops_running_matches_and_a_termination_also_ends_a_suspension() {
        use DeploymentState::*;
        // (state of the deployment, held by another order, action, now,
        //  whether the target matches) -> state after activation
        let table = [
            (Active, false, Action::Suspend, 10, true, Some(Suspended)),
            (Active, false, Action::Terminate, 10, true, Some(Terminated)),
            (Active, false, Action::Suspend, 10, false, None),
            // The lease ran out: nothing is running to stop.
            (Active, false, Action::Suspend, 1_000, true, None),
            (Active, false, Action::Terminate, 1_000, true, None),
            (Suspended, true, Action::Suspend, 10, true, None),
            (
                Suspended,
                true,
                Action::Terminate,
                10,
                true,
                Some(Terminated),
            ),
            (Suspended, true, Action::Terminate, 10, false, None),
            (Terminated, true, Action::Terminate, 10, true, None),
            (Terminated, true, Action::Suspend, 10, true, None),
            (Released, false, Action::Terminate, 10, true, None),
            (Expired, false, Action::Terminate, 10, true, None),
        ];
        for (state, held, action, now, matching, expected) in table {
            let mut d = deployment("d1", "c1", state);
            if held {
                d.order_id = Some("ord-0".into());
            }
            let customer = if matching { "c1" } else { "c2" };
            let o = active_order("ord-1", TargetKind::Customer, customer, action);
            let after = o.stop(&d, now);
            let row = format!("{state:?} held={held} {action:?} now={now} matching={matching}");
            assert_eq!(after.as_ref().map(|a| a.state), expected, "{row}");
            if let Some(a) = after {
                assert_eq!(a.order_id.as_deref(), Some("ord-1"), "{row}");
                assert_eq!(
                    Deployment {
                        state,
                        order_id: d.order_id.clone(),
                        ..a
                    },
                    d,
                    "{row}"
                );
            }
        }
    }

    #[test]
    fn an_ending_order_resumes_only_what_it_holds_unless_another_order_matches() {
        use DeploymentState::*;
        let lifted = active_order("ord-1", TargetKind::Customer, "c1", Action::Suspend);
        let other_suspend = active_order("ord-2", TargetKind::Deployment, "d1", Action::Suspend);
        let other_terminate = active_order("ord-3", TargetKind::Customer, "c1", Action::Terminate);
        let elsewhere = active_order("ord-4", TargetKind::Customer, "c9", Action::Suspend);
        // (state, holder, other orders in force) -> (state, holder, resumed)
        type After<'a> = Option<(DeploymentState, Option<&'a str>, bool)>;
        let table: [(DeploymentState, &str, Vec<Order>, After); 8] = [
            (Suspended, "ord-1", vec![], Some((Active, None, true))),
            (
                Suspended,
                "ord-1",
                vec![elsewhere.clone()],
                Some((Active, None, true)),
            ),
            (
                Suspended,
                "ord-1",
                vec![lifted.clone()],
                Some((Active, None, true)),
            ),
            (
                Suspended,
                "ord-1",
                vec![elsewhere, other_suspend.clone()],
                Some((Suspended, Some("ord-2"), false)),
            ),
            (
                Suspended,
                "ord-1",
                vec![other_terminate.clone()],
                Some((Terminated, Some("ord-3"), false)),
            ),
            // Held by another order: not this order's to resume.
            (Suspended, "ord-2", vec![], None),
            // A termination is never undone.
            (Terminated, "ord-1", vec![], None),
            (Terminated, "ord-3", vec![other_suspend], None),
        ];
        for (state, holder, others, expected) in table {
            let d = Deployment {
                order_id: Some(holder.into()),
                ..deployment("d1", "c1", state)
            };
            let got = lifted
                .release(&d, &others)
                .map(|r| (r.after.state, r.after.order_id.clone(), r.resumed));
            let expected = expected.map(|(s, h, r)| (s, h.map(String::from), r));
            assert_eq!(got, expected, "{state:?} held by {holder}");
        }
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        const CUSTOMERS: [&str; 2] = ["c0", "c1"];
        const DEPLOYMENTS: [&str; 4] = ["d0", "d1", "d2", "d3"];

        fn target() -> impl Strategy<Value = Target> {
            prop_oneof![
                (0..DEPLOYMENTS.len()).prop_map(|i| Target {
                    kind: TargetKind::Deployment,
                    value: DEPLOYMENTS[i].into(),
                }),
                (0..CUSTOMERS.len()).prop_map(|i| Target {
                    kind: TargetKind::Customer,
                    value: CUSTOMERS[i].into(),
                }),
            ]
        }

        fn orders() -> impl Strategy<Value = Vec<Order>> {
            proptest::collection::vec((target(), any::<bool>()), 1..6).prop_map(|specs| {
                specs
                    .into_iter()
                    .enumerate()
                    .map(|(i, (target, terminate))| Order {
                        order_id: format!("ord-{i}"),
                        target,
                        action: if terminate {
                            Action::Terminate
                        } else {
                            Action::Suspend
                        },
                        ..order(1, 1)
                    })
                    .collect()
            })
        }

        /// The world the store keeps: deployments d0, d1 of customer c0 and
        /// d2, d3 of c1, all running, and orders that are activated and
        /// lifted the way the store applies them.
        struct World {
            deployments: Vec<Deployment>,
            orders: Vec<Order>,
            ever_terminated: Vec<bool>,
        }

        const NOW: UnixMillis = 10;

        impl World {
            fn new(orders: Vec<Order>) -> Self {
                let deployments = DEPLOYMENTS
                    .iter()
                    .enumerate()
                    .map(|(i, id)| deployment(id, CUSTOMERS[i / 2], DeploymentState::Active))
                    .collect();
                Self {
                    deployments,
                    orders,
                    ever_terminated: vec![false; DEPLOYMENTS.len()],
                }
            }

            fn activate(&mut self, i: usize) {
                if self.orders[i].state != OrderState::Pending {
                    return;
                }
                self.orders[i].state = OrderState::Active;
                for d in &mut self.deployments {
                    if let Some(after) = self.orders[i].stop(d, NOW) {
                        *d = after;
                    }
                }
            }

            /// Lifts order `i`; as in the store, only a suspension releases.
            fn lift(&mut self, i: usize) {
                if self.orders[i].state != OrderState::Active {
                    return;
                }
                let others: Vec<Order> = self
                    .orders
                    .iter()
                    .filter(|o| o.in_force(NOW))
                    .cloned()
                    .collect();
                self.orders[i].state = OrderState::Lifted;
                if self.orders[i].action != Action::Suspend {
                    return;
                }
                for d in &mut self.deployments {
                    if let Some(r) = self.orders[i].release(d, &others) {
                        *d = r.after;
                    }
                }
            }

            fn step(&mut self, op: (usize, bool)) {
                let i = op.0 % self.orders.len();
                if op.1 {
                    self.activate(i);
                } else {
                    self.lift(i);
                }
            }

            /// Checks what must hold after every step.
            fn check(&mut self) -> Result<(), TestCaseError> {
                for (n, d) in self.deployments.iter().enumerate() {
                    prop_assert!(
                        !self.ever_terminated[n] || d.state == DeploymentState::Terminated,
                        "{} came back from termination",
                        d.deployment_id
                    );
                    self.ever_terminated[n] |= d.state == DeploymentState::Terminated;
                    let matched_by_one_in_force = self
                        .orders
                        .iter()
                        .any(|o| o.in_force(NOW) && o.target.matches_deployment(d));
                    match d.state {
                        DeploymentState::Active => {
                            prop_assert!(d.order_id.is_none());
                            prop_assert!(
                                !matched_by_one_in_force,
                                "{} runs though an order in force matches it",
                                d.deployment_id
                            );
                        }
                        DeploymentState::Suspended => {
                            let holder = self
                                .orders
                                .iter()
                                .find(|o| d.order_id.as_ref() == Some(&o.order_id));
                            prop_assert!(
                                holder.is_some_and(|o| o.in_force(NOW)
                                    && o.action == Action::Suspend
                                    && o.target.matches_deployment(d)),
                                "{} is held by {:?}, not a suspension in force that matches it",
                                d.deployment_id,
                                d.order_id
                            );
                        }
                        DeploymentState::Terminated => prop_assert!(d.order_id.is_some()),
                        other => prop_assert!(false, "{other:?} from nowhere"),
                    }
                }
                Ok(())
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2048))]

            /// Any sequence of activations and lifts of overlapping orders:
            /// a termination is never undone, a deployment is stopped
            /// exactly while an order in force matches it (held by such an
            /// order), and once every order is lifted, every deployment that
            /// was never terminated runs again.
            #[test]
            fn overlapping_orders_stop_and_resume_deployments_consistently(
                orders in orders(),
                ops in proptest::collection::vec((0usize..8, any::<bool>()), 0..24),
            ) {
                let mut w = World::new(orders);
                for op in ops {
                    w.step(op);
                    w.check()?;
                }
                for i in 0..w.orders.len() {
                    w.lift(i);
                    w.check()?;
                }
                for (n, d) in w.deployments.iter().enumerate() {
                    let expected = if w.ever_terminated[n] {
                        DeploymentState::Terminated
                    } else {
                        DeploymentState::Active
                    };
                    prop_assert_eq!(d.state, expected, "{}", d.deployment_id);
                }
            }

            /// Engines offer orders only the deployments stored in a state
            /// an order may act on (and keep those indexed): an order, any
            /// target and action, activated or ending, leaves every other
            /// deployment alone whoever holds it and whatever the time.
            #[test]
            fn orders_act_only_on_deployments_in_the_states_engines_offer(
                orders in orders(),
                state in proptest::sample::select(
                    DeploymentState::ALL
                        .into_iter()
                        .filter(|s| !s.order_may_act_on())
                        .collect::<Vec<_>>(),
                ),
                holder in 0usize..6,
                now in 0i64..2_000,
            ) {
                let d = Deployment {
                    order_id: Some(format!("ord-{holder}")),
                    ..deployment("d0", "c0", state)
                };
                for o in &orders {
                    prop_assert!(o.stop(&d, now).is_none(), "{} stops a {state:?} one", o.order_id);
                    prop_assert!(o.release(&d, &orders).is_none(), "{} releases a {state:?} one", o.order_id);
                }
            }
        }
    }
}
