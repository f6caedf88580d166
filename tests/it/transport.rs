//! The transport floor against the real server: client certificates that
//! are revoked or denied after their connection was accepted, TLS files
//! rotated without a restart (by `Trust.Reload`, by the periodic check, by
//! SIGHUP to the real binary), and the limits on what a caller can hold
//! (connections per identity, order watches, idle connections, handshakes,
//! file descriptors).
#![allow(clippy::unwrap_used)]

use crate::common;

use std::future::Future;
use std::io::Read as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{after_ticks, connect, write, TestEnv, TestServer, TRUST_DOMAIN};
use tokio::io::AsyncReadExt as _;
use tonic::transport::Channel;
use tonic::Code;
use warden::pki::dev::{CrlSpec, TestCa, TestLeaf};
use warden::proto;
use warden::proto::orders_client::OrdersClient;
use warden::proto::trust_client::TrustClient;

/// A call every role in these tests may make cheaply: scheduler, operator.
async fn list_orders(channel: Channel) -> Result<(), tonic::Status> {
    OrdersClient::new(channel)
        .list_orders(proto::ListOrdersRequest::default())
        .await
        .map(|_| ())
}

/// Whether a fresh connection with this identity can make a call at all
/// (with TLS 1.3 the client may finish its handshake before the server
/// refuses its certificate, so the refusal can come with the first call).
async fn can_call(env: &TestEnv, server: &TestServer, cert: &TestLeaf) -> bool {
    can_call_at(env, server.addr, cert).await
}

async fn can_call_at(env: &TestEnv, addr: SocketAddr, cert: &TestLeaf) -> bool {
    match connect(
        addr,
        &env.mtls.cert_pem(),
        Some((&cert.cert_pem, &cert.key_pem)),
    )
    .await
    {
        Ok(ch) => list_orders(ch).await.is_ok(),
        Err(_) => false,
    }
}

async fn reload(env: &TestEnv, server: &TestServer) -> proto::TrustStatus {
    TrustClient::new(env.channel(server, "admin").await)
        .reload(proto::ReloadRequest {})
        .await
        .unwrap()
        .into_inner()
}

/// Polls `check` until it holds; fails the test after 20 s. For effects of
/// background work (a periodic reload, a closed connection noticed): the
/// test waits for the event, not for an amount of time.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An environment whose client CA has a CRL directory holding an empty CRL.
fn env_with_client_crls() -> (TestEnv, PathBuf) {
    let mut env = TestEnv::new();
    let dir = env.path().join("tls/client-crls");
    write(
        &dir.join("client-ca.crl"),
        env.mtls.crl(&CrlSpec::empty(1)).unwrap(),
    );
    env.config.tls.client_crls = Some(dir.clone());
    (env, dir)
}

#[tokio::test]
async fn a_revoked_scheduler_is_refused_on_a_new_and_on_its_open_connection() {
    let (env, crl_dir) = env_with_client_crls();
    let server = env.start().await;
    let open = env.channel(&server, "scheduler").await;
    list_orders(open.clone()).await.unwrap();
    let operator = env.channel(&server, "operator").await;

    let scheduler = &env.clients["scheduler"];
    write(
        &crl_dir.join("client-ca.crl"),
        env.mtls
            .crl(&CrlSpec::empty(2).revoking(&scheduler.serial))
            .unwrap(),
    );
    let status = reload(&env, &server).await;
    assert_eq!((status.tls_version, status.client_crls), (2, 1));

    let refused = list_orders(open).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    assert!(
        refused.message().to_lowercase().contains("revoked"),
        "{refused:?}"
    );
    assert!(!can_call(&env, &server, scheduler).await);
    // Everyone else goes on, on open and on new connections.
    list_orders(operator).await.unwrap();
    assert!(can_call(&env, &server, &env.clients["operator"]).await);
    server.stop().await;
}

