//! The FTP login: user from `--ftp-user`, `~/.netrc` or the SSH user;
//! password from `FTPSSH_PASSWORD`, `~/.netrc` or a prompt on the terminal.
//! Never from the command line, where any local user could read it.

use std::path::Path;

use anyhow::Result;

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

/// Work out the FTP login for `ftp_host`. `env_password` is the value of
/// [`PASSWORD_ENV`]; `may_prompt` says whether a terminal can be asked.
pub fn resolve(
    cli_user: Option<&str>,
    ssh_user: &str,
    ftp_host: &str,
    netrc_file: Option<&Path>,
    env_password: Option<String>,
    may_prompt: bool,
) -> Result<Login> {
    let entry = netrc_file
        .and_then(|f| netrc::Netrc::from_file(f).ok())
        .and_then(|n| n.hosts.get(ftp_host).or_else(|| n.hosts.get("default")).cloned());
    let user = cli_user
        .map(str::to_string)
        .or_else(|| entry.as_ref().map(|e| e.login.clone()).filter(|l| !l.is_empty()))
        .unwrap_or_else(|| ssh_user.to_string());
    // A netrc password belongs to the login it is written with.
    let netrc_password = entry.filter(|e| e.login == user && !e.password.is_empty()).map(|e| e.password);
    let password = match env_password.or(netrc_password) {
        Some(p) => p,
        None if may_prompt => rpassword::prompt_password(format!("FTP password for {user}@{ftp_host}: "))?,
        None => {
            return Err(classified(
                Kind::Usage,
                format!(
                "no FTP password for {user}@{ftp_host}: set {PASSWORD_ENV}, add it to ~/.netrc, or run on a terminal"
            ),
            ))
        }
    };
    Ok(Login { user, password, gate: None })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn netrc() -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("netrc");
        std::fs::write(&file, "machine 127.0.0.1 login alice password pw1\ndefault login anon password guest\n")
            .unwrap();
        (dir, file)
    }

    #[test]
    fn netrc_gives_login_and_password() {
        let (_dir, file) = netrc();
        let login = resolve(None, "sshuser", "127.0.0.1", Some(&file), None, false).unwrap();
        assert_eq!((login.user.as_str(), login.password.as_str()), ("alice", "pw1"));
        let login = resolve(None, "sshuser", "ftp.example", Some(&file), None, false).unwrap();
        assert_eq!((login.user.as_str(), login.password.as_str()), ("anon", "guest"));
    }

    #[test]
    fn environment_wins_and_other_logins_get_no_netrc_password() {
        let (_dir, file) = netrc();
        let login = resolve(Some("bob"), "sshuser", "127.0.0.1", Some(&file), Some("envpw".into()), false).unwrap();
        assert_eq!((login.user.as_str(), login.password.as_str()), ("bob", "envpw"));
        let err = resolve(Some("bob"), "sshuser", "127.0.0.1", Some(&file), None, false).unwrap_err();
        assert!(err.to_string().contains("FTPSSH_PASSWORD"));
        assert_eq!(crate::error::exit_code(&err), 2);
    }

    #[test]
    fn ssh_user_is_the_last_resort() {
        let login = resolve(None, "sshuser", "h", None, Some("x".into()), false).unwrap();
        assert_eq!(login.user, "sshuser");
    }
}
