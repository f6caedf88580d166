//! The door of the gRPC port. Accepts TCP connections, completes their TLS
//! handshakes concurrently under a time limit, and bounds everything a
//! caller can make warden hold open:
//!
//! - connections in all (`limits.max_connections`, handshakes included),
//!   so the process never runs out of file descriptors on connections;
//! - handshakes in progress (`limits.max_handshakes`), so callers without
//!   a certificate cannot crowd out those with one;
//! - connections per client identity (`limits.max_connections_per_principal`),
//!   so one caller, or one stolen key, cannot take every slot;
//! - idle connections: one with no call open for `limits.idle_timeout_seconds`
//!   is closed.
//!
//! A connection over a limit is closed as soon as it is accepted (counted in
//! `warden_connections_refused_total`), so the caller learns at once. When
//! `accept` itself fails for lack of file descriptors or memory the loop
//! backs off instead of spinning, and says so in the log.
//!
//! Each established connection carries a [`ConnectionInfo`] that tonic puts
//! into every request; [`ConnectionLayer`] counts the calls open on it and
//! hands the auth layer the [`Peer`].

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tonic::body::Body;

use crate::config::LimitsConfig;
use crate::metrics::{ConnectionRefusal, Metrics};
use crate::tls::{Peer, TlsState};

/// Longest pause between two accepts while file descriptors are short.
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);
/// First pause after a failed accept.
const MIN_ACCEPT_BACKOFF: Duration = Duration::from_millis(5);

/// The limits the door enforces, from `[limits]`.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_connections: usize,
    pub max_per_principal: usize,
    pub max_handshakes: usize,
    pub handshake_timeout: Duration,
    pub idle_timeout: Duration,
}

impl From<&LimitsConfig> for Limits {
    fn from(c: &LimitsConfig) -> Self {
        Self {
            max_connections: c.max_connections,
            max_per_principal: c.max_connections_per_principal,
            max_handshakes: c.max_handshakes,
            handshake_timeout: Duration::from_secs(c.handshake_timeout_seconds),
            idle_timeout: Duration::from_secs(c.idle_timeout_seconds),
        }
    }
}

/// What each request on a connection learns about it.
#[derive(Clone)]
pub struct ConnectionInfo {
    pub peer: Arc<Peer>,
    activity: Arc<Activity>,
}

/// Calls open on one connection and when the last one ended.
struct Activity {
    open: AtomicUsize,
    /// Milliseconds since `epoch` at the last call's start or end.
    last: AtomicU64,
    epoch: Instant,
    /// Cancelled to close the connection (idle), or once it is gone.
    close: CancellationToken,
}

