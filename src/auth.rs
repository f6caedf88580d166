//! Who is calling, and may they call this method?
//!
//! Every caller presents a client certificate from the provider's client CA
//! (rustls verifies the chain during the handshake; a connection without one
//! never reaches this module). The certificate carries exactly one URI SAN,
//! a SPIFFE id `spiffe://<trust-domain>/<role>/<name>`, which becomes the
//! [`Principal`]. [`ROLE_TABLE`] is the only place that says which role may
//! call which method; a method missing from it is denied to everyone.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use serde::{Deserialize, Serialize};
use tonic::body::Body;
use tower::{Layer, Service};
use x509_parser::extensions::GeneralName;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Scheduler,
    Kyc,
    Authority,
    Operator,
    Auditor,
    Admin,
}

impl Role {
    pub const ALL: [Role; 6] = [
        Role::Scheduler,
        Role::Kyc,
        Role::Authority,
        Role::Operator,
        Role::Auditor,
        Role::Admin,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Scheduler => "scheduler",
            Role::Kyc => "kyc",
            Role::Authority => "authority",
            Role::Operator => "operator",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The full SPIFFE id; this is what ledger entries and records name.
    pub spiffe_id: String,
    pub role: Role,
    pub name: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("no client certificate was presented")]
    NoCertificate,
    #[error("client certificate cannot be parsed")]
    Unparsable,
    #[error("client certificate must carry exactly one URI SAN, found {0}")]
    UriSanCount(usize),
    #[error("client identity {0:?} is not spiffe://{1}/<role>/<name>")]
    BadSpiffeId(String, String),
    #[error("unknown role {0:?}")]
    UnknownRole(String),
    #[error("client identity {0:?} is not of the form spiffe://<trust-domain>/<role>/<name>")]
    NoRolePath(String),
}

/// Longest SPIFFE id accepted (the SPIFFE-ID specification's limit).
pub const MAX_SPIFFE_ID_BYTES: usize = 2048;

/// Reads the principal from a client certificate (already verified by
/// rustls against the client CA).
pub fn principal_from_der(der: &[u8], trust_domain: &str) -> Result<Principal, AuthError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|_| AuthError::Unparsable)?;
    let uris: Vec<&str> = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::URI(u) => Some(*u),
                _ => None,
            })
            .collect(),
        Ok(None) => Vec::new(),
        Err(_) => return Err(AuthError::Unparsable),
    };
    principal_from_uris(&uris, trust_domain)
}

/// The principal named by a certificate's URI SANs: exactly one, a SPIFFE
/// id of `trust_domain`.
pub fn principal_from_uris<S: AsRef<str>>(
    uris: &[S],
    trust_domain: &str,
) -> Result<Principal, AuthError> {
    match uris {
        [one] => parse_spiffe_id(one.as_ref(), trust_domain),
        _ => Err(AuthError::UriSanCount(uris.len())),
    }
}

/// The path segments of `id` if it is a SPIFFE id of `trust_domain` as the
/// SPIFFE-ID specification defines one: `spiffe://` and the trust domain
/// exactly, at most 2,048 bytes, segments of `[A-Za-z0-9._-]` that are not
/// empty, `.` or `..` (so no `//`, no trailing `/`), no query or fragment.
fn spiffe_path<'a>(id: &'a str, trust_domain: &str) -> Result<Vec<&'a str>, AuthError> {
    let bad = || AuthError::BadSpiffeId(truncated(id), trust_domain.to_string());
    if id.len() > MAX_SPIFFE_ID_BYTES {
        return Err(bad());
    }
    let path = id
        .strip_prefix("spiffe://")
        .and_then(|rest| rest.strip_prefix(trust_domain))
        .and_then(|rest| rest.strip_prefix('/'))
        .ok_or_else(bad)?;
    let segments: Vec<&str> = path.split('/').collect();
    let segment_ok = |s: &&str| {
        !s.is_empty()
            && *s != "."
            && *s != ".."
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    };
    if segments.iter().all(segment_ok) {
        Ok(segments)
    } else {
        Err(bad())
    }
}

