//! `warden health`: asks a running warden whether it is serving, through the
//! standard gRPC health service (`grpc.health.v1.Health/Check`), over the
//! same mutual TLS as every other client command.
//!
//! It is what container and Kubernetes probes run. Kubernetes' built-in gRPC
//! probe cannot present a client certificate, and warden refuses every
//! connection without one, so the probe has to be a client of its own. The
//! health service needs a certificate from the client CA but no role: give
//! probes a certificate whose SPIFFE ID names no role (for example
//! `spiffe://<trust-domain>/probe/<name>`), and it can ask about health and
//! nothing else.
//!
//! Exit status: 0 when the server (or the service named with `--service`)
//! is SERVING; 1 otherwise — not serving, a service the server does not
//! know, no answer within `--timeout` — with a message saying which.

use std::time::Duration;

use anyhow::bail;
use clap::Args;
use serde_json::json;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use super::ClientArgs;

/// Exit status when the server answers but is not serving.
pub const EXIT_NOT_SERVING: i32 = super::exit::ERROR;

/// Identity used with the development certificates when neither --role nor
/// --cert is given: health needs no role, so the read-only one will do.
const DEFAULT_ROLE: &str = "auditor";

#[derive(Debug, Clone, Args)]
pub struct HealthArgs {
    /// Service to ask about, e.g. `warden.v1.Admission`; by default the
    /// server as a whole.
    #[arg(long, default_value = "")]
    pub service: String,
    /// Give up after this many seconds, connecting included. Keep it below
    /// the probe's own timeout.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub timeout: u64,
}

/// Runs the check and returns the process exit status.
pub async fn run(client: &ClientArgs, args: HealthArgs) -> anyhow::Result<i32> {
    let what = if args.service.is_empty() {
        "the server".to_string()
    } else {
        format!("service {}", args.service)
    };
    let status = match tokio::time::timeout(
        Duration::from_secs(args.timeout),
        check(client, &args.service),
    )
    .await
    {
        Ok(answer) => answer?,
        Err(_) => bail!(
            "no health answer from {} within {} s",
            client.addr,
            args.timeout
        ),
    };
    let serving = status == ServingStatus::Serving;
    if client.json {
        println!(
            "{}",
            json!({ "service": args.service, "status": status.as_str_name() })
        );
    } else if serving {
        println!("{what} is SERVING");
    }
    if serving {
        Ok(0)
    } else {
        if !client.json {
            eprintln!("{what} is {} at {}", status.as_str_name(), client.addr);
        }
        Ok(EXIT_NOT_SERVING)
    }
}

