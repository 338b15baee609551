//! One FTP session carried entirely inside SSH: the control connection and a
//! way to get data connections through the tunnel too.
//!
//! Two data paths, never one that crosses the network in plaintext (no PORT,
//! no EPRT is ever sent):
//!
//! - **default port** (the book's way, RFC 959 with neither PORT nor PASV):
//!   the FTP server connects back to the control connection's source
//!   address, port U-1 (ProFTPD) or U (RFC 959 servers). [`crate::dataport`]
//!   finds that port and has sshd listen there (tcpip-forward), so the data
//!   arrives as a forwarded channel.
//! - **passive**: EPSV (or PASV), then sshd connects to the announced port
//!   for us (direct-tcpip). In `--data-mode auto`, every way the default port
//!   can fail (no relay, a refused or misplaced forward, a 425, a server that
//!   stays silent) leads here, with one line on stderr saying why.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use russh::client::Msg;
use russh::Channel;

use crate::credentials::Login;
use crate::dataport::forward::ReverseForward;
use crate::dataport::{self, Fallback};
use crate::error::{classified, Classify, Kind};
use crate::events::{Event, Events};
use crate::ftp::control::{Control, FtpError};
use crate::ftp::digest::Method;
use crate::ftp::features::Features;
use crate::ftp::{Command, Reply};
use crate::ssh::endpoint::FtpTarget;
use crate::ssh::Session;
use crate::tcp::DataTuple;
use crate::throttle::Throttle;

mod early;
mod fallback;
pub use early::Early;

/// How long a default-port transfer command may go without both its
/// preliminary reply and its data connection, on a nearby FTP server. A
/// server that lets it pass refuses the default port in silence: pyftpdlib
/// says 150 and never connects; ProFTPD on port 21 with `RootRevoke on`
/// cannot bind port 20 and says nothing at all.
pub const DATA_CONNECT_BOUND: Duration = Duration::from_secs(4);
/// The bound also grows by this many control-connection round trips, as
/// measured at login, for a distant FTP server.
const BOUND_ROUND_TRIPS: u32 = 10;
/// Login is USER, PASS and TYPE: three round trips.
const LOGIN_ROUND_TRIPS: u32 = 3;

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
    /// Check each transfer with the server's own hash where it offers one (`--verify`).
    pub verify: bool,
    /// `--bwlimit`: one bucket shared by every link of the run.
    pub throttle: Option<Arc<Throttle>>,
}

/// A data connection whose transfer command the server has accepted.
pub struct Data {
    /// The channel carrying the bytes.
    pub channel: Channel<Msg>,
    /// The size announced in the 150 reply, if any.
    pub announced: Option<u64>,
    /// What the channel brought before the 150: read these first.
    pub early: Early,
    /// Our EOF went out as the channel was accepted (a download's).
    pub eof_sent: bool,
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
    /// Two data connections in a row came from different ports: each has a 4-tuple of its own.
    source_port_varies: bool,
    /// Which forwarded port it connected to.
    last_proxy_port: Option<u16>,
    /// The last default-port data connection carried a download: the FTP
    /// server closed it first, so its host holds the 4-tuple in TIME_WAIT.
    time_wait_held: bool,
    /// [`DATA_CONNECT_BOUND`] and the measured round trips.
    bound: Duration,
    /// Why this link went passive, until its first passive data connection
    /// shows that passive works (then it is said on stderr).
    fell_back: Option<Fallback>,
    /// What FEAT listed, once asked.
    features: Option<Features>,
    /// How `--verify` asks this server for hashes, once decided ([`crate::transfer::verify::method`]).
    pub verify_method: Option<Option<Method>>,
    /// Reclaim each download's 4-tuple as its data connection is accepted
    /// (set once the server is known to collide; [`Link::begin_reclaim`]).
    pub reclaim_behind: bool,
    /// That reclaim, under way: the cancelled forward comes back with its answer.
    reclaiming: Option<Started<'s, (ReverseForward, DataTuple, Result<bool>)>>,
    /// Transfer commands sent (or, passive, to be sent) whose data connections are still to
    /// be received, oldest first: more than one when the next file's went out early.
    pending: VecDeque<Pending>,
}

