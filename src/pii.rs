//! Personal data at rest: sealed with AES-256-GCM (ring) under a data key
//! from the PII key file named in the config.
//!
//! The key file holds one key per line, `<key-id> <64 hex digits>`; blank
//! lines and `#` comments are ignored. The **last** key seals new records;
//! every key in the file opens the records sealed under it, so rotation is
//! appending a new line (`warden pii rotate`) and old versions still open.
//! Removing a key that sealed stored records makes them fail closed with an
//! error naming the key id.
//!
//! Each sealed value carries its key id and a random 96-bit nonce, and is
//! bound to its place (additional authenticated data, e.g. customer id and
//! version), so a sealed value moved to another record does not open.

use std::path::Path;

use base64::Engine as _;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum PiiError {
    #[error("PII key file {path}: {detail}")]
    KeyFile { path: String, detail: String },
    #[error(
        "a record is sealed with PII key {0:?}, which is not in the key file; \
         add the key back to open it"
    )]
    UnknownKey(String),
    #[error(
        "a record sealed with PII key {0:?} does not open: the key in the file is not \
         the one it was sealed with, or the record was altered"
    )]
    Open(String),
    #[error("sealing failed: {0}")]
    Seal(String),
}

/// A sealed value as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sealed {
    /// Id of the key that sealed it.
    pub key: String,
    /// Hex nonce.
    pub nonce: String,
    /// Base64 (standard) ciphertext and tag.
    pub data: String,
}

pub struct Keyring {
    keys: Vec<(String, LessSafeKey)>,
    rng: SystemRandom,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|(id, _)| id.as_str()).collect();
        f.debug_struct("Keyring").field("key_ids", &ids).finish()
    }
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl Keyring {
    /// Parses a key file's text; `path` only names it in errors.
    pub fn parse(path: &str, text: &str) -> Result<Self, PiiError> {
        let bad = |line: usize, detail: &str| PiiError::KeyFile {
            path: path.to_string(),
            detail: format!("line {line}: {detail}"),
        };
        let mut keys: Vec<(String, LessSafeKey)> = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut parts = line.split_whitespace();
            let (Some(id), Some(hex_key), None) = (parts.next(), parts.next(), parts.next()) else {
                return Err(bad(n + 1, "expected \"<key-id> <64 hex digits>\""));
            };
            if !valid_id(id) {
                return Err(bad(
                    n + 1,
                    "key id must be 1-64 of letters, digits, '-', '_' and '.'",
                ));
            }
            if keys.iter().any(|(k, _)| k == id) {
                return Err(bad(n + 1, &format!("key id {id:?} appears twice")));
            }
            let bytes = hex::decode(hex_key)
                .ok()
                .filter(|b| b.len() == 32)
                .ok_or_else(|| bad(n + 1, "the key must be 64 hex digits (32 bytes)"))?;
            let key = UnboundKey::new(&AES_256_GCM, &bytes)
                .map_err(|_| bad(n + 1, "not an AES-256 key"))?;
            keys.push((id.to_string(), LessSafeKey::new(key)));
        }
        if keys.is_empty() {
            return Err(PiiError::KeyFile {
                path: path.to_string(),
                detail: "no keys (expected lines \"<key-id> <64 hex digits>\")".into(),
            });
        }
        Ok(Self {
            keys,
            rng: SystemRandom::new(),
        })
    }

    pub fn load(path: &Path) -> Result<Self, PiiError> {
        let text = std::fs::read_to_string(path).map_err(|e| PiiError::KeyFile {
            path: path.display().to_string(),
            detail: e.to_string(),
        })?;
        Self::parse(&path.display().to_string(), &text)
    }

    /// A new key file line for `id` with a fresh random key.
    pub fn new_key_line(id: &str) -> Result<String, PiiError> {
        if !valid_id(id) {
            return Err(PiiError::Seal(format!(
                "key id {id:?} must be 1-64 of letters, digits, '-', '_' and '.'"
            )));
        }
        let mut key = [0u8; 32];
        SystemRandom::new()
            .fill(&mut key)
            .map_err(|_| PiiError::Seal("no randomness available".into()))?;
        Ok(format!("{id} {}\n", hex::encode(key)))
    }

    /// Creates a key file with one fresh key (readable by the owner only).
    pub fn generate(path: &Path, id: &str) -> Result<(), PiiError> {
        let text = format!(
            "# warden PII data keys: one per line, \"<key-id> <64 hex digits>\".\n\
             # The last key seals new records; every key opens what it sealed.\n{}",
            Self::new_key_line(id)?
        );
        write_private(path, &text).map_err(|e| PiiError::KeyFile {
            path: path.display().to_string(),
            detail: e.to_string(),
        })
    }

    /// Appends a fresh key, which seals everything written from then on.
    pub fn rotate(path: &Path, id: &str) -> Result<(), PiiError> {
        let existing = Self::load(path)?;
        if existing.keys.iter().any(|(k, _)| k == id) {
            return Err(PiiError::KeyFile {
                path: path.display().to_string(),
                detail: format!("key id {id:?} is already in the file"),
            });
        }
        let mut text = std::fs::read_to_string(path).map_err(|e| PiiError::KeyFile {
            path: path.display().to_string(),
            detail: e.to_string(),
        })?;
        if !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&Self::new_key_line(id)?);
        write_private(path, &text).map_err(|e| PiiError::KeyFile {
            path: path.display().to_string(),
            detail: e.to_string(),
        })
    }

    /// The id of the key that seals new records.
    pub fn active_id(&self) -> &str {
        self.keys.last().map_or("", |(id, _)| id.as_str())
    }

    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Sealed, PiiError> {
        let (id, key) = self
            .keys
            .last()
            .ok_or_else(|| PiiError::Seal("no key".into()))?;
        let mut nonce = [0u8; NONCE_LEN];
        self.rng
            .fill(&mut nonce)
            .map_err(|_| PiiError::Seal("no randomness available".into()))?;
        let mut data = plaintext.to_vec();
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut data,
        )
        .map_err(|_| PiiError::Seal("AES-GCM refused the input".into()))?;
        Ok(Sealed {
            key: id.clone(),
            nonce: hex::encode(nonce),
            data: base64::engine::general_purpose::STANDARD.encode(data),
        })
    }

    pub fn open(&self, aad: &[u8], sealed: &Sealed) -> Result<Vec<u8>, PiiError> {
        let key = self
            .keys
            .iter()
            .find(|(id, _)| *id == sealed.key)
            .map(|(_, k)| k)
            .ok_or_else(|| PiiError::UnknownKey(sealed.key.clone()))?;
        let fail = || PiiError::Open(sealed.key.clone());
        let nonce: [u8; NONCE_LEN] = hex::decode(&sealed.nonce)
            .ok()
            .and_then(|n| n.try_into().ok())
            .ok_or_else(fail)?;
        let mut data = base64::engine::general_purpose::STANDARD
            .decode(&sealed.data)
            .map_err(|_| fail())?;
        let plain = key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut data,
            )
            .map_err(|_| fail())?;
        Ok(plain.to_vec())
    }
}

