//! The lab's WAN profile: a `get` through the delay proxy at 20 ms (scripts/wan-proxy on the
//! WAN link, in front of the main sshd) works, stays encrypted, and the round trip a client
//! measures through it is the one configured.
//!
//! Needs root and `scripts/lab up`; run with `--test-threads=1`.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::capture::{assert_encrypted, file_samples, Capture};
use common::lab::{in_netns, Lab};
use common::tool::{assert_same, run, stderr, Tool};

/// The proxy's configured round trip for the port WAN_SSH_PORT_20MS.
const RTT: Duration = Duration::from_millis(20);

/// One round trip through `addr` as an SSH client sees it: after sshd's banner, send ours and
/// time sshd's KEXINIT, which OpenSSH sends only once our banner has arrived.
fn ssh_round_trip(addr: SocketAddr) -> Duration {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).unwrap();
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.contains(&b'\n') {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "{addr} closed before its banner");
        got.extend_from_slice(&buf[..n]);
    }
    assert!(got.ends_with(b"\n"), "sshd sent more than its banner before ours: the round trip cannot be timed");
    let start = Instant::now();
    s.write_all(b"SSH-2.0-ftpssh-wan-test\r\n").unwrap();
    assert!(s.read(&mut buf).unwrap() > 0, "{addr} closed instead of sending KEXINIT");
    start.elapsed()
}

#[test]
fn get_through_the_20ms_wan_path() {
    let lab = Lab::get();
    let port = lab.port("WAN_SSH_PORT_20MS");
    let addr = SocketAddr::new(lab.addr("WAN_SSH_ADDR").into(), port);

    // The smallest of five: a busy machine only ever adds.
    let rtt = in_netns(lab.var("CLIENT_NS"), move || (0..5).map(|_| ssh_round_trip(addr)).min().unwrap());
    eprintln!("round trip through {addr}: {rtt:?}");
    assert!(rtt >= RTT, "{rtt:?} through the proxy: less than the {RTT:?} configured");
    assert!(rtt < RTT * 2, "{rtt:?} through the proxy: far more than the {RTT:?} configured");

    let tool = Tool::new();
    let want = std::fs::read(tool.remote_path("small.bin")).unwrap();
    let capture = Capture::start(lab.var("CLIENT_NS"), lab.var("WAN_CLIENT_IF"));
    let started = Instant::now();
    let out = run(tool
        .bare()
        .arg("-s")
        .arg(format!("{}@{addr}", lab.var("SSH_USER")))
        .arg("-f")
        .arg(format!("127.0.0.1:{}", lab.port("PROFTPD_PORT")))
        .arg("-i")
        .arg(lab.path("SSH_KEY"))
        .arg("--known-hosts")
        .arg(lab.path("KNOWN_HOSTS"))
        .env("FTPSSH_PASSWORD", lab.var("FTP_PASSWORD"))
        .args(["-v", "get", "small.bin"]));
    let took = started.elapsed();
    let captured = capture.stop();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_same(&std::fs::read(tool.work.path().join("small.bin")).unwrap(), &want, "small.bin");
    let samples = file_samples(&want);
    let mut secrets = vec![(lab.var("FTP_PASSWORD").as_bytes(), "the FTP password")];
    secrets.extend(samples.iter().map(|s| (&s[..], "the file's content")));
    assert_encrypted(&captured, port, &secrets, want.len() as u64);
    // The SSH handshake and authentication alone are several round trips: the run felt the delay.
    assert!(took >= RTT * 5, "the get took {took:?}: it cannot have crossed the {RTT:?} path");
}
