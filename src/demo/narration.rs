//! The book's procedure told in plain words, one short paragraph per thing
//! that happened, with the real values of this run. Pure: events and
//! socket-table readings in, text out.

use std::time::Duration;

use crate::demo::run_facts::{ordinal, Facts, Tuple};
use crate::events::{Event, Via};
use crate::ftp::Dialect;

/// Width the paragraphs are wrapped to.
pub const WIDTH: usize = 96;

/// The paragraph for one event, or None for events not worth a paragraph
/// (most control lines: the RETR, 150, 226 and 425 are told, the login is not).
/// `facts` already includes `event`.
pub fn tell(event: &Event, facts: &Facts) -> Option<String> {
    let text = match event {
        Event::SshConnected { client, server } => format!(
            "The SSH connection. The client connected from its port C = {} to the SSH server {server}. Everything \
             below travels inside this one TCP connection, encrypted: on the network between the two hosts it is \
             the only connection there is.",
            client.port()
        ),
        Event::ControlOpened { via, proxy, ftp } => control(via, proxy.port(), proxy.ip().to_string(), *ftp),
        Event::DialectChosen { dialect, data_port } => dialect_text(*dialect, *data_port, facts),
        Event::ForwardListening { listen, .. } => format!(
            "The reverse forward (the book's -R). The client asked sshd to listen on {listen}, the address and port \
             the FTP server will connect to ({} = {}), and checked the SSH server's socket table: the LISTEN row \
             labelled {} is sshd's. A connection to it is carried back to the client inside the SSH connection.",
            facts.data_port_name(),
            listen.port(),
            facts.data_port_name()
        ),
        Event::Sent { line } if is_transfer(line) => format!(
            "The client sends `{line}` with neither PORT nor PASV before it: RFC 959's default data port. The server \
             will connect to the control connection's source, port {}.",
            facts.dialect.map_or_else(|| "U-1 or U".to_string(), |(_, p)| p.to_string())
        ),
        Event::DataAccepted { from, to, incarnation } => format!(
            "The data connection. The FTP server connected from its data source port S = {} to {to}, and sshd \
             handed the connection to the client through the SSH connection. Its 4-tuple is ({}, {}, {}, {}). This \
             is the {} incarnation of that 4-tuple in this run{}.",
            from.port(),
            from.ip(),
            from.port(),
            to.ip(),
            to.port(),
            ordinal(*incarnation),
            if *incarnation > 1 { ": the same four numbers as the transfer before, a new connection" } else { "" }
        ),
        Event::Received { line } if line.starts_with("226") => format!(
            "`{line}`: the server sent the whole file, and closed the data connection first. So it is the FTP \
             server's host that now keeps the 4-tuple in TIME_WAIT, for 60 s."
        ),
        Event::TransferDone { name, bytes, verified } => {
            format!("{name}: {bytes} bytes arrived{}.", if *verified { ", the size the server announced" } else { "" })
        }
        Event::FellBack { why, .. } => format!(
            "The default port will not do here ({why}). The client uses passive mode (EPSV/PASV) instead, still \
             inside SSH: sshd connects to the port the server announces. The book's procedure ends here for this \
             server."
        ),
        Event::StrayRefused { from, to, why, .. } => {
            format!("A connection from {from} to the forwarded port {to} was refused: {why}.")
        }
        _ => return time_wait_text(event).map(|text| wrap(&text, WIDTH)),
    };
    Some(wrap(&text, WIDTH))
}

