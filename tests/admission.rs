//! Admission end to end: every deny reason, idempotent retries, renewals,
//! releases, restarts and scheduler isolation, against a real server.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration as StdDuration;

use common::{connect, write, TestEnv, TestServer};
use time::{Duration, OffsetDateTime};
use tonic::transport::Channel;
use tonic::Code;
use warden::pki::dev::{sample_claims, CrlSpec, LeafSpec, TestLeaf};
use warden::pki::Field;
use warden::proto;
use warden::proto::admission_client::AdmissionClient;
use warden::proto::ReasonCode as Rc;

// ---------------------------------------------------------------------------
// Helpers

fn codes(reasons: &[proto::Reason]) -> Vec<Rc> {
    reasons
        .iter()
        .map(|r| Rc::try_from(r.code).unwrap())
        .collect()
}

fn sorted(mut v: Vec<Rc>) -> Vec<Rc> {
    v.sort_by_key(|c| *c as i32);
    v
}

async fn admit(
    env: &TestEnv,
    server: &TestServer,
    req: proto::AdmitRequest,
) -> proto::AdmitResponse {
    env.admission(server)
        .await
        .admit(req)
        .await
        .unwrap()
        .into_inner()
}

/// Asserts a DENY with exactly `expected` (as a set), a decision id, and no
/// deployment or licence.
fn assert_denied(r: &proto::AdmitResponse, expected: &[Rc]) {
    assert_eq!(
        r.decision,
        proto::Decision::Deny as i32,
        "expected DENY, got {r:?}"
    );
    assert_eq!(
        sorted(codes(&r.reasons)),
        sorted(expected.to_vec()),
        "{:?}",
        r.reasons
    );
    assert!(r.decision_id.starts_with("dec-"), "{:?}", r.decision_id);
    assert!(r.deployment_id.is_empty(), "{:?}", r.deployment_id);
    assert!(r.licence.is_empty());
    assert!(r.lease_expires_at.is_none());
}

fn assert_allowed(r: &proto::AdmitResponse) {
    assert_eq!(
        r.decision,
        proto::Decision::Allow as i32,
        "expected ALLOW: {:?}",
        r.reasons
    );
    assert!(r.reasons.is_empty());
    assert!(r.deployment_id.starts_with("dep-"), "{:?}", r.deployment_id);
    assert!(r.decision_id.starts_with("dec-"), "{:?}", r.decision_id);
    assert!(!r.licence.is_empty());
}

/// The message of the only reason with `code`.
fn message_of(r: &proto::AdmitResponse, code: Rc) -> String {
    let m: Vec<_> = r.reasons.iter().filter(|x| x.code == code as i32).collect();
    assert_eq!(m.len(), 1, "{:?}", r.reasons);
    m[0].message.clone()
}

/// Writes a CRL into the environment's trust directory (before `start`).
fn put_crl_file(env: &TestEnv, name: &str, der: &[u8]) {
    write(&env.config.trust.dir.join("crls").join(name), der);
}

/// A verified customer and a server, for tests that start from there.
async fn started_with_verified(env: &TestEnv, customer: &str) -> TestServer {
    let server = env.start().await;
    env.register(&server, customer, proto::CustomerStatus::Verified)
        .await;
    server
}

/// Admits the sample leaf for a verified customer and returns the answer.
async fn admitted(
    env: &TestEnv,
    server: &TestServer,
    customer: &str,
) -> (TestLeaf, proto::AdmitResponse) {
    let leaf = env.leaf();
    let r = admit(env, server, env.admit_request(customer, &env.chain(&leaf))).await;
    assert_allowed(&r);
    (leaf, r)
}

async fn role_admission(
    env: &TestEnv,
    server: &TestServer,
    role: &str,
) -> AdmissionClient<Channel> {
    AdmissionClient::new(env.channel(server, role).await)
}

async fn get(client: &mut AdmissionClient<Channel>, id: &str) -> proto::Deployment {
    client
        .get_deployment(proto::GetDeploymentRequest {
            deployment_id: id.into(),
        })
        .await
        .unwrap()
        .into_inner()
}

