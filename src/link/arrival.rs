//! A default-port transfer's data connection arriving: the preliminary reply and the
//! gate's word on the server's connection, in whichever order they come, within the bound.

use std::net::IpAddr;

use anyhow::{Context, Result};

use super::{Collision, Data, Early, Link};
use crate::dataport::gate::{self, DataChannel, Gate};
use crate::dataport::Fallback;
use crate::error::{Classify, Kind};
use crate::events::Event;
use crate::ftp::control::FtpError;
use crate::ftp::{Command, Reply};

impl Link<'_> {
    pub(super) async fn start_default_port(
        &mut self,
        cmd: &Command,
        before: usize,
        replies: &mut Vec<Reply>,
    ) -> Result<Data> {
        let arrived = self.await_data_connection(cmd, before, replies).await;
        let (reply, data, early) = match arrived {
            Ok(both) => both,
            Err(e) => {
                Gate::of(self.session).close(self.path.ports());
                return Err(e);
            }
        };
        let origin = data.originator.0.parse::<IpAddr>().ok().map(|ip| (ip.to_canonical(), data.originator.1 as u16));
        let download = !matches!(cmd, Command::Stor(_) | Command::Appe(_));
        let (session, timeout, early_eof) = (self.session, self.control.timeout, self.early_eof);
        let port = self.path.as_default_port().context("a default-port transfer on the passive path")?;
        port.arrived(Gate::of(session), origin, data.connected.1 as u16, download);
        if let Some((from, to)) = data.ends() {
            session.events().emit(Event::DataAccepted { from, to, incarnation: data.incarnation });
        }
        // Nothing goes to the server on a download: our EOF at once, so that a
        // server that waits for it before its 226 (ProFTPD's lingering close)
        // has it a round trip sooner.
        let eof_sent = download && early_eof && data.channel.eof().await.is_ok();
        if eof_sent && port.reclaim.behind {
            port.begin_reclaim(session, timeout).await;
        }
        Ok(Data { channel: data.channel, announced: reply.announced_size(), early, eof_sent })
    }

    /// Send `cmd` and wait for both its preliminary reply and the server's
    /// connection, in whichever order they come, within [`Link::bound`] of the
    /// last reply to the commands before it for as long as the connection has not come.
    async fn await_data_connection(
        &mut self,
        cmd: &Command,
        before: usize,
        replies: &mut Vec<Reply>,
    ) -> Result<(Reply, DataChannel, Early)> {
        enum Arrival {
            Reply(Reply),
            Lost(anyhow::Error),
            Gate(gate::Arrival),
            Early,
            Deadline,
        }
        // From the last reply to what was sent before it on: the server reads the transfer
        // command only then (a hash command before RETR takes a while on a big file), and each
        // reply has the control connection's own bound meanwhile.
        let mut deadline = tokio::time::Instant::now() + self.bound;
        let (mut reply, mut data, mut early) = (None, None::<DataChannel>, Early::default());
        loop {
            if let (Some(_), Some(_)) = (&reply, &data) {
                return Ok((reply.unwrap(), data.unwrap(), early));
            }
            let (control, session) = (&mut self.control, self.session);
            let waiting_for_data = data.is_none();
            // After the preliminary reply the control connection is still read while the
            // connection is awaited: a server may end the transfer first, and the gate admits an
            // unproven connection only then ([`crate::dataport::gate::Gate::release`]).
            let read_control = reply.is_none() || (waiting_for_data && self.completed.is_none());
            let draining = async {
                match data.as_mut() {
                    Some(d) => early.read_one(&mut d.channel).await,
                    None => std::future::pending().await,
                }
            };
            // The gate's word first: a connection admitted is taken before the final reply.
            let arrival = tokio::select! {
                biased;
                Some(a) = Gate::of(session).next(self.bound), if waiting_for_data => Arrival::Gate(a),
                r = control.read_reply(), if read_control => r.map_or_else(Arrival::Lost, Arrival::Reply),
                () = draining => Arrival::Early,
                _ = tokio::time::sleep_until(deadline), if waiting_for_data && replies.len() >= before => Arrival::Deadline,
            };
            let failed = match arrival {
                Arrival::Reply(r) if replies.len() < before => {
                    replies.push(r);
                    deadline = tokio::time::Instant::now() + self.bound;
                    continue;
                }
                Arrival::Reply(r) if r.is_preliminary() && reply.is_none() => {
                    reply = Some(r);
                    continue;
                }
                Arrival::Reply(r) if reply.is_some() && r.is_completion() => {
                    match Gate::of(self.session).release(self.path.ports(), self.path.received()).await {
                        // The server ended it before anything came, and the next transfer is
                        // already sent: the next connection may be that one's (its RETR runs
                        // the moment this one ends), and nothing tells the two apart. This one's
                        // went elsewhere (a socket that met the server's SYN in a simultaneous
                        // open) or is late: either way, not a guess.
                        Ok(false)
                            if self.pending.iter().any(|p| p.sent)
                                && Gate::of(self.session).nothing_came(self.path.ports(), self.path.received()) =>
                        {
                            lost(&r)
                        }
                        Ok(_) => {
                            self.completed = Some(r);
                            continue;
                        }
                        Err(who) => {
                            self.control.abort_on_resync();
                            raced(who)
                        }
                    }
                }
                Arrival::Gate(gate::Arrival::Data(mut d)) => {
                    if let Some(port) = self.path.as_default_port() {
                        port.received += 1;
                    }
                    // What it brought while the gate looked up its origin comes first.
                    early.chunks.splice(0..0, std::mem::take(&mut d.early));
                    early.ended |= d.ended;
                    data = Some(d);
                    continue;
                }
                Arrival::Gate(gate::Arrival::Unprovable(why)) => Fallback::Unprovable(why).into(),
                Arrival::Gate(gate::Arrival::TooMuch(why)) => crate::error::classified(Kind::Transfer, why),
                Arrival::Gate(gate::Arrival::Raced(who)) => {
                    self.control.abort_on_resync();
                    raced(who)
                }
                Arrival::Early => continue,
                Arrival::Reply(r) => self.refusal(cmd, r),
                Arrival::Lost(e) => e,
                Arrival::Deadline => {
                    let what = match &reply {
                        Some(r) => format!("said {} but did not connect back", r.code),
                        None => format!("neither answered {} nor connected back", cmd.redacted()),
                    };
                    Fallback::Silent(format!("{what} within {:.1?}", self.bound)).into()
                }
            };
            // A connection that came with a refusal is the next transfer's (sent ahead): closed,
            // not dropped, which would leave it open and the FTP server waiting for our end.
            if let Some(d) = data {
                let _ = d.channel.close().await;
            }
            self.completed = None;
            return Err(failed);
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
}

/// The server ended the transfer with no connection for it come, and another sent behind it.
fn lost(reply: &Reply) -> anyhow::Error {
    crate::error::classified(
        Kind::Transfer,
        format!(
            "the FTP server ended the transfer ({}) before its data connection reached us, with the next one \
             already sent, whose connection could not be told from it; nothing kept",
            reply.code
        ),
    )
}

/// Several connections raced for one transfer's data connection, none of them provably the
/// server's: the transfer fails, and nothing they brought is kept.
fn raced(who: String) -> anyhow::Error {
    crate::error::classified(Kind::Transfer, format!("the data connection was raced: {who}"))
}
