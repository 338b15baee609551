//! One FTP session carried entirely inside SSH: the control connection and a
//! way to get data connections through the tunnel too.
//!
//! Two data paths, never one that crosses the network in plaintext (no PORT,
//! no EPRT is ever sent):
//!
//! - **default port** (the book's way, RFC 959 with neither PORT nor PASV):
//!   the FTP server connects back to the control connection's source
//!   address, port U-1 (ProFTPD) or U (RFC 959 servers). We find that port
//!   and have sshd listen there (tcpip-forward), so the data arrives as a
//!   forwarded channel.
//! - **passive**: EPSV (or PASV), then sshd connects to the announced port
//!   for us (direct-tcpip). Used when the server refuses the default port.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, Result};
use russh::client::Msg;
use russh::Channel;

use crate::discovery;
use crate::endpoint::FtpTarget;
use crate::error::{classified, Kind};
use crate::forward::ReverseForward;
use crate::ftp::control::{Control, FtpError};
use crate::ftp::passive::{parse_epsv, parse_pasv};
use crate::ftp::{Command, Reply};
use crate::pacing::{self, DataTuple};
use crate::relay;
use crate::session::Session;

/// Control connections tried for a usable proxy port before giving up.
const MAX_PROXY_TRIES: usize = 4;
/// How long a forced default-port transfer waits for the server to connect.
pub const DATA_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// In `auto` mode, a server that said 150 and has not connected after this
/// long is taken to refuse the default port (pyftpdlib just hangs).
pub const AUTO_CONNECT_BOUND: Duration = Duration::from_secs(4);

/// How data connections are made (`--data-mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DataMode {
    /// Default port first; passive if the server refuses it.
    Auto,
    /// Only the default-port path (the book's procedure).
    DefaultPort,
    /// Only EPSV/PASV through SSH.
    Passive,
}

/// Who logs in.
#[derive(Clone)]
pub struct Login {
    /// FTP user name.
    pub user: String,
    /// FTP password (never logged).
    pub password: String,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Login {{ user: {:?}, password: **** }}", self.user)
    }
}

/// Everything needed to (re)open an FTP session: where, who, how.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The FTP server as the SSH server reaches it.
    pub ftp: FtpTarget,
    /// Who logs in.
    pub login: Login,
    /// How data connections are made.
    pub mode: DataMode,
    /// How long to wait for any FTP reply.
    pub timeout: Duration,
}

/// A data connection whose transfer command the server has accepted.
pub struct Data {
    /// The channel carrying the bytes.
    pub channel: Channel<Msg>,
    /// The size announced in the 150 reply, if any.
    pub announced: Option<u64>,
}

/// An FTP session inside SSH.
pub struct Link<'s> {
    session: &'s Session,
    /// The control connection.
    pub control: Control,
    spec: Spec,
    /// The FTP server's address as the SSH server reaches it: data must come from there.
    ftp_ip: Option<IpAddr>,
    forward: Option<ReverseForward>,
    passive: bool,
    /// Where the last forwarded data connection came from (its port shows
    /// whether the server's data source port is fixed).
    last_origin: Option<(IpAddr, u16)>,
    /// Which forwarded port it connected to.
    last_proxy_port: Option<u16>,
}

