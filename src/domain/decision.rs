//! The admission and renewal policy: pure functions from everything warden
//! knows about a request to the list of reasons it must be denied. An empty
//! list is an allow. Every failing check is reported, not only the first, so
//! a scheduler's operator can fix everything in one round.

use super::customer::{Customer, CustomerStatus, Screening, ScreeningStatus};
use super::deployment::{CertificateSummary, Deployment, DeploymentState, Workload};
use super::order::{Order, Subject};
use super::reason::{Reason, ReasonCode};
use super::UnixMillis;

/// Facts read from a model-evaluation certificate whose chain verified.
#[derive(Debug, Clone, PartialEq)]
pub struct EvaluatedModel {
    pub summary: CertificateSummary,
    /// `sha256:<hex>` as certified by the evaluator.
    pub model_digest: String,
    pub evaluation_passed: bool,
    /// `None` means any region (`*`).
    pub regions: Option<Vec<String>>,
    pub max_accelerators: u32,
}

/// The outcome of certificate verification as the policy sees it: the
/// verified model facts when every certificate check passed, and the
/// certificate-level reasons otherwise.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CertificateOutcome {
    pub model: Option<EvaluatedModel>,
    pub problems: Vec<Reason>,
}

/// Everything the policy looks at.
pub struct AdmissionInput<'a> {
    pub certificate: &'a CertificateOutcome,
    /// The digest the scheduler measured, already validated in form.
    pub measured_digest: &'a str,
    pub customer: Option<&'a Customer>,
    pub customer_id: &'a str,
    /// The customer's current sanctions screening, if it was screened.
    pub screening: Option<&'a Screening>,
    pub workload: &'a Workload,
    /// Orders in state ACTIVE; those in force at `now` that match deny.
    pub orders: &'a [Order],
    /// Set for a renewal.
    pub deployment_id: Option<&'a str>,
    /// How old a verified customer's verification may be; `None`: no
    /// limit.
    pub max_verification_age: Option<UnixMillis>,
    pub now: UnixMillis,
}

/// Runs every check and returns every failure.
pub fn decide(input: &AdmissionInput<'_>) -> Vec<Reason> {
    let mut reasons = input.certificate.problems.clone();

    if let Some(model) = &input.certificate.model {
        if !model.evaluation_passed {
            reasons.push(Reason::new(
                ReasonCode::EvaluationFailed,
                "the certificate records a failed evaluation",
            ));
        }
        if model.model_digest != input.measured_digest {
            reasons.push(Reason::new(
                ReasonCode::DigestMismatch,
                format!(
                    "measured model digest {} differs from the certified {}",
                    input.measured_digest, model.model_digest
                ),
            ));
        }
        if let Some(regions) = &model.regions {
            if !regions.iter().any(|r| r == &input.workload.region) {
                reasons.push(Reason::new(
                    ReasonCode::RegionOutOfScope,
                    format!(
                        "region {:?} is not in the certified scope [{}]",
                        input.workload.region,
                        regions.join(", ")
                    ),
                ));
            }
        }
        if input.workload.accelerator_count > model.max_accelerators {
            reasons.push(Reason::new(
                ReasonCode::AcceleratorsOutOfScope,
                format!(
                    "{} accelerators requested, the certificate allows at most {}",
                    input.workload.accelerator_count, model.max_accelerators
                ),
            ));
        }
    }

    match input.customer {
        None => reasons.push(Reason::new(
            ReasonCode::CustomerUnknown,
            format!("no customer with id {:?}", input.customer_id),
        )),
        Some(c) if c.status != CustomerStatus::Verified => reasons.push(Reason::new(
            ReasonCode::CustomerNotVerified,
            format!(
                "customer status is {}, VERIFIED is required",
                c.status.as_str()
            ),
        )),
        Some(c) => reasons.extend(stale_verification(c, input.max_verification_age, input.now)),
    }
    let (fingerprint, evaluator) = input.certificate.model.as_ref().map_or(("", ""), |m| {
        (m.summary.fingerprint.as_str(), m.summary.evaluator.as_str())
    });
    let subject = Subject {
        deployment_id: input.deployment_id,
        customer_id: input.customer_id,
        model_digest: input.measured_digest,
        certificate_fingerprint: fingerprint,
        evaluator,
    };
    for o in input
        .orders
        .iter()
        .filter(|o| o.denies(&subject, input.now))
    {
        reasons.push(Reason::new(
            ReasonCode::OrderActive,
            format!(
                "order {} ({} {}) is in force",
                o.order_id,
                o.action.as_str(),
                o.target.describe()
            ),
        ));
    }
    if let Some(s) = input.screening.filter(|s| s.status.blocks_admission()) {
        let what = if s.status == ScreeningStatus::ConfirmedMatch {
            "a confirmed sanctions match"
        } else {
            "an unresolved potential sanctions match"
        };
        let entries: Vec<&str> = s.hits.iter().map(|h| h.entry_id.as_str()).collect();
        reasons.push(Reason::new(
            ReasonCode::ScreeningUnresolved,
            format!(
                "the customer has {what} on list {} {} (entries {})",
                s.list_name,
                s.list_version,
                entries.join(", ")
            ),
        ));
    }
    reasons
}

