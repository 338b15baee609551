//! Reclaiming a data connection's 4-tuple from TIME_WAIT (RFC 1337's
//! "TIME-WAIT assassination"), so the next default-port transfer can use the
//! same control connection at once.
//!
//! After a download the FTP server closed first, so *its* host holds the
//! tuple (S -> T) in TIME_WAIT, and its next connect() from S to T fails.
//! A SYN sent from T to S (the same tuple, from our side) reaches that
//! TIME_WAIT socket; with no listener on S it answers with a bare ACK, which
//! our half-open socket answers with a RST carrying exactly the sequence
//! number TIME_WAIT expects. Linux then drops the TIME_WAIT entry (unless
//! `net.ipv4.tcp_rfc1337=1`). Nothing else is disturbed: the tuple contains
//! our own port T, and the connection it belonged to has ended cleanly
//! (226 received, size checked). Seen on Linux 6.18, timestamps off: the next
//! RETR on the same control connection succeeds 2 ms later.
//!
//! sshd's listener on T must be cancelled first (a listener shares its port
//! with nothing), and requested again after. The SYN is sent by a small perl
//! process kept running on the SSH server for the whole session: one line in,
//! one line out, no fork per transfer.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use russh::client::Msg;
use russh::ChannelStream;
use tokio::io::AsyncWriteExt;

use crate::ssh::helper::Helper;
use crate::ssh::{Session, EXEC_TIMEOUT};
use crate::tcp::DataTuple;

/// Reads `LOCAL-ADDR LOCAL-PORT PEER-ADDR PEER-PORT WAIT-MS FREE-MS` lines; for each, binds the
/// local end (SO_REUSEADDR; for up to 50 ms while sshd's listener there is being cancelled: the
/// line may reach us first), starts a non-blocking connect, waits, closes (a half-open socket
/// closes silently), and answers one line. While the tuple is still taken on this host (sshd's end
/// of the last data connection, not yet closed) connect() says EADDRNOTAVAIL: it tries again, at
/// 0.2 ms and then ever longer intervals (x1.5) up to 50 ms, for up to FREE-MS, and answers `busy` at
/// once if that end is in TIME_WAIT itself (then the FTP server's end is not: nothing to reclaim). No single quotes: it travels inside
/// '...' on a shell line.
const PERL: &str = r#"use strict; use Socket qw(:all); use Fcntl; use Errno qw(EADDRNOTAVAIL); use Time::HiRes qw(time); $| = 1;
sub hexaddr { my ($a, $v6) = @_; $v6 ? join("", map { sprintf "%08X", $_ } unpack("L4", inet_pton(AF_INET6, $a))) : sprintf("%08X", unpack("L", inet_aton($a))) }
sub state_of { my ($v6, $l, $r) = @_; open(my $t, "<", $v6 ? "/proc/net/tcp6" : "/proc/net/tcp") or return "";
  while (<$t>) { my @f = split; return $f[3] if $f[1] eq $l && $f[2] eq $r } return "" }
print "FTPSSH-RECLAIM ready\n";
while (my $line = <STDIN>) {
  my ($la, $lp, $ra, $rp, $ms, $free) = split " ", $line;
  my $v6 = $la =~ /:/;
  my $addr = sub { my ($a, $p) = @_; $v6 ? pack_sockaddr_in6($p, inet_pton(AF_INET6, $a)) : pack_sockaddr_in($p, inet_aton($a)) };
  my ($s, $bound);
  unless (socket($s, $v6 ? AF_INET6 : AF_INET, SOCK_STREAM, 0) && setsockopt($s, SOL_SOCKET, SO_REUSEADDR, 1)) {
    print "FTPSSH-RECLAIM-ERROR cannot make a socket: $!\n"; next }
  for (1 .. 25) { last if $bound = bind($s, $addr->($la, $lp)); select(undef, undef, undef, 0.002) }
  unless ($bound) { print "FTPSSH-RECLAIM-ERROR cannot bind $la:$lp: $!\n"; next }
  fcntl($s, F_SETFL, O_NONBLOCK);
  my ($l, $r) = (hexaddr($la, $v6) . sprintf(":%04X", $lp), hexaddr($ra, $v6) . sprintf(":%04X", $rp));
  my ($until, $nap, $busy) = (time + $free / 1000, 0.0002, 0);
  until (connect($s, $addr->($ra, $rp)) || $! != EADDRNOTAVAIL) {
    if (time >= $until || state_of($v6, $l, $r) eq "06") { $busy = 1; last }
    select(undef, undef, undef, $nap); $nap = $nap >= 0.033 ? 0.05 : $nap * 1.5;
  }
  select(undef, undef, undef, $ms / 1000) unless $busy;
  close($s);
  print $busy ? "FTPSSH-RECLAIM busy\n" : "FTPSSH-RECLAIM sent\n";
}"#;

/// The perl process on the SSH server.
pub struct Reclaimer {
    stream: ChannelStream<Msg>,
}

