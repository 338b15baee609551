//! Never out of step: after a failed transfer the next ones still work and
//! nothing is misread; a signal stops a run cleanly and the same command resumes it; long
//! names download; a failure is named where it happened.
//!
//! Needs root and `scripts/lab up`; run with `--test-threads=1`.

mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::tool::{assert_many, assert_same, entries, run, stderr, RemoveOnDrop, Tool};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// A 1 GiB remote file takes several seconds through the lab: long enough to stop midway.
const HUGE: u64 = 1 << 30;
/// How long the helpers on the server may take to go after the tool has exited.
const HELPERS_GONE: Duration = Duration::from_secs(15);

/// A tmpfs mounted at a path for the life of the guard (unmounted even when the test fails).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, options: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let status = Command::new("mount").args(["-t", "tmpfs", "-o", options, "tmpfs"]).arg(at).status().unwrap();
        assert!(status.success(), "could not mount a tmpfs on {}", at.display());
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A server-side directory removed with its content when dropped.
struct RemoveDirOnDrop(PathBuf);

impl Drop for RemoveDirOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A sparse remote file of `len` bytes (zeros), readable by the FTP user.
fn sparse(path: &Path, len: u64) {
    let file = std::fs::File::create(path).unwrap();
    file.set_len(len).unwrap();
}

/// True when `path` holds exactly `len` zero bytes.
fn all_zeros(path: &Path, len: u64) -> bool {
    let mut file = std::fs::File::open(path).unwrap();
    if file.metadata().unwrap().len() != len {
        return false;
    }
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).unwrap();
        if n == 0 {
            return true;
        }
        if buf[..n].iter().any(|b| *b != 0) {
            return false;
        }
    }
}

/// The running (not zombie) processes of `user` on the lab's hosts.
fn processes_of(user: &str) -> HashSet<String> {
    let out = Command::new("ps").args(["-u", user, "-o", "pid=,stat=,args="]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.split_whitespace().nth(1).is_some_and(|stat| !stat.starts_with('Z')))
        .map(|l| {
            let mut f = l.split_whitespace();
            let pid = f.next().unwrap_or_default().to_string();
            let args: Vec<&str> = f.skip(1).collect();
            format!("{pid} {}", args.join(" "))
        })
        .collect()
}

/// Signal the tool, after checking that the run has processes on the server (so that
/// [`assert_helpers_gone`] has something to check).
fn stop(tool: &Tool, before: &HashSet<String>, pid: u32, signal: Signal) {
    let during: Vec<String> = processes_of(tool.lab.var("SSH_USER")).difference(before).cloned().collect();
    assert!(!during.is_empty(), "the run shows no process on the server");
    eprintln!("on the server while transferring: {during:?}");
    kill(Pid::from_raw(pid as i32), signal).unwrap();
}

