//! Kill orders end to end: quorum, atomic activation, what an active order
//! denies, lifting, acknowledgements, expiry, the resumable watch stream,
//! restarts and shutdown with open watches.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{after_ticks, TestEnv, TestServer};
use tonic::transport::Channel;
use tonic::Code;
use warden::clock::Clock;
use warden::proto;
use warden::proto::orders_client::OrdersClient;
use warden::proto::ReasonCode as Rc;

// ---------------------------------------------------------------------------
// Helpers

async fn orders_as(
    env: &TestEnv,
    server: &TestServer,
    role: &str,
    name: &str,
) -> OrdersClient<Channel> {
    OrdersClient::new(env.channel_as(server, role, name).await)
}

fn customer_target(id: &str) -> Option<proto::OrderTarget> {
    Some(proto::OrderTarget {
        kind: proto::OrderTargetKind::Customer as i32,
        value: id.into(),
    })
}

fn issue(
    target: Option<proto::OrderTarget>,
    action: proto::OrderAction,
) -> proto::IssueOrderRequest {
    proto::IssueOrderRequest {
        target,
        action: action as i32,
        reason: "harmful outputs reported".into(),
        legal_basis: String::new(),
        expires_at: None,
    }
}

/// Registers `customer` VERIFIED and admits `n` deployments for it.
async fn deployments(env: &TestEnv, server: &TestServer, customer: &str, n: usize) -> Vec<String> {
    env.register(server, customer, proto::CustomerStatus::Verified)
        .await;
    let mut admission = env.admission(server).await;
    let leaf = env.leaf();
    let mut ids = Vec::new();
    for _ in 0..n {
        let r = admission
            .admit(env.admit_request(customer, &env.chain(&leaf)))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.decision, proto::Decision::Allow as i32, "{r:?}");
        ids.push(r.deployment_id);
    }
    ids
}

async fn state_of(env: &TestEnv, server: &TestServer, id: &str) -> proto::DeploymentState {
    let d = env
        .admission(server)
        .await
        .get_deployment(proto::GetDeploymentRequest {
            deployment_id: id.into(),
        })
        .await
        .unwrap()
        .into_inner();
    proto::DeploymentState::try_from(d.state).unwrap()
}

async fn renew_codes(env: &TestEnv, server: &TestServer, id: &str) -> Vec<i32> {
    let r = env
        .admission(server)
        .await
        .renew(proto::RenewRequest {
            deployment_id: id.into(),
            endpoints: vec![],
        })
        .await
        .unwrap()
        .into_inner();
    r.reasons.iter().map(|x| x.code).collect()
}

async fn admit_codes(
    env: &TestEnv,
    server: &TestServer,
    customer: &str,
) -> (i32, Vec<proto::Reason>) {
    let r = env
        .admission(server)
        .await
        .admit(env.admit_request(customer, &env.chain(&env.leaf())))
        .await
        .unwrap()
        .into_inner();
    (r.decision, r.reasons)
}

fn state(o: &proto::Order) -> proto::OrderState {
    proto::OrderState::try_from(o.state).unwrap()
}

/// Reads `n` events from a watch stream, failing after 5 s.
async fn next_events(
    stream: &mut tonic::Streaming<proto::OrderEvent>,
    n: usize,
) -> Vec<proto::OrderEvent> {
    let mut out = Vec::new();
    while out.len() < n {
        let e = tokio::time::timeout(Duration::from_secs(5), stream.message())
            .await
            .expect("no event within 5 s")
            .unwrap()
            .expect("stream ended");
        out.push(e);
    }
    out
}

fn kinds(events: &[proto::OrderEvent]) -> Vec<proto::OrderEventKind> {
    events
        .iter()
        .map(|e| proto::OrderEventKind::try_from(e.kind).unwrap())
        .collect()
}

// ---------------------------------------------------------------------------
// Quorum

