//! `get --segments`: one file in ranges over several control and SSH connections, against the
//! lab's real servers, under the veth capture (only SSH on the wire, no file byte, no password).
//! The copy is byte-identical; a run stopped by SIGINT resumes each segment where the part
//! file's record says it stopped, fetching nothing twice; a server that allows two control
//! connections per host, and one without REST, get fewer segments, said once, never a failure.
//! Unless asked, a near server (loopback here) gets one SSH connection, a far one (the 20 ms
//! WAN path) one per segment; the tests of segments at once ask for them.
//!
//! Needs root and `scripts/lab up`; run with `--test-threads=1` like every lab test.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::tool::{assert_default_port, assert_same, captured, stderr, traced, Tool};

const FILE: &str = "big.bin";
const RECORD: &str = ".big.bin.ftpssh.segs";
const PART: &str = ".big.bin.ftpssh.part";

/// The `-v` lines "NAME: segment I from byte D to E", as (I, D, E).
fn segment_lines(err: &str) -> Vec<(usize, u64, u64)> {
    let mut found = Vec::new();
    for line in err.lines() {
        let Some(rest) = line.split(": segment ").nth(1) else { continue };
        let words: Vec<&str> = rest.split(' ').collect();
        if let [i, "from", "byte", d, "to", e, ..] = words[..] {
            found.push((i.parse().unwrap(), d.parse().unwrap(), e.parse().unwrap()));
        }
    }
    found
}

/// The part file's record: (start, end, done) per segment.
fn record(dir: &Path) -> Vec<(u64, u64, u64)> {
    let text = std::fs::read_to_string(dir.join(RECORD)).unwrap_or_default();
    let ranges = text.lines().skip(2).map(|l| {
        let n: Vec<u64> = l.split(' ').map(|w| w.parse().unwrap()).collect();
        (n[0], n[1], n[2])
    });
    ranges.collect()
}

/// A segmented get of the lab's 100 MiB file under the capture, over as many SSH connections
/// as segments: byte-identical, nothing left beside it; returns the -v trace.
fn segmented(port_key: &str, segments: &str) -> String {
    segmented_over(port_key, segments, &["--ssh-connections", segments])
}

/// [`segmented`] with `extra` options.
fn segmented_over(port_key: &str, segments: &str, extra: &[&str]) -> String {
    let tool = Tool::new();
    let want = std::fs::read(tool.remote_path(FILE)).unwrap();
    let args: Vec<&str> = extra.iter().copied().chain(["--segments", segments, "--verify", "get", FILE]).collect();
    let out = captured(&tool, tool.lab.port(port_key), &args, &want);
    assert_same(&std::fs::read(tool.work.path().join(FILE)).unwrap(), &want, FILE);
    assert_eq!(tool.work_entries(), [FILE], "no part file, no record left");
    stderr(&out)
}

/// Each of `n` segments was fetched once, all of them starting where their range starts.
fn assert_fresh_segments(err: &str, n: usize) {
    let mut lines = segment_lines(err);
    lines.sort();
    assert_eq!(lines.len(), n, "{n} segments:\n{err}");
    for (k, (i, from, to)) in lines.iter().enumerate() {
        assert_eq!(*i, k, "{err}");
        assert!(from < to, "{err}");
    }
}

#[test]
fn segmented_get_from_proftpd() {
    let err = segmented("PROFTPD_PORT", "4");
    assert_default_port(&err);
    assert_fresh_segments(&err, 4);
    assert!(err.contains("over 4 SSH connections"), "{err}");
}

/// Unless asked, a server this near gets one SSH connection: the ranges one after the other,
/// in one transfer (each range after the first read on into, not fetched anew).
#[test]
fn a_near_server_gets_one_ssh_connection_unless_asked() {
    let err = segmented_over("PROFTPD_PORT", "4", &[]);
    assert!(err.contains("ms (below 2 ms): the ranges one after the other over one SSH connection"), "{err}");
    assert!(err.contains("over 1 SSH connections"), "{err}");
    assert_eq!(err.matches(" is up (C = ").count(), 1, "one SSH connection:\n{err}");
    assert_fresh_segments(&err, 4);
    assert_eq!(err.matches(" (read on from the one before)").count(), 3, "one transfer:\n{err}");
}

