//! warden's integration tests, one module per duty, linked into one test
//! binary: every separate file under `tests/` is its own binary that links
//! the whole crate and its dependencies again, and that linking was most
//! of the suite's time on a clean build. The tests run as threads of one
//! process, so none may change process-wide state (environment, current
//! directory, signal dispositions) or measure the process as a whole.
//!
//! Run one duty with `cargo test --test it crash::`.

mod common;

mod admission;
mod attribution;
mod backup;
mod bad_input;
mod cli;
mod crash;
mod digest_vectors;
mod fuzz_corpus;
mod key_files;
mod kyc;
mod layering;
mod ledger;
mod licence;
mod limits;
mod metrics;
mod orders;
mod postgres;
mod rbac;
mod smoke;
mod store_conformance;
mod store_damage;
mod transport;
mod verification_cache;
