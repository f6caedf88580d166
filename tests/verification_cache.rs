//! The verification cache, seen from a scheduler: a chain verified once is
//! not trusted blindly afterwards. Expiry of the certificate or of a CRL,
//! a new CRL, and a trust reload all take effect on the next call, and a
//! rejection is never remembered. Real server, real PKI, real store.
#![allow(clippy::unwrap_used)]

mod common;

use common::{write, TestEnv, TestServer};
use time::{Duration, OffsetDateTime};
use warden::clock::{Clock, ManualClock};
use warden::pki::dev::CrlSpec;
use warden::proto;
use warden::proto::ReasonCode as Rc;

async fn admit(env: &TestEnv, server: &TestServer, chain: &str) -> proto::AdmitResponse {
    env.admission(server)
        .await
        .admit(env.admit_request("cust-1", chain))
        .await
        .unwrap()
        .into_inner()
}

fn allowed(r: &proto::AdmitResponse) -> bool {
    r.decision == proto::Decision::Allow as i32
}

fn codes(r: &proto::AdmitResponse) -> Vec<Rc> {
    r.reasons
        .iter()
        .map(|x| Rc::try_from(x.code).unwrap())
        .collect()
}

/// Moves the server's clock past `t` by more than a second (X.509 and CRL
/// times have whole seconds).
fn move_past(clock: &ManualClock, t: OffsetDateTime) {
    let past = (t + Duration::milliseconds(1100)).unix_timestamp_nanos() / 1_000_000;
    let past = i64::try_from(past).unwrap();
    if clock.now() < past {
        clock.set(past);
    }
}

async fn started(env: &TestEnv) -> TestServer {
    let server = env.start().await;
    env.register(&server, "cust-1", proto::CustomerStatus::Verified)
        .await;
    server
}

#[tokio::test]
async fn a_cached_chain_is_denied_once_its_certificate_expires() {
    let mut env = TestEnv::new();
    let clock = env.manual_clock();
    let server = started(&env).await;
    let not_after = OffsetDateTime::now_utc() + Duration::seconds(3);
    let leaf = env.leaf_with(|s| s.validity(not_after - Duration::hours(1), not_after));
    let chain = env.chain(&leaf);
    // Twice: verified, then served from the cache.
    for _ in 0..2 {
        let r = admit(&env, &server, &chain).await;
        assert!(allowed(&r), "{:?}", r.reasons);
    }
    move_past(&clock, not_after);
    let r = admit(&env, &server, &chain).await;
    assert_eq!(codes(&r), vec![Rc::CertExpired]);
    server.stop().await;
}

#[tokio::test]
async fn a_cached_chain_is_denied_once_its_issuers_crl_expires() {
    let mut env = TestEnv::new();
    let clock = env.manual_clock();
    let now = OffsetDateTime::now_utc();
    let next_update = now + Duration::seconds(3);
    write(
        &env.config.trust.dir.join("crls/evaluator.crl"),
        env.pki
            .evaluator
            .crl(&CrlSpec::empty(2).times(now - Duration::hours(1), next_update))
            .unwrap(),
    );
    let server = started(&env).await;
    let chain = env.chain(&env.leaf());
    for _ in 0..2 {
        let r = admit(&env, &server, &chain).await;
        assert!(allowed(&r), "{:?}", r.reasons);
    }
    move_past(&clock, next_update);
    let r = admit(&env, &server, &chain).await;
    assert_eq!(codes(&r), vec![Rc::CrlExpired]);
    server.stop().await;
}

#[tokio::test]
async fn a_cached_chain_is_denied_once_a_new_crl_revokes_it_and_renewal_fails_too() {
    let env = TestEnv::new();
    let server = started(&env).await;
    let leaf = env.leaf();
    let chain = env.chain(&leaf);
    let first = admit(&env, &server, &chain).await;
    assert!(allowed(&first), "{:?}", first.reasons);
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
    let r = admit(&env, &server, &chain).await;
    assert_eq!(codes(&r), vec![Rc::CertRevoked]);
    let renewed = env
        .admission(&server)
        .await
        .renew(proto::RenewRequest {
            deployment_id: first.deployment_id,
            endpoints: vec![],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(renewed.decision, proto::Decision::Deny as i32);
    assert_eq!(
        renewed.reasons.iter().map(|x| x.code).collect::<Vec<_>>(),
        vec![Rc::CertRevoked as i32]
    );
    server.stop().await;
}

#[tokio::test]
async fn a_trust_reload_invalidates_cached_verdicts() {
    let env = TestEnv::new();
    let server = started(&env).await;
    let leaf = env.leaf();
    let chain = env.chain(&leaf);
    let r = admit(&env, &server, &chain).await;
    assert!(allowed(&r), "{:?}", r.reasons);
    // The evaluator's new CRL arrives as a file; nothing changes until the
    // administrator reloads.
    write(
        &env.config.trust.dir.join("crls/evaluator.crl"),
        env.pki
            .evaluator
            .crl(&CrlSpec::empty(2).revoking(&leaf.serial))
            .unwrap(),
    );
    let r = admit(&env, &server, &chain).await;
    assert!(allowed(&r), "{:?}", r.reasons);
    env.trust(&server)
        .await
        .reload(proto::ReloadRequest {})
        .await
        .unwrap();
    let r = admit(&env, &server, &chain).await;
    assert_eq!(codes(&r), vec![Rc::CertRevoked]);
    server.stop().await;
}

#[tokio::test]
async fn a_rejected_chain_is_decided_again_on_the_next_call() {
    let mut env = TestEnv::new();
    let clock = env.manual_clock();
    let server = started(&env).await;
    let not_before = OffsetDateTime::now_utc() + Duration::seconds(2);
    let leaf = env.leaf_with(|s| s.validity(not_before, not_before + Duration::days(30)));
    let chain = env.chain(&leaf);
    let r = admit(&env, &server, &chain).await;
    assert_eq!(codes(&r), vec![Rc::CertNotYetValid]);
    move_past(&clock, not_before);
    let r = admit(&env, &server, &chain).await;
    assert!(allowed(&r), "{:?}", r.reasons);
    server.stop().await;
}
