//! C2SP `tlog-checkpoint` (https://c2sp.org/tlog-checkpoint): the body of a
//! signed note naming the log (origin), its size and its root hash:
//!
//! ```text
//! <origin>\n<size in decimal>\n<base64 root hash>\n
//! ```
//!
//! The origin is the signing key's name, so a verifier key names the log it
//! verifies.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

use super::note::{NoteError, Signer, Verifier};
use super::tree::Hash;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CheckpointError {
    #[error("checkpoint signature: {0}")]
    Note(#[from] NoteError),
    #[error("malformed checkpoint: {0}")]
    Malformed(&'static str),
    #[error("checkpoint origin {found:?} is not the expected {expected:?}")]
    WrongOrigin { expected: String, found: String },
}

impl Checkpoint {
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root)
        )
    }

    /// Parses a checkpoint body (extension lines after the root are allowed
    /// by the spec and ignored here).
    pub fn parse_body(text: &str) -> Result<Self, CheckpointError> {
        let mut lines = text.split('\n');
        let origin = lines
            .next()
            .filter(|o| !o.is_empty())
            .ok_or(CheckpointError::Malformed("missing origin"))?;
        let size_line = lines
            .next()
            .ok_or(CheckpointError::Malformed("missing size"))?;
        if size_line.is_empty()
            || !size_line.bytes().all(|b| b.is_ascii_digit())
            || (size_line.len() > 1 && size_line.starts_with('0'))
        {
            return Err(CheckpointError::Malformed("size is not a decimal number"));
        }
        let size = size_line
            .parse()
            .map_err(|_| CheckpointError::Malformed("size out of range"))?;
        let root_line = lines
            .next()
            .ok_or(CheckpointError::Malformed("missing root hash"))?;
        let root: Hash = B64
            .decode(root_line)
            .ok()
            .and_then(|r| r.try_into().ok())
            .ok_or(CheckpointError::Malformed(
                "root hash is not 32 bytes of base64",
            ))?;
        Ok(Self {
            origin: origin.to_string(),
            size,
            root,
        })
    }

    /// Signs the checkpoint; the origin must be the signer's name.
    pub fn sign(&self, signer: &Signer) -> Result<String, CheckpointError> {
        if self.origin != signer.name() {
            return Err(CheckpointError::WrongOrigin {
                expected: signer.name().to_string(),
                found: self.origin.clone(),
            });
        }
        Ok(signer.sign(&self.body())?)
    }

    /// Verifies a signed checkpoint note and returns what it says.
    pub fn open(note: &str, verifier: &Verifier) -> Result<Self, CheckpointError> {
        let body = verifier.open(note)?;
        let cp = Self::parse_body(body)?;
        if cp.origin != verifier.name() {
            return Err(CheckpointError::WrongOrigin {
                expected: verifier.name().to_string(),
                found: cp.origin,
            });
        }
        Ok(cp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_checkpoints_round_trip_and_reject_edits() {
        let signer = Signer::generate("warden.test/ledger").unwrap();
        let cp = Checkpoint {
            origin: "warden.test/ledger".into(),
            size: 42,
            root: [7u8; 32],
        };
        let note = cp.sign(&signer).unwrap();
        assert!(note.starts_with("warden.test/ledger\n42\nBwcH"));
        assert_eq!(Checkpoint::open(&note, &signer.verifier()).unwrap(), cp);
        assert!(Checkpoint::open(&note.replace("\n42\n", "\n43\n"), &signer.verifier()).is_err());
    }

    proptest::proptest! {
        /// Bodies agree byte for byte with the independent `tlog_tiles`
        /// implementation of C2SP tlog-checkpoint, both ways.
        #[test]
        fn bodies_agree_with_the_tlog_tiles_crate(
            origin in "[a-z][a-z0-9.-]{0,20}(/[a-z0-9]{1,8})?",
            size in proptest::prelude::any::<u64>(),
            root in proptest::prelude::any::<[u8; 32]>(),
        ) {
            let ours = Checkpoint { origin: origin.clone(), size, root };
            let theirs = tlog_tiles::Checkpoint::new(&origin, size, tlog_tiles::Hash(root), "").unwrap();
            proptest::prop_assert_eq!(ours.body().into_bytes(), theirs.to_bytes());
            let parsed = tlog_tiles::Checkpoint::from_bytes(ours.body().as_bytes()).unwrap();
            proptest::prop_assert_eq!((parsed.origin(), parsed.size(), parsed.hash().0), (origin.as_str(), size, root));
            proptest::prop_assert_eq!(Checkpoint::parse_body(&String::from_utf8(theirs.to_bytes()).unwrap()).unwrap(), ours);
        }
    }

    #[test]
    fn malformed_bodies_are_refused() {
        for body in ["", "o\n", "o\n01\nAAAA\n", "o\nx\n", "o\n1\nAAAA\n"] {
            assert!(Checkpoint::parse_body(body).is_err(), "{body:?}");
        }
    }
}
