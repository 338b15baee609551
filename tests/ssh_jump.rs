//! The SSH+FTP host behind a jump host, as `ssh -J` and `ProxyJump` reach it: one hop (the
//! lab's sshd), two hops (that sshd, then dropbear), ProxyJump in ssh_config, `-F`, `-o`,
//! and ProxyCommand. Each run is captured on the client's wire and on the jump host's own
//! wire to the far host: nothing but SSH crosses either.
//!
//! Needs root and `scripts/lab up`; run with `--test-threads=1`.

mod common;

use common::sshauth::{at, cmd, get_put_mget, timed};
use common::tool::{stderr, Tool};

/// The far host's SSH server and its FTP server, as the far host itself reaches it.
fn far(tool: &Tool) -> (String, String) {
    let lab = &tool.lab;
    (
        at(tool, "BASTION_FTP_ADDR", lab.port("BASTION_SSH_PORT")),
        format!("{}:{}", lab.var("BASTION_FTP_ADDR"), lab.port("BASTION_PROFTPD_PORT")),
    )
}

/// Both wires: client to jump host, jump host to the far host (the jump host's side).
fn wires(tool: &Tool) -> Vec<(&'static str, &'static str, u16)> {
    let lab = &tool.lab;
    vec![("CLIENT_NS", "CLIENT_IF", lab.port("SSH_PORT")), ("SERVER_NS", "GATEWAY_IF", lab.port("BASTION_SSH_PORT"))]
}

#[test]
fn one_jump_host_with_dash_j() {
    let tool = Tool::new();
    let (ssh, ftp) = far(&tool);
    let jump = at(&tool, "SERVER_ADDR", tool.lab.port("SSH_PORT"));
    let key = tool.lab.path("SSH_KEY");
    let make = || {
        let mut c = cmd(&tool, &ssh, &ftp, None);
        c.arg("-i").arg(&key).args(["-J", &jump]);
        c
    };
    get_put_mget(&tool, &make, &wires(&tool), "jump1");
}

#[test]
fn two_jump_hosts_sshd_then_dropbear() {
    let tool = Tool::new();
    let (ssh, ftp) = far(&tool);
    let lab = &tool.lab;
    let chain = format!(
        "{},{}",
        at(&tool, "SERVER_ADDR", lab.port("SSH_PORT")),
        at(&tool, "SERVER_ADDR", lab.port("DROPBEAR_PORT"))
    );
    let key = lab.path("SSH_KEY");
    let make = || {
        let mut c = cmd(&tool, &ssh, &ftp, None);
        c.arg("-i").arg(&key).args(["-J", &chain]);
        c
    };
    // The client's wire carries the first hop only; the second hop's sshd is dropbear on the
    // same host, whose connection to the far host crosses the jump host's wire on port 22.
    get_put_mget(&tool, &make, &wires(&tool), "jump2");
}

/// ProxyJump in ~/.ssh/config, as `ssh far` uses it; `-o ProxyJump=none` turns it off
/// (and then the far host cannot be reached: the error names it); `-F` reads another file.
#[test]
fn proxy_jump_from_ssh_config_and_its_overrides() {
    let tool = Tool::new();
    let lab = &tool.lab;
    let (_, ftp) = far(&tool);
    let config = format!(
        "Host far\n  HostName {}\n  User {user}\n  ProxyJump bastion\nHost bastion\n  HostName {}\n  User {user}\nHost *\n  IdentityFile {}\n",
        lab.var("BASTION_FTP_ADDR"),
        lab.var("SERVER_ADDR"),
        lab.var("SSH_KEY"),
        user = lab.var("SSH_USER"),
    );
    std::fs::create_dir_all(tool.home.path().join(".ssh")).unwrap();
    std::fs::write(tool.home.path().join(".ssh/config"), &config).unwrap();
    let make = || cmd(&tool, "far", &ftp, None);
    let want = std::fs::read(tool.remote_path("small.bin")).unwrap();
    common::sshauth::captured(&tool, &make, &["get", "small.bin"], &want, &wires(&tool));

    let (out, took) = timed({
        let mut c = make();
        c.args(["-o", "ProxyJump=none", "get", "small.bin", "again.bin"]);
        c
    });
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains(lab.var("BASTION_FTP_ADDR")), "the error names the far host: {err}");
    assert!(took.as_secs() < 20, "took {took:?}");

    let other = tool.home.path().join("other-config");
    std::fs::write(&other, &config).unwrap();
    std::fs::remove_file(tool.home.path().join(".ssh/config")).unwrap();
    let want = std::fs::read(tool.remote_path("empty.bin")).unwrap();
    let make_f = || {
        let mut c = cmd(&tool, "far", &ftp, None);
        c.arg("-F").arg(&other);
        c
    };
    common::sshauth::captured(&tool, &make_f, &["get", "empty.bin"], &want, &wires(&tool));
}

