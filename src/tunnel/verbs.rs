//! An outside client's command lines, sorted by what the tunnel does with them:
//! answer them itself (the login, the data connection's address, AUTH), carry a
//! transfer through the built-in data paths, or pass them on to the FTP server.
//! Pure functions over the text, tested on lines captured from real clients.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::ftp::Command;

/// Which way a transfer's bytes go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the server to the client (RETR, LIST, NLST, MLSD).
    Down,
    /// From the client to the server (STOR, APPE).
    Up,
}

/// What one client line asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Verb {
    /// `USER name`
    User(String),
    /// `PASS secret`
    Pass(String),
    /// `AUTH TLS`, `AUTH SSL`: refused, the connection is inside SSH already.
    Auth,
    /// `PASV`
    Pasv,
    /// `EPSV`, `EPSV ALL`, `EPSV 1`
    Epsv,
    /// `PORT h1,h2,h3,h4,p1,p2` or `EPRT |af|addr|port|`: where the client listens.
    Active(Result<SocketAddr, String>),
    /// A transfer command, as it goes to the server.
    Transfer(Command, Direction),
    /// A command this tunnel does not carry: STOU (names its file in a reply), REIN (logs out),
    /// LPRT and LPSV (RFC 1639's long addresses: passed on, they would move the data outside
    /// SSH; clients fall back to EPRT/EPSV or PORT/PASV).
    Unsupported(String),
    /// `QUIT`
    Quit,
    /// `ABOR`
    Abor,
    /// `REST n`: the next transfer starts at byte n. Goes to the server through the link, which
    /// sends it again if that transfer falls back to passive.
    Rest(u64),
    /// Anything else: the client's line, to the server as it came.
    Other(String),
}

/// Telnet's IAC sequences (RFC 959 4.1.3: a client sends IAC IP, IAC DM before ABOR) are not
/// part of the command. The DM goes as TCP urgent data, which the socket takes out of the
/// stream: an IAC may be followed by the command's first letter, which stays.
pub fn strip_telnet(line: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(line.len());
    let mut bytes = line.iter().peekable();
    while let Some(&b) = bytes.next() {
        if b == 0xff {
            bytes.next_if(|&&command| command >= 0xf0); // telnet's command bytes are 240-255
        } else {
            out.push(b);
        }
    }
    out
}

/// Sort one line (without its CRLF).
pub fn parse(line: &str) -> Verb {
    // Whatever a server might take for the verb's end (a tab too) ends it here: a `PORT` must
    // never pass as some other command.
    let line = line.trim_end_matches(['\r', '\n']).trim_start();
    let (verb, arg) = match line.split_once(|c: char| c.is_ascii_whitespace()) {
        Some((v, a)) => (v.to_ascii_uppercase(), Some(a.to_string())),
        None => (line.to_ascii_uppercase(), None),
    };
    let path = || arg.clone().unwrap_or_default();
    match verb.as_str() {
        "USER" => Verb::User(path()),
        "PASS" => Verb::Pass(path()),
        "AUTH" => Verb::Auth,
        "PASV" => Verb::Pasv,
        "EPSV" => Verb::Epsv,
        "PORT" => Verb::Active(parse_port(&path())),
        "EPRT" => Verb::Active(parse_eprt(&path())),
        "RETR" => Verb::Transfer(Command::Retr(path()), Direction::Down),
        "LIST" => Verb::Transfer(Command::List(arg), Direction::Down),
        "NLST" => Verb::Transfer(Command::Nlst(arg), Direction::Down),
        "MLSD" => Verb::Transfer(Command::Mlsd(arg), Direction::Down),
        "STOR" => Verb::Transfer(Command::Stor(path()), Direction::Up),
        "APPE" => Verb::Transfer(Command::Appe(path()), Direction::Up),
        "STOU" | "REIN" | "LPRT" | "LPSV" => Verb::Unsupported(verb),
        // Our relay's own lines (hold, release, watch): taken by it, never a client's to send.
        v if v.starts_with("FTPSSH-") => Verb::Unsupported(verb),
        "QUIT" => Verb::Quit,
        "ABOR" => Verb::Abor,
        "REST" => {
            match arg.as_deref().map(str::trim).filter(|a| !a.is_empty() && a.bytes().all(|b| b.is_ascii_digit())) {
                Some(at) => at.parse().map_or_else(|_| Verb::Other(line.to_string()), Verb::Rest),
                None => Verb::Other(line.to_string()),
            }
        }
        _ => Verb::Other(line.to_string()),
    }
}

/// `PORT h1,h2,h3,h4,p1,p2` (RFC 959).
pub fn parse_port(arg: &str) -> Result<SocketAddr, String> {
    let numbers: Vec<u8> = arg
        .split(',')
        .map(|n| n.trim().parse::<u8>())
        .collect::<Result<_, _>>()
        .map_err(|_| format!("bad PORT argument {arg:?}"))?;
    let [a, b, c, d, hi, lo] = numbers[..] else { return Err(format!("bad PORT argument {arg:?}")) };
    Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::new(a, b, c, d)), u16::from_be_bytes([hi, lo])))
}

