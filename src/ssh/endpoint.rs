//! Where to connect: the SSH server (`[USER@]HOST[:PORT]`, completed from
//! `~/.ssh/config`) and the FTP server (`HOST[:PORT]`, as reached *from the
//! SSH server*).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::ssh::config::{self, Settings};
use crate::ssh::hostkeys::{policy::Tokens, Policy};

/// Default FTP server, as seen from the SSH server.
pub const DEFAULT_FTP: &str = "127.0.0.1:21";

/// A fully resolved SSH server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshTarget {
    /// Login name on the SSH server.
    pub user: String,
    /// Host name or address to connect to (after `HostName`).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Key files to try, in order (command line first, then `IdentityFile`, then the defaults).
    pub identities: Vec<PathBuf>,
    /// How its host key is checked (`UserKnownHostsFile`, `GlobalKnownHostsFile`,
    /// `StrictHostKeyChecking`).
    pub known_hosts: Policy,
    /// The ciphers to offer, most wanted first ([`crate::ssh::ciphers`]).
    pub ciphers: Vec<russh::cipher::Name>,
    /// Directly, through a command, or through jump hosts.
    pub proxy: Proxy,
    /// How to authenticate.
    pub auth: Auth,
}

/// The FTP server as the SSH server reaches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FtpTarget {
    /// Host name or address, resolved on the SSH server.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

/// Split `[USER@]HOST[:PORT]`; an IPv6 address goes in brackets: `[::1]:22`.
pub fn split_spec(spec: &str) -> Result<(Option<String>, String, Option<u16>)> {
    let (user, rest) = match spec.rsplit_once('@') {
        Some((u, r)) if !u.is_empty() => (Some(u.to_string()), r),
        Some(_) => bail!("empty user name in {spec:?}"),
        None => (None, spec),
    };
    let (host, port) = if let Some(inner) = rest.strip_prefix('[') {
        let (h, after) = inner.split_once(']').with_context(|| format!("missing ']' in {spec:?}"))?;
        match after.strip_prefix(':') {
            Some(p) => (h, Some(p)),
            None if after.is_empty() => (h, None),
            None => bail!("unexpected {after:?} after ']' in {spec:?}"),
        }
    } else if rest.matches(':').count() > 1 {
        (rest, None) // a bare IPv6 address
    } else {
        match rest.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        }
    };
    if host.is_empty() {
        bail!("no host in {spec:?}");
    }
    let port = port
        .map(|p| p.parse::<u16>().ok().filter(|p| *p != 0).with_context(|| format!("bad port {p:?} in {spec:?}")))
        .transpose()?;
    Ok((user, host.to_string(), port))
}

/// Parse the FTP server spec (`HOST[:PORT]`, default port 21).
pub fn ftp_target(spec: &str) -> Result<FtpTarget> {
    let (user, host, port) = split_spec(spec)?;
    if user.is_some() {
        bail!("--ftp takes HOST[:PORT]; give the FTP user with --ftp-user");
    }
    Ok(FtpTarget { host, port: port.unwrap_or(21) })
}

/// How the SSH connection's bytes travel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Proxy {
    /// A TCP connection to the server.
    Direct,
    /// `ProxyCommand`: the command's stdin and stdout (`%h %p %r` already expanded).
    Command(String),
    /// `ProxyJump`: a `direct-tcpip` channel of this hop's SSH session (which may itself
    /// go through hops: the chain's first hop is the innermost).
    Jump(Box<SshTarget>),
}

/// How to authenticate, from ssh_config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Auth {
    /// `BatchMode yes`: never ask anything.
    pub batch_mode: bool,
    /// `AddKeysToAgent yes`: a key decrypted with its passphrase goes to the agent.
    pub add_keys_to_agent: bool,
    /// `CertificateFile`, besides each key's own `KEY-cert.pub`.
    pub certificates: Vec<PathBuf>,
    /// `PubkeyAuthentication` (the agent and the key files).
    pub pubkey: bool,
    /// `PasswordAuthentication`.
    pub password: bool,
    /// `KbdInteractiveAuthentication` (or its old name, `ChallengeResponseAuthentication`).
    pub kbd_interactive: bool,
    /// `NumberOfPasswordPrompts`: tries of a password, of a keyboard-interactive round.
    pub password_prompts: u32,
}

/// How deep a ProxyJump chain may go (each hop may name its own jump host in ssh_config).
const MAX_HOPS: usize = 8;

