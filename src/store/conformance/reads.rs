//! Reads: versions as of a time, and pages that cover every item once,
//! in order, whatever the page size.

use super::*;

/// `customer_as_of(t)` is the newest version written at or before `t`;
/// `customer_version` and `customer_version_index` find each version and
/// the entry that recorded it.
pub async fn customer_as_of_reads_the_version_in_force<E: Engine + ?Sized>(engine: &E) {
    let case = Case::new(engine).await;
    let store = case.s();
    let mut indexes = Vec::new();
    for (v, at) in [(1, T0), (2, T0 + 1_000), (3, T0 + 2_000)] {
        let c = customer("cust-1", v, at);
        indexes.push(expect(
            "put_customer",
            store.put_customer(&c, None, customer_entry(&c, None)).await,
        ));
    }
    for (as_of, version) in [
        (T0 - 1, None),
        (T0, Some(1)),
        (T0 + 999, Some(1)),
        (T0 + 1_000, Some(2)),
        (T0 + 1_999, Some(2)),
        (T0 + 2_000, Some(3)),
        (i64::MAX, Some(3)),
    ] {
        let got = expect(
            "customer_as_of",
            store.customer_as_of("cust-1", as_of).await,
        );
        assert_eq!(
            got.as_ref().map(|c| c.version),
            version,
            "customer_as_of(T0 {:+})",
            as_of.saturating_sub(T0)
        );
        if let (Some(c), Some(v)) = (got, version) {
            assert_eq!(
                c,
                customer("cust-1", v, c.updated_at),
                "the version as written"
            );
        }
    }
    assert_eq!(
        expect(
            "customer_as_of",
            store.customer_as_of("cust-none", i64::MAX).await
        ),
        None
    );
    for (v, index) in (1..=3).zip(&indexes) {
        let c = expect(
            "customer_version",
            store.customer_version("cust-1", v).await,
        );
        assert_eq!(c.map(|c| c.version), Some(v), "customer_version {v}");
        assert_eq!(
            expect(
                "customer_version_index",
                store.customer_version_index("cust-1", v).await
            ),
            Some(*index),
            "customer_version_index {v}"
        );
    }
    assert_eq!(
        expect(
            "customer_version",
            store.customer_version("cust-1", 4).await
        ),
        None
    );
}

/// One of the lists that page by id.
pub(super) enum Listing {
    Customers(CustomerFilter),
    Deployments(DeploymentFilter),
    Orders(OrderFilter),
}

impl Listing {
    /// The ids of one page.
    async fn page(&self, store: &dyn Store, after: Option<&str>, limit: usize) -> Vec<String> {
        match self {
            Listing::Customers(f) => expect(
                "list_customers",
                store.list_customers(f, after, limit).await,
            )
            .into_iter()
            .map(|c| c.customer_id)
            .collect(),
            Listing::Deployments(f) => expect(
                "list_deployments",
                store.list_deployments(f, after, limit).await,
            )
            .into_iter()
            .map(|d| d.deployment_id)
            .collect(),
            Listing::Orders(f) => expect("list_orders", store.list_orders(f, after, limit).await)
                .into_iter()
                .map(|o| o.order_id)
                .collect(),
        }
    }

    /// Every page of at most `limit`, each after the last id of the one
    /// before, until a short page.
    async fn all(&self, store: &dyn Store, limit: usize) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for _ in 0..100 {
            let page = self
                .page(store, out.last().map(String::as_str), limit)
                .await;
            assert!(
                page.len() <= limit,
                "a page of limit {limit} has {} items",
                page.len()
            );
            let full = page.len() == limit;
            out.extend(page);
            if !full {
                return out;
            }
        }
        panic!("paging with limit {limit} did not end after 100 pages");
    }
}

