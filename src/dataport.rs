//! Preparing the default-port data path of one control connection: the book's
//! steps 2 to 4 (know P, know where the server connects back, have sshd
//! listen exactly there).
//!
//! 1. **P is known, not guessed.** The control connection is made by the
//!    SO_REUSEADDR relay ([`crate::dataport::relay`]), which reports its own port P.
//!    Only where no relay can run does P come from the socket-table diff
//!    ([`crate::dataport::discovery`]), retried with jitter when another connection
//!    raced ours.
//! 2. **The dialect** ([`Dialect`]): ProFTPD connects back to U-1 = P-1,
//!    RFC 959 servers to U = P (which only the relay's SO_REUSEADDR makes
//!    shareable with sshd's listener).
//! 3. **The reverse forward, checked before it is trusted**: sshd may answer
//!    success yet listen on loopback (`GatewayPorts no`, dropbear without
//!    `-a`), so the SSH server's socket table must show a listener on exactly
//!    the address and port the FTP server will connect to.
//!
//! Whatever goes wrong on the way is a [`Fallback`]: the reason to go
//! passive in `--data-mode auto`, or the error in `--data-mode default-port`.

pub mod discovery;
pub mod forward;
pub mod gate;
mod judge;
pub mod origin;
pub mod passive;
pub mod path;
pub mod reclaim;
pub mod relay;

pub use passive::Fallback;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, Result};
use backon::BackoffBuilder;

use crate::backoff;
use crate::credentials::Login;
use crate::dataport::gate::proof::Uids;
use crate::dataport::gate::Gate;
use crate::dataport::origin::Origin;
use crate::events::{Event, Via};
use crate::ftp::control::{Control, Line, Transcript};
use crate::ftp::login::timed_login;
use crate::ftp::{Dialect, Reply};
use crate::ssh::endpoint::FtpTarget;
use crate::ssh::helper::Helper;
use crate::ssh::Session;
use discovery::NotFound;
use forward::ReverseForward;
use judge::{judge_forward, Judged};

/// Control connections tried for a usable proxy port before giving up: a
/// port held by another socket, or with a data connection in TIME_WAIT.
const MAX_PROXY_TRIES: usize = 4;

/// Socket-table diffs tried when other connections to the FTP server appear
/// at the same moment as ours (another run of the same user, or any program
/// of the user's or root's).
const MAX_DIFF_TRIES: u32 = 10;

/// Whether another control connection may be tried, `held` being those whose
/// port would not do (kept open, so that the next one gets another P).
fn may_rotate(held: &[Control]) -> bool {
    held.len() + 1 < MAX_PROXY_TRIES
}

/// A logged-in-ready control connection and its data path.
pub struct Prepared {
    /// The control connection, greeting read.
    pub control: Control,
    /// The FTP server's address as the SSH server reaches it, where known:
    /// data connections must come from there.
    pub ftp_ip: Option<IpAddr>,
    /// The reverse forward, or why there is none.
    pub forward: Result<ReverseForward, Fallback>,
    /// How long the login took (three round trips to the FTP server), once done.
    pub login_time: Option<Duration>,
    /// How the server connects back, where a greeting told.
    pub dialect: Option<Dialect>,
}

impl Prepared {
    fn without_forward(control: Control, ftp_ip: Option<IpAddr>, why: Fallback) -> Prepared {
        Prepared { control, ftp_ip, forward: Err(why), login_time: None, dialect: None }
    }

    /// Log in, if that is still to do (where a forward is set up, the login
    /// ran beside it).
    async fn logged_in(mut self, login: &Login) -> Result<Prepared> {
        if self.login_time.is_none() {
            self.login_time = Some(timed_login(&mut self.control, login).await?);
        }
        Ok(self)
    }
}

/// Open a control connection with its default-port data path: through the
/// relay where one runs, else by the socket-table diff.
pub async fn prepare(session: &Session, ftp: &FtpTarget, timeout: Duration, login: &Login) -> Result<Prepared> {
    let prepared = match through_relay(session, ftp, timeout, login).await {
        Err(e) => match e.downcast::<relay::Unavailable>() {
            Ok(unavailable) => by_socket_table(session, ftp, timeout, login, unavailable).await,
            Err(e) => Err(e),
        },
        prepared => prepared,
    };
    prepared?.logged_in(login).await
}