impl<'s> Link<'s> {
    /// Connect to the FTP server through `session`, prepare the data path, log in.
    pub async fn open(session: &'s Session, spec: &Spec) -> Result<Link<'s>> {
        let mut link = if spec.mode == DataMode::Passive {
            let (control, _) = connect_direct(session, spec).await?;
            Link::new(session, control, spec, None)
        } else {
            open_default_port(session, spec).await?
        };
        link.passive |= spec.mode == DataMode::Passive;
        link.control.login(&spec.login.user, &spec.login.password).await?;
        Ok(link)
    }

    fn new(session: &'s Session, control: Control, spec: &Spec, ftp_ip: Option<IpAddr>) -> Self {
        Link {
            session,
            control,
            spec: spec.clone(),
            ftp_ip,
            forward: None,
            passive: false,
            last_origin: None,
            last_proxy_port: None,
        }
    }

    /// The data connection's 4-tuple as far as known: the FTP server's
    /// address and last data source port, and the forwarded port.
    pub fn data_tuple(&self) -> Option<DataTuple> {
        let forward = self.forward.as_ref()?;
        let port = self.last_proxy_port.or(forward.ports.first().copied())?;
        let proxy = SocketAddr::new(forward.address.parse().ok()?, port);
        let (server, server_port) = match self.last_origin {
            Some((ip, port)) => (ip, Some(port)),
            None => (self.ftp_ip?, None),
        };
        Some(DataTuple { server, server_port, proxy })
    }

    /// The session this link runs in.
    pub fn session(&self) -> &'s Session {
        self.session
    }

    /// True once this session moves data over EPSV/PASV.
    pub fn is_passive(&self) -> bool {
        self.passive
    }

    /// Send a transfer command (RETR, STOR, LIST, NLST) and get its data connection.
    pub async fn start(&mut self, cmd: &Command) -> Result<Data> {
        if self.passive {
            return self.start_passive(cmd).await;
        }
        match self.start_default_port(cmd).await {
            Ok(data) => Ok(data),
            Err(e) if self.spec.mode == DataMode::Auto && e.downcast_ref::<Refused>().is_some() => {
                tracing::info!("the FTP server does not do default-port transfers ({e:#}); switching to passive (EPSV/PASV inside SSH) for this session");
                self.become_passive(matches!(e.downcast_ref::<Refused>(), Some(Refused::NoConnection))).await?;
                self.start_passive(cmd).await
            }
            Err(e) if e.downcast_ref::<Refused>().is_some() => Err(classified(
                Kind::Transfer,
                format!("the FTP server refuses default-port transfers ({e:#}); try --data-mode passive"),
            )),
            Err(e) => Err(e),
        }
    }

    async fn start_default_port(&mut self, cmd: &Command) -> Result<Data> {
        let gate = &self.session.gate;
        self.session.drain_data_channels();
        gate.open(self.ftp_ip.context("the FTP server's address is unknown")?);
        let reply = match self.control.command(cmd).await {
            Ok(r) => r,
            Err(e) => {
                gate.close();
                return Err(e);
            }
        };
        if !reply.is_preliminary() {
            gate.close();
            if pacing::is_time_wait_collision(&reply) {
                return Err(Collision { tuple: self.data_tuple(), reply }.into());
            }
            if matches!(reply.code, 425 | 503) {
                return Err(Refused::Reply(reply).into());
            }
            return Err(FtpError { command: cmd.redacted(), reply }.into());
        }
        let bound = if self.spec.mode == DataMode::Auto { AUTO_CONNECT_BOUND } else { DATA_CONNECT_TIMEOUT };
        match self.session.next_data_channel(bound).await {
            Some(data) => {
                let origin =
                    data.originator.0.parse::<IpAddr>().ok().map(|ip| (ip.to_canonical(), data.originator.1 as u16));
                self.last_origin = origin;
                self.last_proxy_port = Some(data.connected.1 as u16);
                tracing::info!(
                    "data connection from {}:{} through the reverse forward {}:{}",
                    data.originator.0,
                    data.originator.1,
                    data.connected.0,
                    data.connected.1
                );
                Ok(Data { channel: data.channel, announced: reply.announced_size() })
            }
            None => {
                gate.close();
                Err(Refused::NoConnection.into())
            }
        }
    }

