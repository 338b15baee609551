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
//!
//! The path and all it keeps (the forward, the account at the gate, the last
//! 4-tuple, its reclaiming) is one [`DataPath`]; a link is a control
//! connection, that data path, and the transfers in flight on them.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use russh::client::Msg;
use russh::Channel;

use crate::credentials::Login;
use crate::dataport;
use crate::dataport::gate::Gate;
use crate::dataport::path::DataPath;
use crate::dataport::reclaim::collision::Outcome;
use crate::error::{Classify, Kind};
use crate::events::Events;
use crate::ftp::control::{Control, FtpError};
use crate::ftp::digest::Method;
use crate::ftp::features::Features;
use crate::ftp::{Command, Reply};
use crate::ssh::endpoint::FtpTarget;
use crate::ssh::Session;
use crate::tcp::DataTuple;
use crate::throttle::Throttle;

mod arrival;
mod early_bytes;
mod fallback;
mod pipeline;
pub use early_bytes::Early;

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
    /// `--continue`: an upload goes on after what the server holds of it (APPE).
    pub continue_uploads: bool,
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
    /// How the data connections reach us, and all that takes.
    path: DataPath<'s>,
    /// [`DATA_CONNECT_BOUND`] and the measured round trips.
    bound: Duration,
    /// What FEAT listed, once asked (the same server on a new control connection: kept).
    features: Option<Features>,
    /// How `--verify` asks this server for hashes, once decided ([`crate::transfer::verify::method`]).
    pub verify_method: Option<Option<Method>>,
    /// Send our EOF the moment a download's data channel is accepted (the
    /// default). Then sshd may close its end before the FTP server does, and
    /// the TIME_WAIT lands on sshd's side, where it blocks nothing; the demo
    /// turns it off to show the book's case, the server always closing first.
    pub early_eof: bool,
    /// Transfer commands sent (or, passive, to be sent) whose data connections are still to
    /// be received, oldest first: more than one when the next file's went out early.
    pending: VecDeque<Pending>,
    /// A transfer's final reply, read before its data connection was admitted (the gate
    /// admits an unproven one once the server says it is done): [`Link::finish`] returns it.
    completed: Option<Reply>,
    /// The offset of a REST the server accepted, for the next transfer command ([`Link::rest`]).
    rest: Option<u64>,
}

