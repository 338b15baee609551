//! Running `ftpssh-fullsecure` inside the lab's client namespace, as a new user would:
//! an empty HOME, the lab's key and known_hosts, the password in the environment.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tempfile::TempDir;

use super::capture::{assert_encrypted, file_samples, Capture};
use super::lab::Lab;

/// The lab's test files, as `scripts/lab up` makes them in REMOTE_HOME.
pub const FILES: [&str; 5] = ["small.bin", "big.bin", "empty.bin", "name with spaces.bin", "nön-äscii ✓.bin"];

/// A fresh user of the tool: its own HOME and working directory.
pub struct Tool {
    /// The running lab.
    pub lab: Lab,
    /// HOME for the tool (empty: no ~/.ssh, no ~/.netrc).
    pub home: TempDir,
    /// The working directory downloads land in.
    pub work: TempDir,
}

impl Tool {
    /// A new user; panics if the lab is not up.
    pub fn new() -> Tool {
        Tool { lab: Lab::get(), home: TempDir::new().unwrap(), work: TempDir::new().unwrap() }
    }

    /// The tool in the client namespace, SSH to the lab's sshd on `ssh_port`, FTP to
    /// 127.0.0.1:`ftp_port` as seen from the SSH server.
    pub fn cmd_via(&self, ssh_port: u16, ftp_port: u16) -> Command {
        self.cmd_with_key(ssh_port, ftp_port, &self.lab.path("SSH_KEY"))
    }

    /// The tool in the client namespace with only HOME, the working directory and a
    /// closed stdin set: no options, no password, no agent.
    pub fn bare(&self) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", self.lab.var("CLIENT_NS"), env!("CARGO_BIN_EXE_ftpssh-fullsecure")])
            .env("HOME", self.home.path())
            .env_remove("FTPSSH_PASSWORD")
            .env_remove("SSH_AUTH_SOCK")
            .env_remove("FTPSSH_SSH")
            .current_dir(self.work.path())
            .stdin(std::process::Stdio::null());
        cmd
    }

    /// [`Tool::cmd_via`] with another SSH key.
    pub fn cmd_with_key(&self, ssh_port: u16, ftp_port: u16, key: &Path) -> Command {
        self.command("127.0.0.1", ssh_port, ftp_port, key)
    }

    /// The tool in the client namespace, SSH to the lab's SSH server on `ssh_port`, FTP to
    /// `ftp_host:ftp_port` as seen from that server (another host, for the bastion).
    pub fn cmd_to(&self, ssh_port: u16, ftp_host: &str, ftp_port: u16) -> Command {
        self.command(ftp_host, ssh_port, ftp_port, &self.lab.path("SSH_KEY"))
    }

    fn command(&self, ftp_host: &str, ssh_port: u16, ftp_port: u16, key: &Path) -> Command {
        self.command_of(Path::new(env!("CARGO_BIN_EXE_ftpssh-fullsecure")), ftp_host, ssh_port, ftp_port, key)
    }

    /// [`Tool::cmd`] with another build of the tool: `bin` (an installed one).
    pub fn cmd_of(&self, bin: &Path, ftp_port: u16) -> Command {
        self.command_of(bin, "127.0.0.1", self.lab.port("SSH_PORT"), ftp_port, &self.lab.path("SSH_KEY"))
    }

    fn command_of(&self, bin: &Path, ftp_host: &str, ssh_port: u16, ftp_port: u16, key: &Path) -> Command {
        let lab = &self.lab;
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", lab.var("CLIENT_NS")])
            .arg(bin)
            .arg("-s")
            .arg(format!("{}@{}:{ssh_port}", lab.var("SSH_USER"), lab.var("SERVER_ADDR")))
            .arg("-f")
            .arg(format!("{ftp_host}:{ftp_port}"))
            .arg("-i")
            .arg(key)
            .arg("--known-hosts")
            .arg(lab.path("KNOWN_HOSTS"))
            .env("HOME", self.home.path())
            .env("FTPSSH_PASSWORD", lab.var("FTP_PASSWORD"))
            .env_remove("SSH_AUTH_SOCK")
            .env_remove("FTPSSH_SSH")
            .current_dir(self.work.path())
            .stdin(std::process::Stdio::null());
        cmd
    }

    /// [`Tool::cmd_via`] the lab's main sshd.
    pub fn cmd(&self, ftp_port: u16) -> Command {
        self.cmd_via(self.lab.port("SSH_PORT"), ftp_port)
    }

    /// A file of the lab's test user.
    pub fn remote_path(&self, name: &str) -> PathBuf {
        self.lab.path("REMOTE_HOME").join(name)
    }

    /// Names in the working directory (to prove nothing partial was left).
    pub fn work_entries(&self) -> Vec<String> {
        entries(self.work.path())
    }
}

/// File names in a directory, sorted.
pub fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

/// Run and return the output, printing it so a failing test shows what happened.
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("could not run the tool");
    // The program and its arguments only: the environment carries the FTP password.
    let shown: Vec<_> = std::iter::once(cmd.get_program()).chain(cmd.get_args()).collect();
    eprintln!("--- {shown:?}\nexit: {:?}\nstderr:\n{}", out.status.code(), String::from_utf8_lossy(&out.stderr));
    out
}

/// Stderr as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Assert two contents are equal without dumping megabytes on failure.
pub fn assert_same(got: &[u8], want: &[u8], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: size differs");
    assert!(got == want, "{what}: content differs");
}

