//! Customer records and screening results as stored: the fields that are
//! not personal data in the clear (what the store needs to check versions,
//! filter lists and purge), everything else sealed with the PII keyring,
//! bound to its customer and version.

use serde::{Deserialize, Serialize};

use super::StoreError;
use crate::domain::customer::{Customer, CustomerDetails, CustomerKind, CustomerStatus, Screening};
use crate::domain::UnixMillis;
use crate::pii::{Keyring, Sealed};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StoredCustomer {
    pub customer_id: String,
    pub version: u64,
    pub kind: CustomerKind,
    pub country: String,
    pub status: CustomerStatus,
    pub updated_at: UnixMillis,
    pub updated_by: String,
    /// The ledger's commitment to this version; kept by the tombstone.
    pub commitment: String,
    /// `None` once purged.
    pub sealed: Option<Sealed>,
}

/// The personal part of a version.
#[derive(Serialize, Deserialize)]
struct Personal {
    legal_name: String,
    status_reason: String,
    commitment_salt: String,
    details: CustomerDetails,
}

fn customer_aad(id: &str, version: u64) -> Vec<u8> {
    format!("warden/customer/{id}/{version}").into_bytes()
}

fn screening_aad(id: &str, revision: u64) -> Vec<u8> {
    format!("warden/screening/{id}/{revision}").into_bytes()
}

fn json_err(e: serde_json::Error) -> StoreError {
    StoreError::Invariant(format!("encoding a record: {e}"))
}

impl StoredCustomer {
    pub fn seal(c: &Customer, keys: &Keyring) -> Result<Self, StoreError> {
        let sealed = if c.purged {
            None
        } else {
            let personal = Personal {
                legal_name: c.legal_name.clone(),
                status_reason: c.status_reason.clone(),
                commitment_salt: c.commitment_salt.clone(),
                details: c.details.clone(),
            };
            let plain = serde_json::to_vec(&personal).map_err(json_err)?;
            Some(keys.seal(&customer_aad(&c.customer_id, c.version), &plain)?)
        };
        Ok(Self {
            customer_id: c.customer_id.clone(),
            version: c.version,
            kind: c.kind,
            country: c.country.clone(),
            status: c.status,
            updated_at: c.updated_at,
            updated_by: c.updated_by.clone(),
            commitment: crate::ledger::entry::commitment(c),
            sealed,
        })
    }

    /// The tombstone of this version: personal data gone, commitment kept.
    pub fn tombstone(&self) -> Self {
        Self {
            sealed: None,
            ..self.clone()
        }
    }

    pub fn open(&self, keys: &Keyring) -> Result<Customer, StoreError> {
        let personal = match &self.sealed {
            None => None,
            Some(s) => {
                let plain = keys.open(&customer_aad(&self.customer_id, self.version), s)?;
                Some(serde_json::from_slice::<Personal>(&plain).map_err(|e| {
                    StoreError::Corrupt {
                        key: format!("customer {} version {}", self.customer_id, self.version),
                        detail: e.to_string(),
                    }
                })?)
            }
        };
        let purged = personal.is_none();
        let p = personal.unwrap_or(Personal {
            legal_name: String::new(),
            status_reason: String::new(),
            commitment_salt: String::new(),
            details: CustomerDetails::default(),
        });
        Ok(Customer {
            customer_id: self.customer_id.clone(),
            kind: self.kind,
            legal_name: p.legal_name,
            country: self.country.clone(),
            status: self.status,
            status_reason: p.status_reason,
            version: self.version,
            updated_at: self.updated_at,
            updated_by: self.updated_by.clone(),
            commitment_salt: p.commitment_salt,
            details: p.details,
            purged,
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StoredScreening {
    pub customer_id: String,
    pub revision: u64,
    pub customer_version: u64,
    /// The list screened against (public data; empty when none was
    /// loaded), so the store can refuse a result from a replaced list.
    #[serde(default)]
    pub list_sha256: String,
    pub sealed: Sealed,
}

impl StoredScreening {
    pub fn seal(s: &Screening, keys: &Keyring) -> Result<Self, StoreError> {
        let plain = serde_json::to_vec(s).map_err(json_err)?;
        Ok(Self {
            customer_id: s.customer_id.clone(),
            revision: s.revision,
            customer_version: s.customer_version,
            list_sha256: s.list_sha256.clone(),
            sealed: keys.seal(&screening_aad(&s.customer_id, s.revision), &plain)?,
        })
    }

    pub fn open(&self, keys: &Keyring) -> Result<Screening, StoreError> {
        let plain = keys.open(
            &screening_aad(&self.customer_id, self.revision),
            &self.sealed,
        )?;
        serde_json::from_slice(&plain).map_err(|_| StoreError::Corrupt {
            key: format!("screening of {}", self.customer_id),
            detail: "the opened record does not parse".into(),
        })
    }
}
