//! Test harness: a real warden server on 127.0.0.1:0 with mutual TLS, a PKI
//! generated with rcgen for each test, and a sled store in a temp dir.
//! Clients are the generated tonic clients. Nothing here is mocked.
#![allow(dead_code, clippy::unwrap_used)]

pub mod postgres;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tempfile::TempDir;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use warden::auth::Role;
use warden::clock::{Clock, ManualClock};
use warden::config::{
    AdmissionConfig, Config, KycConfig, LedgerConfig, LicenceConfig, LimitsConfig, OrdersConfig,
    TlsConfig, TrustConfig,
};
use warden::ledger::note::{Signer, Verifier};
use warden::pki::dev::{sample_claims, CrlSpec, LeafSpec, TestCa, TestLeaf, TestPki};
use warden::proto;
use warden::proto::admission_client::AdmissionClient;
use warden::proto::customers_client::CustomersClient;
use warden::proto::trust_client::TrustClient;

pub const TRUST_DOMAIN: &str = "warden.test";
/// Every role, by name: the roles warden itself defines.
pub const ROLES: [&str; 6] = [
    Role::Scheduler.as_str(),
    Role::Kyc.as_str(),
    Role::Authority.as_str(),
    Role::Operator.as_str(),
    Role::Auditor.as_str(),
    Role::Admin.as_str(),
];

/// Everything on disk a server needs, kept for the life of a test so the
/// server can be stopped and started again on the same data.
pub struct TestEnv {
    pub dir: TempDir,
    pub pki: TestPki,
    pub mtls: TestCa,
    pub clients: HashMap<String, TestLeaf>,
    pub licence: Verifier,
    /// Verifier of the ledger's checkpoints.
    pub ledger: Verifier,
    pub config: Config,
    /// The clock the servers of this environment read; `None` is the
    /// system clock. Set it with [`TestEnv::manual_clock`].
    pub clock: Option<Arc<ManualClock>>,
    /// The PostgreSQL database the store is in, after
    /// [`TestEnv::on_postgres`]; `None`: sled in `config.data_dir`.
    pub database: Option<warden::config::Database>,
}

/// The `store.url` that names `database` (no password: the test cluster
/// trusts loopback).
fn database_url(database: &warden::config::Database) -> Option<String> {
    let c = &database.connect;
    Some(format!(
        "postgresql://{}@127.0.0.1:{}/{}?sslmode=disable",
        c.get_user()?,
        c.get_ports().first()?,
        c.get_dbname()?
    ))
}

pub fn write(path: &Path, data: impl AsRef<[u8]>) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, data).unwrap();
}