/// Resolves `[USER@]HOST[:PORT]` with ssh_config and the command line's own options,
/// which apply to every hop of a jump chain.
#[derive(Debug, Clone, Default)]
pub struct Resolver {
    /// The ssh_config file and the `-o` options.
    pub settings: Settings,
    /// `-i` keys, tried before `IdentityFile`.
    pub identities: Vec<PathBuf>,
    /// `--known-hosts`, instead of `UserKnownHostsFile`.
    pub known_hosts: Option<PathBuf>,
    /// `-c`, instead of `Ciphers`.
    pub ciphers: Option<Vec<russh::cipher::Name>>,
}

impl Resolver {
    /// The target `spec`, through the jump hosts `jump` (`-J`) if given, else as ssh_config says.
    pub fn target(&self, spec: &str, jump: Option<&str>) -> Result<SshTarget> {
        let jump = jump.map(|j| j.split(',').map(str::to_string).collect());
        self.resolve(spec, jump, 0)
    }

    fn resolve(&self, spec: &str, jump: Option<Vec<String>>, depth: usize) -> Result<SshTarget> {
        if depth > MAX_HOPS {
            bail!("ProxyJump goes more than {MAX_HOPS} hops deep (a loop in ssh_config?)");
        }
        let (user, alias, port) = split_spec(spec)?;
        let params = self.settings.query(&alias)?;
        let user = user.or(params.user.clone()).or_else(local_user).context("no SSH user: give USER@HOST")?;
        let mut identities = self.identities.clone();
        identities.extend(params.identity_file.clone().unwrap_or_default());
        if let Some(ssh_dir) = home().map(|h| h.join(".ssh")) {
            for name in ["id_ed25519", "id_ecdsa", "id_rsa"] {
                identities.push(ssh_dir.join(name));
            }
        }
        identities.dedup();
        let host = params.host_name.clone().unwrap_or_else(|| alias.clone());
        let port = port.or(params.port).unwrap_or(22);
        let tokens = Tokens {
            home: home(),
            local_user: local_user().unwrap_or_default(),
            host: host.clone(),
            alias,
            port,
            user: user.clone(),
        };
        let option = |name: &str| params.unsupported_fields.get(name).map(Vec::as_slice);
        let mut known_hosts = Policy::from_config(
            option("userknownhostsfile"),
            option("globalknownhostsfile"),
            option("stricthostkeychecking"),
            &tokens,
        )
        .with_context(|| format!("host key options for {host}"))?;
        if let Some(file) = &self.known_hosts {
            known_hosts.user_files = vec![file.clone()];
        }
        // `Ciphers` in ssh_config, as ssh and scp take it (`-c` overrides it).
        let ciphers = match &self.ciphers {
            Some(c) => c.clone(),
            None if params.ciphers.is_default() => crate::ssh::ciphers::offer(),
            None => crate::ssh::ciphers::known(params.ciphers.algorithms())
                .with_context(|| format!("Ciphers for {host}"))?,
        };
        let auth = auth_of(&params).with_context(|| format!("authentication options for {host}"))?;
        // -J, else ProxyJump, else ProxyCommand (ssh2-config cannot tell which came first).
        let chain = jump.or(params.proxy_jump.clone()).filter(|j| !(j.len() == 1 && j[0].eq_ignore_ascii_case("none")));
        let proxy = match chain {
            Some(mut hops) => {
                let last = hops.pop().filter(|h| !h.is_empty()).context("empty jump host in ProxyJump")?;
                // The hops before the last one lead to it; with none, its own ssh_config says.
                let before = if hops.is_empty() { None } else { Some(hops) };
                let hop = self.resolve(&last, before, depth + 1).with_context(|| format!("jump host {last}"))?;
                Proxy::Jump(Box::new(hop))
            }
            None => match config::words(&params, "ProxyCommand") {
                Some(c) if !c.eq_ignore_ascii_case("none") => Proxy::Command(expand(&c, &tokens)?),
                _ => Proxy::Direct,
            },
        };
        Ok(SshTarget { user, host, port, identities, known_hosts, ciphers, proxy, auth })
    }
}