/// Open a control connection for passive transfers, and read the greeting:
/// through the relay where one runs (it acknowledges the server's replies at
/// once, which sshd's socket does not: see [`crate::dataport::relay`]), else with
/// sshd's own socket. It lives here, not in `ftp/`, because it opens the stream (the
/// relay is this wing's, shared with [`prepare`]); `ftp/` speaks over any stream, and
/// logs in on it ([`crate::ftp::login`]).
pub async fn connect_control(session: &Session, ftp: &FtpTarget, timeout: Duration) -> Result<(Control, Reply)> {
    match relayed_control(session, ftp, timeout).await {
        Ok((control, greeting, _)) => Ok((control, greeting)),
        Err(e) if e.is::<relay::Unavailable>() => connect_direct(session, ftp, timeout).await,
        Err(e) => Err(e),
    }
}

/// A control connection through the relay, its greeting read, and P (the
/// relay's own end, as the FTP server sees it) with the server's address.
async fn relayed_control(
    session: &Session,
    ftp: &FtpTarget,
    timeout: Duration,
) -> Result<(Control, Reply, (SocketAddr, IpAddr))> {
    let relayed = relay::open(session, &ftp.host, ftp.port, Gate::of(session).relay_lines()).await?;
    let control = Control::with_read_ahead(relayed.stream, relayed.read_ahead, timeout);
    let mut control = control.with_transcript(transcript(session));
    if relayed.interpreter == relay::Interpreter::Perl {
        control = control.with_holds(); // only the perl relay takes hold lines
    }
    let greeting = control.greeting().await.with_context(|| format!("FTP server {}:{}", ftp.host, ftp.port))?;
    let (via, proxy) = (Via::Relay(relayed.interpreter.name()), relayed.local);
    session.events().emit(Event::ControlOpened { via, proxy, ftp: SocketAddr::new(relayed.peer, ftp.port) });
    Ok((control, greeting, (relayed.local, relayed.peer)))
}

/// Open a control connection with sshd's own socket (direct-tcpip, the `-L`
/// of the book) and read the greeting.
pub async fn connect_direct(session: &Session, ftp: &FtpTarget, timeout: Duration) -> Result<(Control, Reply)> {
    let channel = session.direct_tcpip(&ftp.host, ftp.port).await?;
    let mut control = Control::new(channel.into_stream(), timeout).with_transcript(transcript(session));
    let greeting = control.greeting().await.with_context(|| format!("FTP server {}:{}", ftp.host, ftp.port))?;
    if let Ok(ip) = ftp.host.parse::<IpAddr>() {
        let (proxy, ftp) = (SocketAddr::from(([0, 0, 0, 0], 0)), SocketAddr::new(ip, ftp.port));
        session.events().emit(Event::ControlOpened { via: Via::Direct, proxy, ftp });
    }
    Ok((control, greeting))
}

/// The relay path. When sshd cannot listen on the port (another socket
/// without SO_REUSEADDR holds it), or a data connection to it is still in
/// TIME_WAIT, another relay is opened while this one is held, so it gets
/// another P.
async fn through_relay(session: &Session, ftp: &FtpTarget, timeout: Duration, login: &Login) -> Result<Prepared> {
    let mut held = Vec::new();
    loop {
        let (mut control, greeting, (local, peer)) = relayed_control(session, ftp, timeout).await?;
        let dialect = Dialect::of(&greeting);
        let target = dialect.data_port(local.port()).context("proxy port 0")?;
        session.events().emit(Event::DialectChosen { dialect, data_port: target });
        let wanted = SocketAddr::new(local.ip(), target);
        let spare = dialect.spare_port(local.port());
        let ends = (local, SocketAddr::new(peer, ftp.port));
        let (judged, login_time) = forward_and_login(session, &mut control, login, wanted, spare, ends).await?;
        match judged {
            Judged::Another(why, forward) if may_rotate(&held) => {
                session.events().emit(Event::Detour { what: format!("{why}; opening another relay") });
                cancel(session, forward).await;
                held.push(control); // so that the next relay gets another P
            }
            judged => {
                let prepared = settle(session, control, Some(peer), judged).await;
                return Ok(Prepared { login_time: Some(login_time), dialect: Some(dialect), ..prepared });
            }
        }
    }
}

