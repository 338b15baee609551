//! Who made a forwarded connection: its owner on the SSH server's host.
//!
//! sshd tells us the address and port a data connection came from, and any process on the
//! SSH server's host can connect from the FTP server's address (127.0.0.1, or the host's own):
//! another user who reads the socket table sees our control connection, so P, and can race
//! the FTP server to sshd's listener (RFC 2577's port stealing). The kernel knows more. When
//! the connecting socket is on the SSH server's host, its row (the 4-tuple from the
//! originator to the forwarded port) carries the uid that made it, and an inode while a
//! process still holds it. A perl process started once per session looks each one up by
//! netlink (sock_diag, as the relay does: [`crate::tcp::tuple_state`]), one line in, one line out.
//! Where no perl runs, a shell of its own reads the rows of the forwarded port from
//! `/proc/net/tcp{,6}` (slower: the kernel walks its whole socket table for each read).
//!
//! What a row can say ([`Seen`]): made by a process that holds it (its uid), made on this
//! host but let go already (a socket closed before we looked: its owner is gone from the
//! row), or not on this host at all (the FTP server is another host). The [`super::gate`]
//! decides what each means.

use anyhow::{bail, Context, Result};
use russh::client::Msg;
use russh::ChannelStream;
use tokio::io::AsyncWriteExt;

use crate::ssh::helper::{Exec, Helper};
use crate::ssh::shell::Shell;
use crate::tcp::table;

/// Reads `user NAME` (answers its uid, or `-`) and `LA LP RA RP` lines (answers the socket's
/// state, uid and inode, or `0 - -`). Its first line gives its own uid and the lowest port an
/// unprivileged process may bind on this host. No single quotes: it travels inside '...'.
const PERL: &str = concat!(
    r#"use strict; use Socket qw(AF_INET6 inet_aton inet_pton); $| = 1;
"#,
    crate::tcp::tuple_state::perl_tuple_state!(),
    r#"my $low = 1024; if (open(my $f, "<", "/proc/sys/net/ipv4/ip_unprivileged_port_start")) { $low = 0 + <$f> }
print "FTPSSH-ORIGIN ready $< $low\n";
while (my $line = <STDIN>) { chomp $line;
  if ($line =~ /^user (.+)$/) { my $uid = (getpwnam($1))[2]; print "FTPSSH-ORIGIN user ", defined $uid ? $uid : "-", "\n"; next }
  my ($st, $id, $uid, $ino) = tuple_sock(split " ", $line);
  printf "FTPSSH-ORIGIN %d %s %s\n", $st, defined $uid ? $uid : "-", defined $ino ? $ino : "-";
}"#
);

/// What the SSH server's socket table says of a connection's originating socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// A process on the SSH server's host holds it; it was made by `uid`.
    Held {
        /// The socket's owner.
        uid: u32,
    },
    /// It is on the SSH server's host, but no process holds it any more (closed already):
    /// its row no longer names who made it.
    LetGo,
    /// There is no such socket on the SSH server's host: it came from another host.
    Elsewhere,
}

/// How the SSH server's table is asked.
enum Way {
    Perl(ChannelStream<Msg>),
    Shell(Shell),
}

/// The process on the SSH server that looks sockets up, and what it said at start.
pub struct Origin {
    way: Way,
    /// The SSH user's uid on that host.
    pub own_uid: u32,
    /// Ports below this one need privilege to bind there (`ip_unprivileged_port_start`).
    pub privileged_below: u16,
}

impl Helper for Origin {
    /// Start it: perl, else a shell.
    async fn start(on: &impl Exec) -> Result<Origin> {
        match Self::start_perl(on).await {
            Ok(origin) => Ok(origin),
            Err(e) => {
                tracing::debug!("origin check without perl ({e:#}): the socket table through a shell");
                let mut shell = Shell::start(on).await?;
                let out = shell
                    .run("id -u; cat /proc/sys/net/ipv4/ip_unprivileged_port_start 2>/dev/null || echo 1024")
                    .await?;
                let line = format!("FTPSSH-ORIGIN ready {}", out.split_whitespace().collect::<Vec<_>>().join(" "));
                let (own_uid, privileged_below) = parse_ready(&line)
                    .with_context(|| format!("unexpected answer {out:?} from the SSH server's shell"))?;
                Ok(Origin { way: Way::Shell(shell), own_uid, privileged_below })
            }
        }
    }
}

impl Origin {
    async fn start_perl(on: &impl Exec) -> Result<Origin> {
        let channel = on.exec_channel(&format!("exec perl -e '{PERL}'")).await?;
        let mut stream = channel.into_stream();
        let line = read_line(&mut stream).await?;
        let (own_uid, privileged_below) = parse_ready(&line)
            .with_context(|| format!("could not start the origin check on the SSH server: {line:?}"))?;
        Ok(Origin { way: Way::Perl(stream), own_uid, privileged_below })
    }