/// `list_customers`, `list_deployments` and `list_orders` return, page
/// after page, every item that matches once, in id order, for any limit.
pub async fn lists_page_through_every_item_once_in_order<E: Engine + ?Sized>(engine: &E) {
    let case = Case::new(engine).await;
    let store = case.s();
    // A customer, a deployment and an order under each id, written out of
    // order; every other one is PENDING.
    let ids = ["c-3", "c-0", "c-6", "c-1", "c-5", "c-2", "c-4"];
    for (n, id) in ids.iter().enumerate() {
        let mut c = customer(id, 1, T0 + n as i64);
        if n % 2 == 0 {
            c.status = CustomerStatus::Pending;
        }
        expect(
            "put_customer",
            store.put_customer(&c, None, customer_entry(&c, None)).await,
        );
        admit(store, &deployment(id, id, MODEL, T0 + n as i64)).await;
        let o = order(id, model_target(id), Action::Suspend);
        change_order(store, &o, OrderState::Pending, &[EventKind::Issued], None).await;
    }
    // A second version: the newest is listed, once.
    let c = customer("c-1", 2, T0 + 100);
    expect(
        "put_customer",
        store.put_customer(&c, None, customer_entry(&c, None)).await,
    );
    let newest = expect(
        "list_customers",
        store
            .list_customers(&Default::default(), Some("c-0"), 1)
            .await,
    );
    assert_eq!(
        newest
            .iter()
            .map(|c| (c.customer_id.as_str(), c.version))
            .collect::<Vec<_>>(),
        vec![("c-1", 2)],
        "list_customers lists the newest version"
    );
    let mut sorted: Vec<String> = ids.map(String::from).to_vec();
    sorted.sort();
    let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let cases = [
        (
            "list_customers",
            Listing::Customers(Default::default()),
            sorted.clone(),
        ),
        (
            "list_customers of PENDING",
            Listing::Customers(CustomerFilter {
                status: Some(CustomerStatus::Pending),
                country: None,
            }),
            strings(&["c-3", "c-4", "c-5", "c-6"]),
        ),
        (
            "list_deployments",
            Listing::Deployments(DeploymentFilter {
                now: T0,
                ..Default::default()
            }),
            sorted.clone(),
        ),
        (
            "list_deployments of one customer",
            Listing::Deployments(DeploymentFilter {
                customer_id: Some("c-5".into()),
                now: T0,
                ..Default::default()
            }),
            strings(&["c-5"]),
        ),
        (
            "list_orders",
            Listing::Orders(OrderFilter {
                now: T0,
                ..Default::default()
            }),
            sorted.clone(),
        ),
        (
            "list_orders of ACTIVE",
            Listing::Orders(OrderFilter {
                state: Some(OrderState::Active),
                now: T0,
                ..Default::default()
            }),
            Vec::new(),
        ),
    ];
    for (what, listing, expected) in &cases {
        for limit in 1..=8 {
            assert_eq!(
                &listing.all(store, limit).await,
                expected,
                "{what}, limit {limit}"
            );
        }
    }
}

/// Every page of `admitted_in(by, from, to)` with `limit`, following
/// `next` until the scan is complete: the deployment ids in order.
pub(super) async fn admitted_pages(
    store: &dyn Store,
    by: AdmittedBy<'_>,
    (from, to): (UnixMillis, UnixMillis),
    limit: usize,
) -> Vec<String> {
    let mut out = Vec::new();
    let mut after: Option<Cursor> = None;
    for _ in 0..100 {
        let page = expect(
            "admitted_in",
            store.admitted_in(by, from, to, after.as_ref(), limit).await,
        );
        assert!(
            page.deployments.len() <= limit,
            "admitted_in returned more than {limit}"
        );
        out.extend(
            page.deployments
                .iter()
                .map(|(d, _)| d.deployment_id.clone()),
        );
        match page.next {
            Some(next) => {
                assert!(
                    store.admitted_cursor_valid(by, &next).await,
                    "a cursor admitted_in minted for {by:?} is not valid for it"
                );
                after = Some(next);
            }
            None => return out,
        }
    }
    panic!("admitted_in with limit {limit} did not end after 100 pages");
}

/// `admitted_in` pages, newest admission first, through every deployment
/// of a model or customer that was admitted by the end of the window and
/// had not ended before its start, once, for any limit; each item's cursor
/// continues after it; a cursor is valid only for the selector that minted
/// it.
pub async fn admission_pages_cover_the_window_once_and_cursors_keep_to_their_selector<
    E: Engine + ?Sized,
