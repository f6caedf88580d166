//! Conversions between wire messages and domain types. Messages are
//! destructured field by field, so a field added to the proto fails to
//! compile here until someone decides what it means.

use prost_types::Timestamp;

use crate::domain::customer::{
    Address, Customer, CustomerDetails, CustomerKind, CustomerStatus, FieldViolation, Person,
    RiskRating, Screening, ScreeningStatus, Verification,
};
use crate::domain::deployment::{Deployment, DeploymentState, Workload};
use crate::domain::reason::{Reason, ReasonCode};
use crate::domain::UnixMillis;
use crate::proto;

pub fn timestamp(ms: UnixMillis) -> Timestamp {
    Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

/// A time in an answer warden wrote (what the CLI prints and verifies).
/// Saturates instead of overflowing. Times in requests go through
/// `request_millis`, which refuses what this would bend.
pub fn millis(ts: &Timestamp) -> UnixMillis {
    ts.seconds
        .saturating_mul(1000)
        .saturating_add(i64::from(ts.nanos) / 1_000_000)
}

/// A time a request carries in `field`: a valid Timestamp (nanos 0 to
/// 999,999,999) from 1970-01-01 to 9999-12-31 inclusive, else a violation
/// naming the field. Every request timestamp passes through here.
pub fn request_millis(field: &str, ts: &Timestamp) -> Result<UnixMillis, FieldViolation> {
    use crate::domain::limits::{MAX_TIME, MIN_TIME};
    let in_range = (0..1_000_000_000).contains(&ts.nanos)
        && (MIN_TIME.div_euclid(1000)..=MAX_TIME.div_euclid(1000)).contains(&ts.seconds);
    if in_range {
        Ok(millis(ts))
    } else {
        Err(FieldViolation::new(
            field,
            "a time from 1970-01-01 to 9999-12-31 (UTC) is required, with nanos below one second",
        ))
    }
}

/// `request_millis` of an optional field; a bad time is pushed to `v` and
/// read as absent.
pub fn optional_request_millis(
    field: &str,
    ts: Option<&Timestamp>,
    v: &mut Vec<FieldViolation>,
) -> Option<UnixMillis> {
    match ts.map(|t| request_millis(field, t)) {
        None => None,
        Some(Ok(ms)) => Some(ms),
        Some(Err(e)) => {
            v.push(e);
            None
        }
    }
}

pub use crate::clock::rfc3339;

pub fn reason_code(code: ReasonCode) -> proto::ReasonCode {
    use proto::ReasonCode as P;
    match code {
        ReasonCode::CertMalformed => P::CertMalformed,
        ReasonCode::CertUntrusted => P::CertUntrusted,
        ReasonCode::CertExpired => P::CertExpired,
        ReasonCode::CertNotYetValid => P::CertNotYetValid,
        ReasonCode::CertRevoked => P::CertRevoked,
        ReasonCode::CrlExpired => P::CrlExpired,
        ReasonCode::CrlUnavailable => P::CrlUnavailable,
        ReasonCode::CrlInvalid => P::CrlInvalid,
        ReasonCode::CertWrongUsage => P::CertWrongUsage,
        ReasonCode::CertExtensionMissing => P::CertExtensionMissing,
        ReasonCode::CertExtensionMalformed => P::CertExtensionMalformed,
        ReasonCode::EvaluationFailed => P::EvaluationFailed,
        ReasonCode::DigestMismatch => P::DigestMismatch,
        ReasonCode::CustomerUnknown => P::CustomerUnknown,
        ReasonCode::CustomerNotVerified => P::CustomerNotVerified,
        ReasonCode::RegionOutOfScope => P::RegionOutOfScope,
        ReasonCode::AcceleratorsOutOfScope => P::AcceleratorsOutOfScope,
        ReasonCode::LeaseExpired => P::LeaseExpired,
        ReasonCode::DeploymentNotActive => P::DeploymentNotActive,
        ReasonCode::ScreeningUnresolved => P::ScreeningUnresolved,
        ReasonCode::OrderActive => P::OrderActive,
        ReasonCode::KycStale => P::KycStale,
    }
}

pub fn reasons(rs: &[Reason]) -> Vec<proto::Reason> {
    rs.iter()
        .map(|r| proto::Reason {
            code: reason_code(r.code) as i32,
            message: r.message.clone(),
        })
        .collect()
}

pub fn workload_from_proto(w: proto::Workload) -> Workload {
    let proto::Workload {
        cluster,
        region,
        node,
        accelerator_type,
        accelerator_count,
        endpoints,
    } = w;
    Workload {
        cluster,
        region,
        node,
        accelerator_type,
        accelerator_count,
        endpoints,
    }
}

pub fn workload_to_proto(w: &Workload) -> proto::Workload {
    proto::Workload {
        cluster: w.cluster.clone(),
        region: w.region.clone(),
        node: w.node.clone(),
        accelerator_type: w.accelerator_type.clone(),
        accelerator_count: w.accelerator_count,
        endpoints: w.endpoints.clone(),
    }
}

pub fn deployment_state(s: DeploymentState) -> proto::DeploymentState {
    match s {
        DeploymentState::Active => proto::DeploymentState::Active,
        DeploymentState::Released => proto::DeploymentState::Released,
        DeploymentState::Expired => proto::DeploymentState::Expired,
        DeploymentState::Suspended => proto::DeploymentState::Suspended,
        DeploymentState::Terminated => proto::DeploymentState::Terminated,
    }
}

pub fn deployment_state_from_proto(s: proto::DeploymentState) -> Option<DeploymentState> {
    match s {
        proto::DeploymentState::Unspecified => None,
        proto::DeploymentState::Active => Some(DeploymentState::Active),
        proto::DeploymentState::Released => Some(DeploymentState::Released),
        proto::DeploymentState::Expired => Some(DeploymentState::Expired),
        proto::DeploymentState::Suspended => Some(DeploymentState::Suspended),
        proto::DeploymentState::Terminated => Some(DeploymentState::Terminated),
    }
}

pub fn deployment_to_proto(d: &Deployment, now: UnixMillis) -> proto::Deployment {
    proto::Deployment {
        deployment_id: d.deployment_id.clone(),
        request_id: d.request_id.clone(),
        customer_id: d.customer_id.clone(),
        model_digest: d.model_digest.clone(),
        workload: Some(workload_to_proto(&d.workload)),
        state: deployment_state(d.state_at(now)) as i32,
        admitted_at: Some(timestamp(d.admitted_at)),
        lease_expires_at: Some(timestamp(d.lease_expires_at)),
        released_at: d.released_at.map(timestamp),
        admitted_by: d.admitted_by.clone(),
        certificate_fingerprint: d.certificate.fingerprint.clone(),
        certificate_serial: d.certificate.serial.clone(),
        evaluator: d.certificate.evaluator.clone(),
        developer: d.certificate.developer.clone(),
        model_name: d.certificate.model_name.clone(),
        model_version: d.certificate.model_version.clone(),
        renewals: d.renewals,
    }
}

pub fn customer_status(s: CustomerStatus) -> proto::CustomerStatus {
    match s {
        CustomerStatus::Pending => proto::CustomerStatus::Pending,
        CustomerStatus::Verified => proto::CustomerStatus::Verified,
        CustomerStatus::Suspended => proto::CustomerStatus::Suspended,
        CustomerStatus::Closed => proto::CustomerStatus::Closed,
    }
}

pub fn customer_status_from_proto(s: proto::CustomerStatus) -> Option<CustomerStatus> {
    match s {
        proto::CustomerStatus::Unspecified => None,
        proto::CustomerStatus::Pending => Some(CustomerStatus::Pending),
        proto::CustomerStatus::Verified => Some(CustomerStatus::Verified),
        proto::CustomerStatus::Suspended => Some(CustomerStatus::Suspended),
        proto::CustomerStatus::Closed => Some(CustomerStatus::Closed),
    }
}

pub fn customer_kind_from_proto(k: proto::CustomerKind) -> Option<CustomerKind> {
    match k {
        proto::CustomerKind::Unspecified => None,
        proto::CustomerKind::Individual => Some(CustomerKind::Individual),
        proto::CustomerKind::Organisation => Some(CustomerKind::Organisation),
    }
}

pub fn customer_to_proto(c: &Customer, screening: Option<&Screening>) -> proto::Customer {
    proto::Customer {
        customer_id: c.customer_id.clone(),
        kind: match c.kind {
            CustomerKind::Individual => proto::CustomerKind::Individual,
            CustomerKind::Organisation => proto::CustomerKind::Organisation,
        } as i32,
        legal_name: c.legal_name.clone(),
        country: c.country.clone(),
        status: customer_status(c.status) as i32,
        status_reason: c.status_reason.clone(),
        version: c.version,
        updated_at: Some(timestamp(c.updated_at)),
        updated_by: c.updated_by.clone(),
        details: (!c.purged).then(|| details_to_proto(&c.details)),
        screening: screening.map(screening_to_proto),
        purged: c.purged,
    }
}

fn risk_to_proto(r: RiskRating) -> proto::RiskRating {
    match r {
        RiskRating::Unspecified => proto::RiskRating::Unspecified,
        RiskRating::Low => proto::RiskRating::Low,
        RiskRating::Medium => proto::RiskRating::Medium,
        RiskRating::High => proto::RiskRating::High,
    }
}

fn person_to_proto(p: &Person) -> proto::Person {
    proto::Person {
        name: p.name.clone(),
        nationality: p.nationality.clone(),
        date_of_birth: p.date_of_birth.clone(),
        id_number: p.id_number.clone(),
        id_issuing_country: p.id_issuing_country.clone(),
        ownership_percent: p.ownership_percent,
        role: p.role.clone(),
    }
}

fn person_from_proto(p: proto::Person) -> Person {
    let proto::Person {
        name,
        nationality,
        date_of_birth,
        id_number,
        id_issuing_country,
        ownership_percent,
        role,
    } = p;
    Person {
        name,
        nationality,
        date_of_birth,
        id_number,
        id_issuing_country,
        ownership_percent,
        role,
    }
}

pub fn details_to_proto(d: &CustomerDetails) -> proto::CustomerDetails {
    proto::CustomerDetails {
        aliases: d.aliases.clone(),
        date_of_birth: d.date_of_birth.clone(),
        place_of_birth: d.place_of_birth.clone(),
        registration_number: d.registration_number.clone(),
        legal_form: d.legal_form.clone(),
        jurisdiction: d.jurisdiction.clone(),
        addresses: d
            .addresses
            .iter()
            .map(|a| proto::Address {
                lines: a.lines.clone(),
                city: a.city.clone(),
                postal_code: a.postal_code.clone(),
                region: a.region.clone(),
                country: a.country.clone(),
            })
            .collect(),
        email: d.email.clone(),
        phone: d.phone.clone(),
        payment_fingerprint: d.payment_fingerprint.clone(),
        beneficial_owners: d.beneficial_owners.iter().map(person_to_proto).collect(),
        key_personnel: d.key_personnel.iter().map(person_to_proto).collect(),
        declared_purpose: d.declared_purpose.clone(),
        verification: d.verification.as_ref().map(|v| proto::Verification {
            method: v.method.clone(),
            evidence_sha256: v.evidence_sha256.clone(),
            verified_by: v.verified_by.clone(),
            verified_at: v.verified_at.map(timestamp),
        }),
        risk_rating: risk_to_proto(d.risk_rating) as i32,
    }
}

/// The details as given; `Err` names the fields that do not convert (an
/// enum out of range, a time outside 1970..9999). Everything else is
/// checked by `validate_identity`.
pub fn details_from_proto(
    d: Option<proto::CustomerDetails>,
) -> Result<CustomerDetails, Vec<FieldViolation>> {
    let proto::CustomerDetails {
        aliases,
        date_of_birth,
        place_of_birth,
        registration_number,
        legal_form,
        jurisdiction,
        addresses,
        email,
        phone,
        payment_fingerprint,
        beneficial_owners,
        key_personnel,
        declared_purpose,
        verification,
        risk_rating,
    } = d.unwrap_or_default();
    let mut v = Vec::new();
    let risk_rating = match proto::RiskRating::try_from(risk_rating) {
        Ok(proto::RiskRating::Unspecified) => RiskRating::Unspecified,
        Ok(proto::RiskRating::Low) => RiskRating::Low,
        Ok(proto::RiskRating::Medium) => RiskRating::Medium,
        Ok(proto::RiskRating::High) => RiskRating::High,
        Err(_) => {
            v.push(FieldViolation::new(
                "details.risk_rating",
                "LOW, MEDIUM or HIGH",
            ));
            RiskRating::Unspecified
        }
    };
    let verification = verification.map(|ver| Verification {
        method: ver.method,
        evidence_sha256: ver.evidence_sha256,
        verified_by: ver.verified_by,
        verified_at: optional_request_millis(
            "details.verification.verified_at",
            ver.verified_at.as_ref(),
            &mut v,
        ),
    });
    if !v.is_empty() {
        return Err(v);
    }
    Ok(CustomerDetails {
        aliases,
        date_of_birth,
        place_of_birth,
        registration_number,
        legal_form,
        jurisdiction,
        addresses: addresses
            .into_iter()
            .map(|a| Address {
                lines: a.lines,
                city: a.city,
                postal_code: a.postal_code,
                region: a.region,
                country: a.country,
            })
            .collect(),
        email,
        phone,
        payment_fingerprint,
        beneficial_owners: beneficial_owners
            .into_iter()
            .map(person_from_proto)
            .collect(),
        key_personnel: key_personnel.into_iter().map(person_from_proto).collect(),
        declared_purpose,
        verification,
        risk_rating,
    })
}

pub fn screening_status(s: ScreeningStatus) -> proto::ScreeningStatus {
    match s {
        ScreeningStatus::NotScreened => proto::ScreeningStatus::NotScreened,
        ScreeningStatus::Clear => proto::ScreeningStatus::Clear,
        ScreeningStatus::PotentialMatch => proto::ScreeningStatus::PotentialMatch,
        ScreeningStatus::FalsePositive => proto::ScreeningStatus::FalsePositive,
        ScreeningStatus::ConfirmedMatch => proto::ScreeningStatus::ConfirmedMatch,
    }
}

pub fn screening_to_proto(s: &Screening) -> proto::Screening {
    proto::Screening {
        status: screening_status(s.status) as i32,
        list_name: s.list_name.clone(),
        list_version: s.list_version.clone(),
        list_sha256: s.list_sha256.clone(),
        screened_at: Some(timestamp(s.screened_at)),
        hits: s
            .hits
            .iter()
            .map(|h| proto::ScreeningHit {
                entry_id: h.entry_id.clone(),
                entry_name: h.entry_name.clone(),
                list_name: h.list_name.clone(),
                matched_field: h.matched_field.clone(),
                score: h.score,
            })
            .collect(),
        resolution_note: s.resolution_note.clone(),
        resolved_by: s.resolved_by.clone(),
        resolved_at: s.resolved_at.map(timestamp),
        threshold: s.threshold,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_including_before_the_epoch() {
        for ms in [0, 1, 999, 1_700_000_000_123, -1, -1001] {
            assert_eq!(millis(&timestamp(ms)), ms);
        }
    }

    #[test]
    fn request_times_are_refused_outside_1970_to_9999() {
        use crate::domain::limits::{MAX_TIME, MIN_TIME};
        for ms in [MIN_TIME, 1, 1_700_000_000_123, MAX_TIME] {
            assert_eq!(request_millis("t", &timestamp(ms)), Ok(ms));
        }
        let bad = [
            timestamp(-1),
            timestamp(MAX_TIME + 1),
            Timestamp {
                seconds: i64::MAX,
                nanos: 0,
            },
            Timestamp {
                seconds: 10,
                nanos: -1,
            },
            Timestamp {
                seconds: 10,
                nanos: 1_000_000_000,
            },
        ];
        for ts in bad {
            let e = request_millis("as_of", &ts).unwrap_err();
            assert_eq!(e.field, "as_of", "{ts:?}");
        }
    }
}
