//! Reclaiming a link's data 4-tuple from TIME_WAIT ([`crate::timewait::reclaim`]):
//! after a collision, at once; once the server is known to collide, as each
//! download's data arrives, ready for the next transfer.

use std::time::Duration;

use anyhow::{Context, Result};

use super::{start_now, Link, Reclaiming};
use crate::dataport::forward::ReverseForward;
use crate::error::{classified, Kind};
use crate::events::Event;
use crate::ssh::helper::Helper;
use crate::ssh::reclaimer::Reclaimer;
use crate::tcp::DataTuple;

impl Link<'_> {
    /// Begin reclaiming the 4-tuple of the download just accepted, so that it
    /// is free by the time the next transfer is sent, at no round trip of its
    /// own: the helper's line goes out now, right behind our EOF, and the
    /// helper sends its SYN once sshd's end of the connection has closed
    /// ([`crate::ssh::reclaimer`]); [`Link::send_transfer`] reads the answer.
    /// The SYN needs a socket bound to the proxy port, which sshd listens on:
    /// from the helper's stock, bound while sshd's listener was away, or else
    /// the forward is cancelled now (its cancel goes out first) and renewed
    /// ahead of the next commands, and the helper binds a new stock meanwhile.
    pub(super) async fn begin_reclaim(&mut self) {
        // The last one, from the stock, still under way where this transfer was sent ahead.
        if let Ok(Some(cancelled)) = self.end_reclaim().await {
            let renewed = cancelled.renew(self.session).await;
            if self.relisten(renewed, cancelled).await.is_err() {
                return; // no forward: the next transfer says so
            }
        }
        let Some(tuple) = self.data_tuple().filter(|t| t.server_port.is_some()) else { return };
        let stocked = matches!(self.stocked, Some((end, n)) if end == tuple.proxy && n > 0);
        let stock = if stocked || self.stock_refused { 0 } else { RECLAIM_STOCK };
        let forward = match stocked {
            true => None,
            false => match self.forward.take() {
                Some(forward) => Some(forward),
                None => return,
            },
        };
        self.reclaim_cancelled = forward.is_some();
        let (session, reclaimer) = (self.session, self.reclaimer.take());
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
        self.reclaiming = Some(start_now(reclaiming).await);
        self.time_wait_held = false;
    }

    /// The end of a reclaim begun by [`Link::begin_reclaim`], if any: the
    /// cancelled forward, if it was, to be renewed. One that did not work is
    /// said in the trace, and this link reclaims after collisions again (where
    /// a failure switches the run to rotating).
    pub(super) async fn end_reclaim(&mut self) -> Result<Option<ReverseForward>> {
        let Some(reclaiming) = self.reclaiming.take() else { return Ok(None) };
        self.reclaim_cancelled = false;
        let bound = crate::ssh::EXEC_TIMEOUT + self.control.timeout;
        let Ok(Reclaiming { forward, tuple, asked }) = tokio::time::timeout(bound, reclaiming).await else {
            return Err(classified(Kind::Transfer, format!("reclaiming a 4-tuple took over {bound:?}")));
        };
        match asked {
            Ok((reclaimer, sent, left)) => {
                self.reclaimer = Some(reclaimer);
                self.stocked = Some((tuple.proxy, left));
                match sent {
                    true => self.events().emit(Event::Reclaimed { tuple }),
                    false => tracing::debug!("{tuple}: nothing to reclaim (our own end holds its TIME_WAIT)"),
                }
            }
            Err(e) => {
                tracing::debug!("{tuple}: reclaiming as the data arrived did not work ({e:#}): after collisions only");
                self.reclaim_behind = false;
                self.stocked = None;
            }
        }
        Ok(forward)
    }

    /// True when this link's next reclaims go on without us: reclaiming as
    /// each download's data arrives, with a helper whose stock (as last
    /// reported; reclaims sent ahead report later) lasts past the transfers
    /// in flight, and no cancelled listener to renew.
    pub(super) fn reclaims_unasked(&self) -> bool {
        let stocked = self.stocked.is_some_and(|(_, n)| n >= 3);
        let helper = self.reclaimer.is_some() || self.reclaiming.is_some(); // in use, under way
        self.reclaim_behind && helper && stocked && !self.reclaim_cancelled
    }

    /// Take sshd's listener back after a reclaim cancelled it (`renewed`:
    /// asked for ahead of the next commands). A listener that does not set
    /// SO_REUSEADDR cannot share its port with the helper's stock: the stock
    /// goes, the listener is asked for once more, and this link keeps no stock.
    pub(super) async fn relisten(&mut self, renewed: Result<ReverseForward>, cancelled: ReverseForward) -> Result<()> {
        let refused = match renewed {
            Ok(forward) => {
                self.forward = Some(forward);
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
        self.forward = Some(cancelled.renew(self.session).await?);
        Ok(())
    }

    /// Free the data connection's 4-tuple from the FTP server's TIME_WAIT
    /// ([`crate::ssh::reclaimer`]): sshd stops listening on the forwarded ports, the
    /// SYN goes out from the proxy port, and the forwards are requested again.
    /// False: no SYN could go out ([`Session::reclaim`]). An error leaves the
    /// link without forwards: close it.
    pub async fn reclaim(&mut self, tuple: &DataTuple, wait: Duration) -> Result<bool> {
        let forward = self.forward.take().context("this link has no reverse forward")?;
        // The cancel goes out first and the SYN's line right behind it, in one round trip
        // (sshd handles them in order; the helper retries its bind meanwhile anyway).
        let (_, sent) = tokio::join!(forward.cancel(self.session), self.session.reclaim(tuple, wait));
        let sent = sent?;
        self.forward = Some(forward.renew(self.session).await?);
        self.time_wait_held = false;
        Ok(sent)
    }

    /// True when the FTP server's host holds this link's data 4-tuple in
    /// TIME_WAIT from its last download (it closed that connection first).
    pub fn holds_time_wait(&self) -> bool {
        self.time_wait_held && !self.passive
    }
}

/// How long the reclaiming helper may wait for sshd's end of a download's
/// connection to close: the download may still be running when it is asked.
const RECLAIM_FREE: Duration = Duration::from_secs(600);

/// How many sockets the helper binds ahead, each time sshd's listener is
/// cancelled for a reclaim: one cancel and renew per this many downloads.
/// Well under the 1024 descriptors a process is usually allowed.
const RECLAIM_STOCK: usize = 200;
