//! Size limits against the real server: repeated fields are capped and the
//! record as a whole too (refused with INVALID_ARGUMENT naming the field,
//! nothing stored); an error lists at most fifty violations and counts the
//! rest; every list call's pages stay under the message limit however large
//! the stored items, and together list everything; page tokens and request
//! times that are not valid are refused naming the field.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::collections::BTreeSet;

use common::{TestEnv, TestServer};
use prost::Message;
use tonic::{Code, Status};
use tonic_types::StatusExt;
use warden::domain::limits::{
    MAX_BENEFICIAL_OWNERS, MAX_ENDPOINTS, MAX_FIELD_VIOLATIONS, MAX_KEY_PERSONNEL,
    MAX_RECORD_BYTES, PAGE_BYTES,
};
use warden::proto;
use warden::proto::admission_client::AdmissionClient;
use warden::proto::attribution_client::AttributionClient;
use warden::proto::customers_client::CustomersClient;
use warden::proto::ledger_client::LedgerClient;
use warden::proto::orders_client::OrdersClient;
use warden::server::MAX_MESSAGE_BYTES;

// ---------------------------------------------------------------------------
// Helpers

/// The fields named by the BadRequest details of `status`.
fn violated_fields(status: &Status) -> Vec<String> {
    status
        .get_details_bad_request()
        .unwrap_or_else(|| panic!("no BadRequest details in {status:?}"))
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect()
}

/// `result` is INVALID_ARGUMENT naming `field`.
fn assert_invalid<T: std::fmt::Debug>(result: Result<T, Status>, field: &str) -> Status {
    let status = result.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let fields = violated_fields(&status);
    assert!(
        fields.iter().any(|f| f == field),
        "{field} not named: {fields:?}"
    );
    status
}

async fn ledger_size(env: &TestEnv, server: &TestServer) -> u64 {
    LedgerClient::new(env.channel(server, "auditor").await)
        .get_checkpoint(proto::GetCheckpointRequest { first_size: 0 })
        .await
        .unwrap()
        .into_inner()
        .size
}

/// Clients below read answers up to this size, so that an answer over the
/// server's message limit fails the size assertions rather than the call.
const READ_LIMIT: usize = 64 * MAX_MESSAGE_BYTES;

fn person(name: String, pct: f64) -> proto::Person {
    proto::Person {
        name,
        nationality: "DE".into(),
        date_of_birth: "1970-01-01".into(),
        ownership_percent: pct,
        ..Default::default()
    }
}

/// An organisation registration with `owners` beneficial owners, each
/// owning an equal share of 90%.
fn with_owners(id: &str, owners: usize) -> proto::RegisterCustomerRequest {
    let mut r = common::organisation(id, proto::CustomerStatus::Pending);
    let pct = 90.0 / owners as f64;
    r.details.as_mut().unwrap().beneficial_owners = (0..owners)
        .map(|i| person(format!("Owner {i}"), pct))
        .collect();
    r
}

/// A VERIFIED organisation whose record is close to `MAX_RECORD_BYTES`
/// encoded, every repeated field within its own cap.
fn near_maximum(id: &str) -> proto::RegisterCustomerRequest {
    let mut r = common::organisation(id, proto::CustomerStatus::Verified);
    let d = r.details.as_mut().unwrap();
    d.aliases = (0..32)
        .map(|i| format!("{id} alias {i} {}", "a".repeat(450)))
        .collect();
    d.beneficial_owners = (0..MAX_BENEFICIAL_OWNERS)
        .map(|i| person(format!("{id} owner {i} {}", "o".repeat(400)), 0.5))
        .collect();
    let bytes = r.legal_name.len() + r.country.len() + d.encoded_len();
    assert!(
        (MAX_RECORD_BYTES - 8 * 1024..=MAX_RECORD_BYTES).contains(&bytes),
        "{bytes}"
    );
    r
}

