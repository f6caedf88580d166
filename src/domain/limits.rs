//! Every size limit on what callers send and on what one answer carries,
//! in one place. Without them one caller can store a record that no list
//! call can ever return again (an answer over the 4 MiB message limit), or
//! provoke an error too large for the client to read. The proto comments
//! state the same numbers; a test keeps the answer budget below the message
//! limit.

use super::UnixMillis;

/// `details.aliases` of a customer.
pub const MAX_ALIASES: usize = 32;
/// `details.addresses` of a customer.
pub const MAX_ADDRESSES: usize = 20;
/// `lines` of one address.
pub const MAX_ADDRESS_LINES: usize = 8;
/// `details.beneficial_owners` of a customer.
pub const MAX_BENEFICIAL_OWNERS: usize = 100;
/// `details.key_personnel` of a customer.
pub const MAX_KEY_PERSONNEL: usize = 100;
/// Protobuf-encoded size of one identity record: legal name, country and
/// details together. Each field's own limit allows more than this in sum;
/// real records are a few KiB.
pub const MAX_RECORD_BYTES: usize = 64 * 1024;

/// `workload.endpoints` at admission, and `endpoints` at renewal.
pub const MAX_ENDPOINTS: usize = 64;

/// Field violations one error answer lists; one more says how many were
/// left out. An error travels in HTTP/2 trailers, which common clients
/// refuse beyond 16 KiB (as a protocol error, hiding the answer), so the
/// list is bounded in bytes too.
pub const MAX_FIELD_VIOLATIONS: usize = 50;
/// Bytes of field names and descriptions one error answer lists at most.
pub const MAX_VIOLATION_BYTES: usize = 6 * 1024;
/// Bytes one field violation's description carries at most.
pub const MAX_VIOLATION_DESCRIPTION_BYTES: usize = 256;
/// Bytes of the error message (a summary of the first violations).
pub const MAX_ERROR_MESSAGE_BYTES: usize = 1024;

/// Encoded bytes of the items one list answer carries. A page stops before
/// the item that would cross it (it always carries at least one item) and
/// hands out a page token for the rest: well under the 4 MiB message limit,
/// with room for one item at its largest.
pub const PAGE_BYTES: usize = 1024 * 1024;

/// The earliest time a request may carry: 1970-01-01T00:00:00Z.
pub const MIN_TIME: UnixMillis = 0;
/// The latest time a request may carry: 9999-12-31T23:59:59.999Z.
pub const MAX_TIME: UnixMillis = 253_402_300_799_999;
