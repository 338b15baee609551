//! Host key checking judged by OpenSSH itself: each row's known_hosts files are given to
//! `ssh` (BatchMode, StrictHostKeyChecking=yes) and to the tool, both in the lab's client
//! namespace against the lab's sshd, and the two must agree on accept or refuse. Files are
//! built at test time from the host key `ssh-keyscan` reads off the lab's sshd, a key made
//! with `ssh-keygen`, and names hashed by `ssh-keygen -H`.
//!
//! Needs root and `scripts/lab up`; run under the lab lock with `--test-threads=1`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::hostkeys::{judge_rows, keygen, Row, SSH};
use common::tool::{run, stderr, Tool};

/// Keys for building rows: `{host}` is the lab's real host key (as `ssh-keyscan` reads it),
/// `{other}` a stranger's.
struct Keys {
    host: String,
    other: String,
}

impl Keys {
    fn read(tool: &Tool) -> Keys {
        let lab = &tool.lab;
        let out = Command::new("ip")
            .args(["netns", "exec", lab.var("CLIENT_NS"), "ssh-keyscan", "-t", "ed25519"])
            .args(["-p", lab.var("SSH_PORT"), lab.var("SERVER_ADDR")])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text.lines().find(|l| !l.starts_with('#')).unwrap_or_else(|| panic!("ssh-keyscan: {out:?}"));
        let host = line.split_whitespace().skip(1).collect::<Vec<_>>().join(" ");
        let other = keygen(tool.home.path(), "other");
        Keys { host, other }
    }

    fn fill(&self, text: &str) -> String {
        text.replace("{host}", &self.host).replace("{other}", &self.other)
    }
}

/// `text` with every host name hashed by OpenSSH (`ssh-keygen -H`).
fn hashed(dir: &Path, text: &str) -> String {
    let file = dir.join("to-hash");
    std::fs::write(&file, text).unwrap();
    let out = Command::new("ssh-keygen").arg("-H").arg("-f").arg(&file).output().unwrap();
    assert!(out.status.success(), "ssh-keygen -H: {}", String::from_utf8_lossy(&out.stderr));
    let _ = std::fs::remove_file(file.with_extension("old"));
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.starts_with("|1|"), "not hashed: {text}");
    text
}

fn rows(tool: &Tool, keys: &Keys) -> Vec<Row> {
    let dir = tool.home.path();
    let (main, nofwd) = (tool.lab.port("SSH_PORT"), tool.lab.port("NOFWD_SSH_PORT"));
    let row = |name, files: &[&str], port| Row {
        name,
        files: files.iter().map(|f| keys.fill(f)).collect(),
        port,
        forwards: port == main,
    };
    let hashed_host = hashed(dir, &keys.fill("10.250.0.2 {host}\n"));
    let hashed_other_host = hashed(dir, &keys.fill("10.250.0.3 {host}\n"));
    let mut rows = vec![
        row("exact host", &["10.250.0.2 {host}\n"], main),
        row("stale line before the right one", &["10.250.0.2 {other}\n10.250.0.2 {host}\n"], main),
        row("only a changed key", &["10.250.0.2 {other}\n"], main),
        row("@revoked after the right line", &["10.250.0.2 {host}\n@revoked 10.250.0.2 {host}\n"], main),
        row("@revoked with a * pattern", &["@revoked * {host}\n10.250.0.* {host}\n"], main),
        row("@revoked another key", &["@revoked * {other}\n10.250.0.2 {host}\n"], main),
        row("wildcard 10.250.0.*", &["10.250.0.* {host}\n"], main),
        row("? pattern 10.250.0.?", &["10.250.0.? {host}\n"], main),
        row("? pattern too long 10.250.0.??", &["10.250.0.?? {host}\n"], main),
        row("negated !10.250.0.2,10.250.0.*", &["!10.250.0.2,10.250.0.* {host}\n"], main),
        row("negated another !10.250.0.3,10.250.0.*", &["!10.250.0.3,10.250.0.* {host}\n"], main),
        row("comma list, upper case", &["GATEWAY.Example,10.250.0.1,10.250.0.2 {host}\n"], main),
        row("[host]:2222 form on port 22", &["[10.250.0.2]:2222 {host}\n"], main),
        row("plain host on port 2222", &["10.250.0.2 {host}\n"], nofwd),
        row("plain host, another key, on port 2222", &["10.250.0.2 {other}\n"], nofwd),
        row("plain host, revoked, on port 2222", &["10.250.0.2 {host}\n@revoked 10.250.0.2 {host}\n"], nofwd),
        row("[host]:2222 on port 2222", &["[10.250.0.2]:2222 {host}\n"], nofwd),
        row("[host]:2222 changed, plain host right", &["[10.250.0.2]:2222 {other}\n10.250.0.2 {host}\n"], nofwd),
        row("[10.250.0.*]:2222 on port 2222", &["[10.250.0.*]:2222 {host}\n"], nofwd),
        row(
            "comments, blanks, garbage, tabs",
            &["# a comment\n\n   \ngarbage\n@bogus 10.250.0.2 {host}\n10.250.0.2 ssh-ed25519 !!!\n\t10.250.0.2\t{host}  a comment\n"],
            main,
        ),
        row("two files, the second matches", &["10.250.0.3 {host}\n", "10.250.0.2 {host}\n"], main),
        row("two files, changed in the first", &["10.250.0.2 {other}\n", "10.250.0.2 {host}\n"], main),
        row("two files, revoked in the second", &["10.250.0.2 {host}\n", "@revoked 10.250.0.2 {host}\n"], main),
        row("empty file", &[""], main),
        row("@cert-authority only (no certificate offered)", &["@cert-authority 10.250.0.2 {host}\n"], main),
        row("@cert-authority and the plain key", &["@cert-authority * {other}\n10.250.0.2 {host}\n"], main),
    ];
    rows.push(Row { name: "hashed name", files: vec![hashed_host], port: main, forwards: true });
    rows.push(Row { name: "hashed other host", files: vec![hashed_other_host], port: main, forwards: true });
    rows
}

