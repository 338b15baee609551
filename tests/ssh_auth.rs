//! Logging in as SSH users do outside an agent: a key with a passphrase, a password, a
//! keyboard-interactive challenge through PAM (the password, then a code), a certificate
//! from a trusted user CA; OpenSSH's sshd and, where it has the method, dropbear. Answers
//! come from `SSH_ASKPASS` (no terminal: the tool runs in a session of its own); a wrong
//! one gives exit 3 and says so; `BatchMode yes` fails at once and asks nothing. Every
//! transfer is byte-identical and captured: only SSH crosses the client's wire.
//!
//! Needs root and `scripts/lab up`; run with `--test-threads=1`.

mod common;

use std::time::Duration;

use common::sshauth::{at, captured, cmd, get_put_mget, timed, Askpass};
use common::tool::{stderr, Tool};

/// How long a refusal that asks nothing may take (the SSH handshake only).
const AT_ONCE: Duration = Duration::from_secs(10);

fn ftp(tool: &Tool) -> String {
    format!("127.0.0.1:{}", tool.lab.port("PROFTPD_PORT"))
}

fn client_wire(port: u16) -> Vec<(&'static str, &'static str, u16)> {
    vec![("CLIENT_NS", "CLIENT_IF", port)]
}

#[test]
fn password_from_askpass_openssh() {
    password_only("PASSWORD_SSH_PORT", "openssh-password");
}

#[test]
fn password_from_askpass_dropbear() {
    password_only("DROPBEAR_PASSWORD_PORT", "dropbear-password");
}

fn password_only(port_key: &str, tag: &str) {
    let tool = Tool::new();
    let port = tool.lab.port(port_key);
    let askpass = Askpass::new(&tool, &[("*password*", tool.lab.var("FTP_PASSWORD"))]);
    let ssh = at(&tool, "SERVER_ADDR", port);
    let make = || cmd(&tool, &ssh, &ftp(&tool), Some(&askpass));
    get_put_mget(&tool, &make, &client_wire(port), tag);
    let prompts = askpass.prompts();
    // Once a run: get, put, and mget (whose listing and transfer sessions share the answer).
    assert_eq!(prompts.len(), 3, "{prompts:?}");
    // Three sessions at once wait for one question.
    let dir = format!("mget-j3-{tag}");
    captured(&tool, &|| make(), &["mget", "-j", "3", "many/f01*.txt", "-d", &dir], b"", &client_wire(port));
    common::tool::assert_many(&tool, &dir, 10..=19);
    let prompts = askpass.prompts();
    assert_eq!(prompts.len(), 4, "{prompts:?}");
    let want = format!("{}@{}'s password: ", tool.lab.var("SSH_USER"), tool.lab.var("SERVER_ADDR"));
    assert!(prompts.iter().all(|p| *p == want), "{prompts:?}");
}

/// A key at hand (no passphrase) is tried before anything is asked, and its refusal says what
/// the server offers: where sshd takes passwords only, the password is asked, and the passphrase
/// of the next key given never is (the server offers no keys).
#[test]
fn a_key_refused_first_then_the_password_and_no_passphrase_asked() {
    let tool = Tool::new();
    let lab = &tool.lab;
    let answers = [("*password*", lab.var("FTP_PASSWORD")), ("*passphrase*", lab.var("KEY_PASSPHRASE"))];
    let askpass = Askpass::new(&tool, &answers);
    let port = lab.port("PASSWORD_SSH_PORT");
    let mut c = cmd(&tool, &at(&tool, "SERVER_ADDR", port), &ftp(&tool), Some(&askpass));
    c.arg("-i").arg(lab.path("SSH_KEY")).arg("-i").arg(lab.path("ENCRYPTED_KEY"));
    let want = std::fs::read(tool.remote_path("empty.bin")).unwrap();
    captured(&tool, &|| c_clone(&c), &["get", "empty.bin"], &want, &client_wire(port));
    let prompts = askpass.prompts();
    let password = format!("{}@{}'s password: ", lab.var("SSH_USER"), lab.var("SERVER_ADDR"));
    assert_eq!(prompts, vec![password], "{prompts:?}");
}