    /// The uid of the account `name` on the SSH server's host, if it has one.
    pub async fn uid_of(&mut self, name: &str) -> Result<Option<u32>> {
        if name.contains(['\n', '\r']) {
            return Ok(None);
        }
        let answer = match &mut self.way {
            Way::Perl(stream) => ask(stream, &format!("user {name}\n")).await?,
            Way::Shell(shell) => {
                let quoted = format!("'{}'", name.replace('\'', r"'\''"));
                let out = shell.run(&format!("id -u -- {quoted} 2>/dev/null || echo -")).await?;
                format!("user {}", out.trim())
            }
        };
        match answer.strip_prefix("user ") {
            Some("-") => Ok(None),
            Some(uid) => Ok(Some(uid.parse().with_context(|| format!("unexpected uid {uid:?}"))?)),
            None => bail!("unexpected answer {answer:?} from the origin check"),
        }
    }

    /// Look up the socket `from` -> `to` (as sshd reported the connection).
    pub async fn look(&mut self, from: std::net::SocketAddr, to: std::net::SocketAddr) -> Result<Seen> {
        Ok(on_this_host(self.look_up(from, to).await?, from))
    }

    async fn look_up(&mut self, from: std::net::SocketAddr, to: std::net::SocketAddr) -> Result<Seen> {
        match &mut self.way {
            Way::Perl(stream) => {
                let line = format!("{} {} {} {}\n", from.ip(), from.port(), to.ip(), to.port());
                let answer = ask(stream, &line).await?;
                parse_seen(&answer).with_context(|| format!("unexpected answer {answer:?} from the origin check"))
            }
            Way::Shell(shell) => {
                // Only the rows of the forwarded port: a busy host's table is megabytes.
                let rows = table::read_rows_with_port(to.port());
                Ok(seen_in_table(&shell.run(&rows).await?, from, to))
            }
        }
    }
}

/// A loopback address is this host's whatever its table says: a connection from one whose
/// row is gone was closed already (its end closed second, so no TIME_WAIT row stays), not
/// made elsewhere.
fn on_this_host(seen: Seen, from: std::net::SocketAddr) -> Seen {
    match seen {
        Seen::Elsewhere if from.ip().to_canonical().is_loopback() => Seen::LetGo,
        seen => seen,
    }
}

async fn ask(stream: &mut ChannelStream<Msg>, line: &str) -> Result<String> {
    stream.write_all(line.as_bytes()).await.context("writing to the origin check")?;
    stream.flush().await?;
    let answer = read_line(stream).await?;
    answer.strip_prefix("FTPSSH-ORIGIN ").map(str::to_string).with_context(|| format!("unexpected {answer:?}"))
}

/// The row of `from` -> `to` in `/proc/net/tcp` text, as the perl answers it.
fn seen_in_table(text: &str, from: std::net::SocketAddr, to: std::net::SocketAddr) -> Seen {
    let canonical = |a: std::net::SocketAddr| std::net::SocketAddr::new(a.ip().to_canonical(), a.port());
    let (from, to) = (canonical(from), canonical(to));
    match table::parse(text).into_iter().find(|e| e.local == from && e.remote == to) {
        Some(e) if e.inode != 0 => Seen::Held { uid: e.uid },
        Some(_) => Seen::LetGo,
        None => Seen::Elsewhere,
    }
}

async fn read_line(stream: &mut ChannelStream<Msg>) -> Result<String> {
    crate::ssh::helper::answer(stream, "the origin check on the SSH server").await
}

/// `FTPSSH-ORIGIN ready UID LOW`.
fn parse_ready(line: &str) -> Option<(u32, u16)> {
    let mut words = line.strip_prefix("FTPSSH-ORIGIN ready ")?.split(' ');
    let uid = words.next()?.parse().ok()?;
    // A port start above 65535 would make every port privileged; the sysctl allows none.
    let low = words.next()?.parse::<u32>().ok()?.min(u32::from(u16::MAX));
    Some((uid, low as u16))
}