/// Every process of the FTP user that the run started (sshd session, relay, shell, ftpd
/// session) is gone within [`HELPERS_GONE`].
fn assert_helpers_gone(tool: &Tool, before: &HashSet<String>) {
    let user = tool.lab.var("SSH_USER");
    let started = Instant::now();
    loop {
        let left: Vec<String> = processes_of(user).difference(before).cloned().collect();
        if left.is_empty() {
            return;
        }
        assert!(started.elapsed() < HELPERS_GONE, "left running on the server: {left:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The tool, started with stderr read line by line.
fn spawn(cmd: &mut Command) -> (Child, mpsc::Receiver<String>) {
    let mut child = cmd.stderr(Stdio::piped()).spawn().expect("could not start the tool");
    let (tx, rx) = mpsc::channel();
    let pipe = child.stderr.take().unwrap();
    std::thread::spawn(move || BufReader::new(pipe).lines().map_while(Result::ok).for_each(|l| drop(tx.send(l))));
    (child, rx)
}

/// Read the tool's stderr; `act` runs once, `after` the first line containing `trigger`.
/// Returns the exit code and the whole stderr.
fn run_until(cmd: &mut Command, trigger: &str, after: Duration, act: impl FnOnce(u32)) -> (Option<i32>, String) {
    let (mut child, rx) = spawn(cmd);
    let mut act = Some(act);
    let mut lines = Vec::new();
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(90)) {
        let hit = line.contains(trigger);
        lines.push(line);
        if hit {
            if let Some(act) = act.take() {
                std::thread::sleep(after);
                act(child.id());
            }
        }
    }
    let status = child.wait().unwrap();
    let err = lines.join("\n");
    eprintln!("--- stderr:\n{err}");
    assert!(act.is_none(), "never saw {trigger:?}");
    (status.code(), err)
}

fn no_part_files(dir: &Path) {
    let names = entries(dir);
    assert!(!names.iter().any(|n| n.ends_with(".part")), "part files left in {}: {names:?}", dir.display());
}

// ---- 1. a failed transfer does not put the batch out of step ----

/// `get big.bin` into a 1 MiB tmpfs (disk full), then a put and two gets on the same link.
fn disk_full_batch(extra: &[&str]) {
    let tool = Tool::new();
    let dir = tool.work.path();
    let _full = Tmpfs::mount(&dir.join("full"), "size=1m");
    let tag = format!("step-{}-{}", std::process::id(), extra.join(""));
    let up = format!("{tag} uploaded by the batch\n").repeat(500);
    std::fs::write(dir.join("up.bin"), &up).unwrap();
    let remote_up = format!("upload/{tag}.bin");
    let _cleanup = RemoveOnDrop(tool.remote_path(&remote_up));
    let batch = format!(
        "get big.bin full/big.bin\nput up.bin {remote_up}\nget small.bin\nget \"name with spaces.bin\" spaces.bin\n"
    );
    std::fs::write(dir.join("full.batch"), batch).unwrap();
    let out = run(tool
        .cmd(tool.lab.port("PROFTPD_PORT"))
        .args(["-v", "batch", "full.batch", "--continue-on-error"])
        .args(["--report", "json", "report.json"])
        .args(extra));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(6), "some failed, some succeeded:\n{err}");
    assert!(err.contains("4 transfers: 3 ok, 1 failed"), "{err}");
    assert!(!err.contains("theft"), "no stray-connection warning:\n{err}");
    assert_eq!(std::fs::read(tool.remote_path(&remote_up)).unwrap(), up.as_bytes(), "the upload");
    for (local, remote) in [("small.bin", "small.bin"), ("spaces.bin", "name with spaces.bin")] {
        assert_same(&std::fs::read(dir.join(local)).unwrap(), &std::fs::read(tool.remote_path(remote)).unwrap(), local);
    }
    let empty: Vec<String> = entries(&tool.remote_path("upload"))
        .into_iter()
        .filter(|n| n.contains(&tag))
        .filter(|n| std::fs::metadata(tool.remote_path("upload").join(n)).unwrap().len() == 0)
        .collect();
    assert!(empty.is_empty(), "0-byte files on the server: {empty:?}");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("report.json")).unwrap()).unwrap();
    let first = &report["transfers"][0];
    assert_eq!(first["outcome"], "failed", "{first}");
    assert!(first["error"].as_str().unwrap().contains("No space left"), "{first}");
    assert_eq!(first["retries"], 0, "a full disk is not retried: {first}");
    assert!(!dir.join("full/big.bin").exists());
}

#[test]
fn disk_full_batch_without_retries_stays_in_step() {
    disk_full_batch(&["--retries", "0"]);
}

#[test]
fn disk_full_batch_with_retries_stays_in_step() {
    disk_full_batch(&[]);
}

// ---- 2. signals ----

