//! SSH authentication as OpenSSH does it, in the order the server offers its methods: public
//! keys (the agent's, then the key files, each key's certificate before the key itself),
//! keyboard-interactive (the server's prompts shown escaped, as it sends them), password.
//! Where a key is at hand with no question to ask (the agent's, or a file without a
//! passphrase), it is tried first, and its refusal tells the server's methods: asking with
//! `none` first, as OpenSSH does, cost OpenSSH's sshd 13 ms more per login
//! (docs/benchmarks.md#where-each-files-time-goes-2026-12-07).
//! A key with a passphrase, a password and the answers of keyboard-interactive are asked
//! through [`prompt`]: three tries each (`NumberOfPasswordPrompts`), none at all in
//! `BatchMode`. What worked is remembered for the other sessions of the same run (`-j`,
//! a rotation), so the user is asked once, and one question is on the terminal at a time.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use russh::client::{self, AuthResult, Handle, KeyboardInteractiveAuthResponse as Kbd};
use russh::keys::{self, HashAlg, PrivateKey, PrivateKeyWithHashAlg};
use russh::{MethodKind, MethodSet};

use crate::error::{classified, Kind};
use crate::ftp::shown::{shown, shown_lines};
use crate::ssh::endpoint::SshTarget;
use crate::ssh::prompt::{self, Asker, Secret};

/// One question at a time on the terminal, whichever session asks.
static ASKING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
/// Keys decrypted with their passphrase, by file.
static KEYS: Mutex<Option<HashMap<PathBuf, Arc<PrivateKey>>>> = Mutex::new(None);
/// Passwords and keyboard-interactive answers that were accepted, by `user@host:port`.
static ANSWERS: Mutex<Option<HashMap<String, Vec<Secret>>>> = Mutex::new(None);

/// How one method ended.
enum Outcome {
    Success,
    /// Accepted, and the server wants more: these methods.
    Partial(MethodSet),
    Failed,
}

impl From<AuthResult> for Outcome {
    fn from(r: AuthResult) -> Outcome {
        match r {
            AuthResult::Success => Outcome::Success,
            AuthResult::Failure { partial_success: true, remaining_methods } => Outcome::Partial(remaining_methods),
            AuthResult::Failure { .. } => Outcome::Failed,
        }
    }
}

/// Authenticate `handle` as `target.user`; the error says what was tried and why it failed
/// (a connection lost on the way is [`Kind::SshLost`]).
pub async fn authenticate<H: client::Handler>(handle: &mut Handle<H>, target: &SshTarget) -> Result<()> {
    methods(handle, target).await.map_err(|e| match crate::error::kind(&e) {
        Some(_) => e,
        None => classified(
            Kind::SshLost,
            format!("SSH authentication with {}:{} broke off: {e:#}", target.host, target.port),
        ),
    })
}

async fn methods<H: client::Handler>(handle: &mut Handle<H>, target: &SshTarget) -> Result<()> {
    let mut run =
        Run { handle, target, asker: prompt::asker(target.auth.batch_mode), tried: Vec::new(), offered: None };
    let user = target.user.clone();
    let mut done: Vec<MethodKind> = Vec::new();
    let mut partial = None;
    if target.auth.pubkey && key_at_hand(target) {
        match run.publickey().await? {
            Outcome::Success => return Ok(()),
            Outcome::Partial(more) => partial = Some(more),
            Outcome::Failed => done.push(MethodKind::PublicKey),
        }
    }
    let mut offered = match (partial, run.offered.clone()) {
        (Some(more), _) => more,
        (None, Some(offered)) => offered,
        // "none" makes the server tell its methods, in its order.
        (None, None) => match run.handle.authenticate_none(&user).await.context("SSH authentication")? {
            AuthResult::Success => return Ok(()),
            AuthResult::Failure { remaining_methods, .. } => remaining_methods,
        },
    };
    let first_offer = names(&offered);
    loop {
        let auth = &target.auth;
        let next = offered.iter().copied().find(|m| {
            !done.contains(m)
                && match m {
                    MethodKind::PublicKey => auth.pubkey,
                    MethodKind::KeyboardInteractive => auth.kbd_interactive,
                    MethodKind::Password => auth.password,
                    _ => false,
                }
        });
        let Some(method) = next else { break };
        let outcome = match method {
            MethodKind::PublicKey => run.publickey().await?,
            MethodKind::KeyboardInteractive => run.keyboard_interactive().await?,
            _ => run.password().await?,
        };
        match outcome {
            Outcome::Success => return Ok(()),
            Outcome::Partial(more) => {
                tracing::info!("{} accepted; the server wants more: {}", name(method), names(&more));
                (offered, done) = (more, Vec::new());
            }
            Outcome::Failed => done.push(method),
        }
    }
    let tried = if run.tried.is_empty() {
        "no usable key found (give one with -i), and no other method to try".to_string()
    } else {
        format!("tried {}", run.tried.join("; "))
    };
    Err(classified(
        Kind::Ssh,
        format!(
            "SSH server {}:{} refused authentication as {user} (it offers {first_offer}): {tried}",
            target.host, target.port
        ),
    ))
}