#[tokio::test]
async fn a_client_crl_past_its_next_update_refuses_the_clients_it_covers() {
    let (env, crl_dir) = env_with_client_crls();
    let now = time::OffsetDateTime::now_utc();
    write(
        &crl_dir.join("client-ca.crl"),
        env.mtls
            .crl(
                &CrlSpec::empty(2)
                    .times(now - time::Duration::days(2), now - time::Duration::days(1)),
            )
            .unwrap(),
    );
    let server = env.start().await;
    assert!(!can_call(&env, &server, &env.clients["operator"]).await);
    server.stop().await;
}

#[tokio::test]
async fn a_denied_identity_is_refused_on_a_new_and_on_its_open_connection() {
    let mut env = TestEnv::new();
    let deny = env.path().join("tls/deny-list");
    write(&deny, "# no one yet\n");
    env.config.tls.deny_list = Some(deny.clone());
    let server = env.start().await;
    let open = env.channel(&server, "scheduler").await;
    list_orders(open.clone()).await.unwrap();

    write(
        &deny,
        format!("spiffe://{TRUST_DOMAIN}/scheduler/test  # key left on a laptop\n"),
    );
    let status = reload(&env, &server).await;
    assert_eq!(status.denied_identities, 1);

    let refused = list_orders(open).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    assert!(refused.message().contains("deny-list"), "{refused:?}");
    assert!(!can_call(&env, &server, &env.clients["scheduler"]).await);
    // Another scheduler identity is not affected.
    let other = env
        .mtls
        .client_cert(&format!("spiffe://{TRUST_DOMAIN}/scheduler/other"))
        .unwrap();
    assert!(can_call(&env, &server, &other).await);
    server.stop().await;
}

#[tokio::test]
async fn a_bad_file_on_reload_changes_nothing_and_names_the_file() {
    let (env, crl_dir) = env_with_client_crls();
    let server = env.start().await;
    write(&crl_dir.join("client-ca.crl"), b"not a CRL");
    let e = TrustClient::new(env.channel(&server, "admin").await)
        .reload(proto::ReloadRequest {})
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("client-ca.crl"), "{e:?}");
    // The material in force stays: clients are still served.
    assert!(can_call(&env, &server, &env.clients["scheduler"]).await);
    server.stop().await;
}

/// Writes a server certificate from a new CA into the configured files and
/// returns that CA's PEM.
fn rotate_server_certificate(env: &TestEnv) -> String {
    let ca = TestCa::mtls_ca("rotated server CA").unwrap();
    let cert = ca
        .server_cert(&["localhost"], &[IpAddr::V4(Ipv4Addr::LOCALHOST)])
        .unwrap();
    write(&env.config.tls.cert, &cert.cert_pem);
    write(&env.config.tls.key, &cert.key_pem);
    ca.cert_pem()
}

