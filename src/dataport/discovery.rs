//! Finding the proxy port P: the source port of the SSH server's connection
//! to the FTP server, as the FTP server sees it
//! (docs/real-systems.md#knowing-the-proxy-port-p).
//!
//! Where the relay runs ([`crate::dataport::relay`]) it reports P itself. Elsewhere
//! (no perl, python3 or socat on the SSH server) P is read off the socket
//! table: sshd's own process is not readable by the SSH user, so we diff
//! `/proc/net/tcp{,6}` before and after opening the control connection and
//! keep the new ESTABLISHED rows whose remote end is the FTP server, owned by
//! our uid (OpenSSH) or by root (dropbear opens them as root). Exactly one such
//! row must appear; several (another run of the same user, or any program of
//! ours or root's, at the same moment) are [`NotFound::Ambiguous`]: the caller
//! retries, it never guesses.
//!
//! The same table also checks a reverse forward before it is trusted
//! ([`check_listener`]): sshd may answer success yet listen elsewhere.

use std::net::{IpAddr, SocketAddr};

use anyhow::{bail, Context, Result};

use crate::ssh::Session;
use crate::tcp::table::{self, Entry, TcpState};

/// One reading of the SSH server's socket table.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The SSH user's uid on the server.
    pub uid: u32,
    /// Every TCP socket the table shows.
    pub entries: Vec<Entry>,
}

/// Read the SSH server's socket table over an exec channel.
pub async fn snapshot(session: &Session) -> Result<Snapshot> {
    let started = std::time::Instant::now();
    // Our uid, then both socket tables.
    let out = session.shell(&format!("id -u; {}", table::READ_COMMAND)).await?;
    tracing::debug!("socket table read in {:.1?}", started.elapsed());
    parse_snapshot(&out).context("could not read the SSH server's socket table")
}

/// How long a reading may stand in for a fresh "before" of the next opening.
const REUSE_WITHIN: std::time::Duration = std::time::Duration::from_secs(2);

/// The last reading of this process, taken when an opening ended.
static LAST: tokio::sync::Mutex<Option<(std::time::Instant, Snapshot)>> = tokio::sync::Mutex::const_new(None);

/// One opening's turn at the socket table. Two openings diffed at the same
/// time would each see the other's new row, so this process takes turns
/// (other processes can still race; [`find_proxy`] then reports it and the
/// caller retries). A turn also hands its last reading to the next one as
/// its "before", which saves an exec per control connection.
pub struct Turn {
    last: tokio::sync::MutexGuard<'static, Option<(std::time::Instant, Snapshot)>>,
}

impl Turn {
    /// Wait for our turn.
    pub async fn take() -> Turn {
        Turn { last: LAST.lock().await }
    }

    /// A reading from before the next connection: the previous turn's last one
    /// if it is recent, else a fresh one.
    pub async fn before(&mut self, session: &Session) -> Result<Snapshot> {
        match self.last.take() {
            Some((at, snap)) if at.elapsed() < REUSE_WITHIN => Ok(snap),
            _ => snapshot(session).await,
        }
    }

    /// Leave `after` for the next turn (None: this turn made connections it did not read).
    pub fn leave(mut self, after: Option<Snapshot>) {
        *self.last = after.map(|a| (std::time::Instant::now(), a));
    }
}

/// Parse the output of [`snapshot`]'s command: `id -u`, then the tables.
pub fn parse_snapshot(text: &str) -> Result<Snapshot> {
    let (uid, tables) = text.split_once('\n').context("empty output")?;
    let uid = uid.trim().parse().with_context(|| format!("`id -u` said {uid:?}"))?;
    let entries = table::parse(tables);
    if entries.is_empty() {
        bail!("/proc/net/tcp is empty or unreadable (is the SSH server Linux?)");
    }
    Ok(Snapshot { uid, entries })
}

/// Why the table did not show exactly one new connection of ours.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotFound {
    /// Nothing new to the FTP server's port.
    #[error("no new connection to the FTP server port {0} appeared in the SSH server's socket table")]
    Nothing(u16),
    /// Several at once: another connection raced ours (retry, never guess).
    #[error("{0} new connections to port {1} appeared at once; cannot tell which is ours")]
    Ambiguous(usize, u16),
}

