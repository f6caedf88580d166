//! Bad input is refused with INVALID_ARGUMENT naming every bad field (as
//! google.rpc.BadRequest field violations), and nothing is stored: no
//! deployment, no customer, no idempotency record, no trust change.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::collections::BTreeMap;

use common::{TestEnv, TestServer};
use tonic::{Code, Status};
use tonic_types::StatusExt;
use warden::proto;
use warden::proto::admission_client::AdmissionClient;
use warden::proto::ledger_client::LedgerClient;

const CUSTOMER: &str = "cust-ok";

/// A server with one VERIFIED customer and a valid certificate chain, so
/// that the well-formed version of every request below is allowed.
struct Fixture {
    env: TestEnv,
    server: TestServer,
    chain: String,
}

impl Fixture {
    async fn new() -> Self {
        let env = TestEnv::new();
        let server = env.start().await;
        env.register(&server, CUSTOMER, proto::CustomerStatus::Verified)
            .await;
        let chain = env.sample_chain();
        Self { env, server, chain }
    }

    /// An admission request that is allowed.
    fn good(&self) -> proto::AdmitRequest {
        self.env.admit_request(CUSTOMER, &self.chain)
    }

    async fn admit(&self, r: proto::AdmitRequest) -> Result<proto::AdmitResponse, Status> {
        self.env
            .admission(&self.server)
            .await
            .admit(r)
            .await
            .map(tonic::Response::into_inner)
    }

