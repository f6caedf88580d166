//! Attribution reports: what an answer to an authority discloses, the
//! ledger evidence it rests on, and the offline check of that evidence.
//!
//! Every fact in a report is either a ledger entry (with an inclusion proof
//! against one signed checkpoint) or derived from entries and from material
//! that entries bind: a customer record is bound by the salted commitment
//! its entry carries, a certificate by the fingerprint in the admission
//! entry. The server builds each deployment's view with [`derive`], and
//! [`verify`] checks the evidence and then runs the same [`derive`] over it:
//! the view must come out identical, so no edit to a saved report passes.
//!
//! What a report cannot prove is completeness: that no other deployment
//! matched, or that no later record version exists. The ledger's
//! append-only checkpoints let an auditor check that separately.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::domain::attribution::{normalize_endpoint, Selector};
use crate::domain::customer::Customer;
use crate::domain::deployment::{DeploymentState, Workload};
use crate::domain::UnixMillis;
use crate::ledger::checkpoint::Checkpoint;
use crate::ledger::entry::{commitment, CertificateRef, CustomerRef, Entry, Event};
use crate::ledger::note::Verifier;
use crate::ledger::tree;

/// A ledger entry with its inclusion proof in the report's checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvenEntry {
    pub index: u64,
    /// The entry exactly as stored and hashed (deterministic JSON).
    pub entry: String,
    /// Hashes, lower-case hex, leaf to root.
    pub inclusion_proof: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LifecycleKind {
    Admitted,
    Renewed,
    EndpointsChanged,
    RenewalDenied,
    Suspended,
    Terminated,
    Resumed,
    Acknowledged,
    Released,
    Expired,
}

impl LifecycleKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admitted => "ADMITTED",
            Self::Renewed => "RENEWED",
            Self::EndpointsChanged => "ENDPOINTS_CHANGED",
            Self::RenewalDenied => "RENEWAL_DENIED",
            Self::Suspended => "SUSPENDED",
            Self::Terminated => "TERMINATED",
            Self::Resumed => "RESUMED",
            Self::Acknowledged => "ACKNOWLEDGED",
            Self::Released => "RELEASED",
            Self::Expired => "EXPIRED",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LifecycleEvent {
    pub kind: LifecycleKind,
    pub at: UnixMillis,
    /// The entry the event rests on.
    pub ledger_index: u64,
    /// The endpoints in force after the event.
    pub endpoints: Vec<String>,
    pub lease_expires_at: Option<UnixMillis>,
    pub order_id: Option<String>,
    /// Who caused it (SPIFFE id).
    pub principal: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateFacts {
    pub fingerprint: String,
    pub serial: String,
    pub evaluator: String,
    pub developer: String,
    pub model_name: String,
    pub model_version: String,
    pub chain_pem: String,
    pub oid_base_arc: String,
}

/// One version of the deployer's KYC record and what binds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityRecord {
    pub version: u64,
    /// `sha256:<hex>` over the record's salt and its JSON.
    pub commitment: String,
    /// The entry that recorded this version.
    pub ledger_index: u64,
    /// Retention purged the personal data; the record is the tombstone.
    pub purged: bool,
    pub record: Customer,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttributedDeployment {
    pub deployment_id: String,
    pub customer_id: String,
    pub model_digest: String,
    pub admitted_by: String,
    pub workload: Workload,
    pub state: DeploymentState,
    pub lifecycle: Vec<LifecycleEvent>,
    pub certificate: CertificateFacts,
    pub identity_at_admission: Option<IdentityRecord>,
    pub identity_current: Option<IdentityRecord>,
    pub held_endpoint: bool,
}

/// An answer to `Attribution.Attribute`, as the CLI saves it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    pub request_id: String,
    pub request_ledger_index: u64,
    pub flagged_for_review: bool,
    pub answered_at: UnixMillis,
    pub disclosure_ledger_index: u64,
    #[serde(default)]
    pub next_page_token: String,
    /// The signed checkpoint every proof is against.
    pub checkpoint: String,
    pub deployments: Vec<AttributedDeployment>,
    /// In index order.
    pub entries: Vec<ProvenEntry>,
}

