//! `Admission`: licence before serving. A scheduler asks before launching a
//! workload (`Admit`), keeps the lease alive (`Renew`) and says when the
//! workload stopped (`Release`). Every decision, allow or deny, is recorded
//! durably before it is answered; a deny is a normal answer, not an error.

use std::sync::Arc;

use prost::Message as _;
use tonic::{Request, Response, Status};

use super::convert::{
    deployment_state_from_proto, deployment_to_proto, reasons, timestamp, workload_from_proto,
};
use super::page::{self, List};
use super::status::ApiError;
use super::{principal, App};
use crate::auth::{Principal, Role};
use crate::clock::sha256_hex;
use crate::digest::ModelDigest;
use crate::domain::customer::{check_identifier, Customer, FieldViolation, Screening};
use crate::domain::decision::{
    decide, renew, renewal_rechecks, AdmissionInput, CertificateOutcome,
};
use crate::domain::deployment::{lease_end, Deployment, DeploymentState, Workload};
use crate::domain::idempotency::{repeat, Repeat};
use crate::domain::limits::MAX_ENDPOINTS;
use crate::domain::order::Order;
use crate::domain::reason::{Reason, ReasonCode};
use crate::domain::UnixMillis;
use crate::ledger::entry::{CertificateRef, CustomerRef, Entry, Event};
use crate::licence::Licence;
use crate::metrics::DecisionCall;
use crate::proto;
use crate::proto::admission_server::Admission;
use crate::store::{
    conflict_apart, retry_on_conflict, AdmitRecorded, Conflict, DecisionKind, DecisionRecord,
    DeploymentFilter, CONFLICT_ATTEMPTS,
};

pub struct AdmissionService {
    app: Arc<App>,
}

impl AdmissionService {
    pub fn new(app: Arc<App>) -> Self {
        Self { app }
    }

    /// Signs the licence a node agent can check offline.
    fn licence(&self, d: &Deployment) -> Result<String, ApiError> {
        Licence::for_deployment(d)
            .sign(&self.app.licence_signer)
            .map_err(|e| {
                tracing::error!(error = %e, "licence signing failed");
                ApiError::Internal
            })
    }

    /// Loads a deployment the caller may act on: schedulers see only the
    /// deployments they admitted; a stranger's id reads as not found, so ids
    /// cannot be probed.
    async fn owned_deployment(&self, who: &Principal, id: &str) -> Result<Deployment, ApiError> {
        let mut v = Vec::new();
        check_identifier("deployment_id", id, &mut v);
        ApiError::check(v)?;
        let d = self.app.store.deployment(id).await?;
        match d {
            Some(d) if who.role != Role::Scheduler || d.admitted_by == who.spiffe_id => Ok(d),
            _ => Err(ApiError::NotFound(format!("deployment {id} not found"))),
        }
    }

