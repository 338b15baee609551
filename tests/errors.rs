//! Bad input gets one clear line, the documented exit code, and loses nothing:
//! no file, and no part file, is left behind by a failed download.
//!
//! Needs root and `scripts/lab up`; run with `--test-threads=1`.

mod common;

use std::net::TcpListener;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::lab::in_netns;
use common::tool::{run, stderr, Tool};

/// Exit codes, as documented in `--help` and the README.
const USAGE: i32 = 2;
const SSH: i32 = 3;
const FTP_REFUSED: i32 = 4;
const TRANSFER: i32 = 5;

/// The run failed with `code`, said so in exactly one line containing `needle`, and left
/// the working directory empty.
fn assert_clean_failure(tool: &Tool, out: &Output, code: i32, needle: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(code), "exit code, stderr:\n{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "one line expected:\n{err}");
    assert!(lines[0].starts_with("ftpssh-fullsecure: error: "), "{err}");
    assert!(err.contains(needle), "{needle:?} not in:\n{err}");
    assert!(!err.contains(tool.lab.var("FTP_PASSWORD")), "the password leaked into:\n{err}");
    assert_eq!(tool.work_entries(), Vec::<String>::new(), "files left behind");
}

fn proftpd(tool: &Tool) -> Command {
    tool.cmd(tool.lab.port("PROFTPD_PORT"))
}

fn keygen(dir: &std::path::Path, name: &str) -> std::path::PathBuf {
    let key = dir.join(name);
    let status = Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(&key).status().unwrap();
    assert!(status.success());
    key
}

/// Through the relay and without one (the socket-table diff, OpenSSH and dropbear): the login
/// runs beside the forward on both paths, and its failure must still be the one line.
#[test]
fn wrong_ftp_password() {
    let tool = Tool::new();
    for ssh in ["SSH_PORT", "NOINTERP_SSH_PORT", "DROPBEAR_NOINTERP_PORT"] {
        let mut cmd = tool.cmd_via(tool.lab.port(ssh), tool.lab.port("PROFTPD_PORT"));
        let out = run(cmd.env("FTPSSH_PASSWORD", "wrong-password").args(["get", "small.bin"]));
        assert_clean_failure(&tool, &out, FTP_REFUSED, "530");
    }
}

