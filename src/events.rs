//! One stream of typed events from the procedure: what happened, with the
//! real values of this run (ports, 4-tuples, timers), as the book tells it.
//!
//! The procedure only [`Events::emit`]s; every view is an [`Observer`]: the
//! `-v` trace ([`crate::cli::output::Trace`]), the progress display, the bulk
//! run's report ([`crate::jobs::report`]) and the teaching demo. None of
//! them reaches into the procedure's internals, and the procedure does not
//! know who watches.
//!
//! Events are emitted where the thing happens, after it happened, and carry
//! plain values (no handles), so an observer may keep them.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::Serialize;

use crate::ftp::Dialect;
use crate::tcp::DataTuple;
pub mod tunnel;

/// How the control connection was made, which decides how P is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    /// The SO_REUSEADDR relay on the SSH server (perl, python3 or socat): it reported P.
    Relay(&'static str),
    /// sshd's own connection (direct-tcpip), P read off the socket-table diff.
    SocketTable,
    /// sshd's own connection, for passive mode: P is not needed.
    Direct,
}

/// What happened. The `Display` of each is its `-v` line; the JSON form
/// (`--events FILE`, one per line) is tagged by `"event"`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// The SSH connection is up: our end (the client port C) and the server's.
    SshConnected {
        /// Our end of the SSH connection: C.
        client: SocketAddr,
        /// The SSH server's end.
        server: SocketAddr,
    },
    /// A control connection to the FTP server exists, made on the SSH server host.
    ControlOpened {
        /// How it was made.
        via: Via,
        /// Its source as the FTP server sees it: P (port 0 when not known).
        proxy: SocketAddr,
        /// The FTP server's control address.
        ftp: SocketAddr,
    },
    /// The greeting told where the server will connect back.
    DialectChosen {
        /// ProFTPD (U-1) or RFC 959 (U).
        dialect: Dialect,
        /// The port it will connect to.
        data_port: u16,
    },
    /// sshd listens for the FTP server's data connections (tcpip-forward, checked in its socket table).
    ForwardListening {
        /// Where it listens: the address and port the FTP server connects to.
        listen: SocketAddr,
        /// A second port, forwarded too (U-1 for a server that may hide that it is ProFTPD).
        spare: Option<u16>,
    },
    /// A default-port data connection came back through the reverse forward and was admitted.
    DataAccepted {
        /// Its 4-tuple: the FTP server's data source (S) and the forwarded port.
        from: SocketAddr,
        /// The forwarded port it connected to (U-1 or U).
        to: SocketAddr,
        /// How many connections this 4-tuple has carried in this process, this one included.
        incarnation: u32,
    },
    /// A passive data connection, made by sshd to the port the server announced.
    PassiveData {
        /// Where sshd connected (the control connection's host, never the 227's address).
        to: String,
    },
    /// A line sent on the control connection (passwords redacted).
    Sent {
        /// The line.
        line: String,
    },
    /// A line received on the control connection.
    Received {
        /// The line.
        line: String,
    },
    /// A transfer's bytes start to move.
    TransferStarted {
        /// The remote name.
        name: String,
        /// Where it resumes (REST), 0 when it starts from the beginning.
        offset: u64,
        /// The total size, when the server told it.
        size: Option<u64>,
    },
    /// Some bytes moved.
    Progress {
        /// How many, since the last one.
        bytes: u64,
    },
    /// A transfer ended with its completion reply.
    TransferDone {
        /// The remote name.
        name: String,
        /// Bytes in the file.
        bytes: u64,
        /// Whether the size was checked against the server's.
        verified: bool,
    },
    /// The copy's hash equals the FTP server's own hash of the file (`--verify`).
    Verified {
        /// The remote name.
        name: String,
        /// `sha256`, `sha1` or `md5`.
        algorithm: String,
        /// The digest both sides computed.
        digest: String,
    },
    /// `--verify` could not ask for a hash: the size check is all there is.
    Unverified {
        /// Why.
        why: String,
        /// True the first time in this process (said on stderr; later ones only with -v).
        first: bool,
    },
    /// The server could not make the data connection: its 4-tuple is in TIME_WAIT.
    Collision {
        /// The tuple as far as known.
        tuple: Option<DataTuple>,
        /// The server's reply.
        reply: String,
    },
    /// The TIME_WAIT timer of a tuple, read on the SSH server.
    TimeWaitLeft {
        /// The tuple.
        tuple: DataTuple,
        /// Time left before the kernel drops the entry.
        left: Duration,
    },
    /// The tuple's TIME_WAIT was ended with a SYN from its proxy end.
    Reclaimed {
        /// The tuple.
        tuple: DataTuple,
    },
    /// The next transfer goes on another control connection: a new proxy port, a new 4-tuple.
    Rotated {
        /// Why.
        why: String,
    },
    /// Reclaiming did not free a tuple here: collisions rotate from now on.
    ReclaimFailed {
        /// The collision and why reclaiming failed.
        why: String,
    },
    /// A wait began.
    Waiting {
        /// How long.
        total: Duration,
        /// Why, with the measured figure.
        cause: String,
    },
    /// A wait ended.
    Waited {
        /// How long it was.
        total: Duration,
        /// Why.
        cause: String,
    },
    /// The default port will not do for this control connection: passive from now on.
    FellBack {
        /// Why.
        why: String,
        /// True the first time in this process (said on stderr; later ones only with -v).
        first: bool,
    },
    /// A step on the way to a control connection's data path did not work; the next is tried.
    Detour {
        /// What, and what comes instead.
        what: String,
    },
    /// A connection to the forwarded data port that was not admitted.
    StrayRefused {
        /// Who connected.
        from: String,
        /// The forwarded address it connected to.
        to: String,
        /// Why it was refused.
        why: String,
        /// Our own late connection (a transfer given up before it came), not a theft.
        late: bool,
    },
    /// The SSH connection failed; a new one is tried after a pause.
    Reconnecting {
        /// Why, on one line.
        error: String,
        /// After how long.
        delay: Duration,
    },
    /// One item of a bulk run ended, well or not.
    JobDone {
        /// Items ended so far.
        done: usize,
        /// Items in the run.
        total: usize,
    },
    /// A transfer failed for a passing reason and will be tried again.
    Retrying {
        /// What: `get NAME`.
        what: String,
        /// Why: the error on one line.
        error: String,
        /// Which retry.
        retry: u32,
        /// After how long.
        delay: Duration,
    },
    /// The tunnel's own facts about an outside client, on this host.
    Tunnel(tunnel::Fact),
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::SshConnected { client, server } => write!(f, "SSH connection {client} -> {server} is up (C = {})", client.port()),
            Event::ControlOpened { via: Via::Relay(name), proxy, ftp } => write!(
                f,
                "control connection through the {name} relay: P = {} on {} (to the FTP server {ftp})",
                proxy.port(),
                proxy.ip()
            ),
            Event::ControlOpened { via: Via::SocketTable, proxy, ftp } => write!(
                f,
                "proxy port P = {} on {} (from the socket table), to the FTP server {ftp}",
                proxy.port(),
                proxy.ip()
            ),
            Event::ControlOpened { via: Via::Direct, ftp, .. } => write!(f, "control connection to {ftp} from the SSH server"),
            Event::DialectChosen { dialect, data_port } => write!(f, "the FTP server is {dialect} ({data_port})"),
            Event::ForwardListening { listen, spare } => {
                let ports = spare.map_or_else(|| format!("[{}]", listen.port()), |s| format!("[{}, {s}]", listen.port()));
                write!(f, "reverse forward: sshd listens on {}:{ports} for the data connections", listen.ip())
            }
            Event::DataAccepted { from, to, incarnation } => write!(
                f,
                "data connection from {}:{} through the reverse forward {}:{} (incarnation {incarnation} of this 4-tuple)",
                from.ip(),
                from.port(),
                to.ip(),
                to.port()
            ),
            Event::PassiveData { to } => write!(f, "passive data connection to {to} from the SSH server"),
            Event::Sent { line } => write!(f, "---> {line}"),
            Event::Received { line } => f.write_str(line),
            Event::TransferStarted { name, offset: 0, .. } => write!(f, "transferring {name}"),
            Event::TransferStarted { name, offset, .. } => write!(f, "resuming {name} at byte {offset}"),
            Event::Progress { bytes } => write!(f, "{bytes} bytes"),
            Event::TransferDone { name, bytes, verified } => {
                let check = if *verified { ", size verified" } else { "" };
                write!(f, "{name}: {bytes} bytes{check}")
            }
            Event::Verified { name, algorithm, digest } => write!(f, "{name}: {algorithm} {digest} = the server's"),
            Event::Unverified { why, .. } => f.write_str(why),
            Event::Collision { tuple: Some(t), reply } => write!(f, "TIME_WAIT collision on {t}: the FTP server replied {reply}"),
            Event::Collision { tuple: None, reply } => write!(f, "TIME_WAIT collision: the FTP server replied {reply}"),
            Event::TimeWaitLeft { tuple, left } => {
                write!(f, "TIME_WAIT of {tuple} has {:.1} s left (measured on the server)", left.as_secs_f64())
            }
            Event::Reclaimed { tuple } => write!(
                f,
                "TIME_WAIT collision on {tuple}: reclaimed the 4-tuple with a SYN from its proxy end; same control connection"
            ),
            Event::Rotated { why } => write!(f, "{why}; rotating to another control connection (new proxy port, new 4-tuple)"),
            Event::ReclaimFailed { why } => write!(f, "{why}; rotating to other control connections from now on"),
            Event::Waiting { total, cause } => write!(f, "{cause}; waiting {:.1} s", total.as_secs_f64()),
            Event::Waited { total, cause } => write!(f, "waited {:.1} s: {cause}", total.as_secs_f64()),
            Event::FellBack { why, .. } => {
                write!(f, "switching to passive (EPSV/PASV inside SSH) for this control connection: {why}")
            }
            Event::Detour { what } => f.write_str(what),
            Event::StrayRefused { from, to, why, late: false } => write!(
                f,
                "refused a connection from {from} to the forwarded data port {to}: {why} (possible data port theft)"
            ),
            Event::StrayRefused { from, to, why, late: true } => write!(f, "refused a late data connection from {from} to {to}: {why}"),
            Event::JobDone { done, total } => write!(f, "{done} of {total} done"),
            Event::Reconnecting { error, delay } => write!(f, "SSH connection failed ({error}); retrying in {delay:.1?}"),
            Event::Retrying { what, error, retry, delay } => write!(f, "{what}: {error}; retry {retry} in {delay:.1?}"),
            Event::Tunnel(fact) => fact.fmt(f),
        }
    }
}