const DAY_MILLIS: UnixMillis = 86_400_000;

/// A verified customer whose verification is older than `max_age` at `now`
/// must be verified again: circumstances and ownership change. A record
/// without a verification time has an unknown age and counts as stale
/// (fail closed). The reason names the limit, never the date (the record is
/// the customer's).
fn stale_verification(
    c: &Customer,
    max_age: Option<UnixMillis>,
    now: UnixMillis,
) -> Option<Reason> {
    let max_age = max_age?;
    let verified_at = c.details.verification.as_ref().and_then(|v| v.verified_at);
    let days = max_age / DAY_MILLIS;
    let message = match verified_at {
        Some(at) if now.saturating_sub(at) <= max_age => return None,
        Some(_) => format!(
            "the customer's verification is older than {days} days (kyc.max_verification_age_days); verify the record again"
        ),
        None => format!(
            "the customer record has no verification time, and verifications older than {days} days are refused"
        ),
    };
    Some(Reason::new(ReasonCode::KycStale, message))
}

/// Whether a renewal of `d` at `now` runs the admission checks again (and
/// so needs their input): only while its lease is running. Otherwise its
/// state alone denies the renewal.
pub fn renewal_rechecks(d: &Deployment, now: UnixMillis) -> bool {
    d.state_at(now) == DeploymentState::Active
}

