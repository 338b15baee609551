//! The SSH session: connect, check the host key, authenticate, and open the
//! channels everything else rides on (exec, direct-tcpip, tcpip-forward).
//!
//! Forwarded-tcpip channels (the FTP server's data connections coming back
//! through the reverse forward) go, inside the russh event loop, to the
//! [`Receiver`] the data path installed ([`Session::forwarded_to`]).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{Context, Result};
use russh::client::{self, Handle, Msg};
use russh::keys::PublicKeyOrCertificate;
use russh::{Channel, ChannelOpenFailure};

use crate::error::{classified, Kind};
use crate::events::{Event, Events};
use crate::ssh::endpoint::{self, SshTarget};
use crate::ssh::forwarded::{Forwarded, Receiver};
use crate::ssh::helper::{Exec, Lazy};
use crate::ssh::transport::{self, HostKeyCheck};
use crate::ssh::{auth, shell};

/// How often [`Session::attribute`] looks whether the session has closed yet.
const LOSS_POLL: Duration = Duration::from_millis(20);
/// A channel sees the end of a lost SSH connection a moment before the
/// session itself is marked closed: how long to look before blaming the FTP server.
const LOSS_GRACE: Duration = Duration::from_secs(2);
/// How long the SSH server may take to answer a ping after a failure before
/// the connection counts as lost (see [`Session::attribute`]).
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// An authenticated SSH session.
pub struct Session {
    handle: Handle<Client>,
    shell: Lazy<shell::Shell>,
    events: Events,
    /// Where forwarded channels go, once the data path installed it.
    forwarded: Arc<OnceLock<Arc<dyn Receiver>>>,
    /// Where we are connected.
    pub target: SshTarget,
    /// The jump hosts' sessions or the proxy command that carry this one.
    via: transport::Via,
}

struct Client {
    host_key: HostKeyCheck,
    forwarded: Arc<OnceLock<Arc<dyn Receiver>>>,
}

impl client::Handler for Client {
    type Error = russh::Error;

    async fn check_server_key(&mut self, key: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        Ok(self.host_key.judge(key))
    }

    async fn server_channel_open_forwarded_tcpip(
        &mut self,
        channel: Channel<Msg>,
        connected_address: &str,
        connected_port: u32,
        originator_address: &str,
        originator_port: u32,
        reply: client::ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        let originator = (originator_address.to_string(), originator_port);
        let connected = (connected_address.to_string(), connected_port);
        let Some(receiver) = self.forwarded.get() else {
            // No forward was asked for: dropping the reply rejects the channel.
            tracing::warn!(
                "refused a forwarded channel from {originator:?} to {connected:?}: no forward was asked for"
            );
            return Ok(());
        };
        // Confirmed here, in the event loop's own turn: sshd sends nothing before it.
        match receiver.arrive(Forwarded { channel, originator, connected }) {
            true => reply.accept().await,
            false => reply.reject(ChannelOpenFailure::AdministrativelyProhibited).await,
        }
        Ok(())
    }
}

impl Session {
    /// Connect (directly, through ProxyCommand, or through jump hosts), check the host
    /// key against the target's known_hosts files, and authenticate ([`auth`]). What
    /// happens in this session is told to `events`.
    pub async fn connect(target: &SshTarget, events: Events) -> Result<Session> {
        let events = events.fork(); // what is watched on this session stays with it
        let forwarded = Arc::new(OnceLock::new());
        let host_key = HostKeyCheck::new(target);
        let client = Client { host_key: host_key.clone(), forwarded: forwarded.clone() };
        let mut way = transport::open(target).await?;
        let mut handle = match transport::connect(target, way.stream, client, &host_key).await {
            Ok(handle) => handle,
            Err(e) => return Err(way.via.explain(e).await),
        };
        auth::authenticate(&mut handle, target).await?;
        match way.ends {
            Some((client, server)) => events.emit(Event::SshConnected { client, server }),
            // The last SSH server sees the jump host (or whatever the command reached) as its client.
            None => {
                tracing::info!("SSH connection to {}:{} is up, through {}", target.host, target.port, via_name(target))
            }
        }
        Ok(Session { handle, shell: Lazy::default(), events, forwarded, target: target.clone(), via: way.via })
    }

    /// Where this session's events go.
    pub fn events(&self) -> &Events {
        &self.events
    }

    /// Run a command line in the session's long-lived remote shell (started on
    /// first use) and return its standard output. For quick, frequent reads.
    pub async fn shell(&self, command: &str) -> Result<String> {
        let mut shell = self.shell.get(self).await?;
        let result = shell.as_mut().unwrap().run(command).await;
        Lazy::reset_on_error(&mut shell, &result);
        result
    }

    /// Start a command on the SSH server and return its channel (stdin/stdout as data).
    pub async fn exec_channel(&self, command: &str) -> Result<Channel<Msg>> {
        let channel = self
            .handle
            .channel_open_session()
            .await
            .map_err(|e| classified(Kind::SshLost, format!("SSH server refused a session channel: {e}")))?;
        channel.exec(true, command).await.context("could not start a remote command")?;
        Ok(channel)
    }