    /// One admission attempt; a conflict when the store refused it (the
    /// orders in force changed while it was decided).
    // Long but linear: check every field, verify the certificate, read orders,
    // customer and screening, decide, then commit the decision, the deployment
    // and its ledger entry together. Each step feeds the record the entry
    // carries; split, the helpers would pass that record around half-built.
    async fn admit_once(
        &self,
        who: &Principal,
        message: proto::AdmitRequest,
    ) -> Result<Result<Response<proto::AdmitResponse>, Conflict>, Status> {
        let request_sha256 = sha256_hex(&message.encode_to_vec());
        let proto::AdmitRequest {
            request_id,
            customer_id,
            model_digest,
            certificate_chain,
            workload,
        } = message;

        let mut v = Vec::new();
        check_identifier("request_id", &request_id, &mut v);
        check_identifier("customer_id", &customer_id, &mut v);
        if let Err(e) = model_digest.parse::<ModelDigest>() {
            v.push(FieldViolation::new("model_digest", e.to_string()));
        }
        let workload = match workload {
            Some(w) => workload_from_proto(w),
            None => {
                v.push(FieldViolation::new("workload", "required"));
                Workload::default()
            }
        };
        if !v.iter().any(|x| x.field == "workload") {
            check_workload(&workload, &mut v);
        }
        let now = self.app.clock.now();
        let certificate = match self.app.trust.check(&certificate_chain, now) {
            Err(description) => {
                v.push(FieldViolation::new(
                    "certificate_chain",
                    description.to_string(),
                ));
                None
            }
            Ok(outcome) => Some(outcome),
        };
        ApiError::check(v)?;
        let Some(certificate) = certificate else {
            return Err(ApiError::Internal.into());
        };

        let (_, orders_seen) = self.app.store.order_revisions().await?;
        let orders = self.app.store.active_orders().await?;
        let customer = self.app.store.customer(&customer_id).await?;
        let screening = self.app.store.screening(&customer_id).await?;
        let reasons = decide(&AdmissionInput {
            certificate: &certificate,
            measured_digest: &model_digest,
            customer: customer.as_ref(),
            customer_id: &customer_id,
            screening: screening.as_ref(),
            workload: &workload,
            orders: &orders,
            deployment_id: None,
            max_verification_age: self.app.max_verification_age,
            now,
        });

        let mut record = DecisionRecord {
            decision_id: new_id("dec"),
            kind: DecisionKind::Admit,
            request_id: request_id.clone(),
            principal: who.spiffe_id.clone(),
            at: now,
            customer_id: customer_id.clone(),
            customer_version: customer.as_ref().map(|c| c.version),
            model_digest: model_digest.clone(),
            certificate_fingerprint: certificate
                .model
                .as_ref()
                .map(|m| m.summary.fingerprint.clone()),
            allowed: reasons.is_empty(),
            reasons,
            deployment_id: None,
            lease_expires_at: None,
            licence: None,
            request_sha256: request_sha256.clone(),
            ledger_index: None,
        };
        let workload_for_entry = workload.clone();
        let deployment = match (&certificate.model, &customer, record.allowed) {
            (Some(model), Some(customer), true) => {
                let lease_expires_at =
                    lease_end(now, self.app.lease_millis, model.summary.not_after);
                let d = Deployment {
                    deployment_id: new_id("dep"),
                    request_id: request_id.clone(),
                    customer_id: customer_id.clone(),
                    customer_version: customer.version,
                    model_digest: model_digest.clone(),
                    workload,
                    state: DeploymentState::Active,
                    admitted_at: now,
                    lease_expires_at,
                    released_at: None,
                    admitted_by: who.spiffe_id.clone(),
                    certificate: model.summary.clone(),
                    chain_sha256: sha256_hex(certificate_chain.as_bytes()),
                    renewals: 0,
                    order_id: None,
                    facts: Vec::new(),
                    last_renewal: None,
                };
                record.deployment_id = Some(d.deployment_id.clone());
                record.lease_expires_at = Some(lease_expires_at);
                record.licence = Some(self.licence(&d)?);
                Some(d)
            }
            _ => None,
        };

        let entry = Entry::new(
            now,
            &who.spiffe_id,
            &request_id,
            Event::Admission {
                decision_id: record.decision_id.clone(),
                allowed: record.allowed,
                reasons: record.reasons.iter().map(|r| r.code).collect(),
                customer_id: customer_id.clone(),
                customer: customer.as_ref().map(CustomerRef::of),
                model_digest: model_digest.clone(),
                certificate: certificate.model.as_ref().map(|m| CertificateRef {
                    fingerprint: m.summary.fingerprint.clone(),
                    serial: m.summary.serial.clone(),
                    evaluator: m.summary.evaluator.clone(),
                }),
                deployment_id: record.deployment_id.clone(),
                lease_expires_at: record.lease_expires_at,
                workload: deployment
                    .as_ref()
                    .map(|d| d.workload.clone())
                    .unwrap_or(workload_for_entry),
            },
        );
        let recorded = self
            .app
            .store
            .record_admission(
                &record,
                deployment.as_ref(),
                Some(&certificate_chain),
                orders_seen,
                entry,
            )
            .await;
        let recorded = match conflict_apart(recorded)? {
            Ok(recorded) => recorded,
            Err(c) => return Ok(Err(c)),
        };
        let answer = match recorded {
            AdmitRecorded::New(index) => {
                self.app
                    .metrics
                    .decided(DecisionCall::Admit, &record.reasons);
                DecisionRecord {
                    ledger_index: Some(index),
                    ..record
                }
            }
            AdmitRecorded::Replay(first) => match repeat(&first.request_sha256, &request_sha256) {
                Repeat::Replay => *first,
                Repeat::Refuse => {
                    return Err(ApiError::FailedPrecondition(format!(
                        "request_id {request_id} was already used for a different request"
                    ))
                    .into())
                }
            },
        };
        tracing::info!(
            decision_id = %answer.decision_id,
            request_id = %answer.request_id,
            allowed = answer.allowed,
            reasons = ?answer.reasons.iter().map(|r| r.code.as_str()).collect::<Vec<_>>(),
            principal = %who.spiffe_id,
            "admission decided"
        );
        Ok(Ok(Response::new(admit_response(&answer))))
    }

