//! Reclaiming a data connection's 4-tuple from TIME_WAIT (RFC 1337's
//! "TIME-WAIT assassination"), so the next default-port transfer can use the
//! same control connection at once.
//!
//! After a download the FTP server closed first, so *its* host holds the
//! tuple (S -> T) in TIME_WAIT, and its next connect() from S to T fails.
//! A SYN sent from T to S (the same tuple, from our side) reaches that
//! TIME_WAIT socket; with no listener on S it answers with a bare ACK, which
//! our half-open socket answers with a RST carrying exactly the sequence
//! number TIME_WAIT expects. Linux then drops the TIME_WAIT entry (unless
//! `net.ipv4.tcp_rfc1337=1`). Nothing else is disturbed: the tuple contains
//! our own port T, and the connection it belonged to has ended cleanly
//! (226 received, size checked). The next RETR on the same control
//! connection succeeds at once.
//!
//! A link reclaims after a collision, at once ([`collision`]), and, once the
//! server is known to collide, as each download's data arrives, ready for the
//! next transfer ([`Reclaim::begin`]). The SYN is sent by the link's helper
//! on the SSH server ([`reclaimer`]). [`Reclaim`] is all a link knows of it.

pub mod collision;
pub mod reclaimer;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::dataport::forward::ReverseForward;
use crate::error::{classified, Kind};
use crate::events::{Event, Events};
use crate::ssh::helper::Helper;
use crate::ssh::Session;
use crate::tcp::DataTuple;
use reclaimer::Reclaimer;

/// How long the reclaiming helper may wait for sshd's end of a download's
/// connection to close: the download may still be running when it is asked.
const RECLAIM_FREE: Duration = Duration::from_secs(600);

/// How many sockets the helper binds ahead, each time sshd's listener is
/// cancelled for a reclaim: one cancel and renew per this many downloads.
/// Well under the 1024 descriptors a process is usually allowed.
const RECLAIM_STOCK: usize = 200;

/// One link's reclaiming: whether its host holds a TIME_WAIT, whether each
/// download is reclaimed as it arrives, the reclaim under way, and the helper.
#[derive(Default)]
pub struct Reclaim<'s> {
    /// Reclaim each download's 4-tuple as its data connection is accepted
    /// (set once the server is known to collide; [`Reclaim::begin`]).
    pub behind: bool,
    /// The last default-port data connection carried a download: the FTP
    /// server closed it first, so its host holds the 4-tuple in TIME_WAIT.
    pub held: bool,
    /// A reclaim begun as the data arrived, under way: the cancelled forward comes back with its answer.
    under_way: Option<Started<'s, Reclaiming>>,
    /// The link's reclaiming helper (a reclaim under way holds it until the next transfer).
    reclaimer: Option<Reclaimer>,
    /// The proxy end that helper holds bound sockets for, and how many: a
    /// reclaim from one of them needs no cancelled forward.
    stocked: Option<(SocketAddr, usize)>,
    /// The SSH server could not listen beside that stock ([`Reclaim::relisten`]).
    stock_refused: bool,
    /// The reclaim under way cancelled sshd's listener (not from the stock).
    cancelled: bool,
}

/// What a reclaim under way brings back: the forward it cancelled (none when
/// it sent from the stock), the tuple, and the helper with its answer (true:
/// the SYN went out) and the stock left.
struct Reclaiming {
    forward: Option<ReverseForward>,
    tuple: DataTuple,
    asked: Result<(Reclaimer, bool, usize)>,
}

