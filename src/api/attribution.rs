//! `Attribution`: authorities with legal process learn who deployed a model
//! or ran an endpoint, with proof; every request is accounted for.
//!
//! A request is validated, then written to the ledger (with its principal,
//! legal process and selector) before anything is read: if that write fails,
//! nothing is answered. The answer is assembled from the deployment's
//! lifecycle entries, the customer record versions they bind and the
//! certificate chain; what it discloses is recorded in a second entry; then
//! every entry is proved against one signed checkpoint.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use prost::Message as _;
use tonic::{Request, Response, Status};

use super::convert::{
    customer_to_proto, deployment_state, millis, request_millis, timestamp, workload_to_proto,
};
use super::page::{self, List};
use super::status::ApiError;
use super::{principal, App};
use crate::attribution::{
    derive, disclosed_identities, AttributedDeployment, Bound, CertificateFacts, IdentityRecord,
    LifecycleEvent, LifecycleKind, ProvenEntry, Report,
};
use crate::domain::attribution::{
    validate_legal_process, validate_selector, AttributionRequest, Disclosure, Instrument,
    LegalProcess, Selector, SelectorInput,
};
use crate::domain::customer::FieldViolation;
use crate::domain::deployment::Deployment;
use crate::domain::limits::{MAX_TIME, MIN_TIME};
use crate::domain::UnixMillis;
use crate::ledger::entry::{Entry, Event};
use crate::proto;
use crate::proto::attribution_server::Attribution;
use crate::store::{AdmittedBy, Cursor};

/// Deployments per answer unless asked otherwise, and at most.
const DEFAULT_PAGE: usize = 10;
const MAX_PAGE: usize = 50;

pub struct AttributionService {
    app: Arc<App>,
}

impl AttributionService {
    pub fn new(app: Arc<App>) -> Self {
        Self { app }
    }
}

pub fn instrument_from_proto(i: i32) -> Option<Instrument> {
    match proto::Instrument::try_from(i).ok()? {
        proto::Instrument::Subpoena => Some(Instrument::Subpoena),
        proto::Instrument::CourtOrder => Some(Instrument::CourtOrder),
        proto::Instrument::Warrant => Some(Instrument::Warrant),
        proto::Instrument::Emergency => Some(Instrument::Emergency),
        proto::Instrument::Unspecified => None,
    }
}

pub fn instrument_to_proto(i: Instrument) -> proto::Instrument {
    match i {
        Instrument::Subpoena => proto::Instrument::Subpoena,
        Instrument::CourtOrder => proto::Instrument::CourtOrder,
        Instrument::Warrant => proto::Instrument::Warrant,
        Instrument::Emergency => proto::Instrument::Emergency,
    }
}

fn legal_process_to_proto(lp: &LegalProcess) -> proto::LegalProcess {
    proto::LegalProcess {
        case_reference: lp.case_reference.clone(),
        requesting_authority: lp.requesting_authority.clone(),
        jurisdiction: lp.jurisdiction.clone(),
        instrument: instrument_to_proto(lp.instrument) as i32,
        document_sha256: lp.document_sha256.clone(),
    }
}

fn legal_process_from_proto(
    lp: Option<proto::LegalProcess>,
    v: &mut Vec<FieldViolation>,
) -> Option<LegalProcess> {
    let Some(lp) = lp else {
        v.push(FieldViolation::new(
            "legal_process",
            "required: case_reference, requesting_authority, jurisdiction, instrument and document_sha256",
        ));
        return None;
    };
    let instrument = instrument_from_proto(lp.instrument);
    if instrument.is_none() {
        v.push(FieldViolation::new(
            "legal_process.instrument",
            "required: SUBPOENA, COURT_ORDER, WARRANT or EMERGENCY",
        ));
    }
    let lp = LegalProcess {
        case_reference: lp.case_reference,
        requesting_authority: lp.requesting_authority,
        jurisdiction: lp.jurisdiction,
        instrument: instrument.unwrap_or(Instrument::Subpoena),
        document_sha256: lp.document_sha256,
    };
    validate_legal_process(&lp, v);
    instrument.map(|_| lp)
}

