//! Client commands (RFC 959 §4.1, RFC 2428 for EPSV, RFC 3659 for SIZE and REST STREAM).
//!
//! There is deliberately no `PORT` or `EPRT`: they make the server open the data connection to
//! an address of our choosing, i.e. outside the SSH session, which is what this tool prevents.
//! Every data connection is passive, to a port forwarded through SSH.

use std::fmt;

/// The representation type sent with `TYPE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferType {
    /// `TYPE I`: bytes as they are (the default).
    Binary,
    /// `TYPE A`: text, lines ending in CRLF on the wire (`--ascii`).
    Ascii,
}

/// One command. `Display` writes the wire line without CRLF; `Debug` hides the password.
#[derive(Clone, PartialEq, Eq)]
pub enum Command {
    /// `USER name`
    User(String),
    /// `PASS secret`: shown as `PASS ****` by [`Command::redacted`] and `Debug`.
    Pass(String),
    /// `TYPE I` or `TYPE A`
    Type(TransferType),
    /// `SIZE path`
    Size(String),
    /// `RETR path`
    Retr(String),
    /// `STOR path`
    Stor(String),
    /// `APPE path`: append to the file (an upload's continuation; an outside client's,
    /// through [`crate::tunnel`]).
    Appe(String),
    /// `LIST [path]`
    List(Option<String>),
    /// `NLST [path]`
    Nlst(Option<String>),
    /// `REST offset`: restart the next transfer at this byte.
    Rest(u64),
    /// `PASV`
    Pasv,
    /// `EPSV`
    Epsv,
    /// `QUIT`
    Quit,
    /// `ABOR`: abort the transfer in progress (RFC 959 4.1.3).
    Abor,
    /// `FEAT` (RFC 2389).
    Feat,
    /// `OPTS args`, e.g. `OPTS HASH SHA-256`.
    Opts(String),
    /// `HASH path` (draft-bryan-ftpext-hash).
    Hash(String),
    /// `XSHA256 path`, `XSHA1 path`, `XMD5 path`: the verb, then the path.
    XHash(&'static str, String),
    /// `MDTM path` (RFC 3659).
    Mdtm(String),
    /// `MLSD [path]` (RFC 3659).
    Mlsd(Option<String>),
    /// `DELE path`.
    Dele(String),
    /// `MKD path`
    Mkd(String),
    /// An outside client's command line, passed on as it came (verb and argument):
    /// never PORT, EPRT, PASV, EPSV, USER or PASS, which the tunnel answers itself.
    Verbatim(String),
}

/// A command that must not be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// CR or LF would end the line early and smuggle in a second command (e.g. from a hostile
    /// file name); NUL is refused by servers. The argument itself is not shown: it may be a password.
    #[error("argument of {verb} contains CR, LF or NUL")]
    ForbiddenChar {
        /// The command verb, e.g. `RETR`.
        verb: &'static str,
    },
}

