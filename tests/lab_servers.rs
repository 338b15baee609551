//! The lab's FTP servers, probed directly: what each does with `RETR` sent with neither `PORT`
//! nor `PASV` (the RFC 959 default data port; docs/real-systems.md#ftp-servers-and-the-default-data-port).
//! The tool's design rests on these facts, so a server that changes its mind fails here, not deep inside a transfer.
//!
//! Every probe runs in the server namespace and talks to `127.0.0.1:PORT`. Its control socket
//! sets `SO_REUSEADDR` before `connect`, so the probe can also listen on its own port U (where
//! RFC 959 says the server connects) and on U-1 (where ProFTPD connects), and see which one the
//! server picks, and from which source port.
//!
//! Needs root and `scripts/lab up`; run with `--test-threads=1` like every lab test.

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use common::ftpprobe::{self, Control, Reply};
use common::lab::{in_netns, parse_env, Lab};

/// The file every probe asks for (10876 bytes, made by `scripts/lab up`).
const FILE: &str = "small.bin";
/// How long a server that does connect may take to do so.
const CONNECT_WAIT: Duration = Duration::from_secs(10);
/// How long to watch for a data connection after a refusal (425): none may come.
const AFTER_REFUSAL_WAIT: Duration = Duration::from_secs(1);
/// How long to watch pyftpdlib, which says 150 and then waits for a PORT that never comes.
const SILENCE_WAIT: Duration = Duration::from_secs(3);
/// Tries at a control port U for which both U and U-1 can be listened on.
const PORT_TRIES: usize = 20;

/// A data connection that reached one of the probe's listeners.
struct DataConn {
    /// The listener's port: U or U-1.
    to_port: u16,
    /// The server's end of it.
    from: SocketAddr,
    bytes: Vec<u8>,
}

impl std::fmt::Debug for DataConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (to_port, from, len) = (self.to_port, self.from, self.bytes.len());
        write!(f, "DataConn {{ to_port: {to_port}, from: {from}, bytes: {len} }}")
    }
}

/// What one default-port `RETR` produced.
#[derive(Debug)]
struct Outcome {
    /// The control connection's local port, U.
    u: u16,
    /// The first reply to `RETR`.
    first: Reply,
    data: Option<DataConn>,
    /// The reply after the data connection was read and closed (226), if one came.
    last: Option<Reply>,
}

/// Logs in to the lab server on `port_key`, sends `TYPE I` and `RETR small.bin` without `PORT`
/// or `PASV`, and watches U and U-1 for `wait`.
fn default_port_retr(port_key: &str, wait: Duration) -> Outcome {
    let lab = Lab::get();
    let port = lab.port(port_key);
    let user = lab.var("FTP_USER").to_owned();
    let password = lab.var("FTP_PASSWORD").to_owned();
    let outcome = in_netns(lab.var("SERVER_NS"), move || probe(port, &user, &password, wait));
    eprintln!("{port_key}={port}: {outcome:?}");
    outcome
}

fn probe(port: u16, user: &str, password: &str, wait: Duration) -> Outcome {
    let server = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let (mut ctl, at_u, at_u_minus_1) = (0..PORT_TRIES)
        .find_map(|_| {
            let ctl =
                Control::connect_reuseaddr(server).unwrap_or_else(|e| panic!("could not connect to {server}: {e}"));
            let u = ctl.local.port();
            // Another socket may hold U-1; then try with another U.
            let at_u = ftpprobe::listen_reuseaddr(SocketAddr::from((Ipv4Addr::LOCALHOST, u))).ok()?;
            let at_u_minus_1 = ftpprobe::listen_reuseaddr(SocketAddr::from((Ipv4Addr::LOCALHOST, u - 1))).ok()?;
            Some((ctl, at_u, at_u_minus_1))
        })
        .unwrap_or_else(|| panic!("no control port U with U and U-1 free in {PORT_TRIES} tries"));
    let u = ctl.local.port();

    ctl.login(user, password).unwrap_or_else(|e| panic!("{server}: {e}"));
    ctl.binary().unwrap_or_else(|e| panic!("{server}: {e}"));
    let first = ctl.cmd(&format!("RETR {FILE}")).unwrap_or_else(|e| panic!("{server}: RETR: {e}"));

    let wait = if first.code >= 400 { AFTER_REFUSAL_WAIT } else { wait };
    let accepted = ftpprobe::accept_any(&[&at_u, &at_u_minus_1], wait)
        .unwrap_or_else(|e| panic!("accept on {u} or {}: {e}", u - 1));
    let data = accepted.map(|(index, stream, from)| DataConn {
        to_port: if index == 0 { u } else { u - 1 },
        from,
        bytes: ftpprobe::read_all_and_close(stream)
            .unwrap_or_else(|e| panic!("reading the data connection from {from}: {e}")),
    });
    let last = match (&data, first.code) {
        (Some(_), 100..=199) => Some(ctl.reply().unwrap_or_else(|e| panic!("{server}: reply after the data: {e}"))),
        _ => None,
    };
    Outcome { u, first, data, last }
}

