//! Prometheus metrics: counters and histograms the server updates as it
//! works, a tower layer that times every gRPC call, and their rendering in
//! the Prometheus text format (0.0.4). The plain-HTTP endpoint that serves
//! them, with what the store reports, is
//! [`server::metrics`](crate::server::metrics).
//!
//! This module sits low in the layer order (the store and the services
//! count here), so it knows nothing of the server: the RPC paths that get a
//! label of their own are given to [`Metrics::new`].
//!
//! Why hand-written instead of a metrics crate: every label set here is
//! known when the server starts (RPC paths from the role table, gRPC codes,
//! reason codes, states), so each series is a fixed slot of atomics. An
//! update is one or two relaxed atomic adds, with no lock, no hashing of
//! labels and no allocation on the admission path, and the text format for
//! counters, gauges and histograms is a few lines.
//!
//! What it must never do: put customer ids, digests, deployment ids,
//! principals or any free text into a label. Every label value comes from a
//! closed set defined in code. The endpoint has no authentication; keep it
//! on loopback or a private interface.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tonic::body::Body;

use crate::domain::reason::{Reason, ReasonCode};

/// Upper bounds (seconds) of the gRPC call duration buckets.
pub const GRPC_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Upper bounds (seconds) of the store flush buckets.
pub const FLUSH_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

/// A monotonic counter.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.add(1);
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A histogram with fixed buckets: one atomic per bucket and one for the
/// sum (in nanoseconds), so observing takes no lock.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// Per bucket, not cumulative; the last is above every bound.
    buckets: Box<[AtomicU64]>,
    sum_nanos: AtomicU64,
}

/// A histogram's values at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    pub bounds: &'static [f64],
    /// Per bucket, not cumulative; one more than `bounds`.
    pub buckets: Vec<u64>,
    pub sum_seconds: f64,
}

impl HistogramSnapshot {
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_nanos: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, d: Duration) {
        let seconds = d.as_secs_f64();
        // The first bucket whose bound is at or above the value (`le`).
        let i = self.bounds.partition_point(|b| *b < seconds);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(
            u64::try_from(d.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            bounds: self.bounds,
            buckets: self
                .buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
            sum_seconds: self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9,
        }
    }
}

/// Which call a decision answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecisionCall {
    Admit = 0,
    Renew = 1,
}

impl DecisionCall {
    const ALL: [DecisionCall; 2] = [Self::Admit, Self::Renew];
    fn as_str(self) -> &'static str {
        match self {
            Self::Admit => "admit",
            Self::Renew => "renew",
        }
    }
}

/// gRPC status code names, indexed by code number.
const GRPC_CODES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];
const CODE_CANCELLED: usize = 1;
const CODE_UNKNOWN: usize = 2;

/// Label of calls to a path the server does not serve.
const OTHER_METHOD: &str = "other";

/// Paths that are not the API's own but are served and get a label too.
const SERVED_BESIDES: [&str; 4] = [
    "grpc.health.v1.Health/Check",
    "grpc.health.v1.Health/Watch",
    "grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
];

/// The counters and histograms the server updates. One per server (tests
/// run many servers in one process, each with its own).
pub struct Metrics {
    /// Every `method` label value: the API's methods as given, health and
    /// reflection, and `other` last.
    methods: Vec<&'static str>,
    method_index: HashMap<&'static str, usize>,
    /// Per call: allowed, then denied by first failing check (by
    /// `ReasonCode::index`).
    decisions: [[Counter; 1 + ReasonCode::ALL.len()]; 2],
    /// Per call and reason code: every failing check of every deny.
    deny_reasons: [[Counter; ReasonCode::ALL.len()]; 2],
    /// Per method (index into `methods`) and code.
    grpc: Box<[Histogram]>,
    pub tls_handshake_failures: Counter,
    /// Client connections open (TLS handshakes in progress included).
    pub connections_open: Gauge,
    /// Connections closed at once, by [`ConnectionRefusal`].
    connections_refused: [Counter; ConnectionRefusal::ALL.len()],
    /// Calls refused because the caller's certificate was revoked, expired
    /// or its identity denied since its connection was accepted.
    pub peers_revoked: Counter,
    /// `accept` failures for lack of file descriptors or memory.
    pub accept_resource_errors: Counter,
}

/// Why a connection was closed as soon as it was accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionRefusal {
    /// `limits.max_connections` reached.
    Connections,
    /// `limits.max_handshakes` reached.
    Handshakes,
    /// The identity's `limits.max_connections_per_principal` reached.
    Principal,
    /// The identity is on the deny-list.
    Denied,
}

