//! A tiny blocking FTP client for probing what real servers do on the wire, independent of the
//! crate under test: raw commands, raw replies, and sockets with `SO_REUSEADDR` so a test may
//! listen on its own control connection's port (the RFC 959 default data port).
//!
//! ```ignore
//! let mut ctl = Control::connect_reuseaddr("127.0.0.1:2121".parse()?)?;
//! ctl.login("user", "password")?;
//! let data = listen_reuseaddr(ctl.local)?; // same address and port as the control socket
//! let reply = ctl.cmd("RETR small.bin")?;
//! ```
#![allow(dead_code)]

use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

/// How long a reply may take. ProFTPD holds `226` until the client closes the data
/// connection, and a slow login (PAM) takes a second or two: 15 s covers both.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a data connection may take to be connected or read.
pub const DATA_TIMEOUT: Duration = Duration::from_secs(15);
/// Interval between two looks at non-blocking listeners in [`accept_any`].
const ACCEPT_POLL: Duration = Duration::from_millis(10);

/// One FTP reply, multi-line replies kept whole (RFC 959 section 4.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    /// Every line as received, without the line end.
    pub lines: Vec<String>,
}

impl Reply {
    /// The text of the last line after the code, e.g. `Use PORT or PASV first.`.
    pub fn text(&self) -> &str {
        self.lines.last().and_then(|l| l.get(4..)).unwrap_or("")
    }
}

impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.lines.join(" | "))
    }
}

/// Reads one reply. A line `ddd-` opens a multi-line reply that ends at a line starting with
/// the same code and a space.
pub fn read_reply(reader: &mut impl BufRead) -> io::Result<Reply> {
    let mut lines = Vec::new();
    let mut code: Option<u16> = None; // set by the first line of a multi-line reply
    loop {
        let mut raw = Vec::new();
        if reader.read_until(b'\n', &mut raw)? == 0 {
            return Err(io::Error::new(
                ErrorKind::UnexpectedEof,
                format!("connection closed inside a reply; got {lines:?}"),
            ));
        }
        let line = String::from_utf8_lossy(&raw).trim_end_matches(['\r', '\n']).to_owned();
        let head = line.as_bytes();
        let this_code = (head.len() >= 3 && head[..3].iter().all(u8::is_ascii_digit))
            .then(|| line[..3].parse::<u16>().expect("three digits"));
        let sep = head.get(3).copied();
        lines.push(line);
        match (code, this_code) {
            (None, Some(c)) if sep == Some(b'-') => code = Some(c),
            (None, Some(c)) => return Ok(Reply { code: c, lines }),
            (None, None) => return Err(io::Error::new(ErrorKind::InvalidData, format!("not a reply: {lines:?}"))),
            (Some(c), Some(t)) if t == c && sep != Some(b'-') => return Ok(Reply { code: c, lines }),
            (Some(_), _) => {} // a continuation line
        }
    }
}

/// A control connection.
pub struct Control {
    reader: BufReader<TcpStream>,
    /// Our end, as the server sees its peer: U in RFC 959's terms.
    pub local: SocketAddr,
    pub peer: SocketAddr,
    /// The server's greeting.
    pub greeting: Reply,
}

impl Control {
    /// Connects from an ephemeral port of the address that routes to `server` (the loopback
    /// address for a loopback server), with `SO_REUSEADDR` set before `connect` so that a
    /// listener may later share the local port
    /// (docs/real-systems.md#the-bind-rule-behind-the-reverse-forward), then reads the greeting.
    pub fn connect_reuseaddr(server: SocketAddr) -> io::Result<Control> {
        let socket = Socket::new(Domain::for_address(server), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        let local_ip = if server.ip().is_loopback() {
            server.ip()
        } else if server.is_ipv4() {
            std::net::Ipv4Addr::UNSPECIFIED.into()
        } else {
            std::net::Ipv6Addr::UNSPECIFIED.into()
        };
        socket.bind(&SocketAddr::new(local_ip, 0).into())?;
        socket.connect_timeout(&server.into(), REPLY_TIMEOUT)?;
        let stream: TcpStream = socket.into();
        stream.set_read_timeout(Some(REPLY_TIMEOUT))?;
        let local = stream.local_addr()?;
        let peer = stream.peer_addr()?;
        let mut reader = BufReader::new(stream);
        let greeting = read_reply(&mut reader)?;
        Ok(Control { reader, local, peer, greeting })
    }

    /// Sends one command line (CRLF added).
    pub fn send(&mut self, line: &str) -> io::Result<()> {
        self.reader.get_mut().write_all(format!("{line}\r\n").as_bytes())
    }

    /// Reads the next reply.
    pub fn reply(&mut self) -> io::Result<Reply> {
        read_reply(&mut self.reader)
    }

    /// Sends a command and reads its reply.
    pub fn cmd(&mut self, line: &str) -> io::Result<Reply> {
        self.send(line)?;
        self.reply()
    }

    /// `USER` then, unless the server is content already, `PASS`; fails unless it ends in 230.
    pub fn login(&mut self, user: &str, password: &str) -> io::Result<()> {
        let mut reply = self.cmd(&format!("USER {user}"))?;
        if reply.code == 331 {
            reply = self.cmd(&format!("PASS {password}"))?;
        }
        if reply.code != 230 {
            return Err(io::Error::other(format!("login as {user} refused: {reply}")));
        }
        Ok(())
    }

    /// `TYPE I`, expecting 200.
    pub fn binary(&mut self) -> io::Result<()> {
        let reply = self.cmd("TYPE I")?;
        if reply.code != 200 {
            return Err(io::Error::other(format!("TYPE I refused: {reply}")));
        }
        Ok(())
    }
}

/// A listener on `addr` with `SO_REUSEADDR`, so that it may share the port of an established
/// connection that set it too.
pub fn listen_reuseaddr(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(8)?;
    Ok(socket.into())
}

/// Waits up to `within` for a connection on any of `listeners`. Returns the index of the
/// listener, the stream (blocking, with [`DATA_TIMEOUT`]) and the peer.
pub fn accept_any(listeners: &[&TcpListener], within: Duration) -> io::Result<Option<(usize, TcpStream, SocketAddr)>> {
    for listener in listeners {
        listener.set_nonblocking(true)?;
    }
    let deadline = Instant::now() + within;
    loop {
        for (i, listener) in listeners.iter().enumerate() {
            match listener.accept() {
                Ok((stream, peer)) => {
                    stream.set_nonblocking(false)?;
                    stream.set_read_timeout(Some(DATA_TIMEOUT))?;
                    return Ok(Some((i, stream, peer)));
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        thread::sleep(ACCEPT_POLL);
    }
}

/// Reads a data connection to its end and closes it at once: ProFTPD sends `226` only once
/// the client has closed (docs/real-systems.md#ftp-servers-and-the-default-data-port).
pub fn read_all_and_close(mut stream: TcpStream) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes)?;
    drop(stream);
    Ok(bytes)
}
