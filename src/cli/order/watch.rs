//! `warden order watch`: prints each order event as it arrives and, when
//! the stream ends or the connection drops, reconnects from the revision of
//! the last event printed, so it neither misses nor repeats one.

use std::io::Write as _;
use std::time::Duration;

use super::render::{event_json, event_line};
use crate::cli::commands::status_error;
use crate::cli::ClientArgs;
use crate::proto;
use crate::proto::orders_client::OrdersClient;

/// Delays between reconnection attempts: doubling from 250 ms up to 5 s,
/// back to the start once an event arrives.
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(250);
    const MAX: Duration = Duration::from_secs(5);

    pub fn new() -> Self {
        Self { next: Self::FIRST }
    }

    /// The delay before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        d
    }

    pub fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

/// Why one watch stream ended.
enum Ended {
    /// Retrying cannot help (a local file, the caller's identity or role,
    /// a refused argument, or stdout failing).
    Fatal(anyhow::Error),
    /// Nobody reads stdout any more: the watch is done.
    OutputClosed,
    /// The stream ended or the connection failed; reconnect.
    Retry(String),
}

/// Status codes that reconnecting does not cure.
fn fatal_code(code: tonic::Code) -> bool {
    matches!(
        code,
        tonic::Code::PermissionDenied
            | tonic::Code::Unauthenticated
            | tonic::Code::InvalidArgument
            | tonic::Code::Unimplemented
    )
}

fn describe_status(s: &tonic::Status) -> String {
    format!("{:?}: {}", s.code(), s.message())
}

/// Follows the order stream until Ctrl-C (or SIGTERM): exit status 0.
pub(super) async fn watch(c: &ClientArgs, since: u64) -> anyhow::Result<i32> {
    tokio::select! {
        r = follow(c, since) => r,
        () = stop_requested() => Ok(0),
        () = stdout_closed() => Ok(0),
    }
}

async fn stop_requested() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {},
                _ = tokio::signal::ctrl_c() => {},
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// Resolves once nobody reads stdout any more (`warden order watch | head
/// -1` after `head` exited): the watch has no one left to tell, even while
/// no event arrives to fail a write. Only a pipe is watched; for anything
/// else this never resolves, and a failed write still ends the watch.
async fn stdout_closed() {
    #[cfg(unix)]
    if let Some(pipe) = stdout_pipe() {
        // A pipe reports error readiness to its writer once the read end
        // is closed. Only readiness is awaited: nothing is written through
        // this registration, so stdout keeps its blocking mode.
        if pipe.ready(tokio::io::Interest::ERROR).await.is_ok() {
            return;
        }
    }
    std::future::pending::<()>().await;
}

/// A second handle on stdout, registered for readiness, when stdout is a
/// pipe.
#[cfg(unix)]
fn stdout_pipe() -> Option<tokio::net::unix::pipe::Sender> {
    use std::os::fd::AsFd as _;
    use std::os::unix::fs::FileTypeExt as _;
    let out = std::fs::File::from(std::io::stdout().as_fd().try_clone_to_owned().ok()?);
    if !out.metadata().ok()?.file_type().is_fifo() {
        return None;
    }
    tokio::net::unix::pipe::Sender::from_file_unchecked(out).ok()
}

/// Watches, reconnecting forever; returns only on a fatal error or when
/// stdout is closed.
async fn follow(c: &ClientArgs, since: u64) -> anyhow::Result<i32> {
    let mut last = since;
    let mut backoff = Backoff::new();
    let mut attempt: u64 = 0;
    loop {
        let why = match watch_once(c, &mut last, &mut backoff, attempt).await {
            Ended::Fatal(e) => return Err(e),
            Ended::OutputClosed => return Ok(0),
            Ended::Retry(why) => why,
        };
        attempt += 1;
        let delay = backoff.next_delay();
        eprintln!(
            "watch: {why}; reconnecting in {:.2}s to resume after revision {last}",
            delay.as_secs_f64()
        );
        tokio::time::sleep(delay).await;
    }
}