/// `get` of a 1 GiB file from the server on `port_key`, stopped by `signal`, then again.
fn interrupted_get_then_rerun(port_key: &str, signal: Signal, code: i32) {
    let tool = Tool::new();
    let name = format!("step-huge-{}.bin", std::process::id());
    let _cleanup = RemoveOnDrop(tool.remote_path(&name));
    sparse(&tool.remote_path(&name), HUGE);
    let before = processes_of(tool.lab.var("SSH_USER"));
    let port = tool.lab.port(port_key);
    let (status, err) = run_until(
        tool.cmd(port).args(["-v", "get", &name]),
        "data connection from",
        Duration::from_millis(700),
        |pid| stop(&tool, &before, pid, signal),
    );
    assert_eq!(status, Some(code), "{err}");
    assert!(err.contains(&format!("interrupted by {signal}")), "{err}");
    assert!(!tool.work.path().join(&name).exists(), "no file under the final name after an interrupt");
    assert_helpers_gone(&tool, &before);
    let out = run(tool.cmd(port).args(["-v", "get", &name]));
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains(&format!("resuming {name} at byte")), "the second run resumes the part file:\n{err}");
    assert!(all_zeros(&tool.work.path().join(&name), HUGE), "the resumed file is whole");
    assert_eq!(tool.work_entries(), vec![name.clone()], "only the finished file");
    std::fs::remove_file(tool.work.path().join(&name)).unwrap();
}

#[test]
fn sigint_mid_get_then_the_same_command_finishes() {
    interrupted_get_then_rerun("PROFTPD_PORT", Signal::SIGINT, 130);
}

/// Through the relay (GNU inetutils ftpd): the relay must go too.
#[test]
fn sigterm_mid_get_through_the_relay_then_the_same_command_finishes() {
    interrupted_get_then_rerun("INETUTILS_PORT", Signal::SIGTERM, 143);
}

/// `mget` of a small, a 1 GiB and a small file with `jobs` workers, stopped by `signal`
/// while the big one transfers, then again.
fn interrupted_mget_then_rerun(jobs: &str, signal: Signal, code: i32) {
    let tool = Tool::new();
    let remote_dir = format!("step-mget-{}", std::process::id());
    let _cleanup = RemoveDirOnDrop(tool.remote_path(&remote_dir));
    std::fs::create_dir(tool.remote_path(&remote_dir)).unwrap();
    std::fs::write(tool.remote_path(&remote_dir).join("a.bin"), b"first, small\n").unwrap();
    sparse(&tool.remote_path(&remote_dir).join("b.bin"), HUGE);
    std::fs::write(tool.remote_path(&remote_dir).join("c.bin"), b"third, small\n").unwrap();
    let before = processes_of(tool.lab.var("SSH_USER"));
    let port = tool.lab.port("PROFTPD_PORT");
    let glob = format!("{remote_dir}/*");
    let args = ["-v", "mget", &glob, "-d", "out", "--jobs", jobs, "--report", "json", "report.json"];
    // ProFTPD's 150 for b.bin: its data is flowing (a RETR sent is not yet a transfer begun:
    // the SHA-256 asked before it takes the server seconds over 1 GiB).
    let trigger = format!("data connection for {remote_dir}/b.bin");
    let (status, err) = run_until(tool.cmd(port).args(args), &trigger, Duration::from_millis(1000), |pid| {
        stop(&tool, &before, pid, signal)
    });
    assert_eq!(status, Some(code), "{err}");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tool.work.path().join("report.json")).unwrap()).unwrap();
    let transfers = report["transfers"].as_array().unwrap();
    assert_eq!(transfers.len(), 3, "{report}");
    let b = transfers.iter().find(|t| t["source"].as_str().unwrap().ends_with("b.bin")).unwrap();
    assert_eq!(b["outcome"], "failed", "{b}");
    assert!(b["error"].as_str().unwrap().contains(&format!("interrupted by {signal}")), "{b}");
    let ok: Vec<_> = transfers.iter().filter(|t| t["outcome"] == "ok").collect();
    for t in &ok {
        let local = tool.work.path().join(t["target"].as_str().unwrap());
        assert!(local.exists(), "{t}");
    }
    assert_helpers_gone(&tool, &before);
    let out = run(tool.cmd(port).args(args));
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains(&format!("resuming {remote_dir}/b.bin at byte")), "the second run resumes:\n{err}");
    let out_dir = tool.work.path().join("out");
    assert_eq!(entries(&out_dir), ["a.bin", "b.bin", "c.bin"], "only the finished files");
    assert!(all_zeros(&out_dir.join("b.bin"), HUGE), "b.bin is whole");
    assert_eq!(std::fs::read(out_dir.join("a.bin")).unwrap(), b"first, small\n");
    assert_eq!(std::fs::read(out_dir.join("c.bin")).unwrap(), b"third, small\n");
    std::fs::remove_file(out_dir.join("b.bin")).unwrap();
}

