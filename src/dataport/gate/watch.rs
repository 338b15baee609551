//! The relay's proofs: a data connection's origin proven with no round trip of its own.
//!
//! Where a link's data connections all come from one pinned source port, their 4-tuple is known
//! before they come. From the link's first data connection on, as long as its source port is not
//! seen to vary, the link asks its perl relay to watch that tuple ([`super::Gate::watch`]), with the
//! very next transfer's commands: a transfer already on its way before the relay had the tuple
//! could have its 1xx go by unproven, and wait for the helper's answer to be confirmed. The relay,
//! which reads the FTP server's replies anyway, looks the server's socket up as each 1xx reply
//! goes by (the servers connect before they send it), and writes what it found on its stderr
//! (`FTPSSH-PROOF LA LP RA RP UID`, [`crate::dataport::relay`]). That line comes with the 150,
//! usually before the connection's first bytes: the helper's round trip leaves the transfer's
//! critical path.
//!
//! Which connection a proof is for: the relay writes it only once sshd's end of the tuple is
//! accepted, and sshd sends a forwarded channel's open as it accepts it, so every connection
//! made on that tuple up to the proven one has arrived here before its proof. One 4-tuple has
//! one live connection at a time, so the proven socket is the latest connection on the tuple:
//! a proof is stamped with how many had come when it was read, and applies to that one only.
//! One that came before it on the same tuple is another's (an attacker who bound the server's
//! port with SO_REUSEADDR and went first): the helper's lookup, if it reads the tuple after the
//! server's connection replaced that one, would see the server's socket, so a "held by the
//! server" answer for it is taken as unproven instead (docs/threat-model.md). Where no proof
//! comes within a few milliseconds, the helper's lookup decides, as for any connection.

use std::collections::VecDeque;
use std::net::SocketAddr;

/// A connection's two ends: the FTP server's data socket, and the forwarded port.
pub type Ends = (SocketAddr, SocketAddr);

/// Proofs kept per link: a connection still waiting its turn at the checker finds its own.
const PROOFS_KEPT: usize = 8;

/// The relay's line `FTPSSH-PROOF LA LP RA RP UID`: the socket LA:LP -> RA:RP and its owner.
pub fn parse(line: &str) -> Option<(Ends, u32)> {
    let words: Vec<&str> = line.strip_prefix("FTPSSH-PROOF ")?.split(' ').collect();
    let [la, lp, ra, rp, uid] = words[..] else { return None };
    let end =
        |a: &str, p: &str| Some(SocketAddr::new(a.parse::<std::net::IpAddr>().ok()?.to_canonical(), p.parse().ok()?));
    Some(((end(la, lp)?, end(ra, rp)?), uid.parse().ok()?))
}

/// A link's watched tuple, the connections that came on it, and the proofs posted for them.
#[derive(Debug, Default)]
pub(super) struct Watch {
    ends: Option<Ends>,
    /// Connections on the tuple past the quick checks, counted as they came.
    came: u64,
    /// Proofs: which connection (the count when posted), and its socket's owner.
    proofs: VecDeque<(u64, u32)>,
}

impl Watch {
    /// Watch `ends` (anew where it is another tuple).
    pub(super) fn set(&mut self, ends: Ends) {
        if self.ends != Some(ends) {
            *self = Watch { ends: Some(ends), ..Watch::default() };
        }
    }

    /// A connection with `ends` passed the quick checks: its number on the tuple (0: not on it).
    pub(super) fn arrived(&mut self, ends: Option<Ends>) -> u64 {
        if ends.is_none() || ends != self.ends {
            return 0;
        }
        self.came += 1;
        self.came
    }

    /// The relay proved `ends` held by `uid`: the latest connection on it is that socket's.
    pub(super) fn post(&mut self, ends: Ends, uid: u32) -> bool {
        if self.ends != Some(ends) || self.came == 0 {
            return false; // nothing came on it: the channel was refused, or it is not ours
        }
        self.proofs.push_back((self.came, uid));
        if self.proofs.len() > PROOFS_KEPT {
            self.proofs.pop_front();
        }
        true
    }

    /// The owner proven for connection `n` on the tuple.
    pub(super) fn proof_for(&self, n: u64) -> Option<u32> {
        self.proofs.iter().rev().find(|&&(m, _)| m == n && n > 0).map(|&(_, uid)| uid)
    }

    /// A later connection than `n` on the tuple was proven.
    pub(super) fn later_than(&self, n: u64) -> bool {
        n > 0 && self.proofs.iter().any(|&(m, _)| m > n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ends(server: u16, proxy: u16) -> Ends {
        (SocketAddr::from(([127, 0, 0, 1], server)), SocketAddr::from(([127, 0, 0, 1], proxy)))
    }

    #[test]
    fn proof_lines_parse() {
        assert_eq!(parse("FTPSSH-PROOF 127.0.0.1 2020 127.0.0.1 40000 1001"), Some((ends(2020, 40000), 1001)));
        let mapped = parse("FTPSSH-PROOF ::ffff:127.0.0.1 2020 ::ffff:127.0.0.1 40000 0").unwrap();
        assert_eq!(mapped, (ends(2020, 40000), 0), "mapped IPv4 is the same tuple");
        assert!(parse("FTPSSH-PROOF ::1 2020 ::1 40000 7").is_some());
        for bad in [
            "FTPSSH-PROOF 127.0.0.1 2020 127.0.0.1 40000",
            "FTPSSH-PROOF 127.0.0.1 2020 127.0.0.1 40000 1001 extra",
            "FTPSSH-PROOF 127.0.0.1 70000 127.0.0.1 40000 1001",
            "FTPSSH-PROOF host 2020 127.0.0.1 40000 1001",
            "FTPSSH-PROOF 127.0.0.1 2020 127.0.0.1 40000 -1",
            "150 FTPSSH-PROOF 127.0.0.1 2020 127.0.0.1 40000 0",
            "Use of uninitialized value in numeric eq (==) at -e line 40.",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    /// A proof is for the latest connection on the tuple when it was posted, and for no other.
    #[test]
    fn a_proof_is_the_latest_connections_on_its_tuple() {
        let mut watch = Watch::default();
        assert_eq!(watch.arrived(Some(ends(2020, 40000))), 0, "nothing watched yet");
        watch.set(ends(2020, 40000));
        assert!(!watch.post(ends(2020, 40000), 1001), "nothing came on it yet");
        assert_eq!(watch.arrived(Some(ends(2020, 40000))), 1);
        assert_eq!(watch.arrived(Some(ends(2021, 40000))), 0, "another tuple");
        assert!(!watch.post(ends(2020, 40001), 1001), "another tuple's proof");
        assert!(watch.post(ends(2020, 40000), 1001));
        assert_eq!((watch.proof_for(1), watch.proof_for(2), watch.later_than(1)), (Some(1001), None, false));
        assert_eq!(watch.arrived(Some(ends(2020, 40000))), 2);
        assert_eq!(watch.arrived(Some(ends(2020, 40000))), 3);
        assert!(watch.post(ends(2020, 40000), 1001));
        assert_eq!((watch.proof_for(2), watch.proof_for(3)), (None, Some(1001)), "the second came before the third");
        assert!(watch.later_than(2));
        watch.set(ends(2020, 40000));
        assert_eq!(watch.proof_for(3), Some(1001), "the same tuple again changes nothing");
        watch.set(ends(2020, 40002));
        assert_eq!(
            (watch.proof_for(3), watch.arrived(Some(ends(2020, 40002)))),
            (None, 1),
            "another tuple starts afresh"
        );
    }
}
