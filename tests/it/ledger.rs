//! The tamper-evident ledger end to end, checked as an outsider would:
//! trusting only the ledger's verifier key, recomputing hashes from served
//! entries, verifying every proof against a signed checkpoint. Also: what
//! the entries say (and never say), restarts, start-up refusal of a stored
//! ledger that was edited or rolled back, and `warden ledger verify`
//! catching a rolled-back and a forked log through the real binary.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{write, TestEnv, TestServer};
use sha2::{Digest as _, Sha256};
use tonic::transport::Channel;
use tonic::Code;
use warden::domain::reason::ReasonCode;
use warden::ledger::checkpoint::Checkpoint;
use warden::ledger::entry::{CustomerRef, Entry, Event};
use warden::ledger::tree::{check_record, check_tree, leaf_hash, Hash, MemoryTree};
use warden::proto;
use warden::proto::ledger_client::LedgerClient;

// ---------------------------------------------------------------------------
// Helpers

fn spiffe(role: &str) -> String {
    format!("spiffe://{}/{role}/test", common::TRUST_DOMAIN)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn millis(ts: &prost_types::Timestamp) -> i64 {
    ts.seconds * 1000 + i64::from(ts.nanos) / 1_000_000
}

fn hash(bytes: &[u8]) -> Hash {
    bytes.try_into().unwrap()
}

fn hashes(v: &[Vec<u8>]) -> Vec<Hash> {
    v.iter().map(|h| hash(h)).collect()
}

/// RFC 6962 Merkle tree hash, written here from the RFC so the server's
/// roots are checked against an implementation that shares nothing with it.
fn rfc6962_root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => Sha256::digest(b"").into(),
        1 => leaves[0],
        n => {
            let mut k = 1;
            while k * 2 < n {
                k *= 2;
            }
            let mut h = Sha256::new();
            h.update([1u8]);
            h.update(rfc6962_root(&leaves[..k]));
            h.update(rfc6962_root(&leaves[k..]));
            h.finalize().into()
        }
    }
}

