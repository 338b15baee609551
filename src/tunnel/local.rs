//! The client's side of a data connection, on this host: the tunnel's own
//! loopback listener (the client said PASV or EPSV), or the client's listener
//! (PORT, EPRT, or the default data port: its control connection's own port C).
//!
//! Other users of this host are adversaries: one could connect to our passive
//! listener first, or listen where the client said it would. A connection is
//! used only when the local socket table names the client's uid as the owner of
//! its other end (the uid of the client's control connection).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

use crate::error::{classified, Kind};
use crate::events::tunnel::Fact;
use crate::events::{Event, Events};
use crate::tcp::table::{self, Entry, TcpState};

/// While a connection to the client's listener waits for its answer, how often its queue is
/// looked at (a loopback connection to a listener with room is answered at once).
const QUEUE_LOOK: Duration = Duration::from_millis(100);

/// Where the client's end of the next data connection is.
pub enum LocalEnd {
    /// The tunnel listens (PASV, EPSV); the client connects.
    Listening(TcpListener),
    /// The client listens there (PORT, EPRT); the tunnel connects.
    Port(SocketAddr),
    /// Neither was said: RFC 959's default, the client listens on its control port C.
    DefaultPort(SocketAddr),
    /// Connected already, owner checked: to the client's PORT or EPRT listener as soon as it
    /// was named. The client accepts the first connection in its listener's queue, and takes
    /// it for the server's: connecting before another local user can leaves that user's
    /// connection unaccepted, and the client's bytes never reach it.
    Connected(TcpStream),
}

/// Who holds a socket, as its row in the socket table says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    /// The uid column.
    pub uid: u32,
    /// A process holds it (a file of its): the inode column is not 0. A socket its process
    /// closed already (FIN_WAIT2, TIME_WAIT: a kernel minisock) shows uid 0, root's, whoever
    /// made it, so its uid proves nothing.
    pub held: bool,
}

/// The owner of the socket whose own end is `local` and whose peer is `remote`, in
/// `entries`. TIME_WAIT rows name no owner. The same ends may show twice, a closed
/// connection's leftover (FIN_WAIT2) beside a new one on the same ports: the held row is
/// the live socket.
pub fn owner_in(entries: &[Entry], local: SocketAddr, remote: SocketAddr) -> Option<Owner> {
    let same = |a: SocketAddr, b: SocketAddr| a.port() == b.port() && a.ip().to_canonical() == b.ip().to_canonical();
    let rows =
        entries.iter().filter(|e| e.state != TcpState::TimeWait && same(e.local, local) && same(e.remote, remote));
    let row = rows.max_by_key(|e| e.inode != 0)?;
    Some(Owner { uid: row.uid, held: row.inode != 0 })
}

/// [`owner_in`] this host's socket table (this network namespace's `/proc/net/tcp` and `tcp6`).
pub fn owner(local: SocketAddr, remote: SocketAddr) -> Option<Owner> {
    owner_in(&table(), local, remote)
}

/// This host's socket table (this network namespace's `/proc/net/tcp` and `tcp6`).
pub fn table() -> Vec<Entry> {
    let mut entries = Vec::new();
    for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
        if let Ok(text) = std::fs::read_to_string(file) {
            entries.extend(table::parse(&text));
        }
    }
    entries
}

/// The client a data connection is for.
#[derive(Clone)]
pub struct Client {
    /// Its uid: the owner of its control connection's socket.
    pub uid: u32,
    /// The tunnel's end of its control connection.
    pub control: SocketAddr,
    /// Where the facts go.
    pub events: Events,
}

