//! The admission policy: a pure function from everything warden knows about
//! a request to the list of reasons it must be denied. An empty list is an
//! allow. Every failing check is reported, not only the first, so a
//! scheduler's operator can fix everything in one round.

use super::customer::{Customer, CustomerStatus, Screening, ScreeningStatus};
use super::deployment::{CertificateSummary, Workload};
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
        Some(_) => {}
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
            now: 0,
            workload: &w,
        };
        assert!(decide(&input).is_empty());
    }
}
