//! `Customers`: the KYC onboarding system registers and updates customers,
//! changes their status and resolves screening matches; operators and
//! auditors read them. Every change is a new version, screened against the
//! loaded sanctions list, and recorded in the ledger.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::convert::{
    customer_kind_from_proto, customer_status_from_proto, customer_to_proto, details_from_proto,
    optional_request_millis,
};
use super::page::{self, List};
use super::status::ApiError;
use super::{principal, App};
use crate::domain::customer::Screening;
use crate::domain::customer::{
    check_identifier, validate_identity, Customer, CustomerStatus, FieldViolation, ScreeningStatus,
};
use crate::domain::limits::MAX_RECORD_BYTES;
use crate::ledger::entry::{
    customer_entry, CustomerChange, CustomerRef, Entry, Event, ScreeningRef,
};
use crate::proto;
use crate::proto::customers_server::Customers;
use crate::random::commitment_salt;
use crate::store::{
    conflict_apart, retry_on_conflict, Conflict, CustomerFilter, StoreError, CONFLICT_ATTEMPTS,
};

pub struct CustomersService {
    app: Arc<App>,
}

impl CustomersService {
    pub fn new(app: Arc<App>) -> Self {
        Self { app }
    }

    async fn newest(&self, customer_id: &str) -> Result<Customer, ApiError> {
        self.app
            .store
            .customer(customer_id)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("customer {customer_id} not found")))
    }

    /// Screens `c` and writes it with its screening and entry. A list
    /// loaded meanwhile makes the store refuse the result; it is screened
    /// again against the new one.
    async fn put_screened(
        &self,
        c: &Customer,
        previous: Option<&Screening>,
        change: CustomerChange,
        who: &str,
        now: crate::domain::UnixMillis,
    ) -> Result<Screening, ApiError> {
        let list_replaced = |c: &Conflict| *c == Conflict::ListReplaced;
        let written = retry_on_conflict(CONFLICT_ATTEMPTS, list_replaced, |_| async move {
            let screening = self.app.screening.screen(c, previous, now);
            let entry = customer_entry(c, change, Some(&screening), who, "");
            let written = self
                .app
                .store
                .put_customer(c, Some(&screening), entry)
                .await;
            Ok::<_, StoreError>(conflict_apart(written)?.map(|_| screening))
        })
        .await?;
        match written {
            Ok(screening) => {
                self.app.screening.stored([&screening]);
                Ok(screening)
            }
            Err(c) if list_replaced(&c) => Err(ApiError::Aborted(
                "the sanctions list kept changing; retry".into(),
            )),
            Err(c) => Err(StoreError::Conflict(c).into()),
        }
    }

    async fn answer(&self, c: &Customer) -> Result<Response<proto::Customer>, Status> {
        let screening = self.app.store.screening(&c.customer_id).await?;
        Ok(Response::new(customer_to_proto(c, screening.as_ref())))
    }
}

fn check_note(field: &str, note: &str, required: bool, v: &mut Vec<FieldViolation>) {
    if required && note.trim().is_empty() {
        v.push(FieldViolation::new(field, "required"));
    } else if note.len() > 1024 || note.chars().any(crate::domain::customer::is_hidden_char) {
        v.push(FieldViolation::new(
            field,
            "at most 1024 bytes without control or invisible characters (such as U+200B)",
        ));
    }
}

/// The whole identity record within `MAX_RECORD_BYTES` encoded, so that
/// every record fits any answer that carries it.
fn check_record_size(
    legal_name: &str,
    country: &str,
    details: Option<&proto::CustomerDetails>,
    v: &mut Vec<FieldViolation>,
) {
    use prost::Message as _;
    let bytes = legal_name.len() + country.len() + details.map_or(0, |d| d.encoded_len());
    if bytes > MAX_RECORD_BYTES {
        v.push(FieldViolation::new(
            "details",
            format!("the record is {bytes} bytes encoded; at most {MAX_RECORD_BYTES}"),
        ));
    }
}

