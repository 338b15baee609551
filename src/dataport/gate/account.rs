//! One link's account at the gate: its forwarded ports, what it expects, and what waits.

use std::net::IpAddr;

use tokio::sync::oneshot;

use super::proof::Proof;
use super::watch::Watch;
use super::{Action, DataChannel};
use crate::events::{Event, Events};

/// Unproven connections parked at once, their bytes in memory (up to [`super::KEPT_MAX`] each):
/// two already make the transfer raced, so another account's flood of connections that close
/// at once costs no more memory than that.
const PARKED_MAX: usize = 2;

/// A connection whose origin could not be proven, parked (its bytes kept in memory, not
/// given to anyone) until the transfer tells.
pub(super) struct Held {
    pub(super) from: String,
    pub(super) to: String,
    /// Why it could not be proven.
    pub(super) why: String,
    /// Admit it (true) or close it.
    pub(super) decide: oneshot::Sender<bool>,
}

impl Held {
    fn refuse(self, why: String, events: &Events) {
        events.emit(Event::StrayRefused { from: self.from, to: self.to, why, late: false });
        let _ = self.decide.send(false);
    }
}

/// A connection the account admits: one just judged, or one parked until now.
enum Candidate {
    Now(DataChannel),
    Parked(Held),
}

/// One link's account: its forwarded ports, the FTP server, and its connections.
pub(super) struct Account {
    pub(super) ports: Vec<u16>,
    pub(super) ftp: IpAddr,
    /// Connections to admit: one per transfer sent and not yet connected.
    pub(super) expected: u32,
    /// Connections of transfers given up that are still to come: refused.
    pub(super) late: u64,
    /// One more connection may come late (a transfer given up before the
    /// server replied): refused quietly, as our own.
    pub(super) maybe_late: bool,
    /// Connections from the FTP server that reached this account, admitted or not: counted
    /// as they are judged (waiting, refused or admitted), all but those another uid made.
    pub(super) arrived: u64,
    /// The server's data source port, once seen fixed (20, or ProFTPD's L-1): another
    /// process on its host may connect from its address, but not from that port (20 needs root).
    pub(super) source: Option<u16>,
    /// Its link has closed; a new link that gets the same ports starts a new account.
    pub(super) retired: bool,
    /// Connections past the quick checks whose origin is still being looked up.
    pub(super) checking: u32,
    /// Unproven connections, waiting for the server's final reply to tell.
    pub(super) held: Vec<Held>,
    /// The server ended a transfer before any connection for it was judged: the next one
    /// judged unproven is admitted if it is then the only one.
    pub(super) releases: u32,
    /// Connections admitted (handed to the link) in all.
    pub(super) admitted: u64,
    /// A connection of this link came whose origin could not be proven (the server closes its
    /// data sockets before they can be read): see [`super::Gate::saw_unproven`].
    pub(super) unproven_seen: bool,
    /// The 4-tuple the link's relay proves, and the proofs it sent ([`super::watch`]).
    pub(super) watch: Watch,
}

impl Account {
    pub(super) fn new(ports: &[u16], ftp: IpAddr) -> Account {
        Account {
            ports: ports.to_vec(),
            ftp,
            expected: 0,
            late: 0,
            maybe_late: false,
            arrived: 0,
            source: None,
            retired: false,
            checking: 0,
            held: Vec::new(),
            releases: 0,
            admitted: 0,
            unproven_seen: false,
            watch: Watch::default(),
        }
    }

