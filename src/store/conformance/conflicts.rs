//! Preconditions: a write whose precondition no longer holds is refused
//! with the conflict that names it and changes nothing; an admission is
//! recorded once per principal and request id; order revisions have no
//! gaps.

use super::*;

/// A request id sent again by the same principal is answered with the
/// first decision and records nothing, even after reopening; the same id
/// from another principal is a new request.
pub async fn an_admission_is_recorded_once_per_principal_and_request_id<E: Engine + ?Sized>(
    engine: &E,
) {
    let case = Case::new(engine).await;
    let store = case.s();
    let d = deployment("dep-1", "cust-1", MODEL, T0);
    let (first, _) = admit(store, &d).await;
    let size = ledger_size(store).await;
    // The same request again, decided differently this time: another
    // deployment id and a denial.
    let again = deployment("dep-other", "cust-1", MODEL, T0 + 5);
    let mut decision = admission(SCHEDULER_A, &d.request_id, Some(&again));
    decision.decision_id = "dec-second".into();
    let e = admission_entry(&decision, Some(&again));
    let got = store
        .record_admission(&decision, Some(&again), Some(CHAIN_PEM), 0, e)
        .await;
    match got {
        Ok(AdmitRecorded::Replay(f)) => assert_eq!(
            (f.decision_id.as_str(), f.ledger_index),
            (
                admission(SCHEDULER_A, &d.request_id, Some(&d))
                    .decision_id
                    .as_str(),
                Some(first)
            ),
            "a replay answers with the first decision"
        ),
        other => {
            panic!("the same principal and request id again: expected a replay, got {other:?}")
        }
    }
    assert_eq!(
        ledger_size(store).await,
        size,
        "a replay appended to the ledger"
    );
    assert_eq!(
        expect("deployment", store.deployment("dep-other").await),
        None,
        "a replay stored the second deployment"
    );
    let case = case.reopen().await;
    let store = case.s();
    let after_reopen = replayed(store, SCHEDULER_A, &d.request_id).await;
    assert_eq!(
        after_reopen.ledger_index,
        Some(first),
        "reopened, the request id answers with the first decision"
    );
    let from_b = Deployment {
        deployment_id: "dep-b".into(),
        admitted_by: SCHEDULER_B.into(),
        ..d.clone()
    };
    let (index_b, _) = admit(store, &from_b).await;
    assert_eq!(
        index_b, size,
        "the same request id from another principal is a new admission at the next index"
    );
    assert!(
        expect("deployment", store.deployment("dep-b").await).is_some(),
        "the other principal's deployment"
    );
}

/// A customer version that is not exactly one past the newest is refused:
/// version 1 again with [`StoreError::AlreadyExists`], any other with
/// [`Conflict::CustomerChanged`]; nothing is written.
pub async fn customer_writes_out_of_turn_are_refused_and_change_nothing<E: Engine + ?Sized>(
    engine: &E,
) {
    let case = Case::new(engine).await;
    let store = case.s();
    let c1 = customer("cust-1", 1, T0);
    expect(
        "put_customer",
        store
            .put_customer(&c1, None, customer_entry(&c1, None))
            .await,
    );
    let size = ledger_size(store).await;
    let again = customer("cust-1", 1, T0 + 1);
    match store
        .put_customer(&again, None, customer_entry(&again, None))
        .await
    {
        Err(StoreError::AlreadyExists(_)) => {}
        other => panic!("version 1 of a stored customer: expected AlreadyExists, got {other:?}"),
    }
    assert_eq!(
        ledger_size(store).await,
        size,
        "a refused registration appended"
    );
    let changed = || Conflict::CustomerChanged {
        customer_id: "cust-1".into(),
    };
    let v3 = customer("cust-1", 3, T0 + 2);
    let got = store
        .put_customer(&v3, None, customer_entry(&v3, None))
        .await;
    assert_conflict(
        store,
        "put_customer skipping a version",
        size,
        got,
        changed(),
    )
    .await;
    let v2 = customer("cust-1", 2, T0 + 3);
    expect(
        "put_customer",
        store
            .put_customer(&v2, None, customer_entry(&v2, None))
            .await,
    );
    let size = ledger_size(store).await;
    let v2b = customer("cust-1", 2, T0 + 4);
    let got = store
        .put_customer(&v2b, None, customer_entry(&v2b, None))
        .await;
    assert_conflict(
        store,
        "put_customer of a stored version",
        size,
        got,
        changed(),
    )
    .await;
    assert_eq!(
        expect("customer", store.customer("cust-1").await),
        Some(v2),
        "a refused version replaced the stored one"
    );
    let got = store
        .purge_customer("cust-1", 1, purge_entry("cust-1", 1))
        .await;
    assert_conflict(
        store,
        "purge_customer of an older version",
        size,
        got,
        changed(),
    )
    .await;
    assert!(
        !expect("customer", store.customer("cust-1").await)
            .expect("cust-1")
            .purged,
        "a refused purge purged"
    );
}