/// An id as shown in errors and logs: at most 200 characters of it.
fn truncated(id: &str) -> String {
    match id.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &id[..i]),
        None => id.to_string(),
    }
}

/// Parses `spiffe://<trust-domain>/<role>/<name>`.
pub fn parse_spiffe_id(id: &str, trust_domain: &str) -> Result<Principal, AuthError> {
    let [role, name] = spiffe_path(id, trust_domain)?[..] else {
        return Err(AuthError::NoRolePath(truncated(id)));
    };
    let role = Role::parse(role).ok_or_else(|| AuthError::UnknownRole(role.to_string()))?;
    Ok(Principal {
        spiffe_id: id.to_string(),
        role,
        name: name.to_string(),
    })
}

use Role::{Admin, Auditor, Authority, Kyc, Operator, Scheduler};

/// Which roles may call each method, by gRPC path. The one place this is
/// decided; `tests` prove every method in the descriptor is listed.
pub const ROLE_TABLE: &[(&str, &[Role])] = &[
    ("/warden.v1.Admission/Admit", &[Scheduler]),
    ("/warden.v1.Admission/Renew", &[Scheduler]),
    ("/warden.v1.Admission/Release", &[Scheduler]),
    (
        "/warden.v1.Admission/GetDeployment",
        &[Scheduler, Authority, Operator, Auditor],
    ),
    (
        "/warden.v1.Admission/ListDeployments",
        &[Scheduler, Authority, Operator, Auditor],
    ),
    ("/warden.v1.Customers/RegisterCustomer", &[Kyc]),
    ("/warden.v1.Customers/UpdateCustomer", &[Kyc]),
    ("/warden.v1.Customers/SetCustomerStatus", &[Kyc]),
    ("/warden.v1.Customers/ResolveScreening", &[Kyc]),
    (
        "/warden.v1.Customers/GetCustomer",
        &[Kyc, Operator, Auditor],
    ),
    (
        "/warden.v1.Customers/ListCustomers",
        &[Kyc, Operator, Auditor],
    ),
    (
        "/warden.v1.Ledger/GetCheckpoint",
        &[Authority, Operator, Auditor, Admin],
    ),
    (
        "/warden.v1.Ledger/GetEntries",
        &[Authority, Operator, Auditor, Admin],
    ),
    (
        "/warden.v1.Ledger/GetInclusionProof",
        &[Authority, Operator, Auditor, Admin],
    ),
    (
        "/warden.v1.Ledger/GetConsistencyProof",
        &[Authority, Operator, Auditor, Admin],
    ),
    ("/warden.v1.Orders/IssueOrder", &[Authority, Operator]),
    ("/warden.v1.Orders/ApproveOrder", &[Authority, Operator]),
    ("/warden.v1.Orders/LiftOrder", &[Authority, Operator]),
    (
        "/warden.v1.Orders/GetOrder",
        &[Scheduler, Authority, Operator, Auditor],
    ),
    (
        "/warden.v1.Orders/ListOrders",
        &[Scheduler, Authority, Operator, Auditor],
    ),
    ("/warden.v1.Orders/WatchOrders", &[Scheduler]),
    ("/warden.v1.Orders/AckOrder", &[Scheduler]),
    ("/warden.v1.Attribution/Attribute", &[Authority]),
    (
        "/warden.v1.Attribution/ListAttributionRequests",
        &[Authority, Auditor],
    ),
    ("/warden.v1.Trust/PutCrl", &[Admin]),
    ("/warden.v1.Trust/Reload", &[Admin]),
    ("/warden.v1.Trust/LoadSanctionsList", &[Admin]),
    // A backup copies every record (personal data sealed): admin only.
    ("/warden.v1.Operations/Backup", &[Admin]),
];