#[tokio::test]
async fn a_rotated_server_certificate_is_served_to_the_next_client() {
    let env = TestEnv::new();
    let server = env.start().await;
    let before = env.channel(&server, "operator").await;
    let new_ca = rotate_server_certificate(&env);
    let op = &env.clients["operator"];
    // Not before the reload: the old certificate is still served.
    assert!(
        connect(server.addr, &new_ca, Some((&op.cert_pem, &op.key_pem)))
            .await
            .is_err()
    );
    assert_eq!(reload(&env, &server).await.tls_version, 2);
    let after = connect(server.addr, &new_ca, Some((&op.cert_pem, &op.key_pem)))
        .await
        .unwrap();
    list_orders(after).await.unwrap();
    assert!(
        connect(
            server.addr,
            &env.mtls.cert_pem(),
            Some((&op.cert_pem, &op.key_pem))
        )
        .await
        .is_err(),
        "the old server certificate is no longer served"
    );
    // A connection made before goes on.
    list_orders(before).await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn a_client_ca_added_to_the_bundle_is_trusted_after_reload() {
    let env = TestEnv::new();
    let server = env.start().await;
    let second = TestCa::mtls_ca("second client CA").unwrap();
    let client = second
        .client_cert(&format!("spiffe://{TRUST_DOMAIN}/operator/new-ca"))
        .unwrap();
    assert!(!can_call(&env, &server, &client).await);
    write(
        &env.config.tls.client_ca,
        format!("{}{}", env.mtls.cert_pem(), second.cert_pem()),
    );
    reload(&env, &server).await;
    assert!(can_call(&env, &server, &client).await);
    server.stop().await;
}

#[tokio::test]
async fn changed_files_are_picked_up_by_the_periodic_check() {
    let mut env = TestEnv::new();
    let deny = env.path().join("tls/deny-list");
    write(&deny, "");
    env.config.tls.deny_list = Some(deny.clone());
    env.config.tls.reload_interval_seconds = 1;
    let clock = env.manual_clock();
    let server = env.start().await;
    let open = env.channel(&server, "scheduler").await;
    list_orders(open.clone()).await.unwrap();
    write(&deny, format!("spiffe://{TRUST_DOMAIN}/scheduler/test\n"));
    let interval = Duration::from_secs(env.config.tls.reload_interval_seconds);
    after_ticks(
        &clock,
        interval,
        "the deny-list change takes effect",
        || {
            let open = open.clone();
            async move { list_orders(open).await.is_err() }
        },
    )
    .await;
    server.stop().await;
}

/// Starts the real binary on a free port with `env.config`; returns the
/// child and its address once it answers, or panics with its log.
async fn spawn_serve(env: &TestEnv, shell_prefix: &str) -> (Child, SocketAddr, PathBuf) {
    let [addr] = common::loopback_addrs();
    let config = env.path().join("serve.toml");
    std::fs::write(
        &config,
        common::config_toml(&warden::config::Config {
            listen: addr,
            ..env.config.clone()
        }),
    )
    .unwrap();
    let log = env.path().join("serve.log");
    let child = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{shell_prefix} exec \"$0\" serve --config \"$1\""))
        .arg(env!("CARGO_BIN_EXE_warden"))
        .arg(&config)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let op = &env.clients["operator"];
    let mut child = child;
    eventually("warden serve answers", || {
        let exited = child.try_wait().unwrap();
        assert!(exited.is_none(), "warden serve exited:\n{}", read_log(&log));
        can_call_at(env, addr, op)
    })
    .await;
    (child, addr, log)
}

fn read_log(path: &PathBuf) -> String {
    let mut s = String::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        let _ = f.read_to_string(&mut s);
    }
    s
}

fn stop(mut child: Child) {
    let _ = std::process::Command::new("kill")
        .arg(child.id().to_string())
        .status();
    let _ = child.wait();
}

#[tokio::test]
async fn sighup_reloads_the_deny_list_of_the_running_binary() {
    let mut env = TestEnv::new();
    let deny = env.path().join("tls/deny-list");
    write(&deny, "");
    env.config.tls.deny_list = Some(deny.clone());
    let (child, addr, log) = spawn_serve(&env, "").await;
    let s = &env.clients["scheduler"];
    let open = connect(addr, &env.mtls.cert_pem(), Some((&s.cert_pem, &s.key_pem)))
        .await
        .unwrap();
    list_orders(open.clone()).await.unwrap();
    write(&deny, format!("spiffe://{TRUST_DOMAIN}/scheduler/test\n"));
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    eventually("SIGHUP takes effect", || {
        let open = open.clone();
        async move {
            matches!(list_orders(open).await, Err(s) if s.code() == Code::Unauthenticated)
        }
    })
    .await;
    stop(child);
    assert!(read_log(&log).contains("SIGHUP"), "{}", read_log(&log));
}

#[tokio::test]
async fn a_principal_at_its_connection_limit_leaves_room_for_others() {
    let mut env = TestEnv::new();
    env.config.limits.max_connections = 16;
    env.config.limits.max_connections_per_principal = 4;
    let server = env.start().await;
    let mut held = Vec::new();
    for _ in 0..4 {
        let ch = env.channel(&server, "scheduler").await;
        list_orders(ch.clone()).await.unwrap();
        held.push(ch);
    }
    let scheduler = &env.clients["scheduler"];
    assert!(
        !can_call(&env, &server, scheduler).await,
        "a fifth connection of the same identity is refused"
    );
    // Another principal is served while the scheduler holds its limit.
    assert!(can_call(&env, &server, &env.clients["operator"]).await);
    // The connections held keep working, and a closed one frees its slot.
    for ch in &held {
        list_orders(ch.clone()).await.unwrap();
    }
    held.pop();
    eventually("a freed slot is usable", || {
        can_call(&env, &server, scheduler)
    })
    .await;
    server.stop().await;
}

