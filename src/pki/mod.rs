//! Model-evaluation certificate PKI.
//!
//! Before a scheduler serves a model, warden verifies the model's
//! *model-evaluation certificate*: an X.509 certificate issued by an accredited
//! evaluator CA that chains to a regulator root.
//!
//! ```text
//! regulator root (trust anchor, roots/*.pem)
//!   └── evaluator CA   CA:true, pathLen 0, keyCertSign + cRLSign, EKU ∋ model-evaluation
//!         └── model-evaluation certificate   CA:false, digitalSignature, EKU = model-evaluation,
//!                                            12 non-critical UTF8String claim extensions
//! ```
//!
//! * [`profile`] — the certificate profile: the configurable OID base arc, the
//!   claim fields, [`EvaluationClaims`] and their strict textual encodings.
//! * [`issue`] — issuing model-evaluation certificates with rcgen.
//! * [`verify`] — the [`TrustBundle`] (regulator roots + CRLs, with rollback
//!   protection and atomic persistence) and the [`Verifier`]. Path validation,
//!   signatures, validity, EKU and CRL checks are all done by rustls-webpki
//!   (ring algorithms only); the claim extensions are read with x509-parser
//!   only after webpki accepted the chain.
//! * [`dev`] — a development PKI on disk, in-memory builders for test
//!   scenarios, and [`dev::revoke`] for `warden certs revoke`.
//!
//! The profile is documented for humans in `certs/PROFILE.md`.

pub mod cache;
pub mod dev;
mod error;
mod fsutil;
pub mod issue;
pub mod profile;
pub mod verify;

pub use error::{FieldError, PkiError};
pub use issue::{issue_evaluation_certificate, IssuedCert};
pub use profile::{
    parse_oid, EvaluationClaims, EvaluationResult, EvaluationResults, Field, Profile, Regions,
    DEFAULT_BASE_ARC,
};
pub use verify::{
    CertProblem, CertProblemKind, CertificateCheck, CrlInfo, CrlUpdate, InputError, PathFacts,
    TrustBundle, VerifiedCertificate, Verifier,
};

/// Re-exported so callers can build a verification time without naming
/// `rustls-pki-types` themselves.
pub use rustls_pki_types::UnixTime;
