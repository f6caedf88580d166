//! The Prometheus endpoint against a real server: real admissions, a
//! screening hit, refused and failed connections, then a scrape over HTTP
//! whose values are checked against what happened and against the ledger.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{connect, organisation, TestEnv, TestServer};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tonic::Code;
use warden::proto;
use warden::proto::admission_client::AdmissionClient;
use warden::proto::ledger_client::LedgerClient;

/// `GET path` over plain HTTP/1.1: (status line, content type, body).
async fn http_get(addr: SocketAddr, path: &str) -> (String, String, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: warden\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).await.unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.lines().next().unwrap().to_string();
    let content_type = head
        .lines()
        .find_map(|l| l.strip_prefix("content-type: "))
        .unwrap_or_default()
        .to_string();
    (status, content_type, body.to_string())
}

/// Every sample of a scrape, keyed by `name{labels}` as written.
struct Scrape(HashMap<String, f64>);

impl Scrape {
    async fn of(server: &TestServer) -> Self {
        let (status, content_type, body) = http_get(server.metrics_addr.unwrap(), "/metrics").await;
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
        let mut samples = HashMap::new();
        for line in body
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let (series, value) = line.rsplit_once(' ').unwrap();
            assert!(
                samples
                    .insert(series.to_string(), value.parse::<f64>().unwrap())
                    .is_none(),
                "{series} twice"
            );
        }
        Self(samples)
    }

    fn get(&self, series: &str) -> f64 {
        *self
            .0
            .get(series)
            .unwrap_or_else(|| panic!("no series {series}"))
    }
}

fn with_metrics() -> TestEnv {
    let mut env = TestEnv::new();
    env.config.metrics_listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    env
}

const SANCTIONS_CSV: &str = "name,aliases,type,program,id\n\
Zephyrine Holdings,Zephyrine Group,entity,SYN-2,syn-2\n";

