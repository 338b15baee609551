//! The SO_REUSEADDR relay: how P is known, not guessed
//! (docs/real-systems.md#the-bind-rule-behind-the-reverse-forward).
//!
//! The control connection is made by a small relay started over an exec
//! channel instead of by sshd (direct-tcpip). The relay sets SO_REUSEADDR,
//! connects to the FTP server and reports its own end of the connection, so:
//!
//! - P (the proxy port as the FTP server sees it) is exact, whatever else the
//!   same user or other users do on the SSH server at the same moment;
//! - sshd may listen on P itself, which an RFC 959 server (GNU inetutils ftpd,
//!   wu-ftpd, BSD ftpd: data to port U = P) needs: Linux lets a listener share
//!   the port of an established connection only if both set SO_REUSEADDR, and
//!   sshd's direct-tcpip sockets do not.
//!
//! Interpreters are tried in order (perl, python3, socat) until one reports
//! ready; the one that worked is tried first next time. perl and python3 print
//! `FTPSSH-RELAY <local-addr> <local-port> <peer-addr>` as their first line on
//! stdout; socat (`-d -d`) logs its local address on stderr. The perl relay also proves data
//! connections' origins on its stderr ([`stream`]).

mod scripts;
pub mod stream;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{bail, Context, Result};
use russh::client::Msg;
use russh::{Channel, ChannelMsg};

use crate::error::{classified, Kind};
use crate::ssh::Session;
use scripts::{PERL, PYTHON};
use stream::{OnLine, RelayStream};

/// First line of a relay that is connected: `FTPSSH-RELAY <local-addr> <local-port> <peer-addr>`.
const READY: &str = "FTPSSH-RELAY ";
/// First line of a relay that could not connect: `FTPSSH-RELAY-ERROR <why>`.
const FAILED: &str = "FTPSSH-RELAY-ERROR ";
/// Printed by the shell when the interpreter is not installed, which then
/// exits with [`MISSING_STATUS`] (the shell's own code for "command not found").
const MISSING: &str = "FTPSSH-RELAY-MISSING";
const MISSING_STATUS: u32 = 127;
/// Most bytes of a relay's output kept while waiting for it to say it is ready.
const MAX_STARTUP_OUTPUT: usize = 16 * 1024;
/// A program on the SSH server that can act as the relay, in the order tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interpreter {
    /// perl (Essential on Debian and Ubuntu: `perl-base`).
    Perl,
    /// python3.
    Python3,
    /// socat, with `reuseaddr`.
    Socat,
}

impl Interpreter {
    /// Every interpreter, in the order tried.
    pub const ALL: [Interpreter; 3] = [Interpreter::Perl, Interpreter::Python3, Interpreter::Socat];

    /// The program's name on the SSH server.
    pub fn name(self) -> &'static str {
        match self {
            Interpreter::Perl => "perl",
            Interpreter::Python3 => "python3",
            Interpreter::Socat => "socat",
        }
    }

    /// The shell line that starts this relay towards `host:port`, or prints
    /// `MISSING` when the program is not installed.
    pub fn command(self, host: &str, port: u16) -> Result<String> {
        if host.is_empty() || !host.chars().all(|c| c.is_ascii_alphanumeric() || ".:-_".contains(c)) {
            bail!("refusing to pass FTP host {host:?} to a remote shell");
        }
        let run = match self {
            Interpreter::Perl => format!("perl -e '{PERL}' {host} {port}"),
            Interpreter::Python3 => format!("python3 -c '{PYTHON}' {host} {port}"),
            Interpreter::Socat if host.contains(':') => {
                format!("socat -d -d STDIO TCP:[{host}]:{port},reuseaddr,nodelay")
            }
            Interpreter::Socat => format!("socat -d -d STDIO TCP:{host}:{port},reuseaddr,nodelay"),
        };
        let name = self.name();
        Ok(format!("command -v {name} >/dev/null 2>&1 || {{ echo {MISSING}; exit 127; }}; exec {run}"))
    }
}

/// Which interpreter worked last: tried first by the next relay of this process.
static PREFERRED: AtomicUsize = AtomicUsize::new(0);