/// The client's data connection, from `end`, proven to be made by the client's uid within
/// `bound`; at the client's listener, proven to be the first in its queue ([`alone`]).
pub async fn connect(end: LocalEnd, client: Client, bound: Duration) -> Result<TcpStream> {
    let Client { uid, control, events } = client;
    let fact = |fact| events.emit(Event::Tunnel(fact));
    let deadline = tokio::time::Instant::now() + bound;
    match end {
        LocalEnd::Connected(stream) => Ok(stream),
        LocalEnd::Listening(listener) => loop {
            let accepted = tokio::time::timeout_at(deadline, listener.accept()).await.map_err(|_| {
                classified(Kind::Transfer, format!("the client did not connect to the passive port within {bound:?}"))
            })?;
            let (stream, peer) = accepted.context("accepting the client's data connection")?;
            let ours = stream.local_addr()?;
            // Held by a process: one that connected and closed at once leaves a row of uid 0.
            match owner(peer, ours) {
                Some(Owner { uid: owner, held: true }) if owner == uid => {
                    fact(Fact::ClientData { from: peer, to: ours });
                    let _ = stream.set_nodelay(true);
                    return Ok(stream);
                }
                owner => fact(Fact::DataRefused {
                    why: format!(
                        "refused a data connection from {peer} to the passive port {ours}: its socket is {}, not the client's (uid {uid})",
                        whose(owner)
                    ),
                }),
            }
        },
        LocalEnd::Port(at) | LocalEnd::DefaultPort(at) => {
            let stream = to_listener(at, control, deadline).await?;
            let ours = stream.local_addr()?;
            // The client's listener's connection, not yet accepted: no process holds it yet, and
            // its uid is the listener's.
            match owner(at, ours) {
                Some(Owner { uid: owner, .. }) if owner == uid => {
                    // At once: a connection that comes after ours waits behind it, harmless.
                    alone(&stream, control)?;
                    fact(Fact::ClientData { from: ours, to: at });
                    let _ = stream.set_nodelay(true);
                    Ok(stream)
                }
                owner => Err(classified(
                    Kind::Transfer,
                    format!(
                        "the listener on {at} is {}, not the client's (uid {uid}): nothing sent to it",
                        whose(owner)
                    ),
                )),
            }
        }
    }
}

/// The other connections waiting in the queue of the client's listener `at`, beside ours
/// (whose end is `ours`): the rows of its side, connected or closed by their other end but not
/// yet accepted. `control` is the tunnel's end of the client's control connection, whose own
/// end is `at` too with `sendport` off (C).
pub fn others_in(entries: &[Entry], at: SocketAddr, ours: SocketAddr, control: SocketAddr) -> Vec<SocketAddr> {
    let same = |a: SocketAddr, b: SocketAddr| a.port() == b.port() && a.ip().to_canonical() == b.ip().to_canonical();
    entries
        .iter()
        .filter(|e| matches!(e.state, TcpState::Established | TcpState::CloseWait | TcpState::SynRecv))
        .filter(|e| same(e.local, at) && !same(e.remote, ours) && !same(e.remote, control))
        .map(|e| e.remote)
        .collect()
}

/// Ours is the only connection waiting at the client's listener (`stream`'s peer) as it is made,
/// else an error naming the others: the queue is first come, first accepted, and the client
/// takes whichever it accepts for the server's.
pub fn alone(stream: &TcpStream, control: SocketAddr) -> Result<()> {
    let (at, ours) = (stream.peer_addr()?, stream.local_addr()?);
    match others_in(&table(), at, ours, control) {
        others if others.is_empty() => Ok(()),
        others => Err(ahead(at, &others)),
    }
}

/// Connect to the client's listener at `at` (loopback) by `deadline`. A full queue does not
/// answer (the classic ftp listens with a backlog of 1): while the connection waits, a look
/// at the queue tells another local user's connection there, ahead of ours, at once.
async fn to_listener(at: SocketAddr, control: SocketAddr, deadline: tokio::time::Instant) -> Result<TcpStream> {
    let socket = if at.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() }?;
    socket.bind(SocketAddr::new(at.ip(), 0))?; // our end known before the answer
    let ours = socket.local_addr()?;
    let connecting = socket.connect(at);
    tokio::pin!(connecting);
    loop {
        tokio::select! {
            connected = &mut connecting => {
                return connected.with_context(|| format!("could not connect to the client's data port {at}"));
            }
            _ = tokio::time::sleep(QUEUE_LOOK) => {
                let others = others_in(&table(), at, ours, control);
                if !others.is_empty() {
                    return Err(ahead(at, &others));
                }
                if tokio::time::Instant::now() >= deadline {
                    return Err(classified(Kind::Transfer, format!("no answer from the client's data port {at}")));
                }
            }
        }
    }
}

/// The error for connections of others waiting at the client's listener `at` ahead of ours.
fn ahead(at: SocketAddr, others: &[SocketAddr]) -> anyhow::Error {
    let others: Vec<String> = others.iter().map(|o| o.to_string()).collect();
    classified(
        Kind::Transfer,
        format!(
            "another connection ({}) waits at the client's data port {at}, ahead of the tunnel's: another local user's, whom the client would take for the server",
            others.join(", ")
        ),
    )
}