fn rfc6962_leaf(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

async fn ledger(env: &TestEnv, server: &TestServer) -> LedgerClient<Channel> {
    LedgerClient::new(env.channel(server, "auditor").await)
}

/// A checkpoint note as an outsider holds it: opened with the verifier key.
#[derive(Debug, Clone)]
struct Signed {
    cp: Checkpoint,
    note: String,
}

fn open(env: &TestEnv, note: &str) -> Signed {
    Signed {
        cp: Checkpoint::open(note, &env.ledger).unwrap(),
        note: note.to_string(),
    }
}

/// The latest signed checkpoint; the response's size and root must be the
/// ones the signature covers.
async fn latest(env: &TestEnv, log: &mut LedgerClient<Channel>) -> Signed {
    let r = log
        .get_checkpoint(proto::GetCheckpointRequest { first_size: 0 })
        .await
        .unwrap()
        .into_inner();
    let s = open(env, &r.checkpoint);
    assert_eq!(r.size, s.cp.size);
    assert_eq!(r.root_hash, s.cp.root.to_vec());
    assert!(r.consistency_proof.is_empty());
    assert_eq!(s.cp.origin, env.ledger.name());
    s
}

async fn size(env: &TestEnv, log: &mut LedgerClient<Channel>) -> u64 {
    latest(env, log).await.cp.size
}

/// All entries of the latest signed tree, as served.
async fn all_entries(env: &TestEnv, log: &mut LedgerClient<Channel>) -> Vec<Vec<u8>> {
    let n = size(env, log).await;
    if n == 0 {
        return Vec::new();
    }
    let r = log
        .get_entries(proto::GetEntriesRequest {
            start: 0,
            count: u32::try_from(n).unwrap(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.entries.len() as u64, n);
    r.entries
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            assert_eq!(e.index, i as u64);
            e.data
        })
        .collect()
}

async fn entry_at(log: &mut LedgerClient<Channel>, index: u64) -> Entry {
    let mut r = log
        .get_entries(proto::GetEntriesRequest {
            start: index,
            count: 1,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.entries.len(), 1);
    let e = r.entries.pop().unwrap();
    assert_eq!(e.index, index);
    let entry = Entry::from_bytes(&e.data).unwrap();
    // Entries are deterministic: re-encoding gives the hashed bytes.
    assert_eq!(entry.to_bytes(), e.data);
    entry
}

/// Asserts the log grew by exactly one entry from `before` and returns it.
async fn appended_one(env: &TestEnv, log: &mut LedgerClient<Channel>, before: u64) -> Entry {
    assert_eq!(
        size(env, log).await,
        before + 1,
        "expected exactly one new entry"
    );
    entry_at(log, before).await
}

fn assert_customer_ref(r: &CustomerRef, id: &str, version: u64) {
    assert_eq!(r.customer_id, id);
    assert_eq!(r.version, version);
    let hex = r.commitment.strip_prefix("sha256:").unwrap();
    assert_eq!(hex.len(), 64, "{}", r.commitment);
    assert!(hex
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
}

async fn register_as(
    env: &TestEnv,
    server: &TestServer,
    id: &str,
    legal_name: &str,
    status: proto::CustomerStatus,
) -> proto::Customer {
    env.customers(server)
        .await
        .register_customer(common::organisation_named(id, legal_name, status))
        .await
        .unwrap()
        .into_inner()
}

async fn set_status(
    env: &TestEnv,
    server: &TestServer,
    id: &str,
    status: proto::CustomerStatus,
) -> proto::Customer {
    env.customers(server)
        .await
        .set_customer_status(proto::SetCustomerStatusRequest {
            customer_id: id.into(),
            status: status as i32,
            reason: "documents checked".into(),
        })
        .await
        .unwrap()
        .into_inner()
}

/// `n` writes (customer registrations), each one ledger entry.
async fn writes(env: &TestEnv, server: &TestServer, prefix: &str, n: usize) {
    for i in 0..n {
        env.register(
            server,
            &format!("{prefix}-{i}"),
            proto::CustomerStatus::Pending,
        )
        .await;
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap()
}

/// A stored ledger value: crc32 (little endian) of the bytes, then the bytes.
fn framed(bytes: &[u8]) -> Vec<u8> {
    let mut v = crc32fast::hash(bytes).to_le_bytes().to_vec();
    v.extend_from_slice(bytes);
    v
}

/// Every stored ledger entry, in order. Entries are stored one value per
/// batch, keyed by the index of the batch's first entry (big endian); the
/// value is framed, and holds each entry as a 4-byte little-endian length
/// and its bytes.
fn stored_entries(tree: &sled::Tree) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for item in tree.iter() {
        let (k, v) = item.unwrap();
        assert_eq!(
            u64::from_be_bytes(k.as_ref().try_into().unwrap()),
            out.len() as u64
        );
        let mut rest = &v[4..];
        while !rest.is_empty() {
            let len = u32::from_le_bytes(rest[..4].try_into().unwrap()) as usize;
            out.push(rest[4..4 + len].to_vec());
            rest = &rest[4 + len..];
        }
    }
    out
}

/// Rewrites the stored entries as one batch, checksum and all, as a forger
/// with write access to the data directory would.
fn store_entries(tree: &sled::Tree, entries: &[Vec<u8>]) {
    let mut batch = Vec::new();
    for e in entries {
        batch.extend_from_slice(&u32::try_from(e.len()).unwrap().to_le_bytes());
        batch.extend_from_slice(e);
    }
    tree.clear().unwrap();
    tree.insert(0u64.to_be_bytes(), framed(&batch)).unwrap();
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

// ---------------------------------------------------------------------------
// 1. What each write appends

#[tokio::test]
async fn every_write_appends_exactly_one_entry_with_kind_principal_time_request_and_index() {
    let env = TestEnv::new();
    let server = env.start().await;
    let mut log = ledger(&env, &server).await;
    let kyc = spiffe("kyc");
    let scheduler = spiffe("scheduler");
    assert_eq!(size(&env, &mut log).await, 0);

    // RegisterCustomer → customer_registered.
    let t0 = now_ms();
    let c1 = register_as(
        &env,
        &server,
        "acme",
        "Acme Ltd",
        proto::CustomerStatus::Pending,
    )
    .await;
    let e = appended_one(&env, &mut log, 0).await;
    assert_eq!(e.v, 1);
    assert_eq!(e.principal, kyc);
    assert_eq!(e.request_id, "");
    assert_eq!(e.at, millis(c1.updated_at.as_ref().unwrap()));
    assert!(e.at >= t0 && e.at <= now_ms());
    let Event::CustomerRegistered {
        customer, status, ..
    } = e.event
    else {
        panic!("expected customer_registered, got {:?}", e.event)
    };
    assert_customer_ref(&customer, "acme", 1);
    assert_eq!(status, "PENDING");

    // SetCustomerStatus → customer_status_changed.
    let t0 = now_ms();
    let c2 = set_status(&env, &server, "acme", proto::CustomerStatus::Verified).await;
    let e = appended_one(&env, &mut log, 1).await;
    assert_eq!(e.principal, kyc);
    assert_eq!(e.request_id, "");
    assert_eq!(e.at, millis(c2.updated_at.as_ref().unwrap()));
    assert!(e.at >= t0 && e.at <= now_ms());
    let Event::CustomerStatusChanged { customer, status } = e.event else {
        panic!("expected customer_status_changed, got {:?}", e.event)
    };
    assert_customer_ref(&customer, "acme", 2);
    assert_eq!(status, "VERIFIED");

    // Admit, allowed → admission.
    let leaf = env.leaf();
    let req = env.admit_request("acme", &env.chain(&leaf));
    let t0 = now_ms();
    let a = env.admit(&server, req.clone()).await;
    let t1 = now_ms();
    assert_eq!(a.decision, proto::Decision::Allow as i32, "{:?}", a.reasons);
    assert_eq!(a.ledger_index, 2);
    let e = appended_one(&env, &mut log, 2).await;
    assert_eq!(e.principal, scheduler);
    assert_eq!(e.request_id, req.request_id);
    assert!(e.at >= t0 && e.at <= t1);
    let Event::Admission {
        decision_id,
        allowed,
        reasons,
        customer_id,
        customer,
        model_digest,
        certificate,
        deployment_id,
        lease_expires_at,
        workload,
    } = e.event
    else {
        panic!("expected admission, got {:?}", e.event)
    };
    assert_eq!(decision_id, a.decision_id);
    assert!(allowed);
    assert!(reasons.is_empty());
    assert_eq!(customer_id, "acme");
    assert_customer_ref(customer.as_ref().unwrap(), "acme", 2);
    assert_eq!(model_digest, req.model_digest);
    assert!(certificate.is_some());
    assert_eq!(deployment_id.as_deref(), Some(a.deployment_id.as_str()));
    assert_eq!(
        lease_expires_at,
        Some(millis(a.lease_expires_at.as_ref().unwrap()))
    );
    assert_eq!(workload.region, "eu-west");
    assert_eq!(workload.accelerator_count, 8);

    // The same request again: the first answer, nothing appended.
    let again = env.admit(&server, req.clone()).await;
    assert_eq!(again, a);
    assert_eq!(size(&env, &mut log).await, 3);

    // Admit, denied → admission too.
    let deny_req = env.admit_request("nobody-here", &env.chain(&leaf));
    let t0 = now_ms();
    let d = env.admit(&server, deny_req.clone()).await;
    let t1 = now_ms();
    assert_eq!(d.decision, proto::Decision::Deny as i32);
    assert_eq!(d.ledger_index, 3);
    let e = appended_one(&env, &mut log, 3).await;
    assert_eq!(e.principal, scheduler);
    assert_eq!(e.request_id, deny_req.request_id);
    assert!(e.at >= t0 && e.at <= t1);
    let Event::Admission {
        decision_id,
        allowed,
        reasons,
        customer_id,
        customer,
        deployment_id,
        lease_expires_at,
        ..
    } = e.event
    else {
        panic!("expected admission, got {:?}", e.event)
    };
    assert_eq!(decision_id, d.decision_id);
    assert!(!allowed);
    assert_eq!(reasons, vec![ReasonCode::CustomerUnknown]);
    assert_eq!(customer_id, "nobody-here");
    assert!(customer.is_none());
    assert!(deployment_id.is_none());
    assert!(lease_expires_at.is_none());

    // Renew, allowed → renewal.
    let mut adm = env.admission(&server).await;
    let t0 = now_ms();
    let r = adm
        .renew(proto::RenewRequest {
            deployment_id: a.deployment_id.clone(),
            endpoints: vec!["10.0.0.2:8000".into()],
        })
        .await
        .unwrap()
        .into_inner();
    let t1 = now_ms();
    assert_eq!(r.decision, proto::Decision::Allow as i32, "{:?}", r.reasons);
    assert_eq!(r.ledger_index, 4);
    let e = appended_one(&env, &mut log, 4).await;
    assert_eq!(e.principal, scheduler);
    assert_eq!(e.request_id, "");
    assert!(e.at >= t0 && e.at <= t1);
    let Event::Renewal {
        decision_id,
        deployment_id,
        allowed,
        reasons,
        customer,
        lease_expires_at,
        endpoints,
    } = e.event
    else {
        panic!("expected renewal, got {:?}", e.event)
    };
    assert!(decision_id.starts_with("dec-"));
    assert_ne!(decision_id, a.decision_id);
    assert_eq!(deployment_id, a.deployment_id);
    assert!(allowed);
    assert!(reasons.is_empty());
    assert_customer_ref(customer.as_ref().unwrap(), "acme", 2);
    assert_eq!(
        lease_expires_at,
        Some(millis(r.lease_expires_at.as_ref().unwrap()))
    );
    assert_eq!(endpoints, vec!["10.0.0.2:8000".to_string()]);

    // Release → release.
    let t0 = now_ms();
    adm.release(proto::ReleaseRequest {
        deployment_id: a.deployment_id.clone(),
    })
    .await
    .unwrap();
    let t1 = now_ms();
    let e = appended_one(&env, &mut log, 5).await;
    assert_eq!(e.principal, scheduler);
    assert!(e.at >= t0 && e.at <= t1);
    let Event::Release {
        decision_id,
        deployment_id,
    } = e.event
    else {
        panic!("expected release, got {:?}", e.event)
    };
    assert!(decision_id.starts_with("dec-"));
    assert_eq!(deployment_id, a.deployment_id);

    // A second release of a released deployment is a no-op: nothing appended.
    adm.release(proto::ReleaseRequest {
        deployment_id: a.deployment_id.clone(),
    })
    .await
    .unwrap();
    assert_eq!(size(&env, &mut log).await, 6);

    // Renew, denied (released) → renewal.
    let t0 = now_ms();
    let r = adm
        .renew(proto::RenewRequest {
            deployment_id: a.deployment_id.clone(),
            endpoints: vec![],
        })
        .await
        .unwrap()
        .into_inner();
    let t1 = now_ms();
    assert_eq!(r.decision, proto::Decision::Deny as i32);
    assert_eq!(r.ledger_index, 6);
    let e = appended_one(&env, &mut log, 6).await;
    assert_eq!(e.principal, scheduler);
    assert!(e.at >= t0 && e.at <= t1);
    let Event::Renewal {
        deployment_id,
        allowed,
        reasons,
        lease_expires_at,
        ..
    } = e.event
    else {
        panic!("expected renewal, got {:?}", e.event)
    };
    assert_eq!(deployment_id, a.deployment_id);
    assert!(!allowed);
    assert_eq!(reasons, vec![ReasonCode::DeploymentNotActive]);
    assert!(lease_expires_at.is_none());

    // Refused input appends nothing.
    let mut bad = env.admit_request("acme", &env.chain(&leaf));
    bad.request_id = "not a valid id!".into();
    let s = env.admission(&server).await.admit(bad).await.unwrap_err();
    assert_eq!(s.code(), Code::InvalidArgument);
    let s = env
        .customers(&server)
        .await
        .register_customer(proto::RegisterCustomerRequest {
            country: "Germany".into(),
            status: 0,
            ..common::organisation_named("beta", "Beta", proto::CustomerStatus::Pending)
        })
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::InvalidArgument);
    let s = env
        .customers(&server)
        .await
        .set_customer_status(proto::SetCustomerStatusRequest {
            customer_id: "acme".into(),
            status: proto::CustomerStatus::Unspecified as i32,
            reason: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::InvalidArgument);
    let s = adm
        .renew(proto::RenewRequest {
            deployment_id: "not a valid id!".into(),
            endpoints: vec![],
        })
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::InvalidArgument);
    assert_eq!(size(&env, &mut log).await, 7);
    assert_eq!(all_entries(&env, &mut log).await.len(), 7);
    server.stop().await;
}

// ---------------------------------------------------------------------------
// 2. No personal data

#[tokio::test]
async fn ledger_names_customers_by_id_version_and_salted_commitment_never_by_name() {
    let env = TestEnv::new();
    let server = env.start().await;
    let mut log = ledger(&env, &server).await;
    let name = "Zanzibar Quokka Holdings";
    register_as(&env, &server, "zq-1", name, proto::CustomerStatus::Pending).await;
    set_status(&env, &server, "zq-1", proto::CustomerStatus::Verified).await;
    let leaf = env.leaf();
    let a = env.admit_chain(&server, "zq-1", &env.chain(&leaf)).await;
    assert_eq!(a.decision, proto::Decision::Allow as i32, "{:?}", a.reasons);

    let entries = all_entries(&env, &mut log).await;
    assert_eq!(entries.len(), 3);
    for (i, bytes) in entries.iter().enumerate() {
        let text = String::from_utf8(bytes.clone()).unwrap();
        for needle in [name, "Zanzibar", "Quokka", "zanzibar", "quokka"] {
            assert!(!text.contains(needle), "entry {i} holds {needle:?}: {text}");
        }
    }
    let refs: Vec<CustomerRef> = entries
        .iter()
        .map(|b| match Entry::from_bytes(b).unwrap().event {
            Event::CustomerRegistered { customer, .. }
            | Event::CustomerStatusChanged { customer, .. } => customer,
            Event::Admission { customer, .. } => customer.unwrap(),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_customer_ref(&refs[0], "zq-1", 1);
    assert_customer_ref(&refs[1], "zq-1", 2);
    assert_customer_ref(&refs[2], "zq-1", 2);
    // Two versions, two commitments; admission cites the version it relied on.
    assert_ne!(refs[0].commitment, refs[1].commitment);
    assert_eq!(refs[2], refs[1]);
    server.stop().await;
}

// ---------------------------------------------------------------------------
// 3. Proofs

#[tokio::test]
async fn every_entry_and_every_checkpoint_is_provable_against_signed_roots() {
    let env = TestEnv::new();
    let server = env.start().await;
    let mut log = ledger(&env, &server).await;

    // Several writes of different kinds, keeping every checkpoint seen.
    let mut seen: Vec<Signed> = Vec::new();
    let kinds = ["a", "b", "c"];
    for k in kinds {
        env.register(&server, k, proto::CustomerStatus::Verified)
            .await;
        seen.push(latest(&env, &mut log).await);
    }
    let leaf = env.leaf();
    for k in kinds {
        let r = env.admit_chain(&server, k, &env.chain(&leaf)).await;
        assert_eq!(r.decision, proto::Decision::Allow as i32);
        seen.push(latest(&env, &mut log).await);
    }
    writes(&env, &server, "more", 4).await;
    let last = latest(&env, &mut log).await;
    let n = last.cp.size;
    assert_eq!(n, 10);
    let sizes: Vec<u64> = seen.iter().map(|s| s.cp.size).collect();
    assert_eq!(sizes, vec![1, 2, 3, 4, 5, 6]);

    // The signed root is the RFC 6962 root of the entries as served.
    let entries = all_entries(&env, &mut log).await;
    let leaves: Vec<Hash> = entries.iter().map(|d| rfc6962_leaf(d)).collect();
    for (d, l) in entries.iter().zip(&leaves) {
        assert_eq!(leaf_hash(d), *l);
    }
    assert_eq!(rfc6962_root(&leaves), last.cp.root);
    for s in &seen {
        assert_eq!(
            rfc6962_root(&leaves[..s.cp.size as usize]),
            s.cp.root,
            "root at {}",
            s.cp.size
        );
    }

    // Inclusion of every entry in the latest tree (tree_size 0 = latest).
    for i in 0..n {
        let p = log
            .get_inclusion_proof(proto::GetInclusionProofRequest {
                index: i,
                tree_size: 0,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(p.index, i);
        assert_eq!(p.tree_size, n);
        let cp = open(&env, &p.checkpoint).cp;
        assert_eq!(cp, last.cp);
        // Served exactly as hashed.
        assert_eq!(p.leaf_hash, leaves[i as usize].to_vec());
        let proof = hashes(&p.proof);
        check_record(&proof, n, cp.root, i, hash(&p.leaf_hash)).unwrap();
        // The proof binds the entry: another entry's hash does not verify.
        let other = leaves[((i + 1) % n) as usize];
        assert!(check_record(&proof, n, cp.root, i, other).is_err());
    }

    // Inclusion against each earlier signed size, checked against that
    // earlier checkpoint's root.
    for s in &seen {
        for i in 0..s.cp.size {
            let p = log
                .get_inclusion_proof(proto::GetInclusionProofRequest {
                    index: i,
                    tree_size: s.cp.size,
                })
                .await
                .unwrap()
                .into_inner();
            assert_eq!(p.tree_size, s.cp.size);
            assert_eq!(p.leaf_hash, leaves[i as usize].to_vec());
            check_record(
                &hashes(&p.proof),
                s.cp.size,
                s.cp.root,
                i,
                hash(&p.leaf_hash),
            )
            .unwrap();
        }
    }

    // Consistency from every checkpoint seen to the latest, and pairwise.
    let mut all = seen.clone();
    all.push(last.clone());
    for (a, old) in all.iter().enumerate() {
        for new in &all[a..] {
            let p = log
                .get_consistency_proof(proto::GetConsistencyProofRequest {
                    first_size: old.cp.size,
                    second_size: if new.cp.size == n { 0 } else { new.cp.size },
                })
                .await
                .unwrap()
                .into_inner();
            assert_eq!(p.first_size, old.cp.size);
            assert_eq!(p.second_size, new.cp.size);
            let proof = hashes(&p.proof);
            check_tree(&proof, new.cp.size, new.cp.root, old.cp.size, old.cp.root).unwrap();
            if old.cp.size < new.cp.size && !proof.is_empty() {
                // A wrong old root does not verify.
                assert!(
                    check_tree(&proof, new.cp.size, new.cp.root, old.cp.size, [0; 32]).is_err()
                );
            }
        }
        // The same proof with the checkpoint.
        let r = log
            .get_checkpoint(proto::GetCheckpointRequest {
                first_size: old.cp.size,
            })
            .await
            .unwrap()
            .into_inner();
        let cp = open(&env, &r.checkpoint).cp;
        assert_eq!(cp, last.cp);
        check_tree(
            &hashes(&r.consistency_proof),
            cp.size,
            cp.root,
            old.cp.size,
            old.cp.root,
        )
        .unwrap();
    }

    // From size 0 the proof is empty.
    let p = log
        .get_consistency_proof(proto::GetConsistencyProofRequest {
            first_size: 0,
            second_size: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((p.first_size, p.second_size), (0, n));
    assert!(p.proof.is_empty());
    check_tree(&[], n, last.cp.root, 0, rfc6962_root(&[])).unwrap();

    // Nothing beyond the signed size is served.
    let beyond = n + 1;
    let errs = [
        log.get_inclusion_proof(proto::GetInclusionProofRequest {
            index: 0,
            tree_size: beyond,
        })
        .await
        .unwrap_err(),
        log.get_inclusion_proof(proto::GetInclusionProofRequest {
            index: n,
            tree_size: 0,
        })
        .await
        .unwrap_err(),
        log.get_consistency_proof(proto::GetConsistencyProofRequest {
            first_size: 1,
            second_size: beyond,
        })
        .await
        .unwrap_err(),
        log.get_consistency_proof(proto::GetConsistencyProofRequest {
            first_size: beyond,
            second_size: 0,
        })
        .await
        .unwrap_err(),
        log.get_checkpoint(proto::GetCheckpointRequest { first_size: beyond })
            .await
            .unwrap_err(),
        log.get_entries(proto::GetEntriesRequest { start: n, count: 1 })
            .await
            .unwrap_err(),
    ];
    for s in errs {
        assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
    }
    // A page that runs past the end is cut at the signed size.
    let r = log
        .get_entries(proto::GetEntriesRequest {
            start: n - 2,
            count: 1000,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.entries.len(), 2);
    server.stop().await;
}

// ---------------------------------------------------------------------------
// 4. Restart

#[tokio::test]
async fn checkpoints_before_and_after_a_restart_are_consistent_and_the_size_survives() {
    let env = TestEnv::new();
    let server = env.start().await;
    writes(&env, &server, "before", 5).await;
    let mut log = ledger(&env, &server).await;
    let before = latest(&env, &mut log).await;
    let entries_before = all_entries(&env, &mut log).await;
    assert_eq!(before.cp.size, 5);
    server.stop().await;

    let server = env.start().await;
    let mut log = ledger(&env, &server).await;
    let after = latest(&env, &mut log).await;
    assert_eq!(after.cp, before.cp, "same size and root after restart");
    assert_eq!(all_entries(&env, &mut log).await, entries_before);

    writes(&env, &server, "after", 3).await;
    let grown = latest(&env, &mut log).await;
    assert_eq!(grown.cp.size, 8);
    let r = log
        .get_checkpoint(proto::GetCheckpointRequest {
            first_size: before.cp.size,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(open(&env, &r.checkpoint).cp, grown.cp);
    check_tree(
        &hashes(&r.consistency_proof),
        grown.cp.size,
        grown.cp.root,
        before.cp.size,
        before.cp.root,
    )
    .unwrap();
    // New entries continue the numbering.
    let e = entry_at(&mut log, 5).await;
    let Event::CustomerRegistered { customer, .. } = e.event else {
        panic!("{:?}", e.event)
    };
    assert_eq!(customer.customer_id, "after-0");
    server.stop().await;
}

// ---------------------------------------------------------------------------
// 5. Start-up refuses a stored ledger that was altered or rolled back

/// Makes a few writes, stops, edits the stored trees with `tamper`, and
/// returns the error `build_app` gives.
async fn start_after_tampering(tamper: impl FnOnce(&[sled::Tree])) -> String {
    let env = TestEnv::new();
    let server = env.start().await;
    writes(&env, &server, "t", 5).await;
    server.stop().await;
    {
        let db = sled::open(&env.config.data_dir).unwrap();
        let trees: Vec<sled::Tree> = ["ledger_entries", "ledger_hashes", "ledger_meta"]
            .iter()
            .map(|n| db.open_tree(n).unwrap())
            .collect();
        assert_eq!(stored_entries(&trees[0]).len(), 5);
        tamper(&trees);
        db.flush().unwrap();
    }
    match warden::server::build_app(&env.config).await {
        Ok(_) => panic!("warden started on a tampered ledger"),
        Err(e) => e.to_string(),
    }
}

#[tokio::test]
async fn start_up_refuses_an_edited_entry_even_with_a_fixed_up_checksum() {
    let err = start_after_tampering(|t| {
        let mut entries = stored_entries(&t[0]);
        let json = &mut entries[2];
        // Backdate the entry by flipping one digit of its time: the entry
        // still parses, and the checksum is fixed up to match.
        let at = find(json, b"\"at\":") + 8;
        json[at] = if json[at] == b'0' { b'1' } else { b'0' };
        Entry::from_bytes(json).unwrap();
        store_entries(&t[0], &entries);
    })
    .await;
    assert!(err.contains("ledger"), "{err}");
    assert!(err.contains("altered"), "{err}");
    assert!(
        !err.contains("checksum"),
        "the Merkle check must catch it: {err}"
    );
}

#[tokio::test]
async fn start_up_refuses_an_edited_entry_even_with_every_stored_hash_recomputed() {
    // The forger rewrites an entry and recomputes the whole tree; only the
    // signed checkpoint, which they cannot re-sign, still tells.
    let err = start_after_tampering(|t| {
        let mut entries = stored_entries(&t[0]);
        let json = String::from_utf8(entries[2].clone())
            .unwrap()
            .replace("\"status\":\"PENDING\"", "\"status\":\"VERIFIED\"");
        assert!(json.contains("VERIFIED"));
        entries[2] = json.into_bytes();
        store_entries(&t[0], &entries);
        let mut tree = MemoryTree::new();
        for e in &entries {
            tree.append_data(e).unwrap();
        }
        // Stored hashes are kept one value per batch, keyed by the stored
        // index of the batch's first hash; the forger rewrites them all as
        // one batch.
        let stored: usize = t[1].iter().map(|i| i.unwrap().1.len() / 32).sum();
        assert_eq!(tree.stored_hashes().len(), stored);
        t[1].clear().unwrap();
        t[1].insert(0u64.to_be_bytes(), tree.stored_hashes().concat())
            .unwrap();
    })
    .await;
    assert!(err.contains("root of the signed checkpoint"), "{err}");
    assert!(err.contains("altered"), "{err}");
}

#[tokio::test]
async fn start_up_refuses_an_edited_stored_hash() {
    let err = start_after_tampering(|t| {
        // Stored hash 2 is the level-1 node over entries 0 and 1. It lives
        // in the value of the batch whose first stored index is at or below 2.
        let (key, value) = t[1]
            .range(..=2u64.to_be_bytes())
            .next_back()
            .unwrap()
            .unwrap();
        let start = u64::from_be_bytes(key.as_ref().try_into().unwrap());
        let mut blob = value.to_vec();
        let offset = usize::try_from(2 - start).unwrap() * 32;
        assert!(blob.len() >= offset + 32);
        blob[offset + 7] ^= 0x01;
        t[1].insert(key, blob).unwrap();
    })
    .await;
    assert!(err.contains("stored hash 2"), "{err}");
    assert!(err.contains("altered"), "{err}");
}

#[tokio::test]
async fn start_up_refuses_a_log_rolled_back_behind_its_checkpoint() {
    let err = start_after_tampering(|t| {
        let mut entries = stored_entries(&t[0]);
        entries.pop().unwrap();
        store_entries(&t[0], &entries);
        t[2].insert("size", &4u64.to_be_bytes()).unwrap();
    })
    .await;
    assert!(err.contains("rolled-back"), "{err}");
    assert!(err.contains("4 entries"), "{err}");
    assert!(err.contains("covers 5"), "{err}");
}

// ---------------------------------------------------------------------------
// 6. `warden ledger verify` through the real binary

struct Cli {
    cert: PathBuf,
    key: PathBuf,
    ca: PathBuf,
    vkey: String,
    state: PathBuf,
}

impl Cli {
    fn new(env: &TestEnv) -> Self {
        let auditor = &env.clients["auditor"];
        let dir = env.path().join("cli");
        let cli = Self {
            cert: dir.join("auditor.pem"),
            key: dir.join("auditor.key"),
            ca: dir.join("ca.pem"),
            vkey: env.ledger.to_text(),
            state: dir.join("ledger.checkpoint"),
        };
        write(&cli.cert, &auditor.cert_pem);
        write(&cli.key, &auditor.key_pem);
        write(&cli.ca, env.mtls.cert_pem());
        cli
    }

    /// `warden ledger verify` against `server`, run on the blocking pool so
    /// the in-process server keeps answering. (These tests stay on the
    /// current-thread runtime: `TestServer::stop` returns before the
    /// sequencer task has dropped its sled handle, and on a multi-thread
    /// runtime an immediate restart can find the directory still locked.)
    async fn verify(&self, server: &TestServer, entries: &[u64]) -> Output {
        let mut args: Vec<String> = vec![
            "--addr".into(),
            format!("https://localhost:{}", server.addr.port()),
            "--cert".into(),
            self.cert.display().to_string(),
            "--key".into(),
            self.key.display().to_string(),
            "--ca".into(),
            self.ca.display().to_string(),
            "ledger".into(),
            "verify".into(),
            "--vkey".into(),
            self.vkey.clone(),
            "--state".into(),
            self.state.display().to_string(),
        ];
        for e in entries {
            args.push("--entry".into());
            args.push(e.to_string());
        }
        tokio::task::spawn_blocking(move || common::warden_command().args(&args).output().unwrap())
            .await
            .unwrap()
    }

    fn saved(&self) -> String {
        std::fs::read_to_string(&self.state).unwrap()
    }
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[tokio::test]
async fn ledger_verify_accepts_a_growing_log_and_checks_inclusion() {
    let env = TestEnv::new();
    let cli = Cli::new(&env);
    let server = env.start().await;
    let mut log = ledger(&env, &server).await;
    writes(&env, &server, "g", 4).await;

    let o = cli.verify(&server, &[0, 3]).await;
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let s = out(&o);
    assert!(s.contains("first checkpoint seen: size 4"), "{s}");
    assert!(s.contains("included: entry 0 at size 4"), "{s}");
    assert!(s.contains("included: entry 3 at size 4"), "{s}");
    let first = latest(&env, &mut log).await;
    assert_eq!(cli.saved(), first.note);

    writes(&env, &server, "h", 3).await;
    let o = cli.verify(&server, &[0, 3]).await;
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let s = out(&o);
    assert!(s.contains("consistent: size 4 -> 7"), "{s}");
    assert!(s.contains("included: entry 0 at size 7"), "{s}");
    assert!(s.contains("included: entry 3 at size 7"), "{s}");
    let second = latest(&env, &mut log).await;
    assert_eq!(cli.saved(), second.note);
    server.stop().await;
}

#[tokio::test]
async fn ledger_verify_detects_a_rolled_back_log_and_prints_both_checkpoints() {
    let env = TestEnv::new();
    let cli = Cli::new(&env);
    let data = env.config.data_dir.clone();
    let backup = env.path().join("data-backup");

    let server = env.start().await;
    writes(&env, &server, "old", 3).await;
    server.stop().await;
    copy_dir(&data, &backup);

    let server = env.start().await;
    writes(&env, &server, "new", 3).await;
    let o = cli.verify(&server, &[]).await;
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let seen = open(&env, &cli.saved());
    assert_eq!(seen.cp.size, 6);
    server.stop().await;

    // The operator restores the older backup: internally consistent, so
    // warden starts on it, but it is behind what was signed and seen.
    std::fs::remove_dir_all(&data).unwrap();
    copy_dir(&backup, &data);
    let server = env.start().await;
    let mut log = ledger(&env, &server).await;
    let served = latest(&env, &mut log).await;
    assert_eq!(served.cp.size, 3);

    let o = cli.verify(&server, &[]).await;
    assert_eq!(o.status.code(), Some(4), "{o:?}");
    let e = err(&o);
    assert!(e.contains("LEDGER INCONSISTENT"), "{e}");
    assert!(e.contains("rolled back"), "{e}");
    assert!(e.contains(&seen.note), "old checkpoint missing: {e}");
    assert!(e.contains(&served.note), "new checkpoint missing: {e}");
    // The evidence is kept: the state still holds the checkpoint seen before.
    assert_eq!(cli.saved(), seen.note);
    server.stop().await;
}

#[tokio::test]
async fn ledger_verify_detects_a_forked_log_and_prints_both_checkpoints() {
    let env = TestEnv::new();
    let cli = Cli::new(&env);

    let server = env.start().await;
    writes(&env, &server, "common", 3).await;
    server.stop().await;
    let fork_dir = env.path().join("data-fork");
    copy_dir(&env.config.data_dir, &fork_dir);
    let mut fork_config = env.config.clone();
    fork_config.data_dir = fork_dir;

    // The same key signs two histories that share the first 3 entries.
    let original = env.start().await;
    let fork = TestServer::start(&fork_config).await;
    writes(&env, &original, "a", 2).await;
    writes(&env, &fork, "b", 3).await;
    let mut log = ledger(&env, &original).await;
    let original_cp = latest(&env, &mut log).await;
    let mut fork_log = ledger(&env, &fork).await;
    let fork_cp = latest(&env, &mut fork_log).await;
    assert_eq!(original_cp.cp.size, 5);
    assert_eq!(fork_cp.cp.size, 6);

    let o = cli.verify(&original, &[]).await;
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert_eq!(cli.saved(), original_cp.note);

    let o = cli.verify(&fork, &[]).await;
    assert_eq!(o.status.code(), Some(4), "{o:?}");
    let e = err(&o);
    assert!(e.contains("LEDGER INCONSISTENT"), "{e}");
    assert!(e.contains("not an extension"), "{e}");
    assert!(e.contains(&original_cp.note), "old checkpoint missing: {e}");
    assert!(e.contains(&fork_cp.note), "fork checkpoint missing: {e}");
    assert_eq!(cli.saved(), original_cp.note);

    // A fork of the same size is caught too (roots differ at one size).
    writes(&env, &original, "a2", 1).await;
    let o = cli.verify(&original, &[]).await;
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let o = cli.verify(&fork, &[]).await;
    assert_eq!(o.status.code(), Some(4), "{o:?}");
    original.stop().await;
    fork.stop().await;
}