/// A future polled once already, so that what it sends first is on its way
/// ([`start_now`]), to be awaited later.
pub type Started<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// Poll `f` once now (its first messages go out, in order, behind whatever
/// was sent before), and hand it back to be awaited later.
pub async fn start_now<'a, T: Send + 'a>(f: impl std::future::Future<Output = T> + Send + 'a) -> Started<'a, T> {
    let mut f: Started<'a, T> = Box::pin(f);
    match std::future::poll_fn(|cx| std::task::Poll::Ready(f.as_mut().poll(cx))).await {
        std::task::Poll::Ready(done) => Box::pin(std::future::ready(done)),
        std::task::Poll::Pending => f,
    }
}

impl<'s> Reclaim<'s> {
    /// Begin reclaiming `tuple`, the download just accepted, so that it is
    /// free by the time the next transfer is sent, at no round trip of its
    /// own: the helper's line goes out now, right behind our EOF, and the
    /// helper sends its SYN once sshd's end of the connection has closed
    /// ([`reclaimer`]); [`Reclaim::end`] reads the answer.
    /// The SYN needs a socket bound to the proxy port, which sshd listens on:
    /// from the helper's stock, bound while sshd's listener was away, or else
    /// `forward` is cancelled now (its cancel goes out first) and renewed
    /// ahead of the next commands, and the helper binds a new stock meanwhile.
    pub async fn begin(
        &mut self,
        session: &'s Session,
        forward: &mut Option<ReverseForward>,
        tuple: Option<DataTuple>,
    ) {
        let Some(tuple) = tuple.filter(|t| t.server_port.is_some()) else { return };
        let stocked = matches!(self.stocked, Some((end, n)) if end == tuple.proxy && n > 0);
        let stock = if stocked || self.stock_refused { 0 } else { RECLAIM_STOCK };
        let forward = match stocked {
            true => None,
            false => match forward.take() {
                Some(forward) => Some(forward),
                None => return,
            },
        };
        self.cancelled = forward.is_some();
        let reclaimer = self.reclaimer.take();
        let reclaiming = async move {
            let asking = async {
                let mut reclaimer = match reclaimer {
                    Some(r) => r,
                    None => Reclaimer::start(session).await?,
                };
                let (sent, left) = reclaimer.ask(&tuple, Duration::ZERO, RECLAIM_FREE, stock).await?;
                Ok::<_, anyhow::Error>((reclaimer, sent, left))
            };
            let cancelling = async {
                if let Some(forward) = &forward {
                    forward.cancel(session).await
                }
            };
            let (_, asked) = tokio::join!(cancelling, asking);
            Reclaiming { forward, tuple, asked }
        };
        self.under_way = Some(start_now(reclaiming).await);
        self.held = false;
    }

    /// The end of a reclaim begun by [`Reclaim::begin`], if any, within the
    /// helpers' bound and `timeout`: the cancelled forward, if it was, to be
    /// renewed. One that did not work is said in the trace, and this link
    /// reclaims after collisions again (where a failure switches the run to rotating).
    pub async fn end(&mut self, events: &Events, timeout: Duration) -> Result<Option<ReverseForward>> {
        let Some(reclaiming) = self.under_way.take() else { return Ok(None) };
        self.cancelled = false;
        let bound = crate::ssh::EXEC_TIMEOUT + timeout;
        let Ok(Reclaiming { forward, tuple, asked }) = tokio::time::timeout(bound, reclaiming).await else {
            return Err(classified(Kind::Transfer, format!("reclaiming a 4-tuple took over {bound:?}")));
        };
        match asked {
            Ok((reclaimer, sent, left)) => {
                self.reclaimer = Some(reclaimer);
                self.stocked = Some((tuple.proxy, left));
                match sent {
                    true => events.emit(Event::Reclaimed { tuple }),
                    false => tracing::debug!("{tuple}: nothing to reclaim (our own end holds its TIME_WAIT)"),
                }
            }
            Err(e) => {
                tracing::debug!("{tuple}: reclaiming as the data arrived did not work ({e:#}): after collisions only");
                self.behind = false;
                self.stocked = None;
            }
        }
        Ok(forward)
    }

    /// The reclaim under way cancelled sshd's listener: it must end, and the
    /// listener be renewed, before the next commands.
    pub fn cancelled_listener(&self) -> bool {
        self.cancelled
    }

    /// True when this link's next reclaims go on without us: reclaiming as
    /// each download's data arrives, with a helper whose stock (as last
    /// reported; reclaims sent ahead report later) lasts past the transfers
    /// in flight, and no cancelled listener to renew.
    pub fn unasked(&self) -> bool {
        let stocked = self.stocked.is_some_and(|(_, n)| n >= 3);
        let helper = self.reclaimer.is_some() || self.under_way.is_some(); // in use, under way
        self.behind && helper && stocked && !self.cancelled
    }

    /// Take sshd's listener back into `forward` after a reclaim cancelled it
    /// (`renewed`: asked for ahead of the next commands). A listener that does not set
    /// SO_REUSEADDR cannot share its port with the helper's stock: the stock
    /// goes, the listener is asked for once more, and this link keeps no stock.
    pub async fn relisten(
        &mut self,
        session: &Session,
        forward: &mut Option<ReverseForward>,
        renewed: Result<ReverseForward>,
        cancelled: ReverseForward,
    ) -> Result<()> {
        let refused = match renewed {
            Ok(renewed) => {
                *forward = Some(renewed);
                return Ok(());
            }
            Err(e) => e,
        };
        let (Some((end, n)), Some(reclaimer)) = (self.stocked, self.reclaimer.as_mut()) else { return Err(refused) };
        if n == 0 {
            return Err(refused);
        }
        tracing::debug!("{refused:#}: the SSH server's listener does not share its port; no stock of sockets");
        reclaimer.drop_stock(end).await?;
        self.stocked = None;
        self.stock_refused = true;
        *forward = Some(cancelled.renew(session).await?);
        Ok(())
    }

    /// Free `tuple` from the FTP server's TIME_WAIT now: sshd stops listening
    /// on the forwarded ports (`forward`), the SYN goes out from the proxy port
    /// (the helper waits `wait` for the exchange), and the forwards are requested again.
    /// False: no SYN could go out (our own end of the tuple is taken: in
    /// TIME_WAIT itself, when both ends closed at once). An error leaves no forward.
    pub async fn now(
        &mut self,
        session: &Session,
        forward: &mut Option<ReverseForward>,
        tuple: &DataTuple,
        wait: Duration,
    ) -> Result<bool> {
        let cancelled = forward.take().context("this link has no reverse forward")?;
        // The cancel goes out first and the SYN's line right behind it, in one round trip
        // (sshd handles them in order; the helper retries its bind meanwhile anyway).
        let (_, sent) = tokio::join!(cancelled.cancel(session), self.ask_now(session, tuple, wait));
        let sent = sent?;
        *forward = Some(cancelled.renew(session).await?);
        self.held = false;
        Ok(sent)
    }

    /// The helper's answer for `tuple`, started if there is none; one that
    /// failed is dropped (with its stock), so the next reclaim starts anew.
    async fn ask_now(&mut self, session: &Session, tuple: &DataTuple, wait: Duration) -> Result<bool> {
        let asking = async {
            let mut reclaimer = match self.reclaimer.take() {
                Some(r) => r,
                None => Reclaimer::start(session).await?,
            };
            let (sent, left) = reclaimer.ask(tuple, wait, Duration::ZERO, 0).await?;
            anyhow::Ok((reclaimer, sent, left))
        };
        let (reclaimer, sent, left) = match tokio::time::timeout(crate::ssh::EXEC_TIMEOUT + wait, asking).await {
            Ok(answer) => answer.inspect_err(|_| self.stocked = None)?,
            Err(_) => {
                self.stocked = None;
                anyhow::bail!("the reclaiming process did not answer in time")
            }
        };
        self.reclaimer = Some(reclaimer);
        if self.stocked.is_some_and(|(end, _)| end == tuple.proxy) {
            self.stocked = Some((tuple.proxy, left));
        }
        Ok(sent)
    }
}