async fn register(env: &TestEnv, server: &TestServer, r: proto::RegisterCustomerRequest) {
    env.customers(server)
        .await
        .register_customer(r)
        .await
        .unwrap();
}

async fn customer_exists(env: &TestEnv, server: &TestServer, id: &str) -> bool {
    match env
        .customers(server)
        .await
        .get_customer(proto::GetCustomerRequest {
            customer_id: id.into(),
            as_of: None,
        })
        .await
    {
        Ok(_) => true,
        Err(s) if s.code() == Code::NotFound => false,
        Err(s) => panic!("{s:?}"),
    }
}

/// Every customer id, page by page at `page_size`, as `role` lists them;
/// every page within the message limit and the page byte budget (plus the
/// room one item may take beyond it).
async fn list_all_customers(
    env: &TestEnv,
    server: &TestServer,
    role: &str,
    page_size: u32,
) -> (Vec<String>, usize) {
    let mut client =
        CustomersClient::new(env.channel(server, role).await).max_decoding_message_size(READ_LIMIT);
    let mut ids = Vec::new();
    let mut pages = 0;
    let mut token = String::new();
    loop {
        let page = client
            .list_customers(proto::ListCustomersRequest {
                page_size,
                page_token: token,
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("page {pages} as {role}: {e:?}"))
            .into_inner();
        let bytes = page.encoded_len();
        assert!(bytes <= PAGE_BYTES + 1024, "page {pages}: {bytes} bytes");
        pages += 1;
        ids.extend(page.customers.iter().map(|c| c.customer_id.clone()));
        token = page.next_page_token;
        if token.is_empty() {
            return (ids, pages);
        }
    }
}

fn time(seconds: i64) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds, nanos: 0 }
}

/// 10000-01-01T00:00:00Z and 1969-12-31T23:59:59Z.
const YEAR_10000: i64 = 253_402_300_800;
const BEFORE_1970: i64 = -1;

fn legal() -> Option<proto::LegalProcess> {
    Some(proto::LegalProcess {
        case_reference: "CASE-2026-9".into(),
        requesting_authority: "Example Cyber Unit".into(),
        jurisdiction: "DE".into(),
        instrument: proto::Instrument::CourtOrder as i32,
        document_sha256: "c0".repeat(32),
    })
}

fn by_customer(
    customer_id: &str,
    from: i64,
    to: i64,
    page_size: u32,
    page_token: String,
) -> proto::AttributeRequest {
    proto::AttributeRequest {
        legal_process: legal(),
        selector: Some(proto::attribute_request::Selector::Customer(
            proto::CustomerSelector {
                customer_id: customer_id.into(),
                from: Some(time(from)),
                to: Some(time(to)),
            },
        )),
        page_size,
        page_token,
    }
}

fn now_seconds() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

// ---------------------------------------------------------------------------
// Repeated fields and the record

