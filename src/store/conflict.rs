//! Why the store refused a write, as data: a conflict names what changed
//! between the caller's read and its write, so the caller can tell which
//! ones deciding again will fix without matching on message text. Every
//! engine reports the same conflicts for the same preconditions.
//!
//! [`retry_on_conflict`] is the one loop that decides again.

use std::future::Future;

/// What changed since the caller read it. The write changed nothing; the
/// caller reads again and decides again, or reports the conflict (ABORTED).
/// The text is what the caller is told, after "… was changed concurrently".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Conflict {
    /// An order came into force, was lifted or expired: an admission or
    /// renewal decided against the old set is decided again.
    #[error("the orders in force")]
    OrdersChanged,
    /// The sanctions list was replaced: a screening against the old one is
    /// made again against the loaded one.
    #[error("the sanctions list")]
    ListReplaced,
    /// The customer has a newer version than the one written or screened.
    #[error("customer {customer_id}")]
    CustomerChanged { customer_id: String },
    /// The customer's screening has a newer revision than the one written.
    #[error("screening of customer {customer_id}")]
    ScreeningChanged { customer_id: String },
    /// The stored deployment is no longer the one a renewal or release was
    /// decided on.
    #[error("deployment {deployment_id}")]
    DeploymentChanged { deployment_id: String },
    /// The order changed since the revision its change was computed from.
    #[error("order {order_id}")]
    OrderChanged { order_id: String },
    /// A purge named no stored version.
    #[error("nothing to purge")]
    NothingToPurge,
    /// A disclosure for an attribution request that is not recorded.
    #[error("attribution request {request_index} is not recorded")]
    RequestNotRecorded { request_index: u64 },
    /// A second disclosure for one attribution request.
    #[error("attribution request {request_index} already answered")]
    RequestAnswered { request_index: u64 },
}

/// How many times a write refused by a conflict is decided in all. Each
/// conflict means another write to the same thing committed between this
/// one's read and its write; losing that race five times running means the
/// thing changes faster than a decision is made, and the caller is better
/// told so (ABORTED, retry later) than kept queueing behind the single
/// writer. Retries are not delayed: the write that won is already durable.
pub const CONFLICT_ATTEMPTS: usize = 5;

/// Runs `attempt` (numbered from 1) until it ends in something other than
/// a conflict `retry_if` accepts, at most `max_attempts` times. An attempt
/// reads what it needs, decides and writes; it returns `Ok(Err(conflict))`
/// when the store refused the write, `Err` for any other failure (returned
/// at once). Returns `Ok(Err(conflict))` for a conflict `retry_if` refuses,
/// or the last one when every attempt conflicted.
pub async fn retry_on_conflict<T, E, F, Fut>(
    max_attempts: usize,
    retry_if: impl Fn(&Conflict) -> bool,
    mut attempt: F,
) -> Result<Result<T, Conflict>, E>
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = Result<Result<T, Conflict>, E>>,
{
    let mut n = 1;
    loop {
        match attempt(n).await? {
            Err(c) if n < max_attempts && retry_if(&c) => n += 1,
            done => return Ok(done),
        }
    }
}

/// A store call's result with its conflict set apart, as an attempt of
/// [`retry_on_conflict`] returns it.
pub fn conflict_apart<T>(
    r: Result<T, super::StoreError>,
) -> Result<Result<T, Conflict>, super::StoreError> {
    match r {
        Ok(t) => Ok(Ok(t)),
        Err(super::StoreError::Conflict(c)) => Ok(Err(c)),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    fn run<T>(f: impl Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn a_retried_conflict_is_decided_again_until_it_succeeds() {
        let calls = Cell::new(0);
        let r: Result<_, ()> = run(retry_on_conflict(
            CONFLICT_ATTEMPTS,
            |c| *c == Conflict::OrdersChanged,
            |n| {
                calls.set(n);
                async move {
                    Ok(if n < 3 {
                        Err(Conflict::OrdersChanged)
                    } else {
                        Ok(n)
                    })
                }
            },
        ));
        assert_eq!(r, Ok(Ok(3)));
        assert_eq!(calls.get(), 3);
    }

    #[test]
    fn the_attempts_are_bounded_and_the_last_conflict_is_returned() {
        let calls = Cell::new(0);
        let r: Result<Result<(), _>, ()> = run(retry_on_conflict(
            CONFLICT_ATTEMPTS,
            |_| true,
            |n| {
                calls.set(n);
                async move {
                    Ok(Err(Conflict::OrderChanged {
                        order_id: format!("ord-{n}"),
                    }))
                }
            },
        ));
        assert_eq!(
            r,
            Ok(Err(Conflict::OrderChanged {
                order_id: format!("ord-{CONFLICT_ATTEMPTS}")
            }))
        );
        assert_eq!(calls.get(), CONFLICT_ATTEMPTS);
    }

    #[test]
    fn other_conflicts_and_errors_end_the_loop_at_once() {
        let calls = Cell::new(0);
        let r: Result<Result<(), _>, ()> = run(retry_on_conflict(
            CONFLICT_ATTEMPTS,
            |c| *c == Conflict::ListReplaced,
            |n| {
                calls.set(n);
                async { Ok(Err(Conflict::NothingToPurge)) }
            },
        ));
        assert_eq!(r, Ok(Err(Conflict::NothingToPurge)));
        assert_eq!(calls.get(), 1);

        let r: Result<Result<(), Conflict>, &str> = run(retry_on_conflict(
            CONFLICT_ATTEMPTS,
            |_| true,
            |_| async { Err("disk gone") },
        ));
        assert_eq!(r, Err("disk gone"));
    }

    #[test]
    fn the_text_is_what_callers_were_told_before() {
        let e = super::super::StoreError::Conflict(Conflict::CustomerChanged {
            customer_id: "cust-1".into(),
        });
        assert_eq!(
            e.to_string(),
            "customer cust-1 was changed concurrently; retry"
        );
        assert_eq!(Conflict::OrdersChanged.to_string(), "the orders in force");
        assert_eq!(Conflict::ListReplaced.to_string(), "the sanctions list");
    }
}