/// Writes a key file readable by its owner only, as warden requires.
pub fn write_secret(path: &Path, data: impl AsRef<[u8]>) {
    use std::os::unix::fs::PermissionsExt as _;
    write(path, data);
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

impl TestEnv {
    /// A fresh environment; `lease_seconds` is the admission lease.
    pub fn new() -> Self {
        Self::with_lease(300)
    }

    pub fn with_lease(lease_seconds: u64) -> Self {
        warden::server::install_crypto_provider();
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let pki = TestPki::new().unwrap();
        let mtls = TestCa::mtls_ca("warden test mTLS CA").unwrap();
        let server = mtls
            .server_cert(&["localhost"], &[IpAddr::V4(Ipv4Addr::LOCALHOST)])
            .unwrap();
        write(&root.join("tls/server.pem"), &server.cert_pem);
        write_secret(&root.join("tls/server.key"), &server.key_pem);
        write(&root.join("tls/client-ca.pem"), mtls.cert_pem());
        let mut clients = HashMap::new();
        for role in ROLES {
            let c = mtls
                .client_cert(&format!("spiffe://{TRUST_DOMAIN}/{role}/test"))
                .unwrap();
            clients.insert(role.to_string(), c);
        }
        // Trust directory: the regulator root and a current, empty CRL from
        // each CA.
        let trust = root.join("trust");
        write(&trust.join("roots/regulator.pem"), pki.root.cert_pem());
        write(
            &trust.join("crls/root.crl"),
            pki.root.crl(&CrlSpec::empty(1)).unwrap(),
        );
        write(
            &trust.join("crls/evaluator.crl"),
            pki.evaluator.crl(&CrlSpec::empty(1)).unwrap(),
        );
        let signer = Signer::generate("warden.test/licence").unwrap();
        write_secret(&root.join("licence.key"), signer.to_text());
        let ledger = Signer::generate("warden.test/ledger").unwrap();
        write_secret(&root.join("ledger.key"), ledger.to_text());
        let config = Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            metrics_listen: None,
            data_dir: root.join("data"),
            store: Default::default(),
            shutdown_grace_seconds: 5,
            tls: TlsConfig {
                cert: root.join("tls/server.pem"),
                key: root.join("tls/server.key"),
                client_ca: root.join("tls/client-ca.pem"),
                trust_domain: TRUST_DOMAIN.into(),
                client_crls: None,
                deny_list: None,
                reload_interval_seconds: 0,
            },
            trust: TrustConfig {
                dir: trust,
                require_crls: true,
                oid_base_arc: "1.3.6.1.4.1.32473.1".into(),
            },
            admission: AdmissionConfig { lease_seconds },
            licence: LicenceConfig {
                key: root.join("licence.key"),
            },
            ledger: LedgerConfig {
                key: root.join("ledger.key"),
            },
            kyc: KycConfig {
                pii_key_file: root.join("pii.keys"),
                screening_threshold: 0.9,
                retention_days: 365,
                purge_interval_seconds: 3600,
                max_verification_age_days: 0,
            },
            orders: OrdersConfig::default(),
            limits: LimitsConfig::default(),
        };
        warden::pii::Keyring::generate(&config.kyc.pii_key_file, "test-1").unwrap();
        config.validate().unwrap();
        Self {
            licence: signer.verifier(),
            ledger: ledger.verifier(),
            dir,
            pki,
            mtls,
            clients,
            config,
            clock: None,
            database: None,
        }
    }

    /// Servers started from now on read a manual clock, standing at the
    /// current time until the test moves it: time passes by
    /// `clock.advance(..)`, never by sleeping. Returns that clock.
    /// Switches the environment's store to a new database of the test
    /// PostgreSQL cluster ([`postgres::cluster`]); the data directory is
    /// then not used.
    pub fn on_postgres(&mut self) -> &warden::config::Database {
        self.use_database(postgres::cluster().database())
    }

    /// Switches the environment's store to `database`.
    pub fn use_database(
        &mut self,
        database: warden::config::Database,
    ) -> &warden::config::Database {
        self.config.store = warden::config::StoreConfig {
            engine: warden::config::Engine::Postgres,
            url: database_url(&database),
            ..Default::default()
        };
        self.database = Some(database);
        self.database.as_ref().unwrap()
    }

    pub fn manual_clock(&mut self) -> Arc<ManualClock> {
        self.clock
            .get_or_insert_with(|| Arc::new(ManualClock::starting_now()))
            .clone()
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A model-evaluation certificate with the sample claims.
    pub fn leaf(&self) -> TestLeaf {
        self.pki.leaf().unwrap()
    }

    /// A leaf built from a spec (see `LeafSpec`).
    pub fn leaf_with(&self, f: impl FnOnce(LeafSpec) -> LeafSpec) -> TestLeaf {
        let spec = f(LeafSpec::new(&self.pki.profile, sample_claims()));
        self.pki.evaluator.issue_leaf(&spec).unwrap()
    }

    /// PEM chain: leaf, then the evaluator CA.
    pub fn chain(&self, leaf: &TestLeaf) -> String {
        self.pki.chain(leaf)
    }

    /// The digest the sample claims certify.
    pub fn sample_digest(&self) -> String {
        sample_claims().model_digest
    }

    pub async fn start(&self) -> TestServer {
        let clock = self.clock.clone().map(|c| c as Arc<dyn Clock>);
        TestServer::start_on(&self.config, clock).await
    }

    /// A channel authenticated as `role`.
    pub async fn channel(&self, server: &TestServer, role: &str) -> Channel {
        let c = &self.clients[role];
        connect(
            server.addr,
            &self.mtls.cert_pem(),
            Some((&c.cert_pem, &c.key_pem)),
        )
        .await
        .unwrap()
    }

    /// A channel authenticated as `spiffe://<domain>/<role>/<name>`, with a
    /// client certificate issued for it now.
    pub async fn channel_as(&self, server: &TestServer, role: &str, name: &str) -> Channel {
        let c = self
            .mtls
            .client_cert(&format!("spiffe://{TRUST_DOMAIN}/{role}/{name}"))
            .unwrap();
        connect(
            server.addr,
            &self.mtls.cert_pem(),
            Some((&c.cert_pem, &c.key_pem)),
        )
        .await
        .unwrap()
    }

    pub async fn admission(&self, server: &TestServer) -> AdmissionClient<Channel> {
        AdmissionClient::new(self.channel(server, "scheduler").await)
    }

    pub async fn customers(&self, server: &TestServer) -> CustomersClient<Channel> {
        CustomersClient::new(self.channel(server, "kyc").await)
    }

    pub async fn trust(&self, server: &TestServer) -> TrustClient<Channel> {
        TrustClient::new(self.channel(server, "admin").await)
    }

    /// Registers a customer with the given status through the API.
    pub async fn register(
        &self,
        server: &TestServer,
        id: &str,
        status: proto::CustomerStatus,
    ) -> proto::Customer {
        self.customers(server)
            .await
            .register_customer(organisation(id, status))
            .await
            .unwrap()
            .into_inner()
    }

    /// The PEM chain of a freshly issued sample certificate.
    pub fn sample_chain(&self) -> String {
        self.chain(&self.leaf())
    }

    /// An admission request that is allowed once `customer` is VERIFIED.
    pub fn admit_request(&self, customer: &str, chain: &str) -> proto::AdmitRequest {
        proto::AdmitRequest {
            request_id: uuid::Uuid::new_v4().to_string(),
            customer_id: customer.into(),
            model_digest: self.sample_digest(),
            certificate_chain: chain.into(),
            workload: Some(workload()),
        }
    }

    /// [`TestEnv::admit_request`] for a workload serving `endpoints`.
    pub fn admit_request_serving(
        &self,
        customer: &str,
        chain: &str,
        endpoints: &[&str],
    ) -> proto::AdmitRequest {
        let mut r = self.admit_request(customer, chain);
        if let Some(w) = r.workload.as_mut() {
            w.endpoints = endpoints.iter().map(|e| e.to_string()).collect();
        }
        r
    }

    /// Admits `req` as the scheduler: the decision, ALLOW or DENY. Fails
    /// the test if the call itself fails.
    pub async fn admit(
        &self,
        server: &TestServer,
        req: proto::AdmitRequest,
    ) -> proto::AdmitResponse {
        self.admission(server)
            .await
            .admit(req)
            .await
            .unwrap()
            .into_inner()
    }

    /// Admits the sample model for `customer` with `chain` (the request of
    /// [`TestEnv::admit_request`]): the decision.
    pub async fn admit_chain(
        &self,
        server: &TestServer,
        customer: &str,
        chain: &str,
    ) -> proto::AdmitResponse {
        self.admit(server, self.admit_request(customer, chain))
            .await
    }

    /// Admits `req`, which must be allowed; the new deployment's id.
    pub async fn admit_allowed(&self, server: &TestServer, req: proto::AdmitRequest) -> String {
        let r = self.admit(server, req).await;
        assert_eq!(r.decision, proto::Decision::Allow as i32, "{r:?}");
        r.deployment_id
    }
}

/// The workload of [`TestEnv::admit_request`]: eight H100s in eu-west.
pub fn workload() -> proto::Workload {
    proto::Workload {
        cluster: "c1".into(),
        region: "eu-west".into(),
        node: "n1".into(),
        accelerator_type: "h100".into(),
        accelerator_count: 8,
        endpoints: vec!["10.0.0.1:8000".into()],
    }
}

/// `c` as the text of a config file that `Config::load` reads back as `c`.
pub fn config_toml(c: &Config) -> String {
    let p = |p: &Path| toml::Value::String(p.to_str().unwrap().to_string()).to_string();
    let mut tls_extra = format!(
        "reload_interval_seconds = {}\n",
        c.tls.reload_interval_seconds
    );
    if let Some(d) = &c.tls.client_crls {
        tls_extra.push_str(&format!("client_crls = {}\n", p(d)));
    }
    if let Some(d) = &c.tls.deny_list {
        tls_extra.push_str(&format!("deny_list = {}\n", p(d)));
    }
    let l = &c.limits;
    let mut store = String::new();
    if !c.data_dir.as_os_str().is_empty() {
        store.push_str(&format!("data_dir = {}\n", p(&c.data_dir)));
    }
    if let Some(url) = &c.store.url {
        store.push_str(&format!(
            "[store]\nengine = \"postgres\"\nurl = \"{url}\"\npool_size = {}\n",
            c.store.pool_size
        ));
    }
    format!(
        "listen = \"{}\"\n\
         shutdown_grace_seconds = {}\n\
         {}\
         [tls]\ncert = {}\nkey = {}\nclient_ca = {}\ntrust_domain = \"{}\"\n{}\
         [trust]\ndir = {}\nrequire_crls = {}\noid_base_arc = \"{}\"\n\
         [admission]\nlease_seconds = {}\n\
         [licence]\nkey = {}\n\
         [ledger]\nkey = {}\n\
         [kyc]\npii_key_file = {}\nmax_verification_age_days = {}\n\
         [limits]\nmax_connections = {}\nmax_connections_per_principal = {}\n\
         max_handshakes = {}\nhandshake_timeout_seconds = {}\nidle_timeout_seconds = {}\n\
         keepalive_interval_seconds = {}\nkeepalive_timeout_seconds = {}\n\
         max_streams_per_connection = {}\nmax_watches_per_principal = {}\n",
        c.listen,
        c.shutdown_grace_seconds,
        store,
        p(&c.tls.cert),
        p(&c.tls.key),
        p(&c.tls.client_ca),
        c.tls.trust_domain,
        tls_extra,
        p(&c.trust.dir),
        c.trust.require_crls,
        c.trust.oid_base_arc,
        c.admission.lease_seconds,
        p(&c.licence.key),
        p(&c.ledger.key),
        p(&c.kyc.pii_key_file),
        c.kyc.max_verification_age_days,
        l.max_connections,
        l.max_connections_per_principal,
        l.max_handshakes,
        l.handshake_timeout_seconds,
        l.idle_timeout_seconds,
        l.keepalive_interval_seconds,
        l.keepalive_timeout_seconds,
        l.max_streams_per_connection,
        l.max_watches_per_principal,
    )
}

/// `N` distinct free loopback addresses, for config files that name their
/// listen addresses before a server process starts. Every listener is held
/// until all are picked, so no two of them share a port; another process
/// may still take one before the server binds it, which callers retry.
pub fn loopback_addrs<const N: usize>() -> [std::net::SocketAddr; N] {
    let held: Vec<std::net::TcpListener> = (0..N)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    std::array::from_fn(|i| held[i].local_addr().unwrap())
}

/// The `warden` binary, with no client settings inherited from the
/// environment (`WARDEN_ADDR` and the like).
pub fn warden_command() -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_warden"));
    for var in [
        "WARDEN_ADDR",
        "WARDEN_ROLE",
        "WARDEN_DEV_DIR",
        "WARDEN_CERT",
        "WARDEN_KEY",
        "WARDEN_CA",
    ] {
        c.env_remove(var);
    }
    c
}

