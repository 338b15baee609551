//! Real peers. P is known, not guessed, whatever else runs at the same moment; SSH
//! servers the tool does not control (dropbear, `GatewayPorts no`, sessions without perl,
//! python3 or socat); a server that refuses the default port with silence; an FTP server
//! behind the SSH server (a bastion). In `auto` every default-port failure falls back to
//! passive, saying why. Every run here is under the veth capture: only the SSH port, no
//! password, no file bytes.
//!
//! Needs root and `scripts/lab up`; run with `--test-threads=1` (shared veth).

mod common;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::capture::{assert_encrypted, file_samples, Capture};
use common::tool::{assert_default_port, assert_many, assert_same, captured_cmd, run, stderr, Tool};

/// The silent server costs the tool's bound (4 s) and a new control connection; the
/// issue's limit for the whole run.
const SILENT_WALL_LIMIT: Duration = Duration::from_secs(10);

/// Start every command at once, then wait for all of them.
fn all_at_once(cmds: Vec<Command>) -> Vec<Output> {
    let children: Vec<_> = cmds
        .into_iter()
        .map(|mut c| c.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("could not start the tool"))
        .collect();
    children.into_iter().map(|c| c.wait_with_output().unwrap()).collect()
}

/// `runs` separate `get` processes started at once, `rounds` times, through the SSH server on
/// `ssh_key` to the FTP server on `ftp_key`, under one capture; each must succeed on the
/// default port with a byte-identical copy. Returns every trace.
fn gets_at_once(ssh_key: &str, ftp_key: &str, runs: usize, rounds: usize) -> Vec<String> {
    let tool = Tool::new();
    let (ssh_port, ftp_port) = (tool.lab.port(ssh_key), tool.lab.port(ftp_key));
    let want = std::fs::read(tool.remote_path("small.bin")).unwrap();
    let capture = Capture::start(tool.lab.var("CLIENT_NS"), tool.lab.var("CLIENT_IF"));
    let mut traces = Vec::new();
    for round in 0..rounds {
        let cmds = (0..runs)
            .map(|i| {
                let mut cmd = tool.cmd_via(ssh_port, ftp_port);
                cmd.args(["-v", "get", "small.bin", &format!("r{round}-{i}.bin")]);
                cmd
            })
            .collect();
        for (i, out) in all_at_once(cmds).into_iter().enumerate() {
            let err = stderr(&out);
            assert!(out.status.success(), "{ftp_key} round {round} run {i} failed:\n{err}");
            assert_default_port(&err);
            let got = std::fs::read(tool.work.path().join(format!("r{round}-{i}.bin"))).unwrap();
            assert_same(&got, &want, &format!("{ftp_key} round {round} run {i}"));
            traces.push(err);
        }
    }
    let captured = capture.stop();
    let samples = file_samples(&want);
    let mut secrets = vec![(tool.lab.var("FTP_PASSWORD").as_bytes(), "the FTP password")];
    secrets.extend(samples.iter().map(|s| (&s[..], "the file's content")));
    assert_encrypted(&captured, ssh_port, &secrets, (want.len() * runs * rounds) as u64);
    assert_eq!(tool.work_entries().len(), runs * rounds, "only the downloaded files: {:?}", tool.work_entries());
    traces
}

#[test]
fn six_gets_at_once_three_rounds_from_proftpd_and_inetutils() {
    for ftp_key in ["PROFTPD_PORT", "INETUTILS_PORT"] {
        for err in gets_at_once("SSH_PORT", ftp_key, 6, 3) {
            assert!(err.contains("relay: P = "), "P was not reported by the relay:\n{err}");
        }
    }
}

#[test]
fn six_gets_at_once_where_no_relay_can_run() {
    // Sessions without perl, python3 or socat: P comes from the socket-table diff, which sees
    // the other runs' connections too and must retry rather than guess.
    for err in gets_at_once("NOINTERP_SSH_PORT", "PROFTPD_PORT", 6, 1) {
        assert!(err.contains("(from the socket table)"), "P did not come from the socket table:\n{err}");
        assert!(err.contains("no relay interpreter on the SSH server"), "{err}");
    }
}

