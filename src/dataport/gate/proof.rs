//! What the SSH server's socket table proves of a data connection's origin.

use crate::dataport::origin::Seen;

/// Where a forwarded connection came from, as far as it can be proven.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Proof {
    /// The FTP server's: its socket is held by one of the server's uids, or it comes from a
    /// port that only root may bind (how).
    Proven(String),
    /// Another account on the SSH server's host made it (why, naming the uid).
    Foreign(String),
    /// Made on the SSH server's host, but nothing says whose (why): it waits.
    Unproven(String),
    /// From another host, from a port that any user there may bind; or the check failed (why).
    Unprovable(String),
    /// No origin check on this session (no perl on the SSH server): the address and the
    /// port are all there is.
    Unchecked,
}

/// The accounts whose sockets are the FTP server's on the SSH server's host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uids {
    /// Root's, the SSH user's own, and the FTP login's account there, where it has one.
    pub server: Vec<u32>,
    /// The FTP login has an account there: a socket of any other uid is another user's.
    /// Without one (virtual users), the server's sessions run as a uid we cannot name.
    pub strict: bool,
    /// Ports below this one need privilege to bind (`ip_unprivileged_port_start`).
    pub privileged_below: u16,
}

impl Uids {
    /// Root, the SSH user (`own`), and the FTP login's account (`ftp`), if any.
    pub fn new(own: u32, ftp: Option<u32>, privileged_below: u16) -> Uids {
        let mut server = vec![0, own];
        server.extend(ftp);
        server.dedup();
        Uids { server, strict: ftp.is_some(), privileged_below }
    }

    /// What the source port alone proves: a port only root may bind is the server's (an
    /// unprivileged attacker cannot have it, wherever it runs); any other proves nothing.
    pub fn by_port(&self, port: u16) -> Option<Proof> {
        (port != 0 && port < self.privileged_below).then(|| Proof::Proven(format!("port {port} is bound by root only")))
    }

    /// Judge what the table says of a connection from source port `port` (where that port
    /// alone proves nothing: [`Uids::by_port`] first).
    pub fn judge(&self, seen: Seen, port: u16) -> Proof {
        let theirs = || self.server.iter().map(u32::to_string).collect::<Vec<_>>().join(", ");
        match seen {
            Seen::Held { uid } if self.server.contains(&uid) => Proof::Proven(format!("its socket is uid {uid}'s")),
            Seen::Held { uid } if self.strict => {
                Proof::Foreign(format!("it was made by uid {uid}, not by the FTP server (uid {})", theirs()))
            }
            Seen::Held { uid } => Proof::Unproven(format!(
                "it was made by uid {uid}, which may be the FTP server's: its login has no account on the SSH server"
            )),
            Seen::LetGo | Seen::Elsewhere => self.by_port(port).unwrap_or_else(|| match seen {
                Seen::LetGo => Proof::Unproven("its socket was closed before its owner could be read".into()),
                _ => Proof::Unprovable(format!(
                    "it comes from another host, from port {port}, which any user there may bind: nothing tells \
                     the FTP server's data connection from another user's there"
                )),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_servers_uids_prove_another_is_refused_or_waits() {
        let uids = Uids::new(1000, Some(1001), 1024);
        assert!(matches!(uids.judge(Seen::Held { uid: 0 }, 20), Proof::Proven(_)));
        assert!(matches!(uids.judge(Seen::Held { uid: 1001 }, 40000), Proof::Proven(_)));
        assert!(matches!(uids.judge(Seen::Held { uid: 1000 }, 40000), Proof::Proven(_)), "our own account");
        match uids.judge(Seen::Held { uid: 65534 }, 40000) {
            Proof::Foreign(why) => assert!(why.contains("uid 65534"), "{why}"),
            p => panic!("{p:?}"),
        }
        assert!(matches!(uids.judge(Seen::LetGo, 40000), Proof::Unproven(_)));
        assert!(matches!(uids.judge(Seen::LetGo, 20), Proof::Proven(_)), "port 20 needs root");
        assert!(matches!(uids.judge(Seen::Elsewhere, 20), Proof::Proven(_)));
        assert!(matches!(uids.judge(Seen::Elsewhere, 40000), Proof::Unprovable(_)));
        let lowered = Uids::new(1000, Some(1001), 0);
        assert!(matches!(lowered.judge(Seen::Elsewhere, 20), Proof::Unprovable(_)), "any port is anyone's");
    }

    #[test]
    fn a_privileged_port_proves_itself_without_a_row() {
        let uids = Uids::new(1000, Some(1001), 1024);
        assert!(matches!(uids.by_port(20), Some(Proof::Proven(_))));
        assert_eq!(uids.by_port(2020), None);
        assert_eq!(uids.by_port(0), None);
        assert_eq!(Uids::new(1000, None, 0).by_port(20), None, "ip_unprivileged_port_start 0: any port is anyone's");
    }

    #[test]
    fn without_the_logins_account_another_uid_only_waits() {
        let uids = Uids::new(1000, None, 1024);
        assert!(matches!(uids.judge(Seen::Held { uid: 2000 }, 40000), Proof::Unproven(_)));
        assert_eq!(Uids::new(0, None, 1024).server, vec![0], "root's own run");
    }
}
