//! `get`, `put` and `ls` against the lab's real servers, every transfer under the veth
//! capture: the files arrive byte-identical, and neither a file byte nor the password
//! crossed the network; the client spoke only to the SSH port.
//!
//! Needs root and `scripts/lab up`; run with `--test-threads=1` (shared veth).

mod common;

use common::lab::ServerSysctl;
use common::tool::{
    assert_default_port, captured, captured_cmd, get_every_file, put_and_get_back, run, stderr, Tool, FILES,
};

fn ls_lists(port_key: &str) {
    let tool = Tool::new();
    let port = tool.lab.port(port_key);
    let out = run(tool.cmd(port).args(["ls"]));
    assert!(out.status.success());
    let listing = String::from_utf8_lossy(&out.stdout);
    for name in FILES.iter().chain(&["many", "upload"]) {
        assert!(listing.contains(name), "{name} missing from the listing:\n{listing}");
    }
    let out = run(tool.cmd(port).args(["ls", "many"]));
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.contains(".txt")).count(), 200);
}

#[test]
fn get_from_proftpd() {
    get_every_file("PROFTPD_PORT", &[], assert_default_port);
}

#[test]
fn get_from_proftpd_fixed_source_port() {
    get_every_file("PROFTPD_FIXED_PORT", &[], assert_default_port);
}

#[test]
fn get_from_inetutils_ftpd_through_the_relay() {
    get_every_file("INETUTILS_PORT", &[], assert_default_port);
}

#[test]
fn put_to_proftpd() {
    put_and_get_back("PROFTPD_PORT", assert_default_port);
}

#[test]
fn put_to_proftpd_fixed_source_port() {
    put_and_get_back("PROFTPD_FIXED_PORT", assert_default_port);
}

#[test]
fn put_to_inetutils_ftpd_through_the_relay() {
    put_and_get_back("INETUTILS_PORT", assert_default_port);
}

#[test]
fn ls_on_proftpd() {
    ls_lists("PROFTPD_PORT");
}

#[test]
fn ls_on_inetutils_ftpd() {
    ls_lists("INETUTILS_PORT");
}

#[test]
fn ls_is_encrypted_too() {
    let tool = Tool::new();
    // The listing names this file; its name must not cross the veth in clear.
    let err = stderr(&captured(&tool, tool.lab.port("PROFTPD_PORT"), &["ls", "many"], b"f137.txt"));
    assert_default_port(&err);
}

/// The first of `span` ports (an even one) above the usual ephemeral range, which no earlier
/// test used lately: chosen by the clock among 4,000.
fn fresh_ports(span: u16) -> u16 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    61000 + span * (nanos % (4000 / u32::from(span))) as u16
}

/// The server namespace's ephemeral range cut to four fresh ports (above the usual range,
/// so no earlier test left sockets there), the two that connect() tries first (the range's
/// low parity) held by connections to sshd made without SO_REUSEADDR; undone on drop.
/// A new connection to the FTP server may still take a held port (its 4-tuple is free),
/// and then sshd cannot listen on it.
struct EvenPortsHeld {
    holders: Vec<std::process::Child>,
    held: [u16; 2],
    /// Dropped after the holders are killed.
    _range: ServerSysctl,
}

impl EvenPortsHeld {
    fn new(lab: &common::lab::Lab) -> EvenPortsHeld {
        let low = fresh_ports(4);
        let ns = lab.var("SERVER_NS");
        let range = ServerSysctl::set(lab, "net.ipv4.ip_local_port_range", &format!("{low} {}", low + 3), None);
        let mut held = EvenPortsHeld { holders: vec![], held: [low, low + 2], _range: range };
        let mut got = vec![];
        for _ in held.held {
            let mut holder = std::process::Command::new("ip")
                .args(["netns", "exec", ns, "python3", "-c"])
                // Linger 0: killed, it resets instead of leaving a TIME_WAIT behind.
                .arg(
                    "import socket, struct, time\ns = socket.create_connection(('127.0.0.1', 22))\n\
                     s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))\n\
                     print(s.getsockname()[1], flush=True)\ntime.sleep(300)",
                )
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            let mut line = String::new();
            std::io::BufRead::read_line(&mut std::io::BufReader::new(holder.stdout.as_mut().unwrap()), &mut line)
                .unwrap();
            held.holders.push(holder);
            got.push(line.trim().parse::<u16>().unwrap());
        }
        got.sort();
        assert_eq!(got, held.held, "the holders did not get the ports connect() tries first");
        held
    }
}

