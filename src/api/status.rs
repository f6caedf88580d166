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
                let violations = bounded(violations);
                let message = summary(&violations);
                let details = ErrorDetails::with_bad_request(
                    violations
                        .into_iter()
                        .map(|v| tonic_types::FieldViolation::new(v.field, v.description))
                        .collect::<Vec<_>>(),
                );
                Status::with_error_details(Code::InvalidArgument, message, details)
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
            ApiError::DataLoss(key) => Status::data_loss(format!(
                "stored record {key} is damaged; this warden no longer reports SERVING: its \
                 data directory must be restored from a backup (see the server log)"
            )),
            ApiError::Internal => Status::internal("internal error; see the server log"),
        }
    }
}

/// At most `MAX_FIELD_VIOLATIONS` violations and `MAX_VIOLATION_BYTES` of
/// them, each description cut to `MAX_VIOLATION_DESCRIPTION_BYTES`, then
/// one naming no field that says how many more there were: a record with
/// thousands of bad entries gets an answer every client can read, and the
/// caller fixes the first ones and tries again.
fn bounded(violations: Vec<FieldViolation>) -> Vec<FieldViolation> {
    use crate::domain::limits::{
        MAX_FIELD_VIOLATIONS, MAX_VIOLATION_BYTES, MAX_VIOLATION_DESCRIPTION_BYTES,
    };
    let total = violations.len();
    let mut listed = Vec::with_capacity(total.min(MAX_FIELD_VIOLATIONS + 1));
    let mut bytes = 0;
    for mut v in violations.into_iter().take(MAX_FIELD_VIOLATIONS) {
        cut(&mut v.description, MAX_VIOLATION_DESCRIPTION_BYTES);
        bytes += v.field.len() + v.description.len();
        if bytes > MAX_VIOLATION_BYTES {
            break;
        }
        listed.push(v);
    }
    let more = total - listed.len();
    if more > 0 {
        listed.push(FieldViolation::new(
            "",
            format!("{more} more violations not listed; correct the ones above and retry"),
        ));
    }
    listed
}

/// The error message: the violations in order while they fit
/// `MAX_ERROR_MESSAGE_BYTES`, then how many the details hold besides.
fn summary(violations: &[FieldViolation]) -> String {
    use crate::domain::limits::MAX_ERROR_MESSAGE_BYTES;
    let mut message = String::from("invalid request: ");
    for (i, v) in violations.iter().enumerate() {
        let part = match v.field.as_str() {
            "" => v.description.clone(),
            field => format!("{field}: {}", v.description),
        };
        if i > 0 && message.len() + part.len() > MAX_ERROR_MESSAGE_BYTES {
            message.push_str(&format!(
                "; and {} more in the details",
                violations.len() - i
            ));
            break;
        }
        if i > 0 {
            message.push_str("; ");
        }
        message.push_str(&part);
    }
    message
}

/// `text` cut to at most `max` bytes at a character boundary, ending in
/// '…' when cut.
fn cut(text: &mut String, max: usize) {
    if text.len() > max {
        let mut end = max - '…'.len_utf8();
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::limits::{
        MAX_FIELD_VIOLATIONS, MAX_VIOLATION_BYTES, MAX_VIOLATION_DESCRIPTION_BYTES,
    };

    #[test]
    fn an_error_lists_at_most_fifty_violations_and_counts_the_rest() {
        let many: Vec<FieldViolation> = (0..5000)
            .map(|i| FieldViolation::new(format!("f[{i}]"), "required"))
            .collect();
        let status = Status::from(ApiError::Invalid(many));
        assert_eq!(status.code(), Code::InvalidArgument);
        let listed = status.get_details_bad_request().unwrap().field_violations;
        assert_eq!(listed.len(), MAX_FIELD_VIOLATIONS + 1);
        assert_eq!(listed[0].field, "f[0]");
        let last = &listed[MAX_FIELD_VIOLATIONS];
        assert_eq!(last.field, "");
        assert!(last.description.starts_with("4950 more"), "{last:?}");
        assert!(status
            .message()
            .starts_with("invalid request: f[0]: required; f[1]"));
        assert!(status.message().len() < 1100, "{}", status.message().len());
    }

    #[test]
    fn long_violations_are_listed_up_to_the_byte_bound() {
        let many: Vec<FieldViolation> = (0..60)
            .map(|i| FieldViolation::new(format!("f[{i}]"), "d".repeat(1000)))
            .collect();
        let status = Status::from(ApiError::Invalid(many));
        let listed = status.get_details_bad_request().unwrap().field_violations;
        let bytes: usize = listed
            .iter()
            .map(|v| v.field.len() + v.description.len())
            .sum();
        assert!(bytes <= MAX_VIOLATION_BYTES + 100, "{bytes}");
        let last = listed.last().unwrap();
        assert_eq!(last.field, "");
        assert!(
            last.description
                .starts_with(&format!("{} more", 60 - (listed.len() - 1))),
            "{last:?}"
        );
        // What a client reads in the trailers stays far below 16 KiB.
        assert!(status.details().len() + status.message().len() < 10 * 1024);
    }

    #[test]
    fn a_long_description_is_cut_at_a_character_boundary() {
        let long = "é".repeat(1000);
        let status = Status::from(ApiError::invalid("f", long));
        let listed = status.get_details_bad_request().unwrap().field_violations;
        assert_eq!(listed.len(), 1);
        assert!(listed[0].description.len() <= MAX_VIOLATION_DESCRIPTION_BYTES);
        assert!(listed[0].description.ends_with('…'));
    }

    #[test]
    fn fifty_violations_are_listed_without_a_count() {
        let fifty: Vec<FieldViolation> = (0..MAX_FIELD_VIOLATIONS)
            .map(|i| FieldViolation::new(format!("f[{i}]"), "required"))
            .collect();
        let status = Status::from(ApiError::Invalid(fifty));
        let listed = status.get_details_bad_request().unwrap().field_violations;
        assert_eq!(listed.len(), MAX_FIELD_VIOLATIONS);
        assert!(listed.iter().all(|v| !v.field.is_empty()));
    }

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