/// The path where no relay runs: P from the socket-table diff (ProFTPD only:
/// an RFC 959 server needs the relay whatever P is).
async fn by_socket_table(
    session: &Session,
    ftp: &FtpTarget,
    timeout: Duration,
    login: &Login,
    unavailable: relay::Unavailable,
) -> Result<Prepared> {
    let no_relay = if unavailable.none_installed {
        Fallback::NoRelay(unavailable.tried.join("; "))
    } else {
        Fallback::RelayFailed(unavailable.tried.join("; "))
    };
    let events = session.events();
    events.emit(Event::Detour { what: format!("{no_relay}; finding P in the SSH server's socket table instead") });
    let ftp_ip = ftp.host.parse::<IpAddr>().ok();
    // Diffs that saw other runs' connections count against MAX_DIFF_TRIES,
    // control connections whose P-1 would not do against MAX_PROXY_TRIES.
    let mut held = Vec::new();
    let mut attempt = 0u32;
    let mut diff_pauses = backoff::racing_diff().build();
    loop {
        attempt += 1;
        let mut turn = discovery::Turn::take().await;
        let before = turn.before(session).await;
        // The table is read again as soon as the connection exists, before the
        // greeting (which a busy server may send late): a short window for
        // other runs' connections to fall into.
        let channel = session.direct_tcpip(&ftp.host, ftp.port).await?;
        let read = match before {
            Ok(before) => discovery::snapshot(session).await.map(|after| (before, after)),
            Err(e) => Err(e),
        };
        let mut control = Control::new(channel.into_stream(), timeout).with_transcript(transcript(session));
        let greeting = control.greeting().await.with_context(|| format!("FTP server {}:{}", ftp.host, ftp.port))?;
        if Dialect::of(&greeting) == Dialect::Rfc959 {
            return Ok(Prepared::without_forward(control, ftp_ip, Fallback::NeedsRelay(no_relay.to_string())));
        }
        let (before, after) = match read {
            Ok(read) => read,
            Err(e) => return Ok(Prepared::without_forward(control, ftp_ip, Fallback::Discovery(format!("{e:#}")))),
        };
        let (local, remote) = match discovery::find_proxy(&before, &after, ftp_ip, ftp.port) {
            Ok(ends) => ends,
            Err(e @ NotFound::Ambiguous(..)) if attempt < MAX_DIFF_TRIES => {
                turn.leave(None);
                control.quit().await;
                let pause = backoff::next_pause(&mut diff_pauses);
                events.emit(Event::Detour { what: format!("{e}; trying again in {pause:.0?}") });
                tokio::time::sleep(pause).await;
                continue;
            }
            Err(e) => return Ok(Prepared::without_forward(control, ftp_ip, Fallback::Discovery(e.to_string()))),
        };
        let target = local.port().checked_sub(1).context("proxy port 0")?;
        events.emit(Event::ControlOpened { via: Via::SocketTable, proxy: local, ftp: remote });
        events.emit(Event::DialectChosen { dialect: Dialect::ProFtpd, data_port: target });
        if let Some(why) = discovery::port_busy(&after.entries, target, remote.port()).filter(|_| may_rotate(&held)) {
            events.emit(Event::Detour {
                what: format!("port {target} will not do: {why}; opening another control connection"),
            });
            turn.leave(Some(after));
            held.push(control);
            continue;
        }
        turn.leave(Some(after));
        let wanted = SocketAddr::new(local.ip(), target);
        let (judged, login_time) =
            forward_and_login(session, &mut control, login, wanted, None, (local, remote)).await?;
        // The port may have been taken since the table was read (other
        // clients' connections come and go): another P, as with a relay.
        match judged {
            Judged::Another(why, forward) if may_rotate(&held) => {
                events.emit(Event::Detour { what: format!("{why}; opening another control connection") });
                cancel(session, forward).await;
                held.push(control);
            }
            judged => {
                let prepared = settle(session, control, Some(remote.ip()), judged).await;
                return Ok(Prepared { login_time: Some(login_time), dialect: Some(Dialect::ProFtpd), ..prepared });
            }
        }
    }
}

