//! Servers that refuse the default data port (vsftpd, Pure-FTPd: 425; pyftpdlib: 150
//! and silence) still work in `--data-mode auto`, through EPSV/PASV inside SSH; ProFTPD and
//! inetutils keep the default-port path; `--data-mode passive` and `default-port` do what they
//! say. Every transfer runs under the veth capture, and no trace ever shows PORT or EPRT.
//!
//! Needs root and `scripts/lab up`; run with `--test-threads=1` (shared veth).

mod common;

use std::time::{Duration, Instant};

use common::tool::{
    assert_default_port, assert_same, captured, get_every_file, put_and_get_back, run, stderr, traced, Tool, FILES,
};

/// The tool's own bound (DATA_CONNECT_BOUND, 4 s) plus generous room for the transfer.
const PYFTPDLIB_WALL_LIMIT: Duration = Duration::from_secs(15);

/// `auto` tried the default port, was refused, and moved the data to EPSV/PASV.
fn assert_switched(err: &str) {
    assert!(err.contains("switching to passive"), "no switch to passive in:\n{err}");
    assert!(err.contains("---> EPSV") || err.contains("---> PASV"), "no EPSV/PASV in:\n{err}");
    assert!(err.contains("passive data connection to"), "no passive data connection in:\n{err}");
}

/// `--data-mode passive`: EPSV from the start, no reverse forward at all.
fn assert_passive_only(err: &str) {
    assert!(err.contains("---> EPSV"), "no EPSV in:\n{err}");
    assert!(!err.contains("reverse forward"), "a reverse forward in passive mode:\n{err}");
    assert!(!err.contains("switching to passive"), "{err}");
}

/// `ls` and `ls many` under the capture; the listed names must not cross in clear.
fn ls_lists(port_key: &str) {
    let tool = Tool::new();
    let port = tool.lab.port(port_key);
    let out = captured(&tool, port, &["ls"], b"name with spaces.bin");
    assert_switched(&stderr(&out));
    let listing = String::from_utf8_lossy(&out.stdout);
    for name in FILES.iter().chain(&["many", "upload"]) {
        assert!(listing.contains(name), "{name} missing from the listing:\n{listing}");
    }
    let out = captured(&tool, port, &["ls", "many"], b"f137.txt");
    assert_switched(&stderr(&out));
    let listing = String::from_utf8_lossy(&out.stdout);
    assert_eq!(listing.lines().filter(|l| l.contains(".txt")).count(), 200, "{listing}");
}

#[test]
fn get_from_vsftpd_switches_to_passive() {
    get_every_file("VSFTPD_PORT", &[], assert_switched);
}

#[test]
fn get_from_pureftpd_switches_to_passive() {
    get_every_file("PUREFTPD_PORT", &[], assert_switched);
}

#[test]
fn put_to_vsftpd_switches_to_passive() {
    put_and_get_back("VSFTPD_PORT", assert_switched);
}

#[test]
fn put_to_pureftpd_switches_to_passive() {
    put_and_get_back("PUREFTPD_PORT", assert_switched);
}

#[test]
fn ls_on_vsftpd_switches_to_passive() {
    ls_lists("VSFTPD_PORT");
}

#[test]
fn ls_on_pureftpd_switches_to_passive() {
    ls_lists("PUREFTPD_PORT");
}

#[test]
fn forced_passive_on_proftpd() {
    get_every_file("PROFTPD_PORT", &["--data-mode", "passive"], assert_passive_only);
}

#[test]
fn auto_keeps_the_default_port_on_proftpd_and_inetutils() {
    for port_key in ["PROFTPD_PORT", "INETUTILS_PORT"] {
        let tool = Tool::new();
        let want = std::fs::read(tool.remote_path("small.bin")).unwrap();
        let out = captured(&tool, tool.lab.port(port_key), &["get", "small.bin"], &want);
        assert_default_port(&stderr(&out));
        assert_same(&std::fs::read(tool.work.path().join("small.bin")).unwrap(), &want, port_key);
    }
}

#[test]
fn pyftpdlib_silence_switches_to_passive_within_the_bound() {
    let tool = Tool::new();
    let port = tool.lab.port("PYFTPDLIB_PORT");
    for name in ["small.bin", "big.bin"] {
        let want = std::fs::read(tool.remote_path(name)).unwrap();
        let started = Instant::now();
        let out = captured(&tool, port, &["get", name], &want);
        let took = started.elapsed(); // includes tcpdump's flush: an upper bound on the tool's time
        let err = stderr(&out);
        assert_switched(&err);
        assert!(err.contains("did not connect back"), "not the 150-and-silence case:\n{err}");
        assert!(took < PYFTPDLIB_WALL_LIMIT, "get {name} from pyftpdlib took {took:?}");
        assert_same(&std::fs::read(tool.work.path().join(name)).unwrap(), &want, name);
    }
    assert_eq!(tool.work_entries().len(), 2, "only the downloaded files, no part files");
}

#[test]
fn forced_default_port_on_vsftpd_fails_clearly() {
    let tool = Tool::new();
    let port = tool.lab.port("VSFTPD_PORT");
    let out = traced(&tool, port, &["--data-mode", "default-port", "get", "small.bin"]);
    assert_eq!(out.status.code(), Some(5), "exit code: {}", stderr(&out));
    assert!(!stderr(&out).contains("---> EPSV") && !stderr(&out).contains("---> PASV"), "{}", stderr(&out));
    let out = run(tool.cmd(port).args(["--data-mode", "default-port", "get", "small.bin"]));
    assert_eq!(out.status.code(), Some(5), "exit code: {}", stderr(&out));
    let err = stderr(&out);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "not a one-line error:\n{err}");
    assert!(lines[0].to_lowercase().contains("refuse"), "the error does not mention the refusal: {err}");
    assert!(lines[0].contains("425"), "the error does not show the server's reply: {err}");
    assert!(tool.work_entries().is_empty(), "left behind: {:?}", tool.work_entries());
}

#[test]
fn mget_from_vsftpd_probes_the_default_port_once() {
    let tool = Tool::new();
    let out = captured(&tool, tool.lab.port("VSFTPD_PORT"), &["mget", "many/f00*.txt", "-d", "out"], b"");
    let err = stderr(&out);
    assert_eq!(err.matches("switching to passive").count(), 1, "the outcome is remembered:\n{err}");
    assert!(err.contains("9 transfers: 9 ok, 0 failed"), "{err}");
    for i in 1..=9 {
        let name = format!("many/f00{i}.txt");
        let want = std::fs::read(tool.remote_path(&name)).unwrap();
        assert_same(&std::fs::read(tool.work.path().join("out").join(&name[5..])).unwrap(), &want, &name);
    }
}
