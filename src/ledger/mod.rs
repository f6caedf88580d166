//! The tamper-evident ledger and the signed statements outsiders check
//! without trusting warden's operator.
//!
//! - [`tree`]: RFC 6962 hashing, Go `tlog` stored-hash indices, RFC 9162
//!   inclusion and consistency proofs (pure, no I/O);
//! - [`note`]: C2SP signed notes (Ed25519), for licences and checkpoints;
//! - [`checkpoint`]: C2SP `tlog-checkpoint` bodies;
//! - [`entry`]: the versioned, deterministic entries, one kind per event.
//!
//! The sequencer that appends entries together with the state changes they
//! record lives in [`crate::store`], because it owns the store's single
//! write transaction.

pub mod checkpoint;
pub mod entry;
pub mod note;
pub mod tree;
