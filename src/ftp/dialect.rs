//! The FTP server's dialect of RFC 959's default data port: where it sends
//! a data connection when the client sent neither PORT nor PASV.

use std::fmt;

use crate::ftp::Reply;

/// Where an FTP server sends a default-port data connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Dialect {
    /// ProFTPD: to port U-1, one below the control connection's port.
    ProFtpd,
    /// RFC 959 (GNU inetutils ftpd, wu-ftpd, BSD ftpd): to port U itself. An
    /// unidentified server counts as this one, and U-1 is forwarded as well
    /// in case it is a ProFTPD that hides its name (`ServerIdent off`).
    Rfc959,
}

impl Dialect {
    /// Judged from the greeting: ProFTPD names itself by default.
    pub fn of(greeting: &Reply) -> Dialect {
        if greeting.text().contains("ProFTPD") {
            Dialect::ProFtpd
        } else {
            Dialect::Rfc959
        }
    }

    /// The port the server connects to for a control connection from port `p`.
    pub fn data_port(self, p: u16) -> Option<u16> {
        match self {
            Dialect::ProFtpd => p.checked_sub(1),
            Dialect::Rfc959 => Some(p),
        }
    }

    /// A second port worth forwarding, best effort.
    pub fn spare_port(self, p: u16) -> Option<u16> {
        match self {
            Dialect::ProFtpd => None,
            Dialect::Rfc959 => p.checked_sub(1),
        }
    }
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Dialect::ProFtpd => "ProFTPD, which connects back to port U-1",
            Dialect::Rfc959 => "an RFC 959 server, which connects back to port U",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(line: &str) -> Reply {
        crate::ftp::parse_reply(format!("{line}\r\n").as_bytes()).unwrap().unwrap().0
    }

    #[test]
    fn dialect_from_the_greeting() {
        // Greetings captured from the lab's servers.
        let proftpd = reply("220 ProFTPD Server (ftpssh lab proftpd) [127.0.0.1]");
        let inetutils = reply("220 localhost FTP server (GNU inetutils 2.4) ready.");
        assert_eq!(Dialect::of(&proftpd), Dialect::ProFtpd);
        assert_eq!(Dialect::of(&inetutils), Dialect::Rfc959);
        assert_eq!(Dialect::ProFtpd.data_port(40000), Some(39999));
        assert_eq!(Dialect::Rfc959.data_port(40000), Some(40000));
        assert_eq!(Dialect::Rfc959.spare_port(40000), Some(39999), "a ProFTPD that hides its name");
        assert_eq!(Dialect::ProFtpd.data_port(0), None);
    }
}