    /// One renewal attempt; a conflict when the store refused it (the
    /// orders in force, or the deployment, changed while it was decided).
    // Long but linear, as admit_once: check, read, decide, commit the decision
    // with its entry. The steps share the facts the entry records.
    async fn renew_once(
        &self,
        who: &Principal,
        message: proto::RenewRequest,
    ) -> Result<Result<Response<proto::RenewResponse>, Conflict>, Status> {
        let proto::RenewRequest {
            deployment_id,
            endpoints,
        } = message;
        let mut v = Vec::new();
        check_endpoints("endpoints", &endpoints, &mut v);
        ApiError::check(v)?;
        let before = self.owned_deployment(who, &deployment_id).await?;
        let now = self.app.clock.now();
        let mut workload = before.workload.clone();
        if !endpoints.is_empty() {
            workload.endpoints = endpoints;
        }

        let (_, orders_seen) = self.app.store.order_revisions().await?;
        let orders = self.app.store.active_orders().await?;
        let facts = if renewal_rechecks(&before, now) {
            Some(self.facts(&before, now).await?)
        } else {
            None
        };
        let reasons = renew(
            &before,
            facts
                .as_ref()
                .map(|f| {
                    let max_age = self.app.max_verification_age;
                    f.input(&before, &workload, &orders, max_age, now)
                })
                .as_ref(),
            now,
        );
        let customer = facts.and_then(|f| f.customer);
        let allowed = reasons.is_empty();
        let (after, licence) = if allowed {
            let after = before.renewed(
                now,
                self.app.lease_millis,
                workload,
                customer.as_ref().map(|c| c.version),
            );
            let licence = self.licence(&after)?;
            (after, Some(licence))
        } else {
            (before.clone(), None)
        };
        let record = DecisionRecord {
            customer_version: customer.as_ref().map(|c| c.version),
            allowed,
            reasons: reasons.clone(),
            lease_expires_at: allowed.then_some(after.lease_expires_at),
            licence: licence.clone(),
            ..lifecycle_record(DecisionKind::Renew, who, &before, now)
        };
        let entry = Entry::new(
            now,
            &who.spiffe_id,
            "",
            Event::Renewal {
                decision_id: record.decision_id.clone(),
                deployment_id: before.deployment_id.clone(),
                allowed,
                reasons: reasons.iter().map(|r| r.code).collect(),
                customer: customer.as_ref().map(CustomerRef::of),
                lease_expires_at: record.lease_expires_at,
                endpoints: after.workload.endpoints.clone(),
            },
        );
        let written = self
            .app
            .store
            .update_deployment(&before, &after, &record, Some(orders_seen), entry)
            .await;
        let ledger_index = match conflict_apart(written)? {
            Ok(index) => index,
            Err(c) => return Ok(Err(c)),
        };
        self.app.metrics.decided(DecisionCall::Renew, &reasons);
        tracing::info!(
            deployment_id = %before.deployment_id,
            allowed,
            reasons = ?reasons.iter().map(|r| r.code.as_str()).collect::<Vec<_>>(),
            "renewal decided"
        );
        Ok(Ok(Response::new(proto::RenewResponse {
            decision: if allowed {
                proto::Decision::Allow
            } else {
                proto::Decision::Deny
            } as i32,
            reasons: super::convert::reasons(&reasons),
            lease_expires_at: Some(timestamp(after.lease_expires_at)),
            licence: licence.unwrap_or_default(),
            ledger_index,
        })))
    }