/// The selector as given. A time outside 1970..9999 is a violation; it
/// then reads as the window's widest end, so that it is not also reported
/// as missing or as out of order.
fn selector_input(
    s: Option<proto::attribute_request::Selector>,
    v: &mut Vec<FieldViolation>,
) -> SelectorInput {
    use proto::attribute_request::Selector as S;
    let mut t = |field: &str, ts: Option<prost_types::Timestamp>, widest: UnixMillis| {
        ts.map(|ts| {
            request_millis(field, &ts).unwrap_or_else(|e| {
                v.push(e);
                widest
            })
        })
    };
    match s {
        None => SelectorInput::None,
        Some(S::DeploymentId(d)) => SelectorInput::Deployment(d),
        Some(S::Model(m)) => SelectorInput::Model {
            model_digest: m.model_digest,
            from: t("model.from", m.from, MIN_TIME),
            to: t("model.to", m.to, MAX_TIME),
        },
        Some(S::Customer(c)) => SelectorInput::Customer {
            customer_id: c.customer_id,
            from: t("customer.from", c.from, MIN_TIME),
            to: t("customer.to", c.to, MAX_TIME),
        },
        Some(S::Endpoint(e)) => SelectorInput::Endpoint {
            endpoint: e.endpoint,
            at: t("endpoint.at", e.at, MIN_TIME),
        },
    }
}

/// A page token of the model and customer selectors: the store's cursor
/// in hex, which only the store interprets.
fn page_token(cursor: &Cursor) -> String {
    hex::encode(cursor.as_bytes())
}

/// The cursor a page token carries, for the selectors that page; the store
/// says whether it is one of this selector's.
async fn cursor_of(
    store: &dyn crate::store::Store,
    selector: &Selector,
    token: &str,
    v: &mut Vec<FieldViolation>,
) -> Option<Cursor> {
    if token.is_empty() {
        return None;
    }
    let by = match selector {
        Selector::Model { model_digest, .. } => AdmittedBy::Model(model_digest),
        Selector::Customer { customer_id, .. } => AdmittedBy::Customer(customer_id),
        _ => {
            v.push(FieldViolation::new(
                "page_token",
                "only model and customer selectors have further pages",
            ));
            return None;
        }
    };
    let cursor = hex::decode(token).ok().map(Cursor::from_bytes);
    match cursor {
        Some(c) if store.admitted_cursor_valid(by, &c).await => Some(c),
        _ => {
            v.push(FieldViolation::new(
                "page_token",
                "not a page token of this selector",
            ));
            None
        }
    }
}

/// Bytes an entry's inclusion proof takes in an answer, at most, while
/// the tree is below twice `size` (it grows by a few entries while an
/// answer is assembled).
fn proof_allowance(size: u64) -> usize {
    let hashes = 64 - size.saturating_mul(2).max(1).leading_zeros() as usize;
    hashes * page::element_bytes(32)
}

/// When a deployment stopped holding its licence, as far as its record
/// says: released, or the end of its last lease.
struct Assembly {
    entries: BTreeMap<u64, Vec<u8>>,
    parsed: BTreeMap<u64, Entry>,
}

impl Assembly {
    /// Reads and parses the entries at `indexes` not read yet, each stored
    /// batch once; every one must exist.
    async fn fetch(&mut self, app: &App, indexes: &[u64]) -> Result<(), ApiError> {
        let missing: Vec<u64> = indexes
            .iter()
            .copied()
            .filter(|i| !self.parsed.contains_key(i))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let mut found = app.store.entries_at(&missing).await?;
        for index in missing {
            let Some(bytes) = found.remove(&index) else {
                tracing::error!(index, "a recorded fact's ledger entry is missing");
                return Err(ApiError::Internal);
            };
            let entry = Entry::from_bytes(&bytes).map_err(|e| {
                tracing::error!(index, error = %e, "a stored ledger entry does not parse");
                ApiError::Internal
            })?;
            self.entries.insert(index, bytes);
            self.parsed.insert(index, entry);
        }
        Ok(())
    }

    async fn read(&mut self, app: &App, index: u64) -> Result<&Entry, ApiError> {
        self.fetch(app, &[index]).await?;
        Ok(&self.parsed[&index])
    }
}

