//! Keys of the `attribution` tree: indices the sequencer writes in the same
//! commit as the entries they point at, so attribution never scans.
//!
//! | key | value |
//! |---|---|
//! | `m` digest 0x00 admitted_at deployment_id | deployments of a model by admission time; the value is empty, or the deployment's final end (u64) once it has one |
//! | `c` customer_id 0x00 admitted_at deployment_id | the same for a customer's deployments |
//! | `e` endpoint 0x00 at index | deployment_id: who claimed an endpoint when |
//! | `v` customer_id 0x00 version | index of the entry that recorded the version |
//! | `r` index | an attribution request, keyed by its entry's index |
//! | `F` fingerprint 0x00 customer_id 0x00 admitted_at deployment_id | a deployment an order may still act on (stored ACTIVE or SUSPENDED), by certificate and customer; the value is empty |
//! | `G` digest 0x00 fingerprint | a certificate some such deployment of the model was admitted with; never removed |
//! | `W` evaluator 0x00 fingerprint | the same by evaluator |
//! | `K` customer_id 0x00 fingerprint | the same by customer |
//!
//! The last four let an order find what it stops or holds without reading
//! every deployment. The `F` key is written in the same commit as the
//! deployment whose state enters or leaves
//! [`DeploymentState::order_may_act_on`](crate::domain::deployment::DeploymentState::order_may_act_on);
//! an order of a model, evaluator or customer goes through the
//! certificates it names (`G`, `W`, `K`: one key per pair, written only
//! when first seen), so an admission writes one index key and, with a
//! certificate seen before, only reads the others. A store written before
//! these keys existed gets them at open (`META_ORDER_INDEX` marks them
//! complete).
//!
//! The admission time before the id in `m`, `c` and `F` keys makes new
//! deployments land at the end of their subject's range, next to each
//! other, rather than at random places among the older ones (ids are
//! random): a commit then touches few of the index's pages.
//!
//! Times and indices are big-endian u64, so keys sort by them. Ids, digests
//! and endpoints contain no 0x00 (they are validated on the way in).

use crate::domain::deployment::Deployment;
use crate::domain::order::TargetKind;
use crate::domain::UnixMillis;

pub(crate) const MODEL: u8 = b'm';
pub(crate) const CUSTOMER: u8 = b'c';
pub(crate) const ENDPOINT: u8 = b'e';
pub(crate) const VERSION: u8 = b'v';
pub(crate) const REQUEST: u8 = b'r';
pub(crate) const OPEN_CERTIFICATE: u8 = b'F';
pub(crate) const MODEL_CERTIFICATE: u8 = b'G';
pub(crate) const EVALUATOR_CERTIFICATE: u8 = b'W';
pub(crate) const CUSTOMER_CERTIFICATE: u8 = b'K';

/// Where the deployments a target names are found: by the target's own
/// id, under its certificate's open deployments, or under those of each
/// certificate an index of certificates lists (of one customer only, for a
/// customer target).
pub(crate) enum Lookup {
    Id,
    Certificate,
    ThroughCertificates { tag: u8, of_customer: bool },
}

pub(crate) fn lookup(kind: TargetKind) -> Lookup {
    match kind {
        TargetKind::Deployment => Lookup::Id,
        TargetKind::Certificate => Lookup::Certificate,
        TargetKind::ModelDigest => Lookup::ThroughCertificates {
            tag: MODEL_CERTIFICATE,
            of_customer: false,
        },
        TargetKind::Evaluator => Lookup::ThroughCertificates {
            tag: EVALUATOR_CERTIFICATE,
            of_customer: false,
        },
        TargetKind::Customer => Lookup::ThroughCertificates {
            tag: CUSTOMER_CERTIFICATE,
            of_customer: true,
        },
    }
}

fn keyed(tag: u8, subject: &str, last: &str) -> Vec<u8> {
    let mut k = prefix(tag, subject);
    k.extend_from_slice(last.as_bytes());
    k
}

/// The prefix of the open deployments of a certificate, of one customer
/// if given.
pub(crate) fn open_prefix(fingerprint: &str, customer_id: Option<&str>) -> Vec<u8> {
    let mut k = prefix(OPEN_CERTIFICATE, fingerprint);
    if let Some(c) = customer_id {
        k.extend_from_slice(c.as_bytes());
        k.push(0);
    }
    k
}

/// The deployment id at the end of an open key, after `prefix` (from
/// [`open_prefix`]; without a customer, the customer part is skipped, up
/// to its 0x00: customer ids contain none).
pub(crate) fn open_id(prefix: &[u8], key: &[u8], with_customer: bool) -> Option<String> {
    let rest = key.strip_prefix(prefix)?;
    let rest = if with_customer {
        rest
    } else {
        let at = rest.iter().position(|&b| b == 0)?;
        &rest[at + 1..]
    };
    String::from_utf8(rest.get(8..)?.to_vec()).ok()
}