/// A screening must be one revision past the stored one, of the
/// customer's newest version, and made against the loaded list.
pub async fn screening_writes_out_of_turn_are_refused_and_change_nothing<E: Engine + ?Sized>(
    engine: &E,
) {
    let case = Case::new(engine).await;
    let store = case.s();
    let v1 = sanctions_list("v1");
    expect(
        "put_sanctions_list",
        store.put_sanctions_list(&v1, list_entry(&v1)).await,
    );
    let c = customer("cust-1", 1, T0);
    let s1 = screening("cust-1", 1, 1, &v1);
    expect(
        "put_customer",
        store
            .put_customer(&c, Some(&s1), customer_entry(&c, Some(&s1)))
            .await,
    );
    let size = ledger_size(store).await;
    let screening_changed = Conflict::ScreeningChanged {
        customer_id: "cust-1".into(),
    };
    for (what, s) in [
        (
            "put_screenings of the stored revision",
            screening("cust-1", 1, 1, &v1),
        ),
        (
            "put_screenings skipping a revision",
            screening("cust-1", 3, 1, &v1),
        ),
    ] {
        let got = store
            .put_screenings(std::slice::from_ref(&s), screenings_entry(&v1, &[]))
            .await;
        assert_conflict(store, what, size, got, screening_changed.clone()).await;
    }
    let stale_version = screening("cust-1", 2, 7, &v1);
    let got = store
        .put_screenings(
            std::slice::from_ref(&stale_version),
            screenings_entry(&v1, &[]),
        )
        .await;
    let customer_changed = Conflict::CustomerChanged {
        customer_id: "cust-1".into(),
    };
    assert_conflict(
        store,
        "put_screenings of a version that is not the newest",
        size,
        got,
        customer_changed,
    )
    .await;
    // All or nothing: one good screening with a bad one writes neither.
    let c2 = customer("cust-2", 1, T0);
    expect(
        "put_customer",
        store
            .put_customer(&c2, None, customer_entry(&c2, None))
            .await,
    );
    let size = ledger_size(store).await;
    let good = screening("cust-2", 1, 1, &v1);
    let bad = screening("cust-1", 5, 1, &v1);
    let got = store
        .put_screenings(&[good, bad], screenings_entry(&v1, &[]))
        .await;
    assert_conflict(
        store,
        "put_screenings with one bad",
        size,
        got,
        screening_changed,
    )
    .await;
    assert_eq!(
        expect("screening", store.screening("cust-2").await),
        None,
        "put_screenings wrote part of a refused batch"
    );
    let v2 = sanctions_list("v2");
    expect(
        "put_sanctions_list",
        store.put_sanctions_list(&v2, list_entry(&v2)).await,
    );
    let size = ledger_size(store).await;
    let c2v2 = customer("cust-2", 2, T0 + 1);
    let against_v1 = screening("cust-2", 1, 2, &v1);
    let got = store
        .put_customer(
            &c2v2,
            Some(&against_v1),
            customer_entry(&c2v2, Some(&against_v1)),
        )
        .await;
    assert_conflict(
        store,
        "put_customer screened against a replaced list",
        size,
        got,
        Conflict::ListReplaced,
    )
    .await;
    assert_eq!(
        expect("customer", store.customer("cust-2").await).map(|c| c.version),
        Some(1),
        "a refused put_customer wrote its version"
    );
}

/// A renewal or release decided on a record that has changed since is
/// refused with [`Conflict::DeploymentChanged`] and changes nothing.
pub async fn a_deployment_update_from_a_stale_record_is_refused<E: Engine + ?Sized>(engine: &E) {
    let case = Case::new(engine).await;
    let store = case.s();
    admit(store, &deployment("dep-1", "cust-1", MODEL, T0)).await;
    let first = stored_deployment(store, "dep-1").await;
    let after = renewed(&first);
    let (decision, e) = update_decision(&first, &after, 1);
    expect(
        "update_deployment",
        store
            .update_deployment(&first, &after, &decision, None, e)
            .await,
    );
    let current = stored_deployment(store, "dep-1").await;
    let size = ledger_size(store).await;
    // Decided on the record as it was before the renewal.
    let stale_after = released(&first, T0 + 50);
    let (decision, e) = update_decision(&first, &stale_after, 2);
    let got = store
        .update_deployment(&first, &stale_after, &decision, None, e)
        .await;
    let changed = Conflict::DeploymentChanged {
        deployment_id: "dep-1".into(),
    };
    assert_conflict(
        store,
        "update_deployment from a stale before",
        size,
        got,
        changed.clone(),
    )
    .await;
    assert_eq!(
        stored_deployment(store, "dep-1").await,
        current,
        "a refused update changed the deployment"
    );
    let missing = deployment("dep-none", "cust-1", MODEL, T0);
    let (decision, e) = update_decision(&missing, &released(&missing, T0 + 1), 1);
    let got = store
        .update_deployment(&missing, &released(&missing, T0 + 1), &decision, None, e)
        .await;
    let missing_changed = Conflict::DeploymentChanged {
        deployment_id: "dep-none".into(),
    };
    assert_conflict(
        store,
        "update_deployment of no deployment",
        size,
        got,
        missing_changed,
    )
    .await;
}