#[test]
fn two_mgets_at_once() {
    let tool = Tool::new();
    let port = tool.lab.port("PROFTPD_PORT");
    let capture = Capture::start(tool.lab.var("CLIENT_NS"), tool.lab.var("CLIENT_IF"));
    let cmds = ["a", "b"]
        .iter()
        .map(|dir| {
            let mut cmd = tool.cmd(port);
            cmd.args(["-v", "mget", "many/f0*.txt", "-d", dir]);
            cmd
        })
        .collect();
    let outs = all_at_once(cmds);
    let captured = capture.stop();
    for out in &outs {
        let err = stderr(out);
        assert!(out.status.success(), "{err}");
        assert!(err.contains("99 transfers: 99 ok, 0 failed"), "{err}");
        assert_default_port(&err);
    }
    for dir in ["a", "b"] {
        assert_many(&tool, dir, 1..=99);
    }
    assert_encrypted(
        &captured,
        tool.lab.port("SSH_PORT"),
        &[(tool.lab.var("FTP_PASSWORD").as_bytes(), "the FTP password")],
        0,
    );
}

#[test]
fn dropbear_carries_get_put_and_mget() {
    let tool = Tool::new();
    let ssh = tool.lab.port("DROPBEAR_PORT");
    let (fixed, inetutils) = (tool.lab.port("PROFTPD_FIXED_PORT"), tool.lab.port("INETUTILS_PORT"));
    let want = std::fs::read(tool.remote_path("small.bin")).unwrap();
    for (port, name) in [(fixed, "fixed.bin"), (inetutils, "inetutils.bin")] {
        let out = captured_cmd(&tool, ssh, tool.cmd_via(ssh, port), &["get", "small.bin", name], &want);
        assert_default_port(&stderr(&out));
        assert_same(&std::fs::read(tool.work.path().join(name)).unwrap(), &want, name);
    }
    let remote = format!("upload/dropbear-{}.bin", std::process::id());
    let _cleanup = common::tool::RemoveOnDrop(tool.remote_path(&remote));
    let source = tool.remote_path("small.bin");
    let out = captured_cmd(&tool, ssh, tool.cmd_via(ssh, fixed), &["put", source.to_str().unwrap(), &remote], &want);
    assert_default_port(&stderr(&out));
    assert_same(&std::fs::read(tool.remote_path(&remote)).unwrap(), &want, "the uploaded copy");
    let out = captured_cmd(&tool, ssh, tool.cmd_via(ssh, fixed), &["mget", "many/f01*.txt", "-d", "m"], b"");
    let err = stderr(&out);
    assert_default_port(&err);
    assert!(err.contains("10 transfers: 10 ok, 0 failed"), "{err}");
    assert_many(&tool, "m", 10..=19);
}

/// OpenSSH's sshd writes with Nagle on until it starts a command. Its confirmation of our first
/// session channel waited behind its host-keys message (sent after authentication) until we
/// acknowledged that, and Linux delayed our ACK by 40 ms: at the start of every session, every
/// `--jobs` worker's too. The client's namespace counts each ACK it delays (TcpExtDelayedACKs):
/// one a session before the SSH socket acknowledged what it read each time it ran dry, none now.
/// Nothing else talks in that namespace meanwhile (one test at a time, under the lab's lock).
#[test]
fn ssh_sessions_start_without_waiting_for_a_delayed_ack() {
    let tool = Tool::new();
    let fixed = tool.lab.port("PROFTPD_FIXED_PORT");
    for (ssh_key, jobs) in [("SSH_PORT", "1"), ("SSH_PORT", "4"), ("DROPBEAR_PORT", "1")] {
        let dir = format!("acks-{ssh_key}-{jobs}");
        let before = tool.lab.tcp_ext("CLIENT_NS", "DelayedACKs");
        let out = run(tool.cmd_via(tool.lab.port(ssh_key), fixed).args([
            "--jobs",
            jobs,
            "mget",
            "many/f01*.txt",
            "-d",
            &dir,
        ]));
        let delayed = tool.lab.tcp_ext("CLIENT_NS", "DelayedACKs") - before;
        assert!(out.status.success(), "{ssh_key} --jobs {jobs}:\n{}", stderr(&out));
        assert_many(&tool, &dir, 10..=19);
        assert_eq!(delayed, 0, "{ssh_key} --jobs {jobs}: the client delayed {delayed} ACK(s)");
    }
}

