//! Who may call what, proved over real mTLS connections: every RPC in the
//! descriptor against every role, as the documented role table says, role-free health and reflection, and the
//! ways a caller can fail to be anyone at all (no certificate, a certificate
//! from another CA, a SPIFFE id that names no role of this trust domain).
#![allow(clippy::unwrap_used)]

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

use common::{connect, TestEnv, TestServer, ROLES, TRUST_DOMAIN};
use http::uri::PathAndQuery;
use prost::Message as _;
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use warden::pki::dev::TestCa;
use warden::proto;
use warden::proto::customers_client::CustomersClient;

/// The documented role table (DESIGN.md "Identity and roles", README
/// "Roles"), one row per RPC, written out here on purpose: the test must
/// not take its expectations from `auth::ROLE_TABLE`, the thing it checks,
/// or a wrong entry there would pass. `x` allows the role of that column.
/// Operations.Backup is not in DESIGN's table; the README gives backups to
/// admin alone.
#[rustfmt::skip]
const DOCUMENTED: &[(&str, &str)] = &[
    //                                                 scheduler kyc authority operator auditor admin
    ("/warden.v1.Admission/Admit",                       "x . . . . ."),
    ("/warden.v1.Admission/Renew",                       "x . . . . ."),
    ("/warden.v1.Admission/Release",                     "x . . . . ."),
    ("/warden.v1.Admission/GetDeployment",               "x . x x x ."),
    ("/warden.v1.Admission/ListDeployments",             "x . x x x ."),
    ("/warden.v1.Customers/RegisterCustomer",            ". x . . . ."),
    ("/warden.v1.Customers/UpdateCustomer",              ". x . . . ."),
    ("/warden.v1.Customers/SetCustomerStatus",           ". x . . . ."),
    ("/warden.v1.Customers/ResolveScreening",            ". x . . . ."),
    ("/warden.v1.Customers/GetCustomer",                 ". x . x x ."),
    ("/warden.v1.Customers/ListCustomers",               ". x . x x ."),
    ("/warden.v1.Orders/IssueOrder",                     ". . x x . ."),
    ("/warden.v1.Orders/ApproveOrder",                   ". . x x . ."),
    ("/warden.v1.Orders/LiftOrder",                      ". . x x . ."),
    ("/warden.v1.Orders/GetOrder",                       "x . x x x ."),
    ("/warden.v1.Orders/ListOrders",                     "x . x x x ."),
    ("/warden.v1.Orders/WatchOrders",                    "x . . . . ."),
    ("/warden.v1.Orders/AckOrder",                       "x . . . . ."),
    ("/warden.v1.Attribution/Attribute",                 ". . x . . ."),
    ("/warden.v1.Attribution/ListAttributionRequests",   ". . x . x ."),
    ("/warden.v1.Ledger/GetCheckpoint",                  ". . x x x x"),
    ("/warden.v1.Ledger/GetEntries",                     ". . x x x x"),
    ("/warden.v1.Ledger/GetInclusionProof",              ". . x x x x"),
    ("/warden.v1.Ledger/GetConsistencyProof",            ". . x x x x"),
    ("/warden.v1.Trust/PutCrl",                          ". . . . . x"),
    ("/warden.v1.Trust/Reload",                          ". . . . . x"),
    ("/warden.v1.Trust/LoadSanctionsList",               ". . . . . x"),
    ("/warden.v1.Operations/Backup",                     ". . . . . x"),
];

/// The documented matrix by path: for each RPC, whether each role of
/// [`ROLES`] (in that order) may call it.
fn documented() -> BTreeMap<&'static str, BTreeMap<&'static str, bool>> {
    let mut matrix = BTreeMap::new();
    for (path, marks) in DOCUMENTED {
        let marks: Vec<&str> = marks.split(' ').collect();
        assert_eq!(marks.len(), ROLES.len(), "{path}: one mark per role");
        let row: BTreeMap<&str, bool> = ROLES
            .iter()
            .zip(&marks)
            .map(|(role, mark)| match *mark {
                "x" => (*role, true),
                "." => (*role, false),
                other => panic!("{path}: mark {other:?} is neither x nor ."),
            })
            .collect();
        assert!(row.values().any(|&may| may), "{path}: nobody may call it");
        assert!(matrix.insert(*path, row).is_none(), "{path} has two rows");
    }
    matrix
}

