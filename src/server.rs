//! The gRPC server: mutual TLS, the auth layer in front of every service,
//! health and reflection, and shutdown on one cancellation token.
//!
//! `serve` takes an already-bound listener so tests can bind `127.0.0.1:0`
//! and read the port back before any client connects.
//!
//! TLS is accepted here rather than by tonic (see [`accept`]): the rustls
//! configuration requires a client certificate verified by webpki against
//! the client CA (and its CRLs), and is rebuilt when its files change (see
//! [`tls`](crate::tls)); the door counts failed handshakes and bounds the
//! connections callers can hold.

pub(crate) mod accept;
pub mod metrics;

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::api::admission::AdmissionService;
use crate::api::attribution::AttributionService;
use crate::api::customers::CustomersService;
use crate::api::ledger::LedgerService;
use crate::api::operations::OperationsService;
use crate::api::orders::OrdersService;
use crate::api::trust::TrustService;
use crate::api::App;
use crate::auth::AuthLayer;
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, ConfigError, Engine};
use crate::ledger::note::Signer;
use crate::proto::admission_server::AdmissionServer;
use crate::proto::attribution_server::AttributionServer;
use crate::proto::customers_server::CustomersServer;
use crate::proto::ledger_server::LedgerServer;
use crate::proto::operations_server::OperationsServer;
use crate::proto::orders_server::OrdersServer;
use crate::proto::trust_server::TrustServer;
use crate::store::{PgStore, SledStore, Store};
use crate::trust::TrustState;

/// Largest request or response message accepted (4 MiB).
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

// A list page stops at its byte budget, with room left for the rest of the
// answer and for one item larger than the budget on its own.
const _: () = assert!(crate::domain::limits::PAGE_BYTES <= MAX_MESSAGE_BYTES / 4);