impl AttributionService {
    /// The deployments a selector matches on this page, each with the
    /// token of a page that would start after it, and the next page's
    /// token.
    async fn select(
        &self,
        selector: &Selector,
        cursor: Option<Cursor>,
        page: usize,
    ) -> Result<(Vec<(Deployment, String)>, String), ApiError> {
        let store = &self.app.store;
        let alone = |d: Option<Deployment>| d.into_iter().map(|d| (d, String::new())).collect();
        match selector {
            Selector::Deployment { deployment_id } => {
                Ok((alone(store.deployment(deployment_id).await?), String::new()))
            }
            Selector::Endpoint { endpoint, at } => {
                let found = match store.endpoint_claim(endpoint, *at).await? {
                    Some(claim) => store.deployment(&claim.deployment_id).await?,
                    None => None,
                };
                Ok((alone(found), String::new()))
            }
            Selector::Model {
                model_digest: subject,
                from,
                to,
            }
            | Selector::Customer {
                customer_id: subject,
                from,
                to,
            } => {
                let by = if matches!(selector, Selector::Model { .. }) {
                    AdmittedBy::Model(subject)
                } else {
                    AdmittedBy::Customer(subject)
                };
                let found = store
                    .admitted_in(by, *from, *to, cursor.as_ref(), page)
                    .await?;
                Ok((
                    found
                        .deployments
                        .into_iter()
                        .map(|(d, c)| (d, page_token(&c)))
                        .collect(),
                    found.next.as_ref().map(page_token).unwrap_or_default(),
                ))
            }
        }
    }

    async fn identity(
        &self,
        asm: &mut Assembly,
        customer_id: &str,
        version: u64,
    ) -> Result<Option<IdentityRecord>, ApiError> {
        let store = &self.app.store;
        let Some(record) = store.customer_version(customer_id, version).await? else {
            return Ok(None);
        };
        let Some(ledger_index) = store.customer_version_index(customer_id, version).await? else {
            tracing::warn!(
                customer_id,
                version,
                "customer version has no recorded entry index; not disclosed"
            );
            return Ok(None);
        };
        let entry = asm.read(&self.app, ledger_index).await?;
        let Some(committed) = crate::attribution::customer_ref(entry) else {
            tracing::error!(
                ledger_index,
                "customer version index points at another entry"
            );
            return Err(ApiError::Internal);
        };
        Ok(Some(IdentityRecord {
            version,
            commitment: committed.commitment.clone(),
            ledger_index,
            purged: record.purged,
            record,
        }))
    }