/// A view of the stream.
pub trait Observer: Send + Sync {
    /// One event, as it happens. Called on the thread that emits it: keep it short.
    fn see(&self, event: &Event);
}

impl<F: Fn(&Event) + Send + Sync> Observer for F {
    fn see(&self, event: &Event) {
        self(event)
    }
}

/// Where the procedure emits: the observers of this run. Cheap to clone; a
/// clone shares the list ([`Events::fork`] makes a separate one).
#[derive(Clone, Default)]
pub struct Events {
    observers: Arc<RwLock<Observers>>,
}

/// Each observer with the id [`Events::watch`] gave it (0: added by [`Events::with`]).
type Observers = Vec<(u64, Arc<dyn Observer>)>;

impl fmt::Debug for Events {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Events({} observers)", self.observers.read().unwrap().len())
    }
}

/// Watching until dropped (see [`Events::watch`]).
pub struct Watching {
    events: Events,
    id: u64,
}

impl Drop for Watching {
    fn drop(&mut self) {
        self.events.observers.write().unwrap().retain(|(id, _)| *id != self.id);
    }
}

impl Events {
    /// No observers: events go nowhere.
    pub fn none() -> Events {
        Events::default()
    }

    /// A separate list with the same observers and one more.
    pub fn with(&self, observer: Arc<dyn Observer>) -> Events {
        let events = self.fork();
        events.observers.write().unwrap().push((0, observer)); // id 0: never unwatched
        events
    }

