//! Orders find what they act on: an engine may find the deployments an
//! order's target names any way it likes (an index, a query), but it must
//! offer the order every deployment it may act on, by every kind of target,
//! however those deployments got into their state and after a restart.

use super::*;

const EVALUATOR_1: &str = "CN=Evaluator One";
const EVALUATOR_2: &str = "CN=Evaluator Two";

fn certified(d: Deployment, fingerprint: &str, evaluator: &str) -> Deployment {
    Deployment {
        certificate: CertificateSummary {
            fingerprint: fingerprint.into(),
            evaluator: evaluator.into(),
            ..d.certificate
        },
        ..d
    }
}

/// Activates a new order of `target` with `action`; returns the
/// deployments it stopped, sorted.
async fn activate(store: &dyn Store, id: &str, target: Target, action: Action) -> Vec<String> {
    change_order(
        store,
        &order(id, target, action),
        OrderState::Active,
        &[EventKind::Issued, EventKind::Approved, EventKind::Activated],
        None,
    )
    .await;
    let mut matched = stored_order(store, id).await.matched_deployments;
    matched.sort();
    matched
}

async fn lift(store: &dyn Store, id: &str) {
    let active = stored_order(store, id).await;
    change_order(
        store,
        &active,
        OrderState::Lifted,
        &[EventKind::Lifted],
        None,
    )
    .await;
}

async fn states(store: &dyn Store, ids: &[&str]) -> Vec<DeploymentState> {
    let mut found = Vec::with_capacity(ids.len());
    for id in ids {
        found.push(stored_deployment(store, id).await.state);
    }
    found
}

fn target(kind: TargetKind, value: &str) -> Target {
    Target {
        kind,
        value: value.into(),
    }
}

/// Four running deployments and one released one, with overlapping
/// models, customers, certificates and evaluators. An order of each target
/// kind stops exactly the running ones it names and its lift resumes them;
/// a terminated deployment is never offered again, also after a restart.
pub async fn orders_act_on_every_deployment_their_target_names<E: Engine + ?Sized>(engine: &E) {
    use DeploymentState::{Active, Released, Suspended, Terminated};
    let mut case = Case::new(engine).await;
    let f1 = "f1".repeat(32);
    let f2 = "f2".repeat(32);
    let all = ["dep-1", "dep-2", "dep-3", "dep-4"];
    for d in [
        certified(deployment("dep-1", "cust-1", MODEL, T0), &f1, EVALUATOR_1),
        certified(deployment("dep-2", "cust-2", MODEL, T0), &f2, EVALUATOR_2),
        certified(
            deployment("dep-3", "cust-1", OTHER_MODEL, T0),
            &f1,
            EVALUATOR_1,
        ),
        certified(
            deployment("dep-4", "cust-3", OTHER_MODEL, T0),
            &f2,
            EVALUATOR_1,
        ),
    ] {
        admit(case.s(), &d).await;
    }
    let before = stored_deployment(case.s(), "dep-3").await;
    let (decision, e) = update_decision(&before, &released(&before, T0 + 5), 1);
    expect(
        "releasing dep-3",
        case.s()
            .update_deployment(&before, &released(&before, T0 + 5), &decision, None, e)
            .await,
    );

    let suspensions = [
        (target(TargetKind::Deployment, "dep-2"), vec!["dep-2"]),
        (
            target(TargetKind::ModelDigest, MODEL),
            vec!["dep-1", "dep-2"],
        ),
        (target(TargetKind::Customer, "cust-1"), vec!["dep-1"]),
        (target(TargetKind::Certificate, &f1), vec!["dep-1"]),
        (
            target(TargetKind::Evaluator, EVALUATOR_1),
            vec!["dep-1", "dep-4"],
        ),
    ];
    for (n, (t, expected)) in suspensions.into_iter().enumerate() {
        let id = format!("ord-s{n}");
        let what = t.describe();
        let stopped = activate(case.s(), &id, t, Action::Suspend).await;
        assert_eq!(stopped, expected, "a suspension of {what} stopped");
        for d in &expected {
            assert_eq!(
                states(case.s(), &[d]).await,
                [Suspended],
                "{d} under {what}"
            );
        }
        lift(case.s(), &id).await;
        assert_eq!(
            states(case.s(), &all).await,
            [Active, Active, Released, Active],
            "after lifting the suspension of {what}"
        );
    }

    // A suspension, then a termination that also ends it for dep-1.
    let by_model = activate(
        case.s(),
        "ord-m",
        target(TargetKind::ModelDigest, MODEL),
        Action::Suspend,
    )
    .await;
    assert_eq!(by_model, ["dep-1", "dep-2"]);
    let by_evaluator = activate(
        case.s(),
        "ord-t",
        target(TargetKind::Evaluator, EVALUATOR_1),
        Action::Terminate,
    )
    .await;
    assert_eq!(by_evaluator, ["dep-1", "dep-4"], "a termination stopped");
    lift(case.s(), "ord-m").await;
    assert_eq!(
        states(case.s(), &all).await,
        [Terminated, Active, Released, Terminated],
        "after lifting the suspension under a termination"
    );

    case = case.reopen().await;
    let again = activate(
        case.s(),
        "ord-r",
        target(TargetKind::ModelDigest, MODEL),
        Action::Suspend,
    )
    .await;
    assert_eq!(
        again,
        ["dep-2"],
        "after a restart, a suspension of the model stopped"
    );
    let evaluator_2 = activate(
        case.s(),
        "ord-e",
        target(TargetKind::Evaluator, EVALUATOR_2),
        Action::Terminate,
    )
    .await;
    assert_eq!(
        evaluator_2,
        ["dep-2"],
        "after a restart, a termination of a suspended deployment stopped"
    );
    assert_eq!(
        states(case.s(), &all).await,
        [Terminated, Terminated, Released, Terminated]
    );
}
