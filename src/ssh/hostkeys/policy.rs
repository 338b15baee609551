//! Which known_hosts files to read and what to do with an unknown key: OpenSSH's
//! `UserKnownHostsFile`, `GlobalKnownHostsFile` and `StrictHostKeyChecking`; reading the
//! files, adding a new key, and the message that explains a refusal.

use std::fmt;
use std::io::Write;
use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
use std::str::FromStr;

use anyhow::{bail, Context, Result};
use russh::keys::{Algorithm, PublicKey};

use super::{judge, pattern, wanted, Judgement, Known, Offered, Origin, Verdict, Wanted};

/// OpenSSH's default `UserKnownHostsFile`, under the home directory.
pub const DEFAULT_USER_FILES: [&str; 2] = [".ssh/known_hosts", ".ssh/known_hosts2"];
/// OpenSSH's default `GlobalKnownHostsFile`.
pub const DEFAULT_GLOBAL_FILES: [&str; 2] = ["/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2"];

/// `StrictHostKeyChecking`. A changed key is refused at every level, `no` included:
/// OpenSSH would go on with port forwarding disabled, and this tool is nothing but port
/// forwarding. A revoked key is always refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strict {
    /// `yes` (and `ask`: there is no one to ask): refuse unknown keys. The default.
    #[default]
    Yes,
    /// `accept-new`: add an unknown key to the first user file and go on.
    AcceptNew,
    /// `no`/`off`: the same as `accept-new` for unknown keys.
    No,
}

impl FromStr for Strict {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Strict> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "yes" | "ask" | "true" => Strict::Yes,
            "accept-new" => Strict::AcceptNew,
            "no" | "off" | "false" => Strict::No,
            _ => bail!("StrictHostKeyChecking {s:?}: expected yes, ask, accept-new, no or off"),
        })
    }
}

impl fmt::Display for Strict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Strict::Yes => "yes",
            Strict::AcceptNew => "accept-new",
            Strict::No => "no",
        })
    }
}

/// What to do about the server's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Known: go on.
    Accept,
    /// Unknown and the policy takes new keys: add it to the first user file, go on.
    Add,
    /// Stop.
    Refuse,
}

/// The policy's answer to a verdict.
pub fn decide(verdict: &Verdict, strict: Strict) -> Decision {
    match (verdict, strict) {
        (Verdict::Trusted { .. }, _) => Decision::Accept,
        (Verdict::Unknown, Strict::AcceptNew | Strict::No) => Decision::Add,
        _ => Decision::Refuse,
    }
}

/// The files and the strictness for one SSH server.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Policy {
    /// `UserKnownHostsFile` (or `--known-hosts`); new keys go to the first.
    pub user_files: Vec<PathBuf>,
    /// `GlobalKnownHostsFile`.
    pub global_files: Vec<PathBuf>,
    /// `StrictHostKeyChecking`.
    pub strict: Strict,
}

/// What `%` tokens and `~` in a known_hosts path stand for (OpenSSH's `ssh_config(5)` TOKENS).
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    /// `~` and `%d`.
    pub home: Option<PathBuf>,
    /// `%u`.
    pub local_user: String,
    /// `%h`: the host after `HostName`.
    pub host: String,
    /// `%n`: the host as given.
    pub alias: String,
    /// `%p`.
    pub port: u16,
    /// `%r`.
    pub user: String,
}

impl Tokens {
    /// `~/x`, `%d/x`, `%h` and the rest made into a path.
    pub fn expand(&self, path: &str) -> Result<PathBuf> {
        let home = || self.home.as_ref().map(|h| h.display().to_string()).context("no HOME to expand ~ or %d");
        let mut out = match path.strip_prefix("~/") {
            Some(rest) => format!("{}/{rest}", home()?),
            None if path == "~" => home()?,
            None => String::new(),
        };
        let rest = if out.is_empty() { path } else { "" };
        out += &self.substitute(rest, "dunhpr")?;
        Ok(PathBuf::from(out))
    }