#[tokio::test]
async fn thirty_thousand_owners_are_refused_naming_the_field_and_the_cap_is_accepted() {
    let env = TestEnv::new();
    let server = env.start().await;
    let before = ledger_size(&env, &server).await;
    let mut kyc = env.customers(&server).await;

    let status = assert_invalid(
        kyc.register_customer(with_owners("cust-many", 30_000))
            .await,
        "details.beneficial_owners",
    );
    assert!(violated_fields(&status).len() <= MAX_FIELD_VIOLATIONS + 1);
    assert!(!customer_exists(&env, &server, "cust-many").await);
    let mut r = with_owners("cust-many", 1);
    r.details.as_mut().unwrap().key_personnel = (0..MAX_KEY_PERSONNEL + 1)
        .map(|i| person(format!("Director {i}"), 0.0))
        .collect();
    assert_invalid(kyc.register_customer(r).await, "details.key_personnel");
    assert_eq!(ledger_size(&env, &server).await, before, "nothing recorded");

    // At the cap: accepted, and an update past it is refused.
    let mut r = with_owners("cust-cap", MAX_BENEFICIAL_OWNERS);
    r.details.as_mut().unwrap().key_personnel = (0..MAX_KEY_PERSONNEL)
        .map(|i| person(format!("Director {i}"), 0.0))
        .collect();
    let first = kyc.register_customer(r).await.unwrap().into_inner();
    assert_eq!(
        first.details.unwrap().beneficial_owners.len(),
        MAX_BENEFICIAL_OWNERS
    );
    let grown = with_owners("cust-cap", 30_000);
    let size = ledger_size(&env, &server).await;
    assert_invalid(
        kyc.update_customer(proto::UpdateCustomerRequest {
            customer_id: "cust-cap".into(),
            expected_version: 1,
            legal_name: grown.legal_name,
            country: grown.country,
            details: grown.details,
        })
        .await,
        "details.beneficial_owners",
    );
    assert_eq!(ledger_size(&env, &server).await, size);
    let now = kyc
        .get_customer(proto::GetCustomerRequest {
            customer_id: "cust-cap".into(),
            as_of: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(now.version, 1);
}

#[tokio::test]
async fn a_record_over_the_size_limit_is_refused_naming_details() {
    let env = TestEnv::new();
    let server = env.start().await;
    let before = ledger_size(&env, &server).await;
    let mut r = near_maximum("cust-big");
    // Still within every count, but longer names take the whole past 64 KiB.
    for o in &mut r.details.as_mut().unwrap().beneficial_owners {
        o.name.push_str(&"x".repeat(80));
    }
    assert_invalid(
        env.customers(&server).await.register_customer(r).await,
        "details",
    );
    assert!(!customer_exists(&env, &server, "cust-big").await);
    assert_eq!(ledger_size(&env, &server).await, before);
}

#[tokio::test]
async fn five_thousand_bad_owners_get_fifty_violations_and_a_count_in_a_small_error() {
    let env = TestEnv::new();
    let server = env.start().await;
    let before = ledger_size(&env, &server).await;
    let mut r = with_owners("cust-bad", 5_000);
    for o in &mut r.details.as_mut().unwrap().beneficial_owners {
        o.nationality = "XX".into();
        o.date_of_birth = "someday".into();
    }
    let status = assert_invalid(
        env.customers(&server).await.register_customer(r).await,
        "details.beneficial_owners",
    );
    let listed = status.get_details_bad_request().unwrap().field_violations;
    assert!(listed.len() <= MAX_FIELD_VIOLATIONS + 1, "{listed:?}");
    assert!(listed.len() > 10, "{listed:?}");
    // The record's size and the owners' count, then two bad fields of each
    // owner; the first ones are listed, and a count of the rest.
    assert_eq!(listed[0].field, "details");
    assert_eq!(listed[1].field, "details.beneficial_owners");
    let count = listed.last().unwrap();
    assert_eq!(count.field, "");
    let more = 2 + 2 * 5_000 - (listed.len() - 1);
    assert!(
        count.description.starts_with(&format!("{more} more")),
        "{}",
        count.description
    );
    let bytes = status.message().len() + status.details().len();
    assert!(bytes < 16 * 1024, "the error takes {bytes} bytes");
    assert!(!customer_exists(&env, &server, "cust-bad").await);
    assert_eq!(ledger_size(&env, &server).await, before);
}

// ---------------------------------------------------------------------------
// Pages bounded in bytes

#[tokio::test]
async fn customers_near_the_record_limit_list_in_pages_under_the_message_limit() {
    let env = TestEnv::new();
    let server = env.start().await;
    // Together well over the 4 MiB a single answer may carry.
    let n = 80;
    let mut want = Vec::new();
    for i in 0..n {
        let id = format!("cust-{i:03}");
        register(&env, &server, near_maximum(&id)).await;
        want.push(id);
    }
    for role in ["kyc", "operator", "auditor"] {
        let (ids, pages) = list_all_customers(&env, &server, role, 1000).await;
        assert_eq!(ids, want, "every customer once, in order, as {role}");
        assert!(pages >= 5, "{pages} pages");
    }
    // The count still bounds a page, and an exact fit ends the list.
    let (ids, pages) = list_all_customers(&env, &server, "kyc", 10).await;
    assert_eq!(ids, want);
    assert_eq!(pages, 8);
}

/// One customer with a record near the limit, VERIFIED, and `n`
/// deployments of it, each serving the most endpoints allowed, each as
/// long as allowed.
async fn large_deployments(env: &TestEnv, server: &TestServer, n: usize) -> Vec<String> {
    register(env, server, near_maximum("cust-large")).await;
    let mut admission = env.admission(server).await;
    let chain = env.sample_chain();
    let mut ids = Vec::new();
    for i in 0..n {
        let mut req = env.admit_request("cust-large", &chain);
        req.workload.as_mut().unwrap().endpoints = (0..MAX_ENDPOINTS)
            .map(|j| format!("{}-{i}-{j}.example.com:443", "e".repeat(220)))
            .collect();
        let r = admission.admit(req).await.unwrap().into_inner();
        assert_eq!(r.decision, proto::Decision::Allow as i32, "{r:?}");
        ids.push(r.deployment_id);
    }
    ids.sort();
    ids
}

#[tokio::test]
async fn large_deployments_list_entries_and_attribution_in_pages_under_the_message_limit() {
    let env = TestEnv::new();
    let server = env.start().await;
    let from = now_seconds() - 1;
    // 16 KiB a deployment, and twice the identity record in an attribution.
    let n = 100;
    let want = large_deployments(&env, &server, n).await;

    // ListDeployments.
    let mut client = AdmissionClient::new(env.channel(&server, "operator").await)
        .max_decoding_message_size(READ_LIMIT);
    let mut got = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = client
            .list_deployments(proto::ListDeploymentsRequest {
                page_size: 1000,
                page_token: token,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.encoded_len() <= PAGE_BYTES + 1024);
        pages += 1;
        got.extend(page.deployments.iter().map(|d| d.deployment_id.clone()));
        token = page.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(got, want);
    assert!(pages >= 2, "{pages} pages");

    // GetEntries: fewer than asked when they would not fit; the caller
    // continues after the last one served.
    let size = ledger_size(&env, &server).await;
    let mut ledger = LedgerClient::new(env.channel(&server, "auditor").await)
        .max_decoding_message_size(READ_LIMIT);
    let mut next = 0;
    let mut answers = 0;
    while next < size {
        let r = ledger
            .get_entries(proto::GetEntriesRequest {
                start: next,
                count: 1000,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(r.encoded_len() <= PAGE_BYTES + 1024);
        assert!(!r.entries.is_empty());
        for e in r.entries {
            assert_eq!(e.index, next);
            next += 1;
        }
        answers += 1;
    }
    assert!(answers >= 2, "{answers} answers for {size} entries");

    // Attribute: fifty deployments per page asked, each with the identity
    // record twice; pages stop at the budget and together disclose all.
    let mut authority = AttributionClient::new(env.channel(&server, "authority").await)
        .max_decoding_message_size(READ_LIMIT);
    let mut disclosed = BTreeSet::new();
    let mut token = String::new();
    let to = now_seconds() + 1;
    pages = 0;
    loop {
        let r = authority
            .attribute(by_customer("cust-large", from, to, 50, token))
            .await
            .unwrap()
            .into_inner();
        assert!(
            r.encoded_len() <= 2 * PAGE_BYTES,
            "{} bytes",
            r.encoded_len()
        );
        let report = warden::api::attribution::report_from_proto(r.clone()).unwrap();
        warden::attribution::verify(&report, &env.ledger).unwrap();
        for d in &r.deployments {
            assert!(disclosed.insert(d.deployment_id.clone()), "twice: {d:?}");
        }
        pages += 1;
        token = r.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(disclosed.into_iter().collect::<Vec<_>>(), want);
    assert!(pages > n / 50 + 1, "{pages} pages");
}

// ---------------------------------------------------------------------------
// Page tokens

#[tokio::test]
async fn malformed_page_tokens_are_refused_by_every_list_call_naming_page_token() {
    let env = TestEnv::new();
    let server = env.start().await;
    for id in ["cust-a", "cust-b"] {
        env.register(&server, id, proto::CustomerStatus::Verified)
            .await;
    }
    let mut kyc = env.customers(&server).await;
    let first = kyc
        .list_customers(proto::ListCustomersRequest {
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let token = first.next_page_token;
    assert!(!token.is_empty());
    // The real token continues the list.
    let second = kyc
        .list_customers(proto::ListCustomersRequest {
            page_size: 1,
            page_token: token.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second.customers[0].customer_id, "cust-b");

    let mut altered = token.clone().into_bytes();
    altered[2] = if altered[2] == b'0' { b'1' } else { b'0' };
    let altered = String::from_utf8(altered).unwrap();
    let malformed = [
        "cust-a".to_string(),
        "zzzz".into(),
        "abc".into(),
        "00".into(),
        "12".into(),
        token[..token.len() - 2].to_string(),
        altered,
    ];
    let before = ledger_size(&env, &server).await;
    let operator = env.channel(&server, "operator").await;
    let auditor = env.channel(&server, "auditor").await;
    let mut customers = CustomersClient::new(operator.clone());
    let mut deployments = AdmissionClient::new(operator.clone());
    let mut orders = OrdersClient::new(operator);
    let mut requests = AttributionClient::new(auditor);
    let mut authority = AttributionClient::new(env.channel(&server, "authority").await);
    for bad in malformed.iter().chain([&String::new()]) {
        // The customers' own token is foreign to every other list.
        let foreign = if bad.is_empty() { &token } else { bad };
        let refused = |call: &str, r: Result<(), Status>| {
            let status = r.unwrap_err();
            assert_eq!(status.code(), Code::InvalidArgument, "{call} {bad:?}");
            assert_eq!(violated_fields(&status), ["page_token"], "{call} {bad:?}");
        };
        if !bad.is_empty() {
            refused(
                "ListCustomers",
                customers
                    .list_customers(proto::ListCustomersRequest {
                        page_token: bad.clone(),
                        ..Default::default()
                    })
                    .await
                    .map(drop),
            );
        }
        refused(
            "ListDeployments",
            deployments
                .list_deployments(proto::ListDeploymentsRequest {
                    page_token: foreign.clone(),
                    ..Default::default()
                })
                .await
                .map(drop),
        );
        refused(
            "ListOrders",
            orders
                .list_orders(proto::ListOrdersRequest {
                    page_token: foreign.clone(),
                    ..Default::default()
                })
                .await
                .map(drop),
        );
        refused(
            "ListAttributionRequests",
            requests
                .list_attribution_requests(proto::ListAttributionRequestsRequest {
                    page_size: 0,
                    page_token: foreign.clone(),
                })
                .await
                .map(drop),
        );
        refused(
            "Attribute",
            authority
                .attribute(by_customer("cust-a", 0, now_seconds(), 10, foreign.clone()))
                .await
                .map(drop),
        );
    }
    assert_eq!(
        ledger_size(&env, &server).await,
        before,
        "no attribution request was recorded"
    );
}

// ---------------------------------------------------------------------------
// Request times

#[tokio::test]
async fn times_outside_1970_to_9999_are_refused_naming_the_field() {
    let env = TestEnv::new();
    let server = env.start().await;
    env.register(&server, "cust-t", proto::CustomerStatus::Verified)
        .await;
    let before = ledger_size(&env, &server).await;
    let mut kyc = env.customers(&server).await;
    let mut orders = OrdersClient::new(env.channel(&server, "operator").await);
    let mut scheduler = OrdersClient::new(env.channel(&server, "scheduler").await);
    let mut authority = AttributionClient::new(env.channel(&server, "authority").await);
    for bad in [YEAR_10000, BEFORE_1970, i64::MAX, i64::MIN] {
        assert_invalid(
            kyc.get_customer(proto::GetCustomerRequest {
                customer_id: "cust-t".into(),
                as_of: Some(time(bad)),
            })
            .await,
            "as_of",
        );
        assert_invalid(
            orders
                .issue_order(proto::IssueOrderRequest {
                    target: Some(proto::OrderTarget {
                        kind: proto::OrderTargetKind::Customer as i32,
                        value: "cust-t".into(),
                    }),
                    action: proto::OrderAction::Suspend as i32,
                    reason: "harmful outputs reported".into(),
                    legal_basis: String::new(),
                    expires_at: Some(time(bad)),
                })
                .await,
            "expires_at",
        );
        assert_invalid(
            scheduler
                .ack_order(proto::AckOrderRequest {
                    order_id: "ord-x".into(),
                    deployment_id: "dep-x".into(),
                    stopped_at: Some(time(bad)),
                    outcome: "stopped".into(),
                })
                .await,
            "stopped_at",
        );
        let mut r = common::organisation("cust-v", proto::CustomerStatus::Pending);
        r.details.as_mut().unwrap().verification = Some(proto::Verification {
            method: "registry-extract".into(),
            evidence_sha256: "ab".repeat(32),
            verified_by: "kyc officer".into(),
            verified_at: Some(time(bad)),
        });
        assert_invalid(
            kyc.register_customer(r).await,
            "details.verification.verified_at",
        );
        let status = assert_invalid(
            authority
                .attribute(by_customer("cust-t", bad, bad, 0, String::new()))
                .await,
            "customer.from",
        );
        assert_eq!(
            violated_fields(&status),
            ["customer.from", "customer.to"],
            "{status:?}"
        );
        assert_invalid(
            authority
                .attribute(proto::AttributeRequest {
                    legal_process: legal(),
                    selector: Some(proto::attribute_request::Selector::Endpoint(
                        proto::EndpointSelector {
                            endpoint: "10.0.0.1:8000".into(),
                            at: Some(time(bad)),
                        },
                    )),
                    page_size: 0,
                    page_token: String::new(),
                })
                .await,
            "endpoint.at",
        );
    }
    // A timestamp whose nanos are out of range is no time either.
    assert_invalid(
        kyc.get_customer(proto::GetCustomerRequest {
            customer_id: "cust-t".into(),
            as_of: Some(prost_types::Timestamp {
                seconds: now_seconds(),
                nanos: -5,
            }),
        })
        .await,
        "as_of",
    );
    assert_eq!(ledger_size(&env, &server).await, before, "nothing recorded");
    assert!(!customer_exists(&env, &server, "cust-v").await);
    let listed = orders
        .list_orders(proto::ListOrdersRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.orders.is_empty(), "{listed:?}");
}

// ---------------------------------------------------------------------------
// Workloads

#[tokio::test]
async fn admit_with_zero_accelerators_names_workload_accelerator_count() {
    let env = TestEnv::new();
    let server = env.start().await;
    env.register(&server, "cust-w", proto::CustomerStatus::Verified)
        .await;
    let chain = env.sample_chain();
    let before = ledger_size(&env, &server).await;
    let mut admission = env.admission(&server).await;
    let mut r = env.admit_request("cust-w", &chain);
    r.workload.as_mut().unwrap().accelerator_count = 0;
    let status = assert_invalid(
        admission.admit(r.clone()).await,
        "workload.accelerator_count",
    );
    assert_eq!(violated_fields(&status), ["workload.accelerator_count"]);
    assert_eq!(ledger_size(&env, &server).await, before, "nothing recorded");
    // The same request id with one accelerator is a new, allowed request.
    r.workload.as_mut().unwrap().accelerator_count = 1;
    let ok = admission.admit(r).await.unwrap().into_inner();
    assert_eq!(ok.decision, proto::Decision::Allow as i32, "{ok:?}");
}