    /// A separate list with the same observers: what is added to one later
    /// is not seen by the other (one per SSH session, so a worker of a bulk
    /// run watches only its own).
    pub fn fork(&self) -> Events {
        Events { observers: Arc::new(RwLock::new(self.observers.read().unwrap().clone())) }
    }

    /// Add `observer` to this list until the returned guard is dropped.
    pub fn watch(&self, observer: Arc<dyn Observer>) -> Watching {
        static NEXT: AtomicU64 = AtomicU64::new(1); // 0 is `with`'s
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        self.observers.write().unwrap().push((id, observer));
        Watching { events: self.clone(), id }
    }

    /// Tell every observer.
    pub fn emit(&self, event: Event) {
        for (_, o) in self.observers.read().unwrap().iter() {
            o.see(&event);
        }
    }
}

/// An observer that keeps every event (for tests, the demo and the report).
#[derive(Debug, Default)]
pub struct Recorder {
    seen: std::sync::Mutex<Vec<Event>>,
}

impl Recorder {
    /// Everything seen so far, and forget it.
    pub fn take(&self) -> Vec<Event> {
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}

impl Observer for Recorder {
    fn see(&self, event: &Event) {
        if !matches!(event, Event::Progress { .. }) {
            self.seen.lock().unwrap().push(event.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_observer_sees_each_event_in_order() {
        let a = Arc::new(Recorder::default());
        let b = Arc::new(Recorder::default());
        let events = Events::none().with(a.clone()).with(b.clone());
        events.emit(Event::Sent { line: "RETR x".into() });
        events.emit(Event::Progress { bytes: 10 });
        events.emit(Event::Received { line: "226 ok".into() });
        let want = vec![Event::Sent { line: "RETR x".into() }, Event::Received { line: "226 ok".into() }];
        assert_eq!((a.take(), b.take()), (want.clone(), want));
    }

    #[test]
    fn a_watch_ends_with_its_guard_and_forks_are_separate() {
        let base = Events::none();
        let fork = base.fork();
        let seen = Arc::new(Recorder::default());
        let watching = fork.watch(seen.clone());
        base.emit(Event::Sent { line: "NOOP".into() });
        fork.emit(Event::Sent { line: "PWD".into() });
        drop(watching);
        fork.emit(Event::Sent { line: "QUIT".into() });
        assert_eq!(seen.take(), vec![Event::Sent { line: "PWD".into() }]);
    }

    #[test]
    fn lines_name_the_real_values() {
        let from: SocketAddr = "10.250.0.2:2020".parse().unwrap();
        let to: SocketAddr = "10.250.0.2:40000".parse().unwrap();
        let line = Event::DataAccepted { from, to, incarnation: 3 }.to_string();
        assert!(
            line.contains("10.250.0.2:2020") && line.contains(":40000") && line.contains("incarnation 3"),
            "{line}"
        );
        let spare = Event::ForwardListening { listen: to, spare: Some(39999) }.to_string();
        assert_eq!(spare, "reverse forward: sshd listens on 10.250.0.2:[40000, 39999] for the data connections");
    }

    #[test]
    fn json_lines_are_tagged() {
        let from: SocketAddr = "10.250.0.2:2020".parse().unwrap();
        let to: SocketAddr = "10.250.0.2:40000".parse().unwrap();
        let json = serde_json::to_value(Event::DataAccepted { from, to, incarnation: 2 }).unwrap();
        assert_eq!(json["event"], "data_accepted");
        assert_eq!((json["from"].as_str(), json["incarnation"].as_u64()), (Some("10.250.0.2:2020"), Some(2)));
    }
}