#[test]
fn sigterm_mid_mget_writes_the_report_and_the_same_command_finishes() {
    interrupted_mget_then_rerun("1", Signal::SIGTERM, 143);
}

#[test]
fn sigint_mid_mget_with_two_workers_writes_the_report_and_the_same_command_finishes() {
    interrupted_mget_then_rerun("2", Signal::SIGINT, 130);
}

/// A signal while an mget with four workers still lists: the workers started meanwhile (their
/// SSH sessions, relays, FTP sessions) end with it, and the same command then finishes (a part
/// file a transfer left is resumed, as after any interrupted download).
#[test]
fn sigint_while_an_mget_with_four_workers_lists_then_the_same_command_finishes() {
    let tool = Tool::new();
    let before = processes_of(tool.lab.var("SSH_USER"));
    let port = tool.lab.port("PROFTPD_PORT");
    let args = ["-v", "mget", "many/*", "-d", "out", "--jobs", "4"];
    let (status, err) = run_until(tool.cmd(port).args(args), "---> NLST", Duration::ZERO, |pid| {
        stop(&tool, &before, pid, Signal::SIGINT)
    });
    assert_eq!(status, Some(130), "{err}");
    assert_helpers_gone(&tool, &before);
    let out = run(tool.cmd(port).args(args));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_many(&tool, "out", 1..=200);
    no_part_files(&tool.work.path().join("out"));
}

/// A part file longer than the remote file is not that file's beginning: start over.
#[test]
fn a_part_file_longer_than_the_remote_file_is_not_resumed() {
    let tool = Tool::new();
    let dir = tool.work.path();
    std::fs::write(dir.join(".small.bin.ftpssh.part"), vec![b'x'; 20000]).unwrap();
    let out = run(tool.cmd(tool.lab.port("PROFTPD_PORT")).args(["-v", "get", "small.bin"]));
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("starting over") && !err.contains("---> REST"), "{err}");
    assert_same(
        &std::fs::read(dir.join("small.bin")).unwrap(),
        &std::fs::read(tool.remote_path("small.bin")).unwrap(),
        "small.bin",
    );
    assert_eq!(tool.work_entries(), ["small.bin"]);
}

// ---- 3. long names ----