/// Through the 20 ms delay proxy: one SSH connection per segment, byte-identical.
#[test]
fn a_far_server_gets_one_ssh_connection_per_segment() {
    let tool = Tool::new();
    let lab = &tool.lab;
    let want = std::fs::read(tool.remote_path(FILE)).unwrap();
    let mut cmd = tool.bare();
    cmd.arg("-s")
        .arg(format!("{}@{}:{}", lab.var("SSH_USER"), lab.var("WAN_SSH_ADDR"), lab.port("WAN_SSH_PORT_20MS")))
        .args(["-f", &format!("127.0.0.1:{}", lab.port("PROFTPD_PORT"))])
        .arg("-i")
        .arg(lab.path("SSH_KEY"))
        .arg("--known-hosts")
        .arg(lab.path("KNOWN_HOSTS"))
        .env("FTPSSH_PASSWORD", lab.var("FTP_PASSWORD"));
    let out = common::tool::traced_cmd(cmd, &["--segments", "2", "get", FILE]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("ms: one SSH connection per segment"), "{err}");
    assert!(err.contains("over 2 SSH connections"), "{err}");
    assert_fresh_segments(&err, 2);
    assert_same(&std::fs::read(tool.work.path().join(FILE)).unwrap(), &want, FILE);
}

#[test]
fn segmented_get_from_proftpd_fixed_source_port() {
    let err = segmented("PROFTPD_FIXED_PORT", "4");
    assert_default_port(&err);
    assert_fresh_segments(&err, 4);
}

#[test]
fn segmented_get_from_inetutils_ftpd() {
    let err = segmented("INETUTILS_PORT", "3");
    assert_default_port(&err);
    assert_fresh_segments(&err, 3);
}

#[test]
fn segmented_get_from_vsftpd_through_passive() {
    // vsftpd refuses the default port: each link falls back, and its REST must not be lost.
    let err = segmented("VSFTPD_PORT", "4");
    assert_fresh_segments(&err, 4);
}

#[test]
fn fewer_ssh_connections_than_segments() {
    let tool = Tool::new();
    let want = std::fs::read(tool.remote_path(FILE)).unwrap();
    let port = tool.lab.port("PROFTPD_PORT");
    let out = traced(&tool, port, &["--segments", "4", "--ssh-connections", "2", "get", FILE]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("over 2 SSH connections"), "{err}");
    assert_eq!(err.matches(" is up (C = ").count(), 2, "two SSH connections:\n{err}");
    assert_fresh_segments(&err, 4);
    assert_same(&std::fs::read(tool.work.path().join(FILE)).unwrap(), &want, FILE);
}

#[test]
fn two_clients_per_host_make_fewer_segments_said_once() {
    let err = segmented("PROFTPD_MAX2_PORT", "4");
    assert_eq!(err.matches("fewer segments at once").count(), 1, "said once:\n{err}");
    assert!(err.contains("maximum number of clients"), "{err}");
    assert_fresh_segments(&err, 4);
}

#[test]
fn a_server_without_rest_gets_one_segment_said_once() {
    let err = segmented("PYFTPDLIB_NOREST_PORT", "4");
    assert_eq!(err.matches("does not take REST").count(), 1, "said once:\n{err}");
    assert!(segment_lines(&err).is_empty(), "no segments:\n{err}");
}