    /// What the admission checks of an existing deployment read, as it is
    /// now: its certificate chain verified again, its customer and the
    /// customer's screening.
    async fn facts(&self, d: &Deployment, now: UnixMillis) -> Result<Facts, ApiError> {
        let chain = self.app.store.chain(&d.chain_sha256).await?.ok_or_else(|| {
            tracing::error!(deployment_id = %d.deployment_id, "certificate chain of a deployment is missing");
            ApiError::Internal
        })?;
        let certificate =
            self.app
                .trust
                .check(&chain, now)
                .unwrap_or_else(|input| CertificateOutcome {
                    model: None,
                    problems: vec![Reason::new(ReasonCode::CertMalformed, input.to_string())],
                });
        Ok(Facts {
            certificate,
            customer: self.app.store.customer(&d.customer_id).await?,
            screening: self.app.store.screening(&d.customer_id).await?,
        })
    }
}

/// What the admission checks of a renewal read from outside the request.
struct Facts {
    certificate: CertificateOutcome,
    customer: Option<Customer>,
    screening: Option<Screening>,
}

impl Facts {
    fn input<'a>(
        &'a self,
        d: &'a Deployment,
        workload: &'a Workload,
        orders: &'a [Order],
        max_verification_age: Option<UnixMillis>,
        now: UnixMillis,
    ) -> AdmissionInput<'a> {
        AdmissionInput {
            certificate: &self.certificate,
            measured_digest: &d.model_digest,
            customer: self.customer.as_ref(),
            customer_id: &d.customer_id,
            screening: self.screening.as_ref(),
            workload,
            orders,
            deployment_id: Some(&d.deployment_id),
            max_verification_age,
            now,
        }
    }
}

/// Machine identifiers (cluster, region, node) are ASCII letters, digits and
/// `- _ . : /` (enough for cloud region names, node host names and cluster
/// ARNs or resource paths). Workload text ends in the ledger, so nothing in
/// it may look like something it is not: no spaces, no controls, no
/// invisible characters, no letters of other scripts.
fn is_machine_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'/')
}

fn check_workload(w: &Workload, v: &mut Vec<FieldViolation>) {
    for (field, value) in [
        ("workload.cluster", &w.cluster),
        ("workload.region", &w.region),
        ("workload.node", &w.node),
    ] {
        if value.is_empty() {
            v.push(FieldViolation::new(field, "required"));
        } else if value.len() > 253 || !value.bytes().all(is_machine_name_byte) {
            v.push(FieldViolation::new(
                field,
                "at most 253 bytes of ASCII letters, digits, '-', '_', '.', ':' and '/'",
            ));
        }
    }
    let printable = |b: u8| b == b' ' || b.is_ascii_graphic();
    if w.accelerator_type.len() > 128 || !w.accelerator_type.bytes().all(printable) {
        v.push(FieldViolation::new(
            "workload.accelerator_type",
            "at most 128 bytes of printable ASCII",
        ));
    }
    if w.accelerator_count == 0 {
        v.push(FieldViolation::new(
            "workload.accelerator_count",
            "at least 1: the accelerators the workload runs on",
        ));
    }
    check_endpoints("workload.endpoints", &w.endpoints, v);
}

