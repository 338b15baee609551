//! The gate in front of the reverse forward.
//!
//! sshd listens on the port the FTP server will connect to and hands each
//! connection to us as a forwarded-tcpip channel, telling us who made it.
//! Anyone on the SSH server host can connect to that port, so the [`Gate`]
//! admits exactly one connection per transfer, only while a transfer is
//! pending and only from the FTP server's address; any other is refused and
//! reported as a possible data port theft.
//!
//! Each control connection of the session (a link) has its own forwarded
//! ports and its own account here, so that one link giving up its transfers
//! never withdraws another's. And each account counts the connections that
//! arrived against those the FTP server said it made (1xx, then a final reply
//! other than 425): a transfer given up after the server connected for it (a
//! command sent ahead, behind one that failed) may have its connection still
//! on the way, behind the replies we read meanwhile. That one is refused when
//! it comes, not handed to the next transfer, whose file it is not.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;

use russh::client::Msg;
use russh::Channel;

use crate::events::{Event, Events};

/// A data connection that came back through the reverse forward.
pub struct DataChannel {
    /// The channel carrying its bytes.
    pub channel: Channel<Msg>,
    /// Who connected (as sshd saw it): address and port.
    pub originator: (String, u32),
    /// Which forwarded address and port it connected to.
    pub connected: (String, u32),
    /// How many connections its 4-tuple has carried in this process, this one included.
    pub incarnation: u32,
}

impl DataChannel {
    /// Its 4-tuple: who connected, and where to.
    pub fn ends(&self) -> Option<(SocketAddr, SocketAddr)> {
        let end = |(a, p): &(String, u32)| Some(SocketAddr::new(a.parse::<IpAddr>().ok()?.to_canonical(), *p as u16));
        Some((end(&self.originator)?, end(&self.connected)?))
    }
}

/// Connections admitted per 4-tuple, across every session of the process: a
/// 4-tuple's incarnations, as TIME_WAIT sees them.
static INCARNATIONS: Mutex<Option<HashMap<(SocketAddr, SocketAddr), u32>>> = Mutex::new(None);

fn next_incarnation(ends: Option<(SocketAddr, SocketAddr)>) -> u32 {
    let Some(ends) = ends else { return 1 };
    let mut all = INCARNATIONS.lock().unwrap();
    let n = all.get_or_insert_with(HashMap::new).entry(ends).or_insert(0);
    *n += 1;
    *n
}

/// One link's account: its forwarded ports, the FTP server, and its connections.
#[derive(Debug)]
struct Account {
    ports: Vec<u16>,
    ftp: IpAddr,
    /// Connections to admit: one per transfer sent and not yet connected.
    expected: u32,
    /// Connections of transfers given up that are still to come: refused.
    late: u64,
    /// One more connection may come late (a transfer given up before the
    /// server replied): refused quietly, as our own.
    maybe_late: bool,
    /// Connections from the FTP server that reached this account, admitted or not.
    arrived: u64,
    /// The server's data source port, once seen fixed (20, or ProFTPD's L-1): another
    /// process on its host may connect from its address, but not from that port (20 needs root).
    source: Option<u16>,
    /// Its link has closed; a new link that gets the same ports starts a new account.
    retired: bool,
}

impl Account {
    fn new(ports: &[u16], ftp: IpAddr) -> Account {
        let (expected, late, maybe_late, arrived, source, retired) = (0, 0, false, 0, None, false);
        Account { ports: ports.to_vec(), ftp, expected, late, maybe_late, arrived, source, retired }
    }
}

/// Admits the one expected data connection of each pending transfer.
#[derive(Debug, Default)]
pub struct Gate {
    events: Events,
    accounts: Mutex<Vec<Account>>,
}

impl Gate {
    /// A gate that tells `events` what it refuses.
    pub fn new(events: Events) -> Gate {
        Gate { events, ..Gate::default() }
    }

    /// A transfer is pending on the link whose forwarded ports are `ports`:
    /// admit one more connection to them from `ftp_server`. The first makes
    /// the link's account (anew where a closed link's had the same ports).
    pub fn open(&self, ports: &[u16], ftp_server: IpAddr) {
        let mut accounts = self.accounts.lock().unwrap();
        accounts.retain(|a| !(a.retired && a.ports == ports));
        let a = match accounts.iter().position(|a| a.ports == ports) {
            Some(i) => &mut accounts[i],
            None => {
                accounts.push(Account::new(ports, ftp_server));
                accounts.last_mut().expect("pushed")
            }
        };
        if a.ftp != ftp_server {
            (a.ftp, a.expected) = (ftp_server, 0);
        }
        a.expected += 1;
    }

    /// No transfer is pending on that link any more.
    pub fn close(&self, ports: &[u16]) {
        self.with(ports, |a| a.maybe_late |= std::mem::take(&mut a.expected) > 0);
    }