impl Drop for EvenPortsHeld {
    fn drop(&mut self) {
        for holder in &mut self.holders {
            let _ = holder.kill();
            let _ = holder.wait();
        }
    }
}

/// The relay's connection to an RFC 959 server gets a P that another socket without
/// SO_REUSEADDR holds too, so sshd cannot listen on it: the tool opens another relay
/// (another P) and still transfers on the default port, instead of going passive.
#[test]
fn relay_moves_on_when_p_is_held_by_another_socket() {
    let tool = Tool::new();
    let port = tool.lab.port("INETUTILS_PORT");
    let name = FILES[0];
    let want = std::fs::read(tool.remote_path(name)).unwrap();
    let held = EvenPortsHeld::new(&tool.lab);
    let out = captured(&tool, port, &["get", name], &want);
    let ports = held.held;
    drop(held);
    let err = stderr(&out);
    assert!(
        ports.iter().any(|p| err.contains(&format!("sshd could not listen on 127.0.0.1:{p}:"))),
        "never moved past a held P {ports:?}:\n{err}"
    );
    for p in ports {
        assert!(!err.contains(&format!("listens on 127.0.0.1:[{p}")), "forwarded the held port {p}:\n{err}");
    }
    assert_default_port(&err);
    common::tool::assert_same(&std::fs::read(tool.work.path().join(name)).unwrap(), &want, name);
}

/// The server namespace's ephemeral range cut to six fresh ports `low..=low+5` (so the SSH
/// server's connection to the FTP server gets P = `low`, `low+2` or `low+4`, connect() trying
/// even ports first), after connections on some of the ports ProFTPD would then connect to
/// (P-1) were left in TIME_WAIT with a port that is not an FTP server's data port (so not the
/// 4-tuple of the data connection); undone on drop (the TIME_WAITs end in 60 s).
struct TimeWaitsBelow {
    /// The ports left in TIME_WAIT.
    ports: Vec<u16>,
    _range: ServerSysctl,
}

/// Which end of a [`TimeWaitsBelow`] connection sits on the port and closes first.
#[derive(Clone, Copy)]
enum Closer {
    /// A listener with SO_REUSEADDR, as FTP servers' passive sockets are: what a busy
    /// ProFTPD leaves after another client's passive download (seen in CI:
    /// `127.0.0.1:42013 -> 127.0.0.1:49877 is still in TIME_WAIT`). sshd may listen there.
    ReusingListener,
    /// A client bound there without SO_REUSEADDR (as sshd's own direct-tcpip sockets are):
    /// sshd cannot listen there until the TIME_WAIT ends.
    PlainClient,
}

