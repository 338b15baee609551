//! The FTP control protocol (RFC 959) over any byte stream, as pure functions.
//!
//! - [`command`]: what the client sends; [`Command`]'s `Display` is the wire line.
//! - [`reply`]: what the server answers; [`parse_reply`] returns `Ok(None)` for "need more input".
//! - [`passive`]: the data port a `227` (PASV) or `229` (EPSV) reply announces.
//!
//! No I/O here: the caller reads from the SSH channel into a buffer and feeds it to
//! [`parse_reply`], which makes every edge case testable on bytes.

pub mod command;
pub mod control;
pub mod passive;
pub mod reply;

pub use command::Command;
pub use reply::{parse_reply, Reply, ReplyError};
