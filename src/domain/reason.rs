//! Why a request was denied. The codes are stable: schedulers and dashboards
//! match on them, so a code is never renumbered or reused.

use serde::{Deserialize, Serialize};

/// One failing admission check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReasonCode {
    CertMalformed,
    CertUntrusted,
    CertExpired,
    CertNotYetValid,
    CertRevoked,
    CrlExpired,
    CrlUnavailable,
    CrlInvalid,
    CertWrongUsage,
    CertExtensionMissing,
    CertExtensionMalformed,
    EvaluationFailed,
    DigestMismatch,
    CustomerUnknown,
    CustomerNotVerified,
    RegionOutOfScope,
    AcceleratorsOutOfScope,
    LeaseExpired,
    DeploymentNotActive,
    ScreeningUnresolved,
    OrderActive,
}

impl ReasonCode {
    /// The wire name, as in the proto enum without its prefix.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CertMalformed => "CERT_MALFORMED",
            Self::CertUntrusted => "CERT_UNTRUSTED",
            Self::CertExpired => "CERT_EXPIRED",
            Self::CertNotYetValid => "CERT_NOT_YET_VALID",
            Self::CertRevoked => "CERT_REVOKED",
            Self::CrlExpired => "CRL_EXPIRED",
            Self::CrlUnavailable => "CRL_UNAVAILABLE",
            Self::CrlInvalid => "CRL_INVALID",
            Self::CertWrongUsage => "CERT_WRONG_USAGE",
            Self::CertExtensionMissing => "CERT_EXTENSION_MISSING",
            Self::CertExtensionMalformed => "CERT_EXTENSION_MALFORMED",
            Self::EvaluationFailed => "EVALUATION_FAILED",
            Self::DigestMismatch => "DIGEST_MISMATCH",
            Self::CustomerUnknown => "CUSTOMER_UNKNOWN",
            Self::CustomerNotVerified => "CUSTOMER_NOT_VERIFIED",
            Self::RegionOutOfScope => "REGION_OUT_OF_SCOPE",
            Self::AcceleratorsOutOfScope => "ACCELERATORS_OUT_OF_SCOPE",
            Self::LeaseExpired => "LEASE_EXPIRED",
            Self::DeploymentNotActive => "DEPLOYMENT_NOT_ACTIVE",
            Self::ScreeningUnresolved => "SCREENING_UNRESOLVED",
            Self::OrderActive => "ORDER_ACTIVE",
        }
    }
}

/// A failing check with a human-readable explanation. Messages never carry
/// personal data: they name fields and identifiers, not customer details.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    pub code: ReasonCode,
    pub message: String,
}

impl Reason {
    pub fn new(code: ReasonCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}