#[tokio::test]
async fn order_watches_are_bounded_per_principal() {
    let mut env = TestEnv::new();
    env.config.limits.max_watches_per_principal = 2;
    let server = env.start().await;
    let channel = env.channel(&server, "scheduler").await;
    let watch = || {
        let mut client = OrdersClient::new(channel.clone());
        async move {
            client
                .watch_orders(proto::WatchOrdersRequest { since_revision: 0 })
                .await
        }
    };
    let first = watch().await.unwrap();
    let _second = watch().await.unwrap();
    let third = watch().await.unwrap_err();
    assert_eq!(third.code(), Code::ResourceExhausted, "{third:?}");
    assert!(
        third.message().contains("limits.max_watches_per_principal"),
        "{third:?}"
    );
    // Another scheduler identity has its own allowance.
    let other = env.channel_as(&server, "scheduler", "other").await;
    OrdersClient::new(other)
        .watch_orders(proto::WatchOrdersRequest { since_revision: 0 })
        .await
        .unwrap();
    drop(first);
    eventually("a closed watch frees its slot", || async {
        watch().await.is_ok()
    })
    .await;
    server.stop().await;
}

/// A TLS client connection (ALPN h2) that never sends a call.
async fn silent_tls_connection(
    env: &TestEnv,
    addr: SocketAddr,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    use rustls::pki_types::ServerName;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(env.mtls.cert_der()).unwrap();
    let c = &env.clients["scheduler"];
    let certs = rustls_pemfile::certs(&mut c.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = rustls_pemfile::private_key(&mut c.key_pem.as_bytes())
        .unwrap()
        .unwrap();
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap()
}

/// Reads until the server closes; fails after 20 s.
async fn closed_by_server(stream: &mut (impl tokio::io::AsyncRead + Unpin)) {
    let mut buf = [0u8; 4096];
    let deadline = Duration::from_secs(20);
    tokio::time::timeout(deadline, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .expect("the server kept the connection open");
}

#[tokio::test]
async fn an_idle_connection_is_closed() {
    let mut env = TestEnv::new();
    env.config.limits.idle_timeout_seconds = 1;
    let server = env.start().await;
    let mut conn = silent_tls_connection(&env, server.addr).await;
    closed_by_server(&mut conn).await;
    server.stop().await;
}

#[tokio::test]
async fn a_connection_that_never_completes_its_handshake_is_closed() {
    let mut env = TestEnv::new();
    env.config.limits.handshake_timeout_seconds = 1;
    let server = env.start().await;
    let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    closed_by_server(&mut tcp).await;
    server.stop().await;
}

/// CPU seconds (user + system) a process has used so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which is in parentheses).
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / 100.0
}

#[tokio::test]
async fn out_of_file_descriptors_the_accept_loop_backs_off_and_recovers() {
    let mut env = TestEnv::new();
    // Limits above what the process may open, so accept itself fails.
    env.config.limits.max_connections = 10_000;
    env.config.limits.max_handshakes = 10_000;
    env.config.limits.handshake_timeout_seconds = 600;
    let (child, addr, log) = spawn_serve(&env, "ulimit -n 128 &&").await;
    let mut held = Vec::new();
    for _ in 0..200 {
        held.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    eventually("the server reports the shortage", || async {
        read_log(&log).contains("out of file descriptors")
    })
    .await;
    // While short of descriptors the loop pauses instead of spinning (it
    // used to burn a whole core): well under half a core over a second.
    let before = cpu_seconds(child.id());
    let window = Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let used = cpu_seconds(child.id()) - before;
    let elapsed = window.elapsed().as_secs_f64();
    assert!(
        used < 0.5 * elapsed,
        "{used:.2} s of CPU in {elapsed:.2} s while out of descriptors"
    );
    drop(held);
    let op = &env.clients["operator"];
    eventually("served again once descriptors are free", || {
        can_call_at(&env, addr, op)
    })
    .await;
    stop(child);
}
