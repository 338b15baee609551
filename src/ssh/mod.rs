//! The SSH session: connect, check the host key, authenticate, and open the
//! channels everything else rides on (exec, direct-tcpip, tcpip-forward).
//!
//! Forwarded-tcpip channels (the FTP server's data connections coming back
//! through the reverse forward) are judged by the [`Gate`] inside the russh
//! event loop, and the admitted ones are handed over on a queue.

pub mod ciphers;
pub mod endpoint;
pub mod gate;
pub mod helper;
pub mod hostkeys;
pub mod origin;
pub mod quickack;
pub mod reclaimer;
pub mod relay;
pub mod shell;
pub mod tuple_state;

use std::borrow::Cow;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use russh::client::{self, Handle, Msg};
use russh::keys::{self, HashAlg, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh::{Channel, ChannelOpenFailure};
use tokio::sync::mpsc;

use crate::error::{classified, Kind};
use crate::events::{Event, Events};
use crate::ssh::endpoint::SshTarget;
use gate::{Arrival, Checked, DataChannel, Gate};
use helper::Lazy;
use hostkeys::{Offered, Policy};

/// Each channel's receive window: what the server may send before we
/// acknowledge. russh's 2 MiB (OpenSSH's too) caps a transfer at 2 MiB per
/// round trip, which a distant server feels; on loopback the size makes no
/// difference (docs/benchmarks.md#measured-effects).
const WINDOW_SIZE: u32 = 16 << 20;

/// How long to wait for the SSH server to answer at all.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Keepalives notice a dead SSH connection: 3 unanswered, 10 s apart.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_MAX: usize = 3;
/// How often [`Session::attribute`] looks whether the session has closed yet.
const LOSS_POLL: Duration = Duration::from_millis(20);
/// How long a remote helper (the relay, the remote shell) may take to answer.
pub const EXEC_TIMEOUT: Duration = Duration::from_secs(20);
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
    reclaimer: Lazy<reclaimer::Reclaimer>,
    /// [`Session::check_origins`] has run (once a session, whatever it found).
    origin_tried: tokio::sync::Mutex<bool>,
    events: Events,
    incoming: tokio::sync::Mutex<mpsc::UnboundedReceiver<Arrival>>,
    /// Decides which forwarded connections are admitted.
    pub gate: Arc<Gate>,
    /// Where we are connected.
    pub target: SshTarget,
}

struct Client {
    host: String,
    port: u16,
    known_hosts: Policy,
    /// Why the host key was refused, for the error `connect` returns.
    refusal: Arc<Mutex<Option<String>>>,
    gate: Arc<Gate>,
    /// Connections past the gate's quick checks, to the task that proves their origin.
    checking: mpsc::UnboundedSender<Checked>,
}

impl client::Handler for Client {
    type Error = russh::Error;

    async fn check_server_key(&mut self, key: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        let offered = match key {
            PublicKeyOrCertificate::PublicKey { key, .. } => Offered::Key(key),
            PublicKeyOrCertificate::Certificate(cert) => Offered::Certificate(cert),
        };
        match self.known_hosts.check(&self.host, self.port, offered, hostkeys::policy::now()) {
            Ok(()) => Ok(true),
            Err(why) => {
                *self.refusal.lock().unwrap() = Some(why);
                Ok(false)
            }
        }
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
        let data = DataChannel {
            channel,
            originator: (originator_address.to_string(), originator_port),
            connected: (connected_address.to_string(), connected_port),
            incarnation: 0,
            early: Vec::new(),
            ended: false,
        };
        // The gate answers sshd, and hands it over once its origin is proven.
        self.gate.arrive(data, reply, &self.checking);
        Ok(())
    }
}