struct Run<'a, H: client::Handler> {
    handle: &'a mut Handle<H>,
    target: &'a SshTarget,
    asker: Asker,
    tried: Vec<String>,
    /// The methods the server's last refusal offered.
    offered: Option<MethodSet>,
}

/// A key that can be tried without asking anything: the agent's, or a key file without a
/// passphrase.
fn key_at_hand(target: &SshTarget) -> bool {
    std::env::var_os("SSH_AUTH_SOCK").is_some()
        || target.identities.iter().any(|path| path.exists() && keys::load_secret_key(path, None).is_ok())
}

/// Loading the key in `path` would ask its passphrase (none given yet in this run).
fn would_ask(path: &Path) -> bool {
    matches!(keys::load_secret_key(path, None), Err(keys::Error::KeyIsEncrypted)) && decrypted(path).is_none()
}

/// The key in `path` as decrypted earlier in this run.
fn decrypted(path: &Path) -> Option<Arc<PrivateKey>> {
    KEYS.lock().unwrap().as_ref().and_then(|k| k.get(path).cloned())
}

impl<H: client::Handler> Run<'_, H> {
    fn user(&self) -> String {
        self.target.user.clone()
    }

    fn account(&self) -> String {
        format!("{}@{}:{}", self.target.user, self.target.host, self.target.port)
    }

    /// Ask off the async thread (a terminal read blocks), one question at a time.
    async fn ask(&self, prompt: String, echo: bool) -> Result<Secret> {
        let asker = self.asker.clone();
        tokio::task::spawn_blocking(move || asker.ask(&prompt, echo)).await.context("the question was cancelled")?
    }

    /// Note what a refusal says the server still offers.
    fn refused(&mut self, r: &AuthResult) {
        if let AuthResult::Failure { remaining_methods, partial_success: false } = r {
            self.offered = Some(remaining_methods.clone());
        }
    }

    /// The server no longer offers public keys: no other key is tried (nor its passphrase asked).
    fn keys_refused(&self) -> bool {
        self.offered.as_ref().is_some_and(|m| !m.contains(&MethodKind::PublicKey))
    }

    async fn publickey(&mut self) -> Result<Outcome> {
        let user = self.user();
        if let Ok(mut agent) = keys::agent::client::AgentClient::connect_env().await {
            for identity in agent.request_identities().await.unwrap_or_default() {
                let keys::agent::AgentIdentity::PublicKey { key, comment } = identity else { continue };
                let hash = self.rsa_hash(&key).await;
                let ok = self.handle.authenticate_publickey_with(&user, key, hash, &mut agent).await;
                tracing::debug!("agent key {comment}: {ok:?}");
                match ok {
                    Ok(r @ AuthResult::Success) | Ok(r @ AuthResult::Failure { partial_success: true, .. }) => {
                        return Ok(r.into())
                    }
                    Ok(r) => self.refused(&r),
                    Err(_) => {}
                }
                self.tried.push(format!("agent key {comment}"));
                if self.keys_refused() {
                    return Ok(Outcome::Failed);
                }
            }
        }
        for path in self.target.identities.clone() {
            if !path.exists() || self.keys_refused() {
                continue;
            }
            if self.offered.is_none() && would_ask(&path) {
                // Nothing tried told the server's methods (an agent without keys): learn them
                // before a passphrase is asked, as ssh does, for a server that takes no keys.
                match self.handle.authenticate_none(&user).await.context("SSH authentication")? {
                    AuthResult::Success => return Ok(Outcome::Success),
                    r => self.refused(&r),
                }
                if self.keys_refused() {
                    continue;
                }
            }
            let Some(key) = self.load(&path).await? else { continue };
            for cert in self.certificates(&path, &key) {
                let r = self.handle.authenticate_openssh_cert(&user, key.clone(), cert).await;
                let r = r.with_context(|| format!("SSH authentication with the certificate of {}", path.display()))?;
                tracing::debug!("certificate of {}: {r:?}", path.display());
                if !matches!(r, AuthResult::Failure { partial_success: false, .. }) {
                    return Ok(r.into());
                }
                self.refused(&r);
                self.tried.push(format!("{} (certificate)", path.display()));
            }
            let hash = self.rsa_hash(key.public_key()).await;
            let r = self
                .handle
                .authenticate_publickey(&user, PrivateKeyWithHashAlg::new(key, hash))
                .await
                .with_context(|| format!("SSH authentication with {} failed", path.display()))?;
            tracing::debug!("key {}: {r:?}", path.display());
            if !matches!(r, AuthResult::Failure { partial_success: false, .. }) {
                return Ok(r.into());
            }
            self.refused(&r);
            self.tried.push(path.display().to_string());
        }
        Ok(Outcome::Failed)
    }

    /// The key in `path`, its passphrase asked if it has one; None: skipped (and said why).
    async fn load(&mut self, path: &Path) -> Result<Option<Arc<PrivateKey>>> {
        match keys::load_secret_key(path, None) {
            Ok(k) => return Ok(Some(Arc::new(k))),
            Err(keys::Error::KeyIsEncrypted) => {}
            Err(e) => {
                tracing::warn!("skipping key {}: {e}", path.display());
                return Ok(None);
            }
        }
        if let Some(key) = decrypted(path) {
            return Ok(Some(key));
        }
        let _turn = ASKING.lock().await;
        if let Some(key) = decrypted(path) {
            return Ok(Some(key)); // another session asked meanwhile
        }
        let shown_path = shown(&path.display().to_string()).into_owned();
        for attempt in 0..self.target.auth.password_prompts.max(1) {
            let question = match attempt {
                0 => format!("Enter passphrase for key '{shown_path}': "),
                _ => format!("Bad passphrase, try again for key '{shown_path}': "),
            };
            let passphrase = match self.ask(question, false).await {
                Ok(p) => p,
                Err(e) => {
                    self.tried.push(format!("{shown_path}: it has a passphrase, and {e:#}"));
                    return Ok(None);
                }
            };
            if let Ok(key) = keys::load_secret_key(path, Some(&passphrase)) {
                let key = Arc::new(key);
                KEYS.lock().unwrap().get_or_insert_with(HashMap::new).insert(path.to_path_buf(), key.clone());
                if self.target.auth.add_keys_to_agent {
                    add_to_agent(&key, path).await;
                }
                return Ok(Some(key));
            }
        }
        self.tried.push(format!("{shown_path}: wrong passphrase ({} tries)", self.target.auth.password_prompts.max(1)));
        Ok(None)
    }

    /// `KEY-cert.pub` and `CertificateFile`s that certify this key.
    fn certificates(&self, path: &Path, key: &PrivateKey) -> Vec<keys::Certificate> {
        let mut beside = path.as_os_str().to_owned();
        beside.push("-cert.pub");
        let files = std::iter::once(PathBuf::from(beside)).chain(self.target.auth.certificates.iter().cloned());
        let mut found = Vec::new();
        for file in files.filter(|f| f.exists()) {
            match keys::load_openssh_certificate(&file) {
                Ok(cert) if cert.public_key() == key.public_key().key_data() => found.push(cert),
                Ok(_) => {}
                Err(e) => tracing::warn!("skipping certificate {}: {e}", file.display()),
            }
        }
        found
    }

    async fn password(&mut self) -> Result<Outcome> {
        let (user, account) = (self.user(), self.account());
        // Taken first: a session that waited for another's question finds its answer.
        let _turn = ASKING.lock().await;
        if let Some(known) = remembered(&account).and_then(|a| a.into_iter().next()) {
            let r = self.handle.authenticate_password(&user, known.as_str()).await.context("SSH authentication")?;
            if !matches!(r, AuthResult::Failure { partial_success: false, .. }) {
                return Ok(r.into());
            }
        }
        let tries = self.target.auth.password_prompts.max(1);
        let question = format!("{}@{}'s password: ", shown(&user), shown(&self.target.host));
        for _ in 0..tries {
            let password = match self.ask(question.clone(), false).await {
                Ok(p) => p,
                Err(e) => {
                    self.tried.push(format!("password: {e:#}"));
                    return Ok(Outcome::Failed);
                }
            };
            let r = self.handle.authenticate_password(&user, password.as_str()).await.context("SSH authentication")?;
            if !matches!(r, AuthResult::Failure { partial_success: false, .. }) {
                remember(&account, vec![password]);
                return Ok(r.into());
            }
            self.asker.tell("Permission denied, please try again.");
        }
        self.tried.push(format!("password: refused {tries} times"));
        Ok(Outcome::Failed)
    }

    async fn keyboard_interactive(&mut self) -> Result<Outcome> {
        let account = self.account();
        let _turn = ASKING.lock().await;
        let mut known = remembered(&account);
        let tries = self.target.auth.password_prompts.max(1);
        for _ in 0..tries {
            let mut answers_given = Vec::new();
            let mut reply = self.handle.authenticate_keyboard_interactive_start(self.user(), None).await?;
            loop {
                match reply {
                    Kbd::Success => {
                        remember(&account, answers_given);
                        return Ok(Outcome::Success);
                    }
                    Kbd::Failure { partial_success: true, remaining_methods } => {
                        return Ok(Outcome::Partial(remaining_methods))
                    }
                    Kbd::Failure { .. } => break,
                    Kbd::InfoRequest { name, instructions, prompts } => {
                        for text in [name, instructions].iter().filter(|t| !t.is_empty()) {
                            self.asker.tell(&shown_lines(text));
                        }
                        let mut answers = Vec::new();
                        for p in prompts {
                            // A remembered answer is tried once, in the order it was given.
                            let answer = match known.as_mut().filter(|k| !k.is_empty()) {
                                Some(k) => k.remove(0),
                                None => match self.ask(shown_lines(&p.prompt).into_owned(), p.echo).await {
                                    Ok(a) => a,
                                    Err(e) => {
                                        self.tried.push(format!("keyboard-interactive: {e:#}"));
                                        return Ok(Outcome::Failed);
                                    }
                                },
                            };
                            answers.push(answer.to_string());
                            answers_given.push(answer);
                        }
                        reply = self.handle.authenticate_keyboard_interactive_respond(answers).await?;
                    }
                }
            }
            known = None;
            self.asker.tell("Permission denied, please try again.");
        }
        self.tried.push(format!("keyboard-interactive: refused {tries} times"));
        Ok(Outcome::Failed)
    }

    async fn rsa_hash(&self, key: &keys::PublicKey) -> Option<HashAlg> {
        if key.algorithm().is_rsa() {
            self.handle.best_supported_rsa_hash().await.ok().flatten().flatten()
        } else {
            None
        }
    }
}

fn remembered(account: &str) -> Option<Vec<Secret>> {
    ANSWERS.lock().unwrap().as_ref().and_then(|a| a.get(account).cloned())
}

fn remember(account: &str, answers: Vec<Secret>) {
    ANSWERS.lock().unwrap().get_or_insert_with(HashMap::new).insert(account.to_string(), answers);
}

/// `AddKeysToAgent yes`: hand the decrypted key to the agent, as ssh does (best effort).
async fn add_to_agent(key: &PrivateKey, path: &Path) {
    match keys::agent::client::AgentClient::connect_env().await {
        Ok(mut agent) => match agent.add_identity(key, &[]).await {
            Ok(()) => tracing::info!("added {} to the agent", path.display()),
            Err(e) => tracing::warn!("could not add {} to the agent: {e}", path.display()),
        },
        Err(e) => tracing::warn!("AddKeysToAgent: no agent to add {} to: {e}", path.display()),
    }
}

fn name(m: MethodKind) -> &'static str {
    (&m).into()
}

fn names(methods: &MethodSet) -> String {
    methods.iter().map(|m| name(*m)).collect::<Vec<_>>().join(", ")
}