#[test]
fn a_254_byte_name_downloads() {
    let tool = Tool::new();
    let name = format!("{}-{:010}.bin", "n".repeat(254 - ".bin".len() - "-".len() - 10), std::process::id());
    assert_eq!(name.len(), 254);
    let content = b"a long name\n".repeat(100);
    let _cleanup = RemoveOnDrop(tool.remote_path(&name));
    std::fs::write(tool.remote_path(&name), &content).unwrap();
    let out = run(tool.cmd(tool.lab.port("PROFTPD_PORT")).args(["get", &name]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_same(&std::fs::read(tool.work.path().join(&name)).unwrap(), &content, "the long name");
    assert_eq!(tool.work_entries(), vec![name]);
}

// ---- 5. failures named where they happened ----

#[test]
fn a_killed_ssh_session_is_an_ssh_failure() {
    let tool = Tool::new();
    let name = format!("step-kill-{}.bin", std::process::id());
    let _cleanup = RemoveOnDrop(tool.remote_path(&name));
    sparse(&tool.remote_path(&name), HUGE);
    let user = tool.lab.var("SSH_USER").to_string();
    let (status, err) = run_until(
        tool.cmd(tool.lab.port("PROFTPD_PORT")).args(["-v", "get", &name]),
        "data connection from",
        Duration::from_millis(500),
        |_| {
            let status = Command::new("pkill").args(["-KILL", "-u", &user, "-x", "sshd"]).status().unwrap();
            assert!(status.success(), "no sshd session process to kill");
        },
    );
    assert_eq!(status, Some(3), "{err}");
    let last = err.lines().last().unwrap_or_default();
    assert!(last.contains("SSH connection") && last.contains("was lost"), "names SSH: {last}");
    assert!(!err.contains("FTP server closed"), "{err}");
    assert!(!tool.work.path().join(&name).exists());
}

/// Sends SIGCONT to the user's sshd processes when dropped.
struct Frozen(String);

impl Drop for Frozen {
    fn drop(&mut self) {
        let _ = Command::new("pkill").args(["-CONT", "-u", &self.0, "-x", "sshd"]).status();
    }
}

#[test]
fn an_ssh_server_that_stops_answering_is_an_ssh_failure() {
    // Frozen with SIGSTOP, the SSH server closes nothing, as on a cut link; the tool fails
    // while it waits for pyftpdlib's data connection, and must blame SSH, not the FTP server.
    let tool = Tool::new();
    let user = tool.lab.var("SSH_USER").to_string();
    let frozen = Frozen(user.clone());
    let (status, err) = run_until(
        tool.cmd(tool.lab.port("PYFTPDLIB_PORT")).args(["-v", "--data-mode", "default-port", "get", "small.bin"]),
        "150 File status okay",
        Duration::ZERO,
        |_| {
            let status = Command::new("pkill").args(["-STOP", "-u", &user, "-x", "sshd"]).status().unwrap();
            assert!(status.success(), "no sshd session process to stop");
        },
    );
    drop(frozen);
    assert_eq!(status, Some(3), "{err}");
    let last = err.lines().last().unwrap_or_default();
    assert!(last.contains("the SSH connection to") && last.contains("stopped answering"), "names SSH: {last}");
    assert!(tool.work_entries().is_empty(), "left behind: {:?}", tool.work_entries());
}

#[test]
fn a_missing_batch_file_is_a_usage_error() {
    let tool = Tool::new();
    let out: Output = run(tool.cmd(tool.lab.port("PROFTPD_PORT")).args(["batch", "no-such.batch"]));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("no-such.batch"), "{}", stderr(&out));
}

#[test]
fn a_read_only_target_directory_is_not_retried() {
    let tool = Tool::new();
    let dir = tool.work.path();
    // Tests run as root, whom permission bits do not stop: a read-only mount does.
    let _ro = Tmpfs::mount(&dir.join("ro"), "ro,size=1m");
    std::fs::write(dir.join("ro.batch"), "get small.bin ro/small.bin\nget empty.bin\n").unwrap();
    let out = run(tool
        .cmd(tool.lab.port("PROFTPD_PORT"))
        .args(["batch", "ro.batch", "--continue-on-error", "--retries", "3"])
        .args(["--report", "json", "report.json"]));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(6), "{err}");
    assert!(!err.contains("retry"), "not retried:\n{err}");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["transfers"][0]["retries"], 0, "{report}");
    assert!(report["transfers"][0]["error"].as_str().unwrap().contains("Read-only file system"), "{report}");
    assert_eq!(report["transfers"][1]["outcome"], "ok", "{report}");
    no_part_files(dir);
}
