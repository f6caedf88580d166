//! `Customers`: the KYC onboarding system registers customers and changes
//! their status; admission reads them. Every change is a new version.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::convert::{customer_kind_from_proto, customer_status_from_proto, customer_to_proto};
use super::status::ApiError;
use super::{now_millis, principal, App};
use crate::domain::customer::{
    check_country, check_identifier, check_text, new_commitment_salt, Customer, CustomerStatus,
    FieldViolation,
};
use crate::proto;
use crate::proto::customers_server::Customers;

pub struct CustomersService {
    app: Arc<App>,
}

impl CustomersService {
    pub fn new(app: Arc<App>) -> Self {
        Self { app }
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
        } = request.into_inner();
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
        check_text("legal_name", &legal_name, 512, &mut v);
        check_country("country", &country, &mut v);
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
        ApiError::check(v)?;
        let (Some(kind), Some(status)) = (kind, status) else {
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
            updated_at: now_millis(),
            updated_by: who.spiffe_id.clone(),
            commitment_salt: new_commitment_salt(),
        };
        let entry = crate::ledger::entry::customer_entry(&customer, &who.spiffe_id);
        self.app
            .store
            .put_customer(&customer, entry)
            .await
            .map_err(ApiError::from)?;
        tracing::info!(customer_id = %customer.customer_id, status = customer.status.as_str(), "customer registered");
        Ok(Response::new(customer_to_proto(&customer)))
    }

    async fn get_customer(
        &self,
        request: Request<proto::GetCustomerRequest>,
    ) -> Result<Response<proto::Customer>, Status> {
        let proto::GetCustomerRequest { customer_id } = request.into_inner();
        let mut v = Vec::new();
        check_identifier("customer_id", &customer_id, &mut v);
        ApiError::check(v)?;
        let c = self
            .app
            .store
            .customer(&customer_id)
            .map_err(ApiError::from)?
            .ok_or_else(|| ApiError::NotFound(format!("customer {customer_id} not found")))?;
        Ok(Response::new(customer_to_proto(&c)))
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
        if reason.len() > 1024 || reason.chars().any(char::is_control) {
            v.push(FieldViolation::new(
                "reason",
                "at most 1024 bytes without control characters",
            ));
        }
        ApiError::check(v)?;
        let Some(status) = status else {
            return Err(ApiError::Internal.into());
        };
        let current = self
            .app
            .store
            .customer(&customer_id)
            .map_err(ApiError::from)?
            .ok_or_else(|| ApiError::NotFound(format!("customer {customer_id} not found")))?;
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
            updated_at: now_millis(),
            updated_by: who.spiffe_id.clone(),
            commitment_salt: new_commitment_salt(),
            ..current
        };
        let entry = crate::ledger::entry::customer_entry(&next, &who.spiffe_id);
        self.app
            .store
            .put_customer(&next, entry)
            .await
            .map_err(ApiError::from)?;
        tracing::info!(%customer_id, status = status.as_str(), version = next.version, "customer status changed");
        Ok(Response::new(customer_to_proto(&next)))
    }
}