/// An admission or renewal decided against the orders in force before an
/// order came into force (or was lifted) is refused with
/// [`Conflict::OrdersChanged`]; decided again against the new revision it
/// is recorded. Issuing an order that is not yet in force changes nothing
/// for them.
pub async fn decisions_against_changed_orders_are_refused<E: Engine + ?Sized>(engine: &E) {
    let case = Case::new(engine).await;
    let store = case.s();
    admit(store, &deployment("dep-1", "cust-1", OTHER_MODEL, T0)).await;
    let (_, seen) = expect("order_revisions", store.order_revisions().await);
    let issued = order("ord-1", model_target(MODEL), Action::Suspend);
    change_order(
        store,
        &issued,
        OrderState::Pending,
        &[EventKind::Issued],
        None,
    )
    .await;
    assert_eq!(
        expect("order_revisions", store.order_revisions().await),
        (1, seen),
        "issuing an order changed the orders in force"
    );
    let pending = stored_order(store, "ord-1").await;
    change_order(
        store,
        &pending,
        OrderState::Active,
        &[EventKind::Approved, EventKind::Activated],
        None,
    )
    .await;
    let (_, now_seen) = expect("order_revisions", store.order_revisions().await);
    assert_eq!(
        now_seen, 3,
        "the activation's revision is the orders in force"
    );
    let size = ledger_size(store).await;

    let d = deployment("dep-2", "cust-1", OTHER_MODEL, T0 + 10);
    let decision = admission(SCHEDULER_A, &d.request_id, Some(&d));
    let e = admission_entry(&decision, Some(&d));
    let got = store
        .record_admission(&decision, Some(&d), Some(CHAIN_PEM), seen, e.clone())
        .await;
    assert_conflict(
        store,
        "record_admission against old orders",
        size,
        got,
        Conflict::OrdersChanged,
    )
    .await;
    assert_eq!(
        expect("deployment", store.deployment("dep-2").await),
        None,
        "a refused admission stored its deployment"
    );
    let got = store
        .record_admission(&decision, Some(&d), Some(CHAIN_PEM), now_seen, e)
        .await;
    assert!(
        matches!(got, Ok(AdmitRecorded::New(i)) if i == size),
        "record_admission decided again: {got:?}"
    );

    let before = stored_deployment(store, "dep-1").await;
    let after = renewed(&before);
    let (decision, e) = update_decision(&before, &after, 1);
    let size = ledger_size(store).await;
    let got = store
        .update_deployment(&before, &after, &decision, Some(seen), e.clone())
        .await;
    assert_conflict(
        store,
        "renewal against old orders",
        size,
        got,
        Conflict::OrdersChanged,
    )
    .await;
    expect(
        "update_deployment decided again",
        store
            .update_deployment(&before, &after, &decision, Some(now_seen), e)
            .await,
    );

    // Lifting changes the orders in force too.
    let active = stored_order(store, "ord-1").await;
    change_order(
        store,
        &active,
        OrderState::Lifted,
        &[EventKind::Lifted],
        None,
    )
    .await;
    let (_, lifted_seen) = expect("order_revisions", store.order_revisions().await);
    assert_eq!(lifted_seen, 4, "the lift's revision is the orders in force");
    let size = ledger_size(store).await;
    let d = deployment("dep-3", "cust-1", MODEL, T0 + 20);
    let decision = admission(SCHEDULER_A, &d.request_id, Some(&d));
    let e = admission_entry(&decision, Some(&d));
    let got = store
        .record_admission(&decision, Some(&d), Some(CHAIN_PEM), now_seen, e)
        .await;
    assert_conflict(
        store,
        "record_admission against the orders before a lift",
        size,
        got,
        Conflict::OrdersChanged,
    )
    .await;
}

/// A change computed from an order revision that is no longer the stored
/// one is refused with [`Conflict::OrderChanged`]; accepted changes number
/// their events 1, 2, 3, … with no gaps, across orders.
pub async fn order_changes_from_a_stale_revision_are_refused_and_revisions_have_no_gaps<
    E: Engine + ?Sized,