async fn list_all(client: &mut AdmissionClient<Channel>) -> Vec<proto::Deployment> {
    client
        .list_deployments(proto::ListDeploymentsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .deployments
}

async fn renew(client: &mut AdmissionClient<Channel>, id: &str) -> proto::RenewResponse {
    client
        .renew(proto::RenewRequest {
            deployment_id: id.into(),
            endpoints: vec![],
        })
        .await
        .unwrap()
        .into_inner()
}

async fn release(client: &mut AdmissionClient<Channel>, id: &str) -> proto::Deployment {
    client
        .release(proto::ReleaseRequest {
            deployment_id: id.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .deployment
        .unwrap()
}

async fn set_status(env: &TestEnv, server: &TestServer, id: &str, status: proto::CustomerStatus) {
    let c = env
        .customers(server)
        .await
        .set_customer_status(proto::SetCustomerStatusRequest {
            customer_id: id.into(),
            status: status as i32,
            reason: "test".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(c.status, status as i32);
}

fn millis(ts: &prost_types::Timestamp) -> i64 {
    ts.seconds * 1000 + i64::from(ts.nanos) / 1_000_000
}

/// The `expires` line the licence carries for a lease ending at `ts`.
fn expires_line(ts: &prost_types::Timestamp) -> String {
    let t = OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis(ts)) * 1_000_000).unwrap();
    format!(
        "expires {}\n",
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    )
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

// ---------------------------------------------------------------------------
// 1. One test per deny reason

#[tokio::test]
async fn chain_from_an_untrusted_root_is_denied_cert_untrusted() {
    let env = TestEnv::new();
    let server = started_with_verified(&env, "cust-1").await;
    // A complete, well-formed PKI of its own, whose root is not in the trust dir.
    let other = warden::pki::dev::TestPki::new().unwrap();
    let leaf = other.leaf().unwrap();
    let r = admit(
        &env,
        &server,
        env.admit_request("cust-1", &other.chain(&leaf)),
    )
    .await;
    assert_denied(&r, &[Rc::CertUntrusted]);
    server.stop().await;
}

#[tokio::test]
async fn evaluator_not_under_the_trusted_root_is_denied_cert_untrusted() {
    // The evaluator CA is signed by a root that is not trusted, even though
    // the leaf and claims are otherwise perfect and the CRLs are present.
    let env = TestEnv::new();
    let rogue_root = warden::pki::dev::TestCa::root("Rogue Root").unwrap();
    let rogue_eval = rogue_root
        .evaluator("Rogue Evaluator CA", &env.pki.profile, true)
        .unwrap();
    put_crl_file(
        &env,
        "rogue-root.crl",
        &rogue_root.crl(&CrlSpec::empty(1)).unwrap(),
    );
    put_crl_file(
        &env,
        "rogue-eval.crl",
        &rogue_eval.crl(&CrlSpec::empty(1)).unwrap(),
    );
    let server = started_with_verified(&env, "cust-1").await;
    let leaf = rogue_eval
        .issue_leaf(&LeafSpec::new(&env.pki.profile, sample_claims()))
        .unwrap();
    let chain = format!("{}{}", leaf.cert_pem, rogue_eval.cert_pem());
    let r = admit(&env, &server, env.admit_request("cust-1", &chain)).await;
    assert_denied(&r, &[Rc::CertUntrusted]);
    server.stop().await;
}

#[tokio::test]
async fn expired_certificate_is_denied_cert_expired() {
    let env = TestEnv::new();
    let server = started_with_verified(&env, "cust-1").await;
    let leaf = env.leaf_with(|s| s.validity(now() - Duration::days(10), now() - Duration::days(1)));
    let r = admit(
        &env,
        &server,
        env.admit_request("cust-1", &env.chain(&leaf)),
    )
    .await;
    assert_denied(&r, &[Rc::CertExpired]);
    server.stop().await;
}

#[tokio::test]
async fn not_yet_valid_certificate_is_denied_cert_not_yet_valid() {
    let env = TestEnv::new();
    let server = started_with_verified(&env, "cust-1").await;
    let leaf = env.leaf_with(|s| s.validity(now() + Duration::days(1), now() + Duration::days(10)));
    let r = admit(
        &env,
        &server,
        env.admit_request("cust-1", &env.chain(&leaf)),
    )
    .await;
    assert_denied(&r, &[Rc::CertNotYetValid]);
    server.stop().await;
}

#[tokio::test]
async fn certificate_revoked_by_crl_in_trust_dir_is_denied_cert_revoked() {
    let env = TestEnv::new();
    let leaf = env.leaf();
    let other = env.leaf();
    put_crl_file(
        &env,
        "evaluator.crl",
        &env.pki
            .evaluator
            .crl(&CrlSpec::empty(2).revoking(&leaf.serial))
            .unwrap(),
    );
    let server = started_with_verified(&env, "cust-1").await;
    let r = admit(
        &env,
        &server,
        env.admit_request("cust-1", &env.chain(&leaf)),
    )
    .await;
    assert_denied(&r, &[Rc::CertRevoked]);
    // Another certificate of the same evaluator is still admitted.
    let r = admit(
        &env,
        &server,
        env.admit_request("cust-1", &env.chain(&other)),
    )
    .await;
    assert_allowed(&r);
    server.stop().await;
}

#[tokio::test]
async fn certificate_revoked_by_put_crl_is_denied_from_the_next_call() {
    let env = TestEnv::new();
    let server = started_with_verified(&env, "cust-1").await;
    let leaf = env.leaf();
    let before = admit(
        &env,
        &server,
        env.admit_request("cust-1", &env.chain(&leaf)),
    )
    .await;
    assert_allowed(&before);
    let status = env
        .trust(&server)
        .await
        .put_crl(proto::PutCrlRequest {
            crl: env
                .pki
                .evaluator
                .crl(&CrlSpec::empty(2).revoking(&leaf.serial))
                .unwrap(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.crls, 2);
    let r = admit(
        &env,
        &server,
        env.admit_request("cust-1", &env.chain(&leaf)),
    )
    .await;
    assert_denied(&r, &[Rc::CertRevoked]);
    server.stop().await;
}

#[tokio::test]
async fn expired_crl_is_denied_crl_expired() {
    let env = TestEnv::new();
    // Replace the evaluator's current CRL with one whose nextUpdate is past.
    put_crl_file(
        &env,
        "evaluator.crl",
        &env.pki
            .evaluator
            .crl(&CrlSpec::empty(2).times(now() - Duration::days(10), now() - Duration::days(1)))
            .unwrap(),
    );
    let server = started_with_verified(&env, "cust-1").await;
    let leaf = env.leaf();
    let r = admit(
        &env,
        &server,
        env.admit_request("cust-1", &env.chain(&leaf)),
    )
    .await;
    assert_denied(&r, &[Rc::CrlExpired]);
    server.stop().await;
}

#[tokio::test]
async fn missing_evaluator_crl_is_denied_crl_unavailable_naming_the_issuer() {
    let env = TestEnv::new();
    std::fs::remove_file(env.config.trust.dir.join("crls/evaluator.crl")).unwrap();
    let server = started_with_verified(&env, "cust-1").await;
    let leaf = env.leaf();
    let r = admit(
        &env,
        &server,
        env.admit_request("cust-1", &env.chain(&leaf)),
    )
    .await;
    assert_denied(&r, &[Rc::CrlUnavailable]);
    let m = message_of(&r, Rc::CrlUnavailable);
    assert!(m.contains("Test Evaluator CA"), "{m}");
    server.stop().await;
}

#[tokio::test]
async fn no_crls_at_all_is_denied_crl_unavailable() {
    let env = TestEnv::new();
    std::fs::remove_dir_all(env.config.trust.dir.join("crls")).unwrap();
    let server = started_with_verified(&env, "cust-1").await;
    let leaf = env.leaf();
    let r = admit(
        &env,
        &server,
        env.admit_request("cust-1", &env.chain(&leaf)),
    )
    .await;
    assert_denied(&r, &[Rc::CrlUnavailable]);
    server.stop().await;
}

#[tokio::test]
async fn leaf_without_model_evaluation_eku_is_denied_cert_wrong_usage() {
    let env = TestEnv::new();
    let server = started_with_verified(&env, "cust-1").await;
    let leaf = env.leaf_with(LeafSpec::without_eku);
    let r = admit(
        &env,
        &server,
        env.admit_request("cust-1", &env.chain(&leaf)),
    )
    .await;
    assert_denied(&r, &[Rc::CertWrongUsage]);
    server.stop().await;
}

#[tokio::test]
async fn evaluator_ca_without_model_evaluation_eku_is_denied_cert_wrong_usage() {
    let env = TestEnv::new();
    let no_eku = env
        .pki
        .root
        .evaluator("EKU-less Evaluator CA", &env.pki.profile, false)
        .unwrap();
    // Give it a current CRL so that only the EKU can be the problem.
    put_crl_file(&env, "no-eku.crl", &no_eku.crl(&CrlSpec::empty(1)).unwrap());
    let server = started_with_verified(&env, "cust-1").await;
    let leaf = no_eku
        .issue_leaf(&LeafSpec::new(&env.pki.profile, sample_claims()))
        .unwrap();
    let chain = format!("{}{}", leaf.cert_pem, no_eku.cert_pem());
    let r = admit(&env, &server, env.admit_request("cust-1", &chain)).await;
    assert_denied(&r, &[Rc::CertWrongUsage]);
    let m = message_of(&r, Rc::CertWrongUsage);
    assert!(m.contains("EKU-less Evaluator CA"), "{m}");
    server.stop().await;
}

#[tokio::test]
async fn missing_claim_extension_is_denied_cert_extension_missing_naming_the_field() {
    let env = TestEnv::new();
    let server = started_with_verified(&env, "cust-1").await;
    let leaf = env.leaf_with(|s| s.omit(Field::ModelDigest));
    let r = admit(
        &env,
        &server,
        env.admit_request("cust-1", &env.chain(&leaf)),
    )
    .await;
    assert_denied(&r, &[Rc::CertExtensionMissing]);
    let m = message_of(&r, Rc::CertExtensionMissing);
    assert!(m.contains("model_digest"), "{m}");
    server.stop().await;
}

#[tokio::test]
async fn malformed_claim_extension_is_denied_cert_extension_malformed_naming_the_field() {
    let env = TestEnv::new();
    let server = started_with_verified(&env, "cust-1").await;
    let leaf = env.leaf_with(|s| s.text(Field::ScopeMaxAccelerators, "lots"));
    let r = admit(
        &env,
        &server,
        env.admit_request("cust-1", &env.chain(&leaf)),
    )
    .await;
    assert_denied(&r, &[Rc::CertExtensionMalformed]);
    let m = message_of(&r, Rc::CertExtensionMalformed);
    assert!(m.contains("max_accelerators"), "{m}");
    server.stop().await;
}

#[tokio::test]
async fn a_developer_name_with_an_invisible_character_is_denied_cert_extension_malformed() {
    let env = TestEnv::new();
    let server = started_with_verified(&env, "cust-1").await;
    let leaf = env.leaf_with(|s| s.text(Field::Developer, "Example\u{200b} Labs"));
    let r = admit(
        &env,
        &server,
        env.admit_request("cust-1", &env.chain(&leaf)),
    )
    .await;
    assert_denied(&r, &[Rc::CertExtensionMalformed]);
    let m = message_of(&r, Rc::CertExtensionMalformed);
    assert!(m.contains("developer") && m.contains("invisible"), "{m}");
    server.stop().await;
}

#[tokio::test]
async fn every_missing_and_malformed_extension_is_reported() {
    let env = TestEnv::new();
    let server = started_with_verified(&env, "cust-1").await;
    let leaf = env.leaf_with(|s| {
        s.omit(Field::Developer)
            .text(Field::Result, "maybe")
            .text(Field::RiskTier, "high")
    });
    let r = admit(
        &env,
        &server,
        env.admit_request("cust-1", &env.chain(&leaf)),
    )
    .await;
    assert_denied(
        &r,
        &[
            Rc::CertExtensionMissing,
            Rc::CertExtensionMalformed,
            Rc::CertExtensionMalformed,
        ],
    );
    let all: Vec<_> = r.reasons.iter().map(|x| x.message.as_str()).collect();
    for field in ["developer", "result", "risk_tier"] {
        assert!(
            all.iter().any(|m| m.contains(field)),
            "{field} not named in {all:?}"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn failed_evaluation_is_denied_evaluation_failed() {
    let env = TestEnv::new();
    let server = started_with_verified(&env, "cust-1").await;
    let leaf = env.leaf_with(|s| s.text(Field::Result, "fail"));
    let r = admit(
        &env,
        &server,
        env.admit_request("cust-1", &env.chain(&leaf)),
    )
    .await;
    assert_denied(&r, &[Rc::EvaluationFailed]);
    server.stop().await;
}

#[tokio::test]
async fn measured_digest_differing_from_certified_is_denied_digest_mismatch() {
    let env = TestEnv::new();
    let server = started_with_verified(&env, "cust-1").await;
    let leaf = env.leaf();
    let mut req = env.admit_request("cust-1", &env.chain(&leaf));
    req.model_digest = format!("sha256:{}", "ab".repeat(32));
    let r = admit(&env, &server, req).await;
    assert_denied(&r, &[Rc::DigestMismatch]);
    let m = message_of(&r, Rc::DigestMismatch);
    assert!(m.contains(&"ab".repeat(32)), "{m}");
    assert!(m.contains(&env.sample_digest()), "{m}");
    server.stop().await;
}

#[tokio::test]
async fn unregistered_customer_is_denied_customer_unknown() {
    let env = TestEnv::new();
    let server = env.start().await;
    let leaf = env.leaf();
    let r = admit(
        &env,
        &server,
        env.admit_request("nobody", &env.chain(&leaf)),
    )
    .await;
    assert_denied(&r, &[Rc::CustomerUnknown]);
    server.stop().await;
}

#[tokio::test]
async fn pending_customer_is_denied_customer_not_verified() {
    let env = TestEnv::new();
    let server = env.start().await;
    env.register(&server, "cust-p", proto::CustomerStatus::Pending)
        .await;
    let leaf = env.leaf();
    let r = admit(
        &env,
        &server,
        env.admit_request("cust-p", &env.chain(&leaf)),
    )
    .await;
    assert_denied(&r, &[Rc::CustomerNotVerified]);
    let m = message_of(&r, Rc::CustomerNotVerified);
    assert!(m.contains("PENDING"), "{m}");
    server.stop().await;
}

#[tokio::test]
async fn suspended_customer_is_denied_customer_not_verified() {
    let env = TestEnv::new();
    let server = env.start().await;
    env.register(&server, "cust-s", proto::CustomerStatus::Suspended)
        .await;
    let leaf = env.leaf();
    let r = admit(
        &env,
        &server,
        env.admit_request("cust-s", &env.chain(&leaf)),
    )
    .await;
    assert_denied(&r, &[Rc::CustomerNotVerified]);
    let m = message_of(&r, Rc::CustomerNotVerified);
    assert!(m.contains("SUSPENDED"), "{m}");
    server.stop().await;
}

#[tokio::test]
async fn customer_suspended_after_verification_is_denied_customer_not_verified() {
    let env = TestEnv::new();
    let server = started_with_verified(&env, "cust-1").await;
    set_status(&env, &server, "cust-1", proto::CustomerStatus::Suspended).await;
    let leaf = env.leaf();
    let r = admit(
        &env,
        &server,
        env.admit_request("cust-1", &env.chain(&leaf)),
    )
    .await;
    assert_denied(&r, &[Rc::CustomerNotVerified]);
    server.stop().await;
}

/// Registers VERIFIED organisation `id`, verified `days_ago` days ago, or
/// with no verification recorded.
async fn register_verified(env: &TestEnv, server: &TestServer, id: &str, days_ago: Option<i64>) {
    let mut r = common::organisation(id, proto::CustomerStatus::Verified);
    r.details.as_mut().unwrap().verification = days_ago.map(|d| {
        let at = now() - Duration::days(d);
        proto::Verification {
            method: "registry-extract".into(),
            evidence_sha256: "ab".repeat(32),
            verified_by: "kyc-team".into(),
            verified_at: Some(prost_types::Timestamp {
                seconds: at.unix_timestamp(),
                nanos: 0,
            }),
        }
    });
    env.customers(server)
        .await
        .register_customer(r)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_verification_older_than_the_limit_is_denied_kyc_stale_unless_the_limit_is_off() {
    let mut env = TestEnv::new();
    env.config.kyc.max_verification_age_days = 365;
    let server = env.start().await;
    register_verified(&env, &server, "old", Some(400)).await;
    register_verified(&env, &server, "recent", Some(300)).await;
    register_verified(&env, &server, "unrecorded", None).await;
    let chain = env.chain(&env.leaf());
    let r = admit(&env, &server, env.admit_request("old", &chain)).await;
    assert_denied(&r, &[Rc::KycStale]);
    assert!(message_of(&r, Rc::KycStale).contains("365 days"), "{r:?}");
    // Without a verification time on record, its age is unknown: stale.
    let r = admit(&env, &server, env.admit_request("unrecorded", &chain)).await;
    assert_denied(&r, &[Rc::KycStale]);
    let r = admit(&env, &server, env.admit_request("recent", &chain)).await;
    assert_allowed(&r);
    // A renewal checks it again: the record now says verified long ago.
    let mut update = common::organisation("recent", proto::CustomerStatus::Verified);
    let mut details = update.details.take().unwrap();
    details.verification = Some(proto::Verification {
        method: "registry-extract".into(),
        evidence_sha256: "ab".repeat(32),
        verified_by: "kyc-team".into(),
        verified_at: Some(prost_types::Timestamp {
            seconds: (now() - Duration::days(366)).unix_timestamp(),
            nanos: 0,
        }),
    });
    env.customers(&server)
        .await
        .update_customer(proto::UpdateCustomerRequest {
            customer_id: "recent".into(),
            expected_version: 0,
            legal_name: update.legal_name,
            country: update.country,
            details: Some(details),
        })
        .await
        .unwrap();
    let renewed = renew(&mut env.admission(&server).await, &r.deployment_id).await;
    assert_eq!(codes(&renewed.reasons), vec![Rc::KycStale], "{renewed:?}");
    server.stop().await;

    // With the limit off (0, the default), the age of a verification is
    // not checked.
    env.config.kyc.max_verification_age_days = 0;
    let server = env.start().await;
    for customer in ["old", "unrecorded"] {
        assert_allowed(&admit(&env, &server, env.admit_request(customer, &chain)).await);
    }
    server.stop().await;
}

#[tokio::test]
async fn region_outside_certified_scope_is_denied_region_out_of_scope() {
    let env = TestEnv::new();
    let server = started_with_verified(&env, "cust-1").await;
    let leaf = env.leaf();
    let mut req = env.admit_request("cust-1", &env.chain(&leaf));
    req.workload.as_mut().unwrap().region = "ap-south".into();
    let r = admit(&env, &server, req).await;
    assert_denied(&r, &[Rc::RegionOutOfScope]);
    let m = message_of(&r, Rc::RegionOutOfScope);
    assert!(m.contains("ap-south"), "{m}");
    server.stop().await;
}

#[tokio::test]
async fn accelerators_over_certified_scope_are_denied_accelerators_out_of_scope() {
    let env = TestEnv::new();
    let server = started_with_verified(&env, "cust-1").await;
    let leaf = env.leaf_with(|s| s.text(Field::ScopeMaxAccelerators, "8"));
    // Exactly at the limit is fine ...
    let at_limit = admit(
        &env,
        &server,
        env.admit_request("cust-1", &env.chain(&leaf)),
    )
    .await;
    assert_allowed(&at_limit);
    // ... one over is not.
    let mut req = env.admit_request("cust-1", &env.chain(&leaf));
    req.workload.as_mut().unwrap().accelerator_count = 9;
    let r = admit(&env, &server, req).await;
    assert_denied(&r, &[Rc::AcceleratorsOutOfScope]);
    server.stop().await;
}

#[tokio::test]
async fn several_failing_checks_are_all_reported_together() {
    let env = TestEnv::new();
    let server = env.start().await;
    env.register(&server, "cust-p", proto::CustomerStatus::Pending)
        .await;
    let leaf = env.leaf();
    let mut req = env.admit_request("cust-p", &env.chain(&leaf));
    req.model_digest = format!("sha256:{}", "cd".repeat(32));
    let w = req.workload.as_mut().unwrap();
    w.region = "ap-south".into();
    w.accelerator_count = 5000;
    let r = admit(&env, &server, req).await;
    assert_denied(
        &r,
        &[
            Rc::DigestMismatch,
            Rc::RegionOutOfScope,
            Rc::AcceleratorsOutOfScope,
            Rc::CustomerNotVerified,
        ],
    );
    server.stop().await;
}

#[tokio::test]
async fn certificate_problem_and_unknown_customer_are_reported_together() {
    let env = TestEnv::new();
    let server = env.start().await;
    let leaf = env.leaf_with(|s| s.validity(now() - Duration::days(10), now() - Duration::days(1)));
    let r = admit(
        &env,
        &server,
        env.admit_request("nobody", &env.chain(&leaf)),
    )
    .await;
    assert_denied(&r, &[Rc::CertExpired, Rc::CustomerUnknown]);
    server.stop().await;
}

// ---------------------------------------------------------------------------
// 2. Idempotent retry

#[tokio::test]
async fn retry_with_same_request_id_returns_the_first_answer_and_creates_nothing() {
    let env = TestEnv::new();
    let server = started_with_verified(&env, "cust-1").await;
    let leaf = env.leaf();
    let req = env.admit_request("cust-1", &env.chain(&leaf));
    let first = admit(&env, &server, req.clone()).await;
    assert_allowed(&first);
    let again = admit(&env, &server, req.clone()).await;
    assert_eq!(again, first);
    assert_eq!(again.deployment_id, first.deployment_id);
    assert_eq!(again.decision_id, first.decision_id);
    assert_eq!(again.licence, first.licence);

    // Same id, different request: refused, nothing recorded.
    let mut changed = req.clone();
    changed.workload.as_mut().unwrap().node = "n2".into();
    let err = env
        .admission(&server)
        .await
        .admit(changed)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");

    let mut ops = role_admission(&env, &server, "operator").await;
    let all = list_all(&mut ops).await;
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0].deployment_id, first.deployment_id);
    assert_eq!(all[0].request_id, req.request_id);
    server.stop().await;
}

#[tokio::test]
async fn retry_of_a_denied_request_returns_the_same_decision() {
    let env = TestEnv::new();
    let server = env.start().await;
    let leaf = env.leaf();
    let req = env.admit_request("nobody", &env.chain(&leaf));
    let first = admit(&env, &server, req.clone()).await;
    assert_denied(&first, &[Rc::CustomerUnknown]);
    // Even after the customer now exists and is verified, the retry gets
    // the recorded answer, not a new decision.
    env.register(&server, "nobody", proto::CustomerStatus::Verified)
        .await;
    let again = admit(&env, &server, req).await;
    assert_eq!(again, first);
    server.stop().await;
}

// ---------------------------------------------------------------------------
// 3. Renew

#[tokio::test]
async fn renew_extends_the_lease_and_returns_a_verifiable_licence() {
    let mut env = TestEnv::new();
    let clock = env.manual_clock();
    let server = started_with_verified(&env, "cust-1").await;
    let (_, a) = admitted(&env, &server, "cust-1").await;
    let mut s = env.admission(&server).await;
    // Move the clock so that the extension is observable.
    clock.advance(StdDuration::from_millis(20));
    let r = renew(&mut s, &a.deployment_id).await;
    assert_eq!(r.decision, proto::Decision::Allow as i32, "{:?}", r.reasons);
    assert!(r.reasons.is_empty());
    let old = millis(a.lease_expires_at.as_ref().unwrap());
    let new = millis(r.lease_expires_at.as_ref().unwrap());
    assert!(new > old, "lease {new} not extended past {old}");
    assert_ne!(r.licence, a.licence);
    let text = env.licence.open(&r.licence).unwrap();
    assert!(text.starts_with("warden-licence/v2\n"), "{text}");
    assert!(text.contains(&format!("deployment {}\n", a.deployment_id)));
    assert!(
        text.contains(&expires_line(r.lease_expires_at.as_ref().unwrap())),
        "{text}"
    );

    let d = get(&mut s, &a.deployment_id).await;
    assert_eq!(d.renewals, 1);
    assert_eq!(d.state, proto::DeploymentState::Active as i32);
    assert_eq!(d.lease_expires_at, r.lease_expires_at);

    let r2 = renew(&mut s, &a.deployment_id).await;
    assert_eq!(r2.decision, proto::Decision::Allow as i32);
    assert_eq!(get(&mut s, &a.deployment_id).await.renewals, 2);
    server.stop().await;
}

#[tokio::test]
async fn renew_with_new_endpoints_replaces_them_and_without_keeps_them() {
    let env = TestEnv::new();
    let server = started_with_verified(&env, "cust-1").await;
    let (_, a) = admitted(&env, &server, "cust-1").await;
    let mut s = env.admission(&server).await;
    let r = s
        .renew(proto::RenewRequest {
            deployment_id: a.deployment_id.clone(),
            endpoints: vec!["10.0.0.2:9000".into(), "10.0.0.3:9000".into()],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.decision, proto::Decision::Allow as i32, "{:?}", r.reasons);
    let endpoints = |d: proto::Deployment| d.workload.unwrap().endpoints;
    let want = vec!["10.0.0.2:9000".to_string(), "10.0.0.3:9000".to_string()];
    assert_eq!(endpoints(get(&mut s, &a.deployment_id).await), want);
    let r = renew(&mut s, &a.deployment_id).await;
    assert_eq!(r.decision, proto::Decision::Allow as i32);
    assert_eq!(endpoints(get(&mut s, &a.deployment_id).await), want);
    server.stop().await;
}

#[tokio::test]
async fn renew_fails_after_certificate_is_revoked() {
    let env = TestEnv::new();
    let server = started_with_verified(&env, "cust-1").await;
    let (leaf, a) = admitted(&env, &server, "cust-1").await;
    // CRL number 2 supersedes the trust directory's number 1.
    env.trust(&server)
        .await
        .put_crl(proto::PutCrlRequest {
            crl: env
                .pki
                .evaluator
                .crl(&CrlSpec::empty(2).revoking(&leaf.serial))
                .unwrap(),
        })
        .await
        .unwrap();
    let mut s = env.admission(&server).await;
    let r = renew(&mut s, &a.deployment_id).await;
    assert_eq!(r.decision, proto::Decision::Deny as i32);
    assert_eq!(codes(&r.reasons), vec![Rc::CertRevoked]);
    assert!(r.licence.is_empty());
    // The lease was not extended and no renewal counted.
    let d = get(&mut s, &a.deployment_id).await;
    assert_eq!(d.renewals, 0);
    assert_eq!(d.lease_expires_at, a.lease_expires_at);
    server.stop().await;
}

#[tokio::test]
async fn renew_fails_after_customer_is_suspended() {
    let env = TestEnv::new();
    let server = started_with_verified(&env, "cust-1").await;
    let (_, a) = admitted(&env, &server, "cust-1").await;
    set_status(&env, &server, "cust-1", proto::CustomerStatus::Suspended).await;
    let mut s = env.admission(&server).await;
    let r = renew(&mut s, &a.deployment_id).await;
    assert_eq!(r.decision, proto::Decision::Deny as i32);
    assert_eq!(codes(&r.reasons), vec![Rc::CustomerNotVerified]);
    assert!(r.licence.is_empty());
    assert_eq!(get(&mut s, &a.deployment_id).await.renewals, 0);
    server.stop().await;
}

#[tokio::test]
async fn renew_fails_after_lease_expired_and_deployment_reads_expired() {
    let mut env = TestEnv::with_lease(1);
    let clock = env.manual_clock();
    let server = started_with_verified(&env, "cust-1").await;
    let (_, a) = admitted(&env, &server, "cust-1").await;
    let mut s = env.admission(&server).await;
    clock.advance(StdDuration::from_millis(1200));
    let d = get(&mut s, &a.deployment_id).await;
    assert_eq!(d.state, proto::DeploymentState::Expired as i32);
    let r = renew(&mut s, &a.deployment_id).await;
    assert_eq!(r.decision, proto::Decision::Deny as i32);
    assert_eq!(codes(&r.reasons), vec![Rc::LeaseExpired]);
    assert!(r.licence.is_empty());
    let d = get(&mut s, &a.deployment_id).await;
    assert_eq!(d.state, proto::DeploymentState::Expired as i32);
    assert_eq!(d.renewals, 0);
    // Filtering by state sees it as expired too.
    let expired = s
        .list_deployments(proto::ListDeploymentsRequest {
            state: proto::DeploymentState::Expired as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .deployments;
    assert_eq!(expired.len(), 1);
    server.stop().await;
}

#[tokio::test]
async fn renew_fails_after_deployment_is_released() {
    let env = TestEnv::new();
    let server = started_with_verified(&env, "cust-1").await;
    let (_, a) = admitted(&env, &server, "cust-1").await;
    let mut s = env.admission(&server).await;
    release(&mut s, &a.deployment_id).await;
    let r = renew(&mut s, &a.deployment_id).await;
    assert_eq!(r.decision, proto::Decision::Deny as i32);
    assert_eq!(codes(&r.reasons), vec![Rc::DeploymentNotActive]);
    assert!(r.licence.is_empty());
    assert_eq!(
        get(&mut s, &a.deployment_id).await.state,
        proto::DeploymentState::Released as i32
    );
    server.stop().await;
}

// ---------------------------------------------------------------------------
// 4. Release

#[tokio::test]
async fn release_marks_the_deployment_released_and_is_idempotent() {
    let env = TestEnv::new();
    let server = started_with_verified(&env, "cust-1").await;
    let (_, a) = admitted(&env, &server, "cust-1").await;
    let mut s = env.admission(&server).await;
    let first = release(&mut s, &a.deployment_id).await;
    assert_eq!(first.state, proto::DeploymentState::Released as i32);
    let released_at = first.released_at.unwrap();
    assert!(millis(&released_at) >= millis(first.admitted_at.as_ref().unwrap()));

    let again = release(&mut s, &a.deployment_id).await;
    assert_eq!(again, first, "a second release changes nothing");

    let d = get(&mut s, &a.deployment_id).await;
    assert_eq!(d, first);
    let released = s
        .list_deployments(proto::ListDeploymentsRequest {
            state: proto::DeploymentState::Released as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .deployments;
    assert_eq!(released.len(), 1);
    let active = s
        .list_deployments(proto::ListDeploymentsRequest {
            state: proto::DeploymentState::Active as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .deployments;
    assert!(active.is_empty(), "{active:?}");
    server.stop().await;
}

// ---------------------------------------------------------------------------
// 5. Restart

#[tokio::test]
async fn restart_keeps_deployments_and_decisions() {
    let env = TestEnv::new();
    let server = started_with_verified(&env, "cust-1").await;
    let leaf = env.leaf();
    let allow_req = env.admit_request("cust-1", &env.chain(&leaf));
    let allowed = admit(&env, &server, allow_req.clone()).await;
    assert_allowed(&allowed);
    let deny_req = env.admit_request("nobody", &env.chain(&leaf));
    let denied = admit(&env, &server, deny_req.clone()).await;
    assert_denied(&denied, &[Rc::CustomerUnknown]);
    let mut s = env.admission(&server).await;
    let before = get(&mut s, &allowed.deployment_id).await;
    drop(s);
    server.stop().await;

    let server = env.start().await;
    let mut s = env.admission(&server).await;
    let after = get(&mut s, &allowed.deployment_id).await;
    assert_eq!(after, before);
    let all = list_all(&mut s).await;
    assert_eq!(all, vec![before]);

    let allowed_again = admit(&env, &server, allow_req).await;
    assert_eq!(allowed_again, allowed);
    let denied_again = admit(&env, &server, deny_req).await;
    assert_eq!(denied_again, denied);
    // Still exactly one deployment.
    assert_eq!(list_all(&mut s).await.len(), 1);
    server.stop().await;
}

// ---------------------------------------------------------------------------
// 6. A deny records no deployment

#[tokio::test]
async fn deny_records_a_decision_but_no_deployment() {
    let env = TestEnv::new();
    let server = env.start().await;
    env.register(&server, "cust-p", proto::CustomerStatus::Pending)
        .await;
    let leaf = env.leaf();
    let denied = admit(
        &env,
        &server,
        env.admit_request("cust-p", &env.chain(&leaf)),
    )
    .await;
    assert_denied(&denied, &[Rc::CustomerNotVerified]);
    let mut s = env.admission(&server).await;
    let mut ops = role_admission(&env, &server, "operator").await;
    assert!(list_all(&mut s).await.is_empty());
    assert!(list_all(&mut ops).await.is_empty());

    // The same customer, once verified, gets exactly one deployment: the
    // listing does see deployments when there are some.
    set_status(&env, &server, "cust-p", proto::CustomerStatus::Verified).await;
    let allowed = admit(
        &env,
        &server,
        env.admit_request("cust-p", &env.chain(&leaf)),
    )
    .await;
    assert_allowed(&allowed);
    let all = list_all(&mut ops).await;
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].deployment_id, allowed.deployment_id);
    server.stop().await;
}

// ---------------------------------------------------------------------------
// 7. Scheduler isolation

#[tokio::test]
async fn another_scheduler_cannot_see_or_touch_a_deployment_it_did_not_admit() {
    let env = TestEnv::new();
    let server = started_with_verified(&env, "cust-1").await;
    let (_, a) = admitted(&env, &server, "cust-1").await;
    let id = a.deployment_id.clone();

    let other_id = format!("spiffe://{}/scheduler/other", common::TRUST_DOMAIN);
    let cert = env.mtls.client_cert(&other_id).unwrap();
    let channel = connect(
        server.addr,
        &env.mtls.cert_pem(),
        Some((&cert.cert_pem, &cert.key_pem)),
    )
    .await
    .unwrap();
    let mut other = AdmissionClient::new(channel);

    let e = other
        .get_deployment(proto::GetDeploymentRequest {
            deployment_id: id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    let e = other
        .renew(proto::RenewRequest {
            deployment_id: id.clone(),
            endpoints: vec![],
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    let e = other
        .release(proto::ReleaseRequest {
            deployment_id: id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    // Not found reads the same as a deployment that does not exist at all.
    let e = other
        .get_deployment(proto::GetDeploymentRequest {
            deployment_id: "dep-doesnotexist".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    assert!(list_all(&mut other).await.is_empty());

    // The operator sees it, untouched by the stranger's attempts.
    let mut ops = role_admission(&env, &server, "operator").await;
    let d = get(&mut ops, &id).await;
    assert_eq!(d.state, proto::DeploymentState::Active as i32);
    assert_eq!(d.renewals, 0);
    assert_eq!(
        d.admitted_by,
        format!("spiffe://{}/scheduler/test", common::TRUST_DOMAIN)
    );
    let all = list_all(&mut ops).await;
    assert!(all.iter().any(|x| x.deployment_id == id), "{all:?}");
    // And the owner still sees it.
    let mut owner = env.admission(&server).await;
    assert_eq!(list_all(&mut owner).await.len(), 1);
    server.stop().await;
}
