//! The values the checks write: small constructors of real domain
//! values and of the ledger entries that record them, as the services
//! build them.

use super::*;

/// When the checks' history starts.
pub const T0: UnixMillis = 1_700_000_000_000;
pub(super) const LEASE: i64 = 5 * 60_000;
pub(super) const KYC: &str = "spiffe://warden.test/kyc/a";
pub(super) const SCHEDULER_A: &str = "spiffe://warden.test/scheduler/a";
pub(super) const SCHEDULER_B: &str = "spiffe://warden.test/scheduler/b";
pub(super) const OPERATOR: &str = "spiffe://warden.test/operator/a";
pub(super) const AUTHORITY: &str = "spiffe://warden.test/attribution/a";
pub(super) const MODEL: &str = "sha256:aaaa";
pub(super) const OTHER_MODEL: &str = "sha256:bbbb";
pub(super) const CHAIN_PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

pub(super) fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest as _, Sha256};
    hex::encode(Sha256::digest(bytes))
}

/// Version `version` of customer `id`, written at `at`.
pub fn customer(id: &str, version: u64, at: UnixMillis) -> Customer {
    Customer {
        customer_id: id.into(),
        kind: CustomerKind::Organisation,
        legal_name: format!("Customer {id} v{version} GmbH"),
        country: "DE".into(),
        status: CustomerStatus::Verified,
        status_reason: String::new(),
        version,
        updated_at: at,
        updated_by: KYC.into(),
        commitment_salt: sha256_hex(format!("{id}/{version}").as_bytes()),
        details: Default::default(),
        purged: false,
    }
}

pub(super) fn customer_entry(c: &Customer, screening: Option<&Screening>) -> Entry {
    let change = if c.version == 1 {
        CustomerChange::Registered
    } else {
        CustomerChange::Updated
    };
    entry::customer_entry(c, change, screening, KYC, "")
}

/// A one-entry sanctions list called `version`.
pub fn sanctions_list(version: &str) -> SanctionsList {
    SanctionsList {
        name: "TEST".into(),
        version: version.into(),
        sha256: sha256_hex(version.as_bytes()),
        entries: vec![ListEntry {
            id: "1".into(),
            name: "Nobody In Particular".into(),
            aliases: Vec::new(),
            kind: "individual".into(),
            program: String::new(),
        }],
    }
}

pub(super) fn list_entry(list: &SanctionsList) -> Entry {
    Entry::new(
        T0,
        KYC,
        "",
        Event::SanctionsListLoaded {
            name: list.name.clone(),
            version: list.version.clone(),
            sha256: list.sha256.clone(),
            entries: list.entries.len() as u64,
        },
    )
}

/// Revision `revision` of the screening of version `customer_version` of
/// customer `id` against `list`.
pub fn screening(
    id: &str,
    revision: u64,
    customer_version: u64,
    list: &SanctionsList,
) -> Screening {
    Screening {
        customer_id: id.into(),
        revision,
        status: ScreeningStatus::Clear,
        list_name: list.name.clone(),
        list_version: list.version.clone(),
        list_sha256: list.sha256.clone(),
        threshold: 0.9,
        screened_at: T0,
        hits: Vec::new(),
        customer_version,
        resolution_note: String::new(),
        resolution_salt: String::new(),
        resolved_by: String::new(),
        resolved_at: None,
    }
}

pub(super) fn screenings_entry(list: &SanctionsList, changed: &[Screening]) -> Entry {
    Entry::new(
        T0,
        KYC,
        "",
        Event::CustomersScreened {
            list_sha256: list.sha256.clone(),
            screened: changed.len() as u64,
            changed: changed.iter().map(entry::ScreeningRef::of).collect(),
        },
    )
}

pub(super) fn purge_entry(id: &str, versions: u64) -> Entry {
    Entry::new(
        T0,
        KYC,
        "",
        Event::CustomerPurged {
            customer_id: id.into(),
            versions,
        },
    )
}

/// An active deployment of `model` for `customer_id`, admitted at `at` by
/// scheduler A.
pub fn deployment(id: &str, customer_id: &str, model: &str, at: UnixMillis) -> Deployment {
    Deployment {
        deployment_id: id.into(),
        request_id: format!("req-{id}"),
        customer_id: customer_id.into(),
        customer_version: 1,
        model_digest: model.into(),
        workload: Workload {
            cluster: "c1".into(),
            region: "eu-west".into(),
            node: "n1".into(),
            accelerator_type: "h100".into(),
            accelerator_count: 8,
            endpoints: vec![format!("{id}.example.net:8000")],
        },
        state: DeploymentState::Active,
        admitted_at: at,
        lease_expires_at: at + LEASE,
        released_at: None,
        admitted_by: SCHEDULER_A.into(),
        certificate: CertificateSummary {
            fingerprint: "ff".repeat(32),
            serial: "01".into(),
            evaluator: "CN=Evaluator".into(),
            developer: "Developer".into(),
            model_name: "model".into(),
            model_version: "1".into(),
            not_after: at + 365 * 86_400_000,
        },
        chain_sha256: sha256_hex(CHAIN_PEM.as_bytes()),
        renewals: 0,
        order_id: None,
        facts: Vec::new(),
        last_renewal: None,
    }
}