impl Session {
    /// Connect, check the host key against the target's known_hosts files, and
    /// authenticate with the ssh-agent and the target's key files. What happens
    /// in this session is told to `events`.
    pub async fn connect(target: &SshTarget, events: Events) -> Result<Session> {
        let events = events.fork(); // what is watched on this session stays with it
        let endpoint = format!("{}:{}", target.host, target.port);
        let wanted = target.known_hosts.wanted(&target.host, target.port, &russh::Preferred::DEFAULT.key);
        let preferred = russh::Preferred {
            key: Cow::Owned(wanted.keys),
            host_key_certificates: Cow::Owned(wanted.certificates),
            cipher: Cow::Owned(target.ciphers.clone()),
            ..Default::default()
        };
        let config = Arc::new(client::Config {
            nodelay: true,
            window_size: WINDOW_SIZE,
            keepalive_interval: Some(KEEPALIVE_INTERVAL),
            keepalive_max: KEEPALIVE_MAX,
            preferred,
            ..Default::default()
        });
        let (tx, rx) = mpsc::unbounded_channel();
        let gate = Arc::new(Gate::new(events.clone(), tx));
        let refusal = Arc::new(Mutex::new(None));
        let client = Client {
            host: target.host.clone(),
            port: target.port,
            known_hosts: target.known_hosts.clone(),
            refusal: refusal.clone(),
            gate: gate.clone(),
            checking: gate.start_checking(),
        };
        let connecting = async {
            let tcp = tokio::net::TcpStream::connect((target.host.as_str(), target.port)).await?;
            tcp.set_nodelay(true)?;
            let ends = (tcp.local_addr()?, tcp.peer_addr()?);
            Ok::<_, russh::Error>((client::connect_stream(config, quickack::QuickAck::new(tcp), client).await?, ends))
        };
        let (handle, (ours, theirs)) = match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
            Err(_) => {
                return Err(classified(
                    Kind::SshLost,
                    format!("SSH server {endpoint} did not answer within {CONNECT_TIMEOUT:?}"),
                ))
            }
            Ok(Ok(h)) => h,
            Ok(Err(e)) => {
                let why = refusal.lock().unwrap().take();
                return Err(match why {
                    Some(why) => classified(Kind::Ssh, why),
                    // No cipher (or other algorithm) in common: trying again cannot help.
                    None if matches!(e, russh::Error::NoCommonAlgo { .. }) => {
                        classified(Kind::Ssh, format!("could not connect to SSH server {endpoint}: {e}"))
                    }
                    None => classified(Kind::SshLost, format!("could not connect to SSH server {endpoint}: {e}")),
                });
            }
        };
        let mut session = Session {
            handle,
            shell: Lazy::default(),
            reclaimer: Lazy::default(),
            origin_tried: Default::default(),
            events,
            incoming: tokio::sync::Mutex::new(rx),
            gate,
            target: target.clone(),
        };
        session.authenticate().await?;
        session.events.emit(Event::SshConnected { client: ours, server: theirs });
        Ok(session)
    }

    async fn authenticate(&mut self) -> Result<()> {
        let user = self.target.user.clone();
        let mut tried = Vec::new();
        if let Ok(mut agent) = keys::agent::client::AgentClient::connect_env().await {
            for identity in agent.request_identities().await.unwrap_or_default() {
                let keys::agent::AgentIdentity::PublicKey { key, comment } = identity else { continue };
                let hash = self.rsa_hash(&key).await;
                let ok = self.handle.authenticate_publickey_with(&user, key, hash, &mut agent).await;
                tracing::debug!("agent key {comment}: {ok:?}");
                if matches!(ok, Ok(client::AuthResult::Success)) {
                    return Ok(());
                }
                tried.push(format!("agent key {comment}"));
            }
        }
        for path in self.target.identities.clone() {
            if !path.exists() {
                continue;
            }
            let key = match keys::load_secret_key(&path, None) {
                Ok(k) => k,
                Err(e) => {
                    tracing::warn!("skipping key {}: {e}", path.display());
                    continue;
                }
            };
            let hash = self.rsa_hash(key.public_key()).await;
            let result = self
                .handle
                .authenticate_publickey(&user, PrivateKeyWithHashAlg::new(Arc::new(key), hash))
                .await
                .with_context(|| format!("SSH authentication with {} failed", path.display()))?;
            tracing::debug!("key {}: {result:?}", path.display());
            if matches!(result, client::AuthResult::Success) {
                return Ok(());
            }
            tried.push(path.display().to_string());
        }
        let tried = if tried.is_empty() {
            "no usable key found (give one with -i)".to_string()
        } else {
            format!("tried {}", tried.join(", "))
        };
        Err(classified(
            Kind::Ssh,
            format!("SSH server {}:{} refused authentication as {user}: {tried}", self.target.host, self.target.port),
        ))
    }

    async fn rsa_hash(&self, key: &keys::PublicKey) -> Option<HashAlg> {
        if key.algorithm().is_rsa() {
            self.handle.best_supported_rsa_hash().await.ok().flatten().flatten()
        } else {
            None
        }
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

    /// Send the SYN that ends the TIME_WAIT of `tuple` on the FTP server's host
    /// (see [`reclaimer`]), through a helper started on first use and shared by
    /// the session's links. False: our own end of the tuple is taken (in
    /// TIME_WAIT itself, when both ends closed at once): no SYN can go out.
    pub async fn reclaim(&self, tuple: &crate::tcp::DataTuple, wait: Duration) -> Result<bool> {
        let mut reclaimer = self.reclaimer.get(self).await?;
        let asking = reclaimer.as_mut().unwrap().ask(tuple, wait, Duration::ZERO, 0);
        let result = match tokio::time::timeout(EXEC_TIMEOUT + wait, asking).await {
            Ok(answer) => answer.map(|(sent, _)| sent),
            Err(_) => Err(anyhow::anyhow!("the reclaiming process did not answer in time")),
        };
        Lazy::reset_on_error(&mut reclaimer, &result);
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

    /// What the gate decided next (an admitted forwarded connection, or why none could be),
    /// or None after `timeout`.
    pub async fn next_data_channel(&self, timeout: Duration) -> Option<Arrival> {
        let mut rx = self.incoming.lock().await;
        tokio::time::timeout(timeout, rx.recv()).await.ok().flatten()
    }

    /// Have the gate prove each data connection's origin by its owner in the SSH server's
    /// socket table ([`origin`]), the FTP server's sockets being root's, ours, or those of
    /// `ftp_user`'s account there. Once per session; where no perl runs there, connections
    /// are judged by address and port alone, as said at `-v`.
    pub async fn check_origins(&self, ftp_user: &str) {
        // Held while it starts: another link of the session waits rather than go unchecked.
        // Set once it ended, either way: a start cancelled half-way is tried again.
        let mut tried = self.origin_tried.lock().await;
        if *tried {
            return;
        }
        let started = async {
            let mut origin = origin::Origin::start(self).await?;
            let ftp = origin.uid_of(if ftp_user == "anonymous" { "ftp" } else { ftp_user }).await?;
            anyhow::Ok((origin, ftp))
        };
        match started.await {
            Ok((origin, ftp)) => {
                let uids = gate::proof::Uids::new(origin.own_uid, ftp, origin.privileged_below);
                tracing::debug!("data connections must be made by uid {:?} (or from a port below {})", uids.server, uids.privileged_below);
                self.gate.check_origins(origin, uids).await;
            }
            Err(e) => tracing::info!("the data connections' origin cannot be checked, only their address and port: {e:#}"),
        }
        *tried = true;
    }

    /// Close forwarded connections left over from an earlier transfer (a
    /// channel merely dropped stays open: the FTP server would wait for its end).
    pub async fn drain_data_channels(&self) {
        let Ok(mut rx) = self.incoming.try_lock() else { return };
        while let Ok(left) = rx.try_recv() {
            if let Arrival::Data(left) = left {
                let _ = left.channel.close().await;
            }
        }
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
        let looks_like_loss = crate::error::find::<crate::ftp::control::ControlClosed>(&err).is_some();
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
    }
}
