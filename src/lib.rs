//! # warden
//!
//! warden is the control point a cloud compute provider runs beside its
//! schedulers so that AI models are served only under licence, every
//! deployer is known, and any deployment can be stopped.
//!
//! ## Architecture
//!
//! ```text
//!  scheduler ──mTLS──▶ server (tonic + rustls/ring)
//!                        │  auth::AuthLayer: client cert ─▶ Principal ─▶ ROLE_TABLE
//!                        ▼
//!                      api::<service>   convert + validate (field errors)
//!                        │
//!            ┌───────────┼──────────────┐
//!            ▼           ▼              ▼
//!       trust/pki    domain::decision   store (sled or PostgreSQL,
//!   (webpki chain,   (pure policy:      group commit: customers,
//!    CRLs, profile)   every reason)      deployments, decisions)
//! ```
//!
//! ## Layers
//!
//! Lowest first. A module may use its own layer and the layers below it,
//! never one above, and no two top-level modules import each other,
//! directly or round about (`tests/it/layering.rs` checks every `crate::` path
//! in `src/`). Where a module sits follows from what it imports:
//!
//! 1. **leaves**: [`clock`] (time, the injectable [`clock::Clock`], hashing),
//!    [`random`] (salts from the OS, failing closed), [`fsutil`] (the one
//!    crash-safe file replace) and [`proto`] (generated wire types). They
//!    import nothing of ours.
//! 2. **[`domain`]**: pure types and rules; no I/O, no clock (the time is
//!    passed in).
//! 3. **building blocks**: [`digest`], [`ledger`], [`pki`], [`screening`],
//!    [`licence`], [`pii`], [`metrics`] (counters and histograms, which the
//!    store and services update) and [`config`] (the settings file, read
//!    into these modules' types).
//! 4. **[`store`]**: the durable state and the ledger's writer, on sled
//!    (embedded) or PostgreSQL, both through one layout and planner.
//! 5. **services**: [`kyc`], [`trust`], [`attribution`], and [`tls`] (the
//!    transport's reloadable certificates, CRLs and deny-list, which auth
//!    reads): they combine the store, the rules and the building blocks.
//! 6. **auth and api**: [`auth`] (peer certificate to principal, role
//!    table) and [`api`] (one file per gRPC service; the application state
//!    [`api::App`], which carries the clock).
//! 7. **[`server`]**: listeners, TLS accept, the layers, background tasks,
//!    and the metrics endpoint ([`server::metrics`]).
//! 8. **front end**: [`cli`] with [`bench`] (a CLI subcommand in its own
//!    folder; the two count as one for the cycle rule) and `fuzzing`.
//!
//! ## Request lifecycle (`Admission.Admit`)
//!
//! 1. rustls verifies the client certificate against the provider's client
//!    CA during the handshake; a connection without one never gets further.
//! 2. [`auth::AuthLayer`] reads the SPIFFE id, maps it to a role and checks
//!    [`auth::ROLE_TABLE`]; anything not listed is denied.
//! 3. [`api::admission`] destructures and validates the message; bad input is
//!    `INVALID_ARGUMENT` naming each field, and nothing is stored.
//! 4. [`trust::TrustState`] verifies the evaluation certificate chain with
//!    rustls-webpki against the regulator roots and CRLs, then reads the
//!    profile's extensions with x509-parser ([`pki`]).
//! 5. [`domain::decision::decide`] — a pure function — returns every failing
//!    check.
//! 6. The decision (allow or deny) and, on allow, the deployment are written
//!    in one transaction and made durable ([`store`]) before the answer, with a
//!    licence ([`licence`]) signed as a C2SP note ([`ledger::note`]).

pub mod api;
pub mod attribution;
pub mod auth;
pub mod bench;
pub mod cli;
pub mod clock;
pub mod config;
pub mod digest;
pub mod domain;
pub mod fsutil;
/// Entry points of the fuzz targets in `fuzz/`, replayed by `cargo test`.
#[doc(hidden)]
pub mod fuzzing;
pub mod kyc;
pub mod ledger;
pub mod licence;
pub mod metrics;
pub mod pii;
pub mod pki;
pub mod random;
pub mod screening;
pub mod server;
pub mod store;
pub mod tls;
pub mod trust;

/// Generated gRPC types and the descriptor set served by reflection.
pub mod proto {
    #![allow(clippy::all, clippy::pedantic, missing_docs)]
    tonic::include_proto!("warden.v1");
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("warden_descriptor");
}
