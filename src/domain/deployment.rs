//! A deployment: one admitted workload serving one model for one customer,
//! alive while its lease is renewed.

use serde::{Deserialize, Serialize};

use super::UnixMillis;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workload {
    pub cluster: String,
    pub region: String,
    pub node: String,
    pub accelerator_type: String,
    pub accelerator_count: u32,
    pub endpoints: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DeploymentState {
    Active,
    Released,
    Expired,
    Suspended,
    Terminated,
}

impl DeploymentState {
    pub const ALL: [DeploymentState; 5] = [
        Self::Active,
        Self::Released,
        Self::Expired,
        Self::Suspended,
        Self::Terminated,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "ACTIVE",
            Self::Released => "RELEASED",
            Self::Expired => "EXPIRED",
            Self::Suspended => "SUSPENDED",
            Self::Terminated => "TERMINATED",
        }
    }
}

/// What the model-evaluation certificate said, kept with the deployment so
/// that attribution never needs the certificate again.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateSummary {
    /// SHA-256 of the leaf certificate's DER, lower-case hex.
    pub fingerprint: String,
    pub serial: String,
    /// Subject of the evaluator CA that issued the certificate.
    pub evaluator: String,
    pub developer: String,
    pub model_name: String,
    pub model_version: String,
    /// End of the licence period (the certificate's notAfter).
    pub not_after: UnixMillis,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployment {
    pub deployment_id: String,
    pub request_id: String,
    pub customer_id: String,
    /// The customer record version admission relied on.
    pub customer_version: u64,
    pub model_digest: String,
    pub workload: Workload,
    pub state: DeploymentState,
    pub admitted_at: UnixMillis,
    pub lease_expires_at: UnixMillis,
    pub released_at: Option<UnixMillis>,
    /// SPIFFE id of the scheduler that admitted it; only it may renew or
    /// release the deployment.
    pub admitted_by: String,
    pub certificate: CertificateSummary,
    /// SHA-256 of the certificate chain PEM, the key under which the chain
    /// is stored for re-verification on renewal.
    pub chain_sha256: String,
    pub renewals: u32,
    /// The order that suspended or terminated it.
    #[serde(default)]
    pub order_id: Option<String>,
    /// Ledger indices of the entries in its lifecycle: admission, renewals
    /// that changed endpoints or were denied, orders that stopped or resumed
    /// it, acknowledgements, release. Kept by the store.
    #[serde(default)]
    pub facts: Vec<u64>,
    /// The latest renewal that changed only the lease (the ones before it
    /// are counted in `renewals`). Kept by the store.
    #[serde(default)]
    pub last_renewal: Option<u64>,
}

impl Deployment {
    /// The state as seen at `now`: an active deployment whose lease ran out
    /// is expired even before anything rewrote the record.
    pub fn state_at(&self, now: UnixMillis) -> DeploymentState {
        match self.state {
            DeploymentState::Active if self.lease_expires_at <= now => DeploymentState::Expired,
            s => s,
        }
    }

    /// The end of the time it may have run: its release, else the end of
    /// its lease.
    pub fn end(&self) -> UnixMillis {
        match (self.state, self.released_at) {
            (DeploymentState::Released, Some(at)) => at,
            _ => self.lease_expires_at,
        }
    }

    /// [`Self::end`], once nothing can change it: released, or terminated
    /// (never renewed or resumed again). `None` while it may still run.
    pub fn final_end(&self) -> Option<UnixMillis> {
        matches!(
            self.state,
            DeploymentState::Released | DeploymentState::Terminated
        )
        .then(|| self.end())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_active_deployment_reads_as_expired_once_its_lease_ran_out() {
        let d = Deployment {
            deployment_id: "d".into(),
            request_id: "r".into(),
            customer_id: "c".into(),
            customer_version: 1,
            model_digest: String::new(),
            workload: Workload::default(),
            state: DeploymentState::Active,
            admitted_at: 0,
            lease_expires_at: 1_000,
            released_at: None,
            admitted_by: String::new(),
            certificate: CertificateSummary::default(),
            chain_sha256: String::new(),
            renewals: 0,
            order_id: None,
            facts: Vec::new(),
            last_renewal: None,
        };
        assert_eq!(d.state_at(999), DeploymentState::Active);
        assert_eq!(d.state_at(1_000), DeploymentState::Expired);
        let released = Deployment {
            state: DeploymentState::Released,
            ..d
        };
        assert_eq!(released.state_at(5_000), DeploymentState::Released);
    }
}