/// `STATE UID INODE` (after the prefix): a state of 0 is no socket; an inode of 0 is a
/// socket no process holds (closed, or a TIME_WAIT-like remnant whose uid reads 0).
fn parse_seen(answer: &str) -> Option<Seen> {
    let mut words = answer.split(' ');
    let state: u32 = words.next()?.parse().ok()?;
    let (uid, inode) = (words.next()?, words.next()?);
    if state == 0 {
        return Some(Seen::Elsewhere);
    }
    match (uid.parse::<u32>(), inode.parse::<u64>()) {
        (Ok(uid), Ok(inode)) if inode != 0 => Some(Seen::Held { uid }),
        _ => Some(Seen::LetGo),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_fits_in_single_quotes() {
        assert!(!PERL.contains('\''));
    }

    #[test]
    fn a_loopback_originator_is_never_elsewhere() {
        let (lo, far) = ("127.0.0.1:2020".parse().unwrap(), "10.250.1.2:2020".parse().unwrap());
        let mapped: std::net::SocketAddr = "[::ffff:127.0.0.1]:2020".parse().unwrap();
        assert_eq!(on_this_host(Seen::Elsewhere, lo), Seen::LetGo);
        assert_eq!(on_this_host(Seen::Elsewhere, mapped), Seen::LetGo);
        assert_eq!(on_this_host(Seen::Elsewhere, far), Seen::Elsewhere);
        assert_eq!(on_this_host(Seen::Held { uid: 7 }, lo), Seen::Held { uid: 7 });
    }

    #[test]
    fn rows_of_the_table_say_the_same() {
        // tcp rows: a connection held by uid 65534, one let go (inode 0), a TIME_WAIT.
        let text = "   7: 0100007F:8DBA 0100007F:8C05 01 00000000:00000000 00:00000000 00000000 65534        0 30521 2 0 20 0 0 10 -1\n\
                    8: 0100007F:8DC0 0100007F:8C05 05 00000000:00000000 00:00000000 00000000     0        0 0 3 0\n";
        let at = |p: u16| std::net::SocketAddr::from(([127, 0, 0, 1], p));
        assert_eq!(seen_in_table(text, at(0x8DBA), at(0x8C05)), Seen::Held { uid: 65534 });
        assert_eq!(seen_in_table(text, at(0x8DC0), at(0x8C05)), Seen::LetGo);
        assert_eq!(seen_in_table(text, at(0x8DC1), at(0x8C05)), Seen::Elsewhere);
        let mapped: std::net::SocketAddr = "[::ffff:127.0.0.1]:36282".parse().unwrap();
        assert_eq!(seen_in_table(text, mapped, at(0x8C05)), Seen::Held { uid: 65534 });
    }

    #[test]
    fn answers_parse() {
        assert_eq!(parse_ready("FTPSSH-ORIGIN ready 1000 1024"), Some((1000, 1024)));
        assert_eq!(parse_ready("FTPSSH-ORIGIN ready 1000 99999999"), Some((1000, 65535)));
        assert_eq!(parse_ready("ready 1000 1024"), None);
        assert_eq!(parse_seen("1 65534 31201"), Some(Seen::Held { uid: 65534 }));
        assert_eq!(parse_seen("5 0 0"), Some(Seen::LetGo), "a closed socket's remnant says uid 0: no proof");
        assert_eq!(parse_seen("0 - -"), Some(Seen::Elsewhere));
        assert_eq!(parse_seen("x"), None);
    }

    /// The script itself, run here: a connection held by this process is ours (our uid and an
    /// inode), one whose socket was closed is let go, a 4-tuple nobody has is elsewhere.
    #[test]
    fn the_script_tells_held_let_go_and_elsewhere() {
        use std::net::{TcpListener, TcpStream};
        let mut script = crate::ssh::helper::Script::start(PERL);
        assert!(parse_ready(script.answer().trim_end()).is_some());
        let mut ask = |line: String| script.say(line.trim_end()).trim_end().to_string();
        let me = nix::unistd::geteuid().as_raw();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let (from, to) = (client.local_addr().unwrap(), server.local_addr().unwrap());
        let line = format!("{} {} {} {}\n", from.ip(), from.port(), to.ip(), to.port());
        let held = ask(line.clone());
        assert_eq!(parse_seen(held.strip_prefix("FTPSSH-ORIGIN ").unwrap()), Some(Seen::Held { uid: me }), "{held}");
        drop(client);
        std::thread::sleep(std::time::Duration::from_millis(50));
        let gone = ask(line);
        assert_eq!(parse_seen(gone.strip_prefix("FTPSSH-ORIGIN ").unwrap()), Some(Seen::LetGo), "{gone}");
        let nobody = ask(format!("{} 9 {} {}\n", from.ip(), to.ip(), to.port()));
        assert_eq!(parse_seen(nobody.strip_prefix("FTPSSH-ORIGIN ").unwrap()), Some(Seen::Elsewhere), "{nobody}");
        assert_eq!(ask("user root\n".into()), "FTPSSH-ORIGIN user 0");
        assert_eq!(ask("user no-such-account-here\n".into()), "FTPSSH-ORIGIN user -");
        drop(server);
        script.finish();
    }
}