/// The renewal policy: every reason a renewal of `d` at `now` must be
/// denied. A running deployment passes the admission checks again on the
/// facts as they are now (`recheck`, given when [`renewal_rechecks`]), so a
/// renewal fails once anything changed: an expired or revoked certificate, a
/// customer no longer verified, an order. A stopped deployment is denied by
/// its state.
pub fn renew(d: &Deployment, recheck: Option<&AdmissionInput<'_>>, now: UnixMillis) -> Vec<Reason> {
    let reason = match d.state_at(now) {
        DeploymentState::Active => {
            if let Some(input) = recheck {
                return decide(input);
            }
            // A running deployment is never renewed unchecked.
            debug_assert!(
                false,
                "a renewal of a running deployment without its checks"
            );
            Reason::new(
                ReasonCode::DeploymentNotActive,
                "the admission checks were not run",
            )
        }
        state @ (DeploymentState::Suspended | DeploymentState::Terminated)
            if d.order_id.is_some() =>
        {
            Reason::new(
                ReasonCode::OrderActive,
                format!(
                    "the deployment is {} by order {}",
                    if state == DeploymentState::Suspended {
                        "suspended"
                    } else {
                        "terminated"
                    },
                    d.order_id.as_deref().unwrap_or_default()
                ),
            )
        }
        DeploymentState::Expired => Reason::new(
            ReasonCode::LeaseExpired,
            "the lease expired; the workload must stop and be admitted again",
        ),
        other => Reason::new(
            ReasonCode::DeploymentNotActive,
            format!("the deployment is {other:?}, not active"),
        ),
    };
    vec![reason]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::customer::CustomerKind;

    fn model() -> EvaluatedModel {
        EvaluatedModel {
            summary: CertificateSummary::default(),
            model_digest: format!("sha256:{}", "a".repeat(64)),
            evaluation_passed: true,
            regions: Some(vec!["eu-west-1".into()]),
            max_accelerators: 8,
        }
    }

    fn customer(status: CustomerStatus) -> Customer {
        Customer {
            customer_id: "c1".into(),
            kind: CustomerKind::Organisation,
            legal_name: "Example Labs".into(),
            country: "DE".into(),
            status,
            status_reason: String::new(),
            version: 1,
            updated_at: 0,
            updated_by: String::new(),
            commitment_salt: String::new(),
            details: Default::default(),
            purged: false,
        }
    }

    fn workload(region: &str, count: u32) -> Workload {
        Workload {
            region: region.into(),
            accelerator_count: count,
            ..Workload::default()
        }
    }

    fn codes(r: &[Reason]) -> Vec<ReasonCode> {
        r.iter().map(|r| r.code).collect()
    }

    #[test]
    fn everything_in_order_is_allowed() {
        let cert = CertificateOutcome {
            model: Some(model()),
            problems: vec![],
        };
        let c = customer(CustomerStatus::Verified);
        let digest = format!("sha256:{}", "a".repeat(64));
        let w = workload("eu-west-1", 8);
        let input = AdmissionInput {
            certificate: &cert,
            measured_digest: &digest,
            customer: Some(&c),
            customer_id: "c1",
            screening: None,
            orders: &[],
            deployment_id: None,
            max_verification_age: None,
            now: 0,
            workload: &w,
        };
        assert!(decide(&input).is_empty());
    }

    #[test]
    fn every_failing_check_is_reported() {
        let mut m = model();
        m.evaluation_passed = false;
        let cert = CertificateOutcome {
            model: Some(m),
            problems: vec![],
        };
        let c = customer(CustomerStatus::Pending);
        let digest = format!("sha256:{}", "b".repeat(64));
        let w = workload("us-east-1", 9);
        let input = AdmissionInput {
            certificate: &cert,
            measured_digest: &digest,
            customer: Some(&c),
            customer_id: "c1",
            screening: None,
            orders: &[],
            deployment_id: None,
            max_verification_age: None,
            now: 0,
            workload: &w,
        };
        assert_eq!(
            codes(&decide(&input)),
            vec![
                ReasonCode::EvaluationFailed,
                ReasonCode::DigestMismatch,
                ReasonCode::RegionOutOfScope,
                ReasonCode::AcceleratorsOutOfScope,
                ReasonCode::CustomerNotVerified,
            ]
        );
    }

    #[test]
    fn certificate_problems_and_unknown_customer_are_both_reported() {
        let cert = CertificateOutcome {
            model: None,
            problems: vec![Reason::new(ReasonCode::CertUntrusted, "x")],
        };
        let digest = format!("sha256:{}", "a".repeat(64));
        let w = workload("eu-west-1", 1);
        let input = AdmissionInput {
            certificate: &cert,
            measured_digest: &digest,
            customer: None,
            customer_id: "nobody",
            screening: None,
            orders: &[],
            deployment_id: None,
            max_verification_age: None,
            now: 0,
            workload: &w,
        };
        assert_eq!(
            codes(&decide(&input)),
            vec![ReasonCode::CertUntrusted, ReasonCode::CustomerUnknown]
        );
    }

    #[test]
    fn a_wildcard_scope_allows_any_region() {
        let mut m = model();
        m.regions = None;
        let cert = CertificateOutcome {
            model: Some(m),
            problems: vec![],
        };
        let c = customer(CustomerStatus::Verified);
        let digest = format!("sha256:{}", "a".repeat(64));
        let w = workload("ap-south-2", 1);
        let input = AdmissionInput {
            certificate: &cert,
            measured_digest: &digest,
            customer: Some(&c),
            customer_id: "c1",
            screening: None,
            orders: &[],
            deployment_id: None,
            max_verification_age: None,
            now: 0,
            workload: &w,
        };
        assert!(decide(&input).is_empty());
    }

    fn deployment(state: DeploymentState, order_id: Option<&str>) -> Deployment {
        Deployment {
            deployment_id: "d1".into(),
            request_id: "r1".into(),
            customer_id: "c1".into(),
            customer_version: 1,
            model_digest: format!("sha256:{}", "a".repeat(64)),
            workload: workload("eu-west-1", 8),
            state,
            admitted_at: 0,
            lease_expires_at: 1_000,
            released_at: None,
            admitted_by: String::new(),
            certificate: CertificateSummary::default(),
            chain_sha256: String::new(),
            renewals: 0,
            order_id: order_id.map(String::from),
            facts: Vec::new(),
            last_renewal: None,
        }
    }

    #[test]
    fn a_renewal_is_denied_by_the_state_of_a_deployment_that_is_not_running() {
        use DeploymentState::*;
        // (state, holding order, now) -> the one reason, or the checks re-run
        for (state, order, now, expected) in [
            (Active, None, 999, None),
            (Active, None, 1_000, Some(ReasonCode::LeaseExpired)),
            (Suspended, Some("ord-1"), 10, Some(ReasonCode::OrderActive)),
            (Terminated, Some("ord-1"), 10, Some(ReasonCode::OrderActive)),
            (Terminated, None, 10, Some(ReasonCode::DeploymentNotActive)),
            (Released, None, 10, Some(ReasonCode::DeploymentNotActive)),
            (Expired, None, 10, Some(ReasonCode::LeaseExpired)),
        ] {
            let d = deployment(state, order);
            assert_eq!(renewal_rechecks(&d, now), expected.is_none(), "{state:?}");
            if let Some(code) = expected {
                assert_eq!(
                    codes(&renew(&d, None, now)),
                    vec![code],
                    "{state:?} at {now}"
                );
            }
        }
        let held = renew(&deployment(Suspended, Some("ord-7")), None, 10);
        assert_eq!(
            held[0].message,
            "the deployment is suspended by order ord-7"
        );
    }

    #[test]
    fn a_running_deployment_is_renewed_on_the_admission_checks_as_they_are_now() {
        let d = deployment(DeploymentState::Active, None);
        let mut m = model();
        m.regions = Some(vec!["us-east-1".into()]);
        let cert = CertificateOutcome {
            model: Some(m),
            problems: vec![Reason::new(ReasonCode::CertRevoked, "revoked")],
        };
        let c = customer(CustomerStatus::Suspended);
        let mut input = AdmissionInput {
            certificate: &cert,
            measured_digest: &d.model_digest,
            customer: Some(&c),
            customer_id: &d.customer_id,
            screening: None,
            orders: &[],
            deployment_id: Some(&d.deployment_id),
            max_verification_age: None,
            now: 10,
            workload: &d.workload,
        };
        assert_eq!(
            codes(&renew(&d, Some(&input), 10)),
            vec![
                ReasonCode::CertRevoked,
                ReasonCode::RegionOutOfScope,
                ReasonCode::CustomerNotVerified
            ]
        );
        let fine = CertificateOutcome {
            model: Some(model()),
            problems: vec![],
        };
        let verified = customer(CustomerStatus::Verified);
        input.certificate = &fine;
        input.customer = Some(&verified);
        assert!(renew(&d, Some(&input), 10).is_empty());
    }

    #[test]
    fn a_verification_older_than_the_limit_is_stale() {
        use crate::domain::customer::Verification;
        const DAY: UnixMillis = 86_400_000;
        let now = 1_000 * DAY;
        let cert = CertificateOutcome {
            model: Some(model()),
            problems: vec![],
        };
        let digest = format!("sha256:{}", "a".repeat(64));
        let w = workload("eu-west-1", 8);
        // (status, verified at, limit) -> reasons
        for (status, verified_at, limit, expected) in [
            (
                CustomerStatus::Verified,
                Some(now - 400 * DAY),
                None,
                vec![],
            ),
            (CustomerStatus::Verified, None, None, vec![]),
            (
                CustomerStatus::Verified,
                Some(now - 365 * DAY),
                Some(365 * DAY),
                vec![],
            ),
            (
                CustomerStatus::Verified,
                Some(now - 10 * DAY),
                Some(365 * DAY),
                vec![],
            ),
            (
                CustomerStatus::Verified,
                Some(now + DAY),
                Some(365 * DAY),
                vec![],
            ),
            (
                CustomerStatus::Verified,
                Some(now - 365 * DAY - 1),
                Some(365 * DAY),
                vec![ReasonCode::KycStale],
            ),
            (
                CustomerStatus::Verified,
                None,
                Some(365 * DAY),
                vec![ReasonCode::KycStale],
            ),
            // A customer not verified is reported as such, not also stale.
            (
                CustomerStatus::Pending,
                Some(now - 400 * DAY),
                Some(365 * DAY),
                vec![ReasonCode::CustomerNotVerified],
            ),
        ] {
            let mut c = customer(status);
            c.details.verification = Some(Verification {
                verified_at,
                ..Verification::default()
            });
            let input = AdmissionInput {
                certificate: &cert,
                measured_digest: &digest,
                customer: Some(&c),
                customer_id: "c1",
                screening: None,
                orders: &[],
                deployment_id: None,
                max_verification_age: limit,
                now,
                workload: &w,
            };
            let reasons = decide(&input);
            assert_eq!(
                codes(&reasons),
                expected,
                "{status:?} {verified_at:?} {limit:?}"
            );
            if let Some(r) = reasons.iter().find(|r| r.code == ReasonCode::KycStale) {
                assert!(r.message.contains("365 days"), "{}", r.message);
            }
        }
    }

    proptest::proptest! {
        /// Every state a deployment can be in gets a renewal answer: the
        /// checks run again exactly while the lease runs, and otherwise
        /// exactly one reason denies it.
        #[test]
        fn every_deployment_state_has_a_renewal_answer(
            state in proptest::sample::select(DeploymentState::ALL.to_vec()),
            held in proptest::prelude::any::<bool>(),
            now in 0i64..2_000,
        ) {
            let d = deployment(state, held.then_some("ord-1"));
            if renewal_rechecks(&d, now) {
                proptest::prop_assert_eq!(d.state_at(now), DeploymentState::Active);
            } else {
                proptest::prop_assert_eq!(renew(&d, None, now).len(), 1);
            }
        }
    }
}