/// The paragraphs of the book's last step: collisions and their remedies.
fn time_wait_text(event: &Event) -> Option<String> {
    Some(match event {
        Event::Collision { tuple, reply } => format!(
            "COLLISION. The server replied `{reply}`. It must connect from S to the same port again, so its \
             connection would have the 4-tuple{} that its kernel still holds in TIME_WAIT. With TCP timestamps off, \
             Linux refuses to reuse it until the 60 s are over. This is the book's \"works once, then fails\".",
            tuple.map(|t| format!(" {t}")).unwrap_or_default()
        ),
        // The wait's re-readings at 0 s are told by their Waiting.
        Event::TimeWaitLeft { tuple, left } if *left >= Duration::from_secs(1) => {
            format!("The server's timer says the TIME_WAIT of {tuple} has {:.1} s left.", left.as_secs_f64())
        }
        Event::Waiting { total, .. } if *total < Duration::from_secs(2) => format!(
            "The entry is still in the table at 0 s left (the kernel's timer wheel fires a little late): {:.1} s more.",
            total.as_secs_f64()
        ),
        Event::Waiting { total, .. } => format!(
            "Remedy: wait (the book's way). The client waits {:.1} s, the timer read in the SSH server's socket \
             table plus a small margin, and keeps the control connection.",
            total.as_secs_f64()
        ),
        Event::Reclaimed { tuple } => format!(
            "Remedy: reclaim (RFC 1337's \"TIME-WAIT assassination\"). sshd stopped listening on {} for a moment, \
             a helper sent a SYN from that port to the server's port {}, the same 4-tuple seen from our side; the \
             TIME_WAIT socket answered with an ACK, our half-open socket with a RST, and Linux dropped the entry. \
             sshd listens again, and the control connection is kept.",
            tuple.proxy,
            tuple.server_port.map_or("S".to_string(), |p| p.to_string())
        ),
        Event::Rotated { why } => format!(
            "Remedy: rotate. {why}: the client opens another control connection. It has a new proxy port P, so \
             the server will connect to a new port and the data connection has a new 4-tuple, which no TIME_WAIT \
             holds. The old 4-tuple stays in TIME_WAIT, unused."
        ),
        _ => return None,
    })
}

fn is_transfer(line: &str) -> bool {
    ["RETR ", "STOR ", "LIST", "NLST"].iter().any(|c| line.starts_with(c))
}

fn control(via: &Via, p: u16, ip: String, ftp: std::net::SocketAddr) -> String {
    let how = match via {
        Via::Relay(name) => format!(
            "A tiny {name} relay, started on the SSH server over the SSH connection, connected to the FTP server \
             {ftp} with SO_REUSEADDR set and reported its own port. So the proxy port P = {p} on {ip} is known \
             exactly; the book read it off netstat."
        ),
        Via::SocketTable => format!(
            "sshd connected to the FTP server {ftp} for the client (direct-tcpip, the book's -L). Its source port, \
             the proxy port P = {p} on {ip}, was read off the SSH server's socket table before and after."
        ),
        Via::Direct => {
            return format!("sshd connected to the FTP server {ftp} for the client (passive mode: P is not needed).")
        }
    };
    format!(
        "The control connection. The FTP client speaks FTP inside the SSH connection; on the SSH server's host, \
         the connection to the FTP server is a local one. {how} The FTP server sees its client at port P = {p}: \
         the rows labelled P."
    )
}

fn dialect_text(dialect: Dialect, data_port: u16, facts: &Facts) -> String {
    let p = facts.p().map_or("P".to_string(), |p| p.to_string());
    match dialect {
        Dialect::ProFtpd => format!(
            "Where the server will connect back. The greeting names ProFTPD. Given neither PORT nor PASV, RFC 959 \
             says a server connects to the client's control port U, but ProFTPD connects to U-1. Here U = P = {p}, \
             so the data will come to U-1 = {data_port}."
        ),
        Dialect::Rfc959 => format!(
            "Where the server will connect back. An RFC 959 server, given neither PORT nor PASV, connects to the \
             client's own control port U. Here U = P = {data_port}: sshd must listen on the very port of an \
             established connection, which Linux allows only because the relay set SO_REUSEADDR."
        ),
    }
}

/// After a transfer: the TIME_WAIT entry the server holds, as its socket table shows it.
pub fn time_wait_held(tuple: &Tuple, incarnation: u32, left: Option<Duration>) -> String {
    let text = match left {
        Some(left) => format!(
            "TIME_WAIT. The FTP server's host now holds the {} incarnation of {tuple} in TIME_WAIT (the row \
             labelled S). Its timer, read on the server once a second ({:.1} s left at first):",
            ordinal(incarnation),
            left.as_secs_f64()
        ),
        None => format!(
            "TIME_WAIT. No TIME_WAIT row of {tuple} is visible in the SSH server's socket table: the FTP server \
             is on another host (or not Linux), so its timer cannot be read from here."
        ),
    };
    wrap(&text, WIDTH)
}