/// What [`derive`] needs beyond the entries: material the entries bind.
#[derive(Debug, Clone)]
pub struct Bound {
    pub chain_pem: String,
    pub oid_base_arc: String,
    pub identity_at_admission: Option<IdentityRecord>,
    pub identity_current: Option<IdentityRecord>,
}

/// The customer version an entry records, if it records one.
pub fn customer_ref(entry: &Entry) -> Option<&CustomerRef> {
    match &entry.event {
        Event::CustomerRegistered { customer, .. }
        | Event::CustomerUpdated { customer, .. }
        | Event::CustomerStatusChanged { customer, .. } => Some(customer),
        Event::ScreeningResolved {
            customer: Some(customer),
            ..
        } => Some(customer),
        _ => None,
    }
}

fn check_identity(
    what: &str,
    identity: &IdentityRecord,
    customer_id: &str,
    entries: &BTreeMap<u64, Entry>,
) -> Result<(), String> {
    let entry = entries.get(&identity.ledger_index).ok_or_else(|| {
        format!(
            "{what}: entry {} is not in the report",
            identity.ledger_index
        )
    })?;
    let recorded = customer_ref(entry).ok_or_else(|| {
        format!(
            "{what}: entry {} records no customer version",
            identity.ledger_index
        )
    })?;
    let claimed = CustomerRef {
        customer_id: customer_id.to_string(),
        version: identity.version,
        commitment: identity.commitment.clone(),
    };
    if *recorded != claimed {
        return Err(format!(
            "{what}: entry {} records {} version {} with {}, not the version shown",
            identity.ledger_index, recorded.customer_id, recorded.version, recorded.commitment
        ));
    }
    if identity.record.customer_id != customer_id || identity.record.version != identity.version {
        return Err(format!(
            "{what}: the record is not {customer_id} version {}",
            identity.version
        ));
    }
    if identity.purged != identity.record.purged {
        return Err(format!("{what}: purged flag does not match the record"));
    }
    if !identity.purged && commitment(&identity.record) != identity.commitment {
        return Err(format!(
            "{what}: the record does not match the commitment in entry {}",
            identity.ledger_index
        ));
    }
    Ok(())
}

/// Builds a deployment's view from the entries that concern it and the
/// material they bind, checking every binding. The server answers with
/// this; [`verify`] recomputes it.
pub fn derive(
    deployment_id: &str,
    entries: &BTreeMap<u64, Entry>,
    selector: &Selector,
    answered_at: UnixMillis,
    bound: &Bound,
) -> Result<AttributedDeployment, String> {
    let (admission_index, admission) = entries
        .iter()
        .find(|(_, e)| {
            matches!(&e.event, Event::Admission { deployment_id: Some(d), allowed: true, .. } if d == deployment_id)
        })
        .ok_or_else(|| format!("deployment {deployment_id}: no admission entry"))?;
    let Event::Admission {
        customer_id,
        customer,
        model_digest,
        certificate,
        lease_expires_at,
        workload,
        ..
    } = &admission.event
    else {
        return Err("unreachable: not an admission".into());
    };
    let certificate_ref = certificate
        .as_ref()
        .ok_or_else(|| format!("deployment {deployment_id}: admission names no certificate"))?;

    let claims = bound_claims(deployment_id, certificate_ref, bound)?;
    check_bound_identities(
        deployment_id,
        customer_id,
        customer.as_ref(),
        bound,
        entries,
    )?;

    let mut replay = Replay::start(*admission_index, admission, workload, *lease_expires_at);
    for (&index, e) in entries.range(admission_index + 1..) {
        replay.apply(deployment_id, index, e);
    }
    replay.expire(answered_at);
    let Replay {
        state, lifecycle, ..
    } = replay;

    let held_endpoint = match selector {
        Selector::Endpoint { endpoint, at } => held_at(&lifecycle, endpoint, *at),
        _ => false,
    };
    Ok(AttributedDeployment {
        deployment_id: deployment_id.to_string(),
        customer_id: customer_id.clone(),
        model_digest: model_digest.clone(),
        admitted_by: admission.principal.clone(),
        workload: workload.clone(),
        state,
        lifecycle,
        certificate: CertificateFacts {
            fingerprint: certificate_ref.fingerprint.clone(),
            serial: certificate_ref.serial.clone(),
            evaluator: certificate_ref.evaluator.clone(),
            developer: claims.developer,
            model_name: claims.model_name,
            model_version: claims.model_version,
            chain_pem: bound.chain_pem.clone(),
            oid_base_arc: bound.oid_base_arc.clone(),
        },
        identity_at_admission: bound.identity_at_admission.clone(),
        identity_current: bound.identity_current.clone(),
        held_endpoint,
    })
}

