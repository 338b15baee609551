//! What went wrong: the exit code, and whether trying again can help.
//!
//! Errors travel as `anyhow::Error` with context naming the endpoint. Each is
//! classified where it is made: a message with [`classified`], a typed error
//! (callers branch on its type) with [`Classify::classified`]. `main` walks
//! the chain and picks the first [`Kind`] it finds; retry decisions
//! ([`is_permanent`]) look at the same kinds, never at message text. This
//! module imports nothing of the crate: everything above it may use it.

use std::fmt;
use std::io::ErrorKind;

/// The documented exit codes (also in the README and `--help`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// 2: the command line was wrong (clap uses 2 as well), or a file it names is missing.
    Usage,
    /// 3: SSH refused us: host key, authentication, or sshd refused a channel or forward.
    Ssh,
    /// 3 as well, but passing: the SSH server could not be reached, or the
    /// SSH connection was lost (killed session, cut link).
    SshLost,
    /// 4: the FTP server refused: login, missing file, permission.
    FtpRefused,
    /// 5: the transfer itself failed, or its result did not verify.
    Transfer,
    /// 1: the local file system refused (permission, disk full, read-only).
    Local,
    /// 128 + the signal's number: a signal stopped the run.
    Interrupted(i32),
}

impl Kind {
    /// The process exit code for this kind of failure.
    pub fn exit_code(self) -> i32 {
        match self {
            Kind::Usage => 2,
            Kind::Ssh | Kind::SshLost => 3,
            Kind::FtpRefused => 4,
            Kind::Transfer => 5,
            Kind::Local => 1,
            Kind::Interrupted(code) => code,
        }
    }

    /// True when the same attempt would fail the same way again.
    pub fn is_permanent(self) -> bool {
        !matches!(self, Kind::SshLost | Kind::Transfer)
    }
}

/// An error with its exit-code class. Displays as the error it holds, and
/// lets [`find`] reach that error's type.
#[derive(Debug)]
pub struct Classified {
    /// The class, for the exit code.
    pub kind: Kind,
    error: Box<dyn std::error::Error + Send + Sync + 'static>,
}

impl fmt::Display for Classified {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)
    }
}

impl std::error::Error for Classified {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.error.source()
    }
}

/// Build a classified `anyhow::Error` from a message.
pub fn classified(kind: Kind, message: impl Into<String>) -> anyhow::Error {
    let message: String = message.into();
    anyhow::Error::new(Classified { kind, error: message.into() })
}

/// A typed error that knows its class: made into an `anyhow::Error` with
/// [`Classify::classified`] where it happens, found again with [`find`].
pub trait Classify: std::error::Error + Send + Sync + Sized + 'static {
    /// Its class.
    fn kind(&self) -> Kind;

    /// It, classified.
    fn classified(self) -> anyhow::Error {
        anyhow::Error::new(Classified { kind: self.kind(), error: Box::new(self) })
    }
}

/// A peer ended a connection that was still needed (EOF). Over SSH the cause
/// may be the SSH connection itself: the caller who knows the session says
/// which ([`crate::ssh::Session::attribute`]).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Closed(pub &'static str);

impl Classify for Closed {
    fn kind(&self) -> Kind {
        Kind::Transfer
    }
}

/// The first error of type `T` in the chain, classified or not.
pub fn find<T: std::error::Error + 'static>(err: &anyhow::Error) -> Option<&T> {
    err.chain().find_map(|cause| match cause.downcast_ref::<Classified>() {
        Some(c) => c.error.downcast_ref::<T>(),
        None => cause.downcast_ref::<T>(),
    })
}

/// The class of the first cause in the chain that has one: a [`Classified`],
/// or a local I/O error whose kind no retry can cure.
pub fn kind(err: &anyhow::Error) -> Option<Kind> {
    for cause in err.chain() {
        if let Some(c) = cause.downcast_ref::<Classified>() {
            return Some(c.kind);
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            if is_local_refusal(io.kind()) {
                return Some(Kind::Local);
            }
        }
    }
    None
}

/// The exit code for an error chain: that of its [`kind`], else 1.
pub fn exit_code(err: &anyhow::Error) -> i32 {
    kind(err).map_or(1, Kind::exit_code)
}

/// Failures a retry cannot cure: usage, the FTP server's refusals, SSH trust
/// and authentication, the local file system (permission, disk full). An
/// unclassified error is taken as passing, as before.
pub fn is_permanent(err: &anyhow::Error) -> bool {
    kind(err).is_some_and(Kind::is_permanent)
}

/// Local file system answers that stay the same on the next attempt.
fn is_local_refusal(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::PermissionDenied
            | ErrorKind::StorageFull
            | ErrorKind::QuotaExceeded
            | ErrorKind::ReadOnlyFilesystem
            | ErrorKind::InvalidFilename
            | ErrorKind::FileTooLarge
            | ErrorKind::NotADirectory
            | ErrorKind::IsADirectory
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    fn io(kind: ErrorKind) -> anyhow::Error {
        Err::<(), _>(std::io::Error::from(kind)).context("could not write /x/.y.part").unwrap_err()
    }

    #[test]
    fn local_refusals_are_permanent_and_exit_1() {
        for k in [ErrorKind::PermissionDenied, ErrorKind::StorageFull, ErrorKind::ReadOnlyFilesystem] {
            let e = io(k);
            assert!(is_permanent(&e), "{k:?}");
            assert_eq!(exit_code(&e), 1);
        }
        // A reset connection is not a local refusal: it may pass.
        assert!(!is_permanent(&io(ErrorKind::ConnectionReset)));
    }

    #[test]
    fn lost_ssh_is_passing_refused_ssh_is_not() {
        let lost = classified(Kind::SshLost, "the SSH connection was lost");
        let refused = classified(Kind::Ssh, "SSH server refused authentication");
        assert_eq!((exit_code(&lost), exit_code(&refused)), (3, 3));
        assert!(!is_permanent(&lost) && is_permanent(&refused));
    }

    #[test]
    fn context_keeps_the_class() {
        let e = classified(Kind::Transfer, "the data connection broke").context("get big.bin");
        assert_eq!(kind(&e), Some(Kind::Transfer));
        assert!(!is_permanent(&e));
        assert!(is_permanent(&classified(Kind::Usage, "x").context("batch")));
    }
}
