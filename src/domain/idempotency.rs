//! Admission is idempotent per caller. A scheduler that sends an `Admit`
//! again (after a timeout, a crash, a lost answer) with the same request id
//! gets the first answer, and nothing is admitted or recorded twice. Request
//! ids are the caller's own, so their scope is the caller: the store keys
//! the first decision by (principal, request id), and two schedulers may use
//! the same id. An id sent again with a different request is a bug in the
//! caller; answering it with the decision about another request would hide
//! that, so it is refused.

/// What a request gets when its caller already used its request id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repeat {
    /// The same request: the first decision, as it was answered.
    Replay,
    /// A different request under the same id: refused, nothing recorded.
    Refuse,
}

/// Compares a repeated request with the first one under its id, each as the
/// SHA-256 of its encoded message: any difference in any field (workload,
/// chain, customer) makes it a different request.
pub fn repeat(first_sha256: &str, this_sha256: &str) -> Repeat {
    if first_sha256 == this_sha256 {
        Repeat::Replay
    } else {
        Repeat::Refuse
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_identical_request_is_answered_again() {
        let a = "a".repeat(64);
        let b = format!("{}b", "a".repeat(63));
        for (first, this, expected) in [
            (a.as_str(), a.as_str(), Repeat::Replay),
            (a.as_str(), b.as_str(), Repeat::Refuse),
            (b.as_str(), a.as_str(), Repeat::Refuse),
            (a.as_str(), "", Repeat::Refuse),
            ("", a.as_str(), Repeat::Refuse),
        ] {
            assert_eq!(repeat(first, this), expected, "{first:?} {this:?}");
        }
    }
}