/// One reading of the countdown.
pub fn countdown_line(tuple: &Tuple, left: Duration) -> String {
    format!("    TIME_WAIT {tuple}: {:.1} s left", left.as_secs_f64())
}

/// Why the next transfer on the same 4-tuple did not collide.
pub fn no_collision(tuple_changed: bool, timestamps: Option<bool>) -> String {
    let text = if tuple_changed {
        "No collision, and none will come: the server's data source port S changed, so each data connection \
         has a new 4-tuple. Collisions need a server with a fixed data source port (ProFTPD with RootRevoke off, \
         servers using port 20)."
            .to_string()
    } else {
        let why = match timestamps {
            Some(true) => "TCP timestamps are on on the SSH server's host (net.ipv4.tcp_timestamps = 1)",
            Some(false) => "the FTP server's host is not the SSH server's (whose TCP timestamps are off)",
            None => "TCP timestamps are probably on on the FTP server's host",
        };
        format!(
            "No collision: the same 4-tuple was used again at once, while in TIME_WAIT. Linux allows that when \
             the connection carries TCP timestamps, which tell old segments from new ones; here {why}. With \
             timestamps off (scripts/lab timestamps off) the next transfer would get a 425."
        )
    };
    wrap(&text, WIDTH)
}

/// What a remedy cost, measured.
pub fn cost(remedy: &str, took: Duration, what: &str) -> String {
    wrap(&format!("Cost of {remedy}: {:.3} s ({what}).", took.as_secs_f64()), WIDTH)
}

/// Greedy word wrap; a word longer than the width stays whole.
pub fn wrap(text: &str, width: usize) -> String {
    let mut out = String::new();
    let mut line = 0;
    for word in text.split_whitespace() {
        let len = word.chars().count();
        if line > 0 && line + 1 + len > width {
            out.push('\n');
            line = 0;
        } else if line > 0 {
            out.push(' ');
            line += 1;
        }
        out.push_str(word);
        line += len;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn told(events: &[Event]) -> String {
        let mut facts = Facts::default();
        let mut out = Vec::new();
        for e in events {
            facts.see(e);
            out.extend(tell(e, &facts));
        }
        out.join("\n\n").replace('\n', " ")
    }

    #[test]
    fn names_the_real_values() {
        let text = told(&[
            Event::SshConnected { client: a("10.250.0.1:51000"), server: a("10.250.0.2:22") },
            Event::ControlOpened { via: Via::Relay("perl"), proxy: a("127.0.0.1:40000"), ftp: a("127.0.0.1:2021") },
            Event::DialectChosen { dialect: Dialect::ProFtpd, data_port: 39999 },
            Event::ForwardListening { listen: a("127.0.0.1:39999"), spare: None },
            Event::Sent { line: "USER x".into() },
            Event::Sent { line: "RETR small.bin".into() },
            Event::DataAccepted { from: a("127.0.0.1:2020"), to: a("127.0.0.1:39999"), incarnation: 2 },
            Event::Received { line: "226 Transfer complete".into() },
        ]);
        for want in [
            "port C = 51000",
            "P = 40000",
            "U-1 = 39999",
            "listen on 127.0.0.1:39999",
            "`RETR small.bin`",
            "S = 2020",
            "(127.0.0.1, 2020, 127.0.0.1, 39999)",
            "2nd incarnation",
            "`226 Transfer complete`",
        ] {
            assert!(text.contains(want), "{want:?} not in {text}");
        }
        assert!(!text.contains("USER"), "the login is not narrated: {text}");
    }

    #[test]
    fn wraps_words() {
        assert_eq!(wrap("aa bb cc", 5), "aa bb\ncc");
        assert_eq!(wrap("aaaaaaa b", 3), "aaaaaaa\nb");
        assert_eq!(wrap("", 3), "");
    }

    #[test]
    fn countdown_and_why_no_collision() {
        let t = Tuple { from: a("127.0.0.1:2020"), to: a("127.0.0.1:39999") };
        assert_eq!(
            countdown_line(&t, Duration::from_millis(58_340)),
            "    TIME_WAIT 127.0.0.1:2020 -> 127.0.0.1:39999: 58.3 s left"
        );
        assert!(no_collision(false, Some(true)).replace('\n', " ").contains("net.ipv4.tcp_timestamps = 1"));
        assert!(no_collision(true, None).contains("changed"));
    }
}