/// A method from the descriptor.
struct Method {
    service: String,
    path: String,
    streaming: bool,
}

/// Every method of every service in warden's descriptor set, as gRPC paths.
fn descriptor_methods() -> Vec<Method> {
    let fds = prost_types::FileDescriptorSet::decode(proto::FILE_DESCRIPTOR_SET).unwrap();
    let mut methods = Vec::new();
    for file in &fds.file {
        for svc in &file.service {
            let service = format!("{}.{}", file.package(), svc.name());
            for m in &svc.method {
                methods.push(Method {
                    service: service.clone(),
                    path: format!("/{service}/{}", m.name()),
                    streaming: m.server_streaming() || m.client_streaming(),
                });
            }
        }
    }
    methods
}

/// Calls `path` with one empty message and discards the answer's content.
/// A streaming method is opened as a stream (one empty message up); the
/// role check answers before any handler reads it.
async fn call_empty(channel: Channel, path: &str, streaming: bool) -> Result<(), Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| Status::unknown(format!("channel not ready: {e}")))?;
    let path = PathAndQuery::from_str(path).unwrap();
    let codec = tonic_prost::ProstCodec::<(), ()>::default();
    if streaming {
        grpc.streaming(Request::new(tokio_stream::once(())), path, codec)
            .await
            .map(|_| ())
    } else {
        grpc.unary(Request::new(()), path, codec).await.map(|_| ())
    }
}

#[test]
fn every_rpc_in_the_descriptor_has_a_row_in_the_documented_table() {
    let matrix = documented();
    let methods = descriptor_methods();
    let in_descriptor: BTreeSet<&str> = methods.iter().map(|m| m.path.as_str()).collect();
    let missing: Vec<&&str> = in_descriptor
        .iter()
        .filter(|p| !matrix.contains_key(**p))
        .collect();
    assert!(
        missing.is_empty(),
        "RPCs with no row in the documented role table: {missing:?}"
    );
    let stale: Vec<&&str> = matrix
        .keys()
        .filter(|p| !in_descriptor.contains(**p))
        .collect();
    assert!(stale.is_empty(), "rows for RPCs the API lacks: {stale:?}");
    for service in [
        "warden.v1.Admission",
        "warden.v1.Customers",
        "warden.v1.Trust",
    ] {
        assert!(
            methods.iter().any(|m| m.service == service),
            "{service} has no method in the descriptor"
        );
    }
}

#[tokio::test]
async fn every_rpc_times_every_role_gets_the_documented_answer() {
    let matrix = documented();
    let methods = descriptor_methods();
    let env = TestEnv::new();
    let server = env.start().await;
    let mut allowed = 0;
    let mut denied = 0;
    for name in ROLES {
        let channel = env.channel(&server, name).await;
        for m in &methods {
            let may = matrix
                .get(m.path.as_str())
                .unwrap_or_else(|| panic!("{} has no row in the documented table", m.path))[name];
            let result = call_empty(channel.clone(), &m.path, m.streaming).await;
            let code = result.as_ref().err().map(Status::code);
            if may {
                allowed += 1;
                assert!(
                    !matches!(code, Some(Code::PermissionDenied | Code::Unauthenticated)),
                    "{name} may call {} but got {result:?}",
                    m.path
                );
            } else {
                denied += 1;
                assert_eq!(
                    code,
                    Some(Code::PermissionDenied),
                    "{name} may not call {} but got {result:?}",
                    m.path
                );
            }
        }
    }
    assert_eq!(allowed + denied, methods.len() * ROLES.len());
    server.stop().await;
}