fn auth_of(params: &ssh2_config::HostParams) -> Result<Auth> {
    let prompts = match params.unsupported_fields.get("numberofpasswordprompts").and_then(|v| v.first()) {
        Some(n) => n.parse().ok().with_context(|| format!("NumberOfPasswordPrompts {n}: not a number"))?,
        None => 3,
    };
    Ok(Auth {
        batch_mode: config::yes_no(params, "BatchMode", false)?,
        add_keys_to_agent: params.add_keys_to_agent.unwrap_or(false),
        certificates: params.certificate_file.iter().cloned().collect(),
        pubkey: params.pubkey_authentication.unwrap_or(true),
        password: config::yes_no(params, "PasswordAuthentication", true)?,
        kbd_interactive: config::yes_no(params, "KbdInteractiveAuthentication", true)?
            && config::yes_no(params, "ChallengeResponseAuthentication", true)?,
        password_prompts: prompts,
    })
}

/// ProxyCommand's `%h` (host), `%p` (port), `%r` (user), `%n` (the name as typed), `%%`.
pub fn expand(command: &str, tokens: &Tokens) -> Result<String> {
    tokens.substitute(command, "hprn").context("ProxyCommand")
}

/// Resolve the SSH server spec against an ssh config file (if it exists), as OpenSSH
/// does: the command line wins, then the first matching `Host` block.
pub fn ssh_target(spec: &str, config_file: Option<&Path>, cli_identities: &[PathBuf]) -> Result<SshTarget> {
    let settings = Settings { file: config_file.filter(|p| p.exists()).map(Path::to_path_buf), options: Vec::new() };
    Resolver { settings, identities: cli_identities.to_vec(), ..Default::default() }.target(spec, None)
}

/// The user's home directory, from `$HOME`.
pub fn home() -> Option<PathBuf> {
    std::env::var_os("HOME").filter(|h| !h.is_empty()).map(PathBuf::from)
}

