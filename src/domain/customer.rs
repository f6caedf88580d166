//! Customer records as admission needs them. Every change writes a new
//! immutable version; the record grows into the full KYC record without
//! changing how versions are stored.

use serde::{Deserialize, Serialize};

use super::UnixMillis;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CustomerKind {
    Individual,
    Organisation,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CustomerStatus {
    Pending,
    Verified,
    Suspended,
    Closed,
}

impl CustomerStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Verified => "VERIFIED",
            Self::Suspended => "SUSPENDED",
            Self::Closed => "CLOSED",
        }
    }
}

/// One immutable version of a customer record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Customer {
    pub customer_id: String,
    pub kind: CustomerKind,
    pub legal_name: String,
    /// ISO 3166-1 alpha-2, upper case.
    pub country: String,
    pub status: CustomerStatus,
    pub status_reason: String,
    /// Starts at 1 and increases by one with every change.
    pub version: u64,
    pub updated_at: UnixMillis,
    /// SPIFFE id of the principal that wrote this version.
    pub updated_by: String,
    /// Random per-version salt (hex) of the ledger's commitment to this
    /// version; never written to the ledger itself.
    #[serde(default)]
    pub commitment_salt: String,
}

/// A fresh commitment salt: 32 random bytes, hex.
pub fn new_commitment_salt() -> String {
    let mut salt = [0u8; 32];
    // SystemRandom only fails if the OS has no randomness source, in which
    // case TLS would not work either; an empty salt is then still a valid
    // (unsalted) commitment rather than a crash.
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut salt);
    hex::encode(salt)
}

/// What is wrong with a field of an input, named as the API names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    pub field: String,
    pub description: String,
}

impl FieldViolation {
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            description: description.into(),
        }
    }
}

/// Identifiers chosen by callers (customer ids, request ids): 1 to 128 of
/// `[A-Za-z0-9._:-]`, so they are safe in keys, logs and file names.
pub fn check_identifier(field: &str, value: &str, out: &mut Vec<FieldViolation>) {
    if value.is_empty() {
        out.push(FieldViolation::new(field, "required"));
    } else if value.len() > 128 {
        out.push(FieldViolation::new(field, "at most 128 characters"));
    } else if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
    {
        out.push(FieldViolation::new(
            field,
            "only letters, digits, '.', '_', ':' and '-' are allowed",
        ));
    }
}

/// ISO 3166-1 alpha-2 shape: two upper-case ASCII letters.
pub fn check_country(field: &str, value: &str, out: &mut Vec<FieldViolation>) {
    if value.len() != 2 || !value.bytes().all(|b| b.is_ascii_uppercase()) {
        out.push(FieldViolation::new(
            field,
            "an ISO 3166-1 alpha-2 code such as \"DE\" is required",
        ));
    }
}

/// A required free-text field: present, at most `max` bytes, no control
/// characters.
pub fn check_text(field: &str, value: &str, max: usize, out: &mut Vec<FieldViolation>) {
    if value.trim().is_empty() {
        out.push(FieldViolation::new(field, "required"));
    } else if value.len() > max {
        out.push(FieldViolation::new(field, format!("at most {max} bytes")));
    } else if value.chars().any(char::is_control) {
        out.push(FieldViolation::new(
            field,
            "control characters are not allowed",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_reject_empty_long_and_odd_characters() {
        let mut v = Vec::new();
        check_identifier("id", "", &mut v);
        check_identifier("id", &"a".repeat(129), &mut v);
        check_identifier("id", "a b", &mut v);
        check_identifier("id", "cust-42.eu:x_1", &mut v);
        assert_eq!(v.len(), 3);
    }

    #[test]
    fn countries_must_be_two_upper_case_letters() {
        let mut v = Vec::new();
        check_country("country", "de", &mut v);
        check_country("country", "DEU", &mut v);
        check_country("country", "DE", &mut v);
        assert_eq!(v.len(), 2);
    }
}