/// How long `serve` waits, after the last call ended, for the store to
/// persist its last checkpoint and release the data directory.
const STORE_CLOSE_LIMIT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot read {what} from {path}: {source}")]
    Read {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("signing key {path} is invalid: {message}")]
    SigningKey { path: String, message: String },
    #[error("trust bundle: {0}")]
    Trust(#[source] crate::trust::TrustError),
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(
        "the store in {dir} is damaged ({key}: {detail}). warden will not serve from it. \
         Restore the data directory from your latest backup (`warden restore FILE --config \
         CONFIG`, into an empty directory or with --force); `warden store check --config CONFIG` \
         lists every damaged record. Writes made after that backup are lost"
    )]
    Damaged {
        dir: String,
        key: String,
        detail: String,
    },
    #[error(
        "{what} {path} is open to {who} (mode {mode:04o}); a key file must be readable by \
         warden's user only: run `chmod 600 {path}` (a key file owned by root may also be \
         readable by its group: mode 0640 or 0440)"
    )]
    KeyFileMode {
        what: &'static str,
        path: String,
        who: &'static str,
        mode: u32,
    },
    #[error("TLS configuration: {0}")]
    Tls(#[from] crate::tls::TlsError),
    #[error("server failed: {0}")]
    Transport(String),
    #[error("cannot listen on {addr} ({field}): {source}")]
    Listen {
        field: &'static str,
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

/// Installs ring as the process's rustls crypto provider. Idempotent: a
/// second call (tests start many servers in one process) changes nothing.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn read(what: &'static str, path: &std::path::Path) -> Result<Vec<u8>, ServerError> {
    std::fs::read(path).map_err(|source| ServerError::Read {
        what,
        path: path.display().to_string(),
        source,
    })
}

fn load_signer(what: &'static str, path: &std::path::Path) -> Result<Signer, ServerError> {
    let text = read(what, path)?;
    Signer::from_text(&String::from_utf8_lossy(&text)).map_err(|e| ServerError::SigningKey {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

/// Refuses a key file others could read (see [`ServerError::KeyFileMode`]):
/// one owned by root may be readable by its group (how Kubernetes secrets
/// and root-managed `/etc` files reach a service user), any other must be
/// private to its owner. As PostgreSQL checks its server key.
#[cfg(unix)]
fn check_key_file(what: &'static str, path: &std::path::Path) -> Result<(), ServerError> {
    use std::os::unix::fs::MetadataExt as _;
    let meta = std::fs::metadata(path).map_err(|source| ServerError::Read {
        what,
        path: path.display().to_string(),
        source,
    })?;
    let mode = meta.mode() & 0o7777;
    let allowed = if meta.uid() == 0 { 0o740 } else { 0o700 };
    let extra = mode & 0o777 & !allowed;
    if extra == 0 {
        return Ok(());
    }
    Err(ServerError::KeyFileMode {
        what,
        path: path.display().to_string(),
        who: if extra & 0o070 != 0 && extra & 0o007 != 0 {
            "its group and others"
        } else if extra & 0o070 != 0 {
            "its group"
        } else {
            "others"
        },
        mode,
    })
}

#[cfg(not(unix))]
fn check_key_file(_: &'static str, _: &std::path::Path) -> Result<(), ServerError> {
    Ok(())
}

/// Every secret key the configuration names.
fn check_key_files(config: &Config) -> Result<(), ServerError> {
    for (what, path) in [
        ("licence key", &config.licence.key),
        ("ledger key", &config.ledger.key),
        ("PII key file", &config.kyc.pii_key_file),
        ("TLS server key", &config.tls.key),
    ] {
        check_key_file(what, path)?;
    }
    Ok(())
}

/// Opens the store behind the corruption guard; damage found while opening
/// it (sled failing on its files, a ledger that does not check out) is
/// reported as a damaged data directory.
async fn open_store(
    config: &Config,
    ledger_signer: Signer,
    keys: crate::pii::Keyring,
    corruption: &Arc<crate::store::CorruptionWatch>,
) -> Result<Arc<dyn Store>, ServerError> {
    let (opened, place): (Result<Arc<dyn Store>, _>, String) = match config.store.engine {
        Engine::Sled => (
            SledStore::open(&config.data_dir, ledger_signer, keys)
                .map(|s| Arc::new(crate::store::Guarded::new(s, corruption.clone())) as _),
            config.data_dir.display().to_string(),
        ),
        Engine::Postgres => {
            let database = config.store.database().map_err(ConfigError::Invalid)?;
            let place = database_name(&database);
            (
                PgStore::connect(&database, ledger_signer, keys)
                    .await
                    .map(|s| Arc::new(crate::store::Guarded::new(s, corruption.clone())) as _),
                place,
            )
        }
    };
    match opened {
        Ok(store) => Ok(store),
        Err(crate::store::StoreError::Corrupt { key, detail }) => Err(ServerError::Damaged {
            dir: place,
            key,
            detail,
        }),
        Err(e) => Err(e.into()),
    }
}

/// How logs and errors name a database: host, port and name, never the
/// password.
fn database_name(database: &crate::config::Database) -> String {
    let c = &database.connect;
    let host = c.get_hosts().first().map_or_else(String::new, |h| match h {
        tokio_postgres::config::Host::Tcp(h) => h.clone(),
        tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
    });
    let port = c.get_ports().first().copied().unwrap_or(5432);
    format!(
        "database {} on {host}:{port}",
        c.get_dbname().unwrap_or_default()
    )
}

/// Opens the store, loads keys and the trust bundle: everything the
/// services share. The services read the time from the system clock.
pub async fn build_app(config: &Config) -> Result<Arc<App>, ServerError> {
    build_app_with_clock(config, Arc::new(SystemClock)).await
}

/// [`build_app`] on a given clock: tests pass a
/// [`ManualClock`](crate::clock::ManualClock) and move time themselves.
pub async fn build_app_with_clock(
    config: &Config,
    clock: Arc<dyn Clock>,
) -> Result<Arc<App>, ServerError> {
    install_crypto_provider();
    check_key_files(config)?;
    let licence_signer = load_signer("licence key", &config.licence.key)?;
    let ledger_signer = load_signer("ledger key", &config.ledger.key)?;
    let trust = TrustState::load(&config.trust).map_err(ServerError::Trust)?;
    let tls = Arc::new(crate::tls::TlsState::load(&config.tls)?);
    let keys = crate::pii::Keyring::load(&config.kyc.pii_key_file)
        .map_err(|e| ServerError::Store(e.into()))?;
    let corruption = Arc::new(crate::store::CorruptionWatch::default());
    let store = open_store(config, ledger_signer, keys, &corruption).await?;
    let screening = crate::kyc::ScreeningState::load(&*store, config.kyc.screening_threshold)
        .await
        .map_err(|e| ServerError::Store(crate::store::StoreError::Io(e)))?;
    let (order_revision, _) = store.order_revisions().await?;
    let seconds_to_millis = |s: u64| {
        i64::try_from(s)
            .unwrap_or(i64::MAX / 1000)
            .saturating_mul(1000)
    };
    Ok(Arc::new(App {
        clock,
        store,
        trust,
        tls,
        licence_signer,
        lease_millis: seconds_to_millis(config.admission.lease_seconds),
        max_verification_age: (config.kyc.max_verification_age_days > 0).then(|| {
            seconds_to_millis(config.kyc.max_verification_age_days.saturating_mul(86_400))
        }),
        screening,
        retention_millis: seconds_to_millis(config.kyc.retention_days.saturating_mul(86_400)),
        purge_interval: Duration::from_secs(config.kyc.purge_interval_seconds),
        quorum: crate::domain::order::Quorum {
            suspend: config.orders.suspend_quorum,
            terminate: config.orders.terminate_quorum,
            lift: config.orders.lift_quorum,
        },
        order_revision: tokio::sync::watch::Sender::new(order_revision),
        shutdown: CancellationToken::new(),
        recent_events: crate::api::orders::RecentEvents::default(),
        watchers: crate::api::orders::Watchers::new(config.limits.max_watches_per_principal),
        metrics: Arc::new(metrics::registry()),
        corruption,
    }))
}

/// Serves until `shutdown` is cancelled, then stops accepting and lets
/// in-flight calls finish. The caller bounds that drain with a timeout.
// The server's life in order: build services, start supervised tasks, serve
// until shutdown, then stop the tasks and wait for the store to close. The
// order of these steps is the point (see the comments on each); split, it
// would be spread over helpers that must still be called in this order.
pub async fn serve(
    config: &Config,
    app: Arc<App>,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), ServerError> {
    install_crypto_provider();

    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<AdmissionServer<AdmissionService>>()
        .await;
    health
        .set_serving::<CustomersServer<CustomersService>>()
        .await;
    health.set_serving::<TrustServer<TrustService>>().await;
    health.set_serving::<LedgerServer<LedgerService>>().await;
    health.set_serving::<OrdersServer<OrdersService>>().await;
    health
        .set_serving::<AttributionServer<AttributionService>>()
        .await;
    health
        .set_serving::<OperationsServer<OperationsService>>()
        .await;
    let serving = Serving::new(health.clone());
    tokio::spawn(not_serving_once_damaged(
        serving.clone(),
        app.corruption.clone(),
        shutdown.clone(),
    ));
    if let Some(reachable) = app.store.reachability() {
        tokio::spawn(follow_the_database(
            serving.clone(),
            reachable,
            shutdown.clone(),
        ));
    }
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| ServerError::Transport(e.to_string()))?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .map_err(|e| ServerError::Transport(e.to_string()))?;

    // Fires once the store has persisted its last checkpoint and let go of
    // the data directory; the services and the retention task hold the
    // only other handles.
    let store_closed = app.store.closed();
    let supervised = |name, task| supervise(name, task, serving.clone(), shutdown.clone());
    let retention = supervised(
        "retention purge",
        Box::pin(retention_task(
            app.clone(),
            format!("spiffe://{}/system/retention", config.tls.trust_domain),
            shutdown.clone(),
        )),
    );
    let expiry = supervised(
        "order expiry",
        Box::pin(expiry_task(
            app.clone(),
            format!("spiffe://{}/system/orders", config.tls.trust_domain),
            shutdown.clone(),
        )),
    );
    // Order watches end as soon as shutdown begins, so the drain does not
    // wait for streams that never end on their own.
    tokio::spawn({
        let (shutdown, app_shutdown) = (shutdown.clone(), app.shutdown.clone());
        async move {
            shutdown.cancelled().await;
            app_shutdown.cancel();
        }
    });
    let reload = supervised(
        "TLS reload",
        Box::pin(reload_tls_task(
            app.clone(),
            Duration::from_secs(config.tls.reload_interval_seconds),
            shutdown.clone(),
        )),
    );
    let local = listener.local_addr().ok();
    tracing::info!(addr = ?local, "warden serving (mTLS)");
    let limits = &config.limits;
    let incoming = accept::accept(
        listener,
        app.tls.clone(),
        accept::Limits::from(limits),
        app.metrics.clone(),
        shutdown.clone(),
    );
    let result = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(limits.keepalive_interval_seconds)))
        .http2_keepalive_timeout(Some(Duration::from_secs(limits.keepalive_timeout_seconds)))
        .max_concurrent_streams(limits.max_streams_per_connection)
        // Outermost, so that calls the auth layer refuses are timed too.
        .layer(crate::metrics::GrpcMetricsLayer::new(app.metrics.clone()))
        .layer(accept::ConnectionLayer::new(
            app.tls.clone(),
            app.metrics.clone(),
        ))
        .layer(AuthLayer::new(&config.tls.trust_domain))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(
            AdmissionServer::new(AdmissionService::new(app.clone()))
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(
            CustomersServer::new(CustomersService::new(app.clone()))
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(LedgerServer::new(LedgerService::new(app.clone())))
        .add_service(
            OrdersServer::new(OrdersService::new(app.clone()))
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(AttributionServer::new(AttributionService::new(app.clone())))
        .add_service(OperationsServer::new(OperationsService::new(app.clone())))
        .add_service(
            TrustServer::new(TrustService::new(app))
                .max_decoding_message_size(crate::api::trust::MAX_LIST_BYTES),
        )
        .serve_with_incoming_shutdown(incoming, shutdown.clone().cancelled_owned())
        .await
        .map_err(|e| ServerError::Transport(e.to_string()));
    health
        .set_not_serving::<AdmissionServer<AdmissionService>>()
        .await;
    shutdown.cancel();
    let _ = retention.await;
    let _ = expiry.await;
    // It holds the app (and with it the store) until it sees shutdown.
    let _ = reload.await;
    // Every service (and with it the store) is dropped once the server
    // future has returned; wait until the store has finished, so the data
    // directory can be opened again as soon as `serve` returns.
    if tokio::time::timeout(STORE_CLOSE_LIMIT, store_closed.cancelled())
        .await
        .is_err()
    {
        tracing::warn!("store still open after shutdown; a call may still be holding it");
    }
    tracing::info!("warden stopped");
    result
}

/// Reloads the TLS files (and with them the client CRLs and deny-list)
/// every `interval` when they changed, and on SIGHUP the trust directory
/// too, until shutdown. A failed reload keeps what is in force.
async fn reload_tls_task(app: Arc<App>, interval: Duration, shutdown: CancellationToken) {
    #[cfg(unix)]
    let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; reload with `warden trust reload`");
            None
        }
    };
    loop {
        #[cfg(unix)]
        let hangup_received = async {
            match hangup.as_mut() {
                Some(h) => {
                    h.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let hangup_received = std::future::pending::<()>();
        let tick = async {
            if interval.is_zero() {
                std::future::pending::<()>().await;
            }
            app.clock.sleep(interval).await;
        };
        let everything = tokio::select! {
            () = shutdown.cancelled() => return,
            () = hangup_received => true,
            () = tick => false,
        };
        let app = app.clone();
        let done = tokio::task::spawn_blocking(move || {
            if everything {
                tracing::info!("SIGHUP: reloading the trust directory and the TLS files");
                if let Err(e) = app.trust.reload() {
                    tracing::error!(error = %e, "trust directory reload failed; the bundle in force stays");
                }
            }
            app.tls.reload()
        })
        .await;
        match done {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::error!(error = %e, "TLS reload failed; the certificates, CRLs and deny-list in force stay");
            }
            Err(e) => tracing::error!(error = %e, "TLS reload task failed"),
        }
    }
}

/// Reports NOT_SERVING, for the server and every service, from the first
/// damage found in the store until the process ends: a damaged store is
/// not fixed by waiting, and its data directory must be restored.
async fn not_serving_once_damaged(
    serving: Serving,
    corruption: Arc<crate::store::CorruptionWatch>,
    shutdown: CancellationToken,
) {
    tokio::select! {
        () = shutdown.cancelled() => return,
        () = corruption.found() => {}
    }
    tracing::error!(
        "stored data is damaged: reporting NOT_SERVING; restore the data directory from a backup \
         (`warden store check` lists the damaged records)"
    );
    serving.latch().await;
}

/// Reports NOT_SERVING while the store's database cannot be reached, and
/// SERVING again once it can (unless something else has latched
/// NOT_SERVING meanwhile): probes then send callers to another replica
/// instead of letting them wait for errors.
async fn follow_the_database(
    serving: Serving,
    mut reachable: tokio::sync::watch::Receiver<bool>,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            changed = reachable.changed() => if changed.is_err() { return },
        }
        let up = *reachable.borrow_and_update();
        if up {
            tracing::info!("the database can be reached again: reporting SERVING");
        } else {
            tracing::error!("the database cannot be reached: reporting NOT_SERVING until it can");
        }
        serving.store_reachable(up).await;
    }
}

/// What health reports: SERVING unless latched NOT_SERVING (damage found,
/// a background task gone: until the process ends) or while the store
/// cannot be reached. Changes go one at a time, so a latch is never undone.
#[derive(Clone)]
struct Serving {
    health: tonic_health::server::HealthReporter,
    /// (latched, store reachable)
    state: Arc<tokio::sync::Mutex<(bool, bool)>>,
}

impl Serving {
    fn new(health: tonic_health::server::HealthReporter) -> Self {
        Self {
            health,
            state: Arc::new(tokio::sync::Mutex::new((false, true))),
        }
    }

    /// NOT_SERVING until the process ends.
    async fn latch(&self) {
        let mut state = self.state.lock().await;
        state.0 = true;
        report_status(&self.health, tonic_health::ServingStatus::NotServing).await;
    }

    async fn store_reachable(&self, up: bool) {
        let mut state = self.state.lock().await;
        state.1 = up;
        if !state.0 {
            let status = if up {
                tonic_health::ServingStatus::Serving
            } else {
                tonic_health::ServingStatus::NotServing
            };
            report_status(&self.health, status).await;
        }
    }
}

/// A background task warden depends on, boxed so that one supervisor
/// serves them all.
type Background = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// Spawns `task` and watches it. A task that ends before shutdown — it
/// panicked, or returned — is logged as an error and turns the server and
/// every service NOT_SERVING until the process ends: orders would stop
/// expiring, personal data would stop being purged, certificates would
/// stop being reloaded, while warden looked healthy. Probes then restart
/// it. The handle completes once the task has ended and been accounted
/// for.
fn supervise(
    name: &'static str,
    task: Background,
    serving: Serving,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let running = tokio::spawn(task);
    tokio::spawn(async move {
        match running.await {
            Ok(()) if shutdown.is_cancelled() => return,
            Ok(()) => tracing::error!(
                task = name,
                "background task stopped before shutdown: reporting NOT_SERVING; restart warden"
            ),
            Err(e) => tracing::error!(
                task = name,
                error = %e,
                "background task died: reporting NOT_SERVING; restart warden"
            ),
        }
        serving.latch().await;
    })
}

/// Reports `status` for the server and every service.
async fn report_status(
    health: &tonic_health::server::HealthReporter,
    status: tonic_health::ServingStatus,
) {
    for service in [
        "",
        <AdmissionServer<AdmissionService> as tonic::server::NamedService>::NAME,
        <CustomersServer<CustomersService> as tonic::server::NamedService>::NAME,
        <TrustServer<TrustService> as tonic::server::NamedService>::NAME,
        <LedgerServer<LedgerService> as tonic::server::NamedService>::NAME,
        <OrdersServer<OrdersService> as tonic::server::NamedService>::NAME,
        <AttributionServer<AttributionService> as tonic::server::NamedService>::NAME,
        <OperationsServer<OperationsService> as tonic::server::NamedService>::NAME,
    ] {
        health.set_service_status(service, status).await;
    }
}

/// Purges the personal data of customers closed for longer than the
/// retention period: once at start, then every `purge_interval`, until
/// shutdown.
async fn retention_task(app: Arc<App>, principal: String, shutdown: CancellationToken) {
    loop {
        let now = app.clock.now();
        match crate::kyc::purge_due(&*app.store, app.retention_millis, &principal, now).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(customers = n, "retention purged personal data"),
            Err(e) => tracing::error!(error = %e, "retention purge failed; retrying next interval"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = app.clock.sleep(app.purge_interval) => {}
        }
    }
}

/// Marks orders past their expiry EXPIRED, every second, until shutdown.
async fn expiry_task(app: Arc<App>, principal: String, shutdown: CancellationToken) {
    loop {
        match crate::api::orders::expire_due(&app, &principal).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(orders = n, "orders expired"),
            Err(e) => tracing::error!(error = ?e, "order expiry failed; retrying"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = app.clock.sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// Binds the metrics listener if `metrics_listen` is set.
pub async fn bind_metrics(config: &Config) -> Result<Option<TcpListener>, ServerError> {
    let Some(addr) = config.metrics_listen else {
        return Ok(None);
    };
    TcpListener::bind(addr)
        .await
        .map(Some)
        .map_err(|source| ServerError::Listen {
            field: "metrics_listen",
            addr,
            source,
        })
}

/// Serves on `listener` (and metrics on `metrics`, if given) until
/// `shutdown`, then drains for at most the configured grace period before
/// closing what is still open.
pub async fn run(
    config: Config,
    app: Arc<App>,
    listener: TcpListener,
    metrics: Option<TcpListener>,
    shutdown: CancellationToken,
) -> Result<(), ServerError> {
    if let Some(metrics) = metrics {
        tokio::spawn(metrics::serve(metrics, app.clone(), shutdown.clone()));
    }
    let grace = Duration::from_secs(config.shutdown_grace_seconds);
    let server = tokio::spawn({
        let shutdown = shutdown.clone();
        async move { serve(&config, app, listener, shutdown).await }
    });
    tokio::pin!(server);
    let joined = tokio::select! {
        r = &mut server => r,
        _ = shutdown.cancelled() => match tokio::time::timeout(grace, &mut server).await {
            Ok(r) => r,
            Err(_) => {
                tracing::warn!(grace_seconds = grace.as_secs(), "drain time limit reached; closing open calls");
                server.abort();
                return Ok(());
            }
        },
    };
    joined.map_err(|e| ServerError::Transport(e.to_string()))?
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use tonic_health::pb::health_server::Health;
    use tonic_health::pb::{health_check_response::ServingStatus, HealthCheckRequest};
    use tonic_health::server::{HealthReporter, HealthService};

    use super::*;

    /// The health of the server (`""`) and of the Admission service, as a
    /// probe reads it.
    async fn health_of(reporter: &HealthReporter) -> [ServingStatus; 2] {
        let service = HealthService::from_health_reporter(reporter.clone());
        let mut out = [ServingStatus::Unknown; 2];
        let admission = <AdmissionServer<AdmissionService> as tonic::server::NamedService>::NAME;
        for (slot, name) in out.iter_mut().zip(["", admission]) {
            let request = tonic::Request::new(HealthCheckRequest {
                service: name.into(),
            });
            *slot = service.check(request).await.unwrap().into_inner().status();
        }
        out
    }

    async fn serving() -> HealthReporter {
        let (reporter, _) = tonic_health::server::health_reporter();
        reporter
            .set_serving::<AdmissionServer<AdmissionService>>()
            .await;
        assert_eq!(health_of(&reporter).await, [ServingStatus::Serving; 2]);
        reporter
    }

    #[tokio::test]
    async fn a_background_task_that_panics_turns_every_service_not_serving() {
        let health = serving().await;
        let task: Background = Box::pin(async { panic!("expiry bug") });
        supervise(
            "order expiry",
            task,
            Serving::new(health.clone()),
            CancellationToken::new(),
        )
        .await
        .unwrap();
        assert_eq!(health_of(&health).await, [ServingStatus::NotServing; 2]);
    }

    #[tokio::test]
    async fn a_background_task_that_returns_before_shutdown_turns_not_serving() {
        let health = serving().await;
        let task: Background = Box::pin(async {});
        supervise(
            "retention purge",
            task,
            Serving::new(health.clone()),
            CancellationToken::new(),
        )
        .await
        .unwrap();
        assert_eq!(health_of(&health).await, [ServingStatus::NotServing; 2]);
    }

    #[tokio::test]
    async fn a_background_task_that_ends_at_shutdown_leaves_health_alone() {
        let health = serving().await;
        let shutdown = CancellationToken::new();
        let task: Background = Box::pin({
            let shutdown = shutdown.clone();
            async move { shutdown.cancelled().await }
        });
        let watched = supervise(
            "TLS reload",
            task,
            Serving::new(health.clone()),
            shutdown.clone(),
        );
        shutdown.cancel();
        watched.await.unwrap();
        assert_eq!(health_of(&health).await, [ServingStatus::Serving; 2]);
    }
}
