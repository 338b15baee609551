//! `--ascii` (TYPE A) against the lab's four servers: an LF file, a CRLF file and one with lone
//! CRs, each way. What arrives is what each server's own conversion makes of it, measured
//! with a plain FTP client (python ftplib in the server namespace, TYPE A, the raw data
//! connection read and written) and written here:
//!
//! | server | sends a file's LF as | stores a received CRLF as | other CRs it receives |
//! |---|---|---|---|
//! | ProFTPD | CRLF (an existing CRLF as it is) | LF | kept |
//! | inetutils ftpd | CRLF (CRLF becomes CR CR LF) | LF | kept |
//! | vsftpd (ascii_*_enable off, its default) | LF: nothing converted | CRLF | kept |
//! | Pure-FTPd | CRLF (CRLF becomes CR CR LF) | LF | dropped |
//!
//! The tool turns CRLF into LF on the way down and sends LF as CRLF on the way up.
//!
//! Needs root and `scripts/lab up`; run with `--test-threads=1` like every lab test.

mod common;

use std::path::PathBuf;

use common::tool::{run, stderr, traced, Tool};

const LF: &[u8] = b"one\ntwo\n\nthree";
const CRLF: &[u8] = b"one\r\ntwo\r\n\r\nthree\r\n";
/// Lone CRs, and a CRLF at the end.
const CRS: &[u8] = b"a\r\rb\rc\n";

