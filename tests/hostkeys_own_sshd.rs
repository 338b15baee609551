//! What needs an sshd of our own, judged by OpenSSH itself: host certificates
//! (`@cert-authority`) and a server with several host keys. The sshds run in the lab's server
//! namespace beside the shared ones, which are left alone, and stop with the test. Every row's
//! known_hosts files go to `ssh` and to the tool; they must agree.
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
    /// `keytype base64` of its host keys, ed25519 first.
    host_keys: Vec<String>,
}

impl Sshd {
    /// An sshd in the server namespace with an ed25519 host key `name` (made in `dir`) and
    /// one of each `more` type; with `principals`, the ed25519 key carries a certificate
    /// from `dir/ca` for them.
    fn start(lab: &Lab, dir: &Path, name: &str, principals: Option<&str>, more: &[&str]) -> Sshd {
        let mut host_keys = vec![keygen(dir, name)];
        let key = dir.join(name);
        let mut config = format!("HostKey {}\n", key.display());
        for kind in more {
            let extra = dir.join(format!("{name}-{kind}"));
            let made = Command::new("ssh-keygen").args(["-q", "-t", kind, "-N", "", "-f"]).arg(&extra).status();
            assert!(made.unwrap().success(), "ssh-keygen -t {kind}");
            let public = std::fs::read_to_string(extra.with_extension("pub")).unwrap();
            host_keys.push(public.split_whitespace().take(2).collect::<Vec<_>>().join(" "));
            config.push_str(&format!("HostKey {}\n", extra.display()));
        }
        if let Some(principals) = principals {
            let signed = Command::new("ssh-keygen")
                .args(["-q", "-s"])
                .arg(dir.join("ca"))
                .args(["-h", "-I", name, "-n", principals, "-V", "-5m:+1h"])
                .arg(key.with_extension("pub"))
                .status()
                .unwrap();
            assert!(signed.success(), "ssh-keygen -s");
            config.push_str(&format!("HostCertificate {}-cert.pub\n", key.display()));
        }
        config.push_str(
            "PidFile none\nPubkeyAuthentication yes\nAuthorizedKeysFile .ssh/authorized_keys\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin no\nUsePAM no\n\
             UseDNS no\nAllowTcpForwarding yes\n",
        );
        let config_file = dir.join(format!("{name}.sshd_config"));
        std::fs::write(&config_file, config).unwrap();
        // A free port in the server namespace, for the moment.
        let port =
            in_netns(lab.var("SERVER_NS"), || TcpListener::bind("0.0.0.0:0").unwrap().local_addr().unwrap().port());
        let child = Command::new("ip")
            .args(["netns", "exec", lab.var("SERVER_NS"), "/usr/sbin/sshd", "-D", "-e", "-p", &port.to_string(), "-f"])
            .arg(&config_file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join(format!("{name}.log"))).unwrap())
            .spawn()
            .unwrap();
        let sshd = Sshd { child, port, host_keys };
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
    let good = Sshd::start(lab, dir, "good", Some(server), &[]);
    let wrong = Sshd::start(lab, dir, "wrong", Some("gateway.example"), &[]);
    let fill = |text: &str, sshd: &Sshd| {
        text.replace("{ca}", &ca)
            .replace("{other-ca}", &other_ca)
            .replace("{key}", &sshd.host_keys[0])
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

/// OpenSSH asks first for the kinds of key it knows for the host (`order_hostkeyalgs`): with
/// only the ECDSA or RSA key of a server that also has an ed25519 key in known_hosts, it
/// connects; a client asking for ed25519 first would see "a changed key".
#[test]
fn openssh_and_the_tool_agree_on_a_server_with_several_host_keys() {
    let tool = Tool::new();
    let lab = &tool.lab;
    let dir = tool.home.path();
    let sshd = Sshd::start(lab, dir, "several", None, &["ecdsa", "rsa"]);
    let stranger = keygen(dir, "stranger");
    let [ed25519, ecdsa, rsa] = [0, 1, 2].map(|i| format!("[10.250.0.2]:{} {}\n", sshd.port, sshd.host_keys[i]));
    let row = |name, files: Vec<String>| Row { name, files, port: sshd.port, forwards: true };
    let rows = [
        row("ed25519 known", vec![ed25519.clone()]),
        row("only the ECDSA key known", vec![ecdsa.clone()]),
        row("only the RSA key known", vec![rsa.clone()]),
        row("ECDSA in one file, RSA in another", vec![ecdsa.clone(), rsa.clone()]),
        row(
            "a stranger's ed25519 key and the ECDSA key",
            vec![format!("[10.250.0.2]:{} {stranger}\n{ecdsa}", sshd.port)],
        ),
        row("the ECDSA key, revoked", vec![format!("{ecdsa}@revoked * {}\n", sshd.host_keys[1])]),
        row("nothing known", vec![String::new()]),
    ];
    judge_rows(&tool, &rows);
}