/// The data arrived whole, from the server's address, and the transfer ended in 226.
fn assert_transfer_complete(outcome: &Outcome) -> &DataConn {
    let data = outcome.data.as_ref().expect("a data connection");
    let expected = std::fs::read(format!("{}/{FILE}", Lab::get().var("REMOTE_HOME")))
        .expect("the lab's small.bin is readable (run as root)");
    assert_eq!(outcome.first.code, 150, "first reply: {}", outcome.first);
    assert_eq!(data.from.ip(), Ipv4Addr::LOCALHOST, "data comes from the control peer's host");
    assert!(data.bytes == expected, "got {} bytes, not {FILE}'s {}", data.bytes.len(), expected.len());
    let last = outcome.last.as_ref().expect("a reply after the transfer");
    assert_eq!(last.code, 226, "after the transfer: {last}");
    data
}

#[test]
fn proftpd_connects_to_u_minus_1_from_an_ephemeral_port() {
    let lab = Lab::get();
    let outcome = default_port_retr("PROFTPD_PORT", CONNECT_WAIT);
    let data = assert_transfer_complete(&outcome);
    assert_eq!(data.to_port, outcome.u - 1, "ProFTPD connects to U-1, not U");
    let fixed = lab.port("PROFTPD_FIXED_PORT") - 1;
    let own_l_minus_1 = lab.port("PROFTPD_PORT") - 1;
    assert_ne!(data.from.port(), fixed, "without RootRevoke off, no fixed source port");
    assert_ne!(data.from.port(), own_l_minus_1, "without RootRevoke off, not L-1 either");
}

#[test]
fn proftpd_with_root_revoke_off_connects_to_u_minus_1_from_l_minus_1() {
    let lab = Lab::get();
    let outcome = default_port_retr("PROFTPD_FIXED_PORT", CONNECT_WAIT);
    let data = assert_transfer_complete(&outcome);
    assert_eq!(data.to_port, outcome.u - 1, "ProFTPD connects to U-1, not U");
    assert_eq!(data.from.port(), lab.port("PROFTPD_FIXED_PORT") - 1, "source port L-1");
    assert_eq!(data.from.port(), 2020);
}

#[test]
fn inetutils_ftpd_connects_to_u_as_rfc_959_says() {
    let outcome = default_port_retr("INETUTILS_PORT", CONNECT_WAIT);
    let data = assert_transfer_complete(&outcome);
    assert_eq!(data.to_port, outcome.u, "inetutils ftpd connects to U");
}

#[test]
fn vsftpd_refuses_use_port_or_pasv_first() {
    let outcome = default_port_retr("VSFTPD_PORT", CONNECT_WAIT);
    assert_eq!(outcome.first.code, 425, "{}", outcome.first);
    assert!(outcome.first.text().contains("Use PORT or PASV first"), "{}", outcome.first);
    assert!(outcome.data.is_none(), "vsftpd connected anyway: {:?}", outcome.data);
}

#[test]
fn pure_ftpd_refuses_no_data_connection() {
    let outcome = default_port_retr("PUREFTPD_PORT", CONNECT_WAIT);
    assert_eq!(outcome.first.code, 425, "{}", outcome.first);
    assert!(outcome.first.text().contains("No data connection"), "{}", outcome.first);
    assert!(outcome.data.is_none(), "pure-ftpd connected anyway: {:?}", outcome.data);
}

#[test]
fn pyftpdlib_says_150_and_never_connects() {
    let outcome = default_port_retr("PYFTPDLIB_PORT", SILENCE_WAIT);
    assert_eq!(outcome.first.code, 150, "{}", outcome.first);
    assert!(outcome.data.is_none(), "pyftpdlib connected: {:?}", outcome.data);
}

#[test]
fn reply_parser_keeps_multi_line_replies_whole() {
    // Pure-FTPd's greeting, as received.
    let text = "220---------- Welcome to Pure-FTPd [privsep] [TLS] ----------\r\n\
                220-You are user number 1 of 50 allowed.\r\n\
                220 You will be disconnected after 15 minutes of inactivity.\r\n\
                425 Use PORT or PASV first.\r\n";
    let mut reader = std::io::BufReader::new(text.as_bytes());
    let greeting = ftpprobe::read_reply(&mut reader).unwrap();
    assert_eq!(greeting.code, 220);
    assert_eq!(greeting.lines.len(), 3);
    let refusal = ftpprobe::read_reply(&mut reader).unwrap();
    assert_eq!((refusal.code, refusal.text()), (425, "Use PORT or PASV first."));
    assert!(ftpprobe::read_reply(&mut reader).is_err(), "EOF is an error");
}

#[test]
fn lab_env_values_may_be_quoted() {
    let env = parse_env("A=1\n# comment\n\nB='x y'\nC=\"q\"\nD=a\\ b\nE=\n");
    let pairs = [("A", "1"), ("B", "x y"), ("C", "q"), ("D", "a b"), ("E", "")];
    for (key, value) in pairs {
        assert_eq!(env[key], value, "{key}");
    }
    assert_eq!(env.len(), pairs.len());
}
