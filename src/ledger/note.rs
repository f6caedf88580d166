//! C2SP `signed-note` with Ed25519 (https://c2sp.org/signed-note).
//!
//! A note is UTF-8 text ending in a newline, followed by a blank line and
//! one signature line per signer: `— <name> <base64(key id || signature)>`.
//! The key id is the first four bytes of SHA-256(name || "\n" || 0x01 ||
//! public key). Keys travel in the same text forms as Go's
//! `golang.org/x/mod/sumdb/note`: verifier `<name>+<hex id>+<base64(0x01 ||
//! public key)>`, signer `PRIVATE+KEY+<name>+<hex id>+<base64(0x01 || seed)>`.
//!
//! This module must never sign text that is not a well-formed note body: a
//! signature always covers exactly the bytes a verifier will see.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use sha2::{Digest, Sha256};

const ALG_ED25519: u8 = 0x01;
const SIG_PREFIX: &str = "\u{2014} ";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NoteError {
    #[error("key name {0:?} is empty or contains whitespace or '+'")]
    BadName(String),
    #[error("malformed key: {0}")]
    BadKey(&'static str),
    #[error("note text must be non-empty UTF-8 ending in a newline, without control characters")]
    BadText,
    #[error("malformed signed note: {0}")]
    Malformed(&'static str),
    #[error("no valid signature by {0}")]
    NotSigned(String),
}

fn check_name(name: &str) -> Result<(), NoteError> {
    if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c == '+') {
        return Err(NoteError::BadName(name.to_string()));
    }
    Ok(())
}

fn key_id(name: &str, public: &[u8]) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([ALG_ED25519]);
    h.update(public);
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

/// An Ed25519 note signer.
pub struct Signer {
    name: String,
    id: [u8; 4],
    seed: [u8; 32],
    pair: Ed25519KeyPair,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("Signer").field("name", &self.name).finish()
    }
}

impl Signer {
    /// Generates a fresh key from the system's secure random source.
    pub fn generate(name: &str) -> Result<Self, NoteError> {
        let mut seed = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut seed)
            .map_err(|_| NoteError::BadKey("no secure random source"))?;
        Self::from_seed(name, seed)
    }

    pub fn from_seed(name: &str, seed: [u8; 32]) -> Result<Self, NoteError> {
        check_name(name)?;
        let pair = Ed25519KeyPair::from_seed_unchecked(&seed)
            .map_err(|_| NoteError::BadKey("invalid Ed25519 seed"))?;
        let id = key_id(name, pair.public_key().as_ref());
        Ok(Self {
            name: name.to_string(),
            id,
            seed,
            pair,
        })
    }

    /// Parses `PRIVATE+KEY+<name>+<hex id>+<base64(0x01 || seed)>`.
    pub fn from_text(text: &str) -> Result<Self, NoteError> {
        let rest = text
            .trim()
            .strip_prefix("PRIVATE+KEY+")
            .ok_or(NoteError::BadKey("signer key must start with PRIVATE+KEY+"))?;
        let (name, id_hex, b64) = split_key(rest)?;
        let raw = B64
            .decode(b64)
            .map_err(|_| NoteError::BadKey("key is not base64"))?;
        if raw.len() != 33 || raw[0] != ALG_ED25519 {
            return Err(NoteError::BadKey("not an Ed25519 key"));
        }
        let mut seed = [0u8; 32];
        seed.copy_from_slice(&raw[1..]);
        let signer = Self::from_seed(name, seed)?;
        if hex::encode(signer.id) != id_hex {
            return Err(NoteError::BadKey("key id does not match the key"));
        }
        Ok(signer)
    }

    /// The signer key in text form. It is secret: write it only to files
    /// with owner-only permissions.
    pub fn to_text(&self) -> String {
        let mut raw = vec![ALG_ED25519];
        raw.extend_from_slice(&self.seed);
        format!(
            "PRIVATE+KEY+{}+{}+{}",
            self.name,
            hex::encode(self.id),
            B64.encode(raw)
        )
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn verifier(&self) -> Verifier {
        let mut public = [0u8; 32];
        public.copy_from_slice(self.pair.public_key().as_ref());
        Verifier {
            name: self.name.clone(),
            id: self.id,
            public,
        }
    }

    /// Signs `text` (which must end in a newline) and returns the signed note.
    pub fn sign(&self, text: &str) -> Result<String, NoteError> {
        check_text(text)?;
        let sig = self.pair.sign(text.as_bytes());
        let mut blob = self.id.to_vec();
        blob.extend_from_slice(sig.as_ref());
        Ok(format!(
            "{text}\n{SIG_PREFIX}{} {}\n",
            self.name,
            B64.encode(blob)
        ))
    }
}

fn split_key(s: &str) -> Result<(&str, &str, &str), NoteError> {
    let mut parts = s.splitn(3, '+');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(name), Some(id), Some(key)) if id.len() == 8 => {
            check_name(name)?;
            Ok((name, id, key))
        }
        _ => Err(NoteError::BadKey(
            "expected <name>+<8 hex digits>+<base64 key>",
        )),
    }
}

fn check_text(text: &str) -> Result<(), NoteError> {
    if text.is_empty() || !text.ends_with('\n') || text.chars().any(|c| c.is_control() && c != '\n')
    {
        return Err(NoteError::BadText);
    }
    Ok(())
}

/// An Ed25519 note verifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verifier {
    name: String,
    id: [u8; 4],
    public: [u8; 32],
}

