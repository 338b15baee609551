//! A control connection's data path: how the server's data connections reach
//! us, as one value with its kinds. The default port has its reverse forward,
//! its account at the session's gate, what the last connection showed (its
//! origin and 4-tuple) and the reclaiming of that tuple; passive has only why
//! the link went passive, and the default-port path it left, until it is closed.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::Result;

use crate::dataport::forward::ReverseForward;
use crate::dataport::gate::watch::Ends;
use crate::dataport::gate::Gate;
use crate::dataport::reclaim::{collision::Outcome, Reclaim};
use crate::dataport::Fallback;
use crate::events::Events;
use crate::ssh::Session;
use crate::tcp::DataTuple;

/// The line that has our relay hold what follows until every command before it has its final
/// reply: no command reaches a server while it transfers (some read and answer them then).
pub const AFTER_LINE: &str = "FTPSSH-AFTER\r\n";

/// How a link's data connections are made.
pub enum DataPath<'s> {
    /// RFC 959's default port: the server connects back to U-1 or U, where sshd listens for us.
    DefaultPort(Box<DefaultPort<'s>>),
    /// EPSV/PASV, sshd connecting for us.
    Passive(Passive<'s>),
}

/// The default-port path of one control connection.
pub struct DefaultPort<'s> {
    /// The FTP server's address as the SSH server reaches it: data must come from there.
    pub ftp_ip: Option<IpAddr>,
    /// sshd's listener on the data port (none while a reclaim holds it cancelled).
    pub forward: Option<ReverseForward>,
    /// The forwarded ports: this link's account at the session's gate.
    pub ports: Vec<u16>,
    /// Data connections received from the gate.
    pub received: u64,
    /// What the last data connection showed.
    pub last: Last,
    /// Freeing the data 4-tuple from the FTP server's TIME_WAIT.
    pub reclaim: Reclaim<'s>,
    /// Never send a transfer ahead: its connection and the last one's could wait unproven
    /// at once (see [`crate::dataport::gate::Gate::saw_unproven`]).
    pub nothing_ahead: bool,
    /// The 4-tuple our relay was told to prove ([`DefaultPort::watch_line`]).
    pub watched: Option<Ends>,
}

/// What the last default-port data connection showed.
#[derive(Debug, Default, Clone, Copy)]
pub struct Last {
    /// Where it came from (its port shows whether the server's data source port is fixed).
    pub origin: Option<(IpAddr, u16)>,
    /// Which forwarded port it connected to.
    pub proxy_port: Option<u16>,
    /// Its whole 4-tuple, kept while a reclaim holds the forward.
    pub tuple: Option<DataTuple>,
    /// Two data connections in a row came from different ports: each has a 4-tuple of its own.
    pub source_port_varies: bool,
}

/// The passive path.
pub struct Passive<'s> {
    /// Why the link went passive, until its first passive data connection shows
    /// that passive works (then it is said on stderr).
    pub fell_back: Option<Fallback>,
    /// The default-port path it left: its forward is still to cancel, its account to retire.
    pub left: Option<Box<DefaultPort<'s>>>,
}

impl<'s> DataPath<'s> {
    /// The default-port path, with `forward` (or why there is none: then it is left at once
    /// by the caller), to `ftp_ip`.
    pub fn default_port(ftp_ip: Option<IpAddr>, forward: Option<ReverseForward>, nothing_ahead: bool) -> Self {
        let ports = forward.as_ref().map(|f| f.ports.clone()).unwrap_or_default();
        DataPath::DefaultPort(Box::new(DefaultPort {
            ftp_ip,
            forward,
            ports,
            received: 0,
            last: Last::default(),
            reclaim: Reclaim::default(),
            nothing_ahead,
            watched: None,
        }))
    }

    /// The passive path from the start.
    pub fn passive() -> Self {
        DataPath::Passive(Passive { fell_back: None, left: None })
    }

