//! The SO_REUSEADDR relay (FIELD-NOTES section 2).
//!
//! An RFC 959 server (GNU inetutils ftpd, wu-ftpd, BSD ftpd) connects back to
//! port U = P itself, the source port of the control connection. Linux lets
//! sshd listen on P only if *both* sockets set SO_REUSEADDR, and sshd does not
//! set it on its direct-tcpip sockets. So instead of direct-tcpip, the control
//! connection is made by this small relay, started over an exec channel: it
//! sets SO_REUSEADDR, connects, prints its own address and port on the first
//! line of its stdout, then copies bytes both ways. Perl is tried first (it is
//! Essential on Debian and Ubuntu), then python3.

use std::net::SocketAddr;

use anyhow::{bail, Context, Result};
use russh::client::Msg;
use russh::ChannelStream;
use tokio::io::AsyncReadExt;

use crate::error::{classified, Kind};
use crate::session::Session;

/// First line of a relay that is connected: `FTPSSH-RELAY <local-addr> <local-port> <peer-addr>`.
const READY: &str = "FTPSSH-RELAY ";
/// First line of a relay that could not connect: `FTPSSH-RELAY-ERROR <why>`.
const FAILED: &str = "FTPSSH-RELAY-ERROR ";

// No single quotes inside: the scripts travel inside '...' on a shell line.
const PERL: &str = r#"use strict; use IO::Socket::IP; use IO::Select;
my ($h, $p) = @ARGV; $| = 1; binmode STDIN; binmode STDOUT;
my $s = IO::Socket::IP->new(PeerHost => $h, PeerPort => $p, Proto => "tcp", ReuseAddr => 1)
  or do { print "FTPSSH-RELAY-ERROR ", ($IO::Socket::errstr || $@ || $!), "\n"; exit 1 };
print "FTPSSH-RELAY ", $s->sockhost, " ", $s->sockport, " ", $s->peerhost, "\n";
sub put { my ($fh, $b) = @_; while (length $b) { my $w = syswrite($fh, $b); exit 1 unless defined $w; substr($b, 0, $w) = "" } }
my $sel = IO::Select->new(\*STDIN, $s);
while (my @ready = $sel->can_read) { for my $fh (@ready) {
  my $n = sysread($fh, my $b, 65536);
  if ($fh == $s) { exit 0 unless $n; put(\*STDOUT, $b) }
  elsif ($n) { put($s, $b) } else { shutdown($s, 1); $sel->remove(\*STDIN) } } }"#;

const PYTHON: &str = r#"import os, select, socket, sys
h, p = sys.argv[1], int(sys.argv[2])
try:
    af, kind, proto, _, addr = socket.getaddrinfo(h, p, 0, socket.SOCK_STREAM)[0]
    s = socket.socket(af, kind, proto)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.connect(addr)
except OSError as e:
    print("FTPSSH-RELAY-ERROR", e, flush=True); sys.exit(1)
print("FTPSSH-RELAY", s.getsockname()[0], s.getsockname()[1], s.getpeername()[0], flush=True)
def put(fd, b):
    while b: b = b[os.write(fd, b):]
ins = [0, s]
while True:
    for r in select.select(ins, [], [])[0]:
        b = os.read(r if r == 0 else s.fileno(), 65536)
        if r is s:
            if not b: sys.exit(0)
            put(1, b)
        elif b: put(s.fileno(), b)
        else: s.shutdown(socket.SHUT_WR); ins.remove(0)"#;

/// A control connection made by the relay.
pub struct Relayed {
    /// The byte stream to the FTP server.
    pub stream: ChannelStream<Msg>,
    /// The relay's own end: (address the FTP server will connect back to, P).
    pub local: SocketAddr,
    /// The FTP server's address as the relay reached it.
    pub peer: std::net::IpAddr,
}

/// The shell line that starts the relay with whichever interpreter exists.
pub fn command(host: &str, port: u16) -> Result<String> {
    if host.is_empty() || !host.chars().all(|c| c.is_ascii_alphanumeric() || ".:-_".contains(c)) {
        bail!("refusing to pass FTP host {host:?} to a remote shell");
    }
    Ok(format!(
        "if command -v perl >/dev/null 2>&1; then exec perl -e '{PERL}' {host} {port}; \
         elif command -v python3 >/dev/null 2>&1; then exec python3 -c '{PYTHON}' {host} {port}; \
         else echo '{FAILED}neither perl nor python3 on the SSH server'; fi"
    ))
}

/// Start the relay and wait for its first line.
pub async fn open(session: &Session, host: &str, port: u16) -> Result<Relayed> {
    let channel = session.exec_channel(&command(host, port)?).await?;
    let mut stream = channel.into_stream();
    let line = tokio::time::timeout(crate::session::EXEC_TIMEOUT, read_line(&mut stream))
        .await
        .context("the relay did not start in time")?
        .context("the relay exited before saying anything")?;
    parse_ready(&line).map(|(local, peer)| Relayed { stream, local, peer })
}