/// Services any caller of the trust domain may use, whatever the role:
/// health checks (probes hold no role) and reflection (it only describes
/// the API). A certificate of another trust domain may not.
const OPEN_SERVICES: &[&str] = &[
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1.ServerReflection/",
    "/grpc.reflection.v1alpha.ServerReflection/",
];

/// What the auth layer decides for a call.
#[derive(Debug, PartialEq, Eq)]
pub enum Access {
    /// A role-free method (health, reflection).
    Open,
    Allowed,
    Denied,
}

/// Decides whether `role` may call the method at `path`. Unknown methods are
/// denied.
pub fn access(path: &str, role: Option<Role>) -> Access {
    if OPEN_SERVICES.iter().any(|p| path.starts_with(p)) {
        return Access::Open;
    }
    match (ROLE_TABLE.iter().find(|(p, _)| *p == path), role) {
        (Some((_, roles)), Some(role)) if roles.contains(&role) => Access::Allowed,
        _ => Access::Denied,
    }
}

/// Tower layer that authenticates every request and enforces
/// [`ROLE_TABLE`]. It sits in front of every service, so a handler that is
/// reached has a [`Principal`] in its request extensions.
#[derive(Clone)]
pub struct AuthLayer {
    trust_domain: Arc<str>,
}

impl AuthLayer {
    pub fn new(trust_domain: &str) -> Self {
        Self {
            trust_domain: trust_domain.into(),
        }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            trust_domain: self.trust_domain.clone(),
        }
    }
}

#[derive(Clone)]
pub struct AuthService<S> {
    inner: S,
    trust_domain: Arc<str>,
}

/// The caller's identity, from the peer the connection layer put into the
/// request: a principal, or (for the open services) at least a SPIFFE id
/// of the trust domain.
fn principal_of<B>(req: &Request<B>, trust_domain: &str) -> Result<Principal, AuthError> {
    let peer = req
        .extensions()
        .get::<Arc<crate::tls::Peer>>()
        .ok_or(AuthError::NoCertificate)?;
    principal_from_uris(&peer.uri_sans, trust_domain)
}

/// Whether an identity error still leaves a caller of the trust domain
/// (a SPIFFE id of it whose path names no role), who may use the open
/// services.
fn of_trust_domain(e: &AuthError) -> bool {
    matches!(e, AuthError::UnknownRole(_) | AuthError::NoRolePath(_))
}