/// SIGINT once every segment has written something (held back by `--bwlimit`), then the same
/// command again: each segment goes on where the record says, nothing is fetched twice.
fn interrupted_then_resumed(port_key: &str, extra: &[&str]) -> String {
    let tool = Tool::new();
    let want = std::fs::read(tool.remote_path(FILE)).unwrap();
    let port = tool.lab.port(port_key);
    let log = tool.work.path().join("first.log");
    let at_once = ["--ssh-connections", "4"];
    let args: Vec<&str> = ["--bwlimit", "8M", "--segments", "4"].iter().chain(&at_once).chain(extra).copied().collect();
    let mut first = tool.cmd(port);
    first.args(&args).args(["get", FILE]);
    let mut child = first.stdout(Stdio::null()).stderr(std::fs::File::create(&log).unwrap()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let started = |r: &Vec<(u64, u64, u64)>| r.iter().filter(|(s, _, d)| d > s).count();
    // Two segments at least have written (and saved) something: the part file has gaps.
    while started(&record(tool.work.path())) < 2 {
        let log = std::fs::read_to_string(&log).unwrap();
        assert!(child.try_wait().unwrap().is_none(), "the get ended early: {log}");
        assert!(Instant::now() < deadline, "the segments never started: {log}");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    // `ip netns exec` execs the tool: this pid is the tool's.
    assert!(Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap().success());
    let status = child.wait().unwrap();
    let first_err = std::fs::read_to_string(&log).unwrap();
    assert_eq!(status.code(), Some(130), "SIGINT: {first_err}");
    assert!(!tool.work.path().join(FILE).exists(), "nothing under the final name");
    let saved = record(tool.work.path());
    assert_eq!(saved.len(), 4, "the record stays beside the part file");
    let part = std::fs::read(tool.work.path().join(PART)).unwrap();
    for (start, _, done) in &saved {
        let (s, d) = (*start as usize, *done as usize);
        assert_same(&part[s..d], &want[s..d], "what the record says is written");
    }
    let left: u64 = saved.iter().map(|(_, e, d)| e - d).sum();
    eprintln!("{port_key}: {left} bytes left after SIGINT, record {saved:?}");

    std::fs::remove_file(&log).unwrap();
    let mut again = tool.cmd(port);
    let args: Vec<&str> = ["--segments", "4", "--verify", "get", FILE].iter().chain(&at_once).copied().collect();
    let out = traced_cmd_args(&mut again, &args);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains(&format!("{left} of {} bytes to fetch", want.len())), "only what was left:\n{err}");
    for (i, from, to) in segment_lines(&err) {
        let (_, end, done) = saved[i];
        assert_eq!((from, to), (done, end), "segment {i} goes on where it stopped:\n{err}");
    }
    let resumed = segment_lines(&err).len();
    let unfinished = saved.iter().filter(|(_, e, d)| d < e).count();
    assert_eq!(resumed, unfinished, "each unfinished segment once, no finished one:\n{err}");
    assert_same(&std::fs::read(tool.work.path().join(FILE)).unwrap(), &want, FILE);
    assert_eq!(tool.work_entries(), [FILE], "no part file, no record left");
    err
}

/// [`traced`] for a command already made.
fn traced_cmd_args(cmd: &mut Command, args: &[&str]) -> std::process::Output {
    let cmd = std::mem::replace(cmd, Command::new("true"));
    common::tool::traced_cmd(cmd, args)
}

#[test]
fn sigint_then_resume_each_segment_proftpd() {
    interrupted_then_resumed("PROFTPD_PORT", &[]);
}

#[test]
fn sigint_then_resume_each_segment_with_two_clients_per_host() {
    let err = interrupted_then_resumed("PROFTPD_MAX2_PORT", &[]);
    assert_eq!(err.matches("fewer segments at once").count(), 1, "said once:\n{err}");
}

#[test]
fn sigint_then_a_server_without_rest_starts_over() {
    let tool = Tool::new();
    let want = std::fs::read(tool.remote_path(FILE)).unwrap();
    let port = tool.lab.port("PYFTPDLIB_NOREST_PORT");
    let log = tool.work.path().join("first.log");
    let mut first = tool.cmd(port);
    first.args(["--bwlimit", "8M", "--segments", "4", "get", FILE]);
    let mut child = first.stdout(Stdio::null()).stderr(std::fs::File::create(&log).unwrap()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let part = tool.work.path().join(PART);
    while std::fs::metadata(&part).map_or(0, |m| m.len()) < 4 << 20 {
        let log = std::fs::read_to_string(&log).unwrap();
        assert!(child.try_wait().unwrap().is_none(), "the get ended early: {log}");
        assert!(Instant::now() < deadline, "the download never started: {log}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap().success());
    assert_eq!(child.wait().unwrap().code(), Some(130));
    std::fs::remove_file(&log).unwrap();
    let out = traced(&tool, port, &["--segments", "4", "get", FILE]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert_eq!(err.matches("does not take REST").count(), 1, "said once:\n{err}");
    assert_same(&std::fs::read(tool.work.path().join(FILE)).unwrap(), &want, FILE);
    assert_eq!(tool.work_entries(), [FILE]);
}

#[test]
fn segments_are_for_get_and_not_for_ascii() {
    let tool = Tool::new();
    for args in [&["--segments", "2", "put", "x"][..], &["--segments", "2", "--ascii", "get", "x"]] {
        let out = common::tool::run(tool.cmd(tool.lab.port("PROFTPD_PORT")).args(args));
        assert_eq!(out.status.code(), Some(2), "{args:?}: usage error");
    }
}

/// mget (and batch, below) split only the files above `--segment-threshold`, silently fetching the
/// others whole; every copy byte-identical.
fn bulk_splits_only_big_files(command: &[&str], dir: &str) {
    let tool = Tool::new();
    let port = tool.lab.port("PROFTPD_PORT");
    let args: Vec<&str> = ["--segments", "3", "--segment-threshold", "10M"].iter().chain(command).copied().collect();
    let out = traced(&tool, port, &args);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert_fresh_segments(&err, 3);
    assert!(!err.contains("one segment"), "the small files are fetched whole, without a word:\n{err}");
    for name in common::tool::FILES {
        let want = std::fs::read(tool.remote_path(name)).unwrap();
        assert_same(&std::fs::read(tool.work.path().join(dir).join(name)).unwrap(), &want, name);
    }
}

#[test]
fn mget_splits_only_files_above_the_threshold() {
    bulk_splits_only_big_files(&["mget", "*.bin", "-d", "got"], "got");
}

#[test]
fn batch_splits_only_files_above_the_threshold() {
    let tool = Tool::new();
    let port = tool.lab.port("PROFTPD_PORT");
    std::fs::write(tool.work.path().join("b.batch"), "get big.bin\nget small.bin\n").unwrap();
    let out = traced(&tool, port, &["--segments", "2", "--segment-threshold", "10M", "batch", "b.batch"]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert_fresh_segments(&err, 2);
    for name in ["big.bin", "small.bin"] {
        let want = std::fs::read(tool.remote_path(name)).unwrap();
        assert_same(&std::fs::read(tool.work.path().join(name)).unwrap(), &want, name);
    }
}

/// An sshd with `MaxSessions 1` refuses a second session channel on a connection; each segment
/// has an SSH connection of its own, so it limits nothing here: all segments run, byte-identical.
#[test]
fn max_sessions_one_limits_nothing_each_segment_has_its_own_ssh_connection() {
    let tool = Tool::new();
    let want = std::fs::read(tool.remote_path(FILE)).unwrap();
    let cmd = tool.cmd_via(tool.lab.port("MAXSESS1_SSH_PORT"), tool.lab.port("PROFTPD_PORT"));
    let out = common::tool::traced_cmd(cmd, &["--segments", "4", "--ssh-connections", "4", "get", FILE]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert_eq!(err.matches(" is up (C = ").count(), 4, "four SSH connections:\n{err}");
    assert_fresh_segments(&err, 4);
    assert_same(&std::fs::read(tool.work.path().join(FILE)).unwrap(), &want, FILE);
    assert_eq!(tool.work_entries(), [FILE]);
}