#[tonic::async_trait]
impl Customers for CustomersService {
    async fn register_customer(
        &self,
        request: Request<proto::RegisterCustomerRequest>,
    ) -> Result<Response<proto::Customer>, Status> {
        let who = principal(&request)?;
        let proto::RegisterCustomerRequest {
            customer_id,
            kind,
            legal_name,
            country,
            status,
            details,
        } = request.into_inner();
        let now = self.app.clock.now();
        let mut v: Vec<FieldViolation> = Vec::new();
        check_identifier("customer_id", &customer_id, &mut v);
        let kind = proto::CustomerKind::try_from(kind)
            .ok()
            .and_then(customer_kind_from_proto);
        if kind.is_none() {
            v.push(FieldViolation::new(
                "kind",
                "INDIVIDUAL or ORGANISATION is required",
            ));
        }
        let status = match proto::CustomerStatus::try_from(status) {
            Ok(proto::CustomerStatus::Unspecified) => Some(CustomerStatus::Pending),
            Ok(s) => customer_status_from_proto(s),
            Err(_) => None,
        };
        match status {
            None => v.push(FieldViolation::new("status", "unknown status")),
            Some(CustomerStatus::Closed) => v.push(FieldViolation::new(
                "status",
                "a new customer cannot start CLOSED",
            )),
            Some(_) => {}
        }
        check_record_size(&legal_name, &country, details.as_ref(), &mut v);
        let details = match details_from_proto(details) {
            Ok(d) => Some(d),
            Err(e) => {
                v.extend(e);
                None
            }
        };
        match (kind, &details) {
            (Some(kind), Some(details)) => {
                v.extend(validate_identity(kind, &legal_name, &country, details, now));
            }
            // Without a kind the details cannot be checked; the fields
            // every kind has still are.
            _ => {
                crate::domain::customer::check_text("legal_name", &legal_name, 512, &mut v);
                crate::domain::customer::check_iso_country("country", &country, &mut v);
            }
        }
        ApiError::check(v)?;
        let (Some(kind), Some(status), Some(details)) = (kind, status, details) else {
            return Err(ApiError::Internal.into());
        };
        let customer = Customer {
            customer_id,
            kind,
            legal_name,
            country,
            status,
            status_reason: String::new(),
            version: 1,
            updated_at: now,
            updated_by: who.spiffe_id.clone(),
            commitment_salt: commitment_salt()?,
            details,
            purged: false,
        };
        let screening = self
            .put_screened(
                &customer,
                None,
                CustomerChange::Registered,
                &who.spiffe_id,
                now,
            )
            .await?;
        tracing::info!(customer_id = %customer.customer_id, status = customer.status.as_str(), screening = screening.status.as_str(), "customer registered");
        Ok(Response::new(customer_to_proto(
            &customer,
            Some(&screening),
        )))
    }

    async fn update_customer(
        &self,
        request: Request<proto::UpdateCustomerRequest>,
    ) -> Result<Response<proto::Customer>, Status> {
        let who = principal(&request)?;
        let proto::UpdateCustomerRequest {
            customer_id,
            expected_version,
            legal_name,
            country,
            details,
        } = request.into_inner();
        let now = self.app.clock.now();
        let mut v = Vec::new();
        check_identifier("customer_id", &customer_id, &mut v);
        ApiError::check(v)?;
        let current = self.newest(&customer_id).await?;
        let mut v = Vec::new();
        check_record_size(&legal_name, &country, details.as_ref(), &mut v);
        let details = match details_from_proto(details) {
            Ok(d) => Some(d),
            Err(e) => {
                v.extend(e);
                None
            }
        };
        if let Some(d) = &details {
            v.extend(validate_identity(
                current.kind,
                &legal_name,
                &country,
                d,
                now,
            ));
        }
        ApiError::check(v)?;
        let Some(details) = details else {
            return Err(ApiError::Internal.into());
        };
        if expected_version != 0 && expected_version != current.version {
            return Err(ApiError::FailedPrecondition(format!(
                "customer {customer_id} is at version {}, not {expected_version}",
                current.version
            ))
            .into());
        }
        if current.status == CustomerStatus::Closed || current.purged {
            return Err(ApiError::FailedPrecondition(format!(
                "customer {customer_id} is CLOSED; its record cannot change"
            ))
            .into());
        }
        let next = Customer {
            legal_name,
            country,
            details,
            version: current.version + 1,
            updated_at: now,
            updated_by: who.spiffe_id.clone(),
            commitment_salt: commitment_salt()?,
            ..current
        };
        let previous = self.app.store.screening(&customer_id).await?;
        let screening = self
            .put_screened(
                &next,
                previous.as_ref(),
                CustomerChange::Updated,
                &who.spiffe_id,
                now,
            )
            .await?;
        tracing::info!(%customer_id, version = next.version, screening = screening.status.as_str(), "customer updated");
        Ok(Response::new(customer_to_proto(&next, Some(&screening))))
    }

