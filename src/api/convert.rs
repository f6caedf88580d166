//! Conversions between wire messages and domain types. Messages are
//! destructured field by field, so a field added to the proto fails to
//! compile here until someone decides what it means.

use prost_types::Timestamp;

use crate::domain::customer::{Customer, CustomerKind, CustomerStatus};
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

pub fn millis(ts: &Timestamp) -> UnixMillis {
    ts.seconds * 1000 + i64::from(ts.nanos) / 1_000_000
}

/// RFC 3339 in UTC with milliseconds, as licences and the CLI print times.
pub fn rfc3339(ms: UnixMillis) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ms.to_string())
}

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

pub fn customer_to_proto(c: &Customer) -> proto::Customer {
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
}