#[test]
fn keyboard_interactive_two_questions_through_pam() {
    let tool = Tool::new();
    let lab = &tool.lab;
    let port = lab.port("KBDINT_SSH_PORT");
    let askpass = Askpass::new(&tool, &[("*code*", lab.var("KBDINT_TOKEN")), ("*assword*", lab.var("FTP_PASSWORD"))]);
    let ssh = at(&tool, "SERVER_ADDR", port);
    let make = || cmd(&tool, &ssh, &ftp(&tool), Some(&askpass));
    get_put_mget(&tool, &make, &client_wire(port), "kbdint");
    let prompts = askpass.prompts();
    assert_eq!(prompts.len(), 6, "two questions a run, three runs: {prompts:?}");
    // The server's text, as it sent it: PAM's message before its first prompt.
    assert!(
        prompts[0].contains("Two questions: your password, then the lab token.") && prompts[0].ends_with("Password: "),
        "{prompts:?}"
    );
    assert_eq!(prompts[1], "Verification code: ");
    // The fullest trace shows neither answer.
    let want = std::fs::read(tool.remote_path("empty.bin")).unwrap();
    let out = captured(&tool, &make, &["-vvv", "get", "empty.bin"], &want, &client_wire(port));
    let err = stderr(&out);
    assert!(
        !err.contains(lab.var("KBDINT_TOKEN")) && !err.contains(lab.var("FTP_PASSWORD")),
        "an answer is in the trace"
    );
}

#[test]
fn wrong_answers_are_asked_again_then_exit_3() {
    let tool = Tool::new();
    let lab = &tool.lab;
    // Password: three wrong tries, on OpenSSH and on dropbear.
    for port_key in ["PASSWORD_SSH_PORT", "DROPBEAR_PASSWORD_PORT"] {
        let askpass = Askpass::new(&tool, &[("*password*", "not-the-password")]);
        let mut c = cmd(&tool, &at(&tool, "SERVER_ADDR", lab.port(port_key)), &ftp(&tool), Some(&askpass));
        let (out, _) = timed({
            c.args(["get", "small.bin"]);
            c
        });
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(3), "{port_key}: {err}");
        assert!(err.contains("password: refused 3 times"), "{port_key}: {err}");
        assert!(!err.contains("not-the-password"), "{err}");
        assert_eq!(askpass.prompts().len(), 3, "{port_key}");
    }
    // Keyboard-interactive: a wrong code, three rounds.
    let askpass = Askpass::new(&tool, &[("*code*", "000000"), ("*assword*", lab.var("FTP_PASSWORD"))]);
    let mut c = cmd(&tool, &at(&tool, "SERVER_ADDR", lab.port("KBDINT_SSH_PORT")), &ftp(&tool), Some(&askpass));
    let (out, _) = timed({
        c.args(["get", "small.bin"]);
        c
    });
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("keyboard-interactive: refused 3 times"), "{err}");
    // Passphrase: three wrong tries, then no other way in.
    let askpass = Askpass::new(&tool, &[("*passphrase*", "not-the-passphrase")]);
    let mut c = cmd(&tool, &at(&tool, "SERVER_ADDR", lab.port("SSH_PORT")), &ftp(&tool), Some(&askpass));
    let (out, _) = timed({
        c.arg("-i").arg(lab.path("ENCRYPTED_KEY")).args(["get", "small.bin"]);
        c
    });
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("wrong passphrase (3 tries)"), "{err}");
    assert!(!err.contains("not-the-passphrase"), "{err}");
    assert_eq!(askpass.prompts().len(), 3);
    assert!(askpass.prompts()[0].starts_with("Enter passphrase for key '"), "{:?}", askpass.prompts());
    assert!(!tool.work.path().join("small.bin").exists());
}

#[test]
fn batch_mode_fails_at_once_and_asks_nothing() {
    let tool = Tool::new();
    let lab = &tool.lab;
    let askpass = Askpass::new(&tool, &[("*", lab.var("FTP_PASSWORD"))]);
    for (port_key, key, option) in [
        ("PASSWORD_SSH_PORT", None, "BatchMode=yes"),
        ("KBDINT_SSH_PORT", None, "batchmode yes"),
        ("DROPBEAR_PASSWORD_PORT", None, "BatchMode=yes"),
        ("SSH_PORT", Some(lab.path("ENCRYPTED_KEY")), "BatchMode yes"),
    ] {
        let mut c = cmd(&tool, &at(&tool, "SERVER_ADDR", lab.port(port_key)), &ftp(&tool), Some(&askpass));
        if let Some(key) = key {
            c.arg("-i").arg(key);
        }
        c.args(["-o", option, "get", "small.bin"]);
        let (out, took) = timed(c);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(3), "{port_key}: {err}");
        assert!(err.contains("BatchMode is on"), "{port_key}: {err}");
        assert!(took < AT_ONCE, "{port_key}: took {took:?}");
    }
    assert_eq!(askpass.prompts(), Vec::<String>::new(), "BatchMode asked something");
    // In ssh_config too.
    std::fs::create_dir_all(tool.home.path().join(".ssh")).unwrap();
    std::fs::write(tool.home.path().join(".ssh/config"), "Host *\n  BatchMode yes\n").unwrap();
    let mut c = cmd(&tool, &at(&tool, "SERVER_ADDR", lab.port("PASSWORD_SSH_PORT")), &ftp(&tool), Some(&askpass));
    let (out, _) = timed({
        c.args(["get", "small.bin"]);
        c
    });
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("BatchMode is on"));
    assert!(askpass.prompts().is_empty());
}

