//! Data port theft: anyone on the SSH server host can connect to the port sshd forwards
//! for the data connection. Such connections must be refused and reported while the real
//! transfer still completes intact.
//!
//! Needs root and `scripts/lab up`; run with `--test-threads=1`.

mod common;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use common::lab::in_netns;
use common::tool::{assert_many, assert_same, Tool};
use socket2::{Domain, Socket, Type};

/// Run `get remote` with -v; when a stderr line contains `trigger`, connect to the
/// forwarded data port from `source` (an address of the server host). Returns the
/// whole stderr once the tool has exited successfully.
fn get_with_stray(tool: &Tool, port_key: &str, remote: &str, trigger: &str, source: &'static str) -> String {
    let mut child = tool
        .cmd(tool.lab.port(port_key))
        .args(["-v", "get", remote])
        .stderr(Stdio::piped())
        .spawn()
        .expect("could not start the tool");
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || BufReader::new(stderr).lines().map_while(Result::ok).for_each(|l| drop(tx.send(l))));
    let mut seen = Vec::new();
    let mut forwarded = None;
    let mut strayed = false;
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(60)) {
        if line.contains("reverse forward: sshd listens on") {
            forwarded = Some(forwarded_port(&line));
        }
        if !strayed && line.contains(trigger) {
            let port = forwarded.expect("the forward is announced before the transfer");
            stray_connect(tool.lab.var("SERVER_NS"), source, port);
            strayed = true;
        }
        seen.push(line);
    }
    let status = child.wait().unwrap();
    let err = seen.join("\n");
    eprintln!("{err}");
    assert!(strayed, "never saw {trigger:?}");
    assert!(status.success(), "the real transfer must complete:\n{err}");
    err
}

/// The first port of `reverse forward: sshd listens on 127.0.0.1:[40001, 40000] ...`.
fn forwarded_port(line: &str) -> u16 {
    let list = line.split('[').nth(1).and_then(|r| r.split(']').next()).unwrap();
    list.split(',').next().unwrap().trim().parse().unwrap()
}

/// Connect from `source` in the server namespace to 127.0.0.1:`port`, as another local
/// process would, and wait until sshd drops the connection it refused to forward.
fn stray_connect(ns: &str, source: &'static str, port: u16) {
    in_netns(ns, move || {
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        socket.bind(&SocketAddr::new(source.parse().unwrap(), 0).into()).unwrap();
        socket.connect(&SocketAddr::from(([127, 0, 0, 1], port)).into()).expect("sshd listens on the forwarded port");
        let mut stream: TcpStream = socket.into();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = [0u8; 16];
        // sshd closes it once we refuse the channel: read returns 0 (or an error), never data.
        let n = std::io::Read::read(&mut stream, &mut buf).unwrap_or(0);
        assert_eq!(n, 0, "a refused stray must get nothing");
    });
}

#[test]
fn stray_from_the_server_host_while_no_data_connection_is_expected() {
    let tool = Tool::new();
    // Once the real data connection is in, nothing else may come in, even from 127.0.0.1.
    let err = get_with_stray(&tool, "PROFTPD_PORT", "big.bin", "data connection from", "127.0.0.1");
    assert!(err.contains("warning: refused a connection from 127.0.0.1:"), "{err}");
    assert!(err.contains("no data connection is expected now (possible data port theft)"), "{err}");
    let want = std::fs::read(tool.remote_path("big.bin")).unwrap();
    assert_same(&std::fs::read(tool.work.path().join("big.bin")).unwrap(), &want, "big.bin");
}

#[test]
fn stray_from_another_address_during_a_transfer() {
    let tool = Tool::new();
    // pyftpdlib says 150 and never connects, which holds the gate open for the whole
    // auto-mode bound: the stray comes from the server's veth address, not the FTP server's.
    let source = tool.lab.var("SERVER_ADDR").to_string().leak();
    let err = get_with_stray(&tool, "PYFTPDLIB_PORT", "small.bin", "---> RETR", source);
    assert!(err.contains(&format!("refused a connection from {source}:")), "{err}");
    assert!(err.contains("does not come from the FTP server 127.0.0.1"), "{err}");
    assert!(err.contains("switching to passive"), "{err}");
    let want = std::fs::read(tool.remote_path("small.bin")).unwrap();
    assert_same(&std::fs::read(tool.work.path().join("small.bin")).unwrap(), &want, "small.bin");
}

/// Another process on the FTP server's host connects to the forwarded port over and over while
/// an `mget` runs (ProFTPD, data from its fixed port 2020). Its address is the FTP server's, so
/// only the source port tells it apart: once two connections came from 2020, every other is
/// refused as a theft. Before, one of them was taken for a transfer's data in every run (an
/// empty copy, refused by its size, and a retry; once a 10 s stall). Before the port is known
/// the address is all there is: the flood starts at the third file.
#[test]
fn a_flood_from_the_server_host_takes_no_transfer_once_the_data_port_is_known() {
    let tool = Tool::new();
    let mut child = tool
        .cmd(tool.lab.port("PROFTPD_FIXED_PORT"))
        .args(["-v", "mget", "many/f0[0-4]*", "-d", "out"])
        .stderr(Stdio::piped())
        .spawn()
        .expect("could not start the tool");
    let stderr = child.stderr.take().unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (mut port, mut flood) = (None, None);
    let mut seen = Vec::new();
    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
        if line.contains("reverse forward: sshd listens on") {
            port = Some(forwarded_port(&line));
        }
        // The listing's and two files' connections came from 2020: from the third file on.
        if flood.is_none() && line.contains("RETR many/f003.txt") {
            let (port, stop, ns) = (port.expect("announced"), stop.clone(), tool.lab.var("SERVER_NS").to_string());
            flood = Some(std::thread::spawn(move || in_netns(&ns, move || flood_until(port, &stop))));
        }
        seen.push(line);
    }
    let status = child.wait().unwrap();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let tried = flood.expect("the forward is announced").join().unwrap();
    let err = seen.join("\n");
    assert!(status.success(), "{err}");
    assert!(tried > 10, "the flood made {tried} connections");
    assert!(err.contains("does not come from the FTP server's data port 2020"), "{err}");
    assert!(err.contains("49 transfers: 49 ok, 0 failed") && err.contains(" 0 retries"), "{err}");
    assert_many(&tool, "out", 1..=49);
}

/// Connect to 127.0.0.1:`port` from 127.0.0.1 every half millisecond until `stop`; how many connected.
fn flood_until(port: u16, stop: &std::sync::atomic::AtomicBool) -> u32 {
    let mut connected = 0;
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        let to = SocketAddr::from(([127, 0, 0, 1], port));
        if TcpStream::connect_timeout(&to, Duration::from_millis(500)).is_ok() {
            connected += 1;
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    connected
}