#[tokio::test]
async fn termination_needs_two_distinct_principals_of_the_right_roles() {
    let env = TestEnv::new();
    let server = env.start().await;
    let ids = deployments(&env, &server, "q-1", 1).await;
    let mut alice = orders_as(&env, &server, "operator", "alice").await;
    let o = alice
        .issue_order(issue(customer_target("q-1"), proto::OrderAction::Terminate))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(state(&o), proto::OrderState::Pending);
    assert_eq!(
        (o.quorum, o.approvals.len()),
        (2, 1),
        "the issuer counts once"
    );
    // The issuer approving again does not count and is refused clearly.
    let again = alice
        .approve_order(proto::ApproveOrderRequest {
            order_id: o.order_id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition);
    assert!(
        again.message().contains("already approved"),
        "{}",
        again.message()
    );
    // Wrong roles are refused.
    for role in ["scheduler", "kyc", "auditor", "admin"] {
        let e = orders_as(&env, &server, role, "x")
            .await
            .approve_order(proto::ApproveOrderRequest {
                order_id: o.order_id.clone(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{role}");
    }
    assert_eq!(
        state_of(&env, &server, &ids[0]).await,
        proto::DeploymentState::Active
    );
    // A second, distinct principal (another role allowed) completes quorum.
    let o = orders_as(&env, &server, "authority", "bob")
        .await
        .approve_order(proto::ApproveOrderRequest {
            order_id: o.order_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(state(&o), proto::OrderState::Active);
    assert_eq!(o.matched_deployments, ids);
    assert_eq!(
        state_of(&env, &server, &ids[0]).await,
        proto::DeploymentState::Terminated
    );
    // Approving an active order is refused.
    let late = orders_as(&env, &server, "operator", "carol")
        .await
        .approve_order(proto::ApproveOrderRequest {
            order_id: o.order_id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(late.code(), Code::FailedPrecondition);
    server.stop().await;
}

#[tokio::test]
async fn bad_orders_name_their_fields_and_change_nothing() {
    let env = TestEnv::new();
    let server = env.start().await;
    let mut op = orders_as(&env, &server, "operator", "alice").await;
    let e = op
        .issue_order(proto::IssueOrderRequest {
            target: Some(proto::OrderTarget {
                kind: proto::OrderTargetKind::ModelDigest as i32,
                value: "sha256:xyz".into(),
            }),
            action: 0,
            reason: String::new(),
            legal_basis: String::new(),
            expires_at: Some(prost_types::Timestamp {
                seconds: 1,
                nanos: 0,
            }),
        })
        .await
        .unwrap_err();
    use tonic_types::StatusExt as _;
    assert_eq!(e.code(), Code::InvalidArgument);
    let fields: Vec<String> = e
        .get_details_bad_request()
        .unwrap()
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect();
    for f in ["target.value", "action", "reason", "expires_at"] {
        assert!(fields.contains(&f.to_string()), "{f} not in {fields:?}");
    }
    let listed = op
        .list_orders(proto::ListOrdersRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.orders.is_empty());
    let missing = op
        .approve_order(proto::ApproveOrderRequest {
            order_id: "ord-missing".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    server.stop().await;
}

#[tokio::test]
async fn orders_with_invisible_characters_in_their_free_text_are_refused() {
    let env = TestEnv::new();
    let server = env.start().await;
    let mut op = orders_as(&env, &server, "operator", "alice").await;
    let mut r = issue(customer_target("cust-1"), proto::OrderAction::Suspend);
    r.reason = "harmful\u{200b} outputs reported".into();
    r.legal_basis = "Art.\u{202e} 5".into();
    let e = op.issue_order(r).await.unwrap_err();
    use tonic_types::StatusExt as _;
    assert_eq!(e.code(), Code::InvalidArgument);
    let mut fields: Vec<String> = e
        .get_details_bad_request()
        .unwrap()
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect();
    fields.sort();
    assert_eq!(fields, ["legal_basis", "reason"]);
    let listed = op
        .list_orders(proto::ListOrdersRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.orders.is_empty());
    server.stop().await;
}

// ---------------------------------------------------------------------------
// Activation, denial, lifting

#[tokio::test]
async fn activation_changes_every_match_at_once_and_denies_until_lifted_by_quorum() {
    let env = TestEnv::new();
    let server = env.start().await;
    let hit = deployments(&env, &server, "act-1", 3).await;
    let spared = deployments(&env, &server, "act-2", 1).await;
    let mut alice = orders_as(&env, &server, "operator", "alice").await;
    // SUSPEND needs one approval: active at once.
    let o = alice
        .issue_order(issue(customer_target("act-1"), proto::OrderAction::Suspend))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(state(&o), proto::OrderState::Active);
    let mut matched = o.matched_deployments.clone();
    matched.sort();
    let mut want = hit.clone();
    want.sort();
    assert_eq!(matched, want);
    for d in &hit {
        assert_eq!(
            state_of(&env, &server, d).await,
            proto::DeploymentState::Suspended
        );
        assert_eq!(
            renew_codes(&env, &server, d).await,
            vec![Rc::OrderActive as i32]
        );
    }
    assert_eq!(
        state_of(&env, &server, &spared[0]).await,
        proto::DeploymentState::Active
    );
    assert!(renew_codes(&env, &server, &spared[0]).await.is_empty());
    // New admissions of the target are denied, naming the order.
    let (decision, reasons) = admit_codes(&env, &server, "act-1").await;
    assert_eq!(decision, proto::Decision::Deny as i32);
    assert_eq!(reasons.len(), 1);
    assert_eq!(reasons[0].code, Rc::OrderActive as i32);
    assert!(
        reasons[0].message.contains(&o.order_id),
        "{}",
        reasons[0].message
    );
    assert_eq!(
        admit_codes(&env, &server, "act-2").await.0,
        proto::Decision::Allow as i32
    );

    // Unacknowledged deployments are listed with how long they have waited.
    let listed = alice
        .list_orders(proto::ListOrdersRequest {
            state: proto::OrderState::Active as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.orders.len(), 1);
    assert_eq!(listed.orders[0].unacknowledged.len(), 3);

    // Lifting needs two: one request is not enough, and the same principal
    // cannot count twice.
    let o = alice
        .lift_order(proto::LiftOrderRequest {
            order_id: o.order_id.clone(),
            reason: "model patched".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(state(&o), proto::OrderState::Active);
    assert_eq!(o.lift_approvals.len(), 1);
    let twice = alice
        .lift_order(proto::LiftOrderRequest {
            order_id: o.order_id.clone(),
            reason: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(twice.code(), Code::FailedPrecondition);
    assert_eq!(
        admit_codes(&env, &server, "act-1").await.0,
        proto::Decision::Deny as i32
    );
    let o = orders_as(&env, &server, "authority", "bob")
        .await
        .lift_order(proto::LiftOrderRequest {
            order_id: o.order_id.clone(),
            reason: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(state(&o), proto::OrderState::Lifted);
    for d in &hit {
        assert_eq!(
            state_of(&env, &server, d).await,
            proto::DeploymentState::Active
        );
        assert!(renew_codes(&env, &server, d).await.is_empty());
    }
    assert_eq!(
        admit_codes(&env, &server, "act-1").await.0,
        proto::Decision::Allow as i32
    );
    server.stop().await;
}

#[tokio::test]
async fn schedulers_acknowledge_their_own_matched_deployments_once() {
    let env = TestEnv::new();
    let server = env.start().await;
    let ids = deployments(&env, &server, "ack-1", 2).await;
    let o = orders_as(&env, &server, "operator", "alice")
        .await
        .issue_order(issue(customer_target("ack-1"), proto::OrderAction::Suspend))
        .await
        .unwrap()
        .into_inner();
    let ack = |deployment: &str| proto::AckOrderRequest {
        order_id: o.order_id.clone(),
        deployment_id: deployment.into(),
        stopped_at: Some(prost_types::Timestamp {
            seconds: time::OffsetDateTime::now_utc().unix_timestamp(),
            nanos: 0,
        }),
        outcome: "stopped".into(),
    };
    let mut scheduler = OrdersClient::new(env.channel(&server, "scheduler").await);
    let after = scheduler
        .ack_order(ack(&ids[0]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(after.acks.len(), 1);
    assert_eq!(after.acks[0].deployment_id, ids[0]);
    assert_eq!(
        after
            .unacknowledged
            .iter()
            .map(|p| p.deployment_id.clone())
            .collect::<Vec<_>>(),
        vec![ids[1].clone()]
    );
    let twice = scheduler.ack_order(ack(&ids[0])).await.unwrap_err();
    assert_eq!(twice.code(), Code::FailedPrecondition);
    // Another scheduler may not acknowledge what it did not admit.
    let other = orders_as(&env, &server, "scheduler", "other")
        .await
        .ack_order(ack(&ids[1]))
        .await
        .unwrap_err();
    assert_eq!(other.code(), Code::NotFound);
    // An operator may not acknowledge at all.
    let op = orders_as(&env, &server, "operator", "alice")
        .await
        .ack_order(ack(&ids[1]))
        .await
        .unwrap_err();
    assert_eq!(op.code(), Code::PermissionDenied);
    server.stop().await;
}

#[tokio::test]
async fn an_order_past_its_expiry_ends_and_releases_what_it_suspended() {
    let mut env = TestEnv::new();
    let clock = env.manual_clock();
    let server = env.start().await;
    let ids = deployments(&env, &server, "exp-1", 1).await;
    let mut req = issue(customer_target("exp-1"), proto::OrderAction::Suspend);
    req.expires_at = Some(prost_types::Timestamp {
        seconds: clock.now().div_euclid(1000) + 2,
        nanos: 0,
    });
    let mut watch = OrdersClient::new(env.channel(&server, "scheduler").await)
        .watch_orders(proto::WatchOrdersRequest { since_revision: 0 })
        .await
        .unwrap()
        .into_inner();
    let o = orders_as(&env, &server, "operator", "alice")
        .await
        .issue_order(req)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        state_of(&env, &server, &ids[0]).await,
        proto::DeploymentState::Suspended
    );
    // The expiry task looks every second on the server's clock.
    let auditor = OrdersClient::new(env.channel(&server, "auditor").await);
    let order_id = o.order_id.clone();
    after_ticks(&clock, Duration::from_secs(1), "the order expires", || {
        let (mut auditor, order_id) = (auditor.clone(), order_id.clone());
        async move {
            let got = auditor
                .get_order(proto::GetOrderRequest { order_id })
                .await
                .unwrap()
                .into_inner();
            state(&got) == proto::OrderState::Expired
        }
    })
    .await;
    let events = next_events(&mut watch, 3).await;
    assert_eq!(
        kinds(&events),
        [
            proto::OrderEventKind::Issued,
            proto::OrderEventKind::Activated,
            proto::OrderEventKind::Expired
        ]
    );
    assert_eq!(events[2].deployment_ids, ids);
    let got = OrdersClient::new(env.channel(&server, "auditor").await)
        .get_order(proto::GetOrderRequest {
            order_id: o.order_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(state(&got), proto::OrderState::Expired);
    assert_eq!(
        state_of(&env, &server, &ids[0]).await,
        proto::DeploymentState::Active
    );
    server.stop().await;
}

// ---------------------------------------------------------------------------
// Watching

#[tokio::test]
async fn a_watcher_that_reconnects_gets_exactly_the_events_it_missed() {
    let env = TestEnv::new();
    let server = env.start().await;
    let ids = deployments(&env, &server, "w-1", 2).await;
    deployments(&env, &server, "w-2", 1).await;
    let mut alice = orders_as(&env, &server, "operator", "alice").await;
    let mut bob = orders_as(&env, &server, "authority", "bob").await;
    let mut scheduler = OrdersClient::new(env.channel(&server, "scheduler").await);

    let mut stream = scheduler
        .watch_orders(proto::WatchOrdersRequest { since_revision: 0 })
        .await
        .unwrap()
        .into_inner();
    let first = alice
        .issue_order(issue(customer_target("w-1"), proto::OrderAction::Suspend))
        .await
        .unwrap()
        .into_inner();
    let seen = next_events(&mut stream, 2).await;
    assert_eq!(
        kinds(&seen),
        [
            proto::OrderEventKind::Issued,
            proto::OrderEventKind::Activated
        ]
    );
    assert_eq!(seen[0].revision, 1);
    assert_eq!(seen[1].revision, 2);
    let mut affected = seen[1].deployment_ids.clone();
    affected.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(affected, want);
    assert_eq!(seen[1].order.as_ref().unwrap().order_id, first.order_id);
    // Disconnect mid-stream.
    drop(stream);

    // Meanwhile: a termination through quorum, and a lift request.
    let t = alice
        .issue_order(issue(customer_target("w-2"), proto::OrderAction::Terminate))
        .await
        .unwrap()
        .into_inner();
    bob.approve_order(proto::ApproveOrderRequest {
        order_id: t.order_id.clone(),
    })
    .await
    .unwrap();
    alice
        .lift_order(proto::LiftOrderRequest {
            order_id: first.order_id.clone(),
            reason: "review".into(),
        })
        .await
        .unwrap();

    // Reconnect from the last revision seen: exactly the missed events.
    let mut stream = scheduler
        .watch_orders(proto::WatchOrdersRequest { since_revision: 2 })
        .await
        .unwrap()
        .into_inner();
    let missed = next_events(&mut stream, 4).await;
    assert_eq!(
        missed.iter().map(|e| e.revision).collect::<Vec<_>>(),
        [3, 4, 5, 6]
    );
    assert_eq!(
        kinds(&missed),
        [
            proto::OrderEventKind::Issued,
            proto::OrderEventKind::Approved,
            proto::OrderEventKind::Activated,
            proto::OrderEventKind::LiftRequested
        ]
    );
    // Then live events follow without a gap or a duplicate.
    bob.lift_order(proto::LiftOrderRequest {
        order_id: first.order_id.clone(),
        reason: String::new(),
    })
    .await
    .unwrap();
    let live = next_events(&mut stream, 1).await;
    assert_eq!(live[0].revision, 7);
    assert_eq!(kinds(&live), [proto::OrderEventKind::Lifted]);
    // Nothing else arrives.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), stream.message())
            .await
            .is_err()
    );
    server.stop().await;
}

#[tokio::test]
async fn restart_keeps_orders_deployment_states_and_revisions() {
    let env = TestEnv::new();
    let server = env.start().await;
    let ids = deployments(&env, &server, "r-1", 1).await;
    let o = orders_as(&env, &server, "operator", "alice")
        .await
        .issue_order(issue(customer_target("r-1"), proto::OrderAction::Suspend))
        .await
        .unwrap()
        .into_inner();
    server.stop().await;

    let server = env.start().await;
    let got = OrdersClient::new(env.channel(&server, "auditor").await)
        .get_order(proto::GetOrderRequest {
            order_id: o.order_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            got.state,
            &got.matched_deployments,
            &got.approvals,
            got.quorum
        ),
        (o.state, &o.matched_deployments, &o.approvals, o.quorum)
    );
    assert_eq!(
        state_of(&env, &server, &ids[0]).await,
        proto::DeploymentState::Suspended
    );
    assert_eq!(
        admit_codes(&env, &server, "r-1").await.0,
        proto::Decision::Deny as i32
    );
    let mut stream = OrdersClient::new(env.channel(&server, "scheduler").await)
        .watch_orders(proto::WatchOrdersRequest { since_revision: 0 })
        .await
        .unwrap()
        .into_inner();
    let replayed = next_events(&mut stream, 2).await;
    assert_eq!(
        replayed.iter().map(|e| e.revision).collect::<Vec<_>>(),
        [1, 2]
    );
    // New events continue the numbering.
    env.register(&server, "r-2", proto::CustomerStatus::Verified)
        .await;
    orders_as(&env, &server, "operator", "alice")
        .await
        .issue_order(issue(customer_target("r-2"), proto::OrderAction::Suspend))
        .await
        .unwrap();
    let next = next_events(&mut stream, 2).await;
    assert_eq!(next.iter().map(|e| e.revision).collect::<Vec<_>>(), [3, 4]);
    server.stop().await;
}

#[tokio::test]
async fn shutdown_with_a_hundred_open_watches_finishes_within_the_drain_limit() {
    let mut env = TestEnv::new();
    // One principal holds them all: allow it (and its connection) that many.
    env.config.limits.max_watches_per_principal = 100;
    env.config.limits.max_streams_per_connection = 128;
    let server = env.start().await;
    let channel = env.channel(&server, "scheduler").await;
    let mut streams = Vec::new();
    for _ in 0..100 {
        streams.push(
            OrdersClient::new(channel.clone())
                .watch_orders(proto::WatchOrdersRequest { since_revision: 0 })
                .await
                .unwrap()
                .into_inner(),
        );
    }
    let started = std::time::Instant::now();
    // `stop` fails the test if the drain takes longer than 10 s; the
    // configured grace is 5 s and streams must end well before.
    server.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "drain took {:?}",
        started.elapsed()
    );
    // Each watcher was told to resume.
    let mut told = 0;
    for mut s in streams {
        if let Err(status) = s.message().await {
            assert_eq!(status.code(), Code::Unavailable);
            assert!(
                status.message().contains("since_revision=0"),
                "{}",
                status.message()
            );
            told += 1;
        }
    }
    assert_eq!(told, 100);
}

#[tokio::test]
async fn the_order_of_a_deployment_target_only_stops_that_deployment() {
    let env = TestEnv::new();
    let server = env.start().await;
    let ids = deployments(&env, &server, "dep-1", 2).await;
    let o = orders_as(&env, &server, "operator", "alice")
        .await
        .issue_order(issue(
            Some(proto::OrderTarget {
                kind: proto::OrderTargetKind::Deployment as i32,
                value: ids[0].clone(),
            }),
            proto::OrderAction::Suspend,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(o.matched_deployments, vec![ids[0].clone()]);
    assert_eq!(
        state_of(&env, &server, &ids[0]).await,
        proto::DeploymentState::Suspended
    );
    assert_eq!(
        state_of(&env, &server, &ids[1]).await,
        proto::DeploymentState::Active
    );
    assert_eq!(
        admit_codes(&env, &server, "dep-1").await.0,
        proto::Decision::Allow as i32
    );
    server.stop().await;
}

#[tokio::test]
async fn overlapping_orders_keep_deployments_stopped_until_the_last_lets_go() {
    let env = TestEnv::new();
    let server = env.start().await;
    let ids = deployments(&env, &server, "ov-1", 2).await;
    let mut alice = orders_as(&env, &server, "operator", "alice").await;
    let mut bob = orders_as(&env, &server, "authority", "bob").await;
    let lift = |id: String| proto::LiftOrderRequest {
        order_id: id,
        reason: String::new(),
    };
    // Two suspensions over the same deployments: one of the customer, one
    // of the first deployment alone.
    let by_customer = alice
        .issue_order(issue(customer_target("ov-1"), proto::OrderAction::Suspend))
        .await
        .unwrap()
        .into_inner();
    let by_deployment = alice
        .issue_order(issue(
            Some(proto::OrderTarget {
                kind: proto::OrderTargetKind::Deployment as i32,
                value: ids[0].clone(),
            }),
            proto::OrderAction::Suspend,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(
        by_deployment.matched_deployments.is_empty(),
        "already suspended"
    );
    // Lifting the customer's order releases only what no other order holds.
    alice
        .lift_order(lift(by_customer.order_id.clone()))
        .await
        .unwrap();
    bob.lift_order(lift(by_customer.order_id.clone()))
        .await
        .unwrap();
    assert_eq!(
        state_of(&env, &server, &ids[0]).await,
        proto::DeploymentState::Suspended
    );
    assert_eq!(
        renew_codes(&env, &server, &ids[0]).await,
        vec![Rc::OrderActive as i32]
    );
    assert_eq!(
        state_of(&env, &server, &ids[1]).await,
        proto::DeploymentState::Active
    );

    // A termination ends what a suspension holds, and lifting the
    // suspension afterwards does not bring it back.
    let t = alice
        .issue_order(issue(
            customer_target("ov-1"),
            proto::OrderAction::Terminate,
        ))
        .await
        .unwrap()
        .into_inner();
    let t = bob
        .approve_order(proto::ApproveOrderRequest {
            order_id: t.order_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut matched = t.matched_deployments.clone();
    matched.sort();
    let mut all = ids.clone();
    all.sort();
    assert_eq!(matched, all);
    alice
        .lift_order(lift(by_deployment.order_id.clone()))
        .await
        .unwrap();
    bob.lift_order(lift(by_deployment.order_id.clone()))
        .await
        .unwrap();
    for d in &ids {
        assert_eq!(
            state_of(&env, &server, d).await,
            proto::DeploymentState::Terminated
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn a_suspension_handed_over_by_a_lift_ends_when_the_second_order_is_lifted() {
    let env = TestEnv::new();
    let server = env.start().await;
    let ids = deployments(&env, &server, "ho-1", 1).await;
    let mut alice = orders_as(&env, &server, "operator", "alice").await;
    let mut bob = orders_as(&env, &server, "authority", "bob").await;
    let lift = |id: String| proto::LiftOrderRequest {
        order_id: id,
        reason: String::new(),
    };
    let by_customer = alice
        .issue_order(issue(customer_target("ho-1"), proto::OrderAction::Suspend))
        .await
        .unwrap()
        .into_inner();
    // The second suspension matches a deployment that is already held: it
    // holds it only once the first is lifted.
    let by_deployment = alice
        .issue_order(issue(
            Some(proto::OrderTarget {
                kind: proto::OrderTargetKind::Deployment as i32,
                value: ids[0].clone(),
            }),
            proto::OrderAction::Suspend,
        ))
        .await
        .unwrap()
        .into_inner();
    for o in [&by_customer, &by_deployment] {
        alice.lift_order(lift(o.order_id.clone())).await.unwrap();
        bob.lift_order(lift(o.order_id.clone())).await.unwrap();
        let expected = if o.order_id == by_customer.order_id {
            proto::DeploymentState::Suspended
        } else {
            proto::DeploymentState::Active
        };
        assert_eq!(state_of(&env, &server, &ids[0]).await, expected);
    }
    assert!(renew_codes(&env, &server, &ids[0]).await.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn schedulers_read_orders_without_free_text_and_the_ledger_holds_no_guessable_reason() {
    let env = TestEnv::new();
    let server = env.start().await;
    deployments(&env, &server, "txt-1", 1).await;
    let mut req = issue(customer_target("txt-1"), proto::OrderAction::Suspend);
    req.legal_basis = "Court order 2026/117".into();
    let o = orders_as(&env, &server, "operator", "alice")
        .await
        .issue_order(req)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(o.reason, "harmful outputs reported");
    let get = |role: &'static str| {
        let env = &env;
        let server = &server;
        let id = o.order_id.clone();
        async move {
            OrdersClient::new(env.channel(server, role).await)
                .get_order(proto::GetOrderRequest { order_id: id })
                .await
                .unwrap()
                .into_inner()
        }
    };
    let auditor = get("auditor").await;
    assert_eq!(auditor.legal_basis, "Court order 2026/117");
    let scheduler = get("scheduler").await;
    assert_eq!(
        (scheduler.reason.as_str(), scheduler.legal_basis.as_str()),
        ("", "")
    );
    assert_eq!(scheduler.matched_deployments, auditor.matched_deployments);
    let mut watch = OrdersClient::new(env.channel(&server, "scheduler").await)
        .watch_orders(proto::WatchOrdersRequest { since_revision: 0 })
        .await
        .unwrap()
        .into_inner();
    for e in next_events(&mut watch, 2).await {
        assert_eq!(e.order.unwrap().reason, "");
    }
    // The ledger commits to the reason with a salt: neither the text nor
    // its plain SHA-256 is there.
    let entries = proto::ledger_client::LedgerClient::new(env.channel(&server, "auditor").await)
        .get_entries(proto::GetEntriesRequest {
            start: 0,
            count: 1000,
        })
        .await
        .unwrap()
        .into_inner()
        .entries;
    let order_entry = entries
        .iter()
        .map(|e| String::from_utf8(e.data.clone()).unwrap())
        .find(|s| s.contains("\"kind\":\"order\""))
        .unwrap();
    assert!(order_entry.contains("reason_commitment"), "{order_entry}");
    assert!(!order_entry.contains("harmful"), "{order_entry}");
    assert!(!order_entry.contains("Court order"), "{order_entry}");
    let plain = {
        use sha2::{Digest as _, Sha256};
        hex::encode(Sha256::digest(b"harmful outputs reported"))
    };
    assert!(!order_entry.contains(&plain), "{order_entry}");
    server.stop().await;
}