/// Read one line of a remote helper's output (this relay, the reclaim helper) byte by
/// byte: what follows it belongs to someone else, here the FTP conversation.
pub(crate) async fn read_line(stream: &mut ChannelStream<Msg>) -> Result<String> {
    let mut line = Vec::new();
    loop {
        let byte = stream.read_u8().await.context("the remote process exited before ending a line")?;
        if byte == b'\n' || line.len() > 1024 {
            return Ok(String::from_utf8_lossy(&line).into_owned());
        }
        line.push(byte);
    }
}

/// Parse the relay's first line.
pub fn parse_ready(line: &str) -> Result<(SocketAddr, std::net::IpAddr)> {
    if let Some(why) = line.strip_prefix(FAILED) {
        return Err(classified(Kind::FtpRefused, format!("could not reach the FTP server from the SSH server: {why}")));
    }
    let fields: Vec<&str> =
        line.strip_prefix(READY).with_context(|| format!("unexpected relay output {line:?}"))?.split(' ').collect();
    let [addr, port, peer] = fields[..] else { bail!("unexpected relay output {line:?}") };
    let ip: std::net::IpAddr = addr.parse().with_context(|| format!("bad address in {line:?}"))?;
    let peer: std::net::IpAddr = peer.parse().with_context(|| format!("bad address in {line:?}"))?;
    let port: u16 = port.parse().with_context(|| format!("bad port in {line:?}"))?;
    Ok((SocketAddr::new(ip.to_canonical(), port), peer.to_canonical()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_first_line() {
        let (local, peer) = parse_ready("FTPSSH-RELAY 127.0.0.1 40312 127.0.0.1").unwrap();
        assert_eq!(local, "127.0.0.1:40312".parse().unwrap());
        assert_eq!(peer.to_string(), "127.0.0.1");
        let (local, _) = parse_ready("FTPSSH-RELAY ::ffff:10.250.0.2 40312 ::ffff:10.250.0.2").unwrap();
        assert_eq!(local, "10.250.0.2:40312".parse().unwrap());
        assert!(parse_ready("FTPSSH-RELAY-ERROR Connection refused")
            .unwrap_err()
            .to_string()
            .contains("Connection refused"));
        assert!(parse_ready("bash: perl: command not found").is_err());
        assert!(parse_ready("FTPSSH-RELAY 1.2.3.4 99999 1.2.3.4").is_err());
    }

    #[test]
    fn scripts_fit_in_single_quotes() {
        assert!(!PERL.contains('\'') && !PYTHON.contains('\''));
        assert!(command("a;rm -rf /", 21).is_err());
        assert!(command("ftp.example.org", 21).unwrap().contains("ftp.example.org 21"));
    }

    /// Run one relay script here against `port` on loopback: its first line, and the
    /// child (stdin and stdout piped) when it connected.
    fn start(interpreter: &[&str], port: u16) -> (String, std::process::Child) {
        use std::io::BufRead;
        let mut child = std::process::Command::new(interpreter[0])
            .args(&interpreter[1..])
            .args(["127.0.0.1", &port.to_string()])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
        (line.trim_end().to_string(), child)
    }

    /// Both scripts, as the SSH server would run them: the first line, SO_REUSEADDR on the
    /// connection (a second listener may share its port), bytes both ways, a clear error.
    #[test]
    fn scripts_relay_bytes_and_report_errors() {
        use std::io::{Read, Write};
        for interpreter in [vec!["perl", "-e", PERL], vec!["python3", "-c", PYTHON]] {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let (line, mut child) = start(&interpreter, listener.local_addr().unwrap().port());
            let (local, peer) = parse_ready(&line).unwrap_or_else(|e| panic!("{}: {e:#}", interpreter[0]));
            assert_eq!(peer.to_string(), "127.0.0.1");
            let (mut server, from) = listener.accept().unwrap();
            assert_eq!(from, local, "{}: the first line names the relay's own end", interpreter[0]);
            // The sshd side of the rule: a SO_REUSEADDR listener on P binds only if the relay set it too.
            let sshd = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            sshd.set_reuse_address(true).unwrap();
            sshd.bind(&local.into()).unwrap_or_else(|e| panic!("{}: P not shareable: {e}", interpreter[0]));
            server.write_all(b"220 hello\r\n").unwrap();
            child.stdin.as_mut().unwrap().write_all(b"QUIT\r\n").unwrap();
            drop(child.stdin.take());
            let mut got = Vec::new();
            server.read_to_end(&mut got).unwrap();
            assert_eq!(got, b"QUIT\r\n", "{}: client to server", interpreter[0]);
            drop(server);
            let mut rest = String::new();
            child.stdout.as_mut().unwrap().read_to_string(&mut rest).unwrap();
            assert_eq!(rest, "220 hello\r\n", "{}: server to client", interpreter[0]);
            assert!(child.wait().unwrap().success());

            let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let (line, mut child) = start(&interpreter, closed);
            let err = parse_ready(&line).unwrap_err().to_string();
            assert!(err.contains("refused"), "{}: unclear error {err:?}", interpreter[0]);
            let _ = child.wait();
        }
    }
}
