//! A table of known_hosts files judged twice, by OpenSSH's `ssh` and by the tool, both in the
//! lab's client namespace: [`judge_rows`] panics with the whole table when they disagree.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::tool::{run, stderr, Tool};

/// The tool's exit code for SSH failures.
pub const SSH: i32 = 3;

/// A new ed25519 key `NAME` in `dir`; returns its `keytype base64`.
pub fn keygen(dir: &Path, name: &str) -> String {
    let key = dir.join(name);
    let status = Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(&key).status().unwrap();
    assert!(status.success());
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    public.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
}

/// Accept or refuse the server's host key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    Refuse,
}

/// One row: known_hosts files and the sshd they are tried against.
pub struct Row {
    pub name: &'static str,
    /// known_hosts files, in UserKnownHostsFile order.
    pub files: Vec<String>,
    /// The SSH port on the lab's server address.
    pub port: u16,
    /// Whether that sshd allows forwarding (the tool's `ls` then succeeds when the key is
    /// accepted; otherwise an accepted key ends in sshd's refusal to forward).
    pub forwards: bool,
}

/// Writes a row's files under `dir/row{index}`; returns their paths.
fn write_files(dir: &Path, row: &Row, index: usize) -> Vec<PathBuf> {
    let dir = dir.join(format!("row{index}"));
    std::fs::create_dir_all(&dir).unwrap();
    row.files
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let path = dir.join(format!("known_hosts{}", i + 1));
            std::fs::write(&path, text).unwrap();
            path
        })
        .collect()
}

fn joined(files: &[PathBuf]) -> String {
    files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(" ")
}

/// OpenSSH's verdict: `ssh ... true` in the client namespace, no config file but these options.
fn openssh(tool: &Tool, files: &[PathBuf], port: u16) -> (Verdict, String) {
    let lab = &tool.lab;
    let out = Command::new("ip")
        .args(["netns", "exec", lab.var("CLIENT_NS"), "ssh", "-F", "/dev/null", "-o", "BatchMode=yes"])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", joined(files)))
        .args(["-o", "GlobalKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=yes"])
        .args(["-p", &port.to_string(), "-i", lab.var("SSH_KEY")])
        .arg(format!("{}@{}", lab.var("SSH_USER"), lab.var("SERVER_ADDR")))
        .arg("true")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let err = stderr(&out);
    match out.status.code() {
        Some(0) => (Verdict::Accept, err),
        Some(255) if err.contains("Host key verification failed") => (Verdict::Refuse, err),
        code => panic!("ssh failed for another reason ({code:?}):\n{err}"),
    }
}

/// The tool with the same files, from `~/.ssh/config` (UserKnownHostsFile, no global file,
/// StrictHostKeyChecking yes), listing the lab ProFTPD's directory with `-v`.
fn tool_verdict(tool: &Tool, files: &[PathBuf], row: &Row) -> (Verdict, Output) {
    let lab = &tool.lab;
    let ssh = tool.home.path().join(".ssh");
    std::fs::create_dir_all(&ssh).unwrap();
    let config = format!(
        "Host *\n  UserKnownHostsFile {}\n  GlobalKnownHostsFile /dev/null\n  StrictHostKeyChecking yes\n",
        joined(files)
    );
    std::fs::write(ssh.join("config"), config).unwrap();
    let out = run(tool
        .bare()
        .env("FTPSSH_PASSWORD", lab.var("FTP_PASSWORD"))
        .arg("-s")
        .arg(format!("{}@{}:{}", lab.var("SSH_USER"), lab.var("SERVER_ADDR"), row.port))
        .arg("-f")
        .arg(format!("127.0.0.1:{}", lab.port("PROFTPD_PORT")))
        .arg("-i")
        .arg(lab.path("SSH_KEY"))
        .args(["-v", "ls"]));
    let err = stderr(&out);
    let accepted = err.contains(&format!("host key of {}:{} accepted", lab.var("SERVER_ADDR"), row.port));
    let refused = ["is not in", "HOST KEY CHANGED", "REVOKED HOST KEY DETECTED"].iter().any(|m| err.contains(m));
    let verdict = match (accepted, refused) {
        (true, false) => Verdict::Accept,
        (false, true) => Verdict::Refuse,
        _ => panic!("the tool said neither accepted nor refused (or both):\n{err}"),
    };
    // An accepted key leads to a working session, or to sshd's refusal to forward; a
    // refusal is exit code 3 in one line.
    match verdict {
        Verdict::Accept if row.forwards => assert!(out.status.success(), "accepted but failed:\n{err}"),
        Verdict::Accept => assert!(err.contains("AllowTcpForwarding"), "{err}"),
        Verdict::Refuse => {
            assert_eq!(out.status.code(), Some(SSH), "{err}");
            assert_eq!(err.lines().filter(|l| l.contains("error:")).count(), 1, "{err}");
        }
    }
    (verdict, out)
}

/// Each row judged by OpenSSH and by the tool; panics with the table unless they agree on
/// every row, and unless both answers occur. Returns the table.
pub fn judge_rows(tool: &Tool, rows: &[Row]) -> String {
    let mut table = vec![format!("{:<48} {:<8} {:<8} agree", "row", "OpenSSH", "tool")];
    let mut disagree = 0;
    for (i, row) in rows.iter().enumerate() {
        let files = write_files(tool.home.path(), row, i);
        let (theirs, why) = openssh(tool, &files, row.port);
        let (ours, out) = tool_verdict(tool, &files, row);
        let agree = theirs == ours;
        disagree += usize::from(!agree);
        table.push(format!("{:<48} {:<8} {:<8} {agree}", row.name, format!("{theirs:?}"), format!("{ours:?}")));
        if !agree {
            table.push(format!("    files: {:?}\n    ssh: {why}\n    tool: {}", row.files, stderr(&out)));
        }
    }
    let table = table.join("\n");
    eprintln!("{table}");
    assert_eq!(disagree, 0, "OpenSSH and the tool disagree:\n{table}");
    assert!(table.contains("Accept ") && table.contains("Refuse "), "the table must exercise both answers:\n{table}");
    table
}
