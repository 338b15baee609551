//! The FTP control protocol (RFC 959) over any byte stream, as pure functions.
//!
//! - [`command`]: what the client sends; [`Command`]'s `Display` is the wire line.
//! - [`reply`]: what the server answers; [`parse_reply`] returns `Ok(None)` for "need more input".
//! - [`passive_reply`]: the data port a `227` (PASV) or `229` (EPSV) reply announces.
//! - [`dialect`]: where a server sends a default-port data connection (U-1 or U).
//! - [`features`]: what FEAT lists; [`digest`]: the server's hash of a file
//!   (HASH, XSHA256, ...) for `--verify`; [`facts`]: MLSD lines and MDTM times for `mirror`.
//! - [`shown`]: server text made safe to print (controls, bidi overrides escaped).
//!
//! All of these are pure: every edge case is testable on bytes. The one file
//! with I/O is [`control`], the control connection over any async byte stream,
//! which reads into a buffer and feeds it to [`parse_reply`]; [`login`] logs in on it.

pub mod command;
pub mod control;
pub mod dialect;
pub mod digest;
pub mod facts;
pub mod features;
pub mod login;
pub mod passive_reply;
pub mod reply;
pub mod shown;

pub use command::Command;
pub use dialect::Dialect;
pub use reply::{parse_reply, parse_reply_in, Reply, ReplyError};