/// The admission decision for `d` (allow) or for nothing (deny), sent by
/// `principal` as `request_id`.
pub fn admission(principal: &str, request_id: &str, d: Option<&Deployment>) -> DecisionRecord {
    DecisionRecord {
        decision_id: format!("dec-{}-{request_id}", principal.len()),
        kind: DecisionKind::Admit,
        request_id: request_id.into(),
        principal: principal.into(),
        at: d.map_or(T0, |d| d.admitted_at),
        customer_id: d.map_or("cust-x".into(), |d| d.customer_id.clone()),
        customer_version: d.map(|d| d.customer_version),
        model_digest: d.map_or(MODEL.into(), |d| d.model_digest.clone()),
        certificate_fingerprint: d.map(|d| d.certificate.fingerprint.clone()),
        allowed: d.is_some(),
        reasons: if d.is_some() {
            Vec::new()
        } else {
            vec![crate::domain::reason::Reason::new(
                crate::domain::reason::ReasonCode::CustomerUnknown,
                "no such customer",
            )]
        },
        deployment_id: d.map(|d| d.deployment_id.clone()),
        lease_expires_at: d.map(|d| d.lease_expires_at),
        licence: None,
        request_sha256: sha256_hex(request_id.as_bytes()),
        ledger_index: None,
    }
}

pub fn admission_entry(decision: &DecisionRecord, d: Option<&Deployment>) -> Entry {
    Entry::new(
        decision.at,
        &decision.principal,
        &decision.request_id,
        Event::Admission {
            decision_id: decision.decision_id.clone(),
            allowed: decision.allowed,
            reasons: decision.reasons.iter().map(|r| r.code).collect(),
            customer_id: decision.customer_id.clone(),
            customer: None,
            model_digest: decision.model_digest.clone(),
            certificate: None,
            deployment_id: decision.deployment_id.clone(),
            lease_expires_at: decision.lease_expires_at,
            workload: d.map(|d| d.workload.clone()).unwrap_or_default(),
        },
    )
}

/// Records the allowed admission of `d`, which must be new.
pub async fn admit(store: &dyn Store, d: &Deployment) -> (u64, Entry) {
    let decision = admission(&d.admitted_by, &d.request_id, Some(d));
    let entry = admission_entry(&decision, Some(d));
    let seen = store.order_revisions().await.expect("order_revisions").1;
    match store
        .record_admission(&decision, Some(d), Some(CHAIN_PEM), seen, entry.clone())
        .await
    {
        Ok(AdmitRecorded::New(index)) => (index, entry),
        other => panic!("admitting {} answered {other:?}", d.deployment_id),
    }
}

/// The decision and entry that turn `before` into `after` (a renewal if
/// it is still active, else a release).
pub(super) fn update_decision(
    before: &Deployment,
    after: &Deployment,
    n: u32,
) -> (DecisionRecord, Entry) {
    let renewal = after.state == DeploymentState::Active;
    let decision = DecisionRecord {
        decision_id: format!("dec-{}-{n}", before.deployment_id),
        kind: if renewal {
            DecisionKind::Renew
        } else {
            DecisionKind::Release
        },
        request_id: format!("upd-{}-{n}", before.deployment_id),
        at: after.released_at.unwrap_or(after.admitted_at),
        lease_expires_at: renewal.then_some(after.lease_expires_at),
        ..admission(&before.admitted_by, "", Some(before))
    };
    let event = if renewal {
        Event::Renewal {
            decision_id: decision.decision_id.clone(),
            deployment_id: before.deployment_id.clone(),
            allowed: true,
            reasons: Vec::new(),
            customer: None,
            lease_expires_at: Some(after.lease_expires_at),
            endpoints: after.workload.endpoints.clone(),
        }
    } else {
        Event::Release {
            decision_id: decision.decision_id.clone(),
            deployment_id: before.deployment_id.clone(),
        }
    };
    let entry = Entry::new(
        decision.at,
        &before.admitted_by,
        &decision.request_id,
        event,
    );
    (decision, entry)
}

/// `d` renewed once, for a minute more.
pub(super) fn renewed(d: &Deployment) -> Deployment {
    Deployment {
        lease_expires_at: d.lease_expires_at + 60_000,
        renewals: d.renewals + 1,
        ..d.clone()
    }
}

