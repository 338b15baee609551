//! The helper that sends a reclaim's SYN: a small perl process kept running on
//! the SSH server for the whole link, one line in, one line out, no fork per
//! transfer ([`super`] says why the SYN ends the FTP server's TIME_WAIT).
//! sshd's listener on the proxy port must be cancelled first (a listener shares
//! its port with nothing), and requested again after, unless the helper sends
//! from its stock of sockets bound while that listener was away.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use russh::client::Msg;
use russh::ChannelStream;
use tokio::io::AsyncWriteExt;

use crate::ssh::helper::{Exec, Helper};
use crate::tcp::DataTuple;

/// Reads `LOCAL-ADDR LOCAL-PORT PEER-ADDR PEER-PORT WAIT-MS FREE-MS STOCK SEEN` lines; for each, binds the
/// local end (SO_REUSEADDR; for up to 50 ms while sshd's listener there is being cancelled: the
/// line may reach us first), starts a non-blocking connect, waits, closes (a half-open socket
/// closes silently), and answers one line, with how many sockets it holds in stock for that end.
/// While the tuple is still taken on this host (sshd's end of the last data connection, not yet
/// closed) connect() says EADDRNOTAVAIL: it tries again, at 0.2 ms and then ever longer intervals
/// (x1.5) up to 50 ms, for up to FREE-MS, and answers `busy` once it sees that end in TIME_WAIT
/// itself: then the FTP server's end holds nothing to reclaim, or, where both closed at once, a
/// TIME_WAIT that no connect() from either end can reach. It looks that end up
/// ([`crate::tcp::tuple_state`]) from the fifth try on only (after 1.6 ms): where netlink is refused,
/// the lookup reads the whole socket table, which costs far more than a try.
///
/// SEEN 1: the FTP server's end of the tuple is on this host too (loopback), and the SYN goes out
/// only while that end is in TIME_WAIT, the one state it is sent for. Our relay lets the next
/// transfer's commands through as soon as the tuple is free (sshd's end in TIME_WAIT, the FTP
/// server's end gone), so by the time a late try's connect() would succeed, the FTP server may be
/// connecting on the same tuple for the next file; a SYN from our side would then meet its SYN
/// (simultaneous open) and take that data connection away from sshd. A SYN to a TIME_WAIT cannot
/// race so: the FTP server cannot connect while it holds one. And while that end shows a live
/// connection other than the one first seen (the next file's: the kernel's socket cookie tells),
/// this line is over: `busy`. Waiting for that one to close would wait for us, who must accept it
/// first, and the run would stall until the server gave up.
///
/// The stock: a socket bound to the local end *before* sshd listens there stays bound after (both
/// set SO_REUSEADDR, and a bound socket is not a listener), and can connect from it later, while
/// sshd listens. So when it must bind (sshd's listener cancelled), it binds up to STOCK more, and
/// later lines for that end take one of those: no cancel, no renewed listener, no round trip.
/// An SSH server whose listener does not set SO_REUSEADDR cannot listen beside the stock: a line
/// `drop LOCAL-ADDR LOCAL-PORT` closes it. No single quotes: it travels inside '...' on a shell line.
const PERL: &str = concat!(
    r#"use strict; use Socket qw(:all); use Fcntl; use Errno qw(EADDRNOTAVAIL); use Time::HiRes qw(time); $| = 1;
"#,
    crate::tcp::tuple_state::perl_tuple_state!(),
    r#"print "FTPSSH-RECLAIM ready\n";
my %stock;
while (my $line = <STDIN>) {
  if ($line =~ /^drop (\S+) (\d+)$/) { delete $stock{"$1 $2"}; print "FTPSSH-RECLAIM dropped\n"; next }
  my ($la, $lp, $ra, $rp, $ms, $free, $want, $seen) = split " ", $line;
  my $v6 = $la =~ /:/;
  my $addr = sub { my ($a, $p) = @_; $v6 ? pack_sockaddr_in6($p, inet_pton(AF_INET6, $a)) : pack_sockaddr_in($p, inet_aton($a)) };
  my $fresh = sub { my $s; socket($s, $v6 ? AF_INET6 : AF_INET, SOCK_STREAM, 0) && setsockopt($s, SOL_SOCKET, SO_REUSEADDR, 1) ? $s : undef };
  my $stocked = $stock{"$la $lp"} ||= [];
  my $s = shift @$stocked;
  unless ($s) {
    unless ($s = $fresh->()) { print "FTPSSH-RECLAIM-ERROR cannot make a socket: $!\n"; next }
    my $bound;
    for (1 .. 25) { last if $bound = bind($s, $addr->($la, $lp)); select(undef, undef, undef, 0.002) }
    unless ($bound) { print "FTPSSH-RECLAIM-ERROR cannot bind $la:$lp: $!\n"; next }
    while (@$stocked < ($want || 0)) { my $t = $fresh->() or last; bind($t, $addr->($la, $lp)) or last; push @$stocked, $t }
  }
  fcntl($s, F_SETFL, O_NONBLOCK);
  my ($until, $nap, $busy, $first) = (time + $free / 1000, 0.0002, 0, "");
  while (1) {
    my $theirs = 6;
    if ($seen) { ($theirs, my $id) = tuple_sock($ra, $rp, $la, $lp); $first ||= $id;
      if (!$theirs || ($theirs != 6 && $id && $id ne $first)) { $busy = 1; last } }
    if ($theirs == 6) { last if connect($s, $addr->($ra, $rp)) || $! != EADDRNOTAVAIL;
      if ($nap > 0.001 && tuple_state($la, $lp, $ra, $rp) == 6) { $busy = 1; last } }
    if (time >= $until) { $busy = 1; last }
    select(undef, undef, undef, $nap); $nap = $nap >= 0.033 ? 0.05 : $nap * 1.5;
  }
  if ($busy) { unshift @$stocked, $s } else { select(undef, undef, undef, $ms / 1000); close($s) }
  printf "FTPSSH-RECLAIM %s %d\n", $busy ? "busy" : "sent", scalar @$stocked;
}"#
);