impl ConnectionRefusal {
    pub const ALL: [ConnectionRefusal; 4] = [
        ConnectionRefusal::Connections,
        ConnectionRefusal::Handshakes,
        ConnectionRefusal::Principal,
        ConnectionRefusal::Denied,
    ];
    pub const fn as_str(self) -> &'static str {
        match self {
            ConnectionRefusal::Connections => "max_connections",
            ConnectionRefusal::Handshakes => "max_handshakes",
            ConnectionRefusal::Principal => "max_connections_per_principal",
            ConnectionRefusal::Denied => "deny_list",
        }
    }
}

/// A value that goes up and down.
#[derive(Debug, Default)]
pub struct Gauge(std::sync::atomic::AtomicI64);

impl Gauge {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl Metrics {
    /// Metrics with a `method` label for each of `rpcs` (gRPC paths,
    /// `/package.Service/Method`), for health and reflection, and one
    /// (`other`) shared by every other path.
    pub fn new(rpcs: impl IntoIterator<Item = &'static str>) -> Self {
        let mut methods: Vec<&'static str> = rpcs
            .into_iter()
            .map(|p| p.trim_start_matches('/'))
            .collect();
        methods.extend(SERVED_BESIDES);
        methods.push(OTHER_METHOD);
        let method_index = methods.iter().enumerate().map(|(i, m)| (*m, i)).collect();
        Self {
            grpc: (0..methods.len() * GRPC_CODES.len())
                .map(|_| Histogram::new(GRPC_BUCKETS))
                .collect(),
            tls_handshake_failures: Counter::default(),
            connections_open: Gauge::default(),
            connections_refused: Default::default(),
            peers_revoked: Counter::default(),
            accept_resource_errors: Counter::default(),
            decisions: Default::default(),
            deny_reasons: Default::default(),
            methods,
            method_index,
        }
    }

    /// The label slot of a request path; `other` for paths not served.
    fn method_index(&self, path: &str) -> usize {
        self.method_index
            .get(path.trim_start_matches('/'))
            .copied()
            .unwrap_or(self.methods.len() - 1)
    }

    /// The `method` label a call to `path` is counted under.
    pub fn method_label(&self, path: &str) -> &'static str {
        self.methods[self.method_index(path)]
    }

    /// Counts one connection closed as soon as it was accepted.
    pub fn connection_refused(&self, why: ConnectionRefusal) {
        self.connections_refused[why as usize].inc();
    }

    fn render_connections(&self, o: &mut String) {
        header(
            o,
            "warden_connections_open",
            "gauge",
            "Client connections open on the gRPC port, TLS handshakes in progress included.",
        );
        let _ = writeln!(o, "warden_connections_open {}", self.connections_open.get());
        header(
            o,
            "warden_connections_refused_total",
            "counter",
            "Connections closed as soon as they were accepted, by the limit that refused them.",
        );
        for why in ConnectionRefusal::ALL {
            let _ = writeln!(
                o,
                "warden_connections_refused_total{{reason=\"{}\"}} {}",
                why.as_str(),
                self.connections_refused[why as usize].get()
            );
        }
        header(
            o,
            "warden_client_revocations_total",
            "counter",
            "Calls refused because the caller's certificate was revoked or expired, or its identity denied, after its connection was accepted.",
        );
        let _ = writeln!(
            o,
            "warden_client_revocations_total {}",
            self.peers_revoked.get()
        );
        header(
            o,
            "warden_accept_resource_errors_total",
            "counter",
            "Accepts that failed for lack of file descriptors or memory; accepting pauses and backs off.",
        );
        let _ = writeln!(
            o,
            "warden_accept_resource_errors_total {}",
            self.accept_resource_errors.get()
        );
    }

    /// Counts one new decision (replays of an earlier one are not counted):
    /// allowed when `reasons` is empty.
    pub fn decided(&self, call: DecisionCall, reasons: &[Reason]) {
        let call = call as usize;
        match reasons.first() {
            None => self.decisions[call][0].inc(),
            Some(first) => {
                self.decisions[call][1 + first.code.index()].inc();
                for r in reasons {
                    self.deny_reasons[call][r.code.index()].inc();
                }
            }
        }
    }

    fn grpc_call(&self, method: usize, code: usize, took: Duration) {
        let code = if code < GRPC_CODES.len() {
            code
        } else {
            CODE_UNKNOWN
        };
        self.grpc[method * GRPC_CODES.len() + code].observe(took);
    }