/// Writes a secret file, readable and writable by its owner only, with
/// the crate's crash-safe replace (durable on return).
pub fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use crate::fsutil::{Durability, Mode};
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    crate::fsutil::write_atomic(
        path,
        text.as_bytes(),
        Mode::Exact(0o600),
        Durability::Synced,
    )
    .map_err(|e| e.source)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring_with(lines: &[String]) -> Keyring {
        Keyring::parse("test", &lines.concat()).unwrap()
    }

    #[test]
    fn seals_and_opens_and_binds_to_its_place() {
        let k = ring_with(&[Keyring::new_key_line("k1").unwrap()]);
        let s = k.seal(b"cust-1/1", b"Jane Doe").unwrap();
        assert_eq!(s.key, "k1");
        assert!(!s.data.contains("Jane"));
        let raw = base64::engine::general_purpose::STANDARD
            .decode(&s.data)
            .unwrap();
        assert!(!raw.windows(4).any(|w| w == b"Jane"));
        assert_eq!(k.open(b"cust-1/1", &s).unwrap(), b"Jane Doe");
        assert!(matches!(k.open(b"cust-2/1", &s), Err(PiiError::Open(_))));
    }

    #[test]
    fn rotation_seals_with_the_last_key_and_old_keys_still_open() {
        let l1 = Keyring::new_key_line("k1").unwrap();
        let old = ring_with(std::slice::from_ref(&l1))
            .seal(b"a", b"x")
            .unwrap();
        let rotated = ring_with(&[l1, Keyring::new_key_line("k2").unwrap()]);
        assert_eq!(rotated.active_id(), "k2");
        assert_eq!(rotated.open(b"a", &old).unwrap(), b"x");
        assert_eq!(rotated.seal(b"a", b"y").unwrap().key, "k2");
    }

    #[test]
    fn a_wrong_or_missing_key_fails_closed_naming_the_key() {
        let s = ring_with(&[Keyring::new_key_line("k1").unwrap()])
            .seal(b"a", b"x")
            .unwrap();
        let other = ring_with(&[Keyring::new_key_line("k1").unwrap()]);
        let e = other.open(b"a", &s).unwrap_err().to_string();
        assert!(e.contains("\"k1\"") && e.contains("does not open"), "{e}");
        let missing = ring_with(&[Keyring::new_key_line("k9").unwrap()]);
        let e = missing.open(b"a", &s).unwrap_err().to_string();
        assert!(e.contains("not in the key file"), "{e}");
    }

    #[test]
    fn bad_key_files_name_the_line() {
        for (text, want) in [
            ("", "no keys"),
            ("k1 abcd\n", "line 1"),
            ("# c\nk1\n", "line 2"),
            ("bad/id 00\n", "key id"),
        ] {
            let e = Keyring::parse("f", text).unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
        }
        let line = Keyring::new_key_line("k1").unwrap();
        let e = Keyring::parse("f", &format!("{line}{line}"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("twice"), "{e}");
    }
}