/// Request the reverse forward on `wanted` and check it in the socket table
/// (SSH round trips) while logging in (FTP ones): both at once. `ends`: the
/// control connection's two ends, as the FTP server's host sees them.
async fn forward_and_login(
    session: &Session,
    control: &mut Control,
    login: &Login,
    wanted: SocketAddr,
    spare: Option<u16>,
    ends: (SocketAddr, SocketAddr),
) -> Result<(Judged, Duration)> {
    let listening = async {
        let forward = ReverseForward::request(session, &wanted.ip().to_string(), wanted.port(), spare).await;
        let table = discovery::snapshot(session).await;
        judge_forward(forward, table, wanted, ends)
    };
    // The origin check starts meanwhile too, where it has not yet (once a session); a login
    // that fails leaves it unstarted (its exec would race the session's end).
    let login_and_origin = async {
        let origin = check_origins(session, &login.user, login.runs_as.as_deref());
        let logging_in = timed_login(control, login);
        tokio::pin!(origin, logging_in);
        let mut origin_done = false;
        loop {
            tokio::select! {
                logged_in = &mut logging_in => {
                    if logged_in.is_ok() && !origin_done {
                        origin.await;
                    }
                    break logged_in;
                }
                () = &mut origin, if !origin_done => origin_done = true,
            }
        }
    };
    let (judged, logged_in) = tokio::join!(listening, login_and_origin);
    match logged_in {
        Ok(login_time) => Ok((judged, login_time)),
        Err(e) => {
            cancel(session, judged.into_forward()).await;
            Err(e)
        }
    }
}

/// Have the gate prove each data connection's origin by its owner in the SSH server's
/// socket table ([`crate::dataport::origin`]), the FTP server's sockets being root's, ours, or
/// those of the account the FTP session runs as there: `runs_as` (`--ftp-uid`, a uid or a
/// name), else `ftp_user`'s own. Once per session; where no perl runs there, connections are
/// judged by address and port alone, as said at `-v`.
async fn check_origins(session: &Session, ftp_user: &str, runs_as: Option<&str>) {
    // Held while it starts: another link of the session waits rather than go unchecked.
    // Set once it ended, either way: a start cancelled half-way is tried again.
    let mut tried = Gate::of(session).origin_tried().await;
    if *tried {
        return;
    }
    let started = async {
        let mut origin = Origin::start(session).await?;
        let ftp = match runs_as {
            Some(uid) if uid.parse::<u32>().is_ok() => uid.parse().ok(),
            Some(name) => {
                let uid = origin.uid_of(name).await?;
                if uid.is_none() {
                    tracing::warn!(
                        "--ftp-uid {name}: the SSH server has no such account; the FTP server's uid stays unknown"
                    );
                }
                uid
            }
            None => origin.uid_of(if ftp_user == "anonymous" { "ftp" } else { ftp_user }).await?,
        };
        anyhow::Ok((origin, ftp))
    };
    match started.await {
        Ok((origin, ftp)) => {
            let uids = Uids::new(origin.own_uid, ftp, origin.privileged_below);
            let (server, below) = (&uids.server, uids.privileged_below);
            tracing::debug!("data connections must be made by uid {server:?} (or from a port below {below})");
            Gate::of(session).check_origins(origin, uids).await;
        }
        Err(e) => tracing::info!("the data connections' origin cannot be checked, only their address and port: {e:#}"),
    }
    *tried = true;
}

/// The control connection with the forward `judged` fit to use, or without
/// it (cancelled) and why: another port would have been needed, and no more
/// are tried.
async fn settle(session: &Session, control: Control, ftp_ip: Option<IpAddr>, judged: Judged) -> Prepared {
    let (why, forward) = match judged {
        Judged::Use(forward) => {
            if let Some(listen) = forward.listen_addr() {
                session.events().emit(Event::ForwardListening { listen, spare: forward.ports.get(1).copied() });
            }
            return Prepared { control, ftp_ip, forward: Ok(forward), login_time: None, dialect: None };
        }
        Judged::Another(why, forward) => (Fallback::ForwardRefused(why), forward),
        Judged::GiveUp(why, forward) => (why, forward),
    };
    cancel(session, forward).await;
    Prepared::without_forward(control, ftp_ip, why)
}

async fn cancel(session: &Session, forward: Option<ReverseForward>) {
    if let Some(forward) = forward {
        forward.cancel(session).await;
    }
}

/// The control connection's lines, as events.
fn transcript(session: &Session) -> Transcript {
    let events = session.events().clone();
    Box::new(move |line| {
        events.emit(match line {
            Line::Sent(l) => Event::Sent { line: l.into() },
            Line::Received(l) => Event::Received { line: l.into() },
        })
    })
}
