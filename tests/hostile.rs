//! The hostile-server matrix. The lab's scripted server
//! (`tests/servers/hostile_ftpd.py`, behind the lab's sshd like the others) misbehaves on cue:
//! the USER name picks a session-level case, the path `CASE/bad.bin` a transfer-level one, and
//! `CASE/good.bin` is served normally. Every row checks that the tool fails with one clear line
//! and the documented exit code within a stated bound, leaves no file under the final name (a
//! part file may keep what really arrived, for a resume: never anything else), sends nothing in
//! plaintext, and that the next transfer of the same run (mget, batch) is unaffected.
//!
//! Needs root and `scripts/lab up`; run with `--test-threads=1` (shared veth).

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::capture::{assert_encrypted, file_samples, Capture, Captured};
use common::tool::{assert_same, run, stderr, Tool};

/// `--timeout` for every run: the bound on any reply, and on a stalled data connection (twice it).
const TIMEOUT: &str = "2";
/// What a failing `get` may take: the tool's bounds above, a login, and the capture's flush.
const GET_BOUND: Duration = Duration::from_secs(10);
/// What an mget or batch whose bad transfer fails may take: the same, plus bringing the control
/// connection back in step (resync reads for 5 s, then ABOR for 5 s more) or opening another.
const RUN_BOUND: Duration = Duration::from_secs(30);
/// Exit codes (README, `--help`).
const FTP: i32 = 4;
const TRANSFER: i32 = 5;
const SOME_FAILED: i32 = 6;

/// The content every file of the hostile server holds.
fn content(tool: &Tool) -> Vec<u8> {
    std::fs::read(tool.remote_path("small.bin")).unwrap()
}

/// The tool against the hostile server, with [`TIMEOUT`].
fn hostile(tool: &Tool) -> Command {
    let mut cmd = tool.cmd(tool.lab.port("HOSTILE_FTP_PORT"));
    cmd.args(["--timeout", TIMEOUT]);
    cmd
}

/// Runs `cmd` under the veth capture; returns the output, the time taken and the capture, which
/// has been checked: only the SSH port, neither the password nor the content in plaintext.
fn captured(tool: &Tool, cmd: &mut Command) -> (Output, Duration, Captured) {
    let lab = &tool.lab;
    let capture = Capture::start(lab.var("CLIENT_NS"), lab.var("CLIENT_IF"));
    let started = Instant::now();
    let out = run(cmd);
    let took = started.elapsed();
    let captured = capture.stop();
    let content = content(tool);
    let samples = file_samples(&content);
    let mut secrets = vec![(lab.var("FTP_PASSWORD").as_bytes(), "the FTP password")];
    secrets.extend(samples.iter().map(|s| (&s[..], "the file's content")));
    // An SSH handshake alone is over 1000 bytes: less means the capture saw nothing.
    assert_encrypted(&captured, lab.port("SSH_PORT"), &secrets, 1000);
    assert!(!stderr(&out).contains(lab.var("FTP_PASSWORD")), "the password is in the tool's output");
    (out, took, captured)
}

/// Nothing under `name` in `dir`, and its part file, if kept for a resume, holds only a true
/// prefix of the content (never bytes that are not the server's file).
fn assert_not_saved(tool: &Tool, dir: &Path, name: &str) {
    assert!(!dir.join(name).exists(), "{name} was saved under its final name");
    let part = dir.join(format!(".{name}.ftpssh.part"));
    if let Ok(kept) = std::fs::read(&part) {
        let content = content(tool);
        assert!(!kept.is_empty(), "an empty part file is kept");
        assert!(content.starts_with(&kept), "the part file holds bytes that are not the server's");
    }
}

/// The lines the tool printed as errors.
fn error_lines(out: &Output) -> Vec<String> {
    stderr(out).lines().filter(|l| l.starts_with("ftpssh-fullsecure: error: ")).map(str::to_string).collect()
}