impl Helper for Reclaimer {
    /// Start it; fails if the SSH server has no perl.
    async fn start(session: &Session) -> Result<Reclaimer> {
        let channel = session.exec_channel(&format!("exec perl -e '{PERL}'")).await?;
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
    /// for up to `free`. True: sent; false: our end stayed taken, or is in
    /// TIME_WAIT itself (the FTP server's end then holds nothing to reclaim).
    /// Unbounded: the caller bounds the wait for the answer.
    pub async fn ask(&mut self, tuple: &DataTuple, wait: Duration, free: Duration) -> Result<bool> {
        let server_port = tuple.server_port.context("the FTP server's data source port is not known")?;
        let line = format!(
            "{} {} {} {server_port} {} {}\n",
            tuple.proxy.ip(),
            tuple.proxy.port(),
            tuple.server,
            wait.as_millis(),
            free.as_millis()
        );
        self.stream.write_all(line.as_bytes()).await.context("writing to the reclaiming process")?;
        self.stream.flush().await?;
        let answer = crate::ssh::relay::read_line(&mut self.stream).await.context("the reclaiming process exited")?;
        match answer.strip_prefix("FTPSSH-RECLAIM-ERROR ") {
            Some(why) => bail!("{why}"),
            None if answer == "FTPSSH-RECLAIM sent" => Ok(true),
            None if answer == "FTPSSH-RECLAIM busy" => Ok(false),
            None => bail!("unexpected answer {answer:?} from the reclaiming process"),
        }
    }

    async fn read_line(&mut self) -> Result<String> {
        tokio::time::timeout(EXEC_TIMEOUT, crate::ssh::relay::read_line(&mut self.stream))
            .await
            .context("the reclaiming process did not answer in time")?
            .context("the reclaiming process exited")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::io::{BufRead, BufReader, Write};

    #[test]
    fn script_fits_in_single_quotes() {
        assert!(!PERL.contains('\''));
    }

    /// The script run here, its ready line read: the process, its answers, a line buffer.
    fn started() -> (std::process::Child, BufReader<std::process::ChildStdout>, String) {
        let mut child = std::process::Command::new("perl")
            .args(["-e", PERL])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert_eq!(line, "FTPSSH-RECLAIM ready\n");
        (child, out, line)
    }

    /// The script here, on loopback: it binds the given end and answers; a taken port is an error.
    #[test]
    fn script_answers_each_line() {
        let (mut child, mut out, mut line) = started();
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let stdin = child.stdin.as_mut().unwrap();
        writeln!(stdin, "127.0.0.1 {free} 127.0.0.1 {closed} 1 0").unwrap();
        line.clear();
        out.read_line(&mut line).unwrap();
        assert_eq!(line, "FTPSSH-RECLAIM sent\n");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let taken = listener.local_addr().unwrap().port();
        writeln!(stdin, "127.0.0.1 {taken} 127.0.0.1 {closed} 1 0").unwrap();
        line.clear();
        out.read_line(&mut line).unwrap();
        assert!(line.starts_with("FTPSSH-RECLAIM-ERROR cannot bind 127.0.0.1:"), "{line}");
        drop(child.stdin.take());
        assert!(child.wait().unwrap().success());
    }

    /// While our end of the tuple is open, the script waits (up to FREE-MS) for it to close; the
    /// tuple's other end then holds the TIME_WAIT (it closed first), which the SYN reaches.
    #[test]
    fn script_waits_for_its_end_of_the_tuple_to_close() {
        use socket2::{Domain, Socket, Type};
        let (mut child, mut out, mut line) = started();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let y = listener.local_addr().unwrap();
        let connected = || {
            let ours = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
            ours.set_reuse_address(true).unwrap(); // as sshd's forwarded end has it
            ours.bind(&"127.0.0.1:0".parse::<std::net::SocketAddr>().unwrap().into()).unwrap();
            ours.connect(&y.into()).unwrap();
            let x = ours.local_addr().unwrap().as_socket().unwrap().port();
            (ours, listener.accept().unwrap().0, x)
        };
        let stdin = child.stdin.as_mut().unwrap();
        // Open the whole time: busy after FREE-MS.
        let (_ours, _theirs, x) = connected();
        writeln!(stdin, "127.0.0.1 {x} 127.0.0.1 {} 0 20", y.port()).unwrap();
        line.clear();
        out.read_line(&mut line).unwrap();
        assert_eq!(line, "FTPSSH-RECLAIM busy\n");
        // Closed while the script waits, the other end first: the SYN goes out.
        let (ours, theirs, x) = connected();
        writeln!(stdin, "127.0.0.1 {x} 127.0.0.1 {} 0 3000", y.port()).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        drop(theirs);
        std::thread::sleep(std::time::Duration::from_millis(10));
        drop(ours);
        line.clear();
        out.read_line(&mut line).unwrap();
        assert_eq!(line, "FTPSSH-RECLAIM sent\n");
        drop(child.stdin.take());
        assert!(child.wait().unwrap().success());
    }
}
