//! `tunnel`, the book's case: the classic `ftp` client's transcript (login, `ls`, `ls` again,
//! `get`, a hundred `get`s) through the tool against the server that sends from port 20 with
//! TCP timestamps off, where the book's second `ls` got a 425: the tunnel paces TIME_WAIT
//! behind the client's back, and the client sees no 425. Then the client with `sendport` off,
//! listening on its own control port C; and a second local user racing the client's data
//! connections. All under the veth capture.
//!
//! Needs root and `scripts/lab up`; run with `--test-threads=1` (shared veth).

mod common;

use std::process::{Command, Stdio};

use common::lab::ServerSysctl;
use common::tool::{assert_same, Tool};
use common::tunnel::{captured, client, client_script, ok, read};

/// The second user of the client host.
const ATTACKER: u32 = 65534;

/// The book's transcript with inetutils `ftp` (PORT, its default; or with `sendport` toggled
/// off, the book's own way), then 100 gets in a row.
fn transcript(host_key: Option<&str>, port_key: &str, sendport: bool) {
    let tool = Tool::new();
    let _timestamps = ServerSysctl::set(&tool.lab, "net.ipv4.tcp_timestamps", "0", Some("1"));
    let small = read(&tool.remote_path("small.bin"));
    let dir = tool.work.path();
    let host = host_key.map_or("127.0.0.1", |k| tool.lab.var(k)).to_string();
    let mut script = String::from(if sendport { "" } else { "sendport\n" });
    script.push_str("binary\nls\nls\nget small.bin first.bin\n");
    for i in 0..100 {
        script.push_str(&format!("get small.bin got-{i}.bin\n"));
    }
    script.push_str("quit\n");
    let mut said = String::new();
    let trace = captured(&tool, &host, tool.lab.port(port_key), &[&small], |port| {
        let out = client_script(&tool, dir, "inetutils-ftp", &["-v", "127.0.0.1", &port.to_string()], &script);
        ok(&out, "inetutils-ftp");
        said = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    });
    // A line of its own: "0.00425 seconds" is a transfer's time.
    assert!(!said.lines().any(|l| l.starts_with("425")), "the client saw a 425:\n{said}");
    assert!(!said.contains("Address already in use"), "the client could not listen on C:\n{said}");
    let finals = said.lines().filter(|l| l.starts_with("226 ")).count();
    assert_eq!(finals, 103, "two listings and 101 gets, each with its 226:\n{said}");
    for name in std::iter::once("first.bin".to_string()).chain((0..100).map(|i| format!("got-{i}.bin"))) {
        assert_same(&read(&dir.join(&name)), &small, &name);
    }
    if sendport {
        assert!(trace.contains("the tunnel connects there"), "{trace}");
    } else {
        assert!(said.contains("Use of PORT cmds off"), "sendport was not toggled off:\n{said}");
        assert!(trace.contains("SO_REUSEADDR set on the client's control socket"), "{trace}");
        assert!(!trace.contains("the client listens on"), "the client sent PORT:\n{trace}");
    }
}

#[test]
fn the_books_transcript_against_proftpd_from_port_20() {
    transcript(Some("PROFTPD20_ADDR"), "PROFTPD20_PORT", true);
}

#[test]
fn the_books_transcript_against_inetutils_ftpd() {
    transcript(None, "INETUTILS_PORT", true);
}

/// The book's case literally: inetutils `ftp` with `sendport` off listens on its control port
/// C, which Linux allows only because the tunnel set SO_REUSEADDR on the client's control
/// socket behind its back (pidfd_getfd).
#[test]
fn the_books_transcript_sendport_off_against_proftpd_from_port_20() {
    transcript(Some("PROFTPD20_ADDR"), "PROFTPD20_PORT", false);
}

#[test]
fn the_books_transcript_sendport_off_against_inetutils_ftpd() {
    transcript(None, "INETUTILS_PORT", false);
}