    /// `text` with each `%X` whose letter is in `known` (of `d u h n p r`) replaced by its
    /// value, and `%%` by `%`, as ssh_config's TOKENS; any other `%` is an error.
    pub fn substitute(&self, text: &str, known: &str) -> Result<String> {
        let listed: Vec<String> = known.chars().chain(['%']).map(|c| format!("%{c}")).collect();
        let mut out = String::new();
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                out.push(c);
                continue;
            }
            let Some(token) = chars.next() else { bail!("a lone % at the end of {text:?}") };
            let value = match token {
                '%' => Some("%".to_string()),
                t if !known.contains(t) => None,
                'd' => Some(self.home.as_ref().map(|h| h.display().to_string()).context("no HOME to expand %d")?),
                'u' => Some(self.local_user.clone()),
                'h' => Some(self.host.clone()),
                'n' => Some(self.alias.clone()),
                'p' => Some(self.port.to_string()),
                'r' => Some(self.user.clone()),
                _ => None,
            };
            match value {
                Some(value) => out.push_str(&value),
                None => bail!("unknown %{token} in {text:?} (known: {})", listed.join(" ")),
            }
        }
        Ok(out)
    }
}

impl Policy {
    /// From the values of `~/.ssh/config` (each a list of words, as written), OpenSSH's
    /// defaults where absent. `none` as a file list means no file.
    pub fn from_config(
        user: Option<&[String]>,
        global: Option<&[String]>,
        strict: Option<&[String]>,
        tokens: &Tokens,
    ) -> Result<Policy> {
        let files = |words: Option<&[String]>, defaults: Vec<String>, what: &str| -> Result<Vec<PathBuf>> {
            let words = words.map(<[String]>::to_vec).unwrap_or(defaults);
            if words.len() == 1 && words[0].eq_ignore_ascii_case("none") {
                return Ok(Vec::new());
            }
            words.iter().map(|w| tokens.expand(w).with_context(|| format!("{what} {w:?}"))).collect()
        };
        let user_defaults = match &tokens.home {
            Some(_) => DEFAULT_USER_FILES.iter().map(|f| format!("~/{f}")).collect(),
            None => Vec::new(),
        };
        let global_defaults = DEFAULT_GLOBAL_FILES.iter().map(|f| f.to_string()).collect();
        let strict = match strict.and_then(<[String]>::first) {
            Some(word) => word.parse()?,
            None => Strict::default(),
        };
        Ok(Policy {
            user_files: files(user, user_defaults, "UserKnownHostsFile")?,
            global_files: files(global, global_defaults, "GlobalKnownHostsFile")?,
            strict,
        })
    }

    fn files(&self) -> impl Iterator<Item = &PathBuf> {
        self.user_files.iter().chain(&self.global_files)
    }

