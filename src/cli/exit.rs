//! The exit status of every subcommand, decided in one place: the
//! statuses a command returns itself (ALLOW, DENY, a proven inconsistency)
//! and the one a server's error answer ends a command with, by gRPC code.
//! `main` calls [`for_error`] for every command that fails, so a
//! subcommand never picks an exit status for a server error on its own.
//!
//! Documented in the README ("Commands"): 0 success or ALLOW, 1 error, 2
//! usage error, 3 DENY or a licence refused, 4 the ledger proven
//! inconsistent.

use std::fmt;

/// Success, ALLOW, a report or licence that verifies, a server SERVING.
pub const SUCCESS: i32 = 0;
/// An error: the message names the field or says what to do. Also a
/// server that is not serving, and a saved report that does not verify.
pub const ERROR: i32 = 1;
/// A usage error (clap's own status, also for one found after parsing).
pub const USAGE: i32 = 2;
/// The server answered DENY, or a licence was refused.
pub const DENIED: i32 = 3;
/// The ledger is proven inconsistent (the evidence is printed).
pub const INCONSISTENT: i32 = 4;

/// The exit status of a command the server answered with `code`. Every
/// code is listed, so a new one fails the build until it is decided.
/// Every error is [`ERROR`] today: the message says what to do, retry
/// included.
pub const fn for_code(code: tonic::Code) -> i32 {
    use tonic::Code;
    match code {
        Code::Ok => SUCCESS,
        Code::Cancelled
        | Code::Unknown
        | Code::InvalidArgument
        | Code::DeadlineExceeded
        | Code::NotFound
        | Code::AlreadyExists
        | Code::PermissionDenied
        | Code::ResourceExhausted
        | Code::FailedPrecondition
        | Code::Aborted
        | Code::OutOfRange
        | Code::Unimplemented
        | Code::Internal
        | Code::Unavailable
        | Code::DataLoss
        | Code::Unauthenticated => ERROR,
    }
}

/// The exit status of a command that ended with `e`: the table's entry
/// for the server's answer if `e` carries one (anywhere in its chain),
/// else [`ERROR`]. Never 0: a failed command never reports success.
pub fn for_error(e: &anyhow::Error) -> i32 {
    let code = e.chain().find_map(|cause| {
        cause
            .downcast_ref::<ServerRefused>()
            .map(|r| r.code)
            .or_else(|| cause.downcast_ref::<tonic::Status>().map(|s| s.code()))
    });
    match code.map(for_code) {
        Some(SUCCESS) | None => ERROR,
        Some(status) => status,
    }
}

/// A server's error answer as a command reports it: the message written
/// for the operator, with the gRPC code kept for [`for_error`].
#[derive(Debug)]
pub struct ServerRefused {
    pub code: tonic::Code,
    pub message: String,
}

impl fmt::Display for ServerRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ServerRefused {}

#[cfg(test)]
mod tests {
    use anyhow::Context as _;
    use tonic::Code;

    use super::*;

    #[test]
    fn every_grpc_code_has_its_exit_status() {
        let table = [
            (Code::Ok, 0),
            (Code::Cancelled, 1),
            (Code::Unknown, 1),
            (Code::InvalidArgument, 1),
            (Code::DeadlineExceeded, 1),
            (Code::NotFound, 1),
            (Code::AlreadyExists, 1),
            (Code::PermissionDenied, 1),
            (Code::ResourceExhausted, 1),
            (Code::FailedPrecondition, 1),
            (Code::Aborted, 1),
            (Code::OutOfRange, 1),
            (Code::Unimplemented, 1),
            (Code::Internal, 1),
            (Code::Unavailable, 1),
            (Code::DataLoss, 1),
            (Code::Unauthenticated, 1),
        ];
        for (code, status) in table {
            assert_eq!(for_code(code), status, "{code:?}");
        }
        // The documented statuses a command returns itself.
        assert_eq!(
            (SUCCESS, ERROR, USAGE, DENIED, INCONSISTENT),
            (0, 1, 2, 3, 4)
        );
    }

    #[test]
    fn a_server_error_is_found_under_context_and_a_failure_is_never_zero() {
        let refused = anyhow::Error::new(ServerRefused {
            code: Code::Unavailable,
            message: "Unavailable: retry later".into(),
        });
        assert_eq!(for_error(&refused), 1);
        let wrapped: anyhow::Result<()> =
            Err(tonic::Status::permission_denied("no")).context("the backup stream broke off");
        assert_eq!(for_error(&wrapped.unwrap_err()), 1);
        assert_eq!(for_error(&anyhow::anyhow!("cannot read FILE")), 1);
        let ok_code = anyhow::Error::new(ServerRefused {
            code: Code::Ok,
            message: "odd".into(),
        });
        assert_eq!(for_error(&ok_code), ERROR);
    }
}
