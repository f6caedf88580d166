//! Kill orders: who may stop which deployments, with what quorum, and what
//! an active order denies. Pure rules; the store applies them atomically.

use serde::{Deserialize, Serialize};

use super::deployment::Deployment;
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
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Suspend => "SUSPEND",
            Self::Terminate => "TERMINATE",
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
}
