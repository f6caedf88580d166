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
    KycStale,
}

impl ReasonCode {
    /// Every code, in declaration order (`ALL[c.index()] == c`).
    pub const ALL: [ReasonCode; 22] = [
        Self::CertMalformed,
        Self::CertUntrusted,
        Self::CertExpired,
        Self::CertNotYetValid,
        Self::CertRevoked,
        Self::CrlExpired,
        Self::CrlUnavailable,
        Self::CrlInvalid,
        Self::CertWrongUsage,
        Self::CertExtensionMissing,
        Self::CertExtensionMalformed,
        Self::EvaluationFailed,
        Self::DigestMismatch,
        Self::CustomerUnknown,
        Self::CustomerNotVerified,
        Self::RegionOutOfScope,
        Self::AcceleratorsOutOfScope,
        Self::LeaseExpired,
        Self::DeploymentNotActive,
        Self::ScreeningUnresolved,
        Self::OrderActive,
        Self::KycStale,
    ];

    /// Position in [`ReasonCode::ALL`]: a dense index for per-code counters.
    pub const fn index(self) -> usize {
        self as usize
    }

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
            Self::KycStale => "KYC_STALE",
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_every_code_once_at_its_index() {
        for (i, c) in ReasonCode::ALL.iter().enumerate() {
            assert_eq!(c.index(), i, "{c:?}");
        }
        // Every code the domain has also exists in the API (the conversion
        // to proto needs one), so walking the API's codes finds any that
        // `ALL` forgot.
        for i in 1..256 {
            let Ok(api) = crate::proto::ReasonCode::try_from(i) else {
                continue;
            };
            let name = api.as_str_name().trim_start_matches("REASON_CODE_");
            if let Ok(c) = serde_json::from_str::<ReasonCode>(&format!("\"{name}\"")) {
                assert_eq!(ReasonCode::ALL.get(c.index()), Some(&c), "{name}");
                assert_eq!(c.as_str(), name);
            }
        }
    }
}
