//! The one mapping from warden's errors to gRPC status codes: one
//! `From<…> for ApiError` per error type, each an exhaustive `match`, so
//! adding an error variant fails the build until someone decides its code.
//! Handlers only use `?`. Internal details (paths, storage messages) are
//! logged, never sent to the caller.
//!
//! The classes: bad input is INVALID_ARGUMENT naming the field; a state
//! conflict FAILED_PRECONDITION; storage that cannot commit now (real I/O)
//! UNAVAILABLE, "retry later"; damaged stored data DATA_LOSS; a broken
//! invariant or a failed randomness source INTERNAL, never "retry later".

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::domain::customer::FieldViolation;
use crate::domain::order::OrderError;
use crate::kyc::KycError;
use crate::random::RandomnessUnavailable;
use crate::screening::ScreeningError;
use crate::store::StoreError;
use crate::tls::TlsError;
use crate::trust::TrustError;

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
            StoreError::Invariant(what) => {
                tracing::error!(error = %what, "broken invariant; request not recorded");
                ApiError::Internal
            }
        }
    }
}

impl From<TrustError> for ApiError {
    fn from(e: TrustError) -> Self {
        match e {
            TrustError::InvalidCrl(e) => ApiError::invalid("crl", e.to_string()),
            TrustError::Chain(description) => ApiError::invalid("certificate_chain", description),
            TrustError::StaleCrl(e) => ApiError::FailedPrecondition(e.to_string()),
            // The admin's own trust directory: the message says which file.
            e @ (TrustError::Directory(_) | TrustError::OidBaseArc(_)) => {
                ApiError::FailedPrecondition(e.to_string())
            }
            TrustError::PersistCrl(e) => {
                tracing::error!(error = %e, "CRL could not be persisted");
                ApiError::Unavailable
            }
            TrustError::Poisoned => {
                tracing::error!(error = %e, "trust bundle unusable for writes");
                ApiError::Internal
            }
        }
    }
}

/// A TLS reload the admin asked for: the message names the file at fault.
impl From<TlsError> for ApiError {
    fn from(e: TlsError) -> Self {
        match e {
            TlsError::Read { .. } | TlsError::Invalid { .. } => {
                ApiError::FailedPrecondition(e.to_string())
            }
        }
    }
}

/// Only a sanctions list load returns it: its input is the list content.
impl From<KycError> for ApiError {
    fn from(e: KycError) -> Self {
        match e {
            KycError::Invalid(m) => ApiError::invalid("content", m),
            KycError::Store(e) => ApiError::from(e),
        }
    }
}

/// A sanctions list in a request: the field is the request field the
/// offending file came in (`content` or `alt_content`).
impl From<ScreeningError> for ApiError {
    fn from(e: ScreeningError) -> Self {
        use ScreeningError as S;
        let file = match &e {
            S::Io { file, .. }
            | S::Csv { file, .. }
            | S::FieldCount { file, .. }
            | S::InvalidField { file, .. }
            | S::MissingColumn { file, .. }
            | S::DuplicateId { file, .. }
            | S::EmptyList { file }
            | S::UnexpectedAltFile { file } => file.as_str(),
            S::ListTooLarge { .. } | S::NothingToIndex { .. } => "content",
        };
        let field = if file == "alt_content" {
            "alt_content"
        } else {
            "content"
        };
        ApiError::invalid(field, e.to_string())
    }
}

impl From<OrderError> for ApiError {
    fn from(e: OrderError) -> Self {
        match e {
            OrderError::NotPending(..)
            | OrderError::NotActive(..)
            | OrderError::AlreadyApproved { .. } => ApiError::FailedPrecondition(e.to_string()),
        }
    }
}

/// Never a predictable salt instead (see [`crate::random`]).
impl From<RandomnessUnavailable> for ApiError {
    fn from(e: RandomnessUnavailable) -> Self {
        tracing::error!(error = %e, "no secret randomness; request refused, nothing recorded");
        ApiError::Internal
    }
}

/// A blocking task of a handler that panicked (or was cancelled).
impl From<tokio::task::JoinError> for ApiError {
    fn from(e: tokio::task::JoinError) -> Self {
        tracing::error!(error = %e, "a handler's blocking task failed");
        ApiError::Internal
    }
}