    /// The link's control connection is back in step after transfers were
    /// given up, and the server says it made `made` data connections in all:
    /// those of them that have not arrived are refused when they do.
    pub fn settle(&self, ports: &[u16], made: u64) {
        self.with(ports, |a| a.late = made.saturating_sub(a.arrived));
    }

    /// The link has closed (its forwards cancelled): what still comes is refused as for
    /// [`Gate::close`], and a link that gets the same ports later starts afresh.
    pub fn retire(&self, ports: &[u16]) {
        self.with(ports, |a| {
            a.maybe_late |= std::mem::take(&mut a.expected) > 0;
            a.retired = true;
        });
    }

    /// The link's data connections come from one port, `source` (None: from any).
    pub fn pin_source(&self, ports: &[u16], source: Option<u16>) {
        self.with(ports, |a| a.source = source);
    }

    /// Run `f` on the account of `ports`, if it has one.
    fn with(&self, ports: &[u16], f: impl FnOnce(&mut Account)) {
        if let Some(a) = self.accounts.lock().unwrap().iter_mut().find(|a| a.ports == ports) {
            f(a);
        }
    }

    /// Decide on one forwarded connection (called from the SSH event loop).
    /// An admitted one gets its incarnation number.
    pub(crate) fn admit(&self, data: &mut DataChannel) -> bool {
        let (addr, port) = &data.originator;
        let (to_addr, to_port) = &data.connected;
        let admitted = self.admit_from(addr, *port, *to_port as u16, &format!("{to_addr}:{to_port}"));
        if admitted {
            data.incarnation = next_incarnation(data.ends());
        }
        admitted
    }