/// With no terminal and no askpass program there is nobody to ask: a clear error, exit 3.
#[test]
fn no_terminal_and_no_askpass_says_so() {
    let tool = Tool::new();
    let lab = &tool.lab;
    let mut c = cmd(&tool, &at(&tool, "SERVER_ADDR", lab.port("PASSWORD_SSH_PORT")), &ftp(&tool), None);
    let (out, took) = timed({
        c.args(["get", "small.bin"]);
        c
    });
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("no terminal") && err.contains("SSH_ASKPASS"), "{err}");
    assert!(took < AT_ONCE);
}

#[test]
fn encrypted_key_passphrase_from_askpass_openssh_and_dropbear() {
    let tool = Tool::new();
    let lab = &tool.lab;
    let askpass = Askpass::new(&tool, &[("*passphrase*", lab.var("KEY_PASSPHRASE"))]);
    for (port_key, tag) in [("SSH_PORT", "enc-openssh"), ("DROPBEAR_PORT", "enc-dropbear")] {
        let port = lab.port(port_key);
        let ssh = at(&tool, "SERVER_ADDR", port);
        let key = lab.path("ENCRYPTED_KEY");
        let make = || {
            let mut c = cmd(&tool, &ssh, &ftp(&tool), Some(&askpass));
            c.arg("-i").arg(&key);
            c
        };
        get_put_mget(&tool, &make, &client_wire(port), tag);
    }
    // Without DISPLAY and SSH_ASKPASS_REQUIRE, OpenSSH's rule: DISPLAY set, no terminal.
    let port = lab.port("SSH_PORT");
    let mut c = cmd(&tool, &at(&tool, "SERVER_ADDR", port), &ftp(&tool), None);
    c.env("SSH_ASKPASS", &askpass.program).env("DISPLAY", ":0").arg("-i").arg(lab.path("ENCRYPTED_KEY"));
    let want = std::fs::read(tool.remote_path("empty.bin")).unwrap();
    captured(&tool, &|| c_clone(&c), &["get", "empty.bin"], &want, &client_wire(port));
}

fn c_clone(c: &std::process::Command) -> std::process::Command {
    let mut n = std::process::Command::new(c.get_program());
    n.args(c.get_args());
    for (k, v) in c.get_envs() {
        match v {
            Some(v) => n.env(k, v),
            None => n.env_remove(k),
        };
    }
    if let Some(dir) = c.get_current_dir() {
        n.current_dir(dir);
    }
    n.stdin(std::process::Stdio::null());
    n
}