/// The local end of the one new connection to the FTP server at `ftp_port`
/// (and `ftp_ip`, when known as an address): that is (address, P), and the
/// FTP server's end. Rows of our uid and of root's count: ours is one or the
/// other (OpenSSH's direct-tcpip sockets are the user's, dropbear's root's),
/// and which, the table cannot say. Other users' rows cannot be ours.
pub fn find_proxy(
    before: &Snapshot,
    after: &Snapshot,
    ftp_ip: Option<IpAddr>,
    ftp_port: u16,
) -> Result<(SocketAddr, SocketAddr), NotFound> {
    let new: Vec<&Entry> = table::new_entries(&before.entries, &after.entries)
        .into_iter()
        .filter(|e| e.state == TcpState::Established && e.remote.port() == ftp_port)
        .filter(|e| ftp_ip.is_none_or(|ip| e.remote.ip() == ip.to_canonical()))
        .filter(|e| e.uid == after.uid || e.uid == 0)
        .collect();
    match new.as_slice() {
        [one] => Ok((one.local, one.remote)),
        [] => Err(NotFound::Nothing(ftp_port)),
        many => Err(NotFound::Ambiguous(many.len(), ftp_port)),
    }
}

/// What the table says of a reverse forward the SSH server said yes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listener {
    /// A LISTEN row on the address asked for (or the wildcard), sshd's.
    Exact,
    /// Another account's socket listens where the FTP server will connect (it bound that
    /// address and port before sshd could): the data would go to it.
    Squatted(Entry),
    /// LISTEN rows on that port, but on other addresses only (loopback, for
    /// OpenSSH's `GatewayPorts no` and for dropbear without `-a`).
    Elsewhere(Vec<SocketAddr>),
    /// Nothing listens on that port.
    Absent,
}

/// Check that sshd, and only sshd, listens on exactly `want` (the address and port the
/// FTP server will connect to): every listener that covers it (that address, or the
/// wildcard) must be owned by `sshd_uid` (OpenSSH's forwards are the SSH user's) or by root
/// (dropbear's). Another user who reads the table sees our control connection, so the
/// port, and can listen there first, on an address sshd did not bind (`GatewayPorts no`
/// binds loopback instead).
pub fn check_listener(entries: &[Entry], want: SocketAddr, sshd_uid: u32) -> Listener {
    let listening = entries.iter().filter(|e| e.state == TcpState::Listen && e.local.port() == want.port());
    let covering =
        |e: &&Entry| e.local.ip() == want.ip() || e.local.ip().is_unspecified() || want.ip().is_unspecified();
    if let Some(squatter) = listening.clone().filter(covering).find(|e| e.uid != sshd_uid && e.uid != 0) {
        return Listener::Squatted(squatter.clone());
    }
    let on_port: Vec<SocketAddr> = listening.map(|e| e.local).collect();
    if on_port.iter().any(|a| a.ip() == want.ip() || a.ip().is_unspecified()) {
        Listener::Exact
    } else if on_port.is_empty() {
        Listener::Absent
    } else {
        Listener::Elsewhere(on_port)
    }
}

/// A TIME_WAIT row that a data connection from the FTP server (whose control
/// port is `ftp_port`) to `port` could collide with
/// (docs/real-systems.md#time_wait-and-incarnations): one end is `port`,
/// the other a port such a server sends data from. A server that sends
/// from a fixed port uses L-1 (ProFTPD, BSD ftpd, wu-ftpd) or a privileged
/// one (vsftpd's 20); one whose source port the kernel picks never collides, since connect() skips 4-tuples in TIME_WAIT. Other rows
/// that merely end in `port` are no obstacle: on a busy server they are
/// common (the FTP server's passive port for another client was `port`, as
/// ProFTPD picks them anywhere in 1024-65535), and their 4-tuple is not ours.
pub fn time_wait_on(entries: &[Entry], port: u16, ftp_port: u16) -> Option<&Entry> {
    let data_source = |p: u16| p < 1024 || Some(p) == ftp_port.checked_sub(1);
    entries.iter().find(|e| {
        e.state == TcpState::TimeWait
            && ((e.local.port() == port && data_source(e.remote.port()))
                || (e.remote.port() == port && data_source(e.local.port())))
    })
}

/// Why `port` on the SSH server cannot serve as a data port now, if it cannot:
/// a socket already uses it locally, or a TIME_WAIT 4-tuple the FTP server's
/// data connection may have holds it ([`time_wait_on`]).
pub fn port_busy(entries: &[Entry], port: u16, ftp_port: u16) -> Option<&'static str> {
    if time_wait_on(entries, port, ftp_port).is_some() {
        return Some("a connection to it is still in TIME_WAIT");
    }
    let used = entries.iter().any(|e| e.state != TcpState::TimeWait && e.local.port() == port);
    used.then_some("a socket already uses it")
}

