//! `get`, `put` and `ls` against the lab's real servers, every transfer under the veth
//! capture: the files arrive byte-identical, and neither a file byte nor the password
//! crossed the network; the client spoke only to the SSH port.
//!
//! Needs root and `scripts/lab up`; run with `--test-threads=1` (shared veth).

mod common;

use common::lab::ServerSysctl;
use common::tool::{assert_default_port, captured, get_every_file, put_and_get_back, run, stderr, Tool, FILES};

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
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
        let low = 61000 + 4 * (nanos % 1000) as u16;
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
