//! Pure types and rules. Nothing in here performs I/O, reads a clock or
//! touches the network: callers pass the current time in, so every rule can
//! be tested with plain unit and property tests.

pub mod attribution;
pub mod commitment;
pub mod customer;
pub mod decision;
pub mod deployment;
pub mod idempotency;
pub mod limits;
pub mod order;
pub mod reason;

pub use crate::clock::UnixMillis;
