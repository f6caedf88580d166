//! Every kind of write, each checked as it goes for its state and its
//! entry; what a reopened store must still hold; the state counts.

use super::*;

/// What [`write_each_kind`] wrote: each write's name, index and entry.
pub(super) type Written = Vec<(&'static str, u64, Entry)>;

/// Writes once with every write method, checking after each that its
/// state is readable and its entry recorded, at consecutive indexes.
pub(super) async fn write_each_kind(case: &Case) -> Written {
    let mut written = Written::new();
    write_kyc(case, &mut written).await;
    write_deployments(case, &mut written).await;
    write_orders(case, &mut written).await;
    write_attribution(case, &mut written).await;
    for (i, (what, index, _)) in written.iter().enumerate() {
        assert_eq!(
            *index, i as u64,
            "{what}: serial writes to a fresh store are recorded at 0, 1, 2, …"
        );
    }
    written
}

pub(super) async fn note(
    case: &Case,
    written: &mut Written,
    what: &'static str,
    index: u64,
    expected: Entry,
) {
    assert_recorded(case, what, index, &expected).await;
    written.push((what, index, expected));
}

pub(super) async fn write_kyc(case: &Case, written: &mut Written) {
    let store = case.s();
    let list = sanctions_list("v1");
    let e = list_entry(&list);
    let i = expect(
        "put_sanctions_list",
        store.put_sanctions_list(&list, e.clone()).await,
    );
    let loaded = expect("sanctions_list", store.sanctions_list().await);
    assert_eq!(
        loaded.as_ref(),
        Some(&list),
        "put_sanctions_list: not loaded"
    );
    note(case, written, "put_sanctions_list", i, e).await;

    let c1 = customer("cust-1", 1, T0);
    let s1 = screening("cust-1", 1, 1, &list);
    let e = customer_entry(&c1, Some(&s1));
    let i = expect(
        "put_customer",
        store.put_customer(&c1, Some(&s1), e.clone()).await,
    );
    assert_eq!(expect("customer", store.customer("cust-1").await), Some(c1));
    assert_eq!(
        expect("screening", store.screening("cust-1").await),
        Some(s1)
    );
    assert_eq!(
        expect(
            "customer_version_index",
            store.customer_version_index("cust-1", 1).await
        ),
        Some(i),
        "put_customer: customer_version_index is not the entry's index"
    );
    note(case, written, "put_customer (new, screened)", i, e).await;

    let c1v2 = customer("cust-1", 2, T0 + 10);
    let e = customer_entry(&c1v2, None);
    let i = expect(
        "put_customer",
        store.put_customer(&c1v2, None, e.clone()).await,
    );
    assert_eq!(
        expect("customer", store.customer("cust-1").await),
        Some(c1v2)
    );
    note(case, written, "put_customer (version 2)", i, e).await;

    let s2 = screening("cust-1", 2, 2, &list);
    let e = screenings_entry(&list, std::slice::from_ref(&s2));
    let i = expect(
        "put_screenings",
        store
            .put_screenings(std::slice::from_ref(&s2), e.clone())
            .await,
    );
    assert_eq!(
        expect("screening", store.screening("cust-1").await),
        Some(s2)
    );
    note(case, written, "put_screenings", i, e).await;

    let c2 = customer("cust-2", 1, T0);
    let s = screening("cust-2", 1, 1, &list);
    let e = customer_entry(&c2, Some(&s));
    let i = expect(
        "put_customer",
        store.put_customer(&c2, Some(&s), e.clone()).await,
    );
    note(case, written, "put_customer (to purge)", i, e).await;
    let e = purge_entry("cust-2", 1);
    let i = expect(
        "purge_customer",
        store.purge_customer("cust-2", 1, e.clone()).await,
    );
    let purged = expect("customer", store.customer("cust-2").await)
        .expect("purge_customer: a purged customer keeps its tombstone");
    assert!(
        purged.purged && purged.legal_name.is_empty(),
        "purge_customer: {purged:?}"
    );
    assert_eq!(
        expect("screening", store.screening("cust-2").await),
        None,
        "purge_customer: the screening was kept"
    );
    note(case, written, "purge_customer", i, e).await;
}

pub(super) async fn write_deployments(case: &Case, written: &mut Written) {
    let store = case.s();
    let d1 = deployment("dep-1", "cust-1", MODEL, T0 + 100);
    let (i, e) = admit(store, &d1).await;
    let stored = stored_deployment(store, "dep-1").await;
    assert_eq!(
        (stored.state, &stored.facts),
        (DeploymentState::Active, &vec![i]),
        "record_admission: the deployment's admission fact"
    );
    assert_eq!(
        expect("chain", store.chain(&d1.chain_sha256).await).as_deref(),
        Some(CHAIN_PEM),
        "record_admission: the chain"
    );
    let first = replayed(store, SCHEDULER_A, &d1.request_id).await;
    assert_eq!(
        (first.allowed, first.ledger_index),
        (true, Some(i)),
        "record_admission: the decision"
    );
    note(case, written, "record_admission (allow)", i, e).await;

    let deny = admission(SCHEDULER_A, "req-deny", None);
    let e = admission_entry(&deny, None);
    let got = store
        .record_admission(&deny, None, None, 0, e.clone())
        .await;
    let Ok(AdmitRecorded::New(i)) = got else {
        panic!("record_admission (deny): {got:?}");
    };
    let first = replayed(store, SCHEDULER_A, "req-deny").await;
    assert_eq!(
        (first.allowed, first.ledger_index),
        (false, Some(i)),
        "record_admission (deny): the decision"
    );
    note(case, written, "record_admission (deny)", i, e).await;

    let before = stored_deployment(store, "dep-1").await;
    let after = renewed(&before);
    let (decision, e) = update_decision(&before, &after, 1);
    let i = expect(
        "update_deployment",
        store
            .update_deployment(&before, &after, &decision, Some(0), e.clone())
            .await,
    );
    let stored = stored_deployment(store, "dep-1").await;
    assert_eq!(
        (stored.lease_expires_at, stored.renewals),
        (after.lease_expires_at, 1),
        "update_deployment (renew): the lease"
    );
    assert!(
        stored.last_renewal == Some(i) || stored.facts.contains(&i),
        "update_deployment (renew): the renewal's index is not in the record: {stored:?}"
    );
    note(case, written, "update_deployment (renew)", i, e).await;

    let d2 = deployment("dep-2", "cust-1", OTHER_MODEL, T0 + 200);
    let (i, e) = admit(store, &d2).await;
    note(case, written, "record_admission (to release)", i, e).await;
    let before = stored_deployment(store, "dep-2").await;
    let after = released(&before, T0 + 300);
    let (decision, e) = update_decision(&before, &after, 1);
    let i = expect(
        "update_deployment",
        store
            .update_deployment(&before, &after, &decision, None, e.clone())
            .await,
    );
    let stored = stored_deployment(store, "dep-2").await;
    assert_eq!(
        (stored.state, stored.released_at, stored.facts.last()),
        (DeploymentState::Released, Some(T0 + 300), Some(&i)),
        "update_deployment (release)"
    );
    note(case, written, "update_deployment (release)", i, e).await;
}

pub(super) async fn write_orders(case: &Case, written: &mut Written) {
    let store = case.s();
    let issued = order("ord-1", model_target(MODEL), Action::Suspend);
    let (i, e, revision) = change_order(
        store,
        &issued,
        OrderState::Pending,
        &[EventKind::Issued],
        None,
    )
    .await;
    let stored = stored_order(store, "ord-1").await;
    assert_eq!(
        (stored.state, stored.revision, revision),
        (OrderState::Pending, 1, 1),
        "change_order (issue)"
    );
    note(case, written, "change_order (issue)", i, e).await;

    let (i, mut e, revision) = change_order(
        store,
        &stored,
        OrderState::Active,
        &[EventKind::Approved, EventKind::Activated],
        None,
    )
    .await;
    let stored = stored_order(store, "ord-1").await;
    assert_eq!(
        (stored.state, stored.revision, &stored.matched_deployments),
        (OrderState::Active, 3, &vec!["dep-1".to_string()]),
        "change_order (activate)"
    );
    assert_eq!(
        revision, 3,
        "change_order returns its last event's revision"
    );
    let d1 = stored_deployment(store, "dep-1").await;
    assert_eq!(
        (d1.state, d1.order_id.as_deref(), d1.facts.last()),
        (DeploymentState::Suspended, Some("ord-1"), Some(&i)),
        "change_order (activate): the matched deployment is suspended in the same commit"
    );
    let active = expect("active_orders", store.active_orders().await);
    assert_eq!(
        active,
        vec![stored.clone()],
        "change_order (activate): active_orders"
    );
    e.set_order_deployments(vec!["dep-1".into()]);
    note(case, written, "change_order (activate)", i, e).await;

    let (i, mut e, _) = change_order(
        store,
        &stored,
        OrderState::Active,
        &[EventKind::Acknowledged],
        Some("dep-1"),
    )
    .await;
    let d1 = stored_deployment(store, "dep-1").await;
    assert_eq!(
        d1.facts.last(),
        Some(&i),
        "change_order (acknowledge): the deployment's fact"
    );
    e.set_order_deployments(vec!["dep-1".into()]);
    note(case, written, "change_order (acknowledge)", i, e).await;

    let stored = stored_order(store, "ord-1").await;
    let (i, mut e, _) = change_order(
        store,
        &stored,
        OrderState::Lifted,
        &[EventKind::LiftRequested, EventKind::Lifted],
        None,
    )
    .await;
    let d1 = stored_deployment(store, "dep-1").await;
    assert_eq!(
        (d1.state, d1.order_id.as_deref(), d1.facts.last()),
        (DeploymentState::Active, None, Some(&i)),
        "change_order (lift): the suspended deployment resumes in the same commit"
    );
    assert_eq!(
        expect("active_orders", store.active_orders().await),
        Vec::<Order>::new(),
        "change_order (lift): active_orders"
    );
    e.set_order_deployments(vec!["dep-1".into()]);
    note(case, written, "change_order (lift)", i, e).await;
}

pub(super) async fn write_attribution(case: &Case, written: &mut Written) {
    let store = case.s();
    let (request, e) = attribution_request("attr-1", MODEL);
    let i = expect(
        "put_attribution_request",
        store.put_attribution_request(&request, e.clone()).await,
    );
    let stored = expect(
        "attribution_requests",
        store.attribution_requests(None, 10).await,
    );
    assert_eq!(
        stored,
        vec![AttributionRequest {
            ledger_index: i,
            ..request
        }],
        "put_attribution_request: the request with its entry's index"
    );
    note(case, written, "put_attribution_request", i, e).await;

    let disclosure = Disclosure {
        ledger_index: 0,
        deployment_ids: vec!["dep-1".into()],
        identities: vec![CustomerRef::of(&customer("cust-1", 2, T0 + 10))],
    };
    let request_index = i;
    let e = disclosure_entry("attr-1", request_index, &disclosure);
    let i = expect(
        "record_disclosure",
        store
            .record_disclosure(request_index, &disclosure, e.clone())
            .await,
    );
    let stored = expect(
        "attribution_requests",
        store.attribution_requests(None, 10).await,
    );
    assert_eq!(
        stored.first().and_then(|r| r.disclosure.clone()),
        Some(Disclosure {
            ledger_index: i,
            ..disclosure
        }),
        "record_disclosure: the disclosure with its entry's index"
    );
    note(case, written, "record_disclosure", i, e).await;
}

/// The state [`write_each_kind`] leaves, read back whole.
pub(super) async fn assert_state_after_each_kind(store: &dyn Store) {
    let c1 = expect("customer", store.customer("cust-1").await).expect("cust-1 is stored");
    assert_eq!(c1.version, 2, "cust-1's newest version");
    let s1 = expect("screening", store.screening("cust-1").await).expect("cust-1's screening");
    assert_eq!(s1.revision, 2, "cust-1's screening revision");
    let c2 = expect("customer", store.customer("cust-2").await).expect("cust-2's tombstone");
    assert!(c2.purged, "cust-2 is purged");
    assert_eq!(
        expect("sanctions_list", store.sanctions_list().await).map(|l| l.version),
        Some("v1".into()),
        "the loaded sanctions list"
    );
    let d1 = stored_deployment(store, "dep-1").await;
    assert_eq!(
        (d1.state, d1.renewals),
        (DeploymentState::Active, 1),
        "dep-1, renewed once, suspended and resumed"
    );
    let d2 = stored_deployment(store, "dep-2").await;
    assert_eq!(d2.state, DeploymentState::Released, "dep-2, released");
    let o = stored_order(store, "ord-1").await;
    assert_eq!(
        (o.state, o.revision),
        (OrderState::Lifted, 6),
        "ord-1, issued, activated, acknowledged and lifted"
    );
    assert_eq!(
        expect("order_revisions", store.order_revisions().await),
        (6, 6),
        "order_revisions: (last event, last change to the orders in force)"
    );
    let r = expect(
        "attribution_requests",
        store.attribution_requests(None, 10).await,
    );
    assert!(
        r.len() == 1 && r[0].disclosure.is_some(),
        "the attribution request and its disclosure: {r:?}"
    );
    assert!(
        !replayed(store, SCHEDULER_A, "req-deny").await.allowed,
        "the denied admission's decision"
    );
}

/// After each kind of write the state it made is readable, and its entry
/// is stored at the index it returned, covered by a signed checkpoint
/// whose root is that of the stored entries.
pub async fn every_write_commits_its_state_with_its_entry<E: Engine + ?Sized>(engine: &E) {
    let case = Case::new(engine).await;
    write_each_kind(&case).await;
    assert_state_after_each_kind(case.s()).await;
}

/// Whatever a write returned is durable: closed and reopened, the store
/// holds every state and every entry, under a checkpoint of the same root.
pub async fn a_returned_write_survives_closing_and_reopening<E: Engine + ?Sized>(engine: &E) {
    let case = Case::new(engine).await;
    let written = write_each_kind(&case).await;
    let before = expect("checkpoint", case.s().checkpoint().await).checkpoint;
    let case = case.reopen().await;
    let after = expect("checkpoint", case.s().checkpoint().await).checkpoint;
    assert_eq!(
        (after.size, after.root),
        (before.size, before.root),
        "reopened, the store has another checkpoint"
    );
    for (what, index, entry) in &written {
        assert_recorded(&case, &format!("{what}, reopened"), *index, entry).await;
    }
    assert_state_after_each_kind(case.s()).await;
}

/// `stats` reports the ledger size of the latest checkpoint and, in its
/// state counts, every deployment and order in the state last written for
/// it.
pub async fn state_counts_follow_every_write<E: Engine + ?Sized>(engine: &E) {
    use DeploymentState as D;
    let case = Case::new(engine).await;
    let store = case.s();
    let counts = |deployments: [(D, u64); 3], orders: [(OrderState, u64); 3]| (deployments, orders);
    let read = || async move {
        let stats = expect("stats", store.stats().await);
        assert_eq!(
            stats.ledger_size,
            ledger_size(store).await,
            "stats and the checkpoint disagree on the ledger size"
        );
        let s = &stats.states;
        counts(
            [D::Active, D::Released, D::Suspended].map(|d| (d, s.deployments_in(d))),
            [OrderState::Pending, OrderState::Active, OrderState::Lifted]
                .map(|o| (o, s.orders_in(o))),
        )
    };
    let want = |a, r, s, op, oa, ol| {
        counts(
            [(D::Active, a), (D::Released, r), (D::Suspended, s)],
            [
                (OrderState::Pending, op),
                (OrderState::Active, oa),
                (OrderState::Lifted, ol),
            ],
        )
    };
    assert_eq!(read().await, want(0, 0, 0, 0, 0, 0), "an empty store");
    for i in 0..3 {
        admit(
            store,
            &deployment(&format!("dep-{i}"), "cust-1", MODEL, T0 + i),
        )
        .await;
    }
    admit(store, &deployment("dep-x", "cust-1", OTHER_MODEL, T0)).await;
    assert_eq!(
        read().await,
        want(4, 0, 0, 0, 0, 0),
        "after four admissions"
    );
    let before = stored_deployment(store, "dep-0").await;
    let (decision, e) = update_decision(&before, &released(&before, T0 + 5), 1);
    expect(
        "update_deployment",
        store
            .update_deployment(&before, &released(&before, T0 + 5), &decision, None, e)
            .await,
    );
    assert_eq!(read().await, want(3, 1, 0, 0, 0, 0), "after a release");
    let o = order("ord-1", model_target(MODEL), Action::Suspend);
    change_order(store, &o, OrderState::Pending, &[EventKind::Issued], None).await;
    assert_eq!(
        read().await,
        want(3, 1, 0, 1, 0, 0),
        "after an order is issued"
    );
    let o = stored_order(store, "ord-1").await;
    change_order(
        store,
        &o,
        OrderState::Active,
        &[EventKind::Approved, EventKind::Activated],
        None,
    )
    .await;
    assert_eq!(
        read().await,
        want(1, 1, 2, 0, 1, 0),
        "after it suspends two"
    );
    let o = stored_order(store, "ord-1").await;
    change_order(store, &o, OrderState::Lifted, &[EventKind::Lifted], None).await;
    assert_eq!(read().await, want(3, 1, 0, 0, 0, 1), "after it is lifted");
    let case = case.reopen().await;
    let store = case.s();
    let stats = expect("stats", store.stats().await);
    assert_eq!(
        (
            stats.states.deployments_in(D::Active),
            stats.states.orders_in(OrderState::Lifted)
        ),
        (3, 1),
        "reopened, the counts are the same"
    );
}
