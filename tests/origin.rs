//! Another account on the SSH server (uid 65534) races for the data port while the tool
//! transfers: RFC 2577's port stealing. It connects to sshd's reverse forward as fast as it
//! can ([tests/servers/attacker.py](servers/attacker.py)), offering bytes of its own (a
//! download replaced) or reading what comes (an upload stolen). No download is ever saved
//! with its bytes, no upload reaches it, and the transfer still completes where the server's
//! own connection can be told apart (by its owner in the SSH server's socket table).
//!
//! Needs root and `scripts/lab up`; run with `--test-threads=1` (shared veth).

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::lab::Lab;
use common::tool::{assert_default_port, assert_same, run, stderr, RemoveOnDrop, Tool};
use tempfile::TempDir;

/// Transfers per server and mode: the attacker won every one of six before its
/// connections were checked.
const RUNS: usize = 4;
/// More, while the attacker holding its connections open has not yet hit a transfer's window
/// (it races; most tries land between transfers, where nothing is expected).
const MAX_RUNS: usize = 30;
/// The uid the attacker runs as (`nobody`).
const ATTACKER_UID: u32 = 65534;

/// The attacker, running in the SSH server's namespace as [`ATTACKER_UID`].
struct Attacker {
    child: Child,
    out: PathBuf,
    _dir: TempDir,
}

impl Attacker {
    /// Start it on the SSH server against control connections to `ftp_port`, and wait until it runs.
    fn start(lab: &Lab, mode: &str, ftp_port: u16, size: usize) -> Attacker {
        Attacker::start_in(lab, "SERVER_NS", mode, ftp_port, size)
    }

    /// [`Attacker::start`] in the namespace that `ns_key` names.
    fn start_in(lab: &Lab, ns_key: &str, mode: &str, ftp_port: u16, size: usize) -> Attacker {
        let dir = TempDir::new().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let out = dir.path().join("stolen");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/servers/attacker.py");
        let mut child = Command::new("ip")
            .args(["netns", "exec", lab.var(ns_key), "setpriv"])
            .args([format!("--reuid={ATTACKER_UID}"), format!("--regid={ATTACKER_UID}"), "--clear-groups".into()])
            .args(["/usr/bin/python3", script, mode, &ftp_port.to_string(), &size.to_string()])
            .arg(&out)
            .arg("120")
            .stdout(Stdio::piped())
            .spawn()
            .expect("could not start the attacker");
        let mut first = String::new();
        BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut first).unwrap();
        assert_eq!(first.trim(), "ready", "the attacker did not start");
        Attacker { child, out, _dir: dir }
    }

    /// Stop it: how many connections it made, and how many bytes it received.
    fn stop(self) -> (u64, u64) {
        std::fs::write(self.out.with_extension("stop"), b"").unwrap();
        let out = self.child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let last: Vec<u64> = text.lines().last().unwrap_or("").split(' ').filter_map(|n| n.parse().ok()).collect();
        assert_eq!(last.len(), 2, "the attacker's last line: {text:?}");
        (last[0], last[1])
    }
}

/// Lines of a trace where the tool refused a connection of the attacker's, named by its uid.
fn refusals_of_the_attacker(err: &str) -> usize {
    err.lines().filter(|l| l.contains("refused") && l.contains(&format!("uid {ATTACKER_UID}"))).count()
}

/// `get small.bin` [`RUNS`] times from the FTP server on `ftp_key` while the attacker offers
/// bytes of its own (`mode` hold: it keeps its connection open; close: it closes at once).
/// Every download that succeeds is the server's file; every one must succeed where `must_win`.
fn download_under_attack(ftp_key: &str, mode: &str, must_win: bool) {
    download_under_attack_via("SSH_PORT", ftp_key, mode, must_win);
}

/// [`download_under_attack`] through the SSH server on `ssh_key`.
fn download_under_attack_via(ssh_key: &str, ftp_key: &str, mode: &str, must_win: bool) {
    download_under_attack_as(ssh_key, ftp_key, mode, must_win, &[]);
}

