//! Ledger entries: what happened, who caused it, when. Entries are
//! deterministic JSON (fields in a fixed order, no whitespace, integers
//! only), version 1, and are hashed exactly as stored and served.
//!
//! An entry must never carry personal data. Customers appear by id, record
//! version and a salted SHA-256 commitment of that version; names,
//! addresses and documents stay in the encrypted customer store.

use serde::{Deserialize, Serialize};

pub use crate::domain::commitment::{commitment, text_commitment, CustomerRef};
use crate::domain::customer::Customer;
use crate::domain::deployment::Workload;
use crate::domain::reason::ReasonCode;
use crate::domain::UnixMillis;

pub const ENTRY_VERSION: u32 = 1;

/// One ledger entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// Format version of the entry.
    pub v: u32,
    pub at: UnixMillis,
    /// SPIFFE id of the principal that caused the event.
    pub principal: String,
    /// The caller's request id, where the call has one.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub request_id: String,
    pub event: Event,
}

impl Entry {
    pub fn new(at: UnixMillis, principal: &str, request_id: &str, event: Event) -> Self {
        Self {
            v: ENTRY_VERSION,
            at,
            principal: principal.to_string(),
            request_id: request_id.to_string(),
            event,
        }
    }

    /// The bytes that are stored, served and hashed.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serialising these plain structs (strings, integers, vectors)
        // cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

/// What a screening result is in the ledger: the list it ran against and
/// its outcome; hits are counted, the names matched are not recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScreeningRef {
    pub customer_id: String,
    pub revision: u64,
    pub customer_version: u64,
    pub status: String,
    pub list_name: String,
    pub list_version: String,
    pub list_sha256: String,
    pub hits: u64,
}

impl ScreeningRef {
    pub fn of(s: &crate::domain::customer::Screening) -> Self {
        Self {
            customer_id: s.customer_id.clone(),
            revision: s.revision,
            customer_version: s.customer_version,
            status: s.status.as_str().to_string(),
            list_name: s.list_name.clone(),
            list_version: s.list_version.clone(),
            list_sha256: s.list_sha256.clone(),
            hits: s.hits.len() as u64,
        }
    }
}

/// Why a customer version was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CustomerChange {
    Registered,
    Updated,
    StatusChanged,
}

/// The entry for a new customer version (and its screening, if it was
/// screened with it).
pub fn customer_entry(
    customer: &Customer,
    change: CustomerChange,
    screening: Option<&crate::domain::customer::Screening>,
    principal: &str,
    request_id: &str,
) -> Entry {
    let customer_ref = CustomerRef::of(customer);
    let status = customer.status.as_str().to_string();
    let screening = screening.map(ScreeningRef::of);
    let event = match change {
        CustomerChange::Registered => Event::CustomerRegistered {
            customer: customer_ref,
            status,
            screening,
        },
        CustomerChange::Updated => Event::CustomerUpdated {
            customer: customer_ref,
            status,
            screening,
        },
        CustomerChange::StatusChanged => Event::CustomerStatusChanged {
            customer: customer_ref,
            status,
        },
    };
    Entry::new(customer.updated_at, principal, request_id, event)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateRef {
    pub fingerprint: String,
    pub serial: String,
    pub evaluator: String,
}

/// The events the ledger records, one variant per kind.
// Each event is built once per call and serialised at once; boxing the
// large variants would only add allocations.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Event {
    /// An `Admit` answered, allow or deny.
    Admission {
        decision_id: String,
        allowed: bool,
        reasons: Vec<ReasonCode>,
        customer_id: String,
        /// The record version admission relied on, if the customer exists.
        customer: Option<CustomerRef>,
        model_digest: String,
        certificate: Option<CertificateRef>,
        deployment_id: Option<String>,
        lease_expires_at: Option<UnixMillis>,
        workload: Workload,
    },
    /// A `Renew` answered, allow or deny.
    Renewal {
        decision_id: String,
        deployment_id: String,
        allowed: bool,
        reasons: Vec<ReasonCode>,
        customer: Option<CustomerRef>,
        lease_expires_at: Option<UnixMillis>,
        endpoints: Vec<String>,
    },
    /// The scheduler reported that the workload stopped.
    Release {
        decision_id: String,
        deployment_id: String,
    },
    CustomerRegistered {
        customer: CustomerRef,
        status: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        screening: Option<ScreeningRef>,
    },
    CustomerStatusChanged {
        customer: CustomerRef,
        status: String,
    },
    /// A new version of the identity record.
    CustomerUpdated {
        customer: CustomerRef,
        status: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        screening: Option<ScreeningRef>,
    },
    /// A sanctions list replaced the previous one.
    SanctionsListLoaded {
        name: String,
        version: String,
        sha256: String,
        entries: u64,
    },
    /// Customers re-screened against the loaded list; `changed` lists those
    /// whose result changed.
    CustomersScreened {
        list_sha256: String,
        screened: u64,
        changed: Vec<ScreeningRef>,
    },
    /// A kyc principal resolved a potential match. The note is not
    /// recorded (it may name people); a salted commitment to it is (the
    /// salt is kept, sealed, with the screening result).
    ScreeningResolved {
        screening: ScreeningRef,
        note_commitment: String,
        /// The suspension a confirmed match caused.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        customer: Option<CustomerRef>,
    },
    /// Retention purged the personal data of every version of a customer.
    CustomerPurged { customer_id: String, versions: u64 },
    /// A change to a kill order: its events in order (e.g. APPROVED then
    /// ACTIVATED), its state after them, and the deployments they changed.
    /// The reason is recorded as a salted commitment (the salt is kept with
    /// the order), never as text.
    Order {
        order_id: String,
        events: Vec<String>,
        action: String,
        target_kind: String,
        target: String,
        state: String,
        reason_commitment: String,
        deployment_ids: Vec<String>,
    },
    /// An authority asked who deployed or ran something. Written before
    /// anything is read; the legal process is recorded as given.
    AttributionRequested {
        request_id: String,
        legal_process: crate::domain::attribution::LegalProcess,
        selector: crate::domain::attribution::Selector,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        page_token: String,
        flagged_for_review: bool,
    },
    /// What the answer to a request disclosed: deployments by id, identity
    /// versions by commitment only.
    AttributionDisclosed {
        request_id: String,
        request_index: u64,
        deployment_ids: Vec<String>,
        identities: Vec<CustomerRef>,
    },
}

impl Entry {
    /// Sets the deployments an order change affected, which only the
    /// sequencer knows (it finds them in the same commit).
    pub(crate) fn set_order_deployments(&mut self, ids: Vec<String>) {
        if let Event::Order { deployment_ids, .. } = &mut self.event {
            *deployment_ids = ids;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_deterministic_and_round_trip() {
        let e = Entry::new(
            1_700_000_000_000,
            "spiffe://warden.test/scheduler/a",
            "r-1",
            Event::Release {
                decision_id: "dec-1".into(),
                deployment_id: "dep-1".into(),
            },
        );
        let bytes = e.to_bytes();
        assert_eq!(
            String::from_utf8(bytes.clone()).unwrap(),
            r#"{"v":1,"at":1700000000000,"principal":"spiffe://warden.test/scheduler/a","request_id":"r-1","event":{"kind":"release","decision_id":"dec-1","deployment_id":"dep-1"}}"#
        );
        assert_eq!(Entry::from_bytes(&bytes).unwrap(), e);
        assert_eq!(Entry::from_bytes(&bytes).unwrap().to_bytes(), bytes);
    }
}