impl<S> Service<Request<Body>> for AuthService<S>
where
    S: Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = futures_util::future::Either<
        S::Future,
        std::future::Ready<Result<Response<Body>, S::Error>>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        use futures_util::future::Either;
        let path = req.uri().path().to_string();
        let principal = principal_of(&req, &self.trust_domain);
        let status = match (
            &principal,
            access(&path, principal.as_ref().ok().map(|p| p.role)),
        ) {
            (Ok(_), Access::Open) => None,
            (Err(e), Access::Open) if of_trust_domain(e) => None,
            (Ok(_), Access::Allowed) => None,
            (Err(e), _) => {
                tracing::warn!(method = %path, error = %e, "unauthenticated call refused");
                Some(tonic::Status::unauthenticated(e.to_string()))
            }
            (Ok(p), Access::Denied) => {
                tracing::warn!(method = %path, principal = %p.spiffe_id, "call refused by role table");
                Some(tonic::Status::permission_denied(format!(
                    "role {} may not call {path}",
                    p.role
                )))
            }
        };
        match status {
            Some(status) => Either::Right(std::future::ready(Ok(status.into_http()))),
            None => {
                if let Ok(p) = principal {
                    req.extensions_mut().insert(p);
                }
                Either::Left(self.inner.call(req))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spiffe_ids_parse_into_role_and_name() {
        let p = parse_spiffe_id("spiffe://warden.dev/scheduler/k8s-eu", "warden.dev").unwrap();
        assert_eq!(p.role, Role::Scheduler);
        assert_eq!(p.name, "k8s-eu");
        assert!(parse_spiffe_id("spiffe://other.dev/scheduler/x", "warden.dev").is_err());
        assert!(parse_spiffe_id("spiffe://warden.dev/scheduler/", "warden.dev").is_err());
        assert!(parse_spiffe_id("spiffe://warden.dev/scheduler", "warden.dev").is_err());
        assert!(parse_spiffe_id("spiffe://warden.devx/scheduler/a", "warden.dev").is_err());
        assert_eq!(
            parse_spiffe_id("spiffe://warden.dev/root/x", "warden.dev"),
            Err(AuthError::UnknownRole("root".into()))
        );
    }

    #[test]
    fn spiffe_ids_are_checked_to_the_specification() {
        let td = "warden.dev";
        for bad in [
            "spiffe://warden.dev/scheduler/..",
            "spiffe://warden.dev/scheduler/.",
            "spiffe://warden.dev/../scheduler",
            "spiffe://warden.dev/scheduler//a",
            "spiffe://warden.dev/scheduler/a/",
            "spiffe://warden.dev//scheduler/a",
            "spiffe://warden.dev/scheduler/a?x=1",
            "spiffe://warden.dev/scheduler/a#f",
            "spiffe://warden.dev/scheduler/a%2F",
            "spiffe://user@warden.dev/scheduler/a",
            "spiffe://warden.dev:443/scheduler/a",
            "SPIFFE://warden.dev/scheduler/a",
            "spiffe://WARDEN.dev/scheduler/a",
        ] {
            assert!(parse_spiffe_id(bad, td).is_err(), "{bad} was accepted");
        }
        let long = format!("spiffe://warden.dev/scheduler/{}", "a".repeat(2_048));
        assert!(matches!(
            parse_spiffe_id(&long, td),
            Err(AuthError::BadSpiffeId(..))
        ));
        let longest = format!(
            "spiffe://warden.dev/scheduler/{}",
            "a".repeat(MAX_SPIFFE_ID_BYTES - "spiffe://warden.dev/scheduler/".len())
        );
        assert!(parse_spiffe_id(&longest, td).is_ok());
        assert!(parse_spiffe_id("spiffe://warden.dev/scheduler/k8s.eu-1_a", td).is_ok());
        // Of the trust domain but naming no role: only the open services.
        assert_eq!(
            parse_spiffe_id("spiffe://warden.dev/probe", td),
            Err(AuthError::NoRolePath("spiffe://warden.dev/probe".into()))
        );
        assert!(of_trust_domain(
            &parse_spiffe_id("spiffe://warden.dev/probe/kubelet", td).unwrap_err()
        ));
        assert!(!of_trust_domain(
            &parse_spiffe_id("spiffe://other.dev/probe/kubelet", td).unwrap_err()
        ));
    }

    #[test]
    fn unknown_methods_are_denied_to_every_role() {
        for r in Role::ALL {
            assert_eq!(access("/warden.v1.Admission/Nope", Some(r)), Access::Denied);
        }
        assert_eq!(access("/warden.v1.Admission/Admit", None), Access::Denied);
    }

    #[test]
    fn every_rpc_in_the_descriptor_has_a_role_table_entry_and_no_entry_is_stale() {
        use prost::Message;
        let fds =
            prost_types::FileDescriptorSet::decode(crate::proto::FILE_DESCRIPTOR_SET).unwrap();
        let mut methods = Vec::new();
        for file in fds.file {
            for svc in &file.service {
                for m in &svc.method {
                    methods.push(format!("/{}.{}/{}", file.package(), svc.name(), m.name()));
                }
            }
        }
        assert!(!methods.is_empty());
        for m in &methods {
            assert!(
                ROLE_TABLE
                    .iter()
                    .any(|(p, roles)| p == m && !roles.is_empty()),
                "{m} has no role table entry"
            );
        }
        for (p, _) in ROLE_TABLE {
            assert!(methods.contains(&p.to_string()), "{p} is not in the API");
        }
    }
}