/// [`download_under_attack_via`] with `login` (options) before the command.
fn download_under_attack_as(ssh_key: &str, ftp_key: &str, mode: &str, must_win: bool, login: &[&str]) {
    let tool = Tool::new();
    let (ssh, port) = (tool.lab.port(ssh_key), tool.lab.port(ftp_key));
    let want = std::fs::read(tool.remote_path("small.bin")).unwrap();
    let attacker = Attacker::start(&tool.lab, mode, port, want.len());
    let mut refused = 0;
    for i in 0..MAX_RUNS {
        if i >= RUNS && (mode != "hold" || refused > 0) {
            break;
        }
        let name = format!("got-{i}.bin");
        let out = run(tool.cmd_via(ssh, port).args(login).args(["-v", "get", "small.bin", &name]));
        let err = stderr(&out);
        let path = tool.work.path().join(&name);
        refused += refusals_of_the_attacker(&err);
        if out.status.success() {
            assert_default_port(&err);
            assert_same(&std::fs::read(&path).unwrap(), &want, &format!("{ftp_key} {mode} run {i}"));
        } else {
            assert!(!must_win, "{ftp_key} {mode} run {i}: the server's own connection was not told apart:\n{err}");
            assert!(!path.exists(), "{ftp_key} {mode} run {i}: a failed download left {name}");
            assert!(err.contains("raced"), "{ftp_key} {mode} run {i}: the error does not say why:\n{err}");
        }
    }
    let (made, _) = attacker.stop();
    assert!(made > 0, "{ftp_key}: the attacker never connected");
    if mode == "hold" {
        assert!(refused > 0, "{ftp_key}: no connection of the attacker's was refused by its uid: no race happened");
    }
    let parts: Vec<_> = tool.work_entries().into_iter().filter(|n| n.contains("part")).collect();
    assert!(parts.is_empty(), "part files left: {parts:?}");
}

#[test]
fn a_download_is_never_replaced_by_another_users_connection_proftpd() {
    download_under_attack("PROFTPD_PORT", "hold", true);
    download_under_attack("PROFTPD_PORT", "close", true);
}

#[test]
fn a_download_is_never_replaced_by_another_users_connection_proftpd_fixed_port() {
    download_under_attack("PROFTPD_FIXED_PORT", "hold", true);
    download_under_attack("PROFTPD_FIXED_PORT", "close", true);
}

#[test]
fn a_download_is_never_replaced_by_another_users_connection_inetutils() {
    download_under_attack("INETUTILS_PORT", "hold", true);
    // inetutils closes a small file's connection at once: that one and the attacker's closed one
    // cannot be told apart by their owner, and the transfer may end with a clear error instead.
    download_under_attack("INETUTILS_PORT", "close", false);
}