    /// Every file's lines. A missing or unreadable file is skipped, as OpenSSH skips it.
    pub fn load(&self) -> Known {
        let mut known = Known::default();
        for path in self.files() {
            match std::fs::read(path) {
                Ok(bytes) => known.add_text(&path.display().to_string(), &String::from_utf8_lossy(&bytes)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!("skipping known_hosts file {}: {e}", path.display()),
            }
        }
        known
    }

    /// The host key algorithms to ask `host:port` for, known kinds first ([`wanted`]).
    pub fn wanted(&self, host: &str, port: u16, defaults: &[Algorithm]) -> Wanted {
        wanted(&self.load(), host, port, defaults)
    }

    /// Judge the server's key for `host:port` and act on it: `Ok` to go on (after adding
    /// the key if the policy says so), `Err` with the message that explains the refusal.
    pub fn check(&self, host: &str, port: u16, offered: Offered<'_>, now: u64) -> Result<(), String> {
        let judgement = judge(&self.load(), host, port, offered, now);
        if let Some(why) = &judgement.certificate {
            tracing::debug!("host certificate not honoured: {why}");
        }
        match decide(&judgement.verdict, self.strict) {
            Decision::Accept => {
                if let Verdict::Trusted { at, by_ca } = &judgement.verdict {
                    let how = if *by_ca { "a certificate signed by the CA in" } else { "the key in" };
                    tracing::info!("host key of {host}:{port} accepted: {how} {at}");
                }
                Ok(())
            }
            Decision::Add => {
                match self.add(host, port, offered) {
                    Ok(Some(file)) => tracing::warn!(
                        "permanently added {} ({}) to {} (StrictHostKeyChecking {})",
                        pattern::lookup_name(host, port),
                        offered.fingerprint(),
                        file.display(),
                        self.strict
                    ),
                    Ok(None) => {
                        tracing::warn!("accepted a new host key but there is no UserKnownHostsFile to add it to")
                    }
                    // OpenSSH goes on when it cannot write the file, and says so.
                    Err(e) => tracing::warn!("{e:#}"),
                }
                Ok(())
            }
            Decision::Refuse => Err(self.explain(host, port, offered, &judgement)),
        }
    }

    /// Append `lookup-name keytype base64` to the first user file.
    fn add(&self, host: &str, port: u16, offered: Offered<'_>) -> Result<Option<PathBuf>> {
        let Some(file) = self.user_files.first() else { return Ok(None) };
        let key = PublicKey::from(offered.key_data().clone());
        let line = format!("{} {}\n", pattern::lookup_name(host, port), key.to_openssh()?);
        if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .with_context(|| format!("could not create {}", dir.display()))?;
        }
        let mut out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(file)
            .with_context(|| format!("could not add the host key to {}", file.display()))?;
        out.write_all(line.as_bytes()).with_context(|| format!("could not add the host key to {}", file.display()))?;
        Ok(Some(file.clone()))
    }

    /// One line that says what was found, where, and how to fix it.
    fn explain(&self, host: &str, port: u16, offered: Offered<'_>, judgement: &Judgement) -> String {
        let name = pattern::lookup_name(host, port);
        let fingerprint = offered.fingerprint();
        let certificate =
            judgement.certificate.as_ref().map(|c| format!(" (host certificate ignored: {c})")).unwrap_or_default();
        match &judgement.verdict {
            Verdict::Revoked { at } => {
                let what = match offered {
                    Offered::Key(_) => "the key the server offers",
                    Offered::Certificate(_) => "the key the server offers, or the CA that signed its certificate,",
                };
                format!(
                    "REVOKED HOST KEY DETECTED for {name}: {at} marks {what} ({fingerprint}) as revoked; refusing to \
                     connect. Only the server's administrator can fix this, by replacing that key"
                )
            }
            Verdict::Changed { at } => {
                let lines = at.iter().map(Origin::to_string).collect::<Vec<_>>().join(", ");
                let first = &at[0];
                format!(
                    "HOST KEY CHANGED for {name}: {lines} hold another key (server offers {fingerprint}){certificate}; \
                     this may be an attack. If the change is known to be legitimate, remove line {} of {}, \
                     e.g. `ssh-keygen -R '{name}' -f {}`",
                    first.line, first.file, first.file
                )
            }
            _ => {
                let files = self.files().map(|f| f.display().to_string()).collect::<Vec<_>>();
                let files = if files.is_empty() { "no known_hosts file".to_string() } else { files.join(", ") };
                let target =
                    self.user_files.first().map(|f| f.display().to_string()).unwrap_or("~/.ssh/known_hosts".into());
                format!(
                    "host key of {name} is not in {files} (server offers {fingerprint}){certificate}; check that \
                     fingerprint with the server's administrator, then add the key, e.g. \
                     `ssh-keyscan -p {port} {host} >> {target}` (StrictHostKeyChecking {})",
                    self.strict
                )
            }
        }
    }
}

/// Unix time now, for certificate validity.
pub fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