/// The perl process on the SSH server.
pub struct Reclaimer {
    stream: ChannelStream<Msg>,
}

impl Helper for Reclaimer {
    /// Start it; fails if the SSH server has no perl.
    async fn start(on: &impl Exec) -> Result<Reclaimer> {
        let channel = on.exec_channel(&format!("exec perl -e '{PERL}'")).await?;
        let mut reclaimer = Reclaimer { stream: channel.into_stream() };
        let line = reclaimer.read_line().await?;
        if line != "FTPSSH-RECLAIM ready" {
            bail!("could not start perl on the SSH server: {line:?}");
        }
        Ok(reclaimer)
    }
}

impl Reclaimer {
    /// Send the SYN from the tuple's proxy end to its server end, then wait
    /// `wait` for the exchange to finish (a loopback round trip takes
    /// microseconds). While our own end of the tuple is still open, try again
    /// for up to `free`. Where it must bind (sshd's listener there must then be
    /// cancelled), it also binds up to `stock` sockets for later asks, which
    /// need no cancel. Answers whether the SYN went out (false: our end stayed
    /// taken, or is in TIME_WAIT itself, and the FTP server's end then holds
    /// nothing to reclaim) and how many sockets it holds in stock for the
    /// tuple's proxy end. Unbounded: the caller bounds the wait for the answer.
    pub async fn ask(
        &mut self,
        tuple: &DataTuple,
        wait: Duration,
        free: Duration,
        stock: usize,
    ) -> Result<(bool, usize)> {
        let server_port = tuple.server_port.context("the FTP server's data source port is not known")?;
        let line = format!(
            "{} {} {} {server_port} {} {} {stock} {}\n",
            tuple.proxy.ip(),
            tuple.proxy.port(),
            tuple.server,
            wait.as_millis(),
            free.as_millis(),
            u8::from(tuple.server.is_loopback()),
        );
        self.stream.write_all(line.as_bytes()).await.context("writing to the reclaiming process")?;
        self.stream.flush().await?;
        let answer = crate::ssh::helper::read_line(&mut self.stream).await.context("the reclaiming process exited")?;
        if let Some(why) = answer.strip_prefix("FTPSSH-RECLAIM-ERROR ") {
            bail!("{why}");
        }
        parse_answer(&answer).with_context(|| format!("unexpected answer {answer:?} from the reclaiming process"))
    }

    /// Close the sockets held in stock for `end` (the SSH server could not
    /// listen beside them).
    pub async fn drop_stock(&mut self, end: std::net::SocketAddr) -> Result<()> {
        let line = format!("drop {} {}\n", end.ip(), end.port());
        self.stream.write_all(line.as_bytes()).await.context("writing to the reclaiming process")?;
        self.stream.flush().await?;
        match self.read_line().await? {
            answer if answer == "FTPSSH-RECLAIM dropped" => Ok(()),
            answer => bail!("unexpected answer {answer:?} from the reclaiming process"),
        }
    }