#[tokio::test]
async fn a_method_missing_from_the_role_table_is_denied_to_every_role() {
    let env = TestEnv::new();
    let server = env.start().await;
    for name in ROLES {
        let channel = env.channel(&server, name).await;
        for path in ["/warden.v1.Admission/Nope", "/warden.v2.Admin/Shutdown"] {
            let status = call_empty(channel.clone(), path, false).await.unwrap_err();
            // Denied before routing: not UNIMPLEMENTED.
            assert_eq!(status.code(), Code::PermissionDenied, "{name} {path}");
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn health_and_reflection_answer_every_role() {
    let env = TestEnv::new();
    let server = env.start().await;
    for name in ROLES {
        let channel = env.channel(&server, name).await;
        let mut health = HealthClient::new(channel.clone());
        for service in [
            "warden.v1.Admission",
            "warden.v1.Customers",
            "warden.v1.Trust",
        ] {
            let r = health
                .check(HealthCheckRequest {
                    service: service.into(),
                })
                .await
                .unwrap_or_else(|s| panic!("{name}: health of {service}: {s:?}"))
                .into_inner();
            assert_eq!(r.status, ServingStatus::Serving as i32, "{name} {service}");
        }

        let mut reflection = ServerReflectionClient::new(channel);
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut answers = reflection
            .server_reflection_info(tokio_stream::iter([request]))
            .await
            .unwrap_or_else(|s| panic!("{name}: reflection: {s:?}"))
            .into_inner();
        let answer = answers.message().await.unwrap().unwrap();
        let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
            panic!("{name}: unexpected reflection answer {answer:?}");
        };
        let names: Vec<&str> = list.service.iter().map(|s| s.name.as_str()).collect();
        for service in [
            "warden.v1.Admission",
            "warden.v1.Customers",
            "warden.v1.Trust",
        ] {
            assert!(names.contains(&service), "{name}: {names:?}");
        }
    }
    server.stop().await;
}

/// Registers `id` through `channel` (which may fail in any way).
async fn try_register(channel: Channel, id: &str) -> Result<proto::Customer, Status> {
    CustomersClient::new(channel)
        .register_customer(common::organisation(id, proto::CustomerStatus::Verified))
        .await
        .map(tonic::Response::into_inner)
}

/// Asserts, as a proper kyc caller, that customer `id` does not exist.
async fn assert_customer_absent(env: &TestEnv, server: &TestServer, id: &str) {
    let status = env
        .customers(server)
        .await
        .get_customer(proto::GetCustomerRequest {
            customer_id: id.into(),
            as_of: None,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
}

/// A connection attempt with `identity` must fail, at connect or at the
/// first call, with the TLS alert `alert` (so the server refused it during
/// the handshake rather than answering), and store nothing.
async fn assert_refused_and_nothing_stored(
    env: &TestEnv,
    server: &TestServer,
    identity: Option<(&str, &str)>,
    alert: &str,
    id: &str,
) {
    let failure = match connect(server.addr, &env.mtls.cert_pem(), identity).await {
        Err(e) => format!("{e:?}"),
        Ok(channel) => {
            let status = try_register(channel, id).await.unwrap_err();
            assert!(
                !matches!(
                    status.code(),
                    Code::PermissionDenied | Code::Unauthenticated | Code::InvalidArgument
                ),
                "the server answered the call: {status:?}"
            );
            format!("{status:?}")
        }
    };
    assert!(failure.contains(alert), "expected {alert}: {failure}");
    assert_customer_absent(env, server, id).await;
}

#[tokio::test]
async fn connection_without_client_certificate_is_refused() {
    let env = TestEnv::new();
    let server = env.start().await;
    assert_refused_and_nothing_stored(&env, &server, None, "CertificateRequired", "no-cert-1")
        .await;
    // The server is still serving authenticated callers afterwards.
    env.register(&server, "after-1", proto::CustomerStatus::Pending)
        .await;
    server.stop().await;
}

#[tokio::test]
async fn certificate_from_another_ca_is_refused_at_handshake() {
    let env = TestEnv::new();
    let server = env.start().await;
    let other = TestCa::mtls_ca("another mTLS CA").unwrap();
    let c = other
        .client_cert(&format!("spiffe://{TRUST_DOMAIN}/kyc/test"))
        .unwrap();
    assert_refused_and_nothing_stored(
        &env,
        &server,
        Some((&c.cert_pem, &c.key_pem)),
        "UnknownCA",
        "other-ca-1",
    )
    .await;
    server.stop().await;
}

/// A channel with a certificate from the server's client CA for `spiffe_id`.
async fn channel_as(env: &TestEnv, server: &TestServer, spiffe_id: &str) -> Channel {
    let c = env.mtls.client_cert(spiffe_id).unwrap();
    connect(
        server.addr,
        &env.mtls.cert_pem(),
        Some((&c.cert_pem, &c.key_pem)),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn spiffe_id_of_another_trust_domain_or_unknown_role_is_unauthenticated() {
    let env = TestEnv::new();
    let server = env.start().await;
    for (n, spiffe_id) in [
        "spiffe://other.test/kyc/test".to_string(),
        format!("spiffe://{TRUST_DOMAIN}.evil/kyc/test"),
        format!("spiffe://{TRUST_DOMAIN}/root/x"),
        format!("spiffe://{TRUST_DOMAIN}/kyc"),
        format!("spiffe://{TRUST_DOMAIN}/kyc/"),
        format!("https://{TRUST_DOMAIN}/kyc/test"),
    ]
    .iter()
    .enumerate()
    {
        let id = format!("bad-id-{n}");
        let channel = channel_as(&env, &server, spiffe_id).await;
        let status = try_register(channel, &id).await.unwrap_err();
        assert_eq!(
            status.code(),
            Code::Unauthenticated,
            "{spiffe_id}: {status:?}"
        );
        assert_customer_absent(&env, &server, &id).await;
    }
    server.stop().await;
}

/// A client certificate signed by the server's client CA with the given
/// subject alternative names. `TestCa` only issues one URI SAN, so this
/// rebuilds the CA as an rcgen issuer from its name and key (`mtls_ca`
/// certificates carry only a common name).
fn client_cert_with_sans(env: &TestEnv, sans: Vec<SanType>) -> (String, String) {
    let mut ca_params = CertificateParams::default();
    let mut ca_dn = DistinguishedName::new();
    ca_dn.push(DnType::CommonName, "warden test mTLS CA");
    ca_params.distinguished_name = ca_dn;
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let issuer = Issuer::new(ca_params, KeyPair::from_pem(&env.mtls.key_pem()).unwrap());

    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "odd client");
    params.distinguished_name = dn;
    params.subject_alt_names = sans;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

#[tokio::test]
async fn certificate_with_two_uri_sans_or_none_or_of_another_trust_domain_is_unauthenticated() {
    let env = TestEnv::new();
    let server = env.start().await;
    let uri = |s: &str| SanType::URI(s.try_into().unwrap());
    let cases = [
        (
            "two URI SANs",
            vec![
                uri(&format!("spiffe://{TRUST_DOMAIN}/kyc/a")),
                uri(&format!("spiffe://{TRUST_DOMAIN}/kyc/b")),
            ],
        ),
        (
            "only a DNS SAN",
            vec![SanType::DnsName("kyc.warden.test".try_into().unwrap())],
        ),
        ("no SAN at all", vec![]),
        (
            "another trust domain",
            vec![uri("spiffe://elsewhere.test/kyc/a")],
        ),
        (
            "a dot-dot segment",
            vec![uri(&format!("spiffe://{TRUST_DOMAIN}/kyc/.."))],
        ),
    ];
    for (n, (what, sans)) in cases.into_iter().enumerate() {
        let (cert, key) = client_cert_with_sans(&env, sans);
        let channel = connect(server.addr, &env.mtls.cert_pem(), Some((&cert, &key)))
            .await
            .unwrap();
        // The certificate chains to the right CA, so the handshake succeeds
        // and the refusals below are the auth layer's: even health and
        // reflection are only for callers of the trust domain.
        let health = HealthClient::new(channel.clone())
            .check(HealthCheckRequest {
                service: "warden.v1.Customers".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(
            health.code(),
            Code::Unauthenticated,
            "{what}: health: {health:?}"
        );
        let id = format!("san-{n}");
        let status = try_register(channel, &id).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{what}: {status:?}");
        assert_customer_absent(&env, &server, &id).await;
    }
    server.stop().await;
}