    /// Open a TCP connection from the SSH server to `host:port` (the `-L` of the book).
    pub async fn direct_tcpip(&self, host: &str, port: u16) -> Result<Channel<Msg>> {
        let opened = self.handle.channel_open_direct_tcpip(host, port as u32, "127.0.0.1", 0).await;
        opened.map_err(|e| match e {
            russh::Error::ChannelOpenFailure(ChannelOpenFailure::ConnectFailed) => {
                classified(Kind::FtpRefused, format!("{host}:{port} is not reachable from the SSH server (nothing listening, or no route)"))
            }
            russh::Error::ChannelOpenFailure(ChannelOpenFailure::AdministrativelyProhibited) => classified(
                Kind::Ssh,
                format!("the SSH server refused to open a connection to {host}:{port} for us (administratively prohibited: is AllowTcpForwarding off?)"),
            ),
            e => classified(Kind::SshLost, format!("the SSH server could not connect to {host}:{port}: {e}")),
        })
    }

    /// Ask the SSH server to listen on `address:port` and forward connections to us (`-R`).
    pub async fn tcpip_forward(&self, address: &str, port: u16) -> Result<()> {
        tracing::info!("tcpip-forward {address}:{port}");
        self.handle.tcpip_forward(address, port as u32).await.map(|_| ()).map_err(|e| {
            classified(Kind::Ssh, format!("SSH server refused to forward {address}:{port} back to us ({e})"))
        })
    }

    /// Undo [`Session::tcpip_forward`].
    pub async fn cancel_tcpip_forward(&self, address: &str, port: u16) -> Result<()> {
        self.handle.cancel_tcpip_forward(address, port as u32).await.context("could not cancel a forward")
    }

    /// The receiver of this session's forwarded channels: the one installed, else the one
    /// `make` builds from the session's events (installed from then on). One type per
    /// session: the data path is the only one that asks for forwards.
    pub fn forwarded_to<R: Receiver>(&self, make: impl FnOnce(&Events) -> Arc<R>) -> &R {
        let receiver = self.forwarded.get_or_init(|| make(&self.events));
        let any: &dyn std::any::Any = receiver.as_ref();
        any.downcast_ref().expect("one kind of receiver for a session's forwarded channels")
    }

    /// True once the SSH connection is gone (dropped, killed, or closed).
    pub fn is_closed(&self) -> bool {
        self.handle.is_closed()
    }

    /// Name the failure where it happened: an error met while this session
    /// was dying (a channel's end looks like the FTP server closing) is an
    /// SSH failure, passing ([`Kind::SshLost`]); any other is returned as is.
    pub async fn attribute(&self, err: anyhow::Error) -> anyhow::Error {
        if matches!(crate::error::kind(&err), Some(Kind::Ssh | Kind::SshLost)) {
            return err;
        }
        let deadline = tokio::time::Instant::now() + LOSS_GRACE;
        let looks_like_loss = crate::error::find::<crate::error::Closed>(&err).is_some();
        while !self.is_closed() && looks_like_loss && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(LOSS_POLL).await;
        }
        let endpoint = format!("{}:{}", self.target.host, self.target.port);
        if !self.is_closed() {
            // A cut link or a frozen server closes nothing (keepalives take 30 s to
            // give up): ask the server whether it is still there.
            if tokio::time::timeout(PROBE_TIMEOUT, self.handle.send_ping()).await.is_ok() {
                return err;
            }
            return classified(Kind::SshLost, format!("the SSH connection to {endpoint} stopped answering ({err:#})"));
        }
        if looks_like_loss {
            // The FTP channels ended because the session did: the FTP server is not to blame.
            let doing = if err.chain().count() > 1 { format!("{err}: ") } else { String::new() };
            return classified(Kind::SshLost, format!("{doing}the SSH connection to {endpoint} was lost"));
        }
        classified(Kind::SshLost, format!("the SSH connection to {endpoint} was lost ({err:#})"))
    }

    /// Say goodbye to the SSH server.
    pub async fn close(&self) {
        let _ = self.handle.disconnect(russh::Disconnect::ByApplication, "bye", "en").await;
        self.via.close().await;
    }
}

impl Exec for Session {
    async fn exec_channel(&self, command: &str) -> Result<Channel<Msg>> {
        Session::exec_channel(self, command).await
    }
}

/// How a proxied session travels, for the trace.
fn via_name(target: &SshTarget) -> String {
    match &target.proxy {
        endpoint::Proxy::Direct => "a direct connection".to_string(),
        endpoint::Proxy::Command(c) => format!("ProxyCommand {c}"),
        endpoint::Proxy::Jump(hop) => format!("jump host {}:{}", hop.host, hop.port),
    }
}