>(
    engine: &E,
) {
    let case = Case::new(engine).await;
    let store = case.s();
    let mut returned = Vec::new();
    for id in ["ord-1", "ord-2"] {
        let o = order(id, model_target(MODEL), Action::Suspend);
        returned.push(
            change_order(store, &o, OrderState::Pending, &[EventKind::Issued], None)
                .await
                .2,
        );
    }
    let size = ledger_size(store).await;
    let conflict = || Conflict::OrderChanged {
        order_id: "ord-1".into(),
    };
    // Issued again from nothing: the stored order is at revision 1.
    let fresh = order("ord-1", model_target(MODEL), Action::Terminate);
    let (change, e) = order_change(&fresh, &[EventKind::Issued], None);
    let got = store.change_order(change, e).await;
    assert_conflict(
        store,
        "change_order issuing a stored order",
        size,
        got,
        conflict(),
    )
    .await;
    let stored = stored_order(store, "ord-1").await;
    let (_, _, r) = change_order(
        store,
        &stored,
        OrderState::Active,
        &[EventKind::Approved, EventKind::Activated],
        None,
    )
    .await;
    returned.push(r);
    let size = ledger_size(store).await;
    // `stored` is the revision before the activation.
    let lifted = Order {
        state: OrderState::Lifted,
        ..stored.clone()
    };
    let (change, e) = order_change(&lifted, &[EventKind::Lifted], None);
    let got = store.change_order(change, e).await;
    assert_conflict(
        store,
        "change_order from a stale revision",
        size,
        got,
        conflict(),
    )
    .await;
    assert_eq!(
        stored_order(store, "ord-1").await.state,
        OrderState::Active,
        "a refused change changed the order"
    );
    let ord2 = stored_order(store, "ord-2").await;
    returned.push(
        change_order(
            store,
            &ord2,
            OrderState::Pending,
            &[EventKind::Approved],
            None,
        )
        .await
        .2,
    );
    let active = stored_order(store, "ord-1").await;
    returned.push(
        change_order(
            store,
            &active,
            OrderState::Lifted,
            &[EventKind::LiftRequested, EventKind::Lifted],
            None,
        )
        .await
        .2,
    );
    assert_eq!(
        returned,
        vec![1, 2, 4, 5, 7],
        "change_order's returned revisions"
    );
    let events = expect("order_events", store.order_events(0, 100, 100).await);
    let revisions: Vec<u64> = events.iter().map(|e| e.revision).collect();
    assert_eq!(
        revisions,
        (1..=7).collect::<Vec<u64>>(),
        "order event revisions are consecutive from 1"
    );
    let kinds: Vec<EventKind> = events.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            EventKind::Issued,
            EventKind::Issued,
            EventKind::Approved,
            EventKind::Activated,
            EventKind::Approved,
            EventKind::LiftRequested,
            EventKind::Lifted,
        ],
        "order events in revision order"
    );
    assert_eq!(
        expect("order_revisions", store.order_revisions().await),
        (7, 7),
        "order_revisions: the last event, the last change to the orders in force"
    );
    for o in ["ord-1", "ord-2"] {
        let last = events
            .iter()
            .rfind(|e| e.order.order_id == o)
            .map(|e| e.revision);
        assert_eq!(
            Some(stored_order(store, o).await.revision),
            last,
            "{o}'s revision is its last event's"
        );
    }
}

/// A disclosure is recorded for a recorded request, once:
/// [`Conflict::RequestNotRecorded`] for another index,
/// [`Conflict::RequestAnswered`] the second time.
pub async fn a_disclosure_is_recorded_once_for_a_recorded_request<E: Engine + ?Sized>(engine: &E) {
    let case = Case::new(engine).await;
    let store = case.s();
    let (request, e) = attribution_request("attr-1", MODEL);
    let index = expect(
        "put_attribution_request",
        store.put_attribution_request(&request, e).await,
    );
    let disclosure = Disclosure {
        ledger_index: 0,
        deployment_ids: Vec::new(),
        identities: Vec::new(),
    };
    let size = ledger_size(store).await;
    let got = store
        .record_disclosure(
            index + 1,
            &disclosure,
            disclosure_entry("attr-1", index + 1, &disclosure),
        )
        .await;
    assert_conflict(
        store,
        "record_disclosure for no request",
        size,
        got,
        Conflict::RequestNotRecorded {
            request_index: index + 1,
        },
    )
    .await;
    expect(
        "record_disclosure",
        store
            .record_disclosure(
                index,
                &disclosure,
                disclosure_entry("attr-1", index, &disclosure),
            )
            .await,
    );
    let size = ledger_size(store).await;
    let got = store
        .record_disclosure(
            index,
            &disclosure,
            disclosure_entry("attr-1", index, &disclosure),
        )
        .await;
    assert_conflict(
        store,
        "record_disclosure a second time",
        size,
        got,
        Conflict::RequestAnswered {
            request_index: index,
        },
    )
    .await;
}