    /// Every deployment, as an operator sees them.
    async fn deployments(&self) -> Vec<proto::Deployment> {
        let channel = self.env.channel(&self.server, "operator").await;
        AdmissionClient::new(channel)
            .list_deployments(proto::ListDeploymentsRequest {
                page_size: 1000,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .deployments
    }

    /// The size of the ledger, as an auditor sees it.
    async fn ledger_size(&self) -> u64 {
        LedgerClient::new(self.env.channel(&self.server, "auditor").await)
            .get_checkpoint(proto::GetCheckpointRequest { first_size: 0 })
            .await
            .unwrap()
            .into_inner()
            .size
    }

    /// `bad` is refused with INVALID_ARGUMENT whose field violations name
    /// exactly `fields`; no deployment appears; and the well-formed request
    /// under the same request id (when that id is itself valid) is then
    /// allowed as new, so no decision was recorded under it either.
    async fn assert_admit_rejected(&self, bad: proto::AdmitRequest, fields: &[&str]) -> Status {
        let before = self.deployments().await.len();
        let status = self.admit(bad.clone()).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert_eq!(violated_fields(&status), sorted(fields), "{status:?}");
        assert_eq!(
            self.deployments().await.len(),
            before,
            "a deployment was stored"
        );

        let mut retry = self.good();
        if is_identifier(&bad.request_id) {
            retry.request_id = bad.request_id;
        }
        let answer = self.admit(retry).await.unwrap();
        assert_eq!(
            answer.decision,
            proto::Decision::Allow as i32,
            "{:?}",
            answer.reasons
        );
        assert_eq!(self.deployments().await.len(), before + 1);
        status
    }
}

fn is_identifier(s: &str) -> bool {
    let mut v = Vec::new();
    warden::domain::customer::check_identifier("id", s, &mut v);
    v.is_empty()
}

fn sorted(fields: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = fields.iter().map(|f| (*f).to_string()).collect();
    v.sort();
    v
}

/// The fields named by the BadRequest details of `status`, sorted.
fn violated_fields(status: &Status) -> Vec<String> {
    let bad = status
        .get_details_bad_request()
        .unwrap_or_else(|| panic!("no BadRequest details in {status:?}"));
    for v in &bad.field_violations {
        assert!(!v.description.is_empty(), "{v:?}");
    }
    let mut fields: Vec<String> = bad.field_violations.into_iter().map(|v| v.field).collect();
    fields.sort();
    fields
}

// ---- Admission.Admit: the certificate chain ----

#[tokio::test]
async fn admit_with_text_that_is_not_pem_names_certificate_chain() {
    let f = Fixture::new().await;
    for garbage in [
        "this is not a certificate",
        "-----BEGIN CERTIFICATE-----\n%%% not base64 %%%\n-----END CERTIFICATE-----\n",
        "-----BEGIN CERTIFICATE-----\nMIIB\n",
    ] {
        let mut r = f.good();
        r.certificate_chain = garbage.into();
        f.assert_admit_rejected(r, &["certificate_chain"]).await;
    }
}

#[tokio::test]
async fn admit_with_pem_around_a_bad_der_body_names_certificate_chain() {
    let f = Fixture::new().await;
    let mut r = f.good();
    // Valid base64 and PEM framing; the bytes are not a certificate.
    r.certificate_chain =
        "-----BEGIN CERTIFICATE-----\nAAAAAAAAAAAAAAAA\n-----END CERTIFICATE-----\n".into();
    f.assert_admit_rejected(r, &["certificate_chain"]).await;
    // A good leaf followed by a broken second certificate.
    let mut r = f.good();
    r.certificate_chain = format!(
        "{}-----BEGIN CERTIFICATE-----\nMAMCAQA=\n-----END CERTIFICATE-----\n",
        f.chain
    );
    f.assert_admit_rejected(r, &["certificate_chain"]).await;
}

#[tokio::test]
async fn admit_with_an_empty_chain_names_certificate_chain() {
    let f = Fixture::new().await;
    for empty in ["", " \n\t\n"] {
        let mut r = f.good();
        r.certificate_chain = empty.into();
        f.assert_admit_rejected(r, &["certificate_chain"]).await;
    }
}

#[tokio::test]
async fn admit_with_eleven_certificates_names_certificate_chain_but_ten_are_accepted() {
    let f = Fixture::new().await;
    let ca = f.env.pki.evaluator.cert_pem();
    // Ten: the leaf's chain plus eight more copies of the evaluator CA is not
    // an input error (the answer is a decision).
    let ten = format!("{}{}", f.chain, ca.repeat(8));
    let mut r = f.good();
    r.certificate_chain = ten;
    let answer = f.admit(r).await.unwrap();
    assert_ne!(answer.decision, proto::Decision::Unspecified as i32);

    let eleven = format!("{}{}", f.chain, ca.repeat(9));
    assert!(eleven.len() < 64 * 1024);
    let mut r = f.good();
    r.certificate_chain = eleven;
    f.assert_admit_rejected(r, &["certificate_chain"]).await;
}

#[tokio::test]
async fn admit_with_a_chain_over_64_kib_names_certificate_chain() {
    let f = Fixture::new().await;
    let mut r = f.good();
    // A valid chain, padded past the limit: the size alone is refused.
    r.certificate_chain = format!("{}{}", f.chain, "\n".repeat(64 * 1024));
    f.assert_admit_rejected(r, &["certificate_chain"]).await;
}

#[tokio::test]
async fn admit_with_a_private_key_in_the_chain_names_certificate_chain() {
    let f = Fixture::new().await;
    let leaf = f.env.leaf();
    let mut r = f.good();
    r.certificate_chain = format!("{}{}", f.env.chain(&leaf), leaf.key_pem);
    let status = f.assert_admit_rejected(r, &["certificate_chain"]).await;
    // The key material is not echoed back.
    assert!(
        !status.message().contains("BEGIN PRIVATE KEY"),
        "{status:?}"
    );
}

// ---- Admission.Admit: the other fields ----

#[tokio::test]
async fn admit_with_a_non_canonical_digest_names_model_digest() {
    let f = Fixture::new().await;
    let digest = f.env.sample_digest();
    let hex = digest.strip_prefix("sha256:").unwrap().to_string();
    for bad in [
        format!("sha256:{}", hex.to_uppercase()),
        format!("SHA256:{hex}"),
        format!("sha256:{}", &hex[..63]),
        format!("sha256:{hex}0"),
        "sha256:abcd".to_string(),
        hex.clone(),
        format!("sha512:{hex}"),
        format!("sha256:{}g", &hex[..63]),
        String::new(),
    ] {
        let mut r = f.good();
        r.model_digest = bad;
        f.assert_admit_rejected(r, &["model_digest"]).await;
    }
}

#[tokio::test]
async fn admit_with_an_empty_request_id_names_request_id() {
    let f = Fixture::new().await;
    let mut r = f.good();
    r.request_id = String::new();
    f.assert_admit_rejected(r, &["request_id"]).await;
}

#[tokio::test]
async fn admit_with_spaces_in_the_request_id_names_request_id() {
    let f = Fixture::new().await;
    let mut r = f.good();
    r.request_id = "req 1".into();
    f.assert_admit_rejected(r, &["request_id"]).await;
}

#[tokio::test]
async fn admit_with_an_empty_customer_id_names_customer_id() {
    let f = Fixture::new().await;
    let mut r = f.good();
    r.customer_id = String::new();
    f.assert_admit_rejected(r, &["customer_id"]).await;
}

#[tokio::test]
async fn admit_without_a_workload_names_workload() {
    let f = Fixture::new().await;
    let mut r = f.good();
    r.workload = None;
    f.assert_admit_rejected(r, &["workload"]).await;
}

#[tokio::test]
async fn admit_with_an_empty_region_names_workload_region() {
    let f = Fixture::new().await;
    let mut r = f.good();
    r.workload.as_mut().unwrap().region = String::new();
    f.assert_admit_rejected(r, &["workload.region"]).await;
}

#[tokio::test]
async fn admit_with_65_endpoints_names_workload_endpoints_but_64_are_accepted() {
    let f = Fixture::new().await;
    let endpoints = |n: usize| -> Vec<String> {
        (0..n)
            .map(|i| format!("10.0.{}.{}:8000", i / 256, i % 256))
            .collect()
    };
    let mut r = f.good();
    r.workload.as_mut().unwrap().endpoints = endpoints(64);
    let answer = f.admit(r).await.unwrap();
    assert_eq!(answer.decision, proto::Decision::Allow as i32);

    let mut r = f.good();
    r.workload.as_mut().unwrap().endpoints = endpoints(65);
    f.assert_admit_rejected(r, &["workload.endpoints"]).await;
}

#[tokio::test]
async fn admit_with_a_zero_width_space_in_the_region_names_workload_region_and_writes_nothing() {
    let f = Fixture::new().await;
    let before = f.ledger_size().await;
    let mut r = f.good();
    r.workload.as_mut().unwrap().region = "eu-west\u{200b}-1".into();
    let status = f.admit(r.clone()).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(violated_fields(&status), ["workload.region"]);
    assert_eq!(f.ledger_size().await, before, "a ledger entry was written");
    f.assert_admit_rejected(r, &["workload.region"]).await;
}

#[tokio::test]
async fn admit_with_invisible_or_look_alike_characters_in_the_workload_names_each_field() {
    let f = Fixture::new().await;
    let mut r = f.good();
    let w = r.workload.as_mut().unwrap();
    w.region = "\u{435}u-west".into(); // Cyrillic е
    w.cluster = "c\u{2060}1".into();
    w.node = "n\u{ad}1".into();
    w.accelerator_type = "h\u{200d}100".into();
    w.endpoints = vec!["10.0.0.1:8000".into(), "10.0.0.2\u{feff}:8000".into()];
    f.assert_admit_rejected(
        r,
        &[
            "workload.region",
            "workload.cluster",
            "workload.node",
            "workload.accelerator_type",
            "workload.endpoints[1]",
        ],
    )
    .await;
}

#[tokio::test]
async fn admit_with_several_bad_fields_reports_them_all_together() {
    let f = Fixture::new().await;
    let mut r = f.good();
    r.request_id = String::new();
    r.customer_id = "cust 1".into();
    r.model_digest = "md5:abc".into();
    r.certificate_chain = "garbage".into();
    let w = r.workload.as_mut().unwrap();
    w.region = String::new();
    w.cluster = "has space".into();
    w.endpoints = vec![String::new()];
    let status = f
        .assert_admit_rejected(
            r,
            &[
                "request_id",
                "customer_id",
                "model_digest",
                "certificate_chain",
                "workload.cluster",
                "workload.region",
                "workload.endpoints[0]",
            ],
        )
        .await;
    // The message names them too, for callers that do not read details.
    for field in [
        "request_id",
        "customer_id",
        "model_digest",
        "certificate_chain",
    ] {
        assert!(status.message().contains(field), "{status:?}");
    }
}

#[tokio::test]
async fn admit_message_over_4_mib_is_refused_and_nothing_is_stored() {
    let f = Fixture::new().await;
    let mut r = f.good();
    r.certificate_chain = "A".repeat(4 * 1024 * 1024 + 1);
    let request_id = r.request_id.clone();
    let status = f.admit(r).await.unwrap_err();
    assert!(
        matches!(status.code(), Code::ResourceExhausted | Code::OutOfRange),
        "{status:?}"
    );
    assert!(f.deployments().await.is_empty());
    // Nothing was recorded under that request id: the same id with a good
    // request is a new, allowed admission.
    let mut retry = f.good();
    retry.request_id = request_id;
    let answer = f.admit(retry).await.unwrap();
    assert_eq!(answer.decision, proto::Decision::Allow as i32);
    assert_eq!(f.deployments().await.len(), 1);
}

#[tokio::test]
async fn admit_for_an_unknown_customer_is_a_deny_not_an_error() {
    let f = Fixture::new().await;
    let r = f.env.admit_request("cust-nobody", &f.chain);
    let answer = f.admit(r).await.unwrap();
    assert_eq!(answer.decision, proto::Decision::Deny as i32);
    let codes: Vec<i32> = answer.reasons.iter().map(|r| r.code).collect();
    assert_eq!(
        codes,
        vec![proto::ReasonCode::CustomerUnknown as i32],
        "{:?}",
        answer.reasons
    );
    assert!(answer.deployment_id.is_empty());
    assert!(answer.licence.is_empty());
    assert!(!answer.decision_id.is_empty());
    assert!(f.deployments().await.is_empty());
}

// ---- Customers ----

async fn register(
    f: &Fixture,
    r: proto::RegisterCustomerRequest,
) -> Result<proto::Customer, Status> {
    f.env
        .customers(&f.server)
        .await
        .register_customer(r)
        .await
        .map(tonic::Response::into_inner)
}

async fn get_customer(f: &Fixture, id: &str) -> Result<proto::Customer, Status> {
    f.env
        .customers(&f.server)
        .await
        .get_customer(proto::GetCustomerRequest {
            customer_id: id.into(),
            as_of: None,
        })
        .await
        .map(tonic::Response::into_inner)
}

fn customer_request(id: &str) -> proto::RegisterCustomerRequest {
    common::organisation_named(id, &format!("{id} GmbH"), proto::CustomerStatus::Pending)
}

/// `r` is refused naming exactly `fields`, and its customer id (if it has a
/// usable one) does not exist afterwards.
async fn assert_register_rejected(f: &Fixture, r: proto::RegisterCustomerRequest, fields: &[&str]) {
    let id = r.customer_id.clone();
    let status = register(f, r).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(violated_fields(&status), sorted(fields), "{status:?}");
    if is_identifier(&id) {
        let missing = get_customer(f, &id).await.unwrap_err();
        assert_eq!(
            missing.code(),
            Code::NotFound,
            "{id} was stored: {missing:?}"
        );
    }
}

#[tokio::test]
async fn register_customer_with_empty_id_or_name_names_the_field() {
    let f = Fixture::new().await;
    let mut r = customer_request("ignored");
    r.customer_id = String::new();
    assert_register_rejected(&f, r, &["customer_id"]).await;
    for name in ["", "   "] {
        let mut r = customer_request("cust-noname");
        r.legal_name = name.into();
        assert_register_rejected(&f, r, &["legal_name"]).await;
    }
}

#[tokio::test]
async fn register_customer_with_a_country_that_is_not_alpha_2_names_country() {
    let f = Fixture::new().await;
    for country in ["de", "DEU", "D", "", "D1"] {
        let mut r = customer_request("cust-country");
        r.country = country.into();
        assert_register_rejected(&f, r, &["country"]).await;
    }
}

#[tokio::test]
async fn register_customer_with_unspecified_or_unknown_kind_names_kind() {
    let f = Fixture::new().await;
    for kind in [proto::CustomerKind::Unspecified as i32, 99] {
        let mut r = customer_request("cust-kind");
        r.kind = kind;
        assert_register_rejected(&f, r, &["kind"]).await;
    }
}

#[tokio::test]
async fn register_customer_as_closed_names_status() {
    let f = Fixture::new().await;
    for status in [proto::CustomerStatus::Closed as i32, 99] {
        let mut r = customer_request("cust-closed");
        r.status = status;
        assert_register_rejected(&f, r, &["status"]).await;
    }
}

#[tokio::test]
async fn register_customer_with_several_bad_fields_reports_them_all() {
    let f = Fixture::new().await;
    let r = proto::RegisterCustomerRequest {
        kind: 0,
        legal_name: String::new(),
        country: "deu".into(),
        ..common::organisation("cust bad", proto::CustomerStatus::Closed)
    };
    assert_register_rejected(
        &f,
        r,
        &["customer_id", "kind", "legal_name", "country", "status"],
    )
    .await;
}

#[tokio::test]
async fn register_customer_with_invisible_characters_in_identifying_text_names_each_field() {
    let f = Fixture::new().await;
    let mut r = customer_request("cust-invisible");
    r.legal_name = "Acme\u{200b} GmbH".into();
    let d = r.details.as_mut().unwrap();
    d.registration_number = "HRB\u{2060}12345".into();
    d.legal_form = "Gmb\u{ad}H".into();
    d.addresses[0].lines = vec!["Beispiel\u{200d}strasse 1".into()];
    d.addresses[0].city = "\u{feff}Berlin".into();
    d.addresses[0].region = "Berlin\u{202e}".into();
    d.email = "kyc\u{200b}@example.com".into();
    d.declared_purpose = "hosted\u{2066} inference".into();
    d.key_personnel = vec![proto::Person {
        name: "Ann\u{3164} Example".into(),
        nationality: "DE".into(),
        date_of_birth: "1980-01-01".into(),
        role: "Director\u{200c}".into(),
        ..Default::default()
    }];
    assert_register_rejected(
        &f,
        r,
        &[
            "legal_name",
            "details.registration_number",
            "details.legal_form",
            "details.addresses[0].lines[0]",
            "details.addresses[0].city",
            "details.addresses[0].region",
            "details.email",
            "details.declared_purpose",
            "details.key_personnel[0].name",
            "details.key_personnel[0].role",
        ],
    )
    .await;
}

#[tokio::test]
async fn duplicate_registration_is_already_exists_and_leaves_version_1_unchanged() {
    let f = Fixture::new().await;
    let first = register(&f, customer_request("cust-dup")).await.unwrap();
    assert_eq!(first.version, 1);
    let mut again = customer_request("cust-dup");
    again.legal_name = "Someone Else SA".into();
    again.country = "FR".into();
    again.status = proto::CustomerStatus::Verified as i32;
    let status = register(&f, again).await.unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists, "{status:?}");
    let now = get_customer(&f, "cust-dup").await.unwrap();
    assert_eq!(now, first);
}

#[tokio::test]
async fn set_status_of_an_unknown_customer_is_not_found_and_creates_nothing() {
    let f = Fixture::new().await;
    let status = f
        .env
        .customers(&f.server)
        .await
        .set_customer_status(proto::SetCustomerStatusRequest {
            customer_id: "cust-ghost".into(),
            status: proto::CustomerStatus::Verified as i32,
            reason: "documents checked".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    let missing = get_customer(&f, "cust-ghost").await.unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
}

#[tokio::test]
async fn set_status_to_unspecified_names_status_and_keeps_the_version() {
    let f = Fixture::new().await;
    let first = register(&f, customer_request("cust-st")).await.unwrap();
    for bad in [proto::CustomerStatus::Unspecified as i32, 99] {
        let status = f
            .env
            .customers(&f.server)
            .await
            .set_customer_status(proto::SetCustomerStatusRequest {
                customer_id: "cust-st".into(),
                status: bad,
                reason: String::new(),
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert_eq!(violated_fields(&status), sorted(&["status"]));
    }
    assert_eq!(get_customer(&f, "cust-st").await.unwrap(), first);
}

// ---- Trust.PutCrl ----

/// File name -> content of every file in the trust directory's crls/.
fn crl_files(env: &TestEnv) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(env.config.trust.dir.join("crls"))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn put_crl_with_empty_or_garbage_bytes_names_crl_and_changes_no_trust() {
    let f = Fixture::new().await;
    let mut trust = f.env.trust(&f.server).await;
    let files_before = crl_files(&f.env);
    let before = trust
        .reload(proto::ReloadRequest {})
        .await
        .unwrap()
        .into_inner();

    let leaf = f.env.leaf();
    let bad_inputs: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("garbage", b"definitely not a CRL".to_vec()),
        (
            "PEM with a bad body",
            b"-----BEGIN X509 CRL-----\nAAAAAAAA\n-----END X509 CRL-----\n".to_vec(),
        ),
        ("a certificate, not a CRL", leaf.cert_der.to_vec()),
    ];
    for (what, crl) in bad_inputs {
        let status = trust
            .put_crl(proto::PutCrlRequest { crl })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{what}: {status:?}");
        assert_eq!(violated_fields(&status), sorted(&["crl"]), "{what}");
    }

    // Nothing changed: the files on disk are the same, and the bundle moved
    // by exactly the one version of the second reload (a refused CRL did
    // not bump it) with the same number of roots and CRLs.
    assert_eq!(crl_files(&f.env), files_before);
    let after = trust
        .reload(proto::ReloadRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(after.version, before.version + 1);
    assert_eq!((after.roots, after.crls), (before.roots, before.crls));
    // Admission behaves as before.
    let answer = f.admit(f.good()).await.unwrap();
    assert_eq!(
        answer.decision,
        proto::Decision::Allow as i32,
        "{:?}",
        answer.reasons
    );
}
