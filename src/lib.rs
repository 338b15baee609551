//! ftpssh-fullsecure: classic FTP with the control connection *and* every data
//! connection inside one SSH session (the O'Reilly SSH book's "forwarding the
//! data connection" case study, automated).
//!
//! # Layout
//!
//! One module per concept a user can name:
//!
//! - [`socktable`]: pure parser of `/proc/net/tcp{,6}` text, with state, uid and timers.
//! - [`ftp`]: the FTP control protocol over any byte stream (commands, replies, PASV/EPSV).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod ftp;
pub mod socktable;
