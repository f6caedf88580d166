//! The licence: what warden hands a scheduler on allow, and what a node
//! checks before it serves. One module builds, parses and verifies it, so
//! the server that signs a licence and every verifier (`warden
//! verify-licence`, the node agent) agree on one format.
//!
//! A licence is a C2SP signed note by warden's Ed25519 licence key
//! ([`crate::ledger::note`]) whose text is, line by line:
//!
//! ```text
//! warden-licence/v2
//! deployment <deployment id>
//! model <sha256:64 lower-case hex>
//! customer <customer id>
//! expires <RFC 3339 UTC, milliseconds at most, e.g. 2026-05-01T12:00:00.25Z>
//! region <the region the deployment was admitted for>
//! accelerators <the accelerator count it was admitted for>
//! certificate <SHA-256 of the evaluation certificate's DER, 64 lower-case hex>
//! ```
//!
//! The scope lines are the *grant*, not the certificate's wider scope: a
//! deployment is admitted (and recorded, attributed and stopped by orders)
//! for one region and one accelerator count, so a node checks that it is in
//! that region and uses at most that many accelerators. `expires` is the end
//! of the lease; each renewal returns a new licence.
//!
//! `warden-licence/v1` (the first five lines only, without scope) is no
//! longer accepted: it cannot say where a deployment may run, and since a
//! licence lives only as long as a lease, the v1 licences still held are
//! replaced at the next renewal.
//!
//! Parsing is strict and total: exact line order and keys, one space
//! between key and value, no empty, unknown, duplicate or trailing lines,
//! canonical values only (so a licence has exactly one spelling), and an
//! error, never a panic, on any input. This module never signs text that
//! does not parse back to the licence it was built from.

use std::fmt;
use std::str::FromStr as _;
use std::time::Duration;

use time::format_description::well_known::Rfc3339;

use crate::clock::rfc3339;
use crate::digest::ModelDigest;
use crate::domain::customer::check_identifier;
use crate::domain::deployment::Deployment;
use crate::domain::UnixMillis;
use crate::ledger::note::{NoteError, Signer, Verifier};

/// First line of the current licence body.
pub const VERSION: &str = "warden-licence/v2";
/// First line of the scope-less first version, refused by verifiers.
pub const VERSION_1: &str = "warden-licence/v1";
/// Every licence version starts with this.
const VERSION_PREFIX: &str = "warden-licence/";
/// The keys of the lines after the version, in their required order.
const KEYS: [&str; 7] = [
    "deployment",
    "model",
    "customer",
    "expires",
    "region",
    "accelerators",
    "certificate",
];
/// Longest region name admission accepts.
const MAX_REGION: usize = 253;
/// How much of an unrecognised first line an error quotes.
const QUOTE_CHARS: usize = 64;

/// What a licence grants, parsed from (or built into) a
/// `warden-licence/v2` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Licence {
    pub deployment_id: String,
    /// `sha256:<hex>`, canonical.
    pub model_digest: String,
    pub customer_id: String,
    /// End of the lease.
    pub expires_at: UnixMillis,
    pub region: String,
    /// The accelerator count the deployment was admitted for: a node may use
    /// at most this many.
    pub accelerators: u32,
    /// SHA-256 of the model-evaluation certificate's DER, lower-case hex.
    pub certificate_fingerprint: String,
}

/// Which licensed term a verifier's expectation did not match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Term {
    Deployment,
    Model,
    Region,
    Certificate,
}

impl fmt::Display for Term {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Term::Deployment => "deployment",
            Term::Model => "model",
            Term::Region => "region",
            Term::Certificate => "certificate",
        })
    }
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum LicenceError {
    #[error("the signature does not verify: {0}")]
    Signature(#[from] NoteError),
    #[error("the signed text is not a warden licence (its first line is {0:?})")]
    NotALicence(String),
    #[error(
        "{0:?} licences are not accepted (this warden reads {VERSION}); renew the lease for a \
         current licence"
    )]
    UnsupportedVersion(String),
    #[error("malformed licence, line {line}: {problem}")]
    Malformed { line: usize, problem: String },
    #[error(
        "the licence expired at {} (now {}, clock skew allowed {} ms)",
        rfc3339(*expires_at),
        rfc3339(*now),
        skew_ms
    )]
    Expired {
        expires_at: UnixMillis,
        now: UnixMillis,
        skew_ms: i64,
    },
    #[error("the licence is for {term} {licensed:?}, not {expected:?}")]
    Mismatch {
        term: Term,
        licensed: String,
        expected: String,
    },
    #[error("the licence grants {granted} accelerator(s), not {wanted}")]
    TooManyAccelerators { granted: u32, wanted: u32 },
}