/// A transfer command on its way ([`Link::send_transfer`]).
struct Pending {
    cmd: Command,
    /// Sent with it, before and after, in one write.
    before: Vec<Command>,
    after: Vec<Command>,
    /// On the wire (the default port); passive commands wait for [`Link::receive`].
    sent: bool,
}

impl<'s> Link<'s> {
    /// Connect to the FTP server through `session`, prepare the data path, log in.
    pub async fn open(session: &'s Session, spec: &Spec) -> Result<Link<'s>> {
        let (mut link, login_time) = if spec.mode == DataMode::Passive {
            let (mut control, _) = dataport::connect_control(session, &spec.ftp, spec.timeout).await?;
            let login_time = dataport::timed_login(&mut control, &spec.login).await?;
            let mut link = Link::new(session, control, spec, None);
            link.passive = true;
            (link, login_time)
        } else {
            let prepared = dataport::prepare(session, &spec.ftp, spec.timeout, &spec.login).await?;
            let mut link = Link::new(session, prepared.control, spec, prepared.ftp_ip);
            match prepared.forward {
                Ok(forward) => link.forward = Some(forward),
                Err(why) => {
                    if let Err(e) = link.fall_back(why) {
                        link.close().await;
                        return Err(e);
                    }
                }
            }
            (link, prepared.login_time.unwrap_or_default())
        };
        link.bound = DATA_CONNECT_BOUND + login_time / LOGIN_ROUND_TRIPS * BOUND_ROUND_TRIPS;
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
            source_port_varies: false,
            last_proxy_port: None,
            time_wait_held: false,
            bound: DATA_CONNECT_BOUND,
            fell_back: None,
            features: None,
            verify_method: None,
            reclaim_behind: false,
            reclaiming: None,
            pending: VecDeque::new(),
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

    /// The SSH session this link runs in.
    pub fn session(&self) -> &'s Session {
        self.session
    }

    /// Where this link's events go: its session's.
    pub fn events(&self) -> &Events {
        self.session.events()
    }

    /// How this link was opened (`--verify`, `--bwlimit`, ...).
    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    /// What the server's FEAT lists (none for a server without FEAT), asked
    /// once per control connection; the caller may note what OPTS changed.
    pub async fn features(&mut self) -> Result<&mut Features> {
        if self.features.is_none() {
            let reply = self.control.command(&Command::Feat).await?;
            self.features = Some(Features::parse(&reply));
        }
        Ok(self.features.as_mut().expect("set above"))
    }

    /// True once this session moves data over EPSV/PASV.
    pub fn is_passive(&self) -> bool {
        self.passive
    }

    /// Send a transfer command (RETR, STOR, LIST, NLST) and get its data connection.
    pub async fn start(&mut self, cmd: &Command) -> Result<Data> {
        self.send_transfer(&[], cmd, &[]).await?;
        Ok(self.receive(cmd).await?.1)
    }

    /// Put transfer command `cmd` on the wire, with `before` (commands that
    /// need no answer first: SIZE) and `after` (HASH) in the same write, behind
    /// whatever this link still owes: the server takes them in order, so a
    /// transfer sent while the last one runs starts the moment it ends.
    /// [`Link::receive`] takes the transfers in the order sent. Passive
    /// transfers wait for it to send them (EPSV's port must be read first).
    pub async fn send_transfer(&mut self, before: &[Command], cmd: &Command, after: &[Command]) -> Result<()> {
        let sent = !self.passive;
        if sent {
            let ftp_ip = self.ftp_ip.context("the FTP server's address is unknown")?;
            // A reclaim under way ends first; sshd listens again right ahead of our commands.
            let cancelled = self.end_reclaim().await?;
            let session = self.session;
            let renewing = match cancelled {
                Some(forward) => Some(start_now(async move { forward.renew(session).await }).await),
                None => None,
            };
            if self.pending.is_empty() {
                self.session.drain_data_channels();
            }
            // Open before sending: on loopback the connection can beat the write's return.
            self.session.gate.open(ftp_ip);
            let wire: Vec<&Command> = before.iter().chain([cmd]).chain(after).collect();
            let piped = self.control.pipeline(&wire).await;
            if let Some(renewing) = renewing {
                self.forward = Some(renewing.await?);
            }
            if let Err(e) = piped {
                self.session.gate.close();
                return Err(e);
            }
        }
        let (before, after) = (before.to_vec(), after.to_vec());
        self.pending.push_back(Pending { cmd: cmd.clone(), before, after, sent });
        Ok(())
    }

    /// True when a transfer sent ahead ([`Link::send_transfer`]) is still to be received.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// True when `cmd` was sent ahead and is the next to be received.
    pub fn sent_next(&self, cmd: &Command) -> bool {
        self.pending.front().is_some_and(|p| p.cmd == *cmd)
    }

    /// True when the next transfer may be sent before this one ends: the
    /// default port works on this link, and the server's data connections
    /// come from a new port each time. From a fixed port (20, or L-1) every
    /// transfer reuses one 4-tuple, and a server that reconnects within
    /// microseconds of the last close races its own final ACK: seen on one
    /// host, the new SYN overtook that ACK (two CPUs' loopback queues), met
    /// sshd's end still in LAST_ACK, and waited out a 1 s SYN retransmit
    /// (TcpExtTCPSYNChallenge, TCPSynRetrans). A round trip between transfers
    /// leaves that close time to finish.
    pub fn can_send_ahead(&self) -> bool {
        !self.passive && self.source_port_varies && self.forward.is_some()
    }

    /// The data connection of `cmd`, the oldest transfer sent and not yet
    /// received, and the replies to the commands sent before it. A link whose
    /// default port fails falls back to passive (in `auto`), unless more
    /// transfers were sent behind this one: then that is the error.
    pub async fn receive(&mut self, cmd: &Command) -> Result<(Vec<Reply>, Data)> {
        let Some(pending) = self.pending.pop_front().filter(|p| p.cmd == *cmd) else {
            self.pending.clear();
            anyhow::bail!("{} was not the next transfer sent on this link", cmd.redacted());
        };
        let mut replies = Vec::new();
        if !pending.sent {
            return self.receive_passive(&pending, replies).await;
        }
        let e = match self.start_default_port(cmd, pending.before.len(), &mut replies).await {
            Ok(data) => return Ok((replies, data)),
            Err(e) => e,
        };
        match e.downcast::<Fallback>() {
            Ok(why) if self.pending.is_empty() => {
                // A silent server is still busy with the command: start over.
                let reconnect = matches!(why, Fallback::Silent(_));
                self.fall_back(why)?;
                if !reconnect {
                    self.resync().await?; // the replies to what was sent with it
                }
                if let Err(e) = self.leave_default_port(reconnect).await {
                    return Err(self.passive_failed_too(e));
                }
                self.receive_passive(&pending, replies).await
            }
            Ok(why) => Err(classified(why.kind(), why.to_string())),
            Err(e) => Err(e),
        }
    }

    /// `pending` over EPSV/PASV; `replies` holds those of its `before` commands already had.
    async fn receive_passive(&mut self, pending: &Pending, mut replies: Vec<Reply>) -> Result<(Vec<Reply>, Data)> {
        for before in &pending.before[replies.len()..] {
            replies.push(self.control.command(before).await?);
        }
        let data = self.start_passive(&pending.cmd).await?;
        self.control.pipeline(&pending.after.iter().collect::<Vec<_>>()).await?;
        Ok((replies, data))
    }

    async fn start_default_port(&mut self, cmd: &Command, before: usize, replies: &mut Vec<Reply>) -> Result<Data> {
        let arrived = self.await_data_connection(cmd, before, replies).await;
        let (reply, data, early) = match arrived {
            Ok(both) => both,
            Err(e) => {
                self.session.gate.close();
                return Err(e);
            }
        };
        let origin = data.originator.0.parse::<IpAddr>().ok().map(|ip| (ip.to_canonical(), data.originator.1 as u16));
        if let (Some((_, before)), Some((_, now))) = (self.last_origin, origin) {
            self.source_port_varies = before != now;
        }
        self.last_origin = origin;
        self.last_proxy_port = Some(data.connected.1 as u16);
        self.time_wait_held = !matches!(cmd, Command::Stor(_));
        if let Some((from, to)) = data.ends() {
            self.events().emit(Event::DataAccepted { from, to, incarnation: data.incarnation });
        }
        // Nothing goes to the server on a download: our EOF at once, so that a
        // server that waits for it before its 226 (ProFTPD's lingering close)
        // has it a round trip sooner.
        let eof_sent = self.time_wait_held && data.channel.eof().await.is_ok();
        if eof_sent && self.reclaim_behind {
            self.begin_reclaim().await;
        }
        Ok(Data { channel: data.channel, announced: reply.announced_size(), early, eof_sent })
    }

    /// Begin reclaiming the 4-tuple of the download just accepted, so that it
    /// is free by the time the next transfer is sent, at no round trip of its
    /// own: the forward's cancel and the helper's line go out now, right behind
    /// our EOF; the helper sends its SYN once sshd's end of the connection has
    /// closed ([`crate::ssh::reclaimer`]), and [`Link::send_transfer`] reads the
    /// answer and has sshd listen again, ahead of the next commands.
    async fn begin_reclaim(&mut self) {
        let Some(tuple) = self.data_tuple().filter(|t| t.server_port.is_some()) else { return };
        let Some(forward) = self.forward.take() else { return };
        let session = self.session;
        let reclaiming = async move {
            let (_, sent) =
                tokio::join!(forward.cancel(session), session.reclaim(&tuple, Duration::ZERO, RECLAIM_FREE));
            (forward, tuple, sent)
        };
        self.reclaiming = Some(start_now(reclaiming).await);
        self.time_wait_held = false;
    }

    /// The end of a reclaim begun by [`Link::begin_reclaim`], if any: the
    /// cancelled forward, to be renewed. One that did not work is said in
    /// the trace, and this link reclaims after collisions again (where a
    /// failure switches the run to rotating).
    async fn end_reclaim(&mut self) -> Result<Option<ReverseForward>> {
        let Some(reclaiming) = self.reclaiming.take() else { return Ok(None) };
        let bound = crate::ssh::EXEC_TIMEOUT + self.control.timeout;
        let Ok((forward, tuple, sent)) = tokio::time::timeout(bound, reclaiming).await else {
            self.session.reset_reclaimer().await;
            return Err(classified(Kind::Transfer, format!("reclaiming a 4-tuple took over {bound:?}")));
        };
        match sent {
            Ok(true) => self.events().emit(Event::Reclaimed { tuple }),
            Ok(false) => tracing::debug!("{tuple}: nothing to reclaim (our own end holds its TIME_WAIT)"),
            Err(e) => {
                tracing::debug!("{tuple}: reclaiming as the data arrived did not work ({e:#}): after collisions only");
                self.reclaim_behind = false;
            }
        }
        Ok(Some(forward))
    }

    /// Send `cmd` and wait for both its preliminary reply and the server's
    /// connection, in whichever order they come, within [`Link::bound`] for
    /// as long as the connection has not come.
    async fn await_data_connection(
        &mut self,
        cmd: &Command,
        before: usize,
        replies: &mut Vec<Reply>,
    ) -> Result<(Reply, crate::ssh::gate::DataChannel, Early)> {
        enum Arrival {
            Reply(Reply),
            Data(crate::ssh::gate::DataChannel),
            Early,
            Deadline,
        }
        let deadline = tokio::time::Instant::now() + self.bound;
        let (mut reply, mut data, mut early) = (None, None::<crate::ssh::gate::DataChannel>, Early::default());
        loop {
            if let (Some(_), Some(_)) = (&reply, &data) {
                return Ok((reply.unwrap(), data.unwrap(), early));
            }
            let (control, session) = (&mut self.control, self.session);
            let waiting_for_data = data.is_none();
            let draining = async {
                match data.as_mut() {
                    Some(d) => early.read_one(&mut d.channel).await,
                    None => std::future::pending().await,
                }
            };
            let arrival = tokio::select! {
                r = control.read_reply(), if reply.is_none() => Arrival::Reply(r?),
                Some(d) = session.next_data_channel(self.bound), if waiting_for_data => Arrival::Data(d),
                () = draining => Arrival::Early,
                _ = tokio::time::sleep_until(deadline), if waiting_for_data => Arrival::Deadline,
            };
            match arrival {
                Arrival::Reply(r) if replies.len() < before => replies.push(r),
                Arrival::Reply(r) if r.is_preliminary() => reply = Some(r),
                Arrival::Reply(r) => return Err(self.refusal(cmd, r)),
                Arrival::Data(d) => data = Some(d),
                Arrival::Early => {}
                Arrival::Deadline => {
                    let what = match &reply {
                        Some(r) => format!("said {} but did not connect back", r.code),
                        None => format!("neither answered {} nor connected back", cmd.redacted()),
                    };
                    return Err(Fallback::Silent(format!("{what} within {:.1?}", self.bound)).into());
                }
            }
        }
    }

    /// The error for a transfer command's final (non-1xx) reply.
    fn refusal(&self, cmd: &Command, reply: Reply) -> anyhow::Error {
        if reply.blames_busy_address() {
            let tuple = self.data_tuple();
            self.events().emit(Event::Collision { tuple, reply: reply.to_string() });
            Collision { tuple, reply }.classified()
        } else if matches!(reply.code, 425 | 503) {
            Fallback::Refused(reply).into()
        } else {
            FtpError { command: cmd.redacted(), reply }.classified()
        }
    }

    /// Read the reply that ends a transfer (226 or 250).
    pub async fn finish(&mut self, cmd: &Command) -> Result<Reply> {
        let reply = self.control.read_reply().await?;
        if reply.is_completion() {
            Ok(reply)
        } else {
            Err(FtpError { command: cmd.redacted(), reply }.classified())
        }
    }

    /// Free the data connection's 4-tuple from the FTP server's TIME_WAIT
    /// ([`crate::ssh::reclaimer`]): sshd stops listening on the forwarded ports, the
    /// SYN goes out from the proxy port, and the forwards are requested again.
    /// An error leaves the link without forwards: close it.
    pub async fn reclaim(&mut self, tuple: &DataTuple, wait: Duration) -> Result<()> {
        let forward = self.forward.take().context("this link has no reverse forward")?;
        // The cancel goes out first and the SYN's line right behind it, in one round trip
        // (sshd handles them in order; the helper retries its bind meanwhile anyway).
        let (_, sent) = tokio::join!(forward.cancel(self.session), self.session.reclaim(tuple, wait, Duration::ZERO));
        sent?;
        self.forward = Some(forward.renew(self.session).await?);
        self.time_wait_held = false;
        Ok(())
    }

    /// True when the FTP server's host holds this link's data 4-tuple in
    /// TIME_WAIT from its last download (it closed that connection first).
    pub fn holds_time_wait(&self) -> bool {
        self.time_wait_held && !self.passive
    }

    /// Bring the control connection back in step after a failed command
    /// ([`Control::resync`]); no data connection is expected any more. On
    /// error the link cannot be trusted: close it.
    pub async fn resync(&mut self) -> Result<()> {
        // Transfers sent ahead are given up: their replies are read through.
        self.pending.clear();
        self.session.gate.close();
        self.control.resync(crate::ftp::control::RESYNC_TIMEOUT).await
    }

    /// QUIT and cancel the forwards.
    pub async fn close(mut self) {
        self.session.gate.close();
        if let Ok(Some(forward)) = self.end_reclaim().await {
            self.forward = Some(forward); // cancelled already; cancelling again is harmless
        }
        self.control.quit().await;
        if let Some(forward) = self.forward.take() {
            forward.cancel(self.session).await;
        }
    }
}

/// How long the reclaiming helper may wait for sshd's end of a download's
/// connection to close: the download may still be running when it is asked.
const RECLAIM_FREE: Duration = Duration::from_secs(600);

/// A future polled once already, so that what it sends first is on its way
/// ([`start_now`]), to be awaited later.
type Started<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// Poll `f` once now (its first messages go out, in order, behind whatever
/// was sent before), and hand it back to be awaited later.
async fn start_now<'a, T: Send + 'a>(f: impl std::future::Future<Output = T> + Send + 'a) -> Started<'a, T> {
    let mut f: Started<'a, T> = Box::pin(f);
    match std::future::poll_fn(|cx| std::task::Poll::Ready(f.as_mut().poll(cx))).await {
        std::task::Poll::Ready(done) => Box::pin(std::future::ready(done)),
        std::task::Poll::Pending => f,
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

impl Classify for Collision {
    fn kind(&self) -> Kind {
        Kind::Transfer
    }
}
