//! The FTP login: user from `--ftp-user`, `~/.netrc` or the SSH user;
//! password from `FTPSSH_PASSWORD`, `~/.netrc` or a prompt on the terminal.
//! Never from the command line, where any local user could read it.
//!
//! `~/.netrc` is read as ftp(1) reads it, with two rules for a host shared
//! with other users:
//! - its passwords are not used if anyone but its owner (us) may read or
//!   write it: they could have read them, or written one in for us to send;
//! - an FTP server on the SSH server's loopback (127.0.0.0/8, ::1,
//!   localhost) is a different server behind every SSH host, so its entry is
//!   `machine SSH-HOST` (the host as typed, or its `HostName`); a
//!   `machine 127.0.0.1` entry would go to all of them, and is ignored.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::{Context, Result};

use crate::error::{classified, Kind};

/// Who logs in.
#[derive(Clone)]
pub struct Login {
    /// FTP user name.
    pub user: String,
    /// FTP password (never logged).
    pub password: String,
    /// Send the password only once this opens (None: at once).
    pub gate: Option<PasswordGate>,
    /// `--ascii`: the login ends with TYPE A (text), not TYPE I.
    pub ascii: bool,
    /// `--ftp-uid`: the account (a uid or a name) the FTP server runs this login's session as on
    /// the SSH server's host, where the login has none of its own (virtual users).
    pub runs_as: Option<String>,
}

/// A password held back until another connection's login was accepted: the
/// workers of `--jobs N` open their links while the first still logs in, and
/// a wrong password must be sent once, not once a worker (a server may lock
/// the account, or ban the address, after a few).
#[derive(Clone, Debug)]
pub struct PasswordGate(tokio::sync::watch::Receiver<bool>);

impl PasswordGate {
    /// A closed gate, and what opens it (`send(true)`); dropping the sender
    /// unopened says the password will never be wanted.
    pub fn new() -> (tokio::sync::watch::Sender<bool>, PasswordGate) {
        let (open, gate) = tokio::sync::watch::channel(false);
        (open, PasswordGate(gate))
    }

    /// Once it opens; an error if it never will.
    pub async fn opened(&self) -> Result<()> {
        let mut gate = self.0.clone();
        let opened = gate.wait_for(|open| *open).await.is_ok();
        anyhow::ensure!(opened, "the first login did not succeed: this connection does not try the password");
        Ok(())
    }
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Login {{ user: {:?}, password: **** }}", self.user)
    }
}

/// The environment variable that may carry the FTP password.
pub const PASSWORD_ENV: &str = "FTPSSH_PASSWORD";

/// Work out the FTP login for `ftp_host`, reached through the SSH server
/// `ssh_hosts` names (as typed, then its `HostName`). `env_password` is the
/// value of [`PASSWORD_ENV`]; `may_prompt` says whether a terminal can be asked.
pub fn resolve(
    cli_user: Option<&str>,
    ssh_user: &str,
    ftp_host: &str,
    ssh_hosts: &[&str],
    netrc_file: Option<&Path>,
    env_password: Option<String>,
    may_prompt: bool,
) -> Result<Login> {
    let (netrc, unsafe_netrc) = match netrc_file.map(read_netrc) {
        Some(Ok((netrc, unsafe_netrc))) => (Some(netrc), unsafe_netrc),
        Some(Err(e)) => {
            tracing::debug!("{e:#}");
            (None, None)
        }
        None => (None, None),
    };
    let entry = netrc.as_ref().and_then(|n| entry(n, ftp_host, ssh_hosts)).cloned();
    let user = cli_user
        .map(str::to_string)
        .or_else(|| entry.as_ref().map(|e| e.login.clone()).filter(|l| !l.is_empty()))
        .unwrap_or_else(|| ssh_user.to_string());
    // A netrc password belongs to the login it is written with.
    let mut netrc_password = entry.filter(|e| e.login == user && !e.password.is_empty()).map(|e| e.password);
    let mut why_not_netrc = String::new();
    if let (Some(_), Some(why), None) = (&netrc_password, &unsafe_netrc, &env_password) {
        // As ftp(1): "Error: .netrc file is readable by others."
        tracing::error!("{why}: its passwords are not used (chmod go-rwx it)");
        why_not_netrc = format!(" ({why}, so its password is not used: chmod go-rwx it)");
        netrc_password = None;
    }
    let password = match env_password.or(netrc_password) {
        Some(p) => p,
        None if may_prompt => rpassword::prompt_password(format!("FTP password for {user}@{ftp_host}: "))?,
        None => {
            return Err(classified(
                Kind::Usage,
                format!(
                "no FTP password for {user}@{ftp_host}{why_not_netrc}: set {PASSWORD_ENV}, add it to ~/.netrc, or run on a terminal"
            ),
            ))
        }
    };
    Ok(Login { user, password, gate: None, ascii: false, runs_as: None })
}