/// `put` a private file [`RUNS`] times to the FTP server on `ftp_key` while the attacker reads
/// whatever reaches its connections: it gets nothing, and the server's copy is identical.
fn upload_under_attack(ssh_key: &str, ftp_key: &str) {
    let tool = Tool::new();
    let (ssh, port) = (tool.lab.port(ssh_key), tool.lab.port(ftp_key));
    let content: Vec<u8> = (0..300_000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    let source = tool.work.path().join("private.bin");
    std::fs::write(&source, &content).unwrap();
    std::fs::set_permissions(&source, std::fs::Permissions::from_mode(0o600)).unwrap();
    let attacker = Attacker::start(&tool.lab, "steal", port, 0);
    let cmd = || tool.cmd_via(ssh, port);
    puts_under_attack(&tool, attacker, cmd, (&source, &content), RUNS, ftp_key, assert_default_port);
}

/// `put` `source` (whose bytes are `content`) `runs` times with `cmd` while `attacker` reads
/// whatever reaches its connections; `check` judges each trace. The attacker gets nothing, and
/// the server's copy is identical.
fn puts_under_attack(
    tool: &Tool,
    attacker: Attacker,
    cmd: impl Fn() -> Command,
    (source, content): (&Path, &[u8]),
    runs: usize,
    what: &str,
    check: fn(&str),
) {
    for i in 0..runs {
        let remote = format!("upload/origin-{}-{what}-{i}.bin", std::process::id());
        let _cleanup = RemoveOnDrop(tool.remote_path(&remote));
        let out = run(cmd().args(["-v", "put", source.to_str().unwrap(), &remote]));
        let err = stderr(&out);
        assert!(out.status.success(), "{what} put {i}:\n{err}");
        check(&err);
        assert_same(&std::fs::read(tool.remote_path(&remote)).unwrap(), content, &format!("{what} put {i}"));
    }
    let (made, stolen) = attacker.stop();
    assert!(made > 0, "{what}: the attacker never connected");
    assert_eq!(stolen, 0, "{what}: the attacker received {stolen} bytes of the upload");
}

/// `mget` from ProFTPD's fixed data port while the attacker races: from the first file on (the
/// listing's connection shows the 4-tuple), our relay proves each connection's origin as the 150
/// goes by. Every
/// file saved is the server's, and the attacker's connections are refused.
#[test]
fn an_mget_from_the_fixed_port_saves_only_the_servers_bytes() {
    for mode in ["hold", "close"] {
        let tool = Tool::new();
        let port = tool.lab.port("PROFTPD_FIXED_PORT");
        let attacker = Attacker::start(&tool.lab, mode, port, 1024);
        let out = run(tool.cmd(port).args(["-vv", "mget", "many/f0*", "-d", "out", "--jobs", "1"]));
        let err = stderr(&out);
        assert!(out.status.success(), "{mode}:\n{err}");
        common::tool::assert_many(&tool, "out", 1..=99);
        let relayed = err.lines().filter(|l| l.contains(" read by the relay, ")).count();
        assert!(relayed >= 90, "{mode}: {relayed} of 99 proven by the relay:\n{err}");
        let (made, _) = attacker.stop();
        assert!(made > 0, "{mode}: the attacker never connected");
    }
}

/// The relay watches the data 4-tuple from the first file on (the listing's connection shows it),
/// so every file's connection of an `mget` from ProFTPD's fixed port is proven by it as the 150
/// goes by. A file sent before the relay had the tuple (the second, when the watch came with the
/// third) had its 150 go by unproven in a third of the runs, and waited 60 ms for the relay's word.
#[test]
fn the_relay_proves_every_file_of_an_mget_from_the_fixed_port() {
    let tool = Tool::new();
    let port = tool.lab.port("PROFTPD_FIXED_PORT");
    let (runs, files) = (3, 9u32);
    let mut relayed = 0;
    for i in 0..runs {
        let dir = format!("out{i}");
        let out = run(tool.cmd(port).args(["-vv", "mget", "many/f00*", "-d", &dir, "--jobs", "1"]));
        let err = stderr(&out);
        assert!(out.status.success(), "{err}");
        common::tool::assert_many(&tool, &dir, 1..=files);
        assert!(!err.contains("the relay said nothing"), "a connection waited for the relay's word:\n{err}");
        relayed += err.lines().filter(|l| l.contains(" read by the relay, ")).count();
    }
    // One may be proven by the helper first on a busy machine (the relay's word not within 3 ms).
    let all = runs * files as usize;
    assert!(relayed + 1 >= all, "{relayed} of {all} proven by the relay");
}

/// The attacker binds ProFTPD's fixed data port itself (SO_REUSEADDR) and connects from it to
/// sshd's forward: the very 4-tuple of the server's connections, each of its connections reset
/// at once so that the server's can follow on the same tuple. The relay's proof is the latest
/// connection's on the tuple only, so no file is ever saved with the attacker's bytes; whatever
/// the race costs (a transfer refused, a link given up), no part file stays.
#[test]
fn an_attacker_on_the_servers_own_4_tuple_gets_no_bytes_saved() {
    let tool = Tool::new();
    let port = tool.lab.port("PROFTPD_FIXED_PORT");
    let attacker = Attacker::start(&tool.lab, "tuple", port, 1024);
    let out = run(tool.cmd(port).args(["-vv", "mget", "many/f0*", "-d", "out", "--jobs", "1"]));
    let err = stderr(&out);
    let (made, _) = attacker.stop();
    let dir = tool.work.path().join("out");
    let saved = if dir.exists() { common::tool::entries(&dir) } else { Vec::new() };
    assert!(saved.iter().all(|n| !n.contains("part")), "part files left: {saved:?}");
    for name in &saved {
        let want = std::fs::read(tool.remote_path("many").join(name)).unwrap();
        assert_same(&std::fs::read(dir.join(name)).unwrap(), &want, name);
    }
    assert!(made > 0, "the attacker never connected from the server's port:\n{err}");
    eprintln!("{made} connections of the attacker's; {} files saved; exit {:?}", saved.len(), out.status.code());
}

#[test]
fn an_upload_never_reaches_another_users_connection() {
    for ftp_key in ["PROFTPD_PORT", "PROFTPD_FIXED_PORT", "INETUTILS_PORT"] {
        upload_under_attack("SSH_PORT", ftp_key);
    }
}

/// Through dropbear, whose forwards are root's and which opens the control connection's
/// socket as root: the same attacks, the same outcome.
#[test]
fn through_dropbear_the_attacker_gets_nothing_either() {
    download_under_attack_via("DROPBEAR_PORT", "PROFTPD_PORT", "hold", true);
    download_under_attack_via("DROPBEAR_PORT", "PROFTPD_PORT", "close", true);
    upload_under_attack("DROPBEAR_PORT", "PROFTPD_PORT");
}

/// `GatewayPorts no`, and the FTP server reached at the SSH server's own address: sshd binds
/// loopback, and the attacker listens on that address at the port the FTP server will connect
/// to, before the tool reads the table. Its listener is not sshd's: the tool never lets the
/// server connect there (another control connection, then passive), and the attacker gets
/// nothing.
#[test]
fn a_squatted_forward_address_gets_nothing() {
    let tool = Tool::new();
    let (ssh, port) = (tool.lab.port("NOGW_SSH_PORT"), tool.lab.port("PROFTPD_PORT"));
    let want = std::fs::read(tool.remote_path("small.bin")).unwrap();
    let attacker = Attacker::start(&tool.lab, "squat", port, 0);
    let mut squatted = 0;
    for i in 0..MAX_RUNS {
        if i >= RUNS && squatted > 0 {
            break;
        }
        let name = format!("squat-{i}.bin");
        let mut cmd = tool.cmd_to(ssh, tool.lab.var("SERVER_ADDR"), port);
        let out = run(cmd.args(["-v", "get", "small.bin", &name]));
        let err = stderr(&out);
        assert!(out.status.success(), "run {i}:\n{err}");
        squatted += err.lines().filter(|l| l.contains(&format!("uid {ATTACKER_UID}'s socket listens on"))).count();
        assert_same(&std::fs::read(tool.work.path().join(&name)).unwrap(), &want, &format!("run {i}"));
    }
    let (_, stolen) = attacker.stop();
    assert_eq!(stolen, 0, "the squatter received {stolen} bytes");
    assert!(squatted > 0, "the attacker never squatted before the check: no race happened");
}

/// The FTP server on another host (the lab's third namespace), the attacker on that host: its
/// connections to sshd's forward come from the FTP server's address, from ephemeral ports as the
/// server's own do, and nothing on the SSH server can tell them apart. The tool takes the
/// passive path there (the server ties that data connection to the SSH server's address), and
/// the attacker neither replaces a download nor reads an upload.
#[test]
fn an_attacker_on_another_ftp_host_gets_nothing() {
    let tool = Tool::new();
    let (ssh, port) = (tool.lab.port("SSH_PORT"), tool.lab.port("BASTION_PROFTPD_PORT"));
    let host = tool.lab.var("BASTION_FTP_ADDR").to_string();
    let want = std::fs::read(tool.remote_path("small.bin")).unwrap();
    let attacker = Attacker::start_in(&tool.lab, "FTP_NS", "close-far", port, want.len());
    for i in 0..RUNS * 3 {
        let name = format!("far-{i}.bin");
        let out = run(tool.cmd_to(ssh, &host, port).args(["-v", "get", "small.bin", &name]));
        assert!(out.status.success(), "run {i}:\n{}", stderr(&out));
        assert_same(&std::fs::read(tool.work.path().join(&name)).unwrap(), &want, &format!("run {i}"));
    }
    let (made, _) = attacker.stop();
    assert!(made > 0, "the attacker never connected");
    let source = tool.work.path().join("far-0.bin");
    let attacker = Attacker::start_in(&tool.lab, "FTP_NS", "steal-far", port, 0);
    let cmd = || tool.cmd_to(ssh, &host, port);
    puts_under_attack(&tool, attacker, cmd, (&source, &want), RUNS * 3, "far", |_| {});
}

/// A session where neither perl, python3 nor socat runs: P comes from the socket table, and
/// the origin from the forwarded port's rows of `/proc/net/tcp`, read through a shell.
#[test]
fn without_perl_on_the_ssh_server_the_attacker_gets_nothing_either() {
    download_under_attack_via("NOINTERP_SSH_PORT", "PROFTPD_PORT", "hold", true);
    upload_under_attack("NOINTERP_SSH_PORT", "PROFTPD_PORT");
}

/// No attacker, GNU inetutils ftpd, four workers: its small files' data sockets close before
/// their owners can be read, so their connections wait unproven; a transfer sent ahead would
/// leave two waiting at once, taken for a race. Not one may be reported.
#[test]
fn an_rfc959_servers_unproven_connections_are_never_taken_for_a_race() {
    let tool = Tool::new();
    for round in 0..2 {
        let dir = format!("m{round}");
        let out =
            run(tool.cmd(tool.lab.port("INETUTILS_PORT")).args(["-v", "mget", "many/*", "-d", &dir, "--jobs", "4"]));
        let err = stderr(&out);
        assert!(out.status.success(), "{err}");
        assert!(!err.contains("raced") && !err.contains("possible data port theft"), "a race with no attacker:\n{err}");
        assert!(err.contains("0 retries"), "{err}");
        common::tool::assert_many(&tool, &dir, 1..=200);
    }
}

/// A ProFTPD virtual user: its session runs as a uid that no account on the SSH server names.
/// Without `--ftp-uid` its data connections can only wait unconfirmed; named with it, they are
/// proven by their owner, and a racing attacker's are refused by theirs.
#[test]
fn a_virtual_users_connections_are_proven_by_the_uid_given() {
    let tool = Tool::new();
    let (user, uid) = (tool.lab.var("VIRTUAL_USER"), tool.lab.var("VIRTUAL_UID"));
    let want = std::fs::read(tool.remote_path("small.bin")).unwrap();
    let port = tool.lab.port("PROFTPD_PORT");
    for (uid_option, says) in [
        (None, format!("waits: it was made by uid {uid}, which may be the FTP server's")),
        (Some(uid), format!("its socket is uid {uid}'s")),
    ] {
        let mut cmd = tool.cmd(port);
        cmd.args(["-u", user]);
        if let Some(uid) = uid_option {
            cmd.args(["--ftp-uid", uid]);
        }
        let out = run(cmd.args(["-vv", "get", "small.bin", "virtual.bin"]));
        let err = stderr(&out);
        assert!(out.status.success(), "--ftp-uid {uid_option:?}:\n{err}");
        assert!(err.contains(&says), "--ftp-uid {uid_option:?}: no {says:?} in:\n{err}");
        assert_same(&std::fs::read(tool.work.path().join("virtual.bin")).unwrap(), &want, "virtual user");
        std::fs::remove_file(tool.work.path().join("virtual.bin")).unwrap();
    }
    let out = run(tool.cmd(port).args(["-u", user, "--ftp-uid", user, "get", "small.bin", "virtual.bin"]));
    let err = stderr(&out);
    assert!(err.contains(&format!("--ftp-uid {user}: the SSH server has no such account")), "{err}");
    download_under_attack_as("SSH_PORT", "PROFTPD_PORT", "hold", true, &["-u", user, "--ftp-uid", uid]);
}
