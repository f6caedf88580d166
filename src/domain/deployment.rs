//! A deployment: one admitted workload serving one model for one customer,
//! alive while its lease is renewed. The rules for its lease and for what
//! its lifecycle records are here, so that every engine keeps them alike.

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

    /// Whether an order can still act on a deployment stored in this
    /// state: stop it (an ACTIVE one, or a SUSPENDED one a termination
    /// ends) or hold it (a SUSPENDED one). [`crate::domain::order::Order::stop`]
    /// and [`crate::domain::order::Order::release`] leave every other
    /// state alone, so an engine need only offer them deployments in these
    /// states, which it can keep indexed.
    pub fn order_may_act_on(self) -> bool {
        matches!(self, Self::Active | Self::Suspended)
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

/// The end of a lease granted at `now`: `lease_millis` later, but never
/// past `licence_end`, the end of the licence period (the certificate's
/// notAfter).
pub fn lease_end(now: UnixMillis, lease_millis: i64, licence_end: UnixMillis) -> UnixMillis {
    now.saturating_add(lease_millis).min(licence_end)
}

impl Deployment {
    /// This deployment after a renewal allowed at `now`: a new lease, one
    /// more renewal, the workload as renewed (its endpoints), and the
    /// customer record version the renewal relied on, if it read one.
    pub fn renewed(
        &self,
        now: UnixMillis,
        lease_millis: i64,
        workload: Workload,
        customer_version: Option<u64>,
    ) -> Deployment {
        Deployment {
            lease_expires_at: lease_end(now, lease_millis, self.certificate.not_after),
            renewals: self.renewals + 1,
            workload,
            customer_version: customer_version.unwrap_or(self.customer_version),
            ..self.clone()
        }
    }

    /// Notes in the lifecycle the ledger entry `index` of a decision that
    /// turned `before` into `self`. An allowed renewal that changed only
    /// the lease replaces the one before it as `last_renewal` (they are
    /// counted in `renewals`, so a long-running deployment's record stays
    /// small); every other decision is a fact. Returns whether the
    /// deployment claims its endpoints at this entry: an allowed renewal
    /// that changed them (whoever claimed an endpoint last runs it).
    pub fn note_decision(
        &mut self,
        before: &Deployment,
        allowed_renewal: bool,
        index: u64,
    ) -> bool {
        if allowed_renewal && self.workload.endpoints == before.workload.endpoints {
            self.last_renewal = Some(index);
            false
        } else {
            self.facts.push(index);
            allowed_renewal
        }
    }

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

    fn deployment() -> Deployment {
        Deployment {
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
        }
    }

    #[test]
    fn an_active_deployment_reads_as_expired_once_its_lease_ran_out() {
        let d = deployment();
        assert_eq!(d.state_at(999), DeploymentState::Active);
        assert_eq!(d.state_at(1_000), DeploymentState::Expired);
        let released = Deployment {
            state: DeploymentState::Released,
            ..d
        };
        assert_eq!(released.state_at(5_000), DeploymentState::Released);
    }

    #[test]
    fn a_lease_never_outlives_the_licence_period() {
        // (now, lease, licence end) -> end of the lease
        for (now, lease, end, expected) in [
            (1_000, 300_000, 1_000_000, 301_000),
            (1_000, 300_000, 200_000, 200_000),
            (1_000, 300_000, 301_000, 301_000),
            (1_000, 300_000, 0, 0),
            (i64::MAX - 5, 300_000, i64::MAX, i64::MAX),
        ] {
            assert_eq!(lease_end(now, lease, end), expected, "{now} {lease} {end}");
        }
    }

    #[test]
    fn a_renewal_extends_the_lease_counts_itself_and_keeps_the_rest() {
        let mut d = deployment();
        d.certificate.not_after = 10_000;
        let w = Workload {
            endpoints: vec!["10.0.0.2:8000".into()],
            ..d.workload.clone()
        };
        let r = d.renewed(500, 1_000, w.clone(), Some(3));
        assert_eq!(
            (
                r.lease_expires_at,
                r.renewals,
                &r.workload,
                r.customer_version
            ),
            (1_500, 1, &w, 3)
        );
        let r = r.renewed(9_500, 1_000, w.clone(), None);
        assert_eq!(
            (r.lease_expires_at, r.renewals, r.customer_version),
            (10_000, 2, 3)
        );
        assert_eq!(
            Deployment {
                lease_expires_at: d.lease_expires_at,
                renewals: 0,
                workload: d.workload.clone(),
                customer_version: 1,
                ..r
            },
            d
        );
    }

    #[test]
    fn only_renewals_that_change_nothing_but_the_lease_stay_out_of_the_facts() {
        let before = deployment();
        let moved = Workload {
            endpoints: vec!["10.0.0.9:8000".into()],
            ..before.workload.clone()
        };
        // (endpoints changed, allowed renewal) -> (last renewal, facts, claims)
        for (changed, allowed_renewal, expected) in [
            (false, true, (Some(7), vec![], false)),
            (true, true, (None, vec![7], true)),
            (false, false, (None, vec![7], false)),
            (true, false, (None, vec![7], false)),
        ] {
            let mut after = before.clone();
            if changed {
                after.workload = moved.clone();
            }
            let claims = after.note_decision(&before, allowed_renewal, 7);
            assert_eq!(
                (after.last_renewal, after.facts, claims),
                expected,
                "changed={changed} allowed_renewal={allowed_renewal}"
            );
        }
    }

    proptest::proptest! {
        /// A lease ends at the earlier of its length and the licence end,
        /// and never before it began unless the licence already ended.
        #[test]
        fn a_lease_ends_at_the_earlier_bound(
            now in 0i64..=crate::domain::limits::MAX_TIME,
            lease in 1i64..=86_400_000,
            end in 0i64..=crate::domain::limits::MAX_TIME,
        ) {
            let e = lease_end(now, lease, end);
            proptest::prop_assert!(e <= end && e <= now + lease);
            proptest::prop_assert!(e == end || e == now + lease);
            proptest::prop_assert_eq!(e > now, end > now);
        }
    }
}