impl Command {
    fn verb(&self) -> &'static str {
        use Command::*;
        match self {
            User(_) => "USER",
            Pass(_) => "PASS",
            Type(_) => "TYPE",
            Size(_) => "SIZE",
            Retr(_) => "RETR",
            Stor(_) => "STOR",
            Appe(_) => "APPE",
            List(_) => "LIST",
            Nlst(_) => "NLST",
            Rest(_) => "REST",
            Pasv => "PASV",
            Epsv => "EPSV",
            Quit => "QUIT",
            Abor => "ABOR",
            Feat => "FEAT",
            Opts(_) => "OPTS",
            Hash(_) => "HASH",
            XHash(verb, _) => verb,
            Mdtm(_) => "MDTM",
            Mlsd(_) => "MLSD",
            Dele(_) => "DELE",
            Mkd(_) => "MKD",
            Verbatim(_) => "(client's command)",
        }
    }

    fn arg(&self) -> Option<String> {
        use Command::*;
        match self {
            User(a) | Pass(a) | Size(a) | Retr(a) | Stor(a) | Appe(a) => Some(a.clone()),
            Opts(a) | Hash(a) | XHash(_, a) | Mdtm(a) | Dele(a) | Mkd(a) => Some(a.clone()),
            Verbatim(line) => Some(line.clone()),
            List(a) | Nlst(a) | Mlsd(a) => a.clone(),
            Type(TransferType::Binary) => Some("I".into()),
            Type(TransferType::Ascii) => Some("A".into()),
            Rest(n) => Some(n.to_string()),
            Pasv | Epsv | Quit | Abor | Feat => None,
        }
    }

    /// The wire line with CRLF, or an error if an argument contains CR, LF or NUL.
    pub fn to_wire(&self) -> Result<Vec<u8>, CommandError> {
        if self.arg().is_some_and(|a| a.contains(['\r', '\n', '\0'])) {
            return Err(CommandError::ForbiddenChar { verb: self.verb() });
        }
        Ok(format!("{self}\r\n").into_bytes())
    }

    /// The line for traces: `PASS ****` for [`Command::Pass`], the `Display` form otherwise.
    pub fn redacted(&self) -> String {
        match self {
            Command::Pass(_) => "PASS ****".into(),
            // ACCT (RFC 959) carries a secret as PASS does; the tunnel never passes PASS on.
            Command::Verbatim(line) if line.get(..4).is_some_and(|v| v.eq_ignore_ascii_case("ACCT")) => {
                "ACCT ****".into()
            }
            other => other.to_string(),
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.arg() {
            Some(line) if matches!(self, Command::Verbatim(_)) => f.write_str(&line),
            Some(arg) => write!(f, "{} {arg}", self.verb()),
            None => f.write_str(self.verb()),
        }
    }
}

/// Redacted, so a `{:?}` in a log line cannot leak the password.
impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Command({:?})", self.redacted())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_the_wire_line() {
        assert_eq!(Command::Retr("name with spaces.bin".into()).to_string(), "RETR name with spaces.bin");
        assert_eq!(Command::Type(TransferType::Binary).to_string(), "TYPE I");
        assert_eq!(Command::Type(TransferType::Ascii).to_string(), "TYPE A");
        assert_eq!(Command::Appe("x".into()).to_string(), "APPE x");
        assert_eq!(Command::Rest(10876).to_string(), "REST 10876");
        assert_eq!(Command::List(None).to_string(), "LIST");
        assert_eq!(Command::Nlst(Some("/pub".into())).to_string(), "NLST /pub");
        assert_eq!(Command::Epsv.to_string(), "EPSV");
        assert_eq!(Command::Size("dir/x".into()).to_string(), "SIZE dir/x");
    }

    #[test]
    fn to_wire_appends_crlf() {
        assert_eq!(Command::User("ftp".into()).to_wire().unwrap(), b"USER ftp\r\n");
        assert_eq!(Command::Quit.to_wire().unwrap(), b"QUIT\r\n");
        assert_eq!(Command::Stor("ünï.bin".into()).to_wire().unwrap(), "STOR ünï.bin\r\n".as_bytes());
    }

    #[test]
    fn to_wire_refuses_injection() {
        for bad in ["x\r\nDELE y", "x\nDELE y", "x\r", "a\0b"] {
            let err = Command::Retr(bad.into()).to_wire().unwrap_err();
            assert_eq!(err, CommandError::ForbiddenChar { verb: "RETR" });
        }
        assert!(Command::List(Some("a\nb".into())).to_wire().is_err());
        let err = Command::Pass("se\ncret".into()).to_wire().unwrap_err();
        assert!(!err.to_string().contains("cret"));
    }

    #[test]
    fn secrets_stay_out_of_traces() {
        let pass = Command::Pass("hunter2".into());
        assert_eq!(pass.redacted(), "PASS ****");
        assert!(!format!("{pass:?}").contains("hunter2"));
        assert_eq!(pass.to_string(), "PASS hunter2"); // the wire still carries it
        assert_eq!(Command::User("alice".into()).redacted(), "USER alice");
        assert_eq!(Command::Verbatim("acct hunter2".into()).redacted(), "ACCT ****");
    }

    #[test]
    fn verbatim_lines_go_as_they_came() {
        assert_eq!(Command::Verbatim("SITE CHMOD 644 x".into()).to_wire().unwrap(), b"SITE CHMOD 644 x\r\n");
        assert!(Command::Verbatim("NOOP\r\nDELE x".into()).to_wire().is_err());
        assert_eq!(Command::Appe("log".into()).to_string(), "APPE log");
    }
}
