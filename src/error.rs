//! What went wrong, as far as the exit code is concerned.
//!
//! Errors travel as `anyhow::Error` with context naming the endpoint; the few
//! places that decide the exit code attach a [`Kind`] by wrapping their error
//! in [`Classified`]. `main` walks the chain and picks the first one it finds.

use std::fmt;

/// The documented exit codes (also in the README and `--help`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// 2: the command line was wrong (clap uses 2 as well).
    Usage,
    /// 3: SSH failed: connect, host key, authentication, or sshd refused a channel or forward.
    Ssh,
    /// 4: the FTP server refused: login, missing file, permission.
    FtpRefused,
    /// 5: the transfer itself failed, or its result did not verify.
    Transfer,
}

impl Kind {
    /// The process exit code for this kind of failure.
    pub fn exit_code(self) -> i32 {
        match self {
            Kind::Usage => 2,
            Kind::Ssh => 3,
            Kind::FtpRefused => 4,
            Kind::Transfer => 5,
        }
    }
}

/// An error with its exit-code class. Displays as its message only.
#[derive(Debug)]
pub struct Classified {
    /// The class, for the exit code.
    pub kind: Kind,
    /// What happened, in one line.
    pub message: String,
}

impl fmt::Display for Classified {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Classified {}

/// Build a classified `anyhow::Error`.
pub fn classified(kind: Kind, message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Classified { kind, message: message.into() })
}

/// The exit code for an error chain: the first [`Classified`] or typed FTP
/// refusal found in it, else 1.
pub fn exit_code(err: &anyhow::Error) -> i32 {
    for cause in err.chain() {
        if let Some(c) = cause.downcast_ref::<Classified>() {
            return c.kind.exit_code();
        }
        if let Some(r) = cause.downcast_ref::<crate::ftp::control::FtpError>() {
            return r.kind().exit_code();
        }
        if cause.downcast_ref::<crate::link::Collision>().is_some() {
            return Kind::Transfer.exit_code();
        }
    }
    1
}
