//! The licence as a node receives it: admitted and renewed through the real
//! server, then verified offline with `warden::licence::verify`, the
//! function `warden verify-licence` and the node agent use.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::TestEnv;
use sha2::{Digest as _, Sha256};
use warden::licence::{verify, Expectations, LicenceError, Term};
use warden::proto;
use warden::proto::ledger_client::LedgerClient;

fn millis(ts: &prost_types::Timestamp) -> i64 {
    ts.seconds * 1000 + i64::from(ts.nanos) / 1_000_000
}

#[tokio::test]
async fn an_admitted_deployment_gets_a_licence_for_its_model_deployment_and_scope() {
    let env = TestEnv::new();
    let server = env.start().await;
    env.register(&server, "cust-1", proto::CustomerStatus::Verified)
        .await;
    let leaf = env.leaf();
    let mut admission = env.admission(&server).await;
    let r = admission
        .admit(env.admit_request("cust-1", &env.chain(&leaf)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.decision, proto::Decision::Allow as i32, "{:?}", r.reasons);
    let expires = millis(r.lease_expires_at.as_ref().unwrap());
    let fingerprint = hex::encode(Sha256::digest(&leaf.cert_der));
    let digest = env.sample_digest();
    let expect = Expectations {
        deployment_id: Some(&r.deployment_id),
        model_digest: Some(&digest),
        region: Some("eu-west"),
        accelerators: Some(8),
        certificate_fingerprint: Some(&fingerprint),
    };
    let licence = verify(
        &r.licence,
        &env.licence,
        expires - 1,
        Duration::ZERO,
        &expect,
    )
    .unwrap();
    assert_eq!(licence.customer_id, "cust-1");
    assert_eq!(licence.expires_at, expires);
    assert_eq!(licence.region, "eu-west");
    assert_eq!(licence.accelerators, 8);

    // The same licence, checked by a node elsewhere or too late.
    let elsewhere = Expectations {
        region: Some("us-east"),
        ..expect
    };
    assert!(matches!(
        verify(
            &r.licence,
            &env.licence,
            expires - 1,
            Duration::ZERO,
            &elsewhere
        ),
        Err(LicenceError::Mismatch {
            term: Term::Region,
            ..
        })
    ));
    assert!(matches!(
        verify(&r.licence, &env.licence, expires, Duration::ZERO, &expect),
        Err(LicenceError::Expired { .. })
    ));

    // A renewal hands out a licence for the same grant, running to the new
    // end of the lease.
    let renewed = admission
        .renew(proto::RenewRequest {
            deployment_id: r.deployment_id.clone(),
            endpoints: vec![],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(renewed.decision, proto::Decision::Allow as i32);
    let renewed_expires = millis(renewed.lease_expires_at.as_ref().unwrap());
    let l = verify(
        &renewed.licence,
        &env.licence,
        renewed_expires - 1,
        Duration::ZERO,
        &expect,
    )
    .unwrap();
    assert_eq!(l.expires_at, renewed_expires);
    server.stop().await;
}

#[tokio::test]
async fn a_ledger_checkpoint_from_the_server_is_not_a_licence() {
    let env = TestEnv::new();
    let server = env.start().await;
    env.register(&server, "cust-1", proto::CustomerStatus::Verified)
        .await;
    let mut ledger = LedgerClient::new(env.channel(&server, "auditor").await);
    let checkpoint = ledger
        .get_checkpoint(proto::GetCheckpointRequest { first_size: 0 })
        .await
        .unwrap()
        .into_inner()
        .checkpoint;
    // Genuinely signed by the ledger key, so only the body can tell.
    assert!(env.ledger.open(&checkpoint).is_ok());
    let e = verify(
        &checkpoint,
        &env.ledger,
        0,
        Duration::ZERO,
        &Expectations::default(),
    )
    .unwrap_err();
    assert!(matches!(e, LicenceError::NotALicence(_)), "{e}");
    // And the licence key does not sign checkpoints.
    assert!(matches!(
        verify(
            &checkpoint,
            &env.licence,
            0,
            Duration::ZERO,
            &Expectations::default()
        ),
        Err(LicenceError::Signature(_))
    ));
    server.stop().await;
}
