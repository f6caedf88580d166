//! The metrics endpoint: `GET /metrics` over plain HTTP, rendering the
//! server's [`Metrics`](crate::metrics::Metrics) and what the store and the
//! screening state report. It reads the application state, so it lives with
//! the server rather than with the counters (which the store itself uses).

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::api::App;
use crate::domain::deployment::DeploymentState;
use crate::domain::order::OrderState;
use crate::metrics::{header, histogram, Metrics};

/// The server's metrics: a `method` label for every RPC of the role table.
pub fn registry() -> Metrics {
    Metrics::new(crate::auth::ROLE_TABLE.iter().map(|(path, _)| *path))
}

/// The Prometheus text exposition of `app`'s metrics and of what it
/// reports about its store and screening.
pub async fn render(app: &App) -> String {
    let mut out = String::with_capacity(16 * 1024);
    let o = &mut out;
    app.metrics.render_into(o);
    header(
        o,
        "warden_screening_hits_total",
        "counter",
        "Sanctions screenings stored with a potential match (at registration, update or list load).",
    );
    let _ = writeln!(
        o,
        "warden_screening_hits_total {}",
        app.screening.hits.get()
    );

    header(
        o,
        "warden_store_corruption_total",
        "counter",
        "Reads and writes that found stored data damaged (a record failing its checksum or decoding, damage sled reports, a panic inside sled); any is a reason to restore the data directory from a backup.",
    );
    let _ = writeln!(
        o,
        "warden_store_corruption_total {}",
        app.corruption.count()
    );

    match app.store.stats().await {
        Ok(stats) => {
            header(
                o,
                "warden_deployments",
                "gauge",
                "Deployments by stored state (a lapsed lease stays active until renewed, released or stopped).",
            );
            for s in DeploymentState::ALL {
                let _ = writeln!(
                    o,
                    "warden_deployments{{state=\"{}\"}} {}",
                    s.as_str().to_ascii_lowercase(),
                    stats.states.deployments_in(s)
                );
            }
            header(o, "warden_orders", "gauge", "Orders by state.");
            for s in OrderState::ALL {
                let _ = writeln!(
                    o,
                    "warden_orders{{state=\"{}\"}} {}",
                    s.as_str().to_ascii_lowercase(),
                    stats.states.orders_in(s)
                );
            }
            header(
                o,
                "warden_ledger_entries",
                "gauge",
                "Entries in the ledger covered by the latest signed checkpoint.",
            );
            let _ = writeln!(o, "warden_ledger_entries {}", stats.ledger_size);
            header(
                o,
                "warden_ledger_checkpoint_age_seconds",
                "gauge",
                "Seconds since the latest checkpoint was signed (the log signs when it grows).",
            );
            let age = (app.clock.now() - stats.checkpoint_signed_at).max(0);
            let _ = writeln!(
                o,
                "warden_ledger_checkpoint_age_seconds {}",
                age as f64 / 1000.0
            );
            header(
                o,
                "warden_store_flush_duration_seconds",
                "histogram",
                "Time each group commit of the store took to flush to disk.",
            );
            histogram(
                o,
                "warden_store_flush_duration_seconds",
                "",
                &stats.flush_seconds,
            );
        }
        Err(e) => {
            // The store's series are left out of this scrape; Prometheus
            // shows them as missing rather than as a made-up value.
            tracing::warn!(error = %e, "metrics: store statistics unavailable");
        }
    }
    out
}

/// How long a scraper may take to send its request headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves `GET /metrics` over plain HTTP/1.1 on `listener` until `shutdown`.
/// Each connection is its own task; rendering reads atomics and a few
/// stored counters, so nothing here holds up the gRPC server.
pub async fn serve(listener: TcpListener, app: Arc<App>, shutdown: CancellationToken) {
    let local = listener.local_addr().ok();
    tracing::info!(addr = ?local, "metrics at http://<addr>/metrics");
    loop {
        let stream = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little
                    // rather than spin.
                    tracing::warn!(error = %e, "metrics: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let app = app.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let app = app.clone();
                async move { Ok::<_, std::convert::Infallible>(respond(&app, &req).await) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            tokio::select! {
                r = connection => if let Err(e) = r {
                    tracing::debug!(error = %e, "metrics: connection ended with an error");
                },
                () = shutdown.cancelled() => {}
            }
        });
    }
}

async fn respond<B>(
    app: &App,
    req: &http::Request<B>,
) -> http::Response<http_body_util::Full<bytes::Bytes>> {
    let (status, content_type, body) = match (req.method(), req.uri().path()) {
        (&http::Method::GET | &http::Method::HEAD, "/metrics") => (
            http::StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            render(app).await,
        ),
        (_, "/metrics") => (
            http::StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "only GET\n".to_string(),
        ),
        _ => (
            http::StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "metrics are at /metrics\n".to_string(),
        ),
    };
    let mut response = http::Response::new(http_body_util::Full::new(bytes::Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_method_of_the_role_table_has_its_own_label() {
        let m = registry();
        for (path, _) in crate::auth::ROLE_TABLE {
            assert_eq!(m.method_label(path), &path[1..]);
        }
        assert_eq!(m.method_label("/warden.v1.Nope/Nothing"), "other");
    }
}