    /// Appends the Prometheus text exposition of these metrics to `o`.
    pub fn render_into(&self, o: &mut String) {
        header(
            o,
            "warden_admission_decisions_total",
            "counter",
            "Admission and renewal decisions: allowed (reason=\"none\") or denied, labelled with the first failing check.",
        );
        for call in DecisionCall::ALL {
            let row = &self.decisions[call as usize];
            let _ = writeln!(
                o,
                "warden_admission_decisions_total{{call=\"{}\",decision=\"allow\",reason=\"none\"}} {}",
                call.as_str(),
                row[0].get()
            );
            for code in ReasonCode::ALL {
                let _ = writeln!(
                    o,
                    "warden_admission_decisions_total{{call=\"{}\",decision=\"deny\",reason=\"{}\"}} {}",
                    call.as_str(),
                    code.as_str(),
                    row[1 + code.index()].get()
                );
            }
        }
        header(
            o,
            "warden_admission_deny_reasons_total",
            "counter",
            "Every failing check of every denied admission or renewal (a deny can have several).",
        );
        for call in DecisionCall::ALL {
            for code in ReasonCode::ALL {
                let _ = writeln!(
                    o,
                    "warden_admission_deny_reasons_total{{call=\"{}\",reason=\"{}\"}} {}",
                    call.as_str(),
                    code.as_str(),
                    self.deny_reasons[call as usize][code.index()].get()
                );
            }
        }

        header(
            o,
            "warden_grpc_request_duration_seconds",
            "histogram",
            "gRPC calls by method and status code, from request to the end of the response (for streams, until the stream ended).",
        );
        for (m, method) in self.methods.iter().enumerate() {
            for (c, code) in GRPC_CODES.iter().enumerate() {
                let snap = self.grpc[m * GRPC_CODES.len() + c].snapshot();
                if snap.count() > 0 {
                    histogram(
                        o,
                        "warden_grpc_request_duration_seconds",
                        &format!("method=\"{method}\",code=\"{code}\""),
                        &snap,
                    );
                }
            }
        }

        header(
            o,
            "warden_tls_handshake_failures_total",
            "counter",
            "Connections to the gRPC port whose TLS handshake failed or timed out (no, untrusted or expired client certificate, protocol error).",
        );
        let _ = writeln!(
            o,
            "warden_tls_handshake_failures_total {}",
            self.tls_handshake_failures.get()
        );
        self.render_connections(o);
    }
}

/// Writes the `# HELP` and `# TYPE` lines of a metric.
pub fn header(o: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(o, "# HELP {name} {help}");
    let _ = writeln!(o, "# TYPE {name} {kind}");
}

/// Writes a histogram's series: cumulative buckets, sum and count.
pub fn histogram(o: &mut String, name: &str, labels: &str, h: &HistogramSnapshot) {
    let sep = if labels.is_empty() { "" } else { "," };
    let mut cumulative = 0u64;
    for (bound, n) in h.bounds.iter().zip(&h.buckets) {
        cumulative += n;
        let _ = writeln!(
            o,
            "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}"
        );
    }
    let count = h.count();
    let _ = writeln!(o, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
    let braces = if labels.is_empty() {
        String::new()
    } else {
        format!("{{{labels}}}")
    };
    let _ = writeln!(o, "{name}_sum{braces} {}", h.sum_seconds);
    let _ = writeln!(o, "{name}_count{braces} {count}");
}

// --- the gRPC layer -----------------------------------------------------

/// Tower layer that times every gRPC call by method and status code. It
/// sits outside the auth layer, so refused calls are counted too.
#[derive(Clone)]
pub struct GrpcMetricsLayer {
    metrics: Arc<Metrics>,
}

impl GrpcMetricsLayer {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self { metrics }
    }
}

impl<S> tower::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetricsService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetricsService {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Clone)]
pub struct GrpcMetricsService<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

/// The status code in a `grpc-status` header or trailer.
fn grpc_code(headers: &http::HeaderMap) -> Option<usize> {
    headers.get("grpc-status").map(|v| {
        v.to_str()
            .ok()
            .and_then(|s| s.parse::<usize>().ok())
            .unwrap_or(CODE_UNKNOWN)
    })
}