impl<'s> Link<'s> {
    /// Connect to the FTP server through `session`, prepare the data path, log in.
    pub async fn open(session: &'s Session, spec: &Spec) -> Result<Link<'s>> {
        let (mut link, login_time) = if spec.mode == DataMode::Passive {
            let (mut control, _) = dataport::connect_control(session, &spec.ftp, spec.timeout).await?;
            let login_time = crate::ftp::login::timed_login(&mut control, &spec.login).await?;
            (Link::new(session, control, spec, DataPath::passive()), login_time)
        } else {
            let prepared = dataport::prepare(session, &spec.ftp, spec.timeout, &spec.login).await?;
            // RFC 959 servers (GNU inetutils ftpd) close a small file's data connection before
            // its owner can be read: their connections may wait unproven, and two such waiting
            // at once cannot be paired with transfers. ProFTPD holds its end until we close ours.
            let nothing_ahead = prepared.dialect == Some(crate::ftp::Dialect::Rfc959);
            let (forward, refused) = match prepared.forward {
                Ok(forward) => (Some(forward), None),
                Err(why) => (None, Some(why)),
            };
            let path = DataPath::default_port(prepared.ftp_ip, forward, nothing_ahead);
            let mut link = Link::new(session, prepared.control, spec, path);
            if let Some(why) = refused {
                if let Err(e) = link.fall_back(why) {
                    link.close().await;
                    return Err(e);
                }
            }
            (link, prepared.login_time.unwrap_or_default())
        };
        link.bound = DATA_CONNECT_BOUND + login_time / LOGIN_ROUND_TRIPS * BOUND_ROUND_TRIPS;
        Ok(link)
    }

    fn new(session: &'s Session, control: Control, spec: &Spec, path: DataPath<'s>) -> Self {
        Link {
            session,
            control,
            spec: spec.clone(),
            path,
            bound: DATA_CONNECT_BOUND,
            features: None,
            verify_method: None,
            early_eof: true,
            pending: VecDeque::new(),
            completed: None,
            rest: None,
        }
    }

    /// The data connection's 4-tuple as far as known: the FTP server's
    /// address and last data source port, and the forwarded port.
    pub fn data_tuple(&self) -> Option<DataTuple> {
        self.path.data_tuple()
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

    /// What the server's FEAT lists (none for a server without FEAT), asked once per link (a
    /// new control connection reaches the same server); the caller may note what OPTS changed,
    /// which the passive fallback's new control connection selects again.
    pub async fn features(&mut self) -> Result<&mut Features> {
        if self.features.is_none() {
            let reply = self.control.command(&Command::Feat).await?;
            self.features = Some(Features::parse(&reply));
        }
        Ok(self.features.as_mut().expect("set above"))
    }

    /// True once this session moves data over EPSV/PASV.
    pub fn is_passive(&self) -> bool {
        self.path.is_passive()
    }

    /// Send a transfer command (RETR, STOR, LIST, NLST) and get its data connection.
    pub async fn start(&mut self, cmd: &Command) -> Result<Data> {
        self.send_transfer(&[], cmd).await?;
        Ok(self.receive(cmd).await?.1)
    }

    /// Read the reply that ends a transfer (226 or 250).
    pub async fn finish(&mut self, cmd: &Command) -> Result<Reply> {
        let reply = match self.completed.take() {
            Some(reply) => reply,
            None => self.control.read_reply().await?,
        };
        if reply.is_completion() {
            Ok(reply)
        } else {
            Err(FtpError { command: cmd.redacted(), reply }.classified())
        }
    }

    /// Bring the control connection back in step after a failed command
    /// ([`Control::resync`]); no data connection is expected any more. On
    /// error the link cannot be trusted: close it.
    pub async fn resync(&mut self) -> Result<()> {
        // Transfers sent ahead are given up: their replies are read through, and any data
        // connection the server made for them is refused when it comes (see the gate).
        self.pending.clear();
        self.completed = None;
        self.rest = None;
        Gate::of(self.session).close(self.path.ports());
        self.control.resync(crate::ftp::control::RESYNC_TIMEOUT).await?;
        Gate::of(self.session).settle(self.path.ports(), self.control.connections_made());
        Ok(())
    }

    /// From now on, reclaim each download's 4-tuple as its data connection is
    /// accepted, ready for the next transfer (the server is known to collide).
    pub fn reclaim_behind(&mut self) {
        if let Some(port) = self.path.as_default_port() {
            port.reclaim.behind = true;
        }
    }

    /// Free the collided `tuple` (as far as known) from the FTP server's
    /// TIME_WAIT for this link ([`crate::dataport::reclaim::collision`]).
    pub async fn reclaim_collided(&mut self, tuple: Option<DataTuple>, reclaimed: &mut u32) -> Result<Outcome> {
        match self.path.as_default_port() {
            Some(port) => port.reclaim_collided(self.session, tuple, reclaimed).await,
            None if tuple.is_some_and(|t| t.server_port.is_some()) => {
                anyhow::bail!("could not reclaim the 4-tuple: this link has no reverse forward")
            }
            None => Ok(Outcome::Unknown),
        }
    }

    /// Free the data connection's 4-tuple from the FTP server's TIME_WAIT now
    /// ([`crate::dataport::reclaim::Reclaim::now`]). False: no SYN could go out. An error
    /// leaves the link without forwards: close it.
    pub async fn reclaim(&mut self, tuple: &DataTuple, wait: Duration) -> Result<bool> {
        let port = self.path.as_default_port().context("this link has no reverse forward")?;
        port.reclaim_now(self.session, tuple, wait).await
    }

    /// True when the FTP server's host holds this link's data 4-tuple in
    /// TIME_WAIT from its last download (it closed that connection first).
    pub fn holds_time_wait(&self) -> bool {
        matches!(&self.path, DataPath::DefaultPort(port) if port.reclaim.held)
    }

    /// QUIT and cancel the forwards.
    pub async fn close(mut self) {
        self.path.retire(self.session, self.control.timeout).await;
        self.control.quit().await;
        self.path.cancel_forward(self.session).await;
    }
}

/// A transfer command on its way ([`Link::send_transfer`]).
struct Pending {
    cmd: Command,
    /// Sent before it, in the same write.
    before: Vec<Command>,
    /// On the wire (the default port); passive commands wait for [`Link::receive`].
    sent: bool,
    /// The REST the server accepted for it ([`Link::rest`]): a refused default-port try
    /// consumes it, so the passive retry sends it again.
    rest: Option<u64>,
}

/// The server could not connect back because the data connection's 4-tuple
/// is still in TIME_WAIT from the previous transfer
/// (docs/real-systems.md#time_wait-and-incarnations).
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