#[test]
fn a_silent_server_falls_back_to_passive_within_the_bound() {
    // ProFTPD on port 21 with RootRevoke on: it cannot bind port 20 and answers RETR with nothing.
    let tool = Tool::new();
    let (ssh, host) = (tool.lab.port("SSH_PORT"), tool.lab.var("PROFTPD21_ADDR").to_string());
    let port = tool.lab.port("PROFTPD21_PORT");
    let want = std::fs::read(tool.remote_path("small.bin")).unwrap();
    let started = Instant::now();
    let out = captured_cmd(&tool, ssh, tool.cmd_to(ssh, &host, port), &["get", "small.bin"], &want);
    let took = started.elapsed(); // includes the capture's flush: an upper bound
    let err = stderr(&out);
    assert!(took < SILENT_WALL_LIMIT, "took {took:?}:\n{err}");
    assert!(err.contains("switching to passive"), "{err}");
    assert!(err.contains("neither answered RETR small.bin nor connected back"), "not the silent case:\n{err}");
    assert_same(&std::fs::read(tool.work.path().join("small.bin")).unwrap(), &want, "small.bin");

    // Forced default port: the same bound, then a clear error naming the silence.
    std::fs::remove_file(tool.work.path().join("small.bin")).unwrap();
    let started = Instant::now();
    let out = run(tool.cmd_to(ssh, &host, port).args(["--data-mode", "default-port", "get", "small.bin"]));
    let err = stderr(&out);
    assert!(started.elapsed() < SILENT_WALL_LIMIT, "{err}");
    assert_eq!(out.status.code(), Some(5), "{err}");
    assert!(err.contains("neither answered RETR small.bin nor connected back within"), "{err}");
    assert!(tool.work_entries().is_empty(), "left behind: {:?}", tool.work_entries());
}

#[test]
fn dropbear_without_any_relay_interpreter() {
    // dropbear's direct-tcpip sockets belong to root: the diff must accept rows of any uid.
    // Five times: dropbear once lost the words of a relay that exited at once.
    let tool = Tool::new();
    let ssh = tool.lab.port("DROPBEAR_NOINTERP_PORT");
    let want = std::fs::read(tool.remote_path("small.bin")).unwrap();
    for i in 0..5 {
        let name = format!("s{i}.bin");
        let cmd = tool.cmd_via(ssh, tool.lab.port("PROFTPD_FIXED_PORT"));
        let out = captured_cmd(&tool, ssh, cmd, &["get", "small.bin", &name], &want);
        let err = stderr(&out);
        assert_default_port(&err);
        assert!(err.contains("(from the socket table)"), "{err}");
        assert!(err.contains("(perl: not installed; python3: not installed; socat: not installed)"), "{err}");
        assert_same(&std::fs::read(tool.work.path().join(&name)).unwrap(), &want, &name);
    }
}

