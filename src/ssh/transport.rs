//! How the SSH connection's bytes travel to the SSH server: a TCP connection, a
//! `ProxyCommand`'s standard input and output, or a `direct-tcpip` channel of a jump host's
//! SSH session (`ProxyJump`, `-J`). Each hop is a whole SSH session of its own (its host
//! key checked against its own known_hosts, its own authentication) that carries nothing
//! but the next hop's encrypted bytes; only the last session runs the FTP procedure, so
//! P, the forward and the socket tables are the last SSH server's.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use russh::client::{self, Handle};
use russh::keys::PublicKeyOrCertificate;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::error::{classified, Kind};
use crate::ssh::auth;
use crate::ssh::endpoint::{Proxy, SshTarget};
use crate::ssh::hostkeys::{self, Offered};
use crate::ssh::quickack::QuickAck;

/// Each channel's receive window: what the server may send before we acknowledge.
/// russh's 2 MiB (OpenSSH's too) caps a transfer at 2 MiB per round trip, which a
/// distant server feels; on loopback the size makes no difference
/// (docs/benchmarks.md#measured-effects). A jump host's channel carries the whole next
/// session: the same window.
const WINDOW_SIZE: u32 = 16 << 20;
/// How long to wait for the SSH server to answer at all (TCP, then the handshake).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Keepalives notice a dead SSH connection: 3 unanswered, 10 s apart.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_MAX: usize = 3;

/// A byte stream an SSH session can run over.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Stream for T {}

/// An open way to the SSH server.
pub struct Transport {
    /// The bytes to and from the SSH server.
    pub stream: Box<dyn Stream>,
    /// Our end and the server's of a direct TCP connection (None through a proxy).
    pub ends: Option<(SocketAddr, SocketAddr)>,
    /// What must live as long as the session: the hops' sessions, the proxy command.
    pub via: Via,
}

/// The jump hosts' sessions and the proxy command's process, ended with the session.
#[derive(Default)]
pub struct Via {
    hops: Vec<Handle<HostKeyCheck>>,
    /// Killed on drop (tokio's `kill_on_drop`).
    command: Option<tokio::process::Child>,
}

/// How long a proxy command that broke the handshake is given to report its exit.
const COMMAND_EXIT_WAIT: Duration = Duration::from_millis(500);

impl Via {
    /// Why the connection broke, where the proxy command has ended (its exit status).
    pub async fn ended(&mut self) -> Option<String> {
        let child = self.command.as_mut()?;
        let status = tokio::time::timeout(COMMAND_EXIT_WAIT, child.wait()).await.ok()?.ok()?;
        Some(format!("the ProxyCommand ended ({status})"))
    }

    /// `e`, with the proxy command's end if it has ended.
    pub async fn explain(&mut self, e: anyhow::Error) -> anyhow::Error {
        match self.ended().await {
            Some(why) => e.context(why),
            None => e,
        }
    }

    /// Say goodbye to each jump host, the last one first.
    pub async fn close(&self) {
        for hop in self.hops.iter().rev() {
            let _ = hop.disconnect(russh::Disconnect::ByApplication, "bye", "en").await;
        }
    }
}

/// The russh configuration every session of ours uses.
pub fn config(target: &SshTarget) -> Arc<client::Config> {
    let wanted = target.known_hosts.wanted(&target.host, target.port, &russh::Preferred::DEFAULT.key);
    let preferred = russh::Preferred {
        key: std::borrow::Cow::Owned(wanted.keys),
        host_key_certificates: std::borrow::Cow::Owned(wanted.certificates),
        cipher: std::borrow::Cow::Owned(target.ciphers.clone()),
        ..Default::default()
    };
    Arc::new(client::Config {
        nodelay: true,
        window_size: WINDOW_SIZE,
        keepalive_interval: Some(KEEPALIVE_INTERVAL),
        keepalive_max: KEEPALIVE_MAX,
        preferred,
        ..Default::default()
    })
}

/// Judges the server's host key against the target's known_hosts; keeps why it refused.
#[derive(Clone)]
pub struct HostKeyCheck {
    host: String,
    port: u16,
    known_hosts: hostkeys::Policy,
    /// Why the host key was refused, for the error the connection returns.
    pub refusal: Arc<Mutex<Option<String>>>,
}

impl HostKeyCheck {
    /// The check for `target`.
    pub fn new(target: &SshTarget) -> HostKeyCheck {
        HostKeyCheck {
            host: target.host.clone(),
            port: target.port,
            known_hosts: target.known_hosts.clone(),
            refusal: Arc::default(),
        }
    }

    /// True when the key (or certificate) is trusted for this host.
    pub fn judge(&self, key: &PublicKeyOrCertificate) -> bool {
        let offered = match key {
            PublicKeyOrCertificate::PublicKey { key, .. } => Offered::Key(key),
            PublicKeyOrCertificate::Certificate(cert) => Offered::Certificate(cert),
        };
        match self.known_hosts.check(&self.host, self.port, offered, hostkeys::policy::now()) {
            Ok(()) => true,
            Err(why) => {
                *self.refusal.lock().unwrap() = Some(why);
                false
            }
        }
    }

