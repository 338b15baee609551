//! The tool as a user of jump hosts, passwords, passphrases and certificates runs it: no
//! terminal (a session of its own), an `SSH_ASKPASS` program that answers by the prompt and
//! logs every prompt it was shown, and captures that prove only SSH crossed the wires.
#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use super::capture::{assert_encrypted, file_samples, Capture};
use super::tool::{assert_default_port, assert_same, stderr, traced_cmd, RemoveOnDrop, Tool};

/// An askpass program: the answer for the first pattern found in the prompt (shell `case`
/// patterns), the prompts it saw in its log.
pub struct Askpass {
    pub program: PathBuf,
    pub log: PathBuf,
}

impl Askpass {
    /// Answers `(pattern, answer)`; a prompt matching none gets an empty answer (and fails
    /// the authentication, as a wrong answer would).
    pub fn new(tool: &Tool, answers: &[(&str, &str)]) -> Askpass {
        let dir = tool.home.path();
        let (program, log) = (dir.join("askpass"), dir.join("askpass.log"));
        let _ = std::fs::remove_file(&log); // a new program, a new log
        let mut script = format!("#!/bin/sh\nprintf '%s\\n--\\n' \"$1\" >>'{}'\ncase \"$1\" in\n", log.display());
        for (pattern, answer) in answers {
            script.push_str(&format!("  {pattern}) printf '%s\\n' '{answer}' ;;\n"));
        }
        script.push_str("  *) echo ;;\nesac\n");
        std::fs::write(&program, script).unwrap();
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o700)).unwrap();
        Askpass { program, log }
    }

    /// The prompts shown so far, in order.
    pub fn prompts(&self) -> Vec<String> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.split("\n--\n").filter(|p| !p.is_empty()).map(str::to_string).collect()
    }
}

/// The tool with no controlling terminal (`setsid -w`), in the client namespace, an empty
/// HOME, the FTP password in the environment, the lab's known_hosts, SSH to `ssh` and FTP
/// to `ftp`; no agent, no askpass unless given.
pub fn cmd(tool: &Tool, ssh: &str, ftp: &str, askpass: Option<&Askpass>) -> Command {
    let lab = &tool.lab;
    let mut cmd = Command::new("setsid");
    cmd.args(["-w", "ip", "netns", "exec", lab.var("CLIENT_NS"), env!("CARGO_BIN_EXE_ftpssh-fullsecure")])
        .args(["-s", ssh, "-f", ftp, "--known-hosts"])
        .arg(lab.path("KNOWN_HOSTS"))
        .env("HOME", tool.home.path())
        .env("FTPSSH_PASSWORD", lab.var("FTP_PASSWORD"))
        .env_remove("SSH_AUTH_SOCK")
        .env_remove("FTPSSH_SSH")
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .env_remove("SSH_ASKPASS")
        .env_remove("SSH_ASKPASS_REQUIRE")
        .current_dir(tool.work.path())
        .stdin(std::process::Stdio::null());
    if let Some(a) = askpass {
        cmd.env("SSH_ASKPASS", &a.program).env("SSH_ASKPASS_REQUIRE", "force");
    }
    cmd
}

/// `user@addr:port` of the lab's SSH user.
pub fn at(tool: &Tool, addr_key: &str, port: u16) -> String {
    format!("{}@{}:{port}", tool.lab.var("SSH_USER"), tool.lab.var(addr_key))
}

/// Runs `make()`'s command with `args` under a capture of every wire in `wires`
/// (`(netns key, interface key, the SSH port its flows must use)`): the run succeeds, only
/// SSH crossed each wire, and neither the password nor the content did.
pub fn captured(
    tool: &Tool,
    make: &dyn Fn() -> Command,
    args: &[&str],
    content: &[u8],
    wires: &[(&str, &str, u16)],
) -> Output {
    let lab = &tool.lab;
    let first = Capture::start(lab.var(wires[0].0), lab.var(wires[0].1));
    let others: Vec<Capture> =
        wires[1..].iter().map(|(ns, iface, _)| first.also(lab.var(ns), lab.var(iface))).collect();
    let captures: Vec<Capture> = std::iter::once(first).chain(others).collect();
    let out = traced_cmd(make(), args);
    let seen: Vec<_> = captures.into_iter().map(Capture::stop).collect();
    let err = stderr(&out);
    assert!(out.status.success(), "{args:?} failed: {err}");
    let samples = if content.is_empty() { vec![] } else { file_samples(content) };
    let mut secrets = vec![(lab.var("FTP_PASSWORD").as_bytes(), "the FTP (and SSH) password")];
    secrets.extend(samples.iter().map(|s| (&s[..], "the file's content")));
    for (captured, (_, iface, port)) in seen.iter().zip(wires) {
        eprintln!("{iface}: {}", captured.summary());
        assert_encrypted(captured, *port, &secrets, content.len() as u64);
    }
    assert!(!err.contains(lab.var("FTP_PASSWORD")), "the password appears in the tool's output");
    out
}

/// get, put and mget through `make()`, each byte-identical and under the captures, each by
/// the default port (the reverse forward on the last SSH server, not passive).
pub fn get_put_mget(tool: &Tool, make: &dyn Fn() -> Command, wires: &[(&str, &str, u16)], tag: &str) {
    let want = std::fs::read(tool.remote_path("small.bin")).unwrap();
    let out = captured(tool, make, &["get", "small.bin"], &want, wires);
    assert_default_port(&stderr(&out));
    assert_same(&std::fs::read(tool.work.path().join("small.bin")).unwrap(), &want, "small.bin");

    let remote = format!("upload/sshauth-{tag}-{}.bin", std::process::id());
    let _cleanup = RemoveOnDrop(tool.remote_path(&remote));
    let source = tool.remote_path("name with spaces.bin");
    let want = std::fs::read(&source).unwrap();
    let out = captured(tool, make, &["put", source.to_str().unwrap(), &remote], &want, wires);
    assert_default_port(&stderr(&out));
    assert_same(&std::fs::read(tool.remote_path(&remote)).unwrap(), &want, "the uploaded copy");

    let dir = format!("mget-{tag}");
    let out = captured(tool, make, &["mget", "many/f00*.txt", "-d", &dir], b"", wires);
    assert_default_port(&stderr(&out));
    super::tool::assert_many(tool, &dir, 1..=9);
}

/// Runs and returns the output and how long it took.
pub fn timed(mut cmd: Command) -> (Output, Duration) {
    let started = Instant::now();
    let out = super::tool::run(&mut cmd);
    (out, started.elapsed())
}