/// One `Health/Check` call.
async fn check(client: &ClientArgs, service: &str) -> anyhow::Result<ServingStatus> {
    let mut health = HealthClient::new(client.connect(DEFAULT_ROLE).await?);
    let request = HealthCheckRequest {
        service: service.to_string(),
    };
    match health.check(request).await {
        Ok(response) => Ok(response.into_inner().status()),
        Err(s) if s.code() == tonic::Code::NotFound => bail!(
            "{} has no health status for service {service:?}; ask for a gRPC service \
             name such as warden.v1.Admission, or omit --service for the whole server",
            client.addr
        ),
        // A status that wraps a transport error: the connection broke
        // before any answer. The usual cause is the TLS handshake, which
        // the server only fails after the client has sent its certificate.
        Err(s) if std::error::Error::source(&s).is_some() => bail!(
            "the connection to {} ended without an answer ({}); the server refuses a \
             client certificate its client CA did not issue for client authentication, \
             so check --cert and --key",
            client.addr,
            s.message()
        ),
        Err(s) => Err(super::commands::status_error(s)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::net::{IpAddr, Ipv4Addr};
    use std::path::Path;

    use std::sync::Arc;

    use tokio_util::sync::CancellationToken;
    use tonic::transport::Server;
    use tonic_health::server::HealthReporter;

    use super::*;
    use crate::auth::AuthLayer;
    use crate::config::{LimitsConfig, TlsConfig};
    use crate::pki::dev::TestCa;
    use crate::server::accept;
    use crate::tls::TlsState;

    const TRUST_DOMAIN: &str = "warden.test";

    /// A server with warden's TLS door, connection and auth layers in front
    /// of the health service, and the client arguments a probe would use: a
    /// certificate from the client CA whose SPIFFE ID names no role.
    struct Probe {
        server_pem: std::path::PathBuf,
        server_key: std::path::PathBuf,
        _dir: tempfile::TempDir,
        client: ClientArgs,
        reporter: HealthReporter,
        shutdown: CancellationToken,
    }

    impl Drop for Probe {
        fn drop(&mut self) {
            self.shutdown.cancel();
        }
    }

    fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    async fn start() -> Probe {
        crate::server::install_crypto_provider();
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::mtls_ca("health test CA").unwrap();
        let server = ca
            .server_cert(&["localhost"], &[IpAddr::V4(Ipv4Addr::LOCALHOST)])
            .unwrap();
        let server_pem = write(dir.path(), "server.pem", &server.cert_pem);
        let server_key = write(dir.path(), "server.key", &server.key_pem);
        let probe = ca
            .client_cert(&format!("spiffe://{TRUST_DOMAIN}/probe/kubelet"))
            .unwrap();
        let ca_pem = write(dir.path(), "ca.pem", &ca.cert_pem());
        let tls = Arc::new(
            TlsState::load(&TlsConfig {
                cert: server_pem.clone(),
                key: server_key.clone(),
                client_ca: ca_pem.clone(),
                trust_domain: TRUST_DOMAIN.into(),
                client_crls: None,
                deny_list: None,
                reload_interval_seconds: 0,
            })
            .unwrap(),
        );
        let metrics = Arc::new(crate::server::metrics::registry());
        let (reporter, health) = tonic_health::server::health_reporter();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let shutdown = CancellationToken::new();
        let incoming = accept::accept(
            listener,
            tls.clone(),
            accept::Limits::from(&LimitsConfig::default()),
            metrics.clone(),
            shutdown.clone(),
        );
        tokio::spawn(
            Server::builder()
                .layer(accept::ConnectionLayer::new(tls, metrics))
                .layer(AuthLayer::new(TRUST_DOMAIN))
                .add_service(health)
                .serve_with_incoming_shutdown(incoming, shutdown.clone().cancelled_owned()),
        );
        let client = ClientArgs {
            addr: format!("https://localhost:{port}"),
            role: None,
            dev_dir: dir.path().join("absent"),
            cert: Some(write(dir.path(), "probe.pem", &probe.cert_pem)),
            key: Some(write(dir.path(), "probe.key", &probe.key_pem)),
            ca: Some(ca_pem),
            json: false,
        };
        Probe {
            server_pem,
            server_key,
            _dir: dir,
            client,
            reporter,
            shutdown,
        }
    }

    fn args(service: &str) -> HealthArgs {
        HealthArgs {
            service: service.into(),
            timeout: 5,
        }
    }

    #[tokio::test]
    async fn a_serving_server_exits_zero_for_a_probe_certificate_without_a_role() {
        let p = start().await;
        assert_eq!(run(&p.client, args("")).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn a_service_that_is_not_serving_exits_one() {
        let p = start().await;
        p.reporter
            .set_service_status("warden.v1.Admission", tonic_health::ServingStatus::Serving)
            .await;
        assert_eq!(
            run(&p.client, args("warden.v1.Admission")).await.unwrap(),
            0
        );
        p.reporter
            .set_service_status(
                "warden.v1.Admission",
                tonic_health::ServingStatus::NotServing,
            )
            .await;
        assert_eq!(
            run(&p.client, args("warden.v1.Admission")).await.unwrap(),
            EXIT_NOT_SERVING
        );
    }

    #[tokio::test]
    async fn an_unknown_service_is_an_error_that_names_it() {
        let p = start().await;
        let e = run(&p.client, args("warden.v1.Nope")).await.unwrap_err();
        assert!(format!("{e:#}").contains("\"warden.v1.Nope\""), "{e:#}");
    }

    #[tokio::test]
    async fn no_server_is_an_error_naming_the_address() {
        let p = start().await;
        let mut client = p.client.clone();
        // A port that was free a moment ago: nothing listens there.
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = free.local_addr().unwrap().port();
        drop(free);
        client.addr = format!("https://localhost:{port}");
        let e = run(&client, args("")).await.unwrap_err();
        assert!(format!("{e:#}").contains(&client.addr), "{e:#}");
    }

    #[tokio::test]
    async fn a_certificate_not_for_client_authentication_is_refused_with_a_hint() {
        let p = start().await;
        let mut client = p.client.clone();
        // Issued by the client CA, but for server authentication only.
        client.cert = Some(p.server_pem.clone());
        client.key = Some(p.server_key.clone());
        let e = run(&client, args("")).await.unwrap_err();
        assert!(format!("{e:#}").contains("check --cert and --key"), "{e:#}");
    }
}
