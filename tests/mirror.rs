//! `mirror` for cron (a second run with nothing changed transfers nothing),
//! `--dry-run` (writes nothing), and `--bwlimit` (a floor on the time taken).
//!
//! Needs root and `scripts/lab up`; run with `--test-threads=1`.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::tool::{assert_same, entries, run, stderr, Tool};

/// A remote directory of the lab user's, made for one test and removed after it.
struct RemoteDir {
    path: PathBuf,
    /// Its name from the FTP login directory.
    name: String,
}

impl RemoteDir {
    fn new(tool: &Tool, tag: &str) -> RemoteDir {
        let name = format!("upload/{tag}-{}", std::process::id());
        let path = tool.remote_path(&name);
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        let dir = RemoteDir { path, name };
        dir.own();
        dir
    }

    /// Files written here by the test (as root) belong to the lab user, as the server's would.
    fn own(&self) {
        let user = Tool::new().lab.var("SSH_USER").to_string();
        let ok = std::process::Command::new("chown").args(["-R", &format!("{user}:{user}")]).arg(&self.path).status();
        assert!(ok.unwrap().success());
    }

    fn write(&self, name: &str, content: &[u8]) {
        std::fs::write(self.path.join(name), content).unwrap();
        self.own();
    }
}

impl Drop for RemoteDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

fn transfers(tool: &Tool, report: &str) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(tool.work.path().join(report)).unwrap()).unwrap();
    v["transfers"].as_array().unwrap().iter().map(|t| t["source"].as_str().unwrap().to_string()).collect()
}

fn mirror(tool: &Tool, port_key: &str, args: &[&str]) -> String {
    let out = run(tool.cmd(tool.lab.port(port_key)).args(["mirror", "--report", "json", "r.json"]).args(args));
    assert!(out.status.success(), "{}", stderr(&out));
    stderr(&out)
}