/// tnftp in active mode with `sendport` off, on the server of each source-port kind.
#[test]
fn tnftp_sendport_off() {
    for (host_key, port_key) in [(Some("PROFTPD20_ADDR"), "PROFTPD20_PORT"), (None, "INETUTILS_PORT")] {
        let tool = Tool::new();
        let small = read(&tool.remote_path("small.bin"));
        let dir = tool.work.path();
        let host = host_key.map_or("127.0.0.1", |k| tool.lab.var(k)).to_string();
        let mut script = String::from("sendport\nbinary\nls\nls\n");
        for i in 0..10 {
            script.push_str(&format!("get small.bin got-{i}.bin\n"));
        }
        script.push_str("quit\n");
        let trace = captured(&tool, &host, tool.lab.port(port_key), &[&small], |port| {
            let out = client_script(&tool, dir, "tnftp", &["-A", "127.0.0.1", &port.to_string()], &script);
            ok(&out, "tnftp");
            let said = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
            assert!(!said.lines().any(|l| l.starts_with("425")) && !said.contains("Address already in use"), "{said}");
            assert!(said.contains("Use of PORT/LPRT cmds off"), "sendport was not toggled off:\n{said}");
        });
        for i in 0..10 {
            assert_same(&read(&dir.join(format!("got-{i}.bin"))), &small, &format!("{port_key}: get {i}"));
        }
        assert!(trace.contains("SO_REUSEADDR set on the client's control socket"), "{trace}");
        assert!(!trace.contains("the client listens on"), "the client sent PORT or EPRT:\n{trace}");
    }
}

/// `sendport` off: the client listens on its control connection's own port C and sends
/// neither PORT nor PASV; the tunnel forwards each data connection to C. (The script sets
/// SO_REUSEADDR on its control socket itself, as Linux's bind rule wants.)
#[test]
fn sendport_off_the_client_listens_on_its_control_port() {
    for (host_key, port_key) in [(Some("PROFTPD20_ADDR"), "PROFTPD20_PORT"), (None, "INETUTILS_PORT")] {
        let tool = Tool::new();
        let _timestamps = ServerSysctl::set(&tool.lab, "net.ipv4.tcp_timestamps", "0", Some("1"));
        let small = read(&tool.remote_path("small.bin"));
        let dir = tool.work.path();
        let host = host_key.map_or("127.0.0.1", |k| tool.lab.var(k)).to_string();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/sendport_off.py");
        let user = tool.lab.var("FTP_USER").to_string();
        let trace = captured(&tool, &host, tool.lab.port(port_key), &[&small], |port| {
            let args =
                [script, "127.0.0.1", &port.to_string(), &user, "ls", "ls", "repeat", "30", "get", "small.bin", "got-"];
            let out = client(&tool, dir, "python3", &args);
            ok(&out, "the sendport-off client");
            assert!(!String::from_utf8_lossy(&out.stdout).lines().any(|l| l.starts_with("425")));
        });
        for i in 0..30 {
            assert_same(&read(&dir.join(format!("got-{i}"))), &small, &format!("{port_key}: get {i}"));
        }
        assert!(!trace.contains("answered by the tunnel's own listener"), "{trace}");
        assert!(!trace.contains("the client listens on"), "{trace}");
    }
}

/// A second local user connects, as fast as it can, to every loopback listener of another uid
/// it sees in the socket table (the tunnel's passive ports among them), and to the tunnel
/// itself, while a passive client that is slow to connect (a third of a second after the 227)
/// downloads and uploads: the attacker's connections are refused, it gets nothing, and no byte
/// of its lands in a file.
#[test]
fn a_second_local_user_racing_the_data_ports_gets_nothing() {
    let tool = Tool::new();
    let small = read(&tool.remote_path("small.bin"));
    let dir = tool.work.path();
    let remote = format!("upload/tunnel-race-{}.bin", std::process::id());
    let _cleanup = common::tool::RemoveOnDrop(tool.remote_path(&remote));
    let attacker_out = dir.join("attacker.txt");
    let user = tool.lab.var("FTP_USER").to_string();
    let trace = captured(&tool, "127.0.0.1", tool.lab.port("PROFTPD_PORT"), &[&small], |port| {
        let mut attacker = Command::new("ip")
            .args(["netns", "exec", tool.lab.var("CLIENT_NS"), "setpriv"])
            .args([format!("--reuid={ATTACKER}"), format!("--regid={ATTACKER}"), "--clear-groups".into()])
            .args([
                "/usr/bin/python3",
                concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/racer.py"),
                &port.to_string(),
            ])
            .stdout(std::fs::File::create(&attacker_out).unwrap())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/slow_pasv.py");
        let source = tool.remote_path("small.bin");
        let args = [
            script,
            "127.0.0.1",
            &port.to_string(),
            &user,
            "10",
            "small.bin",
            "got-",
            source.to_str().unwrap(),
            &remote,
        ];
        let out = client(&tool, dir, "python3", &args);
        let _ = attacker.kill();
        let _ = attacker.wait();
        ok(&out, "the slow passive client");
    });
    for i in 0..10 {
        assert_same(&read(&dir.join(format!("got-{i}"))), &small, &format!("get {i}"));
    }
    assert_same(&read(&tool.remote_path(&remote)), &small, "the last upload");
    let attacker = String::from_utf8_lossy(&read(&attacker_out)).into_owned();
    // The tunnel's one word to a foreign uid is its refusal; nothing else may reach it.
    for line in attacker.lines().filter(|l| l.starts_with("GOT ")) {
        assert!(line.contains("421 This tunnel serves its own user only"), "the attacker received bytes: {line}");
    }
    assert!(trace.contains("refused a data connection from"), "the attacker never reached a passive port:\n{trace}");
    assert!(trace.contains("refused a client at"), "the attacker never reached the tunnel:\n{trace}");
}