    async fn start_passive(&mut self, cmd: &Command) -> Result<Data> {
        let reply = self.control.command(&Command::Epsv).await?;
        let port = if reply.code == 229 {
            parse_epsv(&reply).with_context(|| format!("bad EPSV reply {reply}"))?
        } else {
            let reply = self.control.expect(&Command::Pasv, |r| r.code == 227).await?;
            // The address in a 227 reply is ignored: the data goes where the control goes.
            parse_pasv(&reply).with_context(|| format!("bad PASV reply {reply}"))?.1
        };
        let channel = self.session.direct_tcpip(&self.spec.ftp.host, port).await?;
        tracing::info!("passive data connection to {}:{port} from the SSH server", self.spec.ftp.host);
        let reply = self.control.command(cmd).await?;
        if !reply.is_preliminary() {
            return Err(FtpError { command: cmd.redacted(), reply }.into());
        }
        Ok(Data { channel, announced: reply.announced_size() })
    }

    /// Leave the default-port path. A server that said 150 and never
    /// connected is still busy with that command: start over on a new control connection.
    async fn become_passive(&mut self, reconnect: bool) -> Result<()> {
        if let Some(forward) = self.forward.take() {
            forward.cancel(self.session).await;
        }
        if reconnect {
            self.control.quit().await;
            self.control = connect_direct(self.session, &self.spec).await?.0;
            self.control.login(&self.spec.login.user, &self.spec.login.password).await?;
        }
        self.passive = true;
        Ok(())
    }

    /// Read the reply that ends a transfer (226 or 250).
    pub async fn finish(&mut self, cmd: &Command) -> Result<Reply> {
        let reply = self.control.read_reply().await?;
        if reply.is_completion() {
            Ok(reply)
        } else {
            Err(FtpError { command: cmd.redacted(), reply }.into())
        }
    }

    /// Free the data connection's 4-tuple from the FTP server's TIME_WAIT
    /// ([`crate::reclaim`]): sshd stops listening on the forwarded ports, the
    /// SYN goes out from the proxy port, and the forwards are requested again.
    /// An error leaves the link without forwards: close it.
    pub async fn reclaim(&mut self, tuple: &DataTuple, wait: Duration) -> Result<()> {
        let forward = self.forward.take().context("this link has no reverse forward")?;
        forward.cancel(self.session).await;
        self.session.reclaim(tuple, wait).await?;
        self.forward = Some(forward.renew(self.session).await?);
        Ok(())
    }

    /// Bring the control connection back in step after a failed command
    /// ([`Control::resync`]); no data connection is expected any more. On
    /// error the link cannot be trusted: close it.
    pub async fn resync(&mut self) -> Result<()> {
        self.session.gate.close();
        self.control.resync(crate::ftp::control::RESYNC_TIMEOUT).await
    }

    /// QUIT and cancel the forwards.
    pub async fn close(mut self) {
        self.session.gate.close();
        self.control.quit().await;
        if let Some(forward) = self.forward.take() {
            forward.cancel(self.session).await;
        }
    }
}

/// The server could not connect back because the data connection's 4-tuple
/// is still in TIME_WAIT from the previous transfer (FIELD-NOTES section 4).
#[derive(Debug, thiserror::Error)]
#[error("TIME_WAIT collision: the server replied {reply}")]
pub struct Collision {
    /// The data connection's 4-tuple as far as known.
    pub tuple: Option<DataTuple>,
    /// The server's reply.
    pub reply: Reply,
}

/// Why the default-port path did not work with this server.
#[derive(Debug, thiserror::Error)]
enum Refused {
    #[error("it replied {0}")]
    Reply(Reply),
    #[error("it said 150 but did not connect back within the bound")]
    NoConnection,
}

async fn connect_direct(session: &Session, spec: &Spec) -> Result<(Control, Reply)> {
    let ftp = &spec.ftp;
    let channel = session.direct_tcpip(&ftp.host, ftp.port).await?;
    let mut control = Control::new(channel.into_stream(), spec.timeout);
    let started = std::time::Instant::now();
    let banner = control.greeting().await.with_context(|| format!("FTP server {}:{}", ftp.host, ftp.port))?;
    tracing::debug!("greeting after {:.1?}", started.elapsed());
    Ok((control, banner))
}