/// The claims of the bound certificate, which must be the one the admission
/// entry names by its fingerprint.
fn bound_claims(
    deployment_id: &str,
    certificate_ref: &CertificateRef,
    bound: &Bound,
) -> Result<crate::pki::EvaluationClaims, String> {
    let certs = crate::pki::Verifier::default()
        .parse_chain(&bound.chain_pem)
        .map_err(|e| format!("deployment {deployment_id}: certificate chain: {e}"))?;
    let leaf = certs
        .first()
        .ok_or_else(|| format!("deployment {deployment_id}: empty certificate chain"))?;
    let fingerprint = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(leaf.as_ref()));
    if fingerprint != certificate_ref.fingerprint {
        return Err(format!(
            "deployment {deployment_id}: the certificate's SHA-256 {fingerprint} is not the {} admission recorded",
            certificate_ref.fingerprint
        ));
    }
    let profile = crate::pki::Profile::from_oid_str(&bound.oid_base_arc)
        .map_err(|e| format!("oid_base_arc: {e}"))?;
    crate::pki::verify::certificate_claims(leaf.as_ref(), &profile)
        .map_err(|e| format!("deployment {deployment_id}: {e}"))
}

/// The bound identities, each against the commitment its entry carries; the
/// one at admission must also be the version admission relied on.
fn check_bound_identities(
    deployment_id: &str,
    customer_id: &str,
    admitted_with: Option<&CustomerRef>,
    bound: &Bound,
    entries: &BTreeMap<u64, Entry>,
) -> Result<(), String> {
    if let Some(identity) = &bound.identity_at_admission {
        check_identity("identity at admission", identity, customer_id, entries)?;
        let admitted_with = admitted_with.ok_or_else(|| {
            format!("deployment {deployment_id}: admission recorded no customer version")
        })?;
        if identity.version != admitted_with.version
            || identity.commitment != admitted_with.commitment
        {
            return Err(format!(
                "identity at admission: admission relied on version {}, not {}",
                admitted_with.version, identity.version
            ));
        }
    }
    if let Some(identity) = &bound.identity_current {
        check_identity("current identity", identity, customer_id, entries)?;
    }
    Ok(())
}

/// A deployment's lifecycle replayed from its ledger entries, in order.
struct Replay {
    lifecycle: Vec<LifecycleEvent>,
    state: DeploymentState,
    endpoints: Vec<String>,
    /// The lease in force and the entry that granted it.
    lease: UnixMillis,
    lease_index: u64,
}

impl Replay {
    fn start(
        index: u64,
        admission: &Entry,
        workload: &Workload,
        lease_expires_at: Option<UnixMillis>,
    ) -> Self {
        Replay {
            lifecycle: vec![LifecycleEvent {
                kind: LifecycleKind::Admitted,
                at: admission.at,
                ledger_index: index,
                endpoints: workload.endpoints.clone(),
                lease_expires_at,
                order_id: None,
                principal: admission.principal.clone(),
            }],
            state: DeploymentState::Active,
            endpoints: workload.endpoints.clone(),
            lease: lease_expires_at.unwrap_or(admission.at),
            lease_index: index,
        }
    }

    /// An active deployment whose lease ended by `before` expired then.
    fn expire(&mut self, before: UnixMillis) {
        if self.state == DeploymentState::Active && self.lease <= before {
            self.state = DeploymentState::Expired;
            self.lifecycle.push(LifecycleEvent {
                kind: LifecycleKind::Expired,
                at: self.lease,
                ledger_index: self.lease_index,
                endpoints: self.endpoints.clone(),
                lease_expires_at: Some(self.lease),
                order_id: None,
                principal: String::new(),
            });
        }
    }

