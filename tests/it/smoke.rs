//! The allow path end to end, as a scheduler sees it.
#![allow(clippy::unwrap_used)]

use crate::common;

use common::TestEnv;
use warden::proto;

#[tokio::test]
async fn verified_customer_with_valid_certificate_is_allowed_with_a_verifiable_licence() {
    let env = TestEnv::new();
    let server = env.start().await;
    env.register(&server, "cust-1", proto::CustomerStatus::Verified)
        .await;
    let leaf = env.leaf();
    let r = env.admit_chain(&server, "cust-1", &env.chain(&leaf)).await;
    assert_eq!(r.decision, proto::Decision::Allow as i32, "{:?}", r.reasons);
    assert!(r.reasons.is_empty());
    assert!(r.deployment_id.starts_with("dep-"));
    let text = env.licence.open(&r.licence).unwrap();
    assert!(text.starts_with("warden-licence/v2\n"));
    assert!(text.contains(&format!("deployment {}\n", r.deployment_id)));
    assert!(text.contains(&format!("model {}\n", env.sample_digest())));
    assert!(text.contains("customer cust-1\n"));
    server.stop().await;
}