>(
    engine: &E,
) {
    let case = Case::new(engine).await;
    let store = case.s();
    let step = 10 * 60_000;
    let mut all = Vec::new();
    for i in 0..9i64 {
        let customer_id = if i % 3 == 0 { "cust-a" } else { "cust-b" };
        let model = if i == 4 { OTHER_MODEL } else { MODEL };
        let d = deployment(&format!("dep-{i}"), customer_id, model, T0 + i * step);
        admit(store, &d).await;
        if i % 4 == 1 {
            let before = stored_deployment(store, &d.deployment_id).await;
            let after = released(&before, d.admitted_at + 60_000);
            let (decision, e) = update_decision(&before, &after, 1);
            expect(
                "update_deployment",
                store
                    .update_deployment(&before, &after, &decision, None, e)
                    .await,
            );
        }
        all.push(stored_deployment(store, &d.deployment_id).await);
    }
    let window = (T0 + 2 * step, T0 + 7 * step);
    let expected = |keep: &dyn Fn(&Deployment) -> bool| -> Vec<String> {
        let mut v: Vec<&Deployment> = all
            .iter()
            .filter(|d| keep(d) && d.admitted_at <= window.1 && d.end() >= window.0)
            .collect();
        v.sort_by_key(|d| std::cmp::Reverse(d.admitted_at));
        v.iter().map(|d| d.deployment_id.clone()).collect()
    };
    let of_model = expected(&|d| d.model_digest == MODEL);
    let of_customer = expected(&|d| d.customer_id == "cust-b");
    assert!(
        of_model.len() >= 3 && of_customer.len() >= 3,
        "the window holds a few"
    );
    for limit in 1..=8 {
        assert_eq!(
            admitted_pages(store, AdmittedBy::Model(MODEL), window, limit).await,
            of_model,
            "admitted_in by model, limit {limit}"
        );
        assert_eq!(
            admitted_pages(store, AdmittedBy::Customer("cust-b"), window, limit).await,
            of_customer,
            "admitted_in by customer, limit {limit}"
        );
    }
    let by = AdmittedBy::Model(MODEL);
    let page = expect(
        "admitted_in",
        store.admitted_in(by, window.0, window.1, None, 100).await,
    );
    for (k, (_, cursor)) in page.deployments.iter().enumerate() {
        let rest = expect(
            "admitted_in",
            store
                .admitted_in(by, window.0, window.1, Some(cursor), 100)
                .await,
        );
        let ids: Vec<String> = rest
            .deployments
            .iter()
            .map(|(d, _)| d.deployment_id.clone())
            .collect();
        assert_eq!(
            ids,
            of_model[k + 1..],
            "admitted_in after item {k}'s cursor"
        );
        assert!(
            store.admitted_cursor_valid(by, cursor).await,
            "item {k}'s cursor"
        );
        for other in [
            AdmittedBy::Model(OTHER_MODEL),
            AdmittedBy::Customer(MODEL),
            AdmittedBy::Customer("cust-b"),
        ] {
            assert!(
                !store.admitted_cursor_valid(other, cursor).await,
                "a cursor minted for {by:?} is valid for {other:?}"
            );
        }
    }
    assert!(
        !store
            .admitted_cursor_valid(by, &Cursor::from_bytes(b"not a cursor".to_vec()))
            .await,
        "bytes no store minted are a valid cursor"
    );
}

/// `attribution_requests` pages newest first by `before`, and
/// `order_events` pages oldest first by revision, covering each once.
pub async fn request_and_event_pages_cover_everything_once<E: Engine + ?Sized>(engine: &E) {
    let case = Case::new(engine).await;
    let store = case.s();
    let mut indexes = Vec::new();
    for n in 0..7 {
        let (r, e) = attribution_request(&format!("attr-{n}"), MODEL);
        indexes.push(expect(
            "put_attribution_request",
            store.put_attribution_request(&r, e).await,
        ));
        let o = order(&format!("ord-{n}"), model_target(MODEL), Action::Suspend);
        change_order(store, &o, OrderState::Pending, &[EventKind::Issued], None).await;
    }
    indexes.reverse();
    for limit in 1..=8 {
        let mut got = Vec::new();
        let mut before = None;
        loop {
            let page = expect(
                "attribution_requests",
                store.attribution_requests(before, limit).await,
            );
            assert!(page.len() <= limit);
            got.extend(page.iter().map(|r| r.ledger_index));
            if page.len() < limit {
                break;
            }
            before = page.last().map(|r| r.ledger_index);
        }
        assert_eq!(got, indexes, "attribution_requests, limit {limit}");

        let mut revisions = Vec::new();
        let mut after = 0;
        loop {
            let page = expect("order_events", store.order_events(after, 7, limit).await);
            assert!(page.len() <= limit);
            revisions.extend(page.iter().map(|e| e.revision));
            match page.last() {
                Some(last) if page.len() == limit => after = last.revision,
                _ => break,
            }
        }
        assert_eq!(
            revisions,
            (1..=7).collect::<Vec<u64>>(),
            "order_events, limit {limit}"
        );
    }
    let some = expect("order_events", store.order_events(2, 5, 100).await);
    assert_eq!(
        some.iter().map(|e| e.revision).collect::<Vec<_>>(),
        vec![3, 4, 5],
        "order_events(2, 5) is (2, 5]"
    );
    assert!(
        expect("order_events", store.order_events(5, 5, 100).await).is_empty(),
        "order_events(5, 5) is empty"
    );
}