/// A control connection made by the relay.
pub struct Relayed {
    /// The byte stream to the FTP server.
    pub stream: Box<dyn crate::ftp::control::Stream>,
    /// What the FTP server sent before the relay was known to be ready (its
    /// greeting, often): read it before `stream`.
    pub read_ahead: Vec<u8>,
    /// The relay's own end: (address the FTP server will connect back to, P).
    pub local: SocketAddr,
    /// The FTP server's address as the relay reached it.
    pub peer: IpAddr,
    /// Which program relays.
    pub interpreter: Interpreter,
}

/// No interpreter could run the relay on the SSH server. Typed because the
/// default-port setup falls back to the socket-table diff on it.
#[derive(Debug, thiserror::Error)]
#[error("no relay could run on the SSH server ({})", .tried.join("; "))]
pub struct Unavailable {
    /// What each interpreter did: `perl: not installed`, `python3: failed: ...`.
    pub tried: Vec<String>,
    /// True when none of them is installed at all.
    pub none_installed: bool,
}

/// How a relay's start went, judged from its output so far.
#[derive(Debug, PartialEq, Eq)]
pub enum Startup {
    /// Connected; `read_ahead` is what the FTP server already sent.
    Ready {
        /// The relay's end of the control connection.
        local: SocketAddr,
        /// The FTP server's address.
        peer: IpAddr,
        /// Bytes of the FTP conversation that came with the ready report.
        read_ahead: Vec<u8>,
    },
    /// The relay ran but could not connect: the FTP server is not reachable
    /// from the SSH server (another interpreter would fare no better).
    Unreachable(String),
    /// The program is not installed.
    Missing,
    /// The program is there but failed (an old perl without IO::Socket::IP, a
    /// python3 that cannot start, ...): try the next one.
    Broken(String),
}

/// Start the relay towards `host:port`, trying each interpreter in turn. The perl relay's
/// stderr lines go to `on_line` (what it proves: [`stream`]).
pub async fn open(session: &Session, host: &str, port: u16, on_line: OnLine) -> Result<Relayed> {
    let mut on_line = Some(on_line);
    let first = PREFERRED.load(Ordering::Relaxed);
    let mut tried = Vec::new();
    let mut installed = false;
    for turn in 0..Interpreter::ALL.len() {
        let index = (first + turn) % Interpreter::ALL.len();
        let interpreter = Interpreter::ALL[index];
        // OpenSSH allows 10 session channels per connection by default
        // (MaxSessions): without one, no relay, but the socket table may do.
        let mut channel = match session.exec_channel(&interpreter.command(host, port)?).await {
            Ok(channel) => channel,
            Err(e) => {
                tried.push(format!("no session channel for it: {e:#}"));
                installed = true;
                break;
            }
        };
        match watch(&mut channel, interpreter).await? {
            Startup::Ready { local, peer, read_ahead } => {
                PREFERRED.store(index, Ordering::Relaxed);
                let stream: Box<dyn crate::ftp::control::Stream> = match (interpreter, on_line.take()) {
                    (Interpreter::Perl, Some(on_line)) => Box::new(RelayStream::new(channel, on_line)),
                    _ => Box::new(channel.into_stream()),
                };
                return Ok(Relayed { stream, read_ahead, local, peer, interpreter });
            }
            Startup::Unreachable(why) => {
                return Err(classified(
                    Kind::FtpRefused,
                    format!("the FTP server {host}:{port} is not reachable from the SSH server ({why})"),
                ))
            }
            Startup::Missing => tried.push(format!("{}: not installed", interpreter.name())),
            Startup::Broken(why) => {
                installed = true;
                tracing::debug!("the {} relay failed: {why}", interpreter.name());
                tried.push(format!("{}: failed: {why}", interpreter.name()));
            }
        }
    }
    Err(Unavailable { tried, none_installed: !installed }.into())
}

