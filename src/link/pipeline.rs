//! Transfers sent ahead: a transfer command goes on the wire with the
//! commands that need no answer first (SIZE, HASH), in one write, behind
//! whatever the link still owes; [`Link::receive`] takes the data connections
//! in the order sent.

use anyhow::{Context, Result};

use super::{Data, Link, Pending};
use crate::dataport::gate::Gate;
use crate::dataport::path::{DataPath, AFTER_LINE};
use crate::dataport::reclaim::start_now;
use crate::dataport::Fallback;
use crate::error::{classified, Classify};
use crate::ftp::control::FtpError;
use crate::ftp::{Command, Reply};

impl Link<'_> {
    /// Put transfer command `cmd` on the wire, with `before` (commands that
    /// need no answer first: SIZE, HASH) in the same write, behind
    /// whatever this link still owes: the server takes them in order, so a
    /// transfer sent while the last one runs starts the moment it ends.
    /// [`Link::receive`] takes the transfers in the order sent. Passive
    /// transfers wait for it to send them (EPSV's port must be read first).
    pub async fn send_transfer(&mut self, before: &[Command], cmd: &Command) -> Result<()> {
        let (session, timeout) = (self.session, self.control.timeout);
        // Taken first: whatever happens here, an accepted REST belongs to this command only.
        let rest = self.rest.take();
        let ahead = !self.pending.is_empty();
        let default_port = self.path.as_default_port();
        let sent = default_port.is_some();
        if let Some(port) = default_port {
            let ftp_ip = port.ftp_ip.context("the FTP server's address is unknown")?;
            // A reclaim under way ends first, where it cancelled sshd's listener: sshd listens
            // again right ahead of our commands. One from the stock ends when the next begins.
            let cancelled = match ahead && !port.reclaim.cancelled_listener() {
                true => None,
                false => port.end_reclaim(session.events(), timeout).await?,
            };
            let hold = port.hold_line().filter(|_| ahead);
            // Only the perl relay takes these lines, as it takes hold lines.
            let watch = self.control.holds().then(|| port.watch_line(Gate::of(session))).flatten();
            let renewing = match cancelled {
                Some(forward) => Some(start_now(async move { (forward.renew(session).await, forward) }).await),
                None => None,
            };
            if !ahead {
                Gate::of(session).drain().await;
            }
            // Open before sending: on loopback the connection can beat the write's return.
            Gate::of(session).open(&port.ports, ftp_ip);
            let wire: Vec<&Command> = before.iter().chain([cmd]).collect();
            if let Some(watch) = &watch {
                tracing::debug!("relay: {}", watch.trim_end());
            }
            let piped = match (watch, hold) {
                (None, None) => self.control.pipeline(&wire).await,
                (watch, hold) => {
                    if let Some(hold) = &hold {
                        let tuple = if hold == AFTER_LINE { "" } else { " and the data tuple is free" };
                        tracing::debug!(
                            "relay: hold {} until the transfers before it have ended{tuple}",
                            cmd.redacted()
                        );
                    }
                    let lines = watch.unwrap_or_default() + &hold.unwrap_or_default();
                    self.control.pipeline_held(&lines, &wire).await
                }
            };
            let renewed = match renewing {
                Some(renewing) => {
                    let (renewed, cancelled) = renewing.await;
                    port.relisten(session, renewed, cancelled).await
                }
                None => Ok(()),
            };
            if let Err(e) = piped.and(renewed) {
                Gate::of(session).close(&port.ports);
                return Err(e);
            }
        }
        self.pending.push_back(Pending { cmd: cmd.clone(), before: before.to_vec(), sent, rest });
        Ok(())
    }

    /// REST `at` for the next transfer command; the server's reply, whatever it
    /// is. One it accepted (350) is remembered with that transfer: if the default
    /// port is refused (a 425 answers the transfer command, which has consumed
    /// the REST), or the server stays silent, the passive retry sends it again.
    /// Without it the data would start at byte 0.
    pub async fn rest(&mut self, at: u64) -> Result<Reply> {
        let reply = self.control.command(&Command::Rest(at)).await?;
        self.rest = (reply.code == 350).then_some(at);
        Ok(reply)
    }

    /// [`Link::rest`], and anything but 350 is the error.
    pub async fn expect_rest(&mut self, at: u64) -> Result<()> {
        let reply = self.rest(at).await?;
        if reply.code != 350 {
            return Err(FtpError { command: Command::Rest(at).redacted(), reply }.classified());
        }
        Ok(())
    }

    /// The REST offset the next transfer command is to start at, if one was accepted.
    pub fn rest_ahead(&self) -> Option<u64> {
        self.rest
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
    /// default port works on this link, and our relay holds the next commands
    /// until this transfer has ended ([`Link::send_transfer`]), and, where the
    /// source port is fixed, until its 4-tuple is free. From a fixed port (20, or L-1) every
    /// transfer reuses one 4-tuple, and a server that reconnects within
    /// microseconds of the last close races its own final ACK: the new SYN can
    /// overtake that ACK (two CPUs' loopback queues), meet sshd's end still in
    /// LAST_ACK, and wait out a 1 s SYN retransmit
    /// (docs/real-systems.md#time_wait-and-incarnations). `collides`: the
    /// server is known to collide with TIME_WAIT.
    pub fn can_send_ahead(&self, collides: bool) -> bool {
        let DataPath::DefaultPort(port) = &self.path else { return false };
        if port.forward.is_none() || port.nothing_ahead || Gate::of(self.session).saw_unproven(&port.ports) {
            return false;
        }
        // The relay holds the next commands until this transfer's final reply in any case: a server
        // may read commands during a transfer (ProFTPD answers SIZE then, and refuses a RETR).
        if !self.control.holds() {
            return false;
        }
        if port.last.source_port_varies {
            return !collides;
        }
        // A fixed source port: every transfer has the same 4-tuple, so the relay must hold the
        // next commands until the last connection has closed on the SSH server (its SYN could
        // overtake that connection's last ACK), and, with collisions, until our reclaim ended
        // the FTP server's TIME_WAIT, which it does from its stock of sockets, unasked. A reclaim
        // that must cancel sshd's listener waits for the next commands to renew it: none ahead.
        // The relay sees that TIME_WAIT only where the FTP server runs on the SSH server itself.
        let Some(tuple) = port.last.tuple else { return false };
        !collides || (port.reclaim.unasked() && tuple.server.is_loopback())
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
                if let Some(at) = pending.rest {
                    // The refused try consumed it (or a new control connection never had it).
                    // Sent last, right before EPSV and the transfer command.
                    for before in &pending.before[replies.len()..] {
                        replies.push(self.control.command(before).await?);
                    }
                    tracing::debug!("passive retry: REST {at} again");
                    if let Err(e) = self.expect_rest(at).await {
                        return Err(self.passive_failed_too(e));
                    }
                    self.rest = None; // it goes with this transfer, not the next
                }
                self.receive_passive(&pending, replies).await
            }
            Ok(why) => Err(classified(why.kind(), why.to_string())),
            Err(e) => Err(e),
        }
    }

    /// `pending` over EPSV/PASV; `replies` holds those of its `before` commands already had.
    async fn receive_passive(&mut self, pending: &Pending, mut replies: Vec<Reply>) -> Result<(Vec<Reply>, Data)> {
        let unanswered: Vec<&Command> = pending.before[replies.len()..].iter().collect();
        if !unanswered.is_empty() {
            self.control.pipeline(&unanswered).await?;
            for _ in &unanswered {
                replies.push(self.control.read_reply().await?);
            }
        }
        let data = self.start_passive(&pending.cmd).await?;
        Ok((replies, data))
    }
}
