//! Error type for PKI operations other than certificate verification (which
//! reports [`crate::pki::CertProblem`]s instead of failing).

use std::fmt;
use std::path::PathBuf;

use crate::pki::profile::Field;

/// One invalid claim field, with the reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub field: Field,
    pub reason: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field.name(), self.reason)
    }
}

fn join_field_errors(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// An OID string or base arc that is not a valid object identifier.
    #[error("invalid OID {input:?}: {reason}")]
    InvalidOid { input: String, reason: String },

    /// Claims that would not survive the profile's own parser.
    #[error("invalid evaluation claims: {}", join_field_errors(.0))]
    InvalidClaims(Vec<FieldError>),

    /// A `--results` file that could not be read as JSON or TOML.
    #[error("invalid evaluation results: {0}")]
    InvalidResults(String),

    #[error("invalid validity period: {0}")]
    InvalidValidity(String),

    /// A certificate (CA certificate, root, ...) that could not be used.
    #[error("invalid certificate ({context}): {reason}")]
    InvalidCertificate { context: String, reason: String },

    /// A private key that could not be parsed or does not match its certificate.
    #[error("invalid private key ({context}): {reason}")]
    InvalidKey { context: String, reason: String },

    /// Bytes offered as a CRL that are not a usable CRL.
    #[error("invalid CRL: {0}")]
    InvalidCrl(String),

    /// A CRL older than the one already held for the same issuer.
    #[error(
        "CRL rollback rejected for issuer {issuer}: offered {what} {offered} is older than the \
         held {what} {held}"
    )]
    CrlRollback {
        issuer: String,
        /// `"CRL number"` or `"thisUpdate"`.
        what: &'static str,
        held: String,
        offered: String,
    },

    /// A different CRL with the same CRL number / thisUpdate as the held one.
    #[error("CRL conflict for issuer {issuer}: {reason}")]
    CrlConflict { issuer: String, reason: String },

    /// A trust directory that cannot be loaded.
    #[error("trust directory {path}: {reason}")]
    TrustDir { path: PathBuf, reason: String },

    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// rcgen refused to build a certificate or CRL.
    #[error("certificate generation failed ({context}): {source}")]
    Generation {
        context: String,
        #[source]
        source: rcgen::Error,
    },
}

impl PkiError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        PkiError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn gen(context: impl Into<String>) -> impl FnOnce(rcgen::Error) -> PkiError {
        let context = context.into();
        move |source| PkiError::Generation { context, source }
    }
}