/// The default-port path: discover P, pick U-1 (ProFTPD) or U (RFC 959, via
/// the relay), and forward it. In `auto` mode a refused forward means passive.
async fn open_default_port<'s>(session: &'s Session, spec: &Spec) -> Result<Link<'s>> {
    let ftp = &spec.ftp;
    let mut turn = discovery::Turn::take().await;
    let mut before = turn.before(session).await?;
    let (mut control, banner) = connect_direct(session, spec).await?;
    let (ftp_ip, forward) = if banner.lines.join("\n").contains("ProFTPD") {
        let mut attempts = 0;
        let (local, remote, target) = loop {
            let after = discovery::snapshot(session).await?;
            let (local, remote) = discovery::find_proxy(&before, &after, ftp.host.parse().ok(), ftp.port)?;
            tracing::info!("ProFTPD connects back to port U-1; proxy port P = {} on {}", local.port(), local.ip());
            let target = local.port().checked_sub(1).context("proxy port 0")?;
            attempts += 1;
            match discovery::port_busy(&after.entries, target) {
                Some(why) if attempts < MAX_PROXY_TRIES => {
                    // Keep this connection until the next is open, so the next gets another P.
                    tracing::info!("P-1 = {target} will not do: {why}; opening another control connection");
                    let (next, _) = connect_direct(session, spec).await?;
                    std::mem::replace(&mut control, next).quit().await;
                    before = after;
                }
                _ => {
                    turn.leave(Some(after));
                    break (local, remote, target);
                }
            }
        };
        (remote.ip(), ReverseForward::request(session, &local.ip().to_string(), target, None).await)
    } else {
        // RFC 959: the server connects to U = P itself, which sshd can only
        // share with a control connection that set SO_REUSEADDR: the relay.
        control.quit().await;
        let (relayed, peer, forward) = open_relayed(session, spec).await?;
        turn.leave(None);
        control = relayed;
        (peer, forward)
    };
    let mut link = Link::new(session, control, spec, Some(ftp_ip));
    match forward {
        Ok(forward) => link.forward = Some(forward),
        Err(e) if spec.mode == DataMode::Auto => {
            tracing::info!("{e:#}; using passive mode (EPSV/PASV inside SSH) instead");
            link.passive = true;
        }
        Err(e) => return Err(e),
    }
    Ok(link)
}

/// The RFC 959 control connection through the relay, and the forward of its
/// port P (and P-1, best effort). The relay's connect() may pick a P that
/// another socket without SO_REUSEADDR also holds (a connection elsewhere, or
/// its TIME_WAIT), and then sshd cannot listen there: open another relay.
async fn open_relayed(session: &Session, spec: &Spec) -> Result<(Control, IpAddr, Result<ReverseForward>)> {
    let ftp = &spec.ftp;
    // Kept open until the next relay has connected, so that one gets another P.
    let mut _held = None;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let relayed = relay::open(session, &ftp.host, ftp.port).await?;
        let local = relayed.local;
        tracing::info!(
            "RFC 959 server: control connection through the SO_REUSEADDR relay, P = {} on {}",
            local.port(),
            local.ip()
        );
        let forward =
            ReverseForward::request(session, &local.ip().to_string(), local.port(), local.port().checked_sub(1)).await;
        let other = match forward {
            Err(_) if attempt < MAX_PROXY_TRIES => {
                let table = discovery::snapshot(session).await?;
                discovery::held_by_another(&table.entries, local, SocketAddr::new(relayed.peer, ftp.port)).cloned()
            }
            _ => None,
        };
        // Without another socket on P, sshd refuses forwards as such: the caller decides.
        let Some(other) = other else {
            let mut control = Control::new(relayed.stream, spec.timeout);
            control.greeting().await?;
            return Ok((control, relayed.peer, forward));
        };
        tracing::info!(
            "sshd could not listen on P = {}: {} -> {} ({:?}) holds that port too, perhaps without SO_REUSEADDR; opening another relay",
            local.port(),
            other.local,
            other.remote,
            other.state
        );
        _held = Some(relayed);
    }
}