/// Runs the tool with `-v` and checks the one rule that holds for every run: it never sent
/// PORT or EPRT (either would make the server send the data outside SSH).
pub fn traced(tool: &Tool, ftp_port: u16, args: &[&str]) -> Output {
    traced_cmd(tool.cmd(ftp_port), args)
}

/// [`traced`] for a command made otherwise (another SSH server, another FTP host).
pub fn traced_cmd(mut cmd: Command, args: &[&str]) -> Output {
    let out = run(cmd.arg("-v").args(args));
    let err = stderr(&out);
    assert!(err.contains("---> USER"), "{args:?}: -v shows no control conversation:\n{err}");
    assert!(err.contains("PASS ****"), "{args:?}: the trace hides the password:\n{err}");
    for bad in ["---> PORT", "---> EPRT"] {
        assert!(!err.contains(bad), "{args:?} sent {bad}:\n{err}");
    }
    out
}

/// [`traced`] under a capture; the run must succeed, and neither the password nor a sample of
/// `content` may cross the veth, only the SSH port is spoken to, and at least
/// `content.len()` bytes flowed. Returns the run's output.
pub fn captured(tool: &Tool, ftp_port: u16, args: &[&str], content: &[u8]) -> Output {
    captured_cmd(tool, tool.lab.port("SSH_PORT"), tool.cmd(ftp_port), args, content)
}

/// [`captured`] for a command made otherwise, speaking SSH to `ssh_port`.
pub fn captured_cmd(tool: &Tool, ssh_port: u16, cmd: Command, args: &[&str], content: &[u8]) -> Output {
    let lab = &tool.lab;
    let capture = Capture::start(lab.var("CLIENT_NS"), lab.var("CLIENT_IF"));
    let out = traced_cmd(cmd, args);
    let captured = capture.stop();
    let err = stderr(&out);
    assert!(out.status.success(), "{args:?} failed: {err}");
    let samples = if content.is_empty() { vec![] } else { file_samples(content) };
    let mut secrets = vec![(lab.var("FTP_PASSWORD").as_bytes(), "the FTP password")];
    secrets.extend(samples.iter().map(|s| (&s[..], "the file's content")));
    assert_encrypted(&captured, ssh_port, &secrets, content.len() as u64);
    assert!(!err.contains(lab.var("FTP_PASSWORD")), "the password appears in the tool's output");
    out
}

/// The default-port path: a reverse forward, a data connection through it, no EPSV/PASV.
/// Failures quote the lines that say why first: CI shows only part of a long trace.
pub fn assert_default_port(err: &str) {
    let why: Vec<&str> =
        err.lines().filter(|l| ["forward", "passive", "warning", "error"].iter().any(|w| l.contains(w))).collect();
    let why = why.join("\n");
    assert!(err.contains("reverse forward: sshd listens on"), "no reverse forward:\n{why}\n--- whole trace:\n{err}");
    assert!(err.contains("data connection from"), "no forwarded data connection:\n{why}\n--- whole trace:\n{err}");
    assert!(
        !err.contains("---> EPSV") && !err.contains("---> PASV"),
        "passive was used:\n{why}\n--- whole trace:\n{err}"
    );
}

/// The lab's `many/fNNN.txt` files numbered `numbers` arrived in local `dir`, byte-identical.
/// Returns their total size.
pub fn assert_many(tool: &Tool, dir: &str, numbers: std::ops::RangeInclusive<u32>) -> u64 {
    let mut total = 0;
    for i in numbers {
        let name = format!("f{i:03}.txt");
        let want = std::fs::read(tool.remote_path("many").join(&name)).unwrap();
        assert_same(&std::fs::read(tool.work.path().join(dir).join(&name)).unwrap(), &want, &name);
        total += want.len() as u64;
    }
    total
}

/// Removes a server-side file when dropped, even when the test fails.
pub struct RemoveOnDrop(pub PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `get` every test file with `extra` options; `check` judges each -v trace.
pub fn get_every_file(port_key: &str, extra: &[&str], check: fn(&str)) {
    let tool = Tool::new();
    let port = tool.lab.port(port_key);
    for name in FILES {
        let want = std::fs::read(tool.remote_path(name)).unwrap();
        let args: Vec<&str> = extra.iter().copied().chain(["get", name]).collect();
        check(&stderr(&captured(&tool, port, &args, &want)));
        assert_same(&std::fs::read(tool.work.path().join(name)).unwrap(), &want, name);
    }
    assert_eq!(tool.work_entries().len(), FILES.len(), "only the downloaded files, no part files");
}

/// `put` every test file to `upload/`, compare the server's copy, `get` it back and compare.
pub fn put_and_get_back(port_key: &str, check: fn(&str)) {
    let tool = Tool::new();
    let port = tool.lab.port(port_key);
    for name in FILES {
        let source = tool.remote_path(name);
        let want = std::fs::read(&source).unwrap();
        let remote = format!("upload/test-{}-{port_key}-{name}", std::process::id());
        let _cleanup = RemoveOnDrop(tool.remote_path(&remote));
        let out = captured(&tool, port, &["put", source.to_str().unwrap(), &remote], &want);
        check(&stderr(&out));
        // Permissions may differ between servers: content only.
        assert_same(&std::fs::read(tool.remote_path(&remote)).unwrap(), &want, &format!("server copy of {name}"));
        let back = tool.work.path().join(format!("back-{name}"));
        let out = captured(&tool, port, &["get", &remote, back.to_str().unwrap()], &want);
        check(&stderr(&out));
        assert_same(&std::fs::read(&back).unwrap(), &want, &format!("{name} fetched back"));
    }
}