    // One request, start to finish, in the order the ledger demands: check the
    // legal process and selector, record the request before anything is read,
    // select, then bind each deployment's evidence while the page and proof
    // budgets last. The budgets and the proofs already sent are running state of
    // that one loop; split, each helper would take most of it.
    async fn answer(
        &self,
        who: &crate::auth::Principal,
        message: proto::AttributeRequest,
    ) -> Result<Report, ApiError> {
        let mut v = Vec::new();
        let legal_process = legal_process_from_proto(message.legal_process, &mut v);
        let selector = selector_input(message.selector, &mut v);
        let selector = validate_selector(selector, &mut v);
        let page = match message.page_size as usize {
            0 => DEFAULT_PAGE,
            n if n > MAX_PAGE => {
                v.push(FieldViolation::new(
                    "page_size",
                    format!("at most {MAX_PAGE}"),
                ));
                MAX_PAGE
            }
            n => n,
        };
        let cursor = match &selector {
            Some(s) => cursor_of(&*self.app.store, s, &message.page_token, &mut v).await,
            None => None,
        };
        ApiError::check(v)?;
        let (Some(legal_process), Some(selector)) = (legal_process, selector) else {
            return Err(ApiError::Internal);
        };

        // Recorded before anything is read.
        let now = self.app.clock.now();
        let request_id = format!("att-{}", uuid::Uuid::new_v4().simple());
        let flagged = legal_process.instrument == Instrument::Emergency;
        let request = AttributionRequest {
            request_id: request_id.clone(),
            principal: who.spiffe_id.clone(),
            at: now,
            legal_process: legal_process.clone(),
            selector: selector.clone(),
            page_token: message.page_token.clone(),
            flagged_for_review: flagged,
            ledger_index: 0,
            disclosure: None,
        };
        let entry = Entry::new(
            now,
            &who.spiffe_id,
            "",
            Event::AttributionRequested {
                request_id: request_id.clone(),
                legal_process,
                selector: selector.clone(),
                page_token: message.page_token,
                flagged_for_review: flagged,
            },
        );
        let t0 = std::time::Instant::now();
        let request_index = self
            .app
            .store
            .put_attribution_request(&request, entry)
            .await?;
        if flagged {
            tracing::warn!(%request_id, request_index, "EMERGENCY attribution request answered without prior review; flagged for review");
        }

        let t_request = t0.elapsed();
        let (deployments, mut next_page_token) = self.select(&selector, cursor, page).await?;
        let t_select = t0.elapsed();
        let mut asm = Assembly {
            entries: BTreeMap::new(),
            parsed: BTreeMap::new(),
        };
        let answered_at = self.app.clock.now();
        let oid_base_arc = crate::pki::profile::oid_to_string(self.app.trust.profile().base_arc());
        let mut attributed = Vec::with_capacity(deployments.len());
        let facts: Vec<u64> = deployments
            .iter()
            .flat_map(|(d, _)| d.facts.iter().chain(d.last_renewal.iter()).copied())
            .collect();
        asm.fetch(&self.app, &facts).await?;
        // The answer stops before the deployment that would take it past
        // the page budget; the next page starts after the last one in it.
        let mut budget = page::Budget::new(page);
        let proof_bytes = proof_allowance(self.app.store.checkpoint().await?.checkpoint.size);
        let mut proved = BTreeSet::new();
        for (k, (d, _)) in deployments.iter().enumerate() {
            let Some(&admission_index) = d.facts.first() else {
                tracing::warn!(deployment_id = %d.deployment_id, "deployment has no recorded lifecycle; not disclosed");
                continue;
            };
            let admitted_version = match &asm.parsed[&admission_index].event {
                Event::Admission {
                    customer: Some(c), ..
                } => Some(c.version),
                _ => None,
            };
            let identity_at_admission = match admitted_version {
                Some(version) => self.identity(&mut asm, &d.customer_id, version).await?,
                None => None,
            };
            let identity_current = match self.app.store.customer(&d.customer_id).await? {
                Some(c) => self.identity(&mut asm, &d.customer_id, c.version).await?,
                None => None,
            };
            let chain_pem = self.app.store.chain(&d.chain_sha256).await?.ok_or_else(|| {
                tracing::error!(deployment_id = %d.deployment_id, "certificate chain of a deployment is missing");
                ApiError::Internal
            })?;
            let bound = Bound {
                chain_pem,
                oid_base_arc: oid_base_arc.clone(),
                identity_at_admission,
                identity_current,
            };
            let view = derive(&d.deployment_id, &asm.parsed, &selector, answered_at, &bound)
                .map_err(|e| {
                    tracing::error!(deployment_id = %d.deployment_id, error = %e, "stored evidence does not support the deployment's record");
                    ApiError::Internal
                })?;
            let rests_on: BTreeSet<u64> = d
                .facts
                .iter()
                .chain(&d.last_renewal)
                .chain(
                    bound
                        .identity_at_admission
                        .as_ref()
                        .map(|i| &i.ledger_index),
                )
                .chain(bound.identity_current.as_ref().map(|i| &i.ledger_index))
                .copied()
                .collect();
            let entry_bytes: usize = rests_on
                .difference(&proved)
                .map(|i| page::element_bytes(asm.entries.get(i).map_or(0, Vec::len) + proof_bytes))
                .sum();
            let bytes = page::element_bytes(attributed_to_proto(&view).encoded_len());
            if !budget.take(bytes + entry_bytes) {
                // Never the first: the budget always takes one.
                next_page_token = deployments[k.saturating_sub(1)].1.clone();
                break;
            }
            proved.extend(rests_on);
            attributed.push(view);
        }

        // What is disclosed is recorded before it is answered.
        let disclosure = Disclosure {
            ledger_index: 0,
            deployment_ids: attributed.iter().map(|d| d.deployment_id.clone()).collect(),
            identities: disclosed_identities(&attributed),
        };
        let entry = Entry::new(
            answered_at,
            &who.spiffe_id,
            "",
            Event::AttributionDisclosed {
                request_id: request_id.clone(),
                request_index,
                deployment_ids: disclosure.deployment_ids.clone(),
                identities: disclosure.identities.clone(),
            },
        );
        let t_read = t0.elapsed();
        let disclosure_index = self
            .app
            .store
            .record_disclosure(request_index, &disclosure, entry)
            .await?;
        asm.read(&self.app, request_index).await?;
        asm.read(&self.app, disclosure_index).await?;

        let t_disclosed = t0.elapsed();
        let checkpoint = self.app.store.checkpoint().await?;
        let size = checkpoint.checkpoint.size;
        if size <= disclosure_index {
            tracing::error!(
                size,
                disclosure_index,
                "checkpoint does not cover an acknowledged entry"
            );
            return Err(ApiError::Internal);
        }
        proved.extend([request_index, disclosure_index]);
        let mut entries = Vec::with_capacity(proved.len());
        for (index, bytes) in asm.entries {
            if !proved.contains(&index) {
                // Read for a deployment left to the next page.
                continue;
            }
            let proof = self.app.store.inclusion_proof(index, size).await?;
            entries.push(ProvenEntry {
                index,
                entry: String::from_utf8(bytes).map_err(|_| ApiError::Internal)?,
                inclusion_proof: proof.iter().map(hex::encode).collect(),
            });
        }
        tracing::info!(
            %request_id,
            request_index,
            disclosure_index,
            deployments = attributed.len(),
            request_us = t_request.as_micros() as u64,
            select_us = (t_select - t_request).as_micros() as u64,
            read_us = (t_read - t_select).as_micros() as u64,
            disclose_us = (t_disclosed - t_read).as_micros() as u64,
            prove_us = (t0.elapsed() - t_disclosed).as_micros() as u64,
            "attribution request answered"
        );
        Ok(Report {
            request_id,
            request_ledger_index: request_index,
            flagged_for_review: flagged,
            answered_at,
            disclosure_ledger_index: disclosure_index,
            next_page_token,
            checkpoint: checkpoint.note,
            deployments: attributed,
            entries,
        })
    }
}