/// The same second user racing the classic client's own listeners: its PORT listener, and with
/// `sendport` off its listener on C, for downloads and uploads. The tunnel connects to the
/// client's listener as soon as it is named (PORT) or used (the transfer command), and before
/// its 150 makes sure that no other connection waits there ahead of its own, else answers 425
/// (as the threat model has it, a race the attacker wins fails the transfer, nothing written):
/// the attacker gets nothing, no byte of its lands in a file, and no transfer breaks.
#[test]
fn a_second_local_user_racing_the_clients_listeners_gets_nothing() {
    for sendport in [true, false] {
        let tool = Tool::new();
        let small = read(&tool.remote_path("small.bin"));
        let dir = tool.work.path();
        std::fs::write(dir.join("up.bin"), &small).unwrap();
        let remote = format!("upload/tunnel-race-{}-{sendport}.bin", std::process::id());
        let _cleanup = common::tool::RemoveOnDrop(tool.remote_path(&remote));
        let attacker_out = dir.join("attacker.txt");
        let mut script = String::from(if sendport { "binary\n" } else { "sendport\nbinary\n" });
        for i in 0..20 {
            script.push_str(&format!("get small.bin got-{i}.bin\nput up.bin {remote}\n"));
        }
        script.push_str("quit\n");
        let mut said = String::new();
        let trace = captured(&tool, "127.0.0.1", tool.lab.port("PROFTPD_PORT"), &[&small], |port| {
            let mut attacker = Command::new("ip")
                .args(["netns", "exec", tool.lab.var("CLIENT_NS"), "setpriv"])
                .args([format!("--reuid={ATTACKER}"), format!("--regid={ATTACKER}"), "--clear-groups".into()])
                .args([
                    "/usr/bin/python3",
                    concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/racer.py"),
                    &port.to_string(),
                ])
                .stdout(std::fs::File::create(&attacker_out).unwrap())
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap();
            let out = client_script(&tool, dir, "inetutils-ftp", &["-v", "127.0.0.1", &port.to_string()], &script);
            let _ = attacker.kill();
            let _ = attacker.wait();
            ok(&out, "inetutils-ftp");
            said = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        });
        let attacker = String::from_utf8_lossy(&read(&attacker_out)).into_owned();
        for line in attacker.lines().filter(|l| l.starts_with("GOT ")) {
            assert!(line.contains("421 This tunnel serves its own user only"), "the attacker received bytes: {line}");
        }
        // Each transfer's final reply, in order (get, put, get, ...): 226, or 425 where the
        // attacker's connection was seen waiting at the client's listener (never a 426: a
        // transfer that started was the client's own to the end).
        let finals: Vec<&str> =
            said.lines().filter(|l| ["226 ", "425 ", "426 "].iter().any(|c| l.starts_with(c))).collect();
        assert_eq!(finals.len(), 40, "sendport {sendport}: 20 gets and 20 puts, each with one final reply:\n{said}");
        assert!(!finals.iter().any(|l| l.starts_with("426")), "sendport {sendport}: a transfer broke:\n{said}");
        let refused = finals.iter().filter(|l| l.starts_with("425")).count();
        eprintln!("sendport {sendport}: {refused} of 40 transfers refused for another user's connection");
        if refused > 0 {
            assert!(trace.contains("another connection"), "{trace}");
        }
        for i in (0..20).filter(|i| finals[2 * i].starts_with("226")) {
            assert_same(&read(&dir.join(format!("got-{i}.bin"))), &small, &format!("sendport {sendport}: get {i}"));
        }
        if finals.iter().skip(1).step_by(2).any(|l| l.starts_with("226")) {
            assert_same(&read(&tool.remote_path(&remote)), &small, &format!("sendport {sendport}: the put"));
        }
        assert!(!trace.contains("answered by the tunnel's own listener"), "{trace}");
    }
}