    /// The rule itself: `addr:port` connected to the forwarded `to` (port `to_port`).
    fn admit_from(&self, addr: &str, port: u32, to_port: u16, to: &str) -> bool {
        let from = addr.parse::<IpAddr>().ok().map(|a| a.to_canonical());
        let refused = |why: String, late: bool| {
            self.events.emit(Event::StrayRefused { from: format!("{addr}:{port}"), to: to.into(), why, late });
            false
        };
        let mut accounts = self.accounts.lock().unwrap();
        // A live link's account before a closed one's that had the same port.
        let Some(a) = accounts.iter_mut().filter(|a| a.ports.contains(&to_port)).min_by_key(|a| a.retired) else {
            return refused("no data connection is expected now".into(), false);
        };
        if from != Some(a.ftp) {
            return refused(format!("it does not come from the FTP server {}", a.ftp), false);
        }
        if let Some(source) = a.source.filter(|&p| u32::from(p) != port) {
            return refused(format!("it does not come from the FTP server's data port {source}"), false);
        }
        a.arrived += 1;
        if a.late > 0 {
            a.late -= 1;
            return refused("it belongs to a transfer we gave up on".into(), true);
        }
        if a.expected > 0 {
            a.expected -= 1; // one data connection per transfer
            return true;
        }
        if std::mem::take(&mut a.maybe_late) {
            return refused("it belongs to a transfer we gave up on".into(), true);
        }
        refused("no data connection is expected now".into(), false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Recorder;
    use std::sync::Arc;

    /// A gate, and the refusals it reported as possible thefts.
    fn watched() -> (Gate, impl Fn() -> Vec<String>) {
        let seen = Arc::new(Recorder::default());
        let gate = Gate::new(Events::none().with(seen.clone()));
        let refused = move || {
            let thefts = seen.take().into_iter().filter(|e| matches!(e, Event::StrayRefused { late: false, .. }));
            thefts.map(|e| e.to_string()).collect()
        };
        (gate, refused)
    }

    const FTP: &str = "127.0.0.1";
    /// A link's forwarded port, and another link's.
    const OURS: &[u16] = &[40000];
    const OTHER: &[u16] = &[40010, 40011];

    fn ftp() -> IpAddr {
        FTP.parse().unwrap()
    }

    /// Admit a connection from the FTP server's data port to `port`.
    fn admit(gate: &Gate, port: u16) -> bool {
        gate.admit_from(FTP, 2020, port, &format!("127.0.0.1:{port}"))
    }

    #[test]
    fn admits_one_connection_from_the_ftp_server_while_pending() {
        let (gate, refused) = watched();
        assert!(!admit(&gate, 40000), "nothing pending");
        gate.open(OURS, ftp());
        assert!(!gate.admit_from("10.250.0.2", 2020, 40000, "127.0.0.1:40000"), "another address");
        assert!(!gate.admit_from("not an address", 1, 40000, "127.0.0.1:40000"));
        assert!(gate.admit_from("::ffff:127.0.0.1", 2020, 40000, "127.0.0.1:40000"), "mapped IPv4 is the same host");
        assert!(!admit(&gate, 40000), "only one per transfer");
        gate.open(OURS, ftp());
        gate.open(OURS, ftp()); // the next transfer, sent ahead
        assert!(admit(&gate, 40000));
        assert!(admit(&gate, 40000));
        assert!(!admit(&gate, 40000), "one per transfer sent");
        let refused = refused();
        assert_eq!(refused.len(), 5);
        assert!(refused[0].contains("no data connection is expected"));
        assert!(refused[1].contains("does not come from the FTP server 127.0.0.1"));
    }

    #[test]
    fn a_late_connection_of_an_abandoned_transfer_is_refused_quietly() {
        let (gate, refused) = watched();
        gate.open(OURS, ftp());
        gate.close(OURS); // given up before the server connected
        assert!(!admit(&gate, 40000));
        assert!(refused().is_empty(), "our own late connection is no theft");
        assert!(!admit(&gate, 40000));
        assert_eq!(refused().len(), 1, "only one late connection is ours; a second may be anyone's");
    }

    /// Each link has its own account: one giving up does not withdraw another's
    /// expectation, and a connection to one link's port is not another's.
    #[test]
    fn links_keep_their_own_accounts() {
        let (gate, refused) = watched();
        gate.open(OURS, ftp());
        gate.open(OTHER, ftp());
        gate.close(OTHER);
        assert!(admit(&gate, 40000), "another link's close left ours pending");
        gate.open(OURS, ftp());
        assert!(!admit(&gate, 40011), "the other link expects nothing now");
        assert!(admit(&gate, 40000));
        assert!(refused().is_empty());
    }

    /// A transfer sent ahead behind one that failed is given up, but the
    /// server connected for it (150, 226 read while getting back in step);
    /// that connection, still on its way, is refused when it comes, and the
    /// retried transfer's own is admitted after it.
    #[test]
    fn a_connection_made_for_a_transfer_given_up_is_not_the_next_ones() {
        let (gate, refused) = watched();
        gate.open(OURS, ftp()); // f1
        assert!(admit(&gate, 40000));
        gate.open(OURS, ftp()); // f2: 425
        gate.open(OURS, ftp()); // f3, sent ahead: given up
        gate.close(OURS);
        gate.settle(OURS, 2); // f1's 150 and f3's 150
        gate.open(OURS, ftp()); // f2 again
        assert!(!admit(&gate, 40000), "f3's connection, late");
        assert!(admit(&gate, 40000), "f2's own");
        assert!(refused().is_empty());
        gate.settle(OURS, 3);
        gate.open(OURS, ftp());
        assert!(admit(&gate, 40000), "all made have arrived: nothing late");
    }

    /// Once the server's data connections are seen to come from one port, a connection from its
    /// address but another port is refused as a theft, and counts for nothing.
    #[test]
    fn a_pinned_source_port_refuses_the_rest_of_the_servers_host() {
        let (gate, refused) = watched();
        gate.open(OURS, ftp());
        gate.pin_source(OURS, Some(2020));
        assert!(!gate.admit_from(FTP, 40123, 40000, "127.0.0.1:40000"), "another process on the server's host");
        assert!(admit(&gate, 40000), "the server's own, still expected");
        let refused = refused();
        assert_eq!(refused.len(), 1);
        assert!(refused[0].contains("does not come from the FTP server's data port 2020"), "{refused:?}");
        gate.pin_source(OURS, None);
        gate.open(OURS, ftp());
        assert!(gate.admit_from(FTP, 40123, 40000, "127.0.0.1:40000"), "a varying port pins nothing");
    }

    /// A closed link's account ends with it: a later link that gets the same port (ports are
    /// reused in a long run) starts with nothing owed, pinned or counted.
    #[test]
    fn a_retired_account_is_not_the_next_links() {
        let (gate, refused) = watched();
        gate.open(OURS, ftp());
        gate.pin_source(OURS, Some(2020));
        gate.close(OURS);
        gate.settle(OURS, 5);
        gate.retire(OURS);
        assert!(!admit(&gate, 40000), "the old link's late connection");
        gate.open(OURS, ftp());
        assert!(gate.admit_from(FTP, 2121, 40000, "127.0.0.1:40000"), "nothing late, no port pinned");
        assert!(refused().is_empty());
    }

    #[test]
    fn close_withdraws_the_expectation() {
        let gate = Gate::default();
        gate.open(OURS, ftp());
        gate.close(OURS);
        assert!(!admit(&gate, 40000));
    }

    #[test]
    fn incarnations_count_per_four_tuple() {
        let a = || Some(("10.9.9.9:2020".parse().unwrap(), "10.9.9.9:40000".parse().unwrap()));
        let b = || Some(("10.9.9.9:2020".parse().unwrap(), "10.9.9.9:40002".parse().unwrap()));
        assert_eq!([next_incarnation(a()), next_incarnation(a()), next_incarnation(b())], [1, 2, 1]);
    }
}