impl<S> tower::Service<http::Request<Body>> for GrpcMetricsService<S>
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

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let call = CallTimer {
            metrics: self.metrics.clone(),
            method: self.metrics.method_index(req.uri().path()),
            started: Instant::now(),
        };
        let response = self.inner.call(req);
        Box::pin(async move {
            let response = response.await?;
            // An error answered without a body ("trailers only") carries
            // its status in the headers; otherwise it comes in the
            // trailers, at the end of the body.
            Ok(match grpc_code(response.headers()) {
                Some(code) => {
                    call.finish(code);
                    response
                }
                None => response.map(|body| {
                    Body::new(TimedBody {
                        inner: body,
                        call: Some(call),
                    })
                }),
            })
        })
    }
}

struct CallTimer {
    metrics: Arc<Metrics>,
    method: usize,
    started: Instant,
}

impl CallTimer {
    fn finish(self, code: usize) {
        self.metrics
            .grpc_call(self.method, code, self.started.elapsed());
    }
}

/// A response body that records its call when the trailers pass (or, if
/// the body is dropped unfinished, as CANCELLED).
struct TimedBody {
    inner: Body,
    call: Option<CallTimer>,
}

impl http_body::Body for TimedBody {
    type Data = bytes::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        let code = match &polled {
            Poll::Ready(Some(Ok(frame))) => frame
                .trailers_ref()
                .map(|t| grpc_code(t).unwrap_or(CODE_UNKNOWN)),
            Poll::Ready(Some(Err(_))) | Poll::Ready(None) => Some(CODE_UNKNOWN),
            Poll::Pending => None,
        };
        if let Some(code) = code {
            if let Some(call) = self.call.take() {
                call.finish(code);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for TimedBody {
    fn drop(&mut self) {
        if let Some(call) = self.call.take() {
            call.finish(CODE_CANCELLED);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_upper_bounds_inclusive() {
        let h = Histogram::new(&[0.001, 0.01]);
        h.observe(Duration::from_micros(1000));
        h.observe(Duration::from_micros(1001));
        h.observe(Duration::from_secs(1));
        let s = h.snapshot();
        assert_eq!(s.buckets, vec![1, 1, 1]);
        assert_eq!(s.count(), 3);
        assert!((s.sum_seconds - 1.002001).abs() < 1e-9);
    }

    #[test]
    fn the_text_format_of_a_histogram_is_cumulative_and_ends_with_inf() {
        let h = Histogram::new(&[0.5, 1.0]);
        h.observe(Duration::from_millis(100));
        h.observe(Duration::from_millis(700));
        let mut o = String::new();
        histogram(&mut o, "x_seconds", "method=\"m\"", &h.snapshot());
        assert_eq!(
            o,
            "x_seconds_bucket{method=\"m\",le=\"0.5\"} 1\n\
             x_seconds_bucket{method=\"m\",le=\"1\"} 2\n\
             x_seconds_bucket{method=\"m\",le=\"+Inf\"} 2\n\
             x_seconds_sum{method=\"m\"} 0.8\n\
             x_seconds_count{method=\"m\"} 2\n"
        );
    }

    #[test]
    fn every_given_method_has_its_own_label_and_unknown_paths_share_one() {
        let rpcs = ["/warden.v1.A/One", "/warden.v1.A/Two"];
        let m = Metrics::new(rpcs);
        for path in rpcs.into_iter().chain(SERVED_BESIDES) {
            assert_eq!(m.method_label(path), path.trim_start_matches('/'));
        }
        assert_eq!(m.method_label("/warden.v1.Nope/Nothing"), OTHER_METHOD);
        assert_eq!(m.grpc.len(), m.methods.len() * GRPC_CODES.len());
    }

    #[test]
    fn a_deny_counts_once_by_its_first_reason_and_every_reason_separately() {
        let m = Metrics::new([]);
        m.decided(DecisionCall::Admit, &[]);
        m.decided(
            DecisionCall::Admit,
            &[
                Reason::new(ReasonCode::DigestMismatch, "x"),
                Reason::new(ReasonCode::RegionOutOfScope, "y"),
            ],
        );
        let a = DecisionCall::Admit as usize;
        assert_eq!(m.decisions[a][0].get(), 1);
        assert_eq!(
            m.decisions[a][1 + ReasonCode::DigestMismatch.index()].get(),
            1
        );
        assert_eq!(
            m.decisions[a][1 + ReasonCode::RegionOutOfScope.index()].get(),
            0
        );
        assert_eq!(
            m.deny_reasons[a][ReasonCode::RegionOutOfScope.index()].get(),
            1
        );
    }
}
