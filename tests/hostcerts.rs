//! `@cert-authority` judged by OpenSSH itself: two sshds of our own in the lab's server
//! namespace (the shared ones are left alone), each with a new host key and a host
//! certificate from a CA made here, one naming the server's address as a principal and one
//! naming another host. Every row's known_hosts files go to `ssh` and to the tool; they must
//! agree.
//!
//! Needs root and `scripts/lab up`; run under the lab lock with `--test-threads=1`.

mod common;

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::hostkeys::{judge_rows, keygen, Row};
use common::lab::{in_netns, Lab};
use common::tool::Tool;

/// How long our sshd may take to listen.
const SSHD_READY: Duration = Duration::from_secs(10);

/// An sshd of this test, stopped when dropped.
struct Sshd {
    child: Child,
    port: u16,
    /// `keytype base64` of its host key.
    host_key: String,
}

impl Sshd {
    /// An sshd in the server namespace whose host key `name` (made in `dir`) carries a
    /// certificate from `dir/ca` for `principals`.
    fn start(lab: &Lab, dir: &Path, name: &str, principals: &str) -> Sshd {
        let host_key = keygen(dir, name);
        let key = dir.join(name);
        let signed = Command::new("ssh-keygen")
            .args(["-q", "-s"])
            .arg(dir.join("ca"))
            .args(["-h", "-I", name, "-n", principals, "-V", "-5m:+1h"])
            .arg(key.with_extension("pub"))
            .status()
            .unwrap();
        assert!(signed.success(), "ssh-keygen -s");
        let config = dir.join(format!("{name}.sshd_config"));
        let text = format!(
            "HostKey {key}\nHostCertificate {key}-cert.pub\nPidFile none\nPubkeyAuthentication yes\n\
             AuthorizedKeysFile .ssh/authorized_keys\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             PermitRootLogin no\nUsePAM no\nUseDNS no\nAllowTcpForwarding yes\n",
            key = key.display()
        );
        std::fs::write(&config, text).unwrap();
        // A free port in the server namespace, for the moment.
        let port =
            in_netns(lab.var("SERVER_NS"), || TcpListener::bind("0.0.0.0:0").unwrap().local_addr().unwrap().port());
        let child = Command::new("ip")
            .args(["netns", "exec", lab.var("SERVER_NS"), "/usr/sbin/sshd", "-D", "-e", "-p", &port.to_string(), "-f"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join(format!("{name}.log"))).unwrap())
            .spawn()
            .unwrap();
        let sshd = Sshd { child, port, host_key };
        let addr = format!("{}:{port}", lab.var("SERVER_ADDR"));
        let started = Instant::now();
        let refused = || {
            let addr = addr.clone();
            in_netns(lab.var("CLIENT_NS"), move || TcpStream::connect(addr).is_err())
        };
        while refused() {
            let log = std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default();
            assert!(started.elapsed() < SSHD_READY, "our sshd on {port} did not listen:\n{log}");
            std::thread::sleep(Duration::from_millis(50));
        }
        sshd
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn openssh_and_the_tool_agree_on_host_certificates() {
    let tool = Tool::new();
    let lab = &tool.lab;
    let dir = tool.home.path();
    let ca = keygen(dir, "ca");
    let other_ca = keygen(dir, "other-ca");
    let server = lab.var("SERVER_ADDR");
    let good = Sshd::start(lab, dir, "good", server);
    let wrong = Sshd::start(lab, dir, "wrong", "gateway.example");
    let fill = |text: &str, sshd: &Sshd| {
        text.replace("{ca}", &ca)
            .replace("{other-ca}", &other_ca)
            .replace("{key}", &sshd.host_key)
            .replace("{port}", &sshd.port.to_string())
    };
    let row = |name, files: &[&str], sshd: &Sshd| Row {
        name,
        files: files.iter().map(|f| fill(f, sshd)).collect(),
        port: sshd.port,
        forwards: true,
    };
    let rows = [
        row("CA for *", &["@cert-authority * {ca}\n"], &good),
        row("CA for [host]:port", &["@cert-authority [10.250.0.2]:{port} {ca}\n"], &good),
        row("CA for the bare host (retry without port)", &["@cert-authority 10.250.0.2 {ca}\n"], &good),
        row("CA for another host", &["@cert-authority 10.250.0.3 {ca}\n"], &good),
        row("another CA", &["@cert-authority * {other-ca}\n"], &good),
        row("another CA, plain key known", &["@cert-authority * {other-ca}\n[10.250.0.2]:{port} {key}\n"], &good),
        row("CA revoked", &["@cert-authority * {ca}\n@revoked * {ca}\n"], &good),
        row("host key revoked", &["@cert-authority * {ca}\n@revoked * {key}\n"], &good),
        row("CA in the second file", &["# nothing\n", "@cert-authority 10.250.0.* {ca}\n"], &good),
        row("wrong principal", &["@cert-authority * {ca}\n"], &wrong),
        row("wrong principal, plain key known", &["@cert-authority * {ca}\n[10.250.0.2]:{port} {key}\n"], &wrong),
    ];
    let table = judge_rows(&tool, &rows);
    assert!(table.lines().nth(1).unwrap().contains("Accept"), "the certificate itself was accepted:\n{table}");
}