/// The parsed netrc, and why its passwords must not be used, if they must
/// not. Read through the descriptor whose owner and mode were checked.
fn read_netrc(path: &Path) -> Result<(netrc::Netrc, Option<String>)> {
    let mut file = std::fs::File::open(path).with_context(|| format!("no netrc: {}", path.display()))?;
    let meta = file.metadata().with_context(|| format!("could not read {}", path.display()))?;
    let unsafe_netrc = if meta.uid() != nix::unistd::geteuid().as_raw() {
        Some(format!("Error: {} belongs to uid {}, not to us", path.display(), meta.uid()))
    } else if meta.mode() & 0o077 != 0 {
        Some(format!("Error: {} is readable or writable by others (mode {:o})", path.display(), meta.mode() & 0o777))
    } else {
        None
    };
    let mut text = Vec::new();
    file.read_to_end(&mut text).with_context(|| format!("could not read {}", path.display()))?;
    let netrc = String::from_utf8_lossy(&text).parse().map_err(|e| anyhow::anyhow!("{}: {e:?}", path.display()))?;
    Ok((netrc, unsafe_netrc))
}

/// The netrc entry for `ftp_host` behind `ssh_hosts`, else `default`.
fn entry<'a>(netrc: &'a netrc::Netrc, ftp_host: &str, ssh_hosts: &[&str]) -> Option<&'a netrc::Authenticator> {
    let found = if is_loopback(ftp_host) {
        if netrc.hosts.contains_key(ftp_host) {
            tracing::debug!(
                "~/.netrc: `machine {ftp_host}` ignored: the FTP server behind SSH host {} is `machine {0}`",
                ssh_hosts.first().unwrap_or(&"?")
            );
        }
        ssh_hosts.iter().find_map(|h| netrc.hosts.get(*h))
    } else {
        netrc.hosts.get(ftp_host)
    };
    found.or_else(|| netrc.hosts.get("default"))
}

/// 127.0.0.0/8, ::1 (also IPv4-mapped), localhost: the SSH server's own loopback.
fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.to_canonical().is_loopback(),
        Err(_) => host.eq_ignore_ascii_case("localhost") || host.to_ascii_lowercase().ends_with(".localhost"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::os::unix::fs::PermissionsExt;

    const GW: &[&str] = &["gw", "gw.example"];

    fn netrc(text: &str, mode: u32) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("netrc");
        std::fs::write(&file, text).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
        (dir, file)
    }

    fn both(login: Login) -> (String, String) {
        (login.user, login.password)
    }

    #[test]
    fn netrc_gives_login_and_password() {
        let (_dir, file) =
            netrc("machine gw.example login alice password pw1\ndefault login anon password guest\n", 0o600);
        let login = resolve(None, "sshuser", "127.0.0.1", GW, Some(&file), None, false).unwrap();
        assert_eq!(both(login), ("alice".into(), "pw1".into()), "the loopback behind gw is `machine gw.example`");
        let login = resolve(None, "sshuser", "ftp.example", GW, Some(&file), None, false).unwrap();
        assert_eq!(both(login), ("anon".into(), "guest".into()));
    }

    #[test]
    fn a_loopback_entry_is_not_sent_behind_every_ssh_host() {
        let (_dir, file) = netrc("machine 127.0.0.1 login alice password pw1\nmachine ::1 login a password p\n", 0o600);
        for host in ["127.0.0.1", "127.1.2.3", "::1", "localhost", "[::1]", "::ffff:127.0.0.1"] {
            let err = resolve(None, "sshuser", host, GW, Some(&file), None, false).unwrap_err();
            assert!(err.to_string().contains("no FTP password for sshuser@"), "{host}: {err}");
        }
        assert!(!is_loopback("10.0.0.1") && !is_loopback("ftp.example") && !is_loopback("localhost.example"));
    }

    #[test]
    fn a_netrc_others_may_read_or_write_gives_no_password() {
        for mode in [0o644, 0o620, 0o604] {
            let (_dir, file) = netrc("machine gw login alice password pw1\n", mode);
            let err = resolve(None, "sshuser", "127.0.0.1", GW, Some(&file), None, false).unwrap_err();
            let err = err.to_string();
            assert!(
                err.contains("no FTP password for alice@127.0.0.1") && err.contains("readable or writable by others"),
                "{err}"
            );
            let login = resolve(None, "sshuser", "127.0.0.1", GW, Some(&file), Some("env".into()), false).unwrap();
            assert_eq!(both(login), ("alice".into(), "env".into()), "the login name still comes from it");
        }
    }

    #[test]
    fn environment_wins_and_other_logins_get_no_netrc_password() {
        let (_dir, file) = netrc("machine gw login alice password pw1\n", 0o600);
        let login = resolve(Some("bob"), "sshuser", "127.0.0.1", GW, Some(&file), Some("envpw".into()), false).unwrap();
        assert_eq!(both(login), ("bob".into(), "envpw".into()));
        let err = resolve(Some("bob"), "sshuser", "127.0.0.1", GW, Some(&file), None, false).unwrap_err();
        assert!(err.to_string().contains("FTPSSH_PASSWORD"));
        assert_eq!(crate::error::exit_code(&err), 2);
    }

    #[test]
    fn ssh_user_is_the_last_resort() {
        let login = resolve(None, "sshuser", "h", GW, None, Some("x".into()), false).unwrap();
        assert_eq!(login.user, "sshuser");
    }
}