fn local_user() -> Option<String> {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .or_else(|| nix::unistd::User::from_uid(nix::unistd::getuid()).ok().flatten().map(|u| u.name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_specs() {
        assert_eq!(split_spec("h").unwrap(), (None, "h".into(), None));
        assert_eq!(split_spec("u@h:2222").unwrap(), (Some("u".into()), "h".into(), Some(2222)));
        assert_eq!(split_spec("[::1]:22").unwrap(), (None, "::1".into(), Some(22)));
        assert_eq!(split_spec("fe80::1").unwrap(), (None, "fe80::1".into(), None));
        assert!(split_spec("h:0").is_err());
        assert!(split_spec("h:99999").is_err());
        assert!(split_spec("@h").is_err());
        assert!(split_spec(":22").is_err());
    }

    #[test]
    fn ftp_default_port() {
        assert_eq!(ftp_target("127.0.0.1").unwrap(), FtpTarget { host: "127.0.0.1".into(), port: 21 });
        assert!(ftp_target("u@h").is_err());
    }

    #[test]
    fn ssh_config_alias() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("config");
        std::fs::write(&cfg, "Host lab\n  HostName 10.250.0.2\n  User alice\n  Port 2222\n  IdentityFile /k/lab_key\n")
            .unwrap();
        let t = ssh_target("lab", Some(&cfg), &[PathBuf::from("/k/cli")]).unwrap();
        assert_eq!((t.user.as_str(), t.host.as_str(), t.port), ("alice", "10.250.0.2", 2222));
        assert_eq!(t.identities[..2], [PathBuf::from("/k/cli"), PathBuf::from("/k/lab_key")]);
        let t = ssh_target("bob@lab:22", Some(&cfg), &[]).unwrap();
        assert_eq!((t.user.as_str(), t.port), ("bob", 22));
    }

    #[test]
    fn ssh_config_host_key_options() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("config");
        let text = "Host lab\n  HostName 10.250.0.2\n  UserKnownHostsFile /k/one /k/%h-two\n  \
                    StrictHostKeyChecking accept-new\nHost *\n  UserKnownHostsFile /k/ignored\n  \
                    GlobalKnownHostsFile none\n";
        std::fs::write(&cfg, text).unwrap();
        let t = ssh_target("u@lab", Some(&cfg), &[]).unwrap();
        assert_eq!(t.known_hosts.user_files, [PathBuf::from("/k/one"), PathBuf::from("/k/10.250.0.2-two")]);
        assert!(t.known_hosts.global_files.is_empty());
        assert_eq!(t.known_hosts.strict, crate::ssh::hostkeys::Strict::AcceptNew);
        let t = ssh_target("u@other", Some(&cfg), &[]).unwrap();
        assert_eq!(t.known_hosts.user_files, [PathBuf::from("/k/ignored")]);
        assert_eq!(t.known_hosts.strict, crate::ssh::hostkeys::Strict::Yes);
    }
    fn resolver(config: &str, options: &[&str]) -> (tempfile::TempDir, Resolver) {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("config");
        std::fs::write(&cfg, config).unwrap();
        let options: Vec<String> = options.iter().map(|o| o.to_string()).collect();
        let settings = Settings::new(Some(&cfg), None, &options).unwrap();
        (dir, Resolver { settings, ..Default::default() })
    }

    fn hop(t: &SshTarget) -> &SshTarget {
        match &t.proxy {
            Proxy::Jump(h) => h,
            other => panic!("no jump host: {other:?}"),
        }
    }

    #[test]
    fn jump_chains_as_openssh() {
        let text = "Host far\n  HostName 10.1.0.7\n  ProxyJump bastion\nHost bastion\n  HostName 10.0.0.1\n  User jim\n  Port 2200\n\
                    Host inner\n  ProxyJump outer\n";
        let (_dir, r) = resolver(text, &[]);
        // From ssh_config: far through bastion (its own User and Port).
        let t = r.target("u@far", None).unwrap();
        let b = hop(&t);
        assert_eq!((t.host.as_str(), b.host.as_str(), b.user.as_str(), b.port), ("10.1.0.7", "10.0.0.1", "jim", 2200));
        assert_eq!(b.proxy, Proxy::Direct);
        // -J a,b: b is reached through a, a as ssh_config says; -J wins over ProxyJump.
        let t = r.target("u@far", Some("x@one:22,inner")).unwrap();
        let inner = hop(&t);
        assert_eq!(inner.host, "inner");
        let one = hop(inner);
        assert_eq!((one.user.as_str(), one.host.as_str()), ("x", "one"));
        assert_eq!(one.proxy, Proxy::Direct);
        // The last hop alone follows its own ProxyJump.
        let t = r.target("u@far", Some("inner")).unwrap();
        assert_eq!(hop(hop(&t)).host, "outer");
        // -o ProxyJump=none turns it off.
        let (_dir, r) = resolver(text, &["ProxyJump=none"]);
        assert_eq!(r.target("u@far", None).unwrap().proxy, Proxy::Direct);
    }

    #[test]
    fn jump_loops_end() {
        let (_dir, r) = resolver("Host a\n  ProxyJump b\nHost b\n  ProxyJump a\n", &[]);
        let e = r.target("u@a", None).unwrap_err();
        assert!(format!("{e:#}").contains("hops deep"), "{e:#}");
        assert!(r.target("u@a", Some("")).is_err());
    }

    #[test]
    fn proxy_command_tokens() {
        let (_dir, r) =
            resolver("Host far\n  HostName 10.1.0.7\n  Port 2022\n  ProxyCommand ssh -W %h:%p %r@gw # 100%%\n", &[]);
        let t = r.target("bob@far", None).unwrap();
        assert_eq!(t.proxy, Proxy::Command("ssh -W 10.1.0.7:2022 bob@gw".into()));
        let (_dir, r) = resolver("Host far\n  ProxyCommand nc %x\n", &[]);
        assert!(format!("{:#}", r.target("bob@far", None).unwrap_err()).contains("unknown %x"));
        let (_dir, r) = resolver("Host far\n  ProxyCommand none\n", &[]);
        assert_eq!(r.target("bob@far", None).unwrap().proxy, Proxy::Direct);
    }

    #[test]
    fn authentication_options() {
        let text = "Host *\n  BatchMode yes\n  PasswordAuthentication no\n  NumberOfPasswordPrompts 1\n  \
                    AddKeysToAgent yes\n  CertificateFile /k/c-cert.pub\n";
        let (_dir, r) = resolver(text, &[]);
        let a = r.target("u@h", None).unwrap().auth;
        assert!(a.batch_mode && !a.password && a.kbd_interactive && a.pubkey && a.add_keys_to_agent);
        assert_eq!((a.password_prompts, a.certificates), (1, vec![PathBuf::from("/k/c-cert.pub")]));
        let (_dir, r) = resolver("BatchMode maybe\n", &[]);
        assert!(r.target("u@h", None).is_err());
        let (_dir, r) = resolver("", &[]);
        let a = r.target("u@h", None).unwrap().auth;
        assert!(!a.batch_mode && a.password && a.kbd_interactive && a.password_prompts == 3);
    }
}