    /// Go passive for `why` (kept only where the link was not passive yet).
    pub fn fall_back(&mut self, why: Fallback) {
        match self {
            DataPath::Passive(passive) => {
                passive.fell_back.get_or_insert(why);
            }
            DataPath::DefaultPort(_) => {
                let DataPath::DefaultPort(left) = std::mem::replace(self, DataPath::passive()) else { unreachable!() };
                *self = DataPath::Passive(Passive { fell_back: Some(why), left: Some(left) });
            }
        }
    }

    /// True on the passive path.
    pub fn is_passive(&self) -> bool {
        matches!(self, DataPath::Passive(_))
    }

    /// The default-port path, where that is the one in use.
    pub fn as_default_port(&mut self) -> Option<&mut DefaultPort<'s>> {
        match self {
            DataPath::DefaultPort(port) => Some(port),
            DataPath::Passive(_) => None,
        }
    }

    /// The link's account at the gate: its forwarded ports (those of the path it left, passive).
    pub fn ports(&self) -> &[u16] {
        match self {
            DataPath::DefaultPort(port) => &port.ports,
            DataPath::Passive(Passive { left: Some(left), .. }) => &left.ports,
            DataPath::Passive(_) => &[],
        }
    }

    /// Default-port data connections received from the gate.
    pub fn received(&self) -> u64 {
        match self {
            DataPath::DefaultPort(port) => port.received,
            DataPath::Passive(_) => 0,
        }
    }

    /// The data connection's 4-tuple as far as known (the default port only).
    pub fn data_tuple(&self) -> Option<DataTuple> {
        match self {
            DataPath::DefaultPort(port) => port.data_tuple(),
            DataPath::Passive(_) => None,
        }
    }

    /// Cancel the forward of the default-port path (in use, or left).
    pub async fn cancel_forward(&mut self, session: &Session) {
        let port = match self {
            DataPath::DefaultPort(port) => port,
            DataPath::Passive(Passive { left: Some(left), .. }) => left,
            DataPath::Passive(_) => return,
        };
        if let Some(forward) = port.forward.take() {
            forward.cancel(session).await;
        }
    }

    /// The link closes: its account retired at the gate, a reclaim under way ended (the
    /// forward it cancelled kept, for [`DataPath::cancel_forward`] after the QUIT).
    pub async fn retire(&mut self, session: &Session, timeout: Duration) {
        Gate::of(session).retire(self.ports());
        let port = match self {
            DataPath::DefaultPort(port) => port,
            DataPath::Passive(Passive { left: Some(left), .. }) => left,
            DataPath::Passive(_) => return,
        };
        if let Ok(Some(forward)) = port.reclaim.end(session.events(), timeout).await {
            port.forward = Some(forward); // cancelled already; cancelling again is harmless
        }
    }
}

impl<'s> DefaultPort<'s> {
    /// The data connection's 4-tuple as far as known: the FTP server's
    /// address and last data source port, and the forwarded port.
    pub fn data_tuple(&self) -> Option<DataTuple> {
        let forward = self.forward.as_ref()?;
        let port = self.last.proxy_port.or(forward.ports.first().copied())?;
        let proxy = SocketAddr::new(forward.address.parse().ok()?, port);
        let (server, server_port) = match self.last.origin {
            Some((ip, port)) => (ip, Some(port)),
            None => (self.ftp_ip?, None),
        };
        Some(DataTuple { server, server_port, proxy })
    }

    /// A data connection came from `origin` to the forwarded port `proxy_port`; `download`: the
    /// server closes it first, so its host will hold the 4-tuple in TIME_WAIT. From the second
    /// on, the gate is told whether the source port is fixed.
    pub fn arrived(&mut self, gate: &Gate, origin: Option<(IpAddr, u16)>, proxy_port: u16, download: bool) {
        if let (Some((_, before)), Some((_, now))) = (self.last.origin, origin) {
            self.last.source_port_varies = before != now;
            gate.pin_source(&self.ports, (!self.last.source_port_varies).then_some(now));
        }
        self.last.origin = origin;
        self.last.proxy_port = Some(proxy_port);
        self.last.tuple = self.data_tuple().filter(|t| t.server_port.is_some());
        self.reclaim.held = download;
    }

