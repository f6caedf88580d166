//! How the ledger refers to a customer record version and to free text:
//! salted SHA-256 commitments, never the content. These are pure functions
//! of the record, kept in the domain because attribution disclosures and
//! ledger entries both carry them; [`crate::ledger::entry`] re-exports them.

use serde::{Deserialize, Serialize};

use super::customer::Customer;

/// What a customer record version is in the ledger: never its content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomerRef {
    pub customer_id: String,
    pub version: u64,
    /// `sha256:<hex>` of `salt || record JSON` (see [`commitment`]).
    pub commitment: String,
}

/// `sha256:<hex>` of `salt || text`: binds free text (an order's reason, a
/// resolution note) without letting anyone test guesses against the ledger.
pub fn text_commitment(salt: &str, text: &str) -> String {
    use sha2::{Digest as _, Sha256};
    let mut h = Sha256::new();
    h.update(salt.as_bytes());
    h.update(text.as_bytes());
    format!("sha256:{}", hex::encode(h.finalize()))
}

/// Salted commitment to one customer record version. The salt is stored
/// with the record, so whoever holds the record can show it is the one
/// committed to, and nobody can test guesses against the ledger.
pub fn commitment(customer: &Customer) -> String {
    use sha2::{Digest as _, Sha256};
    let mut h = Sha256::new();
    h.update(customer.commitment_salt.as_bytes());
    h.update(serde_json::to_vec(customer).unwrap_or_default());
    format!("sha256:{}", hex::encode(h.finalize()))
}

impl CustomerRef {
    pub fn of(customer: &Customer) -> Self {
        Self {
            customer_id: customer.customer_id.clone(),
            version: customer.version,
            commitment: commitment(customer),
        }
    }
}
