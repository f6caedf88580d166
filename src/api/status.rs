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
    /// Storage cannot commit right now; nothing was recorded.
    Unavailable,
    /// Stored data is damaged (the record named): no retry will help.
    DataLoss(String),
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
                tracing::error!(
                    %key,
                    %detail,
                    "stored data is damaged; failing closed (restore the data directory from a backup)"
                );
                ApiError::DataLoss(key)
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
            ApiError::Unavailable => Status::unavailable(
                "storage cannot commit right now; nothing was recorded, retry later",
            ),
            ApiError::DataLoss(key) => Status::data_loss(format!(
                "stored record {key} is damaged; this warden no longer reports SERVING: its \
                 data directory must be restored from a backup (see the server log)"
            )),
            ApiError::Internal => Status::internal("internal error; see the server log"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status_of(e: StoreError) -> Status {
        Status::from(ApiError::from(e))
    }

    #[test]
    fn damage_is_data_loss_naming_the_record_never_retry() {
        let s = status_of(StoreError::Corrupt {
            key: "deployments/dep-1".into(),
            detail: "checksum mismatch".into(),
        });
        assert_eq!(s.code(), Code::DataLoss);
        assert!(s.message().contains("deployments/dep-1"), "{}", s.message());
        assert!(!s.message().contains("retry"), "{}", s.message());
        // The detail stays in the log.
        assert!(!s.message().contains("checksum"), "{}", s.message());
    }

    #[test]
    fn damage_sled_reports_is_data_loss_and_io_stays_unavailable() {
        let s = status_of(StoreError::from(sled::Error::Corruption {
            at: None,
            bt: (),
        }));
        assert_eq!(s.code(), Code::DataLoss);
        let s = status_of(StoreError::from(sled::Error::ReportableBug(
            "no page".into(),
        )));
        assert_eq!(s.code(), Code::DataLoss);
        let s = status_of(StoreError::from(sled::Error::Io(std::io::Error::other(
            "disk busy",
        ))));
        assert_eq!(s.code(), Code::Unavailable);
    }
}
