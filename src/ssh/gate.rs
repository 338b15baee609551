//! The gate in front of the reverse forward.
//!
//! sshd listens on the port the FTP server will connect to and hands each
//! connection to us as a forwarded-tcpip channel, telling us who made it.
//! Anyone on the SSH server host can connect to that port, so the [`Gate`]
//! admits exactly one connection per transfer, only while a transfer is
//! pending and only from the FTP server's address; any other is refused and
//! reported as a possible data port theft.

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

/// Admits the one expected data connection of a pending transfer.
#[derive(Debug, Default)]
pub struct Gate {
    events: Events,
    /// The FTP server, and how many data connections it is yet to make
    /// (more than one when transfers were sent ahead).
    expected: Mutex<Option<(IpAddr, u32)>>,
    /// The FTP server of a transfer we gave up on before its data connection
    /// came: that connection may still arrive, late. It is refused, but it is
    /// our own, not a theft.
    late: Mutex<Option<IpAddr>>,
}

impl Gate {
    /// A gate that tells `events` what it refuses.
    pub fn new(events: Events) -> Gate {
        Gate { events, ..Gate::default() }
    }

    /// A transfer is pending: admit one more connection from `ftp_server`.
    pub fn open(&self, ftp_server: IpAddr) {
        let mut expected = self.expected.lock().unwrap();
        *expected = match *expected {
            Some((ip, n)) if ip == ftp_server => Some((ip, n + 1)),
            _ => Some((ftp_server, 1)),
        };
    }

    /// No transfer is pending any more.
    pub fn close(&self) {
        if let Some((abandoned, _)) = self.expected.lock().unwrap().take() {
            *self.late.lock().unwrap() = Some(abandoned);
        }
    }

    /// True, once, for the FTP server of a transfer given up before its data
    /// connection came: one late connection from there is expected, no more
    /// (anyone on that host could connect too).
    fn take_late(&self, from: Option<IpAddr>) -> bool {
        let mut late = self.late.lock().unwrap();
        let ours = from.is_some() && *late == from;
        if ours {
            *late = None;
        }
        ours
    }

    /// Decide on one forwarded connection (called from the SSH event loop).
    /// An admitted one gets its incarnation number.
    pub(crate) fn admit(&self, data: &mut DataChannel) -> bool {
        let (addr, port) = &data.originator;
        let (to_addr, to_port) = &data.connected;
        let admitted = self.admit_from(addr, *port, &format!("{to_addr}:{to_port}"));
        if admitted {
            data.incarnation = next_incarnation(data.ends());
        }
        admitted
    }

    /// The rule itself: `addr:port` connected to the forwarded `to`.
    fn admit_from(&self, addr: &str, port: u32, to: &str) -> bool {
        let from = addr.parse::<IpAddr>().ok().map(|a| a.to_canonical());
        let mut expected = self.expected.lock().unwrap();
        let why = match *expected {
            Some((want, n)) if from == Some(want) => {
                *expected = (n > 1).then_some((want, n - 1)); // one data connection per transfer
                return true;
            }
            Some((want, _)) => format!("it does not come from the FTP server {want}"),
            None if self.take_late(from) => {
                let why = "it belongs to a transfer we gave up on".to_string();
                self.events.emit(Event::StrayRefused {
                    from: format!("{addr}:{port}"),
                    to: to.into(),
                    why,
                    late: true,
                });
                return false;
            }
            None => "no data connection is expected now".to_string(),
        };
        self.events.emit(Event::StrayRefused { from: format!("{addr}:{port}"), to: to.into(), why, late: false });
        false
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

    #[test]
    fn admits_one_connection_from_the_ftp_server_while_pending() {
        let (gate, refused) = watched();
        assert!(!gate.admit_from("127.0.0.1", 2020, "127.0.0.1:40000"), "nothing pending");
        gate.open("127.0.0.1".parse().unwrap());
        assert!(!gate.admit_from("10.250.0.2", 2020, "127.0.0.1:40000"), "another address");
        assert!(!gate.admit_from("not an address", 1, "127.0.0.1:40000"));
        assert!(gate.admit_from("::ffff:127.0.0.1", 2020, "127.0.0.1:40000"), "mapped IPv4 is the same host");
        assert!(!gate.admit_from("127.0.0.1", 2020, "127.0.0.1:40000"), "only one per transfer");
        gate.open("127.0.0.1".parse().unwrap());
        gate.open("127.0.0.1".parse().unwrap()); // the next transfer, sent ahead
        assert!(gate.admit_from("127.0.0.1", 2020, "127.0.0.1:40000"));
        assert!(gate.admit_from("127.0.0.1", 2020, "127.0.0.1:40000"));
        assert!(!gate.admit_from("127.0.0.1", 2020, "127.0.0.1:40000"), "one per transfer sent");
        let refused = refused();
        assert_eq!(refused.len(), 5);
        assert!(refused[0].contains("no data connection is expected"));
        assert!(refused[1].contains("does not come from the FTP server 127.0.0.1"));
    }

    #[test]
    fn a_late_connection_of_an_abandoned_transfer_is_refused_quietly() {
        let (gate, refused) = watched();
        gate.open("127.0.0.1".parse().unwrap());
        gate.close(); // given up before the server connected
        assert!(!gate.admit_from("127.0.0.1", 2020, "127.0.0.1:40000"));
        assert!(refused().is_empty(), "our own late connection is no theft");
        assert!(!gate.admit_from("127.0.0.1", 2020, "127.0.0.1:40000"));
        assert_eq!(refused().len(), 1, "only one late connection is ours; a second may be anyone's");
    }

    #[test]
    fn close_withdraws_the_expectation() {
        let gate = Gate::default();
        gate.open("127.0.0.1".parse().unwrap());
        gate.close();
        assert!(!gate.admit_from("127.0.0.1", 1, "x"));
    }

    #[test]
    fn incarnations_count_per_four_tuple() {
        let a = || Some(("10.9.9.9:2020".parse().unwrap(), "10.9.9.9:40000".parse().unwrap()));
        let b = || Some(("10.9.9.9:2020".parse().unwrap(), "10.9.9.9:40002".parse().unwrap()));
        assert_eq!([next_incarnation(a()), next_incarnation(a()), next_incarnation(b())], [1, 2, 1]);
    }
}
