//! The one mapping from warden's errors to gRPC status codes. Adding an
//! error variant fails the build until someone decides its code. Internal
//! details (paths, storage messages) are logged, never sent to the caller.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::domain::customer::FieldViolation;
use crate::store::StoreError;

#[derive(Debug)]
pub enum ApiError {
    /// Bad input: every violation, each naming its field.
    Invalid(Vec<FieldViolation>),
    NotFound(String),
    AlreadyExists(String),
    /// The request conflicts with the current state.
    FailedPrecondition(String),
    /// Concurrent change; the caller may retry.
    Aborted(String),
    PermissionDenied(String),
    /// The caller holds as much of a bounded resource as it may.
    ResourceExhausted(String),
    /// Storage cannot commit right now; nothing was recorded.
    Unavailable,
    Internal,
}

impl ApiError {
    pub fn invalid(field: &str, description: impl Into<String>) -> Self {
        Self::Invalid(vec![FieldViolation::new(field, description)])
    }

    /// `Ok(())` when there are no violations, so validation can end with
    /// `ApiError::check(violations)?`.
    pub fn check(violations: Vec<FieldViolation>) -> Result<(), ApiError> {
        if violations.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Invalid(violations))
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::AlreadyExists(what) => {
                ApiError::AlreadyExists(format!("{what} already exists"))
            }
            StoreError::Conflict(what) => {
                ApiError::Aborted(format!("{what} was changed concurrently; retry"))
            }
            StoreError::Io(detail) | StoreError::Locked(detail) => {
                tracing::error!(error = %detail, "storage failure; request not recorded");
                ApiError::Unavailable
            }
            StoreError::Corrupt { key, detail } => {
                tracing::error!(%key, %detail, "stored value failed its checksum; failing closed");
                ApiError::Internal
            }
            StoreError::Pii(e) => {
                tracing::error!(error = %e, "stored personal data does not open; failing closed");
                ApiError::Internal
            }
        }
    }
}

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::Invalid(violations) => {
                let message = violations
                    .iter()
                    .map(|v| format!("{}: {}", v.field, v.description))
                    .collect::<Vec<_>>()
                    .join("; ");
                let details = ErrorDetails::with_bad_request(
                    violations
                        .into_iter()
                        .map(|v| tonic_types::FieldViolation::new(v.field, v.description))
                        .collect::<Vec<_>>(),
                );
                Status::with_error_details(
                    Code::InvalidArgument,
                    format!("invalid request: {message}"),
                    details,
                )
            }
            ApiError::NotFound(m) => Status::not_found(m),
            ApiError::AlreadyExists(m) => Status::already_exists(m),
            ApiError::FailedPrecondition(m) => Status::failed_precondition(m),
            ApiError::Aborted(m) => Status::aborted(m),
            ApiError::PermissionDenied(m) => Status::permission_denied(m),
            ApiError::ResourceExhausted(m) => Status::resource_exhausted(m),
            ApiError::Unavailable => Status::unavailable(
                "storage cannot commit right now; nothing was recorded, retry later",
            ),
            ApiError::Internal => Status::internal("internal error; see the server log"),
        }
    }
}