/// One connection's stream. Prints each event and advances `last` to its
/// revision, so a reconnect resumes after the last event printed.
async fn watch_once(c: &ClientArgs, last: &mut u64, backoff: &mut Backoff, attempt: u64) -> Ended {
    let endpoint = match c.endpoint("scheduler") {
        // Keepalive pings notice a connection that died silently, so the
        // watch reconnects instead of waiting forever.
        Ok(e) => e
            .http2_keep_alive_interval(Duration::from_secs(15))
            .keep_alive_timeout(Duration::from_secs(10))
            .keep_alive_while_idle(true),
        Err(e) => return Ended::Fatal(e),
    };
    let channel = match endpoint.connect().await {
        Ok(ch) => ch,
        Err(e) => {
            return Ended::Retry(format!("cannot connect to {}: {}", c.addr, error_chain(&e)))
        }
    };
    let mut client = OrdersClient::new(channel);
    let mut stream = match client
        .watch_orders(proto::WatchOrdersRequest {
            since_revision: *last,
        })
        .await
    {
        Ok(r) => r.into_inner(),
        Err(s) if fatal_code(s.code()) => return Ended::Fatal(status_error(s)),
        Err(s) => return Ended::Retry(describe_status(&s)),
    };
    if attempt > 0 {
        eprintln!("watch: reconnected; resuming after revision {last}");
    }
    loop {
        match stream.message().await {
            Ok(Some(e)) => {
                let line = if c.json {
                    match event_json(&e) {
                        Ok(l) => l,
                        Err(err) => return Ended::Fatal(err),
                    }
                } else {
                    event_line(&e)
                };
                let mut out = std::io::stdout().lock();
                match writeln!(out, "{line}").and_then(|()| out.flush()) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                        return Ended::OutputClosed
                    }
                    Err(e) => return Ended::Fatal(anyhow::anyhow!("cannot write to stdout: {e}")),
                }
                *last = e.revision;
                backoff.reset();
            }
            Ok(None) => return Ended::Retry("the server ended the stream".into()),
            Err(s) if fatal_code(s.code()) => return Ended::Fatal(status_error(s)),
            Err(s) => return Ended::Retry(format!("the stream ended ({})", describe_status(&s))),
        }
    }
}

/// An error and its sources, `: `-separated, without the repeats that
/// come from errors which print their source themselves.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        match parts.last_mut() {
            Some(last) if last.contains(&text) => {}
            Some(last) if text.starts_with(last.as_str()) => *last = text,
            _ => parts.push(text),
        }
        source = s.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_five_seconds_and_resets() {
        let mut b = Backoff::new();
        let ms: Vec<u128> = (0..7).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(ms, [250, 500, 1000, 2000, 4000, 5000, 5000]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(250));
    }

    #[test]
    fn error_chains_do_not_repeat_themselves() {
        #[derive(Debug)]
        struct E(&'static str, Option<Box<E>>);
        impl std::fmt::Display for E {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.0)
            }
        }
        impl std::error::Error for E {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                self.1.as_deref().map(|e| e as _)
            }
        }
        let e = E(
            "transport error",
            Some(Box::new(E(
                "tcp connect error",
                Some(Box::new(E(
                    "tcp connect error: Connection refused",
                    Some(Box::new(E("Connection refused", None))),
                ))),
            ))),
        );
        assert_eq!(
            error_chain(&e),
            "transport error: tcp connect error: Connection refused"
        );
    }

    #[test]
    fn only_identity_and_argument_errors_stop_a_watch() {
        assert!(fatal_code(tonic::Code::PermissionDenied));
        assert!(fatal_code(tonic::Code::InvalidArgument));
        assert!(!fatal_code(tonic::Code::Aborted));
        assert!(!fatal_code(tonic::Code::Unavailable));
        assert!(!fatal_code(tonic::Code::Unknown));
    }
}