pub(super) fn released(d: &Deployment, at: UnixMillis) -> Deployment {
    Deployment {
        state: DeploymentState::Released,
        released_at: Some(at),
        ..d.clone()
    }
}

/// A new suspending order of `target` (PENDING, quorum 1).
pub fn order(id: &str, target: Target, action: Action) -> Order {
    Order {
        order_id: id.into(),
        target,
        action,
        reason: "harm".into(),
        legal_basis: "statute".into(),
        expires_at: None,
        state: OrderState::Pending,
        issued_by: OPERATOR.into(),
        issued_at: T0,
        approvals: Vec::new(),
        quorum: 1,
        activated_at: None,
        matched_deployments: Vec::new(),
        acks: Vec::new(),
        lift_approvals: Vec::new(),
        lift_quorum: 1,
        lift_reason: String::new(),
        ended_at: None,
        revision: 0,
        reason_salt: "00".repeat(32),
    }
}

pub(super) fn model_target(model: &str) -> Target {
    Target {
        kind: TargetKind::ModelDigest,
        value: model.into(),
    }
}

/// An order change and the entry the caller writes with it (the store
/// fills in the deployments it changed).
pub fn order_change(
    order: &Order,
    events: &[EventKind],
    ack: Option<&str>,
) -> (OrderChange, Entry) {
    let change = OrderChange {
        order: order.clone(),
        events: events.to_vec(),
        activate: events.contains(&EventKind::Activated),
        release: events.contains(&EventKind::Lifted) || events.contains(&EventKind::Expired),
        ack: ack.map(str::to_string),
        now: T0 + 1_000,
        revision: Default::default(),
    };
    let entry = Entry::new(
        T0 + 1_000,
        OPERATOR,
        "",
        Event::Order {
            order_id: order.order_id.clone(),
            events: events.iter().map(|e| e.as_str().to_string()).collect(),
            action: order.action.as_str().into(),
            target_kind: format!("{:?}", order.target.kind),
            target: order.target.value.clone(),
            state: order.state.as_str().into(),
            reason_commitment: entry::text_commitment(&order.reason_salt, &order.reason),
            deployment_ids: Vec::new(),
        },
    );
    (change, entry)
}

/// `order` (as stored) moved to `state` by `events`.
pub(super) async fn change_order(
    store: &dyn Store,
    order: &Order,
    state: OrderState,
    events: &[EventKind],
    ack: Option<&str>,
) -> (u64, Entry, u64) {
    let next = Order {
        state,
        activated_at: (state == OrderState::Active)
            .then_some(T0 + 1_000)
            .or(order.activated_at),
        ended_at: matches!(state, OrderState::Lifted | OrderState::Expired).then_some(T0 + 1_000),
        ..order.clone()
    };
    let size = ledger_size(store).await;
    let (change, entry) = order_change(&next, events, ack);
    let revision = store
        .change_order(change, entry.clone())
        .await
        .unwrap_or_else(|e| panic!("change_order {events:?} of {}: {e}", order.order_id));
    (size, entry, revision)
}

pub(super) fn legal_process() -> LegalProcess {
    LegalProcess {
        case_reference: "CR-1".into(),
        requesting_authority: "Example Unit".into(),
        jurisdiction: "US-CA".into(),
        instrument: Instrument::Subpoena,
        document_sha256: "ab".repeat(32),
    }
}

/// An attribution request for the deployments of `model`.
pub fn attribution_request(request_id: &str, model: &str) -> (AttributionRequest, Entry) {
    let selector = Selector::Model {
        model_digest: model.into(),
        from: T0,
        to: T0 + 86_400_000,
    };
    let request = AttributionRequest {
        request_id: request_id.into(),
        principal: AUTHORITY.into(),
        at: T0,
        legal_process: legal_process(),
        selector: selector.clone(),
        page_token: String::new(),
        flagged_for_review: false,
        ledger_index: 0,
        disclosure: None,
    };
    let entry = Entry::new(
        T0,
        AUTHORITY,
        request_id,
        Event::AttributionRequested {
            request_id: request_id.into(),
            legal_process: legal_process(),
            selector,
            page_token: String::new(),
            flagged_for_review: false,
        },
    );
    (request, entry)
}

pub(super) fn disclosure_entry(request_id: &str, request_index: u64, d: &Disclosure) -> Entry {
    Entry::new(
        T0,
        AUTHORITY,
        request_id,
        Event::AttributionDisclosed {
            request_id: request_id.into(),
            request_index,
            deployment_ids: d.deployment_ids.clone(),
            identities: d.identities.clone(),
        },
    )
}