    async fn get_customer(
        &self,
        request: Request<proto::GetCustomerRequest>,
    ) -> Result<Response<proto::Customer>, Status> {
        let proto::GetCustomerRequest { customer_id, as_of } = request.into_inner();
        let mut v = Vec::new();
        check_identifier("customer_id", &customer_id, &mut v);
        let as_of = optional_request_millis("as_of", as_of.as_ref(), &mut v);
        ApiError::check(v)?;
        let c = match as_of {
            None => self.newest(&customer_id).await?,
            Some(t) => self
                .app
                .store
                .customer_as_of(&customer_id, t)
                .await?
                .ok_or_else(|| {
                    ApiError::NotFound(format!(
                        "customer {customer_id} has no version at or before {}",
                        super::convert::rfc3339(t)
                    ))
                })?,
        };
        self.answer(&c).await
    }

    async fn list_customers(
        &self,
        request: Request<proto::ListCustomersRequest>,
    ) -> Result<Response<proto::ListCustomersResponse>, Status> {
        let proto::ListCustomersRequest {
            page_size,
            page_token,
            status,
            country,
        } = request.into_inner();
        let mut v = Vec::new();
        let limit = page::limit(page_size, &mut v);
        let after = page::parse_id_token(List::Customers, &page_token, &mut v);
        let status = match proto::CustomerStatus::try_from(status) {
            Ok(proto::CustomerStatus::Unspecified) => None,
            Ok(s) => customer_status_from_proto(s),
            Err(_) => {
                v.push(FieldViolation::new("status", "unknown status"));
                None
            }
        };
        if !country.is_empty() {
            crate::domain::customer::check_iso_country("country", &country, &mut v);
        }
        ApiError::check(v)?;
        let filter = CustomerFilter {
            status,
            country: (!country.is_empty()).then_some(country),
        };
        let (store, filter) = (&self.app.store, &filter);
        let (customers, next) = page::fill(
            limit,
            after,
            // Each with its screening, read as the page is.
            |after: Option<String>, n| async move {
                let mut screened = Vec::new();
                for c in store.list_customers(filter, after.as_deref(), n).await? {
                    let screening = store.screening(&c.customer_id).await?;
                    screened.push((c, screening));
                }
                Ok(screened)
            },
            |(c, _)| c.customer_id.clone(),
            |(c, screening)| Ok(customer_to_proto(c, screening.as_ref())),
        )
        .await?;
        let next_page_token = next
            .map(|id| page::id_token(List::Customers, &id))
            .unwrap_or_default();
        Ok(Response::new(proto::ListCustomersResponse {
            customers,
            next_page_token,
        }))
    }