fn check_endpoints(field: &str, endpoints: &[String], v: &mut Vec<FieldViolation>) {
    if endpoints.len() > MAX_ENDPOINTS {
        v.push(FieldViolation::new(
            field,
            format!("at most {MAX_ENDPOINTS} endpoints"),
        ));
    }
    for (i, e) in endpoints.iter().enumerate() {
        if e.is_empty() || e.len() > 255 || !e.bytes().all(|b| b.is_ascii_graphic()) {
            v.push(FieldViolation::new(
                format!("{field}[{i}]"),
                "an endpoint is a host, IP or IP:port of at most 255 bytes of printable ASCII, \
                 without spaces (an international host name in its xn-- form)",
            ));
        }
    }
}

fn admit_response(rec: &DecisionRecord) -> proto::AdmitResponse {
    proto::AdmitResponse {
        decision: if rec.allowed {
            proto::Decision::Allow
        } else {
            proto::Decision::Deny
        } as i32,
        reasons: reasons(&rec.reasons),
        deployment_id: rec.deployment_id.clone().unwrap_or_default(),
        lease_expires_at: rec.lease_expires_at.map(timestamp),
        licence: rec.licence.clone().unwrap_or_default(),
        ledger_index: rec.ledger_index.unwrap_or_default(),
        decision_id: rec.decision_id.clone(),
    }
}

/// The record of a call on an existing deployment (renew, release): allowed
/// and without reasons unless the caller says otherwise.
fn lifecycle_record(
    kind: DecisionKind,
    who: &Principal,
    d: &Deployment,
    now: UnixMillis,
) -> DecisionRecord {
    DecisionRecord {
        decision_id: new_id("dec"),
        kind,
        request_id: String::new(),
        principal: who.spiffe_id.clone(),
        at: now,
        customer_id: d.customer_id.clone(),
        customer_version: Some(d.customer_version),
        model_digest: d.model_digest.clone(),
        certificate_fingerprint: Some(d.certificate.fingerprint.clone()),
        allowed: true,
        reasons: Vec::new(),
        deployment_id: Some(d.deployment_id.clone()),
        lease_expires_at: None,
        licence: None,
        request_sha256: String::new(),
        ledger_index: None,
    }
}

/// The conflict that makes an admission or renewal decide again: an order
/// came into force (or ended) while it was decided. Any other conflict is
/// the caller's to retry.
fn orders_changed(c: &Conflict) -> bool {
    *c == Conflict::OrdersChanged
}

/// What a caller is told about a conflict an admission or renewal ended in.
fn refused(c: Conflict) -> Status {
    if orders_changed(&c) {
        ApiError::Aborted("the orders in force kept changing; retry".into()).into()
    } else {
        crate::store::StoreError::Conflict(c).into()
    }
}