/// One row of the matrix for a transfer-level case: a lone `get CASE/bad.bin` fails with one
/// line holding `needle` and exit `code` within `bound`; then `mget 'CASE/*'` (bad.bin, then
/// good.bin on the same control connection) fails the first and gets the second intact.
/// The lone `get` is made on both data paths: the default port (the server connects back to
/// U) and passive (sshd connects to the port EPSV announced).
fn transfer_row(case: &str, code: i32, needle: &str, bound: Duration) {
    let tool = Tool::new();
    let bad = format!("{case}/bad.bin");
    for mode in ["default-port", "passive"] {
        let (out, took, _) = captured(&tool, hostile(&tool).args(["--data-mode", mode, "get", &bad]));
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(code), "{mode}: exit code:\n{err}");
        assert_eq!(err.lines().count(), 1, "{mode}: one line expected:\n{err}");
        assert!(
            err.starts_with("ftpssh-fullsecure: error: ") && err.contains(needle),
            "{mode}: {needle:?} not in:\n{err}"
        );
        assert!(took < bound, "{case}, {mode}: took {took:?}, the bound is {bound:?}");
        assert_not_saved(&tool, tool.work.path(), "bad.bin");
    }

    let glob = format!("{case}/*");
    let (out, took, _) =
        captured(&tool, hostile(&tool).args(["-q", "mget", &glob, "-d", "m", "--continue-on-error", "--retries", "1"]));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(SOME_FAILED), "mget exit code:\n{err}");
    let errors = error_lines(&out);
    assert!(errors.len() == 1 && errors[0].contains(&bad), "only {bad} fails:\n{err}");
    assert!(took < RUN_BOUND, "{case}: mget took {took:?}, the bound is {RUN_BOUND:?}");
    let dir = tool.work.path().join("m");
    assert_same(&std::fs::read(dir.join("good.bin")).unwrap(), &content(&tool), "good.bin after bad.bin");
    assert_not_saved(&tool, &dir, "bad.bin");
}

#[test]
fn reply_421_mid_session() {
    transfer_row("421-mid", FTP, "421 Service not available", GET_BOUND);
}

#[test]
fn reply_426_mid_transfer() {
    transfer_row("426-mid", TRANSFER, "426 Connection closed", GET_BOUND);
}

#[test]
fn data_connection_closes_early() {
    transfer_row("early-close", TRANSFER, "received 5438 bytes, the server announced 10876", GET_BOUND);
}

#[test]
fn reply_150_and_226_with_no_data() {
    transfer_row("no-data", TRANSFER, "received 0 bytes, the server announced 10876", GET_BOUND);
}

#[test]
fn data_at_one_byte_a_second() {
    transfer_row("slow", TRANSFER, "stalled", GET_BOUND);
}

#[test]
fn a_one_megabyte_reply_line() {
    transfer_row("long-line", FTP, "reply line longer than 8192 bytes", GET_BOUND);
}

#[test]
fn a_multi_line_reply_with_mismatched_codes() {
    transfer_row(
        "multiline-mismatch",
        TRANSFER,
        "left its reply unfinished for 2s: \"150-Opening data connection\"",
        GET_BOUND,
    );
}

#[test]
fn a_reply_after_a_long_silence() {
    transfer_row("silence", TRANSFER, "no reply within 2s", GET_BOUND);
}

#[test]
fn reply_426_mid_upload() {
    // The server takes half the file, then says 426: the upload fails, the next one succeeds
    // (the tool checks it with SIZE).
    let tool = Tool::new();
    let local = tool.remote_path("small.bin");
    let (out, took, _) = captured(&tool, hostile(&tool).arg("put").arg(&local).arg("426-mid/up.bin"));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(TRANSFER), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("STOR 426-mid/up.bin: the FTP server replied 426"), "{err}");
    assert!(took < GET_BOUND, "took {took:?}");
    let batch = tool.work.path().join("up.batch");
    let local = local.to_str().unwrap();
    std::fs::write(&batch, format!("put {local} 426-mid/up.bin\nput {local} up-{}.bin\n", std::process::id())).unwrap();
    let mut cmd = hostile(&tool);
    cmd.args(["-q", "--continue-on-error", "--retries", "0", "batch"]).arg(&batch);
    let (out, took, _) = captured(&tool, &mut cmd);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(SOME_FAILED), "{err}");
    let errors = error_lines(&out);
    assert!(errors.len() == 1 && errors[0].contains("426-mid/up.bin"), "{err}");
    assert!(took < RUN_BOUND, "took {took:?}");
}

#[test]
fn reply_421_at_login() {
    // A login-level case: every transfer of that login fails alike, so there is no "next one".
    let tool = Tool::new();
    let (out, took, _) = captured(&tool, hostile(&tool).args(["-u", "421-login", "get", "good.bin"]));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(FTP), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("USER 421-login: the FTP server replied 421"), "{err}");
    assert!(took < GET_BOUND, "took {took:?}");
    assert_not_saved(&tool, tool.work.path(), "good.bin");
}