    /// Decide on `data`, whose origin is `proof`.
    pub(super) fn judge(&mut self, data: DataChannel, proof: Proof, actions: &mut Vec<Action>, events: &Events) {
        let refuse = |data: &DataChannel, why: String| {
            events.emit(Event::StrayRefused { from: data.from(), to: data.to(), why, late: false });
        };
        if !matches!(proof, Proof::Foreign(_)) {
            self.arrived += 1;
        }
        self.unproven_seen |= matches!(proof, Proof::Unproven(_));
        match proof {
            Proof::Proven(how) => {
                tracing::debug!("data connection from {}: {how}", data.from());
                self.admit(Candidate::Now(data), actions, events);
            }
            Proof::Unchecked => self.admit(Candidate::Now(data), actions, events),
            Proof::Foreign(why) => {
                refuse(&data, why);
                actions.push(Action::Close(data));
            }
            Proof::Unprovable(why) => {
                refuse(&data, why.clone());
                actions.push(Action::Close(data));
                if self.expected > 0 {
                    actions.push(Action::Tell(why));
                }
            }
            // A connection the server made for a transfer given up (it said so: see
            // [`super::Gate::settle`]) is refused quietly, as a proven one would be: held, it
            // would count as a second one for this transfer. An attacker's taken for it leaves
            // the real late one to be held beside this transfer's: raced, nothing kept.
            Proof::Unproven(_) if self.late > 0 || (self.expected == 0 && self.maybe_late) => {
                match self.late > 0 {
                    true => self.late -= 1,
                    false => self.maybe_late = false,
                }
                let why = "it belongs to a transfer we gave up on".into();
                events.emit(Event::StrayRefused { from: data.from(), to: data.to(), why, late: true });
                actions.push(Action::Close(data));
            }
            Proof::Unproven(why) if self.expected > 0 => {
                tracing::debug!("data connection from {} waits: {why}", data.from());
                let (decide, decided) = oneshot::channel();
                self.held.push(Held { from: data.from(), to: data.to(), why, decide });
                match self.held.len() <= PARKED_MAX {
                    true => actions.push(Action::Park(data, decided)),
                    // Past that the transfer is raced whatever comes: counted, its bytes not kept.
                    false => actions.push(Action::Close(data)),
                }
            }
            Proof::Unproven(_) => {
                refuse(&data, "no data connection is expected now".into());
                actions.push(Action::Close(data));
            }
        }
        if self.releases > 0 && self.checking == 0 && !self.held.is_empty() {
            self.releases = 0;
            if let Err(why) = self.release(actions, events, self.admitted) {
                actions.push(Action::Raced(why));
            }
        }
    }

    /// A proven connection: admitted by the account's rules; whatever waited unproven for
    /// the same transfer raced the server's own, and is refused.
    fn admit(&mut self, candidate: Candidate, actions: &mut Vec<Action>, events: &Events) {
        let (from, to) = match &candidate {
            Candidate::Now(data) => (data.from(), data.to()),
            Candidate::Parked(h) => (h.from.clone(), h.to.clone()),
        };
        let admitted = self.admit_proven(events, &from, &to).is_ok();
        if admitted {
            (self.admitted, self.releases) = (self.admitted + 1, 0);
            for h in std::mem::take(&mut self.held) {
                let why = format!("it raced the FTP server's own connection ({})", h.why);
                h.refuse(why, events);
            }
        }
        match candidate {
            Candidate::Now(data) if admitted => actions.push(Action::Accept(data)),
            Candidate::Now(data) => actions.push(Action::Close(data)),
            Candidate::Parked(h) => _ = h.decide.send(admitted),
        }
    }

    /// The server ended a transfer with no connection admitted for it (see
    /// [`super::Gate::release`]); the link has received `received` of those admitted.
    pub(super) fn release(
        &mut self,
        actions: &mut Vec<Action>,
        events: &Events,
        received: u64,
    ) -> Result<bool, String> {
        if self.admitted > received {
            return Ok(true); // admitted already, on its way to the link
        }
        match self.held.len() {
            1 if self.checking == 0 => {
                let h = self.held.pop().expect("one");
                tracing::debug!("data connection from {}: the only one the transfer brought", h.from);
                self.admit(Candidate::Parked(h), actions, events);
                Ok(true)
            }
            0 | 1 => {
                self.releases = 1;
                Ok(false)
            }
            _ => {
                let who: Vec<String> = self.held.iter().map(|h| format!("{} ({})", h.from, h.why)).collect();
                for h in std::mem::take(&mut self.held) {
                    h.refuse("it raced another connection for one transfer".into(), events);
                }
                Err(format!(
                    "{} connections raced for one data connection, and none could be told apart as the FTP \
                     server's: {}; nothing they brought is kept",
                    who.len(),
                    who.join(", ")
                ))
            }
        }
    }

    /// The account's rules for a connection from the FTP server: `Ok` admits it.
    pub(super) fn admit_proven(&mut self, events: &Events, from: &str, to: &str) -> Result<(), ()> {
        let refused = |why: &str, late: bool| {
            events.emit(Event::StrayRefused { from: from.into(), to: to.into(), why: why.into(), late });
            Err(())
        };
        if self.late > 0 {
            self.late -= 1;
            return refused("it belongs to a transfer we gave up on", true);
        }
        if self.expected > 0 {
            self.expected -= 1; // one data connection per transfer
            return Ok(());
        }
        if std::mem::take(&mut self.maybe_late) {
            return refused("it belongs to a transfer we gave up on", true);
        }
        refused("no data connection is expected now", false)
    }
}