/// Holds the SSH server's next connection to the FTP server (one to `port` owned by `theirs`)
/// in SYN_SENT: every SYN to `port` on the server's loopback is dropped (htb + u32 into a
/// zero-length pfifo: this kernel has neither netem nor tc actions) until that row appears;
/// then the drop goes and this process connects as `uid`, as another program may. The SSH
/// server's SYN is sent again a second later, so the racer's connection is in the table
/// before the tool's second reading, every time. Prints "raced" if it connected.
const RACER: &str = "import encodings.idna, os, socket, subprocess, sys, time  # idna: unreadable after setuid
theirs, uid, port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def tc(*args):
    subprocess.run(['tc', *args], check=True)
def syn_sent():
    lines = open('/proc/net/tcp').read().splitlines()[1:]
    return [f for f in map(str.split, lines) if f[3] == '02' and f[7] == theirs and int(f[2][-4:], 16) == port]
tc('qdisc', 'add', 'dev', 'lo', 'root', 'handle', '1:', 'htb')
try:
    tc('class', 'add', 'dev', 'lo', 'parent', '1:', 'classid', '1:1', 'htb', 'rate', '8kbit', 'quantum', '1514')
    tc('qdisc', 'add', 'dev', 'lo', 'parent', '1:1', 'handle', '10:', 'pfifo', 'limit', '0')
    tc('filter', 'add', 'dev', 'lo', 'parent', '1:', 'protocol', 'ip', 'prio', '1', 'u32',
       'match', 'ip', 'dport', str(port), '0xffff', 'match', 'u8', '0x02', '0xff', 'at', '33', 'flowid', '1:1')
    print('ready', flush=True)
    deadline = time.time() + 20
    while time.time() < deadline and not syn_sent():
        time.sleep(0.002)
finally:
    tc('qdisc', 'del', 'dev', 'lo', 'root')
if syn_sent():
    os.setuid(uid)
    s = socket.create_connection(('127.0.0.1', port))
    print('raced', flush=True)
    time.sleep(3)
";

/// Takes the racer's SYN drop away if the racer could not (killed, or the test failed first).
struct SynDropGone(String);

impl Drop for SynDropGone {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "exec", &self.0, "tc", "qdisc", "del", "dev", "lo", "root"])
            .stderr(Stdio::null())
            .status();
    }
}