fn lifecycle_kind_to_proto(k: LifecycleKind) -> proto::LifecycleKind {
    use proto::LifecycleKind as P;
    match k {
        LifecycleKind::Admitted => P::Admitted,
        LifecycleKind::Renewed => P::Renewed,
        LifecycleKind::EndpointsChanged => P::EndpointsChanged,
        LifecycleKind::RenewalDenied => P::RenewalDenied,
        LifecycleKind::Suspended => P::Suspended,
        LifecycleKind::Terminated => P::Terminated,
        LifecycleKind::Resumed => P::Resumed,
        LifecycleKind::Acknowledged => P::Acknowledged,
        LifecycleKind::Released => P::Released,
        LifecycleKind::Expired => P::Expired,
    }
}

fn lifecycle_kind_from_proto(k: i32) -> Option<LifecycleKind> {
    use proto::LifecycleKind as P;
    Some(match P::try_from(k).ok()? {
        P::Admitted => LifecycleKind::Admitted,
        P::Renewed => LifecycleKind::Renewed,
        P::EndpointsChanged => LifecycleKind::EndpointsChanged,
        P::RenewalDenied => LifecycleKind::RenewalDenied,
        P::Suspended => LifecycleKind::Suspended,
        P::Terminated => LifecycleKind::Terminated,
        P::Resumed => LifecycleKind::Resumed,
        P::Acknowledged => LifecycleKind::Acknowledged,
        P::Released => LifecycleKind::Released,
        P::Expired => LifecycleKind::Expired,
        P::Unspecified => return None,
    })
}

fn identity_to_proto(i: &IdentityRecord) -> proto::IdentityRecord {
    proto::IdentityRecord {
        customer: Some(customer_to_proto(&i.record, None)),
        commitment: i.commitment.clone(),
        record_json: serde_json::to_string(&i.record).unwrap_or_default(),
        ledger_index: i.ledger_index,
        purged: i.purged,
    }
}