/// Another socket on `port` of `wanted` (where sshd was asked to listen),
/// bound to the same address or the wildcard, TIME_WAIT included, other than
/// our own control connection `ours` -> `peer`. sshd can listen there only if
/// every such socket set SO_REUSEADDR
/// (docs/real-systems.md#the-bind-rule-behind-the-reverse-forward); the
/// table cannot show which did, so any one of them may be why a forward was
/// refused.
pub fn held_by_another(entries: &[Entry], wanted: SocketAddr, ours: SocketAddr, peer: SocketAddr) -> Option<&Entry> {
    entries.iter().find(|e| {
        e.local.port() == wanted.port()
            && (e.local.ip() == wanted.ip() || e.local.ip().is_unspecified())
            && !(e.local == ours && e.remote == peer)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Rows laid out as the kernel prints them (uid 1001 = the SSH user): a
    // listener on 2121 and the two ends of sshd's connection to it.
    const HEADER: &str =
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n";
    const LISTEN: &str = "   0: 00000000:0849 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1001 1 0000000000000000 100 0 0 10 0\n";
    const OURS: &str = "   1: 0100007F:A3C2 0100007F:0849 01 00000000:00000000 00:00000000 00000000  1001        0 2001 1 0000000000000000 20 4 30 10 -1\n";
    const FTPD_SIDE: &str = "   2: 0100007F:0849 0100007F:A3C2 01 00000000:00000000 00:00000000 00000000     0        0 2002 1 0000000000000000 20 4 30 10 -1\n";

    fn snap(rows: &[&str]) -> Snapshot {
        let mut text = format!("1001\n{HEADER}");
        rows.iter().for_each(|r| text.push_str(r));
        parse_snapshot(&text).unwrap()
    }

    #[test]
    fn finds_the_new_row_owned_by_us() {
        let before = snap(&[LISTEN]);
        let after = snap(&[LISTEN, OURS, FTPD_SIDE]);
        let (local, remote) = find_proxy(&before, &after, Some("127.0.0.1".parse().unwrap()), 2121).unwrap();
        assert_eq!(local, "127.0.0.1:41922".parse().unwrap());
        assert_eq!(remote, "127.0.0.1:2121".parse().unwrap());
    }

    #[test]
    fn nothing_new_or_too_much_is_an_error() {
        let before = snap(&[LISTEN, OURS]);
        assert!(find_proxy(&before, &before, None, 2121).is_err());
        let other = OURS.replace("A3C2", "A3C4");
        let after = snap(&[LISTEN, OURS, &other, OURS.replace("A3C2", "A3C6").as_str()]);
        assert!(find_proxy(&before, &after, None, 2121).unwrap_err().to_string().contains("2 new connections"));
    }

    #[test]
    fn rows_of_root_count_as_well_as_ours() {
        // dropbear's direct-tcpip socket belongs to root (uid 0), not to the SSH user.
        let root_owned = OURS.replace("  1001        0 2001", "     0        0 2001");
        let before = snap(&[LISTEN]);
        let (local, _) = find_proxy(&before, &snap(&[LISTEN, &root_owned, FTPD_SIDE]), None, 2121).unwrap();
        assert_eq!(local.port(), 0xA3C2);
        // One of ours and one of root's: either may be the SSH server's, so neither is taken
        // (dropbear's, with the user's own program connecting at the same moment).
        let other_root = root_owned.replace("A3C2", "A3C4");
        let both = snap(&[LISTEN, OURS, &other_root]);
        assert_eq!(find_proxy(&before, &both, None, 2121), Err(NotFound::Ambiguous(2, 2121)));
        // Two of root's: ambiguous, never a guess.
        let both = snap(&[LISTEN, &root_owned, &other_root]);
        assert_eq!(find_proxy(&before, &both, None, 2121), Err(NotFound::Ambiguous(2, 2121)));
        // Another user's row cannot be the SSH server's connection for us.
        let another_user = OURS.replace("A3C2", "A3C6").replace("  1001        0 2001", "  1002        0 2003");
        let (local, _) = find_proxy(&before, &snap(&[LISTEN, &root_owned, &another_user]), None, 2121).unwrap();
        assert_eq!(local.port(), 0xA3C2);
    }

    #[test]
    fn a_forward_is_checked_in_the_table() {
        let on = |row: &str| snap(&[row]).entries;
        let want: SocketAddr = "10.250.1.1:41921".parse().unwrap();
        let loopback = LISTEN.replace("00000000:0849", "0100007F:A3C1");
        assert_eq!(
            check_listener(&on(&loopback), want, 0),
            Listener::Elsewhere(vec!["127.0.0.1:41921".parse().unwrap()])
        );
        let exact = LISTEN.replace("00000000:0849", "0101FA0A:A3C1");
        assert_eq!(check_listener(&on(&exact), want, 1000), Listener::Exact);
        let wildcard = LISTEN.replace("00000000:0849", "00000000:A3C1");
        assert_eq!(check_listener(&on(&wildcard), want, 1000), Listener::Exact);
        assert_eq!(check_listener(&on(LISTEN), want, 1000), Listener::Absent);
    }

    /// Another user listening where the FTP server will connect, before sshd (which then
    /// bound loopback, `GatewayPorts no`), or on the wildcard: squatted, not sshd's.
    #[test]
    fn another_users_listener_is_a_squatter() {
        let want: SocketAddr = "10.250.1.1:41921".parse().unwrap();
        let theirs =
            |addr: &str| LISTEN.replace("00000000:0849", addr).replacen("     0        0", " 65534        0", 1);
        let sshds = LISTEN.replace("00000000:0849", "0100007F:A3C1");
        for squat in [theirs("0101FA0A:A3C1"), theirs("00000000:A3C1")] {
            let entries = snap(&[&sshds, &squat]).entries;
            match check_listener(&entries, want, 1000) {
                Listener::Squatted(e) => assert_eq!(e.uid, 65534),
                other => panic!("{other:?}"),
            }
        }
        let elsewhere = snap(&[&sshds, &theirs("0200007F:A3C1")]).entries;
        assert!(
            matches!(check_listener(&elsewhere, want, 1000), Listener::Elsewhere(_)),
            "another address does not cover it"
        );
    }

    #[test]
    fn busy_ports() {
        // TIME_WAIT rows on 41921 (0xA3C1): from the FTP server's L-1 (2120),
        // from port 20, and from an ephemeral port (a passive data connection
        // that the FTP server, listening on 41921 then, closed first).
        let tw = |local: &str, remote: &str| {
            format!("   3: 0100007F:{local} 0100007F:{remote} 06 00000000:00000000 03:00001770 00000000     0        0 0 3 0000000000000000\n")
        };
        let (from_l1, from_20, passive) = (tw("0848", "A3C1"), tw("A3C1", "0014"), tw("A3C1", "C2D5"));
        for row in [&from_l1, &from_20] {
            let after = snap(&[LISTEN, OURS, FTPD_SIDE, row]);
            assert_eq!(
                port_busy(&after.entries, 0xA3C1, 2121),
                Some("a connection to it is still in TIME_WAIT"),
                "{row}"
            );
            assert!(time_wait_on(&after.entries, 0xA3C1, 2121).is_some());
        }
        let after = snap(&[LISTEN, OURS, FTPD_SIDE, &passive]);
        assert_eq!(time_wait_on(&after.entries, 0xA3C1, 2121), None, "not a 4-tuple the data connection can have");
        assert_eq!(port_busy(&after.entries, 0xA3C1, 2121), None);
        assert_eq!(port_busy(&after.entries, 0xA3C2, 2121), Some("a socket already uses it"));
        assert_eq!(port_busy(&after.entries, 0xA3C0, 2121), None);
    }

    #[test]
    fn another_socket_on_the_relays_port() {
        let ours: SocketAddr = "127.0.0.1:41922".parse().unwrap();
        let peer: SocketAddr = "127.0.0.1:2121".parse().unwrap();
        assert!(
            held_by_another(&snap(&[LISTEN, OURS, FTPD_SIDE]).entries, ours, ours, peer).is_none(),
            "only the relay"
        );
        // Same port towards sshd, in TIME_WAIT: Linux still counts it against a listener.
        let tw_to_22 = "   3: 0100007F:A3C2 0100007F:0016 06 00000000:00000000 03:00001770 00000000     0        0 0 3 0000000000000000\n";
        let table = snap(&[OURS, tw_to_22]);
        let found = held_by_another(&table.entries, ours, ours, peer).unwrap();
        assert_eq!((found.remote.port(), found.state), (22, TcpState::TimeWait));
        let wildcard = LISTEN.replace("00000000:0849", "00000000:A3C2");
        assert!(
            held_by_another(&snap(&[OURS, &wildcard]).entries, ours, ours, peer).is_some(),
            "0.0.0.0 covers 127.0.0.1"
        );
        let elsewhere = OURS.replace("0100007F:A3C2", "0200FA0A:A3C2");
        assert!(
            held_by_another(&snap(&[OURS, &elsewhere]).entries, ours, ours, peer).is_none(),
            "10.250.0.2 is another address"
        );
    }

    #[test]
    fn bad_uid_line_is_an_error() {
        assert!(parse_snapshot("").is_err());
        assert!(parse_snapshot("sh: id: not found\n").is_err());
    }
}