    async fn read_line(&mut self) -> Result<String> {
        crate::ssh::helper::answer(&mut self.stream, "the reclaiming process").await
    }
}

/// `FTPSSH-RECLAIM sent|busy STOCK`.
fn parse_answer(answer: &str) -> Option<(bool, usize)> {
    let (sent, stock) = answer.strip_prefix("FTPSSH-RECLAIM ")?.split_once(' ')?;
    let sent = match sent {
        "sent" => true,
        "busy" => false,
        _ => return None,
    };
    Some((sent, stock.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::ssh::helper::Script;

    #[test]
    fn script_fits_in_single_quotes() {
        assert!(!PERL.contains('\''));
    }

    /// The script run here, its ready line read.
    fn start() -> Script {
        let mut script = Script::start(PERL);
        assert_eq!(script.answer(), "FTPSSH-RECLAIM ready\n");
        script
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
    }

    /// The script here, on loopback: it binds the given end and answers; a taken port is an error.
    #[test]
    fn script_answers_each_line() {
        let mut script = start();
        let (free, closed) = (free_port(), free_port());
        assert_eq!(script.say(&format!("127.0.0.1 {free} 127.0.0.1 {closed} 1 0 0")), "FTPSSH-RECLAIM sent 0\n");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let taken = listener.local_addr().unwrap().port();
        let line = script.say(&format!("127.0.0.1 {taken} 127.0.0.1 {closed} 1 0 0"));
        assert!(line.starts_with("FTPSSH-RECLAIM-ERROR cannot bind 127.0.0.1:"), "{line}");
        script.finish();
    }

    /// While our end of the tuple is open, the script waits (up to FREE-MS) for it to close; the
    /// tuple's other end then holds the TIME_WAIT (it closed first), which the SYN reaches.
    #[test]
    fn script_waits_for_its_end_of_the_tuple_to_close() {
        let mut script = start();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let y = listener.local_addr().unwrap();
        let connected = || connect_from(&listener, 0);
        // Open the whole time: busy after FREE-MS; the socket it bound is kept in stock.
        let (_ours, _theirs, x) = connected();
        assert_eq!(script.say(&format!("127.0.0.1 {x} 127.0.0.1 {} 0 20 0", y.port())), "FTPSSH-RECLAIM busy 1\n");
        // Closed while the script waits, the other end first: the SYN goes out.
        let (ours, theirs, x) = connected();
        script.send(&format!("127.0.0.1 {x} 127.0.0.1 {} 0 3000 0", y.port()));
        std::thread::sleep(std::time::Duration::from_millis(50));
        drop(theirs);
        std::thread::sleep(std::time::Duration::from_millis(10));
        drop(ours);
        assert_eq!(script.answer(), "FTPSSH-RECLAIM sent 0\n");
        script.finish();
    }

    /// A connection to `listener` from local port `x` (0: any), as sshd's forwarded end has it
    /// (SO_REUSEADDR): our end, the listener's end, and x.
    fn connect_from(listener: &std::net::TcpListener, x: u16) -> (socket2::Socket, std::net::TcpStream, u16) {
        use socket2::{Domain, Socket, Type};
        let ours = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        ours.set_reuse_address(true).unwrap();
        ours.bind(&std::net::SocketAddr::from(([127, 0, 0, 1], x)).into()).unwrap();
        ours.connect(&listener.local_addr().unwrap().into()).unwrap();
        let x = ours.local_addr().unwrap().as_socket().unwrap().port();
        (ours, listener.accept().unwrap().0, x)
    }

    /// SEEN 1 (the FTP server's end is on this host): the SYN goes out only to that end's
    /// TIME_WAIT. Where that end holds no socket, nothing is sent although connect() would work:
    /// the FTP server may be connecting on the tuple for the next file. And a newer connection of
    /// the tuple ends the wait at once: it would close only once we had accepted it.
    #[test]
    fn script_seeing_the_server_end_sends_only_to_its_time_wait() {
        let mut script = start();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let y = listener.local_addr().unwrap().port();
        let connected = |x| connect_from(&listener, x);
        // Nothing on the tuple: SEEN 0 connects (the listener gets it), SEEN 1 does not.
        let p = free_port();
        assert_eq!(script.say(&format!("127.0.0.1 {p} 127.0.0.1 {y} 0 0 0 1")), "FTPSSH-RECLAIM busy 1\n");
        listener.set_nonblocking(true).unwrap();
        assert!(listener.accept().is_err(), "a SYN went out with nothing to reclaim");
        assert_eq!(script.say(&format!("127.0.0.1 {p} 127.0.0.1 {y} 0 0 0 0")), "FTPSSH-RECLAIM sent 0\n");
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(listener.accept().is_ok(), "SEEN 0 sends it");
        listener.set_nonblocking(false).unwrap();
        // The server's end closed first, so it holds the TIME_WAIT: sent once ours has closed.
        let (ours, theirs, x) = connected(0);
        script.send(&format!("127.0.0.1 {x} 127.0.0.1 {y} 0 3000 0 1"));
        std::thread::sleep(std::time::Duration::from_millis(50));
        drop(theirs);
        std::thread::sleep(std::time::Duration::from_millis(10));
        drop(ours);
        assert_eq!(script.answer(), "FTPSSH-RECLAIM sent 0\n");
        // Reset (no TIME_WAIT anywhere) and connected again from the same port: the script
        // answers while the newer connection is still open, not after FREE-MS.
        let (ours, theirs, x) = connected(0);
        script.send(&format!("127.0.0.1 {x} 127.0.0.1 {y} 0 3000 0 1"));
        std::thread::sleep(std::time::Duration::from_millis(300)); // its naps are long by now
        ours.set_linger(Some(std::time::Duration::ZERO)).unwrap();
        drop((ours, theirs));
        let started = std::time::Instant::now();
        let _newer = connected(x);
        assert_eq!(script.answer(), "FTPSSH-RECLAIM busy 1\n");
        assert!(started.elapsed() < std::time::Duration::from_secs(2), "waited for the newer connection");
        script.finish();
    }

    /// The stock: sockets bound while the port was free stay bound when a listener (sshd's, with
    /// SO_REUSEADDR) takes the port, and each later line connects from one of them.
    #[test]
    fn script_connects_from_its_stock_while_the_port_is_listened_on() {
        use socket2::{Domain, Socket, Type};
        let mut script = start();
        let peer = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let (p, q) = (free_port(), peer.local_addr().unwrap().port());
        let line = |stock: usize| format!("127.0.0.1 {p} 127.0.0.1 {q} 1 0 {stock}");
        assert_eq!(script.say(&line(2)), "FTPSSH-RECLAIM sent 2\n");
        assert_eq!(peer.accept().unwrap().1.port(), p);
        let sshd = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        sshd.set_reuse_address(true).unwrap();
        sshd.bind(&std::net::SocketAddr::from(([127, 0, 0, 1], p)).into()).unwrap();
        sshd.listen(8).unwrap();
        for left in [1, 0] {
            assert_eq!(script.say(&line(0)), format!("FTPSSH-RECLAIM sent {left}\n"));
            assert_eq!(peer.accept().unwrap().1.port(), p);
        }
        let last = script.say(&line(0));
        assert!(last.starts_with("FTPSSH-RECLAIM-ERROR cannot bind"), "{last}");
        script.finish();
    }

    /// A listener without SO_REUSEADDR cannot share the port with the stock; dropped, it can.
    #[test]
    fn script_drops_its_stock_on_request() {
        let mut script = start();
        let (p, q) = (free_port(), free_port());
        assert_eq!(script.say(&format!("127.0.0.1 {p} 127.0.0.1 {q} 1 0 3")), "FTPSSH-RECLAIM sent 3\n");
        let bare = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        let target: socket2::SockAddr = std::net::SocketAddr::from(([127, 0, 0, 1], p)).into();
        assert!(bare.bind(&target).is_err(), "bound beside the stock without SO_REUSEADDR");
        assert_eq!(script.say(&format!("drop 127.0.0.1 {p}")), "FTPSSH-RECLAIM dropped\n");
        bare.bind(&target).unwrap();
        bare.listen(1).unwrap();
        script.finish();
    }

    #[test]
    fn answers_parse() {
        assert_eq!(parse_answer("FTPSSH-RECLAIM sent 12"), Some((true, 12)));
        assert_eq!(parse_answer("FTPSSH-RECLAIM busy 0"), Some((false, 0)));
        assert_eq!(parse_answer("FTPSSH-RECLAIM sent"), None);
        assert_eq!(parse_answer("FTPSSH-RECLAIM maybe 1"), None);
    }
}