impl Verifier {
    /// Parses `<name>+<hex id>+<base64(0x01 || public key)>`.
    pub fn from_text(text: &str) -> Result<Self, NoteError> {
        let (name, id_hex, b64) = split_key(text.trim())?;
        let raw = B64
            .decode(b64)
            .map_err(|_| NoteError::BadKey("key is not base64"))?;
        if raw.len() != 33 || raw[0] != ALG_ED25519 {
            return Err(NoteError::BadKey("not an Ed25519 key"));
        }
        let mut public = [0u8; 32];
        public.copy_from_slice(&raw[1..]);
        let id = key_id(name, &public);
        if hex::encode(id) != id_hex {
            return Err(NoteError::BadKey("key id does not match the key"));
        }
        Ok(Self {
            name: name.to_string(),
            id,
            public,
        })
    }

    pub fn to_text(&self) -> String {
        let mut raw = vec![ALG_ED25519];
        raw.extend_from_slice(&self.public);
        format!("{}+{}+{}", self.name, hex::encode(self.id), B64.encode(raw))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Checks that `note` carries a valid signature by this key and returns
    /// the signed text. Signatures by other keys are ignored, as the spec
    /// asks.
    pub fn open<'a>(&self, note: &'a str) -> Result<&'a str, NoteError> {
        let split = note
            .rfind("\n\n")
            .ok_or(NoteError::Malformed("no blank line before the signatures"))?;
        let (text, sigs) = (&note[..split + 1], &note[split + 2..]);
        check_text(text).map_err(|_| NoteError::Malformed("bad note text"))?;
        if !sigs.ends_with('\n') {
            return Err(NoteError::Malformed(
                "signature block must end in a newline",
            ));
        }
        let key = UnparsedPublicKey::new(&ED25519, &self.public);
        for line in sigs.lines() {
            let rest = line.strip_prefix(SIG_PREFIX).ok_or(NoteError::Malformed(
                "signature line must start with an em dash",
            ))?;
            let (name, b64) = rest.split_once(' ').ok_or(NoteError::Malformed(
                "signature line needs a name and a signature",
            ))?;
            if name != self.name {
                continue;
            }
            let Ok(blob) = B64.decode(b64) else { continue };
            if blob.len() == 4 + 64
                && blob[..4] == self.id
                && key.verify(text.as_bytes(), &blob[4..]).is_ok()
            {
                return Ok(text);
            }
        }
        Err(NoteError::NotSigned(self.name.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test key and signed note from golang.org/x/mod/sumdb/note's
    /// documentation (PeterNeumann).
    const GO_SKEY: &str =
        "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    const GO_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    const GO_NOTE: &str = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n\n\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

    #[test]
    fn go_sumdb_note_vector_verifies_and_reproduces() {
        let v = Verifier::from_text(GO_VKEY).unwrap();
        let text = v.open(GO_NOTE).unwrap();
        assert!(text.starts_with("If you think"));
        let s = Signer::from_text(GO_SKEY).unwrap();
        assert_eq!(s.verifier(), v);
        assert_eq!(s.to_text(), GO_SKEY);
        // Ed25519 is deterministic: signing the same text gives the same note.
        assert_eq!(s.sign(text).unwrap(), GO_NOTE);
    }

    #[test]
    fn any_edit_breaks_the_signature() {
        let s = Signer::generate("warden.test/licence").unwrap();
        let note = s.sign("warden-licence/v1\ndeployment d1\n").unwrap();
        let v = s.verifier();
        assert!(v.open(&note).is_ok());
        let edited = note.replace("d1", "d2");
        assert_eq!(
            v.open(&edited),
            Err(NoteError::NotSigned("warden.test/licence".into()))
        );
        let other = Signer::generate("warden.test/licence").unwrap().verifier();
        assert!(other.open(&note).is_err());
    }

    #[test]
    fn keys_round_trip_through_text() {
        let s = Signer::generate("k").unwrap();
        let back = Signer::from_text(&s.to_text()).unwrap();
        assert_eq!(back.verifier(), s.verifier());
        assert_eq!(
            Verifier::from_text(&s.verifier().to_text()).unwrap(),
            s.verifier()
        );
        assert!(Verifier::from_text("k+00000000+AAAA").is_err());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// Cross-check against the independent `signed_note` crate: our
        /// notes verify there, theirs open here, and both sign the same text
        /// with the same key to the same bytes.
        #[test]
        fn notes_agree_with_the_signed_note_crate(
            name in "[a-z][a-z0-9.-]{0,20}(/[a-z0-9]{1,8})?",
            lines in proptest::collection::vec("[ -~]{0,60}", 1..6),
        ) {
            use signed_note::{Note, StandardSigner, StandardVerifier, VerifierList};
            let text = lines.iter().map(|l| format!("{l}\n")).collect::<String>();
            let ours = Signer::generate(&name).unwrap();
            let note = ours.sign(&text).unwrap();

            let theirs_verifier = StandardVerifier::new(&ours.verifier().to_text()).unwrap();
            let parsed = Note::from_bytes(note.as_bytes()).unwrap();
            let (verified, _) = parsed
                .verify(&VerifierList::new(vec![Box::new(theirs_verifier)]))
                .unwrap();
            proptest::prop_assert_eq!(verified.len(), 1);

            let theirs_signer = StandardSigner::new(&ours.to_text()).unwrap();
            let mut theirs = Note::new(text.as_bytes(), &[]).unwrap();
            theirs.add_sigs(&[&theirs_signer]).unwrap();
            let theirs = String::from_utf8(theirs.to_bytes()).unwrap();
            proptest::prop_assert_eq!(ours.verifier().open(&theirs).unwrap(), text.as_str());
            proptest::prop_assert_eq!(theirs, note);
        }
    }

    #[test]
    fn text_without_final_newline_is_not_signed() {
        let s = Signer::generate("k").unwrap();
        assert_eq!(s.sign("no newline"), Err(NoteError::BadText));
    }
}