/// With four workers, a wrong password is tried once: the workers started while an mget lists
/// open their links only once the listing link has logged in.
#[test]
fn wrong_ftp_password_with_four_workers_is_tried_once() {
    let tool = Tool::new();
    let events = tool.home.path().join("events.json");
    let mut cmd = proftpd(&tool);
    cmd.env("FTPSSH_PASSWORD", "wrong-password").arg("--events").arg(&events);
    let out = run(cmd.args(["mget", "many/*", "--jobs", "4"]));
    assert_clean_failure(&tool, &out, FTP_REFUSED, "530");
    let seen = std::fs::read_to_string(&events).unwrap();
    assert_eq!(seen.matches(r#""line":"PASS ****""#).count(), 1, "{seen}");
}

#[test]
fn missing_remote_file() {
    let tool = Tool::new();
    let out = run(proftpd(&tool).args(["get", "no-such-file.bin"]));
    assert_clean_failure(&tool, &out, FTP_REFUSED, "550");
}

#[test]
fn missing_remote_file_through_the_relay() {
    let tool = Tool::new();
    let out = run(tool.cmd(tool.lab.port("INETUTILS_PORT")).args(["get", "no-such-file.bin"]));
    assert_clean_failure(&tool, &out, FTP_REFUSED, "550");
}

#[test]
fn unknown_host_key() {
    let tool = Tool::new();
    let empty = tool.home.path().join("known_hosts");
    std::fs::write(&empty, "").unwrap();
    let out = run(proftpd(&tool).arg("--known-hosts").arg(&empty).args(["get", "small.bin"]));
    assert_clean_failure(&tool, &out, SSH, "is not in");
    assert!(stderr(&out).contains("SHA256:"), "the fingerprint is shown");
}

#[test]
fn changed_host_key() {
    let tool = Tool::new();
    let other = keygen(tool.home.path(), "other");
    let public = std::fs::read_to_string(other.with_extension("pub")).unwrap();
    let known = tool.home.path().join("known_hosts");
    std::fs::write(&known, format!("{} {public}", tool.lab.var("SERVER_ADDR"))).unwrap();
    let out = run(proftpd(&tool).arg("--known-hosts").arg(&known).args(["get", "small.bin"]));
    assert_clean_failure(&tool, &out, SSH, "HOST KEY CHANGED");
}

#[test]
fn wrong_ssh_key() {
    let tool = Tool::new();
    let stranger = keygen(tool.home.path(), "stranger");
    let lab = &tool.lab;
    let out =
        run(tool.cmd_with_key(lab.port("SSH_PORT"), lab.port("PROFTPD_PORT"), &stranger).args(["get", "small.bin"]));
    assert_clean_failure(&tool, &out, SSH, "refused authentication");
}

#[test]
fn ftp_server_not_listening() {
    let tool = Tool::new();
    let out = run(tool.cmd(2999).args(["get", "small.bin"]));
    assert_clean_failure(&tool, &out, FTP_REFUSED, "not reachable");
}

#[test]
fn forwarding_refused_by_sshd() {
    let tool = Tool::new();
    let lab = &tool.lab;
    let out = run(tool.cmd_via(lab.port("NOFWD_SSH_PORT"), lab.port("PROFTPD_PORT")).args(["get", "small.bin"]));
    assert_clean_failure(&tool, &out, SSH, "AllowTcpForwarding");
}

#[test]
fn no_password_and_no_terminal() {
    let tool = Tool::new();
    let out = run(proftpd(&tool).env_remove("FTPSSH_PASSWORD").args(["get", "small.bin"]));
    assert_clean_failure(&tool, &out, USAGE, "FTPSSH_PASSWORD");
}

/// A one-connection "FTP server" on 127.0.0.1 of the server host; `serve`
/// gets the accepted connection. Returns its port.
fn fake_server(tool: &Tool, serve: impl FnOnce(std::net::TcpStream) + Send + 'static) -> u16 {
    let listener = in_netns(tool.lab.var("SERVER_NS"), || TcpListener::bind("127.0.0.1:0").unwrap());
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        if let Ok((stream, _)) = listener.accept() {
            serve(stream);
        }
    });
    port
}

#[test]
fn a_server_that_never_answers() {
    let tool = Tool::new();
    // A listener in the server host that accepts and says nothing: no FTP greeting ever comes.
    let port = fake_server(&tool, |s| {
        std::thread::sleep(Duration::from_secs(8));
        drop(s);
    });
    let started = Instant::now();
    let out = run(tool.cmd(port).args(["--timeout", "2", "get", "small.bin"]));
    assert!(started.elapsed() < Duration::from_secs(8), "bounded by --timeout");
    assert_clean_failure(&tool, &out, TRANSFER, "no reply within 2s");
}

#[test]
fn a_hostile_reply() {
    let tool = Tool::new();
    // A "server" whose greeting is an endless line: the reply parser's bound must stop it.
    let port = fake_server(&tool, |mut s| {
        use std::io::Write;
        let _ = s.write_all(b"220-");
        let _ = s.write_all(&vec![b'A'; 100_000]);
    });
    let out = run(tool.cmd(port).args(["get", "small.bin"]));
    assert_clean_failure(&tool, &out, FTP_REFUSED, "malformed reply");
}

#[test]
fn no_ssh_server_given() {
    let tool = Tool::new();
    let out = run(Command::new(env!("CARGO_BIN_EXE_ftpssh-fullsecure"))
        .env_remove("FTPSSH_SSH")
        .current_dir(tool.work.path())
        .args(["get", "x"]));
    assert_clean_failure(&tool, &out, USAGE, "--ssh");
}
