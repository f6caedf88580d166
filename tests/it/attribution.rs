//! Attribution end to end: legal process, each selector, identity as of
//! admission and now, endpoints over time, the request recorded before the
//! answer, offline verification of saved reports, the accounting of every
//! request, and who may ask.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::time::Duration;

use common::{TestEnv, TestServer};
use tonic::transport::Channel;
use tonic::Code;
use warden::attribution::{verify, Report};
use warden::clock::Clock;
use warden::proto;
use warden::proto::attribution_client::AttributionClient;
use warden::proto::ledger_client::LedgerClient;

// ---------------------------------------------------------------------------
// Helpers

fn legal(instrument: proto::Instrument) -> Option<proto::LegalProcess> {
    Some(proto::LegalProcess {
        case_reference: "CASE-2026-117".into(),
        requesting_authority: "Example Cyber Unit".into(),
        jurisdiction: "DE-BE".into(),
        instrument: instrument as i32,
        document_sha256: "c0".repeat(32),
    })
}

fn by_deployment(id: &str) -> proto::AttributeRequest {
    proto::AttributeRequest {
        legal_process: legal(proto::Instrument::CourtOrder),
        selector: Some(proto::attribute_request::Selector::DeploymentId(id.into())),
        page_size: 0,
        page_token: String::new(),
    }
}

fn by_endpoint(endpoint: &str, at: prost_types::Timestamp) -> proto::AttributeRequest {
    proto::AttributeRequest {
        legal_process: legal(proto::Instrument::Warrant),
        selector: Some(proto::attribute_request::Selector::Endpoint(
            proto::EndpointSelector {
                endpoint: endpoint.into(),
                at: Some(at),
            },
        )),
        page_size: 0,
        page_token: String::new(),
    }
}