    /// Applies the entry at `index`, if it concerns `deployment_id`.
    fn apply(&mut self, deployment_id: &str, index: u64, e: &Entry) {
        let Some((kind, order_id)) = self.step(deployment_id, index, e) else {
            return;
        };
        self.lifecycle.push(LifecycleEvent {
            kind,
            at: e.at,
            ledger_index: index,
            endpoints: self.endpoints.clone(),
            lease_expires_at: matches!(
                kind,
                LifecycleKind::Renewed | LifecycleKind::EndpointsChanged
            )
            .then_some(self.lease),
            order_id,
            principal: e.principal.clone(),
        });
    }

    /// The state change an entry makes, and the lifecycle event it shows as.
    fn step(
        &mut self,
        deployment_id: &str,
        index: u64,
        e: &Entry,
    ) -> Option<(LifecycleKind, Option<String>)> {
        match &e.event {
            Event::Renewal {
                deployment_id: d,
                allowed,
                lease_expires_at,
                endpoints: renewed,
                ..
            } if d == deployment_id => {
                self.expire(e.at);
                if !*allowed {
                    return Some((LifecycleKind::RenewalDenied, None));
                }
                let kind = if *renewed == self.endpoints {
                    LifecycleKind::Renewed
                } else {
                    LifecycleKind::EndpointsChanged
                };
                self.endpoints.clone_from(renewed);
                self.lease = lease_expires_at.unwrap_or(self.lease);
                self.lease_index = index;
                Some((kind, None))
            }
            Event::Release {
                deployment_id: d, ..
            } if d == deployment_id => {
                self.expire(e.at);
                self.state = DeploymentState::Released;
                Some((LifecycleKind::Released, None))
            }
            Event::Order {
                order_id,
                events,
                action,
                deployment_ids,
                ..
            } if deployment_ids.iter().any(|d| d == deployment_id) => {
                let has = |k: &str| events.iter().any(|x| x == k);
                let kind = if has("ACTIVATED") {
                    self.expire(e.at);
                    if action == "TERMINATE" {
                        self.state = DeploymentState::Terminated;
                        LifecycleKind::Terminated
                    } else {
                        self.state = DeploymentState::Suspended;
                        LifecycleKind::Suspended
                    }
                } else if has("LIFTED") || has("EXPIRED") {
                    self.state = DeploymentState::Active;
                    LifecycleKind::Resumed
                } else if has("ACKNOWLEDGED") {
                    LifecycleKind::Acknowledged
                } else {
                    return None;
                };
                Some((kind, Some(order_id.clone())))
            }
            _ => None,
        }
    }
}

/// Whether the lifecycle shows the deployment serving `endpoint` at `at`:
/// admitted by then, neither stopped nor expired, and with the endpoint
/// among those in force.
fn held_at(lifecycle: &[LifecycleEvent], endpoint: &str, at: UnixMillis) -> bool {
    let mut serving = false;
    let mut endpoints: &[String] = &[];
    let mut events: Vec<&LifecycleEvent> = lifecycle.iter().filter(|e| e.at <= at).collect();
    events.sort_by_key(|e| e.at);
    for e in events {
        match e.kind {
            LifecycleKind::Admitted
            | LifecycleKind::Renewed
            | LifecycleKind::EndpointsChanged
            | LifecycleKind::Resumed => serving = true,
            LifecycleKind::Suspended
            | LifecycleKind::Terminated
            | LifecycleKind::Released
            | LifecycleKind::Expired => serving = false,
            LifecycleKind::RenewalDenied | LifecycleKind::Acknowledged => {}
        }
        endpoints = &e.endpoints;
    }
    serving && endpoints.iter().any(|e| normalize_endpoint(e) == endpoint)
}