/// Connects with the given server CA and optional client identity.
pub async fn connect(
    addr: SocketAddr,
    server_ca_pem: &str,
    identity: Option<(&str, &str)>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(server_ca_pem))
        .domain_name("localhost");
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    Endpoint::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
}

/// A running server. `stop` drains it; dropping it cancels it.
pub struct TestServer {
    pub addr: SocketAddr,
    /// Where the metrics endpoint listens, if the config turned it on.
    pub metrics_addr: Option<SocketAddr>,
    shutdown: CancellationToken,
    handle: Option<JoinHandle<Result<(), warden::server::ServerError>>>,
}

impl TestServer {
    pub async fn start(config: &Config) -> Self {
        Self::start_on(config, None).await
    }

    /// Starts a server reading `clock` (the system clock if `None`).
    pub async fn start_on(config: &Config, clock: Option<Arc<dyn Clock>>) -> Self {
        let app = match clock {
            Some(clock) => warden::server::build_app_with_clock(config, clock).await,
            None => warden::server::build_app(config).await,
        }
        .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let metrics = warden::server::bind_metrics(config).await.unwrap();
        let metrics_addr = metrics.as_ref().map(|l| l.local_addr().unwrap());
        if let Some(metrics) = metrics {
            tokio::spawn(warden::server::metrics::serve(
                metrics,
                app.clone(),
                shutdown.clone(),
            ));
        }
        let handle = tokio::spawn({
            let config = config.clone();
            let shutdown = shutdown.clone();
            async move { warden::server::serve(&config, app, listener, shutdown).await }
        });
        Self {
            addr,
            metrics_addr,
            shutdown,
            handle: Some(handle),
        }
    }