/// The key that indexes `d` while an order may act on it.
pub(crate) fn open_key(d: &Deployment) -> Vec<u8> {
    let mut k = open_prefix(&d.certificate.fingerprint, Some(&d.customer_id));
    k.extend_from_slice(&time(d.admitted_at));
    k.extend_from_slice(d.deployment_id.as_bytes());
    k
}

/// The keys that lead a model, evaluator or customer order to `d`'s
/// certificate.
pub(crate) fn certificate_keys(d: &Deployment) -> [Vec<u8>; 3] {
    let fp = &d.certificate.fingerprint;
    [
        keyed(MODEL_CERTIFICATE, &d.model_digest, fp),
        keyed(EVALUATOR_CERTIFICATE, &d.certificate.evaluator, fp),
        keyed(CUSTOMER_CERTIFICATE, &d.customer_id, fp),
    ]
}

fn time(at: UnixMillis) -> [u8; 8] {
    u64::try_from(at).unwrap_or(0).to_be_bytes()
}

/// `tag subject 0x00`: every key about one subject starts with it.
pub(crate) fn prefix(tag: u8, subject: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(subject.len() + 26);
    k.push(tag);
    k.extend_from_slice(subject.as_bytes());
    k.push(0);
    k
}

/// `prefix` then a time: the bound of a range scan up to `at`.
pub(crate) fn prefix_at(tag: u8, subject: &str, at: UnixMillis) -> Vec<u8> {
    let mut k = prefix(tag, subject);
    k.extend_from_slice(&time(at));
    k
}

pub(crate) fn admitted(tag: u8, subject: &str, at: UnixMillis, deployment_id: &str) -> Vec<u8> {
    let mut k = prefix_at(tag, subject, at);
    k.extend_from_slice(deployment_id.as_bytes());
    k
}

pub(crate) fn endpoint(endpoint: &str, at: UnixMillis, index: u64) -> Vec<u8> {
    let mut k = prefix_at(ENDPOINT, endpoint, at);
    k.extend_from_slice(&index.to_be_bytes());
    k
}

pub(crate) fn version(customer_id: &str, version: u64) -> Vec<u8> {
    let mut k = prefix(VERSION, customer_id);
    k.extend_from_slice(&version.to_be_bytes());
    k
}

pub(crate) fn request(index: u64) -> Vec<u8> {
    let mut k = vec![REQUEST];
    k.extend_from_slice(&index.to_be_bytes());
    k
}

/// The value of an `admitted` key: the deployment's final end, if known.
pub(crate) fn ended_at_value(at: Option<UnixMillis>) -> Vec<u8> {
    at.map(|at| time(at).to_vec()).unwrap_or_default()
}

/// Reads back [`ended_at_value`]; `None` for an empty (or unknown) value.
pub(crate) fn ended_at(value: &[u8]) -> Option<UnixMillis> {
    let raw: [u8; 8] = value.try_into().ok()?;
    UnixMillis::try_from(u64::from_be_bytes(raw)).ok()
}

/// The deployment id at the end of an `admitted` key under `prefix`.
pub(crate) fn admitted_id(prefix: &[u8], key: &[u8]) -> Option<String> {
    key.strip_prefix(prefix)
        .and_then(|rest| rest.get(8..))
        .and_then(|id| std::str::from_utf8(id).ok())
        .map(str::to_string)
}

/// The (time, index) of an `endpoint` key under `prefix`.
pub(crate) fn endpoint_parts(prefix: &[u8], key: &[u8]) -> Option<(UnixMillis, u64)> {
    let rest = key.strip_prefix(prefix)?;
    let at = u64::from_be_bytes(rest.get(..8)?.try_into().ok()?);
    let index = u64::from_be_bytes(rest.get(8..16)?.try_into().ok()?);
    Some((UnixMillis::try_from(at).ok()?, index))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_by_time_within_a_subject_and_parse_back() {
        let a = admitted(MODEL, "sha256:aa", 5, "d-2");
        let b = admitted(MODEL, "sha256:aa", 300, "d-1");
        let other = admitted(MODEL, "sha256:aab", 1, "d-0");
        assert!(a < b);
        assert!(!other.starts_with(&prefix(MODEL, "sha256:aa")));
        assert_eq!(
            admitted_id(&prefix(MODEL, "sha256:aa"), &b).as_deref(),
            Some("d-1")
        );
        assert_eq!(
            ended_at(&ended_at_value(Some(1_700_000_000_123))),
            Some(1_700_000_000_123)
        );
        assert_eq!(ended_at(&ended_at_value(None)), None);
        let e = endpoint("10.0.0.1:443", 1_000, 42);
        assert_eq!(
            endpoint_parts(&prefix(ENDPOINT, "10.0.0.1:443"), &e),
            Some((1_000, 42))
        );
    }
}