/// ProxyCommand: OpenSSH's own `ssh -W` to the jump host carries the session.
#[test]
fn proxy_command_with_expanded_tokens() {
    let tool = Tool::new();
    let lab = &tool.lab;
    let (ssh, ftp) = far(&tool);
    let proxy = format!(
        "ProxyCommand=ssh -F /dev/null -i {} -o UserKnownHostsFile={} -o StrictHostKeyChecking=yes -o BatchMode=yes -W %h:%p {}@{}",
        lab.var("SSH_KEY"),
        lab.var("KNOWN_HOSTS"),
        lab.var("SSH_USER"),
        lab.var("SERVER_ADDR"),
    );
    let key = lab.path("SSH_KEY");
    let make = || {
        let mut c = cmd(&tool, &ssh, &ftp, None);
        c.arg("-i").arg(&key).args(["-o", &proxy]);
        c
    };
    get_put_mget(&tool, &make, &wires(&tool), "proxycommand");
}

/// A jump host whose key is not known is refused like any SSH server: exit 3, named.
#[test]
fn unknown_jump_host_key_is_refused() {
    let tool = Tool::new();
    let lab = &tool.lab;
    let (ssh, ftp) = far(&tool);
    // Only the far host's line: the jump host (on port 2022 here) is unknown.
    let known = tool.home.path().join("known_hosts");
    let far_line = std::fs::read_to_string(lab.path("KNOWN_HOSTS")).unwrap();
    let far_line: String =
        far_line.lines().filter(|l| l.starts_with(&format!("{} ", lab.var("BASTION_FTP_ADDR")))).collect();
    std::fs::write(&known, far_line + "\n").unwrap();
    let jump = at(&tool, "SERVER_ADDR", lab.port("DROPBEAR_PORT"));
    let mut c = cmd(&tool, &ssh, &ftp, None);
    c.arg("-i").arg(lab.path("SSH_KEY")).args(["-J", &jump, "--known-hosts"]).arg(&known).args(["get", "small.bin"]);
    let (out, _) = timed(c);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains(&format!("jump host {}:2022", lab.var("SERVER_ADDR"))),
        "the error names the jump host: {err}"
    );
    assert!(err.contains("is not in"), "{err}");
    assert!(!tool.work.path().join("small.bin").exists());
}

/// A ProxyCommand that cannot run ends the handshake: exit 3, with its exit status; an `-o`
/// option the tool does not read is a usage error, not silently ignored.
#[test]
fn a_failing_proxy_command_and_an_unread_option() {
    let tool = Tool::new();
    let (ssh, ftp) = far(&tool);
    let mut c = cmd(&tool, &ssh, &ftp, None);
    c.args(["-o", "ProxyCommand=exec no-such-proxy-command %h %p", "get", "small.bin"]);
    let (out, took) = timed(c);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("the ProxyCommand ended (exit status: 127)"), "{err}");
    assert!(took.as_secs() < 10, "took {took:?}");
    let mut c = cmd(&tool, &ssh, &ftp, None);
    c.args(["-o", "Compression=yes", "get", "small.bin"]);
    let (out, _) = timed(c);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("-o Compression: not an option this tool reads"), "{err}");
}
