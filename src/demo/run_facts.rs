//! What the run has shown so far, folded from its events: the real ports the
//! narration names and the socket tables are labelled with (C, P, U-1 or U, S).

use std::net::SocketAddr;

use crate::events::Event;
use crate::ftp::Dialect;

/// A data connection's 4-tuple as the SSH server's host sees it: the FTP
/// server's data source (port S) and the forwarded port it connects to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tuple {
    /// The FTP server's end: its address and data source port S.
    pub from: SocketAddr,
    /// The reverse forward's end (port U-1 or U).
    pub to: SocketAddr,
}

impl std::fmt::Display for Tuple {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} -> {}", self.from, self.to)
    }
}

/// The facts of the run so far. Each control connection replaces the
/// previous one's P, dialect and forward (a rotation makes a new one).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Facts {
    /// Our end of the SSH connection (port C) and the SSH server's end.
    pub ssh: Option<(SocketAddr, SocketAddr)>,
    /// The control connection's source as the FTP server sees it (port P), and the FTP server.
    pub control: Option<(SocketAddr, SocketAddr)>,
    /// The FTP server's dialect and the port it connects back to.
    pub dialect: Option<(Dialect, u16)>,
    /// Where sshd listens for the data connections.
    pub listen: Option<SocketAddr>,
    /// Every data 4-tuple seen, in order of first use, with its latest incarnation number.
    pub tuples: Vec<(Tuple, u32)>,
}

impl Facts {
    /// Take one event into account.
    pub fn see(&mut self, event: &Event) {
        match event {
            Event::SshConnected { client, server } => self.ssh = Some((canon(*client), canon(*server))),
            Event::ControlOpened { proxy, ftp, .. } => {
                self.control = Some((canon(*proxy), canon(*ftp)));
                self.dialect = None;
                self.listen = None;
            }
            Event::DialectChosen { dialect, data_port } => self.dialect = Some((*dialect, *data_port)),
            Event::ForwardListening { listen, .. } => self.listen = Some(canon(*listen)),
            Event::DataAccepted { from, to, incarnation } => {
                let tuple = Tuple { from: canon(*from), to: canon(*to) };
                match self.tuples.iter_mut().find(|(t, _)| *t == tuple) {
                    Some(seen) => seen.1 = *incarnation,
                    None => self.tuples.push((tuple, *incarnation)),
                }
            }
            _ => {}
        }
    }

    /// The client port C of the SSH connection.
    pub fn c(&self) -> Option<u16> {
        self.ssh.map(|(c, _)| c.port())
    }

    /// The proxy port P of the current control connection (None while unknown or 0).
    pub fn p(&self) -> Option<u16> {
        self.control.map(|(p, _)| p.port()).filter(|&p| p != 0)
    }

    /// The name of the port the server connects back to: `U-1` (ProFTPD) or `U`.
    pub fn data_port_name(&self) -> &'static str {
        match self.dialect {
            Some((Dialect::Rfc959, _)) => "U",
            _ => "U-1",
        }
    }

    /// The latest data 4-tuple.
    pub fn last_tuple(&self) -> Option<Tuple> {
        self.tuples.last().map(|(t, _)| *t)
    }
}

/// IPv4-mapped IPv6 addresses as IPv4, as the socket-table parser gives them.
pub fn canon(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip().to_canonical(), a.port())
}

/// `1st`, `2nd`, `3rd`, `4th`, ..., `11th`, `21st`.
pub fn ordinal(n: u32) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn folds_the_run() {
        let mut f = Facts::default();
        f.see(&Event::SshConnected { client: a("10.250.0.1:51000"), server: a("10.250.0.2:22") });
        f.see(&Event::ControlOpened {
            via: crate::events::Via::Relay("perl"),
            proxy: a("[::ffff:127.0.0.1]:40000"),
            ftp: a("127.0.0.1:2021"),
        });
        f.see(&Event::DialectChosen { dialect: Dialect::ProFtpd, data_port: 39999 });
        let (from, to) = (a("127.0.0.1:2020"), a("127.0.0.1:39999"));
        f.see(&Event::DataAccepted { from, to, incarnation: 1 });
        f.see(&Event::DataAccepted { from, to, incarnation: 2 });
        assert_eq!((f.c(), f.p(), f.data_port_name()), (Some(51000), Some(40000), "U-1"));
        assert_eq!(f.tuples, vec![(Tuple { from, to }, 2)]);
        // A new control connection forgets the old one's forward.
        f.see(&Event::ForwardListening { listen: to, spare: None });
        f.see(&Event::ControlOpened { via: crate::events::Via::Direct, proxy: a("0.0.0.0:0"), ftp: a("127.0.0.1:21") });
        assert_eq!((f.p(), f.listen), (None, None));
    }

    #[test]
    fn ordinals() {
        let got: Vec<String> = [1, 2, 3, 4, 11, 12, 13, 21, 22, 101].into_iter().map(ordinal).collect();
        assert_eq!(got, ["1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "101st"]);
    }
}
