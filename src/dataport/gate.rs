//! The gate in front of the reverse forward.
//!
//! sshd listens on the port the FTP server will connect to and hands each
//! connection to us as a forwarded-tcpip channel, telling us who made it.
//! Anyone on the SSH server host can connect to that port, and from the FTP
//! server's address when the FTP server runs there: another user who reads the
//! socket table sees our control connection, so the port, and can race the FTP
//! server to it (RFC 2577's port stealing), offering bytes of its own for a
//! download or taking an upload. So a connection is handed to its transfer (a
//! byte written or sent) only once its origin is proven ([`proof`]): its socket on
//! the SSH server's host is held by the FTP server's account (root, or the FTP
//! login's uid there), or it comes from a port only root can bind. One that
//! another account made is refused, naming its uid. One that cannot be told
//! apart (its socket closed before its owner could be read) waits: if the
//! server's own comes, it is refused; if the server ends the transfer with it
//! the only one that came, it was the server's ([`Gate::release`]); if two wait,
//! someone raced, and the transfer fails with nothing kept. One from another host
//! whose port proves nothing is refused, and the link told to go passive.
//!
//! Each control connection of the session (a link) has its own forwarded
//! ports and its own account here, so that one link giving up its transfers
//! never withdraws another's. And each account counts the connections that
//! arrived against those the FTP server said it made (1xx, then a final reply
//! other than 425): a transfer given up after the server connected for it (a
//! command sent ahead, behind one that failed) may have its connection still
//! on the way, behind the replies we read meanwhile. That one is refused when
//! it comes, not handed to the next transfer, whose file it is not.

mod account;
mod channel;
mod kept;
pub mod proof;
mod relayed;
#[cfg(test)]
mod tests;
pub mod watch;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::dataport::origin::Origin;
use crate::events::{Event, Events};
use crate::ssh::forwarded::{Forwarded, Receiver};
use crate::ssh::Session;
use account::{Account, Held};
pub use channel::DataChannel;
use channel::KEPT_MAX;
use kept::{Inbound, Kept, Queue};
use proof::{Proof, Uids};

/// What the gate hands to the link waiting for a data connection.
pub enum Arrival {
    /// A connection proven to be the FTP server's, confirmed to sshd.
    Data(DataChannel),
    /// A connection was refused because nothing can prove where it came from: the data
    /// connection cannot be told apart from another's on this path (why).
    Unprovable(String),
    /// Several connections came for one transfer and none could be told apart as the
    /// server's: all were refused (who).
    Raced(String),
    /// A connection admitted for a transfer sent ahead brought too much before the link took
    /// it ([`kept`]): closed (why).
    TooMuch(String),
}

/// Connections admitted per 4-tuple, across every session of the process: a
/// 4-tuple's incarnations, as TIME_WAIT sees them.
static INCARNATIONS: Mutex<Option<HashMap<(SocketAddr, SocketAddr), u32>>> = Mutex::new(None);

fn next_incarnation(ends: Option<(SocketAddr, SocketAddr)>) -> u32 {
    let Some(ends) = ends else { return 1 };
    let mut all = INCARNATIONS.lock().unwrap();
    let n = all.get_or_insert_with(HashMap::new).entry(ends).or_insert(0);
    *n += 1;
    *n
}

/// The account a connection to `to_port` is for: a live link's before a closed one's that had
/// the same port.
fn account_for(accounts: &mut [Account], to_port: u16) -> Option<&mut Account> {
    accounts.iter_mut().filter(|a| a.ports.contains(&to_port)).min_by_key(|a| a.retired)
}

/// Give an admitted connection to the link waiting for it.
fn hand_over(incoming: &mpsc::UnboundedSender<Inbound>, mut data: DataChannel) {
    data.incarnation = next_incarnation(data.ends());
    // A closed receiver means nobody waits any more: the channel just drops.
    let _ = incoming.send(Inbound::Data(Kept::start(data)));
}

/// Admits the one expected data connection of each pending transfer.
pub struct Gate {
    /// Itself, for the relay's stderr ([`Gate::relay_lines`]).
    me: Weak<Gate>,
    events: Events,
    accounts: Mutex<Vec<Account>>,
    /// The origin check on the SSH server, once a link started it; none: where no perl
    /// runs there, connections are judged by their address and port alone.
    origin: tokio::sync::Mutex<Option<Origin>>,
    /// The uids whose sockets are the FTP server's, as the origin check found them.
    uids: Mutex<Option<Uids>>,
    /// The origin check was tried (once a session, whatever it found): [`Gate::origin_tried`].
    origin_tried: tokio::sync::Mutex<bool>,
    /// Connections past the quick checks, to the task that proves their origin.
    checking: mpsc::UnboundedSender<Checked>,
    incoming: mpsc::UnboundedSender<Inbound>,
    /// What the links take: admitted connections, or why none could be.
    arrivals: tokio::sync::Mutex<Queue>,
    /// Told when a relay's proof is posted ([`watch`]).
    proved: tokio::sync::Notify,
}

