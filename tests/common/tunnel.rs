//! `ftpssh-fullsecure tunnel` in the lab's client namespace, and outside FTP clients
//! (Debian's lftp, curl, inetutils ftp, tnftp) driven through it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use std::os::unix::fs::PermissionsExt;

use super::capture::{assert_encrypted, file_samples, Capture};
use super::tool::Tool;

/// How long the tunnel has to say where it listens.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A running tunnel; stopped with SIGINT when dropped (or by [`Tunnel::stop`]).
pub struct Tunnel {
    child: Option<Child>,
    /// The loopback port clients connect to.
    pub port: u16,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Tunnel {
    /// `tunnel --listen 127.0.0.1:0 -v` to FTP `ftp_host:ftp_port` through the lab's sshd.
    pub fn start(tool: &Tool, ftp_host: &str, ftp_port: u16, extra: &[&str]) -> Tunnel {
        let mut cmd = tool.cmd_to(tool.lab.port("SSH_PORT"), ftp_host, ftp_port);
        cmd.env_remove("FTPSSH_PASSWORD").args(["-v", "tunnel", "--listen", "127.0.0.1:0"]).args(extra);
        cmd.stderr(Stdio::piped()).stdout(Stdio::null());
        let mut child = cmd.spawn().expect("could not start the tunnel");
        let (tx, lines) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut tunnel = Tunnel { child: Some(child), port: 0, lines, seen: Vec::new() };
        loop {
            let line = tunnel
                .lines
                .recv_timeout(START_TIMEOUT)
                .unwrap_or_else(|_| panic!("the tunnel did not say where it listens:\n{}", tunnel.seen.join("\n")));
            let port = line.split("tunnel on 127.0.0.1:").nth(1).and_then(|r| r.split(' ').next()?.parse().ok());
            tunnel.seen.push(line);
            if let Some(port) = port {
                tunnel.port = port;
                return tunnel;
            }
        }
    }

    /// Everything the tunnel said on stderr so far (its -v trace).
    pub fn trace(&mut self) -> String {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
        self.seen.join("\n")
    }

    /// SIGINT, and its whole trace once it has exited; it must exit 130.
    pub fn stop(mut self) -> String {
        let mut child = self.child.take().unwrap();
        Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
        let status = child.wait().unwrap();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(line);
        }
        let trace = self.seen.join("\n");
        assert_eq!(status.code(), Some(130), "the tunnel did not end cleanly on SIGINT:\n{trace}");
        trace
    }
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `program args` in the client namespace, in `dir`, the FTP password in `FTP_PASSWORD`;
/// its output printed (for a failing test) and returned.
pub fn client(tool: &Tool, dir: &Path, program: &str, args: &[&str]) -> Output {
    let mut cmd = Command::new("timeout");
    cmd.args(["120", "ip", "netns", "exec", tool.lab.var("CLIENT_NS"), program]).args(args);
    cmd.current_dir(dir).env("FTP_PASSWORD", tool.lab.var("FTP_PASSWORD")).env("HOME", tool.home.path());
    let out = cmd.stdin(Stdio::null()).output().expect("could not run the client");
    printed(tool, program, args, out)
}

/// [`client`] with `script` on its standard input (the classic ftp clients read commands so).
pub fn client_script(tool: &Tool, dir: &Path, program: &str, args: &[&str], script: &str) -> Output {
    let mut cmd = Command::new("timeout");
    cmd.args(["300", "ip", "netns", "exec", tool.lab.var("CLIENT_NS"), program]).args(args);
    cmd.current_dir(dir)
        .env("HOME", tool.home.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("could not run the client");
    use std::io::Write;
    child.stdin.take().unwrap().write_all(script.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    printed(tool, program, args, out)
}

/// A client's run, printed for a failing test (the password masked), and returned.
fn printed(tool: &Tool, program: &str, args: &[&str], out: Output) -> Output {
    let text = |b: &[u8]| String::from_utf8_lossy(b).replace(tool.lab.var("FTP_PASSWORD"), "****");
    eprintln!(
        "--- {program} {args:?}\nexit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    );
    out
}

/// `~/.netrc` for the clients: the tunnel's loopback address, the lab's FTP login.
pub fn netrc(tool: &Tool) {
    let path = tool.home.path().join(".netrc");
    let (user, password) = (tool.lab.var("FTP_USER"), tool.lab.var("FTP_PASSWORD"));
    std::fs::write(&path, format!("machine 127.0.0.1 login {user} password {password}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// Runs `work` (given the tunnel's port) with a tunnel to `ftp_host:ftp_port` under the capture; checks the wire
/// (only SSH, none of `contents` nor the password in clear, at least their bytes carried)
/// and returns the tunnel's -v trace.
pub fn captured(tool: &Tool, ftp_host: &str, ftp_port: u16, contents: &[&[u8]], work: impl FnOnce(u16)) -> String {
    captured_with(tool, ftp_host, ftp_port, &[], contents, work)
}

/// [`captured`], the tunnel started with `extra` arguments too.
pub fn captured_with(
    tool: &Tool,
    ftp_host: &str,
    ftp_port: u16,
    extra: &[&str],
    contents: &[&[u8]],
    work: impl FnOnce(u16),
) -> String {
    netrc(tool);
    let lab = &tool.lab;
    let capture = Capture::start(lab.var("CLIENT_NS"), lab.var("CLIENT_IF"));
    let tunnel = Tunnel::start(tool, ftp_host, ftp_port, extra);
    work(tunnel.port);
    let trace = tunnel.stop();
    let captured = capture.stop();
    let samples: Vec<Vec<u8>> = contents.iter().filter(|c| !c.is_empty()).flat_map(|c| file_samples(c)).collect();
    let mut secrets = vec![(lab.var("FTP_PASSWORD").as_bytes(), "the FTP password")];
    secrets.extend(samples.iter().map(|s| (&s[..], "a file's content")));
    let total = contents.iter().map(|c| c.len() as u64).sum();
    assert_encrypted(&captured, lab.port("SSH_PORT"), &secrets, total);
    assert!(!trace.contains(lab.var("FTP_PASSWORD")), "the password in the tunnel's trace");
    assert!(trace.contains("PASS ****"), "the trace hides the password:\n{trace}");
    for bad in ["---> PORT", "---> EPRT"] {
        assert!(!trace.contains(bad), "the tunnel sent {bad} to the server:\n{trace}");
    }
    trace
}

/// A file's bytes (a clear panic when missing).
pub fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The client succeeded.
pub fn ok(out: &std::process::Output, what: &str) {
    assert!(out.status.success(), "{what} failed: {}", String::from_utf8_lossy(&out.stderr));
}