/// Runs `f` on a blocking thread; if it panics the call is INTERNAL.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    Ok(tokio::task::spawn_blocking(f).await?)
}

/// Lets handlers returning `Status` use `?` on each error type directly;
/// the code is always the one decided above.
macro_rules! status_through_api_error {
    ($($error:ty),* $(,)?) => {$(
        impl From<$error> for Status {
            fn from(e: $error) -> Self {
                Status::from(ApiError::from(e))
            }
        }
    )*};
}

status_through_api_error!(
    StoreError,
    TrustError,
    TlsError,
    KycError,
    ScreeningError,
    OrderError,
    RandomnessUnavailable,
);

/// The status ending a stream the caller resumes (an order watch): a
/// transient storage failure says how to resume (`resume`); damage and
/// broken invariants are reported as such, never as "reconnect".
pub fn resumable(e: StoreError, resume: impl FnOnce() -> String) -> Status {
    match e {
        StoreError::Io(_) | StoreError::Locked(_) => {
            tracing::error!(error = %e, "storage read failed in a stream");
            Status::unavailable(resume())
        }
        other => Status::from(other),
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

    fn pki_io() -> crate::pki::PkiError {
        crate::pki::PkiError::io("/trust/crls/x.crl", std::io::Error::other("disk full"))
    }

    /// Every variant of every error a handler can return, and the code the
    /// caller sees. A variant added without a decision fails the build
    /// (the `From`s match exhaustively); one moved to another code fails
    /// here.
    #[test]
    fn each_error_variant_maps_to_its_code() {
        use crate::pki::PkiError;
        let trust_dir = || PkiError::TrustDir {
            path: "/trust/roots".into(),
            reason: "no roots".into(),
        };
        let table: Vec<(&str, Status, Code)> = vec![
            (
                "store io",
                StoreError::Io("disk".into()).into(),
                Code::Unavailable,
            ),
            (
                "store locked",
                StoreError::Locked("d".into()).into(),
                Code::Unavailable,
            ),
            (
                "store corrupt",
                StoreError::Corrupt {
                    key: "k".into(),
                    detail: "d".into(),
                }
                .into(),
                Code::DataLoss,
            ),
            (
                "store exists",
                StoreError::AlreadyExists("customer c".into()).into(),
                Code::AlreadyExists,
            ),
            (
                "store conflict",
                StoreError::Conflict(crate::store::Conflict::OrdersChanged).into(),
                Code::Aborted,
            ),
            (
                "store pii",
                StoreError::Pii(crate::pii::PiiError::Open("k1".into())).into(),
                Code::Internal,
            ),
            (
                "store invariant",
                StoreError::Invariant("replay of a change".into()).into(),
                Code::Internal,
            ),
            (
                "trust oid",
                TrustError::OidBaseArc(PkiError::InvalidOid {
                    input: "x".into(),
                    reason: "r".into(),
                })
                .into(),
                Code::FailedPrecondition,
            ),
            (
                "trust dir",
                TrustError::Directory(trust_dir()).into(),
                Code::FailedPrecondition,
            ),
            (
                "trust invalid crl",
                TrustError::InvalidCrl(PkiError::InvalidCrl("not DER".into())).into(),
                Code::InvalidArgument,
            ),
            (
                "trust stale crl",
                TrustError::StaleCrl(PkiError::CrlConflict {
                    issuer: "i".into(),
                    reason: "r".into(),
                })
                .into(),
                Code::FailedPrecondition,
            ),
            (
                "trust persist",
                TrustError::PersistCrl(pki_io()).into(),
                Code::Unavailable,
            ),
            (
                "trust chain",
                TrustError::Chain("not PEM".into()).into(),
                Code::InvalidArgument,
            ),
            (
                "trust poisoned",
                TrustError::Poisoned.into(),
                Code::Internal,
            ),
            (
                "tls read",
                TlsError::Read {
                    what: "server certificate",
                    path: "/tls/server.pem".into(),
                    source: std::io::Error::other("gone"),
                }
                .into(),
                Code::FailedPrecondition,
            ),
            (
                "tls invalid",
                TlsError::Invalid {
                    what: "client CA",
                    path: "/tls/ca.pem".into(),
                    message: "m".into(),
                }
                .into(),
                Code::FailedPrecondition,
            ),
            (
                "kyc invalid",
                KycError::Invalid("bad".into()).into(),
                Code::InvalidArgument,
            ),
            (
                "kyc store",
                KycError::Store(StoreError::Io("d".into())).into(),
                Code::Unavailable,
            ),
            (
                "screening",
                ScreeningError::EmptyList {
                    file: "content".into(),
                }
                .into(),
                Code::InvalidArgument,
            ),
            (
                "order",
                OrderError::NotPending("ord-1".into(), "ACTIVE").into(),
                Code::FailedPrecondition,
            ),
            ("randomness", RandomnessUnavailable.into(), Code::Internal),
        ];
        for (name, status, code) in table {
            assert_eq!(status.code(), code, "{name}: {}", status.message());
        }
    }

    #[test]
    fn a_broken_invariant_is_internal_and_never_says_retry() {
        let s = status_of(StoreError::Invariant(
            "a state change was answered as a replay".into(),
        ));
        assert_eq!(s.code(), Code::Internal);
        assert!(!s.message().contains("retry"), "{}", s.message());
        assert!(!s.message().contains("replay"), "{}", s.message());
    }

    #[test]
    fn no_randomness_is_internal_naming_no_detail() {
        let salt = crate::random::commitment_salt_from(&NoRandomness);
        let s = Status::from(salt.unwrap_err());
        assert_eq!(s.code(), Code::Internal);
        assert_eq!(s.message(), "internal error; see the server log");
    }

    struct NoRandomness;

    impl crate::random::Randomness for NoRandomness {
        fn fill(&self, _: &mut [u8]) -> Result<(), RandomnessUnavailable> {
            Err(RandomnessUnavailable)
        }
    }

    #[test]
    fn a_bad_list_names_the_request_field_its_file_came_in() {
        let field = |file: &str| {
            let s = Status::from(ScreeningError::FieldCount {
                file: file.into(),
                line: 3,
                expected: 12,
                found: 2,
            });
            let bad = s.get_details_bad_request().unwrap().field_violations;
            (bad[0].field.clone(), bad[0].description.clone())
        };
        assert_eq!(field("alt_content").0, "alt_content");
        let (f, d) = field("content");
        assert_eq!(f, "content");
        assert!(d.starts_with("content: line 3"), "{d}");
    }

    #[test]
    fn a_bad_crl_names_the_crl_field_and_a_stale_one_says_why() {
        let s = Status::from(TrustError::InvalidCrl(crate::pki::PkiError::InvalidCrl(
            "not DER".into(),
        )));
        let bad = s.get_details_bad_request().unwrap().field_violations;
        assert_eq!(bad[0].field, "crl");
        assert_eq!(bad[0].description, "invalid CRL: not DER");
        // What persisting failed on stays in the log.
        let s = Status::from(TrustError::PersistCrl(pki_io()));
        assert!(!s.message().contains("/trust"), "{}", s.message());
    }

    #[tokio::test]
    async fn a_panicking_blocking_task_is_internal() {
        let r = blocking(|| -> u32 { panic!("boom") }).await;
        assert_eq!(Status::from(r.unwrap_err()).code(), Code::Internal);
    }

    #[test]
    fn a_stream_resumes_on_io_but_reports_damage_and_bugs_as_such() {
        let resume = || "reconnect with since_revision=7".to_string();
        let s = resumable(StoreError::Io("busy".into()), resume);
        assert_eq!(s.code(), Code::Unavailable);
        assert_eq!(s.message(), "reconnect with since_revision=7");
        let s = resumable(StoreError::Invariant("x".into()), resume);
        assert_eq!(s.code(), Code::Internal);
        let s = resumable(
            StoreError::Corrupt {
                key: "order_events/7".into(),
                detail: "checksum".into(),
            },
            resume,
        );
        assert_eq!(s.code(), Code::DataLoss);
    }
}