/// What to do with one connection, decided under the lock and done after it.
enum Action {
    /// Hand it to the link.
    Accept(DataChannel),
    /// Close it: nothing it brought is kept.
    Close(DataChannel),
    /// Keep it, its bytes kept in memory, until decided.
    Park(DataChannel, oneshot::Receiver<bool>),
    Tell(String),
    Raced(String),
}

/// A connection past the quick checks, on its way to the origin check.
type Checked = DataChannel;

impl Gate {
    /// The gate of `session`'s forwarded channels (made on first use: before any forward).
    pub fn of(session: &Session) -> &Gate {
        session.forwarded_to(Gate::new)
    }

    /// A gate that tells `events` what it refuses, its origin checks under way.
    fn new(events: &Events) -> Arc<Gate> {
        Arc::new_cyclic(|gate| Gate {
            me: gate.clone(),
            ..Gate::build(events.clone(), Gate::start_checking(gate.clone()))
        })
    }

    /// A gate whose connections past the quick checks go to `checking`.
    fn build(events: Events, checking: mpsc::UnboundedSender<Checked>) -> Gate {
        let (accounts, origin, uids) = (Mutex::default(), tokio::sync::Mutex::default(), Mutex::default());
        let (incoming, arrivals) = mpsc::unbounded_channel();
        let arrivals = tokio::sync::Mutex::new(Queue::new(arrivals));
        let (me, origin_tried, proved) = (Weak::new(), Default::default(), Default::default());
        Gate { me, events, accounts, origin, uids, origin_tried, checking, incoming, arrivals, proved }
    }

    /// What the gate decided next (an admitted forwarded connection, or why none could be),
    /// or None after `timeout`.
    pub async fn next(&self, timeout: Duration) -> Option<Arrival> {
        self.arrivals.lock().await.next(timeout).await
    }

    /// Close forwarded connections left over from an earlier transfer (a
    /// channel merely dropped stays open: the FTP server would wait for its end).
    pub async fn drain(&self) {
        let Ok(mut queue) = self.arrivals.try_lock() else { return };
        for left in queue.left().await {
            if let Arrival::Data(left) = left {
                let _ = left.channel.close().await;
            }
        }
    }

    /// Start the task that checks connections' origins one at a time, in the order they
    /// came (a transfer sent ahead must not get the one before's connection), until the
    /// sender returned is dropped with the gate (the gate is the session's: the task holds
    /// it only while it checks one).
    ///
    /// Each was confirmed to sshd as it came ([`Gate::arrive`]); its origin is asked for at
    /// once (or taken from the relay's proof, which comes with the server's 150: [`watch`]):
    /// the answer comes back about when its first bytes do, which wait in memory meanwhile.
    fn start_checking(gate: Weak<Gate>) -> mpsc::UnboundedSender<Checked> {
        let (tx, mut rx) = mpsc::unbounded_channel::<Checked>();
        tokio::spawn(async move {
            while let Some(mut data) = rx.recv().await {
                // The gate sent it, so it is alive unless the session ended meanwhile.
                let Some(gate) = gate.upgrade() else { break };
                let proof = gate.origin_of(&mut data).await;
                let mut actions = Vec::new();
                gate.judge(data, proof, &mut actions);
                gate.act(actions).await;
            }
        });
        tx
    }

    /// From now on, prove each connection's origin with `origin`, the FTP server's sockets
    /// being those of `uids` (and root's).
    pub async fn check_origins(&self, origin: Origin, uids: Uids) {
        *self.uids.lock().unwrap() = Some(uids);
        *self.origin.lock().await = Some(origin);
    }