#[test]
fn openssh_and_the_tool_agree_on_every_row() {
    let tool = Tool::new();
    let keys = Keys::read(&tool);
    let rows = rows(&tool, &keys);
    assert!(rows.len() >= 12);
    judge_rows(&tool, &rows);
}

/// HOME/.ssh/config with a `lab` alias for the lab's sshd and `options` (host key ones).
fn lab_config(tool: &Tool, options: &str) -> PathBuf {
    let lab = &tool.lab;
    let ssh = tool.home.path().join(".ssh");
    std::fs::create_dir_all(&ssh).unwrap();
    let config = format!(
        "Host lab\n  HostName {}\n  User {}\n  Port {}\n  IdentityFile {}\n{options}",
        lab.var("SERVER_ADDR"),
        lab.var("SSH_USER"),
        lab.var("SSH_PORT"),
        lab.var("SSH_KEY"),
    );
    std::fs::write(ssh.join("config"), config).unwrap();
    ssh
}

/// `ls` on the lab's ProFTPD through the `lab` alias.
fn ls_via_lab(tool: &Tool, extra: &[&str]) -> Output {
    let ftp = format!("127.0.0.1:{}", tool.lab.port("PROFTPD_PORT"));
    run(tool
        .bare()
        .env("FTPSSH_PASSWORD", tool.lab.var("FTP_PASSWORD"))
        .args(["-s", "lab", "-f", &ftp])
        .args(extra)
        .arg("ls"))
}

#[test]
fn user_known_hosts_file_from_ssh_config() {
    let tool = Tool::new();
    let keys = Keys::read(&tool);
    let options = "  UserKnownHostsFile ~/.ssh/first %d/.ssh/second\n  GlobalKnownHostsFile /dev/null\n";
    let ssh = lab_config(&tool, options);
    // The default file revokes the key: reading it would refuse.
    std::fs::write(ssh.join("known_hosts"), keys.fill("@revoked * {host}\n")).unwrap();
    std::fs::write(ssh.join("first"), keys.fill("10.250.0.3 {other}\n")).unwrap();
    std::fs::write(ssh.join("second"), keys.fill("# the lab\n10.250.0.2 {host}\n")).unwrap();
    let out = ls_via_lab(&tool, &["-v"]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains(&format!("the key in {}:2", ssh.join("second").display())), "{err}");

    // --known-hosts replaces UserKnownHostsFile: now the revoking file is read.
    let default = ssh.join("known_hosts");
    let out = ls_via_lab(&tool, &["--known-hosts", default.to_str().unwrap()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(SSH), "{err}");
    assert_eq!(err.lines().count(), 1, "one line:\n{err}");
    assert!(err.contains("REVOKED HOST KEY DETECTED"), "{err}");
    assert!(err.contains(&format!("{}:1", default.display())), "names the file and line:\n{err}");
    assert!(err.contains("SHA256:"), "shows the fingerprint:\n{err}");
}

#[test]
fn strict_host_key_checking_from_ssh_config() {
    let tool = Tool::new();
    let keys = Keys::read(&tool);
    let strict = |level: &str| {
        let options = format!(
            "  UserKnownHostsFile ~/.ssh/new/kh\n  GlobalKnownHostsFile /dev/null\n  StrictHostKeyChecking {level}\n"
        );
        lab_config(&tool, &options).join("new/kh")
    };
    let kh = strict("yes");
    let out = ls_via_lab(&tool, &[]);
    assert_eq!(out.status.code(), Some(SSH), "unknown key under yes: {}", stderr(&out));
    assert!(stderr(&out).contains("is not in"), "{}", stderr(&out));
    assert!(!kh.exists(), "nothing added under yes");

    // accept-new: added to the first user file (its directory made), then known.
    strict("accept-new");
    let out = ls_via_lab(&tool, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("permanently added"), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&kh).unwrap(), keys.fill("10.250.0.2 {host}\n"));
    strict("yes");
    let out = ls_via_lab(&tool, &[]);
    assert!(out.status.success(), "the added key is known: {}", stderr(&out));

    // A changed key is refused under accept-new, and under no as well (our choice: OpenSSH
    // would go on without port forwarding, which is all this tool does).
    std::fs::write(&kh, keys.fill("10.250.0.2 {other}\n")).unwrap();
    for level in ["accept-new", "no"] {
        strict(level);
        let out = ls_via_lab(&tool, &[]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(SSH), "{level}: {err}");
        assert!(err.contains("HOST KEY CHANGED") && err.contains(&format!("{}:1", kh.display())), "{level}: {err}");
    }
    assert_eq!(std::fs::read_to_string(&kh).unwrap(), keys.fill("10.250.0.2 {other}\n"), "file untouched");
}