#[tokio::test]
async fn a_scrape_shows_decisions_calls_screening_hits_handshake_failures_and_the_ledger() {
    let env = with_metrics();
    let server = env.start().await;

    // A sanctions list, and a customer whose name is on it: one hit.
    env.trust(&server)
        .await
        .load_sanctions_list(proto::LoadSanctionsListRequest {
            name: "Synthetic list".into(),
            version: "v1".into(),
            format: proto::SanctionsListFormat::Csv as i32,
            content: SANCTIONS_CSV.as_bytes().to_vec(),
            alt_content: vec![],
        })
        .await
        .unwrap();
    let mut listed = organisation("c-listed", proto::CustomerStatus::Verified);
    listed.legal_name = "Zephyrine Holdings".into();
    let c = env
        .customers(&server)
        .await
        .register_customer(listed)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        c.screening.unwrap().status,
        proto::ScreeningStatus::PotentialMatch as i32
    );

    // One admission allowed, one denied for the measured digest.
    env.register(&server, "c-clear", proto::CustomerStatus::Verified)
        .await;
    let chain = env.sample_chain();
    let mut admission = env.admission(&server).await;
    let request = env.admit_request("c-clear", &chain);
    let allowed = admission.admit(request.clone()).await.unwrap().into_inner();
    assert_eq!(allowed.decision, proto::Decision::Allow as i32);
    // The same request again is answered from the record: no new decision.
    let again = admission.admit(request).await.unwrap().into_inner();
    assert_eq!(again.deployment_id, allowed.deployment_id);
    let mut wrong = env.admit_request("c-clear", &chain);
    wrong.model_digest = format!("sha256:{}", "0".repeat(64));
    let denied = admission.admit(wrong).await.unwrap().into_inner();
    assert_eq!(denied.decision, proto::Decision::Deny as i32);
    assert_eq!(
        denied.reasons[0].code,
        proto::ReasonCode::DigestMismatch as i32
    );

    // A caller whose role may not admit: refused by the auth layer.
    let refused = AdmissionClient::new(env.channel(&server, "kyc").await)
        .admit(env.admit_request("c-clear", &chain))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);

    // A client without a certificate, and one whose certificate the client
    // CA did not issue: both fail the handshake.
    let admit_as = |identity: Option<(String, String)>| {
        let (ca, request) = (env.mtls.cert_pem(), env.admit_request("c-clear", &chain));
        async move {
            let identity = identity.as_ref().map(|(c, k)| (c.as_str(), k.as_str()));
            let channel = connect(server.addr, &ca, identity)
                .await
                .map_err(|e| e.to_string())?;
            AdmissionClient::new(channel)
                .admit(request)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
    };
    assert!(
        admit_as(None).await.is_err(),
        "a client without a certificate got in"
    );
    let stranger = warden::pki::dev::TestCa::mtls_ca("someone else's CA")
        .unwrap()
        .client_cert("spiffe://warden.test/scheduler/stranger")
        .unwrap();
    assert!(
        admit_as(Some((stranger.cert_pem, stranger.key_pem)))
            .await
            .is_err(),
        "a certificate from another CA got in"
    );

    // The server counts a failed handshake as it ends, which may be just
    // after the client saw the alert: wait (bounded) until both are in.
    let deadline = Instant::now() + Duration::from_secs(10);
    let scrape = loop {
        let s = Scrape::of(&server).await;
        if s.get("warden_tls_handshake_failures_total") >= 2.0 || Instant::now() > deadline {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(scrape.get("warden_tls_handshake_failures_total"), 2.0);

    let admit = |decision: &str, reason: &str| {
        format!(
            "warden_admission_decisions_total{{call=\"admit\",decision=\"{decision}\",reason=\"{reason}\"}}"
        )
    };
    assert_eq!(scrape.get(&admit("allow", "none")), 1.0);
    assert_eq!(scrape.get(&admit("deny", "DIGEST_MISMATCH")), 1.0);
    assert_eq!(scrape.get(&admit("deny", "CERT_UNTRUSTED")), 0.0);
    assert_eq!(
        scrape
            .get("warden_admission_deny_reasons_total{call=\"admit\",reason=\"DIGEST_MISMATCH\"}"),
        1.0
    );
    assert_eq!(
        scrape.get(
            "warden_admission_decisions_total{call=\"renew\",decision=\"allow\",reason=\"none\"}"
        ),
        0.0
    );

    let calls = |method: &str, code: &str| {
        scrape.get(&format!(
            "warden_grpc_request_duration_seconds_count{{method=\"warden.v1.{method}\",code=\"{code}\"}}"
        ))
    };
    assert_eq!(
        calls("Admission/Admit", "OK"),
        3.0,
        "the allow, its replay, the deny"
    );
    assert_eq!(calls("Admission/Admit", "PERMISSION_DENIED"), 1.0);
    assert_eq!(calls("Customers/RegisterCustomer", "OK"), 2.0);
    assert_eq!(calls("Trust/LoadSanctionsList", "OK"), 1.0);
    assert_eq!(
        scrape.get("warden_grpc_request_duration_seconds_bucket{method=\"warden.v1.Admission/Admit\",code=\"OK\",le=\"+Inf\"}"),
        3.0
    );
    assert!(scrape.get("warden_grpc_request_duration_seconds_sum{method=\"warden.v1.Admission/Admit\",code=\"OK\"}") > 0.0);

    assert_eq!(scrape.get("warden_screening_hits_total"), 1.0);
    assert_eq!(scrape.get("warden_deployments{state=\"active\"}"), 1.0);
    assert_eq!(scrape.get("warden_deployments{state=\"released\"}"), 0.0);
    assert_eq!(scrape.get("warden_orders{state=\"active\"}"), 0.0);

    // The ledger's size is the checkpoint's, as the Ledger API serves it.
    let checkpoint = LedgerClient::new(env.channel(&server, "auditor").await)
        .get_checkpoint(proto::GetCheckpointRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(scrape.get("warden_ledger_entries"), checkpoint.size as f64);
    assert!(checkpoint.size >= 5, "list, two customers, two decisions");
    let age = scrape.get("warden_ledger_checkpoint_age_seconds");
    assert!((0.0..60.0).contains(&age), "{age}");
    assert!(scrape.get("warden_store_flush_duration_seconds_count") >= 5.0);
    assert_eq!(
        scrape.get("warden_store_flush_duration_seconds_bucket{le=\"+Inf\"}"),
        scrape.get("warden_store_flush_duration_seconds_count")
    );

    // Nothing that identifies a customer, a model or a deployment is a label.
    let (_, _, body) = http_get(server.metrics_addr.unwrap(), "/metrics").await;
    for secret in [
        "c-clear",
        "c-listed",
        "Zephyrine",
        &env.sample_digest(),
        &allowed.deployment_id,
    ] {
        assert!(!body.contains(secret), "{secret} appears in the scrape");
    }
    server.stop().await;
}

#[tokio::test]
async fn deployment_and_order_gauges_follow_each_change_and_survive_a_restart() {
    use warden::proto::orders_client::OrdersClient;
    let env = with_metrics();
    let server = env.start().await;
    env.register(&server, "c-1", proto::CustomerStatus::Verified)
        .await;
    let chain = env.sample_chain();
    let mut admission = env.admission(&server).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let r = admission
            .admit(env.admit_request("c-1", &chain))
            .await
            .unwrap()
            .into_inner();
        ids.push(r.deployment_id);
    }
    admission
        .release(proto::ReleaseRequest {
            deployment_id: ids[0].clone(),
        })
        .await
        .unwrap();
    // A suspend order on the customer (quorum 1) stops the other two.
    let order = OrdersClient::new(env.channel(&server, "operator").await)
        .issue_order(proto::IssueOrderRequest {
            target: Some(proto::OrderTarget {
                kind: proto::OrderTargetKind::Customer as i32,
                value: "c-1".into(),
            }),
            action: proto::OrderAction::Suspend as i32,
            reason: "harmful outputs reported".into(),
            legal_basis: String::new(),
            expires_at: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(order.state, proto::OrderState::Active as i32);

    let expect = |s: &Scrape| {
        for (state, n) in [
            ("active", 0.0),
            ("released", 1.0),
            ("suspended", 2.0),
            ("terminated", 0.0),
        ] {
            assert_eq!(
                s.get(&format!("warden_deployments{{state=\"{state}\"}}")),
                n,
                "{state}"
            );
        }
        assert_eq!(s.get("warden_orders{state=\"active\"}"), 1.0);
        assert_eq!(s.get("warden_orders{state=\"pending\"}"), 0.0);
    };
    let before = Scrape::of(&server).await;
    expect(&before);
    let size = before.get("warden_ledger_entries");
    server.stop().await;

    // The counts are stored with the states they count; the restarted
    // server reads them back without scanning, and its counters start over.
    let server = env.start().await;
    let after = Scrape::of(&server).await;
    expect(&after);
    assert_eq!(after.get("warden_ledger_entries"), size);
    assert_eq!(
        after.get(
            "warden_admission_decisions_total{call=\"admit\",decision=\"allow\",reason=\"none\"}"
        ),
        0.0
    );
    assert!(after.get("warden_ledger_checkpoint_age_seconds") >= 0.0);
    server.stop().await;
}

#[tokio::test]
async fn the_endpoint_answers_only_get_metrics() {
    let env = with_metrics();
    let server = env.start().await;
    let (status, _, body) = http_get(server.metrics_addr.unwrap(), "/").await;
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    assert!(body.contains("/metrics"));
    server.stop().await;
}

#[tokio::test]
async fn metrics_are_off_unless_the_serve_config_turns_them_on() {
    let env = TestEnv::new();
    let c = &env.config;
    let path = env.path().join("serve.toml");
    std::fs::write(
        &path,
        format!(
            r#"data_dir = "{data}"
[tls]
cert = "{cert}"
key = "{key}"
client_ca = "{ca}"
trust_domain = "warden.test"
[trust]
dir = "{trust}"
[licence]
key = "{licence}"
[ledger]
key = "{ledger}"
[kyc]
pii_key_file = "{pii}"
"#,
            data = c.data_dir.display(),
            cert = c.tls.cert.display(),
            key = c.tls.key.display(),
            ca = c.tls.client_ca.display(),
            trust = c.trust.dir.display(),
            licence = c.licence.key.display(),
            ledger = c.ledger.key.display(),
            pii = c.kyc.pii_key_file.display(),
        ),
    )
    .unwrap();
    let config = warden::config::Config::load(&path).unwrap();
    assert_eq!(config.metrics_listen, None);
    assert!(warden::server::bind_metrics(&config)
        .await
        .unwrap()
        .is_none());
    let server = TestServer::start(&config).await;
    assert_eq!(server.metrics_addr, None);
    server.stop().await;
}