    /// Whether the origin check was tried, held while it starts: another link waits
    /// rather than go unchecked.
    pub async fn origin_tried(&self) -> tokio::sync::MutexGuard<'_, bool> {
        self.origin_tried.lock().await
    }

    /// A transfer is pending on the link whose forwarded ports are `ports`:
    /// admit one more connection to them from `ftp_server`. The first makes
    /// the link's account (anew where a closed link's had the same ports).
    pub fn open(&self, ports: &[u16], ftp_server: IpAddr) {
        let mut accounts = self.accounts.lock().unwrap();
        accounts.retain(|a| !(a.retired && a.ports == ports));
        let a = match accounts.iter().position(|a| a.ports == ports) {
            Some(i) => &mut accounts[i],
            None => {
                accounts.push(Account::new(ports, ftp_server));
                accounts.last_mut().expect("pushed")
            }
        };
        if a.ftp != ftp_server {
            (a.ftp, a.expected) = (ftp_server, 0);
        }
        a.expected += 1;
    }

    /// No transfer is pending on that link any more.
    pub fn close(&self, ports: &[u16]) {
        let held = self.with(ports, |a| {
            a.maybe_late |= std::mem::take(&mut a.expected) > 0;
            a.releases = 0;
            std::mem::take(&mut a.held)
        });
        self.refuse_held(held.unwrap_or_default(), "its transfer ended before it could be told apart");
    }

    /// The link's control connection is back in step after transfers were
    /// given up, and the server says it made `made` data connections in all:
    /// those of them that have not arrived are refused when they do.
    pub fn settle(&self, ports: &[u16], made: u64) {
        self.with(ports, |a| a.late = made.saturating_sub(a.arrived));
    }

    /// The link has closed (its forwards cancelled): what still comes is refused as for
    /// [`Gate::close`], and a link that gets the same ports later starts afresh.
    pub fn retire(&self, ports: &[u16]) {
        self.close(ports);
        self.with(ports, |a| a.retired = true);
    }

    /// The link's data connections come from one port, `source` (None: from any).
    pub fn pin_source(&self, ports: &[u16], source: Option<u16>) {
        self.with(ports, |a| a.source = source);
    }

    /// The server ended the pending transfer (its final reply) before its link had a
    /// connection for it; the link has received `received` connections in all. If exactly
    /// one came and waits, unproven, it was the server's: it is admitted (true). Two or
    /// more: someone raced the server; all are refused and the error says who. None yet:
    /// false (the check of one may still be under way; it is admitted when done, if it is
    /// then the only one).
    pub async fn release(&self, ports: &[u16], received: u64) -> Result<bool, String> {
        let mut actions = Vec::new();
        let result = self.with(ports, |a| a.release(&mut actions, &self.events, received)).unwrap_or(Ok(false));
        self.act(actions).await;
        result
    }

    /// Nothing has come to `ports` for the transfer whose link has received `received`
    /// connections: none admitted beyond those, none being checked, none waiting.
    pub fn nothing_came(&self, ports: &[u16], received: u64) -> bool {
        self.with(ports, |a| a.checking == 0 && a.held.is_empty() && a.admitted <= received).unwrap_or(true)
    }

    /// True once a connection to `ports` waited unproven. Such a link must not send a
    /// transfer ahead: two unproven connections waiting at once cannot be told apart, neither
    /// as the server's nor as one transfer's or the next's.
    pub fn saw_unproven(&self, ports: &[u16]) -> bool {
        self.with(ports, |a| a.unproven_seen).unwrap_or(false)
    }

    /// Run `f` on the account of `ports`, if it has one.
    fn with<R>(&self, ports: &[u16], f: impl FnOnce(&mut Account) -> R) -> Option<R> {
        self.accounts.lock().unwrap().iter_mut().find(|a| a.ports == ports).map(f)
    }

    /// Refuse what waited for a transfer given up: most likely the server's own, late.
    fn refuse_held(&self, held: Vec<Held>, why: &str) {
        for h in held {
            self.events.emit(Event::StrayRefused {
                from: h.from,
                to: h.to,
                why: format!("{why} ({})", h.why),
                late: true,
            });
            let _ = h.decide.send(false);
        }
    }

    fn refused(&self, data: &DataChannel, why: String, late: bool) {
        self.events.emit(Event::StrayRefused { from: data.from(), to: data.to(), why, late });
    }

    /// Decide on one forwarded connection (called from the SSH event loop, which must not
    /// wait): refused at once, or passed to the checker ([`Gate::start_checking`]), which
    /// admits or closes it once its origin is known. One passed on is confirmed to sshd at
    /// once: that gives nothing away (no byte goes to it before the proof), and its first
    /// bytes come while the origin is looked up.
    fn arrive(&self, mut data: DataChannel) -> bool {
        let to_port = data.connected.1 as u16;
        match self.screen(&data.originator.0, data.originator.1, to_port, data.ends()) {
            Ok(watched) => data.watched = watched,
            Err(why) => {
                self.refused(&data, why, false);
                return false;
            }
        }
        // A closed checker (the session is ending): the channel is rejected.
        self.checking.send(data).is_ok()
    }

    /// The quick refusals, before any proof: nothing expected on that port, another address,
    /// another port than the one the server's connections are known to come from. One that
    /// passes is counted on its link's watched tuple, if it has `ends` (its number there: [`watch`]).
    fn screen(&self, addr: &str, port: u32, to_port: u16, ends: Option<watch::Ends>) -> Result<u64, String> {
        let from = addr.parse::<IpAddr>().ok().map(|a| a.to_canonical());
        let mut accounts = self.accounts.lock().unwrap();
        let Some(a) = account_for(&mut accounts, to_port) else {
            return Err("no data connection is expected now".into());
        };
        if from != Some(a.ftp) {
            return Err(format!("it does not come from the FTP server {}", a.ftp));
        }
        if let Some(source) = a.source.filter(|&p| u32::from(p) != port) {
            return Err(format!("it does not come from the FTP server's data port {source}"));
        }
        a.checking += 1;
        Ok(a.watch.arrived(ends))
    }

    /// Where the connection `who` came from, by the SSH server's socket table: its ends
    /// `from` and `to`, judged by `uids` ([`Gate::lookup`] gives them).
    async fn prove(&self, who: &str, uids: Uids, (from, to): (SocketAddr, SocketAddr)) -> Proof {
        let mut origin = self.origin.lock().await;
        let Some(check) = origin.as_mut() else {
            return Proof::Unprovable("the origin check on the SSH server has ended".into());
        };
        let asked = std::time::Instant::now();
        match check.look(from, to).await {
            Ok(seen) => {
                tracing::debug!("origin of {who} looked up in {:.2?}: {seen:?}", asked.elapsed());
                uids.judge(seen, from.port())
            }
            Err(e) => {
                *origin = None;
                Proof::Unprovable(format!("its origin could not be checked ({e:#})"))
            }
        }
    }

    /// What a look-up of `who`'s origin ([`Gate::prove`]) needs, or the origin where it is known
    /// with nothing looked up: no check (none asked for), an address with no sockets to look
    /// up, a port only root binds (ProFTPD's 20).
    fn lookup(
        &self,
        who: &str,
        ends: Option<(SocketAddr, SocketAddr)>,
    ) -> Result<(Uids, (SocketAddr, SocketAddr)), Proof> {
        let uids = self.uids.lock().unwrap().clone();
        let Some(uids) = uids else { return Err(Proof::Unchecked) };
        let Some(ends) = ends else {
            return Err(Proof::Unprovable(format!("{who} is not an address whose sockets can be looked up")));
        };
        match uids.by_port(ends.0.port()) {
            Some(known) => Err(known),
            None => Ok((uids, ends)),
        }
    }

    /// The rule itself, once the origin is known.
    fn judge(&self, data: DataChannel, proof: Proof, actions: &mut Vec<Action>) {
        let to_port = data.connected.1 as u16;
        let mut accounts = self.accounts.lock().unwrap();
        let Some(a) = account_for(&mut accounts, to_port) else {
            self.refused(&data, "no data connection is expected now".into(), false);
            return actions.push(Action::Close(data));
        };
        a.checking = a.checking.saturating_sub(1);
        a.judge(data, proof, actions, &self.events);
    }

    /// Do what was decided, outside the lock.
    async fn act(&self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Accept(data) => hand_over(&self.incoming, data),
                Action::Close(data) => _ = data.channel.close().await,
                Action::Park(mut data, mut decided) => {
                    let incoming = self.incoming.clone();
                    tokio::spawn(async move {
                        let admit = loop {
                            tokio::select! {
                                decided = &mut decided => break decided.unwrap_or(false),
                                kept = data.keep_one(KEPT_MAX) => if kept.is_err() { break false },
                            }
                        };
                        match admit {
                            true => hand_over(&incoming, data),
                            false => _ = data.channel.close().await,
                        }
                    });
                }
                Action::Tell(why) => _ = self.incoming.send(Inbound::Said(Arrival::Unprovable(why))),
                Action::Raced(who) => _ = self.incoming.send(Inbound::Said(Arrival::Raced(who))),
            }
        }
    }

    /// The rules without an origin check (unit tests): `addr:port` connected to `to_port`,
    /// admitted or not.
    #[cfg(test)]
    fn admit_from(&self, addr: &str, port: u32, to_port: u16, to: &str) -> bool {
        if let Err(why) = self.screen(addr, port, to_port, None) {
            self.events.emit(Event::StrayRefused { from: format!("{addr}:{port}"), to: to.into(), why, late: false });
            return false;
        }
        let mut accounts = self.accounts.lock().unwrap();
        let a = account_for(&mut accounts, to_port).unwrap();
        (a.checking, a.arrived) = (a.checking - 1, a.arrived + 1);
        a.admit_proven(&self.events, &format!("{addr}:{port}"), to).is_ok()
    }
}

impl Receiver for Gate {
    fn arrive(&self, forwarded: Forwarded) -> bool {
        Gate::arrive(self, DataChannel::new(forwarded))
    }
}