fn mtime(path: &Path) -> u64 {
    let m = std::fs::metadata(path).unwrap().modified().unwrap();
    m.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// Download, again (nothing), after a change (that one), with --delete (the extra local file goes).
fn mirror_down_twice(port_key: &str) {
    let tool = Tool::new();
    let remote = RemoteDir::new(&tool, &format!("mirror-{port_key}"));
    for (name, content) in [("a.txt", "first\n"), ("b b.txt", "second\n"), ("c.bin", "third\n")] {
        remote.write(name, content.as_bytes());
    }
    let local = tool.work.path().join("copy");
    let err = mirror(&tool, port_key, &[&remote.name, "copy"]);
    assert!(err.contains("mirror: 3 to transfer, 0 up to date"), "{err}");
    assert_eq!(transfers(&tool, "r.json").len(), 3);
    for name in ["a.txt", "b b.txt", "c.bin"] {
        assert_same(&std::fs::read(local.join(name)).unwrap(), &std::fs::read(remote.path.join(name)).unwrap(), name);
        assert_eq!(mtime(&local.join(name)), mtime(&remote.path.join(name)), "{name}: the server's time");
    }
    let err = mirror(&tool, port_key, &[&remote.name, "copy"]);
    assert!(err.contains("mirror: nothing to transfer, 3 up to date"), "{err}");
    assert!(err.contains("0 transfers"), "{err}");
    assert_eq!(transfers(&tool, "r.json"), Vec::<String>::new());
    remote.write("a.txt", b"first, and more\n");
    std::fs::write(local.join("extra.txt"), b"not on the server").unwrap();
    let err = mirror(&tool, port_key, &[&remote.name, "copy", "--delete"]);
    assert_eq!(transfers(&tool, "r.json"), [format!("{}/a.txt", remote.name)], "{err}");
    assert_eq!(std::fs::read(local.join("a.txt")).unwrap(), b"first, and more\n");
    assert_eq!(entries(&local), ["a.txt", "b b.txt", "c.bin"], "extra.txt deleted");
}

/// ProFTPD lists with MLSD.
#[test]
fn mirror_from_proftpd_transfers_nothing_the_second_time() {
    mirror_down_twice("PROFTPD_PORT");
}

/// inetutils ftpd has no MLSD: NLST, then SIZE and MDTM for each name.
#[test]
fn mirror_from_inetutils_transfers_nothing_the_second_time() {
    mirror_down_twice("INETUTILS_PORT");
}

/// Subdirectories are mirrored too, both ways: made where missing, and a
/// second run with nothing changed transfers nothing.
fn mirror_a_tree(port_key: &str) {
    let tool = Tool::new();
    let remote = RemoteDir::new(&tool, &format!("tree-{port_key}"));
    std::fs::create_dir_all(remote.path.join("sub/deeper")).unwrap();
    remote.write("top.txt", b"top\n");
    remote.write("sub/mid.txt", b"mid\n");
    remote.write("sub/deeper/low.txt", b"low\n");
    let local = tool.work.path().join("copy");
    let err = mirror(&tool, port_key, &[&remote.name, "copy"]);
    assert!(err.contains("mirror: 3 to transfer, 0 up to date"), "{err}");
    for name in ["top.txt", "sub/mid.txt", "sub/deeper/low.txt"] {
        assert_same(&std::fs::read(local.join(name)).unwrap(), &std::fs::read(remote.path.join(name)).unwrap(), name);
    }
    let err = mirror(&tool, port_key, &[&remote.name, "copy"]);
    assert!(err.contains("mirror: nothing to transfer, 3 up to date"), "{err}");
    // And back up, into a new remote tree.
    let up = RemoteDir::new(&tool, &format!("tree-up-{port_key}"));
    let err = mirror(&tool, port_key, &[&up.name, "copy", "--reverse"]);
    assert!(err.contains("mirror: 3 to transfer, 0 up to date"), "{err}");
    assert_eq!(std::fs::read(up.path.join("sub/deeper/low.txt")).unwrap(), b"low\n");
    let err = mirror(&tool, port_key, &[&up.name, "copy", "--reverse"]);
    assert!(err.contains("mirror: nothing to transfer, 3 up to date"), "{err}");
}

/// ProFTPD: MLSD tells directories apart.
#[test]
fn mirror_a_tree_from_and_to_proftpd() {
    mirror_a_tree("PROFTPD_PORT");
}

/// inetutils ftpd: NLST, and SIZE refuses what is not a plain file.
#[test]
fn mirror_a_tree_from_and_to_inetutils() {
    mirror_a_tree("INETUTILS_PORT");
}

#[test]
fn mirror_reverse_uploads_only_what_is_new_or_changed() {
    let tool = Tool::new();
    let remote = RemoteDir::new(&tool, "mirror-up");
    let local = tool.work.path().join("src");
    std::fs::create_dir(&local).unwrap();
    std::fs::write(local.join("one.txt"), b"one\n").unwrap();
    std::fs::write(local.join("two.txt"), b"two\n").unwrap();
    mirror(&tool, "PROFTPD_PORT", &[&remote.name, "src", "--reverse"]);
    assert_eq!(transfers(&tool, "r.json").len(), 2);
    assert_eq!(std::fs::read(remote.path.join("two.txt")).unwrap(), b"two\n");
    let err = mirror(&tool, "PROFTPD_PORT", &[&remote.name, "src", "--reverse"]);
    assert!(err.contains("mirror: nothing to transfer, 2 up to date"), "{err}");
    std::fs::write(local.join("two.txt"), b"two, longer\n").unwrap();
    std::fs::remove_file(local.join("one.txt")).unwrap();
    mirror(&tool, "PROFTPD_PORT", &[&remote.name, "src", "--reverse", "--delete"]);
    assert_eq!(transfers(&tool, "r.json"), ["src/two.txt"]);
    assert_eq!(entries(&remote.path), ["two.txt"]);
    assert_eq!(std::fs::read(remote.path.join("two.txt")).unwrap(), b"two, longer\n");
}

/// `--dry-run` connects and lists, says what it would do, and writes nothing, here or there.
#[test]
fn dry_runs_write_nothing() {
    let tool = Tool::new();
    let port = tool.lab.port("PROFTPD_PORT");
    let remote = RemoteDir::new(&tool, "dry-run");
    remote.write("r.txt", b"remote\n");
    std::fs::write(tool.work.path().join("l.txt"), b"local\n").unwrap();
    std::fs::write(tool.work.path().join("d.batch"), "get small.bin\nput l.txt upload/x.txt\n").unwrap();
    let before = entries(tool.work.path());
    let runs: [&[&str]; 5] = [
        &["mget", "many/f00[1-3].txt", "-d", "out", "--report", "json", "r.json"],
        &["mirror", &remote.name, "copy", "--delete"],
        &["mirror", &remote.name, ".", "--reverse", "--delete"],
        &["mput", "l.txt", "-d", &remote.name],
        &["batch", "d.batch"],
    ];
    let mut said = String::new();
    for args in runs {
        let out = run(tool.cmd(port).args(["-v", "--dry-run"]).args(args));
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains("---> PASS"), "{args:?} logs in");
        said.push_str(&String::from_utf8_lossy(&out.stdout));
    }
    for line in [
        "get many/f001.txt -> out/f001.txt",
        &format!("get {}/r.txt -> copy/r.txt", remote.name),
        &format!("delete {}/r.txt", remote.name),
        &format!("put ./l.txt -> {}/l.txt", remote.name),
        &format!("put l.txt -> {}/l.txt", remote.name),
        "put l.txt -> upload/x.txt",
    ] {
        assert!(said.lines().any(|l| l == line), "no {line:?} in:\n{said}");
    }
    // A single get has nothing to show: refused rather than ignored.
    let out = run(tool.cmd(port).args(["--dry-run", "get", "small.bin"]));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(entries(tool.work.path()), before, "nothing written here");
    assert_eq!(entries(&remote.path), ["r.txt"], "nothing written or deleted there");
    assert!(!tool.remote_path("upload/x.txt").exists());
}

/// `--bwlimit 256K`: 1 MiB takes at least 3.5 s each way (the bucket's
/// burst is a tenth of a second's worth). Only a floor: no timing ceiling.
#[test]
fn bwlimit_holds_both_directions_to_the_rate() {
    let tool = Tool::new();
    let remote = RemoteDir::new(&tool, "bwlimit");
    let content: Vec<u8> = (0..1u32 << 20).map(|i| (i * 7 % 251) as u8).collect();
    remote.write("one-mib.bin", &content);
    let port = tool.lab.port("PROFTPD_PORT");
    let started = Instant::now();
    let name = format!("{}/one-mib.bin", remote.name);
    let out = run(tool.cmd(port).args(["--bwlimit", "256K", "get", &name, "got.bin"]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(started.elapsed() >= Duration::from_millis(3500), "get took only {:?}", started.elapsed());
    assert_same(&std::fs::read(tool.work.path().join("got.bin")).unwrap(), &content, "got.bin");
    let started = Instant::now();
    let back = format!("{}/back.bin", remote.name);
    let out = run(tool.cmd(port).args(["--bwlimit", "256K", "put", "got.bin", &back]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(started.elapsed() >= Duration::from_millis(3500), "put took only {:?}", started.elapsed());
    assert_same(&std::fs::read(remote.path.join("back.bin")).unwrap(), &content, "back.bin");
}
