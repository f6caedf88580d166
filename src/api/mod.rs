//! One file per gRPC service. Each handler does the same four steps:
//! convert and validate the message into domain types, run the pure rules,
//! write through the store (durably), convert the result back. Errors leave
//! through `status`, the one place that picks gRPC codes.

pub mod admission;
pub mod attribution;
pub mod convert;
pub mod customers;
pub mod ledger;
pub mod operations;
pub mod orders;
pub mod page;
pub mod status;
pub mod trust;

use std::sync::Arc;

use tonic::{Request, Status};

use crate::auth::Principal;
use crate::clock::Clock;
use crate::ledger::note::Signer;
use crate::store::Store;
use crate::trust::TrustState;

/// Everything the services share. Built once by the server.
pub struct App {
    /// Where handlers and background tasks read the time: the system clock
    /// in production, a manual one in tests.
    pub clock: Arc<dyn Clock>,
    pub store: Arc<dyn Store>,
    pub trust: TrustState,
    /// The server certificate, client CA, client CRLs and deny-list in
    /// force; `Trust.Reload` reloads them with the trust directory.
    pub tls: Arc<crate::tls::TlsState>,
    pub licence_signer: Signer,
    pub lease_millis: i64,
    /// How old a verified customer's verification may be (`None`: no
    /// limit); older ones are denied `KYC_STALE`.
    pub max_verification_age: Option<crate::clock::UnixMillis>,
    /// The loaded sanctions list's screener and the hit threshold.
    pub screening: crate::kyc::ScreeningState,
    /// Closed customers' personal data is purged after this long.
    pub retention_millis: i64,
    pub purge_interval: std::time::Duration,
    /// Approvals each order action needs.
    pub quorum: crate::domain::order::Quorum,
    /// The newest durable order event revision; watchers wait on it.
    pub order_revision: tokio::sync::watch::Sender<u64>,
    /// Cancelled when the server shuts down: ends every order watch.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// Open order watches by principal, bounded.
    pub watchers: Arc<orders::Watchers>,
    /// The newest order events, converted once for every watcher.
    pub recent_events: orders::RecentEvents,
    /// Counters and histograms served at the metrics endpoint.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Damage found in the store: the server stops reporting SERVING at the
    /// first, and the metrics endpoint counts them.
    pub corruption: Arc<crate::store::CorruptionWatch>,
}

/// The caller, as the auth layer established it. Its absence means the
/// service was reached without the auth layer: refuse rather than guess.
pub fn principal<T>(req: &Request<T>) -> Result<Principal, Status> {
    req.extensions()
        .get::<Principal>()
        .cloned()
        .ok_or_else(|| Status::unauthenticated("no authenticated principal"))
}