/// What a verifier checks the licence grants; `None` checks nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct Expectations<'a> {
    pub deployment_id: Option<&'a str>,
    /// Canonical `sha256:<hex>`, compared as a string.
    pub model_digest: Option<&'a str>,
    /// The region the node runs in.
    pub region: Option<&'a str>,
    /// How many accelerators the node will use.
    pub accelerators: Option<u32>,
    pub certificate_fingerprint: Option<&'a str>,
}

impl Licence {
    /// The licence for a deployment as it now stands (after admission or a
    /// renewal).
    pub fn for_deployment(d: &Deployment) -> Self {
        Self {
            deployment_id: d.deployment_id.clone(),
            model_digest: d.model_digest.clone(),
            customer_id: d.customer_id.clone(),
            expires_at: d.lease_expires_at,
            region: d.workload.region.clone(),
            accelerators: d.workload.accelerator_count,
            certificate_fingerprint: d.certificate.fingerprint.clone(),
        }
    }

    /// The note text, checked to parse back to `self`: a value a verifier
    /// would refuse (or read differently) is an error here, not a licence.
    pub fn body(&self) -> Result<String, LicenceError> {
        let text = format!(
            "{VERSION}\ndeployment {}\nmodel {}\ncustomer {}\nexpires {}\nregion {}\n\
             accelerators {}\ncertificate {}\n",
            self.deployment_id,
            self.model_digest,
            self.customer_id,
            rfc3339(self.expires_at),
            self.region,
            self.accelerators,
            self.certificate_fingerprint,
        );
        if parse(&text)? != *self {
            return Err(LicenceError::Malformed {
                line: 1,
                problem: "the licence does not read back as built".into(),
            });
        }
        Ok(text)
    }

    /// The signed licence note.
    pub fn sign(&self, signer: &Signer) -> Result<String, LicenceError> {
        Ok(signer.sign(&self.body()?)?)
    }

    /// Checks the licence against what a verifier expects of it.
    pub fn check(&self, expect: &Expectations<'_>) -> Result<(), LicenceError> {
        for (term, licensed, expected) in [
            (Term::Deployment, &self.deployment_id, expect.deployment_id),
            (Term::Model, &self.model_digest, expect.model_digest),
            (Term::Region, &self.region, expect.region),
            (
                Term::Certificate,
                &self.certificate_fingerprint,
                expect.certificate_fingerprint,
            ),
        ] {
            match expected {
                Some(e) if e != licensed => {
                    return Err(LicenceError::Mismatch {
                        term,
                        licensed: licensed.clone(),
                        expected: e.to_string(),
                    })
                }
                _ => {}
            }
        }
        match expect.accelerators {
            Some(wanted) if wanted > self.accelerators => Err(LicenceError::TooManyAccelerators {
                granted: self.accelerators,
                wanted,
            }),
            _ => Ok(()),
        }
    }
}

/// Verifies a signed licence note offline: signed by `verifier`, a
/// `warden-licence/v2` body, not expired at `now` allowing `skew` for the
/// difference between this clock and warden's, and granting what `expect`
/// asks. Returns the licence.
pub fn verify(
    note: &str,
    verifier: &Verifier,
    now: UnixMillis,
    skew: Duration,
    expect: &Expectations<'_>,
) -> Result<Licence, LicenceError> {
    let licence = parse(verifier.open(note)?)?;
    let skew_ms = i64::try_from(skew.as_millis()).unwrap_or(i64::MAX);
    if now >= licence.expires_at.saturating_add(skew_ms) {
        return Err(LicenceError::Expired {
            expires_at: licence.expires_at,
            now,
            skew_ms,
        });
    }
    licence.check(expect)?;
    Ok(licence)
}

