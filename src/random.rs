//! Secret randomness from the operating system: the salts of the ledger's
//! commitments to personal data and free text. A salt an observer can
//! guess makes a commitment to a short text (a name, a note) open to a
//! dictionary search, so this fails closed: when the source fails the
//! caller gets an error and the request fails, never a predictable salt.
//!
//! A leaf: it imports nothing from the crate.

/// The operating system's randomness source failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the operating system's randomness source failed")]
pub struct RandomnessUnavailable;

/// Where secret random bytes come from; the operating system's source in
/// production ([`OsRandom`]), any other only in tests.
pub trait Randomness {
    /// Fills `dest` entirely, or fails.
    fn fill(&self, dest: &mut [u8]) -> Result<(), RandomnessUnavailable>;
}

/// The operating system's source (`getrandom`), through ring.
pub struct OsRandom;

impl Randomness for OsRandom {
    fn fill(&self, dest: &mut [u8]) -> Result<(), RandomnessUnavailable> {
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), dest)
            .map_err(|_| RandomnessUnavailable)
    }
}

/// A fresh commitment salt from the operating system: 32 random bytes, hex.
pub fn commitment_salt() -> Result<String, RandomnessUnavailable> {
    commitment_salt_from(&OsRandom)
}

/// A fresh commitment salt from `source`: 32 random bytes, hex.
pub fn commitment_salt_from(source: &dyn Randomness) -> Result<String, RandomnessUnavailable> {
    let mut salt = [0u8; 32];
    source.fill(&mut salt)?;
    Ok(hex::encode(salt))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    struct Broken;

    impl Randomness for Broken {
        fn fill(&self, dest: &mut [u8]) -> Result<(), RandomnessUnavailable> {
            // A source that fails part way: what it wrote must not leak out.
            dest[0] = 7;
            Err(RandomnessUnavailable)
        }
    }

    #[test]
    fn a_failing_source_is_an_error_never_a_salt() {
        assert_eq!(commitment_salt_from(&Broken), Err(RandomnessUnavailable));
    }

    #[test]
    fn salts_are_32_random_bytes_and_differ() {
        let a = commitment_salt().unwrap();
        let b = commitment_salt().unwrap();
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
        assert_ne!(a, "0".repeat(64));
    }
}