/// `EPRT |1|127.0.0.1|5282|` or `EPRT |2|::1|5282|` (RFC 2428); any delimiter.
pub fn parse_eprt(arg: &str) -> Result<SocketAddr, String> {
    let bad = || format!("bad EPRT argument {arg:?}");
    let delim = arg.chars().next().ok_or_else(bad)?;
    let fields: Vec<&str> = arg.split(delim).collect();
    let [_, af, addr, port, _] = fields[..] else { return Err(bad()) };
    let ip: IpAddr = addr.parse().map_err(|_| bad())?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    match (af, ip) {
        ("1", IpAddr::V4(_)) | ("2", IpAddr::V6(_)) => Ok(SocketAddr::new(ip, port)),
        _ => Err(bad()),
    }
}

/// The 227 reply for a listener on `at` (an IPv4 loopback address).
pub fn pasv_reply(at: SocketAddr) -> String {
    let ip = match at.ip() {
        IpAddr::V4(v4) => v4,
        IpAddr::V6(_) => Ipv4Addr::LOCALHOST,
    };
    let [a, b, c, d] = ip.octets();
    let [hi, lo] = at.port().to_be_bytes();
    format!("227 Entering Passive Mode ({a},{b},{c},{d},{hi},{lo}).")
}

/// The 229 reply for a listener on port `port`.
pub fn epsv_reply(port: u16) -> String {
    format!("229 Entering Extended Passive Mode (|||{port}|)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_captured_from_clients() {
        // lftp 4.9 (default settings), curl 7.88, inetutils ftp 2.4, tnftp 20210827.
        assert_eq!(parse("AUTH TLS"), Verb::Auth);
        assert_eq!(parse("USER ftpuser"), Verb::User("ftpuser".into()));
        assert_eq!(parse("PASS a b"), Verb::Pass("a b".into()));
        assert_eq!(parse("EPSV"), Verb::Epsv);
        assert_eq!(parse("epsv ALL"), Verb::Epsv);
        assert_eq!(parse("LIST"), Verb::Transfer(Command::List(None), Direction::Down));
        assert_eq!(parse("LIST -la"), Verb::Transfer(Command::List(Some("-la".into())), Direction::Down));
        assert_eq!(
            parse("RETR name with spaces.bin"),
            Verb::Transfer(Command::Retr("name with spaces.bin".into()), Direction::Down)
        );
        assert_eq!(parse("STOR up.bin"), Verb::Transfer(Command::Stor("up.bin".into()), Direction::Up));
        assert_eq!(parse("MLSD"), Verb::Transfer(Command::Mlsd(None), Direction::Down));
        assert_eq!(parse("REST 100"), Verb::Rest(100));
        assert_eq!(parse("rest 0"), Verb::Rest(0));
        // Not a byte offset: the server's to answer.
        assert_eq!(parse("REST +5"), Verb::Other("REST +5".into()));
        assert_eq!(parse("REST"), Verb::Other("REST".into()));
        assert_eq!(parse("REST 99999999999999999999"), Verb::Other("REST 99999999999999999999".into()));
        assert_eq!(parse("TYPE A"), Verb::Other("TYPE A".into()));
        assert_eq!(parse("STOU"), Verb::Unsupported("STOU".into()));
        assert_eq!(parse("ftpssh-hold 1 2 3 4 0"), Verb::Unsupported("FTPSSH-HOLD".into()));
        assert_eq!(parse("FTPSSH-WATCH a 1 b 2"), Verb::Unsupported("FTPSSH-WATCH".into()));
        assert_eq!(parse("LPRT 4,4,127,0,0,1,2,4,1"), Verb::Unsupported("LPRT".into()));
        assert_eq!(parse("lpsv"), Verb::Unsupported("LPSV".into()));
        assert_eq!(parse(" port\t127,0,0,1,156,64"), Verb::Active(Ok("127.0.0.1:40000".parse().unwrap())));
        assert_eq!(parse("QUIT"), Verb::Quit);
    }

    #[test]
    fn port_and_eprt() {
        assert_eq!(parse_port("127,0,0,1,156,64"), Ok("127.0.0.1:40000".parse().unwrap()));
        assert_eq!(parse_port("10,250,0,2,0,21"), Ok("10.250.0.2:21".parse().unwrap()));
        assert!(parse_port("127,0,0,1,256,1").is_err());
        assert!(parse_port("127,0,0,1,1").is_err());
        assert_eq!(parse_eprt("|1|127.0.0.1|5282|"), Ok("127.0.0.1:5282".parse().unwrap()));
        assert_eq!(parse_eprt("|2|::1|5282|"), Ok("[::1]:5282".parse().unwrap()));
        assert_eq!(parse_eprt("!1!127.0.0.1!5282!"), Ok("127.0.0.1:5282".parse().unwrap()));
        assert!(parse_eprt("|2|127.0.0.1|5282|").is_err());
        assert!(parse_eprt("|1|127.0.0.1|99999|").is_err());
        assert!(parse_eprt("").is_err());
    }

    #[test]
    fn passive_replies() {
        assert_eq!(pasv_reply("127.0.0.1:40000".parse().unwrap()), "227 Entering Passive Mode (127,0,0,1,156,64).");
        assert_eq!(epsv_reply(40000), "229 Entering Extended Passive Mode (|||40000|)");
    }

    #[test]
    fn telnet_interrupt_before_abor() {
        assert_eq!(strip_telnet(b"\xff\xf4\xff\xf2ABOR"), b"ABOR");
        assert_eq!(strip_telnet(b"RETR x"), b"RETR x");
        // lftp's ABOR: IAC IP IAC, with the DM taken out of the stream as urgent data.
        assert_eq!(strip_telnet(b"\xff\xf4\xffABOR\r\n"), b"ABOR\r\n");
    }
}