/// The wire form of one attributed deployment.
fn attributed_to_proto(d: &AttributedDeployment) -> proto::AttributedDeployment {
    proto::AttributedDeployment {
        deployment_id: d.deployment_id.clone(),
        customer_id: d.customer_id.clone(),
        model_digest: d.model_digest.clone(),
        admitted_by: d.admitted_by.clone(),
        workload: Some(workload_to_proto(&d.workload)),
        state: deployment_state(d.state) as i32,
        lifecycle: d
            .lifecycle
            .iter()
            .map(|e| proto::LifecycleEvent {
                kind: lifecycle_kind_to_proto(e.kind) as i32,
                at: Some(timestamp(e.at)),
                ledger_index: e.ledger_index,
                endpoints: e.endpoints.clone(),
                lease_expires_at: e.lease_expires_at.map(timestamp),
                order_id: e.order_id.clone().unwrap_or_default(),
                principal: e.principal.clone(),
            })
            .collect(),
        certificate: Some(proto::CertificateFacts {
            fingerprint: d.certificate.fingerprint.clone(),
            serial: d.certificate.serial.clone(),
            evaluator: d.certificate.evaluator.clone(),
            developer: d.certificate.developer.clone(),
            model_name: d.certificate.model_name.clone(),
            model_version: d.certificate.model_version.clone(),
            chain_pem: d.certificate.chain_pem.clone(),
            oid_base_arc: d.certificate.oid_base_arc.clone(),
        }),
        identity_at_admission: d.identity_at_admission.as_ref().map(identity_to_proto),
        identity_current: d.identity_current.as_ref().map(identity_to_proto),
        held_endpoint: d.held_endpoint,
    }
}

/// The wire form of a report.
pub fn report_to_proto(r: &Report) -> proto::AttributeResponse {
    proto::AttributeResponse {
        request_id: r.request_id.clone(),
        request_ledger_index: r.request_ledger_index,
        flagged_for_review: r.flagged_for_review,
        deployments: r.deployments.iter().map(attributed_to_proto).collect(),
        next_page_token: r.next_page_token.clone(),
        answered_at: Some(timestamp(r.answered_at)),
        disclosure_ledger_index: r.disclosure_ledger_index,
        checkpoint: r.checkpoint.clone(),
        entries: r
            .entries
            .iter()
            .map(|e| proto::ProvenEntry {
                index: e.index,
                entry: e.entry.as_bytes().to_vec(),
                inclusion_proof: e
                    .inclusion_proof
                    .iter()
                    .map(|h| hex::decode(h).unwrap_or_default())
                    .collect(),
            })
            .collect(),
    }
}

fn identity_from_proto(i: proto::IdentityRecord) -> Result<IdentityRecord, String> {
    Ok(IdentityRecord {
        version: i.customer.as_ref().map_or(0, |c| c.version),
        commitment: i.commitment,
        ledger_index: i.ledger_index,
        purged: i.purged,
        record: serde_json::from_str(&i.record_json)
            .map_err(|e| format!("identity record_json: {e}"))?,
    })
}

