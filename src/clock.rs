//! Time, and the one hashing helper, that every layer may use: the leaf of
//! warden's layer order (see the crate docs). It imports nothing from the
//! crate, so anything can depend on it without running back up.
//!
//! Why a [`Clock`] instead of reading the system time: leases, order
//! expiry, waiting periods, retention and certificate validity all depend on
//! "now". The server reads it from the clock in its application state, so a
//! test can start the real server on a [`ManualClock`] and move time forward
//! instead of sleeping. Background tasks wait with [`Clock::sleep`] for the
//! same reason: advancing a manual clock wakes them.
//!
//! [`now_millis`] is the system time for code that has no clock to be given
//! (the CLI, benchmarks, the store's checkpoint signing time). Request
//! handlers and the services they call must use the application's clock.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch. warden stores and compares all times in
/// this one unit.
pub type UnixMillis = i64;

/// A future that completes when a [`Clock::sleep`] is over.
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Where the server reads the time.
pub trait Clock: Send + Sync {
    /// The current time.
    fn now(&self) -> UnixMillis;
    /// Completes once `d` has passed on this clock.
    fn sleep(&self, d: Duration) -> Sleep;
}

/// The system's wall clock and tokio's timers: what production runs on.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> UnixMillis {
        now_millis()
    }

    fn sleep(&self, d: Duration) -> Sleep {
        Box::pin(tokio::time::sleep(d))
    }
}

/// A clock that moves only when told to ([`set`](Self::set),
/// [`advance`](Self::advance)). Share it in an `Arc`: the server reads it,
/// the test moves it. A sleep on it ends when the clock reaches the sleep's
/// deadline, so advancing wakes the background tasks that wait on it.
#[derive(Debug)]
pub struct ManualClock {
    now: tokio::sync::watch::Sender<UnixMillis>,
}

impl ManualClock {
    /// A clock standing at `start`.
    pub fn new(start: UnixMillis) -> Self {
        Self {
            now: tokio::sync::watch::Sender::new(start),
        }
    }

    /// A clock standing at the current system time (so certificates and
    /// CRLs issued just now are valid on it).
    pub fn starting_now() -> Self {
        Self::new(now_millis())
    }

    /// Puts the clock at `t`, forward or back.
    pub fn set(&self, t: UnixMillis) {
        self.now.send_replace(t);
    }

    /// Moves the clock forward by `d`.
    pub fn advance(&self, d: Duration) {
        let step = duration_millis(d);
        self.now.send_modify(|t| *t = t.saturating_add(step));
    }
}

impl Clock for ManualClock {
    fn now(&self) -> UnixMillis {
        *self.now.borrow()
    }

    fn sleep(&self, d: Duration) -> Sleep {
        let deadline = self.now().saturating_add(duration_millis(d));
        let mut moves = self.now.subscribe();
        Box::pin(async move {
            if moves.wait_for(|t| *t >= deadline).await.is_err() {
                // The clock is gone, so it will never get there.
                std::future::pending::<()>().await;
            }
        })
    }
}

fn duration_millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The system's wall-clock time. A clock set before 1970 reads as 0.
pub fn now_millis() -> UnixMillis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, duration_millis)
}

/// RFC 3339 in UTC with milliseconds, as licences and the CLI print times;
/// the plain number if it is out of range.
pub fn rfc3339(ms: UnixMillis) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ms.to_string())
}

/// Lower-case hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest as _, Sha256};
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let clock = ManualClock::new(1_000);
        assert_eq!(clock.now(), 1_000);
        clock.advance(Duration::from_millis(250));
        assert_eq!(clock.now(), 1_250);
        clock.set(10);
        assert_eq!(clock.now(), 10);
    }

    #[tokio::test]
    async fn a_sleep_on_a_manual_clock_ends_when_the_clock_reaches_its_deadline() {
        let clock = Arc::new(ManualClock::new(0));
        let shared: Arc<dyn Clock> = clock.clone();
        let sleep = tokio::spawn(shared.sleep(Duration::from_secs(60)));
        clock.advance(Duration::from_secs(59));
        tokio::task::yield_now().await;
        assert!(!sleep.is_finished());
        clock.advance(Duration::from_secs(1));
        tokio::time::timeout(Duration::from_secs(10), sleep)
            .await
            .expect("the sleep did not end when the clock reached its deadline")
            .expect("sleep task");
    }

    #[test]
    fn rfc3339_formats_utc_and_falls_back_to_the_number() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_500), "1970-01-01T00:00:01.5Z");
        assert_eq!(rfc3339(i64::MAX), i64::MAX.to_string());
    }

    #[test]
    fn sha256_hex_is_lower_case_hex() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