impl Activity {
    fn new() -> Self {
        Self {
            open: AtomicUsize::new(0),
            last: AtomicU64::new(0),
            epoch: Instant::now(),
            close: CancellationToken::new(),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(ms, Ordering::Release);
    }

    fn begin(self: &Arc<Self>) -> OpenCall {
        self.open.fetch_add(1, Ordering::AcqRel);
        self.touch();
        OpenCall(self.clone())
    }

    /// How much longer the connection may stay idle, or `None` when it has
    /// been idle for `idle` already.
    fn idle_left(&self, idle: Duration, now: Instant) -> Option<Duration> {
        let last = self.epoch + Duration::from_millis(self.last.load(Ordering::Acquire));
        idle_left(self.open.load(Ordering::Acquire), last, now, idle)
    }
}

/// The idle rule: a connection with a call open is never idle; one without
/// has `idle` from the end of its last call (or from its start).
fn idle_left(open: usize, last: Instant, now: Instant, idle: Duration) -> Option<Duration> {
    if open > 0 {
        return Some(idle);
    }
    idle.checked_sub(now.saturating_duration_since(last))
        .filter(|left| !left.is_zero())
}

/// One call open on a connection, until its response body is dropped.
struct OpenCall(Arc<Activity>);

impl Drop for OpenCall {
    fn drop(&mut self) {
        self.0.touch();
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Closes the connection once it has had no call open for `idle`.
async fn close_when_idle(activity: Arc<Activity>, idle: Duration) {
    loop {
        let Some(left) = activity.idle_left(idle, Instant::now()) else {
            tracing::debug!("closing an idle connection");
            activity.close.cancel();
            return;
        };
        tokio::select! {
            () = activity.close.cancelled() => return,
            () = tokio::time::sleep(left) => {}
        }
    }
}

/// Connections counted against the limits.
#[derive(Default)]
struct Counts {
    total: usize,
    handshakes: usize,
    /// By identity; `None` is every caller without exactly one URI SAN.
    per_identity: HashMap<Option<String>, usize>,
}

/// The limits' bookkeeping, shared by the accept loop and the connections'
/// slots (which give back what they took when dropped).
struct Table {
    limits: Limits,
    counts: Mutex<Counts>,
    metrics: Arc<Metrics>,
}

impl Table {
    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        // Counts are plain integers, consistent after any panic.
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A connection slot with a handshake slot, or why there is none.
    fn admit(self: &Arc<Self>) -> Result<(Slot, HandshakeSlot), ConnectionRefusal> {
        let mut c = self.counts();
        if c.total >= self.limits.max_connections {
            return Err(ConnectionRefusal::Connections);
        }
        if c.handshakes >= self.limits.max_handshakes {
            return Err(ConnectionRefusal::Handshakes);
        }
        c.total += 1;
        c.handshakes += 1;
        self.metrics.connections_open.inc();
        Ok((
            Slot {
                table: self.clone(),
                identity: None,
            },
            HandshakeSlot(self.clone()),
        ))
    }

    /// Counts an established connection under its identity.
    fn claim_identity(
        &self,
        slot: &mut Slot,
        identity: Option<&str>,
    ) -> Result<(), ConnectionRefusal> {
        let mut c = self.counts();
        let n = c
            .per_identity
            .entry(identity.map(str::to_owned))
            .or_insert(0);
        if *n >= self.limits.max_per_principal {
            return Err(ConnectionRefusal::Principal);
        }
        *n += 1;
        slot.identity = Some(identity.map(str::to_owned));
        Ok(())
    }
}

/// A connection's place in the total (and, once claimed, in its identity's
/// allowance).
struct Slot {
    table: Arc<Table>,
    /// `Some(identity)` once counted under it.
    identity: Option<Option<String>>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self.table.counts();
        c.total -= 1;
        if let Some(identity) = self.identity.take() {
            if let Some(n) = c.per_identity.get_mut(&identity) {
                *n -= 1;
                if *n == 0 {
                    c.per_identity.remove(&identity);
                }
            }
        }
        self.table.metrics.connections_open.dec();
    }
}

/// A handshake in progress.
struct HandshakeSlot(Arc<Table>);

impl Drop for HandshakeSlot {
    fn drop(&mut self) {
        self.0.counts().handshakes -= 1;
    }
}

type TlsStream = tokio_rustls::server::TlsStream<TcpStream>;

/// An established connection as tonic sees it: the TLS stream, closed by
/// warden when it has been idle too long.
pub struct Conn {
    io: TlsStream,
    info: ConnectionInfo,
    closing: Pin<Box<WaitForCancellationFutureOwned>>,
    _slot: Slot,
}

impl Conn {
    fn closed(&mut self, cx: &mut Context<'_>) -> bool {
        self.closing.as_mut().poll(cx).is_ready()
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        // Ends the idle watch of a connection that closed by itself.
        self.info.activity.close.cancel();
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.closed(cx) {
            // End of stream: the HTTP/2 server closes the connection.
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.closed(cx) {
            return Poll::Ready(Err(io::ErrorKind::ConnectionAborted.into()));
        }
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.closed(cx) {
            return Poll::Ready(Err(io::ErrorKind::ConnectionAborted.into()));
        }
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

impl tonic::transport::server::Connected for Conn {
    type ConnectInfo = ConnectionInfo;

    fn connect_info(&self) -> ConnectionInfo {
        self.info.clone()
    }
}

/// Whether an accept error means the process is short of file
/// descriptors or memory (ENFILE, EMFILE, ENOBUFS, ENOMEM on Linux).
fn short_of_resources(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(23 | 24 | 105 | 12))
}

/// The accept loop's state between two events.
struct Door {
    tls: Arc<TlsState>,
    table: Arc<Table>,
    metrics: Arc<Metrics>,
    handshakes: tokio::task::JoinSet<(SocketAddr, Option<Conn>)>,
    /// While accepting is paused after a failure: when to try again.
    resume_at: Option<Instant>,
    /// The pause after the last failure, until an accept succeeds: the
    /// next failure pauses twice as long.
    last_pause: Option<Duration>,
}

/// Accepts connections on `listener` until `shutdown` and yields the
/// established ones; handshakes still running then are dropped.
pub fn accept(
    listener: TcpListener,
    tls: Arc<TlsState>,
    limits: Limits,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> tokio_stream::wrappers::ReceiverStream<io::Result<Conn>> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let mut door = Door {
        tls,
        table: Arc::new(Table {
            limits,
            counts: Mutex::default(),
            metrics: metrics.clone(),
        }),
        metrics,
        handshakes: tokio::task::JoinSet::new(),
        resume_at: None,
        last_pause: None,
    };
    tokio::spawn(async move {
        loop {
            let paused = door.resume_at;
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tx.closed() => return,
                () = sleep_until(paused), if paused.is_some() => door.resume_at = None,
                accepted = listener.accept(), if paused.is_none() => door.accepted(accepted),
                Some(done) = door.handshakes.join_next() => {
                    if let Ok((_, Some(conn))) = done {
                        if tx.send(Ok(conn)).await.is_err() {
                            return;
                        }
                    }
                }
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

async fn sleep_until(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at).await;
    }
}

impl Door {
    fn accepted(&mut self, accepted: io::Result<(TcpStream, SocketAddr)>) {
        match accepted {
            Ok((stream, remote)) => {
                self.last_pause = None;
                self.start_handshake(stream, remote);
            }
            Err(e) => self.pause(&e),
        }
    }

    /// Pauses accepting after a failure, longer each time it fails again.
    fn pause(&mut self, e: &io::Error) {
        let pause = match self.last_pause {
            Some(last) => (last * 2).min(MAX_ACCEPT_BACKOFF),
            None => MIN_ACCEPT_BACKOFF,
        };
        if short_of_resources(e) {
            self.metrics.accept_resource_errors.inc();
            // Once when the shortage starts, then at the longest pause.
            if self.last_pause.is_none() || pause == MAX_ACCEPT_BACKOFF {
                tracing::warn!(error = %e, pause_ms = pause.as_millis() as u64,
                    "cannot accept connections: out of file descriptors or memory; pausing accept (raise LimitNOFILE or lower limits.max_connections)");
            }
        } else {
            tracing::debug!(error = %e, "accept failed");
        }
        self.last_pause = Some(pause);
        self.resume_at = Some(Instant::now() + pause);
    }

    fn start_handshake(&mut self, stream: TcpStream, remote: SocketAddr) {
        let (slot, handshake) = match self.table.admit() {
            Ok(slots) => slots,
            Err(why) => {
                self.metrics.connection_refused(why);
                tracing::debug!(%remote, limit = why.as_str(), "connection refused at its limit");
                return;
            }
        };
        // Nagle off: a unary answer is several small HTTP/2 frames
        // (headers, data, trailers); with Nagle on, the last one waits for
        // the client's delayed ACK, adding up to 40 ms to a call.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(%remote, error = %e, "cannot turn Nagle off");
        }
        let tls = self.tls.clone();
        let table = self.table.clone();
        let metrics = self.metrics.clone();
        self.handshakes.spawn(async move {
            let conn = handshake_and_admit(tls, &table, &metrics, stream, remote, slot).await;
            drop(handshake);
            (remote, conn)
        });
    }
}

/// Completes the TLS handshake (under the time limit), then counts the
/// connection under its client identity; `None` when it is refused.
async fn handshake_and_admit(
    tls: Arc<TlsState>,
    table: &Arc<Table>,
    metrics: &Metrics,
    stream: TcpStream,
    remote: SocketAddr,
    mut slot: Slot,
) -> Option<Conn> {
    let material = tls.current();
    let limit = table.limits.handshake_timeout;
    let io = match tokio::time::timeout(limit, material.acceptor().accept(stream)).await {
        Ok(Ok(io)) => io,
        Ok(Err(e)) => {
            metrics.tls_handshake_failures.inc();
            tracing::debug!(%remote, error = %e, "TLS handshake failed");
            return None;
        }
        Err(_) => {
            metrics.tls_handshake_failures.inc();
            tracing::debug!(%remote, "TLS handshake timed out");
            return None;
        }
    };
    let certs = io.get_ref().1.peer_certificates().unwrap_or_default();
    let peer = Arc::new(tls.peer(remote, certs, material.version()));
    if let Err(e) = material.refuses(&peer) {
        metrics.connection_refused(ConnectionRefusal::Denied);
        tracing::warn!(%remote, error = %e, "connection refused");
        return None;
    }
    if let Err(why) = table.claim_identity(&mut slot, peer.identity()) {
        metrics.connection_refused(why);
        tracing::warn!(%remote, identity = peer.identity().unwrap_or("(none)"), limit = why.as_str(),
            "connection refused: this identity holds its limit of connections");
        return None;
    }
    let activity = Arc::new(Activity::new());
    tokio::spawn(close_when_idle(activity.clone(), table.limits.idle_timeout));
    Some(Conn {
        io,
        closing: Box::pin(activity.close.clone().cancelled_owned()),
        info: ConnectionInfo { peer, activity },
        _slot: slot,
    })
}

/// Tower layer in front of the auth layer. Checks the caller's
/// certificate again when the TLS material changed since it was last
/// checked (a revoked, expired or denied caller is refused on its open
/// connection too), counts the calls open on each connection (a call is
/// open until its response body is dropped, so an order watch keeps its
/// connection busy), and puts the connection's [`Peer`] into the request
/// for the auth layer.
#[derive(Clone)]
pub struct ConnectionLayer {
    tls: Arc<TlsState>,
    metrics: Arc<Metrics>,
}

impl ConnectionLayer {
    pub fn new(tls: Arc<TlsState>, metrics: Arc<Metrics>) -> Self {
        Self { tls, metrics }
    }
}

impl<S> tower::Layer<S> for ConnectionLayer {
    type Service = ConnectionService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        ConnectionService {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Clone)]
pub struct ConnectionService<S> {
    inner: S,
    layer: ConnectionLayer,
}

impl<S> tower::Service<http::Request<Body>> for ConnectionService<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>> + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = futures_util::future::BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<Body>) -> Self::Future {
        let open = match req.extensions().get::<ConnectionInfo>().cloned() {
            Some(info) => {
                let open = info.activity.begin();
                let now = rustls::pki_types::UnixTime::now();
                if let Err(e) = self.layer.tls.check(&info.peer, now) {
                    self.layer.metrics.peers_revoked.inc();
                    tracing::warn!(remote = %info.peer.remote, error = %e, "call refused");
                    let status = tonic::Status::unauthenticated(e.to_string());
                    return Box::pin(async move { Ok(status.into_http()) });
                }
                req.extensions_mut().insert(info.peer);
                Some(open)
            }
            None => None,
        };
        let response = self.inner.call(req);
        Box::pin(async move {
            let response = response.await?;
            Ok(match open {
                Some(open) => response.map(|inner| Body::new(OpenBody { inner, _open: open })),
                None => response,
            })
        })
    }
}

/// A response body that keeps its call counted as open until dropped.
struct OpenBody {
    inner: Body,
    _open: OpenCall,
}

impl http_body::Body for OpenBody {
    type Data = bytes::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_is_idle_only_with_no_call_open_for_the_whole_timeout() {
        let t0 = Instant::now();
        let idle = Duration::from_secs(300);
        // A call open: never idle, however long ago it started.
        assert_eq!(
            idle_left(1, t0, t0 + Duration::from_secs(9_999), idle),
            Some(idle)
        );
        // No call open: the timeout runs from the last call's end.
        assert_eq!(
            idle_left(0, t0, t0 + Duration::from_secs(100), idle),
            Some(Duration::from_secs(200))
        );
        assert_eq!(idle_left(0, t0, t0 + idle, idle), None);
        assert_eq!(idle_left(0, t0, t0 + Duration::from_secs(301), idle), None);
    }

    #[test]
    fn only_descriptor_and_memory_shortages_count_as_resource_errors() {
        for errno in [23, 24, 105, 12] {
            assert!(short_of_resources(&io::Error::from_raw_os_error(errno)));
        }
        assert!(!short_of_resources(&io::Error::from_raw_os_error(103)));
        assert!(!short_of_resources(&io::ErrorKind::Other.into()));
    }
}