    async fn set_customer_status(
        &self,
        request: Request<proto::SetCustomerStatusRequest>,
    ) -> Result<Response<proto::Customer>, Status> {
        let who = principal(&request)?;
        let proto::SetCustomerStatusRequest {
            customer_id,
            status,
            reason,
        } = request.into_inner();
        let mut v = Vec::new();
        check_identifier("customer_id", &customer_id, &mut v);
        let status = proto::CustomerStatus::try_from(status)
            .ok()
            .and_then(customer_status_from_proto);
        if status.is_none() {
            v.push(FieldViolation::new(
                "status",
                "PENDING, VERIFIED, SUSPENDED or CLOSED is required",
            ));
        }
        check_note("reason", &reason, false, &mut v);
        ApiError::check(v)?;
        let Some(status) = status else {
            return Err(ApiError::Internal.into());
        };
        let current = self.newest(&customer_id).await?;
        if current.status == CustomerStatus::Closed {
            return Err(ApiError::FailedPrecondition(format!(
                "customer {customer_id} is CLOSED; a closed customer cannot change status"
            ))
            .into());
        }
        let next = Customer {
            status,
            status_reason: reason,
            version: current.version + 1,
            updated_at: self.app.clock.now(),
            updated_by: who.spiffe_id.clone(),
            commitment_salt: commitment_salt()?,
            ..current
        };
        let entry = customer_entry(
            &next,
            CustomerChange::StatusChanged,
            None,
            &who.spiffe_id,
            "",
        );
        self.app.store.put_customer(&next, None, entry).await?;
        tracing::info!(%customer_id, status = status.as_str(), version = next.version, "customer status changed");
        self.answer(&next).await
    }

    async fn resolve_screening(
        &self,
        request: Request<proto::ResolveScreeningRequest>,
    ) -> Result<Response<proto::Customer>, Status> {
        let who = principal(&request)?;
        let proto::ResolveScreeningRequest {
            customer_id,
            resolution,
            note,
        } = request.into_inner();
        let mut v = Vec::new();
        check_identifier("customer_id", &customer_id, &mut v);
        let outcome = match proto::ScreeningResolution::try_from(resolution) {
            Ok(proto::ScreeningResolution::FalsePositive) => Some(ScreeningStatus::FalsePositive),
            Ok(proto::ScreeningResolution::ConfirmedMatch) => Some(ScreeningStatus::ConfirmedMatch),
            _ => {
                v.push(FieldViolation::new(
                    "resolution",
                    "FALSE_POSITIVE or CONFIRMED_MATCH is required",
                ));
                None
            }
        };
        check_note("note", &note, true, &mut v);
        ApiError::check(v)?;
        let Some(outcome) = outcome else {
            return Err(ApiError::Internal.into());
        };
        let now = self.app.clock.now();
        let current = self.newest(&customer_id).await?;
        let screening = self
            .app
            .store
            .screening(&customer_id)
            .await?
            .filter(|s| s.status == ScreeningStatus::PotentialMatch)
            .ok_or_else(|| {
                ApiError::FailedPrecondition(format!(
                    "customer {customer_id} has no unresolved potential match"
                ))
            })?;
        let resolution_salt = commitment_salt()?;
        let note_commitment = crate::ledger::entry::text_commitment(&resolution_salt, &note);
        let mut resolved = crate::domain::customer::Screening {
            revision: screening.revision + 1,
            customer_version: current.version,
            status: outcome,
            resolution_note: note,
            resolution_salt,
            resolved_by: who.spiffe_id.clone(),
            resolved_at: Some(now),
            ..screening
        };
        // A confirmed match suspends the customer in the same commit.
        let salt = commitment_salt()?;
        let suspended = (outcome == ScreeningStatus::ConfirmedMatch
            && current.status != CustomerStatus::Suspended
            && current.status != CustomerStatus::Closed)
            .then(|| Customer {
                status: CustomerStatus::Suspended,
                status_reason: "sanctions match confirmed".into(),
                version: current.version + 1,
                updated_at: now,
                updated_by: who.spiffe_id.clone(),
                commitment_salt: salt,
                ..current.clone()
            });
        if let Some(c) = &suspended {
            resolved.customer_version = c.version;
        }
        let entry = Entry::new(
            now,
            &who.spiffe_id,
            "",
            Event::ScreeningResolved {
                screening: ScreeningRef::of(&resolved),
                note_commitment,
                customer: suspended.as_ref().map(CustomerRef::of),
            },
        );
        match &suspended {
            Some(c) => {
                self.app
                    .store
                    .put_customer(c, Some(&resolved), entry)
                    .await?;
            }
            None => {
                self.app
                    .store
                    .put_screenings(std::slice::from_ref(&resolved), entry)
                    .await?;
            }
        }
        tracing::info!(%customer_id, outcome = outcome.as_str(), "screening resolved");
        self.answer(&suspended.unwrap_or(current)).await
    }
}