/// `--jobs 4` where the server greets one login of the user at a time (USER one-session: the
/// USER of a second session is answered only after 10 s): the run ends when its one file is
/// done, not when the workers still logging in are (it took 10 s that way).
#[test]
fn a_run_ends_with_its_last_file_not_with_the_workers_still_logging_in() {
    let tool = Tool::new();
    let mut cmd = tool.cmd(tool.lab.port("HOSTILE_FTP_PORT"));
    cmd.args(["-q", "-u", "one-session", "--jobs", "4", "mget", "good.bin", "-d", "m"]);
    let started = Instant::now();
    let out = run(&mut cmd);
    let took = started.elapsed();
    assert!(out.status.success(), "{}", stderr(&out));
    let copy = std::fs::read(tool.work.path().join("m/good.bin")).unwrap();
    assert_same(&copy, &content(&tool), "good.bin");
    assert!(took < Duration::from_secs(7), "took {took:?}: the run waited for the workers' logins");
}

/// A batch of `get`s as `user` in passive mode, under the capture: returns the -v trace.
fn passive_batch(tool: &Tool, user: &str) -> (Output, Duration) {
    let batch = tool.work.path().join("jobs.batch");
    std::fs::write(&batch, "get good.bin one.bin\nget 426-mid/good.bin two.bin\n").unwrap();
    let mut cmd = hostile(tool);
    cmd.args(["-v", "-u", user, "--data-mode", "passive", "batch"]).arg(&batch);
    let (out, took, _) = captured(tool, &mut cmd);
    (out, took)
}

#[test]
fn pasv_pointing_at_another_address() {
    // EPSV refused, and PASV names the client host itself: a client that believed it would
    // send the data across the veth in plaintext, which the capture refuses. The data must go
    // where the control connection goes, inside SSH.
    let tool = Tool::new();
    let (out, took) = passive_batch(&tool, "pasv-elsewhere");
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    let elsewhere = tool.lab.var("CLIENT_ADDR").replace('.', ",");
    assert!(err.contains(&format!("227 Entering Passive Mode ({elsewhere},")), "the server did not say PASV:\n{err}");
    assert!(err.contains("passive data connection to 127.0.0.1:"), "{err}");
    assert!(!err.contains(&format!("passive data connection to {}", tool.lab.var("CLIENT_ADDR"))), "{err}");
    assert!(took < GET_BOUND, "took {took:?}");
    for name in ["one.bin", "two.bin"] {
        assert_same(&std::fs::read(tool.work.path().join(name)).unwrap(), &content(&tool), name);
    }
}

#[test]
fn epsv_with_unusual_delimiters() {
    // `(!!!port!)` after a decoy parenthesis: RFC 2428 allows any delimiter in 33..=126.
    let tool = Tool::new();
    let (out, took) = passive_batch(&tool, "epsv-odd");
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("229 Extended (passive) mode (!!!"), "{err}");
    assert!(took < GET_BOUND, "took {took:?}");
    for name in ["one.bin", "two.bin"] {
        assert_same(&std::fs::read(tool.work.path().join(name)).unwrap(), &content(&tool), name);
    }
}

/// A hash that takes longer than the wait for a data connection (a big file's): asked before its
/// RETR, it delays the connection, which is awaited from the hash's reply on, so the default port
/// still carries the download, and the copy is checked. (The default `--timeout`: the reply takes
/// longer than the other cases' 2 s.)
#[test]
fn a_hash_slower_than_the_data_connections_bound() {
    let tool = Tool::new();
    let mut cmd = tool.cmd(tool.lab.port("HOSTILE_FTP_PORT"));
    cmd.args(["-v", "-u", "slow-hash", "--verify", "get", "good.bin"]);
    let (out, took, _) = captured(&tool, &mut cmd);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    let (hash, retr) = (err.find("---> HASH good.bin").unwrap(), err.find("---> RETR good.bin").unwrap());
    assert!(hash < retr, "the hash is asked before the transfer:\n{err}");
    assert!(!err.contains("---> EPSV") && !err.contains("---> PASV"), "went passive:\n{err}");
    assert!(err.contains(" = the server's"), "{err}");
    assert!(took < GET_BOUND + Duration::from_secs(6), "took {took:?}");
    assert_same(&std::fs::read(tool.work.path().join("good.bin")).unwrap(), &content(&tool), "good.bin");
}