fn ts(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

async fn authority(env: &TestEnv, server: &TestServer) -> AttributionClient<Channel> {
    AttributionClient::new(env.channel(server, "authority").await)
}

/// Admits one deployment of `customer` serving `endpoints`; its id.
async fn admit(env: &TestEnv, server: &TestServer, customer: &str, endpoints: &[&str]) -> String {
    let req = env.admit_request_serving(customer, &env.sample_chain(), endpoints);
    env.admit_allowed(server, req).await
}

async fn ledger_size(env: &TestEnv, server: &TestServer) -> u64 {
    LedgerClient::new(env.channel(server, "auditor").await)
        .get_checkpoint(proto::GetCheckpointRequest { first_size: 0 })
        .await
        .unwrap()
        .into_inner()
        .size
}

async fn requests(env: &TestEnv, server: &TestServer) -> Vec<proto::AttributionRequestRecord> {
    AttributionClient::new(env.channel(server, "auditor").await)
        .list_attribution_requests(proto::ListAttributionRequestsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .requests
}

fn kinds(d: &proto::AttributedDeployment) -> Vec<proto::LifecycleKind> {
    d.lifecycle
        .iter()
        .map(|e| proto::LifecycleKind::try_from(e.kind).unwrap())
        .collect()
}

fn report(r: proto::AttributeResponse) -> Report {
    warden::api::attribution::report_from_proto(r).unwrap()
}

// ---------------------------------------------------------------------------
// Tests

#[tokio::test]
async fn by_deployment_shows_identity_at_admission_and_now_certificate_and_lifecycle() {
    let env = TestEnv::new();
    let server = env.start().await;
    env.register(&server, "cust-a", proto::CustomerStatus::Verified)
        .await;
    let id = admit(&env, &server, "cust-a", &["10.0.0.5:443"]).await;
    // The identity changes after admission: a new legal name.
    env.customers(&server)
        .await
        .update_customer(proto::UpdateCustomerRequest {
            customer_id: "cust-a".into(),
            expected_version: 0,
            legal_name: "Renamed Holdings Ltd".into(),
            country: "DE".into(),
            details: Some(common::org_details()),
        })
        .await
        .unwrap();
    let mut admission = env.admission(&server).await;
    // A plain renewal, one that moves the endpoint, then release.
    for endpoints in [vec![], vec!["10.0.0.6:443".to_string()]] {
        let r = admission
            .renew(proto::RenewRequest {
                deployment_id: id.clone(),
                endpoints,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.decision, proto::Decision::Allow as i32, "{r:?}");
    }
    admission
        .release(proto::ReleaseRequest {
            deployment_id: id.clone(),
        })
        .await
        .unwrap();

    let r = authority(&env, &server)
        .await
        .attribute(by_deployment(&id))
        .await
        .unwrap()
        .into_inner();
    assert!(!r.flagged_for_review);
    assert_eq!(r.deployments.len(), 1);
    let d = &r.deployments[0];
    assert_eq!(d.deployment_id, id);
    assert_eq!(d.customer_id, "cust-a");
    assert_eq!(d.model_digest, env.sample_digest());
    assert_eq!(d.state, proto::DeploymentState::Released as i32);
    assert_eq!(
        kinds(d),
        vec![
            proto::LifecycleKind::Admitted,
            proto::LifecycleKind::Renewed,
            proto::LifecycleKind::EndpointsChanged,
            proto::LifecycleKind::Released,
        ]
    );
    assert_eq!(d.lifecycle[2].endpoints, vec!["10.0.0.6:443"]);
    let claims = warden::pki::dev::sample_claims();
    let cert = d.certificate.as_ref().unwrap();
    assert_eq!(cert.developer, claims.developer);
    assert_eq!(cert.model_name, claims.model_name);
    assert!(!cert.evaluator.is_empty() && !cert.serial.is_empty());
    // Identity as of admission differs from the current one; both shown.
    let then = d.identity_at_admission.as_ref().unwrap();
    let now = d.identity_current.as_ref().unwrap();
    assert_eq!(then.customer.as_ref().unwrap().legal_name, "cust-a Ltd");
    assert_eq!(then.customer.as_ref().unwrap().version, 1);
    assert_eq!(
        now.customer.as_ref().unwrap().legal_name,
        "Renamed Holdings Ltd"
    );
    assert_eq!(now.customer.as_ref().unwrap().version, 2);
    assert_ne!(then.commitment, now.commitment);
    assert!(then.ledger_index < d.lifecycle[0].ledger_index);
    assert!(now.ledger_index > d.lifecycle[0].ledger_index);

    // The request was recorded before the disclosure, and both entries are
    // in the answer with proofs; the whole report verifies offline.
    assert!(r.request_ledger_index < r.disclosure_ledger_index);
    let rep = report(r);
    assert!(verify(&rep, &env.ledger)
        .unwrap()
        .starts_with("verified: 1 deployment"));
    let request_entry = rep
        .entries
        .iter()
        .find(|e| e.index == rep.request_ledger_index)
        .unwrap();
    assert!(request_entry
        .entry
        .contains(r#""kind":"attribution_requested""#));
    assert!(request_entry.entry.contains("CASE-2026-117"));
    // Every fact shown rests on an entry in the report.
    for e in &rep.deployments[0].lifecycle {
        assert!(rep.entries.iter().any(|p| p.index == e.ledger_index));
    }
    // No personal data in the ledger: the new legal name appears in the
    // answer, never in an entry.
    assert!(rep
        .entries
        .iter()
        .all(|e| !e.entry.contains("Renamed Holdings")));
}

#[tokio::test]
async fn a_saved_report_fails_verification_after_any_edit() {
    let env = TestEnv::new();
    let server = env.start().await;
    env.register(&server, "cust-v", proto::CustomerStatus::Verified)
        .await;
    let id = admit(&env, &server, "cust-v", &["api.example.test"]).await;
    let r = authority(&env, &server)
        .await
        .attribute(by_deployment(&id))
        .await
        .unwrap()
        .into_inner();
    let good = report(r);
    // Round trip through the saved JSON form.
    let saved = serde_json::to_string_pretty(&good).unwrap();
    let loaded: Report = serde_json::from_str(&saved).unwrap();
    verify(&loaded, &env.ledger).unwrap();

    type Edit = Box<dyn Fn(&mut Report)>;
    let edits: Vec<(&str, Edit)> = vec![
        (
            "an entry's bytes",
            Box::new(|r| {
                r.entries[0].entry = r.entries[0].entry.replacen("\"at\":", "\"at\":1", 1)
            }),
        ),
        (
            "a proof hash",
            Box::new(|r| {
                let h = &mut r.entries[0].inclusion_proof[0];
                *h = format!("{}{}", if h.starts_with('0') { "1" } else { "0" }, &h[1..]);
            }),
        ),
        (
            "the checkpoint",
            Box::new(|r| r.checkpoint = r.checkpoint.replacen('\n', "x\n", 1)),
        ),
        (
            "the legal name at admission",
            Box::new(|r| {
                r.deployments[0]
                    .identity_at_admission
                    .as_mut()
                    .unwrap()
                    .record
                    .legal_name = "Someone Else Ltd".into()
            }),
        ),
        (
            "the current identity's address",
            Box::new(|r| {
                r.deployments[0]
                    .identity_current
                    .as_mut()
                    .unwrap()
                    .record
                    .details
                    .addresses[0]
                    .city = "Hamburg".into()
            }),
        ),
        (
            "the developer",
            Box::new(|r| r.deployments[0].certificate.developer = "Other Lab".into()),
        ),
        (
            "the admission time",
            Box::new(|r| r.deployments[0].lifecycle[0].at -= 60_000),
        ),
        (
            "an endpoint",
            Box::new(|r| r.deployments[0].lifecycle[0].endpoints = vec!["10.9.9.9".into()]),
        ),
        (
            "the state",
            Box::new(|r| {
                r.deployments[0].state = warden::domain::deployment::DeploymentState::Released
            }),
        ),
        (
            "the customer",
            Box::new(|r| r.deployments[0].customer_id = "cust-x".into()),
        ),
        (
            "the deployment list",
            Box::new(|r| {
                r.deployments.clear();
            }),
        ),
        (
            "the emergency flag",
            Box::new(|r| r.flagged_for_review = true),
        ),
        (
            "the answer time (state as of then)",
            Box::new(|r| r.answered_at += 10 * 86_400_000),
        ),
    ];
    for (what, edit) in edits {
        let mut r = loaded.clone();
        edit(&mut r);
        assert_ne!(r, loaded, "{what}: the edit changed nothing");
        assert!(
            verify(&r, &env.ledger).is_err(),
            "editing {what} still verified"
        );
    }
    // And a different ledger key refuses the checkpoint.
    let other = warden::ledger::note::Signer::generate("other-ledger")
        .unwrap()
        .verifier();
    assert!(verify(&loaded, &other).is_err());
}

#[tokio::test]
async fn an_endpoint_reassigned_between_customers_gives_the_right_one_for_each_time() {
    let mut env = TestEnv::new();
    let clock = env.manual_clock();
    let server = env.start().await;
    env.register(&server, "first", proto::CustomerStatus::Verified)
        .await;
    env.register(&server, "second", proto::CustomerStatus::Verified)
        .await;
    let t0 = clock.now();
    clock.advance(Duration::from_millis(20));
    let a = admit(&env, &server, "first", &["Infer.Example.test:443"]).await;
    clock.advance(Duration::from_millis(20));
    let t1 = clock.now();
    clock.advance(Duration::from_millis(20));
    env.admission(&server)
        .await
        .release(proto::ReleaseRequest {
            deployment_id: a.clone(),
        })
        .await
        .unwrap();
    clock.advance(Duration::from_millis(20));
    let t2 = clock.now();
    clock.advance(Duration::from_millis(20));
    let b = admit(&env, &server, "second", &["infer.example.test:443"]).await;
    clock.advance(Duration::from_millis(20));
    let t3 = clock.now();

    let mut client = authority(&env, &server).await;
    let ask = |at: i64| {
        let req = by_endpoint("INFER.example.test:443", ts(at));
        let mut client = client.clone();
        async move { client.attribute(req).await.unwrap().into_inner() }
    };
    // Before anyone claimed it: nobody.
    assert!(ask(t0).await.deployments.is_empty());
    // While the first customer ran it.
    let r = ask(t1).await;
    assert_eq!(r.deployments.len(), 1);
    assert_eq!(r.deployments[0].deployment_id, a);
    assert_eq!(r.deployments[0].customer_id, "first");
    assert!(r.deployments[0].held_endpoint);
    verify(&report(r), &env.ledger).unwrap();
    // After the first released it and before the second claimed it: the
    // last claimant, no longer holding it.
    let r = ask(t2).await;
    assert_eq!(r.deployments[0].deployment_id, a);
    assert!(!r.deployments[0].held_endpoint);
    // Once the second customer runs it.
    let r = ask(t3).await;
    assert_eq!(r.deployments[0].deployment_id, b);
    assert_eq!(r.deployments[0].customer_id, "second");
    assert!(r.deployments[0].held_endpoint);
    verify(&report(r), &env.ledger).unwrap();
    client
        .attribute(by_endpoint("10.1.1.1", ts(t3)))
        .await
        .unwrap();
}

#[tokio::test]
async fn model_and_customer_windows_select_overlapping_deployments_and_page() {
    let mut env = TestEnv::new();
    let clock = env.manual_clock();
    let server = env.start().await;
    env.register(&server, "m-one", proto::CustomerStatus::Verified)
        .await;
    env.register(&server, "m-two", proto::CustomerStatus::Verified)
        .await;
    // An early deployment of m-one, released before the window.
    let early = admit(&env, &server, "m-one", &[]).await;
    env.admission(&server)
        .await
        .release(proto::ReleaseRequest {
            deployment_id: early.clone(),
        })
        .await
        .unwrap();
    clock.advance(Duration::from_millis(30));
    // Admitted before the window and released inside it: it overlaps.
    let straddling = admit(&env, &server, "m-one", &[]).await;
    clock.advance(Duration::from_millis(30));
    let from = clock.now();
    env.admission(&server)
        .await
        .release(proto::ReleaseRequest {
            deployment_id: straddling.clone(),
        })
        .await
        .unwrap();
    let mut in_window = vec![straddling.clone()];
    for c in ["m-one", "m-two", "m-one"] {
        in_window.push(admit(&env, &server, c, &[]).await);
    }
    let to = clock.now();
    clock.advance(Duration::from_millis(30));
    let late = admit(&env, &server, "m-two", &[]).await;

    let mut client = authority(&env, &server).await;
    let model = |page_size: u32, page_token: String| proto::AttributeRequest {
        legal_process: legal(proto::Instrument::Subpoena),
        selector: Some(proto::attribute_request::Selector::Model(
            proto::ModelSelector {
                model_digest: env.sample_digest(),
                from: Some(ts(from)),
                to: Some(ts(to)),
            },
        )),
        page_size,
        page_token,
    };
    let r = client
        .attribute(model(0, String::new()))
        .await
        .unwrap()
        .into_inner();
    let mut got: Vec<String> = r
        .deployments
        .iter()
        .map(|d| d.deployment_id.clone())
        .collect();
    got.sort();
    let mut want = in_window.clone();
    want.sort();
    assert_eq!(got, want, "released-before and admitted-after are outside");
    assert!(!got.contains(&early) && !got.contains(&late));
    verify(&report(r), &env.ledger).unwrap();

    // Two per page: the rest come on the next pages, then nothing.
    let mut seen = Vec::new();
    let mut token = String::new();
    let mut model_token = String::new();
    for _ in 0..5 {
        let r = client
            .attribute(model(2, token))
            .await
            .unwrap()
            .into_inner();
        assert!(r.deployments.len() <= 2);
        seen.extend(r.deployments.iter().map(|d| d.deployment_id.clone()));
        token = r.next_page_token;
        if token.is_empty() {
            break;
        }
        model_token.clone_from(&token);
    }
    assert!(!model_token.is_empty());
    seen.sort();
    assert_eq!(seen, want);

    // By customer: only m-one's deployment(s) in the window.
    let r = client
        .attribute(proto::AttributeRequest {
            legal_process: legal(proto::Instrument::Subpoena),
            selector: Some(proto::attribute_request::Selector::Customer(
                proto::CustomerSelector {
                    customer_id: "m-one".into(),
                    from: Some(ts(from)),
                    to: Some(ts(clock.now())),
                },
            )),
            page_size: 0,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut got: Vec<String> = r
        .deployments
        .iter()
        .map(|d| d.deployment_id.clone())
        .collect();
    got.sort();
    let mut want = vec![straddling, in_window[1].clone(), in_window[3].clone()];
    want.sort();
    assert_eq!(got, want);
    assert!(r.deployments.iter().all(|d| d.customer_id == "m-one"));
    // A page token from another selector is refused.
    let e = client
        .attribute(proto::AttributeRequest {
            page_token: hex::encode(b"mzzz"),
            ..model(1, String::new())
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("page_token"), "{}", e.message());
    // So is a real token of the model selector given to a customer one.
    let e = client
        .attribute(proto::AttributeRequest {
            legal_process: legal(proto::Instrument::Subpoena),
            selector: Some(proto::attribute_request::Selector::Customer(
                proto::CustomerSelector {
                    customer_id: "m-one".into(),
                    from: Some(ts(from)),
                    to: Some(ts(now_ms())),
                },
            )),
            page_size: 1,
            page_token: model_token,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("page_token"), "{}", e.message());
}

#[tokio::test]
async fn missing_or_malformed_legal_process_is_refused_and_nothing_is_logged() {
    let env = TestEnv::new();
    let server = env.start().await;
    env.register(&server, "cust-l", proto::CustomerStatus::Verified)
        .await;
    let id = admit(&env, &server, "cust-l", &[]).await;
    let before = ledger_size(&env, &server).await;
    let mut client = authority(&env, &server).await;
    let cases: Vec<(proto::AttributeRequest, &str)> = vec![
        (
            proto::AttributeRequest {
                legal_process: None,
                ..by_deployment(&id)
            },
            "legal_process",
        ),
        (
            {
                let mut r = by_deployment(&id);
                r.legal_process.as_mut().unwrap().case_reference.clear();
                r
            },
            "legal_process.case_reference",
        ),
        (
            {
                let mut r = by_deployment(&id);
                r.legal_process.as_mut().unwrap().instrument = 0;
                r
            },
            "legal_process.instrument",
        ),
        (
            {
                let mut r = by_deployment(&id);
                r.legal_process.as_mut().unwrap().jurisdiction = "Narnia".into();
                r
            },
            "legal_process.jurisdiction",
        ),
        (
            {
                let mut r = by_deployment(&id);
                r.legal_process.as_mut().unwrap().document_sha256 = "not-a-hash".into();
                r
            },
            "legal_process.document_sha256",
        ),
        (
            proto::AttributeRequest {
                selector: None,
                ..by_deployment(&id)
            },
            "selector",
        ),
        (
            by_endpoint("10.0.0.1", prost_types::Timestamp::default()),
            "",
        ),
    ];
    for (req, field) in cases {
        let mut req = req;
        if field.is_empty() {
            // An endpoint selector without a time.
            if let Some(proto::attribute_request::Selector::Endpoint(e)) = req.selector.as_mut() {
                e.at = None;
            }
        }
        let e = client.attribute(req).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        let field = if field.is_empty() {
            "endpoint.at"
        } else {
            field
        };
        assert!(e.message().contains(field), "{field}: {}", e.message());
    }
    assert_eq!(ledger_size(&env, &server).await, before, "nothing logged");
    assert!(requests(&env, &server).await.is_empty());
}

#[tokio::test]
async fn every_request_is_accounted_for_and_only_authorities_and_auditors_see_them() {
    let env = TestEnv::new();
    let server = env.start().await;
    env.register(&server, "cust-r", proto::CustomerStatus::Verified)
        .await;
    let id = admit(&env, &server, "cust-r", &["10.2.0.1"]).await;
    let mut client = authority(&env, &server).await;
    let first = client
        .attribute(by_deployment(&id))
        .await
        .unwrap()
        .into_inner();
    // An emergency request is answered and flagged.
    let mut emergency = by_deployment(&id);
    emergency.legal_process = legal(proto::Instrument::Emergency);
    let second = client.attribute(emergency).await.unwrap().into_inner();
    assert!(second.flagged_for_review);
    assert_eq!(second.deployments.len(), 1);
    // A request that matches nothing is still recorded.
    let third = client
        .attribute(by_deployment("dep-does-not-exist"))
        .await
        .unwrap()
        .into_inner();
    assert!(third.deployments.is_empty());

    let listed = requests(&env, &server).await;
    assert_eq!(listed.len(), 3, "auditors see every request");
    // Newest first.
    assert_eq!(listed[0].request_id, third.request_id);
    assert_eq!(listed[1].request_id, second.request_id);
    assert_eq!(listed[2].request_id, first.request_id);
    assert!(listed[1].flagged_for_review && !listed[2].flagged_for_review);
    let r = &listed[2];
    assert!(r.principal.contains("/authority/"), "{}", r.principal);
    assert_eq!(
        r.legal_process.as_ref().unwrap().case_reference,
        "CASE-2026-117"
    );
    assert_eq!(r.selector, format!("deployment {id}"));
    assert!(r.answered);
    assert_eq!(r.deployments_disclosed, 1);
    assert_eq!(r.request_ledger_index, first.request_ledger_index);
    assert_eq!(r.disclosure_ledger_index, first.disclosure_ledger_index);
    // Identities appear as commitments only.
    assert_eq!(r.identities_disclosed.len(), 1);
    let disclosed = &r.identities_disclosed[0];
    assert_eq!(disclosed.customer_id, "cust-r");
    assert!(disclosed.commitment.starts_with("sha256:"));
    assert_eq!(
        disclosed.commitment,
        first.deployments[0]
            .identity_at_admission
            .as_ref()
            .unwrap()
            .commitment
    );
    assert_eq!(listed[0].deployments_disclosed, 0);
    // Authorities may list too; paging walks all three.
    let mut authority_list = authority(&env, &server).await;
    let page = authority_list
        .list_attribution_requests(proto::ListAttributionRequestsRequest {
            page_size: 2,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.requests.len(), 2);
    let rest = authority_list
        .list_attribution_requests(proto::ListAttributionRequestsRequest {
            page_size: 2,
            page_token: page.next_page_token,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rest.requests.len(), 1);
    assert_eq!(rest.requests[0].request_id, first.request_id);

    // Schedulers, kyc and operators are refused; nothing is logged for them.
    let before = ledger_size(&env, &server).await;
    for role in ["scheduler", "kyc", "operator", "auditor", "admin"] {
        let mut c = AttributionClient::new(env.channel(&server, role).await);
        let e = c.attribute(by_deployment(&id)).await.unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{role}");
    }
    for role in ["scheduler", "kyc", "operator", "admin"] {
        let mut c = AttributionClient::new(env.channel(&server, role).await);
        let e = c
            .list_attribution_requests(proto::ListAttributionRequestsRequest::default())
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{role}");
    }
    assert_eq!(ledger_size(&env, &server).await, before);
}

#[tokio::test]
async fn orders_and_acknowledgements_are_in_the_lifecycle_and_survive_restart() {
    use warden::proto::orders_client::OrdersClient;
    let mut env = TestEnv::new();
    env.config.orders.terminate_quorum = 1;
    let server = env.start().await;
    env.register(&server, "cust-o", proto::CustomerStatus::Verified)
        .await;
    let id = admit(&env, &server, "cust-o", &["10.3.0.1:80"]).await;
    let order = OrdersClient::new(env.channel(&server, "operator").await)
        .issue_order(proto::IssueOrderRequest {
            target: Some(proto::OrderTarget {
                kind: proto::OrderTargetKind::Deployment as i32,
                value: id.clone(),
            }),
            action: proto::OrderAction::Terminate as i32,
            reason: "incident".into(),
            legal_basis: String::new(),
            expires_at: None,
        })
        .await
        .unwrap()
        .into_inner();
    OrdersClient::new(env.channel(&server, "scheduler").await)
        .ack_order(proto::AckOrderRequest {
            order_id: order.order_id.clone(),
            deployment_id: id.clone(),
            stopped_at: Some(ts(now_ms())),
            outcome: "stopped".into(),
        })
        .await
        .unwrap();
    server.stop().await;
    let server = env.start().await;
    let r = authority(&env, &server)
        .await
        .attribute(by_deployment(&id))
        .await
        .unwrap()
        .into_inner();
    let d = &r.deployments[0];
    assert_eq!(
        kinds(d),
        vec![
            proto::LifecycleKind::Admitted,
            proto::LifecycleKind::Terminated,
            proto::LifecycleKind::Acknowledged,
        ]
    );
    assert_eq!(d.lifecycle[1].order_id, order.order_id);
    assert_eq!(d.state, proto::DeploymentState::Terminated as i32);
    verify(&report(r), &env.ledger).unwrap();
}
