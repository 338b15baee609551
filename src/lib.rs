//! ftpssh-fullsecure: classic FTP with the control connection *and* every data
//! connection inside one SSH session (the O'Reilly SSH book's "forwarding the
//! data connection" case study, automated).
//!
//! # Layout
//!
//! One module per concept a user can name, in the order a transfer uses them:
//!
//! - [`cli`]: the command line and exit codes (`cli/many.rs`: the bulk commands; `cli/install.rs`:
//!   completions and the man page); [`output`]: what stderr shows.
//! - [`endpoint`]: `[USER@]HOST[:PORT]` and `~/.ssh/config`; [`credentials`]: the FTP login.
//! - [`ciphers`]: which cipher is offered first (AES-GCM where the CPU has AES), `-c`.
//! - [`session`]: the SSH session (russh): host key, auth, exec, direct-tcpip, tcpip-forward.
//! - [`hostkeys`]: known_hosts with OpenSSH's semantics (patterns, hashes, `@revoked`, `@cert-authority`).
//! - [`shell`]: a shell kept open on the SSH server for quick socket-table readings.
//! - [`ftp`]: the FTP control protocol over any byte stream (commands, replies, PASV/EPSV).
//! - [`socktable`]: pure parser of `/proc/net/tcp{,6}` text, with state, uid and timers.
//! - [`dataport`]: the default-port data path of one control connection: P, the dialect
//!   (U-1 or U), the reverse forward checked in the socket table, and why to fall back.
//! - [`relay`]: the SO_REUSEADDR relay that makes every control connection and reports P.
//! - [`discovery`]: the SSH server's socket table: P by diff where no relay runs, listener checks.
//! - [`forward`]: the reverse forward and the gate that refuses stray data connections.
//! - [`pacing`]: waiting out the data tuple's TIME_WAIT, measured on the SSH server, or backing off.
//! - [`link`]: one FTP session inside SSH and its data path (default port or passive).
//! - [`bulk`]: many transfers: workers, rotation or measured waits around TIME_WAIT, retries.
//! - [`transfer`]: `get`, `put`, `ls`: streaming, verification; [`part`]: resumable part files.
//! - [`batch`]: the batch file (`get`/`put` lines) and `mget` name matching.
//! - [`report`]: the record of a bulk run: summary line, exit code, JSON.
//! - [`lock`]: the lock that keeps two runs of one batch from overlapping.
//! - [`error`]: failure classes, exit codes, and which failures a retry can cure.
//! - [`interrupt`]: SIGINT, SIGTERM, SIGHUP: stop, report, exit 130/143/129.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod cli;
pub mod credentials;
pub mod dataport;
pub mod demo;
pub mod endpoint;
pub mod error;
pub mod events;
pub mod ftp;
pub mod interrupt;
pub mod jobs;
pub mod link;
pub mod ssh;
pub mod tcp;
pub mod timewait;
pub mod transfer;