/// What one server makes of the three files, each way.
struct Expected {
    port_key: &'static str,
    /// `get --ascii` of LF, CRLF, CRS.
    got: [&'static [u8]; 3],
    /// The server's copy after `put --ascii` of LF, CRLF, CRS.
    stored: [&'static [u8]; 3],
}

const LF_OF_CRLF: &[u8] = b"one\ntwo\n\nthree\n";

const SERVERS: [Expected; 4] = [
    Expected { port_key: "PROFTPD_PORT", got: [LF, LF_OF_CRLF, CRS], stored: [LF, LF_OF_CRLF, CRS] },
    // CR CR LF on the wire: the file's CR stays.
    Expected { port_key: "INETUTILS_PORT", got: [LF, CRLF, CRS], stored: [LF, LF_OF_CRLF, CRS] },
    // Sends the file as it is, stores the wire as it is.
    Expected {
        port_key: "VSFTPD_PORT",
        got: [LF, LF_OF_CRLF, CRS],
        stored: [b"one\r\ntwo\r\n\r\nthree", CRLF, b"a\r\rb\rc\r\n"],
    },
    Expected { port_key: "PUREFTPD_PORT", got: [LF, CRLF, CRS], stored: [LF, LF_OF_CRLF, b"abc\n"] },
];

/// A directory of the lab user's, removed at the end.
struct RemoteDir {
    name: String,
    path: PathBuf,
}

impl RemoteDir {
    fn new(tool: &Tool, tag: &str) -> RemoteDir {
        let name = format!("upload/ascii-{tag}-{}", std::process::id());
        let path = tool.remote_path(&name);
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        for (file, content) in [("lf.txt", LF), ("crlf.txt", CRLF), ("crs.txt", CRS)] {
            std::fs::write(path.join(file), content).unwrap();
        }
        let user = tool.lab.var("SSH_USER");
        let owned = std::process::Command::new("chown").args(["-R", &format!("{user}:{user}")]).arg(&path).status();
        assert!(owned.unwrap().success());
        RemoteDir { name, path }
    }
}

impl Drop for RemoteDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

fn shown(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).escape_debug().to_string()
}

fn assert_bytes(got: &[u8], want: &[u8], what: &str) {
    assert!(got == want, "{what}: got \"{}\", want \"{}\"", shown(got), shown(want));
}

/// get, put, mget, mput, batch and mirror in ASCII against one server.
fn both_ways(expected: &Expected) {
    let tool = Tool::new();
    let port = tool.lab.port(expected.port_key);
    let dir = RemoteDir::new(&tool, expected.port_key);
    let names = ["lf.txt", "crlf.txt", "crs.txt"];
    for (name, want) in names.iter().zip(expected.got) {
        let local = tool.work.path().join(format!("got-{name}"));
        let out = traced(&tool, port, &["--ascii", "get", &format!("{}/{name}", dir.name), local.to_str().unwrap()]);
        assert!(out.status.success(), "get --ascii {name}: {}", stderr(&out));
        assert!(stderr(&out).contains("---> TYPE A"), "no TYPE A:\n{}", stderr(&out));
        assert_bytes(&std::fs::read(&local).unwrap(), want, &format!("{}: get --ascii {name}", expected.port_key));
    }
    for ((name, content), want) in names.iter().zip([LF, CRLF, CRS]).zip(expected.stored) {
        let local = tool.work.path().join(format!("up-{name}"));
        std::fs::write(&local, content).unwrap();
        let remote = format!("{}/up-{name}", dir.name);
        let out = traced(&tool, port, &["--ascii", "put", local.to_str().unwrap(), &remote]);
        assert!(out.status.success(), "put --ascii {name}: {}", stderr(&out));
        let stored = std::fs::read(tool.remote_path(&remote)).unwrap();
        assert_bytes(&stored, want, &format!("{}: the server's copy after put --ascii {name}", expected.port_key));
    }
    // The bulk commands: the same bytes, and no --verify by default (no hash could match).
    let into = tool.work.path().join("mget");
    std::fs::create_dir(&into).unwrap();
    let globs: Vec<String> = names.iter().map(|n| format!("{}/{n}", dir.name)).collect();
    let mut args = vec!["--ascii", "mget", "-d", into.to_str().unwrap()];
    args.extend(globs.iter().map(String::as_str));
    let out = traced(&tool, port, &args);
    assert!(out.status.success(), "mget --ascii: {}", stderr(&out));
    for (name, want) in names.iter().zip(expected.got) {
        assert_bytes(
            &std::fs::read(into.join(name)).unwrap(),
            want,
            &format!("{}: mget --ascii {name}", expected.port_key),
        );
    }
    let sources: Vec<String> =
        names.iter().map(|n| tool.work.path().join(format!("up-{n}")).to_string_lossy().into_owned()).collect();
    let mput_dir = format!("{}/mput", dir.name);
    std::fs::create_dir(tool.remote_path(&mput_dir)).unwrap();
    let user = tool.lab.var("SSH_USER");
    std::process::Command::new("chown")
        .arg(format!("{user}:{user}"))
        .arg(tool.remote_path(&mput_dir))
        .status()
        .unwrap();
    let mut args = vec!["--ascii", "mput", "-d", &mput_dir];
    args.extend(sources.iter().map(String::as_str));
    let out = traced(&tool, port, &args);
    assert!(out.status.success(), "mput --ascii: {}", stderr(&out));
    for (name, want) in names.iter().zip(expected.stored) {
        let stored = std::fs::read(tool.remote_path(&format!("{mput_dir}/up-{name}"))).unwrap();
        assert_bytes(&stored, want, &format!("{}: mput --ascii {name}", expected.port_key));
    }
    // batch (a get and a put a file) and mirror: the same conversions.
    let batch_dir = format!("{}/batch", dir.name);
    std::fs::create_dir(tool.remote_path(&batch_dir)).unwrap();
    std::process::Command::new("chown")
        .arg(format!("{user}:{user}"))
        .arg(tool.remote_path(&batch_dir))
        .status()
        .unwrap();
    let mut lines = String::new();
    for (name, source) in names.iter().zip(&sources) {
        let got = tool.work.path().join(format!("batch-{name}"));
        lines += &format!("get {}/{name} {}\nput {source} {batch_dir}/{name}\n", dir.name, got.display());
    }
    let file = tool.work.path().join("ascii.batch");
    std::fs::write(&file, lines).unwrap();
    let out = traced(&tool, port, &["--ascii", "batch", file.to_str().unwrap()]);
    assert!(out.status.success(), "batch --ascii: {}", stderr(&out));
    for ((name, got), stored) in names.iter().zip(expected.got).zip(expected.stored) {
        let local = std::fs::read(tool.work.path().join(format!("batch-{name}"))).unwrap();
        assert_bytes(&local, got, &format!("{}: batch --ascii get {name}", expected.port_key));
        let remote = std::fs::read(tool.remote_path(&format!("{batch_dir}/{name}"))).unwrap();
        assert_bytes(&remote, stored, &format!("{}: batch --ascii put {name}", expected.port_key));
    }
    let mirror = tool.work.path().join("mirror");
    let out = traced(&tool, port, &["--ascii", "mirror", &dir.name, mirror.to_str().unwrap()]);
    assert!(out.status.success(), "mirror --ascii: {}", stderr(&out));
    for (name, want) in names.iter().zip(expected.got) {
        let local = std::fs::read(mirror.join(name)).unwrap();
        assert_bytes(&local, want, &format!("{}: mirror --ascii {name}", expected.port_key));
    }
}

#[test]
fn ascii_with_proftpd() {
    both_ways(&SERVERS[0]);
}

#[test]
fn ascii_with_inetutils_ftpd() {
    both_ways(&SERVERS[1]);
}

#[test]
fn ascii_with_vsftpd() {
    both_ways(&SERVERS[2]);
}

#[test]
fn ascii_with_pure_ftpd() {
    both_ways(&SERVERS[3]);
}

/// A text file of many chunks: every CR LF pair that a chunk boundary splits comes out LF.
#[test]
fn a_long_text_comes_back_as_it_went() {
    let tool = Tool::new();
    let port = tool.lab.port("PROFTPD_PORT");
    let dir = RemoteDir::new(&tool, "long");
    let text: Vec<u8> = (0..200_000).flat_map(|i| format!("line {i} {}\n", "x".repeat(i % 13)).into_bytes()).collect();
    let local = tool.work.path().join("long.txt");
    std::fs::write(&local, &text).unwrap();
    let remote = format!("{}/long.txt", dir.name);
    let out = run(tool.cmd(port).args(["--ascii", "put", local.to_str().unwrap(), &remote]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(std::fs::read(tool.remote_path(&remote)).unwrap() == text, "the server's copy differs");
    let back = tool.work.path().join("back.txt");
    let out = run(tool.cmd(port).args(["--ascii", "get", &remote, back.to_str().unwrap()]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(std::fs::read(&back).unwrap() == text, "the copy fetched back differs");
    // Listings are read as they come, in an ASCII session too.
    let out = run(tool.cmd(port).args(["--ascii", "ls", &dir.name]));
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("long.txt"));
}

/// ProFTPD reads the control connection while it sends a file in ASCII: it answers a SIZE that
/// arrives then before the transfer's 226, and refuses a RETR with 450. The next file's commands,
/// sent ahead of the transfer's end, must reach it only after that end (our relay holds them).
#[test]
fn commands_sent_ahead_wait_for_an_ascii_transfer_to_end() {
    let tool = Tool::new();
    let port = tool.lab.port("PROFTPD_PORT");
    let dir = RemoteDir::new(&tool, "ahead");
    let names: Vec<String> = (1..=4).map(|i| format!("long{i}.txt")).collect();
    let mut texts = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let text: Vec<u8> = (0..150_000).flat_map(|n| format!("{i} line {n}\n").into_bytes()).collect();
        std::fs::write(dir.path.join(name), &text).unwrap();
        texts.push(text);
    }
    let into = tool.work.path().join("mget");
    std::fs::create_dir(&into).unwrap();
    let globs: Vec<String> = names.iter().map(|n| format!("{}/{n}", dir.name)).collect();
    let mut args = vec!["-vv", "--ascii", "mget", "-d", into.to_str().unwrap()];
    args.extend(globs.iter().map(String::as_str));
    let out = run(tool.cmd(port).args(&args));
    let err = stderr(&out);
    assert!(out.status.success(), "mget --ascii: {err}");
    assert!(err.contains("relay: hold RETR"), "nothing was sent ahead, nothing tested: {err}");
    for (name, text) in names.iter().zip(&texts) {
        assert!(std::fs::read(into.join(name)).unwrap() == *text, "{name} differs");
    }
}

/// What ASCII cannot do is refused before anything is sent.
#[test]
fn ascii_refuses_verify_and_continue() {
    let tool = Tool::new();
    let port = tool.lab.port("PROFTPD_PORT");
    for args in [&["--ascii", "--verify", "get", "small.bin"][..], &["--ascii", "--continue", "put", "x.txt"]] {
        let out = run(tool.cmd(port).args(args));
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(stderr(&out).contains("exclude each other"), "{args:?}: {}", stderr(&out));
    }
    assert!(tool.work_entries().is_empty(), "nothing may be written: {:?}", tool.work_entries());
}
