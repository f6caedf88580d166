//! Signed statements that outsiders can check without trusting warden's
//! operator. `note` implements C2SP signed notes, used for licences now and
//! for the ledger's checkpoints.

pub mod note;