/// Checks a saved report offline with the ledger's verifier key: the
/// checkpoint's signature, every entry's inclusion proof, the request and
/// disclosure entries, and every deployment's view (which must be exactly
/// what its evidence yields). Returns a summary line.
// The offline check in the order the evidence depends on itself: the
// checkpoint, every inclusion proof, the request entry, the disclosure
// entry, then each deployment derived again; each step uses what the one
// before verified.
pub fn verify(report: &Report, verifier: &Verifier) -> Result<String, String> {
    let checkpoint =
        Checkpoint::open(&report.checkpoint, verifier).map_err(|e| format!("checkpoint: {e}"))?;
    let mut entries = BTreeMap::new();
    for p in &report.entries {
        let proof = p
            .inclusion_proof
            .iter()
            .map(|h| tree::parse_hash_hex(h))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("entry {}: proof: {e}", p.index))?;
        tree::check_record(
            &proof,
            checkpoint.size,
            checkpoint.root,
            p.index,
            tree::leaf_hash(p.entry.as_bytes()),
        )
        .map_err(|e| format!("entry {}: not in the signed tree: {e}", p.index))?;
        let entry =
            Entry::from_bytes(p.entry.as_bytes()).map_err(|e| format!("entry {}: {e}", p.index))?;
        if entries.insert(p.index, entry).is_some() {
            return Err(format!("entry {} appears twice", p.index));
        }
    }
    let request = entries
        .get(&report.request_ledger_index)
        .ok_or("the request entry is not in the report")?;
    let Event::AttributionRequested {
        request_id,
        selector,
        flagged_for_review,
        ..
    } = &request.event
    else {
        return Err(format!(
            "entry {} is not an attribution request",
            report.request_ledger_index
        ));
    };
    if *request_id != report.request_id || *flagged_for_review != report.flagged_for_review {
        return Err("the request entry does not match the report's request".into());
    }
    let disclosure = entries
        .get(&report.disclosure_ledger_index)
        .ok_or("the disclosure entry is not in the report")?;
    let Event::AttributionDisclosed {
        request_id: disclosed_for,
        request_index,
        deployment_ids,
        identities,
    } = &disclosure.event
    else {
        return Err(format!(
            "entry {} is not a disclosure",
            report.disclosure_ledger_index
        ));
    };
    if *disclosed_for != report.request_id || *request_index != report.request_ledger_index {
        return Err("the disclosure entry is for another request".into());
    }
    let shown: Vec<&String> = report
        .deployments
        .iter()
        .map(|d| &d.deployment_id)
        .collect();
    if shown != deployment_ids.iter().collect::<Vec<_>>() {
        return Err("the deployments shown are not those the disclosure entry records".into());
    }
    if disclosed_identities(&report.deployments) != *identities {
        return Err("the identities shown are not those the disclosure entry records".into());
    }
    for d in &report.deployments {
        let bound = Bound {
            chain_pem: d.certificate.chain_pem.clone(),
            oid_base_arc: d.certificate.oid_base_arc.clone(),
            identity_at_admission: d.identity_at_admission.clone(),
            identity_current: d.identity_current.clone(),
        };
        let derived = derive(
            &d.deployment_id,
            &entries,
            selector,
            report.answered_at,
            &bound,
        )?;
        if derived != *d {
            return Err(format!(
                "deployment {}: the report does not match what its ledger entries show",
                d.deployment_id
            ));
        }
    }
    Ok(format!(
        "verified: {} deployment(s), {} entries included in the tree of size {} signed by {}",
        report.deployments.len(),
        report.entries.len(),
        checkpoint.size,
        verifier.name()
    ))
}

/// The identity versions a set of deployments discloses, as the ledger
/// commits to them, without repeats, in order of appearance.
pub fn disclosed_identities(deployments: &[AttributedDeployment]) -> Vec<CustomerRef> {
    let mut out: Vec<CustomerRef> = Vec::new();
    for d in deployments {
        for identity in [&d.identity_at_admission, &d.identity_current]
            .into_iter()
            .flatten()
        {
            let r = CustomerRef {
                customer_id: d.customer_id.clone(),
                version: identity.version,
                commitment: identity.commitment.clone(),
            };
            if !out.contains(&r) {
                out.push(r);
            }
        }
    }
    out
}