/// A hash is answered once the server has read the file: its reply may take `--timeout` and a
/// second per 16 MiB of the size the server just gave (big.bin: 160 MiB, 10 s), so a big file's
/// slow hash (6 s) is waited for under `--timeout 2`; a small file's is not (nothing saved).
#[test]
fn a_big_files_hash_may_take_longer_than_the_timeout() {
    let tool = Tool::new();
    let out = run(hostile(&tool).args(["-v", "-u", "slow-hash", "--verify", "get", "big.bin"]));
    let err = stderr(&out);
    assert!(out.status.success() && err.contains(" = the server's"), "{err}");
    assert_eq!(std::fs::metadata(tool.work.path().join("big.bin")).unwrap().len(), 160 << 20);
    let (out, took, _) = captured(&tool, hostile(&tool).args(["-u", "slow-hash", "--verify", "get", "good.bin"]));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(TRANSFER), "{err}");
    assert!(err.contains("no reply within 2s") && took < GET_BOUND, "took {took:?}: {err}");
    assert_not_saved(&tool, tool.work.path(), "good.bin");
}

#[test]
fn epsv_with_an_impossible_port() {
    let tool = Tool::new();
    let mut cmd = hostile(&tool);
    cmd.args(["-u", "epsv-bad", "--data-mode", "passive", "get", "good.bin"]);
    let (out, took, _) = captured(&tool, &mut cmd);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(FTP), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("bad EPSV reply") && err.contains("|||99999|"), "{err}");
    assert!(took < GET_BOUND, "took {took:?}");
    assert_not_saved(&tool, tool.work.path(), "good.bin");
}

#[test]
fn a_batch_through_every_transfer_case() {
    // Each bad transfer followed by a good one, all in one run on as few control connections
    // as the tool keeps: every good one must arrive intact, every bad one fail and be named.
    let cases = ["421-mid", "426-mid", "early-close", "no-data", "long-line", "multiline-mismatch", "silence"];
    let tool = Tool::new();
    let batch = tool.work.path().join("matrix.batch");
    let lines: String =
        cases.iter().map(|c| format!("get {c}/bad.bin {c}-bad.bin\nget {c}/good.bin {c}-good.bin\n")).collect();
    std::fs::write(&batch, lines).unwrap();
    let mut cmd = hostile(&tool);
    cmd.args(["-q", "--continue-on-error", "--retries", "0", "batch"]).arg(&batch);
    let (out, took, _) = captured(&tool, &mut cmd);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(SOME_FAILED), "{err}");
    let errors = error_lines(&out);
    assert_eq!(errors.len(), cases.len(), "{err}");
    for case in cases {
        assert!(errors.iter().any(|l| l.contains(&format!("{case}/bad.bin"))), "{case} not named:\n{err}");
        let good = format!("{case}-good.bin");
        assert_same(&std::fs::read(tool.work.path().join(&good)).unwrap(), &content(&tool), &good);
        assert_not_saved(&tool, tool.work.path(), &format!("{case}-bad.bin"));
    }
    assert!(took < RUN_BOUND * 2, "took {took:?}");
}

/// `cmd` killed after `secs`: a test of a bound must fail, not hang, where the bound is missing.
fn killed_after(cmd: &Command, secs: u64) -> Command {
    let mut bounded = Command::new("timeout");
    bounded.args(["-s", "KILL", &secs.to_string()]).arg(cmd.get_program()).args(cmd.get_args());
    for (key, value) in cmd.get_envs() {
        match value {
            Some(value) => bounded.env(key, value),
            None => bounded.env_remove(key),
        };
    }
    bounded.current_dir(cmd.get_current_dir().unwrap()).stdin(std::process::Stdio::null());
    bounded
}

/// The hostile server reached at `addr` (which picks the greeting's case), with [`TIMEOUT`].
fn greeted_from(tool: &Tool, addr: &str) -> Command {
    let mut cmd = tool.cmd_to(tool.lab.port("SSH_PORT"), addr, tool.lab.port("HOSTILE_FTP_PORT"));
    cmd.args(["--timeout", TIMEOUT]);
    cmd
}