    /// Stops accepting, drains, and waits until the store is closed so the
    /// same data directory can be opened again.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(h) = self.handle.take() {
            tokio::time::timeout(std::time::Duration::from_secs(10), h)
                .await
                .expect("server did not drain within 10 s")
                .unwrap()
                .unwrap();
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A complete, valid organisation record (invented).
pub fn org_details() -> proto::CustomerDetails {
    proto::CustomerDetails {
        registration_number: "HRB 12345".into(),
        legal_form: "GmbH".into(),
        jurisdiction: "DE".into(),
        addresses: vec![proto::Address {
            lines: vec!["Beispielstrasse 1".into()],
            city: "Berlin".into(),
            postal_code: "10115".into(),
            region: String::new(),
            country: "DE".into(),
        }],
        email: "kyc@example.com".into(),
        phone: "+4930123456".into(),
        declared_purpose: "hosted inference for customer support".into(),
        ..Default::default()
    }
}

/// A registration of organisation `id`, valid apart from what a test
/// changes.
pub fn organisation(id: &str, status: proto::CustomerStatus) -> proto::RegisterCustomerRequest {
    organisation_named(id, &format!("{id} Ltd"), status)
}

/// [`organisation`] under the legal name `legal_name`.
pub fn organisation_named(
    id: &str,
    legal_name: &str,
    status: proto::CustomerStatus,
) -> proto::RegisterCustomerRequest {
    proto::RegisterCustomerRequest {
        customer_id: id.into(),
        kind: proto::CustomerKind::Organisation as i32,
        legal_name: legal_name.into(),
        country: "DE".into(),
        status: status as i32,
        details: Some(org_details()),
    }
}

/// A PENDING registration of an individual, `id` (invented).
pub fn individual(id: &str) -> proto::RegisterCustomerRequest {
    proto::RegisterCustomerRequest {
        customer_id: id.into(),
        kind: proto::CustomerKind::Individual as i32,
        legal_name: "Orla Quenby".into(),
        country: "IE".into(),
        status: proto::CustomerStatus::Pending as i32,
        details: Some(proto::CustomerDetails {
            date_of_birth: "1985-04-12".into(),
            place_of_birth: "Cork".into(),
            addresses: org_details().addresses,
            email: "orla@example.org".into(),
            declared_purpose: "research prototypes".into(),
            ..Default::default()
        }),
    }
}

/// Moves `clock` forward by `step` and looks again, until `check` holds:
/// for work a background task does when the clock reaches its next tick
/// (retention purge, order expiry, the TLS files check). Advancing on every
/// look means a task that went back to sleep late still wakes. Fails the
/// test if `check` still does not hold after 10 s of real time.
pub async fn after_ticks<F, Fut>(clock: &ManualClock, step: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        clock.advance(step);
        if check().await {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never happened: {what}"
        );
        // Let the woken task run before looking again.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