/// Read a starting relay's output until it is judged ready, or until it
/// has exited: a relay that will not do is waited for to the end, so that
/// the next one starts only then (dropbear 2022.83 was seen to close a new
/// channel with no output while the previous one's process was exiting).
async fn watch(channel: &mut Channel<Msg>, interpreter: Interpreter) -> Result<Startup> {
    let (mut out, mut err, mut status) = (Vec::new(), Vec::new(), None);
    let deadline = tokio::time::Instant::now() + crate::ssh::helper::EXEC_TIMEOUT;
    loop {
        let overflow = out.len() + err.len() > MAX_STARTUP_OUTPUT;
        if let Some(ready @ Startup::Ready { .. }) = judge(interpreter, &out, &err, overflow) {
            return Ok(ready);
        }
        if overflow {
            break; // a relay that talks this much before it is ready will not be
        }
        let msg = tokio::time::timeout_at(deadline, channel.wait())
            .await
            .with_context(|| format!("the {} relay did not start in time", interpreter.name()))?;
        match msg {
            Some(ChannelMsg::Data { data }) => out.extend_from_slice(&data),
            Some(ChannelMsg::ExtendedData { data, .. }) => err.extend_from_slice(&data),
            Some(ChannelMsg::ExitStatus { exit_status }) => status = Some(exit_status),
            Some(ChannelMsg::Close) | None => break,
            Some(_) => {}
        }
    }
    // The shell's 127 says "missing" even where the words were lost.
    if out.is_empty() && err.is_empty() && status == Some(MISSING_STATUS) {
        return Ok(Startup::Missing);
    }
    Ok(match judge(interpreter, &out, &err, true).expect("judged once exited") {
        Startup::Broken(why) if status.is_some() => Startup::Broken(format!("{why} (exit status {})", status.unwrap())),
        startup => startup,
    })
}

/// Judge a relay's start from its stdout and stderr so far; `None` while it
/// has not said enough. Once `exited`, always an answer.
pub fn judge(interpreter: Interpreter, out: &[u8], err: &[u8], exited: bool) -> Option<Startup> {
    let stderr = || String::from_utf8_lossy(err).trim().replace('\n', " | ");
    if out.starts_with(MISSING.as_bytes()) {
        return Some(Startup::Missing);
    }
    let verdict = match interpreter {
        Interpreter::Perl | Interpreter::Python3 => out
            .iter()
            .position(|&b| b == b'\n')
            .map(|end| first_line(&String::from_utf8_lossy(&out[..end]), &out[end + 1..], &stderr())),
        Interpreter::Socat => socat_log(&String::from_utf8_lossy(err), out),
    };
    match verdict {
        None if exited => {
            let said = if err.is_empty() { String::from_utf8_lossy(out).trim().to_string() } else { stderr() };
            Some(Startup::Broken(if said.is_empty() { "exited without a word".into() } else { said }))
        }
        verdict => verdict,
    }
}

/// The perl or python3 relay's first line.
fn first_line(line: &str, rest: &[u8], stderr: &str) -> Startup {
    if let Some(why) = line.strip_prefix(FAILED) {
        return Startup::Unreachable(why.to_string());
    }
    match parse_ready(line) {
        Ok((local, peer)) => Startup::Ready { local, peer, read_ahead: rest.to_vec() },
        Err(_) if stderr.is_empty() => Startup::Broken(format!("said {line:?}")),
        Err(_) => Startup::Broken(stderr.to_string()),
    }
}

/// socat `-d -d` logs `N opening connection to AF=2 10.0.0.2:21`, then
/// `N successfully connected from local address AF=2 10.0.0.1:40312`, or an
/// `E connect(...): Connection refused` line.
fn socat_log(log: &str, out: &[u8]) -> Option<Startup> {
    let address_after = |marker: &str| -> Option<SocketAddr> {
        let line = log.lines().find(|l| l.contains(marker))?;
        let rest = line.split(marker).nth(1)?.trim();
        rest.split_once(' ').map_or(rest, |(_, addr)| addr).parse().ok()
    };
    if let (Some(peer), Some(local)) =
        (address_after("opening connection to AF="), address_after("successfully connected from local address AF="))
    {
        let local = SocketAddr::new(local.ip().to_canonical(), local.port());
        return Some(Startup::Ready { local, peer: peer.ip().to_canonical(), read_ahead: out.to_vec() });
    }
    let error = log.lines().find_map(|l| l.split_once("] E ").map(|(_, msg)| msg.trim().to_string()))?;
    Some(if error.starts_with("connect(") || error.contains("getaddrinfo") {
        Startup::Unreachable(error)
    } else {
        Startup::Broken(error)
    })
}