/// A greeting that never comes ends within `--timeout` as a server that hangs does: one line
/// naming the server and what it sent, the exit code of a hang, nothing saved.
fn greeting_row(addr: &str, needle: &str) {
    let tool = Tool::new();
    let mut cmd = greeted_from(&tool, addr);
    let (out, took, _) = captured(&tool, &mut killed_after(cmd.arg("get").arg("good.bin"), 60));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(TRANSFER), "exit code:\n{err}");
    assert_eq!(err.lines().count(), 1, "one line expected:\n{err}");
    let server = format!("FTP server {addr}:{}", tool.lab.port("HOSTILE_FTP_PORT"));
    assert!(err.contains(&server) && err.contains(needle), "{server:?} and {needle:?} not in:\n{err}");
    assert!(took < GET_BOUND, "took {took:?}, the bound is {GET_BOUND:?}");
    assert_not_saved(&tool, tool.work.path(), "good.bin");
}

#[test]
fn a_greeting_of_120_replies_forever() {
    // Each 120 comes well within --timeout: the bound is on the whole greeting, not on each reply.
    greeting_row("127.0.26.1", "kept sending \"120 Service ready in 1 minutes\"");
}

#[test]
fn a_greeting_dribbled_forever() {
    greeting_row("127.0.26.2", "left its reply unfinished for 2s: \"220-hostile-ftpd is still greeting you\"");
}

#[test]
fn a_resumed_download_whose_150_announces_2_to_the_64() {
    // The 150 gives what remains after REST; added to the offset, 2^64-1 overflowed (a panic in a
    // debug build). SIZE knows the size, so the download completes from the part file.
    let tool = Tool::new();
    let content = content(&tool);
    std::fs::write(tool.work.path().join(".bad.bin.ftpssh.part"), &content[..1000]).unwrap();
    let (out, took, _) = captured(&tool, hostile(&tool).args(["get", "huge-150/bad.bin"]));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_same(&std::fs::read(tool.work.path().join("bad.bin")).unwrap(), &content, "bad.bin resumed");
    assert!(took < GET_BOUND, "took {took:?}");
}

/// Terminal escapes the server sends: `ESC ] 0 ; owned BEL` (the window title), `ESC [ 2 J` (clear
/// the screen), CSI as the C1 control U+009B, and U+202E (right-to-left override).
const SHOWN_ESCAPES: &str = r"\x1b]0;owned\x07\x1b[2J\u{9b}31m\u{202e}";

#[test]
fn terminal_escapes_from_the_server_are_shown_escaped() {
    // Greeting, trace, errors, `ls` and the names mget prints: not one ESC or CSI byte reaches the
    // terminal, and each name is still shown, escaped.
    let tool = Tool::new();
    for verbose in [&[][..], &["-v"]] {
        let runs: [&[&str]; 3] = [&["ls"], &["get", "missing.bin"], &["mget", "*", "-d", "m", "--continue-on-error"]];
        for args in runs {
            let mut cmd = greeted_from(&tool, "127.0.26.3");
            cmd.args(["-u", "escapes", "--data-mode", "passive"]).args(verbose).args(args);
            let out = run(&mut killed_after(&cmd, 60));
            let all = [&out.stdout[..], &out.stderr].concat();
            let raw = all.iter().position(|&b| b == 0x1b || b == 0x9b);
            assert_eq!(raw, None, "{verbose:?} {args:?}: an ESC or CSI byte reached the terminal:\n{}", stderr(&out));
            let err = stderr(&out);
            if args[0] == "ls" {
                assert!(out.status.success(), "{err}");
                let listed = String::from_utf8_lossy(&out.stdout);
                assert!(listed.contains(&format!("esc{SHOWN_ESCAPES}.bin\r\n")), "{listed}");
            } else {
                // mget skips the name it cannot save under (and says so, escaped), then fails on
                // the other: the server's 550 quoted, escaped.
                let skipped = r#"ignoring the name "esc\u{1b}]0;owned\u{7}\u{1b}[2J\u{9b}31m\u{202e}.bin""#;
                assert!(args[0] == "get" || err.contains(skipped), "{err}");
                assert!(err.contains(&format!("550 {SHOWN_ESCAPES}")), "{err}");
            }
            if verbose.is_empty() {
                continue;
            }
            assert!(err.contains(&format!("220 hostile-ftpd ready {SHOWN_ESCAPES}")), "the greeting in -v:\n{err}");
        }
    }
}
