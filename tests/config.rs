//! What a user's own files and agent provide: `~/.ssh/config` aliases, `~/.ssh/known_hosts`,
//! `~/.netrc` and the ssh-agent, with no option on the command line but `-s`.
//!
//! Needs root and `scripts/lab up`; run with `--test-threads=1`.

mod common;

use std::process::Command;

use common::tool::{run, stderr, Tool};

/// HOME/.ssh with the lab's known_hosts, and a config aliasing `lab` to the lab's sshd.
fn ssh_dir(tool: &Tool, identity: bool) {
    let lab = &tool.lab;
    let ssh = tool.home.path().join(".ssh");
    std::fs::create_dir_all(&ssh).unwrap();
    std::fs::copy(lab.path("KNOWN_HOSTS"), ssh.join("known_hosts")).unwrap();
    let mut config = format!(
        "Host lab\n  HostName {}\n  User {}\n  Port {}\n",
        lab.var("SERVER_ADDR"),
        lab.var("SSH_USER"),
        lab.var("SSH_PORT")
    );
    if identity {
        config.push_str(&format!("  IdentityFile {}\n", lab.var("SSH_KEY")));
    }
    std::fs::write(ssh.join("config"), config).unwrap();
}

fn assert_got_small(tool: &Tool, out: &std::process::Output) {
    assert!(out.status.success(), "{}", stderr(out));
    let want = std::fs::read(tool.remote_path("small.bin")).unwrap();
    assert_eq!(std::fs::read(tool.work.path().join("small.bin")).unwrap(), want);
}

#[test]
fn ssh_config_alias_known_hosts_and_netrc() {
    let tool = Tool::new();
    ssh_dir(&tool, true);
    let netrc = tool.home.path().join(".netrc");
    // The FTP server on the loopback behind SSH host `lab` is `machine lab`; the file is ours alone.
    std::fs::write(
        &netrc,
        format!("machine lab login {} password {}\n", tool.lab.var("FTP_USER"), tool.lab.var("FTP_PASSWORD")),
    )
    .unwrap();
    std::fs::set_permissions(&netrc, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let ftp = format!("127.0.0.1:{}", tool.lab.port("PROFTPD_PORT"));
    let out = run(tool.bare().args(["-s", "lab", "-f", &ftp, "get", "small.bin"]));
    assert_got_small(&tool, &out);
}

#[test]
fn ssh_agent_authenticates() {
    let tool = Tool::new();
    ssh_dir(&tool, false); // no IdentityFile: only the agent holds the key
    let socket = tool.home.path().join("agent.sock");
    let agent =
        Command::new("ssh-agent").arg("-D").arg("-a").arg(&socket).stdout(std::process::Stdio::null()).spawn().unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _agent = Kill(agent);
    let added = (0..50).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(50));
        Command::new("ssh-add")
            .arg(tool.lab.var("SSH_KEY"))
            .env("SSH_AUTH_SOCK", &socket)
            .output()
            .is_ok_and(|o| o.status.success())
    });
    assert!(added, "ssh-add failed");
    let ftp = format!("127.0.0.1:{}", tool.lab.port("PROFTPD_PORT"));
    let out = run(tool
        .bare()
        .env("SSH_AUTH_SOCK", &socket)
        .env("FTPSSH_PASSWORD", tool.lab.var("FTP_PASSWORD"))
        .args(["-s", "lab", "-f", &ftp, "get", "small.bin"]));
    assert_got_small(&tool, &out);
}

#[test]
fn ciphers_from_ssh_config_and_from_the_command_line() {
    // dropbear offers no AES-GCM: a config that asks only for it cannot connect, and -c overrides it.
    let tool = Tool::new();
    ssh_dir(&tool, true);
    let ssh = tool.home.path().join(".ssh");
    let config = std::fs::read_to_string(ssh.join("config")).unwrap();
    let dropbear = tool.lab.var("DROPBEAR_PORT");
    let config = config.replace(&format!("Port {}", tool.lab.var("SSH_PORT")), &format!("Port {dropbear}"));
    std::fs::write(ssh.join("config"), format!("{config}  Ciphers aes256-gcm@openssh.com\n")).unwrap();
    let ftp = format!("127.0.0.1:{}", tool.lab.port("PROFTPD_PORT"));
    let password = tool.lab.var("FTP_PASSWORD").to_string();
    let out = run(tool.bare().env("FTPSSH_PASSWORD", &password).args(["-s", "lab", "-f", &ftp, "get", "small.bin"]));
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("ours: [\"aes256-gcm@openssh.com\"]"), "{}", stderr(&out));
    let cli = ["-s", "lab", "-f", &ftp, "-c", "aes128-ctr", "get", "small.bin"];
    let out = run(tool.bare().env("FTPSSH_PASSWORD", &password).args(cli));
    assert_got_small(&tool, &out);
}