/// dropbear's connection to the FTP server belongs to root, OpenSSH's to the SSH user. A row of
/// the other of the two that appears at the same moment is not someone else's (the user's own
/// programs, or a dropbear on the same host): the diff must see two candidates and try again,
/// never take the other row for ours. Taking the user's row through dropbear forwarded the
/// wrong port (ProFTPD's data connection was refused, 425, and the run went passive); seen
/// with two runs at once, one through OpenSSH and one through dropbear.
#[test]
fn a_connection_of_root_or_the_user_at_the_same_moment_is_not_taken_for_ours() {
    let tool = Tool::new();
    let ftp = tool.lab.port("PROFTPD_PORT");
    let user = Command::new("id").args(["-u", tool.lab.var("SSH_USER")]).output().unwrap().stdout;
    let user = String::from_utf8(user).unwrap().trim().to_string();
    let want = std::fs::read(tool.remote_path("small.bin")).unwrap();
    let _gone = SynDropGone(tool.lab.var("SERVER_NS").to_string());
    for (ssh_key, theirs, racer_uid) in [("DROPBEAR_NOINTERP_PORT", "0", &*user), ("NOINTERP_SSH_PORT", &*user, "0")] {
        let ssh = tool.lab.port(ssh_key);
        let mut racer = Command::new("ip")
            .args(["netns", "exec", tool.lab.var("SERVER_NS"), "python3", "-c", RACER])
            .args([theirs, racer_uid, &ftp.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut said = std::io::BufReader::new(racer.stdout.take().unwrap());
        let mut line = String::new();
        std::io::BufRead::read_line(&mut said, &mut line).unwrap();
        assert_eq!(line.trim(), "ready");
        let name = format!("{ssh_key}.bin");
        let out = captured_cmd(&tool, ssh, tool.cmd_via(ssh, ftp), &["get", "small.bin", &name], &want);
        let _ = racer.kill();
        line.clear();
        std::io::BufRead::read_line(&mut said, &mut line).unwrap();
        let _ = racer.wait();
        let err = stderr(&out);
        assert_eq!(line.trim(), "raced", "{ssh_key}: the racer never saw the SSH server's connection:\n{err}");
        assert!(err.contains("2 new connections to port"), "{ssh_key}: the race went unseen:\n{err}");
        assert_default_port(&err);
        assert_same(&std::fs::read(tool.work.path().join(&name)).unwrap(), &want, &name);
    }
}

#[test]
fn sessions_without_any_relay_interpreter() {
    let tool = Tool::new();
    let ssh = tool.lab.port("NOINTERP_SSH_PORT");
    let want = std::fs::read(tool.remote_path("small.bin")).unwrap();
    // ProFTPD: P from the socket table, the data still on the default port.
    let out = captured_cmd(
        &tool,
        ssh,
        tool.cmd_via(ssh, tool.lab.port("PROFTPD_PORT")),
        &["get", "small.bin", "p.bin"],
        &want,
    );
    let err = stderr(&out);
    assert_default_port(&err);
    assert!(err.contains("perl: not installed; python3: not installed; socat: not installed"), "{err}");
    assert_same(&std::fs::read(tool.work.path().join("p.bin")).unwrap(), &want, "p.bin");
    // inetutils connects back to P itself, which needs the relay: passive, saying why, on stderr.
    let out = captured_cmd(
        &tool,
        ssh,
        tool.cmd_via(ssh, tool.lab.port("INETUTILS_PORT")),
        &["get", "small.bin", "i.bin"],
        &want,
    );
    let err = stderr(&out);
    let line = err.lines().find(|l| l.starts_with("warning: switching to passive")).unwrap_or_else(|| panic!("{err}"));
    assert!(line.contains("needs the relay") && line.contains("no relay interpreter"), "{line}");
    assert_same(&std::fs::read(tool.work.path().join("i.bin")).unwrap(), &want, "i.bin");
}

#[test]
fn an_ftp_server_behind_the_ssh_server() {
    let tool = Tool::new();
    let host = tool.lab.var("BASTION_FTP_ADDR").to_string();
    let want = std::fs::read(tool.remote_path("small.bin")).unwrap();
    for port_key in ["BASTION_PROFTPD_PORT", "BASTION_INETUTILS_PORT"] {
        let port = tool.lab.port(port_key);
        // GatewayPorts clientspecified: sshd listens on its inner address and the server connects
        // there, but from an ephemeral port of another host: any user there could have made that
        // connection, and nothing on the SSH server can tell. Passive, where the FTP server itself
        // ties the data connection to the SSH server's address.
        let ssh = tool.lab.port("SSH_PORT");
        let name = format!("{port_key}.bin");
        let out = captured_cmd(&tool, ssh, tool.cmd_to(ssh, &host, port), &["get", "small.bin", &name], &want);
        let err = stderr(&out);
        assert!(err.contains(&format!("listens on {}:", tool.lab.var("BASTION_GATEWAY_ADDR"))), "{err}");
        let line = err.lines().find(|l| l.contains("switching to passive")).unwrap_or_else(|| panic!("{err}"));
        assert!(line.contains("origin cannot be proven") && line.contains("another host"), "{line}");
        assert_same(&std::fs::read(tool.work.path().join(&name)).unwrap(), &want, &name);
        // GatewayPorts no: sshd says yes but binds loopback; the tool sees it and goes passive.
        let ssh = tool.lab.port("NOGW_SSH_PORT");
        let name = format!("{port_key}-nogw.bin");
        let out = captured_cmd(&tool, ssh, tool.cmd_to(ssh, &host, port), &["get", "small.bin", &name], &want);
        let err = stderr(&out);
        let line = err.lines().find(|l| l.contains("switching to passive")).unwrap_or_else(|| panic!("{err}"));
        assert!(line.contains("GatewayPorts"), "the fallback does not name GatewayPorts: {line}");
        assert!(line.contains("listens on 127.0.0.1:"), "{line}");
        assert!(!err.contains("data connection from"), "{err}");
        assert_same(&std::fs::read(tool.work.path().join(&name)).unwrap(), &want, &name);
    }
}

#[test]
fn the_relay_moves_on_to_the_next_interpreter() {
    // A perl that fails is followed by python3; with neither, socat relays.
    let tool = Tool::new();
    let want = std::fs::read(tool.remote_path("small.bin")).unwrap();
    let inetutils = tool.lab.port("INETUTILS_PORT");
    for (ssh_key, relay) in [("BROKENPERL_SSH_PORT", "python3"), ("SOCATONLY_SSH_PORT", "socat")] {
        let ssh = tool.lab.port(ssh_key);
        let name = format!("{relay}.bin");
        let out = captured_cmd(&tool, ssh, tool.cmd_via(ssh, inetutils), &["get", "small.bin", &name], &want);
        let err = stderr(&out);
        assert_default_port(&err);
        assert!(err.contains(&format!("control connection through the {relay} relay: P = ")), "{err}");
        assert_same(&std::fs::read(tool.work.path().join(&name)).unwrap(), &want, &name);
    }
}

#[test]
fn rotation_within_openssh_default_max_sessions() {
    // `--pace rotate` with a collision per file keeps many control connections open, each
    // with its relay: more than the 10 session channels OpenSSH allows by default. Past
    // that, P comes from the socket table; every file still arrives.
    let _ts = common::lab::ServerSysctl::set(&common::lab::Lab::get(), "net.ipv4.tcp_timestamps", "0", Some("1"));
    let tool = Tool::new();
    let ssh = tool.lab.port("NOGW_SSH_PORT");
    let cmd = tool.cmd_via(ssh, tool.lab.port("PROFTPD_FIXED_PORT"));
    let out = captured_cmd(&tool, ssh, cmd, &["mget", "many/f0*.txt", "-d", "out", "--pace", "rotate"], b"");
    let err = stderr(&out);
    assert!(err.contains("99 transfers: 99 ok, 0 failed"), "{err}");
    assert_many(&tool, "out", 1..=99);
}

#[test]
fn the_cipher_list_is_what_is_offered() {
    // dropbear 2022.83 has no AES-GCM: `-c aes256-gcm@openssh.com` alone cannot be
    // negotiated there, while OpenSSH's sshd takes it. The default order (AES-GCM first
    // where the CPU has AES) still reaches dropbear, whose choice is in the list too.
    let tool = Tool::new();
    let want = std::fs::read(tool.remote_path("small.bin")).unwrap();
    let proftpd = tool.lab.port("PROFTPD_PORT");
    let gcm = "aes256-gcm@openssh.com";
    let ssh = tool.lab.port("SSH_PORT");
    let mut cmd = tool.cmd_via(ssh, proftpd);
    cmd.args(["-c", gcm]);
    captured_cmd(&tool, ssh, cmd, &["get", "small.bin", "gcm.bin"], &want);
    assert_same(&std::fs::read(tool.work.path().join("gcm.bin")).unwrap(), &want, "gcm.bin");
    let dropbear = tool.lab.port("DROPBEAR_PORT");
    let out = run(tool.cmd_via(dropbear, proftpd).args(["-c", gcm, "get", "small.bin", "d.bin"]));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("No common Cipher algorithm") && err.lines().count() == 1, "{err}");
    let out = run(tool.cmd_via(dropbear, proftpd).args(["-c", "3des-cbc", "get", "small.bin", "d.bin"]));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("unknown cipher \"3des-cbc\""), "{}", stderr(&out));
    assert_eq!(tool.work_entries(), vec!["gcm.bin"], "nothing else left behind");
}