/// Parses a licence body (the note's text, without signatures). Pure and
/// total: any input gives a licence or an error.
pub fn parse(text: &str) -> Result<Licence, LicenceError> {
    let first = text.split('\n').next().unwrap_or_default();
    if first != VERSION {
        let quoted: String = first.chars().take(QUOTE_CHARS).collect();
        return Err(if first.starts_with(VERSION_PREFIX) {
            LicenceError::UnsupportedVersion(quoted)
        } else {
            LicenceError::NotALicence(quoted)
        });
    }
    let Some(body) = text.strip_suffix('\n') else {
        return Err(malformed(
            text.split('\n').count(),
            "the text must end in a newline",
        ));
    };
    let mut lines = Lines {
        rest: body.split('\n').skip(1),
        number: 1,
    };
    let deployment_id = lines.value(KEYS[0], identifier)?;
    let model_digest = lines.value(KEYS[1], model_digest)?;
    let customer_id = lines.value(KEYS[2], identifier)?;
    let expires_at = lines.value(KEYS[3], expiry)?;
    let region = lines.value(KEYS[4], region)?;
    let accelerators = lines.value(KEYS[5], count)?;
    let certificate_fingerprint = lines.value(KEYS[6], fingerprint)?;
    if lines.rest.next().is_some() {
        return Err(malformed(
            lines.number + 1,
            "unexpected line after `certificate`, the last line of a licence",
        ));
    }
    Ok(Licence {
        deployment_id,
        model_digest,
        customer_id,
        expires_at,
        region,
        accelerators,
        certificate_fingerprint,
    })
}

/// The lines after the version, read in order.
struct Lines<'a, I: Iterator<Item = &'a str>> {
    rest: I,
    /// Number of the line read last (1-based).
    number: usize,
}

impl<'a, I: Iterator<Item = &'a str>> Lines<'a, I> {
    /// The value of the next line, which must be `key value`.
    fn value<T>(
        &mut self,
        key: &str,
        read: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<T, LicenceError> {
        self.number += 1;
        let line = self
            .rest
            .next()
            .ok_or_else(|| malformed(self.number, format!("missing `{key}` line")))?;
        let value = line
            .strip_prefix(key)
            .and_then(|v| v.strip_prefix(' '))
            .ok_or_else(|| malformed(self.number, format!("expected `{key} <value>`")))?;
        if value.is_empty() || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(malformed(
                self.number,
                format!("`{key}` needs one value without spaces or control characters"),
            ));
        }
        read(value).map_err(|problem| malformed(self.number, format!("`{key}`: {problem}")))
    }
}

fn malformed(line: usize, problem: impl Into<String>) -> LicenceError {
    LicenceError::Malformed {
        line,
        problem: problem.into(),
    }
}

fn identifier(v: &str) -> Result<String, String> {
    let mut violations = Vec::new();
    check_identifier("id", v, &mut violations);
    match violations.first() {
        Some(violation) => Err(violation.description.clone()),
        None => Ok(v.to_string()),
    }
}

fn model_digest(v: &str) -> Result<String, String> {
    ModelDigest::from_str(v)
        .map(|_| v.to_string())
        .map_err(|_| "expected sha256: and 64 lower-case hex digits".into())
}

fn expiry(v: &str) -> Result<UnixMillis, String> {
    let bad = || "expected an RFC 3339 UTC time such as 2026-05-01T12:00:00.25Z".to_string();
    let t = time::OffsetDateTime::parse(v, &Rfc3339).map_err(|_| bad())?;
    let ms = i64::try_from(t.unix_timestamp_nanos() / 1_000_000).map_err(|_| bad())?;
    // One spelling per instant: UTC, `Z`, no sub-millisecond digits, no
    // trailing zeros.
    if rfc3339(ms) != v {
        return Err(bad());
    }
    Ok(ms)
}

fn region(v: &str) -> Result<String, String> {
    if v.len() > MAX_REGION {
        return Err(format!("at most {MAX_REGION} bytes"));
    }
    Ok(v.to_string())
}

fn count(v: &str) -> Result<u32, String> {
    let canonical = v == "0" || (!v.starts_with('0') && v.bytes().all(|b| b.is_ascii_digit()));
    match v.parse::<u32>() {
        Ok(n) if canonical => Ok(n),
        _ => Err("expected a decimal count without sign or leading zeros".into()),
    }
}

fn fingerprint(v: &str) -> Result<String, String> {
    if v.len() == 64 && v.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(v.to_string())
    } else {
        Err("expected 64 lower-case hex digits".into())
    }
}

#[cfg(test)]
mod tests;