/// A report from its wire form (what the CLI saves and verifies).
pub fn report_from_proto(r: proto::AttributeResponse) -> Result<Report, String> {
    let mut deployments = Vec::with_capacity(r.deployments.len());
    for d in r.deployments {
        let c = d.certificate.unwrap_or_default();
        deployments.push(AttributedDeployment {
            deployment_id: d.deployment_id,
            customer_id: d.customer_id,
            model_digest: d.model_digest,
            admitted_by: d.admitted_by,
            workload: super::convert::workload_from_proto(d.workload.unwrap_or_default()),
            state: proto::DeploymentState::try_from(d.state)
                .ok()
                .and_then(super::convert::deployment_state_from_proto)
                .ok_or("deployment state missing")?,
            lifecycle: d
                .lifecycle
                .into_iter()
                .map(|e| {
                    Ok(LifecycleEvent {
                        kind: lifecycle_kind_from_proto(e.kind).ok_or("lifecycle kind missing")?,
                        at: e.at.as_ref().map(millis).unwrap_or_default(),
                        ledger_index: e.ledger_index,
                        endpoints: e.endpoints,
                        lease_expires_at: e.lease_expires_at.as_ref().map(millis),
                        order_id: (!e.order_id.is_empty()).then_some(e.order_id),
                        principal: e.principal,
                    })
                })
                .collect::<Result<_, String>>()?,
            certificate: CertificateFacts {
                fingerprint: c.fingerprint,
                serial: c.serial,
                evaluator: c.evaluator,
                developer: c.developer,
                model_name: c.model_name,
                model_version: c.model_version,
                chain_pem: c.chain_pem,
                oid_base_arc: c.oid_base_arc,
            },
            identity_at_admission: d
                .identity_at_admission
                .map(identity_from_proto)
                .transpose()?,
            identity_current: d.identity_current.map(identity_from_proto).transpose()?,
            held_endpoint: d.held_endpoint,
        });
    }
    Ok(Report {
        request_id: r.request_id,
        request_ledger_index: r.request_ledger_index,
        flagged_for_review: r.flagged_for_review,
        answered_at: r.answered_at.as_ref().map(millis).unwrap_or_default(),
        disclosure_ledger_index: r.disclosure_ledger_index,
        next_page_token: r.next_page_token,
        checkpoint: r.checkpoint,
        deployments,
        entries: r
            .entries
            .into_iter()
            .map(|e| {
                Ok(ProvenEntry {
                    index: e.index,
                    entry: String::from_utf8(e.entry)
                        .map_err(|_| format!("entry {}: not UTF-8", e.index))?,
                    inclusion_proof: e.inclusion_proof.iter().map(hex::encode).collect(),
                })
            })
            .collect::<Result<_, String>>()?,
    })
}

fn request_to_proto(r: &AttributionRequest) -> proto::AttributionRequestRecord {
    let d = r.disclosure.as_ref();
    proto::AttributionRequestRecord {
        request_id: r.request_id.clone(),
        principal: r.principal.clone(),
        requested_at: Some(timestamp(r.at)),
        legal_process: Some(legal_process_to_proto(&r.legal_process)),
        selector: r.selector.describe(super::convert::rfc3339),
        flagged_for_review: r.flagged_for_review,
        request_ledger_index: r.ledger_index,
        answered: d.is_some(),
        disclosure_ledger_index: d.map_or(0, |d| d.ledger_index),
        deployments_disclosed: d.map_or(0, |d| {
            u32::try_from(d.deployment_ids.len()).unwrap_or(u32::MAX)
        }),
        identities_disclosed: d
            .map(|d| {
                d.identities
                    .iter()
                    .map(|c| proto::DisclosedIdentity {
                        customer_id: c.customer_id.clone(),
                        version: c.version,
                        commitment: c.commitment.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default(),
    }
}

#[tonic::async_trait]
impl Attribution for AttributionService {
    async fn attribute(
        &self,
        request: Request<proto::AttributeRequest>,
    ) -> Result<Response<proto::AttributeResponse>, Status> {
        let who = principal(&request)?;
        let report = self.answer(&who, request.into_inner()).await?;
        Ok(Response::new(report_to_proto(&report)))
    }

    async fn list_attribution_requests(
        &self,
        request: Request<proto::ListAttributionRequestsRequest>,
    ) -> Result<Response<proto::ListAttributionRequestsResponse>, Status> {
        let proto::ListAttributionRequestsRequest {
            page_size,
            page_token,
        } = request.into_inner();
        let mut v = Vec::new();
        let limit = page::limit(page_size, &mut v);
        let before = page::parse_index_token(List::AttributionRequests, &page_token, &mut v);
        ApiError::check(v)?;
        let store = &self.app.store;
        let (requests, next) = page::fill(
            limit,
            before,
            |before, n| async move { Ok(store.attribution_requests(before, n).await?) },
            |r| r.ledger_index,
            |r| Ok(request_to_proto(r)),
        )
        .await?;
        let next_page_token = next
            .map(|i| page::index_token(List::AttributionRequests, i))
            .unwrap_or_default();
        Ok(Response::new(proto::ListAttributionRequestsResponse {
            requests,
            next_page_token,
        }))
    }
}