fn new_id(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

#[tonic::async_trait]
impl Admission for AdmissionService {
    async fn admit(
        &self,
        request: Request<proto::AdmitRequest>,
    ) -> Result<Response<proto::AdmitResponse>, Status> {
        let who = principal(&request)?;
        let message = request.into_inner();
        // An order that came into force while this request was decided
        // makes the store refuse the decision; decide again.
        let (who, message) = (&who, &message);
        retry_on_conflict(CONFLICT_ATTEMPTS, orders_changed, |_| {
            self.admit_once(who, message.clone())
        })
        .await?
        .map_err(refused)
    }

    async fn renew(
        &self,
        request: Request<proto::RenewRequest>,
    ) -> Result<Response<proto::RenewResponse>, Status> {
        let who = principal(&request)?;
        let message = request.into_inner();
        let (who, message) = (&who, &message);
        retry_on_conflict(CONFLICT_ATTEMPTS, orders_changed, |_| {
            self.renew_once(who, message.clone())
        })
        .await?
        .map_err(refused)
    }

    async fn release(
        &self,
        request: Request<proto::ReleaseRequest>,
    ) -> Result<Response<proto::ReleaseResponse>, Status> {
        let who = principal(&request)?;
        let proto::ReleaseRequest { deployment_id } = request.into_inner();
        let before = self.owned_deployment(&who, &deployment_id).await?;
        let now = self.app.clock.now();
        // Releasing is idempotent: an already released or terminated
        // deployment is returned as it is. A deployment whose lease ran out
        // is still released: the scheduler confirms the workload stopped.
        if matches!(
            before.state,
            DeploymentState::Released | DeploymentState::Terminated
        ) {
            return Ok(Response::new(proto::ReleaseResponse {
                deployment: Some(deployment_to_proto(&before, now)),
            }));
        }
        let after = Deployment {
            state: DeploymentState::Released,
            released_at: Some(now),
            ..before.clone()
        };
        let record = lifecycle_record(DecisionKind::Release, &who, &before, now);
        let entry = Entry::new(
            now,
            &who.spiffe_id,
            "",
            Event::Release {
                decision_id: record.decision_id.clone(),
                deployment_id: before.deployment_id.clone(),
            },
        );
        self.app
            .store
            .update_deployment(&before, &after, &record, None, entry)
            .await?;
        tracing::info!(deployment_id = %deployment_id, "deployment released");
        Ok(Response::new(proto::ReleaseResponse {
            deployment: Some(deployment_to_proto(&after, now)),
        }))
    }

    async fn get_deployment(
        &self,
        request: Request<proto::GetDeploymentRequest>,
    ) -> Result<Response<proto::Deployment>, Status> {
        let who = principal(&request)?;
        let proto::GetDeploymentRequest { deployment_id } = request.into_inner();
        let d = self.owned_deployment(&who, &deployment_id).await?;
        Ok(Response::new(deployment_to_proto(&d, self.app.clock.now())))
    }

    async fn list_deployments(
        &self,
        request: Request<proto::ListDeploymentsRequest>,
    ) -> Result<Response<proto::ListDeploymentsResponse>, Status> {
        let who = principal(&request)?;
        let proto::ListDeploymentsRequest {
            customer_id,
            model_digest,
            state,
            page_size,
            page_token,
        } = request.into_inner();
        let mut v = Vec::new();
        if !customer_id.is_empty() {
            check_identifier("customer_id", &customer_id, &mut v);
        }
        if !model_digest.is_empty() {
            if let Err(e) = model_digest.parse::<ModelDigest>() {
                v.push(FieldViolation::new("model_digest", e.to_string()));
            }
        }
        let state = match proto::DeploymentState::try_from(state) {
            Ok(s) => deployment_state_from_proto(s),
            Err(_) => {
                v.push(FieldViolation::new("state", "unknown deployment state"));
                None
            }
        };
        let limit = page::limit(page_size, &mut v);
        let after = page::parse_id_token(List::Deployments, &page_token, &mut v);
        ApiError::check(v)?;
        let now = self.app.clock.now();
        let filter = DeploymentFilter {
            customer_id: (!customer_id.is_empty()).then_some(customer_id),
            model_digest: (!model_digest.is_empty()).then_some(model_digest),
            state,
            admitted_by: (who.role == Role::Scheduler).then(|| who.spiffe_id.clone()),
            now,
        };
        let (store, filter) = (&self.app.store, &filter);
        let (deployments, next) = page::fill(
            limit,
            after,
            |after: Option<String>, n| async move {
                Ok(store.list_deployments(filter, after.as_deref(), n).await?)
            },
            |d| d.deployment_id.clone(),
            |d| Ok(deployment_to_proto(d, now)),
        )
        .await?;
        Ok(Response::new(proto::ListDeploymentsResponse {
            deployments,
            next_page_token: next
                .map(|id| page::id_token(List::Deployments, &id))
                .unwrap_or_default(),
        }))
    }
}