    /// The error of a failed connection: the host key's refusal if there was one.
    pub fn failure(&self, e: russh::Error) -> anyhow::Error {
        let endpoint = format!("{}:{}", self.host, self.port);
        match self.refusal.lock().unwrap().take() {
            Some(why) => classified(Kind::Ssh, why),
            // No cipher (or other algorithm) in common: trying again cannot help.
            None if matches!(e, russh::Error::NoCommonAlgo { .. }) => {
                classified(Kind::Ssh, format!("could not connect to SSH server {endpoint}: {e}"))
            }
            None => classified(Kind::SshLost, format!("could not connect to SSH server {endpoint}: {e}")),
        }
    }
}

/// A jump host's session: its host key checked; it opens no channel towards us.
impl client::Handler for HostKeyCheck {
    type Error = russh::Error;

    async fn check_server_key(&mut self, key: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        Ok(self.judge(key))
    }
}

type Opening<'a> = Pin<Box<dyn Future<Output = Result<Transport>> + Send + 'a>>;

/// Open the way to `target`'s SSH server, through its proxy (recursively, for a chain).
pub fn open(target: &SshTarget) -> Opening<'_> {
    Box::pin(async move {
        match &target.proxy {
            Proxy::Direct => {
                let endpoint = format!("{}:{}", target.host, target.port);
                let connecting = tokio::net::TcpStream::connect((target.host.as_str(), target.port));
                let tcp = match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
                    Err(_) => return Err(silent(target)),
                    Ok(r) => r.map_err(|e| {
                        classified(Kind::SshLost, format!("could not connect to SSH server {endpoint}: {e}"))
                    })?,
                };
                tcp.set_nodelay(true)?;
                let ends = (tcp.local_addr()?, tcp.peer_addr()?);
                Ok(Transport { stream: Box::new(QuickAck::new(tcp)), ends: Some(ends), via: Via::default() })
            }
            Proxy::Command(command) => {
                tracing::info!("SSH to {}:{} through ProxyCommand {command}", target.host, target.port);
                // As ssh: the user's shell runs it, its stderr is ours.
                let shell = std::env::var("SHELL").ok().filter(|s| !s.is_empty()).unwrap_or_else(|| "/bin/sh".into());
                let mut child = tokio::process::Command::new(shell)
                    .arg("-c")
                    .arg(format!("exec {command}"))
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::inherit())
                    .kill_on_drop(true)
                    .spawn()
                    .map_err(|e| classified(Kind::Ssh, format!("could not start ProxyCommand {command}: {e}")))?;
                let (input, output) = (child.stdin.take().unwrap(), child.stdout.take().unwrap());
                let via = Via { hops: Vec::new(), command: Some(child) };
                Ok(Transport { stream: Box::new(tokio::io::join(output, input)), ends: None, via })
            }
            Proxy::Jump(hop) => {
                let mut way = open(hop).await?;
                let check = HostKeyCheck::new(hop);
                let name = || format!("jump host {}:{}", hop.host, hop.port);
                let mut handle = match connect(hop, way.stream, check.clone(), &check).await {
                    Ok(handle) => handle,
                    Err(e) => return Err(way.via.explain(e).await.context(name())),
                };
                auth::authenticate(&mut handle, hop).await.with_context(name)?;
                tracing::info!("jump host {}@{}:{} is up", hop.user, hop.host, hop.port);
                let channel = handle
                    .channel_open_direct_tcpip(target.host.as_str(), target.port as u32, "127.0.0.1", 0)
                    .await
                    .map_err(|e| {
                        classified(
                            Kind::Ssh,
                            format!(
                                "jump host {}:{} could not connect to {}:{}: {e}",
                                hop.host, hop.port, target.host, target.port
                            ),
                        )
                    })?;
                way.via.hops.push(handle);
                Ok(Transport { stream: Box::new(channel.into_stream()), ends: None, via: way.via })
            }
        }
    })
}

/// The SSH handshake over `stream`, within [`CONNECT_TIMEOUT`]; `check` is the handler's
/// host key check (a clone), which says why a refused key was refused.
pub async fn connect<H>(
    target: &SshTarget,
    stream: Box<dyn Stream>,
    handler: H,
    check: &HostKeyCheck,
) -> Result<Handle<H>>
where
    H: client::Handler<Error = russh::Error> + Send + 'static,
{
    match tokio::time::timeout(CONNECT_TIMEOUT, client::connect_stream(config(target), stream, handler)).await {
        Err(_) => Err(silent(target)),
        Ok(Ok(handle)) => Ok(handle),
        Ok(Err(e)) => Err(check.failure(e)),
    }
}

fn silent(target: &SshTarget) -> anyhow::Error {
    let endpoint = format!("{}:{}", target.host, target.port);
    classified(Kind::SshLost, format!("SSH server {endpoint} did not answer within {CONNECT_TIMEOUT:?}"))
}