/// A key whose certificate the sshd's TrustedUserCAKeys signed, found beside it
/// (`KEY-cert.pub`) or named by CertificateFile; the key alone is refused there.
#[test]
fn user_certificate_from_a_trusted_ca() {
    let tool = Tool::new();
    let lab = &tool.lab;
    let port = lab.port("CA_SSH_PORT");
    let ssh = at(&tool, "SERVER_ADDR", port);
    let key = lab.path("CERT_KEY");
    let make = || {
        let mut c = cmd(&tool, &ssh, &ftp(&tool), None);
        c.arg("-i").arg(&key);
        c
    };
    get_put_mget(&tool, &make, &client_wire(port), "cert");
    // The key copied alone: refused; with -o CertificateFile: in.
    let alone = tool.home.path().join("id_alone");
    std::fs::copy(&key, &alone).unwrap();
    std::fs::set_permissions(&alone, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let mut c = cmd(&tool, &ssh, &ftp(&tool), None);
    let (out, _) = timed({
        c.arg("-i").arg(&alone).args(["get", "small.bin", "alone.bin"]);
        c
    });
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let cert = format!("CertificateFile={}-cert.pub", key.display());
    let want = std::fs::read(tool.remote_path("empty.bin")).unwrap();
    let make = || {
        let mut c = cmd(&tool, &ssh, &ftp(&tool), None);
        c.arg("-i").arg(&alone).args(["-o", &cert]);
        c
    };
    captured(&tool, &make, &["get", "empty.bin"], &want, &client_wire(port));
}

/// `AddKeysToAgent yes`: the key decrypted with its passphrase goes to the agent, and the
/// next run logs in through the agent with nobody to ask.
#[test]
fn add_keys_to_agent_after_the_passphrase() {
    let tool = Tool::new();
    let lab = &tool.lab;
    let (sock, _agent) = empty_agent(&tool);
    let port = lab.port("SSH_PORT");
    let ssh = at(&tool, "SERVER_ADDR", port);
    let askpass = Askpass::new(&tool, &[("*passphrase*", lab.var("KEY_PASSPHRASE"))]);
    let want = std::fs::read(tool.remote_path("small.bin")).unwrap();
    let make = || {
        let mut c = cmd(&tool, &ssh, &ftp(&tool), Some(&askpass));
        c.env("SSH_AUTH_SOCK", &sock).arg("-i").arg(lab.path("ENCRYPTED_KEY")).args(["-o", "AddKeysToAgent=yes"]);
        c
    };
    captured(&tool, &make, &["get", "small.bin"], &want, &client_wire(port));
    assert_eq!(askpass.prompts().len(), 1);
    let listed = std::process::Command::new("ssh-add").arg("-l").env("SSH_AUTH_SOCK", &sock).output().unwrap();
    let fingerprint =
        std::process::Command::new("ssh-keygen").arg("-lf").arg(lab.path("ENCRYPTED_KEY")).output().unwrap();
    let fingerprint = String::from_utf8_lossy(&fingerprint.stdout).split_whitespace().nth(1).unwrap().to_string();
    assert!(String::from_utf8_lossy(&listed.stdout).contains(&fingerprint), "the agent does not hold the key");
    // No askpass, no key file: the agent alone.
    let make = || {
        let mut c = cmd(&tool, &ssh, &ftp(&tool), None);
        c.env("SSH_AUTH_SOCK", &sock).args(["-o", "BatchMode=yes"]);
        c
    };
    captured(&tool, &make, &["get", "small.bin", "again.bin"], &want, &client_wire(port));
}

/// An ssh-agent of its own, holding no key yet, killed when dropped.
fn empty_agent(tool: &Tool) -> (std::path::PathBuf, impl Drop) {
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let sock = tool.home.path().join("agent.sock");
    let mut agent = std::process::Command::new("ssh-agent");
    let agent = Kill(agent.arg("-D").arg("-a").arg(&sock).stdout(std::process::Stdio::null()).spawn().unwrap());
    let started = std::time::Instant::now();
    while !sock.exists() {
        assert!(started.elapsed() < AT_ONCE, "ssh-agent did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    (sock, agent)
}

/// An agent that holds no key (a desktop session's, before ssh-add) tells nothing of the server:
/// its methods are asked before a key file's passphrase is, and where sshd takes passwords only,
/// the password alone is asked.
#[test]
fn an_empty_agent_then_a_key_with_a_passphrase_against_a_password_only_server() {
    let tool = Tool::new();
    let lab = &tool.lab;
    let (sock, _agent) = empty_agent(&tool);
    let answers = [("*password*", lab.var("FTP_PASSWORD")), ("*passphrase*", lab.var("KEY_PASSPHRASE"))];
    let askpass = Askpass::new(&tool, &answers);
    let port = lab.port("PASSWORD_SSH_PORT");
    let mut c = cmd(&tool, &at(&tool, "SERVER_ADDR", port), &ftp(&tool), Some(&askpass));
    c.env("SSH_AUTH_SOCK", &sock).arg("-i").arg(lab.path("ENCRYPTED_KEY"));
    let want = std::fs::read(tool.remote_path("empty.bin")).unwrap();
    captured(&tool, &|| c_clone(&c), &["get", "empty.bin"], &want, &client_wire(port));
    let password = format!("{}@{}'s password: ", lab.var("SSH_USER"), lab.var("SERVER_ADDR"));
    assert_eq!(askpass.prompts(), vec![password]);
}