/// An owner in words, for the warnings.
pub fn whose(owner: Option<Owner>) -> String {
    match owner {
        Some(Owner { uid, held: true }) => format!("uid {uid}'s"),
        Some(Owner { held: false, .. }) | None => "held by no process".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Captured from a client namespace: lftp (uid 0) connected to the tunnel on 2121, a
    /// second user's socket (uid 1001) racing it to the passive port 40000, a TIME_WAIT.
    const TABLE: &str = "\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:0849 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 41001 1 0000000000000000 100 0 0 10 0
   1: 0100007F:B2C8 0100007F:0849 01 00000000:00000000 00:00000000 00000000     0        0 41002 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:9C41 0100007F:9C40 01 00000000:00000000 00:00000000 00000000  1001        0 41003 1 0000000000000000 20 4 30 10 -1
   3: 0100007F:9C42 0100007F:9C40 06 00000000:00000000 03:00001770 00000000     0        0 0 3 0000000000000000
   4: 0100007F:9C43 0100007F:9C40 05 00000000:00000000 03:00001770 00000000     0        0 0 3 0000000000000000
   5: 0100007F:9C44 0100007F:9C40 05 00000000:00000000 03:00001770 00000000     0        0 0 3 0000000000000000
   6: 0100007F:9C44 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 41004 1 0000000000000000 20 4 30 10 -1
";

    #[test]
    fn owners_from_the_table() {
        let entries = table::parse(TABLE);
        let addr = |s: &str| s.parse::<SocketAddr>().unwrap();
        let held = |uid| Some(Owner { uid, held: true });
        assert_eq!(owner_in(&entries, addr("127.0.0.1:45768"), addr("127.0.0.1:2121")), held(0));
        assert_eq!(owner_in(&entries, addr("127.0.0.1:40001"), addr("127.0.0.1:40000")), held(1001));
        assert_eq!(
            owner_in(&entries, addr("127.0.0.1:40002"), addr("127.0.0.1:40000")),
            None,
            "TIME_WAIT names no one"
        );
        // The second user connected and closed at once: its FIN_WAIT2 row says uid 0, held by no one.
        assert_eq!(
            owner_in(&entries, addr("127.0.0.1:40003"), addr("127.0.0.1:40000")),
            Some(Owner { uid: 0, held: false })
        );
        assert_eq!(owner_in(&entries, addr("[::ffff:127.0.0.1]:45768"), addr("127.0.0.1:2121")), held(0));
        // The client's new connection from the port of a closed one of the attacker's.
        assert_eq!(owner_in(&entries, addr("127.0.0.1:40004"), addr("127.0.0.1:40000")), held(0));
        assert_eq!(owner_in(&entries, addr("127.0.0.1:1"), addr("127.0.0.1:2121")), None);
    }

    /// The classic ftp's listener on C = 45768 (`sendport` off): its control connection to the
    /// tunnel, the tunnel's data connection from 50001 waiting in its queue, another user's
    /// from 50002 (connected), one from 50003 (closed by that user already), and a previous
    /// data connection in TIME_WAIT.
    const QUEUE: &str = "\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:B2C8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 42000 1 0000000000000000 100 0 0 10 0
   1: 0100007F:B2C8 0100007F:0849 01 00000000:00000000 00:00000000 00000000     0        0 41002 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:B2C8 0100007F:C351 01 00000000:00000000 00:00000000 00000000     0        0 0 1 0000000000000000 20 4 30 10 -1
   3: 0100007F:B2C8 0100007F:C352 01 00000000:00000000 00:00000000 00000000     0        0 0 1 0000000000000000 20 4 30 10 -1
   4: 0100007F:B2C8 0100007F:C353 08 00000000:00000000 00:00000000 00000000     0        0 0 1 0000000000000000 20 4 30 10 -1
   5: 0100007F:B2C8 0100007F:C350 06 00000000:00000000 03:00001770 00000000     0        0 0 3 0000000000000000
   6: 0100007F:C352 0100007F:B2C8 01 00000000:00000000 00:00000000 00000000 65534        0 42001 1 0000000000000000 20 4 30 10 -1
";

    #[test]
    fn others_in_the_clients_queue() {
        let entries = table::parse(QUEUE);
        let addr = |s: &str| s.parse::<SocketAddr>().unwrap();
        let (at, control) = (addr("127.0.0.1:45768"), addr("127.0.0.1:2121"));
        assert_eq!(
            others_in(&entries, at, addr("127.0.0.1:50001"), control),
            [addr("127.0.0.1:50002"), addr("127.0.0.1:50003")]
        );
        let alone = table::parse(&QUEUE.lines().take(3).collect::<Vec<_>>().join("\n"));
        assert!(others_in(&alone, at, addr("127.0.0.1:50001"), control).is_empty());
    }
}