/// Parse the perl or python3 relay's ready line.
pub fn parse_ready(line: &str) -> Result<(SocketAddr, IpAddr)> {
    let fields: Vec<&str> =
        line.strip_prefix(READY).with_context(|| format!("unexpected relay output {line:?}"))?.split(' ').collect();
    let [addr, port, peer] = fields[..] else { bail!("unexpected relay output {line:?}") };
    let ip: IpAddr = addr.parse().with_context(|| format!("bad address in {line:?}"))?;
    let peer: IpAddr = peer.parse().with_context(|| format!("bad address in {line:?}"))?;
    let port: u16 = port.parse().with_context(|| format!("bad port in {line:?}"))?;
    Ok((SocketAddr::new(ip.to_canonical(), port), peer.to_canonical()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready(local: &str, peer: &str, read_ahead: &[u8]) -> Startup {
        Startup::Ready { local: local.parse().unwrap(), peer: peer.parse().unwrap(), read_ahead: read_ahead.to_vec() }
    }

    #[test]
    fn judges_the_perl_and_python_first_line() {
        let perl = Interpreter::Perl;
        assert_eq!(judge(perl, b"FTPSSH-RELAY 127.0.0.1 403", b"", false), None, "a line in the making");
        assert_eq!(
            judge(perl, b"FTPSSH-RELAY 127.0.0.1 40312 127.0.0.1\n220 ProFTPD", b"", false),
            Some(ready("127.0.0.1:40312", "127.0.0.1", b"220 ProFTPD"))
        );
        assert_eq!(
            judge(Interpreter::Python3, b"FTPSSH-RELAY ::ffff:10.250.0.2 40312 ::ffff:10.250.0.2\n", b"", false),
            Some(ready("10.250.0.2:40312", "10.250.0.2", b""))
        );
        assert_eq!(
            judge(perl, b"FTPSSH-RELAY-ERROR Connection refused\n", b"", true),
            Some(Startup::Unreachable("Connection refused".into()))
        );
        assert_eq!(judge(perl, b"FTPSSH-RELAY-MISSING\n", b"", true), Some(Startup::Missing));
        // Captured from a perl without IO::Socket::IP: it dies before printing anything.
        let died = b"Can't locate IO/Socket/IP.pm in @INC (you may need to install the IO::Socket::IP module)\n";
        assert!(matches!(judge(perl, b"", died, true), Some(Startup::Broken(why)) if why.contains("IO/Socket/IP.pm")));
        assert_eq!(judge(perl, b"", b"", true), Some(Startup::Broken("exited without a word".into())));
        assert!(matches!(judge(perl, b"FTPSSH-RELAY 1.2.3.4 99999 1.2.3.4\n", b"", false), Some(Startup::Broken(_))));
    }

    // Captured from socat 1.7.4.4 (Debian 12) run as `socat -d -d STDIO TCP:127.0.0.1:2121,reuseaddr`.
    const SOCAT_OK: &str = "\
2026/11/25 12:21:40 socat[10734] N reading from and writing to stdio
2026/11/25 12:21:40 socat[10734] N opening connection to AF=2 127.0.0.1:2121
2026/11/25 12:21:40 socat[10734] N successfully connected from local address AF=2 127.0.0.1:42864
";
    const SOCAT_REFUSED: &str = "\
2026/11/25 12:30:02 socat[11018] N reading from and writing to stdio
2026/11/25 12:30:02 socat[11018] N opening connection to AF=2 127.0.0.1:1
2026/11/25 12:30:02 socat[11018] E connect(5, AF=2 127.0.0.1:1, 16): Connection refused
2026/11/25 12:30:02 socat[11018] N exit(1)
";

    #[test]
    fn judges_the_socat_log() {
        let socat = Interpreter::Socat;
        assert_eq!(judge(socat, b"", &SOCAT_OK.as_bytes()[..120], false), None, "not connected yet");
        assert_eq!(
            judge(socat, b"220 hi", SOCAT_OK.as_bytes(), false),
            Some(ready("127.0.0.1:42864", "127.0.0.1", b"220 hi"))
        );
        let v6 = SOCAT_OK
            .replace("AF=2 127.0.0.1:2121", "AF=10 [::1]:2121")
            .replace("AF=2 127.0.0.1:42864", "AF=10 [::1]:42864");
        assert_eq!(judge(socat, b"", v6.as_bytes(), false), Some(ready("[::1]:42864", "::1", b"")));
        assert!(matches!(
            judge(socat, b"", SOCAT_REFUSED.as_bytes(), false),
            Some(Startup::Unreachable(why)) if why.contains("Connection refused")
        ));
        assert_eq!(judge(socat, b"FTPSSH-RELAY-MISSING\n", b"", true), Some(Startup::Missing));
    }

    #[test]
    fn scripts_fit_in_single_quotes() {
        assert!(!PERL.contains('\'') && !PYTHON.contains('\''));
        assert!(Interpreter::Perl.command("a;rm -rf /", 21).is_err());
        assert!(Interpreter::Perl.command("ftp.example.org", 21).unwrap().contains("ftp.example.org 21"));
        assert!(Interpreter::Socat.command("::1", 21).unwrap().contains("TCP:[::1]:21,reuseaddr"));
    }

    /// Run one relay's shell line here, as the SSH server would, towards `port` on loopback.
    fn spawn(interpreter: Interpreter, port: u16, path: Option<&str>) -> std::process::Child {
        let mut command = std::process::Command::new("/bin/sh");
        command.arg("-c").arg(interpreter.command("127.0.0.1", port).unwrap());
        if let Some(path) = path {
            command.env("PATH", path);
        }
        command
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// Every interpreter, as the SSH server would run it: it reports its own end,
    /// sets SO_REUSEADDR on the connection (a second listener may share its port),
    /// relays bytes both ways, and says clearly when it cannot connect or is missing.
    #[test]
    fn every_relay_reports_its_port_and_relays_bytes() {
        use std::io::{Read, Write};
        for interpreter in Interpreter::ALL {
            let name = interpreter.name();
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let mut child = spawn(interpreter, listener.local_addr().unwrap().port(), None);
            let (mut server, from) = listener.accept().unwrap();
            // The sshd side of the rule: a SO_REUSEADDR listener on P binds only if the relay set it too.
            let sshd = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            sshd.set_reuse_address(true).unwrap();
            sshd.bind(&from.into()).unwrap_or_else(|e| panic!("{name}: P not shareable: {e}"));
            server.write_all(b"220 hello\r\n").unwrap();
            child.stdin.as_mut().unwrap().write_all(b"QUIT\r\n").unwrap();
            drop(child.stdin.take());
            let mut got = Vec::new();
            server.read_to_end(&mut got).unwrap();
            assert_eq!(got, b"QUIT\r\n", "{name}: client to server");
            drop(server);
            let output = child.wait_with_output().unwrap();
            let startup = judge(interpreter, &output.stdout, &output.stderr, true);
            assert_eq!(startup, Some(ready(&from.to_string(), "127.0.0.1", b"220 hello\r\n")), "{name}");

            let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let output = spawn(interpreter, closed, None).wait_with_output().unwrap();
            let startup = judge(interpreter, &output.stdout, &output.stderr, true);
            assert!(
                matches!(&startup, Some(Startup::Unreachable(why)) if why.contains("refused")),
                "{name}: {startup:?}"
            );

            let output = spawn(interpreter, closed, Some("/nonexistent")).wait_with_output().unwrap();
            assert_eq!(judge(interpreter, &output.stdout, &output.stderr, true), Some(Startup::Missing), "{name}");
        }
    }
}