    /// The hold line for our relay that keeps the next transfer's commands
    /// from the FTP server until the transfers before have ended and, where the
    /// source port is fixed, this path's data tuple is free again
    /// ([`crate::dataport::relay`]).
    pub fn hold_line(&self) -> Option<String> {
        if self.last.source_port_varies {
            return Some(AFTER_LINE.into());
        }
        let tuple = self.last.tuple?;
        let strict = u8::from(self.reclaim.behind);
        let (proxy, server_port) = (tuple.proxy, tuple.server_port?);
        Some(format!("FTPSSH-HOLD {} {} {} {server_port} {strict}\r\n", proxy.ip(), proxy.port(), tuple.server))
    }

    /// The line for our relay that has it prove the next data connections' origin as the server's
    /// 1xx reply goes by ([`crate::dataport::gate::watch`]), where their 4-tuple is known in
    /// advance and that port alone proves nothing; none where nothing changed. The tuple is
    /// watched from the first connection on, while its source port is not seen to vary (as the
    /// hold line is sent): a transfer sent before the relay has the line may have its 1xx go by
    /// unproven, and so wait for the helper's answer to be confirmed. Once the port is seen to
    /// vary, the relay is told to stop looking.
    pub fn watch_line(&mut self, gate: &Gate) -> Option<String> {
        if self.last.source_port_varies {
            self.watched.take()?;
            gate.unwatch(&self.ports);
            return Some("FTPSSH-UNWATCH\r\n".into());
        }
        let tuple = self.last.tuple?;
        let ends = (SocketAddr::new(tuple.server, tuple.server_port?), tuple.proxy);
        if self.watched == Some(ends) || !gate.watch(&self.ports, ends) {
            return None;
        }
        self.watched = Some(ends);
        Some(format!("FTPSSH-WATCH {} {} {} {}\r\n", ends.0.ip(), ends.0.port(), ends.1.ip(), ends.1.port()))
    }

    /// Begin reclaiming the download just accepted ([`Reclaim::begin`]),
    /// once the last reclaim (sent from the stock, where this transfer was
    /// sent ahead) has ended and its listener is back.
    pub async fn begin_reclaim(&mut self, session: &'s Session, timeout: Duration) {
        if let Ok(Some(cancelled)) = self.reclaim.end(session.events(), timeout).await {
            let renewed = cancelled.renew(session).await;
            if self.reclaim.relisten(session, &mut self.forward, renewed, cancelled).await.is_err() {
                return; // no forward: the next transfer says so
            }
        }
        let tuple = self.data_tuple();
        self.reclaim.begin(session, &mut self.forward, tuple).await;
    }

    /// The end of a reclaim under way ([`Reclaim::end`]): the forward it cancelled, to renew.
    pub async fn end_reclaim(&mut self, events: &Events, timeout: Duration) -> Result<Option<ReverseForward>> {
        self.reclaim.end(events, timeout).await
    }

    /// Take sshd's listener back after a reclaim cancelled it ([`Reclaim::relisten`]).
    pub async fn relisten(
        &mut self,
        session: &Session,
        renewed: Result<ReverseForward>,
        cancelled: ReverseForward,
    ) -> Result<()> {
        self.reclaim.relisten(session, &mut self.forward, renewed, cancelled).await
    }

    /// Free the collided `tuple` now ([`Reclaim::after_collision`]).
    pub async fn reclaim_collided(
        &mut self,
        session: &Session,
        tuple: Option<DataTuple>,
        reclaimed: &mut u32,
    ) -> Result<Outcome> {
        self.reclaim.after_collision(session, &mut self.forward, tuple, reclaimed).await
    }

    /// Free `tuple` now, waiting `wait` for the exchange ([`Reclaim::now`]).
    pub async fn reclaim_now(&mut self, session: &Session, tuple: &DataTuple, wait: Duration) -> Result<bool> {
        self.reclaim.now(session, &mut self.forward, tuple, wait).await
    }
}
