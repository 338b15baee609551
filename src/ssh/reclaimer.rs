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

/// Reads `LOCAL-ADDR LOCAL-PORT PEER-ADDR PEER-PORT WAIT-MS` lines; for each, binds the local end
/// (SO_REUSEADDR; for up to 50 ms while sshd's listener there is being cancelled: the line may
/// reach us first), starts a non-blocking connect, waits, closes (a half-open socket closes
/// silently), and answers one line. No single quotes: it travels inside '...' on a shell line.
const PERL: &str = r#"use strict; use Socket qw(:all); use Fcntl; $| = 1; print "FTPSSH-RECLAIM ready\n";
while (my $line = <STDIN>) {
  my ($la, $lp, $ra, $rp, $ms) = split " ", $line;
  my $v6 = $la =~ /:/;
  my $addr = sub { my ($a, $p) = @_; $v6 ? pack_sockaddr_in6($p, inet_pton(AF_INET6, $a)) : pack_sockaddr_in($p, inet_aton($a)) };
  my ($s, $bound);
  unless (socket($s, $v6 ? AF_INET6 : AF_INET, SOCK_STREAM, 0) && setsockopt($s, SOL_SOCKET, SO_REUSEADDR, 1)) {
    print "FTPSSH-RECLAIM-ERROR cannot make a socket: $!\n"; next }
  for (1 .. 25) { last if $bound = bind($s, $addr->($la, $lp)); select(undef, undef, undef, 0.002) }
  unless ($bound) { print "FTPSSH-RECLAIM-ERROR cannot bind $la:$lp: $!\n"; next }
  fcntl($s, F_SETFL, O_NONBLOCK);
  connect($s, $addr->($ra, $rp));
  select(undef, undef, undef, $ms / 1000);
  close($s);
  print "FTPSSH-RECLAIM sent\n";
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
    /// Send the SYN from the tuple's proxy end to its server end, then wait `wait` for the
    /// exchange to finish (a loopback round trip takes microseconds).
    pub async fn send(&mut self, tuple: &DataTuple, wait: Duration) -> Result<()> {
        let server_port = tuple.server_port.context("the FTP server's data source port is not known")?;
        let line = format!(
            "{} {} {} {server_port} {}\n",
            tuple.proxy.ip(),
            tuple.proxy.port(),
            tuple.server,
            wait.as_millis()
        );
        self.stream.write_all(line.as_bytes()).await.context("writing to the reclaiming process")?;
        self.stream.flush().await?;
        let answer = self.read_line().await?;
        match answer.strip_prefix("FTPSSH-RECLAIM-ERROR ") {
            Some(why) => bail!("{why}"),
            None if answer == "FTPSSH-RECLAIM sent" => Ok(()),
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

    #[test]
    fn script_fits_in_single_quotes() {
        assert!(!PERL.contains('\''));
    }

    /// The script here, on loopback: it binds the given end and answers; a taken port is an error.
    #[test]
    fn script_answers_each_line() {
        use std::io::{BufRead, BufReader, Write};
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
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let stdin = child.stdin.as_mut().unwrap();
        writeln!(stdin, "127.0.0.1 {free} 127.0.0.1 {closed} 1").unwrap();
        line.clear();
        out.read_line(&mut line).unwrap();
        assert_eq!(line, "FTPSSH-RECLAIM sent\n");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let taken = listener.local_addr().unwrap().port();
        writeln!(stdin, "127.0.0.1 {taken} 127.0.0.1 {closed} 1").unwrap();
        line.clear();
        out.read_line(&mut line).unwrap();
        assert!(line.starts_with("FTPSSH-RECLAIM-ERROR cannot bind 127.0.0.1:"), "{line}");
        drop(child.stdin.take());
        assert!(child.wait().unwrap().success());
    }
}