impl TimeWaitsBelow {
    fn new(lab: &common::lab::Lab, closer: Closer, ports: impl Fn(u16) -> Vec<u16>) -> TimeWaitsBelow {
        let low = fresh_ports(6);
        let ports = ports(low);
        let listed = ports.iter().map(u16::to_string).collect::<Vec<_>>().join(", ");
        let one = match closer {
            Closer::ReusingListener => {
                "l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n    \
                 l.bind(('127.0.0.1', port)); l.listen(1)\n    \
                 c = socket.create_connection(('127.0.0.1', port)); s, _ = l.accept()\n    \
                 s.close(); c.recv(1); c.close(); l.close()"
            }
            Closer::PlainClient => {
                "l = socket.socket(); l.bind(('127.0.0.1', 0)); l.listen(1)\n    \
                 c = socket.socket(); c.bind(('127.0.0.1', port)); c.connect(l.getsockname()); s, _ = l.accept()\n    \
                 c.close(); s.recv(1); s.close(); l.close()"
            }
        };
        let script = format!("import socket, time\nfor port in ({listed},):\n    {one}\ntime.sleep(0.2)");
        let out = std::process::Command::new("ip")
            .args(["netns", "exec", lab.var("SERVER_NS"), "python3", "-c", &script])
            .output()
            .unwrap();
        let rows = common::sockets::read(lab.var("SERVER_NS"));
        for port in &ports {
            let tw = rows.iter().any(|r| r.state == "TIME-WAIT" && r.local_port() == *port);
            assert!(tw, "no TIME_WAIT on {port}: {out:?}");
        }
        let range = ServerSysctl::set(lab, "net.ipv4.ip_local_port_range", &format!("{low} {}", low + 5), None);
        TimeWaitsBelow { ports, _range: range }
    }
}

/// A get of small.bin from ProFTPD through the SSH server on `ssh_key`, under capture: it
/// must arrive on the default port. Returns the trace.
fn get_on_the_default_port(tool: &Tool, ssh_key: &str) -> String {
    let (ssh_port, ftp_port) = (tool.lab.port(ssh_key), tool.lab.port("PROFTPD_PORT"));
    let want = std::fs::read(tool.remote_path("small.bin")).unwrap();
    let out = captured_cmd(tool, ssh_port, tool.cmd_via(ssh_port, ftp_port), &["get", "small.bin"], &want);
    let err = stderr(&out);
    assert_default_port(&err);
    let local = tool.work.path().join("small.bin");
    common::tool::assert_same(&std::fs::read(&local).unwrap(), &want, ssh_key);
    std::fs::remove_file(local).unwrap();
    err
}

/// A TIME_WAIT that merely ends in the port ProFTPD will connect to (its 4-tuple is not the
/// data connection's) is no reason to leave the default port, through a relay or without one.
#[test]
fn a_time_wait_of_another_client_on_the_data_port_is_no_obstacle() {
    let tool = Tool::new();
    for ssh_key in ["SSH_PORT", "NOINTERP_SSH_PORT"] {
        // P-1 for every even P.
        let held = TimeWaitsBelow::new(&tool.lab, Closer::ReusingListener, |low| vec![low - 1, low + 1, low + 3]);
        let targets = held.ports.clone();
        let err = get_on_the_default_port(&tool, ssh_key);
        drop(held);
        assert!(
            targets.iter().any(|p| err.contains(&format!("tcpip-forward 127.0.0.1:{p}\n"))),
            "{ssh_key}: the forward was not on a port in TIME_WAIT {targets:?}:\n{err}"
        );
    }
}

/// Without a relay, sshd may refuse to listen on P-1 although the socket table looked fine
/// (a TIME_WAIT of a socket without SO_REUSEADDR, or a port taken since the table was read):
/// the tool opens another control connection, as it does with a relay, and stays on the
/// default port. Which even port is P first is the kernel's choice, so this repeats until
/// the forward was refused at least once.
#[test]
fn without_a_relay_a_refused_forward_moves_on_to_another_p() {
    let tool = Tool::new();
    for _ in 0..10 {
        // P-1 for P = low+2 and low+4; P = low is free.
        let held = TimeWaitsBelow::new(&tool.lab, Closer::PlainClient, |low| vec![low + 1, low + 3]);
        let targets = held.ports.clone();
        let err = get_on_the_default_port(&tool, "NOINTERP_SSH_PORT");
        drop(held);
        for p in &targets {
            assert!(!err.contains(&format!("listens on 127.0.0.1:[{p}")), "forwarded the held port {p}:\n{err}");
        }
        if targets.iter().any(|p| err.contains(&format!("sshd could not listen on 127.0.0.1:{p}:"))) {
            return;
        }
    }
    panic!("the forward was never refused in 10 runs");
}
